import Foundation
import Postgres

/// Fresh databases on the test server named by `LEDGERLIFT_TEST_DSN`.
///
/// Every test that needs a database gets its own, created for it and dropped after it, so
/// suites and tests run in parallel without seeing each other's rows. With no server to reach,
/// the test fails with instructions — it never skips silently.
public enum TestDatabase {
    /// Why the tests could not get a database.
    public struct Unavailable: Error, CustomStringConvertible {
        public let description: String
    }

    /// The server's DSN (pointing at its maintenance database).
    public static func adminDSN() throws -> String {
        guard let dsn = ProcessInfo.processInfo.environment["LEDGERLIFT_TEST_DSN"], !dsn.isEmpty else {
            throw Unavailable(
                description: """
                    LEDGERLIFT_TEST_DSN is not set. Run the tests with `make test`, which starts a throwaway \
                    PostgreSQL under .pg/ and sets it, or point LEDGERLIFT_TEST_DSN at a server you own.
                    """)
        }
        return dsn
    }

    /// Creates an empty database, runs `body` with its DSN, and drops it afterwards.
    ///
    /// At most ``maximumConcurrentTests`` tests hold databases at once (a test's nested calls
    /// share its slot): Swift Testing runs every test in parallel, and each one opens several
    /// connections (backfill workers, the diff's three sides), which would otherwise exceed the
    /// server's `max_connections` as the suite grows.
    public static func withFresh<T>(
        _ label: String = #function, _ body: (_ dsn: String) async throws -> T
    ) async throws -> T {
        if holdsSlot { return try await withFreshDatabase(label, body) }
        await slots.acquire()
        do {
            let value = try await $holdsSlot.withValue(true) { try await withFreshDatabase(label, body) }
            await slots.release()
            return value
        } catch {
            await slots.release()
            throw error
        }
    }

    /// Tests holding databases at once.
    public static let maximumConcurrentTests = 24

    @TaskLocal static var holdsSlot = false
    static let slots = Slots(maximumConcurrentTests)

    private static func withFreshDatabase<T>(
        _ label: String, _ body: (_ dsn: String) async throws -> T
    ) async throws -> T {
        let name = databaseName(label)
        try await withAdmin { try await $0.execute("CREATE DATABASE " + quote(name)) }
        let dsn = ConnectionString.withDatabase(try adminDSN(), name)
        do {
            let value = try await body(dsn)
            try await withAdmin { try await $0.execute("DROP DATABASE IF EXISTS " + quote(name) + " WITH (FORCE)") }
            return value
        } catch {
            _ = try? await withAdmin { try await $0.execute("DROP DATABASE IF EXISTS " + quote(name) + " WITH (FORCE)") }
            throw error
        }
    }

    /// Runs `body` on a maintenance connection that is closed right after, so a test does not
    /// hold one for its whole run.
    @discardableResult
    static func withAdmin<T>(_ body: (Connection) async throws -> T) async throws -> T {
        let admin = try await adminConnection()
        defer { admin.close() }
        return try await body(admin)
    }

    /// Like ``withFresh(_:_:)``, with an open connection to the new database.
    public static func withConnection<T>(
        _ label: String = #function, _ body: (_ connection: Connection, _ dsn: String) async throws -> T
    ) async throws -> T {
        try await withFresh(label) { dsn in
            let connection = try await Connection.connect(dsn)
            defer { connection.close() }
            return try await body(connection, dsn)
        }
    }

    static func adminConnection() async throws -> Connection {
        let dsn = try adminDSN()
        do {
            return try await Connection.connect(dsn, applicationName: "ledgerlift-tests")
        } catch {
            throw Unavailable(
                description: """
                    cannot reach the test PostgreSQL at \(ConnectionString.masked(dsn)): \(error). \
                    Run `make test` (it starts a throwaway cluster) or fix LEDGERLIFT_TEST_DSN.
                    """)
        }
    }

    static func databaseName(_ label: String) -> String {
        let cleaned = label.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "_" }
        let random = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        return "lltest_" + String(String(cleaned).prefix(40)) + "_" + random
    }

    static func quote(_ identifier: String) -> String {
        "\"" + identifier.replacing("\"", with: "\"\"") + "\""
    }
}

/// Peak and current resident memory of this process, from `/proc/self/status`.
public enum ProcessMemory {
    /// Current resident set size in bytes.
    public static func residentBytes() -> Int {
        field("VmRSS:")
    }

    static func field(_ name: String) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix(name) {
            let digits = line.dropFirst(name.count).filter(\.isNumber)
            return (Int(digits) ?? 0) * 1024
        }
        return 0
    }
}

/// A counting semaphore for tasks.
actor Slots {
    private var free: Int
    private var waiting = [CheckedContinuation<Void, Never>]()

    init(_ count: Int) { free = count }

    func acquire() async {
        if free > 0 {
            free -= 1
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func release() {
        if waiting.isEmpty {
            free += 1
        } else {
            waiting.removeFirst().resume()
        }
    }
}
