import Postgres

/// The secondary indexes and foreign keys of the legacy schema, taken off while the generator
/// streams rows and put back afterwards (the usual bulk-load recipe: one index build and one
/// validating join per constraint instead of millions of per-row updates and trigger checks).
///
/// The definitions are read from the catalog right after `schema.sql` ran, so whatever the
/// schema file says is exactly what is restored — names included.
struct DeferredDDL: Sendable {
    struct Index: Sendable {
        let name: String
        let table: String
        /// `pg_get_indexdef`, schema-qualified.
        let definition: String
    }

    struct ForeignKey: Sendable {
        let name: String
        /// Schema-qualified, quoted.
        let table: String
        let tableName: String
        /// `pg_get_constraintdef`, schema-qualified.
        let definition: String
    }

    /// The schema the definitions were read from.
    let schema: String
    let indexes: [Index]
    let foreignKeys: [ForeignKey]

    /// Reads the definitions of the tables in `schema`. Sets the session's `search_path` to
    /// `pg_catalog` so every name in them comes out schema-qualified.
    static func capture(in session: Session, schema: String) throws -> DeferredDDL {
        try session.execute("SELECT set_config('search_path', 'pg_catalog', false)")
        let indexRows = try session.query(
            """
            SELECT i.relname::text, t.relname::text, pg_get_indexdef(i.oid)
            FROM pg_index x
            JOIN pg_class i ON i.oid = x.indexrelid
            JOIN pg_class t ON t.oid = x.indrelid
            JOIN pg_namespace n ON n.oid = t.relnamespace
            WHERE n.nspname = $1
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = t.oid AND c.conindid = i.oid)
            ORDER BY t.relname, i.relname
            """, [schema]
        ).rows
        let keyRows = try session.query(
            """
            SELECT c.conname::text, quote_ident(n.nspname) || '.' || quote_ident(t.relname), t.relname::text,
                   pg_get_constraintdef(c.oid)
            FROM pg_constraint c
            JOIN pg_class t ON t.oid = c.conrelid
            JOIN pg_namespace n ON n.oid = t.relnamespace
            WHERE n.nspname = $1 AND c.contype = 'f'
            ORDER BY t.relname, c.conname
            """, [schema]
        ).rows
        return DeferredDDL(
            schema: schema,
            indexes: try indexRows.map {
                Index(name: try $0.decode(at: 0), table: try $0.decode(at: 1), definition: try $0.decode(at: 2))
            },
            foreignKeys: try keyRows.map {
                ForeignKey(
                    name: try $0.decode(at: 0), table: try $0.decode(at: 1), tableName: try $0.decode(at: 2),
                    definition: try $0.decode(at: 3))
            })
    }

    func drop(in session: Session) throws {
        for key in foreignKeys {
            try session.execute("ALTER TABLE \(key.table) DROP CONSTRAINT \(quoteIdentifier(key.name))")
        }
        for index in indexes {
            try session.execute("DROP INDEX \(quoteIdentifier(schema)).\(quoteIdentifier(index.name))")
        }
    }

    func restoreForeignKeys(in session: Session) throws {
        for key in foreignKeys {
            do {
                try session.execute("ALTER TABLE \(key.table) ADD CONSTRAINT \(quoteIdentifier(key.name)) \(key.definition)")
            } catch {
                throw FixtureError.database(
                    "restoring foreign key \(key.name) on \(key.table) failed", error,
                    table: LegacyTable(rawValue: key.tableName))
            }
        }
    }
}
