import Foundation
import Postgres
import TestSupport
import Testing

/// `ledgerlift query invoice ID --as-of T` shows the attributes (extra legacy columns) of the
/// version valid at T, not today's: issue 13 found a `payment_status` attribute saying `paid`
/// as of a time the invoice was still open.
@Suite("ledgerlift query invoice --as-of: the attributes of the version valid then, run as a binary")
struct AsOfAttributesTests {
    /// The reference mapping, carrying `payment_status` (legacy's `paid`/`unpaid`) as an attribute.
    static func attributeMapping() throws -> String {
        let reference = try String(contentsOfFile: BackfillResumeTests.mapping, encoding: .utf8)
        let old = "             i.tax_rate\n      FROM legacy.invoices i"
        #expect(reference.contains(old))
        return reference.replacingOccurrences(
            of: old,
            with: "             i.tax_rate,\n"
                + "             CASE i.status WHEN 2 THEN 'paid' ELSE 'unpaid' END AS payment_status\n"
                + "      FROM legacy.invoices i")
    }

    /// The same, with an audit-style history query: every paid invoice was open and `unpaid`
    /// from its finalization until its payment.
    static func historyMapping() throws -> String {
        let mapping = try attributeMapping()
        let old = "      - { table: legacy.invoices, key: id }\n"
        #expect(mapping.contains(old))
        return mapping.replacingOccurrences(
            of: old,
            with: old + """
                    history:
                      query: |
                        SELECT i.id::text AS invoice_id, i.customer_id::text AS customer_id,
                               i.subscription_id::text AS subscription_id, i.number, 'open'::text AS status,
                               coalesce(i.currency, c.currency) AS currency, i.subtotal, i.discount, i.tax, i.total,
                               0::numeric AS amount_paid, i.total AS amount_due, i.period_start, i.period_end,
                               i.issued_on, i.due_on, i.finalized_at, NULL::timestamp AS paid_at, i.voided_at,
                               i.created_at, i.finalized_at AS updated_at, i.tax_rate, 'unpaid'::text AS payment_status,
                               i.finalized_at AS valid_from, i.paid_at AS valid_to
                        FROM legacy.invoices i LEFT JOIN legacy.customers c ON c.id = i.customer_id
                        WHERE i.status = 2 AND i.finalized_at IS NOT NULL

                """)
    }

    /// The `column  value` lines of `query invoice`'s table, by column.
    static func fields(_ stdout: String) -> [String: String] {
        var fields = [String: String]()
        for line in stdout.split(separator: "\n").dropFirst(3) {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2 else { continue }
            fields[String(parts[0])] = parts[1].trimmingCharacters(in: .whitespaces)
        }
        return fields
    }

    static func attributes(_ fields: [String: String]) -> [String: String] {
        fields.filter { $0.key.hasPrefix("attributes.") }
    }

    /// Invoice 101 (reference story 1): drafted 09:14, finalized 10:14, paid 10:16:03 on
    /// 2025-06-16. Its legacy row says `payment_status` paid; nothing says what it said before.
    @Test func anInvoiceAsOfBeforeItsPaymentShowsTheAttributesOfThatVersion() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("asof-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let current = directory.appendingPathComponent("current.yaml")
        let audited = directory.appendingPathComponent("audited.yaml")
        try Self.attributeMapping().write(to: current, atomically: true, encoding: .utf8)
        try Self.historyMapping().write(to: audited, atomically: true, encoding: .utf8)

        try await TestDatabase.withFresh("asof_legacy") { legacy in
            try await TestDatabase.withFresh("asof_store") { store in
                try await TestDatabase.withFresh("asof_audited") { auditedStore in
                    #expect(try await LedgerliftBinary.run(["fixture", "load", "--dsn", legacy]).status == 0)
                    for (dsn, mapping) in [(store, current), (auditedStore, audited)] {
                        #expect(try await LedgerliftBinary.run(["store", "init", "--store", dsn]).status == 0)
                        let backfill = try await LedgerliftBinary.run(
                            ["backfill", "--legacy", legacy, "--store", dsn, "--mapping", mapping.path])
                        #expect(backfill.status == 0, "\(backfill.stderr)")
                        #expect(try await LedgerliftBinary.run(["project", "--store", dsn]).status == 0)
                    }
                    func query(
                        _ dsn: String, _ asOf: String, json: Bool = false
                    ) async throws -> LedgerliftBinary.Output {
                        let output = try await LedgerliftBinary.run(
                            ["query", "invoice", "101", "--store", dsn, "--as-of", asOf]
                                + (json ? ["--format", "json"] : []))
                        #expect(output.status == 0, "\(output.stderr)")
                        return output
                    }

                    // Only the legacy row: its attributes are known from the payment on, the step
                    // that reaches that row. Before it the invoice was open, and no attribute of
                    // that time is known, so none is shown (not today's `paid`).
                    let open = Self.fields(try await query(store, "2025-06-16T10:15:00Z").stdout)
                    #expect(open["status"] == "open")
                    #expect(open["amount_paid"] == "0.00")
                    #expect(Self.attributes(open) == [:])
                    let json = try await query(store, "2025-06-16T10:15:00Z", json: true).stdout
                    #expect(json.contains(#""status":"open""#))
                    #expect(json.hasSuffix(#","attributes":{}}}"# + "\n"))
                    let paid = Self.fields(try await query(store, "2025-06-16T10:17:00Z").stdout)
                    #expect(paid["status"] == "paid")
                    #expect(
                        Self.attributes(paid) == ["attributes.payment_status": "paid", "attributes.tax_rate": "NULL"])

                    // With the audit history: the version valid then says `unpaid`.
                    let draft = Self.fields(try await query(auditedStore, "2025-06-16T09:30:00Z").stdout)
                    #expect(draft["status"] == "draft")
                    #expect(Self.attributes(draft) == [:])
                    let audited = Self.fields(try await query(auditedStore, "2025-06-16T10:15:00Z").stdout)
                    #expect(audited["status"] == "open")
                    #expect(
                        Self.attributes(audited) == [
                            "attributes.payment_status": "unpaid", "attributes.tax_rate": "NULL",
                        ])
                    let auditedJSON = try await query(auditedStore, "2025-06-16T10:15:00Z", json: true).stdout
                    #expect(
                        auditedJSON.hasSuffix(#","attributes":{"payment_status":"unpaid","tax_rate":null}}}"# + "\n"))
                    let settled = Self.fields(try await query(auditedStore, "2025-06-16T10:17:00Z").stdout)
                    #expect(
                        Self.attributes(settled) == [
                            "attributes.payment_status": "paid", "attributes.tax_rate": "NULL",
                        ])
                }
            }
        }
    }
}
