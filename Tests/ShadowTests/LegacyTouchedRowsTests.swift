import Billing
import Mapping
import Postgres
import Shadow
import TestSupport
import Testing

@testable import Simulator

/// ``LegacyTouchedRows`` read inside a legacy transaction, before its COMMIT, gives exactly what
/// comparing full canonical snapshots of legacy before and after the transaction gives (as the
/// parity harness, Tests/CommandsTests/LegacyParityHarness.swift, compares them).
@Suite struct LegacyTouchedRowsTests {
    /// Operations done first so each kind has something to act on (LegacyParityTests' list).
    static let preparations: [OperationKind: [OperationKind]] = [
        .finalizeInvoice: [.draftInvoice, .draftInvoice],
        .discardDraft: [.draftInvoice, .draftInvoice],
        .paymentRetried: [.paymentFailed, .paymentFailed],
        .markUnpaid: [.paymentFailed, .paymentFailed],
        .refundFull: [.paymentSucceeded],
        .refundPartial: [.paymentSucceeded],
        .creditNote: [.paymentSucceeded],
    ]

    /// Every legacy canonical row, by (entity, key), in one snapshot (quarantined rows left out).
    static func snapshot(_ connection: Connection, _ sources: [EntitySource]) async throws -> [LegacyRows.Key:
        CanonicalRow]
    {
        try await connection.withSession { session in
            try session.transaction(.init(isolation: .repeatableRead, readOnly: true)) { tx in
                var rows = [LegacyRows.Key: CanonicalRow]()
                for source in sources {
                    for row in try tx.query(source.query).rows {
                        if case .canonical(let canonical, _, _, _) = source.convert(row) {
                            rows[LegacyRows.Key(source.entity, canonical.key)] = canonical
                        }
                    }
                }
                return rows
            }
        }
    }

    /// What one operation's transaction saw: the journal entry, the touched rows read before
    /// COMMIT, and the transaction's own xid.
    struct Performed: Sendable {
        var entry: JournalEntry?
        var rows: LegacyTouchedRows.Rows?
        var xid: UInt64?
    }

    /// Performs `operation` as ``LegacySQLApp`` does (one transaction on `connection`), reading
    /// the touched rows after its writes and before its COMMIT.
    static func perform(
        _ operation: BillingOperation, clock: BusinessClock, touched: LegacyTouchedRows, on connection: Connection,
        committed: Connection
    ) async throws -> Performed {
        try await connection.withSession { session in
            try session.transaction { tx in
                var run = LegacyOperationRun(session: tx, operation: operation, clock: clock)
                guard let entry = try run.perform() else { return Performed() }
                let rows = try touched.read(in: tx, committed: committed)
                let xid = UInt64(
                    try tx.query("SELECT pg_current_xact_id()::text").rows[0].decode(at: 0, as: String.self))
                return Performed(entry: entry, rows: rows, xid: xid)
            }
        }
    }

    static func legacyConnection(_ dsn: String) async throws -> Connection {
        let connection = try await Connection.connect(dsn)
        try await connection.withSession { try $0.setting("search_path", to: "legacy, pg_catalog") }
        return connection
    }

    @Test func theTouchedRowsOfEveryOperationKindAreTheDiffOfFullSnapshots() async throws {
        try await withReferenceLegacy { admin, dsn in
            let mapping = try referenceMapping()
            _ = try await install(admin, mapping)
            let sources = mapping.entitySources()
            let touched = try await admin.withSession { try LegacyTouchedRows(mapping: mapping, preparedOn: $0) }
            let worker = try await Self.legacyConnection(dsn)
            defer { worker.close() }
            let committed = try await Connection.connect(dsn)
            defer { committed.close() }
            let clock = BusinessClock(.data(start: try await LegacySQLApp.latestRecordedMoment(on: admin)))
            var id: UInt64 = 0
            var checked = [OperationKind: Int]()
            for kind in OperationKind.allCases {
                for operationKind in (Self.preparations[kind] ?? []) + Array(repeating: kind, count: 3) {
                    id += 1
                    let operation = BillingOperation(id: id, kind: operationKind, seed: SimulationRandom.derive(61, id))
                    let before = try await Self.snapshot(admin, sources)
                    let performed = try await Self.perform(
                        operation, clock: clock, touched: touched, on: worker, committed: committed)
                    let after = try await Self.snapshot(admin, sources)
                    guard performed.entry != nil, let rows = performed.rows else {
                        #expect(before == after, "op \(id) \(operationKind.rawValue) did nothing yet changed rows")
                        continue
                    }
                    let label = "op \(id) \(operationKind.rawValue)"
                    #expect(rows.xid == performed.xid, "\(label)")
                    #expect(rows.xid != 0, "\(label)")
                    #expect(rows.quarantined.isEmpty, "\(label): \(rows.quarantined)")
                    #expect(rows.truncated.isEmpty, "\(label)")
                    var touchedKeys = Set<LegacyRows.Key>()
                    for (entity, keys) in rows.keys {
                        for key in keys { touchedKeys.insert(LegacyRows.Key(entity, key)) }
                    }
                    // Each touched key's rows are the snapshots' rows.
                    for key in touchedKeys.sorted() {
                        #expect(rows.before[key.entity]?[key.key] == before[key], "\(label): before \(key)")
                        #expect(rows.after[key.entity]?[key.key] == after[key], "\(label): after \(key)")
                    }
                    // And the touched keys whose rows differ are exactly the snapshots' diff.
                    let changed = Set(before.keys).union(after.keys).filter { before[$0] != after[$0] }
                    let touchedChanged = touchedKeys.filter { before[$0] != after[$0] }
                    #expect(touchedChanged == changed, "\(label): missed \(changed.subtracting(touchedKeys).sorted())")
                    #expect(!changed.isEmpty, "\(label) wrote no canonical row")
                    if operationKind == kind { checked[kind, default: 0] += 1 }
                }
                #expect(checked[kind, default: 0] > 0, "the fixture gave \(kind.rawValue) nothing to act on")
            }
        }
    }

    /// A read that fails inside the legacy transaction (here: the outbox renamed away in that
    /// same transaction) is rolled back to its savepoint; the transaction commits its writes.
    @Test func aFailedReadLeavesTheLegacyTransactionUsable() async throws {
        try await withReferenceLegacy { admin, dsn in
            let mapping = try referenceMapping()
            _ = try await install(admin, mapping)
            let touched = try await admin.withSession { try LegacyTouchedRows(mapping: mapping, preparedOn: $0) }
            let worker = try await Self.legacyConnection(dsn)
            defer { worker.close() }
            let committed = try await Connection.connect(dsn)
            defer { committed.close() }
            let customer = try await admin.query("SELECT min(id) FROM legacy.customers WHERE deleted_at IS NULL").rows[
                0
            ]
            .decode(at: 0, as: Int64.self)
            let failure: LegacyTouchedRowsError? = try await worker.withSession { session in
                try session.transaction { tx in
                    try tx.execute("UPDATE legacy.customers SET name = 'Touched Rows' WHERE id = $1", [customer])
                    try tx.execute("ALTER TABLE ledgerlift_capture.changes RENAME TO changes_elsewhere")
                    var failure: LegacyTouchedRowsError?
                    do {
                        _ = try touched.read(in: tx, committed: committed)
                    } catch let error as LegacyTouchedRowsError {
                        failure = error
                    }
                    // Still usable: this statement would fail in an aborted transaction.
                    try tx.execute("ALTER TABLE ledgerlift_capture.changes_elsewhere RENAME TO changes")
                    return failure
                }
            }
            #expect(failure?.step == .changes)
            let name = try await admin.query("SELECT name FROM legacy.customers WHERE id = $1", [customer]).rows[0]
                .decode(at: 0, as: String?.self)
            #expect(name == "Touched Rows")
        }
    }

    /// The before rows need the second connection; when it is gone, the read fails at `before`
    /// and the legacy transaction still commits.
    @Test func aLostSecondConnectionFailsAtBeforeAndTheTransactionCommits() async throws {
        try await withReferenceLegacy { admin, dsn in
            let mapping = try referenceMapping()
            _ = try await install(admin, mapping)
            let touched = try await admin.withSession { try LegacyTouchedRows(mapping: mapping, preparedOn: $0) }
            let worker = try await Self.legacyConnection(dsn)
            defer { worker.close() }
            let committed = try await Connection.connect(dsn)
            committed.close()
            let customer = try await admin.query("SELECT min(id) FROM legacy.customers WHERE deleted_at IS NULL").rows[
                0
            ]
            .decode(at: 0, as: Int64.self)
            let failure: LegacyTouchedRowsError? = try await worker.withSession { session in
                try session.transaction { tx -> LegacyTouchedRowsError? in
                    try tx.execute("UPDATE legacy.customers SET name = 'Second Connection' WHERE id = $1", [customer])
                    do {
                        _ = try touched.read(in: tx, committed: committed)
                        return nil
                    } catch let error as LegacyTouchedRowsError {
                        return error
                    }
                }
            }
            #expect(failure?.step == .before)
            let name = try await admin.query("SELECT name FROM legacy.customers WHERE id = $1", [customer]).rows[0]
                .decode(at: 0, as: String?.self)
            #expect(name == "Second Connection")
        }
    }

    /// A transaction that wrote nothing has no xid, and asking does not give it one.
    @Test func aTransactionThatWroteNothingHasNoRows() async throws {
        try await withReferenceLegacy { admin, dsn in
            let mapping = try referenceMapping()
            _ = try await install(admin, mapping)
            let touched = try await admin.withSession { try LegacyTouchedRows(mapping: mapping, preparedOn: $0) }
            let worker = try await Self.legacyConnection(dsn)
            defer { worker.close() }
            let committed = try await Connection.connect(dsn)
            defer { committed.close() }
            let (rows, assigned) = try await worker.withSession { session in
                try session.transaction { tx in
                    let rows = try touched.read(in: tx, committed: committed)
                    let assigned = try tx.query("SELECT pg_current_xact_id_if_assigned() IS NOT NULL").rows[0]
                        .decode(at: 0, as: Bool.self)
                    return (rows, assigned)
                }
            }
            #expect(rows == LegacyTouchedRows.Rows(xid: 0))
            #expect(!assigned)
        }
    }

    /// Without capture installed there is nothing to read keys from: preparing refuses, naming
    /// the command that installs it.
    @Test func preparingWithoutCaptureRefuses() async throws {
        try await withReferenceLegacy { admin, _ in
            let mapping = try referenceMapping()
            let error = await #expect(throws: LegacyTouchedRowsError.self) {
                try await admin.withSession { try LegacyTouchedRows(mapping: mapping, preparedOn: $0) }
            }
            #expect(error?.step == .prepare)
            #expect(error?.detail.contains("ledgerlift shadow install") == true)
        }
    }
}
