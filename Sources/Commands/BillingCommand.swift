import Billing
import Foundation
import Postgres

/// A billing command: one decision the event-sourced write path takes, in the canonical model.
///
/// Commands are the write side after the cutover's write switch: the application sends them
/// instead of writing legacy tables. Each carries the business time it happens at (`at`) and
/// the keys of the rows it creates (an application that migrates keeps its own ids; `serve`
/// allocates them when a request leaves them out). A command is decided by ``Decider`` against
/// the current rows of the streams it names (``CommandState``), and its decision becomes
/// events through ``Billing/Transitions`` — the same function shadow mode uses for the legacy
/// application's writes — so the read models, `query`, `report` and `diff` see no difference
/// between a change the legacy app made and the same change made by a command.
///
/// The JSON form (`Codable`) is the HTTP API's request body: `{"command": "record_payment", ...}`
/// with snake_case fields, times in ISO 8601, money as integer minor units.
public enum BillingCommand: Sendable, Hashable {
    case createCustomer(CreateCustomer)
    case updateCustomer(UpdateCustomer)
    case archiveCustomer(ArchiveCustomer)
    case startSubscription(StartSubscription)
    case activateTrial(ActivateTrial)
    case changePlan(ChangePlan)
    case cancelSubscription(CancelSubscription)
    case markPastDue(MarkPastDue)
    case markUnpaid(MarkUnpaid)
    case renewSubscription(RenewSubscription)
    case endSubscription(EndSubscription)
    case draftInvoice(DraftInvoice)
    case finalizeInvoice(FinalizeInvoice)
    case discardDraft(DiscardDraft)
    case recordPayment(RecordPayment)
    case voidInvoice(VoidInvoice)
    case markUncollectible(MarkUncollectible)
    case refundPayment(RefundPayment)
    case issueCreditNote(IssueCreditNote)
    case addCustomerCredit(AddCustomerCredit)

    /// The stable name: the JSON `command` field, the HTTP route (`POST /commands/<name>`),
    /// event metadata and metrics labels.
    public var name: String {
        switch self {
        case .createCustomer: "create_customer"
        case .updateCustomer: "update_customer"
        case .archiveCustomer: "archive_customer"
        case .startSubscription: "start_subscription"
        case .activateTrial: "activate_trial"
        case .changePlan: "change_plan"
        case .cancelSubscription: "cancel_subscription"
        case .markPastDue: "mark_past_due"
        case .markUnpaid: "mark_unpaid"
        case .renewSubscription: "renew_subscription"
        case .endSubscription: "end_subscription"
        case .draftInvoice: "draft_invoice"
        case .finalizeInvoice: "finalize_invoice"
        case .discardDraft: "discard_draft"
        case .recordPayment: "record_payment"
        case .voidInvoice: "void_invoice"
        case .markUncollectible: "mark_uncollectible"
        case .refundPayment: "refund_payment"
        case .issueCreditNote: "issue_credit_note"
        case .addCustomerCredit: "add_customer_credit"
        }
    }

    /// Every command name, in declaration order.
    public static let names = [
        "create_customer", "update_customer", "archive_customer", "start_subscription", "activate_trial", "change_plan",
        "cancel_subscription", "mark_past_due", "mark_unpaid", "renew_subscription", "end_subscription", "draft_invoice",
        "finalize_invoice", "discard_draft", "record_payment", "void_invoice", "mark_uncollectible", "refund_payment",
        "issue_credit_note", "add_customer_credit",
    ]

    /// When the command happens (business time): every timestamp it writes.
    public var at: PostgresTimestamp {
        switch self {
        case .createCustomer(let c): c.at
        case .updateCustomer(let c): c.at
        case .archiveCustomer(let c): c.at
        case .startSubscription(let c): c.at
        case .activateTrial(let c): c.at
        case .changePlan(let c): c.at
        case .cancelSubscription(let c): c.at
        case .markPastDue(let c): c.at
        case .markUnpaid(let c): c.at
        case .renewSubscription(let c): c.at
        case .endSubscription(let c): c.at
        case .draftInvoice(let c): c.at
        case .finalizeInvoice(let c): c.at
        case .discardDraft(let c): c.at
        case .recordPayment(let c): c.at
        case .voidInvoice(let c): c.at
        case .markUncollectible(let c): c.at
        case .refundPayment(let c): c.at
        case .issueCreditNote(let c): c.at
        case .addCustomerCredit(let c): c.at
        }
    }
}

// MARK: - Customers

/// A new customer (the legacy app's sign-up writes one, then starts its subscription).
public struct CreateCustomer: Sendable, Hashable, Codable {
    public var customerID: String
    public var email: String?
    public var name: String?
    /// ISO 4217; `nil` for a customer that has not been billed yet.
    public var currency: String?
    public var timeZone: String?
    public var at: PostgresTimestamp

    /// Every field (the memberwise initializer is internal; translations and the HTTP layer
    /// build commands outside the module).
    public init(
        customerID: String, email: String? = nil, name: String? = nil, currency: String? = nil, timeZone: String? = nil,
        at: PostgresTimestamp
    ) {
        self.customerID = customerID
        self.email = email
        self.name = name
        self.currency = currency
        self.timeZone = timeZone
        self.at = at
    }
}

/// Profile edits: only the fields given change.
public struct UpdateCustomer: Sendable, Hashable, Codable {
    public var customerID: String
    public var email: String?
    public var name: String?
    public var at: PostgresTimestamp

    /// Every field (the memberwise initializer is internal; translations and the HTTP layer
    /// build commands outside the module).
    public init(customerID: String, email: String? = nil, name: String? = nil, at: PostgresTimestamp) {
        self.customerID = customerID
        self.email = email
        self.name = name
        self.at = at
    }
}

/// The soft delete: allowed only for a customer with nothing running, owed or held.
public struct ArchiveCustomer: Sendable, Hashable, Codable {
    public var customerID: String
    public var at: PostgresTimestamp

    /// Every field (the memberwise initializer is internal; translations and the HTTP layer
    /// build commands outside the module).
    public init(customerID: String, at: PostgresTimestamp) {
        self.customerID = customerID
        self.at = at
    }
}

// MARK: - Subscriptions

/// A subscription to a plan: trialing for the plan's trial days when it has some, else active
/// for one interval.
public struct StartSubscription: Sendable, Hashable, Codable {
    public var subscriptionID: String
    public var customerID: String
    public var planID: String
    public var quantity: Int64
    public var at: PostgresTimestamp

    /// Every field (the memberwise initializer is internal; translations and the HTTP layer
    /// build commands outside the module).
    public init(
        subscriptionID: String, customerID: String, planID: String, quantity: Int64 = 1, at: PostgresTimestamp
    ) {
        self.subscriptionID = subscriptionID
        self.customerID = customerID
        self.planID = planID
        self.quantity = quantity
        self.at = at
    }
}

/// A trial converts: active from `at` for one interval.
public struct ActivateTrial: Sendable, Hashable, Codable {
    public var subscriptionID: String
    public var at: PostgresTimestamp

    /// Every field (the memberwise initializer is internal; translations and the HTTP layer
    /// build commands outside the module).
    public init(subscriptionID: String, at: PostgresTimestamp) {
        self.subscriptionID = subscriptionID
        self.at = at
    }
}

/// An upgrade or a downgrade: another plan of the same currency, interval and seat model.
public struct ChangePlan: Sendable, Hashable, Codable {
    public var subscriptionID: String
    public var planID: String
    public var at: PostgresTimestamp

    /// Every field (the memberwise initializer is internal; translations and the HTTP layer
    /// build commands outside the module).
    public init(subscriptionID: String, planID: String, at: PostgresTimestamp) {
        self.subscriptionID = subscriptionID
        self.planID = planID
        self.at = at
    }
}

/// A cancellation request: at the period's end (the subscription runs until then), or now.
public struct CancelSubscription: Sendable, Hashable, Codable {
    public var subscriptionID: String
    public var atPeriodEnd: Bool
    public var at: PostgresTimestamp

    /// Every field (the memberwise initializer is internal; translations and the HTTP layer
    /// build commands outside the module).
    public init(subscriptionID: String, atPeriodEnd: Bool, at: PostgresTimestamp) {
        self.subscriptionID = subscriptionID
        self.atPeriodEnd = atPeriodEnd
        self.at = at
    }
}

/// A failed payment puts an active subscription past due.
public struct MarkPastDue: Sendable, Hashable, Codable {
    public var subscriptionID: String
    public var at: PostgresTimestamp

    /// Every field (the memberwise initializer is internal; translations and the HTTP layer
    /// build commands outside the module).
    public init(subscriptionID: String, at: PostgresTimestamp) {
        self.subscriptionID = subscriptionID
        self.at = at
    }
}

/// Dunning gave up: a past-due subscription becomes unpaid (it stops billing).
public struct MarkUnpaid: Sendable, Hashable, Codable {
    public var subscriptionID: String
    public var at: PostgresTimestamp

    /// Every field (the memberwise initializer is internal; translations and the HTTP layer
    /// build commands outside the module).
    public init(subscriptionID: String, at: PostgresTimestamp) {
        self.subscriptionID = subscriptionID
        self.at = at
    }
}

/// The billing worker's renewal: the current period moves to the one in progress.
public struct RenewSubscription: Sendable, Hashable, Codable {
    public var subscriptionID: String
    public var periodStart: PostgresTimestamp
    public var periodEnd: PostgresTimestamp
    public var at: PostgresTimestamp

    /// Every field (the memberwise initializer is internal; translations and the HTTP layer
    /// build commands outside the module).
    public init(
        subscriptionID: String, periodStart: PostgresTimestamp, periodEnd: PostgresTimestamp, at: PostgresTimestamp
    ) {
        self.subscriptionID = subscriptionID
        self.periodStart = periodStart
        self.periodEnd = periodEnd
        self.at = at
    }
}

/// A subscription set to cancel at its period's end reaches it: canceled, ended.
public struct EndSubscription: Sendable, Hashable, Codable {
    public var subscriptionID: String
    public var at: PostgresTimestamp

    /// Every field (the memberwise initializer is internal; translations and the HTTP layer
    /// build commands outside the module).
    public init(subscriptionID: String, at: PostgresTimestamp) {
        self.subscriptionID = subscriptionID
        self.at = at
    }
}

// MARK: - Invoices

/// One line of a draft invoice. `amount` is `quantity × unit_amount` exactly for every kind
/// but `proration` (which states it) and `discount` / `tax` (computed by the draft).
public struct InvoiceLineInput: Sendable, Hashable, Codable {
    public var invoiceLineID: String
    /// `subscription`, `usage`, `one_off`, `proration` (and `discount`, `tax` when stated).
    public var kind: String
    public var description: String?
    /// Decimal text, exact (`"1"`, `"2.5"`).
    public var quantity: String?
    /// Decimal text in major units (`"0.0125"`): the product with `quantity` must be exact in
    /// the currency's minor units.
    public var unitAmount: String?
    /// Minor units, for `proration` lines (and lines whose amount is stated).
    public var amount: Int64?
    public var periodStart: PostgresTimestamp?
    public var periodEnd: PostgresTimestamp?
}

/// A draft invoice with its lines; subtotal, discount, tax and total follow from them.
public struct DraftInvoice: Sendable, Hashable, Codable {
    public var invoiceID: String
    public var customerID: String
    public var subscriptionID: String?
    public var periodStart: PostgresTimestamp?
    public var periodEnd: PostgresTimestamp?
    public var lines: [InvoiceLineInput]
    /// A discount of this many percent of the subtotal, as a `discount` line (`SAVE20`).
    public var discountLineID: String?
    public var discountPercent: Int64?
    /// The tax rate as decimal text (`"0.2"`); a `tax` line when the tax is not zero.
    public var taxLineID: String?
    public var taxRate: String?
    public var at: PostgresTimestamp
}

/// A draft becomes open (numbered, issued) and the customer's unapplied credit pays what it
/// can at once; paid at once when nothing is left to pay.
public struct FinalizeInvoice: Sendable, Hashable, Codable {
    public var invoiceID: String
    /// Due date; `nil`: the day it is issued.
    public var dueOn: PostgresDate?
    /// Ids for the balance transactions that apply credit, used in order (allocated when
    /// missing or too few).
    public var creditApplicationIDs: [String]?
    public var at: PostgresTimestamp
}

/// A draft is thrown away: the invoice and its lines end (`…Deleted`).
public struct DiscardDraft: Sendable, Hashable, Codable {
    public var invoiceID: String
    public var at: PostgresTimestamp
}

/// A payment attempt on an open (or uncollectible) invoice, succeeded or failed.
public struct RecordPayment: Sendable, Hashable, Codable {
    public var paymentID: String
    public var invoiceID: String
    /// Minor units; `nil`: what the invoice has due.
    public var amount: Int64?
    /// `succeeded` or `failed`.
    public var status: String
    public var method: String?
    public var providerPaymentID: String?
    public var failureCode: String?
    public var at: PostgresTimestamp
}

/// An open invoice with nothing paid is voided.
public struct VoidInvoice: Sendable, Hashable, Codable {
    public var invoiceID: String
    public var at: PostgresTimestamp
}

/// An open invoice is written off: still owed, no longer pursued.
public struct MarkUncollectible: Sendable, Hashable, Codable {
    public var invoiceID: String
    public var at: PostgresTimestamp
}

/// A refund of a succeeded payment: never more than what is left of it.
public struct RefundPayment: Sendable, Hashable, Codable {
    public var refundID: String
    public var paymentID: String
    /// Minor units; `nil`: all that is left.
    public var amount: Int64?
    public var reason: String?
    public var at: PostgresTimestamp
}

/// A credit note on a paid invoice, its credit held in the customer's balance.
public struct IssueCreditNote: Sendable, Hashable, Codable {
    public var creditNoteID: String
    public var invoiceID: String
    public var amount: Int64
    public var balanceTransactionID: String
    public var number: String?
    public var reason: String?
    public var at: PostgresTimestamp
}

/// Goodwill credit added to a customer's balance.
public struct AddCustomerCredit: Sendable, Hashable, Codable {
    public var balanceTransactionID: String
    public var customerID: String
    public var amount: Int64
    public var description: String?
    public var at: PostgresTimestamp
}
