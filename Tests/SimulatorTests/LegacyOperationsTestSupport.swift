import EventStore
import Fixtures
import Foundation
import Mapping
import Migration
import Postgres
import Synchronization
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
    static func operation(_ id: UInt64, seed: UInt64, mix: OperationMix = .standard) -> BillingOperation {
        let opSeed = SimulationRandom.derive(seed, id)
        var random = SimulationRandom(seed: opSeed)
        return BillingOperation(id: id, kind: mix.kind(for: random.next()), seed: opSeed)
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
    static func single(_ kind: OperationKind, id: UInt64 = 1, seed: UInt64 = 7) -> BillingOperation {
        BillingOperation(id: id, kind: kind, seed: SimulationRandom.derive(seed, id))
    }
}

/// Reads back, in the legacy tables, what a journal says must be visible: each effect's fields
/// in canonical form (fixtures/reference/mapping.yaml's meaning), the journal folded in order.
enum LegacyEffectReader {
    private static let iso = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"
    private static func minor(_ column: String, _ currency: String) -> String {
        "(\(column) * 10 ^ CASE btrim(\(currency)) WHEN 'JPY' THEN 0 WHEN 'KWD' THEN 3 ELSE 2 END)::bigint::text"
    }
    private static func time(_ column: String) -> String { "to_char(\(column), \(iso))" }
    private static func bool(_ column: String) -> String { "CASE WHEN \(column) THEN 'true' ELSE 'false' END" }

    static let queries: [String: String] = [
        "customer": """
            SELECT email, name, btrim(currency) AS currency, \(time("deleted_at")) AS archived_at FROM legacy.customers WHERE id = $1
            """,
        "subscription": """
            SELECT customer_id::text, plan_id::text, status, quantity::text, \(bool("cancel_at_period_end")) AS cancel_at_period_end,
                   \(time("canceled_at")) AS canceled_at, \(time("ended_at")) AS ended_at
            FROM legacy.subscriptions WHERE id = $1
            """,
        "invoice": """
            SELECT i.customer_id::text, i.subscription_id::text,
                   (ARRAY['draft','open','paid','void','uncollectible'])[i.status + 1] AS status, i.number,
                   btrim(COALESCE(i.currency, c.currency)) AS currency,
                   \(minor("i.subtotal", "COALESCE(i.currency, c.currency)")) AS subtotal,
                   \(minor("i.discount", "COALESCE(i.currency, c.currency)")) AS discount,
                   \(minor("i.tax", "COALESCE(i.currency, c.currency)")) AS tax,
                   \(minor("i.total", "COALESCE(i.currency, c.currency)")) AS total,
                   \(minor("i.amount_paid", "COALESCE(i.currency, c.currency)")) AS amount_paid,
                   \(minor("i.amount_due", "COALESCE(i.currency, c.currency)")) AS amount_due,
                   \(time("i.finalized_at")) AS finalized_at, \(time("i.paid_at")) AS paid_at, \(time("i.voided_at")) AS voided_at
            FROM legacy.invoices i JOIN legacy.customers c ON c.id = i.customer_id WHERE i.id = $1
            """,
        "invoice_line": """
            SELECT l.invoice_id::text, l.kind, l.quantity::text, \(minor("l.amount", "COALESCE(i.currency, c.currency)")) AS amount
            FROM legacy.invoice_line_items l JOIN legacy.invoices i ON i.id = l.invoice_id
            JOIN legacy.customers c ON c.id = i.customer_id WHERE l.id = $1
            """,
        "payment": """
            SELECT customer_id::text, invoice_id::text, status, \(minor("amount", "currency")) AS amount, btrim(currency) AS currency,
                   failure_code
            FROM legacy.payments WHERE id = $1
            """,
        "refund": """
            SELECT r.payment_id::text, \(minor("r.amount", "p.currency")) AS amount, r.status
            FROM legacy.refunds r JOIN legacy.payments p ON p.id = r.payment_id WHERE r.id = $1
            """,
        "credit_note": """
            SELECT n.customer_id::text, n.invoice_id::text, n.status, \(minor("n.total", "COALESCE(i.currency, c.currency)")) AS total,
                   \(minor("n.balance_remaining", "COALESCE(i.currency, c.currency)")) AS balance_remaining
            FROM legacy.credit_notes n JOIN legacy.invoices i ON i.id = n.invoice_id
            JOIN legacy.customers c ON c.id = n.customer_id WHERE n.id = $1
            """,
        "balance_transaction": """
            SELECT t.customer_id::text, t.type, \(minor("t.amount", "COALESCE(t.currency, c.currency)")) AS amount,
                   btrim(COALESCE(t.currency, c.currency)) AS currency, t.invoice_id::text, t.credit_note_id::text
            FROM legacy.customer_balance_transactions t JOIN legacy.customers c ON c.id = t.customer_id WHERE t.id = $1
            """,
    ]

    /// The differences between the folded journal and the legacy rows (empty: all visible).
    static func mismatches(_ journal: [JournalEntry], on connection: Connection) async throws -> [String] {
        var folded: [String: (entity: String, key: String, fields: [String: String?], deleted: Bool)] = [:]
        var order: [String] = []
        for entry in journal {
            for effect in entry.effects {
                let id = effect.entity + " " + effect.key
                if folded[id] == nil { order.append(id) }
                var current = folded[id] ?? (effect.entity, effect.key, [:], false)
                current.deleted = effect.deleted
                for (name, value) in effect.fields { current.fields[name] = value }
                folded[id] = current
            }
        }
        var out: [String] = []
        for id in order {
            let expected = folded[id]!
            guard let sql = queries[expected.entity], let key = Int64(expected.key) else {
                out.append("\(id): unknown entity or key")
                continue
            }
            let row = try await connection.query(sql, [key]).rows.first
            if expected.deleted {
                if row != nil { out.append("\(id): should be deleted") }
                continue
            }
            guard let row else {
                out.append("\(id): missing")
                continue
            }
            for (name, value) in expected.fields.sorted(by: { $0.key < $1.key }) where row[name] != value {
                out.append("\(id).\(name): journal \(value ?? "NULL"), legacy \(row[name] ?? "NULL")")
            }
        }
        return out
    }
}

extension LegacyTestSupport {
    /// Runs operations 1…`count` of a seeded run on `workers` connections at once, each taking
    /// the next operation id, retrying an operation that hit a lock timeout or a deadlock, and
    /// returns the journal in (time, op) order.
    static func runConcurrently(
        dsn: String, clock: BusinessClock, seed: UInt64, count: UInt64, workers: Int
    ) async throws -> [JournalEntry] {
        let next = OperationCounter()
        let journal = try await withThrowingTaskGroup(of: [JournalEntry].self) { group in
            for _ in 0..<workers {
                group.addTask {
                    let worker = try await LegacySQLApp(dsn: dsn, lockTimeout: .milliseconds(200)).makeWorker()
                    defer { worker.close() }
                    var entries: [JournalEntry] = []
                    while let id = next.take(upTo: count) {
                        let op = operation(id, seed: seed)
                        for attempt in 1...50 {
                            do {
                                if let entry = try await worker.perform(op, clock: clock) { entries.append(entry) }
                                break
                            } catch let error as SimulatorError where ["55P03", "40P01"].contains(error.sqlState ?? "") && attempt < 50 {
                                try await Task.sleep(for: .milliseconds(attempt * 3))
                            }
                        }
                    }
                    return entries
                }
            }
            var all: [JournalEntry] = []
            for try await entries in group { all += entries }
            return all
        }
        return journal.sorted { ($0.at, $0.op) < ($1.at, $1.op) }
    }
}

/// The next operation id, shared by concurrent workers.
final class OperationCounter: Sendable {
    private let value = Mutex<UInt64>(0)

    func take(upTo limit: UInt64) -> UInt64? {
        value.withLock { value in
            guard value < limit else { return nil }
            value += 1
            return value
        }
    }
}
