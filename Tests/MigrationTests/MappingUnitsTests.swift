import Billing
import Diff
import EventStore
import Fixtures
import Migration
import Postgres
import TestSupport
import Testing

@testable import Mapping

/// The reference mapping with some entities' amounts returned in minor units (cents, yen,
/// fils), converted in SQL by joining the ISO 4217 table of `ledgerlift mapping currencies`:
/// legacy schemas that keep some tables in cents and others in decimals.
enum MinorUnitMappings {
    static let cte = "WITH " + CurrencyExponentsSQL.commonTableExpression + "\n"

    static let refund =
        cte + """
            SELECT r.id::text          AS refund_id,
                   r.payment_id::text  AS payment_id,
                   p.customer_id::text AS customer_id,
                   (r.amount * x.minor_per_major)::int8 AS amount,
                   coalesce(p.currency, c.currency) AS currency,
                   r.status,
                   r.reason,
                   r.created_at
            FROM legacy.refunds r
            LEFT JOIN legacy.payments p ON p.id = r.payment_id
            LEFT JOIN legacy.customers c ON c.id = p.customer_id
            LEFT JOIN currency_exponents x ON x.code = coalesce(p.currency, c.currency)
            """

    /// Lines in minor units, the unit price too (`amounts: minor` applies to it).
    static let invoiceLine =
        cte + """
            SELECT l.id::text          AS invoice_line_id,
                   l.invoice_id::text  AS invoice_id,
                   l.kind,
                   l.description,
                   l.quantity,
                   l.unit_amount * x.minor_per_major AS unit_amount,
                   (l.amount * x.minor_per_major)::int8 AS amount,
                   coalesce(i.currency, c.currency) AS currency,
                   l.period_start,
                   l.period_end,
                   l.proration,
                   i.created_at
            FROM legacy.invoice_line_items l
            LEFT JOIN legacy.invoices i ON i.id = l.invoice_id
            LEFT JOIN legacy.customers c ON c.id = i.customer_id
            LEFT JOIN currency_exponents x ON x.code = coalesce(i.currency, c.currency)
            """

    /// Invoices in minor units too (for the diff test: the backfill of this branch still
    /// renders cross-row rules without units, so invoice and lines share one).
    static let invoice =
        cte + """
            SELECT i.id::text               AS invoice_id,
                   i.customer_id::text      AS customer_id,
                   i.subscription_id::text  AS subscription_id,
                   i.number,
                   CASE i.status WHEN 0 THEN 'draft' WHEN 1 THEN 'open' WHEN 2 THEN 'paid' WHEN 3 THEN 'void'
                                 WHEN 4 THEN 'uncollectible' ELSE 'unknown:' || i.status END AS status,
                   coalesce(i.currency, c.currency) AS currency,
                   (i.subtotal * x.minor_per_major)::int8    AS subtotal,
                   (i.discount * x.minor_per_major)::int8    AS discount,
                   (i.tax * x.minor_per_major)::int8         AS tax,
                   (i.total * x.minor_per_major)::int8       AS total,
                   (i.amount_paid * x.minor_per_major)::int8 AS amount_paid,
                   (i.amount_due * x.minor_per_major)::int8  AS amount_due,
                   i.period_start, i.period_end, i.issued_on, i.due_on, i.finalized_at, i.paid_at, i.voided_at,
                   i.created_at, i.updated_at, i.tax_rate
            FROM legacy.invoices i
            LEFT JOIN legacy.customers c ON c.id = i.customer_id
            LEFT JOIN currency_exponents x ON x.code = coalesce(i.currency, c.currency)
            """

    /// The reference mapping with `minor` entities replaced by the queries above.
    static func mapping(minor: [Entity: String]) throws -> MappingFile {
        let reference = try MappingTestSupport.referenceMapping()
        return MappingFile(
            amounts: .major,
            entities: reference.entities.map { mapping in
                guard let query = minor[mapping.entity] else { return mapping }
                return MappingFile.EntityMapping(
                    entity: mapping.entity, query: query, sources: mapping.sources, amounts: .minor,
                    checks: mapping.checks)
            }, file: "mixed-units.yaml")
    }

    /// Every rule rendered as the backfill renders it, run: the keys each rejects.
    static func rejected(_ mapping: MappingFile, unitAware: Bool, on connection: Connection) async throws
        -> [String: [String]]
    {
        var out = [String: [String]]()
        let queries = Dictionary(uniqueKeysWithValues: mapping.entities.map { ($0.entity, $0.query) })
        for rule in CrossRowCheck.all {
            let sql = unitAware ? rule.render(sources: mapping.crossRowSources) : rule.render(queries)
            guard let sql else { continue }
            let keys = try await connection.query(sql).rows.map { try $0.decode(at: 0, as: String.self) }
            if !keys.isEmpty { out[rule.reason, default: []] += keys.sorted() }
        }
        return out
    }
}

@Suite("Mapping units: cross-row rules in minor units, unit_amount following amounts, the exponent table")
struct MappingUnitsTests {
    /// Refunds in cents, payments in decimals; lines in cents, invoices in decimals: every
    /// rule passes and every row converts, with zero quarantine. Compared as written (the rules
    /// before they knew units), refunds exceed their payments and invoices their lines.
    @Test func aMixedUnitMappingPassesEveryRuleWithZeroQuarantine() async throws {
        let mapping = try MinorUnitMappings.mapping(minor: [
            .refund: MinorUnitMappings.refund, .invoiceLine: MinorUnitMappings.invoiceLine,
        ])
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            #expect(try await MinorUnitMappings.rejected(mapping, unitAware: true, on: connection).isEmpty)

            let raw = try await MinorUnitMappings.rejected(mapping, unitAware: false, on: connection)
            // Every refund but the JPY one (whose minor unit is the yen itself).
            #expect(raw["refund_exceeds_payment"] == ["1401", "1501", "4001", "4002"])
            #expect((raw["invoice_total_mismatch"]?.count ?? 0) > 100)

            let report = try await MappingChecker(mapping).check(connection)
            #expect(report.isClean)
            #expect(!report.findings.contains { $0.code == .willQuarantine || $0.code == .ruleFailed })

            // Row by row, the same money as the all-decimal reference mapping.
            let reference = try MappingTestSupport.referenceMapping()
            for entity in [Entity.refund, .invoiceLine] {
                let converted = try await MappingTestSupport.convertAll(
                    mapping[entity]!.query, with: mapping.converter(for: entity)!, on: connection)
                let expected = try await MappingTestSupport.convertAll(
                    reference[entity]!.query, with: reference.converter(for: entity)!, on: connection)
                #expect(converted.count == Int(referenceRowCounts[entity]!), "\(entity)")
                #expect(converted.allSatisfy { $0.migrated != nil }, "\(entity)")
                let rows = converted.compactMap(\.migrated).map(\.row).sorted { $0.key < $1.key }
                let want = expected.compactMap(\.migrated).map(\.row).sorted { $0.key < $1.key }
                #expect(rows.map { $0["amount"] } == want.map { $0["amount"] }, "\(entity)")
                if entity == .invoiceLine {
                    // numeric(14,4) × 100 keeps 4 more digits: the same price, exactly.
                    for (got, reference) in zip(rows, want) {
                        guard case .decimal(let a) = got["unit_amount"], case .decimal(let b) = reference["unit_amount"]
                        else { continue }
                        #expect(PostgresNumeric(a)!.isNumericallyEqual(to: PostgresNumeric(b)!), "\(got.key)")
                    }
                }
            }
        }
    }

    /// The rules in minor units of the row's currency: a refund of 30.00 USD on a payment of
    /// 2500 cents exceeds it; a JPY payment of 5000 (no minor unit) is compared as it is.
    @Test func refundsAreComparedWithTheirPaymentInMinorUnitsOfTheirCurrency() async throws {
        let rule = try #require(CrossRowCheck.all.first { $0.reason == "refund_exceeds_payment" })
        let payments = """
            SELECT * FROM (VALUES ('p1', 'succeeded', 2500::int8, 'USD'), ('p2', 'succeeded', 5000, 'JPY'),
                                  ('p3', 'succeeded', 14875, 'KWD')) AS p (payment_id, status, amount, currency)
            """
        let refunds = """
            SELECT * FROM (VALUES ('r1', 'p1', 30.00, 'USD', 'succeeded'), ('r2', 'p2', 5000, 'JPY', 'succeeded'),
                                  ('r3', 'p3', 14.875, 'KWD', 'succeeded'), ('r4', 'p3', 0.001, 'KWD', 'pending'))
                          AS r (refund_id, payment_id, amount, currency, status)
            """
        let sql = try #require(
            rule.render(sources: [
                .payment: CrossRowSource(query: payments, amounts: .minor, defaultCurrency: nil),
                .refund: CrossRowSource(query: refunds, amounts: .major, defaultCurrency: nil),
            ]))
        try await TestDatabase.withConnection { connection, _ in
            let rows = try await connection.query(sql + " ORDER BY 1").rows.map {
                [try $0.decode(at: 0, as: String.self), try $0.decode(at: 1, as: String.self)]
            }
            #expect(
                rows == [
                    ["r1", "refunds of payment p1 total 30.00 USD, more than its amount 25.00 USD"],
                    ["r3", "refunds of payment p3 total 14.876 KWD, more than its amount 14.875 KWD"],
                    ["r4", "refunds of payment p3 total 14.876 KWD, more than its amount 14.875 KWD"],
                ])
        }
    }

    /// `quantity × unit_amount = amount` for lines that are not prorations, within one minor
    /// unit: an app that rounds 333 × 0.0125 = 4.1625 to 4.16 charged 4.16 (the dirty fixture's
    /// D17 migrates), a cents column returned as the price does not pass.
    @Test func lineAmountsMustEqualQuantityTimesUnitAmountWithinOneMinorUnit() async throws {
        let rule = try #require(CrossRowCheck.all.first { $0.reason == "line_amount_mismatch" })
        #expect(rule.entity == .invoiceLine)
        let lines = """
            SELECT * FROM (VALUES
                ('l1', 'usage', false, 333, 0.0125, 4.16, 'USD'),
                ('l2', 'subscription', false, 3, 1200.00, 36.00, 'USD'),
                ('l3', 'proration', true, 1, 10.00, -3.03, 'USD'),
                ('l4', 'tax', false, 1, NULL, 1.90, 'USD'),
                ('l5', 'subscription', false, 2, 5500, 11000, 'JPY'),
                ('l6', 'subscription', false, 2, 5500, 11001, 'JPY'),
                ('l7', 'usage', false, 3, 0.3333, 1.00, 'USD'),
                ('l8', 'usage', false, 3, 0.3333, 0.99, 'USD'),
                ('l9', 'usage', false, 3, 0.3333, 1.01, 'USD')
            ) AS l (invoice_line_id, kind, proration, quantity, unit_amount, amount, currency)
            """
        let sql = try #require(
            rule.render(sources: [.invoiceLine: CrossRowSource(query: lines, amounts: .major, defaultCurrency: nil)]))
        try await TestDatabase.withConnection { connection, _ in
            let rows = try await connection.query(sql + " ORDER BY 1").rows.map {
                [try $0.decode(at: 0, as: String.self), try $0.decode(at: 1, as: String.self)]
            }
            #expect(
                rows == [
                    ["l2", "quantity 3 × unit_amount 1200.00 is 3600.00 USD, but amount is 36.00 USD"],
                    ["l6", "quantity 2 × unit_amount 5500 is 11000 JPY, but amount is 11001 JPY"],
                    ["l9", "quantity 3 × unit_amount 0.3333 is 1.00 USD, but amount is 1.01 USD"],
                ])
        }
    }

    /// Lines and invoices in cents, unit prices too: the backfill quarantines nothing, the
    /// ledger holds the same unit prices as the decimal mapping gives, and the diff (whose legacy
    /// side converts minor → major the same way) is clean.
    @Test func minorUnitAmountsMigrateAsMajorPricesAndTheDiffAgrees() async throws {
        let mapping = try MinorUnitMappings.mapping(minor: [
            .invoice: MinorUnitMappings.invoice, .invoiceLine: MinorUnitMappings.invoiceLine,
        ])
        try await withLegacyAndStore(.reference) { legacyDSN, store, storeDSN in
            let backfill = try await MappingTestSupport.backfill(mapping, legacyDSN: legacyDSN, storeDSN: storeDSN)
            #expect(backfill.totalQuarantined == 0)
            _ = try await Projector().catchUp(on: store)
            // The same prices as legacy's decimals, every one (sum and the largest), exactly.
            let ledger = try await store.query(
                "SELECT sum(unit_amount)::text, max(unit_amount)::text, count(*) FROM ledgerlift_read.invoice_lines"
            ).rows[0]
            let legacy = try await Connection.connect(legacyDSN)
            defer { legacy.close() }
            let legacyPrices = try await legacy.query(
                "SELECT sum(unit_amount)::text, max(unit_amount)::text FROM legacy.invoice_line_items"
            ).rows[0]
            #expect(try ledger.decode(at: 2, as: Int64.self) == 169)
            for column in 0..<2 {
                let a = try #require(PostgresNumeric(try ledger.decode(at: column, as: String.self)))
                let b = try #require(PostgresNumeric(try legacyPrices.decode(at: column, as: String.self)))
                #expect(a.isNumericallyEqual(to: b), "\(a) vs \(b)")
            }
            let report = try await DiffChecker(.init(legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: mapping)).run()
            #expect(report.isClean)
            #expect(report.entities.allSatisfy { $0.differences.isEmpty })
        }
    }

    /// The backfill's sources carry each entity's unit and default currency, so rules rendered
    /// from them are the very SQL `mapping check` runs.
    @Test func rulesRenderedFromTheBackfillsSourcesAreTheOnesTheCheckRuns() throws {
        let mapping = try MinorUnitMappings.mapping(minor: [.refund: MinorUnitMappings.refund])
        let sources = mapping.entitySources()
        #expect(sources.first { $0.entity == .refund }?.amounts == .minor)
        #expect(sources.first { $0.entity == .payment }?.amounts == .major)
        for rule in CrossRowCheck.all {
            #expect(rule.render(sources) == rule.render(sources: mapping.crossRowSources), "\(rule.reason)")
        }
    }

    // MARK: - The exponent table

    /// What `ledgerlift mapping currencies --format sql` prints installs on the server and
    /// holds exactly the exponents the converter uses; the CTE form runs inside a mapping query.
    @Test func theExponentTableInstallsAndAgreesWithTheConverter() async throws {
        try await TestDatabase.withConnection { connection, _ in
            try await connection.executeScript("CREATE SCHEMA \"billing ref\";")
            try await connection.executeScript(CurrencyExponentsSQL.createView(named: "billing ref.Currency Exponents"))
            let rows = try await connection.query(
                "SELECT code, exponent, minor_per_major::text FROM \"billing ref\".\"Currency Exponents\" ORDER BY code"
            ).rows
            #expect(rows.count == Currency.all.count)
            for (row, currency) in zip(rows, Currency.all) {
                #expect(try row.decode(at: 0, as: String.self) == currency.code)
                #expect(try row.decode(at: 1, as: Int64.self) == Int64(currency.minorUnitExponent))
                #expect(
                    try row.decode(at: 2, as: String.self)
                        == "1" + String(repeating: "0", count: currency.minorUnitExponent))
            }
            // Cents to major and back, exactly, in every exponent the table has.
            let conversions = try await connection.query(
                """
                WITH \(CurrencyExponentsSQL.commonTableExpression)
                SELECT code, (14875 / minor_per_major)::text, (14.875 * minor_per_major)::text
                FROM currency_exponents WHERE code IN ('JPY', 'USD', 'KWD', 'CLF') ORDER BY code
                """
            ).rows.map { try [$0.decode(at: 0, as: String.self), $0.decode(at: 1, as: String.self)] }
            #expect(
                conversions.map { $0[0] } == ["CLF", "JPY", "KWD", "USD"])
            let major = Dictionary(uniqueKeysWithValues: conversions.map { ($0[0], PostgresNumeric($0[1])!) })
            #expect(major["JPY"]!.isNumericallyEqual(to: PostgresNumeric("14875")!))
            #expect(major["USD"]!.isNumericallyEqual(to: PostgresNumeric("148.75")!))
            #expect(major["KWD"]!.isNumericallyEqual(to: PostgresNumeric("14.875")!))
            #expect(major["CLF"]!.isNumericallyEqual(to: PostgresNumeric("1.4875")!))
        }
    }
}
