import Billing
import Foundation
import Postgres
import Testing

/// History is honest: from a single legacy row, an event is `observed` only at the moment a
/// column proves, and no named event moves when a later edit touches the row's `updated_at`.
@Suite("Event dating: proofs, stable inferences, evidence labels")
struct EventDatingTests {
    /// The catch-all events carry state no step explains; everything else is a named step.
    static let catchAll: Set<BillingEventType> = [
        .customerUpdated, .subscriptionUpdated, .subscriptionImported, .invoiceLineUpdated, .invoiceUpdated,
        .invoiceImported, .paymentUpdated, .refundUpdated, .creditNoteUpdated, .balanceTransactionUpdated,
        .planObserved, .billingEntityUpdated, .paymentAllocationUpdated, .walletUpdated, .walletTransactionUpdated,
        .creditApplicationUpdated, .chargebackUpdated, .paymentTransactionUpdated,
    ]

    @Test(arguments: Entity.allCases)
    func anObservedStepFromOneRowHappensAtAColumnThatProvesIt(_ entity: Entity) {
        let dating = Dictionary(uniqueKeysWithValues: Transitions.dating(of: entity).map { ($0.type, $0) })
        for seed in 0..<400 {
            var factory = RowFactory(rng: SplitMix(state: UInt64(seed) &* 7919 &+ 11))
            let row = factory.row(entity, key: "k\(seed)", like: nil)
            for event in Transitions.transitions(before: nil, after: row) {
                guard event.evidence == .observed, let rule = dating[event.type] else { continue }
                let proofs = rule.proof.compactMap { row[$0].timestampValue }
                #expect(proofs.contains(event.occurredAt), "\(entity) \(event.type) observed at \(event.occurredAt), seed \(seed)")
                #expect(!rule.proof.contains("updated_at"), "\(event.type) takes updated_at as proof")
            }
        }
    }

    @Test(arguments: Entity.allCases)
    func aLaterEditOfUpdatedAtMovesNoNamedStep(_ entity: Entity) {
        guard entity.column("updated_at") != nil else { return }
        for seed in 0..<400 {
            var factory = RowFactory(rng: SplitMix(state: UInt64(seed) &* 104_729 &+ 3))
            let row = factory.row(entity, key: "k\(seed)", like: nil)
            var touched = row
            // Touched years later (a refund recorded on the payment, a note edited).
            touched.values["updated_at"] = .timestamp(PostgresTimestamp(microsecondsSinceEpoch: 2_000_000_000_000_000))
            let named = { (row: CanonicalRow) in
                Transitions.transitions(before: nil, after: row).filter { !Self.catchAll.contains($0.type) }
                    .map { "\($0.type.rawValue)@\($0.occurredAt.microsecondsSinceEpoch)/\($0.evidence.rawValue)" }
            }
            #expect(named(row) == named(touched), "\(entity), seed \(seed)")
        }
    }

    @Test func everyMoneyStepHasAProofColumnOrAStableInference() {
        for entity in [Entity.invoice, .payment, .creditNote, .subscription] {
            for rule in Transitions.dating(of: entity).dropFirst() where !rule.proof.isEmpty || !rule.inferred.isEmpty {
                #expect(!rule.inferred.contains("updated_at"), "\(rule.type) infers from updated_at")
            }
        }
        // The steps a user's mapping can prove, and where they fall back.
        let payment = Transitions.dating(of: .payment).map { "\($0.type.rawValue): \($0.proof) else \($0.inferred)" }
        #expect(
            payment == [
                "PaymentCreated: [\"created_at\"] else [\"created_at\"]",
                "PaymentSucceeded: [\"succeeded_at\"] else [\"created_at\"]",
                "PaymentFailed: [\"failed_at\"] else [\"created_at\"]",
                "PaymentCanceled: [\"canceled_at\"] else [\"created_at\"]",
            ])
    }

    static func payment(_ values: [String: CanonicalValue]) -> CanonicalRow {
        var row: [String: CanonicalValue] = [
            "payment_id": .text("101"), "customer_id": .text("1"), "status": .text("succeeded"), "amount": .amount(1_900),
            "currency": .text("USD"),
            "created_at": .timestamp(PostgresTimestamp("2025-06-16T10:00:00Z")!),
            "updated_at": .timestamp(PostgresTimestamp("2025-07-20T09:00:00Z")!),
        ]
        for (k, v) in values { row[k] = v }
        return CanonicalRow(entity: .payment, values: row)
    }

    @Test func aPaymentWithoutSucceededAtSucceedsAtItsCreationInferred() {
        let events = Transitions.transitions(before: nil, after: Self.payment([:]))
        #expect(events.map(\.type) == [.paymentCreated, .paymentSucceeded])
        #expect(events[1].occurredAt == PostgresTimestamp("2025-06-16T10:00:00Z")!)
        #expect(events[1].evidence == .inferred)
    }

    @Test func aPaymentWithSucceededAtSucceedsThenObserved() {
        let at = PostgresTimestamp("2025-06-18T08:30:00Z")!
        let events = Transitions.transitions(before: nil, after: Self.payment(["succeeded_at": .timestamp(at)]))
        #expect(events[1].occurredAt == at)
        #expect(events[1].evidence == .observed)
        #expect(events[1].changes.map(\.column) == ["status", "succeeded_at", "updated_at"])
    }

    @Test func betweenTwoKnownRowsTheMomentUpdatedAtMovedToIsObserved() {
        // Shadow mode and a resumed backfill: pending, then succeeded when updated_at moved.
        let pending = Self.payment([
            "status": .text("pending"), "updated_at": .timestamp(PostgresTimestamp("2025-06-16T10:00:00Z")!),
        ])
        let succeeded = Self.payment(["updated_at": .timestamp(PostgresTimestamp("2025-06-17T12:00:00Z")!)])
        let events = Transitions.transitions(before: pending, after: succeeded, syncedFromVersion: 1)
        #expect(events.map(\.type) == [.paymentSucceeded])
        #expect(events[0].occurredAt == PostgresTimestamp("2025-06-17T12:00:00Z")!)
        #expect(events[0].evidence == .observed)
        #expect(
            events[0].eventID
                == DeterministicID.uuid5(namespace: DeterministicID.eventNamespace, name: "sync/payment/101/v1/0/PaymentSucceeded"))
    }
}
