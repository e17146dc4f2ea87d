/// The type of a canonical column.
public enum ColumnType: Sendable, Hashable {
    case text
    case integer
    case boolean
    /// Money in minor units of the row's `currency`.
    case amount
    /// Exact decimal that is not money (e.g. a unit amount with four decimals).
    case decimal
    case timestamp
    case date
    /// An ISO 4217 code.
    case currency
    /// Text restricted to a vocabulary.
    case status([String])

    /// The PostgreSQL type of the column in the read models.
    public var sqlType: String {
        switch self {
        case .text, .status: "text"
        case .currency: "char(3)"
        case .integer, .amount: "bigint"
        case .boolean: "boolean"
        case .decimal: "numeric"
        case .timestamp: "timestamptz"
        case .date: "date"
        }
    }
}

/// A canonical column: the name a mapping query must return and what it holds.
public struct ColumnDefinition: Sendable, Hashable {
    public let name: String
    public let type: ColumnType
    public let nullable: Bool
    /// What the column means, for `docs/canonical-model.md` and `--help`.
    public let summary: String

    init(_ name: String, _ type: ColumnType, nullable: Bool = true, _ summary: String) {
        self.name = name
        self.type = type
        self.nullable = nullable
        self.summary = summary
    }
}

/// The canonical billing entities every legacy schema is mapped onto.
public enum Entity: String, Sendable, Hashable, CaseIterable, Codable, CustomStringConvertible {
    case customer
    case plan
    case subscription
    case invoice
    case invoiceLine = "invoice_line"
    case payment
    case refund
    case creditNote = "credit_note"
    case balanceTransaction = "balance_transaction"

    public var description: String { rawValue }

    /// The key column (text; the legacy key as the mapping query renders it).
    public var keyColumn: String { rawValue + "_id" }

    /// The read-model table holding this entity's canonical rows.
    public var tableName: String {
        switch self {
        case .customer: "customers"
        case .plan: "plans"
        case .subscription: "subscriptions"
        case .invoice: "invoices"
        case .invoiceLine: "invoice_lines"
        case .payment: "payments"
        case .refund: "refunds"
        case .creditNote: "credit_notes"
        case .balanceTransaction: "balance_transactions"
        }
    }

    /// The event stream of one instance: `invoice-1042`.
    public func streamID(key: String) -> String { rawValue + "-" + key }

    /// Canonical columns in order, the key first.
    public var columns: [ColumnDefinition] { CanonicalSchema.columns[self]! }

    /// The column definition by name.
    public func column(_ name: String) -> ColumnDefinition? { columns.first { $0.name == name } }
}

/// Status vocabularies (ARCHITECTURE §3).
public enum Vocabulary {
    public static let subscriptionStatus = ["trialing", "active", "past_due", "canceled", "unpaid", "incomplete", "paused"]
    public static let invoiceStatus = ["draft", "open", "paid", "void", "uncollectible"]
    public static let paymentStatus = ["pending", "succeeded", "failed", "canceled"]
    public static let refundStatus = ["pending", "succeeded", "failed", "canceled"]
    public static let creditNoteStatus = ["issued", "void"]
    public static let planInterval = ["day", "week", "month", "year"]
    public static let lineKind = ["subscription", "usage", "one_off", "proration", "discount", "tax"]
}

enum CanonicalSchema {
    static let columns: [Entity: [ColumnDefinition]] = [
        .customer: [
            .init("customer_id", .text, nullable: false, "legacy key"),
            .init("email", .text, "billing email"),
            .init("name", .text, "display name"),
            .init("currency", .currency, "the customer's billing currency (NULL when the legacy row has none and no default applies)"),
            .init("created_at", .timestamp, nullable: false, "when the customer was created"),
            .init("updated_at", .timestamp, "last change the legacy system recorded"),
            .init("archived_at", .timestamp, "soft delete: when the customer was archived"),
        ],
        .plan: [
            .init("plan_id", .text, nullable: false, "legacy key"),
            .init("code", .text, "stable plan code"),
            .init("name", .text, "display name"),
            .init("amount", .amount, nullable: false, "price per interval, minor units"),
            .init("currency", .currency, nullable: false, "price currency"),
            .init("interval", .status(Vocabulary.planInterval), nullable: false, "billing interval"),
            .init("trial_days", .integer, "trial length in days"),
            .init("archived", .boolean, nullable: false, "no longer sold"),
            .init("created_at", .timestamp, nullable: false, "when the plan was created"),
            .init("updated_at", .timestamp, "last change"),
        ],
        .subscription: [
            .init("subscription_id", .text, nullable: false, "legacy key"),
            .init("customer_id", .text, nullable: false, "owner"),
            .init("plan_id", .text, nullable: false, "current plan"),
            .init("status", .status(Vocabulary.subscriptionStatus), nullable: false, "lifecycle status"),
            .init("quantity", .integer, nullable: false, "seats or units"),
            .init("started_at", .timestamp, nullable: false, "when it started"),
            .init("trial_ends_at", .timestamp, "end of the trial, if any"),
            .init("current_period_start", .timestamp, "current billing period"),
            .init("current_period_end", .timestamp, "current billing period"),
            .init("cancel_at_period_end", .boolean, nullable: false, "cancellation scheduled"),
            .init("canceled_at", .timestamp, "when cancellation was requested or took effect"),
            .init("ended_at", .timestamp, "when it ended"),
            .init("previous_subscription_id", .text, "the subscription this one replaced (plan change)"),
            .init("created_at", .timestamp, nullable: false, "row creation"),
            .init("updated_at", .timestamp, "last change"),
        ],
        .invoice: [
            .init("invoice_id", .text, nullable: false, "legacy key"),
            .init("customer_id", .text, nullable: false, "billed customer"),
            .init("subscription_id", .text, "originating subscription"),
            .init("number", .text, "invoice number, assigned at finalization"),
            .init("status", .status(Vocabulary.invoiceStatus), nullable: false, "lifecycle status"),
            .init("currency", .currency, nullable: false, "invoice currency"),
            .init("subtotal", .amount, nullable: false, "sum of charge lines"),
            .init("discount", .amount, nullable: false, "discount, positive"),
            .init("tax", .amount, nullable: false, "tax"),
            .init("total", .amount, nullable: false, "subtotal - discount + tax"),
            .init("amount_paid", .amount, nullable: false, "paid so far"),
            .init("amount_due", .amount, nullable: false, "still owed"),
            .init("period_start", .timestamp, "service period"),
            .init("period_end", .timestamp, "service period"),
            .init("issued_on", .date, "issue date"),
            .init("due_on", .date, "due date"),
            .init("finalized_at", .timestamp, "when it was finalized"),
            .init("paid_at", .timestamp, "when it was paid in full"),
            .init("voided_at", .timestamp, "when it was voided"),
            .init(
                "marked_uncollectible_at", .timestamp,
                "when it was written off as uncollectible (without it, that step is dated at finalization, inferred)"),
            .init("created_at", .timestamp, nullable: false, "draft creation"),
            .init("updated_at", .timestamp, "last change"),
        ],
        .invoiceLine: [
            .init("invoice_line_id", .text, nullable: false, "legacy key"),
            .init("invoice_id", .text, nullable: false, "invoice"),
            .init("kind", .status(Vocabulary.lineKind), nullable: false, "line kind"),
            .init("description", .text, "label"),
            .init("quantity", .integer, nullable: false, "quantity"),
            .init("unit_amount", .decimal, "unit price in major units, exact (may have more decimals than the currency)"),
            .init("amount", .amount, nullable: false, "line amount, minor units"),
            .init("currency", .currency, nullable: false, "the invoice's currency"),
            .init("period_start", .timestamp, "service period"),
            .init("period_end", .timestamp, "service period"),
            .init("proration", .boolean, nullable: false, "proration line"),
            .init("created_at", .timestamp, nullable: false, "when the line was added"),
        ],
        .payment: [
            .init("payment_id", .text, nullable: false, "legacy key"),
            .init("customer_id", .text, nullable: false, "payer"),
            .init("invoice_id", .text, "invoice paid, if any"),
            .init("status", .status(Vocabulary.paymentStatus), nullable: false, "status"),
            .init("amount", .amount, nullable: false, "amount, minor units"),
            .init("currency", .currency, nullable: false, "currency"),
            .init("provider_payment_id", .text, "payment provider's id (not unique in legacy data)"),
            .init("failure_code", .text, "why it failed"),
            .init(
                "succeeded_at", .timestamp,
                "when it succeeded (without it, success is dated at created_at, inferred: never at updated_at, which later edits move)"),
            .init("failed_at", .timestamp, "when it failed (without it: created_at, inferred)"),
            .init("canceled_at", .timestamp, "when it was canceled (without it: created_at, inferred)"),
            .init("created_at", .timestamp, nullable: false, "attempt time"),
            .init("updated_at", .timestamp, "last change the legacy system recorded"),
        ],
        .refund: [
            .init("refund_id", .text, nullable: false, "legacy key"),
            .init("payment_id", .text, nullable: false, "refunded payment"),
            .init("customer_id", .text, nullable: false, "customer"),
            .init("amount", .amount, nullable: false, "amount, minor units"),
            .init("currency", .currency, nullable: false, "currency"),
            .init("status", .status(Vocabulary.refundStatus), nullable: false, "status"),
            .init("reason", .text, "reason"),
            .init("created_at", .timestamp, nullable: false, "when issued"),
        ],
        .creditNote: [
            .init("credit_note_id", .text, nullable: false, "legacy key"),
            .init("customer_id", .text, nullable: false, "customer"),
            .init("invoice_id", .text, "invoice credited"),
            .init("number", .text, "credit note number"),
            .init("status", .status(Vocabulary.creditNoteStatus), nullable: false, "status"),
            .init("total", .amount, nullable: false, "credited amount"),
            .init("balance_remaining", .amount, nullable: false, "not yet applied"),
            .init("currency", .currency, nullable: false, "currency"),
            .init("reason", .text, "reason"),
            .init("created_at", .timestamp, nullable: false, "when issued"),
            .init("voided_at", .timestamp, "when voided"),
        ],
        .balanceTransaction: [
            .init("balance_transaction_id", .text, nullable: false, "legacy key"),
            .init("customer_id", .text, nullable: false, "customer"),
            .init("amount", .amount, nullable: false, "negative credits the customer, positive debits"),
            .init("currency", .currency, nullable: false, "currency"),
            .init("type", .text, nullable: false, "credit_note, adjustment, applied_to_invoice, ..."),
            .init("invoice_id", .text, "related invoice"),
            .init("credit_note_id", .text, "related credit note"),
            .init("description", .text, "label"),
            .init("created_at", .timestamp, nullable: false, "when recorded"),
        ],
    ]
}

/// One canonical row: the values of an entity's canonical columns, plus any extra legacy
/// columns carried verbatim as `attributes`.
public struct CanonicalRow: Sendable, Hashable {
    public let entity: Entity
    /// Every canonical column, by name (`.null` where the legacy row has none).
    public var values: [String: CanonicalValue]
    /// Extra legacy columns, by name, as text (`nil` for NULL).
    public var attributes: [String: String?]

    public init(entity: Entity, values: [String: CanonicalValue], attributes: [String: String?] = [:]) {
        self.entity = entity
        var complete = values
        for column in entity.columns where complete[column.name] == nil { complete[column.name] = .null }
        self.values = complete
        self.attributes = attributes
    }

    /// The key column's value.
    public var key: String { values[entity.keyColumn]?.description ?? "" }

    public subscript(_ column: String) -> CanonicalValue { values[column] ?? .null }

    /// The event stream this row's history lives in.
    public var streamID: String { entity.streamID(key: key) }
}
