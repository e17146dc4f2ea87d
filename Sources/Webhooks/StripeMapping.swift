import Billing
import Postgres

/// The canonical columns one Stripe object gives a row, with the state rank that orders its
/// versions.
///
/// Only the columns Stripe knows are set: the handler lays them over the ledger's current row,
/// so columns another writer owns (a customer's `billing_entity_id`, a subscription's `phase`)
/// are kept, and `attributes` are merged the same way.
public struct StripeRow: Sendable, Hashable {
    public var entity: Entity
    public var key: String
    /// Canonical columns Stripe's object determines (`.null` where the object says null).
    public var values: [String: CanonicalValue]
    /// `stripe_…` attributes: Stripe ids and raw values the canonical model has no column for.
    public var attributes: [String: String?]
    /// How far the object is in its lifecycle (an invoice: draft 0, open 1, uncollectible 2,
    /// paid or void 3). A row whose rank is below the ledger's current row's is an older state
    /// and never overwrites it, whatever the order deliveries arrive in.
    public var rank: Int

    public var streamID: String { entity.streamID(key: key) }
}

/// What the ledger knows, as the mapping needs it: the current row of a stream (a refund's
/// customer comes from its payment's row).
public typealias CurrentRow = (Entity, String) throws -> CanonicalRow?

/// Why an event cannot be applied yet: it names an object the ledger does not know and whose
/// data the event does not carry (a `refund.created` delivered before the `charge.refunded`
/// that brings its payment). The handler stores nothing, and the route answers 5xx, so Stripe
/// delivers it again later, by when the other event has usually arrived.
public struct StripeUnresolvedReference: Error, Sendable, Hashable, CustomStringConvertible {
    public var eventID: String
    public var type: String
    /// The Stripe object the ledger lacks (a charge `ch_…`).
    public var missingObjectID: String
    public var reason: String
    public var description: String { "Stripe event \(eventID) (\(type)) cannot be applied yet: \(reason)" }
}

/// An object of a mapped type that has no place in the ledger: a charge without a customer (a
/// guest payment; every canonical payment has a customer), and the refunds of such a charge. The
/// handler acknowledges it as ignored, with the reason.
public struct StripeNotApplicable: Error, Sendable, Hashable, CustomStringConvertible {
    public var reason: String
    public var description: String { reason }
}

/// Stripe objects → canonical rows, per event type.
///
/// Keys are Stripe's ids (`cus_…`, `sub_…`, `in_…`, `ch_…`, `re_…`, `cn_…`), so a customer's
/// stream is `customer-cus_123`. Amounts are Stripe's integer minor units as they are (Stripe's
/// zero-decimal currencies — JPY, KRW, … — are ISO 4217 exponent 0 too, three-decimal ones
/// exponent 3), currencies upper-cased and checked against ISO 4217. Times come from the
/// object's own fields (`created`, `status_transitions.*`, `canceled_at`, …); `updated_at` is
/// the event's `created`, when Stripe recorded the change.
public enum StripeMapping {
    /// The object kinds the webhook maps.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case customer, subscription, invoice, charge, refund, creditNote = "credit_note"
    }

    /// The event types mapped, by kind (anything else is acknowledged and counted as ignored).
    public static let eventTypes: [String: Kind] = {
        var types = [String: Kind]()
        for t in ["customer.created", "customer.updated", "customer.deleted"] { types[t] = .customer }
        for t in ["created", "updated", "deleted", "trial_will_end", "paused", "resumed"] { types["customer.subscription." + t] = .subscription }
        for t in ["created", "finalized", "paid", "payment_failed", "voided", "marked_uncollectible", "updated", "payment_succeeded"] {
            types["invoice." + t] = .invoice
        }
        types["charge.refunded"] = .charge
        types["charge.refund.updated"] = .refund
        for t in ["refund.created", "refund.updated", "refund.failed"] { types[t] = .refund }
        for t in ["credit_note.created", "credit_note.updated", "credit_note.voided"] { types[t] = .creditNote }
        return types
    }()

    public static func kind(of type: String) -> Kind? { eventTypes[type] }

    /// The rows `event` gives (the first is the event's own object), or `nil` for an event type
    /// that is not mapped.
    ///
    /// - Throws: ``StripeEventError/invalidObject(eventID:type:reason:)`` for an object without
    ///   a field the mapping needs; ``StripeUnresolvedReference`` when it needs a row the ledger
    ///   does not have yet.
    public static func rows(for event: StripeEvent, current: CurrentRow) throws -> [StripeRow]? {
        guard let kind = kind(of: event.type) else { return nil }
        let reader = ObjectReader(event: event, object: event.object)
        switch kind {
        case .customer: return [try customer(reader, deleted: event.type == "customer.deleted")]
        case .subscription: return [try subscription(reader)]
        case .invoice: return [try invoice(reader)]
        case .charge:
            let payment = try charge(reader)
            var rows = [payment]
            for refund in event.object["refunds"]?["data"]?.array ?? [] {
                rows.append(try self.refund(ObjectReader(event: event, object: refund), current: current, charge: payment))
            }
            return rows
        case .refund: return [try refund(reader, current: current, charge: nil)]
        case .creditNote: return [try creditNote(reader, current: current)]
        }
    }

    // MARK: - Per object

    static func customer(_ o: ObjectReader, deleted: Bool) throws -> StripeRow {
        let id = try o.id()
        var values: [String: CanonicalValue] = [
            "customer_id": .text(id), "email": o.text("email"), "name": o.text("name"), "currency": try o.currency(required: false),
            "created_at": try o.requiredTime("created"), "updated_at": o.eventTime,
        ]
        // A deleted Stripe customer is archived (its invoices and payments still name it); the
        // event's time is the deletion's, the only one Stripe gives.
        values["archived_at"] = deleted ? o.eventTime : .null
        var attributes = o.baseAttributes
        if let balance = o.object["balance"]?.integer { attributes["stripe_balance"] = String(balance) }
        return StripeRow(entity: .customer, key: id, values: values, attributes: attributes, rank: deleted ? 1 : 0)
    }

    /// Stripe's subscription statuses in the canonical vocabulary (`incomplete_expired`, a
    /// first payment never made, is `canceled`; the raw status is kept as `stripe_status`).
    static let subscriptionStatus: [String: String] = [
        "incomplete": "incomplete", "incomplete_expired": "canceled", "trialing": "trialing", "active": "active",
        "past_due": "past_due", "canceled": "canceled", "unpaid": "unpaid", "paused": "paused",
    ]

    static func subscription(_ o: ObjectReader) throws -> StripeRow {
        let id = try o.id()
        let raw = try o.requiredText("status")
        guard let status = subscriptionStatus[raw] else { throw o.invalid("unknown subscription status \(raw)") }
        let item = o.object["items"]?["data"]?.array?.first
        // The price (or, before prices, the plan) of the first item is the canonical plan.
        guard let plan = item?["price"]?["id"]?.string ?? item?["plan"]?["id"]?.string ?? o.object["plan"]?["id"]?.string else {
            throw o.invalid("no price or plan on the subscription's items")
        }
        let quantity = item?["quantity"]?.integer ?? o.object["quantity"]?.integer ?? 1
        // Since API version 2025-03-31 the period is on the items; before, on the subscription.
        let periodStart = o.object["current_period_start"]?.integer ?? item?["current_period_start"]?.integer
        let periodEnd = o.object["current_period_end"]?.integer ?? item?["current_period_end"]?.integer
        let created = try o.requiredTime("created")
        let values: [String: CanonicalValue] = [
            "subscription_id": .text(id), "customer_id": .text(try o.requiredID("customer")), "plan_id": .text(plan),
            "status": .text(status), "quantity": .integer(quantity),
            "started_at": o.object["start_date"]?.integer.map(ObjectReader.timestamp) ?? created,
            "trial_ends_at": o.time("trial_end"), "current_period_start": periodStart.map(ObjectReader.timestamp) ?? .null,
            "current_period_end": periodEnd.map(ObjectReader.timestamp) ?? .null,
            "cancel_at_period_end": .boolean(o.object["cancel_at_period_end"]?.bool ?? false), "canceled_at": o.time("canceled_at"),
            "ended_at": o.time("ended_at"), "created_at": created, "updated_at": o.eventTime,
        ]
        var attributes = o.baseAttributes
        attributes["stripe_status"] = raw
        if let itemID = item?["id"]?.string { attributes["stripe_item_id"] = itemID }
        let rank =
            switch raw {
            case "incomplete": 0
            case "trialing": 1
            case "canceled", "incomplete_expired": 3
            default: 2
            }
        return StripeRow(entity: .subscription, key: id, values: values, attributes: attributes, rank: rank)
    }

    static func invoice(_ o: ObjectReader) throws -> StripeRow {
        let id = try o.id()
        let status = try o.requiredText("status")
        guard Vocabulary.invoiceStatus.contains(status) else { throw o.invalid("unknown invoice status \(status)") }
        let total = try o.requiredAmount("total")
        // Amounts before tax and discounts: `subtotal_excluding_tax` when tax is included in
        // prices, else `subtotal`.
        let subtotal = try o.object["subtotal_excluding_tax"]?.integer ?? o.requiredAmount("subtotal")
        let discount = o.sum("total_discount_amounts", "amount")
        let tax: Int64 =
            if let excluding = o.object["total_excluding_tax"]?.integer { total - excluding }
            else { o.object["tax"]?.integer ?? o.sum("total_taxes", "amount") + o.sum("total_tax_amounts", "amount") }
        let amountPaid = try o.requiredAmount("amount_paid")
        let stripeDue = try o.requiredAmount("amount_due")
        let remaining = o.object["amount_remaining"]?.integer ?? max(0, stripeDue - amountPaid)
        let transitions = o.object["status_transitions"]
        let finalizedAt = transitions?["finalized_at"]?.integer
        let subscription = o.object["subscription"]?.expandableID
            ?? o.object["parent"]?["subscription_details"]?["subscription"]?.expandableID
        let reason = o.object["billing_reason"]?.string
        let values: [String: CanonicalValue] = [
            "invoice_id": .text(id), "customer_id": .text(try o.requiredID("customer")),
            "subscription_id": subscription.map(CanonicalValue.text) ?? .null, "number": o.text("number"), "status": .text(status),
            "currency": try o.currency(required: true), "subtotal": .amount(subtotal), "discount": .amount(discount), "tax": .amount(tax),
            "total": .amount(total), "amount_paid": .amount(amountPaid), "amount_due": .amount(remaining),
            "period_start": o.time("period_start"), "period_end": o.time("period_end"),
            "issued_on": (o.object["effective_at"]?.integer ?? finalizedAt).map(ObjectReader.date) ?? .null,
            "due_on": o.object["due_date"]?.integer.map(ObjectReader.date) ?? .null,
            "finalized_at": finalizedAt.map(ObjectReader.timestamp) ?? .null,
            "paid_at": transitions?["paid_at"]?.integer.map(ObjectReader.timestamp) ?? .null,
            "voided_at": transitions?["voided_at"]?.integer.map(ObjectReader.timestamp) ?? .null,
            "marked_uncollectible_at": transitions?["marked_uncollectible_at"]?.integer.map(ObjectReader.timestamp) ?? .null,
            "created_at": try o.requiredTime("created"), "updated_at": o.eventTime,
            "kind": .text(reason?.hasPrefix("subscription") == true ? "subscription" : "standard"),
            // What Stripe's own total does not explain as subtotal − discount + tax.
            "rounding": .amount(total - (subtotal - discount + tax)),
            // Customer balance and credit notes Stripe took off before payment: total − amount_due.
            "credit_applied": .amount(max(0, total - stripeDue)),
        ]
        var attributes = o.baseAttributes
        if let reason { attributes["stripe_billing_reason"] = reason }
        if let intent = o.object["payment_intent"]?.expandableID { attributes["stripe_payment_intent"] = intent }
        if let charge = o.object["charge"]?.expandableID { attributes["stripe_charge"] = charge }
        let rank =
            switch status {
            case "draft": 0
            case "open": 1
            case "uncollectible": 2
            default: 3
            }
        return StripeRow(entity: .invoice, key: id, values: values, attributes: attributes, rank: rank)
    }

    /// A charge is the canonical payment (`ch_…`); `provider_payment_id` is its PaymentIntent
    /// (`pi_…`) when it has one, else the charge id.
    static func charge(_ o: ObjectReader) throws -> StripeRow {
        let id = try o.id()
        let raw = try o.requiredText("status")
        let status =
            switch raw {
            case "succeeded": "succeeded"
            case "failed": "failed"
            default: "pending"
            }
        let created = try o.requiredTime("created")
        let intent = o.object["payment_intent"]?.expandableID
        guard let customer = o.object["customer"]?.expandableID, !customer.isEmpty else {
            throw StripeNotApplicable(reason: "charge \(id) has no customer (a guest payment)")
        }
        let values: [String: CanonicalValue] = [
            "payment_id": .text(id), "customer_id": .text(customer),
            "invoice_id": o.object["invoice"]?.expandableID.map(CanonicalValue.text) ?? .null, "status": .text(status),
            "amount": .amount(try o.requiredAmount("amount")), "currency": try o.currency(required: true),
            "provider_payment_id": .text(intent ?? id), "failure_code": o.text("failure_code"),
            // A charge is created when the card is charged: its outcome is known then.
            "succeeded_at": status == "succeeded" ? created : .null, "failed_at": status == "failed" ? created : .null,
            "created_at": created, "updated_at": o.eventTime,
        ]
        var attributes = o.baseAttributes
        if let intent { attributes["stripe_payment_intent"] = intent }
        if let refunded = o.object["amount_refunded"]?.integer { attributes["stripe_amount_refunded"] = String(refunded) }
        return StripeRow(entity: .payment, key: id, values: values, attributes: attributes, rank: status == "pending" ? 0 : 1)
    }

    /// A refund (`re_…`) of a charge. Stripe's refund names no customer: it is the charge's
    /// (expanded on the refund, or carried by the `charge.refunded` event), else the customer of
    /// the ledger's row of the refund or of its payment.
    static func refund(_ o: ObjectReader, current: CurrentRow, charge: StripeRow?) throws -> StripeRow {
        let id = try o.id()
        guard let chargeID = o.object["charge"]?.expandableID ?? charge?.key else { throw o.invalid("the refund names no charge") }
        var customer = o.object["charge"]?["customer"]?.expandableID ?? charge?.values["customer_id"]?.textValue
        var invoice = o.object["charge"]?["invoice"]?.expandableID ?? charge?.values["invoice_id"]?.textValue
        if customer == nil, let known = try current(.refund, id) {
            customer = known["customer_id"].textValue
            invoice = invoice ?? known["invoice_id"].textValue
        }
        if customer == nil, let payment = try current(.payment, chargeID) {
            customer = payment["customer_id"].textValue
            invoice = invoice ?? payment["invoice_id"].textValue
        }
        guard let customer else {
            throw StripeUnresolvedReference(
                eventID: o.event.id, type: o.event.type, missingObjectID: chargeID, reason: "refund \(id)'s charge \(chargeID) is not in the ledger (payment-\(chargeID))")
        }
        let raw = try o.requiredText("status")
        let status =
            switch raw {
            case "succeeded": "succeeded"
            case "failed": "failed"
            case "canceled": "canceled"
            default: "pending"  // pending, requires_action
            }
        let values: [String: CanonicalValue] = [
            "refund_id": .text(id), "payment_id": .text(chargeID), "customer_id": .text(customer),
            "amount": .amount(try o.requiredAmount("amount")), "currency": try o.currency(required: true), "status": .text(status),
            "reason": o.text("reason"), "created_at": try o.requiredTime("created"),
            "invoice_id": invoice.map(CanonicalValue.text) ?? .null,
        ]
        var attributes = o.baseAttributes
        attributes["stripe_status"] = raw
        if let intent = o.object["payment_intent"]?.expandableID { attributes["stripe_payment_intent"] = intent }
        return StripeRow(entity: .refund, key: id, values: values, attributes: attributes, rank: status == "pending" ? 0 : 1)
    }

    /// A credit note (`cn_…`). Its total splits as the canonical model says: `offset_amount`
    /// the part that reduced what the invoice owed (`pre_payment_amount`; all of it for a
    /// `pre_payment` note of an API version without that field), `refund_amount` what was paid
    /// back (the linked refunds, plus `out_of_band_amount`, credited outside Stripe), and
    /// `credit_amount` the rest, credited to the customer's balance.
    static func creditNote(_ o: ObjectReader, current: CurrentRow) throws -> StripeRow {
        let id = try o.id()
        let status = try o.requiredText("status")
        guard Vocabulary.creditNoteStatus.contains(status) else { throw o.invalid("unknown credit note status \(status)") }
        let total = try o.requiredAmount("total")
        let outOfBand = o.object["out_of_band_amount"]?.integer ?? 0
        let offset: Int64
        let refunded: Int64
        if let pre = o.object["pre_payment_amount"]?.integer {
            offset = pre
            refunded = o.sum("refunds", "amount_refunded") + outOfBand
        } else if o.object["type"]?.string == "pre_payment" {
            offset = total
            refunded = 0
        } else {
            offset = 0
            // Older versions link one refund and no amount: the refund then takes what is
            // neither out of band nor a balance credit.
            let hasRefund = o.object["refund"]?.expandableID != nil
            refunded = hasRefund && o.object["customer_balance_transaction"]?.expandableID == nil ? total : outOfBand
        }
        let credit = total - offset - refunded
        guard credit >= 0 else { throw o.invalid("its parts (offset \(offset), refunded \(refunded)) exceed its total \(total)") }
        // What is left of the credit is the ledger's business once issued (invoices take it);
        // a voided note has none.
        let known = try current(.creditNote, id)
        let remaining: Int64 =
            status == "void" ? 0 : min(credit, known?["balance_remaining"].amountValue ?? credit)
        let values: [String: CanonicalValue] = [
            "credit_note_id": .text(id), "customer_id": .text(try o.requiredID("customer")),
            "invoice_id": o.object["invoice"]?.expandableID.map(CanonicalValue.text) ?? .null, "number": o.text("number"),
            "status": .text(status), "total": .amount(total), "balance_remaining": .amount(remaining),
            "currency": try o.currency(required: true), "reason": o.text("reason"), "created_at": try o.requiredTime("created"),
            "voided_at": o.time("voided_at"), "credit_amount": .amount(credit), "refund_amount": .amount(refunded),
            "offset_amount": .amount(offset),
        ]
        var attributes = o.baseAttributes
        if let type = o.object["type"]?.string { attributes["stripe_type"] = type }
        if outOfBand != 0 { attributes["stripe_out_of_band_amount"] = String(outOfBand) }
        if let refund = o.object["refund"]?.expandableID { attributes["stripe_refund"] = refund }
        return StripeRow(entity: .creditNote, key: id, values: values, attributes: attributes, rank: status == "void" ? 1 : 0)
    }
}

/// Typed reads of one Stripe object, failing with the event's id and the field.
struct ObjectReader {
    let event: StripeEvent
    let object: StripeJSON

    static func timestamp(_ seconds: Int64) -> CanonicalValue { .timestamp(PostgresTimestamp(microsecondsSinceEpoch: seconds * 1_000_000)) }
    static func date(_ seconds: Int64) -> CanonicalValue {
        // Floor division: a day starts at 00:00 UTC, also before 1970.
        .date(PostgresDate(daysSinceEpoch: Int64((Double(seconds) / 86_400).rounded(.down))))
    }

    var eventTime: CanonicalValue { Self.timestamp(event.created) }

    /// `stripe_id` (the object's id) and `stripe_livemode` on every row.
    var baseAttributes: [String: String?] {
        ["stripe_id": object["id"]?.string, "stripe_livemode": event.livemode ? "true" : "false"]
    }

    func invalid(_ reason: String) -> StripeEventError { .invalidObject(eventID: event.id, type: event.type, reason: reason) }

    func id() throws -> String {
        guard let id = object["id"]?.string, !id.isEmpty else { throw invalid("the object has no id") }
        return id
    }

    func text(_ field: String) -> CanonicalValue { object[field]?.string.map(CanonicalValue.text) ?? .null }

    func requiredText(_ field: String) throws -> String {
        guard let s = object[field]?.string else { throw invalid("no \(field)") }
        return s
    }

    /// An expandable id (`customer`) that must be present.
    func requiredID(_ field: String) throws -> String {
        guard let s = object[field]?.expandableID, !s.isEmpty else { throw invalid("no \(field)") }
        return s
    }

    func time(_ field: String) -> CanonicalValue { object[field]?.integer.map(Self.timestamp) ?? .null }

    func requiredTime(_ field: String) throws -> CanonicalValue {
        guard let t = object[field]?.integer else { throw invalid("no \(field)") }
        return Self.timestamp(t)
    }

    func requiredAmount(_ field: String) throws -> Int64 {
        guard let a = object[field]?.integer else { throw invalid("no integer \(field)") }
        return a
    }

    /// The sum of `field` over the array `list` (a missing list sums to 0).
    func sum(_ list: String, _ field: String) -> Int64 {
        let items = object[list]?.array ?? object[list]?["data"]?.array ?? []
        return items.reduce(0) { $0 + ($1[field]?.integer ?? 0) }
    }

    /// `currency`, upper-cased and checked against ISO 4217.
    func currency(required: Bool) throws -> CanonicalValue {
        guard let raw = object["currency"]?.string else {
            if required { throw invalid("no currency") }
            return .null
        }
        do {
            return .text(try Currency(code: raw.uppercased()).code)
        } catch {
            throw invalid("currency \(raw): \(error)")
        }
    }
}
