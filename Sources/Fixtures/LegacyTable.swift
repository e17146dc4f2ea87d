import Postgres

/// The tables of the legacy billing schema (`fixtures/reference/schema.sql`), parents first.
public enum LegacyTable: String, CaseIterable, Sendable, Hashable, CustomStringConvertible {
    case plans
    case customers
    case subscriptions
    case subscriptionHistory = "subscription_history"
    case invoices
    case invoiceLineItems = "invoice_line_items"
    case payments
    case refunds
    case creditNotes = "credit_notes"
    case customerBalanceTransactions = "customer_balance_transactions"

    /// The PostgreSQL schema every legacy table lives in.
    public static let schema = "legacy"

    /// The table's name in SQL, e.g. `invoice_line_items`.
    public var name: String { rawValue }

    /// `legacy.<name>`.
    public var qualifiedName: String { Self.schema + "." + rawValue }

    public var description: String { qualifiedName }

    /// Every column, in `schema.sql` order (the order the seeds and the generator write).
    public var columns: [String] {
        switch self {
        case .plans:
            ["id", "code", "name", "price", "interval", "currency", "trial_days", "archived", "created_at", "updated_at"]
        case .customers:
            ["id", "email", "name", "currency", "timezone", "balance", "credit_balance", "deleted_at", "created_at",
             "updated_at"]
        case .subscriptions:
            ["id", "customer_id", "plan_id", "status", "quantity", "started_at", "trial_ends_at",
             "current_period_start", "current_period_end", "cancel_at_period_end", "canceled_at", "ended_at",
             "previous_subscription_id", "created_at", "updated_at"]
        case .subscriptionHistory:
            ["id", "subscription_id", "plan_id", "status", "quantity", "cancel_at_period_end", "current_period_start",
             "current_period_end", "canceled_at", "ended_at", "changed_at"]
        case .invoices:
            ["id", "customer_id", "subscription_id", "number", "status", "currency", "subtotal", "discount", "tax",
             "total", "amount_paid", "amount_due", "tax_rate", "period_start", "period_end", "issued_on", "due_on",
             "finalized_at", "paid_at", "voided_at", "created_at", "updated_at"]
        case .invoiceLineItems:
            ["id", "invoice_id", "kind", "description", "quantity", "unit_amount", "amount", "period_start",
             "period_end", "proration"]
        case .payments:
            ["id", "customer_id", "invoice_id", "status", "method", "provider_payment_id", "failure_code", "amount",
             "currency", "created_at", "updated_at"]
        case .refunds:
            ["id", "payment_id", "amount", "reason", "status", "created_at"]
        case .creditNotes:
            ["id", "invoice_id", "customer_id", "number", "total", "balance_remaining", "reason", "status",
             "created_at", "voided_at"]
        case .customerBalanceTransactions:
            ["id", "customer_id", "amount", "currency", "type", "invoice_id", "credit_note_id", "description",
             "created_at"]
        }
    }

    /// `<schema>.<name>`: the table as it is named in another schema of the same shape (the
    /// generator's staging schema).
    func qualifiedName(in schema: String) -> String { quoteIdentifier(schema) + "." + quoteIdentifier(rawValue) }

    /// `COPY <schema>.<name> (<columns>) FROM STDIN`.
    func copyStatement(in schema: String = Self.schema) -> String {
        "COPY \(qualifiedName(in: schema)) (\(columns.map(quoteIdentifier).joined(separator: ", "))) FROM STDIN"
    }
}

/// How many rows each legacy table holds.
public struct LegacyRowCounts: Sendable, Hashable {
    private var counts: [Int]

    /// All tables at zero.
    public init() { counts = Array(repeating: 0, count: LegacyTable.allCases.count) }

    /// The rows in `table`.
    public subscript(table: LegacyTable) -> Int {
        get { counts[LegacyTable.allCases.firstIndex(of: table)!] }
        set { counts[LegacyTable.allCases.firstIndex(of: table)!] = newValue }
    }

    /// Rows over all tables.
    public var total: Int { counts.reduce(0, +) }

    /// Every table with its count, parents first (the order of ``LegacyTable/allCases``).
    public var tables: [(table: LegacyTable, rows: Int)] { zip(LegacyTable.allCases, counts).map { ($0, $1) } }

    /// Counts the rows of every legacy table (`count(*)`, one statement).
    public static func count(in session: Session) throws -> LegacyRowCounts {
        let sql = "SELECT " + LegacyTable.allCases.map { "(SELECT count(*) FROM \($0.qualifiedName))" }.joined(separator: ", ")
        let row = try session.query(sql).rows[0]
        var result = LegacyRowCounts()
        for (i, table) in LegacyTable.allCases.enumerated() { result[table] = Int(try row.decode(at: i, as: Int64.self)) }
        return result
    }
}
