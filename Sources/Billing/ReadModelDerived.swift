import Postgres

/// The derived read models, computed in SQL from the canonical and history tables of one schema.
///
/// Each has one definition (`docs/read-models.md`) written once as SQL with a key filter: the
/// incremental path recomputes only the keys a batch touched, the full path (end of a
/// blue/green build) passes no filter. Both therefore produce the same rows.
struct DerivedModels {
    let schema: ReadModelSchema

    /// A filter on `column`: `column = ANY($n::text[])`, or `true` for the full computation.
    enum Filter {
        case all
        case parameter(Int)

        func on(_ column: String) -> String {
            switch self {
            case .all: "true"
            case .parameter(let n): "\(column) = ANY($\(n)::text[])"
            }
        }
    }

    // MARK: - Entry points

    /// Recomputes the derived rows that depend on the touched keys.
    func refresh(_ batch: TouchedKeys, in tx: Session) throws {
        var touched = batch
        try resolve(&touched, in: tx)
        if !touched.balanceCustomers.isEmpty {
            let customers = PostgresArray(touched.balanceCustomers.sorted())
            try tx.execute("DELETE FROM \(schema.qualified("customer_balances")) WHERE customer_id = ANY($1::text[])", [customers])
            try tx.execute(balancesInsert(.parameter(1)), [customers])
        }
        if !touched.revenue.isEmpty {
            let kinds = ["invoice", "payment", "refund", "credit_note"]
            let keys = kinds.map { PostgresArray((touched.revenue[$0] ?? []).sorted()) as (any PostgresEncodable)? }
            var months = Set<String>()
            // A payment has up to two entries, its collected part and its prepaid part.
            let deleted = try tx.query(
                """
                DELETE FROM \(schema.qualified("revenue_entries"))
                WHERE (kind = 'invoice' AND key = ANY($1::text[])) OR (kind IN ('payment', 'prepaid') AND key = ANY($2::text[]))
                   OR (kind = 'refund' AND key = ANY($3::text[])) OR (kind = 'credit_note' AND key = ANY($4::text[]))
                RETURNING month
                """, keys)
            for row in deleted.rows { if let m = row.values[0] { months.insert(m) } }
            let inserted = try tx.query(revenueEntriesInsert(invoices: .parameter(1), payments: .parameter(2),
                refunds: .parameter(3), creditNotes: .parameter(4)) + " RETURNING month", keys)
            for row in inserted.rows { if let m = row.values[0] { months.insert(m) } }
            if !months.isEmpty {
                let list = PostgresArray(months.sorted())
                try tx.execute("DELETE FROM \(schema.qualified("revenue_by_month")) WHERE month = ANY($1::date[])", [list])
                try tx.execute(revenueByMonthInsert(months: 1), [list])
            }
        }
        var mrrCustomers = touched.mrrCustomers
        if !touched.plans.isEmpty {
            let rows = try tx.query(
                "SELECT DISTINCT customer_id FROM \(schema.history(.subscription)) WHERE plan_id = ANY($1::text[]) AND customer_id IS NOT NULL",
                [PostgresArray(touched.plans.sorted())])
            for row in rows.rows { if let id = row.values[0] { mrrCustomers.insert(id) } }
        }
        if !mrrCustomers.isEmpty {
            let customers = PostgresArray(mrrCustomers.sorted())
            let movements = schema.qualified("mrr_movements")
            // Take the customers' old movements out of the monthly sums, recompute them, add them back.
            let old = try tx.query(
                """
                SELECT DISTINCT currency FROM \(movements) WHERE customer_id = ANY($1::text[])
                """, [customers]
            ).rows.compactMap { $0.values[0] }
            try tx.execute(mrrByMonthAdd(from: "SELECT * FROM \(movements) WHERE customer_id = ANY($1::text[])", sign: "-"), [customers])
            try tx.execute("DELETE FROM \(movements) WHERE customer_id = ANY($1::text[])", [customers])
            let added = try tx.query(mrrMovementsInsert(.parameter(1)) + " RETURNING currency", [customers]).rows
                .compactMap { $0.values[0] }
            try tx.execute(mrrByMonthAdd(from: "SELECT * FROM \(movements) WHERE customer_id = ANY($1::text[])", sign: "+"), [customers])
            let currencies = Set(old + added)
            if !currencies.isEmpty { try mrrByMonthNormalize(currencies: Array(currencies).sorted(), in: tx) }
        }
    }

    /// Turns the keys a batch touched into the keys of the derived rows they reach, where that
    /// takes a lookup: the payments of invoices that became (or stopped being) credit invoices,
    /// directly or through an allocation, and the customers of the invoices that credit
    /// applications without a customer of their own were applied to.
    func resolve(_ touched: inout TouchedKeys, in tx: Session) throws {
        if !touched.creditKindInvoices.isEmpty {
            let rows = try tx.query(
                """
                SELECT payment_id FROM \(schema.table(.payment)) WHERE invoice_id = ANY($1::text[])
                UNION
                SELECT payment_id FROM \(schema.table(.paymentAllocation))
                WHERE invoice_id = ANY($1::text[]) AND payment_id IS NOT NULL
                """, [PostgresArray(touched.creditKindInvoices.sorted())])
            for row in rows.rows { if let id = row.values[0] { touched.revenue["payment", default: []].insert(id) } }
        }
        if !touched.creditApplicationInvoices.isEmpty {
            let rows = try tx.query(
                "SELECT customer_id FROM \(schema.table(.invoice)) WHERE invoice_id = ANY($1::text[]) AND customer_id IS NOT NULL",
                [PostgresArray(touched.creditApplicationInvoices.sorted())])
            for row in rows.rows { if let id = row.values[0] { touched.balanceCustomers.insert(id) } }
        }
    }

    /// Computes every derived read model from scratch (both groups, in turn).
    func rebuildAll(in tx: Session) throws {
        try rebuildBalancesAndRevenue(in: tx)
        try rebuildMRR(in: tx)
    }

    /// Computes `customer_balances`, `revenue_entries` and `revenue_by_month` from scratch.
    /// Independent of ``rebuildMRR(in:)``: the two may run at once on two connections.
    func rebuildBalancesAndRevenue(in tx: Session) throws {
        let tables = ["customer_balances", "revenue_entries", "revenue_by_month"]
        try tx.execute("TRUNCATE " + tables.map(schema.qualified).joined(separator: ", "))
        try tx.execute(balancesInsert(.all))
        try tx.execute(revenueEntriesInsert(invoices: .all, payments: .all, refunds: .all, creditNotes: .all))
        try tx.executeScript(schema.derivedIndexes.joined(separator: ";\n") + ";")
        try tx.execute(revenueByMonthInsert(months: nil))
    }

    /// Computes `mrr_movements` and `mrr_by_month` from scratch.
    func rebuildMRR(in tx: Session) throws {
        try tx.execute("TRUNCATE \(schema.qualified("mrr_movements")), \(schema.qualified("mrr_by_month"))")
        try tx.execute(mrrMovementsInsert(.all))
        try tx.execute(mrrByMonthAdd(from: "SELECT * FROM \(schema.qualified("mrr_movements"))", sign: "+"))
        try mrrByMonthNormalize(currencies: nil, in: tx)
    }

    // MARK: - customer_balances

    /// Receivables, unapplied credit, balance and prepaid credit per customer and currency.
    func balancesInsert(_ filter: Filter) -> String {
        """
        INSERT INTO \(schema.qualified("customer_balances"))
            (customer_id, currency, receivables, unapplied_credit, balance, prepaid_credit)
        SELECT customer_id, currency, sum(receivable), sum(credit), sum(receivable) - sum(credit), sum(prepaid)
        FROM (\(balanceMovements(from: { schema.table($0) }, customers: filter.on))) AS movements
        GROUP BY customer_id, currency
        """
    }

    /// What each row adds to its customer's balance in its currency — `customer_id, currency,
    /// receivable, credit, prepaid` (numeric) — the one definition of `customer_balances`,
    /// over the canonical tables (now) or over the versions valid at an instant.
    ///
    /// - receivable: `amount_due` of open and uncollectible invoices;
    /// - credit (unapplied credit): minus each balance transaction, minus each credit
    ///   application that names neither a credit note nor a wallet transaction (credit drawn
    ///   from the customer balance; its customer is its own, else its invoice's);
    /// - prepaid: the balance of active wallets;
    /// - the customer's own currency adds a zero row, so a customer with a currency and
    ///   nothing owed shows zeros.
    ///
    /// Amounts are negated as numeric: minus the smallest bigint does not fit a bigint.
    /// - Parameters:
    ///   - source: the table expression to read an entity's rows from.
    ///   - customers: a predicate on a customer id column (`true` for every customer).
    ///   - billingEntity: a parameter reference: only rows of that billing entity (the row's
    ///     own, else its customer's as the customer is now).
    func balanceMovements(
        from source: (Entity) -> String, customers: (String) -> String, billingEntity: String? = nil
    ) -> String {
        func scope(_ row: String, customer: String) -> (join: String, filter: String) {
            guard let billingEntity else { return ("", "true") }
            return (
                "LEFT JOIN \(schema.table(.customer)) AS zc ON zc.customer_id = \(customer)",
                "coalesce(\(row).billing_entity_id, zc.billing_entity_id) = \(billingEntity)"
            )
        }
        let i = scope("i", customer: "i.customer_id")
        let b = scope("b", customer: "b.customer_id")
        let a = scope("a", customer: "a.customer_id")
        let n = scope("a", customer: "ai.customer_id")
        let w = scope("w", customer: "w.customer_id")
        // The customer's own currency row belongs to the customer's billing entity as it is now,
        // as every other row's customer part does (also for a version as of an instant).
        let c = scope("zc", customer: "c.customer_id")
        let balanceCredit = "a.credit_note_id IS NULL AND a.wallet_transaction_id IS NULL"
        return """
            SELECT i.customer_id, coalesce(i.currency, 'XXX')::char(3) AS currency,
                   CASE WHEN i.status IN ('open', 'uncollectible') THEN coalesce(i.amount_due, 0) ELSE 0 END::numeric AS receivable,
                   0::numeric AS credit, 0::numeric AS prepaid
            FROM \(source(.invoice)) AS i \(i.join)
            WHERE i.customer_id IS NOT NULL AND \(customers("i.customer_id")) AND \(i.filter)
            UNION ALL
            SELECT b.customer_id, coalesce(b.currency, 'XXX')::char(3), 0, -coalesce(b.amount, 0)::numeric, 0
            FROM \(source(.balanceTransaction)) AS b \(b.join)
            WHERE b.customer_id IS NOT NULL AND \(customers("b.customer_id")) AND \(b.filter)
            UNION ALL
            SELECT a.customer_id, coalesce(a.currency, 'XXX')::char(3), 0, -coalesce(a.amount, 0)::numeric, 0
            FROM \(source(.creditApplication)) AS a \(a.join)
            WHERE \(balanceCredit) AND a.customer_id IS NOT NULL AND \(customers("a.customer_id")) AND \(a.filter)
            UNION ALL
            SELECT ai.customer_id, coalesce(a.currency, 'XXX')::char(3), 0, -coalesce(a.amount, 0)::numeric, 0
            FROM \(source(.creditApplication)) AS a
            JOIN \(source(.invoice)) AS ai ON ai.invoice_id = a.invoice_id \(n.join)
            WHERE \(balanceCredit) AND a.customer_id IS NULL AND ai.customer_id IS NOT NULL
              AND \(customers("ai.customer_id")) AND \(n.filter)
            UNION ALL
            SELECT w.customer_id, coalesce(w.currency, 'XXX')::char(3), 0, 0,
                   CASE WHEN w.status = 'active' THEN coalesce(w.balance, 0) ELSE 0 END::numeric
            FROM \(source(.wallet)) AS w \(w.join)
            WHERE w.customer_id IS NOT NULL AND \(customers("w.customer_id")) AND \(w.filter)
            UNION ALL
            SELECT c.customer_id, c.currency::char(3), 0, 0, 0
            FROM \(source(.customer)) AS c \(c.join)
            WHERE c.currency IS NOT NULL AND \(customers("c.customer_id")) AND \(c.filter)
            """
    }

    // MARK: - revenue

    /// One entry per invoice, payment part, refund and credit note that counts for revenue,
    /// at the instant it counts at (and its UTC month), with its customer and its own billing
    /// entity.
    ///
    /// A credit invoice (`kind = 'credit'`, a prepaid top-up) is not invoiced revenue. A
    /// succeeded payment splits into its prepaid part — what it paid towards credit invoices:
    /// the amounts of its allocations (in its currency) to credit invoices when it has
    /// allocations, else its whole amount when the invoice it names is a credit invoice — and
    /// its collected part, the rest; entries `prepaid` and `payment`, each only when it is not
    /// zero (a payment with no prepaid part keeps its `payment` entry even at zero).
    func revenueEntriesInsert(invoices invoiceFilter: Filter, payments: Filter, refunds: Filter, creditNotes: Filter) -> String {
        let invoices = schema.table(.invoice)
        // The payments first, split once, then emitted as up to two entries (a CTE read twice:
        // cheaper than joining each payment to a two-row VALUES list).
        return """
            INSERT INTO \(schema.qualified("revenue_entries")) (kind, key, month, at, currency, amount, customer_id, billing_entity_id)
            WITH paid AS (
                SELECT p.payment_id, s.first_succeeded, coalesce(p.currency, 'XXX')::char(3) AS currency,
                       coalesce(p.amount, 0)::numeric AS amount,
                       CASE WHEN al.allocations > 0 THEN al.prepaid
                            WHEN pi.invoice_id IS NOT NULL THEN coalesce(p.amount, 0) ELSE 0 END::numeric AS prepaid,
                       p.customer_id, p.billing_entity_id
                FROM \(schema.table(.payment)) AS p
                JOIN (
                    SELECT payment_id, min(valid_from) AS first_succeeded FROM \(schema.history(.payment))
                    WHERE status = 'succeeded' AND \(payments.on("payment_id")) GROUP BY payment_id
                ) AS s USING (payment_id)
                LEFT JOIN (
                    SELECT a.payment_id, count(*) AS allocations,
                           coalesce(sum(a.amount) FILTER (
                               WHERE ci.invoice_id IS NOT NULL AND a.currency IS NOT DISTINCT FROM ap.currency), 0) AS prepaid
                    FROM \(schema.table(.paymentAllocation)) AS a
                    JOIN \(schema.table(.payment)) AS ap ON ap.payment_id = a.payment_id
                    LEFT JOIN \(invoices) AS ci ON ci.invoice_id = a.invoice_id AND ci.kind = 'credit'
                    WHERE \(payments.on("a.payment_id"))
                    GROUP BY a.payment_id
                ) AS al ON al.payment_id = p.payment_id
                LEFT JOIN \(invoices) AS pi ON pi.invoice_id = p.invoice_id AND pi.kind = 'credit'
                WHERE p.status = 'succeeded' AND \(payments.on("p.payment_id"))
            )
            SELECT 'invoice', invoice_id, date_trunc('month', finalized_at AT TIME ZONE 'UTC')::date, finalized_at,
                   coalesce(currency, 'XXX')::char(3), coalesce(total, 0), customer_id, billing_entity_id
            FROM \(invoices)
            WHERE finalized_at IS NOT NULL AND status NOT IN ('draft', 'void') AND kind IS DISTINCT FROM 'credit'
              AND \(invoiceFilter.on("invoice_id"))
            UNION ALL
            SELECT 'payment', payment_id, date_trunc('month', first_succeeded AT TIME ZONE 'UTC')::date, first_succeeded,
                   currency, amount - prepaid, customer_id, billing_entity_id
            FROM paid WHERE amount - prepaid <> 0 OR prepaid = 0
            UNION ALL
            SELECT 'prepaid', payment_id, date_trunc('month', first_succeeded AT TIME ZONE 'UTC')::date, first_succeeded,
                   currency, prepaid, customer_id, billing_entity_id
            FROM paid WHERE prepaid <> 0
            UNION ALL
            SELECT 'refund', r.refund_id, date_trunc('month', s.first_succeeded AT TIME ZONE 'UTC')::date, s.first_succeeded,
                   coalesce(r.currency, 'XXX')::char(3), coalesce(r.amount, 0), r.customer_id, r.billing_entity_id
            FROM \(schema.table(.refund)) AS r
            JOIN (
                SELECT refund_id, min(valid_from) AS first_succeeded FROM \(schema.history(.refund))
                WHERE status = 'succeeded' AND \(refunds.on("refund_id")) GROUP BY refund_id
            ) AS s USING (refund_id)
            WHERE r.status = 'succeeded' AND \(refunds.on("r.refund_id"))
            UNION ALL
            SELECT 'credit_note', credit_note_id, date_trunc('month', created_at AT TIME ZONE 'UTC')::date, created_at,
                   coalesce(currency, 'XXX')::char(3), coalesce(total, 0), customer_id, billing_entity_id
            FROM \(schema.table(.creditNote))
            WHERE created_at IS NOT NULL AND status IS DISTINCT FROM 'void' AND \(creditNotes.on("credit_note_id"))
            """
    }

    /// The monthly sums of the revenue entries, for the months in `$months` (or all).
    func revenueByMonthInsert(months parameter: Int?) -> String {
        """
        INSERT INTO \(schema.qualified("revenue_by_month")) (month, currency, invoiced, collected, prepaid_collected, refunded, credited)
        SELECT month, currency, \(Self.revenueSums)
        FROM \(schema.qualified("revenue_entries"))
        WHERE \(parameter.map { "month = ANY($\($0)::date[])" } ?? "true")
        GROUP BY month, currency
        """
    }

    /// The five sums of `revenue_by_month` over revenue entries (`kind`, `amount`), in column order.
    static let revenueSums = """
        coalesce(sum(amount) FILTER (WHERE kind = 'invoice'), 0),
               coalesce(sum(amount) FILTER (WHERE kind = 'payment'), 0),
               coalesce(sum(amount) FILTER (WHERE kind = 'prepaid'), 0),
               coalesce(sum(amount) FILTER (WHERE kind = 'refund'), 0),
               coalesce(sum(amount) FILTER (WHERE kind = 'credit_note'), 0)
        """

    // MARK: - MRR

    /// Inserts each customer's MRR movements into `mrr_movements` (UTC month closes).
    func mrrMovementsInsert(_ filter: Filter) -> String {
        "INSERT INTO \(schema.qualified("mrr_movements")) (customer_id, currency, month, mrr_before, mrr_after)\n"
            + mrrMovements(filter)
    }

    /// Each customer's MRR movements — `customer_id, currency, month, mrr_before, mrr_after` —
    /// the months whose closing MRR (per currency) differs from the month before.
    ///
    /// A customer's MRR at the close of a month is the sum over the subscription versions valid
    /// at that instant with status `active` or `past_due` (not `pending`: scheduled, nor
    /// trialing, paused, …) of the plan's amount (the plan version valid then) × quantity,
    /// annualized exactly (month ×12, year ×1, week ×52, day ×365) and divided by the plan's
    /// `interval_count`, then by 12 — once per customer and currency, rounded half away from
    /// zero. The division is exact: the parts are added over the least common multiple of
    /// their interval counts, and the quotient rounded in integers (a third of a cent is never
    /// approximated). The closing MRR can only change in a month in which a subscription
    /// version or a version of one of the customer's plans starts, so only those months are
    /// sampled (and the months a subscription version ends in, for a deleted subscription's
    /// last version, which no version follows: it counts until its deletion).
    ///
    /// - Parameters:
    ///   - filter: the customers to compute (on the subscription's `customer_id`).
    ///   - zone: where months close: the materialized model is UTC; a report in another zone
    ///     computes the same movements with each customer's months closing in its zone
    ///     (``ReportTimeZone/customer``; ``ReportTimeZone/billingEntity``: the customer's
    ///     billing entity's zone — MRR is a customer's, so it has one close per month).
    ///   - billingEntity: a parameter reference: only subscriptions of that billing entity (the
    ///     subscription's own, else its customer's as the customer is now).
    func mrrMovements(_ filter: Filter, zone: ReportTimeZone = .utc, billingEntity: String? = nil) -> String {
        let subscriptions = schema.history(.subscription)
        let plans = schema.history(.plan)
        // With one zone for everyone it is a constant; otherwise each customer's is a column.
        let constantZone = zone.constantSQL
        func tz(_ alias: String) -> String { constantZone ?? "\(alias).tz" }
        let carry = constantZone == nil ? ", tz" : ""
        let versions: String
        if constantZone == "'UTC'", billingEntity == nil {
            versions = """
                SELECT customer_id, plan_id, status, quantity, valid_from, valid_to
                FROM \(subscriptions) WHERE customer_id IS NOT NULL AND \(filter.on("customer_id"))
                """
        } else {
            let zoneOfCustomer: String
            switch zone {
            case .customer: zoneOfCustomer = "coalesce(nullif(zc.time_zone, ''), nullif(zb.time_zone, ''), 'UTC')"
            case .billingEntity: zoneOfCustomer = "coalesce(nullif(zb.time_zone, ''), 'UTC')"
            case .utc, .named: zoneOfCustomer = "NULL"
            }
            versions = """
                SELECT s.customer_id, s.plan_id, s.status, s.quantity, s.valid_from, s.valid_to, \(zoneOfCustomer) AS tz
                FROM \(subscriptions) AS s
                LEFT JOIN \(schema.table(.customer)) AS zc ON zc.customer_id = s.customer_id
                LEFT JOIN \(schema.table(.billingEntity)) AS zb ON zb.billing_entity_id = zc.billing_entity_id
                WHERE s.customer_id IS NOT NULL AND \(filter.on("s.customer_id"))
                  AND \(billingEntity.map { "coalesce(s.billing_entity_id, zc.billing_entity_id) = \($0)" } ?? "true")
                """
        }
        let lcm = schema.qualified(ReadModelSchema.lcmAggregate)
        return """
            WITH versions AS (
                \(versions)
            ),
            months AS (
                SELECT customer_id\(carry), date_trunc('month', valid_from AT TIME ZONE \(tz("versions")))::date AS month FROM versions
                UNION
                -- A deleted subscription's last version ends without a successor: its month too.
                SELECT customer_id\(carry), date_trunc('month', valid_to AT TIME ZONE \(tz("versions")))::date
                FROM versions WHERE valid_to IS NOT NULL
                UNION
                SELECT used.customer_id\(carry), date_trunc('month', p.valid_from AT TIME ZONE \(tz("used")))::date
                FROM (SELECT DISTINCT customer_id, plan_id\(carry) FROM versions) AS used
                JOIN \(plans) AS p ON p.plan_id = used.plan_id
            ),
            closes AS (
                SELECT customer_id, month, ((month + 1 * interval '1 month')::timestamp AT TIME ZONE \(tz("months"))) AS next_start
                FROM months
            ),
            parts AS (
                -- Per interval count: a plan with an unknown interval or an interval count
                -- below 1 adds nothing (NULL).
                SELECT c.customer_id, c.month, pl.currency::char(3) AS currency, pl.intervals,
                       sum(pl.amount::numeric * v.quantity * pl.per_year) AS arr
                FROM closes AS c
                JOIN versions AS v ON v.customer_id = c.customer_id AND v.valid_from < c.next_start
                                  AND (v.valid_to IS NULL OR v.valid_to >= c.next_start)
                CROSS JOIN LATERAL (
                    SELECT p.amount, p.currency,
                           CASE WHEN coalesce(p.interval_count, 1) >= 1 THEN
                               CASE p.interval WHEN 'month' THEN 12 WHEN 'year' THEN 1 WHEN 'week' THEN 52 WHEN 'day' THEN 365 END
                           END AS per_year,
                           CASE WHEN p.interval_count > 1 THEN p.interval_count ELSE 1 END::numeric AS intervals
                    FROM \(plans) AS p
                    WHERE p.plan_id = v.plan_id
                    ORDER BY (p.valid_from < c.next_start) DESC,
                             CASE WHEN p.valid_from < c.next_start THEN p.valid_from END DESC, p.valid_from
                    LIMIT 1
                ) AS pl
                WHERE v.status IN ('active', 'past_due') AND pl.currency IS NOT NULL
                GROUP BY c.customer_id, c.month, pl.currency, pl.intervals
            ),
            annual AS (
                -- Σ arr / intervals = (Σ arr × (l / intervals)) / l, l their least common multiple.
                SELECT customer_id, month, currency, sum(arr * (l / intervals)) AS arr, l
                FROM (
                    SELECT *, \(lcm)(intervals) OVER (PARTITION BY customer_id, month, currency) AS l FROM parts
                ) AS p
                GROUP BY customer_id, month, currency, l
            ),
            closing AS (
                -- arr / (12 l) rounded half away from zero, in integers.
                SELECT customer_id, month, currency,
                       coalesce(sign(arr) * div(2 * abs(arr) + 12 * l, 24 * l), 0)::bigint AS mrr
                FROM annual
            ),
            grid AS (
                SELECT m.customer_id, m.month, cur.currency
                FROM months AS m JOIN (SELECT DISTINCT customer_id, currency FROM closing) AS cur USING (customer_id)
            ),
            series AS (
                SELECT g.customer_id, g.currency, g.month, coalesce(c.mrr, 0) AS mrr_after,
                       coalesce(lag(coalesce(c.mrr, 0)) OVER (PARTITION BY g.customer_id, g.currency ORDER BY g.month), 0)
                           AS mrr_before
                FROM grid AS g LEFT JOIN closing AS c USING (customer_id, currency, month)
            )
            SELECT customer_id, currency, month, mrr_before, mrr_after FROM series WHERE mrr_after <> mrr_before
            """
    }

    /// Adds (`+`) or subtracts (`-`) the movements selected by `from` to the monthly sums.
    ///
    /// Each movement is one of: new (MRR before was 0), churn (MRR after is 0), expansion (up),
    /// contraction (down); `mrr` is fixed up afterwards by ``mrrByMonthNormalize(currencies:in:)``.
    func mrrByMonthAdd(from movements: String, sign: String) -> String {
        let table = schema.qualified("mrr_by_month")
        return """
            INSERT INTO \(table) AS t (month, currency, "new", expansion, contraction, churn, mrr)
            SELECT month, currency,
                   \(sign)coalesce(sum(mrr_after) FILTER (WHERE mrr_before = 0), 0)::bigint,
                   \(sign)coalesce(sum(mrr_after - mrr_before) FILTER (WHERE mrr_before <> 0 AND mrr_after <> 0 AND mrr_after > mrr_before), 0)::bigint,
                   \(sign)coalesce(sum(mrr_after - mrr_before) FILTER (WHERE mrr_before <> 0 AND mrr_after <> 0 AND mrr_after < mrr_before), 0)::bigint,
                   \(sign)coalesce(sum(-mrr_before) FILTER (WHERE mrr_before <> 0 AND mrr_after = 0), 0)::bigint,
                   0
            FROM (\(movements)) AS m
            GROUP BY month, currency
            ON CONFLICT (month, currency) DO UPDATE SET
                "new" = t."new" + EXCLUDED."new", expansion = t.expansion + EXCLUDED.expansion,
                contraction = t.contraction + EXCLUDED.contraction, churn = t.churn + EXCLUDED.churn
            """
    }

    /// Gives each currency one row per month from its first to its last month with a movement
    /// (months in between with zero movements), and `mrr` as the running sum of the movements.
    func mrrByMonthNormalize(currencies: [String]?, in tx: Session) throws {
        let table = schema.qualified("mrr_by_month")
        let filter = currencies == nil ? "true" : "currency = ANY($1::text[])"
        let parameters: [(any PostgresEncodable)?] = currencies.map { [PostgresArray($0)] } ?? []
        try tx.execute(
            """
            CREATE TEMPORARY TABLE IF NOT EXISTS ledgerlift_mrr_normalized (
                month date, currency char(3), "new" bigint, expansion bigint, contraction bigint, churn bigint, mrr bigint
            ) ON COMMIT DELETE ROWS
            """)
        try tx.execute("TRUNCATE ledgerlift_mrr_normalized")
        try tx.execute(
            """
            INSERT INTO ledgerlift_mrr_normalized
            WITH moving AS (
                SELECT * FROM \(table)
                WHERE \(filter) AND ("new", expansion, contraction, churn) <> (0, 0, 0, 0)
            ),
            spans AS (SELECT currency, min(month) AS first, max(month) AS last FROM moving GROUP BY currency),
            months AS (
                SELECT s.currency, gs::date AS month FROM spans AS s,
                       generate_series(s.first::timestamp, s.last::timestamp, interval '1 month') AS gs
            )
            SELECT ms.month, ms.currency, coalesce(m."new", 0), coalesce(m.expansion, 0), coalesce(m.contraction, 0),
                   coalesce(m.churn, 0),
                   sum(coalesce(m."new" + m.expansion + m.contraction + m.churn, 0))
                       OVER (PARTITION BY ms.currency ORDER BY ms.month)::bigint
            FROM months AS ms LEFT JOIN moving AS m USING (currency, month)
            """, parameters)
        try tx.execute("DELETE FROM \(table) WHERE \(filter)", parameters)
        try tx.execute("INSERT INTO \(table) SELECT * FROM ledgerlift_mrr_normalized")
    }
}
