import Postgres

/// Shadow mode's capture side in the legacy database: the `ledgerlift_capture` schema, which
/// holds the outbox of captured changes (`changes`), the record of each install (`installs`),
/// the tables captured (`captured_tables`) and the trigger functions; versioned and upgraded in
/// order like the event store's schema (`schema_migrations`).
///
/// `docs/shadow.md` describes what is recorded and the privileges installing needs.
public struct CaptureSchema: Sendable, Hashable {
    /// The schema's name in the legacy database.
    public let schema: String

    public static let defaultSchema = "ledgerlift_capture"

    public init(schema: String = CaptureSchema.defaultSchema) {
        self.schema = schema
    }

    /// The quoted schema name, for SQL.
    var s: String { quoteIdentifier(schema) }

    /// The advisory lock install, upgrade and uninstall take (transaction scope), so two runs on
    /// one legacy database wait for each other.
    public var lock: AdvisoryLock { AdvisoryLock("ledgerlift.capture/" + schema) }

    /// One step of the capture schema's history.
    struct Migration: Sendable {
        let version: Int
        let description: String
        let sql: @Sendable (CaptureSchema) -> String
    }

    /// Every capture schema version this binary knows, in order. Append new steps; never edit
    /// old ones.
    static let migrations: [Migration] = [
        Migration(version: 1, description: "changes, installs, captured_tables") { capture in
            let s = capture.s
            return """
                -- The outbox: one row per changed row of a captured table, written by the capture
                -- triggers in the writing transaction. Readers take rows of transactions older than
                -- every running one, in (xid, id) order, as the event store's global order does.
                -- One index only, the readers' order (each index is a cost on every legacy write).
                CREATE TABLE \(s).changes (
                    id            bigserial NOT NULL,
                    xid           xid8 NOT NULL DEFAULT pg_current_xact_id(),
                    source_table  text COLLATE "C" NOT NULL,
                    op            "char" NOT NULL CHECK (op IN ('I', 'U', 'D', 'T')),
                    old_row       jsonb,
                    new_row       jsonb,
                    captured_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
                    CONSTRAINT changes_order PRIMARY KEY (xid, id)
                );

                -- Each install that changed what is captured: its transaction and snapshot, for the
                -- handover's gap check against the backfill's snapshots.
                CREATE TABLE \(s).installs (
                    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    installed_at         timestamptz NOT NULL DEFAULT now(),
                    installed_by         text NOT NULL DEFAULT current_user,
                    xid                  xid8 NOT NULL DEFAULT pg_current_xact_id(),
                    snapshot             pg_snapshot NOT NULL DEFAULT pg_current_snapshot(),
                    mapping_fingerprint  text NOT NULL,
                    mapping_file         text NOT NULL,
                    tables_added         text[] NOT NULL,
                    tables_changed       text[] NOT NULL
                );

                -- The tables carrying capture triggers, the columns recorded for each, and a hash of
                -- the generated trigger functions (an install regenerates them only when it differs).
                CREATE TABLE \(s).captured_tables (
                    source_table     text COLLATE "C" PRIMARY KEY,
                    columns          text[] NOT NULL,
                    function_prefix  text NOT NULL,
                    definition_hash  text NOT NULL,
                    installed_at     timestamptz NOT NULL DEFAULT now(),
                    updated_at       timestamptz NOT NULL DEFAULT now()
                );
                """
        },
        Migration(version: 2, description: "pruned") { capture in
            """
            -- How far a tailer has deleted from the outbox (one row): another consumer (a second
            -- store, a new tailer name) whose checkpoint is below it would miss what was deleted,
            -- so its tailer refuses unless its backfill (or a finished resync) saw all of that.
            CREATE TABLE \(capture.s).pruned (
                one_row      boolean PRIMARY KEY DEFAULT true CHECK (one_row),
                through_xid  xid8 NOT NULL,
                through_id   bigint NOT NULL,
                by           text NOT NULL,
                at           timestamptz NOT NULL DEFAULT now()
            );
            """
        },
        Migration(version: 3, description: "reverse sync writes are not captured") { _ in
            // Nothing to create: the trigger functions skip rows written with
            // `ledgerlift.origin = 'reverse_sync'` from this version on. The version says an
            // install regenerated them (their hash changed), which the tailer requires.
            "SELECT 1;"
        },
    ]

    /// The value of the setting `ledgerlift.origin` (`SET LOCAL`) with which reverse sync writes
    /// legacy: the capture triggers skip those rows (no loop back into the ledger) and the
    /// cutover's write guard lets them through.
    public static let reverseSyncOrigin = "reverse_sync"

    /// The newest capture schema version this binary knows.
    public static var currentVersion: Int { migrations.last!.version }

    /// Creates the capture schema or upgrades it to ``currentVersion``, in the caller's
    /// transaction (take ``lock`` first). Idempotent.
    ///
    /// - Returns: the version before (0: none) and after.
    func migrate(in tx: Session) throws -> (from: Int, to: Int) {
        try tx.execute("CREATE SCHEMA IF NOT EXISTS \(s)")
        try tx.execute(
            """
            CREATE TABLE IF NOT EXISTS \(s).schema_migrations (
                version      integer PRIMARY KEY,
                description  text NOT NULL,
                applied_at   timestamptz NOT NULL DEFAULT now()
            )
            """)
        let found = Int(
            try tx.query("SELECT coalesce(max(version), 0) AS v FROM \(s).schema_migrations").rows[0]
                .decode("v", as: Int32.self))
        guard found <= Self.currentVersion else {
            throw ShadowError.schemaTooNew(schema: schema, found: found, supported: Self.currentVersion)
        }
        for migration in Self.migrations where migration.version > found {
            try tx.executeScript(migration.sql(self))
            try tx.execute(
                "INSERT INTO \(s).schema_migrations (version, description) VALUES ($1, $2)",
                [Int32(migration.version), migration.description])
        }
        return (found, Self.currentVersion)
    }

    /// The capture schema's version, or `nil` when capture is not installed.
    public func version(_ session: Session) throws -> Int? {
        let exists = try session.query("SELECT to_regclass($1) IS NOT NULL AS e", [s + ".schema_migrations"]).rows[0]
            .decode("e", as: Bool.self)
        guard exists else { return nil }
        let row = try session.query("SELECT max(version) AS v FROM \(s).schema_migrations").rows[0]
        return try row.decode("v", as: Int32?.self).map(Int.init)
    }
}
