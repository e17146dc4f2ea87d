/// The rows one customer's story produces, one array per legacy table, reused from customer to
/// customer so generating allocates almost nothing once warmed up.
///
/// Money is in minor units of the customer's currency (`moneyCurrency`), instants in seconds.
struct CustomerRows {
    var customer = CustomerRow()
    var subscriptions: [SubscriptionRow] = []
    var history: [HistoryRow] = []
    var invoices: [InvoiceRow] = []
    var lines: [LineRow] = []
    var payments: [PaymentRow] = []
    var refunds: [RefundRow] = []
    var creditNotes: [CreditNoteRow] = []
    var transactions: [BalanceTransactionRow] = []

    mutating func reset() {
        subscriptions.removeAll(keepingCapacity: true)
        history.removeAll(keepingCapacity: true)
        invoices.removeAll(keepingCapacity: true)
        lines.removeAll(keepingCapacity: true)
        payments.removeAll(keepingCapacity: true)
        refunds.removeAll(keepingCapacity: true)
        creditNotes.removeAll(keepingCapacity: true)
        transactions.removeAll(keepingCapacity: true)
    }
}

struct CustomerRow {
    var id: Int64 = 0
    var email = ""
    var name = ""
    /// `customers.currency`; NULL for some early customers (their invoices carry it).
    var currency: Currency?
    /// The currency all this customer's money is in.
    var moneyCurrency: Currency = .usd
    var timezone = "UTC"
    var balance: Int64 = 0
    var creditBalance: Int64 = 0
    var deletedAt: Instant?
    var createdAt: Instant = 0
    var updatedAt: Instant = 0
}

enum SubscriptionStatus: String {
    case trialing, active, pastDue = "past_due", canceled, unpaid, incomplete, paused
}

struct SubscriptionRow {
    var id: Int64
    var planID: Int64
    var status: SubscriptionStatus
    var quantity: Int64
    var startedAt: Instant
    var trialEndsAt: Instant?
    var periodStart: Instant?
    var periodEnd: Instant?
    var cancelAtPeriodEnd = false
    var canceledAt: Instant?
    var endedAt: Instant?
    var previousID: Int64?
    var createdAt: Instant
    var updatedAt: Instant
    /// Whether the billing worker's bulk UPDATEs (which skip the audit callback) manage this
    /// row's automatic transitions.
    var managedByBulkWorker: Bool
}

struct HistoryRow {
    var id: Int64
    var subscriptionID: Int64
    var planID: Int64
    var status: SubscriptionStatus
    var quantity: Int64
    var cancelAtPeriodEnd: Bool
    var periodStart: Instant?
    var periodEnd: Instant?
    var canceledAt: Instant?
    var endedAt: Instant?
    var changedAt: Instant
}

enum InvoiceStatus: Int64 {
    case draft = 0, open = 1, paid = 2, void = 3, uncollectible = 4
}

struct InvoiceRow {
    var id: Int64
    var subscriptionID: Int64?
    var number: String?
    var status: InvoiceStatus
    /// `invoices.currency`: NULL on some early invoices (falls back to the customer's).
    var currency: Currency?
    var subtotal: Int64
    var discount: Int64
    var tax: Int64
    var total: Int64
    /// Succeeded payments plus applied credit.
    var amountPaid: Int64 = 0
    /// Hundred-thousandths (19000 = 0.19); `nil` is NULL.
    var taxRate: Int64?
    var periodStart: Instant?
    var periodEnd: Instant?
    var finalizedAt: Instant?
    var paidAt: Instant?
    var voidedAt: Instant?
    var createdAt: Instant
    var updatedAt: Instant
    /// Days from issue to due date (0 for cards, 30 for bank-transfer terms).
    var dueDays: Int64

    var amountDue: Int64 {
        switch status {
        case .paid, .void: 0
        case .draft, .open, .uncollectible: total - amountPaid
        }
    }
}

enum LineKind: String {
    case subscription, usage, oneOff = "one_off", proration, discount, tax
}

struct LineRow {
    var id: Int64
    var invoiceID: Int64
    var kind: LineKind
    var description: String
    var quantity: Int64
    /// `unit_amount` in ten-thousandths of the major unit (`numeric(14,4)`).
    var unitAmount4: Int64
    var amount: Int64
    var periodStart: Instant?
    var periodEnd: Instant?
}

enum PaymentStatus: String {
    case pending, succeeded, failed, canceled
}

enum PaymentMethod: String {
    case card, bankTransfer = "bank_transfer", achDebit = "ach_debit"
}

struct PaymentRow {
    var id: Int64
    var invoiceID: Int64
    var status: PaymentStatus
    var method: PaymentMethod
    var providerPaymentID: String?
    var failureCode: String?
    var amount: Int64
    var createdAt: Instant
    var updatedAt: Instant
}

enum RefundStatus: String {
    case pending, succeeded, failed
}

struct RefundRow {
    var id: Int64
    var paymentID: Int64
    var amount: Int64
    var reason: String
    var status: RefundStatus
    var createdAt: Instant
}

struct CreditNoteRow {
    var id: Int64
    var invoiceID: Int64
    var number: String
    var total: Int64
    var remaining: Int64
    var reason: String
    var isVoid: Bool
    var createdAt: Instant
    var voidedAt: Instant?
}

enum BalanceTransactionType: String {
    case creditNote = "credit_note", adjustment, appliedToInvoice = "applied_to_invoice"
}

struct BalanceTransactionRow {
    var id: Int64
    var amount: Int64
    var type: BalanceTransactionType
    var invoiceID: Int64?
    var creditNoteID: Int64?
    var description: String
    var createdAt: Instant
}

/// The next id of every table: ids are dense and follow generation order, customer by customer.
struct IDSequences {
    var customer: Int64 = 0
    var subscription: Int64 = 0
    var history: Int64 = 0
    var invoice: Int64 = 0
    var line: Int64 = 0
    var payment: Int64 = 0
    var refund: Int64 = 0
    var creditNote: Int64 = 0
    var transaction: Int64 = 0
}
