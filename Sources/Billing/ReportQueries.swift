import Postgres

/// One month of `revenue_by_month`, in minor units of `currency`.
public struct RevenueMonth: Sendable, Hashable {
    /// The first day of the month.
    public var month: PostgresDate
    public var currency: String
    /// Σ `total` of the invoices finalized in the month, except void ones.
    public var invoiced: Int64
    /// Σ `amount` of the payments that succeeded in the month, except what they paid towards
    /// credit invoices (``prepaidCollected``).
    public var collected: Int64
    /// What payments that succeeded in the month paid towards credit invoices (prepaid
    /// top-ups): cash received for credit the customer has yet to use — a liability, not
    /// revenue. `collected + prepaidCollected` is all the cash collected.
    public var prepaidCollected: Int64
    /// Σ `amount` of the refunds that succeeded in the month.
    public var refunded: Int64
    /// Σ `total` of the credit notes issued in the month, except void ones.
    public var credited: Int64

    public init(
        month: PostgresDate, currency: String, invoiced: Int64, collected: Int64, refunded: Int64, credited: Int64,
        prepaidCollected: Int64 = 0
    ) {
        self.month = month
        self.currency = currency
        self.invoiced = invoiced
        self.collected = collected
        self.prepaidCollected = prepaidCollected
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

/// The time zone a report buckets months (and ages receivables) in. The materialized read
/// models are in UTC; any other zone is computed when the report is read.
public enum ReportTimeZone: Sendable, Hashable, CustomStringConvertible {
    /// UTC: the materialized tables.
    case utc
    /// Each row in its customer's `time_zone`, else the zone of the customer's billing
    /// entity, else UTC.
    case customer
    /// Each row in the `time_zone` of its billing entity (the row's own `billing_entity_id`,
    /// else its customer's), else UTC. MRR, which is a customer's, closes its months in the
    /// zone of the customer's billing entity.
    case billingEntity
    /// One IANA zone for every row (`Europe/Paris`), checked against `pg_timezone_names`.
    case named(String)

    /// `utc`, `customer`, `billing-entity`, or an IANA zone name (not checked here).
    public init(_ text: String) {
        switch text.lowercased() {
        case "utc": self = .utc
        case "customer": self = .customer
        case "billing-entity": self = .billingEntity
        default: self = .named(text)
        }
    }

    /// As written on the command line.
    public var description: String {
        switch self {
        case .utc: "utc"
        case .customer: "customer"
        case .billingEntity: "billing-entity"
        case .named(let name): name
        }
    }

    /// The zone as an SQL literal when it is the same for every row, else `nil`.
    var constantSQL: String? {
        switch self {
        case .utc: "'UTC'"
        case .named(let name): quoteLiteral(name)
        case .customer, .billingEntity: nil
        }
    }
}

/// Why a report could not be computed as asked.
public enum ReportError: Error, Sendable, Hashable, CustomStringConvertible {
    /// `--time-zone` names no zone PostgreSQL knows (`pg_timezone_names`).
    case unknownTimeZone(String)
    /// A customer's or billing entity's `time_zone` is no zone PostgreSQL knows, so the rows
    /// it dates cannot be bucketed in it.
    /// `entity` is `customer` or `billing_entity`.
    case unknownTimeZoneInData(entity: String, key: String, zone: String)
    /// `--billing-entity` names no row of `billing_entities` and no row's `billing_entity_id`
    /// (now or in any version): a finding about the data, as an unknown customer is, not an
    /// empty answer.
    case unknownBillingEntity(String)
    /// `--customer` names no customer (in any version) and no subscription's customer.
    case unknownCustomer(String)

    /// Whether the error is a finding about what was asked (an unknown billing entity or
    /// customer: status 1) rather than a report that could not run (status 2).
    public var isUnknownName: Bool {
        switch self {
        case .unknownBillingEntity, .unknownCustomer: true
        case .unknownTimeZone, .unknownTimeZoneInData: false
        }
    }

    public var description: String {
        switch self {
        case .unknownBillingEntity(let id): "unknown billing entity '\(id)'"
        case .unknownCustomer(let id): "unknown customer '\(id)'"
        case .unknownTimeZone(let name):
            "--time-zone \(name) is not utc, customer, billing-entity or a time zone PostgreSQL knows "
                + "(an IANA name such as Europe/Paris; see pg_timezone_names)"
        case .unknownTimeZoneInData(let entity, let key, let zone):
            "\(entity) \(key) has time_zone \(String(reflecting: zone)), which is not a time zone PostgreSQL knows "
                + "(pg_timezone_names): correct it, or report with --time-zone utc or an IANA name"
        }
    }
}

/// How a report reaches the time zone and the billing entity of a row: the joins to add after
/// the row's table, the zone expression, and the billing-entity predicate.
struct RowScope {
    var joins = ""
    var zone = "'UTC'"
    var filter = "true"

    /// - Parameters:
    ///   - customer: the row's customer id column.
    ///   - ownEntity: the row's own `billing_entity_id` column.
    ///   - billingEntity: a parameter reference for `--billing-entity`.
    init(
        _ schema: ReadModelSchema, zone timeZone: ReportTimeZone, customer: String, ownEntity: String,
        billingEntity: String?
    ) {
        let entity = "coalesce(\(ownEntity), zc.billing_entity_id)"
        let customers = "LEFT JOIN \(schema.table(.customer)) AS zc ON zc.customer_id = \(customer)"
        let entities = schema.table(.billingEntity)
        switch timeZone {
        case .utc, .named:
            zone = timeZone.constantSQL!
            if billingEntity != nil { joins = customers }
        case .customer:
            joins = customers + " LEFT JOIN \(entities) AS zb ON zb.billing_entity_id = zc.billing_entity_id"
            zone = "coalesce(nullif(zc.time_zone, ''), nullif(zb.time_zone, ''), 'UTC')"
        case .billingEntity:
            joins = customers + " LEFT JOIN \(entities) AS zb ON zb.billing_entity_id = \(entity)"
            zone = "coalesce(nullif(zb.time_zone, ''), 'UTC')"
        }
        if let billingEntity { filter = "\(entity) = \(billingEntity)" }
    }
}

extension ReadModelReader {
    /// Whether the read models know the billing entity `id`: a version of a
    /// `billing_entities` row, or a version of any row whose `billing_entity_id` names it.
    public func knowsBillingEntity(_ id: String, in session: Session) throws -> Bool {
        let named = Entity.allCases.filter { $0.columns.contains { $0.name == "billing_entity_id" } }.map {
            "SELECT 1 FROM \(schema.history($0)) WHERE billing_entity_id = $1"
        }
        return try session.query("SELECT EXISTS (\(named.joined(separator: " UNION ALL ")))", [id]).rows[0]
            .decode(at: 0, as: Bool.self)
    }

    /// Whether the read models know the customer `id`: a version of a `customers` row, or a
    /// version of a subscription of it (a customer quarantined by the backfill can still
    /// have migrated subscriptions).
    public func knowsCustomer(_ id: String, in session: Session) throws -> Bool {
        try session.query(
            """
            SELECT EXISTS (
                SELECT 1 FROM \(schema.history(.customer)) WHERE customer_id = $1
                UNION ALL SELECT 1 FROM \(schema.history(.subscription)) WHERE customer_id = $1)
            """, [id]
        ).rows[0].decode(at: 0, as: Bool.self)
    }

    /// - Throws: ``ReportError/unknownBillingEntity(_:)`` when `billingEntity` is one the read
    ///   models do not know (``knowsBillingEntity(_:in:)``).
    func requireKnown(billingEntity: String?, in session: Session) throws {
        if let billingEntity, try !knowsBillingEntity(billingEntity, in: session) {
            throw ReportError.unknownBillingEntity(billingEntity)
        }
    }

    /// Checks a report's time zone before it runs, so no report fails halfway on a zone
    /// PostgreSQL does not know.
    ///
    /// - Returns: the zone to use: a named zone as `pg_timezone_names` spells it (names are
    ///   matched without regard to case, as PostgreSQL does).
    /// - Throws: ``ReportError/unknownTimeZone(_:)`` for a name PostgreSQL does not know;
    ///   ``ReportError/unknownTimeZoneInData(entity:key:zone:)`` for the first customer or
    ///   billing entity (by key) whose `time_zone` the report would use and PostgreSQL does
    ///   not know.
    public func checkTimeZone(_ zone: ReportTimeZone, in session: Session) throws -> ReportTimeZone {
        switch zone {
        case .utc:
            return zone
        case .named(let name):
            let found = try session.query(
                "SELECT name FROM pg_timezone_names WHERE lower(name) = lower($1) ORDER BY name = $1 DESC, name LIMIT 1",
                [name])
            guard let row = found.first else { throw ReportError.unknownTimeZone(name) }
            return .named(try row.decode(at: 0, as: String.self))
        case .customer, .billingEntity:
            let unknown = "nullif(time_zone, '') IS NOT NULL AND lower(time_zone) NOT IN (SELECT zone FROM known)"
            let customers =
                zone == .customer
                ? "SELECT 'customer', customer_id, time_zone FROM \(schema.table(.customer)) WHERE \(unknown) UNION ALL "
                : ""
            let found = try session.query(
                """
                WITH known AS MATERIALIZED (SELECT lower(name) AS zone FROM pg_timezone_names)
                SELECT * FROM (
                    \(customers)SELECT 'billing_entity', billing_entity_id, time_zone
                    FROM \(schema.table(.billingEntity)) WHERE \(unknown)
                ) AS bad (kind, key, zone)
                ORDER BY kind DESC, key LIMIT 1
                """)
            if let row = found.first {
                throw ReportError.unknownTimeZoneInData(
                    entity: try row.decode(at: 0), key: try row.decode(at: 1), zone: try row.decode(at: 2))
            }
            return zone
        }
    }

    /// Revenue for the months from `from` to `to` (inclusive; any day of a month stands for
    /// the month), sorted by month and currency: `revenue_by_month`, or — in another time
    /// zone than UTC, or for one billing entity — the same sums of `revenue_entries`, each
    /// entry in the month its instant falls in, in its zone.
    ///
    /// - Parameters:
    ///   - timeZone: where months begin and end (see ``ReportTimeZone``).
    ///   - billingEntity: only entries of that billing entity (the row's own, else its
    ///     customer's).
    /// - Throws: ``ReportError`` for a time zone PostgreSQL does not know, or a billing entity
    ///   (or, for MRR, a customer) the read models do not know.
    public func revenue(
        from: PostgresDate, to: PostgresDate, timeZone: ReportTimeZone = .utc, billingEntity: String? = nil,
        in session: Session
    ) throws -> [RevenueMonth] {
        try requireBuilt(session)
        let zone = try checkTimeZone(timeZone, in: session)
        try requireKnown(billingEntity: billingEntity, in: session)
        let columns = "month, currency::text, invoiced::int8, collected::int8, refunded::int8, credited::int8, prepaid_collected::int8"
        let inRange = "month >= date_trunc('month', $1::date)::date AND month <= date_trunc('month', $2::date)::date"
        let rows: [Row]
        if zone == .utc, billingEntity == nil {
            rows = try session.query(
                "SELECT \(columns) FROM \(schema.qualified("revenue_by_month")) WHERE \(inRange) ORDER BY month, currency",
                [from, to]
            ).rows
        } else {
            let scope = RowScope(
                schema, zone: zone, customer: "e.customer_id", ownEntity: "e.billing_entity_id",
                billingEntity: billingEntity == nil ? nil : "$3")
            var parameters: [(any PostgresEncodable)?] = [from, to]
            if let billingEntity { parameters.append(billingEntity) }
            // An entry's month in any zone is within a month of its UTC month (zones are
            // less than a day from UTC): the index on month narrows the entries to read.
            rows = try session.query(
                """
                SELECT \(columns) FROM (
                    SELECT month, currency, \(DerivedModels.revenueSums)
                    FROM (
                        SELECT date_trunc('month', e.at AT TIME ZONE \(scope.zone))::date AS month, e.currency, e.kind, e.amount
                        FROM \(schema.qualified("revenue_entries")) AS e \(scope.joins)
                        WHERE e.month >= (date_trunc('month', $1::date) - interval '1 month')::date
                          AND e.month <= (date_trunc('month', $2::date) + interval '1 month')::date
                          AND \(scope.filter)
                    ) AS zoned
                    WHERE \(inRange)
                    GROUP BY month, currency
                ) AS sums (month, currency, invoiced, collected, prepaid_collected, refunded, credited)
                ORDER BY month, currency
                """, parameters
            ).rows
        }
        return try rows.map { row in
            RevenueMonth(
                month: try row.decode(at: 0), currency: try row.decode(at: 1), invoiced: try row.decode(at: 2),
                collected: try row.decode(at: 3), refunded: try row.decode(at: 4), credited: try row.decode(at: 5),
                prepaidCollected: try row.decode(at: 6))
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
    ///
    /// In another time zone than UTC, or for one billing entity, the movements are computed
    /// when read, by the same definition, with each customer's months closing in its zone
    /// and only the subscriptions of that billing entity (the subscription's own, else its
    /// customer's).
    /// - Throws: ``ReportError`` for a time zone PostgreSQL does not know, or a billing entity
    ///   (or, for MRR, a customer) the read models do not know.
    public func mrr(
        from: PostgresDate, to: PostgresDate, customer: String? = nil, timeZone: ReportTimeZone = .utc,
        billingEntity: String? = nil, in session: Session
    ) throws -> [MRRMonth] {
        try requireBuilt(session)
        let zone = try checkTimeZone(timeZone, in: session)
        try requireKnown(billingEntity: billingEntity, in: session)
        if let customer, try !knowsCustomer(customer, in: session) { throw ReportError.unknownCustomer(customer) }
        var parameters: [(any PostgresEncodable)?] = [from, to]
        // The monthly rows the fill starts from: month, currency, the four movements, mrr.
        let source: String
        if zone == .utc, billingEntity == nil {
            if let customer { parameters.append(customer) }
            source =
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
        } else {
            // The movements' customer filter takes an array.
            if let customer { parameters.append(PostgresArray([customer])) }
            if let billingEntity { parameters.append(billingEntity) }
            let derived = DerivedModels(schema: schema)
            let movements = derived.mrrMovements(
                customer == nil ? .all : .parameter(3), zone: zone,
                billingEntity: billingEntity == nil ? nil : "$\(parameters.count)")
            // As mrr_by_month: the movements summed per month (months whose movements are all
            // zero left out), and mrr their running sum.
            source = """
                SELECT month, currency, "new", expansion, contraction, churn,
                       sum("new" + expansion + contraction + churn) OVER (PARTITION BY currency ORDER BY month) AS mrr
                FROM (
                    SELECT month, currency,
                           coalesce(sum(mrr_after) FILTER (WHERE mrr_before = 0), 0) AS "new",
                           coalesce(sum(mrr_after - mrr_before) FILTER (WHERE mrr_before <> 0 AND mrr_after <> 0 AND mrr_after > mrr_before), 0) AS expansion,
                           coalesce(sum(mrr_after - mrr_before) FILTER (WHERE mrr_before <> 0 AND mrr_after <> 0 AND mrr_after < mrr_before), 0) AS contraction,
                           coalesce(sum(-mrr_before) FILTER (WHERE mrr_before <> 0 AND mrr_after = 0), 0) AS churn
                    FROM (\(movements)) AS movements
                    GROUP BY month, currency
                ) AS sums
                WHERE ("new", expansion, contraction, churn) <> (0, 0, 0, 0)
                """
        }
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
    /// In another time zone than UTC, or for one billing entity, the same buckets are computed
    /// from the invoices (now) or their versions valid at `asOf`: each invoice is aged by the
    /// date the instant falls on in its zone, and only invoices of that billing entity (the
    /// invoice's own, else its customer's) count. Customers and billing entities are read as
    /// they are now.
    ///
    /// - Returns: rows sorted by customer and currency.
    /// - Throws: ``ReportError`` for a time zone PostgreSQL does not know, or a billing entity
    ///   (or, for MRR, a customer) the read models do not know.
    public func aging(
        asOf: PostgresTimestamp? = nil, timeZone: ReportTimeZone = .utc, billingEntity: String? = nil,
        in session: Session
    ) throws -> [AgingRow] {
        try requireBuilt(session)
        let zone = try checkTimeZone(timeZone, in: session)
        try requireKnown(billingEntity: billingEntity, in: session)
        let rows: [Row]
        if asOf == nil, zone == .utc, billingEntity == nil {
            rows = try session.query(
                """
                SELECT customer_id, currency::text, "current", d1_30, d31_60, d61_90, d90_plus
                FROM \(schema.qualified("ar_aging")) ORDER BY customer_id, currency
                """
            ).rows
        } else {
            var parameters: [(any PostgresEncodable)?] = []
            let instant: String
            let invoices: String
            if let asOf {
                parameters.append(asOf)
                instant = "$1::timestamptz"
                invoices = "(SELECT * FROM \(schema.history(.invoice)) WHERE valid_from <= $1 AND (valid_to IS NULL OR valid_to > $1))"
            } else {
                instant = "now()"
                invoices = schema.table(.invoice)
            }
            if let billingEntity { parameters.append(billingEntity) }
            let scope = RowScope(
                schema, zone: zone, customer: "i.customer_id", ownEntity: "i.billing_entity_id",
                billingEntity: billingEntity == nil ? nil : "$\(parameters.count)")
            rows = try session.query(
                """
                SELECT customer_id, currency::text,
                       coalesce(sum(amount_due) FILTER (WHERE days_past_due IS NULL OR days_past_due <= 0), 0)::bigint,
                       coalesce(sum(amount_due) FILTER (WHERE days_past_due BETWEEN 1 AND 30), 0)::bigint,
                       coalesce(sum(amount_due) FILTER (WHERE days_past_due BETWEEN 31 AND 60), 0)::bigint,
                       coalesce(sum(amount_due) FILTER (WHERE days_past_due BETWEEN 61 AND 90), 0)::bigint,
                       coalesce(sum(amount_due) FILTER (WHERE days_past_due > 90), 0)::bigint
                FROM (
                    SELECT i.customer_id, coalesce(i.currency, 'XXX')::char(3) AS currency, coalesce(i.amount_due, 0) AS amount_due,
                           (\(instant) AT TIME ZONE \(scope.zone))::date - i.due_on AS days_past_due
                    FROM \(invoices) AS i \(scope.joins)
                    WHERE i.status IN ('open', 'uncollectible') AND i.customer_id IS NOT NULL AND \(scope.filter)
                ) AS open_invoices
                GROUP BY customer_id, currency ORDER BY customer_id, currency
                """, parameters
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
