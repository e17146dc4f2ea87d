/// The billing event types, with the stable names they carry in the store.
///
/// Names never change once released; a payload shape change bumps ``schemaVersion`` instead.
public enum BillingEventType: String, Sendable, Hashable, CaseIterable, Codable {
    case customerCreated = "CustomerCreated"
    case customerUpdated = "CustomerUpdated"
    case customerArchived = "CustomerArchived"

    case planObserved = "PlanObserved"

    case subscriptionStarted = "SubscriptionStarted"
    case subscriptionTrialEnded = "SubscriptionTrialEnded"
    case subscriptionPlanChanged = "SubscriptionPlanChanged"
    case subscriptionQuantityChanged = "SubscriptionQuantityChanged"
    case subscriptionPastDue = "SubscriptionPastDue"
    case subscriptionUnpaid = "SubscriptionUnpaid"
    case subscriptionCancellationScheduled = "SubscriptionCancellationScheduled"
    case subscriptionCancellationRevoked = "SubscriptionCancellationRevoked"
    case subscriptionCanceled = "SubscriptionCanceled"
    case subscriptionEnded = "SubscriptionEnded"
    case subscriptionUpdated = "SubscriptionUpdated"
    case subscriptionImported = "SubscriptionImported"
    case subscriptionPhaseChanged = "SubscriptionPhaseChanged"
    case subscriptionActivated = "SubscriptionActivated"

    case invoiceDrafted = "InvoiceDrafted"
    case invoiceLineAdded = "InvoiceLineAdded"
    case invoiceLineUpdated = "InvoiceLineUpdated"
    case invoiceFinalized = "InvoiceFinalized"
    case invoicePaid = "InvoicePaid"
    case invoiceVoided = "InvoiceVoided"
    case invoiceMarkedUncollectible = "InvoiceMarkedUncollectible"
    case invoiceUpdated = "InvoiceUpdated"
    case invoiceImported = "InvoiceImported"

    case paymentCreated = "PaymentCreated"
    case paymentSucceeded = "PaymentSucceeded"
    case paymentFailed = "PaymentFailed"
    case paymentCanceled = "PaymentCanceled"
    case paymentUpdated = "PaymentUpdated"

    case refundIssued = "RefundIssued"
    case refundUpdated = "RefundUpdated"

    case creditNoteIssued = "CreditNoteIssued"
    case creditNoteApplied = "CreditNoteApplied"
    case creditNoteVoided = "CreditNoteVoided"
    case creditNoteUpdated = "CreditNoteUpdated"

    case balanceAdjusted = "BalanceAdjusted"
    case balanceTransactionUpdated = "BalanceTransactionUpdated"

    case billingEntityCreated = "BillingEntityCreated"
    case billingEntityUpdated = "BillingEntityUpdated"

    case paymentAllocated = "PaymentAllocated"
    case paymentAllocationUpdated = "PaymentAllocationUpdated"

    case walletCreated = "WalletCreated"
    case walletTerminated = "WalletTerminated"
    case walletUpdated = "WalletUpdated"

    case walletTransactionCreated = "WalletTransactionCreated"
    case walletTransactionSettled = "WalletTransactionSettled"
    case walletTransactionFailed = "WalletTransactionFailed"
    case walletTransactionVoided = "WalletTransactionVoided"
    case walletTransactionUpdated = "WalletTransactionUpdated"

    case creditApplied = "CreditApplied"
    case creditApplicationUpdated = "CreditApplicationUpdated"

    case chargebackOpened = "ChargebackOpened"
    case chargebackLost = "ChargebackLost"
    case chargebackWon = "ChargebackWon"
    case chargebackUpdated = "ChargebackUpdated"

    case paymentTransactionRecorded = "PaymentTransactionRecorded"
    case paymentTransactionUpdated = "PaymentTransactionUpdated"

    // A key that no longer exists in legacy (a hard delete, or a soft delete the mapping filters
    // out): one per entity, payload `set` empty (see ``Transitions/deletion(before:at:notBefore:step:syncedFromVersion:)``).
    case customerDeleted = "CustomerDeleted"
    case planDeleted = "PlanDeleted"
    case subscriptionDeleted = "SubscriptionDeleted"
    case invoiceDeleted = "InvoiceDeleted"
    case invoiceLineDeleted = "InvoiceLineDeleted"
    case paymentDeleted = "PaymentDeleted"
    case refundDeleted = "RefundDeleted"
    case creditNoteDeleted = "CreditNoteDeleted"
    case balanceTransactionDeleted = "BalanceTransactionDeleted"
    case billingEntityDeleted = "BillingEntityDeleted"
    case paymentAllocationDeleted = "PaymentAllocationDeleted"
    case walletDeleted = "WalletDeleted"
    case walletTransactionDeleted = "WalletTransactionDeleted"
    case creditApplicationDeleted = "CreditApplicationDeleted"
    case chargebackDeleted = "ChargebackDeleted"
    case paymentTransactionDeleted = "PaymentTransactionDeleted"

    /// The deletion event of `entity`'s streams.
    public static func deleted(_ entity: Entity) -> BillingEventType {
        switch entity {
        case .customer: .customerDeleted
        case .plan: .planDeleted
        case .subscription: .subscriptionDeleted
        case .invoice: .invoiceDeleted
        case .invoiceLine: .invoiceLineDeleted
        case .payment: .paymentDeleted
        case .refund: .refundDeleted
        case .creditNote: .creditNoteDeleted
        case .balanceTransaction: .balanceTransactionDeleted
        case .billingEntity: .billingEntityDeleted
        case .paymentAllocation: .paymentAllocationDeleted
        case .wallet: .walletDeleted
        case .walletTransaction: .walletTransactionDeleted
        case .creditApplication: .creditApplicationDeleted
        case .chargeback: .chargebackDeleted
        case .paymentTransaction: .paymentTransactionDeleted
        }
    }

    /// Whether this event ends its key's existence (the row is gone until a later creation).
    public var isDeletion: Bool {
        switch self {
        case .customerDeleted, .planDeleted, .subscriptionDeleted, .invoiceDeleted, .invoiceLineDeleted, .paymentDeleted,
            .refundDeleted, .creditNoteDeleted, .balanceTransactionDeleted, .billingEntityDeleted,
            .paymentAllocationDeleted, .walletDeleted, .walletTransactionDeleted, .creditApplicationDeleted,
            .chargebackDeleted, .paymentTransactionDeleted:
            true
        default: false
        }
    }

    /// Payload shape version: 2 for invoice lines, whose `quantity` became an exact decimal
    /// (a JSON string; version 1 wrote an integer, which still decodes).
    public var schemaVersion: Int32 {
        switch self {
        case .invoiceLineAdded, .invoiceLineUpdated: 2
        default: 1
        }
    }
}

/// How well the legacy data proves an event.
public enum Evidence: String, Sendable, Hashable, Codable, CaseIterable {
    /// A legacy value proves it: the change and its time are both recorded.
    case observed
    /// The change is certain but its time or order had to be derived (e.g. from `updated_at`).
    case inferred
    /// Only the state at migration time is known; no history is claimed.
    case imported
}
