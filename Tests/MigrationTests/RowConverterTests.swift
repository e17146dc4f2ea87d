import Mapping
import Billing
import Migration
import Postgres
import Testing

/// A clean invoice row as the reference mapping's query returns it (legacy `timestamp`
/// columns, `numeric` amounts, an extra `tax_rate` column).
private let invoiceCells: [(String, PostgresType, String?)] = [
    ("invoice_id", .text, "900102"),
    ("customer_id", .text, "9001"),
    ("subscription_id", .text, nil),
    ("number", .text, "LL9001-0002"),
    ("status", .text, "open"),
    ("currency", .bpchar, "USD"),
    ("subtotal", .numeric, "12.30"),
    ("discount", .numeric, "0.00"),
    ("tax", .numeric, "0.00"),
    ("total", .numeric, "12.30"),
    ("amount_paid", .numeric, "0.00"),
    ("amount_due", .numeric, "12.30"),
    ("period_start", .timestamp, nil),
    ("period_end", .timestamp, nil),
    ("issued_on", .date, "2025-10-10"),
    ("due_on", .date, "2025-11-09"),
    ("finalized_at", .timestamp, "2025-10-10 11:00:00"),
    ("paid_at", .timestamp, nil),
    ("voided_at", .timestamp, nil),
    ("created_at", .timestamp, "2025-10-10 10:00:00"),
    ("updated_at", .timestamp, "2025-10-10 11:00:00.123456"),
    ("tax_rate", .float8, "0.19"),
]

private let invoices = RowConverter(entity: .invoice, amounts: .major)

private func invoice(_ changes: [(String, PostgresType, String?)] = [], removing: Set<String> = []) -> Row {
    makeRow(invoiceCells, changing: changes, removing: removing)
}

private func utc(_ y: Int, _ mo: Int, _ d: Int, _ h: Int = 0, _ mi: Int = 0, _ s: Int = 0, _ us: Int = 0)
    -> PostgresTimestamp
{
    PostgresTimestamp(year: y, month: mo, day: d, hour: h, minute: mi, second: s, microsecond: us)!
}

@Suite("RowConverter: one legacy row in, a canonical row or a quarantine record out")
struct RowConverterTests {
    // MARK: Clean rows

    @Test func aCleanInvoiceRowBecomesExactCanonicalValuesWithExtraColumnsAsAttributes() throws {
        let migrated = try #require(invoices.convert(invoice()).migrated)
        let row = migrated.row
        #expect(row.entity == .invoice)
        #expect(row.key == "900102")
        #expect(row["customer_id"] == .text("9001"))
        #expect(row["subscription_id"] == .null)
        #expect(row["status"] == .text("open"))
        #expect(row["currency"] == .text("USD"))
        #expect(row["subtotal"] == .amount(1230))
        #expect(row["discount"] == .amount(0))
        #expect(row["total"] == .amount(1230))
        #expect(row["amount_due"] == .amount(1230))
        #expect(row["issued_on"] == .date(PostgresDate(year: 2025, month: 10, day: 10)!))
        #expect(row["finalized_at"] == .timestamp(utc(2025, 10, 10, 11)))
        #expect(row["updated_at"] == .timestamp(utc(2025, 10, 10, 11, 0, 0, 123_456)))
        #expect(row["paid_at"] == .null)
        #expect(row.attributes == ["tax_rate": "0.19"])
        #expect(migrated.validFrom == nil)
        #expect(migrated.inferences.isEmpty)
    }

    @Test func amountsUseTheRowCurrencysExponent() throws {
        func amounts(_ currency: String, _ value: String, _ type: PostgresType = .numeric) -> [(
            String, PostgresType, String?
        )] {
            [("currency", .bpchar, currency)]
                + ["subtotal", "total", "amount_due"].map { ($0, type, value) }
                + ["discount", "tax", "amount_paid"].map { ($0, type, "0") }
        }
        let yen = try #require(invoices.convert(invoice(amounts("JPY", "5500"))).migrated)
        #expect(yen.row["total"] == .amount(5500))
        let dinar = try #require(invoices.convert(invoice(amounts("KWD", "14.875"))).migrated)
        #expect(dinar.row["total"] == .amount(14875))
        #expect(dinar.row["discount"] == .amount(0))
        // Trailing zeros beyond the exponent do not change the value.
        let padded = try #require(invoices.convert(invoice([("total", .numeric, "12.3000")])).migrated)
        #expect(padded.row["total"] == .amount(1230))
        let negative = try #require(invoices.convert(invoice([("discount", .numeric, "-0.05")])).migrated)
        #expect(negative.row["discount"] == .amount(-5))
    }

    @Test func minorAmountsMustBeWholeNumbers() throws {
        let converter = RowConverter(entity: .invoice, amounts: .minor)
        let cents: [(String, PostgresType, String?)] =
            ["subtotal", "total", "amount_due"].map { ($0, .int8, "1230") }
            + ["discount", "tax", "amount_paid"].map { ($0, .int8, "0") }
        let whole = try #require(converter.convert(invoice(cents)).migrated)
        #expect(whole.row["total"] == .amount(1230))
        #expect(whole.row["subtotal"] == .amount(1230))
        let wholeNumeric = try #require(converter.convert(invoice(cents + [("total", .numeric, "1230.00")])).migrated)
        #expect(wholeNumeric.row["total"] == .amount(1230))
        let fraction = try #require(converter.convert(invoice(cents + [("total", .numeric, "1230.5")])).quarantine)
        #expect(fraction.reason == .amountNotMinorUnit)
        #expect(
            fraction.detail == "total 1230.5 is not a whole number of minor units (amounts: minor); it is never rounded"
        )
    }

    @Test func timestampsWithoutTimeZoneAreReadAsUTC() throws {
        let naive = try #require(
            invoices.convert(invoice([("created_at", .timestamp, "2025-06-16 09:14:00")])).migrated)
        let utcZoned = try #require(
            invoices.convert(invoice([("created_at", .timestamptz, "2025-06-16 09:14:00+00")])).migrated)
        let offset = try #require(
            invoices.convert(invoice([("created_at", .timestamptz, "2025-06-16 11:14:00+02")])).migrated)
        #expect(naive.row["created_at"] == .timestamp(utc(2025, 6, 16, 9, 14)))
        #expect(utcZoned.row["created_at"] == naive.row["created_at"])
        #expect(offset.row["created_at"] == naive.row["created_at"])
    }

    @Test func unitAmountsStayExactDecimals() throws {
        let lines = RowConverter(entity: .invoiceLine, amounts: .major)
        let cells: [(String, PostgresType, String?)] = [
            ("invoice_line_id", .text, "9017022"), ("invoice_id", .text, "901702"), ("kind", .text, "usage"),
            ("description", .text, "333 API calls"), ("quantity", .int4, "333"), ("unit_amount", .numeric, "0.0125"),
            ("amount", .numeric, "4.16"), ("currency", .bpchar, "USD"), ("period_start", .timestamp, nil),
            ("period_end", .timestamp, nil), ("proration", .bool, "f"),
            ("created_at", .timestamp, "2025-10-01 00:00:00"),
        ]
        let line = try #require(lines.convert(makeRow(cells)).migrated)
        #expect(line.row["unit_amount"] == .decimal("0.0125"))
        #expect(line.row["amount"] == .amount(416))
        #expect(line.row["quantity"] == .decimal("333"))
        #expect(line.row["proration"] == .boolean(false))
        let credit = try #require(
            lines.convert(makeRow(cells, changing: [("unit_amount", .numeric, "-24.5000")])).migrated)
        #expect(credit.row["unit_amount"] == .decimal("-24.5000"))
    }

    /// Under `amounts: minor` a unit price is read in minor units like the amounts: a cents
    /// column returned as `unit_amount` becomes 12.00, not a price of 1200.00 on a 36.00 line.
    @Test func unitAmountsFollowMinorAmountsExactlyWithTheCurrencysExponent() throws {
        let lines = RowConverter(entity: .invoiceLine, amounts: .minor)
        let cells: [(String, PostgresType, String?)] = [
            ("invoice_line_id", .text, "1"), ("invoice_id", .text, "1"), ("kind", .text, "subscription"),
            ("quantity", .int4, "3"), ("unit_amount", .int8, "1200"), ("amount", .int8, "3600"),
            ("currency", .bpchar, "USD"), ("proration", .bool, "f"), ("created_at", .timestamp, "2025-10-01 00:00:00"),
        ]
        let line = try #require(lines.convert(makeRow(cells)).migrated)
        #expect(line.row["unit_amount"] == .decimal("12.00"))
        #expect(line.row["amount"] == .amount(3600))
        // Every digit is kept, the scale grows by the exponent: nothing is rounded.
        let cases: [(currency: String, minor: String, major: String)] = [
            ("USD", "1200.5", "12.005"), ("USD", "5", "0.05"), ("USD", "-5", "-0.05"), ("USD", "0", "0.00"),
            ("JPY", "1200", "1200"), ("KWD", "14875", "14.875"), ("CLF", "1", "0.0001"),
            ("USD", "1.2500", "0.012500"),
        ]
        for example in cases {
            let row = makeRow(
                cells,
                changing: [("unit_amount", .numeric, example.minor), ("currency", .bpchar, example.currency)])
            let converted = try #require(lines.convert(row).migrated, "\(example)")
            #expect(converted.row["unit_amount"] == .decimal(example.major), "\(example)")
        }
        // Under `amounts: major` the same column is taken as it is.
        let major = try #require(
            RowConverter(entity: .invoiceLine, amounts: .major).convert(
                makeRow(cells, changing: [("amount", .numeric, "36.00"), ("unit_amount", .numeric, "12.00")])
            ).migrated)
        #expect(major.row["unit_amount"] == .decimal("12.00"))
    }

    @Test func extraColumnsAreCarriedVerbatimIncludingNull() throws {
        let row = invoice([
            ("tax_rate", .float8, nil), ("legacy_note", .text, " spaced  "), ("legacy_flag", .int2, "7"),
        ])
        let migrated = try #require(invoices.convert(row).migrated)
        let expected: [String: String?] = ["tax_rate": nil, "legacy_note": " spaced  ", "legacy_flag": "7"]
        #expect(migrated.row.attributes == expected)
    }

    @Test func anAbsentNullableColumnReadsAsNull() throws {
        let migrated = try #require(invoices.convert(invoice(removing: ["number", "voided_at"])).migrated)
        #expect(migrated.row["number"] == .null)
        #expect(migrated.row["voided_at"] == .null)
    }

    @Test func aNullCurrencyTakesTheDefaultAndIsNotedAsInferred() throws {
        let converter = RowConverter(entity: .invoice, amounts: .major, defaultCurrency: .eur)
        let migrated = try #require(converter.convert(invoice([("currency", .bpchar, nil)])).migrated)
        #expect(migrated.row["currency"] == .text("EUR"))
        #expect(migrated.row["total"] == .amount(1230))
        #expect(migrated.inferences.map(\.column) == ["currency"])
        #expect(migrated.inferences.map(\.value) == ["EUR"])
        #expect(migrated.inferences[0].detail == "currency is NULL in the legacy row; default_currency EUR applied")
        #expect(migrated.isInferred)
        // A currency that is there is never replaced by the default.
        let own = try #require(converter.convert(invoice()).migrated)
        #expect(own.row["currency"] == .text("USD"))
        #expect(!own.isInferred)
    }

    @Test func aCustomerWithoutCurrencyMigratesWithNullCurrency() throws {
        let customers = RowConverter(entity: .customer, amounts: .major)
        let row = makeRow([
            ("customer_id", .text, "29"), ("email", .text, "lead@example.com"), ("name", .text, nil),
            ("currency", .bpchar, nil), ("created_at", .timestamp, "2024-02-01 00:00:00"),
            ("updated_at", .timestamp, "2024-02-01 00:00:00"), ("archived_at", .timestamp, "2024-03-01 00:00:00"),
        ])
        let migrated = try #require(customers.convert(row).migrated)
        #expect(migrated.row["currency"] == .null)
        #expect(migrated.row["archived_at"] == .timestamp(utc(2024, 3, 1)))
    }

    @Test func aHistoryRowYieldsItsValidFromWhichIsNotAnAttribute() throws {
        let subscriptions = RowConverter(entity: .subscription)
        let cells: [(String, PostgresType, String?)] = [
            ("subscription_id", .text, "11"), ("customer_id", .text, "1"), ("plan_id", .text, "1"),
            ("status", .text, "trialing"), ("quantity", .int4, "1"), ("started_at", .timestamp, "2025-06-02 09:14:00"),
            ("trial_ends_at", .timestamp, "2025-06-16 09:14:00"), ("current_period_start", .timestamp, nil),
            ("current_period_end", .timestamp, nil), ("cancel_at_period_end", .bool, "f"),
            ("canceled_at", .timestamp, nil),
            ("ended_at", .timestamp, nil), ("previous_subscription_id", .text, nil),
            ("created_at", .timestamp, "2025-06-02 09:14:00"), ("updated_at", .timestamp, nil),
            ("valid_from", .timestamp, "2025-06-02 09:14:00"),
        ]
        let version = try #require(subscriptions.convertHistory(makeRow(cells)).migrated)
        #expect(version.validFrom == utc(2025, 6, 2, 9, 14))
        #expect(version.validTo == nil)
        #expect(version.row.attributes.isEmpty)
        #expect(version.row["status"] == .text("trialing"))

        // valid_to, when the query returns it, is when the version was replaced.
        let ended = try #require(
            subscriptions.convertHistory(makeRow(cells + [("valid_to", .timestamp, "2025-06-16 09:14:00")])).migrated)
        #expect(ended.validTo == utc(2025, 6, 16, 9, 14))
        #expect(ended.row.attributes.isEmpty)
        let openEnded = try #require(
            subscriptions.convertHistory(makeRow(cells + [("valid_to", .timestamp, nil)])).migrated)
        #expect(openEnded.validTo == nil)
        let badEnd = try #require(
            subscriptions.convertHistory(makeRow(cells + [("valid_to", .timestamp, "infinity")])).quarantine)
        #expect(badEnd.reason == .valueInvalid)
        #expect(badEnd.column == "valid_to")
        // In a current row, valid_to is not special (the checker refuses it there).
        #expect(
            subscriptions.convert(makeRow(cells + [("valid_to", .timestamp, nil)])).migrated?.row.attributes.keys
                .sorted()
                == ["valid_from", "valid_to"])

        let noStart = try #require(
            subscriptions.convertHistory(makeRow(cells, changing: [("valid_from", .timestamp, nil)])).quarantine)
        #expect(noStart.reason == .requiredValueMissing)
        #expect(noStart.column == "valid_from")
        #expect(noStart.detail == "valid_from is NULL: a history row needs the time its version became valid")
        let absent = try #require(subscriptions.convertHistory(makeRow(cells, removing: ["valid_from"])).quarantine)
        #expect(absent.reason == .requiredValueMissing)
        #expect(absent.detail == "the history query returns no valid_from column")
    }

    // MARK: Quarantine, one test per reason

    @Test func anInexactAmountIsQuarantinedNeverRounded() throws {
        let usd = try #require(invoices.convert(invoice([("total", .numeric, "12.345")])).quarantine)
        #expect(usd.entity == .invoice)
        #expect(usd.key == "900102")
        #expect(usd.reason == .amountNotMinorUnit)
        #expect(usd.reason.rawValue == "amount_not_minor_unit")
        #expect(usd.column == "total")
        #expect(
            usd.detail
                == "total 12.345 is not a whole number of USD minor units (USD has 2 decimal places); it is never rounded"
        )
        #expect(usd.raw["total"] == "12.345")
        #expect(usd.raw["paid_at"] == .some(nil))
        #expect(usd.raw.count == invoiceCells.count)

        let yen = try #require(
            invoices.convert(invoice([("currency", .bpchar, "JPY"), ("subtotal", .numeric, "1500.5")])).quarantine)
        #expect(yen.reason == .amountNotMinorUnit)
        #expect(
            yen.detail
                == "subtotal 1500.5 is not a whole number of JPY minor units (JPY has 0 decimal places); it is never rounded"
        )
    }

    @Test func anAmountBeyondInt64IsQuarantinedAsOverflow() throws {
        let huge = try #require(invoices.convert(invoice([("total", .numeric, "99999999999999999999.99")])).quarantine)
        #expect(huge.reason == .amountOverflow)
        #expect(
            huge.detail
                == "total 99999999999999999999.99 USD does not fit in 64-bit minor units (at most 92233720368547758.07 USD)"
        )
        // The largest amount that fits migrates.
        let largest = try #require(invoices.convert(invoice([("total", .numeric, "92233720368547758.07")])).migrated)
        #expect(largest.row["total"] == .amount(.max))
    }

    @Test func aNaNAmountIsQuarantinedAsNotANumber() throws {
        let nan = try #require(invoices.convert(invoice([("tax", .numeric, "NaN")])).quarantine)
        #expect(nan.reason == .amountNotANumber)
        #expect(nan.detail == "tax \"NaN\" is not a number")
        let text = try #require(invoices.convert(invoice([("tax", .text, "1,000.00")])).quarantine)
        #expect(text.reason == .amountNotANumber)
    }

    @Test func aNullCurrencyWithoutDefaultIsQuarantinedAsMissing() throws {
        let missing = try #require(invoices.convert(invoice([("currency", .bpchar, nil)])).quarantine)
        #expect(missing.reason == .currencyMissing)
        #expect(missing.column == "currency")
        #expect(missing.detail == "currency is NULL and no default_currency applies to invoice")
        let absent = try #require(invoices.convert(invoice(removing: ["currency"])).quarantine)
        #expect(absent.reason == .currencyMissing)
        #expect(absent.detail == "the query returns no currency column and no default_currency applies to invoice")
    }

    @Test func anUnknownOrMalformedCurrencyIsQuarantinedAsUnknown() throws {
        let unknown = try #require(invoices.convert(invoice([("currency", .bpchar, "XXY")])).quarantine)
        #expect(unknown.reason == .currencyUnknown)
        #expect(
            unknown.detail == "currency \"XXY\" is not a usable ISO 4217 code: \"XXY\" is not an ISO 4217 currency code"
        )
        // Never case-folded or trimmed: a lowercase or padded code is a data-quality signal.
        for code in ["usd", "US ", "XAU"] {
            let bad = try #require(invoices.convert(invoice([("currency", .bpchar, code)])).quarantine)
            #expect(bad.reason == .currencyUnknown, "\(code)")
        }
        // A default currency does not paper over a bad code.
        let withDefault = RowConverter(entity: .invoice, defaultCurrency: .usd)
        #expect(withDefault.convert(invoice([("currency", .bpchar, "XXY")])).quarantine?.reason == .currencyUnknown)
    }

    @Test func aStatusOutsideTheVocabularyIsQuarantinedNamingTheValue() throws {
        let code = try #require(invoices.convert(invoice([("status", .text, "unknown:7")])).quarantine)
        #expect(code.reason == .statusUnknown)
        #expect(code.column == "status")
        #expect(code.detail == "status \"unknown:7\" is not one of draft, open, paid, void, uncollectible")
        // Case matters: the vocabulary is exact.
        #expect(invoices.convert(invoice([("status", .text, "Paid")])).quarantine?.reason == .statusUnknown)

        let plans = RowConverter(entity: .plan)
        let plan = makeRow([
            ("plan_id", .text, "1"), ("code", .text, "starter"), ("name", .text, "Starter"),
            ("amount", .numeric, "19.00"),
            ("currency", .bpchar, "USD"), ("interval", .text, "fortnight"), ("trial_days", .int4, "14"),
            ("archived", .bool, "f"), ("created_at", .timestamp, "2023-01-01 00:00:00"),
            ("updated_at", .timestamp, nil),
        ])
        let interval = try #require(plans.convert(plan).quarantine)
        #expect(interval.reason == .statusUnknown)
        #expect(interval.detail == "interval \"fortnight\" is not one of day, week, month, year")
    }

    @Test func aValueThatDoesNotFitItsColumnIsQuarantinedAsInvalid() throws {
        let infinite = try #require(invoices.convert(invoice([("created_at", .timestamp, "infinity")])).quarantine)
        #expect(infinite.reason == .valueInvalid)
        #expect(infinite.column == "created_at")
        #expect(infinite.detail == "created_at infinity is not a point in time")
        let malformed = try #require(invoices.convert(invoice([("finalized_at", .text, "yesterday")])).quarantine)
        #expect(malformed.reason == .valueInvalid)
        #expect(malformed.detail == "finalized_at \"yesterday\" is not a timestamp")
        let date = try #require(invoices.convert(invoice([("due_on", .text, "2025-02-30")])).quarantine)
        #expect(date.reason == .valueInvalid)
        #expect(date.detail == "due_on \"2025-02-30\" is not a date (YYYY-MM-DD)")

        let subscriptions = RowConverter(entity: .subscription)
        let cells: [(String, PostgresType, String?)] = [
            ("subscription_id", .text, "11"), ("customer_id", .text, "1"), ("plan_id", .text, "1"),
            ("status", .text, "active"), ("quantity", .text, "three"),
            ("started_at", .timestamp, "2025-06-02 09:14:00"),
            ("cancel_at_period_end", .bool, "f"), ("created_at", .timestamp, "2025-06-02 09:14:00"),
        ]
        let quantity = try #require(subscriptions.convert(makeRow(cells)).quarantine)
        #expect(quantity.reason == .valueInvalid)
        #expect(quantity.detail == "quantity \"three\" is not a 64-bit integer")
        let flag = try #require(
            subscriptions.convert(
                makeRow(cells, changing: [("quantity", .int4, "1"), ("cancel_at_period_end", .text, "maybe")])
            ).quarantine)
        #expect(flag.reason == .valueInvalid)
        #expect(flag.detail == "cancel_at_period_end \"maybe\" is not a boolean")
    }

    @Test func aNullOrAbsentRequiredColumnIsQuarantinedAsMissing() throws {
        let null = try #require(invoices.convert(invoice([("customer_id", .text, nil)])).quarantine)
        #expect(null.reason == .requiredValueMissing)
        #expect(null.column == "customer_id")
        #expect(null.detail == "customer_id is NULL, but every invoice needs one")
        let absent = try #require(invoices.convert(invoice(removing: ["created_at"])).quarantine)
        #expect(absent.reason == .requiredValueMissing)
        #expect(absent.detail == "the query returns no created_at column, which every invoice needs")
    }

    @Test func aRowWithoutKeyIsQuarantinedUnderTheNullKey() throws {
        let null = try #require(invoices.convert(invoice([("invoice_id", .text, nil)])).quarantine)
        #expect(null.reason == .keyMissing)
        #expect(null.key == "<null>")
        #expect(null.key == Quarantine.nullKey)
        #expect(null.detail == "invoice_id (the key) is NULL")
        let empty = try #require(invoices.convert(invoice([("invoice_id", .text, "")])).quarantine)
        #expect(empty.reason == .keyMissing)
        #expect(empty.key == "<null>")
        let absent = try #require(invoices.convert(invoice(removing: ["invoice_id"])).quarantine)
        #expect(absent.reason == .keyMissing)
        #expect(absent.detail == "the query returns no invoice_id column (the key of invoice)")
    }

    @Test func theFirstProblemDecidesKeyThenCurrencyThenColumnsInOrder() throws {
        let all = invoice([("invoice_id", .text, nil), ("currency", .bpchar, "XXY"), ("total", .numeric, "1.234")])
        #expect(invoices.convert(all).quarantine?.reason == .keyMissing)
        let currencyAndAmount = invoice([("currency", .bpchar, "XXY"), ("total", .numeric, "1.234")])
        #expect(invoices.convert(currencyAndAmount).quarantine?.reason == .currencyUnknown)
        let statusThenAmount = invoice([("status", .text, "lost"), ("total", .numeric, "1.234")])
        #expect(invoices.convert(statusThenAmount).quarantine?.reason == .statusUnknown)
    }

    @Test func everyReasonCodeIsStableSnakeCase() {
        #expect(
            Quarantine.Reason.allCases.map(\.rawValue) == [
                "key_missing", "required_value_missing", "currency_missing", "currency_unknown",
                "amount_not_minor_unit",
                "amount_overflow", "amount_not_a_number", "status_unknown", "value_invalid",
            ])
    }

    @Test func theQuarantineRecordRendersItsRawRowAsSortedJSON() throws {
        let record = try #require(invoices.convert(invoice([("total", .numeric, "12.345")])).quarantine)
        let json = record.rawJSON
        #expect(
            json.hasPrefix(
                #"{"amount_due":"12.30","amount_paid":"0.00","created_at":"2025-10-10 10:00:00","currency":"USD","#))
        #expect(json.contains(#""paid_at":null"#))
        #expect(record.description == "invoice 900102: amount_not_minor_unit: " + record.detail)
    }
}
