import Billing
import EventStore
import Fixtures
import Foundation
import Migration
import Postgres
import TestSupport
import Testing

@testable import Diff
@testable import Mapping

private func currency(_ code: String) -> Currency { try! Currency(code: code) }

private func loadError(_ yaml: String) throws -> MappingError {
    do {
        _ = try MappingFile(yaml: yaml, file: "test.yaml")
    } catch {
        return error
    }
    Issue.record("the mapping loaded, but an error was expected")
    throw CancellationError()
}

/// A payment row in minor units (`amounts: minor`), in `code`.
private func payment(_ amount: String, _ code: String, processed: (String, String)? = nil) -> Row {
    var cells: [(String, PostgresType, String?)] = [
        ("payment_id", .text, "p1"), ("customer_id", .text, "c1"), ("status", .text, "succeeded"),
        ("amount", .int8, amount), ("currency", .bpchar, code), ("created_at", .timestamptz, "2025-01-01 00:00:00+00"),
    ]
    if let processed {
        cells += [("processed_amount", .int8, processed.0), ("processed_currency", .bpchar, processed.1)]
    }
    return makeRow(cells)
}

/// The reference mapping with money written as a library that does not follow ISO 4217 writes
/// it: JPY in hundredths (`{JPY: 2}`) and KWD in ten-thousandths (`{KWD: 4}`), every other
/// currency in its ISO minor unit. Invoices, lines and refunds are `amounts: minor`; payments
/// stay decimals (`major`), so `refund_exceeds_payment` compares the two units.
enum LibraryExponentMappings {
    static let written: [Currency: Int] = [currency("JPY"): 2, currency("KWD"): 4]

    /// `WITH currency_exponents …, lib …`: the factor the library multiplies a major amount by.
    static let cte =
        "WITH " + CurrencyExponentsSQL.commonTableExpression
        + ",\nlib (code, factor) AS (VALUES ('JPY', 100::numeric), ('KWD', 10000::numeric))\n"

    static func written(_ column: String, _ currency: String) -> String {
        "(\(column) * coalesce((SELECT factor FROM lib WHERE code = \(currency)), "
            + "(SELECT minor_per_major FROM currency_exponents WHERE code = \(currency))))"
    }

    static let refund =
        cte + """
            SELECT r.id::text AS refund_id, r.payment_id::text AS payment_id, p.customer_id::text AS customer_id,
                   \(written("r.amount", "coalesce(p.currency, c.currency)"))::int8 AS amount,
                   coalesce(p.currency, c.currency) AS currency, r.status, r.reason, r.created_at
            FROM legacy.refunds r
            LEFT JOIN legacy.payments p ON p.id = r.payment_id
            LEFT JOIN legacy.customers c ON c.id = p.customer_id
            """

    static let invoiceLine =
        cte + """
            SELECT l.id::text AS invoice_line_id, l.invoice_id::text AS invoice_id, l.kind, l.description,
                   l.quantity, \(written("l.unit_amount", "coalesce(i.currency, c.currency)")) AS unit_amount,
                   \(written("l.amount", "coalesce(i.currency, c.currency)"))::int8 AS amount,
                   coalesce(i.currency, c.currency) AS currency, l.period_start, l.period_end, l.proration,
                   i.created_at
            FROM legacy.invoice_line_items l
            LEFT JOIN legacy.invoices i ON i.id = l.invoice_id
            LEFT JOIN legacy.customers c ON c.id = i.customer_id
            """

    static let invoice =
        cte + """
            SELECT i.id::text AS invoice_id, i.customer_id::text AS customer_id,
                   i.subscription_id::text AS subscription_id, i.number,
                   CASE i.status WHEN 0 THEN 'draft' WHEN 1 THEN 'open' WHEN 2 THEN 'paid' WHEN 3 THEN 'void'
                                 WHEN 4 THEN 'uncollectible' ELSE 'unknown:' || i.status END AS status,
                   coalesce(i.currency, c.currency) AS currency,
                   \(written("i.subtotal", "coalesce(i.currency, c.currency)"))::int8 AS subtotal,
                   \(written("i.discount", "coalesce(i.currency, c.currency)"))::int8 AS discount,
                   \(written("i.tax", "coalesce(i.currency, c.currency)"))::int8 AS tax,
                   \(written("i.total", "coalesce(i.currency, c.currency)"))::int8 AS total,
                   \(written("i.amount_paid", "coalesce(i.currency, c.currency)"))::int8 AS amount_paid,
                   \(written("i.amount_due", "coalesce(i.currency, c.currency)"))::int8 AS amount_due,
                   i.period_start, i.period_end, i.issued_on, i.due_on, i.finalized_at, i.paid_at, i.voided_at,
                   i.created_at, i.updated_at, i.tax_rate
            FROM legacy.invoices i
            LEFT JOIN legacy.customers c ON c.id = i.customer_id
            """

    /// `{JPY: 2}` at the top of the file, `{KWD: 4}` on each entity in minor units, so both
    /// places are read; or, `declared: false`, neither (the mistake the declaration prevents).
    static func mapping(declared: Bool = true) throws -> MappingFile {
        let reference = try MappingTestSupport.referenceMapping()
        let minor: [Entity: String] = [.refund: refund, .invoiceLine: invoiceLine, .invoice: invoice]
        return MappingFile(
            amounts: .major, currencyExponents: declared ? [currency("JPY"): 2] : [:],
            entities: reference.entities.map { mapping in
                guard let query = minor[mapping.entity] else { return mapping }
                return MappingFile.EntityMapping(
                    entity: mapping.entity, query: query, sources: mapping.sources, amounts: .minor,
                    checks: mapping.checks, currencyExponents: declared ? [currency("KWD"): 4] : [:])
            }, file: "library-exponents.yaml")
    }
}

@Suite("currency_exponents: amounts written with another exponent than ISO 4217's")
struct CurrencyExponentsTests {
    // MARK: Loading

    @Test func exponentsAreReadAtTheTopAndPerEntityWhereTheEntitysEntryWinsForItsCurrency() throws {
        let mapping = try MappingFile(
            yaml: """
                version: 1
                amounts: minor
                currency_exponents: { HUF: 0, ISK: 2 }
                entities:
                  invoice:
                    query: SELECT 1
                  payment:
                    query: SELECT 1
                    currency_exponents:
                      ISK: 0
                      JOD: 2
                """, file: "test.yaml")
        #expect(mapping.currencyExponents == [currency("HUF"): 0, currency("ISK"): 2])
        #expect(mapping[entity: .payment]?.currencyExponents == [currency("ISK"): 0, currency("JOD"): 2])
        #expect(mapping.currencyExponents(for: .invoice) == [currency("HUF"): 0, currency("ISK"): 2])
        #expect(
            mapping.currencyExponents(for: .payment) == [currency("HUF"): 0, currency("ISK"): 0, currency("JOD"): 2])
        #expect(mapping.converter(for: .payment)?.currencyExponents == mapping.currencyExponents(for: .payment))
        #expect(mapping.entitySources().first { $0.entity == .payment }?.currencyExponents.count == 3)
        #expect(mapping.crossRowSources[.invoice]?.currencyExponents == [currency("HUF"): 0, currency("ISK"): 2])
    }

    @Test func unknownCodesAndImpossibleExponentsAreRefusedWithTheirLine() throws {
        let error = try loadError(
            """
            version: 1
            amounts: minor
            currency_exponents:
              XXY: 0
              huf: 0
              ISK: 5
              JOD: two
              XAU: 2
            entities:
              invoice:
                query: SELECT 1
                currency_exponents: [HUF, 0]
            """)
        #expect(
            error.codes == [
                .unknownCurrency, .unknownCurrency, .invalidValue, .invalidValue, .unknownCurrency, .invalidValue,
            ])
        #expect(
            error.issues.map(\.path) == [
                "currency_exponents.XXY", "currency_exponents.huf", "currency_exponents.ISK", "currency_exponents.JOD",
                "currency_exponents.XAU", "entities.invoice.currency_exponents",
            ])
        #expect(error.issues.map(\.line) == [4, 5, 6, 7, 8, 12])
        #expect(error.issues[0].message == "\"XXY\" is not an ISO 4217 currency code")
        #expect(
            error.issues[2].message
                == "expected 0 to 4, got \"5\": the number of decimal places the legacy system wrote ISK amounts with "
                + "(ISO 4217 gives ISK 0)")
        #expect(
            error.issues[5].message
                == "expected a map from currency code to the number of decimal places the legacy system wrote it with, "
                + "e.g. `{ HUF: 0, ISK: 2 }`")
    }

    // MARK: The converter

    /// `amounts: minor` with `{HUF: 0}`: a legacy 1000 is 1000 forints, 100000 ISO minor units.
    /// A currency written with more decimals than ISO's is divided, exactly or not at all.
    @Test func minorAmountsWrittenWithADeclaredExponentBecomeISOMinorUnitsExactly() throws {
        let converter = RowConverter(
            entity: .payment, amounts: .minor,
            currencyExponents: [currency("HUF"): 0, currency("JPY"): 2, currency("USD"): 3, currency("EUR"): 2])
        func amount(_ value: String, _ code: String) -> RowConversion { converter.convert(payment(value, code)) }
        #expect(amount("1000", "HUF").migrated?.row["amount"] == .amount(100_000))
        #expect(amount("-1000", "HUF").migrated?.row["amount"] == .amount(-100_000))
        #expect(amount("150000", "JPY").migrated?.row["amount"] == .amount(1500))
        #expect(amount("1230", "USD").migrated?.row["amount"] == .amount(123))
        // An entry equal to ISO 4217's, and a currency not declared: as written.
        #expect(amount("1230", "EUR").migrated?.row["amount"] == .amount(1230))
        #expect(amount("1230", "GBP").migrated?.row["amount"] == .amount(1230))

        let inexact = try #require(amount("1235", "USD").quarantine)
        #expect(inexact.reason == .amountNotMinorUnit)
        #expect(inexact.column == "amount")
        #expect(
            inexact.detail
                == "amount 1235 is written with 3 decimal places (currency_exponents: {USD: 3}), so it is 1.235 USD, "
                + "which is not a whole number of USD minor units (ISO 4217: 2 decimal places); it is never rounded")
        let yen = try #require(amount("150050", "JPY").quarantine)
        #expect(yen.reason == .amountNotMinorUnit)
        #expect(
            yen.detail.hasPrefix(
                "amount 150050 is written with 2 decimal places (currency_exponents: {JPY: 2}), so it is 1500.50 JPY"))

        let overflow = try #require(amount("92233720368547759", "HUF").quarantine)
        #expect(overflow.reason == .amountOverflow)
        #expect(
            overflow.detail
                == "amount 92233720368547759 is written with 0 decimal places (currency_exponents: {HUF: 0}), "
                + "so it is 92233720368547759 HUF, which does not fit in 64-bit minor units (ISO 4217: 2 decimal places)"
        )
        // A fraction of the legacy unit is refused before any exponent, as before.
        let fraction = try #require(
            converter.convert(
                makeRow([
                    ("payment_id", .text, "p1"), ("customer_id", .text, "c1"), ("status", .text, "succeeded"),
                    ("amount", .numeric, "1000.5"), ("currency", .bpchar, "HUF"),
                    ("created_at", .timestamptz, "2025-01-01 00:00:00+00"),
                ])
            ).quarantine)
        #expect(
            fraction.detail
                == "amount 1000.5 is not a whole number of minor units (amounts: minor); it is never rounded")
    }

    @Test func underMajorDeclaredExponentsChangeNothing() throws {
        let converter = RowConverter(entity: .payment, amounts: .major, currencyExponents: [currency("HUF"): 0])
        let row = makeRow([
            ("payment_id", .text, "p1"), ("customer_id", .text, "c1"), ("status", .text, "succeeded"),
            ("amount", .numeric, "1000.50"), ("currency", .bpchar, "HUF"),
            ("created_at", .timestamptz, "2025-01-01 00:00:00+00"),
        ])
        #expect(converter.convert(row).migrated?.row["amount"] == .amount(100_050))
    }

    /// An amount in another currency (a payment's `processed_amount`) follows that currency's
    /// declared exponent, not the row's.
    @Test func anAmountInAnotherCurrencyFollowsThatCurrencysDeclaredExponent() throws {
        let converter = RowConverter(entity: .payment, amounts: .minor, currencyExponents: [currency("HUF"): 0])
        let converted = try #require(converter.convert(payment("1230", "USD", processed: ("4500", "HUF"))).migrated)
        #expect(converted.row["amount"] == .amount(1230))
        #expect(converted.row["processed_amount"] == .amount(450_000))
        let back = try #require(converter.convert(payment("4500", "HUF", processed: ("1230", "USD"))).migrated)
        #expect(back.row["amount"] == .amount(450_000))
        #expect(back.row["processed_amount"] == .amount(1230))
    }

    /// A unit price under `minor` is in the legacy system's minor units: with `{HUF: 0}` the
    /// forints are the price itself; with `{JPY: 2}` hundredths of a yen.
    @Test func unitPricesUnderMinorFollowTheDeclaredExponent() throws {
        let lines = RowConverter(
            entity: .invoiceLine, amounts: .minor, currencyExponents: [currency("HUF"): 0, currency("JPY"): 2])
        func line(_ unit: String, _ amount: String, _ code: String) -> Row {
            makeRow([
                ("invoice_line_id", .text, "1"), ("invoice_id", .text, "1"), ("kind", .text, "subscription"),
                ("quantity", .int4, "3"), ("unit_amount", .numeric, unit), ("amount", .int8, amount),
                ("currency", .bpchar, code), ("proration", .bool, "f"),
                ("created_at", .timestamp, "2025-10-01 00:00:00"),
            ])
        }
        let forints = try #require(lines.convert(line("1200", "3600", "HUF")).migrated)
        #expect(forints.row["unit_amount"] == .decimal("1200"))
        #expect(forints.row["amount"] == .amount(360_000))
        let yen = try #require(lines.convert(line("150050", "450150", "JPY")).quarantine)
        #expect(yen.reason == .amountNotMinorUnit)  // 4501.50 JPY: the amount, not the price, is refused
        let wholeYen = try #require(lines.convert(line("150050", "450000", "JPY")).migrated)
        #expect(wholeYen.row["unit_amount"] == .decimal("1500.50"))
        #expect(wholeYen.row["amount"] == .amount(4500))
        let dollars = try #require(lines.convert(line("1200", "3600", "USD")).migrated)
        #expect(dollars.row["unit_amount"] == .decimal("12.00"))
    }

    // MARK: The fingerprint

    @Test func theFingerprintFollowsDeclaredExponentsButNotAnEmptyDeclaration() throws {
        let base = """
            version: 1
            amounts: minor
            entities:
              invoice:
                query: SELECT 1
            """
        func fingerprint(_ yaml: String) throws -> String { try MappingFile(yaml: yaml, file: "t.yaml").fingerprint }
        let plain = try fingerprint(base)
        // The fingerprint this mapping had before currency_exponents existed (60b8c27): a
        // stored backfill of it stays resumable.
        #expect(plain == "cf49f758252e592aa5b062831ad1a9a9")
        #expect(
            try fingerprint(base.replacing("amounts: minor", with: "amounts: minor\ncurrency_exponents: {}")) == plain)
        let top = try fingerprint(
            base.replacing("amounts: minor", with: "amounts: minor\ncurrency_exponents: {HUF: 0}"))
        let entity = try fingerprint(base + "\n    currency_exponents: {HUF: 0}")
        let other = try fingerprint(
            base.replacing("amounts: minor", with: "amounts: minor\ncurrency_exponents: {HUF: 2}"))
        #expect(Set([plain, top, entity, other]).count == 4)
        let layout = try fingerprint(
            base.replacing("amounts: minor", with: "amounts: minor\ncurrency_exponents:\n  HUF: 0  # forints"))
        #expect(layout == top)
    }

    // MARK: The cross-row rules

    /// Refunds written in hundredths of a yen (`{JPY: 2}`, minor) against payments in decimals
    /// (major): compared in ISO minor units, a refund of ¥5,000 fits a ¥5,500 payment and one of
    /// ¥5,600 does not. Without the declaration, 500000 would exceed it.
    @Test func rulesCompareAmountsWrittenWithADeclaredExponentInISOMinorUnits() async throws {
        let rule = try #require(CrossRowCheck.all.first { $0.reason == "refund_exceeds_payment" })
        let payments = """
            SELECT * FROM (VALUES ('p1', 'succeeded', 5500.00, 'JPY'), ('p2', 'succeeded', 5500, 'JPY'),
                                  ('p3', 'succeeded', 10.00, 'USD'))
                          AS p (payment_id, status, amount, currency)
            """
        let refunds = """
            SELECT * FROM (VALUES ('r1', 'p1', 500000::int8, 'JPY', 'succeeded'), ('r2', 'p2', 560000, 'JPY', 'succeeded'),
                                  ('r3', 'p3', 1000, 'USD', 'succeeded'))
                          AS r (refund_id, payment_id, amount, currency, status)
            """
        func rejected(_ exponents: [Currency: Int]) async throws -> [[String]] {
            let sql = try #require(
                rule.render(sources: [
                    .payment: CrossRowSource(query: payments, amounts: .major, defaultCurrency: nil),
                    .refund: CrossRowSource(
                        query: refunds, amounts: .minor, defaultCurrency: nil, currencyExponents: exponents),
                ]))
            return try await TestDatabase.withConnection { connection, _ in
                try await connection.query(sql + " ORDER BY 1").rows.map {
                    [try $0.decode(at: 0, as: String.self), try $0.decode(at: 1, as: String.self)]
                }
            }
        }
        #expect(
            try await rejected([currency("JPY"): 2])
                == [["r2", "refunds of payment p2 total 5600 JPY, more than its amount 5500 JPY"]])
        #expect(try await rejected([:]).map { $0[0] } == ["r1", "r2"])
        // Written with ISO's own exponent: the SQL of a mapping without the declaration.
        #expect(
            rule.render(sources: [
                .payment: CrossRowSource(query: payments, amounts: .major, defaultCurrency: nil),
                .refund: CrossRowSource(
                    query: refunds, amounts: .minor, defaultCurrency: nil, currencyExponents: [currency("JPY"): 0]),
            ])
                == rule.render(sources: [
                    .payment: CrossRowSource(query: payments, amounts: .major, defaultCurrency: nil),
                    .refund: CrossRowSource(query: refunds, amounts: .minor, defaultCurrency: nil),
                ]))
    }

    // MARK: Backfill and diff

    /// The reference fixture written by a library with its own exponents (JPY in hundredths,
    /// KWD in ten-thousandths), declared: every row migrates, with the same money as the
    /// all-decimal reference mapping gives, every rule passes, and the diff (whose legacy side
    /// converts the same way) is clean.
    @Test func aMappingWithDeclaredExponentsMigratesTheReferenceMoneyAndTheDiffIsClean() async throws {
        let mapping = try LibraryExponentMappings.mapping()
        let reference = try MappingTestSupport.referenceMapping()
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            #expect(report.isClean)
            #expect(!report.findings.contains { $0.code == .willQuarantine || $0.code == .ruleFailed })
            // The converted money is the reference mapping's, row by row.
            for entity in [Entity.refund, .invoiceLine, .invoice] {
                let rows = try await MappingTestSupport.convertAll(
                    mapping[entity]!.query, with: mapping.converter(for: entity)!, on: connection)
                let want = try await MappingTestSupport.convertAll(
                    reference[entity]!.query, with: reference.converter(for: entity)!, on: connection)
                #expect(rows.allSatisfy { $0.migrated != nil }, "\(entity)")
                let got = rows.compactMap(\.migrated).map(\.row).sorted { $0.key < $1.key }
                let expected = want.compactMap(\.migrated).map(\.row).sorted { $0.key < $1.key }
                #expect(got.count == expected.count && !got.isEmpty, "\(entity)")
                for column in entity.columns where column.type == .amount {
                    #expect(got.map { $0[column.name] } == expected.map { $0[column.name] }, "\(entity).\(column.name)")
                }
                for (a, b) in zip(got, expected) {
                    guard case .decimal(let x) = a["unit_amount"], case .decimal(let y) = b["unit_amount"] else {
                        continue
                    }
                    #expect(PostgresNumeric(x)!.isNumericallyEqual(to: PostgresNumeric(y)!), "\(a.key)")
                }
            }
            // JPY and KWD money is among them: the declarations are needed.
            let currencies = try await connection.query(
                "SELECT DISTINCT currency::text FROM (\(mapping[.invoice]!.query)) i ORDER BY 1"
            ).rows.map { try $0.decode(at: 0, as: String.self) }
            #expect(currencies.contains("JPY") && currencies.contains("KWD"))
        }
        try await withLegacyAndStore(.reference) { legacyDSN, store, storeDSN in
            let backfill = try await MappingTestSupport.backfill(mapping, legacyDSN: legacyDSN, storeDSN: storeDSN)
            #expect(backfill.totalQuarantined == 0)
            _ = try await Projector().catchUp(on: store)
            let diff = try await DiffChecker(.init(legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: mapping)).run()
            #expect(diff.isClean)
            #expect(diff.entities.allSatisfy { $0.differences.isEmpty && $0.matched == $0.legacyRows })
            // Without the declarations the diff sees that JPY and KWD money is 100 and 10 times off.
            let undeclared = try LibraryExponentMappings.mapping(declared: false)
            let wrong = try await DiffChecker(.init(legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: undeclared))
                .run()
            let mismatched = Set(
                wrong.entities.filter { $0.differences.contains { $0.kind == .mismatched } }.map(\.entity.rawValue))
            #expect(mismatched == ["refund", "invoice", "invoice_line"])
        }
    }

    /// The diff's legacy side prints each amount as the converter reads it: payments in
    /// whole forints (`{HUF: 0}`) and hundredths of a yen (`{JPY: 2}`), with a processed amount
    /// in another, declared currency; other currencies as written.
    @Test func theDiffsLegacySideReadsDeclaredExponentsAsTheConverterDoes() async throws {
        let query = """
            SELECT * FROM (VALUES
                ('p1', 'c1', 'succeeded', 1000::int8, 'HUF', now(), 150000::int8, 'JPY'),
                ('p2', 'c1', 'succeeded', 150000, 'JPY', now(), 1000, 'HUF'),
                ('p3', 'c1', 'succeeded', 1230, 'USD', now(), 4500, 'HUF'),
                ('p4', 'c1', 'succeeded', 1230, 'EUR', now(), 1230, 'USD')
            ) AS p (payment_id, customer_id, status, amount, currency, created_at, processed_amount, processed_currency)
            """
        let exponents = [currency("HUF"): 0, currency("JPY"): 2]
        let converter = RowConverter(entity: .payment, amounts: .minor, currencyExponents: exponents)
        try await TestDatabase.withConnection { connection, _ in
            let shape = try await connection.query("SELECT * FROM (\(query)) q LIMIT 0").columns
            let legacy = CanonicalQuery.legacy(
                .payment, query: query, resultColumns: shape, amounts: .minor, defaultCurrency: nil,
                currencyExponents: exponents)
            let amount = try #require(legacy.columns.firstIndex(of: "amount"))
            let processed = try #require(legacy.columns.firstIndex(of: "processed_amount"))
            let printed = try await connection.query(
                "SELECT x.k, x.c\(amount), x.c\(processed) FROM (\(legacy.relation)) x ORDER BY 1",
                [PostgresArray([String]())]
            ).rows.map {
                try [
                    $0.decode(at: 0, as: String.self), $0.decode(at: 1, as: String.self),
                    $0.decode(at: 2, as: String.self),
                ]
            }
            #expect(
                printed == [
                    ["p1", "100000", "1500"], ["p2", "1500", "100000"], ["p3", "1230", "450000"],
                    ["p4", "1230", "1230"],
                ])
            let converted = try await MappingTestSupport.convertAll(query, with: converter, on: connection).map {
                let row = try #require($0.migrated).row
                return [row.key, row["amount"].description, row["processed_amount"].description]
            }
            #expect(converted == printed)
        }
    }

    // MARK: mapping check

    @Test func declaredExponentsThatChangeNothingAreWarnedAbout() async throws {
        let query = "SELECT 'c1'::text AS customer_id"
        let mapping = MappingFile(
            amounts: .major, currencyExponents: [currency("HUF"): 0],
            entities: [
                .init(entity: .customer, query: query, currencyExponents: [currency("ISK"): 2]),
                .init(
                    entity: .payment, query: "SELECT 'p1'::text AS payment_id",
                    currencyExponents: [currency("HUF"): 0, currency("ISK"): 2]),
            ])
        try await TestDatabase.withConnection { connection, _ in
            let findings = try await MappingChecker(mapping).check(connection).findings
                .filter { $0.code == .currencyExponentsIgnored }
            #expect(
                findings.map(\.description) == [
                    "warning: customer.currency_exponents: customer has no amounts: currency_exponents {ISK: 2} changes "
                        + "nothing here; remove it",
                    "warning: payment.currency_exponents: currency_exponents {HUF: 0, ISK: 2} changes nothing under "
                        + "amounts: major (a decimal of the major unit is the same whatever exponent the legacy system "
                        + "used): remove it, or set amounts: minor if these amounts are integers",
                    "warning: payment.currency_exponents: currency_exponents {HUF: 0} at the top of the file applies "
                        + "to no entity: only amounts: minor reads it, and every entity with amounts is amounts: major; "
                        + "remove it, or set amounts: minor where amounts are integers",
                ])
            // One entity in minor units is what the top-level declaration is for.
            var minor = mapping
            minor.amounts = .minor
            let quiet = try await MappingChecker(minor).check(connection).findings
                .filter { $0.code == .currencyExponentsIgnored }
            #expect(quiet.map(\.location) == ["customer.currency_exponents"])
        }
    }

    /// Payments under `minor`: 12 non-zero JPY amounts, every one a multiple of 100, read as
    /// yen 100 times too large if the library wrote hundredths. Fewer amounts, one that is not
    /// a multiple, a declaration, or a currency with 2 decimals: no warning.
    @Test func zeroDecimalAmountsThatAreAllMultiplesOf100AreWarnedAboutUntilDeclared() async throws {
        func payments(_ amounts: [Int], _ code: String = "JPY") -> String {
            let rows = amounts.enumerated().map { "('p\($0.offset)', \($0.element)::int8, '\(code)')" }
            return """
                SELECT v.payment_id, 'c1'::text AS customer_id, 'succeeded'::text AS status, v.amount, v.currency,
                       now() AS created_at, NULL::int8 AS processed_amount, NULL::text AS processed_currency
                FROM (VALUES \(rows.joined(separator: ", ")), ('z', 0::int8, '\(code)')) AS v (payment_id, amount, currency)
                """
        }
        let yen = [500, 1000, 1500, 2000, 2500, 3000, 9900, 12000, 15000, 30000, 60000, 150000]
        func warnings(_ query: String, _ exponents: [Currency: Int] = [:], on connection: Connection) async throws
            -> [String]
        {
            let mapping = MappingFile(
                amounts: .minor,
                entities: [.init(entity: .payment, query: query, currencyExponents: exponents)])
            return try await MappingChecker(mapping).check(connection).findings
                .filter { $0.code == .amountsOffByPowerOfTen }.map(\.description)
        }
        try await TestDatabase.withConnection { (connection: Connection, _: String) async throws -> Void in
            #expect(
                try await warnings(payments(yen), on: connection) == [
                    "warning: payment.currency_exponents.JPY: all 12 non-zero JPY amounts are multiples of 100 (500 to "
                        + "150000), read as 500 JPY to 150000 JPY (ISO 4217 gives JPY 0 decimal places). If the legacy "
                        + "system writes JPY in hundredths, as libraries that write every currency in cents do, they are "
                        + "100 times too large: declare currency_exponents: {JPY: 2} (5 JPY to 1500 JPY). If they are "
                        + "right, declare {JPY: 0} to say so"
                ])
            #expect(try await warnings(payments(Array(yen.prefix(9))), on: connection).isEmpty)
            #expect(try await warnings(payments(yen + [1550]), on: connection).isEmpty)
            #expect(try await warnings(payments(yen), [currency("JPY"): 0], on: connection).isEmpty)
            #expect(try await warnings(payments(yen), [currency("JPY"): 2], on: connection).isEmpty)
            #expect(try await warnings(payments(yen, "USD"), on: connection).isEmpty)
            #expect(try await warnings(payments(yen.map { -$0 }, "KRW"), on: connection).count == 1)
        }
    }
}
