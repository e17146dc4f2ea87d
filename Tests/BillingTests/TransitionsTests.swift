import Billing
import EventStore
import Foundation
import Postgres
import PropertyBased
import Testing

/// Random canonical rows, built from a seed so a failing case can be replayed.
struct RowFactory {
    var rng: SplitMix

    mutating func value(_ column: ColumnDefinition) -> CanonicalValue {
        if column.nullable, rng.next() % 4 == 0 { return .null }
        switch column.type {
        case .text: return .text(["a", "b", "O'Brien", "é東", "", "x\ny"][Int(rng.next() % 6)])
        case .integer: return .integer(Int64(rng.next() % 7) - 1)
        case .boolean: return .boolean(rng.next() % 2 == 0)
        case .amount: return .amount(Int64(bitPattern: rng.next()) % 1_000_000)
        case .decimal: return .decimal(["0.0100", "12.5", "-3", "1234.5678"][Int(rng.next() % 4)])
        case .timestamp:
            return .timestamp(PostgresTimestamp(microsecondsSinceEpoch: 1_600_000_000_000_000 + Int64(rng.next() % 100_000_000_000_000)))
        case .date: return .date(PostgresDate(daysSinceEpoch: 18_000 + Int64(rng.next() % 2000)))
        case .currency: return .text(["USD", "EUR", "JPY", "KWD"][Int(rng.next() % 4)])
        case .status(let vocabulary): return .text(vocabulary[Int(rng.next() % UInt64(vocabulary.count))])
        }
    }

    /// A row of `entity` with key `key`; later rows of a sequence keep each earlier value with
    /// probability 1/2, so sequences mix small and large changes.
    mutating func row(_ entity: Entity, key: String, like previous: CanonicalRow?) -> CanonicalRow {
        var values = [String: CanonicalValue]()
        for column in entity.columns {
            if column.name == entity.keyColumn {
                values[column.name] = .text(key)
            } else if let previous, rng.next() % 2 == 0 {
                values[column.name] = previous[column.name]
            } else {
                values[column.name] = value(column)
            }
        }
        var attributes = previous?.attributes ?? [:]
        if rng.next() % 3 == 0 { attributes["legacy_flag"] = rng.next() % 2 == 0 ? "yes" : nil }
        return CanonicalRow(entity: entity, values: values, attributes: attributes)
    }
}

struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Transitions: events are the differences between canonical rows")
struct TransitionsTests {
    static func history(_ entity: Entity, seed: UInt64, length: Int) -> [CanonicalRow] {
        var factory = RowFactory(rng: SplitMix(state: seed))
        var rows = [CanonicalRow]()
        for _ in 0..<length { rows.append(factory.row(entity, key: "k\(seed % 1000)", like: rows.last)) }
        return rows
    }

    static func events(_ rows: [CanonicalRow]) -> [BillingEvent] {
        var previous: CanonicalRow?
        var all = [BillingEvent]()
        for (step, row) in rows.enumerated() {
            all += Transitions.transitions(before: previous, after: row, step: step, notBefore: all.last?.occurredAt)
            previous = row
        }
        return all
    }

    @Test(arguments: Entity.allCases)
    func replayingTransitionsFromNothingReproducesTheLastRowExactly(entity: Entity) async {
        await propertyCheck(count: 200, input: Gen.uint64(), Gen.int(in: 1...6)) { seed, length in
            let rows = Self.history(entity, seed: seed, length: length)
            let events = Self.events(rows)
            #expect(Transitions.replay(events) == rows.last)
            // Every intermediate row is reproduced too.
            for end in 1...rows.count {
                #expect(Transitions.replay(Self.events(Array(rows.prefix(end)))) == rows[end - 1])
            }
        }
    }

    @Test(arguments: Entity.allCases)
    func transitionsAreDeterministicAndIdsUnique(entity: Entity) async {
        await propertyCheck(count: 100, input: Gen.uint64(), Gen.int(in: 1...6)) { seed, length in
            let rows = Self.history(entity, seed: seed, length: length)
            let first = Self.events(rows)
            let second = Self.events(rows)
            #expect(first == second)
            #expect(Set(first.map(\.eventID)).count == first.count)
            // Business time never goes backwards within a stream.
            #expect(first.map(\.occurredAt) == first.map(\.occurredAt).sorted())
        }
    }

    @Test func storedPayloadsDecodeBackToTheSameEvents() async {
        await propertyCheck(count: 100, input: Gen.uint64()) { seed in
            for entity in Entity.allCases {
                for event in Self.events(Self.history(entity, seed: seed, length: 3)) {
                    let stored = event.newEvent(origin: "test")
                    let recorded = RecordedEvent(
                        globalPosition: 1, eventID: stored.eventID, streamID: event.streamID, streamVersion: 1,
                        eventType: stored.eventType, schemaVersion: stored.schemaVersion, occurredAt: stored.occurredAt,
                        recordedAt: stored.occurredAt, payload: stored.payload, metadata: stored.metadata, transactionID: 1)
                    let decoded = try? BillingEvent(recorded: recorded)
                    #expect(decoded == event)
                }
            }
        }
    }

    /// Issue 13: attributes are read with the row a transition reaches, so only the event that
    /// reaches it carries them; every step before it (dated by legacy's timestamps) keeps the
    /// attributes the row had before the transition — none, from nothing. Carried on the first
    /// event, they showed in every earlier version ("as of" a time the invoice was open, its
    /// `payment_status` attribute already said paid).
    @Test(arguments: Entity.allCases)
    func onlyTheEventThatReachesTheRowCarriesItsAttributes(entity: Entity) async {
        await propertyCheck(count: 200, input: Gen.uint64(), Gen.int(in: 1...4)) { seed, length in
            let rows = Self.history(entity, seed: seed, length: length)
            var previous: CanonicalRow?
            var replayed = [BillingEvent]()
            for (step, row) in rows.enumerated() {
                let events = Transitions.transitions(
                    before: previous, after: row, step: step, notBefore: replayed.last?.occurredAt)
                for (index, event) in events.enumerated() {
                    replayed.append(event)
                    let expected = index == events.count - 1 ? row.attributes : previous?.attributes ?? [:]
                    #expect(Transitions.replay(replayed)?.attributes == expected, "step \(step), event \(index)")
                }
                previous = row
            }
        }
    }

    @Test func aPaidInvoiceFromNothingShowsItsAttributesFromThePaymentOnly() {
        let events = Transitions.transitions(before: nil, after: GoldenTests.paidInvoice)
        #expect(events.map(\.type) == [.invoiceDrafted, .invoiceFinalized, .invoicePaid])
        #expect(events.map { $0.attributes } == [nil, nil, ["po_number": "PO-77", "legacy_note": nil]])
    }

    @Test func noChangeMeansNoEvents() {
        for entity in Entity.allCases {
            let row = Self.history(entity, seed: 7, length: 1)[0]
            #expect(Transitions.transitions(before: row, after: row, step: 1).isEmpty)
        }
    }

    // MARK: - Named lifecycle events, from stories written by hand

    func ts(_ text: String) -> CanonicalValue { .timestamp(PostgresTimestamp(text)!) }

    @Test func aPaidInvoiceIsDraftedFinalizedAndPaidAtItsOwnTimestamps() {
        let invoice = CanonicalRow(
            entity: .invoice,
            values: [
                "invoice_id": .text("1042"), "customer_id": .text("7"), "number": .text("INV-1042"),
                "status": .text("paid"), "currency": .text("USD"), "subtotal": .amount(10_000), "discount": .amount(0),
                "tax": .amount(800), "total": .amount(10_800), "amount_paid": .amount(10_800), "amount_due": .amount(0),
                "issued_on": .date(PostgresDate("2024-03-01")!), "due_on": .date(PostgresDate("2024-03-15")!),
                "created_at": ts("2024-02-28 10:00:00"), "finalized_at": ts("2024-03-01 00:00:00"),
                "paid_at": ts("2024-03-04 09:30:00"), "updated_at": ts("2024-03-04 09:30:01"),
            ])
        let events = Transitions.transitions(before: nil, after: invoice)
        #expect(events.map(\.type) == [.invoiceDrafted, .invoiceFinalized, .invoicePaid])
        #expect(events.map(\.occurredAt.iso8601) == [
            "2024-02-28T10:00:00.000000Z", "2024-03-01T00:00:00.000000Z", "2024-03-04T09:30:00.000000Z",
        ])
        #expect(events.map(\.evidence) == [.observed, .observed, .observed])
        #expect(events[0].changes.first { $0.column == "status" }?.value == .text("draft"))
        #expect(events[1].changes.first { $0.column == "status" }?.value == .text("open"))
        #expect(events[2].changes.map(\.column) == ["status", "amount_paid", "amount_due", "paid_at", "updated_at"])
        #expect(Transitions.replay(events) == invoice)
    }

    @Test func anUnprovenStatusIsImportedNotInvented() {
        // A subscription that is past due: nothing records when it became so.
        let subscription = CanonicalRow(
            entity: .subscription,
            values: [
                "subscription_id": .text("55"), "customer_id": .text("7"), "plan_id": .text("pro"),
                "status": .text("past_due"), "quantity": .integer(3), "started_at": ts("2024-01-05 00:00:00"),
                "cancel_at_period_end": .boolean(false), "created_at": ts("2024-01-05 00:00:00"),
            ])
        let events = Transitions.transitions(before: nil, after: subscription)
        #expect(events.map(\.type) == [.subscriptionStarted, .subscriptionPastDue])
        #expect(events[1].evidence == .inferred)
        #expect(Transitions.replay(events) == subscription)
    }

    @Test func aPlanChangeSeenInHistoryIsAnObservedPlanChangedEvent() {
        var before = CanonicalRow(
            entity: .subscription,
            values: [
                "subscription_id": .text("9"), "customer_id": .text("1"), "plan_id": .text("basic"),
                "status": .text("active"), "quantity": .integer(1), "started_at": ts("2024-01-01 00:00:00"),
                "cancel_at_period_end": .boolean(false), "created_at": ts("2024-01-01 00:00:00"),
                "updated_at": ts("2024-01-01 00:00:00"),
            ])
        var after = before
        after.values["plan_id"] = .text("pro")
        after.values["updated_at"] = ts("2024-04-01 12:00:00")
        let events = Transitions.transitions(before: before, after: after, step: 1)
        #expect(events.map(\.type) == [.subscriptionPlanChanged])
        #expect(events[0].evidence == .observed)
        #expect(events[0].occurredAt.iso8601 == "2024-04-01T12:00:00.000000Z")
        before = after
        after.values["status"] = .text("canceled")
        after.values["canceled_at"] = ts("2024-05-01 00:00:00")
        after.values["updated_at"] = ts("2024-05-01 00:00:01")
        #expect(Transitions.transitions(before: before, after: after, step: 2).map(\.type) == [.subscriptionCanceled])
    }
}
