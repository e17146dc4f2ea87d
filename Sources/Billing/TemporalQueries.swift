import Postgres

/// A customer's balance in one currency, in minor units.
public struct CustomerBalance: Sendable, Hashable {
    public var customerID: String
    /// ISO 4217 code (`XXX` for rows whose currency is unknown).
    public var currency: String
    /// Σ `amount_due` of the customer's open and uncollectible invoices.
    public var receivables: Int64
    /// Credit held in the customer balance: −Σ of its balance transactions − Σ of its credit
    /// applications that name neither a credit note nor a wallet transaction (balance credit
    /// applied to an invoice).
    public var unappliedCredit: Int64
    /// `receivables − unappliedCredit`: positive when the customer owes, negative when it
    /// holds credit. Prepaid wallet credit is not netted in (``prepaidCredit``).
    public var balance: Int64
    /// Σ `balance` of the customer's active wallets: prepaid credit left to spend. As of a
    /// business time, a wallet with transactions counts its settled transactions up to then
    /// (``ReadModelReader/balances(customer:asOf:billingEntity:in:)``).
    public var prepaidCredit: Int64

    public init(
        customerID: String, currency: String, receivables: Int64, unappliedCredit: Int64, balance: Int64,
        prepaidCredit: Int64 = 0
    ) {
        self.customerID = customerID
        self.currency = currency
        self.receivables = receivables
        self.unappliedCredit = unappliedCredit
        self.balance = balance
        self.prepaidCredit = prepaidCredit
    }
}

extension ReadModelReader {
    /// A customer's balance per currency, now (from `customer_balances`) or as of a business
    /// time (from the history tables: the invoice, balance-transaction, credit-application,
    /// wallet and customer versions valid at `asOf`).
    ///
    /// Both follow the same definition (`docs/read-models.md`), so the balance as of a time
    /// after the last event equals the current one.
    /// - Parameter billingEntity: only the rows of that billing entity (the row's own
    ///   `billing_entity_id`, else its customer's as the customer is now), computed from the
    ///   canonical or history tables by the same definition.
    ///
    /// As of a business time, a wallet's prepaid credit is that of its settled transactions
    /// up to then when it has any (its own version's balance can be a later one), else its
    /// version's balance; only wallets whose version then is `active` count.
    /// - Returns: one entry per currency, sorted by currency; empty for an unknown customer.
    /// - Throws: ``ReportError/unknownBillingEntity(_:)`` for a billing entity the read models
    ///   do not know.
    public func balances(
        customer: String, asOf: PostgresTimestamp? = nil, billingEntity: String? = nil, in session: Session
    ) throws -> [CustomerBalance] {
        try requireBuilt(session)
        try requireKnown(billingEntity: billingEntity, in: session)
        let rows: [Row]
        if asOf == nil, billingEntity == nil {
            rows = try session.query(
                """
                SELECT currency::text, receivables::int8, unapplied_credit::int8, balance::int8, prepaid_credit::int8
                FROM \(schema.qualified("customer_balances"))
                WHERE customer_id = $1 ORDER BY currency
                """, [customer]
            ).rows
        } else {
            var parameters: [(any PostgresEncodable)?] = [customer]
            let source: (Entity) -> String
            if let asOf {
                parameters.append(asOf)
                source = { entity in
                    entity == .wallet
                        ? walletsAsOf("$2")
                        : "(SELECT * FROM \(schema.history(entity)) WHERE valid_from <= $2 AND (valid_to IS NULL OR valid_to > $2))"
                }
            } else {
                source = { schema.table($0) }
            }
            if let billingEntity { parameters.append(billingEntity) }
            let movements = DerivedModels(schema: schema).balanceMovements(
                from: source, customers: { "\($0) = $1" },
                billingEntity: billingEntity == nil ? nil : "$\(parameters.count)")
            rows = try session.query(
                """
                SELECT currency::text, sum(receivable)::bigint, sum(credit)::bigint, (sum(receivable) - sum(credit))::bigint,
                       sum(prepaid)::bigint
                FROM (\(movements)) AS movements
                GROUP BY currency ORDER BY currency
                """, parameters
            ).rows
        }
        return try rows.map { row in
            CustomerBalance(
                customerID: customer, currency: try row.decode(at: 0), receivables: try row.decode(at: 1),
                unappliedCredit: try row.decode(at: 2), balance: try row.decode(at: 3), prepaidCredit: try row.decode(at: 4))
        }
    }

    /// The wallet versions valid at the instant `asOf` (an SQL parameter), with the balance
    /// as of that instant: for a wallet with wallet transactions in the read model (any
    /// version), Σ `amount` of its settled inbound − Σ of its settled outbound transaction
    /// versions valid at `asOf` that settled (`settled_at`, else `created_at`) by then — the
    /// wallet's own version can carry a later balance (a wallet migrated from one row is
    /// created with the balance it has now); for a wallet without transactions, its version's
    /// `balance`. The other columns are the version's (its `status` says whether it counts).
    func walletsAsOf(_ asOf: String) -> String {
        let transactions = schema.history(.walletTransaction)
        return """
            (SELECT w.wallet_id, w.customer_id, w.currency, w.status, w.billing_entity_id,
                    CASE WHEN EXISTS (SELECT 1 FROM \(transactions) AS t WHERE t.wallet_id = w.wallet_id)
                         THEN (SELECT coalesce(sum(CASE t.direction WHEN 'inbound' THEN t.amount
                                                                    WHEN 'outbound' THEN -t.amount ELSE 0 END), 0)
                               FROM \(transactions) AS t
                               WHERE t.wallet_id = w.wallet_id AND t.status = 'settled'
                                 AND t.valid_from <= \(asOf) AND (t.valid_to IS NULL OR t.valid_to > \(asOf))
                                 AND coalesce(t.settled_at, t.created_at) <= \(asOf))
                         ELSE w.balance END AS balance
             FROM \(schema.history(.wallet)) AS w
             WHERE w.valid_from <= \(asOf) AND (w.valid_to IS NULL OR w.valid_to > \(asOf)))
            """
    }

    /// The invoice row now, or as of a business time.
    public func invoice(_ invoiceID: String, asOf: PostgresTimestamp? = nil, in session: Session) throws -> CanonicalRow? {
        try row(.invoice, key: invoiceID, asOf: asOf, in: session)
    }
}

/// An instant in business time as a person writes it (`--as-of`): a timestamp, or a bare
/// date meaning the end of that day (UTC), so "as of 2024-03-01" includes everything that
/// happened on March 1.
///
/// Every value it returns is one PostgreSQL reads back exactly (or `infinity`), so a query
/// given it cannot fail on the parameter; every value it refuses is a ``PostgresTimeError``
/// whose description is one sentence fit for a usage error.
public enum BusinessTime {
    /// Reads a timestamp (``PostgresTimestamp/parse(_:)``), else a date's last microsecond.
    ///
    /// - Throws: ``PostgresTimeError``: the timestamp's reason when the text is shaped like
    ///   one, the date's when it is shaped like a date (`afterRange` when the day's end is
    ///   past ``PostgresTimestamp/maximumFinite``), `malformed` as `dateOrTimestamp` otherwise.
    public static func parse(_ text: String) throws(PostgresTimeError) -> PostgresTimestamp {
        do {
            return try PostgresTimestamp.parse(text)
        } catch where error.problem != .malformed {
            throw error
        } catch {}
        let date: PostgresDate
        do {
            date = try PostgresDate.parse(text)
        } catch {
            switch error.problem {
            case .malformed: throw PostgresTimeError(text: text, kind: .dateOrTimestamp, problem: .malformed)
            // The instant meant is the end of the day: say which instant is the last.
            case .afterRange: throw PostgresTimeError(text: text, kind: .timestamp, problem: .afterRange)
            default: throw error
            }
        }
        guard let end = date.endOfDayUTC else {
            throw PostgresTimeError(text: text, kind: .timestamp, problem: .afterRange)
        }
        return end
    }

    /// `2024-03-01T23:59:59.999999Z`, or `now` for no business time.
    public static func label(_ time: PostgresTimestamp?) -> String { time?.iso8601 ?? "now" }
}
