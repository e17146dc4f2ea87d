import Postgres

extension EventStore {
    /// One step of the store's schema history.
    struct Migration: Sendable {
        let version: Int
        let description: String
        let sql: @Sendable (EventStore) -> String
    }

    /// Every schema version this binary knows, in order. Append new steps; never edit old ones.
    static let migrations: [Migration] = [
        Migration(version: 1, description: "events, streams, snapshots, checkpoints") { store in
            let s = store.s
            let channel = store.notificationChannel.replacing("'", with: "''")
            return """
                CREATE TABLE \(s).streams (
                    stream_id   text COLLATE "C" PRIMARY KEY,
                    category    text COLLATE "C" NOT NULL,
                    version     bigint NOT NULL CHECK (version >= 0),
                    created_at  timestamptz NOT NULL DEFAULT now(),
                    updated_at  timestamptz NOT NULL DEFAULT now()
                );
                CREATE INDEX streams_category ON \(s).streams (category);

                CREATE TABLE \(s).events (
                    global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    event_id        uuid NOT NULL,
                    stream_id       text COLLATE "C" NOT NULL,
                    stream_version  bigint NOT NULL CHECK (stream_version >= 1),
                    event_type      text NOT NULL,
                    schema_version  integer NOT NULL,
                    occurred_at     timestamptz NOT NULL,
                    recorded_at     timestamptz NOT NULL DEFAULT now(),
                    payload         jsonb NOT NULL,
                    metadata        jsonb NOT NULL DEFAULT '{}',
                    transaction_id  xid8 NOT NULL DEFAULT pg_current_xact_id(),
                    CONSTRAINT events_event_id_key UNIQUE (event_id),
                    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
                );
                -- The global order readers trust: (writing transaction, position).
                CREATE INDEX events_global_order ON \(s).events (transaction_id, global_position);

                CREATE FUNCTION \(s).refuse_event_mutation() RETURNS trigger LANGUAGE plpgsql AS $fn$
                BEGIN
                    RAISE EXCEPTION 'events are append-only: % on %.% is refused', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
                        USING ERRCODE = 'LL001';
                END
                $fn$;
                CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON \(s).events
                    FOR EACH ROW EXECUTE FUNCTION \(s).refuse_event_mutation();
                CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON \(s).events
                    FOR EACH STATEMENT EXECUTE FUNCTION \(s).refuse_event_mutation();

                -- One notification per writing statement; PostgreSQL folds repeats within a transaction.
                CREATE FUNCTION \(s).announce_events() RETURNS trigger LANGUAGE plpgsql AS $fn$
                BEGIN
                    PERFORM pg_notify('\(channel)', '');
                    RETURN NULL;
                END
                $fn$;
                CREATE TRIGGER events_announce AFTER INSERT ON \(s).events
                    FOR EACH STATEMENT EXECUTE FUNCTION \(s).announce_events();

                CREATE TABLE \(s).snapshots (
                    stream_id       text COLLATE "C" NOT NULL,
                    stream_version  bigint NOT NULL,
                    snapshot_type   text NOT NULL,
                    schema_version  integer NOT NULL,
                    state           jsonb NOT NULL,
                    created_at      timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (stream_id, snapshot_type, stream_version)
                );

                CREATE TABLE \(s).checkpoints (
                    consumer          text PRIMARY KEY,
                    transaction_id    xid8 NOT NULL,
                    global_position   bigint NOT NULL,
                    events_processed  bigint NOT NULL DEFAULT 0,
                    updated_at        timestamptz NOT NULL DEFAULT now()
                );
                """
        },
        Migration(version: 2, description: "append_to_stream: one round trip per append") { store in
            let s = store.s
            let lockPrefix = (store.schema + ".").replacing("'", with: "''")
            return """
                -- Everything an expected-version append does, in one statement. The stream's
                -- advisory lock is taken first: it serializes writers of the stream (a loser gets a
                -- clean wrong-expected-version error), and, unlike a row lock, it does not assign a
                -- transaction id while waiting. The id comes with the first write, after the stream's
                -- previous writer has committed, so the global order — by transaction id first —
                -- keeps every stream's events in version order.
                -- Bulk appends update thousands of stream rows per batch: leave room on each page
                -- so those updates stay HOT, and keep no index that an update would have to touch.
                ALTER TABLE \(s).streams SET (fillfactor = 50);
                DROP INDEX \(s).streams_category;

                CREATE FUNCTION \(s).append_to_stream(
                    p_stream text, p_expected text, p_expected_version bigint, p_ids uuid[], p_types text[],
                    p_schema_versions integer[], p_occurred timestamptz[], p_payloads jsonb[], p_metadata jsonb[]
                ) RETURNS TABLE (appended integer, duplicates integer, stream_version bigint)
                LANGUAGE plpgsql AS $fn$
                DECLARE
                    v_current bigint;
                    v_total integer := cardinality(p_ids);
                    v_duplicates integer;
                    v_new integer;
                    v_conflict record;
                BEGIN
                    PERFORM pg_advisory_xact_lock(hashtextextended('\(lockPrefix)' || p_stream, 0));
                    SELECT st.version INTO v_current FROM \(s).streams st WHERE st.stream_id = p_stream;
                    v_current := coalesce(v_current, 0);

                    SELECT i.id, e.stream_id AS stored_stream,
                           concat_ws(', ',
                               CASE WHEN e.stream_id <> p_stream THEN 'stream' END,
                               CASE WHEN e.event_type <> i.typ OR e.schema_version <> i.sv THEN 'type' END,
                               CASE WHEN e.occurred_at <> i.occ THEN 'occurred_at' END,
                               CASE WHEN e.payload <> i.pl THEN 'payload' END) AS differing
                    INTO v_conflict
                    FROM unnest(p_ids, p_types, p_schema_versions, p_occurred, p_payloads) AS i(id, typ, sv, occ, pl)
                    JOIN \(s).events e ON e.event_id = i.id
                    WHERE (e.stream_id, e.event_type, e.schema_version, e.occurred_at, e.payload)
                          IS DISTINCT FROM (p_stream, i.typ, i.sv, i.occ, i.pl)
                    LIMIT 1;
                    IF FOUND THEN
                        RAISE EXCEPTION 'event % is already stored with different content', v_conflict.id
                            USING ERRCODE = 'LL003', DETAIL = v_conflict.id::text || ' ' || v_conflict.stored_stream,
                                  HINT = v_conflict.differing || ' differ';
                    END IF;

                    SELECT count(*) INTO v_duplicates FROM \(s).events e WHERE e.event_id = ANY(p_ids);
                    IF v_duplicates = v_total THEN
                        RETURN QUERY SELECT 0, v_duplicates, v_current;
                        RETURN;
                    END IF;

                    IF NOT (p_expected = 'any'
                            OR (p_expected = 'no_stream' AND v_current = 0)
                            OR (p_expected = 'stream_exists' AND v_current > 0)
                            OR (p_expected = 'exact' AND v_current = p_expected_version)) THEN
                        RAISE EXCEPTION 'wrong expected version for stream %', p_stream
                            USING ERRCODE = 'LL002', DETAIL = v_current::text;
                    END IF;

                    INSERT INTO \(s).events
                        (event_id, stream_id, stream_version, event_type, schema_version, occurred_at, payload, metadata)
                    SELECT i.id, p_stream, v_current + row_number() OVER (ORDER BY i.ord), i.typ, i.sv, i.occ, i.pl, i.md
                    FROM unnest(p_ids, p_types, p_schema_versions, p_occurred, p_payloads, p_metadata)
                         WITH ORDINALITY AS i(id, typ, sv, occ, pl, md, ord)
                    WHERE NOT EXISTS (SELECT 1 FROM \(s).events e WHERE e.event_id = i.id)
                    ORDER BY i.ord;
                    GET DIAGNOSTICS v_new = ROW_COUNT;

                    INSERT INTO \(s).streams AS st (stream_id, category, version)
                    VALUES (p_stream, split_part(p_stream, '-', 1), v_current + v_new)
                    ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version, updated_at = now();

                    RETURN QUERY SELECT v_new, v_duplicates, v_current + v_new;
                END
                $fn$;
                """
        },
        Migration(version: 3, description: "idempotency keys, Stripe deliveries, command id sequences") { store in
            // What `serve`, the Stripe webhook and the command executor used to create on first
            // use. Created here, by the store's owner, so the writer role of `store init
            // --grant-to` is granted them like the rest of the store rather than owning
            // whatever it (or, first, some other role) happened to create: a table created at
            // runtime belongs to whoever created it, and every other role is then refused.
            // `IF NOT EXISTS`: a store used by a build that created them at runtime keeps them.
            let s = store.s
            let sequences = EventStore.commandIDSequenceEntities.map {
                "CREATE SEQUENCE IF NOT EXISTS \(s).\(quoteIdentifier("command_ids_" + $0)) AS bigint MINVALUE 1;"
            }
            return """
                -- `Idempotency-Key` responses of `serve` (kept 24 hours, then purged).
                CREATE TABLE IF NOT EXISTS \(s).idempotency_keys (
                    idempotency_key     text COLLATE "C" PRIMARY KEY,
                    request_fingerprint text NOT NULL,
                    method              text NOT NULL,
                    path                text NOT NULL,
                    status              integer NOT NULL,
                    content_type        text NOT NULL,
                    response_body       text NOT NULL,
                    created_at          timestamptz NOT NULL DEFAULT now(),
                    expires_at          timestamptz NOT NULL
                );
                CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at ON \(s).idempotency_keys (expires_at);

                -- One row per Stripe event id: the webhook's deduplication and per-object order.
                CREATE TABLE IF NOT EXISTS \(s).stripe_events (
                    event_id          text PRIMARY KEY,
                    type              text NOT NULL,
                    object_id         text,
                    event_created     timestamptz NOT NULL,
                    livemode          boolean NOT NULL,
                    api_version       text,
                    received_at       timestamptz NOT NULL DEFAULT now(),
                    last_received_at  timestamptz NOT NULL DEFAULT now(),
                    deliveries        integer NOT NULL DEFAULT 1,
                    outcome           text NOT NULL CHECK (outcome IN ('pending', 'applied', 'stale', 'ignored')),
                    events            integer NOT NULL DEFAULT 0,
                    streams           text[] NOT NULL DEFAULT '{}',
                    detail            text
                );
                CREATE INDEX IF NOT EXISTS stripe_events_object ON \(s).stripe_events (object_id, event_created)
                    WHERE outcome = 'applied';

                -- Keys the command executor allocates, one sequence per entity; unseeded (the
                -- executor moves each past the largest numeric key of its streams on first use).
                \(sequences.joined(separator: "\n"))
                """
        },
        Migration(version: 4, description: "candidate commands") { store in
            // What `serve --mode candidate` records for the comparison with legacy (issue 16
            // point 4): one row per operation id (the request's Idempotency-Key).
            let s = store.s
            return """
                CREATE TABLE IF NOT EXISTS \(s).candidate_commands (
                    op_id         text COLLATE "C" PRIMARY KEY,
                    command       text NOT NULL,
                    command_json  jsonb NOT NULL,
                    legacy_xid    xid8,
                    answer_status integer NOT NULL,
                    received_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
                    -- The shadow tailer's comparison with what legacy did (NULL: pending).
                    verdict       text CHECK (verdict IN ('match', 'mismatch', 'unverifiable')),
                    compared_at   timestamptz,
                    reason        text,
                    differences   jsonb
                );
                CREATE INDEX IF NOT EXISTS candidate_commands_received_at ON \(s).candidate_commands (received_at);
                CREATE INDEX IF NOT EXISTS candidate_commands_pending ON \(s).candidate_commands (legacy_xid)
                    WHERE verdict IS NULL;
                """
        },
        Migration(version: 5, description: "routing") { store in
            // Who is authoritative for reads and for writes while a cutover moves them (issue 17
            // point 3): one row, written only by `ledgerlift cutover`, read by `serve` inside each
            // command's transaction and by applications (`GET /routing`).
            let s = store.s
            return """
                CREATE TABLE IF NOT EXISTS \(s).routing (
                    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                    cutover     text NOT NULL,
                    reads       text NOT NULL CHECK (reads IN ('legacy', 'ledger')),
                    writes      text NOT NULL CHECK (writes IN ('legacy', 'ledger', 'frozen')),
                    version     bigint NOT NULL CHECK (version >= 1),
                    changed_at  timestamptz NOT NULL DEFAULT clock_timestamp()
                );
                """
        },
    ]

    /// The schema version that holds `routing`: what `ledgerlift cutover` and `serve` require.
    public static let routingSchemaVersion = 5

    /// The schema version that holds `candidate_commands`: what `serve --mode candidate` requires.
    public static let candidateSchemaVersion = 4

    /// The entities (raw values of `Billing.Entity`, which this module does not see) that
    /// schema version 3 creates a key sequence `command_ids_<entity>` for: every entity of the
    /// canonical model then. A later entity needs a later migration (old steps never change).
    public static let commandIDSequenceEntities = [
        "customer", "plan", "subscription", "invoice", "invoice_line", "payment", "refund", "credit_note",
        "balance_transaction", "billing_entity", "payment_allocation", "wallet", "wallet_transaction",
        "credit_application", "chargeback", "payment_transaction",
    ]

    /// The schema version that holds `idempotency_keys`, `stripe_events` and the
    /// `command_ids_<entity>` sequences: what `serve`, the webhook and the executor require.
    public static let serveSchemaVersion = 3

    /// The newest schema version this binary knows.
    public static var currentSchemaVersion: Int { migrations.last!.version }

    /// Creates the store or upgrades it to ``currentSchemaVersion``, idempotently and safely
    /// against concurrent runs (an advisory lock serializes them).
    ///
    /// - Returns: the schema version before and after.
    @discardableResult
    public func migrate(_ session: Session) throws -> (from: Int, to: Int) {
        try session.transaction { tx in
            try tx.lock(AdvisoryLock("ledgerlift.migrate/" + schema), scope: .transaction)
            try tx.execute("CREATE SCHEMA IF NOT EXISTS \(s)")
            try tx.execute(
                """
                CREATE TABLE IF NOT EXISTS \(s).schema_migrations (
                    version      integer PRIMARY KEY,
                    description  text NOT NULL,
                    applied_at   timestamptz NOT NULL DEFAULT now()
                )
                """)
            let found = try tx.query("SELECT coalesce(max(version), 0) AS v FROM \(s).schema_migrations").rows[0]
                .decode("v", as: Int32.self)
            guard Int(found) <= Self.currentSchemaVersion else {
                throw EventStoreError.schemaTooNew(found: Int(found), supported: Self.currentSchemaVersion)
            }
            for migration in Self.migrations where migration.version > Int(found) {
                try tx.executeScript(migration.sql(self))
                try tx.execute(
                    "INSERT INTO \(s).schema_migrations (version, description) VALUES ($1, $2)",
                    [Int32(migration.version), migration.description])
            }
            return (Int(found), Self.currentSchemaVersion)
        }
    }

    /// The schema version stored, or `nil` when the store does not exist.
    public func schemaVersion(_ session: Session) throws -> Int? {
        let exists = try session.query("SELECT to_regclass($1) IS NOT NULL AS e", [s + ".schema_migrations"]).rows[0]
            .decode("e", as: Bool.self)
        guard exists else { return nil }
        let row = try session.query("SELECT max(version) AS v FROM \(s).schema_migrations").rows[0]
        return try row.decode("v", as: Int32?.self).map(Int.init)
    }

    /// Throws ``EventStoreError/schemaTooOld(found:required:)`` unless the store is at least at
    /// `version` (and ``requireInitialized(_:)``'s errors): for code that uses objects a later
    /// migration brings — `serve` refuses to start on a store `store init` has not upgraded,
    /// rather than fail each request on a missing table.
    public func requireSchema(atLeast version: Int, _ session: Session) throws {
        try requireInitialized(session)
        let found = try schemaVersion(session) ?? 0
        guard found >= version else { throw EventStoreError.schemaTooOld(found: found, required: version) }
    }

    /// Throws ``EventStoreError/notInitialized(schema:)`` unless the store is at the current version.
    public func requireInitialized(_ session: Session) throws {
        guard let version = try schemaVersion(session), version >= 1 else {
            throw EventStoreError.notInitialized(schema: schema)
        }
        guard version <= Self.currentSchemaVersion else {
            throw EventStoreError.schemaTooNew(found: version, supported: Self.currentSchemaVersion)
        }
    }

}

// MARK: - A writer role that cannot alter the store

/// Why ``EventStore/grantWriter(_:in:)`` refused to grant a role the writer's privileges: each
/// case names the role, and says what would make the separation of owner and writer void.
public enum WriterRoleError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No such role in the cluster.
    case noSuchRole(role: String)
    /// The role is the one running `store init` (the owner).
    case isTheOwner(role: String)
    /// A superuser bypasses every privilege check.
    case superuser(role: String)
    /// The role can act as the owner of the events (`SET ROLE`, or inherited privileges).
    case memberOfOwner(role: String, owner: String)
    /// The connected role does not own the events, so it cannot grant anything on them (a
    /// `GRANT` by a role without grant options only warns, so this is checked first).
    case notOwner(connected: String, owner: String)
    /// The connected role cannot grant `CREATE` on the database (only its owner can).
    case cannotGrantOnDatabase(database: String, role: String)

    public var description: String {
        switch self {
        case .noSuchRole(let role):
            "role \(role) does not exist: create it first (CREATE ROLE \(quoteIdentifier(role)) LOGIN PASSWORD '…')"
        case .isTheOwner(let role):
            "the writer must be another role than the one running store init: \(role) owns the event store"
        case .superuser(let role):
            "role \(role) is a superuser: it could disable the append-only trigger whatever it is granted; "
                + "use a role without SUPERUSER"
        case .memberOfOwner(let role, let owner):
            "role \(role) is a member of \(owner), which owns the events: it could SET ROLE \(owner) and alter "
                + "or disable them; use a role that is not"
        case .notOwner(let connected, let owner):
            "\(connected) does not own the event store (\(owner) does): run store init --grant-to as \(owner)"
        case .cannotGrantOnDatabase(let database, let role):
            "only the owner of database \(database) (or a superuser) can grant CREATE on it, which the writer needs "
                + "to build the read models: create the database with OWNER set to the role running store init, "
                + "or have its owner run GRANT CREATE ON DATABASE \(quoteIdentifier(database)) TO \(quoteIdentifier(role))"
        }
    }
}

extension EventStore {
    /// The statements that give `role` exactly what every command but `store init` needs on a
    /// store in `database` — append and read events, move checkpoints, keep snapshots — and
    /// nothing that alters the event log: no `UPDATE`, `DELETE`, `TRUNCATE` or `TRIGGER` on
    /// events, and no ownership, so no `ALTER TABLE … DISABLE TRIGGER` (a non-superuser cannot
    /// set `session_replication_role` anyway).
    ///
    /// Two grants are wider than the event log itself, both for objects the writer then owns
    /// and rebuilds at will: `CREATE` on the store's schema, where the backfill creates its
    /// bookkeeping tables (`backfill_runs`, `backfill_ranges`, `quarantine`) on its first run;
    /// and `CREATE` on the database, because projecting builds each read model in a schema of
    /// its own and swaps schemas by renaming them (`ledgerlift_read`, `_next`, `_old`).
    /// `docs/security.md` lists these statements and why each is there.
    public func writerGrants(to role: String, database: String) -> [String] {
        let r = quoteIdentifier(role)
        return [
            "GRANT USAGE, CREATE ON SCHEMA \(s) TO \(r)",
            "REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES ON \(s).events FROM \(r)",
            "GRANT SELECT, INSERT ON \(s).events TO \(r)",
            "GRANT SELECT, INSERT, UPDATE ON \(s).streams TO \(r)",
            "GRANT SELECT, INSERT, UPDATE ON \(s).snapshots TO \(r)",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON \(s).checkpoints TO \(r)",
            "GRANT SELECT ON \(s).schema_migrations TO \(r)",
            "GRANT EXECUTE ON FUNCTION \(s).append_to_stream(text, text, bigint, uuid[], text[], integer[], "
                + "timestamptz[], jsonb[], jsonb[]) TO \(r)",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON \(s).idempotency_keys TO \(r)",
            "GRANT SELECT, INSERT, UPDATE ON \(s).stripe_events TO \(r)",
            "GRANT SELECT, INSERT ON \(s).candidate_commands TO \(r)",
            // Commands read the routing FOR SHARE, which needs UPDATE on a column: on the one
            // that can only ever be true, so the writer cannot change where writes go.
            "GRANT SELECT, UPDATE (singleton) ON \(s).routing TO \(r)",
            "GRANT USAGE, SELECT, UPDATE ON SEQUENCE "
                + Self.commandIDSequenceEntities.map { "\(s).\(quoteIdentifier("command_ids_" + $0))" }
                .joined(separator: ", ") + " TO \(r)",
            "GRANT CREATE ON DATABASE \(quoteIdentifier(database)) TO \(r)",
        ]
    }

    /// Grants `role` the writer's privileges (``writerGrants(to:database:)``) in one
    /// transaction, after checking that the separation means something: the role exists, is
    /// not the connected role (the owner), not a superuser, and cannot act as the owner of the
    /// events. Idempotent; run it again after upgrading the store.
    ///
    /// - Returns: the statements run.
    /// - Throws: ``WriterRoleError`` (`notOwner` first, so a writer learns nothing more),
    ///   ``EventStoreError/notInitialized(schema:)``.
    @discardableResult
    public func grantWriter(_ role: String, in session: Session) throws -> [String] {
        try session.transaction { tx in
            // From the catalogs, which every role may read: a role without privileges on the
            // store's schema gets a clear refusal rather than "permission denied for schema".
            let facts = try tx.query(
                """
                SELECT pg_has_role(current_user, c.relowner, 'USAGE'), current_user::text,
                       pg_get_userbyid(c.relowner)::text, current_database()::text,
                       has_database_privilege(current_database(), 'CREATE WITH GRANT OPTION'),
                       r.oid IS NOT NULL, r.rolname = current_user, r.rolsuper, pg_has_role(r.oid, c.relowner, 'MEMBER')
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                LEFT JOIN pg_roles r ON r.rolname = $1
                WHERE n.nspname = $2 AND c.relname = 'events'
                """, [role, schema])
            guard let row = facts.first else { throw EventStoreError.notInitialized(schema: schema) }
            let owner = try row.decode(at: 2, as: String.self)
            let database = try row.decode(at: 3, as: String.self)
            if try !row.decode(at: 0, as: Bool.self) {
                throw WriterRoleError.notOwner(connected: try row.decode(at: 1, as: String.self), owner: owner)
            }
            try requireInitialized(tx)
            if try !row.decode(at: 5, as: Bool.self) { throw WriterRoleError.noSuchRole(role: role) }
            if try row.decode(at: 6, as: Bool.self) { throw WriterRoleError.isTheOwner(role: role) }
            if try row.decode(at: 7, as: Bool.self) { throw WriterRoleError.superuser(role: role) }
            if try row.decode(at: 8, as: Bool.self) { throw WriterRoleError.memberOfOwner(role: role, owner: owner) }
            if try !row.decode(at: 4, as: Bool.self) {
                throw WriterRoleError.cannotGrantOnDatabase(database: database, role: role)
            }
            let statements = writerGrants(to: role, database: database)
            for statement in statements { try tx.execute(statement) }
            return statements
        }
    }
}
