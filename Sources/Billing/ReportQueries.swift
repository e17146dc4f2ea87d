import Postgres

/// One month of `revenue_by_month`, in minor units of `currency`.
public struct RevenueMonth: Sendable, Hashable {
    /// The first day of the month.
    public var month: PostgresDate
    public var currency: String
    /// Σ `total` of the invoices finalized in the month, except void ones.
    public var invoiced: Int64
    /// Σ `amount` of the payments that succeeded in the month.
    public var collected: Int64
    /// Σ `amount` of the refunds that succeeded in the month.
    public var refunded: Int64
    /// Σ `total` of the credit notes issued in the month, except void ones.
    public var credited: Int64

    public init(
        month: PostgresDate, currency: String, invoiced: Int64, collected: Int64, refunded: Int64, credited: Int64
    ) {
        self.month = month
        self.currency = currency
        self.invoiced = invoiced
        self.collected = collected
        self.refunded = refunded
        self.credited = credited
    }
}

/// One month of `mrr_by_month`, in minor units of `currency`.
public struct MRRMonth: Sendable, Hashable {
    public var month: PostgresDate
    public var currency: String
    /// MRR of customers who had none at the end of the month before.
    public var new: Int64
    /// Increases of customers who had MRR before and still have it.
    public var expansion: Int64
    /// Decreases (≤ 0) of customers who had MRR before and still have some.
    public var contraction: Int64
    /// MRR lost (≤ 0) from customers who have none left at the end of the month.
    public var churn: Int64
    /// MRR at the end of the month: the previous month's plus the four movements.
    public var mrr: Int64

    public init(
        month: PostgresDate, currency: String, new: Int64, expansion: Int64, contraction: Int64, churn: Int64, mrr: Int64
    ) {
        self.month = month
        self.currency = currency
        self.new = new
        self.expansion = expansion
        self.contraction = contraction
        self.churn = churn
        self.mrr = mrr
    }
}

/// Receivables of one customer in one currency by days past due, in minor units.
public struct AgingRow: Sendable, Hashable {
    public var customerID: String
    public var currency: String
    /// Not yet due (or with no due date).
    public var current: Int64
    public var days1to30: Int64
    public var days31to60: Int64
    public var days61to90: Int64
    public var over90: Int64

    public init(
        customerID: String, currency: String, current: Int64, days1to30: Int64, days31to60: Int64, days61to90: Int64,
        over90: Int64
    ) {
        self.customerID = customerID
        self.currency = currency
        self.current = current
        self.days1to30 = days1to30
        self.days31to60 = days31to60
        self.days61to90 = days61to90
        self.over90 = over90
    }

    /// The sum of the buckets, exact: five `Int64` buckets can exceed `Int64`, and a billing
    /// total must never wrap around (it used to, with `&+`). Format it with
    /// ``ReportAmount/decimal(_:currency:)``.
    public var total: Int128 {
        Int128(current) + Int128(days1to30) + Int128(days31to60) + Int128(days61to90) + Int128(over90)
    }
}

extension ReadModelReader {
    /// `revenue_by_month` for the months from `from` to `to` (inclusive; any day of a month
    /// stands for the month), sorted by month and currency.
    public func revenue(from: PostgresDate, to: PostgresDate, in session: Session) throws -> [RevenueMonth] {
        try requireBuilt(session)
        return try session.query(
            """
            SELECT month, currency::text, invoiced::int8, collected::int8, refunded::int8, credited::int8
            FROM \(schema.qualified("revenue_by_month"))
            WHERE month >= date_trunc('month', $1::date)::date AND month <= date_trunc('month', $2::date)::date
            ORDER BY month, currency
            """, [from, to]
        ).rows.map { row in
            RevenueMonth(
                month: try row.decode(at: 0), currency: try row.decode(at: 1), invoiced: try row.decode(at: 2),
                collected: try row.decode(at: 3), refunded: try row.decode(at: 4), credited: try row.decode(at: 5))
        }
    }

    /// MRR and its movements for every month from `from` to `to` (inclusive), per currency:
    /// the company's (`mrr_by_month`), or one customer's (from `mrr_movements`), sorted by
    /// month and currency.
    ///
    /// Every month asked for has a row for each currency that had MRR by then, whether or not
    /// anything moved: a month without movements carries the MRR of the month before (zero
    /// movements), so a reader never has to carry it forward by hand. Months before a
    /// currency's first movement have no row for it.
    ///
    /// A customer's movement in a month is one of new (it had no MRR in the currency before),
    /// churn (it has none left), expansion or contraction, as in `mrr_by_month`, whose
    /// movements are these summed over customers.
    public func mrr(
        from: PostgresDate, to: PostgresDate, customer: String? = nil, in session: Session
    ) throws -> [MRRMonth] {
        try requireBuilt(session)
        // The monthly rows the fill starts from: month, currency, the four movements, mrr.
        let source =
            customer == nil
            ? #"SELECT month, currency, "new", expansion, contraction, churn, mrr FROM \#(schema.qualified("mrr_by_month"))"#
            : """
            SELECT month, currency,
                   CASE WHEN mrr_before = 0 THEN mrr_after ELSE 0 END AS "new",
                   CASE WHEN mrr_before <> 0 AND mrr_after > mrr_before THEN mrr_after - mrr_before ELSE 0 END AS expansion,
                   CASE WHEN mrr_after <> 0 AND mrr_after < mrr_before THEN mrr_after - mrr_before ELSE 0 END AS contraction,
                   CASE WHEN mrr_before <> 0 AND mrr_after = 0 THEN -mrr_before ELSE 0 END AS churn,
                   mrr_after AS mrr
            FROM \(schema.qualified("mrr_movements")) WHERE customer_id = $3
            """
        var parameters: [(any PostgresEncodable)?] = [from, to]
        if let customer { parameters.append(customer) }
        return try session.query(
            """
            WITH source AS (\(source)),
            months AS (
                SELECT gs::date AS month
                FROM generate_series(date_trunc('month', $1::date::timestamp), date_trunc('month', $2::date::timestamp), interval '1 month') AS gs
            ),
            currencies AS (
                SELECT currency, min(month) AS first FROM source
                WHERE month <= date_trunc('month', $2::date)::date GROUP BY currency
            )
            SELECT m.month, c.currency::text, coalesce(s."new", 0)::bigint, coalesce(s.expansion, 0)::bigint,
                   coalesce(s.contraction, 0)::bigint, coalesce(s.churn, 0)::bigint,
                   coalesce(s.mrr, (
                       SELECT last.mrr FROM source AS last
                       WHERE last.currency = c.currency AND last.month < m.month ORDER BY last.month DESC LIMIT 1
                   ), 0)::bigint
            FROM months AS m JOIN currencies AS c ON m.month >= c.first
            LEFT JOIN source AS s ON s.month = m.month AND s.currency = c.currency
            ORDER BY m.month, c.currency
            """, parameters
        ).rows.map { row in
            MRRMonth(
                month: try row.decode(at: 0), currency: try row.decode(at: 1), new: try row.decode(at: 2),
                expansion: try row.decode(at: 3), contraction: try row.decode(at: 4), churn: try row.decode(at: 5),
                mrr: try row.decode(at: 6))
        }
    }

    /// Receivables aging per customer and currency: now (the `ar_aging` view), or as of a
    /// business time (the invoice versions valid then, aged by that instant's UTC date).
    ///
    /// - Returns: rows sorted by customer and currency.
    public func aging(asOf: PostgresTimestamp? = nil, in session: Session) throws -> [AgingRow] {
        try requireBuilt(session)
        let rows: [Row]
        if let asOf {
            rows = try session.query(
                """
                SELECT customer_id, currency::text,
                       coalesce(sum(amount_due) FILTER (WHERE days_past_due IS NULL OR days_past_due <= 0), 0)::bigint,
                       coalesce(sum(amount_due) FILTER (WHERE days_past_due BETWEEN 1 AND 30), 0)::bigint,
                       coalesce(sum(amount_due) FILTER (WHERE days_past_due BETWEEN 31 AND 60), 0)::bigint,
                       coalesce(sum(amount_due) FILTER (WHERE days_past_due BETWEEN 61 AND 90), 0)::bigint,
                       coalesce(sum(amount_due) FILTER (WHERE days_past_due > 90), 0)::bigint
                FROM (
                    SELECT customer_id, coalesce(currency, 'XXX')::char(3) AS currency, coalesce(amount_due, 0) AS amount_due,
                           ($1::timestamptz AT TIME ZONE 'UTC')::date - due_on AS days_past_due
                    FROM \(schema.history(.invoice))
                    WHERE valid_from <= $1 AND (valid_to IS NULL OR valid_to > $1)
                      AND status IN ('open', 'uncollectible') AND customer_id IS NOT NULL
                ) AS open_invoices
                GROUP BY customer_id, currency ORDER BY customer_id, currency
                """, [asOf]
            ).rows
        } else {
            rows = try session.query(
                """
                SELECT customer_id, currency::text, "current", d1_30, d31_60, d61_90, d90_plus
                FROM \(schema.qualified("ar_aging")) ORDER BY customer_id, currency
                """
            ).rows
        }
        return try rows.map { row in
            AgingRow(
                customerID: try row.decode(at: 0), currency: try row.decode(at: 1), current: try row.decode(at: 2),
                days1to30: try row.decode(at: 3), days31to60: try row.decode(at: 4), days61to90: try row.decode(at: 5),
                over90: try row.decode(at: 6))
        }
    }
}

/// Amounts of the read models as decimal text.
public enum ReportAmount {
    /// `minorUnits` of the currency `code` as a decimal in the currency's exponent (`12.30`,
    /// `1500`, `1.250`); for a code that is not an ISO 4217 currency with a minor unit (such
    /// as `XXX`, used for rows without a currency), the bare minor units.
    ///
    /// Any width of integer, so exact sums beyond `Int64` (``AgingRow/total``, totals across
    /// customers) print exactly too.
    public static func decimal(_ minorUnits: some BinaryInteger, currency code: String) -> String {
        let text = String(minorUnits)
        guard let currency = try? Currency(code: code) else { return text }
        let negative = text.hasPrefix("-")
        return Money.decimalString(
            negative: negative, digits: String(negative ? text.dropFirst() : text[...]),
            exponent: currency.minorUnitExponent)
    }
}
