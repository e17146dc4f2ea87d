import Billing
import Foundation
import Postgres
import Testing

@testable import Webhooks

/// The bytes of `Fixtures/<name>.json`: Stripe events in their documented shape.
func fixture(_ name: String) throws -> [UInt8] {
    guard let url = Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures") else {
        throw FixtureMissing(name: name)
    }
    return Array(try Data(contentsOf: url))
}

struct FixtureMissing: Error { var name: String }

func stripeEvent(_ name: String) throws -> StripeEvent { try StripeEvent(payload: try fixture(name)) }

/// Unix seconds as a canonical timestamp.
func ts(_ seconds: Int64) -> CanonicalValue { .timestamp(PostgresTimestamp(microsecondsSinceEpoch: seconds * 1_000_000)) }

// The fixtures' clock (see their `created` fields).
let customerCreated: Int64 = 1_733_486_400  // 2024-12-06T12:00:00Z
let subscriptionStart: Int64 = customerCreated + 600
let trialEnd: Int64 = subscriptionStart + 14 * 86_400
let invoiceCreated: Int64 = trialEnd + 1
let finalized: Int64 = invoiceCreated + 3_600
let paid: Int64 = finalized + 5
let refunded: Int64 = paid + 2 * 86_400

/// Maps with an empty ledger.
func rows(_ name: String, current: CurrentRow = { _, _ in nil }) throws -> [StripeRow] {
    try #require(try StripeMapping.rows(for: try stripeEvent(name), current: current))
}

@Suite struct StripeMappingTests {
    @Test func anEventParsesInItsDocumentedShape() throws {
        let event = try stripeEvent("invoice.paid")
        #expect(event.id == "evt_1QSrH9Ks8vYb0Qm4i2paid")
        #expect(event.type == "invoice.paid")
        #expect(event.created == paid)
        #expect(event.livemode == false)
        #expect(event.apiVersion == "2024-06-20")
        #expect(event.objectID == "in_1QSrF6Ks8vYb0Qm4InvA")
    }

    @Test func stripeJSONKeepsIntegersApartFromFractionsAndBooleans() throws {
        // Stripe objects hold fractions (a coupon's percent_off) the store's JSON refuses.
        let json = try StripeJSON.parse(Array(#"{"a": 12.5, "b": 3, "c": true, "d": null, "e": ["x"], "f": -9007199254740993}"#.utf8))
        #expect(json["a"] == .number(12.5))
        #expect(json["b"] == .integer(3))
        #expect(json["c"] == .bool(true))
        #expect(json["d"] == .null)
        #expect(json["e"] == .array([.string("x")]))
        #expect(json["f"] == .integer(-9_007_199_254_740_993))
        #expect(json["a"]?.integer == nil)
    }

    @Test func bodiesThatAreNotEventsAreRefused() {
        #expect(throws: StripeEventError.self) { try StripeEvent(payload: Array("not json".utf8)) }
        #expect(throws: StripeEventError.notJSON(reason: "the top level is not an object")) { try StripeEvent(payload: Array("[1]".utf8)) }
        #expect(throws: StripeEventError.missingField(eventID: nil, field: "id")) {
            try StripeEvent(payload: Array(#"{"type":"invoice.paid","created":1,"data":{"object":{}}}"#.utf8))
        }
        #expect(throws: StripeEventError.missingField(eventID: "evt_1", field: "data.object")) {
            try StripeEvent(payload: Array(#"{"id":"evt_1","type":"invoice.paid","created":1,"data":{}}"#.utf8))
        }
    }

    @Test func customersAreKeyedByTheirStripeIDAndArchivedWhenDeleted() throws {
        let created = try rows("customer.created")
        #expect(created.count == 1)
        #expect(created[0].streamID == "customer-cus_RKs8vYb0Qm4Lzn")
        #expect(created[0].values["email"] == .text("ada@example.com"))
        #expect(created[0].values["name"] == .text("Ada Lovelace"))
        #expect(created[0].values["currency"] == .null)
        #expect(created[0].values["created_at"] == ts(customerCreated))
        #expect(created[0].values["updated_at"] == ts(customerCreated))
        #expect(created[0].values["archived_at"] == .null)
        #expect(created[0].attributes["stripe_id"] == "cus_RKs8vYb0Qm4Lzn")
        #expect(created[0].attributes["stripe_balance"] == "0")
        let updated = try rows("customer.updated")[0]
        #expect(updated.values["currency"] == .text("USD"))
        #expect(updated.values["email"] == .text("ada.lovelace@example.com"))
        #expect(updated.values["updated_at"] == ts(customerCreated + 3_600))
        let deleted = try rows("customer.deleted")[0]
        #expect(deleted.values["archived_at"] == ts(customerCreated + 90 * 86_400))
        #expect(deleted.rank == 1)
    }

    @Test func subscriptionsTakeTheirPriceQuantityPeriodAndTimes() throws {
        let trialing = try rows("customer.subscription.created")[0]
        #expect(trialing.streamID == "subscription-sub_1QSrD3Ks8vYb0Qm4SubA")
        #expect(trialing.values["customer_id"] == .text("cus_RKs8vYb0Qm4Lzn"))
        #expect(trialing.values["plan_id"] == .text("price_1QSrC2Ks8vYb0Qm4Pro"))
        #expect(trialing.values["status"] == .text("trialing"))
        #expect(trialing.values["quantity"] == .integer(3))
        #expect(trialing.values["started_at"] == ts(subscriptionStart))
        #expect(trialing.values["trial_ends_at"] == ts(trialEnd))
        #expect(trialing.values["current_period_start"] == ts(subscriptionStart))
        #expect(trialing.values["current_period_end"] == ts(trialEnd))
        #expect(trialing.values["cancel_at_period_end"] == .boolean(false))
        #expect(trialing.attributes["stripe_item_id"] == "si_RKs9ItemA")
        let active = try rows("customer.subscription.updated")[0]
        #expect(active.values["status"] == .text("active"))
        #expect(active.values["current_period_end"] == ts(trialEnd + 31 * 86_400))
        let canceled = try rows("customer.subscription.deleted")[0]
        #expect(canceled.values["status"] == .text("canceled"))
        #expect(canceled.values["canceled_at"] == ts(trialEnd + 20 * 86_400))
        #expect(canceled.values["ended_at"] == ts(trialEnd + 20 * 86_400))
        #expect([trialing.rank, active.rank, canceled.rank] == [Int]([1, 2, 3]))
    }

    @Test func incompleteExpiredIsCanceledAndTheRawStatusKept() throws {
        var event = try stripeEvent("customer.subscription.created")
        guard case .object(var object) = event.object else { Issue.record("not an object"); return }
        object["status"] = .string("incomplete_expired")
        event.object = .object(object)
        let row = try #require(try StripeMapping.rows(for: event, current: { _, _ in nil }))[0]
        #expect(row.values["status"] == .text("canceled"))
        #expect(row.attributes["stripe_status"] == "incomplete_expired")
    }

    @Test func aDraftInvoiceSplitsItsTotalIntoSubtotalDiscountAndTax() throws {
        let draft = try rows("invoice.created")[0]
        #expect(draft.streamID == "invoice-in_1QSrF6Ks8vYb0Qm4InvA")
        #expect(draft.values["status"] == .text("draft"))
        #expect(draft.values["currency"] == .text("EUR"))
        #expect(draft.values["subscription_id"] == .text("sub_1QSrD3Ks8vYb0Qm4SubA"))
        // 3 × 25.00 = 75.00, 10 % off, 20 % tax on 67.50: 7500 − 750 + 1350 = 8100.
        #expect(draft.values["subtotal"] == .amount(7_500))
        #expect(draft.values["discount"] == .amount(750))
        #expect(draft.values["tax"] == .amount(1_350))
        #expect(draft.values["total"] == .amount(8_100))
        #expect(draft.values["rounding"] == .amount(0))
        #expect(draft.values["amount_paid"] == .amount(0))
        #expect(draft.values["amount_due"] == .amount(8_100))
        #expect(draft.values["credit_applied"] == .amount(0))
        #expect(draft.values["kind"] == .text("subscription"))
        #expect(draft.values["number"] == .null)
        #expect(draft.values["finalized_at"] == .null)
        #expect(draft.values["created_at"] == ts(invoiceCreated))
        #expect(draft.values["period_start"] == ts(subscriptionStart))
        #expect(draft.rank == 0)
    }

    @Test func aPaidInvoiceIsDatedByItsStatusTransitions() throws {
        let invoice = try rows("invoice.paid")[0]
        #expect(invoice.values["status"] == .text("paid"))
        #expect(invoice.values["number"] == .text("7C1D2E3F-0001"))
        #expect(invoice.values["finalized_at"] == ts(finalized))
        #expect(invoice.values["paid_at"] == ts(paid))
        #expect(invoice.values["issued_on"] == .date(PostgresDate("2024-12-20")!))
        #expect(invoice.values["due_on"] == .date(PostgresDate("2025-01-19")!))
        #expect(invoice.values["amount_paid"] == .amount(8_100))
        #expect(invoice.values["amount_due"] == .amount(0))
        #expect(invoice.values["updated_at"] == ts(paid))
        #expect(invoice.attributes["stripe_charge"] == "ch_3QSrH8Ks8vYb0Qm40ChgA")
        #expect(invoice.attributes["stripe_payment_intent"] == "pi_3QSrH8Ks8vYb0Qm40PayA")
        #expect(try rows("invoice.voided")[0].values["voided_at"] == ts(finalized + 7 * 86_400))
        #expect(try rows("invoice.marked_uncollectible")[0].values["marked_uncollectible_at"] == ts(finalized + 40 * 86_400))
        #expect(try rows("invoice.payment_failed")[0].values["status"] == .text("open"))
    }

    @Test func anInvoiceOfAnAPIVersionSince20250331NamesItsSubscriptionUnderParent() throws {
        var event = try stripeEvent("invoice.finalized")
        guard case .object(var object) = event.object else { Issue.record("not an object"); return }
        object.removeValue(forKey: "subscription")
        object.removeValue(forKey: "total_excluding_tax")
        object.removeValue(forKey: "tax")
        object.removeValue(forKey: "total_tax_amounts")
        object["total_taxes"] = .array([.object(["amount": .integer(1_350), "tax_behavior": .string("exclusive")])])
        object["parent"] = .object([
            "type": .string("subscription_details"),
            "subscription_details": .object(["subscription": .string("sub_1QSrD3Ks8vYb0Qm4SubA"), "metadata": .object([:])]),
        ])
        event.object = .object(object)
        event.apiVersion = "2025-03-31.basil"
        let row = try #require(try StripeMapping.rows(for: event, current: { _, _ in nil }))[0]
        #expect(row.values["subscription_id"] == .text("sub_1QSrD3Ks8vYb0Qm4SubA"))
        #expect(row.values["tax"] == .amount(1_350))
        #expect(row.values["rounding"] == .amount(0))
        #expect(row.values["status"] == .text("open"))
    }

    @Test func aZeroDecimalCurrencyKeepsStripesMinorUnitsAndBalanceCreditIsCreditApplied() throws {
        let invoice = try rows("invoice.paid.jpy")[0]
        #expect(invoice.values["currency"] == .text("JPY"))
        #expect(invoice.values["total"] == .amount(12_000))
        #expect(invoice.values["tax"] == .amount(0))
        #expect(invoice.values["amount_paid"] == .amount(10_000))
        // ¥2,000 of customer balance taken off before payment: total − paid − credit = 0 owed.
        #expect(invoice.values["credit_applied"] == .amount(2_000))
        #expect(invoice.values["amount_due"] == .amount(0))
        #expect(invoice.values["kind"] == .text("standard"))
        #expect(invoice.values["subscription_id"] == .null)
    }

    @Test func aRefundedChargeIsThePaymentAndItsRefunds() throws {
        let mapped = try rows("charge.refunded")
        #expect(mapped.map(\.streamID) == ["payment-ch_3QSrH8Ks8vYb0Qm40ChgA", "refund-re_3QSrH8Ks8vYb0Qm40RefA"])
        let payment = mapped[0]
        #expect(payment.values["status"] == .text("succeeded"))
        #expect(payment.values["amount"] == .amount(8_100))
        #expect(payment.values["currency"] == .text("EUR"))
        #expect(payment.values["customer_id"] == .text("cus_RKs8vYb0Qm4Lzn"))
        #expect(payment.values["invoice_id"] == .text("in_1QSrF6Ks8vYb0Qm4InvA"))
        #expect(payment.values["provider_payment_id"] == .text("pi_3QSrH8Ks8vYb0Qm40PayA"))
        #expect(payment.values["succeeded_at"] == ts(paid))
        #expect(payment.attributes["stripe_amount_refunded"] == "2000")
        let refund = mapped[1]
        #expect(refund.values["payment_id"] == .text("ch_3QSrH8Ks8vYb0Qm40ChgA"))
        #expect(refund.values["customer_id"] == .text("cus_RKs8vYb0Qm4Lzn"))
        #expect(refund.values["invoice_id"] == .text("in_1QSrF6Ks8vYb0Qm4InvA"))
        #expect(refund.values["amount"] == .amount(2_000))
        #expect(refund.values["status"] == .text("pending"))
        #expect(refund.values["reason"] == .text("requested_by_customer"))
        #expect(refund.values["created_at"] == ts(refunded))
        var guest = try stripeEvent("charge.refunded")
        guard case .object(var object) = guest.object else { Issue.record("not an object"); return }
        object["customer"] = .null
        guest.object = .object(object)
        #expect(throws: StripeNotApplicable(reason: "charge ch_3QSrH8Ks8vYb0Qm40ChgA has no customer (a guest payment)")) {
            try StripeMapping.rows(for: guest, current: { _, _ in nil })
        }
    }

    @Test func aRefundTakesItsCustomerFromTheLedgersPaymentOrWaits() throws {
        #expect(throws: StripeUnresolvedReference.self) { try rows("refund.created") }
        let payment = CanonicalRow(
            entity: .payment,
            values: ["payment_id": .text("ch_3QSrH8Ks8vYb0Qm40ChgA"), "customer_id": .text("cus_X"), "invoice_id": .text("in_Y")])
        let refund = try rows("refund.updated", current: { entity, key in entity == .payment && key == "ch_3QSrH8Ks8vYb0Qm40ChgA" ? payment : nil })[0]
        #expect(refund.values["customer_id"] == .text("cus_X"))
        #expect(refund.values["invoice_id"] == .text("in_Y"))
        #expect(refund.values["status"] == .text("succeeded"))
        #expect(refund.rank == 1)
    }

    @Test func aPostPaymentCreditNoteSplitsIntoRefundAndCredit() throws {
        let note = try rows("credit_note.created")[0]
        #expect(note.streamID == "credit_note-cn_1QSrN6Ks8vYb0Qm4CredA")
        #expect(note.values["total"] == .amount(3_000))
        #expect(note.values["refund_amount"] == .amount(2_000))
        #expect(note.values["credit_amount"] == .amount(1_000))
        #expect(note.values["offset_amount"] == .amount(0))
        #expect(note.values["balance_remaining"] == .amount(1_000))
        #expect(note.values["status"] == .text("issued"))
        #expect(note.values["reason"] == .text("order_change"))
        #expect(note.values["number"] == .text("7C1D2E3F-0001-CN-01"))
        let void = try rows("credit_note.voided")[0]
        #expect(void.values["status"] == .text("void"))
        #expect(void.values["voided_at"] == ts(refunded + 60 + 3_600))
        #expect(void.values["balance_remaining"] == .amount(0))
    }

    @Test func unmappedTypesGiveNoRowsAndBrokenObjectsAreRefused() throws {
        #expect(try StripeMapping.rows(for: try stripeEvent("payment_intent.created"), current: { _, _ in nil }) == nil)
        var event = try stripeEvent("invoice.created")
        guard case .object(var object) = event.object else { Issue.record("not an object"); return }
        object["currency"] = .string("zzz")
        event.object = .object(object)
        #expect(throws: StripeEventError.self) { try StripeMapping.rows(for: event, current: { _, _ in nil }) }
        object.removeValue(forKey: "customer")
        object["currency"] = .string("eur")
        event.object = .object(object)
        #expect(throws: StripeEventError.invalidObject(eventID: event.id, type: "invoice.created", reason: "no customer")) {
            try StripeMapping.rows(for: event, current: { _, _ in nil })
        }
    }
}
