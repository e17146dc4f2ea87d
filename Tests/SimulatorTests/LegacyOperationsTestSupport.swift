import EventStore
import Fixtures
import Foundation
import Mapping
import Migration
import Postgres
import TestSupport

@testable import Simulator

/// Loading fixtures, running operations one after the other, and reading back what they did,
/// for the legacy application's tests.
enum LegacyTestSupport {
    static func repositoryRoot(_ file: String = #filePath) throws -> URL {
        var directory = URL(fileURLWithPath: file).deletingLastPathComponent()
        while directory.path != "/" {
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) { return directory }
            directory = directory.deletingLastPathComponent()
        }
        throw FixtureError(code: .fixturesNotFound, message: "no Package.swift above \(file)")
    }

    static func fixtures() throws -> FixtureDirectory {
        try FixtureDirectory(validating: try repositoryRoot().appendingPathComponent("fixtures", isDirectory: true))
    }

    /// A fresh database holding the reference seed.
    static func withReference<T>(
        _ label: String = #function, _ body: (_ connection: Connection, _ dsn: String) async throws -> T
    ) async throws -> T {
        let loader = FixtureLoader(fixtures: try fixtures())
        return try await TestDatabase.withConnection(label) { connection, dsn in
            _ = try await loader.load(.reference, into: connection)
            return try await body(connection, dsn)
        }
    }

    /// A fresh database holding `customers` generated customers.
    static func withGenerated<T>(
        customers: Int, seed: UInt64, _ label: String = #function,
        _ body: (_ connection: Connection, _ dsn: String) async throws -> T
    ) async throws -> T {
        try await TestDatabase.withConnection(label) { connection, dsn in
            let generator = FixtureGenerator(
                configuration: .init(customers: customers, seed: seed), fixtures: try fixtures())
            _ = try await generator.generate(dsn: dsn)
            return try await body(connection, dsn)
        }
    }

    /// The data clock a simulation on `connection`'s data starts with.
    static func dataClock(_ connection: Connection) async throws -> BusinessClock {
        BusinessClock(.data(start: try await LegacySQLApp.latestRecordedMoment(on: connection)))
    }

    /// Operation `id` of a run seeded `seed`: its seed derived from the run's, its kind drawn
    /// from the mix with the first draw of its own stream.
    static func operation(_ id: UInt64, seed: UInt64, mix: OperationMix = .standard) -> Simulator.Operation {
        let opSeed = SimulationRandom.derive(seed, id)
        var random = SimulationRandom(seed: opSeed)
        return Simulator.Operation(id: id, kind: mix.kind(for: random.next()), seed: opSeed)
    }

    /// Runs operations 1…`count` of a seeded run one after the other on one worker and returns
    /// the journal (acknowledged operations only) and how many did nothing.
    static func runSequentially(
        dsn: String, clock: BusinessClock, seed: UInt64, count: UInt64, mix: OperationMix = .standard
    ) async throws -> (journal: [JournalEntry], idle: [OperationKind: Int]) {
        let worker = try await LegacySQLApp(dsn: dsn).makeWorker()
        defer { worker.close() }
        var journal: [JournalEntry] = []
        var idle: [OperationKind: Int] = [:]
        for id in 1...count {
            let op = operation(id, seed: seed, mix: mix)
            if let entry = try await worker.perform(op, clock: clock) {
                journal.append(entry)
            } else {
                idle[op.kind, default: 0] += 1
            }
        }
        return (journal, idle)
    }

    /// The violations of checks.sql, C18's window ending just after the clock's last time.
    static func violations(_ connection: Connection, clock: BusinessClock) async throws -> [FixtureCheckViolation] {
        let suite = try FixtureCheckSuite(fixtures: try fixtures())
        let end = PostgresTimestamp(microsecondsSinceEpoch: clock.current.microsecondsSinceEpoch + 1_000_000)
        return try await connection.withSession { try suite.run(in: $0, windowEnd: end) }.flatMap(\.violations)
    }

    /// Backfills the legacy database at `dsn` with the reference mapping into a fresh store and
    /// returns the quarantined rows (`entity key: reason`), after checking the mapping is clean.
    static func quarantinedByBackfill(_ dsn: String, _ label: String = #function) async throws -> (clean: Bool, quarantined: [String]) {
        let mapping = try MappingFile.load(path: try repositoryRoot().appendingPathComponent("fixtures/reference/mapping.yaml").path)
        let legacy = try await Connection.connect(dsn)
        let report = try await MappingChecker(mapping).check(legacy)
        legacy.close()
        return try await TestDatabase.withConnection(label + "_store") { store, storeDSN in
            try await store.withSession { try EventStore().migrate($0) }
            _ = try await Backfill(.init(legacyDSN: dsn, storeDSN: storeDSN, mapping: mapping, workers: 2, batchEvents: 500)).run()
            let rows = try await store.query(
                "SELECT entity || ' ' || entity_key || ': ' || reason FROM ledgerlift.quarantine ORDER BY 1")
            return (report.isClean, try rows.rows.map { try $0.decode(at: 0, as: String.self) })
        }
    }

    /// Every legacy row as text, table by table in id order: to compare two runs.
    static func legacyRows(_ connection: Connection) async throws -> [String] {
        let tables = [
            "customers", "subscriptions", "subscription_history", "invoices", "invoice_line_items", "payments", "refunds",
            "credit_notes", "customer_balance_transactions",
        ]
        var out: [String] = []
        for table in tables {
            let rows = try await connection.query("SELECT t::text FROM legacy.\(table) t ORDER BY id")
            out += try rows.rows.map { table + " " + (try $0.decode(at: 0, as: String.self)) }
        }
        return out
    }

    /// One row of `sql` as text columns.
    static func row(_ connection: Connection, _ sql: String, _ parameters: [(any PostgresEncodable)?] = []) async throws -> [String?] {
        guard let row = try await connection.query(sql, parameters).rows.first else { return [] }
        return row.values
    }

    /// The first operation of a run seeded `seed` (ids from 1) whose kind is `kind`, with the
    /// single-kind mix: an operation of that kind with a seed of its own.
    static func single(_ kind: OperationKind, id: UInt64 = 1, seed: UInt64 = 7) -> Simulator.Operation {
        Simulator.Operation(id: id, kind: kind, seed: SimulationRandom.derive(seed, id))
    }
}
