import Billing
import Commands
import Postgres
import Simulator
import Testing

/// The invoice operations' parity (``LegacyParity``) over many operations and the paths the
/// reference fixture rarely takes at its own data clock: the billing worker's renewals and ends
/// (subscriptions made due), drafts with usage, coupons and tax at several rates in USD, EUR,
/// GBP, JPY and KWD, and finalizations that apply goodwill credit and credit notes, in part or
/// in full.
///
/// Each kind runs in a scenario of its own, its setup made by legacy alone (shadow mode's sync
/// brings the ledger along): the harness's request ids restart with every run, and a command
/// whose stream already carries its request id is a replay.
@Suite struct InvoiceParityTests {
    /// Legacy edits of a scenario's own, brought to the ledger by shadow mode's sync.
    private static func edit(_ parity: LegacyParity, _ sql: String) async throws {
        let legacy = try await Connection.connect(parity.legacyDSN)
        defer { legacy.close() }
        let store = try await Connection.connect(parity.storeDSN)
        defer { store.close() }
        let before = try await parity.legacySnapshot(legacy)
        try await legacy.executeScript(sql)
        let after = try await parity.legacySnapshot(legacy)
        _ = try await parity.sync(LegacyParity.changedKeys(before: before, after: after), legacy: legacy, store: store)
    }

    /// Every running subscription's period ends before the data clock (due for a renewal), but
    /// three set to cancel at that end (to be ended instead); the customers' latest invoices
    /// carry tax rates (a draft copies its customer's).
    private static func makeDue(_ parity: LegacyParity) async throws {
        let legacy = try await Connection.connect(parity.legacyDSN)
        let latest = try await LegacySQLApp.latestRecordedMoment(on: legacy).iso8601
        legacy.close()
        try await edit(
            parity,
            """
            UPDATE legacy.subscriptions SET cancel_at_period_end = true, canceled_at = current_period_start + interval '1 hour',
                current_period_end = timestamp '\(latest)' - interval '1 hour'
            WHERE id IN (SELECT id FROM legacy.subscriptions WHERE status = 'active' AND NOT cancel_at_period_end
                         AND current_period_start < timestamp '\(latest)' - interval '2 hours' ORDER BY id LIMIT 3);
            UPDATE legacy.subscriptions SET current_period_end = timestamp '\(latest)' - interval '1 hour'
            WHERE status IN ('active', 'past_due') AND NOT cancel_at_period_end
              AND current_period_start < timestamp '\(latest)' - interval '2 hours';
            UPDATE legacy.invoices i SET tax_rate = CASE i.customer_id % 4 WHEN 0 THEN 0.19 WHEN 1 THEN 0.08875 WHEN 2 THEN 0.2 END
            WHERE i.id = (SELECT max(j.id) FROM legacy.invoices j WHERE j.customer_id = i.customer_id);
            """)
    }

    /// Goodwill credit for every customer with a draft: a little (part of the invoice) or a lot
    /// (all of it), in the customer's currency at its scale, with the caches the legacy
    /// application keeps (C07, C08).
    private static func addCredit(_ parity: LegacyParity) async throws {
        let legacy = try await Connection.connect(parity.legacyDSN)
        let latest = try await LegacySQLApp.latestRecordedMoment(on: legacy).iso8601
        legacy.close()
        try await edit(
            parity,
            """
            INSERT INTO legacy.customer_balance_transactions (customer_id, amount, currency, type, description, created_at)
            SELECT c.id, -(CASE WHEN c.id % 2 = 0 THEN 5 ELSE 5000 END)
                         * (CASE x.currency WHEN 'JPY' THEN 150 WHEN 'KWD' THEN 0.300 ELSE 1.00 END),
                   x.currency, 'adjustment', 'Goodwill credit', timestamp '\(latest)' - interval '30 minutes'
            FROM legacy.customers c
            CROSS JOIN LATERAL (SELECT coalesce(c.currency, (SELECT min(i.currency) FROM legacy.invoices i WHERE i.customer_id = c.id))
                                AS currency) x
            WHERE c.deleted_at IS NULL AND x.currency IS NOT NULL
              AND EXISTS (SELECT 1 FROM legacy.invoices i WHERE i.customer_id = c.id AND i.status = 0);
            UPDATE legacy.customers c SET
                balance = (SELECT coalesce(sum(amount_due), 0) FROM legacy.invoices i WHERE i.customer_id = c.id AND i.status IN (1, 4))
                          + (SELECT coalesce(sum(amount), 0) FROM legacy.customer_balance_transactions b WHERE b.customer_id = c.id),
                credit_balance = (-(SELECT coalesce(sum(amount), 0) FROM legacy.customer_balance_transactions b
                                    WHERE b.customer_id = c.id))::float8
            WHERE EXISTS (SELECT 1 FROM legacy.customer_balance_transactions b WHERE b.customer_id = c.id
                          AND b.description = 'Goodwill credit');
            """)
    }

    private static func expectParity(_ report: LegacyParity.KindReport) {
        print(report)
        #expect(report.operations > 0, "\(report)")
        #expect(report.rejections.isEmpty, "\(report)")
        #expect(report.mismatches.isEmpty, "\(report)")
        #expect(report.syncUnexplained.isEmpty, "\(report)")
    }

    @Test func draftsRenewalsAndEndsWithUsageCouponsAndTax() async throws {
        let report = try await LegacyParity.withFresh("parity_h3_drafts") { parity in
            try await Self.makeDue(parity)
            return try await parity.run(.draftInvoice, count: 60, seed: 161)
        }
        Self.expectParity(report)
        // Every subscription renewed or ended, then one-offs: more commands than operations.
        #expect(report.commands > report.operations)
    }

    @Test func finalizationsApplyingCreditInPartAndInFull() async throws {
        let report = try await LegacyParity.withFresh("parity_h3_finalize") { parity in
            try await Self.makeDue(parity)
            _ = try await parity.run(.finalizeInvoice, count: 0, seed: 162, preparing: Array(repeating: .draftInvoice, count: 30))
            try await Self.addCredit(parity)
            return try await parity.run(.finalizeInvoice, count: 24, seed: 163)
        }
        Self.expectParity(report)
    }

    @Test(arguments: [OperationKind.voidInvoice, .markUncollectible, .discardDraft])
    func closingAndDiscarding(_ kind: OperationKind) async throws {
        let report = try await LegacyParity.withFresh("parity_h3_\(kind.rawValue)") { parity in
            try await Self.makeDue(parity)
            let preparing: [OperationKind] =
                kind == .discardDraft
                ? Array(repeating: .draftInvoice, count: 10)
                : Array(repeating: .draftInvoice, count: 10) + Array(repeating: .finalizeInvoice, count: 10)
            return try await parity.run(kind, count: 8, seed: 164, preparing: preparing)
        }
        Self.expectParity(report)
    }
}
