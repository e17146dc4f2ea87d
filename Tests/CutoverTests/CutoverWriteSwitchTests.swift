import Billing
import Commands
@testable import Cutover
import EventStore
import Foundation
import Mapping
import Postgres
import TestSupport
import Testing

/// The write switch's legacy half on real databases: the lock, the drain, the re-verification,
/// the guard, all in one legacy transaction — so a failure leaves legacy untouched and the
/// state `reads_switched`, and a success leaves legacy guarded and writes routed to the ledger.
@Suite("Cutover: the write switch")
struct CutoverWriteSwitchTests {
    /// A cutover at `reads_switched` on the reference fixture: capture, backfill, tailer, two
    /// clean verifications, the read switch (recorded directly: these tests are about the
    /// write switch, and the command's path to here is CutoverCommandTests').
    static func atReadsSwitched<T>(
        _ label: String = #function,
        _ body: (_ legacy: String, _ store: String, _ runner: CutoverRunner, _ mapping: MappingFile) async throws -> T
    ) async throws -> T {
        try await withLegacyAndStore(label) { legacy, store in
            try await ledgerliftOK(["shadow", "install", "--legacy", legacy, "--mapping", referenceMappingPath])
            try await ledgerliftOK(["backfill", "--legacy", legacy, "--store", store, "--mapping", referenceMappingPath])
            try await ledgerliftOK(["project", "--store", store])
            try await ledgerliftOK(["cutover", "init", "--legacy", legacy, "--store", store, "--mapping", referenceMappingPath])
            try await ledgerliftOK(["shadow", "run", "--legacy", legacy, "--store", store, "--mapping", referenceMappingPath])
            try await ledgerliftOK([
                "diff", "--legacy", legacy, "--store", store, "--mapping", referenceMappingPath, "--record",
            ])
            let runner = try CutoverRunner(name: "default")
            let mapping = try MappingFile.load(path: referenceMappingPath)
            let connection = try await Connection.connect(store)
            defer { connection.close() }
            try await connection.withSession { session in
                var record = try runner.log.read(in: session)!
                for to in [CutoverState.capturing, .backfilled, .shadowing, .verified, .readsSwitched] {
                    try runner.log.append(
                        .advanced(.init(from: record.state, to: to, actor: .current(), reason: "test", gates: [])),
                        expectedVersion: record.version, in: session)
                    record = try runner.log.read(in: session)!
                }
                try RoutingTable().set(cutover: "default", reads: .ledger, writes: .legacy, in: session)
            }
            return try await body(legacy, store, runner, mapping)
        }
    }

    static func guarded(_ legacy: String, _ mapping: MappingFile) async throws -> [String] {
        try await withSession(legacy) { try LegacyWriteGuard(mapping: mapping).guardedTables(in: $0) }
    }

    static func types(_ store: String) async throws -> [String] {
        try await withSession(store) { session in
            try session.query(
                "SELECT event_type FROM ledgerlift.events WHERE stream_id = 'cutover-default' ORDER BY stream_version"
            ).rows.map { try $0.decode(at: 0, as: String.self) }
        }
    }

    @Test func aSwitchGuardsLegacyRoutesWritesAndLetsReverseSyncWritesThrough() async throws {
        try await Self.atReadsSwitched { legacy, store, runner, mapping in
            // A change since the last verification: the switch re-verifies it.
            try await withSession(legacy) {
                try $0.execute("UPDATE legacy.customers SET email = 'switch@example.com' WHERE id = 3")
            }
            try await ledgerliftOK(["shadow", "run", "--legacy", legacy, "--store", store, "--mapping", referenceMappingPath])
            let legacyConnection = try await Connection.connect(legacy)
            let storeConnection = try await Connection.connect(store)
            defer {
                legacyConnection.close()
                storeConnection.close()
            }
            let record = try await runner.record(store: storeConnection)
            let transition = try await runner.switchWrites(
                record, gates: [], reason: "go", legacy: legacyConnection, store: storeConnection, mapping: mapping,
                options: CutoverSwitchOptions(maxFreeze: .seconds(30)))
            #expect(transition.to == .writesSwitched)
            let measured = transition.measurements ?? [:]
            // Compared before the lock (changed since the last verification), and again under
            // it only if it changed after or differed then.
            #expect(measured["preverified_keys"].flatMap { Int($0) } ?? 0 >= 1, "\(measured)")
            #expect(measured["keys_verified"] != nil && measured["routing_ms"] != nil, "\(measured)")
            #expect(measured["freeze_ms"] != nil && measured["lock_wait_ms"] != nil && measured["drain_ms"] != nil)
            #expect(try await runner.record(store: storeConnection).state == .writesSwitched)
            #expect(try await Self.types(store).suffix(2) == ["CutoverSwitchIntended", "CutoverAdvanced"])
            let routing = try await withSession(store) { try RoutingTable().read(in: $0) }
            #expect(routing?.reads == .ledger && routing?.writes == .ledger)
            #expect(try await Self.guarded(legacy, mapping).count == LegacyWriteGuard(mapping: mapping).tables.count)

            // The application's write: refused with the documented SQLSTATE and message.
            do {
                try await withSession(legacy) {
                    try $0.execute("UPDATE legacy.customers SET email = 'late@example.com' WHERE id = 4")
                }
                Issue.record("a guarded table took a write")
            } catch let error as PostgresError {
                #expect(error.sqlState?.rawValue == LegacyWriteGuard.sqlState)
                #expect(error.message == LegacyWriteGuard.message)
            }
            // Reverse sync's write passes, and capture does not see it... (capture is the
            // reverse sync's to skip; here only the guard is checked).
            try await withSession(legacy) { session in
                try session.transaction { tx in
                    try tx.execute("SET LOCAL ledgerlift.origin = 'reverse_sync'")
                    try tx.execute("UPDATE legacy.customers SET email = 'synced@example.com' WHERE id = 4")
                }
            }
        }
    }

    @Test func aLockThatIsNotGrantedWithinTheBudgetLeavesLegacyWritableAndTheStateWhereItWas() async throws {
        try await Self.atReadsSwitched { legacy, store, runner, mapping in
            // psql holding a write on customers, uncommitted.
            let holder = try await Connection.connect(legacy)
            try await holder.withSession { session in
                try session.execute("BEGIN")
                try session.execute("UPDATE legacy.customers SET name = name WHERE id = 2")
            }
            let legacyConnection = try await Connection.connect(legacy)
            let storeConnection = try await Connection.connect(store)
            defer {
                holder.close()
                legacyConnection.close()
                storeConnection.close()
            }
            let record = try await runner.record(store: storeConnection)
            await #expect {
                _ = try await runner.switchWrites(
                    record, gates: [], reason: nil, legacy: legacyConnection, store: storeConnection, mapping: mapping,
                    options: CutoverSwitchOptions(maxFreeze: .milliseconds(300)))
            } throws: { error in
                (error as? CutoverSwitchFailure)?.failure.contains("was not granted within --max-freeze 300 ms") == true
            }
            try await holder.withSession { try $0.execute("ROLLBACK") }
            let after = try await runner.record(store: storeConnection)
            #expect(after.state == .readsSwitched && after.pendingSwitch == nil)
            #expect(try await Self.types(store).suffix(2) == ["CutoverSwitchIntended", "CutoverSwitchUndone"])
            #expect(try await Self.guarded(legacy, mapping).isEmpty)
            let routing = try await withSession(store) { try RoutingTable().read(in: $0) }
            #expect(routing?.writes == .legacy)
            // Legacy takes writes.
            try await withSession(legacy) {
                try $0.execute("UPDATE legacy.customers SET email = 'still@example.com' WHERE id = 2")
            }
        }
    }

    @Test func aDifferenceInAKeyChangedSinceTheLastVerificationUndoesTheSwitch() async throws {
        try await Self.atReadsSwitched { legacy, store, runner, mapping in
            try await withSession(legacy) {
                try $0.execute("UPDATE legacy.customers SET email = 'seen@example.com' WHERE id = 3")
            }
            try await ledgerliftOK(["shadow", "run", "--legacy", legacy, "--store", store, "--mapping", referenceMappingPath])
            // The same row changed again where capture cannot see it: legacy and the ledger now
            // differ on a key the switch re-verifies.
            try await withSession(legacy) { session in
                try session.transaction { tx in
                    try tx.execute("SET LOCAL session_replication_role = replica")
                    try tx.execute("UPDATE legacy.customers SET email = 'unseen@example.com' WHERE id = 3")
                }
            }
            let legacyConnection = try await Connection.connect(legacy)
            let storeConnection = try await Connection.connect(store)
            defer {
                legacyConnection.close()
                storeConnection.close()
            }
            let record = try await runner.record(store: storeConnection)
            await #expect {
                _ = try await runner.switchWrites(
                    record, gates: [], reason: nil, legacy: legacyConnection, store: storeConnection, mapping: mapping,
                    options: CutoverSwitchOptions(maxFreeze: .seconds(30)))
            } throws: { error in
                let failure = (error as? CutoverSwitchFailure)?.failure ?? ""
                return failure.contains("1 key(s) changed since the last clean verification differ")
                    && failure.contains("customer-3 email: legacy unseen@example.com, ledger seen@example.com")
            }
            #expect(try await runner.record(store: storeConnection).state == .readsSwitched)
            #expect(try await Self.guarded(legacy, mapping).isEmpty)
        }
    }

    @Test func anInterruptedSwitchIsCompletedWhenLegacyCommittedAndUndoneWhenItDidNot() async throws {
        try await Self.atReadsSwitched { legacy, store, runner, mapping in
            let legacyConnection = try await Connection.connect(legacy)
            let storeConnection = try await Connection.connect(store)
            defer {
                legacyConnection.close()
                storeConnection.close()
            }
            // Killed after the intent, before legacy committed: undone.
            var record = try await runner.record(store: storeConnection)
            let intent = CutoverEvent.SwitchIntent(
                from: .readsSwitched, to: .writesSwitched, actor: .current(), reason: nil, maxFreezeMilliseconds: 2000,
                gates: [])
            let version = record.version
            try await storeConnection.withSession {
                try runner.log.append(.switchIntended(intent), expectedVersion: version, in: $0)
            }
            #expect(try await runner.record(store: storeConnection).pendingSwitch == intent)
            await #expect(throws: CutoverError.switchPending(from: .readsSwitched, to: .writesSwitched)) {
                _ = try await runner.abort(reason: "no", store: storeConnection)
            }
            record = try await runner.recover(legacy: legacyConnection, store: storeConnection, mapping: mapping)
            #expect(record.state == .readsSwitched && record.pendingSwitch == nil)
            #expect(try await Self.types(store).suffix(2) == ["CutoverSwitchIntended", "CutoverSwitchUndone"])

            // Killed after legacy committed the guard, before the store recorded it: completed.
            let again = record.version
            try await storeConnection.withSession {
                try runner.log.append(.switchIntended(intent), expectedVersion: again, in: $0)
            }
            try await legacyConnection.withSession { try LegacyWriteGuard(mapping: mapping).install(cutover: "default", in: $0) }
            record = try await runner.recover(legacy: legacyConnection, store: storeConnection, mapping: mapping)
            #expect(record.state == .writesSwitched && record.pendingSwitch == nil)
            let routing = try await withSession(store) { try RoutingTable().read(in: $0) }
            #expect(routing?.writes == .ledger)
        }
    }

    /// A row reverse sync could not write back (legacy's `bigint` id refuses a Stripe-made
    /// `cus_…` key) is missing from legacy: a rollback would lose it. The rollback refuses and
    /// names the row; writes stay with the ledger and legacy stays guarded.
    @Test func aRollbackRefusesWhileReverseSyncHasQuarantinedRows() async throws {
        try await Self.atReadsSwitched { legacy, store, runner, mapping in
            let legacyConnection = try await Connection.connect(legacy)
            let storeConnection = try await Connection.connect(store)
            defer {
                legacyConnection.close()
                storeConnection.close()
            }
            _ = try await runner.switchWrites(
                try await runner.record(store: storeConnection), gates: [], reason: "go", legacy: legacyConnection,
                store: storeConnection, mapping: mapping, options: CutoverSwitchOptions(maxFreeze: .seconds(30)))
            _ = try await CommandExecutor().execute(
                .createCustomer(
                    CreateCustomer(
                        customerID: "cus_Stripe1", email: "stripe@example.com", currency: "EUR", timeZone: "UTC",
                        at: PostgresTimestamp("2027-01-04T10:00:00Z")!)),
                requestID: nil, on: storeConnection)
            let sync = try await ledgerlift([
                "shadow", "reverse-sync", "--legacy", legacy, "--store", store, "--mapping", referenceMappingPath,
            ])
            #expect(sync.stdout.contains("QUARANTINED 1"), "\(sync.stdout)\(sync.stderr)")

            let rollback = try await ledgerlift([
                "cutover", "rollback", "--legacy", legacy, "--store", store, "--max-freeze", "30", "--reason", "drill",
            ])
            #expect(rollback.status == 1, "\(rollback.stdout)\(rollback.stderr)")
            #expect(rollback.stderr.contains("legacy lacks 1 row(s)"), "\(rollback.stderr)")
            #expect(rollback.stderr.contains("cus_Stripe1"), "\(rollback.stderr)")
            #expect(try await runner.record(store: storeConnection).state == .writesSwitched)
            let routing = try await withSession(store) { try RoutingTable().read(in: $0) }
            #expect(routing?.writes == .ledger)
            #expect(try await Self.guarded(legacy, mapping).count == LegacyWriteGuard(mapping: mapping).tables.count)
        }
    }

    /// A legacy change quarantined after the backfill is missing from the ledger, and the clean
    /// verifications cannot see it: the switch is undone, unless the quarantine is accepted.
    @Test func aChangeQuarantinedSinceTheBackfillUndoesTheSwitchUnlessAccepted() async throws {
        try await Self.atReadsSwitched { legacy, store, runner, mapping in
            try await withSession(store) { session in
                try session.execute(
                    """
                    INSERT INTO ledgerlift.quarantine (entity, entity_key, reason, detail, raw, run_id)
                    VALUES ('customer', '3', 'invalid_value', 'a planted change the tailer could not migrate', '{}', 'shadow-test')
                    """)
            }
            let legacyConnection = try await Connection.connect(legacy)
            let storeConnection = try await Connection.connect(store)
            defer {
                legacyConnection.close()
                storeConnection.close()
            }
            do {
                _ = try await runner.switchWrites(
                    try await runner.record(store: storeConnection), gates: [], reason: "go", legacy: legacyConnection,
                    store: storeConnection, mapping: mapping, options: CutoverSwitchOptions(maxFreeze: .seconds(30)))
                Issue.record("the switch went through with a quarantined change")
            } catch let failure as CutoverSwitchFailure {
                #expect(failure.failure.hasPrefix("1 legacy change(s) were quarantined since the backfill (first: customer 3)"))
            }
            #expect(try await runner.record(store: storeConnection).state == .readsSwitched)
            #expect(try await Self.guarded(legacy, mapping).isEmpty)

            var accepting = CutoverSwitchOptions(maxFreeze: .seconds(30))
            accepting.acceptQuarantine = "customer 3 is fixed by hand after the switch"
            let transition = try await runner.switchWrites(
                try await runner.record(store: storeConnection), gates: [], reason: "go", legacy: legacyConnection,
                store: storeConnection, mapping: mapping, options: accepting)
            #expect(transition.to == .writesSwitched)
            #expect(transition.measurements?["accepted_quarantine"] == "customer 3 is fixed by hand after the switch")
            #expect(transition.measurements?["quarantined_since_backfill"] == "1")
        }
    }
}
