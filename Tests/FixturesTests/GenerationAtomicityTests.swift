import Dispatch
@testable import Fixtures
import Foundation
import Postgres
import Synchronization
import TestSupport
import Testing

/// `fixture generate` is all or nothing, like `fixture load`: whatever fails — PostgreSQL
/// refusing the data, a lost connection, every connection gone as when the process is killed, a
/// cancellation mid-stream — the `legacy` schema the database had is still there, the very same
/// objects with the very same rows (or there is none, if there was none).
@Suite("Generating the legacy database is all or nothing")
struct GenerationAtomicityTests {
    /// Issue 11 §2 asked for this: the old generator dropped `legacy` first and left an empty or
    /// partial one behind when it failed.
    @Test func aFailureWhileRebuildingTheIndexesLeavesTheEarlierLegacySchemaAsItWas() async throws {
        // A schema with one more unique index, which the generated customers (many in USD) break:
        // the failure comes after every row was streamed, at the index rebuild.
        let broken = try BrokenFixtures(appendingToSchema: "CREATE UNIQUE INDEX customers_one_per_currency ON customers (currency);")
        defer { broken.remove() }
        try await TestDatabase.withConnection { connection, dsn in
            let before = try await LegacyState.loadReference(connection, dsn)
            let generator = FixtureGenerator(configuration: .init(customers: 60, seed: 3), fixtures: broken.directory)
            let error = try await #require(throws: FixtureError.self) { try await generator.generate(dsn: dsn) }
            #expect(error.code == .database)
            #expect(error.underlying?.sqlState == "23505")
            #expect(error.table == .customers)
            #expect(error.message.contains("building index customers_one_per_currency failed"))
            #expect(error.message.hasSuffix("the legacy schema was left as it was"))
            let after = try await LegacyState.read(connection, dsn)
            #expect(after == before)
            let schemas = try await generatorSchemas(connection)
            #expect(schemas == ["legacy"])
        }
    }

    @Test func withNoLegacySchemaBeforeAFailedGenerationLeavesNone() async throws {
        let broken = try BrokenFixtures(appendingToSchema: "CREATE UNIQUE INDEX customers_one_per_currency ON customers (currency);")
        defer { broken.remove() }
        try await TestDatabase.withConnection { connection, dsn in
            let generator = FixtureGenerator(configuration: .init(customers: 60, seed: 3), fixtures: broken.directory)
            await #expect(throws: FixtureError.self) { try await generator.generate(dsn: dsn) }
            let schemas = try await generatorSchemas(connection)
            #expect(schemas == [])
        }
    }

    @Test func aCopyConnectionLostMidStreamLeavesTheEarlierLegacySchemaAsItWas() async throws {
        let fixtures = try repositoryFixtures()
        try await TestDatabase.withConnection { connection, dsn in
            let before = try await LegacyState.loadReference(connection, dsn)
            let terminated = Recorded()
            let generator = FixtureGenerator(configuration: .init(customers: 60, seed: 4), fixtures: fixtures)
            let error = try await #require(throws: FixtureError.self) {
                try await generator.generate(dsn: dsn) { progress in
                    guard progress.phase == .generating, progress.customersGenerated == 20 else { return }
                    // The backend streaming the invoices dies, as when the server or the network drops it.
                    let copyingInvoices = "query LIKE 'COPY \"\(FixtureGenerator.stagingSchema)\".\"invoices\" %'"
                    terminated.append(terminateGeneratorBackends(dsn, where: copyingInvoices))
                }
            }
            #expect(terminated.values == [1])
            #expect(error.code == .database)
            #expect(error.message.hasSuffix("the legacy schema was left as it was"))
            let after = try await LegacyState.read(connection, dsn)
            #expect(after == before)
            // The generator still had its control connection: it dropped the staging schema.
            let schemas = try await generatorSchemas(connection)
            #expect(schemas == ["legacy"])
        }
    }

    /// What a `kill -9` of the process does to the database: every connection of the generator
    /// ends at once, nothing runs any cleanup.
    @Test func aGenerationThatLosesEveryConnectionLeavesLegacyAndTheNextOneCleansUp() async throws {
        let fixtures = try repositoryFixtures()
        try await TestDatabase.withConnection { connection, dsn in
            let before = try await LegacyState.loadReference(connection, dsn)
            let terminated = Recorded()
            let generator = FixtureGenerator(configuration: .init(customers: 60, seed: 5), fixtures: fixtures)
            let error = try await #require(throws: FixtureError.self) {
                try await generator.generate(dsn: dsn) { progress in
                    guard progress.phase == .generating, progress.customersGenerated == 20 else { return }
                    terminated.append(terminateGeneratorBackends(dsn, where: "true"))
                }
            }
            #expect(error.code == .database)
            // The control connection and the nine COPY connections.
            #expect(terminated.values == [10])
            let after = try await LegacyState.read(connection, dsn)
            #expect(after == before)
            // Nobody was left to drop the staging schema; the next generation does.
            let schemas = try await generatorSchemas(connection)
            #expect(Set(schemas) == ["legacy", FixtureGenerator.stagingSchema])
            let summary = try await generator.generate(dsn: dsn)
            #expect(summary.rowCounts[.customers] == 60)
            let counted = try await connection.withSession { try LegacyRowCounts.count(in: $0) }
            #expect(counted == summary.rowCounts)
            let schemasAfter = try await generatorSchemas(connection)
            #expect(schemasAfter == ["legacy"])
        }
    }

    @Test func cancellingMidStreamLeavesTheEarlierLegacySchemaAsItWas() async throws {
        let fixtures = try repositoryFixtures()
        try await TestDatabase.withConnection { connection, dsn in
            let before = try await LegacyState.loadReference(connection, dsn)
            let generator = FixtureGenerator(configuration: .init(customers: 60, seed: 6), fixtures: fixtures)
            // The generating thread cancels the task itself at customer 20, so the cancellation
            // lands mid-stream whatever the machine's speed — and without waiting, its legacy
            // transactions open, for a cooperative thread to run this test's task.
            let handle = Locked<Task<FixtureGenerator.Summary, any Error>?>(nil)
            let task = Task {
                try await generator.generate(dsn: dsn) { progress in
                    guard progress.phase == .generating, progress.customersGenerated == 20 else { return }
                    // Set just below, by the line after this task's creation.
                    while handle.value == nil { usleep(1_000) }
                    handle.value?.cancel()
                }
            }
            handle.set(task)
            let error = try await #require(throws: FixtureError.self) { try await task.value }
            #expect(error.code == .cancelled)
            #expect(error.message.contains("after 20 customers"))
            #expect(error.message.hasSuffix("the legacy schema was left as it was"))
            let after = try await LegacyState.read(connection, dsn)
            #expect(after == before)
            let schemas = try await generatorSchemas(connection)
            #expect(schemas == ["legacy"])
        }
    }

    @Test func aSecondGenerationIntoTheSameDatabaseIsRefusedAndChangesNothing() async throws {
        let fixtures = try repositoryFixtures()
        try await TestDatabase.withConnection { connection, dsn in
            let before = try await LegacyState.loadReference(connection, dsn)
            // Another generation's lock, held by a session of its own.
            let holder = try await Connection.connect(dsn, applicationName: "ledgerlift-fixture-generate")
            defer { holder.close() }
            let holderPID = try await holder.withSession { session in
                try session.lock(FixtureGenerator.lock)
                return session.backendPID
            }
            let generator = FixtureGenerator(configuration: .init(customers: 20, seed: 1), fixtures: fixtures)
            let error = try await #require(throws: FixtureError.self) { try await generator.generate(dsn: dsn) }
            #expect(error.code == .busy)
            #expect(error.message.contains("(pid \(holderPID), "))
            #expect(error.message.contains("nothing was changed"))
            let after = try await LegacyState.read(connection, dsn)
            #expect(after == before)
            // Once the other generation is done, this one runs.
            try await holder.withSession { _ = try $0.unlock(FixtureGenerator.lock) }
            let summary = try await generator.generate(dsn: dsn)
            #expect(summary.rowCounts[.customers] == 20)
        }
    }
}

/// What "the legacy schema as it was" means: the same schema and tables (their oids) holding
/// the same rows, byte for byte as `pg_dump` writes them.
private struct LegacyState: Equatable {
    let schemaOID: Int64
    let customersOID: Int64
    let dump: Data

    /// Loads the reference seed and reads the state it leaves.
    static func loadReference(_ connection: Connection, _ dsn: String) async throws -> LegacyState {
        _ = try await FixtureLoader(fixtures: try repositoryFixtures()).load(.reference, into: connection)
        return try await read(connection, dsn)
    }

    static func read(_ connection: Connection, _ dsn: String) async throws -> LegacyState {
        let row = try await connection.query(
            "SELECT 'legacy'::regnamespace::oid::bigint, 'legacy.customers'::regclass::oid::bigint").rows[0]
        return LegacyState(
            schemaOID: try row.decode(at: 0, as: Int64.self), customersOID: try row.decode(at: 1, as: Int64.self),
            dump: try await dumpLegacyData(dsn))
    }
}

/// The schemas named `legacy` or used by the generator, sorted.
private func generatorSchemas(_ connection: Connection) async throws -> [String] {
    try await connection.query(
        "SELECT nspname::text FROM pg_namespace WHERE nspname = 'legacy' OR nspname LIKE 'ledgerlift\\_fixture\\_%' ORDER BY 1"
    ).rows.map { try $0.decode(at: 0, as: String.self) }
}

/// Terminates the generator's backends in the database at `dsn` matching `condition` (SQL over
/// `pg_stat_activity`), from the generator's own thread, and returns how many there were.
/// Returns -1 when the terminating session itself failed (the test then fails on the count).
private func terminateGeneratorBackends(_ dsn: String, where condition: String) -> Int {
    do {
        let killer = try Connection.connectBlocking(dsn, applicationName: "ledgerlift-tests")
        defer { killer.close() }
        return try killer.withSessionBlocking { session in
            let sql = """
                SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
                WHERE datname = current_database() AND application_name = 'ledgerlift-fixture-generate' AND (\(condition))
                """
            return Int(try session.query(sql).rows[0].decode(at: 0, as: Int64.self))
        }
    } catch {
        return -1
    }
}

/// Values recorded from the generator's thread.
private final class Recorded: Sendable {
    private let state = Mutex<[Int]>([])
    func append(_ value: Int) { state.withLock { $0.append(value) } }
    var values: [Int] { state.withLock { $0 } }
}

/// A copy of the repository's fixtures whose `schema.sql` has something appended.
private struct BrokenFixtures {
    let directory: FixtureDirectory

    init(appendingToSchema extra: String) throws {
        let fixtures = try repositoryFixtures()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerlift-broken-\(UUID())")
        for file in FixtureDirectory.File.allCases {
            let target = root.appendingPathComponent(file.rawValue)
            try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
            var text = try fixtures.contents(of: file)
            if file == .schema { text += "\n" + extra + "\n" }
            try text.write(to: target, atomically: true, encoding: .utf8)
        }
        directory = try FixtureDirectory(validating: root)
    }

    func remove() { try? FileManager.default.removeItem(at: directory.url) }
}
