import Mapping
import Billing
import Diff
import Fixtures
import Migration
import Postgres
import TestSupport
import Testing

/// The reference fixture backfilled and projected into `ledgerlift_read`; `body` gets the
/// store.
private func withProjectedReference(
    _ label: String = #function, _ body: (_ store: Connection) async throws -> Void
) async throws {
    try await withLegacyAndStore(.reference, label) { legacyDSN, store, storeDSN in
        let report = try await backfill(legacyDSN, storeDSN)
        #expect(report.totalQuarantined == 0)
        _ = try await Projector().catchUp(on: store)
        try await body(store)
    }
}

/// Every invariant's result, by name, with `statements` applied to the read models in a
/// transaction that is rolled back afterwards (so one migrated store serves several rounds).
private func invariants(
    on store: Connection, maxRows: Int = 100, after statements: [String] = []
) async throws -> [String: InvariantResult] {
    let results = try await store.withSession { session in
        try session.execute("BEGIN")
        defer { _ = try? session.execute("ROLLBACK") }
        for statement in statements { try session.execute(statement) }
        return try Invariant.all.map { try $0.check(session, readSchema: "ledgerlift_read", maxRows: maxRows) }
    }
    #expect(results.map(\.name) == Invariant.all.map(\.name))
    return Dictionary(uniqueKeysWithValues: results.map { ($0.name, $0) })
}

/// The names of the invariants that do not hold, sorted.
private func broken(_ results: [String: InvariantResult]) -> [String] {
    results.values.filter { !$0.holds }.map(\.name).sorted()
}

@Suite("Diff invariants: the ledger's arithmetic over the read models")
struct DiffInvariantTests {
    /// What each invariant checks on the reference fixture: 146 invoices, 45 customers (two of
    /// them with no currency and nothing owed), 151 payments, 5 credit notes; the version rules
    /// count the keys whose versions they checked (427 invoice versions, 6 credit note versions).
    static let referenceChecked: [String: Int64] = [
        "invoice_total": 146, "receivable_balance": 45, "refund_within_payment": 151, "credit_note_parts": 5,
        "wallet_balance": 0, "invoice_versions": 146, "credit_note_versions": 5,
    ]

    @Test func theInvariantsAreTheFiveLedgerRulesThenTheTwoVersionRulesInReportOrderWithStableNames() {
        #expect(
            Invariant.all.map(\.name) == [
                "invoice_total", "receivable_balance", "refund_within_payment", "credit_note_parts", "wallet_balance",
                "invoice_versions", "credit_note_versions",
            ])
        #expect(
            Invariant.all == [
                .invoiceTotal, .receivableBalance, .refundWithinPayment, .creditNoteParts, .walletBalance,
                .invoiceVersions, .creditNoteVersions,
            ])
        #expect(Invariant.all.allSatisfy { !$0.summary.isEmpty && $0.summary.hasSuffix(".") })
    }

    /// Refunded customers (14, 15, 21, 40), credit applied (16, 17, 18, 22), a voided credit
    /// note (38), drafts and void invoices (12, 13): the clean fixture breaks none of the rules.
    @Test func everyInvariantHoldsOnTheMigratedReferenceFixtureWithExactCheckedCounts() async throws {
        try await withProjectedReference { store in
            let results = try await invariants(on: store)
            for (name, checked) in Self.referenceChecked {
                let result = try #require(results[name])
                #expect(result.checked == checked, "\(name)")
                #expect(result.violations == 0 && result.offending.isEmpty && result.holds, "\(name)")
            }
        }
    }

    @Test func anInvoiceWhoseTotalOrLinesDriftIsReportedByInvoiceTotalAloneAndMaxRowsCapsOnlyTheList()
        async throws
    {
        try await withProjectedReference { store in
            let statements = [
                // A draft (1303) and a void invoice (1202): every status is checked, and
                // neither counts towards receivables, so only invoice_total may notice.
                "UPDATE ledgerlift_read.invoices SET total = total + 1 WHERE invoice_id = '1303'",
                "UPDATE ledgerlift_read.invoice_lines SET amount = amount + 1 WHERE invoice_line_id = '12021'",
            ]
            let all = try await invariants(on: store, after: statements)
            #expect(broken(all) == ["invoice_total"])
            let result = try #require(all["invoice_total"])
            #expect(result.checked == 146)
            #expect(result.violations == 2)
            #expect(
                result.offending == [
                    InvariantViolation(
                        key: "1202",
                        detail: "total 147.00 USD but its lines sum to 147.01 USD; "
                            + "subtotal 147.00 USD but its charge lines sum to 147.01 USD"),
                    InvariantViolation(
                        key: "1303",
                        detail: "total 1000.01 USD but its lines sum to 1000.00 USD; "
                            + "total 1000.01 USD but subtotal 1000.00 USD - discount 0.00 USD + tax 0.00 USD"
                            + " = 1000.00 USD"),
                ])

            let capped = try #require(try await invariants(on: store, maxRows: 1, after: statements)["invoice_total"])
            #expect(capped.violations == 2)
            #expect(capped.offending.map(\.key) == ["1202"])
            let none = try #require(try await invariants(on: store, maxRows: 0, after: statements)["invoice_total"])
            #expect(none.violations == 2 && none.offending.isEmpty && !none.holds)
        }
    }

    @Test func linesOfAnInvoiceTheReadModelLacksAreReportedUnderThatInvoice() async throws {
        try await withProjectedReference { store in
            let all = try await invariants(
                on: store, after: ["DELETE FROM ledgerlift_read.invoices WHERE invoice_id = '1303'"])
            #expect(broken(all) == ["invoice_total"])
            let result = try #require(all["invoice_total"])
            // 145 invoices plus the key only the lines name.
            #expect(result.checked == 146)
            #expect(result.violations == 1)
            #expect(
                result.offending == [
                    InvariantViolation(key: "1303", detail: "no invoice row, but lines of it sum to 1000.00 USD")
                ])
        }
    }

    @Test func aLostPaymentOrDriftedCreditIsReportedByReceivableBalanceAloneWithTheCustomerAndCurrency()
        async throws
    {
        try await withProjectedReference { store in
            let statements = [
                // Customer 1's invoice 101 stays paid, but its only payment no longer
                // succeeded: 19.00 of the paid invoices is covered by nothing.
                "UPDATE ledgerlift_read.payments SET status = 'failed' WHERE payment_id = '101'",
                // Customer 17 holds 12.00 of unused credit; the balance forgets it.
                "UPDATE ledgerlift_read.customer_balances SET unapplied_credit = 0, balance = 0"
                    + " WHERE customer_id = '17'",
            ]
            let all = try await invariants(on: store, after: statements)
            #expect(broken(all) == ["receivable_balance"])
            let result = try #require(all["receivable_balance"])
            #expect(result.checked == 45)
            #expect(result.violations == 2)
            #expect(
                result.offending == [
                    InvariantViolation(
                        key: "1",
                        detail:
                            "USD: receivables 0.00 USD but finalized invoices 95.00 USD - succeeded payments 76.00 USD"
                            + " - applied credit 0.00 USD = 19.00 USD; "
                            + "balance 0.00 USD but receivables 19.00 USD - unapplied credit 0.00 USD = 19.00 USD"),
                    InvariantViolation(
                        key: "17",
                        detail:
                            "USD: unapplied credit 0.00 USD but minus the sum of its balance transactions and balance credit applied = 12.00 USD; "
                            + "balance 0.00 USD but receivables 0.00 USD - unapplied credit 12.00 USD = -12.00 USD"),
                ])
            let capped = try #require(
                try await invariants(on: store, maxRows: 1, after: statements)["receivable_balance"])
            #expect(capped.violations == 2)
            #expect(capped.offending.map(\.key) == ["1"])
        }
    }

    /// The dirty fixture's legitimate overpayment (D25: 120.00 paid on a 100.00 invoice of
    /// customer 9025, the 20.00 surplus moved to credit by an `invoice_overpayment` transaction
    /// naming the invoice) settles the invoice exactly; without that link it would not.
    /// (What else the dirty fixture migrates depends on the backfill's quarantine, so only
    /// that the rules hold is asserted, not how much they checked.)
    @Test func anOverpaymentMovedToCreditSettlesItsInvoiceSoTheMigratedDirtyFixtureHoldsEveryInvariant()
        async throws
    {
        try await withLegacyAndStore(.dirty) { legacyDSN, store, storeDSN in
            _ = try await backfill(legacyDSN, storeDSN)
            _ = try await Projector().catchUp(on: store)
            let surplus = try await store.query(
                """
                SELECT amount FROM ledgerlift_read.balance_transactions
                WHERE type = 'invoice_overpayment' AND invoice_id = '902501'
                """
            ).rows.map { try $0.decode(at: 0, as: Int64.self) }
            #expect(surplus == [-2000])
            #expect(broken(try await invariants(on: store)).isEmpty)

            let drifted = try await invariants(
                on: store,
                after: ["UPDATE ledgerlift_read.customer_balances SET receivables = 100 WHERE customer_id = '9025'"])
            #expect(broken(drifted) == ["receivable_balance"])
            #expect(
                drifted["receivable_balance"]?.offending == [
                    InvariantViolation(
                        key: "9025",
                        detail: "USD: receivables 1.00 USD but finalized invoices 100.00 USD - succeeded payments"
                            + " 120.00 USD - applied credit 0.00 USD + overpayment moved to credit 20.00 USD = 0.00 USD"
                    )
                ])

            let unlinked = try await invariants(
                on: store,
                after: [
                    "UPDATE ledgerlift_read.balance_transactions SET type = 'adjustment'"
                        + " WHERE balance_transaction_id = '902501'"
                ])
            #expect(broken(unlinked) == ["receivable_balance"])
            #expect(
                unlinked["receivable_balance"]?.offending == [
                    InvariantViolation(
                        key: "9025",
                        detail: "USD: receivables 0.00 USD but finalized invoices 100.00 USD - succeeded payments"
                            + " 120.00 USD - applied credit 0.00 USD = -20.00 USD; "
                            + "balance -20.00 USD but receivables -20.00 USD - unapplied credit 20.00 USD = -40.00 USD")
                ])
        }
    }

    @Test func refundsBeyondTheirPaymentAreReportedByRefundWithinPaymentAloneButFailedRefundsDoNotCount()
        async throws
    {
        try await withProjectedReference { store in
            // Payment 1401 is 49.00 and was refunded in full; one cent more is too much.
            let over = try await invariants(
                on: store, after: ["UPDATE ledgerlift_read.refunds SET amount = 4901 WHERE refund_id = '1401'"])
            #expect(broken(over) == ["refund_within_payment"])
            let result = try #require(over["refund_within_payment"])
            #expect(result.checked == 151)
            #expect(result.violations == 1)
            #expect(
                result.offending == [
                    InvariantViolation(
                        key: "1401",
                        detail:
                            "its succeeded and pending refunds (1) sum to 49.01 USD, more than the payment's 49.00 USD")
                ])

            // Payment 4001 (99.00) has a succeeded refund of 30.00 and a failed one: a failed
            // refund of 70.00 returned nothing, a pending one may still.
            let failed = try await invariants(
                on: store, after: ["UPDATE ledgerlift_read.refunds SET amount = 7000 WHERE refund_id = '4001'"])
            #expect(broken(failed).isEmpty)
            let pending = try await invariants(
                on: store,
                after: ["UPDATE ledgerlift_read.refunds SET amount = 7000, status = 'pending' WHERE refund_id = '4001'"]
            )
            #expect(broken(pending) == ["refund_within_payment"])
            #expect(
                pending["refund_within_payment"]?.offending == [
                    InvariantViolation(
                        key: "4001",
                        detail:
                            "its succeeded and pending refunds (2) sum to 100.00 USD, more than the payment's 99.00 USD"
                    )
                ])
        }
    }

    @Test func aCreditNoteWhosePartsNoLongerAddUpIsReportedByCreditNotePartsAlone() async throws {
        try await withProjectedReference { store in
            // Note 171: 50.00 issued, 19.00 applied twice, 12.00 remaining.
            let all = try await invariants(
                on: store,
                after: ["UPDATE ledgerlift_read.credit_notes SET balance_remaining = 1300 WHERE credit_note_id = '171'"]
            )
            #expect(broken(all) == ["credit_note_parts"])
            let result = try #require(all["credit_note_parts"])
            #expect(result.checked == 5)
            #expect(result.violations == 1)
            #expect(
                result.offending == [
                    InvariantViolation(
                        key: "171",
                        detail:
                            "balance_remaining 13.00 USD but minus the sum of its balance transactions = 12.00 USD; "
                            + "total 50.00 USD but applied 38.00 USD + reversed 0.00 USD + balance_remaining 13.00 USD"
                            + " = 51.00 USD")
                ])

            // A total that no longer matches what the note issued breaks the parts too.
            let total = try await invariants(
                on: store, after: ["UPDATE ledgerlift_read.credit_notes SET total = 500 WHERE credit_note_id = '161'"])
            #expect(broken(total) == ["credit_note_parts"])
            #expect(
                total["credit_note_parts"]?.offending == [
                    InvariantViolation(
                        key: "161",
                        detail: "total 5.00 USD but its credit_note transactions issue 10.00 USD; "
                            + "total 5.00 USD but applied 10.00 USD + reversed 0.00 USD + balance_remaining 0.00 USD"
                            + " = 10.00 USD")
                ])
        }
    }

    // MARK: - Versions in the history tables

    /// The current rows stay as they are, so only the version rules can notice: invoice 101
    /// (draft, open, paid at 19.00) gets an open version that owes 19.00 after 10.00 was paid and
    /// a paid version overpaid at 20.00; the draft version of the void invoice 1202 totals
    /// 148.00 against parts of 147.00.
    @Test func anInvoiceVersionThatDoesNotBalanceIsReportedByInvoiceVersionsAloneWithItsValidFrom() async throws {
        try await withProjectedReference { store in
            let history = "ledgerlift_read.invoices_history"
            let statements = [
                "UPDATE \(history) SET amount_paid = 1000 WHERE invoice_id = '101' AND status = 'open'",
                "UPDATE \(history) SET amount_paid = 2000 WHERE invoice_id = '101' AND status = 'paid'",
                "UPDATE \(history) SET total = 14800 WHERE invoice_id = '1202' AND status = 'draft'",
            ]
            let all = try await invariants(on: store, after: statements)
            #expect(broken(all) == ["invoice_versions"])
            let result = try #require(all["invoice_versions"])
            #expect(result.checked == 146)
            #expect(result.violations == 2)
            #expect(
                result.offending == [
                    InvariantViolation(
                        key: "101",
                        detail: "version from 2025-06-16T10:14:00.000000Z (open): amount_due 19.00 USD, but total"
                            + " - amount_paid = 9.00 USD; "
                            + "version from 2025-06-16T10:16:03.000000Z (paid): amount_paid 20.00 USD is not between 0"
                            + " and the total 19.00 USD; amount_paid 20.00 USD and amount_due 0.00 USD, but a paid"
                            + " invoice has its total 19.00 USD settled and 0 due"),
                    InvariantViolation(
                        key: "1202",
                        detail: "version from 2025-09-02T09:00:00.000000Z (draft): total 148.00 USD but subtotal"
                            + " 147.00 USD - discount 0.00 USD + tax 0.00 USD = 147.00 USD; amount_paid 0.00 USD and"
                            + " amount_due 147.00 USD, but a draft has 0 paid and its total 148.00 USD due"),
                ])

            // --max-rows caps the keys listed, each with every one of its failing versions.
            let capped = try #require(
                try await invariants(on: store, maxRows: 1, after: statements)["invoice_versions"])
            #expect(capped.violations == 2)
            #expect(capped.offending.map(\.key) == ["101"])
            #expect(capped.offending.first?.detail == result.offending.first?.detail)
        }
    }

    /// Issue 13's case: credit note 171 (50.00, 12.00 remaining since 2025-08-20 15:00) gets an
    /// earlier version that says nothing was left before the credit was used, so its current
    /// version has more remaining than the one before it. The current row is untouched, so
    /// `credit_note_parts` passes it; the void note 381 keeps 1.00 GBP in its void version, and 161
    /// goes below 0.
    @Test func aCreditNoteVersionThatRestoresCreditOrLeavesItsRangeIsReportedByCreditNoteVersionsAlone()
        async throws
    {
        try await withProjectedReference { store in
            let history = "ledgerlift_read.credit_notes_history"
            let statements = [
                "CREATE TEMPORARY TABLE earlier ON COMMIT DROP AS SELECT * FROM \(history) WHERE credit_note_id = '171'",
                "UPDATE earlier SET valid_to = '2025-09-01 00:00:00+00', balance_remaining = 0",
                "UPDATE \(history) SET valid_from = '2025-09-01 00:00:00+00' WHERE credit_note_id = '171'",
                "INSERT INTO \(history) SELECT * FROM earlier",
                "UPDATE \(history) SET balance_remaining = 100 WHERE credit_note_id = '381' AND status = 'void'",
                "UPDATE \(history) SET balance_remaining = -1 WHERE credit_note_id = '161'",
            ]
            let all = try await invariants(on: store, after: statements)
            #expect(broken(all) == ["credit_note_versions"])
            let result = try #require(all["credit_note_versions"])
            #expect(result.checked == 5)
            #expect(result.violations == 3)
            #expect(
                result.offending == [
                    InvariantViolation(
                        key: "161",
                        detail: "version from 2025-09-01T10:00:00.000000Z (issued): balance_remaining -0.01 USD is not"
                            + " between 0 and the total 10.00 USD"),
                    InvariantViolation(
                        key: "171",
                        detail: "version from 2025-09-01T00:00:00.000000Z (issued): balance_remaining 12.00 USD is more"
                            + " than the 0.00 USD of the version from 2025-08-20T15:00:00.000000Z: credit is used up"
                            + " or voided, never restored"),
                    InvariantViolation(
                        key: "381",
                        detail: "version from 2025-09-20T14:10:00.000000Z (void): balance_remaining 1.00 GBP,"
                            + " but a void note has 0 remaining"),
                ])
        }
    }

    // MARK: - Amounts near the 64-bit limits

    /// The backfill accepts any `Int64` amount, so the rules must check amounts near the limits
    /// without overflowing: every sum and difference is computed in `numeric`, and a figure
    /// beyond `Int64` is shown exactly. The draft 1303 (two one-off lines, 750.00 and 250.00)
    /// becomes a subtotal of 9223372036854775000 minor units plus 900 of tax, whose sum is
    /// beyond `Int64.max`, so no `bigint` total can match it.
    @Test func anInvoiceWhosePartsAddUpBeyond64BitsIsReportedWithExactFiguresInsteadOfOverflowing() async throws {
        try await withProjectedReference { store in
            let nearMax = [
                "UPDATE ledgerlift_read.invoices SET subtotal = 9223372036854775000, discount = 0, tax = 900,"
                    + " total = 9223372036854775807 WHERE invoice_id = '1303'",
                "UPDATE ledgerlift_read.invoice_lines SET amount = 9223372036854775000 WHERE invoice_line_id = '13031'",
                "UPDATE ledgerlift_read.invoice_lines SET kind = 'tax', amount = 900 WHERE invoice_line_id = '13032'",
            ]
            let all = try await invariants(on: store, after: nearMax)
            #expect(broken(all) == ["invoice_total"])
            let result = try #require(all["invoice_total"])
            #expect(result.checked == 146)
            #expect(result.violations == 1)
            #expect(
                result.offending == [
                    InvariantViolation(
                        key: "1303",
                        detail: "total 92233720368547758.07 USD but its lines sum to 92233720368547759.00 USD; "
                            + "total 92233720368547758.07 USD but subtotal 92233720368547750.00 USD"
                            + " - discount 0.00 USD + tax 9.00 USD = 92233720368547759.00 USD")
                ])

            // The figures beyond 64 bits take the currency's exponent too (KWD has three
            // decimals, JPY none), or stay in minor units when the currency is unknown.
            for (currency, line, parts) in [
                ("KWD", "9223372036854775.900 KWD", "9223372036854775.900 KWD"),
                ("JPY", "9223372036854775900 JPY", "9223372036854775900 JPY"),
                ("XXQ", "9223372036854775900 minor units", "9223372036854775900 minor units"),
            ] {
                let other = try await invariants(
                    on: store,
                    after: nearMax + [
                        "UPDATE ledgerlift_read.invoices SET currency = '\(currency)' WHERE invoice_id = '1303'"
                    ])
                #expect(other["invoice_total"]?.offending.map(\.key) == ["1303"])
                let detail = try #require(other["invoice_total"]?.offending.first?.detail)
                #expect(detail.contains("but its lines sum to \(line);"), "\(currency): \(detail)")
                #expect(detail.hasSuffix("= \(parts)"), "\(currency): \(detail)")
            }

            // Consistent at the limit, the invoice holds: a total of Int64.max with its parts.
            let consistent = try await invariants(
                on: store,
                after: nearMax + [
                    "UPDATE ledgerlift_read.invoices SET tax = 807 WHERE invoice_id = '1303'",
                    "UPDATE ledgerlift_read.invoice_lines SET amount = 807 WHERE invoice_line_id = '13032'",
                ])
            #expect(broken(consistent).isEmpty)
        }
    }

    /// Customer 1's paid invoices 101 and 102 (19.00 each, each settled by its own succeeded
    /// payment) become 5000000000000000000 minor units each: the customer's finalized invoices
    /// and payments sum to more than `Int64.max`, yet nothing is owed, so every rule holds; with
    /// one of those payments failed, the receivables are reported with the exact sums.
    @Test func receivablesWhoseSumsExceed64BitsHoldWhenSettledAndAreReportedExactlyWhenNot() async throws {
        try await withProjectedReference { store in
            let huge = [
                "UPDATE ledgerlift_read.invoices SET subtotal = 5000000000000000000, total = 5000000000000000000"
                    + " WHERE invoice_id IN ('101', '102')",
                "UPDATE ledgerlift_read.invoice_lines SET amount = 5000000000000000000"
                    + " WHERE invoice_line_id IN ('1011', '1021')",
                "UPDATE ledgerlift_read.payments SET amount = 5000000000000000000 WHERE payment_id IN ('101', '102')",
            ]
            let settled = try await invariants(on: store, after: huge)
            #expect(broken(settled).isEmpty)
            #expect(settled["receivable_balance"]?.checked == 45)

            let unpaid = try await invariants(
                on: store,
                after: huge + ["UPDATE ledgerlift_read.payments SET status = 'failed' WHERE payment_id = '102'"])
            #expect(broken(unpaid) == ["receivable_balance"])
            let result = try #require(unpaid["receivable_balance"])
            #expect(result.violations == 1)
            #expect(
                result.offending == [
                    InvariantViolation(
                        key: "1",
                        detail: "USD: receivables 0.00 USD but finalized invoices 100000000000000057.00 USD"
                            + " - succeeded payments 50000000000000057.00 USD - applied credit 0.00 USD"
                            + " = 50000000000000000.00 USD; "
                            + "balance 0.00 USD but receivables 50000000000000000.00 USD - unapplied credit 0.00 USD"
                            + " = 50000000000000000.00 USD")
                ])
        }
    }

    /// Refunds that add up beyond `Int64.max` (payment 4001 at `Int64.max`, its failed refund
    /// made pending at `Int64.max` beside its succeeded 30.00), and a credit note issued at
    /// `Int64.min` (whose negation, what it issues, is beyond `Int64.max`): both are reported
    /// with their exact figures.
    @Test func refundsAndCreditNoteTransactionsBeyond64BitsAreReportedWithExactFigures() async throws {
        try await withProjectedReference { store in
            let refunds = try await invariants(
                on: store,
                after: [
                    "UPDATE ledgerlift_read.payments SET amount = 9223372036854775807 WHERE payment_id = '4001'",
                    "UPDATE ledgerlift_read.refunds SET amount = 9223372036854775807, status = 'pending'"
                        + " WHERE refund_id = '4001'",
                ])
            // Customer 40's payment now exceeds its invoice, which receivable_balance notices too.
            #expect(broken(refunds) == ["receivable_balance", "refund_within_payment"])
            #expect(
                refunds["refund_within_payment"]?.offending == [
                    InvariantViolation(
                        key: "4001",
                        detail: "its succeeded and pending refunds (2) sum to 92233720368547788.07 USD,"
                            + " more than the payment's 92233720368547758.07 USD")
                ])
            #expect(refunds["receivable_balance"]?.offending.map(\.key) == ["40"])

            // Note 171: 50.00 issued, 19.00 applied twice, 12.00 remaining.
            let note = try await invariants(
                on: store,
                after: [
                    "UPDATE ledgerlift_read.balance_transactions SET amount = -9223372036854775808"
                        + " WHERE credit_note_id = '171' AND type = 'credit_note'"
                ])
            #expect(broken(note) == ["credit_note_parts", "receivable_balance"])
            #expect(
                note["credit_note_parts"]?.offending == [
                    InvariantViolation(
                        key: "171",
                        detail: "balance_remaining 12.00 USD but minus the sum of its balance transactions"
                            + " = 92233720368547720.08 USD; "
                            + "total 50.00 USD but its credit_note transactions issue 92233720368547758.08 USD")
                ])
        }
    }
}

@Suite("Diff invariants: re-checked like differences, after the wait")
struct DiffInvariantRecheckTests {
    /// A customer's derived balance moved behind the check's back: no canonical row differs, only
    /// the receivable_balance invariant breaks.
    static let planted = "UPDATE ledgerlift_read.customer_balances SET receivables = receivables + 100, balance = balance + 100 WHERE customer_id = (SELECT min(customer_id) FROM ledgerlift_read.customer_balances)"
    static let restored = "UPDATE ledgerlift_read.customer_balances SET receivables = receivables - 100, balance = balance - 100 WHERE customer_id = (SELECT min(customer_id) FROM ledgerlift_read.customer_balances)"

    @Test func anInvariantBrokenOnlyWhileTheCheckRanIsNotReported() async throws {
        try await withLegacyAndStore(.reference) { legacyDSN, store, storeDSN in
            _ = try await backfill(legacyDSN, storeDSN)
            _ = try await Projector().catchUp(on: store)
            #expect(try await store.execute(Self.planted) == 1)
            // What the tailer does in shadow mode: the cross-key state becomes consistent again
            // while the diff waits to re-check.
            let report = try await diff(legacyDSN, storeDSN, beforeReverification: {
                let connection = try await Connection.connect(storeDSN)
                defer { connection.close() }
                _ = try await connection.execute(Self.restored)
            })
            #expect(report.isClean, "\(report.invariants.filter { !$0.holds })")
            #expect(report.invariants.allSatisfy { $0.holds })
        }
    }

    @Test func anInvariantStillBrokenAfterTheWaitIsReportedWithItsRecheckedFigures() async throws {
        try await withLegacyAndStore(.reference) { legacyDSN, store, storeDSN in
            _ = try await backfill(legacyDSN, storeDSN)
            _ = try await Projector().catchUp(on: store)
            #expect(try await store.execute(Self.planted) == 1)
            let rechecked = Locked(0)
            let report = try await diff(legacyDSN, storeDSN, beforeReverification: { rechecked.set(rechecked.value + 1) })
            #expect(rechecked.value == 1, "a broken invariant alone triggers the re-check")
            #expect(!report.isClean)
            #expect(report.invariants.filter { !$0.holds }.map(\.name) == ["receivable_balance"])
            #expect(report.entities.allSatisfy { $0.isClean }, "no canonical row differs")
        }
    }
}
