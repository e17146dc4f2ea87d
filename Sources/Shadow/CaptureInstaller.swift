import Billing
import Foundation
import Mapping
import Postgres

/// Installs and removes shadow mode's capture in the legacy database: the ``CaptureSchema`` and,
/// on every table the mapping's `sources` name, statement-level AFTER INSERT, UPDATE, DELETE and
/// TRUNCATE triggers that write one `changes` row per changed row (the columns the sources name
/// as keys, old and new) in the writing transaction.
///
/// The trigger functions live in the capture schema, are `SECURITY DEFINER` (owned by the role
/// that installs) with a pinned `search_path`, so the application's role needs no new grant.
public struct CaptureInstaller: Sendable {
    public let capture: CaptureSchema
    /// How long one attempt waits for the table locks it needs. Kept below PostgreSQL's
    /// `deadlock_timeout` (1 s by default): when the install and an application transaction wait
    /// for each other, the install gives up first, so the application never sees a deadlock.
    public var lockTimeout: Duration
    /// How many times install or uninstall tries to take its table locks before giving up.
    public var lockAttempts: Int

    public init(
        capture: CaptureSchema = CaptureSchema(), lockTimeout: Duration = .milliseconds(200), lockAttempts: Int = 50
    ) {
        self.capture = capture
        self.lockTimeout = lockTimeout
        self.lockAttempts = max(1, lockAttempts)
    }

    /// Runs `body` in a transaction, again (after a short pause) when it could not take a table
    /// lock within ``lockTimeout``; ``ShadowError/tablesBusy(tables:attempts:)`` after
    /// ``lockAttempts``.
    func withLockRetries<T>(_ session: Session, _ body: (Session, _ busy: inout [String]) throws -> T) throws -> T {
        var busy = [String]()
        for attempt in 1...lockAttempts {
            do {
                return try session.transaction { tx in try body(tx, &busy) }
            } catch let error as PostgresError where error.sqlState == .lockNotAvailable {
                if attempt == lockAttempts { break }
                Thread.sleep(forTimeInterval: 0.05 * Double(min(attempt, 10)))
            }
        }
        throw ShadowError.tablesBusy(tables: busy, attempts: lockAttempts)
    }

    /// Bounds every lock wait of the rest of the transaction by ``lockTimeout`` (until
    /// ``unboundLockWaits(_:)``), then takes `mode` locks on `tables` in one statement when the
    /// role may (`LOCK TABLE` needs UPDATE, DELETE or TRUNCATE; a role with only TRIGGER takes
    /// each lock as it creates the table's triggers, each wait bounded all the same).
    func lockTables(_ tables: [String], mode: String, in tx: Session) throws {
        let milliseconds = max(
            1, Int(lockTimeout.components.seconds * 1000 + lockTimeout.components.attoseconds / 1_000_000_000_000_000))
        try tx.execute("SET LOCAL lock_timeout = \(milliseconds)")
        guard !tables.isEmpty else { return }
        let names = tables.map(CapturePlan.sqlName)
        let mayLock = try tx.query(
            """
            SELECT bool_and(has_table_privilege(t, 'UPDATE') OR has_table_privilege(t, 'DELETE')
                            OR has_table_privilege(t, 'TRUNCATE'))
            FROM unnest(string_to_array($1, ',')) AS t
            """, [names.joined(separator: ",")]
        ).rows[0].decode(at: 0, as: Bool.self)
        if mayLock { try tx.execute("LOCK TABLE \(names.joined(separator: ", ")) IN \(mode) MODE") }
    }

    /// Lock waits as the session had them.
    func unboundLockWaits(_ tx: Session) throws {
        try tx.execute("SET LOCAL lock_timeout TO DEFAULT")
    }

    /// What one install did.
    public struct InstallReport: Sendable, Hashable {
        /// The capture schema's version before (0: not installed) and after.
        public var schemaFrom: Int
        public var schemaTo: Int
        /// Tables that got capture triggers now.
        public var added: [String]
        /// Tables whose capture was regenerated (the recorded columns, or this Ledgerlift's
        /// trigger functions, changed; or a trigger was missing).
        public var changed: [String]
        /// Tables captured already as this mapping wants.
        public var unchanged: [String]
        /// Tables captured by an earlier install that this mapping no longer names: still
        /// captured (remove them with uninstall and install again).
        public var notInMapping: [String]
        /// The install's transaction id (`xid8`, as text), when it was recorded in `installs`;
        /// `nil` when nothing changed.
        public var recordedXid: String?

        /// Nothing was created, changed or recorded.
        public var changedNothing: Bool {
            schemaFrom == schemaTo && added.isEmpty && changed.isEmpty && recordedXid == nil
        }
    }

    /// What one uninstall removed.
    public struct UninstallReport: Sendable, Hashable {
        /// The tables whose capture triggers were dropped.
        public var tables: [String]
        /// Captured changes that were still in the outbox and are gone with it.
        public var pendingChanges: Int
        /// Whether the capture schema existed.
        public var schemaExisted: Bool
    }

    /// The trigger names on each captured table (trigger names are per table).
    public var triggerNames: [String] {
        ["insert", "update", "delete", "truncate"].map { capture.schema + "_" + $0 }
    }

    // MARK: - Install

    /// Installs or upgrades capture for `mapping`, in one transaction: the capture schema (created
    /// or upgraded), then the triggers of each table its `sources` name. A mapping whose sources
    /// miss a table its SQL reads (``MappingCoverage``) is refused with
    /// ``ShadowError/mappingIncomplete(problems:)`` before anything is created. Idempotent: run again
    /// with the same mapping, it changes nothing; with a mapping naming more tables, it adds
    /// their triggers. An install that changed anything is recorded in `installs` with its
    /// transaction id, snapshot and the mapping's fingerprint.
    ///
    /// Creating a trigger takes a SHARE ROW EXCLUSIVE lock on the table (dropping one, ACCESS
    /// EXCLUSIVE): the install waits for running writers of each table, each wait bounded by
    /// ``lockTimeout`` and the whole attempt retried up to ``lockAttempts`` times, and blocks new
    /// writers until it commits.
    public func install(_ mapping: MappingFile, in session: Session) throws -> InstallReport {
        let plan = CapturePlan(mapping)
        return try withLockRetries(session) { tx, busy in
            try tx.lock(capture.lock, scope: .transaction)
            let (from, to) = try capture.migrate(in: tx)
            let s = capture.s

            var resolved = [ResolvedTable]()
            for table in plan.tables {
                let found = try resolve(table, in: tx)
                if let index = resolved.firstIndex(where: { $0.name == found.name }) {
                    // Two spellings of one table: record the columns of both.
                    for column in found.columns where !resolved[index].columns.contains(column) {
                        resolved[index].columns.append(column)
                    }
                } else {
                    resolved.append(found)
                }
            }

            // Capture follows only the sources: a table an entity reads that they do not name
            // would be a change shadow mode never sees. Checked before anything is created (and
            // the whole transaction rolls back when it throws).
            let coverage = try MappingCoverage.analyze(mapping, in: tx)
            guard coverage.isComplete else { throw ShadowError.mappingIncomplete(problems: coverage.problems) }

            var existing = [String: String]()
            for row in try tx.query("SELECT source_table, definition_hash FROM \(s).captured_tables").rows {
                existing[try row.decode(at: 0, as: String.self)] = try row.decode(at: 1, as: String.self)
            }

            var report = InstallReport(
                schemaFrom: from, schemaTo: to, added: [], changed: [], unchanged: [], notInMapping: [],
                recordedXid: nil)
            // What each table needs: nothing, its triggers created, or dropped and created again.
            var work = [(table: ResolvedTable, script: String, hash: String, hasTriggers: Bool)]()
            for table in resolved {
                let script = functionsSQL(table)
                let hash = try tx.query("SELECT md5($1)", [script]).rows[0].decode(at: 0, as: String.self)
                let triggers = try tx.query(
                    """
                    SELECT count(*) FROM pg_trigger t
                    WHERE t.tgrelid = to_regclass($1) AND t.tgname = ANY (string_to_array($2, ','))
                      AND t.tgfoid IN (SELECT p.oid FROM pg_proc p WHERE p.pronamespace = to_regnamespace($3))
                    """, [table.name, triggerNames.joined(separator: ","), s]
                ).rows[0].decode(at: 0, as: Int64.self)
                if existing[table.name] == hash, triggers == Int64(triggerNames.count) {
                    report.unchanged.append(table.name)
                } else {
                    if triggers > 0 { try requireOwner(of: table.name, in: tx) }
                    work.append((table, script, hash, triggers > 0))
                }
            }
            // Creating a trigger takes SHARE ROW EXCLUSIVE (writers wait), dropping one ACCESS
            // EXCLUSIVE (readers wait too): taken up front, each wait bounded.
            busy = work.map(\.table.name)
            try lockTables(work.filter(\.hasTriggers).map(\.table.name), mode: "ACCESS EXCLUSIVE", in: tx)
            try lockTables(work.filter { !$0.hasTriggers }.map(\.table.name), mode: "SHARE ROW EXCLUSIVE", in: tx)
            for (table, script, hash, hasTriggers) in work {
                try tx.executeScript(script)
                try tx.executeScript(triggersSQL(table, drop: hasTriggers))
                try tx.execute(
                    """
                    INSERT INTO \(s).captured_tables (source_table, columns, function_prefix, definition_hash)
                    VALUES ($1, ARRAY(SELECT jsonb_array_elements_text($2::jsonb)), $3, $4)
                    ON CONFLICT (source_table) DO UPDATE
                    SET columns = EXCLUDED.columns, function_prefix = EXCLUDED.function_prefix,
                        definition_hash = EXCLUDED.definition_hash, updated_at = now()
                    """,
                    [table.name, Self.jsonArray(table.columns), table.functionPrefix, hash])
                if existing[table.name] == nil {
                    report.added.append(table.name)
                } else {
                    report.changed.append(table.name)
                }
            }
            try unboundLockWaits(tx)
            let wanted = Set(resolved.map(\.name))
            report.notInMapping = existing.keys.filter { !wanted.contains($0) }.sorted()

            let lastFingerprint = try tx.query(
                "SELECT mapping_fingerprint FROM \(s).installs ORDER BY id DESC LIMIT 1"
            ).first?.decode(at: 0, as: String.self)
            if !report.added.isEmpty || !report.changed.isEmpty || lastFingerprint != mapping.fingerprint {
                // Last, after every trigger exists and every table lock is held: the snapshot
                // then says exactly which transactions wrote before capture began.
                report.recordedXid = try tx.query(
                    """
                    INSERT INTO \(s).installs (mapping_fingerprint, mapping_file, tables_added, tables_changed)
                    VALUES ($1, $2, ARRAY(SELECT jsonb_array_elements_text($3::jsonb)),
                            ARRAY(SELECT jsonb_array_elements_text($4::jsonb)))
                    RETURNING xid::text
                    """,
                    [mapping.fingerprint, mapping.file, Self.jsonArray(report.added), Self.jsonArray(report.changed)]
                ).rows[0].decode(at: 0, as: String.self)
            }
            return report
        }
    }

    /// Finds `table` in the legacy database and the columns to record for it.
    func resolve(_ table: CapturePlan.Table, in tx: Session) throws -> ResolvedTable {
        let entity = table.entities.first?.rawValue ?? "?"
        let sqlName = CapturePlan.sqlName(table.table)
        let found = try tx.query(
            """
            SELECT c.oid::bigint, format('%I.%I', n.nspname, c.relname), c.relkind::text,
                   'capture_' || left(regexp_replace(lower(c.relname), '[^a-z0-9_]', '_', 'g'), 40) || '_'
                       || left(md5(format('%I.%I', n.nspname, c.relname)), 8)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.oid = to_regclass($1)
            """, [sqlName]
        ).first
        guard let found else { throw ShadowError.sourceTableMissing(entity: entity, table: table.table) }
        let oid = try found.decode(at: 0, as: Int64.self)
        let name = try found.decode(at: 1, as: String.self)
        let kind = try found.decode(at: 2, as: String.self)
        guard kind == "r" || kind == "p" else {
            let kinds = [
                "v": "view", "m": "materialized view", "f": "foreign table", "S": "sequence", "c": "composite type",
            ]
            throw ShadowError.sourceNotATable(entity: entity, table: table.table, kind: kinds[kind] ?? "relation")
        }
        var attnums = [String: Int]()
        for row in try tx.query(
            "SELECT attname::text, attnum::int FROM pg_attribute WHERE attrelid = $1::bigint::oid AND attnum > 0 AND NOT attisdropped",
            [oid]
        ).rows {
            attnums[try row.decode(at: 0, as: String.self)] = Int(try row.decode(at: 1, as: Int32.self))
        }
        let primaryKey = try tx.query(
            """
            SELECT a.attname::text FROM pg_index i
            CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indrelid = $1::bigint::oid AND i.indisprimary
            ORDER BY k.ord
            """, [oid]
        ).rows.map { try $0.decode(at: 0, as: String.self) }
        // The plan's columns are unquoted already (as the trigger records them).
        for column in table.keyColumns where attnums[column] == nil {
            throw ShadowError.sourceColumnMissing(entity: entity, table: table.table, column: column)
        }
        let others = table.keyColumns.filter { !primaryKey.contains($0) }
        let columns = primaryKey + Array(Set(others)).sorted { attnums[$0]! < attnums[$1]! }
        return ResolvedTable(
            name: name, columns: columns, primaryKey: primaryKey,
            functionPrefix: try found.decode(at: 3, as: String.self))
    }

    static func literal(_ text: String) -> String { "'" + text.replacing("'", with: "''") + "'" }

    static func jsonArray(_ items: [String]) -> String {
        "["
            + items.map { "\"" + $0.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"") + "\"" }
            .joined(separator: ",") + "]"
    }

    // MARK: - Generated SQL

    /// The quoted name of one of `table`'s trigger functions.
    func function(_ table: ResolvedTable, _ event: String) -> String {
        capture.s + "." + quoteIdentifier(table.functionPrefix + "_" + event)
    }

    /// `jsonb_build_object('id', n."id", …)` over the recorded columns of alias `alias`.
    static func rowObject(_ table: ResolvedTable, _ alias: String) -> String {
        "jsonb_build_object("
            + table.columns.map { literal($0) + ", " + alias + "." + quoteIdentifier($0) }.joined(separator: ", ") + ")"
    }

    /// The four trigger functions of `table` (`CREATE OR REPLACE`, so an upgrade rewrites them).
    func functionsSQL(_ table: ResolvedTable) -> String {
        let s = capture.s
        let source = Self.literal(table.name)
        let into = "INSERT INTO \(s).changes (source_table, op, old_row, new_row)"
        let update: String
        if table.primaryKey.isEmpty {
            // No key to pair old and new rows by: each side is recorded on its own row.
            update = """
                \(into)
                    SELECT \(source), 'U', \(Self.rowObject(table, "o")), NULL FROM ledgerlift_old o
                    UNION ALL
                    SELECT \(source), 'U', NULL, \(Self.rowObject(table, "n")) FROM ledgerlift_new n;
                """
        } else {
            let first = quoteIdentifier(table.primaryKey[0])
            let on = table.primaryKey.map { "o.\(quoteIdentifier($0)) = n.\(quoteIdentifier($0))" }
                .joined(separator: " AND ")
            // Paired by primary key: one row per updated row. An update of the key itself shows
            // as an old row and a new row without a partner.
            update = """
                \(into)
                    SELECT \(source), 'U',
                           CASE WHEN o.\(first) IS NULL THEN NULL ELSE \(Self.rowObject(table, "o")) END,
                           CASE WHEN n.\(first) IS NULL THEN NULL ELSE \(Self.rowObject(table, "n")) END
                    FROM ledgerlift_old o FULL JOIN ledgerlift_new n ON \(on);
                """
        }
        func body(_ event: String, _ statement: String) -> String {
            """
            CREATE OR REPLACE FUNCTION \(function(table, event))() RETURNS trigger
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
            BEGIN
                -- Reverse sync writes the ledger's rows back (SET LOCAL ledgerlift.origin):
                -- capturing them would send them to the ledger again.
                IF current_setting('ledgerlift.origin', true) = \(Self.literal(CaptureSchema.reverseSyncOrigin)) THEN
                    RETURN NULL;
                END IF;
                \(statement)
                RETURN NULL;
            END
            $fn$;
            REVOKE ALL ON FUNCTION \(function(table, event))() FROM PUBLIC;

            """
        }
        return body(
            "insert",
            "\(into)\n        SELECT \(source), 'I', NULL, \(Self.rowObject(table, "n")) FROM ledgerlift_new n;")
            + body("update", update)
            + body(
                "delete",
                "\(into)\n        SELECT \(source), 'D', \(Self.rowObject(table, "o")), NULL FROM ledgerlift_old o;")
            + body("truncate", "\(into) VALUES (\(source), 'T', NULL, NULL);")
    }

    /// Creates `table`'s four triggers, dropping them first when `drop` (only then: dropping
    /// takes an ACCESS EXCLUSIVE lock, even of a trigger that does not exist). A statement
    /// trigger with transition tables must be one per event.
    func triggersSQL(_ table: ResolvedTable, drop: Bool) -> String {
        let target = CapturePlan.sqlName(table.name)
        let names = triggerNames.map(quoteIdentifier)
        let drops = drop ? names.map { "DROP TRIGGER IF EXISTS \($0) ON \(target);\n" }.joined() : ""
        return drops + """
            CREATE TRIGGER \(names[0]) AFTER INSERT ON \(target) REFERENCING NEW TABLE AS ledgerlift_new
                FOR EACH STATEMENT EXECUTE FUNCTION \(function(table, "insert"))();
            CREATE TRIGGER \(names[1]) AFTER UPDATE ON \(target) REFERENCING OLD TABLE AS ledgerlift_old NEW TABLE AS ledgerlift_new
                FOR EACH STATEMENT EXECUTE FUNCTION \(function(table, "update"))();
            CREATE TRIGGER \(names[2]) AFTER DELETE ON \(target) REFERENCING OLD TABLE AS ledgerlift_old
                FOR EACH STATEMENT EXECUTE FUNCTION \(function(table, "delete"))();
            CREATE TRIGGER \(names[3]) AFTER TRUNCATE ON \(target)
                FOR EACH STATEMENT EXECUTE FUNCTION \(function(table, "truncate"))();
            """
    }

    // MARK: - Uninstall

    /// Removes everything install created, in one transaction: every trigger that executes a
    /// function of the capture schema (found in the catalog, so no mapping is needed), then the
    /// schema with its outbox. With `mapping`, triggers of the capture's names on its tables are
    /// dropped too, whatever they execute. Uninstalling what is not installed does nothing.
    public func uninstall(mapping: MappingFile? = nil, in session: Session) throws -> UninstallReport {
        try withLockRetries(session) { tx, busy in
            try tx.lock(capture.lock, scope: .transaction)
            let s = capture.s
            var drops = [(table: String, trigger: String)]()
            for row in try tx.query(
                """
                SELECT format('%I.%I', n.nspname, c.relname), t.tgname::text
                FROM pg_trigger t
                JOIN pg_proc p ON p.oid = t.tgfoid
                JOIN pg_class c ON c.oid = t.tgrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE p.pronamespace = to_regnamespace($1) AND NOT t.tgisinternal
                ORDER BY 1, 2
                """, [s]
            ).rows {
                drops.append((try row.decode(at: 0, as: String.self), try row.decode(at: 1, as: String.self)))
            }
            if let mapping {
                for table in CapturePlan(mapping).tables {
                    let sqlName = CapturePlan.sqlName(table.table)
                    for row in try tx.query(
                        """
                        SELECT format('%I.%I', n.nspname, c.relname), t.tgname::text
                        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE t.tgrelid = to_regclass($1) AND t.tgname = ANY (string_to_array($2, ','))
                        """, [sqlName, triggerNames.joined(separator: ",")]
                    ).rows {
                        let drop = (
                            table: try row.decode(at: 0, as: String.self),
                            trigger: try row.decode(at: 1, as: String.self)
                        )
                        if !drops.contains(where: { $0 == drop }) { drops.append(drop) }
                    }
                }
            }
            let schemaExisted = try tx.query("SELECT to_regnamespace($1) IS NOT NULL", [s]).rows[0]
                .decode(at: 0, as: Bool.self)
            var pending = 0
            if try tx.query("SELECT to_regclass($1) IS NOT NULL", [s + ".changes"]).rows[0].decode(at: 0, as: Bool.self)
            {
                pending = Int(try tx.query("SELECT count(*) FROM \(s).changes").rows[0].decode(at: 0, as: Int64.self))
            }
            var tables = [String]()
            for drop in drops where !tables.contains(drop.table) { tables.append(drop.table) }
            for table in tables { try requireOwner(of: table, in: tx) }
            busy = tables
            try lockTables(tables, mode: "ACCESS EXCLUSIVE", in: tx)
            for drop in drops {
                try tx.execute("DROP TRIGGER \(quoteIdentifier(drop.trigger)) ON \(CapturePlan.sqlName(drop.table))")
            }
            if schemaExisted { try tx.execute("DROP SCHEMA \(s) CASCADE") }
            try unboundLockWaits(tx)
            return UninstallReport(tables: tables, pendingChanges: pending, schemaExisted: schemaExisted)
        }
    }

    /// Throws ``ShadowError/notTableOwner(table:connected:owner:)`` unless the connected role
    /// may drop triggers of `table` (owns it, or is a member of its owner).
    func requireOwner(of table: String, in tx: Session) throws {
        let row = try tx.query(
            """
            SELECT pg_has_role(current_user, c.relowner, 'USAGE'), current_user::text, pg_get_userbyid(c.relowner)::text
            FROM pg_class c WHERE c.oid = to_regclass($1)
            """, [CapturePlan.sqlName(table)]
        ).rows[0]
        if try !row.decode(at: 0, as: Bool.self) {
            throw ShadowError.notTableOwner(
                table: table, connected: try row.decode(at: 1, as: String.self),
                owner: try row.decode(at: 2, as: String.self))
        }
    }

    // MARK: - Reading

    /// The tables captured now, with the columns recorded for each; empty when capture is not
    /// installed.
    public func capturedTables(_ session: Session) throws -> [(table: String, columns: String)] {
        guard try capture.version(session) != nil else { return [] }
        return try session.query(
            "SELECT source_table, array_to_string(columns, ', ') FROM \(capture.s).captured_tables ORDER BY 1"
        ).rows.map { (try $0.decode(at: 0, as: String.self), try $0.decode(at: 1, as: String.self)) }
    }
}
