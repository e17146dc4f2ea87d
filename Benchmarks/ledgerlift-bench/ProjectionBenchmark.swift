import Billing
import EventStore
import Foundation
import Postgres
import Synchronization

/// Issue 5's benchmark: a blue/green projection rebuild of 1,000,000 billing events into every
/// read model (canonical tables, history, derived models, then the swap), against a plain read
/// of the same events through `EventStore.readAll` in the same run.
enum ProjectionBenchmark {
    static let totalEvents = 1_000_000
    static let batchSize = 10_000

    static func timed(_ body: () async throws -> Void) async throws -> Duration {
        let clock = ContinuousClock()
        let start = clock.now
        try await body()
        return clock.now - start
    }

    static func run(_ bench: BenchContext) async throws {
        let dsn = try await bench.scratchDatabase("ledgerlift_bench_projection")
        let connection = try await Connection.connect(dsn)
        let reader = try await Connection.connect(dsn)
        defer {
            connection.close()
            reader.close()
        }
        let store = EventStore()
        try await connection.withSession { try store.migrate($0) }

        let clock = ContinuousClock()
        let generationStart = clock.now
        let events = SyntheticBilling.events(count: totalEvents)
        let streams = Set(events.map(\.streamID)).count
        let generated = clock.now - generationStart
        let appended = try await timed {
            try await connection.withSession { session in
                for start in stride(from: 0, to: events.count, by: batchSize) {
                    try store.appendBulk(Array(events[start..<min(events.count, start + batchSize)]), in: session)
                }
            }
        }
        try await connection.execute("VACUUM ANALYZE ledgerlift.events")
        print(
            "  \(events.count) billing events in \(streams) streams (generated with Transitions in "
                + "\(String(format: "%.1f", generated.seconds)) s, appended in \(String(format: "%.1f", appended.seconds)) s)")

        var reads = [Duration]()
        var rebuilds = [(total: Duration, finalize: Duration)]()
        for _ in 0..<max(1, bench.repetitions) {
            // The baseline: the same events through the global reader, decoded, same batch size.
            var readCount = 0
            reads.append(
                try await timed {
                    readCount = try await connection.withSession { session in
                        var cursor = GlobalCursor.start
                        var n = 0
                        while true {
                            let batch = try store.readAll(after: cursor, limit: batchSize, in: session)
                            guard let last = batch.last else { return n }
                            n += batch.count
                            cursor = last.cursor
                        }
                    }
                })
            guard readCount == totalEvents else { throw BenchFailure("readAll read \(readCount) of \(totalEvents) events") }

            let lastBatch = Locked(Duration.zero)
            let projector = Projector(store: store, batchSize: batchSize)
            let start = clock.now
            // As `ledgerlift project` does it: pipelined, reading ahead on a second connection.
            let summary = try await projector.rebuild(on: connection, reader: reader) { progress in
                lastBatch.withLock { $0 = progress.elapsed }
            }
            let total = clock.now - start
            guard summary.swapped, summary.progress.events == totalEvents else {
                throw BenchFailure("projection rebuild handled \(summary.progress.events) of \(totalEvents) events")
            }
            rebuilds.append((total, total - lastBatch.withLock { $0 }))
            print(
                "    repetition \(rebuilds.count): readAll \(rate(totalEvents, reads.last!)) events, "
                    + "rebuild \(rate(totalEvents, total)) events")
            // Untimed: the background maintenance of the tables just swapped in (autovacuum
            // would otherwise vacuum a million fresh rows during the next repetition).
            try await connection.execute("VACUUM")
        }
        let read = reads.sorted()[reads.count / 2]
        let rebuild = rebuilds.sorted { $0.total < $1.total }[rebuilds.count / 2]
        let counts = try await connection.query(
            """
            SELECT (SELECT count(*) FROM ledgerlift_read.invoices_history) + (SELECT count(*) FROM ledgerlift_read.payments_history)
                 + (SELECT count(*) FROM ledgerlift_read.subscriptions_history) + (SELECT count(*) FROM ledgerlift_read.customers_history)
                 + (SELECT count(*) FROM ledgerlift_read.invoice_lines_history) + (SELECT count(*) FROM ledgerlift_read.refunds_history)
                 + (SELECT count(*) FROM ledgerlift_read.credit_notes_history)
                 + (SELECT count(*) FROM ledgerlift_read.balance_transactions_history),
                   (SELECT count(*) FROM ledgerlift_read.revenue_by_month), (SELECT count(*) FROM ledgerlift_read.mrr_by_month),
                   (SELECT count(*) FROM ledgerlift_read.customer_balances)
            """
        ).rows[0]
        print("  median of \(max(1, bench.repetitions)) (VACUUM between repetitions, untimed), batches of \(batchSize):")
        print("    readAll (plain global read, decoded)     \(rate(totalEvents, read)) events")
        print(
            "    projection rebuild, all read models       \(rate(totalEvents, rebuild.total)) events   "
                + "(\(String(format: "%.1f", rebuild.total.seconds)) s, of which \(String(format: "%.1f", rebuild.finalize.seconds)) s "
                + "final: indexes, derived models, swap)")
        print("    ratio projection/readAll = \(ratio(rebuild.total, read))   (goal: ≥ 50k events/s)")
        print(
            "    read models: \(try counts.decode(at: 0, as: Int64.self)) history versions, "
                + "\(try counts.decode(at: 3, as: Int64.self)) customer balances, "
                + "\(try counts.decode(at: 1, as: Int64.self)) revenue months, \(try counts.decode(at: 2, as: Int64.self)) MRR months")
    }
}

/// Billing histories at volume: plans, and customers with a subscription (plan and quantity
/// changes, cancellations) and monthly invoices (a line each, finalized, then paid by a
/// payment — or left open, written off or voided), refunds, credit notes and balance
/// transactions; turned into events by ``Transitions``.
enum SyntheticBilling {
    static let day: Int64 = 86_400_000_000
    static let origin: Int64 = 1_704_067_200_000_000  // 2024-01-01T00:00:00Z

    static func at(_ days: Int, _ minutes: Int = 0) -> CanonicalValue {
        .timestamp(PostgresTimestamp(microsecondsSinceEpoch: origin + Int64(days) * day + Int64(minutes) * 60_000_000))
    }

    struct Plan {
        let id: String
        let amount: Int64
        let currency: String
        let interval: String
    }

    static let plans = [
        Plan(id: "basic-m", amount: 1900, currency: "USD", interval: "month"),
        Plan(id: "pro-m", amount: 4900, currency: "USD", interval: "month"),
        Plan(id: "pro-y", amount: 49_000, currency: "USD", interval: "year"),
        Plan(id: "eu-m", amount: 2900, currency: "EUR", interval: "month"),
        Plan(id: "jp-m", amount: 5500, currency: "JPY", interval: "month"),
        Plan(id: "kw-m", amount: 12_345, currency: "KWD", interval: "month"),
    ]

    /// Exactly `count` events: whole customer histories in business-time order, cut at `count`.
    static func events(count: Int) -> [StreamEvent] {
        var all = [StreamEvent]()
        all.reserveCapacity(count + 100_000)
        for plan in plans {
            append(
                [
                    row(
                        .plan,
                        [
                            "plan_id": .text(plan.id), "code": .text(plan.id), "name": .text(plan.id),
                            "amount": .amount(plan.amount), "currency": .text(plan.currency),
                            "interval": .text(plan.interval), "archived": .boolean(false), "created_at": at(-30),
                            "updated_at": at(-30),
                        ])
                ], to: &all)
        }
        var rng = UInt64(42)
        var c = 0
        while all.count < count {
            for history in customer(c, &rng) { append(history, to: &all) }
            c += 1
        }
        all.sort {
            ($0.event.occurredAt, $0.streamID, $0.streamVersion) < ($1.event.occurredAt, $1.streamID, $1.streamVersion)
        }
        return Array(all.prefix(count))
    }

    static func append(_ history: [CanonicalRow], to events: inout [StreamEvent]) {
        var previous: CanonicalRow?
        var last: PostgresTimestamp?
        var version: Int64 = 0
        for (step, row) in history.enumerated() {
            for event in Transitions.transitions(before: previous, after: row, step: step, notBefore: last) {
                version += 1
                events.append(
                    StreamEvent(streamID: event.streamID, streamVersion: version, event: event.newEvent(origin: "bench")))
                last = event.occurredAt
            }
            previous = row
        }
    }

    static func row(_ entity: Entity, _ values: [String: CanonicalValue]) -> CanonicalRow {
        CanonicalRow(entity: entity, values: values)
    }

    static func with(_ row: CanonicalRow, _ changes: [String: CanonicalValue]) -> CanonicalRow {
        var copy = row
        for (k, v) in changes { copy.values[k] = v }
        return copy
    }

    static func next(_ state: inout UInt64) -> Int {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Int(truncatingIfNeeded: (z ^ (z >> 31)) >> 1)
    }

    static func customer(_ c: Int, _ rng: inout UInt64) -> [[CanonicalRow]] {
        var out = [[CanonicalRow]]()
        let id = "c\(c)"
        let start = next(&rng) % 540
        let plan = plans[next(&rng) % plans.count]
        let currency = plan.currency
        let quantity = Int64(1 + next(&rng) % 3)
        out.append([
            row(
                .customer,
                [
                    "customer_id": .text(id), "email": .text("\(id)@example.com"), "name": .text("Customer \(c)"),
                    "currency": .text(currency), "created_at": at(start), "updated_at": at(start),
                ])
        ])
        let sub0 = row(
            .subscription,
            [
                "subscription_id": .text("s\(c)"), "customer_id": .text(id), "plan_id": .text(plan.id),
                "status": .text("active"), "quantity": .integer(quantity), "started_at": at(start, 5),
                "current_period_start": at(start, 5), "current_period_end": at(start + 30, 5),
                "cancel_at_period_end": .boolean(false), "created_at": at(start, 5), "updated_at": at(start, 5),
            ])
        var subscription = [sub0]
        var amount = plan.amount * quantity
        if next(&rng) % 100 < 40 {
            subscription.append(with(sub0, ["quantity": .integer(quantity + 1), "updated_at": at(start + 61, 30)]))
            amount = plan.amount * (quantity + 1)
        }
        var months = 8
        if next(&rng) % 100 < 20 {
            months = 5
            subscription.append(
                with(
                    subscription.last!,
                    [
                        "status": .text("canceled"), "canceled_at": at(start + 151, 10), "ended_at": at(start + 151, 10),
                        "updated_at": at(start + 151, 10),
                    ]))
        }
        out.append(subscription)
        for m in 0..<months {
            let d = start + 30 * m
            let invoiceID = "i\(c)_\(m)"
            let draft = row(
                .invoice,
                [
                    "invoice_id": .text(invoiceID), "customer_id": .text(id), "subscription_id": .text("s\(c)"),
                    "status": .text("draft"), "currency": .text(currency), "subtotal": .amount(amount),
                    "discount": .amount(0), "tax": .amount(0), "total": .amount(amount), "amount_paid": .amount(0),
                    "amount_due": .amount(amount), "period_start": at(d), "period_end": at(d + 30),
                    "created_at": at(d, 60), "updated_at": at(d, 60),
                ])
            let issued = PostgresDate(daysSinceEpoch: (origin / day) + Int64(d))
            let open = with(
                draft,
                [
                    "status": .text("open"), "number": .text("N\(c)-\(m)"), "finalized_at": at(d, 120),
                    "issued_on": .date(issued), "due_on": .date(PostgresDate(daysSinceEpoch: issued.daysSinceEpoch + 14)),
                    "updated_at": at(d, 120),
                ])
            out.append([
                row(
                    .invoiceLine,
                    [
                        "invoice_line_id": .text(invoiceID + "_1"), "invoice_id": .text(invoiceID),
                        "kind": .text("subscription"), "quantity": .integer(1), "amount": .amount(amount),
                        "currency": .text(currency), "proration": .boolean(false), "created_at": at(d, 60),
                    ])
            ])
            let fate = next(&rng) % 100
            if fate < 80 {
                let pending = row(
                    .payment,
                    [
                        "payment_id": .text("p\(c)_\(m)"), "customer_id": .text(id), "invoice_id": .text(invoiceID),
                        "status": .text("pending"), "amount": .amount(amount), "currency": .text(currency),
                        "created_at": at(d, 180), "updated_at": at(d, 180),
                    ])
                out.append([pending, with(pending, ["status": .text("succeeded"), "updated_at": at(d, 181)])])
                out.append([
                    draft, open,
                    with(
                        open,
                        [
                            "status": .text("paid"), "amount_paid": .amount(amount), "amount_due": .amount(0),
                            "paid_at": at(d, 181), "updated_at": at(d, 181),
                        ]),
                ])
                if fate < 3 {
                    let refund = row(
                        .refund,
                        [
                            "refund_id": .text("r\(c)_\(m)"), "payment_id": .text("p\(c)_\(m)"), "customer_id": .text(id),
                            "amount": .amount(max(1, amount / 2)), "currency": .text(currency),
                            "status": .text("succeeded"), "created_at": at(d + 3),
                        ])
                    out.append([refund])
                }
            } else if fate < 90 {
                out.append([draft, open])
            } else if fate < 95 {
                out.append([draft, open, with(open, ["status": .text("uncollectible"), "updated_at": at(d + 45)])])
            } else {
                out.append([
                    draft, open,
                    with(
                        open,
                        ["status": .text("void"), "amount_due": .amount(0), "voided_at": at(d + 2), "updated_at": at(d + 2)]),
                ])
            }
        }
        if next(&rng) % 100 < 10 {
            let note = row(
                .creditNote,
                [
                    "credit_note_id": .text("cn\(c)"), "customer_id": .text(id), "status": .text("issued"),
                    "total": .amount(1000), "balance_remaining": .amount(1000), "currency": .text(currency),
                    "created_at": at(start + 10),
                ])
            out.append([note])
            out.append([
                row(
                    .balanceTransaction,
                    [
                        "balance_transaction_id": .text("bt\(c)"), "customer_id": .text(id), "amount": .amount(-1000),
                        "currency": .text(currency), "type": .text("credit_note"), "credit_note_id": .text("cn\(c)"),
                        "created_at": at(start + 10),
                    ])
            ])
        }
        return out
    }
}
