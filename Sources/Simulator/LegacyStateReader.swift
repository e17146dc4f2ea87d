import Billing
import Postgres

/// Reads the legacy tables (the reference schema, `fixtures/reference/schema.sql`) into the
/// canonical form of ``JournalFields``, for `ledgerlift simulate verify --legacy`.
///
/// Each entity has its own hand-written SQL, reading the columns exactly as
/// `fixtures/reference/mapping.yaml` does — invoice status codes to names, a row's currency
/// from its own column else its parent's or customer's, a customer's `archived_at` from
/// `deleted_at` — but independently of the mapping engine on purpose: a bug there must not
/// hide a lost write here.
///
/// Amounts are converted to integer minor units exactly with the resolved currency's exponent
/// (USD 2, JPY 0, KWD 3); an amount that is not a whole number of minor units is returned as
/// its decimal and currency (`12.345 USD (not a whole number of minor units)`), which no
/// journal value equals, so it is reported as altered and never rounded. Timestamps
/// (`timestamp without time zone`, written in UTC) are rendered as
/// ``PostgresTimestamp/iso8601``.
public struct LegacyStateReader: JournalStateReader {
    /// The legacy schema (`legacy`).
    public let schema: String

    public init(schema: String = "legacy") { self.schema = schema }

    /// One entity's query: the key, then one column per field of ``JournalFields/fields(_:)``
    /// in order (amounts as their numeric text), then the row's resolved currency, for rows
    /// whose key is in `$1`.
    func sql(_ entity: Entity) -> String {
        let s = quoteIdentifier(schema)
        func ts(_ column: String) -> String { "to_char(\(column), 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')" }
        func bool(_ column: String) -> String { "CASE WHEN \(column) THEN 'true' WHEN NOT \(column) THEN 'false' END" }
        switch entity {
        case .customer:
            // A customer without a currency of its own takes the single currency of its
            // invoices (mapping.yaml); with none or several it stays NULL.
            return """
                SELECT c.id::text, c.email, c.name, coalesce(c.currency, inv.currency)::text, \(ts("c.deleted_at")),
                       coalesce(c.currency, inv.currency)::text
                FROM \(s).customers c
                LEFT JOIN LATERAL (
                    SELECT min(i.currency) AS currency FROM \(s).invoices i
                    WHERE i.customer_id = c.id AND i.currency IS NOT NULL
                    HAVING count(DISTINCT i.currency) = 1
                ) inv ON true
                WHERE c.id = ANY($1::bigint[])
                """
        case .subscription:
            return """
                SELECT s.id::text, s.customer_id::text, s.plan_id::text, s.status, s.quantity::text,
                       \(bool("s.cancel_at_period_end")), \(ts("s.canceled_at")), \(ts("s.ended_at")), NULL::text
                FROM \(s).subscriptions s
                WHERE s.id = ANY($1::bigint[])
                """
        case .invoice:
            return """
                SELECT i.id::text, i.customer_id::text, i.subscription_id::text,
                       CASE i.status WHEN 0 THEN 'draft' WHEN 1 THEN 'open' WHEN 2 THEN 'paid' WHEN 3 THEN 'void'
                                     WHEN 4 THEN 'uncollectible' ELSE 'unknown:' || i.status END,
                       i.number, coalesce(i.currency, c.currency)::text,
                       i.subtotal::text, i.discount::text, i.tax::text, i.total::text, i.amount_paid::text,
                       i.amount_due::text, \(ts("i.finalized_at")), \(ts("i.paid_at")), \(ts("i.voided_at")),
                       coalesce(i.currency, c.currency)::text
                FROM \(s).invoices i
                LEFT JOIN \(s).customers c ON c.id = i.customer_id
                WHERE i.id = ANY($1::bigint[])
                """
        case .invoiceLine:
            // Lines have no currency of their own: the invoice's, else its customer's.
            return """
                SELECT l.id::text, l.invoice_id::text, l.kind, l.quantity::text, l.amount::text,
                       coalesce(i.currency, c.currency)::text, coalesce(i.currency, c.currency)::text
                FROM \(s).invoice_line_items l
                LEFT JOIN \(s).invoices i ON i.id = l.invoice_id
                LEFT JOIN \(s).customers c ON c.id = i.customer_id
                WHERE l.id = ANY($1::bigint[])
                """
        case .payment:
            return """
                SELECT p.id::text, p.customer_id::text, p.invoice_id::text, p.status, p.amount::text,
                       coalesce(p.currency, c.currency)::text, p.failure_code, coalesce(p.currency, c.currency)::text
                FROM \(s).payments p
                LEFT JOIN \(s).customers c ON c.id = p.customer_id
                WHERE p.id = ANY($1::bigint[])
                """
        case .refund:
            // A refund's currency is its payment's.
            return """
                SELECT r.id::text, r.payment_id::text, r.amount::text, r.status,
                       coalesce(p.currency, c.currency)::text, coalesce(p.currency, c.currency)::text
                FROM \(s).refunds r
                LEFT JOIN \(s).payments p ON p.id = r.payment_id
                LEFT JOIN \(s).customers c ON c.id = p.customer_id
                WHERE r.id = ANY($1::bigint[])
                """
        case .creditNote:
            // A credit note's currency is its invoice's (else the invoice's customer's).
            return """
                SELECT n.id::text, n.customer_id::text, n.invoice_id::text, n.status, n.total::text,
                       n.balance_remaining::text, coalesce(i.currency, c.currency)::text,
                       coalesce(i.currency, c.currency)::text
                FROM \(s).credit_notes n
                LEFT JOIN \(s).invoices i ON i.id = n.invoice_id
                LEFT JOIN \(s).customers c ON c.id = i.customer_id
                WHERE n.id = ANY($1::bigint[])
                """
        case .balanceTransaction:
            return """
                SELECT t.id::text, t.customer_id::text, t.type, t.amount::text, coalesce(t.currency, c.currency)::text,
                       t.invoice_id::text, t.credit_note_id::text, coalesce(t.currency, c.currency)::text
                FROM \(s).customer_balance_transactions t
                LEFT JOIN \(s).customers c ON c.id = t.customer_id
                WHERE t.id = ANY($1::bigint[])
                """
        default:
            preconditionFailure("verify does not check \(entity)")
        }
    }

    public func read(_ entity: Entity, keys: [String], in session: Session) throws -> [String: [String?]] {
        // Legacy keys are bigint: a journal key that is not one's canonical text names no
        // row (and would make the bigint[] cast fail), so it is simply not found.
        let ids = keys.filter { key in Int64(key).map { String($0) == key } ?? false }
        guard !ids.isEmpty else { return [:] }
        let fields = JournalFields.fields(entity)
        var rows = [String: [String?]]()
        for row in try session.query(sql(entity), [PostgresArray(ids)]).rows {
            guard let key = row.values[0] else { continue }
            let currency = row.values[fields.count + 1]
            rows[key] = fields.enumerated().map { index, field in
                let value = row.values[index + 1]
                return field.kind == .amount ? Self.minorUnits(value, currency: currency) : value
            }
        }
        return rows
    }

    /// A legacy amount (numeric text, major units) as integer minor units of `currency`, or,
    /// when it cannot be converted exactly, its decimal with the reason.
    static func minorUnits(_ text: String?, currency code: String?) -> String? {
        guard let text else { return nil }
        guard let code, let currency = try? Currency(code: code) else {
            return text + (code.map { " \($0) (not a currency)" } ?? " (no currency to convert it with)")
        }
        do {
            return String(try Money(parsing: text, currency: currency).minorUnits)
        } catch {
            switch error {
            case .inexact: return "\(text) \(code) (not a whole number of minor units)"
            case .outOfRange: return "\(text) \(code) (beyond 64-bit minor units)"
            default: return "\(text) \(code) (not a number)"
            }
        }
    }
}
