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
    func refresh(_ touched: TouchedKeys, in tx: Session) throws {
        if !touched.balanceCustomers.isEmpty {
            let customers = PostgresArray(touched.balanceCustomers.sorted())
            try tx.execute("DELETE FROM \(schema.qualified("customer_balances")) WHERE customer_id = ANY($1::text[])", [customers])
            try tx.execute(balancesInsert(.parameter(1)), [customers])
        }
        if !touched.revenue.isEmpty {
            let kinds = ["invoice", "payment", "refund", "credit_note"]
            let keys = kinds.map { PostgresArray((touched.revenue[$0] ?? []).sorted()) as (any PostgresEncodable)? }
            var months = Set<String>()
            let deleted = try tx.query(
                """
                DELETE FROM \(schema.qualified("revenue_entries"))
                WHERE (kind = 'invoice' AND key = ANY($1::text[])) OR (kind = 'payment' AND key = ANY($2::text[]))
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

    /// Receivables (amount due of open and uncollectible invoices), unapplied credit (minus the
    /// sum of balance transactions) and balance per customer and currency.
    func balancesInsert(_ filter: Filter) -> String {
        """
        INSERT INTO \(schema.qualified("customer_balances")) (customer_id, currency, receivables, unapplied_credit, balance)
        SELECT customer_id, currency, sum(receivable), sum(credit), sum(receivable) - sum(credit)
        FROM (
            SELECT customer_id, coalesce(currency, 'XXX')::char(3) AS currency,
                   CASE WHEN status IN ('open', 'uncollectible') THEN coalesce(amount_due, 0) ELSE 0 END AS receivable,
                   0::bigint AS credit
            FROM \(schema.table(.invoice)) WHERE customer_id IS NOT NULL AND \(filter.on("customer_id"))
            UNION ALL
            SELECT customer_id, coalesce(currency, 'XXX')::char(3), 0, -coalesce(amount, 0)
            FROM \(schema.table(.balanceTransaction)) WHERE customer_id IS NOT NULL AND \(filter.on("customer_id"))
            UNION ALL
            SELECT customer_id, currency::char(3), 0, 0
            FROM \(schema.table(.customer)) WHERE currency IS NOT NULL AND \(filter.on("customer_id"))
        ) AS movements
        GROUP BY customer_id, currency
        """
    }

    // MARK: - revenue

    /// One entry per invoice, payment, refund and credit note that counts for revenue, dated
    /// in the month it counts for.
    func revenueEntriesInsert(invoices: Filter, payments: Filter, refunds: Filter, creditNotes: Filter) -> String {
        """
        INSERT INTO \(schema.qualified("revenue_entries")) (kind, key, month, currency, amount)
        SELECT 'invoice', invoice_id, date_trunc('month', finalized_at AT TIME ZONE 'UTC')::date,
               coalesce(currency, 'XXX')::char(3), coalesce(total, 0)
        FROM \(schema.table(.invoice))
        WHERE finalized_at IS NOT NULL AND status NOT IN ('draft', 'void') AND \(invoices.on("invoice_id"))
        UNION ALL
        SELECT 'payment', p.payment_id, date_trunc('month', s.first_succeeded AT TIME ZONE 'UTC')::date,
               coalesce(p.currency, 'XXX')::char(3), coalesce(p.amount, 0)
        FROM \(schema.table(.payment)) AS p
        JOIN (
            SELECT payment_id, min(valid_from) AS first_succeeded FROM \(schema.history(.payment))
            WHERE status = 'succeeded' AND \(payments.on("payment_id")) GROUP BY payment_id
        ) AS s USING (payment_id)
        WHERE p.status = 'succeeded' AND \(payments.on("p.payment_id"))
        UNION ALL
        SELECT 'refund', r.refund_id, date_trunc('month', s.first_succeeded AT TIME ZONE 'UTC')::date,
               coalesce(r.currency, 'XXX')::char(3), coalesce(r.amount, 0)
        FROM \(schema.table(.refund)) AS r
        JOIN (
            SELECT refund_id, min(valid_from) AS first_succeeded FROM \(schema.history(.refund))
            WHERE status = 'succeeded' AND \(refunds.on("refund_id")) GROUP BY refund_id
        ) AS s USING (refund_id)
        WHERE r.status = 'succeeded' AND \(refunds.on("r.refund_id"))
        UNION ALL
        SELECT 'credit_note', credit_note_id, date_trunc('month', created_at AT TIME ZONE 'UTC')::date,
               coalesce(currency, 'XXX')::char(3), coalesce(total, 0)
        FROM \(schema.table(.creditNote))
        WHERE created_at IS NOT NULL AND status IS DISTINCT FROM 'void' AND \(creditNotes.on("credit_note_id"))
        """
    }

    /// The monthly sums of the revenue entries, for the months in `$months` (or all).
    func revenueByMonthInsert(months parameter: Int?) -> String {
        """
        INSERT INTO \(schema.qualified("revenue_by_month")) (month, currency, invoiced, collected, refunded, credited)
        SELECT month, currency,
               coalesce(sum(amount) FILTER (WHERE kind = 'invoice'), 0),
               coalesce(sum(amount) FILTER (WHERE kind = 'payment'), 0),
               coalesce(sum(amount) FILTER (WHERE kind = 'refund'), 0),
               coalesce(sum(amount) FILTER (WHERE kind = 'credit_note'), 0)
        FROM \(schema.qualified("revenue_entries"))
        WHERE \(parameter.map { "month = ANY($\($0)::date[])" } ?? "true")
        GROUP BY month, currency
        """
    }

    // MARK: - MRR

    /// Each customer's MRR movements: the months whose closing MRR (per currency) differs from
    /// the month before, with the MRR before and after.
    ///
    /// A customer's MRR at the close of a month is the sum over the subscription versions valid
    /// at that instant with status `active` or `past_due` of the plan's amount (the plan version
    /// valid then) × quantity, annualized exactly (month ×12, year ×1, week ×52, day ×365) and
    /// divided by 12 once per customer and currency, rounded half away from zero. The closing
    /// MRR can only change in a month in which a subscription version or a version of one of
    /// the customer's plans starts, so only those months are sampled.
    func mrrMovementsInsert(_ filter: Filter) -> String {
        let subscriptions = schema.history(.subscription)
        let plans = schema.history(.plan)
        return """
            INSERT INTO \(schema.qualified("mrr_movements")) (customer_id, currency, month, mrr_before, mrr_after)
            WITH versions AS (
                SELECT customer_id, plan_id, status, quantity, valid_from, valid_to
                FROM \(subscriptions) WHERE customer_id IS NOT NULL AND \(filter.on("customer_id"))
            ),
            months AS (
                SELECT customer_id, date_trunc('month', valid_from AT TIME ZONE 'UTC')::date AS month FROM versions
                UNION
                SELECT used.customer_id, date_trunc('month', p.valid_from AT TIME ZONE 'UTC')::date
                FROM (SELECT DISTINCT customer_id, plan_id FROM versions) AS used
                JOIN \(plans) AS p ON p.plan_id = used.plan_id
            ),
            closes AS (
                SELECT customer_id, month, ((month + 1 * interval '1 month')::timestamp AT TIME ZONE 'UTC') AS next_start
                FROM months
            ),
            annual AS (
                SELECT c.customer_id, c.month, pl.currency::char(3) AS currency,
                       sum(pl.amount::numeric * v.quantity * CASE pl.interval WHEN 'month' THEN 12 WHEN 'year' THEN 1
                           WHEN 'week' THEN 52 WHEN 'day' THEN 365 END) AS arr
                FROM closes AS c
                JOIN versions AS v ON v.customer_id = c.customer_id AND v.valid_from < c.next_start
                                  AND (v.valid_to IS NULL OR v.valid_to >= c.next_start)
                CROSS JOIN LATERAL (
                    SELECT p.amount, p.currency, p.interval FROM \(plans) AS p
                    WHERE p.plan_id = v.plan_id
                    ORDER BY (p.valid_from < c.next_start) DESC,
                             CASE WHEN p.valid_from < c.next_start THEN p.valid_from END DESC, p.valid_from
                    LIMIT 1
                ) AS pl
                WHERE v.status IN ('active', 'past_due') AND pl.currency IS NOT NULL
                GROUP BY c.customer_id, c.month, pl.currency
            ),
            closing AS (
                SELECT customer_id, month, currency, coalesce(round(arr / 12), 0)::bigint AS mrr FROM annual
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
