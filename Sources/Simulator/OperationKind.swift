/// A business operation of the legacy billing application: what `ledgerlift simulate` does to
/// the reference schema, one transaction each.
///
/// The raw values are the names used on the command line, in a mix file, in the report and in
/// the journal; they are part of the interface and never change.
public enum OperationKind: String, CaseIterable, Sendable, Codable, Comparable {
    /// A new customer signs up and starts a subscription (trialing when the plan has a trial).
    case signUp = "sign_up"
    /// A trialing subscription becomes active (the customer added a card).
    case activateTrial = "trial_to_active"
    /// A subscription moves to a dearer plan of its currency and interval (plan_id overwritten,
    /// the earlier version kept in `subscription_history`).
    case upgrade = "upgrade"
    /// A subscription moves to a cheaper plan, likewise.
    case downgrade = "downgrade"
    /// A subscription is set to cancel at the end of its period.
    case cancelAtPeriodEnd = "cancel_at_period_end"
    /// A past-due subscription whose dunning ran out becomes unpaid.
    case markUnpaid = "past_due_to_unpaid"
    /// A draft invoice with its lines for a subscription's current period.
    case draftInvoice = "draft_invoice"
    /// A draft invoice is finalized: number assigned, the customer now owes it.
    case finalizeInvoice = "finalize_invoice"
    /// An open invoice is paid in full by one succeeded payment.
    case paymentSucceeded = "payment_succeeded"
    /// A payment attempt on an open invoice fails (its subscription becomes past due).
    case paymentFailed = "payment_failed"
    /// An invoice with a failed attempt is paid by a retry (its subscription becomes active again).
    case paymentRetried = "payment_retried"
    /// Part of an open invoice is paid (bank transfer in two parts).
    case partialPayment = "partial_payment"
    /// An open invoice with nothing paid on it is voided.
    case voidInvoice = "void_invoice"
    /// An open invoice is written off as uncollectible.
    case markUncollectible = "mark_uncollectible"
    /// A succeeded payment is refunded in full.
    case refundFull = "refund_full"
    /// Part of a succeeded payment is refunded.
    case refundPartial = "refund_partial"
    /// A credit note on a paid invoice credits the customer's balance.
    case creditNote = "credit_note"
    /// Goodwill credit added to a customer's balance.
    case customerCredit = "customer_credit"
    /// A customer changes its billing email.
    case editEmail = "edit_email"
    /// A customer changes its name.
    case editName = "edit_name"
    /// A customer with nothing running is soft-deleted (`deleted_at`).
    case softDelete = "soft_delete"
    /// A draft invoice is discarded: the app really deletes the row and its lines.
    case discardDraft = "discard_draft"

    public static func < (a: OperationKind, b: OperationKind) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}
