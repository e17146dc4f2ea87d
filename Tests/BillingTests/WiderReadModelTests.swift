import Billing
import EventStore
import Foundation
import Postgres
import TestSupport
import Testing

/// The read models over the wider canonical model, on stories written by hand: prepaid
/// top-ups (credit invoices) and wallet credit, one payment allocated to a top-up and an
/// invoice, balance credit applied after tax, two billing entities in two time zones,
/// customers in a third, a quarterly plan, a plan billed every two years and a pending
/// subscription. Every expected figure is worked out from the story, in minor units.
@Suite("Read models of the wider model: credit invoices, time zones, billing entities, interval counts, wallets")
struct WiderReadModelTests {
    static func row(_ entity: Entity, _ values: [String: CanonicalValue]) -> CanonicalRow {
        CanonicalRow(entity: entity, values: values)
    }

    static func with(_ row: CanonicalRow, _ changes: [String: CanonicalValue]) -> CanonicalRow {
        var copy = row
        for (k, v) in changes { copy.values[k] = v }
        return copy
    }

    static func t(_ text: String) -> CanonicalValue { .timestamp(ts(text)) }

    /// An invoice drafted an hour before it is finalized at `finalized` (due on `due`), then
    /// the later versions `changes` make, each at its `updated_at`.
    static func invoice(
        _ id: String, _ customer: String, _ currency: String, total: Int64, finalized: String, due: String,
        kind: String = "standard", billingEntity: String? = nil, then changes: [[String: CanonicalValue]] = []
    ) -> RowHistory {
        let finalizedAt = ts(finalized)
        let draftedAt = PostgresTimestamp(microsecondsSinceEpoch: finalizedAt.microsecondsSinceEpoch - 3_600_000_000)
        let draft = row(
            .invoice,
            [
                "invoice_id": .text(id), "customer_id": .text(customer), "status": .text("draft"), "kind": .text(kind),
                "currency": .text(currency), "subtotal": .amount(total), "discount": .amount(0), "tax": .amount(0),
                "total": .amount(total), "amount_paid": .amount(0), "amount_due": .amount(total),
                "created_at": .timestamp(draftedAt), "updated_at": .timestamp(draftedAt),
                "billing_entity_id": billingEntity.map { .text($0) } ?? .null,
            ])
        var versions = [
            draft,
            with(
                draft,
                [
                    "status": .text("open"), "number": .text(id.uppercased()), "finalized_at": .timestamp(finalizedAt),
                    "issued_on": .date(finalizedAt.utcDate), "due_on": .date(date(due)), "updated_at": .timestamp(finalizedAt),
                ]),
        ]
        for change in changes { versions.append(with(versions.last!, change)) }
        return versions
    }

    static func payment(
        _ id: String, _ customer: String, _ currency: String, amount: Int64, invoice: String?, succeeded: String
    ) -> RowHistory {
        let at = ts(succeeded)
        let created = PostgresTimestamp(microsecondsSinceEpoch: at.microsecondsSinceEpoch - 300_000_000)
        let pending = row(
            .payment,
            [
                "payment_id": .text(id), "customer_id": .text(customer), "invoice_id": invoice.map { .text($0) } ?? .null,
                "status": .text("pending"), "amount": .amount(amount), "currency": .text(currency),
                "created_at": .timestamp(created), "updated_at": .timestamp(created),
            ])
        return [pending, with(pending, ["status": .text("succeeded"), "succeeded_at": .timestamp(at), "updated_at": .timestamp(at)])]
    }

    /// The two tenants: Acme EU keeps Paris time, Acme US New York time.
    static var billingEntities: [RowHistory] {
        [("be-eu", "Europe/Paris", "EUR"), ("be-us", "America/New_York", "USD")].map { id, zone, currency in
            [
                row(
                    .billingEntity,
                    [
                        "billing_entity_id": .text(id), "name": .text(id), "time_zone": .text(zone), "currency": .text(currency),
                        "created_at": t("2023-12-01T00:00:00Z"), "updated_at": t("2023-12-01T00:00:00Z"),
                    ])
            ]
        }
    }

    static func customer(_ id: String, _ currency: String, billingEntity: String?, timeZone: String?) -> RowHistory {
        [
            row(
                .customer,
                [
                    "customer_id": .text(id), "name": .text(id), "currency": .text(currency),
                    "billing_entity_id": billingEntity.map { .text($0) } ?? .null,
                    "time_zone": timeZone.map { .text($0) } ?? .null, "created_at": t("2024-01-01T00:00:00Z"),
                    "updated_at": t("2024-01-01T00:00:00Z"),
                ])
        ]
    }

    /// Story W (EUR, Acme EU, no time zone of its own: Paris through its billing entity).
    /// A 50.00 top-up (credit invoice) finalized Jan 5, paid the same morning, fills a wallet;
    /// a 15.00 invoice finalized on 2024-01-31T23:30Z (already February 1 in Paris) is paid
    /// from the wallet on Feb 1 (wallet balance 35.00 left); a 20.00 invoice finalized Feb 10,
    /// due Feb 15, stays open.
    static var storyW: [RowHistory] {
        let wallet = row(
            .wallet,
            [
                "wallet_id": .text("wal-w"), "customer_id": .text("cust-w"), "status": .text("active"), "balance": .amount(5000),
                "currency": .text("EUR"), "created_at": t("2024-01-05T10:05:00Z"), "updated_at": t("2024-01-05T10:05:00Z"),
            ])
        let topUp = row(
            .walletTransaction,
            [
                "wallet_transaction_id": .text("wt-w-in"), "wallet_id": .text("wal-w"), "customer_id": .text("cust-w"),
                "direction": .text("inbound"), "kind": .text("purchased"), "status": .text("pending"), "amount": .amount(5000),
                "currency": .text("EUR"), "invoice_id": .text("inv-w-top"), "created_at": t("2024-01-05T10:05:00Z"),
            ])
        return [
            customer("cust-w", "EUR", billingEntity: "be-eu", timeZone: nil),
            invoice(
                "inv-w-top", "cust-w", "EUR", total: 5000, finalized: "2024-01-05T09:30:00Z", due: "2024-01-05", kind: "credit",
                then: [
                    [
                        "status": .text("paid"), "amount_paid": .amount(5000), "amount_due": .amount(0),
                        "paid_at": t("2024-01-05T10:05:00Z"), "updated_at": t("2024-01-05T10:05:00Z"),
                    ]
                ]),
            payment("pay-w-top", "cust-w", "EUR", amount: 5000, invoice: "inv-w-top", succeeded: "2024-01-05T10:05:00Z"),
            [wallet, with(wallet, ["balance": .amount(3500), "updated_at": t("2024-02-01T08:00:00Z")])],
            [topUp, with(topUp, ["status": .text("settled"), "settled_at": t("2024-01-05T10:05:00Z")])],
            [
                row(
                    .walletTransaction,
                    [
                        "wallet_transaction_id": .text("wt-w-out"), "wallet_id": .text("wal-w"), "customer_id": .text("cust-w"),
                        "direction": .text("outbound"), "kind": .text("consumed"), "status": .text("settled"),
                        "amount": .amount(1500), "currency": .text("EUR"), "invoice_id": .text("inv-w1"),
                        "settled_at": t("2024-02-01T08:00:00Z"), "created_at": t("2024-02-01T08:00:00Z"),
                    ])
            ],
            invoice(
                "inv-w1", "cust-w", "EUR", total: 1500, finalized: "2024-01-31T23:30:00Z", due: "2024-02-14",
                then: [
                    [
                        "status": .text("paid"), "credit_applied": .amount(1500), "amount_due": .amount(0),
                        "paid_at": t("2024-02-01T08:00:00Z"), "updated_at": t("2024-02-01T08:00:00Z"),
                    ]
                ]),
            [
                row(
                    .creditApplication,
                    [
                        "credit_application_id": .text("ca-w1"), "customer_id": .text("cust-w"), "invoice_id": .text("inv-w1"),
                        "wallet_transaction_id": .text("wt-w-out"), "amount": .amount(1500), "currency": .text("EUR"),
                        "created_at": t("2024-02-01T08:00:00Z"),
                    ])
            ],
            invoice("inv-w2", "cust-w", "EUR", total: 2000, finalized: "2024-02-10T12:00:00Z", due: "2024-02-15"),
        ]
    }

    /// Story X (USD, Acme US = New York, the customer itself in Tokyo time). A 20.00 top-up
    /// finalized Feb 20; a 37.00 invoice finalized on 2024-03-01T02:00Z (Feb 29 in New York);
    /// one 50.00 payment an hour later allocated 30.00 to the invoice and 20.00 to the top-up;
    /// a 10.00 credit adjustment to the customer balance on Mar 2, of which 7.00 is applied to
    /// the invoice on Mar 5 (a credit application naming neither credit note nor wallet, nor
    /// its customer: its invoice's); a 4.00 invoice billed by Acme EU (its own billing entity)
    /// finalized on 2024-03-31T20:00Z (Apr 1 in Tokyo), due Apr 14; a 9.00 wallet opened Feb 1,
    /// terminated Mar 20.
    static var storyX: [RowHistory] {
        let wallet = row(
            .wallet,
            [
                "wallet_id": .text("wal-x"), "customer_id": .text("cust-x"), "status": .text("active"), "balance": .amount(900),
                "currency": .text("USD"), "created_at": t("2024-02-01T00:00:00Z"), "updated_at": t("2024-02-01T00:00:00Z"),
            ])
        let allocation = { (id: String, invoice: String, amount: Int64) -> RowHistory in
            [
                row(
                    .paymentAllocation,
                    [
                        "payment_allocation_id": .text(id), "payment_id": .text("pay-x"), "invoice_id": .text(invoice),
                        "customer_id": .text("cust-x"), "amount": .amount(amount), "currency": .text("USD"),
                        "created_at": t("2024-03-01T03:00:00Z"),
                    ])
            ]
        }
        return [
            customer("cust-x", "USD", billingEntity: "be-us", timeZone: "Asia/Tokyo"),
            invoice(
                "inv-x-top", "cust-x", "USD", total: 2000, finalized: "2024-02-20T15:00:00Z", due: "2024-03-05", kind: "credit",
                then: [
                    [
                        "status": .text("paid"), "amount_paid": .amount(2000), "amount_due": .amount(0),
                        "paid_at": t("2024-03-01T03:00:00Z"), "updated_at": t("2024-03-01T03:00:00Z"),
                    ]
                ]),
            invoice(
                "inv-x1", "cust-x", "USD", total: 3700, finalized: "2024-03-01T02:00:00Z", due: "2024-03-31",
                then: [
                    ["amount_paid": .amount(3000), "amount_due": .amount(700), "updated_at": t("2024-03-01T03:00:00Z")],
                    [
                        "status": .text("paid"), "credit_applied": .amount(700), "amount_due": .amount(0),
                        "paid_at": t("2024-03-05T00:00:00Z"), "updated_at": t("2024-03-05T00:00:00Z"),
                    ],
                ]),
            payment("pay-x", "cust-x", "USD", amount: 5000, invoice: nil, succeeded: "2024-03-01T03:00:00Z"),
            allocation("pa-x1", "inv-x1", 3000),
            allocation("pa-x2", "inv-x-top", 2000),
            [
                row(
                    .balanceTransaction,
                    [
                        "balance_transaction_id": .text("bt-x1"), "customer_id": .text("cust-x"), "amount": .amount(-1000),
                        "currency": .text("USD"), "type": .text("adjustment"), "created_at": t("2024-03-02T00:00:00Z"),
                    ])
            ],
            [
                row(
                    .creditApplication,
                    [
                        "credit_application_id": .text("ca-x1"), "invoice_id": .text("inv-x1"), "amount": .amount(700),
                        "currency": .text("USD"), "created_at": t("2024-03-05T00:00:00Z"),
                    ])
            ],
            invoice(
                "inv-x2", "cust-x", "USD", total: 400, finalized: "2024-03-31T20:00:00Z", due: "2024-04-14",
                billingEntity: "be-eu"),
            [
                wallet,
                with(
                    wallet,
                    ["status": .text("terminated"), "terminated_at": t("2024-03-20T00:00:00Z"), "updated_at": t("2024-03-20T00:00:00Z")]),
            ],
        ]
    }

    /// Story Q (USD, no billing entity, Tokyo time): a quarterly 90.00 plan (30.00 a month per
    /// seat) from 2024-01-31T20:00Z (Feb 1 in Tokyo); two more seats on it from Apr 2 (a
    /// scheduled subscription that became active); from May 10 a 100.00 plan billed every two
    /// years, billed by Acme US (the subscription's own billing entity); from Jun 1 a scheduled
    /// subscription of five seats that is still pending.
    static var storyQ: [RowHistory] {
        func plan(_ id: String, _ amount: Int64, _ interval: String, count: Int64) -> RowHistory {
            [
                row(
                    .plan,
                    [
                        "plan_id": .text(id), "code": .text(id), "name": .text(id), "amount": .amount(amount),
                        "currency": .text("USD"), "interval": .text(interval), "interval_count": .integer(count),
                        "archived": .boolean(false), "created_at": t("2023-12-01T00:00:00Z"), "updated_at": t("2023-12-01T00:00:00Z"),
                    ])
            ]
        }
        func subscription(
            _ id: String, plan: String, quantity: Int64, status: String, started: String, billingEntity: String? = nil
        ) -> CanonicalRow {
            row(
                .subscription,
                [
                    "subscription_id": .text(id), "customer_id": .text("cust-q"), "plan_id": .text(plan), "status": .text(status),
                    "quantity": .integer(quantity), "started_at": t(started), "cancel_at_period_end": .boolean(false),
                    "created_at": t("2024-01-15T00:00:00Z"), "updated_at": t("2024-01-15T00:00:00Z"),
                    "billing_entity_id": billingEntity.map { .text($0) } ?? .null,
                ])
        }
        let scheduled = subscription("sub-q2", plan: "q-90", quantity: 2, status: "pending", started: "2024-04-02T00:00:00Z")
        return [
            plan("q-90", 9000, "month", count: 3), plan("biennial-100", 10000, "year", count: 2),
            customer("cust-q", "USD", billingEntity: nil, timeZone: "Asia/Tokyo"),
            [subscription("sub-q1", plan: "q-90", quantity: 1, status: "active", started: "2024-01-31T20:00:00Z")],
            [scheduled, with(scheduled, ["status": .text("active"), "updated_at": t("2024-04-02T00:00:00Z")])],
            [
                subscription(
                    "sub-q3", plan: "biennial-100", quantity: 1, status: "active", started: "2024-05-10T00:00:00Z",
                    billingEntity: "be-us")
            ],
            [subscription("sub-q4", plan: "q-90", quantity: 5, status: "pending", started: "2024-06-01T00:00:00Z")],
        ]
    }

    static var stories: [RowHistory] { billingEntities + storyW + storyX + storyQ }

    /// Projects the stories incrementally in batches of 5 events (several batches reach each
    /// customer, payment and invoice), and runs `body` with the live read model.
    static func withStories(_ body: (Connection, String, ReadModelReader) async throws -> Void) async throws {
        try await withProjectionStore { connection, dsn, store in
            try await ProjectionEvents(stories).append(to: store, on: connection, chunk: 7)
            let projector = Projector(store: store, batchSize: 5)
            try await connection.withSession { try projector.install(in: $0) }
            _ = try await projector.run(on: connection)
            try await body(connection, dsn, ReadModelReader())
        }
    }

    static func revenue(
        _ month: String, _ currency: String, invoiced: Int64 = 0, collected: Int64 = 0, prepaid: Int64 = 0
    ) -> RevenueMonth {
        RevenueMonth(
            month: date(month), currency: currency, invoiced: invoiced, collected: collected, refunded: 0, credited: 0,
            prepaidCollected: prepaid)
    }

    static func mrr(
        _ month: String, new: Int64 = 0, expansion: Int64 = 0, contraction: Int64 = 0, churn: Int64 = 0, mrr: Int64
    ) -> MRRMonth {
        MRRMonth(
            month: date(month), currency: "USD", new: new, expansion: expansion, contraction: contraction, churn: churn,
            mrr: mrr)
    }

    @Test func aCreditInvoiceIsNotInvoicedAndWhatPaysItIsPrepaidNotCollected() async throws {
        try await Self.withStories { (connection: Connection, _: String, reader: ReadModelReader) async throws in
            let months = try await connection.withSession {
                try reader.revenue(from: date("2024-01-01"), to: date("2024-04-01"), in: $0)
            }
            #expect(
                months == [
                    // W: the 15.00 invoice (finalized 23:30 UTC on Jan 31) is invoiced; its 50.00 top-up
                    // is not, and the payment of the top-up is prepaid cash. Paying the 15.00 from the
                    // wallet collects nothing more.
                    Self.revenue("2024-01-01", "EUR", invoiced: 1500, prepaid: 5000),
                    Self.revenue("2024-02-01", "EUR", invoiced: 2000),
                    // X: 37.00 + 4.00 invoiced; of the 50.00 payment, 30.00 allocated to the invoice is
                    // collected and 20.00 allocated to the top-up is prepaid.
                    Self.revenue("2024-03-01", "USD", invoiced: 4100, collected: 3000, prepaid: 2000),
                ])
        }
    }

    @Test func monthsInATimeZoneBucketEachInstantWhereItFallsThere() async throws {
        try await Self.withStories { (connection: Connection, _: String, reader: ReadModelReader) async throws in
            func revenue(_ zone: ReportTimeZone) async throws -> [RevenueMonth] {
                try await connection.withSession {
                    try reader.revenue(from: date("2024-01-01"), to: date("2024-04-01"), timeZone: zone, in: $0)
                }
            }
            // In Paris, inv-w1 (2024-01-31T23:30Z) is February's; inv-x2 (2024-03-31T20:00Z) is still March's.
            let paris = [
                Self.revenue("2024-01-01", "EUR", prepaid: 5000),
                Self.revenue("2024-02-01", "EUR", invoiced: 3500),
                Self.revenue("2024-03-01", "USD", invoiced: 4100, collected: 3000, prepaid: 2000),
            ]
            #expect(try await revenue(.named("Europe/Paris")) == paris)
            // The name is matched as PostgreSQL matches it, without regard to case.
            #expect(try await revenue(.named("europe/paris")) == paris)
            // Each customer's zone: W has none, so its billing entity's (Paris); X is in Tokyo,
            // where inv-x2 is April's.
            #expect(
                try await revenue(.customer) == [
                    Self.revenue("2024-01-01", "EUR", prepaid: 5000),
                    Self.revenue("2024-02-01", "EUR", invoiced: 3500),
                    Self.revenue("2024-03-01", "USD", invoiced: 3700, collected: 3000, prepaid: 2000),
                    Self.revenue("2024-04-01", "USD", invoiced: 400),
                ])
            // Each row's billing entity's zone: X's rows are Acme US's (New York, where inv-x1 at
            // 02:00Z and pay-x at 03:00Z on Mar 1 are Feb 29's), but inv-x2 is Acme EU's (Paris).
            #expect(
                try await revenue(.billingEntity) == [
                    Self.revenue("2024-01-01", "EUR", prepaid: 5000),
                    Self.revenue("2024-02-01", "EUR", invoiced: 3500),
                    Self.revenue("2024-02-01", "USD", invoiced: 3700, collected: 3000, prepaid: 2000),
                    Self.revenue("2024-03-01", "USD", invoiced: 400),
                ])
            // UTC computed when read equals the materialized table.
            #expect(try await revenue(.named("Etc/UTC")) == (try await revenue(.utc)))
        }
    }

    @Test func oneBillingEntitysRevenueTakesEachRowsOwnEntityElseItsCustomers() async throws {
        try await Self.withStories { (connection: Connection, _: String, reader: ReadModelReader) async throws in
            func revenue(_ entity: String, _ zone: ReportTimeZone = .utc) async throws -> [RevenueMonth] {
                try await connection.withSession {
                    try reader.revenue(from: date("2024-01-01"), to: date("2024-04-01"), timeZone: zone, billingEntity: entity, in: $0)
                }
            }
            #expect(
                try await revenue("be-eu") == [
                    Self.revenue("2024-01-01", "EUR", invoiced: 1500, prepaid: 5000),
                    Self.revenue("2024-02-01", "EUR", invoiced: 2000),
                    // inv-x2 names Acme EU itself, though its customer is Acme US's.
                    Self.revenue("2024-03-01", "USD", invoiced: 400),
                ])
            #expect(try await revenue("be-us") == [Self.revenue("2024-03-01", "USD", invoiced: 3700, collected: 3000, prepaid: 2000)])
            #expect(
                try await revenue("be-us", .billingEntity) == [
                    Self.revenue("2024-02-01", "USD", invoiced: 3700, collected: 3000, prepaid: 2000)
                ])
            await #expect(throws: ReportError.unknownBillingEntity("no-such-entity")) { try await revenue("no-such-entity") }
        }
    }

    @Test func mrrDividesByTheIntervalCountAndLeavesPendingSubscriptionsOut() async throws {
        try await Self.withStories { (connection: Connection, _: String, reader: ReadModelReader) async throws in
            func mrr(_ zone: ReportTimeZone = .utc, entity: String? = nil, customer: String? = nil) async throws -> [MRRMonth] {
                try await connection.withSession {
                    try reader.mrr(
                        from: date("2024-01-01"), to: date("2024-06-01"), customer: customer, timeZone: zone,
                        billingEntity: entity, in: $0)
                }
            }
            // 90.00 a quarter is 30.00 a month; three seats 90.00; then + 100.00 every two years:
            // (3 × 9000 × 12 / 3 + 10000 × 1 / 2) / 12 = 113000 / 12 = 9416.67 → 9417, rounded once.
            // The five pending seats from June add nothing.
            let utc = [
                Self.mrr("2024-01-01", new: 3000, mrr: 3000), Self.mrr("2024-02-01", mrr: 3000), Self.mrr("2024-03-01", mrr: 3000),
                Self.mrr("2024-04-01", expansion: 6000, mrr: 9000), Self.mrr("2024-05-01", expansion: 417, mrr: 9417),
                Self.mrr("2024-06-01", mrr: 9417),
            ]
            #expect(try await mrr() == utc)
            #expect(try await mrr(customer: "cust-q") == utc)
            // Computed when read, in UTC: the same.
            #expect(try await mrr(.named("UTC")) == utc)
            // In Tokyo (the customer's zone) the first subscription starts on Feb 1.
            let tokyo = [Self.mrr("2024-02-01", new: 3000, mrr: 3000)] + utc.dropFirst(2)
            #expect(try await mrr(.customer) == tokyo)
            #expect(try await mrr(.named("Asia/Tokyo"), customer: "cust-q") == tokyo)
            // Acme US: only the biennial plan's subscription names it: 10000 / 2 / 12 = 416.67 → 417.
            #expect(try await mrr(entity: "be-us") == [Self.mrr("2024-05-01", new: 417, mrr: 417), Self.mrr("2024-06-01", mrr: 417)])
            #expect(
                try await mrr(entity: "be-us", customer: "cust-q") == [
                    Self.mrr("2024-05-01", new: 417, mrr: 417), Self.mrr("2024-06-01", mrr: 417),
                ])
            #expect(try await mrr(entity: "be-eu").isEmpty)
        }
    }

    @Test func agingInATimeZoneAgesEachInvoiceByTheDateThere() async throws {
        try await Self.withStories { (connection: Connection, _: String, reader: ReadModelReader) async throws in
            func aging(_ asOf: String, _ zone: ReportTimeZone, entity: String? = nil) async throws -> [AgingRow] {
                try await connection.withSession { try reader.aging(asOf: ts(asOf), timeZone: zone, billingEntity: entity, in: $0) }
            }
            func row(_ customer: String, _ currency: String, current: Int64 = 0, d1: Int64 = 0, d31: Int64 = 0, d61: Int64 = 0)
                -> AgingRow
            {
                AgingRow(
                    customerID: customer, currency: currency, current: current, days1to30: d1, days31to60: d31, days61to90: d61,
                    over90: 0)
            }
            // inv-w2 is due Feb 15: at 23:30 UTC that day it is not late in UTC, one day late in Paris.
            #expect(try await aging("2024-02-15T23:30:00Z", .utc) == [row("cust-w", "EUR", current: 2000)])
            #expect(try await aging("2024-02-15T23:30:00Z", .named("Europe/Paris")) == [row("cust-w", "EUR", d1: 2000)])
            // Apr 15 23:30 UTC: inv-w2 60 days late, inv-x2 (due Apr 14) 1; in each row's billing
            // entity's zone — Paris for both (inv-x2 names Acme EU) — Apr 16: 61 and 2.
            #expect(
                try await aging("2024-04-15T23:30:00Z", .utc) == [
                    row("cust-w", "EUR", d31: 2000), row("cust-x", "USD", d1: 400),
                ])
            #expect(
                try await aging("2024-04-15T23:30:00Z", .billingEntity) == [
                    row("cust-w", "EUR", d61: 2000), row("cust-x", "USD", d1: 400),
                ])
            #expect(try await aging("2024-04-15T23:30:00Z", .utc, entity: "be-eu") == [
                row("cust-w", "EUR", d31: 2000), row("cust-x", "USD", d1: 400),
            ])
            #expect(try await aging("2024-04-15T23:30:00Z", .utc, entity: "be-us").isEmpty)
            // Now, in UTC computed when read, equals the ar_aging view.
            let view = try await connection.withSession { try reader.aging(in: $0) }
            let computed = try await connection.withSession { try reader.aging(timeZone: .named("UTC"), in: $0) }
            #expect(view == computed)
            #expect(view.map(\.total) == [2000, 400])
        }
    }

    @Test func balancesHoldPrepaidCreditAndBalanceCreditApplicationsUseUnappliedCredit() async throws {
        try await Self.withStories { (connection: Connection, _: String, reader: ReadModelReader) async throws in
            func balances(_ customer: String, _ asOf: String? = nil, entity: String? = nil) async throws -> [CustomerBalance] {
                try await connection.withSession {
                    try reader.balances(customer: customer, asOf: asOf.map(ts), billingEntity: entity, in: $0)
                }
            }
            func balance(_ customer: String, _ currency: String, _ receivables: Int64, _ credit: Int64, _ prepaid: Int64)
                -> CustomerBalance
            {
                CustomerBalance(
                    customerID: customer, currency: currency, receivables: receivables, unappliedCredit: credit,
                    balance: receivables - credit, prepaidCredit: prepaid)
            }
            // W: 20.00 open; 35.00 left in its active wallet (the wallet's own credit application
            // does not touch unapplied credit).
            #expect(try await balances("cust-w") == [balance("cust-w", "EUR", 2000, 0, 3500)])
            #expect(try await balances("cust-w", "2024-01-20") == [balance("cust-w", "EUR", 0, 0, 5000)])
            // X on Mar 3: 7.00 still owed on inv-x1, the 10.00 adjustment unapplied, 9.00 in a wallet.
            #expect(try await balances("cust-x", "2024-03-03") == [balance("cust-x", "USD", 700, 1000, 900)])
            // Now: 4.00 owed (inv-x2); 10.00 − 7.00 applied = 3.00 unapplied; the wallet is terminated.
            #expect(try await balances("cust-x") == [balance("cust-x", "USD", 400, 300, 0)])
            #expect(try await balances("cust-x", "2024-12-31") == [balance("cust-x", "USD", 400, 300, 0)])
            // Per billing entity: inv-x2 is Acme EU's; the rest is Acme US's, the customer's.
            #expect(try await balances("cust-x", entity: "be-eu") == [balance("cust-x", "USD", 400, 0, 0)])
            #expect(try await balances("cust-x", entity: "be-us") == [balance("cust-x", "USD", 0, 300, 0)])
            #expect(try await balances("cust-x", "2024-03-03", entity: "be-us") == [balance("cust-x", "USD", 700, 1000, 900)])
            #expect(try await balances("cust-w", entity: "be-us") == [])
        }
    }

    @Test func aBillingEntityTheReadModelsDoNotKnowIsRefusedNotAnsweredEmpty() async throws {
        try await Self.withStories { (connection: Connection, _: String, reader: ReadModelReader) async throws in
            let unknown = ReportError.unknownBillingEntity("nope")
            #expect(unknown.description == "unknown billing entity 'nope'")
            #expect(unknown.isUnknownName)
            #expect(!ReportError.unknownTimeZone("x").isUnknownName)
            let (from, to) = (date("2024-01-01"), date("2024-04-01"))
            await #expect(throws: unknown) { try await connection.withSession { try reader.revenue(from: from, to: to, billingEntity: "nope", in: $0) } }
            await #expect(throws: unknown) {
                try await connection.withSession { try reader.mrr(from: from, to: to, timeZone: .customer, billingEntity: "nope", in: $0) }
            }
            await #expect(throws: unknown) { try await connection.withSession { try reader.aging(billingEntity: "nope", in: $0) } }
            await #expect(throws: unknown) {
                try await connection.withSession { try reader.balances(customer: "cust-w", asOf: ts("2024-03-01T00:00:00Z"), billingEntity: "nope", in: $0) }
            }
            // Known: a billing_entities row; a name only a row's billing_entity_id gives.
            let known = try await connection.withSession { session in
                try ["be-eu", "be-us", "nope"].map { try reader.knowsBillingEntity($0, in: session) }
            }
            #expect(known == [true, true, false])
            try await connection.withSession { session in
                _ = try session.execute("UPDATE ledgerlift_read.customers_history SET billing_entity_id = 'be-only-named' WHERE customer_id = 'cust-q'")
                #expect(try reader.knowsBillingEntity("be-only-named", in: session))
            }
        }
    }

    @Test func aTimeZoneUnknownToPostgreSQLIsRefusedBeforeAnythingIsComputed() async throws {
        try await Self.withStories { (connection: Connection, _: String, reader: ReadModelReader) async throws in
            await #expect(throws: ReportError.unknownTimeZone("Mars/Olympus_Mons")) {
                _ = try await connection.withSession {
                    try reader.revenue(from: date("2024-01-01"), to: date("2024-02-01"), timeZone: .named("Mars/Olympus_Mons"), in: $0)
                }
            }
            _ = try await connection.execute("UPDATE ledgerlift_read.customers SET time_zone = 'Nowhere/Land' WHERE customer_id = 'cust-x'")
            let refused = ReportError.unknownTimeZoneInData(entity: "customer", key: "cust-x", zone: "Nowhere/Land")
            await #expect(throws: refused) {
                _ = try await connection.withSession {
                    try reader.mrr(from: date("2024-01-01"), to: date("2024-02-01"), timeZone: .customer, in: $0)
                }
            }
            #expect(
                refused.description
                    == #"customer cust-x has time_zone "Nowhere/Land", which is not a time zone PostgreSQL knows (pg_timezone_names): correct it, or report with --time-zone utc or an IANA name"#
            )
            // A billing entity's zone is the only one --time-zone billing-entity reads.
            let aging = try await connection.withSession { try reader.aging(timeZone: .billingEntity, in: $0) }
            #expect(aging.map(\.customerID) == ["cust-w", "cust-x"])
        }
    }

    /// The reports computed when read (any zone but the materialized UTC) follow the same
    /// definitions: in UTC they equal the materialized tables on the synthetic fixture, and
    /// per billing entity they add up to the whole.
    @Test func reportsComputedWhenReadInUTCEqualTheMaterializedTablesAndTenantsAddUp() async throws {
        try await withProjectionStore { connection, _, store in
            try await ProjectionEvents(BillingHistories.generate(customers: 30, seed: 11)).append(to: store, on: connection)
            _ = try await Projector(store: store, batchSize: 1000).catchUp(on: connection)
            let reader = ReadModelReader()
            let (from, to) = (date("2023-12-01"), date("2025-03-01"))
            try await connection.withSession { session in
                let revenue = try reader.revenue(from: from, to: to, in: session)
                #expect(revenue.count > 20)
                #expect(revenue.contains { $0.prepaidCollected > 0 })
                #expect(try reader.revenue(from: from, to: to, timeZone: .named("Etc/UTC"), in: session) == revenue)
                let mrr = try reader.mrr(from: from, to: to, in: session)
                #expect(mrr.contains { $0.churn < 0 } && mrr.contains { $0.expansion > 0 })
                #expect(try reader.mrr(from: from, to: to, timeZone: .named("Etc/UTC"), in: session) == mrr)
                for customer in ["c3", "c5", "c11", "c17"] {
                    #expect(
                        try reader.mrr(from: from, to: to, customer: customer, timeZone: .named("UTC"), in: session)
                            == reader.mrr(from: from, to: to, customer: customer, in: session), "\(customer)")
                }
                let aging = try reader.aging(asOf: ts("2024-09-01T00:00:00Z"), in: session)
                #expect(!aging.isEmpty)
                #expect(try reader.aging(asOf: ts("2024-09-01T00:00:00Z"), timeZone: .named("UTC"), in: session) == aging)

                // Every row has one billing entity or none: the tenants' sums and the rest make the whole.
                let orphans = try session.query(
                    """
                    SELECT count(*) FROM ledgerlift_read.revenue_entries AS e
                    LEFT JOIN ledgerlift_read.customers AS c USING (customer_id)
                    WHERE coalesce(e.billing_entity_id, c.billing_entity_id) IS NULL
                    """
                ).rows[0].decode(at: 0, as: Int64.self)
                #expect(orphans > 0)
                let tenants = try ["be-eu", "be-us"].map { try reader.revenue(from: from, to: to, billingEntity: $0, in: session) }
                #expect(tenants.allSatisfy { !$0.isEmpty })
                func total(_ months: [RevenueMonth]) -> Int64 { months.reduce(0) { $0 + $1.invoiced + $1.collected + $1.prepaidCollected } }
                let covered = try session.query(
                    """
                    SELECT sum(amount)::int8 FROM ledgerlift_read.revenue_entries AS e
                    LEFT JOIN ledgerlift_read.customers AS c USING (customer_id)
                    WHERE coalesce(e.billing_entity_id, c.billing_entity_id) IS NOT NULL AND e.kind IN ('invoice', 'payment', 'prepaid')
                    """
                ).rows[0].decode(at: 0, as: Int64.self)
                #expect(total(tenants[0]) + total(tenants[1]) == covered)
            }
        }
    }

    @Test func incrementalProjectionOfTheStoriesEqualsTheBlueGreenBuild() async throws {
        try await Self.withStories { (connection: Connection, _: String, _: ReadModelReader) async throws in
            let store = EventStore()
            let blueGreen = Projector(store: store, readSchema: "read_bluegreen", batchSize: 1000)
            _ = try await blueGreen.rebuild(on: connection)
            let a = try await tableHashes(connection, schema: "ledgerlift_read")
            let b = try await tableHashes(connection, schema: "read_bluegreen")
            for table in a.keys.sorted() { #expect(a[table] == b[table], "\(table) differs") }
        }
    }
}
