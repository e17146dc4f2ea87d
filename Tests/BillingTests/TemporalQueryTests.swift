import Billing
import EventStore
import Foundation
import Postgres
import Testing

/// Three customer stories written by hand, whose balances change over time. Every expected
/// number below is worked out from the story, in minor units, not computed by the code.
@Suite("Temporal queries: balances, invoices, revenue, MRR and aging as of a business time")
struct TemporalQueryTests {
    static func row(_ entity: Entity, _ values: [String: CanonicalValue]) -> CanonicalRow {
        CanonicalRow(entity: entity, values: values)
    }

    static func with(_ row: CanonicalRow, _ changes: [String: CanonicalValue]) -> CanonicalRow {
        var copy = row
        for (k, v) in changes { copy.values[k] = v }
        return copy
    }

    static func customer(_ id: String, _ currency: String, created: String) -> RowHistory {
        [
            row(
                .customer,
                [
                    "customer_id": .text(id), "email": .text("\(id)@example.com"), "name": .text(id),
                    "currency": .text(currency), "created_at": .timestamp(ts(created)), "updated_at": .timestamp(ts(created)),
                ])
        ]
    }

    static func draft(_ id: String, _ customer: String, _ currency: String, total: Int64, created: String) -> CanonicalRow {
        row(
            .invoice,
            [
                "invoice_id": .text(id), "customer_id": .text(customer), "status": .text("draft"),
                "currency": .text(currency), "subtotal": .amount(total), "discount": .amount(0), "tax": .amount(0),
                "total": .amount(total), "amount_paid": .amount(0), "amount_due": .amount(total),
                "created_at": .timestamp(ts(created)), "updated_at": .timestamp(ts(created)),
            ])
    }

    static func finalized(_ draft: CanonicalRow, number: String, at time: String, due: String) -> CanonicalRow {
        with(
            draft,
            [
                "status": .text("open"), "number": .text(number), "finalized_at": .timestamp(ts(time)),
                "issued_on": .date(ts(time).utcDate), "due_on": .date(date(due)), "updated_at": .timestamp(ts(time)),
            ])
    }

    static func balanceTransaction(
        _ id: String, _ customer: String, _ currency: String, amount: Int64, type: String, at time: String,
        invoice: String? = nil, creditNote: String? = nil
    ) -> RowHistory {
        [
            row(
                .balanceTransaction,
                [
                    "balance_transaction_id": .text(id), "customer_id": .text(customer), "amount": .amount(amount),
                    "currency": .text(currency), "type": .text(type), "invoice_id": invoice.map { .text($0) } ?? .null,
                    "credit_note_id": creditNote.map { .text($0) } ?? .null, "created_at": .timestamp(ts(time)),
                ])
        ]
    }

    static func creditNote(_ id: String, _ customer: String, _ currency: String, total: Int64, at time: String)
        -> CanonicalRow
    {
        row(
            .creditNote,
            [
                "credit_note_id": .text(id), "customer_id": .text(customer), "number": .text(id.uppercased()),
                "status": .text("issued"), "total": .amount(total), "balance_remaining": .amount(total),
                "currency": .text(currency), "created_at": .timestamp(ts(time)),
            ])
    }

    /// Story A (USD): invoice of 100.00 drafted on Jan 5 and finalized on Jan 10 (due Jan 24);
    /// 40.00 paid on Feb 15; a 25.00 credit note on Mar 10 credits the customer balance.
    static var storyA: [RowHistory] {
        let d = draft("inv-a1", "cust-a", "USD", total: 10000, created: "2024-01-05T10:00:00Z")
        let open = finalized(d, number: "A-1", at: "2024-01-10T10:00:00Z", due: "2024-01-24")
        let partlyPaid = with(
            open, ["amount_paid": .amount(4000), "amount_due": .amount(6000), "updated_at": .timestamp(ts("2024-02-15T12:00:00Z"))])
        let pending = row(
            .payment,
            [
                "payment_id": .text("pay-a1"), "customer_id": .text("cust-a"), "invoice_id": .text("inv-a1"),
                "status": .text("pending"), "amount": .amount(4000), "currency": .text("USD"),
                "created_at": .timestamp(ts("2024-02-15T11:59:00Z")), "updated_at": .timestamp(ts("2024-02-15T11:59:00Z")),
            ])
        return [
            customer("cust-a", "USD", created: "2024-01-01T09:00:00Z"),
            [d, open, partlyPaid],
            [pending, with(pending, ["status": .text("succeeded"), "updated_at": .timestamp(ts("2024-02-15T12:00:00Z"))])],
            [creditNote("cn-a1", "cust-a", "USD", total: 2500, at: "2024-03-10T08:00:00Z")],
            balanceTransaction(
                "bt-a1", "cust-a", "USD", amount: -2500, type: "credit_note", at: "2024-03-10T08:00:00Z", creditNote: "cn-a1"),
        ]
    }

    /// Story B (EUR): a 50.00 invoice finalized Feb 1 (due Feb 15); a 15.00 debit adjustment
    /// on Mar 1; the invoice written off on Apr 1 and finally paid in full on May 10.
    static var storyB: [RowHistory] {
        let d = draft("inv-b1", "cust-b", "EUR", total: 5000, created: "2024-01-31T10:00:00Z")
        let open = finalized(d, number: "B-1", at: "2024-02-01T10:00:00Z", due: "2024-02-15")
        let writtenOff = with(open, ["status": .text("uncollectible"), "updated_at": .timestamp(ts("2024-04-01T09:00:00Z"))])
        let paid = with(
            writtenOff,
            [
                "status": .text("paid"), "amount_paid": .amount(5000), "amount_due": .amount(0),
                "paid_at": .timestamp(ts("2024-05-10T14:00:00Z")), "updated_at": .timestamp(ts("2024-05-10T14:00:00Z")),
            ])
        return [
            customer("cust-b", "EUR", created: "2024-01-15T00:00:00Z"),
            [d, open, writtenOff, paid],
            balanceTransaction("bt-b1", "cust-b", "EUR", amount: 1500, type: "adjustment", at: "2024-03-01T00:00:00Z"),
        ]
    }

    /// Story C (JPY): a ¥12,000 invoice finalized Jan 20 (due Feb 19); a ¥3,000 credit note on
    /// Feb 5 goes to the balance and is applied to the invoice on Feb 6; a ¥8,000 invoice
    /// finalized Mar 1 is voided on Mar 3.
    static var storyC: [RowHistory] {
        let d1 = draft("inv-c1", "cust-c", "JPY", total: 12000, created: "2024-01-19T00:00:00Z")
        let open1 = finalized(d1, number: "C-1", at: "2024-01-20T00:00:00Z", due: "2024-02-19")
        let credited = with(
            open1, ["amount_paid": .amount(3000), "amount_due": .amount(9000), "updated_at": .timestamp(ts("2024-02-06T09:00:00Z"))])
        let d2 = draft("inv-c2", "cust-c", "JPY", total: 8000, created: "2024-02-29T00:00:00Z")
        let open2 = finalized(d2, number: "C-2", at: "2024-03-01T00:00:00Z", due: "2024-03-31")
        let void = with(
            open2,
            [
                "status": .text("void"), "amount_due": .amount(0), "voided_at": .timestamp(ts("2024-03-03T00:00:00Z")),
                "updated_at": .timestamp(ts("2024-03-03T00:00:00Z")),
            ])
        let note = creditNote("cn-c1", "cust-c", "JPY", total: 3000, at: "2024-02-05T09:00:00Z")
        return [
            customer("cust-c", "JPY", created: "2024-01-02T00:00:00Z"),
            [d1, open1, credited],
            [d2, open2, void],
            [note, with(note, ["balance_remaining": .amount(0)])],
            balanceTransaction(
                "bt-c1", "cust-c", "JPY", amount: -3000, type: "credit_note", at: "2024-02-05T09:00:00Z", creditNote: "cn-c1"),
            balanceTransaction(
                "bt-c2", "cust-c", "JPY", amount: 3000, type: "applied_to_invoice", at: "2024-02-06T09:00:00Z",
                invoice: "inv-c1", creditNote: "cn-c1"),
        ]
    }

    /// MRR story (USD): customer M subscribes on Jan 10 to a 20.00 monthly plan, goes to 3 seats
    /// on Mar 5, moves to a 300.00 yearly plan (1 seat) on May 20 and cancels on Jul 2;
    /// customer N takes a 100.00 yearly plan on Feb 1 (833.33… cents a month: 833).
    static var mrrStory: [RowHistory] {
        func plan(_ id: String, _ amount: Int64, _ interval: String) -> RowHistory {
            [
                row(
                    .plan,
                    [
                        "plan_id": .text(id), "code": .text(id), "name": .text(id), "amount": .amount(amount),
                        "currency": .text("USD"), "interval": .text(interval), "archived": .boolean(false),
                        "created_at": .timestamp(ts("2023-12-01T00:00:00Z")), "updated_at": .timestamp(ts("2023-12-01T00:00:00Z")),
                    ])
            ]
        }
        func subscription(_ id: String, _ customer: String, _ plan: String, started: String) -> CanonicalRow {
            row(
                .subscription,
                [
                    "subscription_id": .text(id), "customer_id": .text(customer), "plan_id": .text(plan),
                    "status": .text("active"), "quantity": .integer(1), "started_at": .timestamp(ts(started)),
                    "cancel_at_period_end": .boolean(false), "created_at": .timestamp(ts(started)),
                    "updated_at": .timestamp(ts(started)),
                ])
        }
        let m0 = subscription("sub-m", "cust-m", "monthly-20", started: "2024-01-10T00:00:00Z")
        let m1 = with(m0, ["quantity": .integer(3), "updated_at": .timestamp(ts("2024-03-05T00:00:00Z"))])
        let m2 = with(
            m1, ["plan_id": .text("yearly-300"), "quantity": .integer(1), "updated_at": .timestamp(ts("2024-05-20T00:00:00Z"))])
        let m3 = with(
            m2,
            [
                "status": .text("canceled"), "canceled_at": .timestamp(ts("2024-07-02T00:00:00Z")),
                "ended_at": .timestamp(ts("2024-07-02T00:00:00Z")), "updated_at": .timestamp(ts("2024-07-02T00:00:00Z")),
            ])
        return [
            plan("monthly-20", 2000, "month"), plan("yearly-300", 30000, "year"), plan("yearly-100", 10000, "year"),
            customer("cust-m", "USD", created: "2024-01-10T00:00:00Z"),
            customer("cust-n", "USD", created: "2024-02-01T00:00:00Z"),
            [m0, m1, m2, m3],
            [subscription("sub-n", "cust-n", "yearly-100", started: "2024-02-01T00:00:00Z")],
        ]
    }

    static func balance(_ currency: String, _ receivables: Int64, _ credit: Int64, _ balance: Int64, of customer: String)
        -> CustomerBalance
    {
        CustomerBalance(customerID: customer, currency: currency, receivables: receivables, unappliedCredit: credit, balance: balance)
    }

    /// Projects the stories, with the events appended in business-time order in small chunks
    /// and projected in small batches (so several batches touch each customer).
    static func withStories(_ body: (Connection, ReadModelReader) async throws -> Void) async throws {
        try await withProjectionStore { connection, _, store in
            let events = ProjectionEvents(storyA + storyB + storyC + mrrStory)
            try await events.append(to: store, on: connection, chunk: 7)
            let projector = Projector(store: store, batchSize: 5)
            try await connection.withSession { try projector.install(in: $0) }
            _ = try await projector.run(on: connection)
            try await body(connection, ReadModelReader())
        }
    }

    @Test func balancesAsOfPastDatesEqualTheHandComputedValuesOfThreeStories() async throws {
        try await Self.withStories { (connection: Connection, reader: ReadModelReader) async throws in
            func balances(_ customer: String, _ asOf: String?) async throws -> [CustomerBalance] {
                try await connection.withSession { try reader.balances(customer: customer, asOf: asOf.map(ts), in: $0) }
            }
            // Story A.
            #expect(try await balances("cust-a", "2023-12-31T23:59:59Z") == [])
            #expect(try await balances("cust-a", "2024-01-07") == [Self.balance("USD", 0, 0, 0, of: "cust-a")])
            #expect(try await balances("cust-a", "2024-01-31") == [Self.balance("USD", 10000, 0, 10000, of: "cust-a")])
            #expect(try await balances("cust-a", "2024-02-15T11:59:59Z") == [Self.balance("USD", 10000, 0, 10000, of: "cust-a")])
            #expect(try await balances("cust-a", "2024-02-15T12:00:00Z") == [Self.balance("USD", 6000, 0, 6000, of: "cust-a")])
            #expect(try await balances("cust-a", "2024-03-15") == [Self.balance("USD", 6000, 2500, 3500, of: "cust-a")])
            #expect(try await balances("cust-a", nil) == [Self.balance("USD", 6000, 2500, 3500, of: "cust-a")])
            // Story B.
            #expect(try await balances("cust-b", "2024-02-10") == [Self.balance("EUR", 5000, 0, 5000, of: "cust-b")])
            #expect(try await balances("cust-b", "2024-03-05") == [Self.balance("EUR", 5000, -1500, 6500, of: "cust-b")])
            #expect(try await balances("cust-b", "2024-04-15") == [Self.balance("EUR", 5000, -1500, 6500, of: "cust-b")])
            #expect(try await balances("cust-b", "2024-05-15") == [Self.balance("EUR", 0, -1500, 1500, of: "cust-b")])
            #expect(try await balances("cust-b", nil) == [Self.balance("EUR", 0, -1500, 1500, of: "cust-b")])
            // Story C.
            #expect(try await balances("cust-c", "2024-01-25") == [Self.balance("JPY", 12000, 0, 12000, of: "cust-c")])
            #expect(try await balances("cust-c", "2024-02-05T12:00:00Z") == [Self.balance("JPY", 12000, 3000, 9000, of: "cust-c")])
            #expect(try await balances("cust-c", "2024-02-07") == [Self.balance("JPY", 9000, 0, 9000, of: "cust-c")])
            #expect(try await balances("cust-c", "2024-03-02") == [Self.balance("JPY", 17000, 0, 17000, of: "cust-c")])
            #expect(try await balances("cust-c", "2024-03-04") == [Self.balance("JPY", 9000, 0, 9000, of: "cust-c")])
            #expect(try await balances("cust-c", nil) == [Self.balance("JPY", 9000, 0, 9000, of: "cust-c")])
            // Unknown customer.
            #expect(try await balances("nobody", "2024-03-04") == [])
        }
    }

    @Test func anInvoiceAsOfAPastDateIsTheVersionValidThen() async throws {
        try await Self.withStories { (connection: Connection, reader: ReadModelReader) async throws in
            func invoice(_ id: String, _ asOf: String?) async throws -> CanonicalRow? {
                try await connection.withSession { try reader.invoice(id, asOf: asOf.map(ts), in: $0) }
            }
            #expect(try await invoice("inv-a1", "2024-01-05T09:59:59Z") == nil)
            #expect(try await invoice("inv-a1", "2024-01-07")?["status"] == .text("draft"))
            let open = try await invoice("inv-a1", "2024-02-01")
            #expect(open?["status"] == .text("open"))
            #expect(open?["amount_due"] == .amount(10000))
            #expect(open?["number"] == .text("A-1"))
            #expect(try await invoice("inv-a1", "2024-02-16")?["amount_due"] == .amount(6000))
            #expect(try await invoice("inv-b1", "2024-04-15")?["status"] == .text("uncollectible"))
            #expect(try await invoice("inv-b1", "2024-05-10T14:00:00Z")?["status"] == .text("paid"))
            #expect(try await invoice("inv-b1", nil) == Self.storyB[1].last)
            #expect(try await invoice("inv-c2", "2024-03-02")?["status"] == .text("open"))
            #expect(try await invoice("inv-c2", "2024-03-03")?["status"] == .text("void"))

            let versions = try await connection.withSession { try reader.history(.invoice, key: "inv-b1", in: $0) }
            #expect(versions.map(\.row) == Self.storyB[1])
            #expect(versions.map(\.validFrom) == [
                ts("2024-01-31T10:00:00Z"), ts("2024-02-01T10:00:00Z"), ts("2024-04-01T09:00:00Z"), ts("2024-05-10T14:00:00Z"),
            ])
            #expect(versions.last?.validTo == nil)
        }
    }

    @Test func revenueByMonthCountsFinalizedInvoicesSucceededPaymentsAndCreditNotes() async throws {
        try await Self.withStories { (connection: Connection, reader: ReadModelReader) async throws in
            let months = try await connection.withSession {
                try reader.revenue(from: date("2024-01-01"), to: date("2024-12-01"), in: $0)
            }
            let expected = [
                RevenueMonth(month: date("2024-01-01"), currency: "JPY", invoiced: 12000, collected: 0, refunded: 0, credited: 0),
                RevenueMonth(month: date("2024-01-01"), currency: "USD", invoiced: 10000, collected: 0, refunded: 0, credited: 0),
                RevenueMonth(month: date("2024-02-01"), currency: "EUR", invoiced: 5000, collected: 0, refunded: 0, credited: 0),
                RevenueMonth(month: date("2024-02-01"), currency: "JPY", invoiced: 0, collected: 0, refunded: 0, credited: 3000),
                RevenueMonth(month: date("2024-02-01"), currency: "USD", invoiced: 0, collected: 4000, refunded: 0, credited: 0),
                RevenueMonth(month: date("2024-03-01"), currency: "USD", invoiced: 0, collected: 0, refunded: 0, credited: 2500),
            ]
            #expect(months == expected)
            let february = try await connection.withSession {
                try reader.revenue(from: date("2024-02-01"), to: date("2024-02-29"), in: $0)
            }
            #expect(february == Array(expected[2...4]))
        }
    }

    @Test func mrrByMonthClassifiesNewExpansionContractionAndChurnPerCustomer() async throws {
        try await Self.withStories { (connection: Connection, reader: ReadModelReader) async throws in
            let months = try await connection.withSession {
                try reader.mrr(from: date("2023-01-01"), to: date("2025-01-01"), in: $0)
            }
            #expect(
                months == [
                    usdMRR("2024-01-01", new: 2000, mrr: 2000),
                    usdMRR("2024-02-01", new: 833, mrr: 2833),
                    usdMRR("2024-03-01", expansion: 4000, mrr: 6833),
                    usdMRR("2024-04-01", mrr: 6833),
                    usdMRR("2024-05-01", contraction: -3500, mrr: 3333),
                    usdMRR("2024-06-01", mrr: 3333),
                    usdMRR("2024-07-01", churn: -2500, mrr: 833),
                    // Every month asked for: after the last movement, the MRR carries forward.
                    usdMRR("2024-08-01", mrr: 833), usdMRR("2024-09-01", mrr: 833), usdMRR("2024-10-01", mrr: 833),
                    usdMRR("2024-11-01", mrr: 833), usdMRR("2024-12-01", mrr: 833), usdMRR("2025-01-01", mrr: 833),
                ])
            // A window with no movement in it still carries the MRR from before it.
            let quiet = try await connection.withSession {
                try reader.mrr(from: date("2024-09-01"), to: date("2024-10-01"), in: $0)
            }
            #expect(quiet == [usdMRR("2024-09-01", mrr: 833), usdMRR("2024-10-01", mrr: 833)])
        }
    }

    @Test func mrrOfOneCustomerClassifiesItsOwnMovementsAndCarriesItsMRR() async throws {
        try await Self.withStories { (connection: Connection, reader: ReadModelReader) async throws in
            func mrr(_ customer: String, _ from: String, _ to: String) async throws -> [MRRMonth] {
                try await connection.withSession { try reader.mrr(from: date(from), to: date(to), customer: customer, in: $0) }
            }
            #expect(
                try await mrr("cust-m", "2023-12-01", "2024-08-01") == [
                    usdMRR("2024-01-01", new: 2000, mrr: 2000),
                    usdMRR("2024-02-01", mrr: 2000),
                    usdMRR("2024-03-01", expansion: 4000, mrr: 6000),
                    usdMRR("2024-04-01", mrr: 6000),
                    usdMRR("2024-05-01", contraction: -3500, mrr: 2500),
                    usdMRR("2024-06-01", mrr: 2500),
                    usdMRR("2024-07-01", churn: -2500, mrr: 0),
                    usdMRR("2024-08-01", mrr: 0),
                ])
            // N's only movement (February) is before the window: its MRR carries into it.
            #expect(try await mrr("cust-n", "2024-03-01", "2024-04-01") == [usdMRR("2024-03-01", mrr: 833), usdMRR("2024-04-01", mrr: 833)])
            // A customer the read models do not know is a finding, not an empty report.
            await #expect(throws: ReportError.unknownCustomer("no-such-customer")) {
                _ = try await mrr("no-such-customer", "2024-01-01", "2024-12-01")
            }
            // A known customer without subscriptions: no MRR, an answer.
            #expect(try await mrr("cust-a", "2024-01-01", "2024-12-01") == [])
        }
    }

    @Test func agingAsOfADateBucketsOpenAmountsByDaysPastDue() async throws {
        try await Self.withStories { (connection: Connection, reader: ReadModelReader) async throws in
            func aging(_ asOf: String) async throws -> [AgingRow] {
                try await connection.withSession { try reader.aging(asOf: ts(asOf), in: $0) }
            }
            // Jan 20, 00:00: A's 100.00 is not due until Jan 24; C's ¥12,000, finalized at that very instant, on Feb 19.
            #expect(
                try await aging("2024-01-20T00:00:00Z") == [
                    AgingRow(customerID: "cust-a", currency: "USD", current: 10000, days1to30: 0, days31to60: 0, days61to90: 0, over90: 0),
                    AgingRow(customerID: "cust-c", currency: "JPY", current: 12000, days1to30: 0, days31to60: 0, days61to90: 0, over90: 0),
                ])
            // Mar 15: A's 60.00 is 51 days past due; B's 50.00 is 29 days; C's ¥9,000 is 25 days.
            #expect(
                try await aging("2024-03-15T00:00:00Z") == [
                    AgingRow(customerID: "cust-a", currency: "USD", current: 0, days1to30: 0, days31to60: 6000, days61to90: 0, over90: 0),
                    AgingRow(customerID: "cust-b", currency: "EUR", current: 0, days1to30: 5000, days31to60: 0, days61to90: 0, over90: 0),
                    AgingRow(customerID: "cust-c", currency: "JPY", current: 0, days1to30: 9000, days31to60: 0, days61to90: 0, over90: 0),
                ])
            // May 20: B is paid; A is 117 days past due, C 91.
            #expect(
                try await aging("2024-05-20T00:00:00Z") == [
                    AgingRow(customerID: "cust-a", currency: "USD", current: 0, days1to30: 0, days31to60: 0, days61to90: 0, over90: 6000),
                    AgingRow(customerID: "cust-c", currency: "JPY", current: 0, days1to30: 0, days31to60: 0, days61to90: 0, over90: 9000),
                ])
            // Now (the ar_aging view) equals as of now from the history.
            let now = try await connection.withSession { try reader.aging(in: $0) }
            let nowFromHistory = try await connection.withSession {
                try reader.aging(asOf: PostgresTimestamp(try $0.query("SELECT now()::text").rows[0].decode(at: 0, as: String.self)), in: $0)
            }
            #expect(now == nowFromHistory)
            #expect(now.map(\.total) == [6000, 9000])
        }
    }

    /// Story V (EUR): a wallet migrated from one row — created on 2025-01-05 with the balance
    /// it has now, 30.40 — whose transactions are in the read model: topped up 100.00 (settled
    /// Jan 5), 34.80 consumed on Jan 31 and 34.80 on Feb 28; a 5.00 outbound transaction
    /// created Feb 1 still pending. Customer U's wallet (12.00, no transactions) is terminated
    /// on Feb 20.
    static var walletStory: [RowHistory] {
        func transaction(_ id: String, _ direction: String, _ amount: Int64, status: String, at time: String) -> RowHistory {
            [
                row(
                    .walletTransaction,
                    [
                        "wallet_transaction_id": .text(id), "wallet_id": .text("wal-v"), "customer_id": .text("cust-v"),
                        "direction": .text(direction), "kind": .text(direction == "inbound" ? "purchased" : "consumed"),
                        "status": .text(status), "amount": .amount(amount), "currency": .text("EUR"),
                        "settled_at": status == "settled" ? .timestamp(ts(time)) : .null, "created_at": .timestamp(ts(time)),
                    ])
            ]
        }
        func wallet(_ id: String, _ customer: String, balance: Int64) -> CanonicalRow {
            row(
                .wallet,
                [
                    "wallet_id": .text(id), "customer_id": .text(customer), "status": .text("active"), "balance": .amount(balance),
                    "currency": .text("EUR"), "created_at": .timestamp(ts("2025-01-05T09:00:00Z")),
                    "updated_at": .timestamp(ts("2025-01-05T09:00:00Z")),
                ])
        }
        let u = wallet("wal-u", "cust-u", balance: 1200)
        return [
            customer("cust-v", "EUR", created: "2025-01-01T00:00:00Z"),
            customer("cust-u", "EUR", created: "2025-01-01T00:00:00Z"),
            [wallet("wal-v", "cust-v", balance: 3040)],
            transaction("wt-v1", "inbound", 10000, status: "settled", at: "2025-01-05T09:00:00Z"),
            transaction("wt-v2", "outbound", 3480, status: "settled", at: "2025-01-31T12:00:00Z"),
            transaction("wt-v3", "outbound", 500, status: "pending", at: "2025-02-01T12:00:00Z"),
            transaction("wt-v4", "outbound", 3480, status: "settled", at: "2025-02-28T12:00:00Z"),
            [
                u,
                with(
                    u,
                    [
                        "status": .text("terminated"), "terminated_at": .timestamp(ts("2025-02-20T00:00:00Z")),
                        "updated_at": .timestamp(ts("2025-02-20T00:00:00Z")),
                    ]),
            ],
        ]
    }

    @Test func prepaidCreditAsOfADateIsTheWalletsSettledTransactionsUpToThen() async throws {
        try await withProjectionStore { connection, _, store in
            try await ProjectionEvents(Self.walletStory).append(to: store, on: connection, chunk: 3)
            let projector = Projector(store: store, batchSize: 4)
            try await connection.withSession { try projector.install(in: $0) }
            _ = try await projector.run(on: connection)
            let reader = ReadModelReader()
            func prepaid(_ customer: String, _ asOf: String?) async throws -> [Int64] {
                try await connection.withSession {
                    try reader.balances(customer: customer, asOf: asOf.map(ts), in: $0).map(\.prepaidCredit)
                }
            }
            // Before the wallet: the customer's currency row only.
            #expect(try await prepaid("cust-v", "2025-01-04") == [0])
            // 100.00 topped up; nothing consumed yet (not the migrated row's 30.40).
            #expect(try await prepaid("cust-v", "2025-01-15") == [10000])
            // 100.00 − 34.80 (Jan 31); the pending 5.00 moves nothing.
            #expect(try await prepaid("cust-v", "2025-02-10") == [6520])
            // 100.00 − 34.80 − 34.80, now and as of any later date.
            #expect(try await prepaid("cust-v", "2025-03-01") == [3040])
            #expect(try await prepaid("cust-v", nil) == [3040])
            // Without transactions: the wallet version's balance, while the wallet is active.
            #expect(try await prepaid("cust-u", "2025-01-15") == [1200])
            #expect(try await prepaid("cust-u", "2025-02-20") == [0])
            #expect(try await prepaid("cust-u", nil) == [0])
        }
    }

    @Test func amountsPrintInTheCurrencysExponent() {
        #expect(ReportAmount.decimal(6000, currency: "USD") == "60.00")
        #expect(ReportAmount.decimal(-1500, currency: "EUR") == "-15.00")
        #expect(ReportAmount.decimal(9000, currency: "JPY") == "9000")
        #expect(ReportAmount.decimal(12345, currency: "KWD") == "12.345")
        #expect(ReportAmount.decimal(5, currency: "XXX") == "5")
    }
}

/// One month of the MRR story (all in USD).
private func usdMRR(
    _ month: String, new: Int64 = 0, expansion: Int64 = 0, contraction: Int64 = 0, churn: Int64 = 0, mrr: Int64
) -> MRRMonth {
    MRRMonth(
        month: date(month), currency: "USD", new: new, expansion: expansion, contraction: contraction, churn: churn,
        mrr: mrr)
}
