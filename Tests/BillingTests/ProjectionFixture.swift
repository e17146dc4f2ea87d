import Billing
import EventStore
import Foundation
import Postgres
import Synchronization
import TestSupport

/// A fresh database with an initialized event store.
func withProjectionStore(
    _ label: String = #function,
    _ body: (_ connection: Connection, _ dsn: String, _ store: EventStore) async throws -> Void
) async throws {
    try await TestDatabase.withConnection(label) { connection, dsn in
        let store = EventStore()
        try await connection.withSession { try store.migrate($0) }
        try await body(connection, dsn, store)
    }
}

/// `2024-01-10T09:00:00Z` (or a bare date, midnight UTC) as a timestamp.
func ts(_ text: String) -> PostgresTimestamp {
    if let t = PostgresTimestamp(text) { return t }
    return PostgresDate(text)!.startOfDayUTC
}

func date(_ text: String) -> PostgresDate { PostgresDate(text)! }

/// One key's successive canonical rows (its known history, oldest first).
typealias RowHistory = [CanonicalRow]

/// The events of each history (transitions from nothing through every version) and where
/// each version's last event sits in business time.
struct ProjectionEvents {
    var events: [StreamEvent] = []
    /// Per history: the business time of the last event of each version (`nil` for a
    /// version that produced no event).
    var versionTimes: [[PostgresTimestamp?]] = []
    /// Per history: the business time of the first event of each version.
    var firstTimes: [[PostgresTimestamp?]] = []

    init(_ histories: [RowHistory]) {
        for history in histories {
            var previous: CanonicalRow?
            var last: PostgresTimestamp?
            var version: Int64 = 0
            var times = [PostgresTimestamp?]()
            var firsts = [PostgresTimestamp?]()
            for (step, row) in history.enumerated() {
                let produced = Transitions.transitions(before: previous, after: row, step: step, notBefore: last)
                for event in produced {
                    version += 1
                    events.append(
                        StreamEvent(
                            streamID: event.streamID, streamVersion: version, event: event.newEvent(origin: "test")))
                }
                last = produced.last?.occurredAt ?? last
                times.append(produced.last?.occurredAt)
                firsts.append(produced.first?.occurredAt)
                previous = row
            }
            versionTimes.append(times)
            firstTimes.append(firsts)
        }
        // Interleave the streams roughly in business time, keeping each stream's order.
        events.sort {
            ($0.event.occurredAt, $0.streamID, $0.streamVersion) < ($1.event.occurredAt, $1.streamID, $1.streamVersion)
        }
    }

    /// Appends the events in chunks (several transactions, so the global order has many
    /// transaction ids).
    func append(to store: EventStore, on connection: Connection, chunk: Int = 400) async throws {
        for start in stride(from: 0, to: events.count, by: chunk) {
            let slice = Array(events[start..<min(events.count, start + chunk)])
            try await connection.withSession { try store.appendBulk(slice, in: $0) }
        }
    }
}

/// Reads the global order until `expected` events have arrived (other tests' transactions on
/// the cluster may hold back the readable horizon for a while).
func readAllEventually(
    _ store: EventStore, _ connection: Connection, expected: Int, timeout: Duration = .seconds(180)
) async throws -> [RecordedEvent] {
    var seen = [RecordedEvent]()
    var cursor = GlobalCursor.start
    let clock = ContinuousClock()
    let start = clock.now
    while seen.count < expected, clock.now - start < timeout {
        let batch = try await connection.withSession { [cursor] in try store.readAll(after: cursor, limit: 1000, in: $0) }
        seen += batch
        if let last = batch.last { cursor = last.cursor } else { try await Task.sleep(for: .milliseconds(5)) }
    }
    return seen
}

/// `md5` and row count of every read-model table (and the `ar_aging` view) in `schema`.
func tableHashes(_ connection: Connection, schema: String) async throws -> [String: String] {
    var hashes = [String: String]()
    for table in ReadModelSchema.allTables + ["ar_aging"] {
        let qualified = quoteIdentifier(schema) + "." + quoteIdentifier(table)
        let row = try await connection.query(
            "SELECT count(*)::text || ':' || md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM \(qualified) AS t"
        ).rows[0]
        hashes[table] = try row.decode(at: 0, as: String.self)
    }
    return hashes
}

/// The number of rows of `schema.table`.
func rowCount(_ connection: Connection, _ schema: String, _ table: String) async throws -> Int64 {
    try await connection.query("SELECT count(*) FROM \(quoteIdentifier(schema)).\(quoteIdentifier(table))").rows[0]
        .decode(at: 0, as: Int64.self)
}

/// A value shared between a test and the tasks it starts.
final class SharedValue<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    var value: Value {
        get { mutex.withLock { $0 } }
        set { mutex.withLock { $0 = newValue } }
    }
}

/// Deterministic pseudo-random numbers.
struct FixtureRandom {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
}

/// Synthetic billing data with consistent references: plans, customers with subscriptions that
/// change plan, quantity and status, monthly invoices that are finalized and paid (or left
/// open, written off, voided, partly paid), payments, refunds, credit notes and balance
/// transactions — each key a history of successive canonical rows.
struct BillingHistories {
    static let day: Int64 = 86_400_000_000
    static let origin = ts("2024-01-01T00:00:00Z").microsecondsSinceEpoch

    static func at(_ days: Int, _ minutes: Int = 0) -> PostgresTimestamp {
        PostgresTimestamp(microsecondsSinceEpoch: origin + Int64(days) * day + Int64(minutes) * 60_000_000)
    }

    static func row(_ entity: Entity, _ values: [String: CanonicalValue], attributes: [String: String?] = [:]) -> CanonicalRow {
        CanonicalRow(entity: entity, values: values, attributes: attributes)
    }

    static func with(_ row: CanonicalRow, _ changes: [String: CanonicalValue]) -> CanonicalRow {
        var copy = row
        for (k, v) in changes { copy.values[k] = v }
        return copy
    }

    struct Plan {
        let id: String
        let amount: Int64
        let currency: String
        let interval: String
    }

    static let plans: [Plan] = [
        Plan(id: "basic-m", amount: 1900, currency: "USD", interval: "month"),
        Plan(id: "pro-m", amount: 3900, currency: "USD", interval: "month"),
        Plan(id: "pro-y", amount: 49_000, currency: "USD", interval: "year"),
        Plan(id: "team-w", amount: 700, currency: "USD", interval: "week"),
        Plan(id: "jp-m", amount: 5500, currency: "JPY", interval: "month"),
        Plan(id: "jp-pro-m", amount: 9800, currency: "JPY", interval: "month"),
        Plan(id: "kw-m", amount: 12_345, currency: "KWD", interval: "month"),
        Plan(id: "eu-m", amount: 2900, currency: "EUR", interval: "month"),
        Plan(id: "eu-pro-m", amount: 5900, currency: "EUR", interval: "month"),
    ]

    static func planHistories() -> [RowHistory] {
        plans.map { plan in
            let v0 = row(
                .plan,
                [
                    "plan_id": .text(plan.id), "code": .text(plan.id), "name": .text("Plan \(plan.id)"),
                    "amount": .amount(plan.amount), "currency": .text(plan.currency), "interval": .text(plan.interval),
                    "trial_days": .integer(14), "archived": .boolean(false), "created_at": .timestamp(at(-30)),
                    "updated_at": .timestamp(at(-30)),
                ])
            // pro-m's price is edited in place mid-year.
            if plan.id == "pro-m" {
                return [v0, with(v0, ["amount": .amount(4900), "updated_at": .timestamp(at(152))])]
            }
            return [v0]
        }
    }

    /// Two tenants, one of which moves to another time zone.
    static func billingEntityHistories() -> [RowHistory] {
        let eu = row(
            .billingEntity,
            [
                "billing_entity_id": .text("be-eu"), "name": .text("Acme EU"), "time_zone": .text("Europe/Paris"),
                "currency": .text("EUR"), "created_at": .timestamp(at(-60)), "updated_at": .timestamp(at(-60)),
            ])
        let us = row(
            .billingEntity,
            [
                "billing_entity_id": .text("be-us"), "name": .text("Acme US"), "time_zone": .text("America/New_York"),
                "currency": .text("USD"), "created_at": .timestamp(at(-60)), "updated_at": .timestamp(at(-60)),
            ])
        return [[eu], [us, with(us, ["time_zone": .text("America/Chicago"), "updated_at": .timestamp(at(90))])]]
    }

    /// A quarterly plan per currency, first observed billed every month: its interval count
    /// changes on day 100, which changes the MRR of every customer on it.
    static func quarterlyPlanHistories() -> [RowHistory] {
        ["USD", "JPY", "KWD", "EUR"].map { currency in
            let v0 = row(
                .plan,
                [
                    "plan_id": .text("q-\(currency)"), "code": .text("q-\(currency)"), "name": .text("Quarterly"),
                    "amount": .amount(9000), "currency": .text(currency), "interval": .text("month"),
                    "interval_count": .integer(1), "archived": .boolean(false), "created_at": .timestamp(at(-30)),
                    "updated_at": .timestamp(at(-30)),
                ])
            return [v0, with(v0, ["interval_count": .integer(3), "updated_at": .timestamp(at(100))])]
        }
    }

    /// A customer's tenant and time zone (by `c`, drawing no random number, so the rest of the
    /// fixture stays as it was): every fifth in Acme EU and Tokyo time, every fifth in Acme US,
    /// every fifth only in Berlin time, every fifth moving into Acme EU on day `start + 70`.
    static func tenancy(_ c: Int) -> [String: CanonicalValue] {
        switch c % 5 {
        case 0: ["billing_entity_id": .text("be-eu"), "time_zone": .text("Asia/Tokyo")]
        case 1: ["billing_entity_id": .text("be-us")]
        case 2: ["time_zone": .text("Europe/Berlin")]
        default: [:]
        }
    }

    /// Stories of the entities that widen the model (allocations, wallets, credit applied
    /// after tax, chargebacks, gateway transactions), every fourth customer each, so every
    /// read-model table has rows in a fixture of a few customers; credit invoices (prepaid
    /// top-ups) paid directly or through an allocation, one of them first mapped as a
    /// standard invoice and corrected after its payment; balance credit applied without a
    /// customer of its own; and, every sixth customer, a scheduled subscription on a
    /// quarterly plan that becomes active and one that stays pending.
    static func widerModelStories(_ c: Int, id: String, currency: String, start: Int) -> [RowHistory] {
        var out = [RowHistory]()
        let tenant: CanonicalValue = .text(c % 2 == 0 ? "be-eu" : "be-us")
        func creditInvoice(_ invoiceID: String, kind: String, day: Int) -> [CanonicalRow] {
            let open = row(
                .invoice,
                [
                    "invoice_id": .text(invoiceID), "customer_id": .text(id), "status": .text("open"), "kind": .text(kind),
                    "currency": .text(currency), "subtotal": .amount(5000), "discount": .amount(0), "tax": .amount(0),
                    "total": .amount(5000), "amount_paid": .amount(0), "amount_due": .amount(5000),
                    "finalized_at": .timestamp(at(day)), "due_on": .date(at(day).utcDate), "created_at": .timestamp(at(day)),
                    "updated_at": .timestamp(at(day)),
                ])
            return [
                open,
                with(open, [
                    "status": .text("paid"), "amount_paid": .amount(5000), "amount_due": .amount(0),
                    "paid_at": .timestamp(at(day, 30)), "updated_at": .timestamp(at(day, 30)),
                ]),
            ]
        }
        func paid(_ paymentID: String, invoice: String?, day: Int) -> [CanonicalRow] {
            let pending = row(
                .payment,
                [
                    "payment_id": .text(paymentID), "customer_id": .text(id), "invoice_id": invoice.map { .text($0) } ?? .null,
                    "status": .text("pending"), "amount": .amount(5000), "currency": .text(currency),
                    "created_at": .timestamp(at(day, 20)), "updated_at": .timestamp(at(day, 20)),
                ])
            return [pending, with(pending, ["status": .text("succeeded"), "updated_at": .timestamp(at(day, 30))])]
        }
        if c % 6 == 5 {
            let scheduled = row(
                .subscription,
                [
                    "subscription_id": .text("sq\(c)"), "customer_id": .text(id), "plan_id": .text("q-\(currency)"),
                    "status": .text("pending"), "quantity": .integer(2), "started_at": .timestamp(at(start + 40)),
                    "cancel_at_period_end": .boolean(false), "created_at": .timestamp(at(start + 5)),
                    "updated_at": .timestamp(at(start + 5)), "billing_entity_id": tenant,
                ])
            out.append([scheduled, with(scheduled, ["status": .text("active"), "updated_at": .timestamp(at(start + 40))])])
            out.append([
                with(scheduled, [
                    "subscription_id": .text("sp\(c)"), "quantity": .integer(5), "started_at": .timestamp(at(start + 100)),
                ])
            ])
        }
        switch c % 4 {
        case 0:
            // One payment settling two invoices.
            let payment = row(
                .payment,
                [
                    "payment_id": .text("pr\(c)"), "customer_id": .text(id), "status": .text("pending"),
                    "amount": .amount(3000), "currency": .text(currency), "created_at": .timestamp(at(start + 35)),
                    "updated_at": .timestamp(at(start + 35)), "billing_entity_id": tenant,
                ])
            out.append([
                payment,
                with(payment, [
                    "status": .text("succeeded"), "succeeded_at": .timestamp(at(start + 35, 5)),
                    "updated_at": .timestamp(at(start + 35, 5)),
                ]),
            ])
            for (n, amount) in [(0, Int64(1000)), (1, Int64(2000))] {
                out.append([
                    row(
                        .paymentAllocation,
                        [
                            "payment_allocation_id": .text("pa\(c)_\(n)"), "payment_id": .text("pr\(c)"),
                            "invoice_id": .text("i\(c)_\(n)"), "customer_id": .text(id), "amount": .amount(amount),
                            "currency": .text(currency), "created_at": .timestamp(at(start + 35, 5)),
                            "billing_entity_id": tenant,
                        ])
                ])
            }
        case 1:
            // A wallet topped up, then used by an invoice after tax.
            let wallet = row(
                .wallet,
                [
                    "wallet_id": .text("w\(c)"), "customer_id": .text(id), "name": .text("Prepaid"),
                    "status": .text("active"), "balance": .amount(5000), "currency": .text(currency),
                    "created_at": .timestamp(at(start + 1)), "updated_at": .timestamp(at(start + 1)),
                    "billing_entity_id": tenant,
                ])
            out.append([
                wallet, with(wallet, ["balance": .amount(3500), "updated_at": .timestamp(at(start + 31))]),
                with(wallet, [
                    "balance": .amount(3500), "status": .text("terminated"), "terminated_at": .timestamp(at(start + 90)),
                    "updated_at": .timestamp(at(start + 90)),
                ]),
            ])
            let topUp = row(
                .walletTransaction,
                [
                    "wallet_transaction_id": .text("wt\(c)_0"), "wallet_id": .text("w\(c)"), "customer_id": .text(id),
                    "direction": .text("inbound"), "kind": .text("purchased"), "status": .text("pending"),
                    "amount": .amount(5000), "currency": .text(currency), "created_at": .timestamp(at(start + 1)),
                    "billing_entity_id": tenant,
                ])
            out.append([topUp, with(topUp, ["status": .text("settled"), "settled_at": .timestamp(at(start + 1, 30))])])
            out.append([
                row(
                    .walletTransaction,
                    [
                        "wallet_transaction_id": .text("wt\(c)_1"), "wallet_id": .text("w\(c)"), "customer_id": .text(id),
                        "direction": .text("outbound"), "kind": .text("consumed"), "status": .text("settled"),
                        "amount": .amount(1500), "currency": .text(currency), "invoice_id": .text("i\(c)_1"),
                        "settled_at": .timestamp(at(start + 31)), "created_at": .timestamp(at(start + 31)),
                        "billing_entity_id": tenant,
                    ])
            ])
            out.append([
                row(
                    .creditApplication,
                    [
                        "credit_application_id": .text("ca\(c)"), "customer_id": .text(id), "invoice_id": .text("i\(c)_1"),
                        "wallet_transaction_id": .text("wt\(c)_1"), "amount": .amount(1500), "currency": .text(currency),
                        "created_at": .timestamp(at(start + 31)), "billing_entity_id": tenant,
                    ])
            ])
            // The top-up's invoice, paid by a payment allocated to it.
            out.append(creditInvoice("ic\(c)", kind: "credit", day: start + 1))
            out.append(paid("pc\(c)", invoice: nil, day: start + 1))
            out.append([
                row(
                    .paymentAllocation,
                    [
                        "payment_allocation_id": .text("pac\(c)"), "payment_id": .text("pc\(c)"), "invoice_id": .text("ic\(c)"),
                        "customer_id": .text(id), "amount": .amount(5000), "currency": .text(currency),
                        // Recorded weeks after the payment: a later batch moves it to prepaid.
                        "created_at": .timestamp(at(start + 20)),
                    ])
            ])
        case 2:
            // A disputed payment: lost, with the gateway's transactions behind it.
            let chargeback = row(
                .chargeback,
                [
                    "chargeback_id": .text("cb\(c)"), "payment_id": .text("p\(c)_0_0"), "customer_id": .text(id),
                    "invoice_id": .text("i\(c)_0"), "amount": .amount(500), "currency": .text(currency),
                    "status": .text("pending"), "reason": .text("fraudulent"), "created_at": .timestamp(at(start + 50)),
                    "billing_entity_id": tenant,
                ])
            out.append([chargeback, with(chargeback, ["status": .text("lost"), "resolved_at": .timestamp(at(start + 70))])])
        default:
            // A top-up first mapped as a standard invoice and corrected weeks after its payment
            // (in a later batch, which must move the payment from collected to prepaid).
            var topUp = creditInvoice("ik\(c)", kind: "standard", day: start + 3)
            topUp.append(with(topUp[1], ["kind": .text("credit"), "updated_at": .timestamp(at(start + 60))]))
            out.append(topUp)
            out.append(paid("pk\(c)", invoice: "ik\(c)", day: start + 3))
            // Balance credit applied to an invoice, naming no customer of its own, after the
            // customer's last other event (no later batch recomputes its balances by chance).
            out.append([
                row(
                    .creditApplication,
                    [
                        "credit_application_id": .text("cab\(c)"), "invoice_id": .text("i\(c)_0"), "amount": .amount(300),
                        "currency": .text(currency), "created_at": .timestamp(at(start + 230)),
                    ])
            ])
            for (n, kind) in ["authorize", "capture"].enumerated() {
                out.append([
                    row(
                        .paymentTransaction,
                        [
                            "payment_transaction_id": .text("ptx\(c)_\(n)"), "payment_id": .text("p\(c)_0_0"),
                            "kind": .text(kind), "status": .text("succeeded"), "amount": .amount(1000),
                            "currency": .text(currency), "processed_amount": .amount(920),
                            "processed_currency": .text(currency == "EUR" ? "USD" : "EUR"), "attempt": .integer(1),
                            "created_at": .timestamp(at(start + 2, n)), "effective_at": .timestamp(at(start + 2, n)),
                            "billing_entity_id": tenant,
                        ])
                ])
            }
        }
        return out
    }

    /// Every history of `customers` customers (and the plans), in no particular order.
    static func generate(customers: Int, seed: UInt64) -> [RowHistory] {
        var rng = FixtureRandom(state: seed)
        var histories = planHistories() + quarterlyPlanHistories() + billingEntityHistories()
        for c in 0..<customers {
            histories += customer(c, &rng)
        }
        return histories
    }

    static func customer(_ c: Int, _ rng: inout FixtureRandom) -> [RowHistory] {
        var out = [RowHistory]()
        let id = "c\(c)"
        let start = rng.below(200)
        let planIndex = rng.below(plans.count)
        let plan = plans[planIndex]
        let currency = plan.currency
        let sameCurrency = plans.filter { $0.currency == currency && $0.id != plan.id }

        // Customer: created, sometimes renamed, sometimes archived at the end.
        let customer0 = row(
            .customer,
            [
                "customer_id": .text(id), "email": .text("\(id)@example.com"), "name": .text("Customer \(c)"),
                "currency": .text(currency), "created_at": .timestamp(at(start)), "updated_at": .timestamp(at(start)),
            ].merging(tenancy(c)) { $1 }, attributes: c % 3 == 0 ? ["segment": "smb", "legacy_flag": nil] : [:])
        var customerRows = [customer0]
        if rng.chance(30) {
            customerRows.append(
                with(customer0, ["email": .text("billing+\(id)@example.com"), "updated_at": .timestamp(at(start + 40, 7))]))
        }
        if c % 5 == 3 {
            customerRows.append(
                with(customerRows.last!, ["billing_entity_id": .text("be-eu"), "updated_at": .timestamp(at(start + 70))]))
        }

        // Subscription: starts (maybe trialing), may change plan or quantity, may be canceled.
        let subID = "s\(c)"
        let quantity = Int64(1 + rng.below(3))
        let trialing = rng.chance(20)
        let sub0 = row(
            .subscription,
            [
                "subscription_id": .text(subID), "customer_id": .text(id), "plan_id": .text(plan.id),
                "status": .text(trialing ? "trialing" : "active"), "quantity": .integer(quantity),
                "started_at": .timestamp(at(start, 5)), "trial_ends_at": trialing ? .timestamp(at(start + 14, 5)) : .null,
                "current_period_start": .timestamp(at(start, 5)), "current_period_end": .timestamp(at(start + 30, 5)),
                "cancel_at_period_end": .boolean(false), "created_at": .timestamp(at(start, 5)),
                "updated_at": .timestamp(at(start, 5)),
            ])
        var subRows = [sub0]
        var current = sub0
        var amount = plan.amount * quantity
        if trialing {
            current = with(current, ["status": .text("active"), "updated_at": .timestamp(at(start + 14, 5))])
            subRows.append(current)
        }
        if rng.chance(45), let other = sameCurrency.first {
            if rng.chance(50) {
                current = with(current, ["plan_id": .text(other.id), "updated_at": .timestamp(at(start + 61, 30))])
                amount = other.amount * quantity
            } else {
                current = with(current, ["quantity": .integer(quantity + 2), "updated_at": .timestamp(at(start + 61, 30))])
                amount = plan.amount * (quantity + 2)
            }
            subRows.append(current)
        }
        var months = 6
        if rng.chance(25) {
            months = 4
            current = with(
                current,
                [
                    "status": .text("canceled"), "canceled_at": .timestamp(at(start + 121, 10)),
                    "ended_at": .timestamp(at(start + 121, 10)), "updated_at": .timestamp(at(start + 121, 10)),
                ])
            subRows.append(current)
        } else if rng.chance(10) {
            current = with(current, ["status": .text("past_due"), "updated_at": .timestamp(at(start + 150, 10))])
            subRows.append(current)
        }
        out.append(customerRows)
        out.append(subRows)

        // Monthly invoices with one line, finalized an hour after drafting, then settled.
        for m in 0..<months {
            let d = start + 30 * m
            let invoiceID = "i\(c)_\(m)"
            let total = amount
            let draft = row(
                .invoice,
                [
                    "invoice_id": .text(invoiceID), "customer_id": .text(id), "subscription_id": .text(subID),
                    "status": .text("draft"), "currency": .text(currency), "subtotal": .amount(total),
                    "discount": .amount(0), "tax": .amount(0), "total": .amount(total), "amount_paid": .amount(0),
                    "amount_due": .amount(total), "period_start": .timestamp(at(d)), "period_end": .timestamp(at(d + 30)),
                    "created_at": .timestamp(at(d, 60)), "updated_at": .timestamp(at(d, 60)),
                ])
            let issued = at(d, 120).utcDate
            let open = with(
                draft,
                [
                    "status": .text("open"), "number": .text("N-\(c)-\(m)"), "finalized_at": .timestamp(at(d, 120)),
                    "issued_on": .date(issued), "due_on": .date(PostgresDate(daysSinceEpoch: issued.daysSinceEpoch + 14)),
                    "updated_at": .timestamp(at(d, 120)),
                ])
            var invoiceRows = [draft, open]
            out.append([
                row(
                    .invoiceLine,
                    [
                        "invoice_line_id": .text(invoiceID + "_1"), "invoice_id": .text(invoiceID),
                        "kind": .text("subscription"), "description": .text("Subscription"), "quantity": .decimal("1"),
                        "unit_amount": .decimal(ReportAmount.decimal(total, currency: currency)), "amount": .amount(total),
                        "currency": .text(currency), "period_start": .timestamp(at(d)), "period_end": .timestamp(at(d + 30)),
                        "proration": .boolean(false), "created_at": .timestamp(at(d, 60)),
                    ])
            ])
            let fate = rng.below(100)
            func payment(_ n: Int, _ value: Int64, succeeded: Bool, minute: Int) {
                let pending = row(
                    .payment,
                    [
                        "payment_id": .text("p\(c)_\(m)_\(n)"), "customer_id": .text(id), "invoice_id": .text(invoiceID),
                        "status": .text("pending"), "amount": .amount(value), "currency": .text(currency),
                        "provider_payment_id": .text("pi_\(c)_\(m)_\(n)"), "created_at": .timestamp(at(d, minute)),
                        "updated_at": .timestamp(at(d, minute)),
                    ])
                let settled = with(
                    pending,
                    succeeded
                        ? ["status": .text("succeeded"), "updated_at": .timestamp(at(d, minute + 1))]
                        : ["status": .text("failed"), "failure_code": .text("card_declined"),
                            "updated_at": .timestamp(at(d, minute + 1))])
                if succeeded, rng.chance(8) {
                    let refund = row(
                        .refund,
                        [
                            "refund_id": .text("r\(c)_\(m)_\(n)"), "payment_id": .text("p\(c)_\(m)_\(n)"),
                            "customer_id": .text(id), "amount": .amount(max(1, value / 2)), "currency": .text(currency),
                            "status": .text("pending"), "reason": .text("requested_by_customer"),
                            "created_at": .timestamp(at(d + 3)),
                        ])
                    out.append([refund, with(refund, ["status": .text("succeeded")])])
                }
                out.append([pending, settled])
            }
            switch fate {
            case 0..<65:
                if rng.chance(15) { payment(0, total, succeeded: false, minute: 150) }
                payment(1, total, succeeded: true, minute: 180)
                invoiceRows.append(
                    with(
                        open,
                        [
                            "status": .text("paid"), "amount_paid": .amount(total), "amount_due": .amount(0),
                            "paid_at": .timestamp(at(d, 181)), "updated_at": .timestamp(at(d, 181)),
                        ]))
            case 65..<75:
                break  // stays open
            case 75..<83:
                invoiceRows.append(
                    with(open, ["status": .text("uncollectible"), "updated_at": .timestamp(at(d + 45, 3))]))
            case 83..<90:
                let half = total / 2
                payment(1, half, succeeded: true, minute: 200)
                invoiceRows.append(
                    with(
                        open,
                        [
                            "amount_paid": .amount(half), "amount_due": .amount(total - half),
                            "updated_at": .timestamp(at(d, 201)),
                        ]))
            case 90..<95:
                invoiceRows.append(
                    with(
                        open,
                        [
                            "status": .text("void"), "amount_due": .amount(0), "voided_at": .timestamp(at(d + 2)),
                            "updated_at": .timestamp(at(d + 2)),
                        ]))
            default:
                // Late payment: open for a while, then paid.
                payment(1, total, succeeded: true, minute: 60 * 24 * 20)
                invoiceRows.append(
                    with(
                        open,
                        [
                            "status": .text("paid"), "amount_paid": .amount(total), "amount_due": .amount(0),
                            "paid_at": .timestamp(at(d + 20, 2)), "updated_at": .timestamp(at(d + 20, 2)),
                        ]))
            }
            out.append(invoiceRows)
        }

        // Credit: a credit note through the customer balance, partly applied later.
        if rng.chance(15) {
            let total: Int64 = 1000
            let note = row(
                .creditNote,
                [
                    "credit_note_id": .text("cn\(c)"), "customer_id": .text(id), "invoice_id": .text("i\(c)_0"),
                    "number": .text("CN-\(c)"), "status": .text("issued"), "total": .amount(total),
                    "balance_remaining": .amount(total), "currency": .text(currency), "reason": .text("goodwill"),
                    "created_at": .timestamp(at(start + 10)),
                ])
            out.append([note, with(note, ["balance_remaining": .amount(600)])])
            out.append([
                row(
                    .balanceTransaction,
                    [
                        "balance_transaction_id": .text("bt\(c)_1"), "customer_id": .text(id), "amount": .amount(-total),
                        "currency": .text(currency), "type": .text("credit_note"), "credit_note_id": .text("cn\(c)"),
                        "created_at": .timestamp(at(start + 10)),
                    ])
            ])
            out.append([
                row(
                    .balanceTransaction,
                    [
                        "balance_transaction_id": .text("bt\(c)_2"), "customer_id": .text(id), "amount": .amount(400),
                        "currency": .text(currency), "type": .text("applied_to_invoice"), "invoice_id": .text("i\(c)_1"),
                        "credit_note_id": .text("cn\(c)"), "created_at": .timestamp(at(start + 31)),
                    ])
            ])
        }
        out += widerModelStories(c, id: id, currency: currency, start: start)
        if rng.chance(8) {
            out.append([
                row(
                    .balanceTransaction,
                    [
                        "balance_transaction_id": .text("bt\(c)_3"), "customer_id": .text(id), "amount": .amount(-250),
                        "currency": .text(currency), "type": .text("adjustment"), "description": .text("courtesy"),
                        "created_at": .timestamp(at(start + 5)),
                    ])
            ])
        }
        return out
    }
}
