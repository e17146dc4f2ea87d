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
    public static func withFresh<T>(
        _ label: String = #function, _ body: (_ dsn: String) async throws -> T
    ) async throws -> T {
        let admin = try await adminConnection()
        let name = databaseName(label)
        try await admin.execute("CREATE DATABASE " + quote(name))
        let dsn = ConnectionString.withDatabase(try adminDSN(), name)
        do {
            let value = try await body(dsn)
            try await admin.execute("DROP DATABASE IF EXISTS " + quote(name) + " WITH (FORCE)")
            return value
        } catch {
            _ = try? await admin.execute("DROP DATABASE IF EXISTS " + quote(name) + " WITH (FORCE)")
            throw error
        }
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
