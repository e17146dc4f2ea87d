import Foundation
import Postgres
import Shadow
import TestSupport
import Testing

/// Changes that touch other entities' keys than the changed row's own, found through the
/// mapping's SQL sources: a row's value borrowed from another table must follow that table.
@Suite("shadow run: keys reached through SQL sources")
struct DerivedKeysTests {
    @Test func anInvoiceMovedToAnotherCustomerMovesItsPaymentsAndRefundsInTheReadModels() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            // A paid invoice with payments, no credit note, no balance transaction, moved to
            // another customer of the same currency: no cached balance changes (paid invoices
            // do not count in it), so the customer rows stay valid.
            let picked = try await scenario.withLegacy { session -> [Int64]? in
                try session.query(
                    """
                    SELECT i.id, other.id FROM legacy.invoices i
                    JOIN legacy.customers c ON c.id = i.customer_id
                    JOIN LATERAL (SELECT o.id FROM legacy.customers o
                                  WHERE o.id <> c.id AND o.currency = c.currency AND o.deleted_at IS NULL
                                  ORDER BY o.id LIMIT 1) other ON true
                    WHERE i.status = 2 AND i.currency IS NOT NULL
                      AND EXISTS (SELECT 1 FROM legacy.payments p JOIN legacy.refunds r ON r.payment_id = p.id WHERE p.invoice_id = i.id)
                      AND NOT EXISTS (SELECT 1 FROM legacy.credit_notes n WHERE n.invoice_id = i.id)
                      AND NOT EXISTS (SELECT 1 FROM legacy.customer_balance_transactions t WHERE t.invoice_id = i.id)
                    ORDER BY i.id LIMIT 1
                    """
                ).first.map { [try $0.decode(at: 0, as: Int64.self), try $0.decode(at: 1, as: Int64.self)] }
            }
            let pair = try #require(picked, "the reference fixture has a paid, refunded invoice to move")
            let (invoice, target) = (pair[0], pair[1])
            _ = try await scenario.withLegacy { session in
                try session.execute(
                    "UPDATE legacy.invoices SET customer_id = $2, updated_at = updated_at + interval '1 second' WHERE id = $1",
                    [invoice, target])
            }
            _ = try await scenario.tail()
            let customers = try await scenario.withStore { session in
                try session.query(
                    """
                    SELECT DISTINCT customer_id FROM (
                        SELECT p.customer_id FROM ledgerlift_read.payments p WHERE p.invoice_id = $1
                        UNION ALL
                        SELECT r.customer_id FROM ledgerlift_read.refunds r
                        JOIN ledgerlift_read.payments p ON p.payment_id = r.payment_id WHERE p.invoice_id = $1) k
                    """, [String(invoice)]
                ).rows.map { try $0.decode(at: 0, as: String.self) }
            }
            // Only the invoice row was written; its payments and refunds follow it.
            #expect(customers == [String(target)])
            let diff = try await scenario.diff()
            #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")
        }
    }

    @Test func aCustomersNewCurrencyReachesTheInvoiceAndLinesThatBorrowIt() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            // A customer and a draft invoice without a currency of its own (drafts do not count
            // in the cached balance), written as the application would.
            let invoice = try await scenario.withLegacy { session -> Int64 in
                try session.transaction { tx in
                    let customer = try tx.query(
                        "INSERT INTO legacy.customers (email, name, currency) VALUES ('borrow@example.com', 'Borrow', 'USD') RETURNING id"
                    ).rows[0].decode(at: 0, as: Int64.self)
                    let invoice = try tx.query(
                        """
                        INSERT INTO legacy.invoices (customer_id, status, currency, subtotal, total, amount_due)
                        VALUES ($1, 0, NULL, 12.50, 12.50, 12.50) RETURNING id
                        """, [customer]
                    ).rows[0].decode(at: 0, as: Int64.self)
                    try tx.execute(
                        "INSERT INTO legacy.invoice_line_items (invoice_id, kind, quantity, unit_amount, amount) VALUES ($1, 'one_off', 1, 12.50, 12.50)",
                        [invoice])
                    return invoice
                }
            }
            _ = try await scenario.tail()
            #expect(try await Self.currencies(scenario, invoice) == ["USD"])
            _ = try await scenario.withLegacy { session in
                try session.execute(
                    "UPDATE legacy.customers SET currency = 'EUR', updated_at = updated_at + interval '1 second' WHERE email = 'borrow@example.com'")
            }
            _ = try await scenario.tail()
            // The invoice and its line borrow the customer's currency: only the customer was written.
            #expect(try await Self.currencies(scenario, invoice) == ["EUR"])
            let diff = try await scenario.diff()
            #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")
        }
    }

    /// The distinct currencies of the invoice and its lines in the read models.
    static func currencies(_ scenario: ShadowScenario, _ invoice: Int64) async throws -> [String] {
        try await scenario.withStore { session in
            try session.query(
                """
                SELECT DISTINCT currency FROM (
                    SELECT currency FROM ledgerlift_read.invoices WHERE invoice_id = $1
                    UNION ALL SELECT currency FROM ledgerlift_read.invoice_lines WHERE invoice_id = $1) c
                """, [String(invoice)]
            ).rows.map { try $0.decode(at: 0, as: String.self) }
        }
    }
}
