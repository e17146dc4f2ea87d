import Billing
import Postgres
import TextFormats

/// The figures of `GET /customers/{id}/balance`, `/invoices/{id}`, `/reports/revenue` and
/// `/reports/aging`: the library calls `ledgerlift query` and `ledgerlift report` make, and
/// the JSON those commands print with `--format json` — the same keys in the same order, the
/// same decimal strings — so a script can move from the CLI to the API without a change (a
/// test holds the two equal on the reference fixture).
public struct ReadAnswers: Sendable {
    public let reader: ReadModelReader

    public init(readSchema: String = "ledgerlift_read") { reader = ReadModelReader(readSchema: readSchema) }

    /// A customer's balances (`nil` when the customer is unknown at `asOf`).
    public func balance(customer: String, asOf: PostgresTimestamp?, billingEntity: String?, in session: Session) throws
        -> JSONValue?
    {
        let balances = try reader.balances(customer: customer, asOf: asOf, billingEntity: billingEntity, in: session)
        // A customer quarantined by the backfill can still have migrated invoices.
        let known = try !balances.isEmpty || reader.row(.customer, key: customer, asOf: asOf, in: session) != nil
        guard known else { return nil }
        return .object(
            [("customer_id", .string(customer)), ("as_of", asOf.map { .string($0.iso8601) } ?? .null)]
                + (billingEntity.map { [("billing_entity", .string($0))] } ?? [])
                + [("balances", .array(balances.map(Self.json)))])
    }

    static func json(_ b: CustomerBalance) -> JSONValue {
        .object([
            ("currency", .string(b.currency)),
            ("receivables", .string(ReportAmount.decimal(b.receivables, currency: b.currency))),
            ("unapplied_credit", .string(ReportAmount.decimal(b.unappliedCredit, currency: b.currency))),
            ("balance", .string(ReportAmount.decimal(b.balance, currency: b.currency))),
            ("prepaid_credit", .string(ReportAmount.decimal(b.prepaidCredit, currency: b.currency))),
        ])
    }

    /// One invoice's canonical row (`nil` when unknown at `asOf`).
    public func invoice(_ invoiceID: String, asOf: PostgresTimestamp?, in session: Session) throws -> JSONValue? {
        guard let row = try reader.invoice(invoiceID, asOf: asOf, in: session) else { return nil }
        return .object([
            ("invoice_id", .string(invoiceID)), ("as_of", asOf.map { .string($0.iso8601) } ?? .null),
            ("invoice", Self.json(row, currency: row["currency"].textValue ?? "")),
        ])
    }

    /// A canonical row as `query invoice --format json` prints it: amounts as decimals in the
    /// row's currency, timestamps in ISO 8601, then the legacy-only `attributes`.
    public static func json(_ row: CanonicalRow, currency: String) -> JSONValue {
        var pairs = [(String, JSONValue)]()
        for column in row.entity.columns {
            let value = row[column.name]
            let json: JSONValue
            switch value {
            case .null: json = .null
            case .boolean(let b): json = .bool(b)
            case .integer(let i): json = .integer(i)
            case .amount(let minor): json = .string(ReportAmount.decimal(minor, currency: currency))
            case .timestamp(let t) where column.type == .timestamp: json = .string(t.iso8601)
            default: json = .string(value.description)
            }
            pairs.append((column.name, json))
        }
        pairs.append(
            (
                "attributes",
                .object(row.attributes.keys.sorted().map { ($0, row.attributes[$0]!.map { .string($0) } ?? .null) })
            ))
        return .object(pairs)
    }

    /// Revenue per month and currency, `from` to `to` inclusive.
    public func revenue(
        from: PostgresDate, to: PostgresDate, timeZone: ReportTimeZone, billingEntity: String?, in session: Session
    ) throws -> JSONValue {
        let months = try reader.revenue(
            from: from, to: to, timeZone: timeZone, billingEntity: billingEntity, in: session)
        return .array(
            months.map { m in
                .object([
                    ("month", .string(Self.monthLabel(m.month))), ("currency", .string(m.currency)),
                    ("invoiced", .string(ReportAmount.decimal(m.invoiced, currency: m.currency))),
                    ("collected", .string(ReportAmount.decimal(m.collected, currency: m.currency))),
                    ("prepaid_collected", .string(ReportAmount.decimal(m.prepaidCollected, currency: m.currency))),
                    ("refunded", .string(ReportAmount.decimal(m.refunded, currency: m.currency))),
                    ("credited", .string(ReportAmount.decimal(m.credited, currency: m.currency))),
                ])
            })
    }

    /// Receivables aging per customer and currency.
    public func aging(asOf: PostgresTimestamp?, timeZone: ReportTimeZone, billingEntity: String?, in session: Session)
        throws
        -> JSONValue
    {
        let rows = try reader.aging(asOf: asOf, timeZone: timeZone, billingEntity: billingEntity, in: session)
        func amount(_ minor: some BinaryInteger, _ currency: String) -> JSONValue {
            .string(ReportAmount.decimal(minor, currency: currency))
        }
        return .object([
            ("as_of", asOf.map { .string($0.iso8601) } ?? .null),
            ("time_zone", .string(timeZone.description)),
            ("billing_entity", billingEntity.map { .string($0) } ?? .null),
            (
                "customers",
                .array(
                    rows.map { r in
                        .object([
                            ("customer_id", .string(r.customerID)), ("currency", .string(r.currency)),
                            ("current", amount(r.current, r.currency)), ("d1_30", amount(r.days1to30, r.currency)),
                            ("d31_60", amount(r.days31to60, r.currency)), ("d61_90", amount(r.days61to90, r.currency)),
                            ("d90_plus", amount(r.over90, r.currency)), ("total", amount(r.total, r.currency)),
                        ])
                    })
            ),
        ])
    }

    /// `YYYY-MM` (ASCII digits, years 0001 to 9999) as the first day of the month.
    public static func month(_ text: String) -> PostgresDate? {
        let bytes = Array(text.utf8)
        guard bytes.count == 7, bytes[4] == UInt8(ascii: "-") else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for byte in bytes[range] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), (1...9999).contains(year), (1...12).contains(month)
        else { return nil }
        return PostgresDate(year: year, month: month, day: 1)
    }

    static func monthLabel(_ date: PostgresDate) -> String { String(date.description.prefix(7)) }
}
