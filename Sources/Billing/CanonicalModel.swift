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
    /// The value of the column when a mapping query leaves it out or returns NULL for it: the
    /// documented meaning of "absent" (an invoice without a rounding difference has 0), not a
    /// guess, so it is not recorded as inferred. Columns added after the first release have
    /// one when they are required, so older mappings keep working.
    public let defaultValue: CanonicalValue?
    /// For an amount in another currency than the row's `currency` (a payment's
    /// `processed_amount` is in `processed_currency`): the column naming that currency.
    public let currencyColumn: String?
    /// A decimal price in the major unit that, under `amounts: minor`, the mapping query gives
    /// in minor units like the amounts (a line's `unit_amount`); other decimals (a quantity)
    /// are read as they are.
    public let isUnitPrice: Bool
    /// Left out by most mappings, which is no finding: the columns that widen the model for
    /// some billing systems (tenants, phases, gateway conversion), and every column with a
    /// default. `mapping check` warns only about the others a query leaves out.
    public let isOptional: Bool

    init(
        _ name: String, _ type: ColumnType, nullable: Bool = true, default defaultValue: CanonicalValue? = nil,
        currency currencyColumn: String? = nil, unitPrice: Bool = false, optional: Bool = false, _ summary: String
    ) {
        self.isUnitPrice = unitPrice
        self.isOptional = optional || defaultValue != nil
        self.name = name
        self.type = type
        self.nullable = nullable
        self.summary = summary
        self.defaultValue = defaultValue
        self.currencyColumn = currencyColumn
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
    case billingEntity = "billing_entity"
    case paymentAllocation = "payment_allocation"
    case wallet
    case walletTransaction = "wallet_transaction"
    case creditApplication = "credit_application"
    case chargeback
    case paymentTransaction = "payment_transaction"

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
        case .billingEntity: "billing_entities"
        case .paymentAllocation: "payment_allocations"
        case .wallet: "wallets"
        case .walletTransaction: "wallet_transactions"
        case .creditApplication: "credit_applications"
        case .chargeback: "chargebacks"
        case .paymentTransaction: "payment_transactions"
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
    public static let subscriptionStatus = [
        "trialing", "active", "past_due", "canceled", "unpaid", "incomplete", "paused", "pending",
    ]
    public static let invoiceStatus = ["draft", "open", "paid", "void", "uncollectible"]
    public static let invoiceKind = ["standard", "subscription", "add_on", "one_off", "usage", "progressive", "credit"]
    public static let subscriptionCategory = ["base", "add_on", "standalone"]
    public static let planPhase = ["trial", "discount", "fixed_term", "evergreen"]
    public static let walletStatus = ["active", "terminated"]
    public static let walletDirection = ["inbound", "outbound"]
    public static let walletTransactionStatus = ["pending", "settled", "failed", "voided"]
    public static let creditNotePart = ["credit", "offset"]
    public static let chargebackStatus = ["pending", "lost", "won"]
    public static let paymentTransactionKind = [
        "authorize", "capture", "purchase", "void", "refund", "credit", "chargeback", "chargeback_reversal",
    ]
    public static let paymentTransactionStatus = ["pending", "succeeded", "failed", "unknown"]
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
            .init("billing_entity_id", .text, optional: true, "the organization or billing entity (tenant) the row belongs to; reports filter by it"),
            .init("time_zone", .text, optional: true, "IANA time zone the customer is billed in (Europe/Paris); monthly reports can bucket by it"),
            .init("parent_customer_id", .text, optional: true, "the parent account of a child account"),
            .init(
                "payment_delegated", .boolean, nullable: false, default: .boolean(false),
                "the parent account pays this account's invoices"),
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
            .init("billing_entity_id", .text, optional: true, "the organization or billing entity (tenant) the row belongs to; reports filter by it"),
            .init(
                "interval_count", .integer, nullable: false, default: .integer(1),
                "intervals per billing period (a quarterly plan is month × 3)"),
            .init("product", .text, optional: true, "the product the plan sells"),
            .init("price_list", .text, optional: true, "the price list the plan belongs to"),
            .init("phase", .status(Vocabulary.planPhase), optional: true, "the phase this plan row prices (one row per phase of a phased plan)"),
            .init("phase_duration_days", .integer, optional: true, "how long the phase lasts, in days (NULL: until changed)"),
            .init("parent_plan_id", .text, optional: true, "the plan this one overrides (a customer-specific price)"),
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
            .init("billing_entity_id", .text, optional: true, "the organization or billing entity (tenant) the row belongs to; reports filter by it"),
            .init("phase", .text, optional: true, "the plan phase it is in (trial, evergreen, ...)"),
            .init("bundle_id", .text, optional: true, "the bundle it belongs to: add-ons share their base subscription's bundle"),
            .init("category", .status(Vocabulary.subscriptionCategory), optional: true, "base, add_on or standalone"),
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
            .init("billing_entity_id", .text, optional: true, "the organization or billing entity (tenant) the row belongs to; reports filter by it"),
            .init(
                "kind", .status(Vocabulary.invoiceKind), nullable: false, default: .text("standard"),
                "what the invoice bills; a `credit` invoice (a prepaid top-up) is not revenue"),
            .init(
                "rounding", .amount, nullable: false, default: .amount(0),
                "the legacy system's rounding difference: total = subtotal - discount + tax + rounding"),
            .init(
                "credit_applied", .amount, nullable: false, default: .amount(0),
                "prepaid credit and credit notes applied after tax: owed = total - amount_paid - credit_applied"),
        ],
        .invoiceLine: [
            .init("invoice_line_id", .text, nullable: false, "legacy key"),
            .init("invoice_id", .text, nullable: false, "invoice"),
            .init("kind", .status(Vocabulary.lineKind), nullable: false, "line kind"),
            .init("description", .text, "label"),
            .init("quantity", .decimal, nullable: false, "quantity, exact (metered usage: 37.5)"),
            .init("unit_amount", .decimal, unitPrice: true, "unit price in major units, exact (may have more decimals than the currency)"),
            .init("amount", .amount, nullable: false, "line amount, minor units"),
            .init("currency", .currency, nullable: false, "the invoice's currency"),
            .init("period_start", .timestamp, "service period"),
            .init("period_end", .timestamp, "service period"),
            .init("proration", .boolean, nullable: false, "proration line"),
            .init("created_at", .timestamp, nullable: false, "when the line was added"),
            .init("billing_entity_id", .text, optional: true, "the organization or billing entity (tenant) the row belongs to; reports filter by it"),
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
            .init("billing_entity_id", .text, optional: true, "the organization or billing entity (tenant) the row belongs to; reports filter by it"),
            .init(
                "processed_amount", .amount, currency: "processed_currency", optional: true,
                "what the gateway processed, in minor units of processed_currency (currency conversion)"),
            .init("processed_currency", .currency, optional: true, "the currency the gateway processed"),
            .init("attempts", .integer, optional: true, "attempts made so far"),
            .init("next_retry_at", .timestamp, optional: true, "when the next attempt is scheduled"),
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
            .init("billing_entity_id", .text, optional: true, "the organization or billing entity (tenant) the row belongs to; reports filter by it"),
            .init("invoice_id", .text, optional: true, "the invoice whose payment was refunded"),
            .init("credit_note_id", .text, optional: true, "the credit note the refund pays out"),
            .init("succeeded_at", .timestamp, optional: true, "when it succeeded (without it: created_at, inferred)"),
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
            .init("billing_entity_id", .text, optional: true, "the organization or billing entity (tenant) the row belongs to; reports filter by it"),
            .init(
                "credit_amount", .amount, optional: true, "the part credited to the customer (NULL: the whole total); balance_remaining is what is left of it"),
            .init("refund_amount", .amount, nullable: false, default: .amount(0), "the part refunded in cash"),
            .init(
                "offset_amount", .amount, nullable: false, default: .amount(0),
                "the part that reduced what the invoice owed (credit_amount + refund_amount + offset_amount = total)"),
            .init(
                "applied_at", .timestamp, optional: true,
                "when its credit was last used (dates CreditNoteApplied; without it: created_at, inferred)"),
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
            .init("billing_entity_id", .text, optional: true, "the organization or billing entity (tenant) the row belongs to; reports filter by it"),
        ],
        .billingEntity: [
            .init("billing_entity_id", .text, nullable: false, "legacy key"),
            .init("name", .text, "display name"),
            .init("time_zone", .text, optional: true, "IANA time zone of the entity (monthly reports can bucket by it)"),
            .init("currency", .currency, "default currency"),
            .init("created_at", .timestamp, nullable: false, "when it was created"),
            .init("updated_at", .timestamp, "last change"),
        ],
        .paymentAllocation: [
            .init("payment_allocation_id", .text, nullable: false, "legacy key"),
            .init("payment_id", .text, nullable: false, "the payment"),
            .init("invoice_id", .text, nullable: false, "an invoice it settles"),
            .init("customer_id", .text, "the invoice's customer"),
            .init("amount", .amount, nullable: false, "the part of the payment allocated to the invoice"),
            .init("currency", .currency, nullable: false, "currency"),
            .init("created_at", .timestamp, nullable: false, "when allocated"),
            .init("billing_entity_id", .text, optional: true, "the organization or billing entity (tenant) the row belongs to; reports filter by it"),
        ],
        .wallet: [
            .init("wallet_id", .text, nullable: false, "legacy key"),
            .init("customer_id", .text, nullable: false, "owner"),
            .init("name", .text, "display name"),
            .init("status", .status(Vocabulary.walletStatus), nullable: false, "active or terminated"),
            .init("balance", .amount, nullable: false, "prepaid credit left: settled inbound minus settled outbound transactions"),
            .init("currency", .currency, nullable: false, "currency"),
            .init("created_at", .timestamp, nullable: false, "when it was opened"),
            .init("terminated_at", .timestamp, "when it was terminated"),
            .init("updated_at", .timestamp, "last change"),
            .init("billing_entity_id", .text, optional: true, "the organization or billing entity (tenant) the row belongs to; reports filter by it"),
        ],
        .walletTransaction: [
            .init("wallet_transaction_id", .text, nullable: false, "legacy key"),
            .init("wallet_id", .text, nullable: false, "the wallet"),
            .init("customer_id", .text, "the wallet's customer"),
            .init("direction", .status(Vocabulary.walletDirection), nullable: false, "inbound adds credit, outbound uses it"),
            .init("kind", .text, "purchased, granted, consumed, voided, expired, ..."),
            .init("status", .status(Vocabulary.walletTransactionStatus), nullable: false, "only settled transactions move the balance"),
            .init("amount", .amount, nullable: false, "amount, positive"),
            .init("currency", .currency, nullable: false, "currency"),
            .init("invoice_id", .text, "the top-up invoice of a purchase, or the invoice an outbound transaction paid"),
            .init("settled_at", .timestamp, "when it settled"),
            .init("failed_at", .timestamp, "when it failed"),
            .init("created_at", .timestamp, nullable: false, "when it was recorded"),
            .init("billing_entity_id", .text, optional: true, "the organization or billing entity (tenant) the row belongs to; reports filter by it"),
        ],
        .creditApplication: [
            .init("credit_application_id", .text, nullable: false, "legacy key"),
            .init("customer_id", .text, "customer"),
            .init("invoice_id", .text, nullable: false, "the invoice the credit was applied to"),
            .init("credit_note_id", .text, "the credit note whose credit was used"),
            .init("wallet_transaction_id", .text, "the wallet transaction whose credit was used"),
            .init(
                "part", .status(Vocabulary.creditNotePart), nullable: false, default: .text("credit"),
                "which part of a credit note it uses: its credit (what balance_remaining holds until used) or its offset (taken off what an invoice owed)"),
            .init("amount", .amount, nullable: false, "amount applied"),
            .init("currency", .currency, nullable: false, "currency"),
            .init("created_at", .timestamp, nullable: false, "when it was applied"),
            .init("billing_entity_id", .text, optional: true, "the organization or billing entity (tenant) the row belongs to; reports filter by it"),
        ],
        .chargeback: [
            .init("chargeback_id", .text, nullable: false, "legacy key"),
            .init("payment_id", .text, nullable: false, "the disputed payment"),
            .init("customer_id", .text, "customer"),
            .init("invoice_id", .text, "the invoice the payment paid"),
            .init("amount", .amount, nullable: false, "amount disputed"),
            .init("currency", .currency, nullable: false, "currency"),
            .init(
                "status", .status(Vocabulary.chargebackStatus), nullable: false,
                "pending (disputed), lost (funds taken back), won (reversed in the merchant's favour)"),
            .init("reason", .text, "reason"),
            .init("created_at", .timestamp, nullable: false, "when it was opened"),
            .init("resolved_at", .timestamp, "when it was lost or won"),
            .init("billing_entity_id", .text, optional: true, "the organization or billing entity (tenant) the row belongs to; reports filter by it"),
        ],
        .paymentTransaction: [
            .init("payment_transaction_id", .text, nullable: false, "legacy key"),
            .init("payment_id", .text, nullable: false, "the payment it belongs to"),
            .init("kind", .status(Vocabulary.paymentTransactionKind), nullable: false, "what the gateway was asked to do"),
            .init("status", .status(Vocabulary.paymentTransactionStatus), nullable: false, "outcome"),
            .init("amount", .amount, nullable: false, "amount"),
            .init("currency", .currency, nullable: false, "currency"),
            .init(
                "processed_amount", .amount, currency: "processed_currency", optional: true,
                "what the gateway processed, in minor units of processed_currency"),
            .init("processed_currency", .currency, optional: true, "the currency the gateway processed"),
            .init("attempt", .integer, "attempt number"),
            .init("gateway_error", .text, "the gateway's error"),
            .init("created_at", .timestamp, nullable: false, "when it was sent"),
            .init("effective_at", .timestamp, "when it took effect"),
            .init("billing_entity_id", .text, optional: true, "the organization or billing entity (tenant) the row belongs to; reports filter by it"),
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
        // A column left out holds its default (an invoice's rounding is 0), as a mapping query
        // that leaves it out reads.
        for column in entity.columns where complete[column.name] == nil { complete[column.name] = column.defaultValue ?? .null }
        self.values = complete
        self.attributes = attributes
    }

    /// The key column's value.
    public var key: String { values[entity.keyColumn]?.description ?? "" }

    public subscript(_ column: String) -> CanonicalValue { values[column] ?? .null }

    /// The event stream this row's history lives in.
    public var streamID: String { entity.streamID(key: key) }
}
