import Billing
import Commands
import EventStore
import Foundation
import Mapping
import Postgres
import Shadow
import TestSupport
import Testing

/// Reverse sync on the reference fixture: events the ledger's write path appends after the
/// start position reach the legacy tables through the mapping's `write_back`, behind a write
/// guard, without a capture row, idempotently and after a crash.
@Suite("Reverse sync: the ledger's write path applied back to legacy", .serialized)
struct ReverseSyncTests {
    static let at = PostgresTimestamp("2027-01-04T10:00:00Z")!
    static func later(_ seconds: Int64) -> PostgresTimestamp {
        PostgresTimestamp(microsecondsSinceEpoch: at.microsecondsSinceEpoch + seconds * 1_000_000)
    }

    /// The legacy tables the mapping writes back, as text, in key order.
    static let legacyTables = [
        "customers", "plans", "subscriptions", "invoices", "invoice_line_items", "payments", "refunds", "credit_notes",
        "customer_balance_transactions",
    ]

    static func dump(_ scenario: ShadowScenario) async throws -> [String: [String]] {
        try await scenario.withLegacy { session in
            var tables = [String: [String]]()
            for table in Self.legacyTables {
                tables[table] = try session.query("SELECT t::text FROM legacy.\(table) t ORDER BY id").rows.map {
                    try $0.decode(at: 0, as: String.self)
                }
            }
            return tables
        }
    }

    static func outboxCount(_ scenario: ShadowScenario) async throws -> Int64 {
        try await scenario.withLegacy {
            try $0.query("SELECT count(*) FROM ledgerlift_capture.changes").rows[0].decode(at: 0, as: Int64.self)
        }
    }

    /// A minimal stand-in for the cutover's write guard (the lead builds the real one): every
    /// mapped table refuses writes with LL001 unless `ledgerlift.origin` is `reverse_sync`.
    static func installGuard(_ scenario: ShadowScenario) async throws {
        var sql = """
            CREATE FUNCTION ledgerlift_capture.write_guard() RETURNS trigger LANGUAGE plpgsql AS $g$
            BEGIN
                IF current_setting('ledgerlift.origin', true) IS DISTINCT FROM 'reverse_sync' THEN
                    RAISE EXCEPTION USING ERRCODE = 'LL001', MESSAGE = 'writes have moved to the ledger';
                END IF;
                RETURN NULL;
            END $g$;

            """
        for table in legacyTables + ["subscription_history"] {
            sql += """
                CREATE TRIGGER ledgerlift_write_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON legacy.\(table)
                    FOR EACH STATEMENT EXECUTE FUNCTION ledgerlift_capture.write_guard();

                """
        }
        let script = sql
        try await scenario.withLegacy { try $0.executeScript(script) }
    }

    /// The write path's traffic: a new customer with an invoice drafted, finalized and paid, a
    /// second draft discarded (deletes), goodwill credit (a balance transaction and the cached
    /// balances), and a payment on an open invoice of a backfilled customer.
    static func traffic(_ store: Connection) async throws -> (customer: String, discarded: String) {
        let executor = CommandExecutor()
        let customer = try await executor.allocate(.customer, on: store)
        let invoice = try await executor.allocate(.invoice, on: store)
        let line = try await executor.allocate(.invoiceLine, on: store)
        let payment = try await executor.allocate(.payment, on: store)
        let draft = try await executor.allocate(.invoice, on: store)
        let draftLine = try await executor.allocate(.invoiceLine, on: store)
        let credit = try await executor.allocate(.balanceTransaction, on: store)
        let commands: [BillingCommand] = [
            .createCustomer(
                CreateCustomer(
                    customerID: customer, email: "rs@example.com", name: "Reverse Sync", currency: "USD",
                    timeZone: "UTC",
                    at: at)),
            .draftInvoice(
                DraftInvoice(
                    invoiceID: invoice, customerID: customer,
                    lines: [
                        InvoiceLineInput(
                            invoiceLineID: line, kind: "one_off", description: "Setup", quantity: "2",
                            unitAmount: "12.50")
                    ], at: later(1))),
            .finalizeInvoice(FinalizeInvoice(invoiceID: invoice, at: later(2))),
            .recordPayment(
                RecordPayment(paymentID: payment, invoiceID: invoice, status: "succeeded", method: "card", at: later(3))
            ),
            .draftInvoice(
                DraftInvoice(
                    invoiceID: draft, customerID: customer,
                    lines: [
                        InvoiceLineInput(invoiceLineID: draftLine, kind: "one_off", quantity: "1", unitAmount: "5.00")
                    ],
                    at: later(4))),
            .discardDraft(DiscardDraft(invoiceID: draft, at: later(5))),
            .addCustomerCredit(
                AddCustomerCredit(balanceTransactionID: credit, customerID: customer, amount: 700, at: later(6))),
        ]
        for command in commands {
            // Commands look children up in the read models (serve runs a projector beside them;
            // one may be following already: then it projects).
            _ = try? await Projector().catchUp(on: store)
            _ = try await executor.execute(command, requestID: nil, on: store)
        }
        return (customer, draft)
    }

    /// Brings the read models to the store's head, waiting out a projector that is finishing.
    static func project(_ store: Connection) async throws {
        for attempt in 1...50 {
            do {
                _ = try await Projector().catchUp(on: store)
                return
            } catch ProjectionError.consumerBusy where attempt < 50 {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    static func configuration(_ scenario: ShadowScenario) throws -> ReverseSync.Configuration {
        ReverseSync.Configuration(legacyDSN: scenario.legacy, storeDSN: scenario.store, mapping: try scenario.mapping)
    }

    @Test(
        "write-path events after the start reach legacy behind a guard, capture records none, diff is clean, re-applying changes nothing"
    )
    func appliesTheWritePath() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            let store = try await Connection.connect(scenario.store)
            defer { store.close() }
            let mapping = try scenario.mapping
            // Capture records an ordinary legacy write, and not one made as reverse sync.
            let before = try await Self.outboxCount(scenario)
            _ = try await scenario.withLegacy { try $0.execute("UPDATE legacy.customers SET name = name WHERE id = 1") }
            #expect(try await Self.outboxCount(scenario) == before + 1)
            try await scenario.withLegacy { session in
                try session.transaction { tx in
                    try tx.execute("SET LOCAL ledgerlift.origin = 'reverse_sync'")
                    try tx.execute("UPDATE legacy.customers SET name = name WHERE id = 1")
                }
            }
            #expect(try await Self.outboxCount(scenario) == before + 1)
            // The tailer applies legacy's own write; from here the ledger takes the writes.
            _ = try await scenario.tail()
            try await Self.installGuard(scenario)
            await #expect(throws: PostgresError.self) {
                _ = try await scenario.withLegacy {
                    try $0.execute("UPDATE legacy.customers SET name = 'x' WHERE id = 1")
                }
            }
            let start = try await store.withSession { session in
                try ReverseSync.start(
                    at: try ReverseSync.safeHead(EventStore(), in: session), mapping: mapping, in: session)
            }
            #expect(start.checkpoint == start.startedAt)
            let outboxBefore = try await Self.outboxCount(scenario)

            let (customer, discarded) = try await Self.traffic(store)
            let summary = try await ReverseSync(try Self.configuration(scenario)).run()
            #expect(summary.caughtUp)
            #expect(summary.eventsApplied > 0)
            #expect(summary.keysUpserted == 5)  // customer, invoice, its line, payment, balance transaction
            #expect(summary.keysDeleted == 2)
            #expect(summary.roundTripDifferences == 0)
            // No loop: capture recorded none of it.
            #expect(try await Self.outboxCount(scenario) == outboxBefore)

            let legacy = try await scenario.withLegacy { session in
                (
                    customer: try session.query(
                        "SELECT email, balance::text, credit_balance::text FROM legacy.customers WHERE id = $1::bigint",
                        [customer]
                    ).first?.values,
                    draft: try session.query("SELECT count(*) FROM legacy.invoices WHERE id = $1::bigint", [discarded])
                        .rows[0].decode(at: 0, as: Int64.self),
                    next: try session.query(
                        "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM legacy.customers_id_seq"
                    ).rows[0].decode(at: 0, as: Int64.self)
                )
            }
            #expect(legacy.customer == ["rs@example.com", "-7.00", "7"])
            #expect(legacy.draft == 0)
            // The legacy application never hands out the key the ledger created.
            #expect(legacy.next > Int64(customer)!)

            let status = try await store.withSession { try ReverseSync.status(in: $0) }
            #expect(status?.pendingEvents == 0)
            #expect(status?.lastError == nil)
            #expect(status?.running == false)
            #expect(status?.checkpoint == summary.checkpoint)

            try await Self.project(store)
            let diff = try await scenario.diff()
            #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")

            // Re-applying from the start gives the same legacy rows and appends nothing.
            let rows = try await Self.dump(scenario)
            let events = try await scenario.events().count
            try await store.execute(
                "UPDATE ledgerlift.reverse_syncs SET checkpoint_xid = started_xid, checkpoint_position = started_position"
            )
            let again = try await ReverseSync(try Self.configuration(scenario)).run()
            #expect(again.eventsApplied == summary.eventsApplied)
            #expect(again.attributeRefreshes == 0)
            #expect(try await Self.dump(scenario) == rows)
            #expect(try await scenario.events().count == events)
            #expect(try await Self.outboxCount(scenario) == outboxBefore)
        }
    }

    /// `count` new customers through the write path (one event each).
    static func customers(_ count: Int, _ store: Connection) async throws -> [String] {
        let executor = CommandExecutor()
        var keys = [String]()
        for index in 0..<count {
            let key = try await executor.allocate(.customer, on: store)
            _ = try await executor.execute(
                .createCustomer(
                    CreateCustomer(
                        customerID: key, email: "c\(index)@example.com", currency: "EUR", timeZone: "UTC",
                        at: later(Int64(index)))),
                requestID: nil, on: store)
            keys.append(key)
        }
        return keys
    }

    @Test(
        "a row legacy refuses (a Stripe customer's cus_ key in a bigint column) is quarantined with its key and SQLSTATE; the rest of the batch reaches legacy and the run goes on"
    )
    func refusedRowsAreQuarantined() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            let store = try await Connection.connect(scenario.store)
            defer { store.close() }
            try await Self.startAtHead(scenario, store)
            let executor = CommandExecutor()
            _ = try await executor.execute(
                .createCustomer(
                    CreateCustomer(
                        customerID: "cus_Stripe1", email: "stripe@example.com", currency: "EUR", timeZone: "UTC",
                        at: Self.later(0))),
                requestID: nil, on: store)
            let numbered = try await Self.customers(2, store)

            let summary = try await ReverseSync(try Self.configuration(scenario)).run()
            #expect(summary.caughtUp)
            #expect(summary.keysQuarantined == 1)
            #expect(summary.keysUpserted == 2)
            let status = try #require(try await store.withSession { try ReverseSync.status(in: $0) })
            #expect(status.pendingEvents == 0)
            #expect(status.failing == false)
            #expect(status.quarantined == 1)
            let entry = try #require(status.quarantineExamples.first)
            #expect(entry.entity == "customer")
            #expect(entry.key == "cus_Stripe1")
            #expect(entry.sqlState == "22P02")
            #expect(entry.statement == "write_back.upsert[0]")
            #expect(entry.description.contains("customer cus_Stripe1"))
            let legacy = try await scenario.withLegacy { session in
                try session.query(
                    "SELECT count(*) FROM legacy.customers WHERE id = ANY($1::bigint[])", [PostgresArray(numbered)]
                ).rows[0].decode(at: 0, as: Int64.self)
            }
            #expect(legacy == 2)

            // The key written again (a later event of its stream) is refused again: one row, two attempts.
            _ = try await executor.execute(
                .updateCustomer(UpdateCustomer(customerID: "cus_Stripe1", name: "Renamed", at: Self.later(10))),
                requestID: nil, on: store)
            let again = try await ReverseSync(try Self.configuration(scenario)).run()
            #expect(again.keysQuarantined == 1)
            let after = try await store.withSession { try ReverseSync.quarantined(scope: "default", in: $0) }
            #expect(after.count == 1)
            #expect(after.examples.first?.attempts == 2)

            // The CLI says it, in text and JSON.
            let text = try await LedgerliftBinary.run([
                "shadow", "reverse-sync", "--legacy", scenario.legacy, "--store", scenario.store, "--mapping",
                scenario.mappingPath, "--status",
            ])
            #expect(text.stdout.contains("QUARANTINED 1 row(s)"), "\(text.stdout)")
            #expect(text.stdout.contains("customer cus_Stripe1: write_back.upsert[0] failed"), "\(text.stdout)")
        }
    }

    static func startAtHead(_ scenario: ShadowScenario, _ store: Connection) async throws {
        let mapping = try scenario.mapping
        _ = try await store.withSession { session in
            try ReverseSync.start(
                at: try ReverseSync.safeHead(EventStore(), in: session), mapping: mapping, in: session)
        }
    }

    struct Crash: Error {}

    /// Waits until no transaction of the cluster holds the xmin horizon below the store's head.
    /// Reverse sync reads the global order only behind every running transaction, the other
    /// tests' databases' included: under a loaded suite a batch may otherwise see part of what
    /// was appended, and a follower may not say it caught up.
    static func horizonClear(_ store: Connection) async throws {
        for _ in 0..<1200 {
            let (safe, head) = try await store.withSession {
                (try ReverseSync.safeHead(EventStore(), in: $0), try ReverseSync.head(EventStore(), in: $0))
            }
            if safe >= head { return }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    @Test(
        "a crash after the legacy commit and before the checkpoint's: the error is recorded, the next run applies the batch again to the same rows"
    )
    func crashBetweenTheTwoCommits() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            let store = try await Connection.connect(scenario.store)
            defer { store.close() }
            try await Self.startAtHead(scenario, store)
            _ = try await Self.traffic(store)
            // The crashed batch must hold the whole traffic for "the same rows" to mean something.
            try await Self.horizonClear(store)
            var crashing = try Self.configuration(scenario)
            crashing.afterLegacyCommit = { throw Crash() }
            await #expect(throws: Crash.self) { try await ReverseSync(crashing).run() }
            let failed = try await store.withSession { try ReverseSync.status(in: $0) }
            #expect(failed?.checkpoint == failed?.startedAt)
            #expect(failed?.failing == true)
            #expect(failed?.lastError?.contains("Crash") == true)
            let crashed = try await Self.dump(scenario)
            let events = try await scenario.events().count

            let resumed = try await ReverseSync(try Self.configuration(scenario)).run()
            #expect(resumed.caughtUp)
            #expect(try await Self.dump(scenario) == crashed)
            // The attribute refreshes the crashed batch never committed, once.
            #expect(try await scenario.events().count == events + resumed.attributeRefreshes)
            let status = try await store.withSession { try ReverseSync.status(in: $0) }
            #expect(status?.failing == false)
            #expect(status?.pendingEvents == 0)
            try await Self.project(store)
            let diff = try await scenario.diff()
            #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")
        }
    }

    @Test(
        "shadow reverse-sync killed with SIGKILL mid-run and run again ends with the rows of a full run; --follow stops cleanly on SIGTERM; a second run is refused naming the holder"
    )
    func killedAndResumedThroughTheCLI() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            let store = try await Connection.connect(scenario.store)
            defer { store.close() }
            try await Self.startAtHead(scenario, store)
            let keys = try await Self.customers(30, store)
            let command = [
                "shadow", "reverse-sync", "--legacy", scenario.legacy, "--store", scenario.store, "--mapping",
                scenario.mappingPath,
            ]
            let process = try BackgroundProcess(command + ["--batch", "1", "--follow"])
            // Killed once it has committed a few batches, wherever it is then.
            var status: ReverseSync.Status?
            for _ in 0..<600 {
                status = try await store.withSession { try ReverseSync.status(in: $0) }
                if (status?.batches ?? 0) >= 3 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect((status?.batches ?? 0) >= 3)
            process.signal(SIGKILL)
            _ = try await process.wait()
            let killed = try await store.withSession { try ReverseSync.status(in: $0) }
            #expect((killed?.pendingEvents ?? 0) > 0)

            // Run again, following: it resumes; SIGTERM stops it after its batch, exit 0.
            let follower = try BackgroundProcess(command + ["--follow", "--format", "json"])
            try await Self.horizonClear(store)
            for _ in 0..<3000 {
                status = try await store.withSession { try ReverseSync.status(in: $0) }
                // Caught up after its last batch: it found nothing more to read (its own
                // attribute refreshes included, readable once the horizon passed them).
                if status?.pendingEvents == 0, status?.running == true, let caughtUp = status?.caughtUpAt,
                    let updated = status?.updatedAt, caughtUp >= updated
                {
                    break
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(status?.pendingEvents == 0)
            #expect(status?.running == true)
            let second = try await ledgerlift(command)
            #expect(second.status == 2)
            #expect(second.stderr.contains("already running (held by"), "\(second.stderr)")
            follower.signal(SIGTERM)
            let stopped = try await follower.wait()
            #expect(stopped.status == 0, "\(stopped.stderr)")
            #expect(stopped.stdout.contains("\"caught_up\":true"), "\(stopped.stdout)")

            let customers = try await scenario.withLegacy { session in
                try session.query(
                    "SELECT count(*) FROM legacy.customers WHERE id = ANY($1::bigint[])", [PostgresArray(keys)]
                )
                .rows[0].decode(at: 0, as: Int64.self)
            }
            #expect(customers == Int64(keys.count))
            // The same rows as applying everything again from the start.
            let rows = try await Self.dump(scenario)
            try await store.execute(
                "UPDATE ledgerlift.reverse_syncs SET checkpoint_xid = started_xid, checkpoint_position = started_position"
            )
            _ = try await ReverseSync(try Self.configuration(scenario)).run()
            #expect(try await Self.dump(scenario) == rows)
            let statusOutput = try await ledgerlift(command + ["--status", "--format", "json"])
            #expect(statusOutput.status == 0, "\(statusOutput.stdout)\(statusOutput.stderr)")
            #expect(statusOutput.stdout.contains("\"pending_events\":0"), "\(statusOutput.stdout)")
            try await Self.project(store)
            let diff = try await scenario.diff()
            #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")
        }
    }

    @Test(
        "only what the write path appended after the start position is applied; not started, it refuses; drain returns at a position"
    )
    func onlyAfterTheStart() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            let store = try await Connection.connect(scenario.store)
            defer { store.close() }
            let before = try await Self.customers(1, store)
            await #expect(throws: ReverseSyncError.notStarted(scope: "default")) {
                try await ReverseSync(try Self.configuration(scenario)).run()
            }
            // Started at the exact head (nothing else writes this store): the safe head may stand
            // before `before`'s event while another database's transaction holds the horizon.
            let mapping = try scenario.mapping
            _ = try await store.withSession { session in
                try ReverseSync.start(at: try ReverseSync.head(EventStore(), in: session), mapping: mapping, in: session)
            }
            let after = try await Self.customers(2, store)
            // The head itself: the safe head may stand before it while any transaction of the
            // cluster runs (the other tests' databases share it).
            let head = try await store.withSession { try ReverseSync.head(EventStore(), in: $0) }
            let drained = try await ReverseSync(try Self.configuration(scenario)).drain(until: head)
            #expect(drained.checkpoint >= head)
            #expect(drained.eventsApplied == 2)
            let present = try await scenario.withLegacy { session in
                try session.query(
                    "SELECT id::text FROM legacy.customers WHERE id = ANY($1::bigint[]) ORDER BY id",
                    [PostgresArray(before + after)]
                ).rows.map { try $0.decode(at: 0, as: String.self) }
            }
            #expect(present == after)
        }
    }

    @Test(
        "following while the write path runs: every command reaches legacy, the attribute refreshes race the commands harmlessly, diff is clean"
    )
    func followsLiveTraffic() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            let store = try await Connection.connect(scenario.store)
            defer { store.close() }
            try await Self.startAtHead(scenario, store)
            var configuration = try Self.configuration(scenario)
            configuration.follow = true
            configuration.pollInterval = .milliseconds(10)
            let stop = ShadowTailer.Stop()
            let follower = Task { [configuration] in try await ReverseSync(configuration).run(stop: stop) }
            // As serve does: a projector follows the store, the reverse sync's refreshes included.
            let projection = try await Connection.connect(scenario.store)
            defer { projection.close() }
            // Stopped by a flag, not cancelled: a cancelled catch-up could leave its session's lock.
            let projectorStop = ShadowTailer.Stop()
            let projector = Task {
                while !projectorStop.isRequested {
                    _ = try? await Projector().catchUp(on: projection)
                    try? await Task.sleep(for: .milliseconds(10))
                }
            }
            // Following before traffic.
            for _ in 0..<500 {
                if try await store.withSession({ try ReverseSync.status(in: $0) })?.heartbeatAt != nil { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            var keys = [String]()
            for _ in 0..<4 {
                let (customer, _) = try await Self.traffic(store)
                keys.append(customer)
            }
            var status: ReverseSync.Status?
            for _ in 0..<1000 {
                status = try await store.withSession { try ReverseSync.status(in: $0) }
                if status?.pendingEvents == 0 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            stop.stop()
            let summary = try await follower.value
            projectorStop.stop()
            _ = await projector.value
            #expect(status?.pendingEvents == 0)
            #expect(summary.roundTripDifferences == 0)
            #expect(status?.lastError == nil)
            let created = keys
            let count = try await scenario.withLegacy { session in
                try session.query(
                    "SELECT count(*) FROM legacy.customers WHERE id = ANY($1::bigint[])", [PostgresArray(created)]
                ).rows[0].decode(at: 0, as: Int64.self)
            }
            #expect(count == 4)
            try await Self.project(store)
            let diff = try await scenario.diff()
            #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")
        }
    }
}
