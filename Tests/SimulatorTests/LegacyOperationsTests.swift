import Fixtures
import Foundation
import Postgres
import TestSupport
import Testing

@testable import Simulator

@Suite("The legacy application's operations on the reference schema")
struct LegacyOperationsTests {
    /// Performs operations of `kind` (ids from `firstID`) until one acts, and returns its entry.
    private static func firstActing(
        _ kind: OperationKind, worker: any BillingAppWorker, clock: BusinessClock, firstID: UInt64 = 1
    ) async throws -> JournalEntry? {
        for id in firstID..<(firstID + 40) {
            if let entry = try await worker.perform(LegacyTestSupport.single(kind, id: id), clock: clock) { return entry }
        }
        return nil
    }

    @Test func everyKindActsOnTheReferenceFixtureAndItsEffectsAreWhatTheRowsHold() async throws {
        try await LegacyTestSupport.withReference { connection, dsn in
            let clock = try await LegacyTestSupport.dataClock(connection)
            let worker = try await LegacySQLApp(dsn: dsn).makeWorker()
            defer { worker.close() }
            var journal: [JournalEntry] = []
            var id: UInt64 = 1
            // Every subscription of the seed is invoiced for its period: new ones first, then
            // drafts for them, so finalize and discard have something to act on.
            let order: [OperationKind] =
                [.signUp, .signUp, .activateTrial, .activateTrial, .draftInvoice, .draftInvoice] + OperationKind.allCases
            for kind in order {
                let entry = try await Self.firstActing(kind, worker: worker, clock: clock, firstID: id)
                id += 40
                #expect(entry != nil, "\(kind.rawValue) found nothing to act on")
                guard let entry else { continue }
                #expect(entry.kind == kind)
                #expect(entry.at == clock.current.iso8601)
                #expect(!entry.effects.isEmpty && !entry.summary.isEmpty)
                // What the entry says is in the rows right after it.
                #expect(try await LegacyEffectReader.mismatches([entry], on: connection) == [], "\(kind.rawValue)")
                journal.append(entry)
            }
            #expect(try await LegacyEffectReader.mismatches(journal, on: connection) == [])
            #expect(try await LegacyTestSupport.violations(connection, clock: clock).map(\.description) == [])
        }
    }

    @Test func aSucceededPaymentPaysTheInvoiceInFullAndLowersTheBalance() async throws {
        try await LegacyTestSupport.withReference { connection, dsn in
            let clock = try await LegacyTestSupport.dataClock(connection)
            let worker = try await LegacySQLApp(dsn: dsn).makeWorker()
            defer { worker.close() }
            let entry = try #require(try await Self.firstActing(.paymentSucceeded, worker: worker, clock: clock))
            let invoice = try #require(entry.keys["invoice"].flatMap(Int64.init))
            let payment = try #require(entry.keys["payment"].flatMap(Int64.init))
            let customer = try #require(entry.keys["customer"].flatMap(Int64.init))
            let t = clock.current
            let iso = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"
            // Open invoices of the reference seed: 803 (49.00), 1103 (39.00 due), 2203, 3301, 3903, 4403.
            let invoiceRow = try await LegacyTestSupport.row(
                connection,
                "SELECT status::text, total::text, amount_paid::text, amount_due::text, to_char(paid_at, \(iso)), to_char(updated_at, \(iso)) FROM legacy.invoices WHERE id = $1",
                [invoice])
            #expect(invoiceRow[0] == "2")
            #expect(invoiceRow[2] == invoiceRow[1])
            #expect(invoiceRow[3] == "0")
            #expect(invoiceRow[4] == t.iso8601 && invoiceRow[5] == t.iso8601)
            let paymentRow = try await LegacyTestSupport.row(
                connection,
                "SELECT customer_id::text, invoice_id::text, status, method, provider_payment_id LIKE 'pi_3%', failure_code, to_char(created_at, \(iso)), to_char(updated_at, \(iso)) FROM legacy.payments WHERE id = $1",
                [payment])
            #expect(paymentRow == [String(customer), String(invoice), "succeeded", "card", "t", nil, t.iso8601, t.iso8601])
            let paid = try #require(entry.effects.first { $0.entity == "payment" })
            let amount = try #require(paid.fields["amount"] ?? nil)
            #expect(paid.fields["status"] == "succeeded" && paid.fields["invoice_id"] == String(invoice))
            #expect(entry.summary.hasPrefix("payment \(payment) of ") && entry.summary.hasSuffix(" on invoice \(invoice) succeeded"))
            // The payment is what was due; the invoice is paid in full (an earlier part payment included).
            let minor = try await LegacyTestSupport.row(
                connection,
                """
                SELECT (i.total * 10 ^ CASE btrim(COALESCE(i.currency, c.currency)) WHEN 'JPY' THEN 0 WHEN 'KWD' THEN 3 ELSE 2 END)::bigint::text,
                       ((SELECT sum(p.amount) FROM legacy.payments p WHERE p.invoice_id = i.id AND p.status = 'succeeded' AND p.id <> $2)
                        * 10 ^ CASE btrim(COALESCE(i.currency, c.currency)) WHEN 'JPY' THEN 0 WHEN 'KWD' THEN 3 ELSE 2 END)::bigint::text
                FROM legacy.invoices i JOIN legacy.customers c ON c.id = i.customer_id WHERE i.id = $1
                """, [invoice, payment])
            let total = try #require(minor[0].flatMap { Int64($0) })
            // A first attempt: an invoice in dunning (a failed attempt) is left to its retry.
            let failed = try await LegacyTestSupport.row(
                connection, "SELECT count(*)::text FROM legacy.payments WHERE invoice_id = $1 AND status = 'failed'", [invoice])
            #expect(failed == ["0"])
            #expect(Int64(amount)! == total - (minor[1].flatMap { Int64($0) } ?? 0))
            #expect(entry.effects.first { $0.entity == "invoice" }?.fields == [
                "status": "paid", "amount_paid": .some(String(total)), "amount_due": "0", "paid_at": .some(t.iso8601),
            ])
        }
    }

    @Test func finalizingNumbersTheDraftAfterTheCustomersLastInvoiceAndAddsItToTheBalance() async throws {
        try await LegacyTestSupport.withReference { connection, dsn in
            let clock = try await LegacyTestSupport.dataClock(connection)
            let worker = try await LegacySQLApp(dsn: dsn).makeWorker()
            defer { worker.close() }
            // Story 13: customer 13's one-off draft 1303 (the seed's only draft), after LL0013-0002.
            let before = try await LegacyTestSupport.row(connection, "SELECT balance::text FROM legacy.customers WHERE id = 13")
            let entry = try #require(try await Self.firstActing(.finalizeInvoice, worker: worker, clock: clock))
            #expect(entry.keys["invoice"] == "1303" && entry.keys["customer"] == "13")
            let row = try await LegacyTestSupport.row(
                connection,
                "SELECT status::text, number, issued_on::text, (finalized_at = $1::timestamptz::timestamp)::text, amount_due::text, total::text FROM legacy.invoices WHERE id = 1303",
                [clock.current])
            let number = try #require(row[1])
            #expect(row[0] == "1" && row[3] == "true" && row[4] == row[5])
            #expect(row[2] == clock.current.utcDate.description)
            let others = try await connection.query("SELECT number FROM legacy.invoices WHERE customer_id = 13 AND id <> 1303 ORDER BY number")
            let highest = try #require(others.rows.last?["number"] ?? nil)
            #expect(number.hasPrefix("LL0013-") && number > highest)
            let after = try await LegacyTestSupport.row(
                connection, "SELECT (balance - $1::numeric)::text FROM legacy.customers WHERE id = 13", [before[0]!])
            #expect(after == [row[5]])
            #expect(entry.effects.first?.fields["number"] == .some(number))
        }
    }

    @Test func finalizingUsesTheCustomersUnappliedCreditNoteFirst() async throws {
        try await LegacyTestSupport.withReference { connection, dsn in
            let clock = try await LegacyTestSupport.dataClock(connection)
            let worker = try await LegacySQLApp(dsn: dsn).makeWorker()
            defer { worker.close() }
            // Story 17: credit note 171 has 12.00 left. The only draft: 19.00 for customer 17.
            try await connection.executeScript(
                """
                SET search_path = legacy;
                DELETE FROM invoice_line_items WHERE invoice_id IN (SELECT id FROM invoices WHERE status = 0);
                DELETE FROM invoices WHERE status = 0;
                INSERT INTO invoices (id, customer_id, subscription_id, status, currency, subtotal, discount, tax, total,
                    amount_paid, amount_due, period_start, period_end, created_at, updated_at)
                VALUES (1799, 17, 171, 0, 'USD', 19.00, 0.00, 0.00, 19.00, 0.00, 19.00, '2025-11-01 09:00', '2025-12-01 09:00',
                    '2025-10-30 09:00', '2025-10-30 09:00');
                INSERT INTO invoice_line_items (invoice_id, kind, description, quantity, unit_amount, amount)
                VALUES (1799, 'subscription', '1 × Starter', 1, 19.0000, 19.00);
                RESET search_path;
                """)
            let entry = try #require(try await Self.firstActing(.finalizeInvoice, worker: worker, clock: clock))
            #expect(entry.keys["invoice"] == "1799")
            let invoice = try await LegacyTestSupport.row(
                connection, "SELECT status::text, amount_paid::text, amount_due::text, paid_at FROM legacy.invoices WHERE id = 1799")
            #expect(invoice == ["1", "12.00", "7.00", nil])
            let applied = try await LegacyTestSupport.row(
                connection,
                "SELECT type, amount::text, credit_note_id::text, (SELECT balance_remaining::text FROM legacy.credit_notes WHERE id = 171) FROM legacy.customer_balance_transactions WHERE invoice_id = 1799")
            #expect(applied == ["applied_to_invoice", "12.00", "171", "0.00"])
            // Owed 7.00 more, no credit left: balance 0 + 19.00 − 12.00 used… as C07 counts it.
            let customer = try await LegacyTestSupport.row(
                connection, "SELECT balance::text, credit_balance::text FROM legacy.customers WHERE id = 17")
            #expect(customer == ["7.00", "0"])
            #expect(try await LegacyEffectReader.mismatches([entry], on: connection) == [])
            let violations = try await LegacyTestSupport.violations(connection, clock: clock).map(\.description)
            #expect(violations == [])
            #expect(entry.summary.hasSuffix(", 12.00 USD of credit applied"))
            #expect(try await LegacyTestSupport.quarantinedByBackfill(dsn).quarantined == [])
        }
    }

    @Test func aCreditNoteCreditsTheCustomerThroughItsBalanceTransaction() async throws {
        try await LegacyTestSupport.withReference { connection, dsn in
            let clock = try await LegacyTestSupport.dataClock(connection)
            let worker = try await LegacySQLApp(dsn: dsn).makeWorker()
            defer { worker.close() }
            let entry = try #require(try await Self.firstActing(.creditNote, worker: worker, clock: clock))
            let note = try #require(entry.keys["credit_note"].flatMap(Int64.init))
            let customer = try #require(entry.keys["customer"].flatMap(Int64.init))
            let row = try await LegacyTestSupport.row(
                connection,
                """
                SELECT n.status, (n.total = n.balance_remaining)::text, (t.amount = -n.total)::text, t.type, t.invoice_id::text,
                       (c.credit_balance = (-(SELECT sum(amount) FROM legacy.customer_balance_transactions WHERE customer_id = c.id))::float8)::text
                FROM legacy.credit_notes n JOIN legacy.customer_balance_transactions t ON t.credit_note_id = n.id
                JOIN legacy.customers c ON c.id = n.customer_id WHERE n.id = $1
                """, [note])
            #expect(row == ["issued", "true", "true", "credit_note", nil, "true"])
            let kinds = entry.effects.map(\.entity)
            #expect(kinds == ["credit_note", "balance_transaction"])
            #expect(entry.effects[1].fields["amount"] == .some("-" + (entry.effects[0].fields["total"]!!)))
            #expect(entry.effects[0].fields["customer_id"] == .some(String(customer)))
        }
    }

    @Test func discardingADraftDeletesTheInvoiceAndItsLines() async throws {
        try await LegacyTestSupport.withReference { connection, dsn in
            let clock = try await LegacyTestSupport.dataClock(connection)
            let worker = try await LegacySQLApp(dsn: dsn).makeWorker()
            defer { worker.close() }
            let entry = try #require(try await Self.firstActing(.discardDraft, worker: worker, clock: clock))
            #expect(entry.keys["invoice"] == "1303")
            #expect(entry.effects.allSatisfy { $0.deleted })
            #expect(entry.effects.map(\.entity) == ["invoice"] + Array(repeating: "invoice_line", count: entry.effects.count - 1))
            let left = try await LegacyTestSupport.row(
                connection,
                "SELECT (SELECT count(*) FROM legacy.invoices WHERE id = 1303)::text, (SELECT count(*) FROM legacy.invoice_line_items WHERE invoice_id = 1303)::text")
            #expect(left == ["0", "0"])
            // Nothing else is a draft: the next discard finds nothing and writes nothing.
            let rows = try await LegacyTestSupport.legacyRows(connection)
            #expect(try await worker.perform(LegacyTestSupport.single(.discardDraft, id: 99), clock: clock) == nil)
            #expect(try await LegacyTestSupport.legacyRows(connection) == rows)
        }
    }

    @Test func aSignUpOnAPlanWithATrialStartsTrialing() async throws {
        try await LegacyTestSupport.withReference { connection, dsn in
            let clock = try await LegacyTestSupport.dataClock(connection)
            let worker = try await LegacySQLApp(dsn: dsn).makeWorker()
            defer { worker.close() }
            for id: UInt64 in 1...12 {
                let entry = try #require(try await worker.perform(LegacyTestSupport.single(.signUp, id: id), clock: clock))
                let subscription = try #require(entry.keys["subscription"].flatMap(Int64.init))
                let row = try await LegacyTestSupport.row(
                    connection,
                    """
                    SELECT s.status, p.trial_days::text, (s.trial_ends_at = s.started_at + p.trial_days * interval '1 day')::text,
                           btrim(c.currency) = p.currency, c.balance::text, c.credit_balance::text, (s.started_at = c.created_at)::text
                    FROM legacy.subscriptions s JOIN legacy.plans p ON p.id = s.plan_id JOIN legacy.customers c ON c.id = s.customer_id
                    WHERE s.id = $1
                    """, [subscription])
                let trial = row[1] != "0"
                #expect(row[0] == (trial ? "trialing" : "active"))
                #expect(row[2] == (trial ? "true" : nil))
                #expect(Array(row[3...]) == ["t", row[4], "0", "true"])
                #expect(entry.effects.first { $0.entity == "subscription" }?.fields["status"] == .some(row[0]!))
            }
        }
    }

    @Test func aDraftWhenEverySubscriptionIsInvoicedIsAOneOffTaxedAtTheCustomersRate() async throws {
        try await LegacyTestSupport.withReference { connection, dsn in
            let clock = try await LegacyTestSupport.dataClock(connection)
            let worker = try await LegacySQLApp(dsn: dsn).makeWorker()
            defer { worker.close() }
            // Every running subscription of the seed is invoiced for its period, none has ended.
            var entries: [JournalEntry] = []
            for id: UInt64 in 1...40 {
                entries.append(try #require(try await worker.perform(LegacyTestSupport.single(.draftInvoice, id: id), clock: clock)))
            }
            for entry in entries {
                #expect(entry.keys["subscription"] == nil)
                #expect(entry.summary.hasPrefix("one-off draft invoice "))
                let invoice = try #require(entry.keys["invoice"].flatMap(Int64.init))
                let row = try await LegacyTestSupport.row(
                    connection,
                    """
                    SELECT i.status::text, i.subscription_id::text, i.number, i.period_start::text,
                           (SELECT string_agg(l.kind, ',' ORDER BY l.id) FROM legacy.invoice_line_items l WHERE l.invoice_id = i.id),
                           (i.tax_rate IS NOT DISTINCT FROM (SELECT p.tax_rate FROM legacy.invoices p
                                WHERE p.customer_id = i.customer_id AND p.id < i.id ORDER BY p.id DESC LIMIT 1))::text,
                           (i.tax <> 0)::text
                    FROM legacy.invoices i WHERE i.id = $1
                    """, [invoice])
                let taxed = row[6] == "true"
                #expect(Array(row[0...3]) == ["0", nil, nil, nil])
                #expect(row[4] == (taxed ? "one_off,tax" : "one_off"))
                #expect(row[5] == "true", "the draft takes the customer's latest tax rate")
            }
            #expect(entries.contains { $0.effects.contains { $0.fields["kind"] == "tax" } }, "some customer of the seed pays tax")
            #expect(try await LegacyEffectReader.mismatches(entries, on: connection) == [])
            // C01–C04 (and every other rule) hold on the one-off drafts.
            #expect(try await LegacyTestSupport.violations(connection, clock: clock).map(\.description) == [])
            // They go on through the pipeline: finalize finds drafts.
            #expect(try await Self.firstActing(.finalizeInvoice, worker: worker, clock: clock, firstID: 100) != nil)
        }
    }

    @Test func theBillingWorkerEndsASubscriptionSetToCancelAtItsPeriodsEndWithItsHistoryRow() async throws {
        try await LegacyTestSupport.withReference { connection, dsn in
            // Story 6: subscription 61 is set to cancel at its period's end. Its period (and the
            // request) moved back so that end has passed; nothing else is due.
            try await connection.executeScript(
                """
                UPDATE legacy.subscriptions SET canceled_at = '2025-10-01 10:00', current_period_start = '2025-09-08 13:20',
                    current_period_end = '2025-10-08 13:20' WHERE id = 61;
                """)
            let clock = try await LegacyTestSupport.dataClock(connection)
            let worker = try await LegacySQLApp(dsn: dsn).makeWorker()
            defer { worker.close() }
            let histories = try await LegacyTestSupport.row(
                connection, "SELECT count(*)::text FROM legacy.subscription_history WHERE subscription_id = 61")
            let invoices = try await LegacyTestSupport.row(connection, "SELECT count(*)::text FROM legacy.invoices")
            let entry = try #require(try await worker.perform(LegacyTestSupport.single(.draftInvoice), clock: clock))
            let t = clock.current
            #expect(entry.keys == ["customer": "6", "subscription": "61"])
            #expect(entry.effects == [
                Effect(
                    entity: "subscription", key: "61",
                    fields: ["status": "canceled", "canceled_at": "2025-10-01T10:00:00.000000Z", "ended_at": "2025-10-08T13:20:00.000000Z"])
            ])
            let row = try await LegacyTestSupport.row(
                connection,
                """
                SELECT status, cancel_at_period_end::text, canceled_at::text, ended_at::text, (updated_at = $1::timestamptz::timestamp)::text
                FROM legacy.subscriptions WHERE id = 61
                """, [t])
            #expect(row == ["canceled", "true", "2025-10-01 10:00:00", "2025-10-08 13:20:00", "true"])
            // The ORM callback's history row: the running version, replaced now.
            let history = try await LegacyTestSupport.row(
                connection,
                """
                SELECT count(*)::text, (SELECT status || ' ' || cancel_at_period_end::text || ' ' || COALESCE(ended_at::text, 'NULL')
                    || ' ' || (changed_at = $1::timestamptz::timestamp)::text
                    FROM legacy.subscription_history WHERE subscription_id = 61 ORDER BY id DESC LIMIT 1)
                FROM legacy.subscription_history WHERE subscription_id = 61
                """, [t])
            #expect(history == [String(Int(histories[0]!)! + 1), "active true NULL true"])
            // Ended, not invoiced.
            #expect(try await LegacyTestSupport.row(connection, "SELECT count(*)::text FROM legacy.invoices") == invoices)
            #expect(try await LegacyEffectReader.mismatches([entry], on: connection) == [])
            #expect(try await LegacyTestSupport.violations(connection, clock: clock).map(\.description) == [])
            let backfill = try await LegacyTestSupport.quarantinedByBackfill(dsn)
            #expect(backfill.clean)
            #expect(backfill.quarantined == [])
        }
    }

    @Test func aMixedRunOnTheReferenceFixtureKeepsEveryRuleAndMigratesWithoutQuarantine() async throws {
        try await LegacyTestSupport.withReference { connection, dsn in
            let clock = try await LegacyTestSupport.dataClock(connection)
            let run = try await LegacyTestSupport.runSequentially(dsn: dsn, clock: clock, seed: 11, count: 400)
            #expect(run.journal.count > 200)
            // The invoice pipeline never starves: a draft is one-off when no subscription is due.
            #expect(run.idle[.draftInvoice] == nil)
            #expect(Set(run.journal.map(\.kind)).count >= 18)
            #expect(try await LegacyTestSupport.violations(connection, clock: clock).map(\.description) == [])
            #expect(try await LegacyEffectReader.mismatches(run.journal, on: connection) == [])
            let backfill = try await LegacyTestSupport.quarantinedByBackfill(dsn)
            #expect(backfill.clean)
            #expect(backfill.quarantined == [])
        }
    }

    @Test func aMixedRunOnAGeneratedFixtureKeepsEveryRuleAndMigratesWithoutQuarantine() async throws {
        try await LegacyTestSupport.withGenerated(customers: 300, seed: 5) { connection, dsn in
            let clock = try await LegacyTestSupport.dataClock(connection)
            let run = try await LegacyTestSupport.runSequentially(dsn: dsn, clock: clock, seed: 23, count: 500)
            #expect(Set(run.journal.map(\.kind)) == Set(OperationKind.allCases))
            #expect(try await LegacyTestSupport.violations(connection, clock: clock).map(\.description) == [])
            #expect(try await LegacyEffectReader.mismatches(run.journal, on: connection) == [])
            let backfill = try await LegacyTestSupport.quarantinedByBackfill(dsn)
            #expect(backfill.clean)
            #expect(backfill.quarantined == [])
        }
    }

    @Test func concurrentConnectionsKeepEveryRuleAndTheJournalFoldsInTimeOrder() async throws {
        try await LegacyTestSupport.withGenerated(customers: 60, seed: 8) { connection, dsn in
            let clock = try await LegacyTestSupport.dataClock(connection)
            let journal = try await LegacyTestSupport.runConcurrently(dsn: dsn, clock: clock, seed: 41, count: 600, workers: 4)
            #expect(journal.count > 300)
            // One business time per operation, never shared: a row's changes are ordered by it.
            #expect(Set(journal.map(\.at)).count == journal.count)
            #expect(try await LegacyTestSupport.violations(connection, clock: clock).map(\.description) == [])
            #expect(try await LegacyEffectReader.mismatches(journal, on: connection) == [])
        }
    }

    @Test func theSameSeedOnTheSameDataWritesTheSameRows() async throws {
        func run() async throws -> (rows: [String], journal: [JournalEntry]) {
            try await LegacyTestSupport.withReference { connection, dsn in
                let clock = try await LegacyTestSupport.dataClock(connection)
                let run = try await LegacyTestSupport.runSequentially(dsn: dsn, clock: clock, seed: 3, count: 150)
                return (try await LegacyTestSupport.legacyRows(connection), run.journal)
            }
        }
        let first = try await run()
        let second = try await run()
        #expect(first.journal.count > 50)
        #expect(first.journal == second.journal)
        #expect(first.rows == second.rows)
    }

    @Test func aRefusedOperationWritesNothingAndTheWorkerGoesOn() async throws {
        try await LegacyTestSupport.withReference { connection, dsn in
            let clock = try await LegacyTestSupport.dataClock(connection)
            let worker = try await LegacySQLApp(dsn: dsn).makeWorker()
            defer { worker.close() }
            // The write switch's guard, as the cutover installs it: every write refused with LL001.
            try await connection.executeScript(
                """
                CREATE FUNCTION legacy.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION '\(WriteGuard.message)' USING ERRCODE = '\(WriteGuard.sqlState)'; END $$;
                CREATE TRIGGER guard BEFORE INSERT OR UPDATE OR DELETE ON legacy.payments
                    FOR EACH STATEMENT EXECUTE FUNCTION legacy.refuse();
                """)
            let before = try await LegacyTestSupport.legacyRows(connection)
            let op = LegacyTestSupport.single(.paymentSucceeded)
            await #expect {
                try await worker.perform(op, clock: clock)
            } throws: { error in
                (error as? SimulatorError)?.sqlState == WriteGuard.sqlState
            }
            // Nothing of the operation stayed: the invoice is still open, the customer still owes.
            #expect(try await LegacyTestSupport.legacyRows(connection) == before)
            try await connection.executeScript("DROP TRIGGER guard ON legacy.payments")
            #expect(try await worker.perform(op, clock: clock) != nil)
            #expect(try await LegacyTestSupport.violations(connection, clock: clock).map(\.description) == [])
        }
    }

    @Test func anOperationBlockedByAnotherConnectionsLockFailsWithLockNotAvailable() async throws {
        try await LegacyTestSupport.withReference { connection, dsn in
            let clock = try await LegacyTestSupport.dataClock(connection)
            let worker = try await LegacySQLApp(dsn: dsn, lockTimeout: .milliseconds(100)).makeWorker()
            defer { worker.close() }
            try await connection.execute("BEGIN")
            try await connection.query("SELECT id FROM legacy.customers FOR UPDATE")
            let start = clock.current
            await #expect {
                try await worker.perform(LegacyTestSupport.single(.editName), clock: clock)
            } throws: { error in
                (error as? SimulatorError)?.sqlState == SQLState.lockNotAvailable.rawValue
            }
            // The clock is asked only once the locks are held.
            #expect(clock.current == start)
            try await connection.execute("ROLLBACK")
            #expect(try await worker.perform(LegacyTestSupport.single(.editName), clock: clock) != nil)
        }
    }
}

@Suite("ledgerlift fixture check")
struct FixtureCheckCommandTests {
    @Test func exitsZeroOnCleanDataOneOnBrokenRulesWithC18sWindowEndFromUntil() async throws {
        try await LegacyTestSupport.withReference { connection, dsn in
            let fixtures = try LegacyTestSupport.repositoryRoot().appendingPathComponent("fixtures").path
            let clean = try await LedgerliftBinary.run(["fixture", "check", "--dsn", dsn, "--fixtures", fixtures])
            #expect(clean.status == 0, "\(clean.stderr)")
            #expect(clean.stdout.contains("19 checks, every rule holds"))
            // A window ending before the seed's last events: C18 lists them, exit 1.
            let early = try await LedgerliftBinary.run(["fixture", "check", "--dsn", dsn, "--fixtures", fixtures, "--until", "2025-10-01"])
            #expect(early.status == 1)
            #expect(early.stdout.split(separator: "\n").first?.hasPrefix("C18 ") == true)
            // A cache edited in place (D05's defect): C07 names the customer.
            try await connection.execute("UPDATE legacy.customers SET balance = balance + 1 WHERE id = 19")
            let broken = try await LedgerliftBinary.run(["fixture", "check", "--dsn", dsn, "--fixtures", fixtures, "--until", "2025-11-02T00:00:00Z"])
            #expect(broken.status == 1)
            #expect(broken.stdout.hasPrefix("C07 customers 19: balance=-24.00 owed=0 unapplied_credit=25.00\n"))
            #expect(broken.stdout.hasSuffix("1 row(s) break 1 of 19 checks: C07 (1)\n"))
            let unusable = try await LedgerliftBinary.run(["fixture", "check", "--dsn", dsn, "--fixtures", fixtures, "--until", "soon"])
            #expect(unusable.status == 2)
        }
    }

    @Test func theWindowEndIsLocalToTheChecksTransaction() async throws {
        try await LegacyTestSupport.withReference { connection, _ in
            let suite = try FixtureCheckSuite(fixtures: try LegacyTestSupport.fixtures())
            let early = PostgresTimestamp(microsecondsSinceEpoch: FixtureCheckSuite.defaultWindowEnd.microsecondsSinceEpoch - 31 * 86_400_000_000)
            let found = try await connection.withSession { try suite.run(in: $0, windowEnd: early) }.flatMap(\.violations)
            #expect(!found.isEmpty && found.allSatisfy { $0.check == "C18" })
            let setting = try await connection.query("SELECT current_setting('ledgerlift.window_end', true)").rows[0]
            #expect((try setting.decode(at: 0, as: String?.self) ?? "") == "")
            #expect(try await connection.withSession { try suite.run(in: $0) }.flatMap(\.violations).isEmpty)
        }
    }
}
