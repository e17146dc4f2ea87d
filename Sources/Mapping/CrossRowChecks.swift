import Billing
import TextFormats
import Postgres

/// What a cross-row rule needs to know about one entity's mapping: its query, and how that
/// query writes amounts, so rules that compare amounts of different entities (a refund against
/// its payment, an invoice against its lines) compare them in the same unit.
package struct CrossRowSource: Sendable, Hashable {
    package let query: String
    package let amounts: MappingFile.AmountUnit
    package let defaultCurrency: Currency?
    /// Per currency, the exponent the legacy system wrote minor amounts with
    /// (`currency_exponents`); read under `amounts: minor` only.
    package let currencyExponents: [Currency: Int]

    package init(
        query: String, amounts: MappingFile.AmountUnit, defaultCurrency: Currency?,
        currencyExponents: [Currency: Int] = [:]
    ) {
        self.query = query
        self.amounts = amounts
        self.defaultCurrency = defaultCurrency
        self.currencyExponents = currencyExponents
    }
}

extension MappingFile {
    /// Every mapped entity's query with the unit, default currency and currency exponents that
    /// apply to it: what ``CrossRowCheck/render(sources:)`` needs.
    package var crossRowSources: [Entity: CrossRowSource] {
        Dictionary(
            uniqueKeysWithValues: entities.map {
                (
                    $0.entity,
                    CrossRowSource(
                        query: $0.query, amounts: amounts(for: $0.entity),
                        defaultCurrency: defaultCurrency(for: $0.entity),
                        currencyExponents: currencyExponents(for: $0.entity))
                )
            })
    }
}

/// Rules that need more than one row: references, totals against lines, duplicates. They run
/// as SQL over the mapping queries inside the backfill's snapshot, so they see exactly the data
/// the backfill migrates, and each names the keys it rejects and why.
///
/// Rules that compare amounts compare **ISO 4217 minor units of the row's currency**, as
/// ``RowConverter`` converts them: an entity mapped with `amounts: major` has its amounts
/// multiplied by `10^exponent` of its row's currency (the same currency ``RowConverter``
/// resolves: the row's own, else the default); one mapped with `amounts: minor` is taken as it
/// is, except the currencies its `currency_exponents` declares another exponent for, which are
/// multiplied by `10^(iso − declared)`. So payments in cents and invoices in decimals, which
/// docs/mapping.md recommends when the legacy schema is written that way, compare correctly.
package struct CrossRowCheck: Sendable {
    /// The entity whose rows the check rejects.
    package let entity: Entity
    /// Stable reason code, as in the quarantine table.
    package let reason: String
    /// Entities whose queries the check reads.
    package let needs: [Entity]
    /// Entities whose amounts the check compares: their placeholder is rendered with the
    /// columns `ll_scale` (multiply an amount by it to get ISO minor units), `ll_factor`
    /// (`10^exponent`, ISO's), `ll_exponent` (ISO's) and `ll_currency` (the resolved code) added.
    let scaled: Set<Entity>
    /// Entities whose queries the check reads when they are mapped; an unmapped one reads as
    /// no rows (a mapping without payment allocations has none to settle an invoice).
    package let optional: [Entity]
    /// When not empty, the check runs only if one of these is mapped: what it needs to see
    /// before it may conclude (a paid invoice is settled by payments or credit; with no way to
    /// see credit, an invoice paid by it would be wrongly refused).
    package let anyOf: [Entity]
    /// SQL returning `(key text, detail text)`; `{invoice}` etc. stand for the mapping queries.
    let sql: String

    init(
        entity: Entity, reason: String, needs: [Entity], optional: [Entity] = [], anyOf: [Entity] = [],
        scaled: Set<Entity> = [], sql: String
    ) {
        self.entity = entity
        self.reason = reason
        self.needs = needs
        self.optional = optional
        self.anyOf = anyOf
        self.scaled = scaled
        self.sql = sql
    }

    /// SQL reading `column` of the subquery row `alias` whether or not the mapping query returns
    /// it (an optional column of the wider model, such as an invoice's `rounding`), as numeric,
    /// `fallback` when it is absent or NULL.
    static func optionalNumber(_ alias: String, _ column: String, _ fallback: String = "0") -> String {
        "coalesce((to_jsonb(\(alias)) ->> \(quoteLiteral(column)))::numeric, \(fallback))"
    }

    /// SQL reading text `column` of the subquery row `alias` whether or not the query returns it.
    static func optionalText(_ alias: String, _ column: String) -> String {
        "(to_jsonb(\(alias)) ->> \(quoteLiteral(column)))"
    }

    /// No rows, with the canonical columns of `entity` (and a scaled entity's extra columns):
    /// what an optional entity that is not mapped reads as.
    static func emptyRelation(_ entity: Entity, scaled: Bool) -> String {
        var columns = entity.columns.map { column -> String in
            let type: String
            switch column.type {
            case .amount, .decimal, .integer: type = "numeric"
            case .boolean: type = "boolean"
            case .timestamp: type = "timestamptz"
            case .date: type = "date"
            case .text, .status, .currency: type = "text"
            }
            return "NULL::\(type) AS \(quoteIdentifier(column.name))"
        }
        if scaled {
            columns += [
                "NULL::text AS ll_currency", "NULL::numeric AS ll_scale", "NULL::numeric AS ll_factor",
                "NULL::int AS ll_exponent",
            ]
        }
        return "(SELECT " + columns.joined(separator: ", ") + " WHERE false)"
    }

    /// The check's SQL with each `{entity}` replaced by its mapping query as a subquery, for a
    /// mapping whose entities all write amounts in one unit (`major`) and set no default
    /// currency. Prefer ``render(sources:)``, which knows each entity's unit.
    package func render(_ queries: [Entity: String]) -> String? {
        render(sources: queries.mapValues { CrossRowSource(query: $0, amounts: .major, defaultCurrency: nil) })
    }

    /// The check's SQL over the backfill's sources, each with its own unit (``render(sources:)``).
    package func render(_ sources: [EntitySource]) -> String? {
        render(
            sources: Dictionary(
                sources.map { source in
                    (
                        source.entity,
                        CrossRowSource(
                            query: source.query, amounts: source.amounts, defaultCurrency: source.defaultCurrency,
                            currencyExponents: source.currencyExponents)
                    )
                }, uniquingKeysWith: { first, _ in first }))
    }

    /// The check's SQL with each `{entity}` replaced by its mapping query as a subquery; `nil`
    /// when an entity it needs is not mapped. Entities whose amounts the check compares are
    /// joined to the ISO 4217 exponents (``CurrencyExponentsSQL``) by their row's currency.
    package func render(sources: [Entity: CrossRowSource]) -> String? {
        guard anyOf.isEmpty || anyOf.contains(where: { sources[$0] != nil }) else { return nil }
        var text = sql
        for entity in optional where sources[entity] == nil {
            text = text.replacing("{\(entity.rawValue)}", with: Self.emptyRelation(entity, scaled: scaled.contains(entity)))
        }
        for entity in needs + optional.filter({ sources[$0] != nil }) {
            guard let source = sources[entity] else { return nil }
            let subquery: String
            if scaled.contains(entity) {
                let own = "ll_q.currency::text"
                let currency = source.defaultCurrency.map { "coalesce(\(own), \(quoteLiteral($0.code)))" } ?? own
                // An unknown currency scales by 1: its rows are quarantined by the converter anyway,
                // and comparing them as written keeps a one-unit mapping's results as they were.
                // Under `minor`, a currency written with another exponent than ISO's is brought
                // to ISO minor units, as the converter brings it.
                let scale: String
                switch source.amounts {
                case .major: scale = "coalesce(ll_c.minor_per_major, 1::numeric)"
                case .minor:
                    scale =
                        CurrencyExponentsSQL.toISOMinorFactor(source.currencyExponents, currency: currency)
                        .map { "coalesce(\($0), 1::numeric)" } ?? "1::numeric"
                }
                subquery = """
                    (
                    SELECT ll_q.*, \(currency) AS ll_currency, \(scale) AS ll_scale,
                           ll_c.minor_per_major AS ll_factor, ll_c.exponent AS ll_exponent
                    FROM (
                    \(source.query)) ll_q
                    LEFT JOIN (\(CurrencyExponentsSQL.valuesList)) AS ll_c (\(CurrencyExponentsSQL.columns))
                           ON ll_c.code = \(currency)
                    )
                    """
            } else {
                subquery = "(\n" + source.query + "\n)"
            }
            text = text.replacing("{\(entity.rawValue)}", with: subquery)
        }
        return text
    }

    /// SQL printing `minor` (minor units of the rows of `alias`, a scaled entity) as a major
    /// amount with its currency (`50.00 USD`), or the bare number when the currency is unknown.
    static func money(_ minor: String, _ alias: String) -> String {
        "coalesce(round((\(minor)) / \(alias).ll_factor, \(alias).ll_exponent)::text || ' ' || \(alias).ll_currency, "
            + "(\(minor))::text)"
    }

    static func reference(_ child: Entity, _ column: String, _ parent: Entity) -> CrossRowCheck {
        // An optional column (a wider model's reference) may not be returned by the query. A
        // returned one is tested as the column itself: `c.col IS NOT NULL` has statistics, where
        // `c.col::text IS NOT NULL` is guessed at half the rows — and with that guess the
        // planner chose a nested-loop anti-join that took 48 s on 90 000 invoices.
        let optional = child.column(column)?.isOptional == true
        let value = optional ? optionalText("c", column) : "c.\(column)::text"
        let present = optional ? "\(value) IS NOT NULL" : "c.\(column) IS NOT NULL"
        return CrossRowCheck(
            entity: child, reason: "reference_missing", needs: [child, parent],
            sql: """
                SELECT c.\(child.keyColumn)::text, \(quoteLiteral(column + " ")) || \(value) || \(quoteLiteral(" names no " + parent.rawValue))
                FROM {\(child.rawValue)} c
                WHERE \(present)
                  AND NOT EXISTS (SELECT 1 FROM {\(parent.rawValue)} p WHERE p.\(parent.keyColumn)::text = \(value))
                """)
    }

    /// A `time_zone` the reports can bucket months in: one PostgreSQL knows (by name, any case),
    /// checked when the row is migrated rather than when a report first needs it.
    static func timeZoneKnown(_ entity: Entity) -> CrossRowCheck {
        CrossRowCheck(
            entity: entity, reason: "time_zone_unknown", needs: [entity],
            sql: """
                SELECT x.\(entity.keyColumn)::text, 'time_zone ' || x.ll_tz || ' is not a time zone PostgreSQL knows (pg_timezone_names)'
                FROM (SELECT q.*, \(optionalText("q", "time_zone")) AS ll_tz FROM {\(entity.rawValue)} q) x
                -- pg_timezone_names reads the time zone files: read once, joined by hash, never
                -- once per row (which took 50 ms a customer).
                LEFT JOIN (SELECT DISTINCT lower(name) AS name FROM pg_timezone_names) z ON z.name = lower(x.ll_tz)
                WHERE x.ll_tz IS NOT NULL AND z.name IS NULL
                """)
    }

    /// Every reference of the wider model's entities and columns, and each entity's tenant.
    static let widerReferences: [CrossRowCheck] =
        [
            reference(.customer, "parent_customer_id", .customer),
            reference(.plan, "parent_plan_id", .plan),
            reference(.refund, "invoice_id", .invoice),
            reference(.refund, "credit_note_id", .creditNote),
            reference(.paymentAllocation, "payment_id", .payment),
            reference(.paymentAllocation, "invoice_id", .invoice),
            reference(.paymentAllocation, "customer_id", .customer),
            reference(.wallet, "customer_id", .customer),
            reference(.walletTransaction, "wallet_id", .wallet),
            reference(.walletTransaction, "invoice_id", .invoice),
            reference(.walletTransaction, "customer_id", .customer),
            reference(.creditApplication, "invoice_id", .invoice),
            reference(.creditApplication, "credit_note_id", .creditNote),
            reference(.creditApplication, "wallet_transaction_id", .walletTransaction),
            reference(.creditApplication, "customer_id", .customer),
            reference(.chargeback, "payment_id", .payment),
            reference(.chargeback, "invoice_id", .invoice),
            reference(.chargeback, "customer_id", .customer),
            reference(.paymentTransaction, "payment_id", .payment),
        ] + Entity.allCases.filter { $0 != .billingEntity }.map { reference($0, "billing_entity_id", .billingEntity) }

    /// Every check Ledgerlift runs, in the order their reasons take precedence.
    package static let all: [CrossRowCheck] = [
        reference(.subscription, "customer_id", .customer),
        reference(.subscription, "plan_id", .plan),
        reference(.invoice, "customer_id", .customer),
        reference(.invoiceLine, "invoice_id", .invoice),
        reference(.payment, "customer_id", .customer),
        reference(.payment, "invoice_id", .invoice),
        reference(.refund, "payment_id", .payment),
        reference(.creditNote, "customer_id", .customer),
        reference(.creditNote, "invoice_id", .invoice),
        reference(.balanceTransaction, "customer_id", .customer),
        reference(.balanceTransaction, "invoice_id", .invoice),
        reference(.balanceTransaction, "credit_note_id", .creditNote),
        CrossRowCheck(
            entity: .invoice, reason: "invoice_total_mismatch", needs: [.invoice, .invoiceLine],
            scaled: [.invoice, .invoiceLine],
            sql: """
                SELECT i.invoice_id::text,
                       'total ' || \(money("i.total * i.ll_scale", "i")) || ' but subtotal - discount + tax'
                       || CASE WHEN i.ll_rounding <> 0 THEN ' + rounding' ELSE '' END || ' = '
                       || \(money("(i.subtotal - i.discount + i.tax + i.ll_rounding) * i.ll_scale", "i"))
                       || ' and lines sum to ' || \(money("coalesce(l.s, 0)", "i"))
                       || CASE WHEN i.ll_rounding <> 0 THEN ' + rounding ' || \(money("i.ll_rounding * i.ll_scale", "i")) ELSE '' END
                FROM (SELECT x.*, \(optionalNumber("x", "rounding")) AS ll_rounding FROM {invoice} x) i
                LEFT JOIN (SELECT invoice_id::text AS invoice_id, sum(amount * ll_scale) AS s FROM {invoice_line} x GROUP BY 1) l
                       ON l.invoice_id = i.invoice_id::text
                WHERE i.total <> i.subtotal - i.discount + i.tax + i.ll_rounding
                   OR i.total * i.ll_scale <> coalesce(l.s, 0) + i.ll_rounding * i.ll_scale
                """),
        // The legacy system's rounding difference is a cent or so per line, never a hidden charge.
        CrossRowCheck(
            entity: .invoice, reason: "rounding_too_large", needs: [.invoice, .invoiceLine], scaled: [.invoice],
            sql: """
                SELECT i.invoice_id::text,
                       'rounding ' || \(money("i.ll_rounding * i.ll_scale", "i")) || ' is more than one minor unit per line ('
                       || coalesce(l.n, 0)::text || ' line' || CASE WHEN coalesce(l.n, 0) = 1 THEN '' ELSE 's' END || ')'
                FROM (SELECT x.*, \(optionalNumber("x", "rounding")) AS ll_rounding FROM {invoice} x) i
                LEFT JOIN (SELECT invoice_id::text AS invoice_id, count(*) AS n FROM {invoice_line} x GROUP BY 1) l
                       ON l.invoice_id = i.invoice_id::text
                WHERE abs(i.ll_rounding * i.ll_scale) > greatest(coalesce(l.n, 0), 1)
                """),
        CrossRowCheck(
            entity: .invoiceLine, reason: "line_amount_mismatch", needs: [.invoiceLine], scaled: [.invoiceLine],
            sql: """
                SELECT l.invoice_line_id::text,
                       'quantity ' || l.quantity::text || ' × unit_amount ' || l.unit_amount::text
                       || ' is ' || \(money("l.quantity * l.unit_amount * l.ll_scale", "l"))
                       || ', but amount is ' || \(money("l.amount * l.ll_scale", "l"))
                FROM {invoice_line} l
                WHERE l.kind IS DISTINCT FROM 'proration' AND l.proration IS NOT TRUE AND l.unit_amount IS NOT NULL
                  AND abs((l.quantity * l.unit_amount - l.amount) * l.ll_scale) >= 1
                """),
        CrossRowCheck(
            entity: .invoice, reason: "paid_before_finalized", needs: [.invoice],
            sql: """
                SELECT invoice_id::text, 'paid_at ' || paid_at::text || ' is before finalized_at ' || finalized_at::text
                FROM {invoice} x WHERE paid_at < finalized_at
                """),
        CrossRowCheck(
            entity: .invoice, reason: "finalized_before_created", needs: [.invoice],
            sql: """
                SELECT invoice_id::text, 'finalized_at ' || finalized_at::text || ' is before created_at ' || created_at::text
                FROM {invoice} x WHERE finalized_at < created_at
                """),
        CrossRowCheck(
            entity: .invoice, reason: "currency_mismatch", needs: [.invoice, .customer],
            sql: """
                SELECT i.invoice_id::text, 'invoice in ' || i.currency || ' but customer ' || c.customer_id::text
                       || ' bills in ' || c.currency
                FROM {invoice} i JOIN {customer} c ON c.customer_id::text = i.customer_id::text
                WHERE c.currency IS NOT NULL AND i.currency IS NOT NULL AND c.currency <> i.currency
                """),
        CrossRowCheck(
            entity: .invoice, reason: "duplicate_invoice_number", needs: [.invoice],
            sql: """
                SELECT invoice_id::text, 'number ' || number || ' is already used by invoice ' || first_id
                FROM (SELECT invoice_id, number, first_value(invoice_id::text) OVER w AS first_id, row_number() OVER w AS n
                      FROM {invoice} x WHERE number IS NOT NULL
                      WINDOW w AS (PARTITION BY number ORDER BY finalized_at, invoice_id::text)) d
                WHERE n > 1
                """),
        CrossRowCheck(
            entity: .invoice, reason: "paid_without_payment", needs: [.invoice, .payment],
            optional: [.balanceTransaction, .paymentAllocation, .creditApplication],
            anyOf: [.balanceTransaction, .creditApplication],
            sql: """
                SELECT i.invoice_id::text, 'status paid, total ' || i.total::text
                       || ', but no succeeded payment, payment allocation, balance application or credit applied settles it'
                FROM {invoice} i
                WHERE i.status = 'paid' AND i.total > 0 AND \(optionalNumber("i", "credit_applied")) = 0
                  AND NOT EXISTS (SELECT 1 FROM {payment} p
                                  WHERE p.invoice_id::text = i.invoice_id::text AND p.status = 'succeeded')
                  AND NOT EXISTS (SELECT 1 FROM {payment_allocation} a JOIN {payment} p ON p.payment_id::text = a.payment_id::text
                                  WHERE a.invoice_id::text = i.invoice_id::text AND p.status = 'succeeded')
                  AND NOT EXISTS (SELECT 1 FROM {balance_transaction} b WHERE b.invoice_id::text = i.invoice_id::text)
                  AND NOT EXISTS (SELECT 1 FROM {credit_application} c WHERE c.invoice_id::text = i.invoice_id::text)
                """),
        CrossRowCheck(
            entity: .invoice, reason: "payment_currency_mismatch", needs: [.invoice, .payment],
            sql: """
                SELECT DISTINCT i.invoice_id::text, 'payment ' || p.payment_id::text || ' in ' || p.currency
                       || ' for an invoice in ' || i.currency
                FROM {invoice} i JOIN {payment} p ON p.invoice_id::text = i.invoice_id::text
                WHERE p.currency IS NOT NULL AND i.currency IS NOT NULL AND p.currency <> i.currency
                """),
        CrossRowCheck(
            entity: .subscription, reason: "subscription_chain_foreign_customer", needs: [.subscription],
            sql: """
                SELECT s.subscription_id::text, 'previous_subscription_id ' || s.previous_subscription_id::text
                       || ' belongs to customer ' || p.customer_id::text || ', not ' || s.customer_id::text
                FROM {subscription} s JOIN {subscription} p ON p.subscription_id::text = s.previous_subscription_id::text
                WHERE p.customer_id::text <> s.customer_id::text
                """),
        CrossRowCheck(
            entity: .payment, reason: "duplicate_provider_payment_id", needs: [.payment],
            sql: """
                SELECT payment_id::text, 'provider_payment_id ' || provider_payment_id || ' is already used by payment ' || first_id
                FROM (SELECT payment_id, provider_payment_id,
                             first_value(payment_id::text) OVER w AS first_id, row_number() OVER w AS n
                      FROM {payment} x WHERE provider_payment_id IS NOT NULL
                      WINDOW w AS (PARTITION BY provider_payment_id ORDER BY created_at, payment_id::text)) d
                WHERE n > 1
                """),
        CrossRowCheck(
            entity: .refund, reason: "refund_exceeds_payment", needs: [.refund, .payment], scaled: [.refund, .payment],
            sql: """
                SELECT r.refund_id::text, 'refunds of payment ' || p.payment_id::text || ' total '
                       || \(money("t.s", "p")) || ', more than its amount ' || \(money("p.amount * p.ll_scale", "p"))
                FROM {refund} r
                JOIN (SELECT payment_id::text AS payment_id, sum(amount * ll_scale) AS s FROM {refund} x
                      WHERE status IN ('succeeded', 'pending') GROUP BY 1) t ON t.payment_id = r.payment_id::text
                JOIN {payment} p ON p.payment_id::text = r.payment_id::text
                WHERE t.s > p.amount * p.ll_scale
                """),
        CrossRowCheck(
            entity: .refund, reason: "refund_of_unsucceeded_payment", needs: [.refund, .payment],
            sql: """
                SELECT r.refund_id::text, 'payment ' || p.payment_id::text || ' is ' || p.status || ', not succeeded'
                FROM {refund} r JOIN {payment} p ON p.payment_id::text = r.payment_id::text
                WHERE p.status <> 'succeeded'
                """),
        CrossRowCheck(
            entity: .creditNote, reason: "credit_note_balance_exceeds_total", needs: [.creditNote],
            sql: """
                SELECT credit_note_id::text, 'balance_remaining ' || balance_remaining::text || ' exceeds total ' || total::text
                FROM {credit_note} x WHERE balance_remaining > total
                """),
        // A note split into a credited, a refunded and an offset part: the parts are the total,
        // and what is left to use comes out of the credited part.
        CrossRowCheck(
            entity: .creditNote, reason: "credit_note_parts_mismatch", needs: [.creditNote],
            sql: """
                SELECT credit_note_id::text,
                       CASE WHEN c + r + o <> total
                            THEN 'credit_amount ' || c::text || ' + refund_amount ' || r::text || ' + offset_amount '
                                 || o::text || ' is ' || (c + r + o)::text || ', not the total ' || total::text
                            ELSE 'balance_remaining ' || balance_remaining::text || ' exceeds credit_amount ' || c::text END
                FROM (SELECT x.*, \(optionalNumber("x", "credit_amount", "x.total")) AS c,
                             \(optionalNumber("x", "refund_amount")) AS r, \(optionalNumber("x", "offset_amount")) AS o
                      FROM {credit_note} x) n
                WHERE (c + r + o <> total OR balance_remaining > c)
                  AND NOT balance_remaining > total  -- credit_note_balance_exceeds_total says so already
                """),
        CrossRowCheck(
            entity: .paymentAllocation, reason: "allocation_exceeds_payment", needs: [.paymentAllocation, .payment],
            scaled: [.paymentAllocation, .payment],
            sql: """
                SELECT a.payment_allocation_id::text, 'allocations of payment ' || p.payment_id::text || ' total '
                       || \(money("t.s", "p")) || ', more than its amount ' || \(money("p.amount * p.ll_scale", "p"))
                FROM {payment_allocation} a
                JOIN (SELECT payment_id::text AS payment_id, sum(amount * ll_scale) AS s FROM {payment_allocation} x GROUP BY 1) t
                  ON t.payment_id = a.payment_id::text
                JOIN {payment} p ON p.payment_id::text = a.payment_id::text
                WHERE t.s > p.amount * p.ll_scale
                """),
        CrossRowCheck(
            entity: .paymentAllocation, reason: "allocation_currency_mismatch", needs: [.paymentAllocation, .payment],
            sql: """
                SELECT a.payment_allocation_id::text, 'allocation in ' || a.currency || ' of payment '
                       || p.payment_id::text || ' in ' || p.currency
                FROM {payment_allocation} a JOIN {payment} p ON p.payment_id::text = a.payment_id::text
                WHERE a.currency IS NOT NULL AND p.currency IS NOT NULL AND a.currency <> p.currency
                """),
        timeZoneKnown(.customer),
        timeZoneKnown(.billingEntity),
        CrossRowCheck(
            entity: .subscription, reason: "quantity_negative", needs: [.subscription],
            sql: "SELECT subscription_id::text, 'quantity ' || quantity::text FROM {subscription} x WHERE quantity < 0"),
    ] + widerReferences

    /// Which parent entities a child's rows follow into quarantine, by reference column.
    package static let parents: [Entity: [(column: String, parent: Entity)]] = [
        .subscription: [("customer_id", .customer)],
        .invoice: [("customer_id", .customer)],
        .invoiceLine: [("invoice_id", .invoice)],
        .payment: [("customer_id", .customer), ("invoice_id", .invoice)],
        .refund: [("payment_id", .payment), ("customer_id", .customer)],
        .creditNote: [("customer_id", .customer), ("invoice_id", .invoice)],
        .balanceTransaction: [("customer_id", .customer), ("invoice_id", .invoice), ("credit_note_id", .creditNote)],
        .paymentAllocation: [("payment_id", .payment), ("invoice_id", .invoice), ("customer_id", .customer)],
        .wallet: [("customer_id", .customer)],
        .walletTransaction: [("wallet_id", .wallet), ("invoice_id", .invoice), ("customer_id", .customer)],
        .creditApplication: [
            ("invoice_id", .invoice), ("credit_note_id", .creditNote), ("wallet_transaction_id", .walletTransaction),
            ("customer_id", .customer),
        ],
        .chargeback: [("payment_id", .payment), ("invoice_id", .invoice), ("customer_id", .customer)],
        .paymentTransaction: [("payment_id", .payment)],
    ]
}
