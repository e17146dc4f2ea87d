import Billing
import TextFormats
import Postgres

/// Rules that need more than one row: references, totals against lines, duplicates. They run
/// as SQL over the mapping queries inside the backfill's snapshot, so they see exactly the data
/// the backfill migrates, and each names the keys it rejects and why.
package struct CrossRowCheck: Sendable {
    /// The entity whose rows the check rejects.
    package let entity: Entity
    /// Stable reason code, as in the quarantine table.
    package let reason: String
    /// Entities whose queries the check reads.
    let needs: [Entity]
    /// SQL returning `(key text, detail text)`; `{invoice}` etc. stand for the mapping queries.
    let sql: String

    /// The check's SQL with each `{entity}` replaced by its mapping query as a subquery.
    package func render(_ queries: [Entity: String]) -> String? {
        var text = sql
        for entity in needs {
            guard let query = queries[entity] else { return nil }
            text = text.replacing("{\(entity.rawValue)}", with: "(\n" + query + "\n)")
        }
        return text
    }

    static func reference(_ child: Entity, _ column: String, _ parent: Entity) -> CrossRowCheck {
        CrossRowCheck(
            entity: child, reason: "reference_missing", needs: [child, parent],
            sql: """
                SELECT c.\(child.keyColumn)::text, '\(column) ' || c.\(column)::text || ' names no \(parent.rawValue)'
                FROM {\(child.rawValue)} c
                WHERE c.\(column) IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM {\(parent.rawValue)} p WHERE p.\(parent.keyColumn)::text = c.\(column)::text)
                """)
    }

    /// Every check Ledgerlift runs, in the order their reasons take precedence.
    package static let all: [CrossRowCheck] = [
        reference(.subscription, "customer_id", .customer),
        reference(.subscription, "plan_id", .plan),
        reference(.invoice, "customer_id", .customer),
        reference(.invoiceLine, "invoice_id", .invoice),
        reference(.payment, "customer_id", .customer),
        reference(.payment, "invoice_id", .invoice),
        reference(.refund, "payment_id", .payment),
        reference(.creditNote, "customer_id", .customer),
        reference(.creditNote, "invoice_id", .invoice),
        reference(.balanceTransaction, "customer_id", .customer),
        reference(.balanceTransaction, "invoice_id", .invoice),
        reference(.balanceTransaction, "credit_note_id", .creditNote),
        CrossRowCheck(
            entity: .invoice, reason: "invoice_total_mismatch", needs: [.invoice, .invoiceLine],
            sql: """
                SELECT i.invoice_id::text,
                       'total ' || i.total::text || ' but subtotal - discount + tax = '
                       || (i.subtotal - i.discount + i.tax)::text || ' and lines sum to ' || coalesce(l.s, 0)::text
                FROM {invoice} i
                LEFT JOIN (SELECT invoice_id::text AS invoice_id, sum(amount) AS s FROM {invoice_line} x GROUP BY 1) l
                       ON l.invoice_id = i.invoice_id::text
                WHERE i.total <> i.subtotal - i.discount + i.tax OR i.total <> coalesce(l.s, 0)
                """),
        CrossRowCheck(
            entity: .invoice, reason: "paid_before_finalized", needs: [.invoice],
            sql: """
                SELECT invoice_id::text, 'paid_at ' || paid_at::text || ' is before finalized_at ' || finalized_at::text
                FROM {invoice} x WHERE paid_at < finalized_at
                """),
        CrossRowCheck(
            entity: .invoice, reason: "finalized_before_created", needs: [.invoice],
            sql: """
                SELECT invoice_id::text, 'finalized_at ' || finalized_at::text || ' is before created_at ' || created_at::text
                FROM {invoice} x WHERE finalized_at < created_at
                """),
        CrossRowCheck(
            entity: .invoice, reason: "currency_mismatch", needs: [.invoice, .customer],
            sql: """
                SELECT i.invoice_id::text, 'invoice in ' || i.currency || ' but customer ' || c.customer_id::text
                       || ' bills in ' || c.currency
                FROM {invoice} i JOIN {customer} c ON c.customer_id::text = i.customer_id::text
                WHERE c.currency IS NOT NULL AND i.currency IS NOT NULL AND c.currency <> i.currency
                """),
        CrossRowCheck(
            entity: .invoice, reason: "duplicate_invoice_number", needs: [.invoice],
            sql: """
                SELECT invoice_id::text, 'number ' || number || ' is already used by invoice ' || first_id
                FROM (SELECT invoice_id, number, first_value(invoice_id::text) OVER w AS first_id, row_number() OVER w AS n
                      FROM {invoice} x WHERE number IS NOT NULL
                      WINDOW w AS (PARTITION BY number ORDER BY finalized_at, invoice_id::text)) d
                WHERE n > 1
                """),
        CrossRowCheck(
            entity: .invoice, reason: "paid_without_payment", needs: [.invoice, .payment, .balanceTransaction],
            sql: """
                SELECT i.invoice_id::text, 'status paid, total ' || i.total::text
                       || ', but no succeeded payment or balance application names it'
                FROM {invoice} i
                WHERE i.status = 'paid' AND i.total > 0
                  AND NOT EXISTS (SELECT 1 FROM {payment} p
                                  WHERE p.invoice_id::text = i.invoice_id::text AND p.status = 'succeeded')
                  AND NOT EXISTS (SELECT 1 FROM {balance_transaction} b WHERE b.invoice_id::text = i.invoice_id::text)
                """),
        CrossRowCheck(
            entity: .invoice, reason: "payment_currency_mismatch", needs: [.invoice, .payment],
            sql: """
                SELECT DISTINCT i.invoice_id::text, 'payment ' || p.payment_id::text || ' in ' || p.currency
                       || ' for an invoice in ' || i.currency
                FROM {invoice} i JOIN {payment} p ON p.invoice_id::text = i.invoice_id::text
                WHERE p.currency IS NOT NULL AND i.currency IS NOT NULL AND p.currency <> i.currency
                """),
        CrossRowCheck(
            entity: .subscription, reason: "subscription_chain_foreign_customer", needs: [.subscription],
            sql: """
                SELECT s.subscription_id::text, 'previous_subscription_id ' || s.previous_subscription_id::text
                       || ' belongs to customer ' || p.customer_id::text || ', not ' || s.customer_id::text
                FROM {subscription} s JOIN {subscription} p ON p.subscription_id::text = s.previous_subscription_id::text
                WHERE p.customer_id::text <> s.customer_id::text
                """),
        CrossRowCheck(
            entity: .payment, reason: "duplicate_provider_payment_id", needs: [.payment],
            sql: """
                SELECT payment_id::text, 'provider_payment_id ' || provider_payment_id || ' is already used by payment ' || first_id
                FROM (SELECT payment_id, provider_payment_id,
                             first_value(payment_id::text) OVER w AS first_id, row_number() OVER w AS n
                      FROM {payment} x WHERE provider_payment_id IS NOT NULL
                      WINDOW w AS (PARTITION BY provider_payment_id ORDER BY created_at, payment_id::text)) d
                WHERE n > 1
                """),
        CrossRowCheck(
            entity: .refund, reason: "refund_exceeds_payment", needs: [.refund, .payment],
            sql: """
                SELECT r.refund_id::text, 'refunds of payment ' || p.payment_id::text || ' total ' || t.s::text
                       || ', more than its amount ' || p.amount::text
                FROM {refund} r
                JOIN (SELECT payment_id::text AS payment_id, sum(amount) AS s FROM {refund} x
                      WHERE status IN ('succeeded', 'pending') GROUP BY 1) t ON t.payment_id = r.payment_id::text
                JOIN {payment} p ON p.payment_id::text = r.payment_id::text
                WHERE t.s > p.amount
                """),
        CrossRowCheck(
            entity: .refund, reason: "refund_of_unsucceeded_payment", needs: [.refund, .payment],
            sql: """
                SELECT r.refund_id::text, 'payment ' || p.payment_id::text || ' is ' || p.status || ', not succeeded'
                FROM {refund} r JOIN {payment} p ON p.payment_id::text = r.payment_id::text
                WHERE p.status <> 'succeeded'
                """),
        CrossRowCheck(
            entity: .creditNote, reason: "credit_note_balance_exceeds_total", needs: [.creditNote],
            sql: """
                SELECT credit_note_id::text, 'balance_remaining ' || balance_remaining::text || ' exceeds total ' || total::text
                FROM {credit_note} x WHERE balance_remaining > total
                """),
        CrossRowCheck(
            entity: .subscription, reason: "quantity_negative", needs: [.subscription],
            sql: "SELECT subscription_id::text, 'quantity ' || quantity::text FROM {subscription} x WHERE quantity < 0"),
    ]

    /// Which parent entities a child's rows follow into quarantine, by reference column.
    package static let parents: [Entity: [(column: String, parent: Entity)]] = [
        .subscription: [("customer_id", .customer)],
        .invoice: [("customer_id", .customer)],
        .invoiceLine: [("invoice_id", .invoice)],
        .payment: [("customer_id", .customer), ("invoice_id", .invoice)],
        .refund: [("payment_id", .payment), ("customer_id", .customer)],
        .creditNote: [("customer_id", .customer), ("invoice_id", .invoice)],
        .balanceTransaction: [("customer_id", .customer), ("invoice_id", .invoice), ("credit_note_id", .creditNote)],
    ]
}
