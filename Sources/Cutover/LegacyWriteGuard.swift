import Mapping
import Postgres
import Shadow

/// The legacy database's refusal of application writes once they have moved to the ledger.
///
/// A statement-level `BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE` trigger named
/// ``triggerName`` on every `sources` table of the mapping, calling `ledgerlift_guard.write_guard()`
/// (a schema of its own: uninstalling capture at `completed` must not take the guard with
/// it): it raises SQLSTATE ``sqlState`` with ``message`` — the
/// documented signal an application (the simulator's `BillingApp` included) reacts to by
/// sending the write to the ledger's write path. Writes of the reverse sync (a transaction that
/// ran `SET LOCAL ledgerlift.origin = 'reverse_sync'`) pass: they keep legacy readers current.
public struct LegacyWriteGuard: Sendable {
    /// SQLSTATE of the refusal: class `LL` (Ledgerlift), unused by PostgreSQL.
    public static let sqlState = "LL001"
    public static let message = "writes have moved to the ledger"
    public static let triggerName = "ledgerlift_write_guard"
    /// The session setting whose value `reverse_sync` lets a write through (and that capture skips).
    public static let originSetting = "ledgerlift.origin"

    /// The schema holding the guard's function.
    public let schema: String
    /// The mapping's source tables as written in the mapping (`legacy.invoices`).
    public let tables: [String]

    public static let defaultSchema = "ledgerlift_guard"

    public init(mapping: MappingFile, schema: String = LegacyWriteGuard.defaultSchema) {
        self.schema = schema
        self.tables = CapturePlan(mapping).tables.map(\.table)
    }

    var function: String { "\(quoteIdentifier(schema)).write_guard" }

    /// Installs the guard on every table, in the caller's transaction (the write switch's, which
    /// holds the tables locked): it exists for the application only once that commits.
    /// `cutover` names the cutover in the refusal's detail.
    public func install(cutover: String, in session: Session) throws {
        let name = cutover.replacing("'", with: "''")
        try session.executeScript(
            """
            CREATE SCHEMA IF NOT EXISTS \(quoteIdentifier(schema));
            CREATE OR REPLACE FUNCTION \(function)() RETURNS trigger LANGUAGE plpgsql AS $guard$
            BEGIN
                IF current_setting('\(Self.originSetting)', true) = 'reverse_sync' THEN
                    RETURN NULL;
                END IF;
                RAISE EXCEPTION USING
                    ERRCODE = '\(Self.sqlState)',
                    MESSAGE = '\(Self.message)',
                    DETAIL = format('%I.%I is read-only: the cutover %s switched writes to the ledger', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0]),
                    HINT = 'send the write to the ledger''s write path (ledgerlift serve); GET /routing says where writes go';
            END
            $guard$
            """)
        for table in tables {
            let target = MappingFile.Source.sqlName(table)
            try session.executeScript(
                """
                DROP TRIGGER IF EXISTS \(Self.triggerName) ON \(target);
                CREATE TRIGGER \(Self.triggerName) BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON \(target)
                    FOR EACH STATEMENT EXECUTE FUNCTION \(function)('\(name)')
                """)
        }
    }

    /// Removes the guard from every table (the rollback), in the caller's transaction.
    public func remove(in session: Session) throws {
        for table in tables {
            try session.execute(
                "DROP TRIGGER IF EXISTS \(Self.triggerName) ON \(MappingFile.Source.sqlName(table))")
        }
    }

    /// The source tables that carry the guard now.
    public func guardedTables(in session: Session) throws -> [String] {
        try tables.filter { table in
            try session.query(
                "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = $1 AND tgrelid = to_regclass($2))",
                [Self.triggerName, MappingFile.Source.sqlName(table)]
            ).rows[0].decode(at: 0, as: Bool.self)
        }
    }
}
