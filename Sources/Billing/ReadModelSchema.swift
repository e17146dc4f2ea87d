import Postgres

/// The names and DDL of the read models in one PostgreSQL schema (`ledgerlift_read` by default).
///
/// One schema holds everything a projection maintains, so a blue/green rebuild can build a whole
/// second copy beside the live one and swap the two with schema renames:
///
/// - one **canonical table** per ``Entity`` (`entity.tableName`): exactly the entity's canonical
///   columns (their ``ColumnType/sqlType``), the key as primary key, plus `attributes jsonb`;
/// - one **history table** per entity (`<table>_history`): every version of every row, valid over
///   `[valid_from, valid_to)` in business time (`valid_to` NULL for the current version);
/// - the **derived read models** `customer_balances`, `revenue_by_month`, `mrr_by_month` and the
///   view `ar_aging`, with their two helper tables `revenue_entries` and `mrr_movements`;
/// - `projection_state`, one row saying which consumer feeds the schema and whether it is live.
///
/// Every definition is documented in `docs/read-models.md`.
public struct ReadModelSchema: Sendable, Hashable {
    /// The schema's name, unquoted.
    public let name: String
    /// `name`, quoted for SQL.
    let q: String

    /// Bumped whenever the DDL or a read model's definition changes: a read model built by an
    /// older binary is then rebuilt instead of being continued.
    public static let modelVersion: Int32 = 6

    /// The derived read models, in the order they are listed and compared.
    public static let derivedTables = [
        "customer_balances", "revenue_entries", "revenue_by_month", "mrr_movements", "mrr_by_month",
    ]

    public init(_ name: String) {
        self.name = name
        self.q = quoteIdentifier(name)
    }

    /// Every table a projection writes (canonical, history, derived), unqualified, in a stable order.
    public static var allTables: [String] {
        Entity.allCases.map(\.tableName) + Entity.allCases.map { $0.tableName + "_history" } + derivedTables
    }

    /// `schema.table`, quoted.
    func qualified(_ table: String) -> String { q + "." + quoteIdentifier(table) }

    /// The canonical table of `entity`, quoted.
    func table(_ entity: Entity) -> String { qualified(entity.tableName) }

    /// The history table of `entity`, quoted.
    func history(_ entity: Entity) -> String { qualified(entity.tableName + "_history") }

    // MARK: - DDL

    /// Creates the schema and every table, without the secondary indexes (see
    /// ``secondaryIndexesScript``).
    ///
    /// - Parameter bulk: for a blue/green build, the history tables get a hash index on the key
    ///   instead of their primary key: a build appends versions in business-time order, so its
    ///   keys arrive in random order, and a B-tree on `(key, valid_from)` would cost most of the
    ///   build; the hash index serves the few lookups of keys that already exist, and
    ///   ``completeScript(_:)`` adds the primary key with one sorted build at the end.
    func createScript(bulk: Bool) -> String {
        var parts = ["CREATE SCHEMA \(q)"]
        for entity in Entity.allCases {
            parts.append(Self.canonicalTableDDL(entity, table: table(entity)))
            parts.append(Self.historyTableDDL(entity, table: history(entity), primaryKey: !bulk))
            if bulk {
                // Autovacuum would analyze and vacuum the tables while they grow, competing with the
                // build for CPU; the build analyzes them itself at the end and restores autovacuum.
                parts.append("ALTER TABLE \(history(entity)) SET (autovacuum_enabled = false)")
                parts.append(
                    "CREATE INDEX \(quoteIdentifier(Self.bulkIndex(entity))) ON \(history(entity)) USING hash "
                        + "(\(quoteIdentifier(entity.keyColumn)))")
            }
        }
        parts.append(
            """
            CREATE TABLE \(qualified("customer_balances")) (
                customer_id      text COLLATE "C" NOT NULL,
                currency         char(3) NOT NULL,
                -- Sums of many amounts: numeric, so a total beyond 64-bit minor units is held
                -- exactly (bigint stopped the projection for good); readers say so if it does
                -- not fit their Int64.
                receivables      numeric NOT NULL,
                unapplied_credit numeric NOT NULL,
                balance          numeric NOT NULL,
                prepaid_credit   numeric NOT NULL,
                PRIMARY KEY (customer_id, currency)
            )
            """)
        parts.append(
            """
            CREATE TABLE \(qualified("revenue_entries")) (
                kind               text NOT NULL,
                key                text COLLATE "C" NOT NULL,
                -- The UTC month of `at`, which revenue_by_month sums by.
                month              date NOT NULL,
                -- The instant the entry counts at: reports in another time zone bucket it again.
                at                 timestamptz NOT NULL,
                currency           char(3) NOT NULL,
                -- numeric: a payment's collected part is its amount minus its prepaid part,
                -- which dirty data can push beyond 64 bits; the projection must not stall.
                amount             numeric NOT NULL,
                customer_id        text COLLATE "C",
                -- The row's own billing entity; NULL means its customer's, resolved when a
                -- report reads it, so a customer changing tenant rewrites no entries.
                billing_entity_id  text COLLATE "C",
                PRIMARY KEY (kind, key)
            )
            """)
        parts.append(
            """
            CREATE TABLE \(qualified("revenue_by_month")) (
                month      date NOT NULL,
                currency   char(3) NOT NULL,
                invoiced   numeric NOT NULL,
                collected  numeric NOT NULL,
                prepaid_collected numeric NOT NULL,
                refunded   numeric NOT NULL,
                credited   numeric NOT NULL,
                PRIMARY KEY (month, currency)
            )
            """)
        parts.append(
            """
            CREATE TABLE \(qualified("mrr_movements")) (
                customer_id  text COLLATE "C" NOT NULL,
                currency     char(3) NOT NULL,
                month        date NOT NULL,
                mrr_before   bigint NOT NULL,
                mrr_after    bigint NOT NULL,
                PRIMARY KEY (customer_id, currency, month)
            )
            """)
        parts.append(
            """
            CREATE TABLE \(qualified("mrr_by_month")) (
                month        date NOT NULL,
                currency     char(3) NOT NULL,
                "new"        bigint NOT NULL,
                expansion    bigint NOT NULL,
                contraction  bigint NOT NULL,
                churn        bigint NOT NULL,
                mrr          bigint NOT NULL,
                PRIMARY KEY (month, currency)
            )
            """)
        // The least common multiple of a group's plan interval counts: MRR adds amounts per
        // 1, 2, 3… intervals over one common denominator, so it is exact and rounded once.
        parts.append(
            "CREATE AGGREGATE \(qualified(Self.lcmAggregate))(numeric) (SFUNC = pg_catalog.lcm, STYPE = numeric, INITCOND = '1')")
        parts.append(
            """
            CREATE VIEW \(qualified("ar_aging")) AS
            SELECT customer_id, currency,
                   coalesce(sum(amount_due) FILTER (WHERE days_past_due IS NULL OR days_past_due <= 0), 0)::bigint AS "current",
                   coalesce(sum(amount_due) FILTER (WHERE days_past_due BETWEEN 1 AND 30), 0)::bigint AS d1_30,
                   coalesce(sum(amount_due) FILTER (WHERE days_past_due BETWEEN 31 AND 60), 0)::bigint AS d31_60,
                   coalesce(sum(amount_due) FILTER (WHERE days_past_due BETWEEN 61 AND 90), 0)::bigint AS d61_90,
                   coalesce(sum(amount_due) FILTER (WHERE days_past_due > 90), 0)::bigint AS d90_plus
            FROM (
                SELECT customer_id, coalesce(currency, 'XXX')::char(3) AS currency, coalesce(amount_due, 0) AS amount_due,
                       (now() AT TIME ZONE 'UTC')::date - due_on AS days_past_due
                FROM \(table(.invoice))
                WHERE status IN ('open', 'uncollectible') AND customer_id IS NOT NULL
            ) AS open_invoices
            GROUP BY customer_id, currency
            """)
        parts.append(
            """
            CREATE TABLE \(qualified("projection_state")) (
                singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                model_version  integer NOT NULL,
                consumer       text NOT NULL,
                state          text NOT NULL CHECK (state IN ('building', 'complete', 'live')),
                created_at     timestamptz NOT NULL DEFAULT now(),
                swapped_at     timestamptz
            )
            """)
        return parts.joined(separator: ";\n") + ";"
    }

    /// The build-time hash index of an entity's history table.
    static func bulkIndex(_ entity: Entity) -> String { entity.tableName + "_history_key_build" }

    /// Completes one entity of a finished bulk build, as one transaction's work: the history
    /// table gets its primary key (built sorted, in one pass) in place of the build-time hash
    /// index and autovacuum back, the canonical table is filled from the current versions,
    /// and the entity's secondary indexes and statistics are made.
    func completeScript(_ entity: Entity) -> String {
        let key = quoteIdentifier(entity.keyColumn)
        let columns = ReadModelRows.valueColumns(entity).map { quoteIdentifier($0.name) } + ["attributes"]
        var statements = [
            "ALTER TABLE \(history(entity)) ADD PRIMARY KEY (\(key), valid_from)",
            "DROP INDEX \(qualified(Self.bulkIndex(entity)))",
            "ALTER TABLE \(history(entity)) RESET (autovacuum_enabled)",
            "INSERT INTO \(table(entity)) (\(key), \(columns.joined(separator: ", "))) SELECT \(key), "
                + columns.joined(separator: ", ") + " FROM \(history(entity)) WHERE valid_to IS NULL ORDER BY \(key)",
        ]
        statements += secondaryIndexes(entity)
        // A small sample is enough for the derived models' plans; autovacuum refines it later.
        statements.append("SET LOCAL default_statistics_target = 10")
        statements.append("ANALYZE \(table(entity))")
        statements.append("ANALYZE \(history(entity))")
        statements.append("SET LOCAL default_statistics_target = DEFAULT")
        return statements.joined(separator: ";\n") + ";"
    }

    /// Whether ``completeScript(_:)`` has run for any entity: the copy is being completed,
    /// and building it further would leave the completed entities' canonical tables behind.
    func completionStarted(in session: Session) throws -> Bool {
        try session.query(
            "SELECT coalesce(bool_or(to_regclass(i) IS NULL), false) FROM unnest($1::text[]) AS i",
            [PostgresArray(Entity.allCases.map { qualified(Self.bulkIndex($0)) })]
        ).rows[0].decode(at: 0, as: Bool.self)
    }

    /// Whether ``completeScript(_:)`` has run for `entity` (its build-time index is gone).
    func isComplete(_ entity: Entity, in session: Session) throws -> Bool {
        try session.query("SELECT to_regclass($1) IS NULL", [qualified(Self.bulkIndex(entity))]).rows[0]
            .decode(at: 0, as: Bool.self)
    }

    /// The indexes of `entity`'s tables beyond their primary keys, serving the incremental
    /// path and the temporal queries (a bulk build needs none, so it creates them at the end).
    func secondaryIndexes(_ entity: Entity) -> [String] {
        let customer = quoteIdentifier("customer_id")
        func index(_ table: String, _ name: String, _ columns: String) -> String {
            "CREATE INDEX IF NOT EXISTS \(quoteIdentifier(name)) ON \(qualified(table)) (\(columns))"
        }
        switch entity {
        case .invoice:
            return [
                index("invoices", "invoices_customer_id", customer),
                index("invoices_history", "invoices_history_customer_id", customer + ", valid_from"),
            ]
        case .balanceTransaction:
            return [
                index("balance_transactions", "balance_transactions_customer_id", customer),
                index("balance_transactions_history", "balance_transactions_history_customer_id", customer + ", valid_from"),
            ]
        case .subscription:
            return [
                index("subscriptions_history", "subscriptions_history_customer_id", customer),
                index("subscriptions_history", "subscriptions_history_plan_id", quoteIdentifier("plan_id")),
            ]
        default:
            return []
        }
    }

    /// The aggregate `lcm(numeric)` over rows, made in the schema (PostgreSQL has `lcm` of
    /// two numbers only).
    static let lcmAggregate = "ledgerlift_lcm"

    /// The secondary indexes of the derived tables, and those of canonical tables that only
    /// the derived models' incremental path needs: the payments of an invoice that turns into
    /// a credit invoice (or stops being one), a payment's allocations, a customer's wallets
    /// and credit applications, the credit applications of an invoice (for those that name no
    /// customer).
    var derivedIndexes: [String] {
        func index(_ table: String, _ name: String, _ column: String) -> String {
            "CREATE INDEX IF NOT EXISTS \(quoteIdentifier(name)) ON \(qualified(table)) (\(quoteIdentifier(column)))"
        }
        return [
            index("revenue_entries", "revenue_entries_month", "month"),
            index("payments", "payments_invoice_id", "invoice_id"),
            index("payment_allocations", "payment_allocations_payment_id", "payment_id"),
            index("payment_allocations", "payment_allocations_invoice_id", "invoice_id"),
            index("wallets", "wallets_customer_id", "customer_id"),
            index("credit_applications", "credit_applications_customer_id", "customer_id"),
            index("credit_applications", "credit_applications_invoice_id", "invoice_id"),
        ]
    }

    /// Every secondary index.
    var secondaryIndexesScript: String {
        (Entity.allCases.flatMap(secondaryIndexes) + derivedIndexes).joined(separator: ";\n") + ";"
    }

    static func canonicalTableDDL(_ entity: Entity, table: String) -> String {
        var columns = [String]()
        for column in entity.columns {
            let name = quoteIdentifier(column.name)
            if column.name == entity.keyColumn {
                columns.append("\(name) \(column.type.sqlType) COLLATE \"C\" PRIMARY KEY")
            } else {
                columns.append("\(name) \(column.type.sqlType)")
            }
        }
        columns.append("attributes jsonb NOT NULL DEFAULT '{}'")
        return "CREATE TABLE \(table) (\n    " + columns.joined(separator: ",\n    ") + "\n)"
    }

    static func historyTableDDL(_ entity: Entity, table: String, primaryKey: Bool) -> String {
        let key = quoteIdentifier(entity.keyColumn)
        var columns = [
            "\(key) text COLLATE \"C\" NOT NULL", "valid_from timestamptz NOT NULL", "valid_to timestamptz",
        ]
        for column in entity.columns where column.name != entity.keyColumn {
            columns.append("\(quoteIdentifier(column.name)) \(column.type.sqlType)")
        }
        columns.append("attributes jsonb NOT NULL DEFAULT '{}'")
        if primaryKey { columns.append("PRIMARY KEY (\(key), valid_from)") }
        columns.append("CHECK (valid_to IS NULL OR valid_to > valid_from)")
        return "CREATE TABLE \(table) (\n    " + columns.joined(separator: ",\n    ") + "\n)"
    }

    // MARK: - Introspection

    /// Whether the schema exists.
    func exists(_ session: Session) throws -> Bool {
        try session.query("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", [name]).rows[0]
            .decode(at: 0, as: Bool.self)
    }

    /// Drops the schema if it exists — only if it is a read model.
    ///
    /// - Throws: ``ProjectionError/foreignSchema(schema:)`` for a schema that is not one.
    func dropIfOwned(_ session: Session) throws {
        guard try exists(session) else { return }
        guard try state(session) != nil else { throw ProjectionError.foreignSchema(schema: name) }
        try session.execute("DROP SCHEMA \(q) CASCADE")
    }

    /// The schema's `projection_state` row, or `nil` when the schema (or the row) is missing.
    func state(_ session: Session) throws -> ReadModelState? {
        let present = try session.query("SELECT to_regclass($1) IS NOT NULL", [qualified("projection_state")]).rows[0]
            .decode(at: 0, as: Bool.self)
        guard present else { return nil }
        guard
            let row = try session.query(
                "SELECT model_version, consumer, state, swapped_at FROM \(qualified("projection_state"))"
            ).first
        else { return nil }
        let phase = try row.decode(at: 2, as: String.self)
        guard let parsed = ReadModelState.Phase(rawValue: phase) else {
            throw ProjectionError.undecodableColumn(table: name + ".projection_state", column: "state", value: phase)
        }
        return ReadModelState(
            modelVersion: try row.decode(at: 0), consumer: try row.decode(at: 1), phase: parsed,
            swappedAt: try row.decode(at: 3, as: PostgresTimestamp?.self))
    }
}

/// What a read-model schema says about itself.
public struct ReadModelState: Sendable, Hashable {
    /// Where a read model is in its life.
    public enum Phase: String, Sendable, Hashable {
        /// A blue/green copy still being filled.
        case building
        /// A blue/green copy with every table, index and derived model complete, catching up
        /// before its swap.
        case complete
        /// The read model readers use.
        case live
    }

    /// ``ReadModelSchema/modelVersion`` of the binary that built it.
    public var modelVersion: Int32
    /// The checkpoint that feeds it.
    public var consumer: String
    public var phase: Phase
    /// When it was swapped in, for a schema built blue/green.
    public var swappedAt: PostgresTimestamp?

    /// Whether readers use it.
    public var isLive: Bool { phase == .live }
}
