import Billing
import EventStore
import Foundation
import Postgres
import Testing

/// The events of the wider model's rows: what each new step is, when it happened, how well it
/// is proven, and that the columns added later leave the events of older rows untouched.
@Suite("Transitions of the wider model: parts, wallets, chargebacks, scheduled subscriptions, defaults")
struct WiderModelTransitionsTests {
    static func at(_ text: String) -> CanonicalValue { .timestamp(PostgresTimestamp(text)!) }

    static func summary(_ events: [BillingEvent]) -> [String] {
        events.map { "\($0.type.rawValue)@\($0.occurredAt.iso8601)/\($0.evidence.rawValue)" }
    }

    static func note(credit: Int64?, refund: Int64, remaining: Int64) -> CanonicalRow {
        var values: [String: CanonicalValue] = [
            "credit_note_id": .text("cn1"), "customer_id": .text("c1"), "status": .text("issued"),
            "total": .amount(5000), "balance_remaining": .amount(remaining), "currency": .text("EUR"),
            "created_at": at("2025-02-03 10:00:00"), "refund_amount": .amount(refund),
        ]
        if let credit { values["credit_amount"] = .amount(credit) }
        return CanonicalRow(entity: .creditNote, values: values)
    }

    @Test func aRefundOnlyCreditNoteIsIssuedWithNothingToApplyAndNeverApplied() {
        let events = Transitions.transitions(before: nil, after: Self.note(credit: 0, refund: 5000, remaining: 0))
        #expect(Self.summary(events) == ["CreditNoteIssued@2025-02-03T10:00:00.000000Z/observed"])
        #expect(events[0].changes.first { $0.column == "balance_remaining" }?.value == .amount(0))
        #expect(Transitions.replay(events) == Self.note(credit: 0, refund: 5000, remaining: 0))
    }

    @Test func aSplitNoteStartsWithItsCreditedPartAndAppliesOnlyWhatWasUsedOfIt() {
        let events = Transitions.transitions(before: nil, after: Self.note(credit: 3000, refund: 2000, remaining: 1000))
        #expect(
            Self.summary(events) == [
                "CreditNoteIssued@2025-02-03T10:00:00.000000Z/observed",
                "CreditNoteApplied@2025-02-03T10:00:00.000000Z/inferred",
            ])
        #expect(events[0].changes.first { $0.column == "balance_remaining" }?.value == .amount(3000))
        #expect(events[1].changes.map(\.column) == ["balance_remaining"])
        #expect(events[1].changes[0].value == .amount(1000))
    }

    @Test func aScheduledSubscriptionStartsPendingAndIsActivatedWhenItTakesEffect() {
        let pending = CanonicalRow(
            entity: .subscription,
            values: [
                "subscription_id": .text("s2"), "customer_id": .text("c1"), "plan_id": .text("basic"),
                "status": .text("pending"), "quantity": .integer(1), "started_at": Self.at("2025-04-01 00:00:00"),
                "cancel_at_period_end": .boolean(false), "previous_subscription_id": .text("s1"),
                "created_at": Self.at("2025-03-12 09:30:00"), "updated_at": Self.at("2025-03-12 09:30:00"),
            ])
        let first = Transitions.transitions(before: nil, after: pending)
        #expect(Self.summary(first) == ["SubscriptionStarted@2025-04-01T00:00:00.000000Z/observed"])
        #expect(Transitions.replay(first)?["status"] == .text("pending"))

        var active = pending
        active.values["status"] = .text("active")
        active.values["updated_at"] = Self.at("2025-04-01 00:00:05")
        let next = Transitions.transitions(
            before: pending, after: active, step: 1, notBefore: first.last!.occurredAt, syncedFromVersion: 1)
        #expect(Self.summary(next) == ["SubscriptionActivated@2025-04-01T00:00:00.000000Z/observed"])
        #expect(next[0].changes.map(\.column) == ["status", "updated_at"])
    }

    @Test func aWalletTransactionSettlesAtItsSettledAtAndFailsAtItsFailedAt() {
        let base: [String: CanonicalValue] = [
            "wallet_transaction_id": .text("wt1"), "wallet_id": .text("w1"), "direction": .text("inbound"),
            "kind": .text("purchased"), "amount": .amount(5000), "currency": .text("EUR"),
            "created_at": Self.at("2025-01-10 08:00:00"),
        ]
        var settled = base
        settled["status"] = .text("settled")
        settled["settled_at"] = Self.at("2025-01-12 16:20:00")
        #expect(
            Self.summary(Transitions.transitions(before: nil, after: CanonicalRow(entity: .walletTransaction, values: settled)))
                == [
                    "WalletTransactionCreated@2025-01-10T08:00:00.000000Z/observed",
                    "WalletTransactionSettled@2025-01-12T16:20:00.000000Z/observed",
                ])
        var failed = base
        failed["status"] = .text("failed")
        #expect(
            Self.summary(Transitions.transitions(before: nil, after: CanonicalRow(entity: .walletTransaction, values: failed)))
                == [
                    "WalletTransactionCreated@2025-01-10T08:00:00.000000Z/observed",
                    "WalletTransactionFailed@2025-01-10T08:00:00.000000Z/inferred",
                ])
    }

    @Test func aLostChargebackIsOpenedThenLostAtItsResolution() {
        let row = CanonicalRow(
            entity: .chargeback,
            values: [
                "chargeback_id": .text("cb1"), "payment_id": .text("p1"), "amount": .amount(3500),
                "currency": .text("USD"), "status": .text("lost"), "created_at": Self.at("2025-05-02 11:00:00"),
                "resolved_at": Self.at("2025-05-20 00:00:00"),
            ])
        let events = Transitions.transitions(before: nil, after: row)
        #expect(
            Self.summary(events) == [
                "ChargebackOpened@2025-05-02T11:00:00.000000Z/observed", "ChargebackLost@2025-05-20T00:00:00.000000Z/observed",
            ])
        #expect(events[0].changes.first { $0.column == "status" }?.value == .text("pending"))
        #expect(Transitions.replay(events) == row)
    }

    /// A row that sets none of the columns added to the model later gives events whose payload
    /// names none of them: byte for byte what the model before them wrote.
    @Test func columnsAtTheirDefaultAreNotWrittenAndReadBackAsTheirDefault() throws {
        let invoice = CanonicalRow(
            entity: .invoice,
            values: [
                "invoice_id": .text("9"), "customer_id": .text("7"), "status": .text("open"), "currency": .text("USD"),
                "subtotal": .amount(1000), "discount": .amount(0), "tax": .amount(0), "total": .amount(1000),
                "amount_paid": .amount(0), "amount_due": .amount(1000), "created_at": Self.at("2025-01-01 00:00:00"),
                "finalized_at": Self.at("2025-01-01 01:00:00"),
            ])
        #expect(invoice["kind"] == .text("standard"))
        #expect(invoice["rounding"] == .amount(0))
        #expect(invoice["credit_applied"] == .amount(0))
        let events = Transitions.transitions(before: nil, after: invoice)
        for event in events {
            let payload = event.payload.text
            for column in ["kind", "rounding", "credit_applied", "billing_entity_id"] {
                #expect(!payload.contains("\"\(column)\""), "\(event.type) writes \(column)")
            }
        }
        #expect(Transitions.replay(events) == invoice)
    }

    /// An invoice line event of schema version 1 wrote its quantity as a JSON integer; it
    /// decodes as the exact decimal the quantity now is.
    @Test func aVersion1LineEventsIntegerQuantityDecodesAsADecimal() throws {
        let recorded = RecordedEvent(
            globalPosition: 1, eventID: UUID(), streamID: "invoice_line-1", streamVersion: 1,
            eventType: "InvoiceLineAdded", schemaVersion: 1, occurredAt: PostgresTimestamp("2025-01-01 00:00:00")!,
            recordedAt: PostgresTimestamp("2025-01-01 00:00:00")!,
            payload: PostgresJSON(#"{"entity":"invoice_line","key":"1","set":{"invoice_line_id":"1","quantity":3}}"#),
            metadata: PostgresJSON(#"{"origin":"backfill","evidence":"observed"}"#), transactionID: 1)
        let event = try BillingEvent(recorded: recorded)
        #expect(event.changes.first { $0.column == "quantity" }?.value == .decimal("3"))
        #expect(BillingEventType.invoiceLineAdded.schemaVersion == 2)
    }
}
