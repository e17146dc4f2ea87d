import Billing
import EventStore
import Postgres

/// Reads the current values of ``JournalFields`` for rows of one entity, in canonical text
/// form: one side of `ledgerlift simulate verify`.
public protocol JournalStateReader: Sendable {
    /// The rows among `keys` that exist, by key, each with the values of
    /// ``JournalFields/fields(_:)`` in order (`nil`: NULL). One query per call.
    func read(_ entity: Entity, keys: [String], in session: Session) throws -> [String: [String?]]
}

/// Proves that every write the simulated application acknowledged is in the final system
/// (`ledgerlift simulate verify`, docs/journal.md).
///
/// 1. The journal is read as a stream and folded (``JournalExpectations``): per row, per
///    field, the value of the last acknowledged operation that set it in (`at`, `op`) order; a
///    row whose last existence-stating effect is a delete must be absent. Operations prepared
///    and never acknowledged are in doubt: a value one of them wrote after the required one is
///    accepted too, and their deletes and creations explain an absent or present row.
/// 2. The expected rows are looked up entity by entity, a few thousand keys per query
///    (`WHERE key = ANY($1)`), in one `REPEATABLE READ READ ONLY` transaction, so every batch
///    sees the same snapshot: against the legacy tables (``LegacyStateReader``) or, once the
///    projection has caught up, the ledger's read models (``StoreStateReader``).
/// 3. Each expectation that fails is one ``JournalFailure``: LOST, ALTERED or RESURRECTED.
public struct JournalVerifier: Sendable {
    /// What to check against.
    public enum Target: Sendable {
        /// The reference schema's tables in `schema`.
        case legacy(dsn: String, schema: String = "legacy")
        /// The read models in `readSchema`, fed from the event store in `storeSchema`; waits at
        /// most `catchUpTimeout` for the projection to catch up first.
        case store(
            dsn: String, storeSchema: String = "ledgerlift", readSchema: String = "ledgerlift_read",
            catchUpTimeout: Duration = .seconds(30))
    }

    /// What the verifier is doing, for a progress display.
    public enum Progress: Sendable {
        case journalRead(lines: Int, rows: Int)
        case waitingForProjection
        case entityChecked(Entity, rows: Int)
    }

    public var journal: String
    public var target: Target
    /// Failures listed at most (all are counted).
    public var maxRows: Int
    /// Keys per query.
    public var batchSize: Int
    public var progress: (@Sendable (Progress) -> Void)?

    public init(
        journal: String, target: Target, maxRows: Int = 100, batchSize: Int = 2000,
        progress: (@Sendable (Progress) -> Void)? = nil
    ) {
        self.journal = journal
        self.target = target
        self.maxRows = maxRows
        self.batchSize = max(1, batchSize)
        self.progress = progress
    }

    /// Reads, folds and checks the journal.
    ///
    /// - Returns: the verification; ``JournalVerification/exitCode`` is 0 when every effect is
    ///   present, 1 otherwise.
    /// - Throws: ``JournalError`` when it could not verify (exit 2): an unreadable or malformed
    ///   journal, an unreachable database, missing tables.
    public func run() async throws(JournalError) -> JournalVerification {
        let clock = ContinuousClock()
        let started = clock.now
        var report: JournalVerification
        let dsn: String
        let reader: any JournalStateReader
        switch target {
        case .legacy(let legacyDSN, let schema):
            dsn = legacyDSN
            reader = LegacyStateReader(schema: schema)
            report = JournalVerification(
                journal: journal, target: .legacy, database: ConnectionString.masked(dsn), schema: schema,
                maxRows: maxRows)
        case .store(let storeDSN, _, let readSchema, _):
            dsn = storeDSN
            reader = StoreStateReader(readSchema: readSchema)
            report = JournalVerification(
                journal: journal, target: .store, database: ConnectionString.masked(dsn), schema: readSchema,
                maxRows: maxRows)
        }

        var expectations = JournalExpectations()
        let summary = try JournalReader(path: journal).forEachRecord { record, line throws(JournalError) in
            try expectations.read(record, line: line)
        }
        try expectations.finish()
        report.lines = summary.lines
        report.truncated = summary.truncated
        report.operations = expectations.operations
        report.inDoubt = expectations.inDoubt
        report.effects = expectations.effects
        report.rows = expectations.rowCount
        progress?(.journalRead(lines: summary.lines, rows: report.rows))
        if expectations.inDoubt > 0 {
            report.notes.append(
                "\(expectations.inDoubt) operation\(expectations.inDoubt == 1 ? "" : "s") in doubt: prepared, not acknowledged "
                    + "— their effects may or may not be present")
        }
        if summary.lines == 0 {
            report.notes.append("the journal holds no acknowledged operation: there was nothing to check")
        }

        let side = report.target == .legacy ? "the legacy database" : "the store"
        let connection: Connection
        do {
            connection = try await Connection.connect(dsn, applicationName: "ledgerlift simulate verify")
        } catch {
            // libpq's message names the masked DSN, never the password.
            throw .cannotCheck("cannot connect to \(side): \(error)")
        }
        defer { connection.close() }

        var storeTables = [String]()
        if case .store(_, let storeSchema, let readSchema, let timeout) = target {
            let store = StoreStateReader(readSchema: readSchema)
            do {
                let missing = try await connection.withSession { try store.missingTables(in: $0) }
                guard missing.isEmpty else {
                    let what =
                        missing.count == store.tables.count
                        ? "no read models in schema \(quoteIdentifier(readSchema))"
                        : "no read model \(missing.joined(separator: ", "))"
                    throw JournalError.cannotCheck(
                        what + ": build the read models with `ledgerlift project --store DSN` first")
                }
                let progress = progress
                let caughtUp = try await store.waitForProjection(
                    on: connection, store: EventStore(schema: storeSchema), timeout: timeout,
                    waiting: { progress?(.waitingForProjection) })
                if !caughtUp {
                    report.notes.append(
                        "the projection had not caught up with the event store after \(timeout): rows were checked "
                            + "anyway, and a lost or altered write may be an event not yet projected")
                }
            } catch let error as JournalError {
                throw error
            } catch {
                throw .cannotCheck("cannot read the read models in \(side): \(error)")
            }
            storeTables = store.tables
        }

        let lockTables = storeTables
        let outcome: Outcome
        do {
            outcome = try await connection.withSession { [expectations, batchSize, maxRows, progress] session in
                try session.transaction(.init(isolation: .repeatableRead, readOnly: true)) { tx in
                    // A blue/green swap of the read models mid-check would make later batches
                    // read the new tables under the old snapshot; the share lock makes the swap
                    // wait (it retries) instead.
                    if !lockTables.isEmpty {
                        try tx.execute("LOCK TABLE \(lockTables.joined(separator: ", ")) IN ACCESS SHARE MODE")
                    }
                    return try Self.check(
                        expectations, reader: reader, batchSize: batchSize, maxRows: maxRows, progress: progress, in: tx
                    )
                }
            }
        } catch {
            throw .cannotCheck("cannot read \(side): \(error)")
        }
        report.rowsChecked = outcome.rowsChecked
        report.deletedRowsChecked = outcome.deletedRowsChecked
        report.fieldsChecked = outcome.fieldsChecked
        report.lost = outcome.lost
        report.alteredFields = outcome.alteredFields
        report.alteredRows = outcome.alteredRows
        report.resurrected = outcome.resurrected
        report.failures = outcome.failures.sorted
        report.duration = clock.now - started
        return report
    }

    /// What checking found.
    struct Outcome: Sendable {
        var rowsChecked = 0
        var deletedRowsChecked = 0
        var fieldsChecked = 0
        var lost = 0
        var alteredFields = 0
        var alteredRows = 0
        var resurrected = 0
        var failures: FailureList
    }

    /// Checks every expected row, entity by entity, `batchSize` keys per query.
    static func check(
        _ expectations: JournalExpectations, reader: any JournalStateReader, batchSize: Int, maxRows: Int,
        progress: (@Sendable (Progress) -> Void)?, in session: Session
    ) throws -> Outcome {
        var outcome = Outcome(failures: FailureList(limit: maxRows))
        for entity in JournalFields.entities {
            guard let rows = expectations.rows[entity] else { continue }
            let fields = JournalFields.fields(entity)
            // Rows only in-doubt operations touched: nothing about them is required.
            let keys = rows.filter { $0.value.isRequired }.keys.sorted(by: Self.keyOrder)
            var start = 0
            while start < keys.count {
                let batch = Array(keys[start..<min(start + batchSize, keys.count)])
                start += batch.count
                let found = try reader.read(entity, keys: batch, in: session)
                for key in batch {
                    let expected = rows[key]!
                    outcome.rowsChecked += 1
                    let actual = found[key]
                    if expected.mustBeAbsent {
                        outcome.deletedRowsChecked += 1
                        if actual != nil && !expected.presenceExplained {
                            outcome.resurrected += 1
                            outcome.failures.add(
                                JournalFailure(
                                    kind: .resurrected, entity: entity, key: key, field: nil, expected: nil,
                                    actual: nil,
                                    ops: [expected.deletion!], summary: nil), order: 0)
                        }
                        continue
                    }
                    guard let actual else {
                        // An in-doubt delete after the row's last acknowledged effect may have committed.
                        if expected.absenceExplained { continue }
                        outcome.lost += 1
                        outcome.failures.add(
                            JournalFailure(
                                kind: .lost, entity: entity, key: key, field: nil, expected: nil, actual: nil,
                                ops: expected.writers, summary: expected.firstSummary), order: 0)
                        continue
                    }
                    var altered = false
                    for (index, slot) in expected.expectedFields {
                        outcome.fieldsChecked += 1
                        guard actual[index] != slot.value, !expected.allows(actual[index], for: slot) else { continue }
                        altered = true
                        outcome.alteredFields += 1
                        outcome.failures.add(
                            JournalFailure(
                                kind: .altered, entity: entity, key: key, field: fields[index].name,
                                expected: slot.value,
                                actual: actual[index], ops: [slot.stamp], summary: nil), order: index + 1)
                    }
                    if altered { outcome.alteredRows += 1 }
                }
            }
            progress?(.entityChecked(entity, rows: keys.count))
        }
        return outcome
    }

    /// Keys in a readable order: numeric keys by value (`9` before `10`), others by their
    /// UTF-8 bytes after them.
    static func keyOrder(_ a: String, _ b: String) -> Bool {
        let aNumeric = !a.isEmpty && a.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
        let bNumeric = !b.isEmpty && b.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
        switch (aNumeric, bNumeric) {
        case (true, true):
            return a.utf8.count != b.utf8.count ? a.utf8.count < b.utf8.count : a.utf8.lexicographicallyPrecedes(b.utf8)
        case (true, false): return true
        case (false, true): return false
        case (false, false): return a.utf8.lexicographicallyPrecedes(b.utf8)
        }
    }
}

/// The failures to list: the `limit` first by (op, entity, key, field), whatever their number
/// (a store that lost everything must not hold every failure in memory).
struct FailureList: Sendable {
    let limit: Int
    private var items = [(failure: JournalFailure, rank: Rank)]()

    struct Rank: Comparable, Sendable {
        var op: UInt64
        var entity: Int
        var key: String
        var field: Int

        static func < (a: Rank, b: Rank) -> Bool {
            if a.op != b.op { return a.op < b.op }
            if a.entity != b.entity { return a.entity < b.entity }
            if a.key != b.key { return JournalVerifier.keyOrder(a.key, b.key) }
            return a.field < b.field
        }
    }

    init(limit: Int) { self.limit = max(0, limit) }

    mutating func add(_ failure: JournalFailure, order field: Int) {
        guard limit > 0 else { return }
        let entity = JournalFields.entities.firstIndex(of: failure.entity) ?? 0
        items.append((failure, Rank(op: failure.op, entity: entity, key: failure.key, field: field)))
        if items.count >= 2 * limit + 1024 { trim() }
    }

    private mutating func trim() {
        items.sort { $0.rank < $1.rank }
        items.removeLast(max(0, items.count - limit))
    }

    /// The kept failures, in order.
    var sorted: [JournalFailure] {
        var copy = self
        copy.trim()
        return copy.items.map(\.failure)
    }
}
