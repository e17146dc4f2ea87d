import Billing
import Postgres

/// Which legacy tables each entity's SQL actually reads, compared with the entity's `sources`:
/// the proof that shadow mode, which captures only the `sources` tables, sees every change that
/// can alter an entity's rows.
///
/// The tables come from PostgreSQL, not from parsing SQL: each query (the current-rows query,
/// the history query, every `checks:` query and `by_key`) becomes the body of a temporary
/// SQL-standard function (`BEGIN ATOMIC`, whose references PostgreSQL records in `pg_depend` as
/// it does a view's), and the relations it depends on are read from the catalog, following
/// views through their rewrite rules down to the tables they read. Everything happens in a
/// transaction (or under a savepoint) that is rolled back, so nothing is left behind.
///
/// What cannot be followed: the body of a function the SQL calls (a PL/pgSQL function's
/// queries are not dependencies; the names of the user functions called are reported instead),
/// dynamic SQL, and a materialized view's or foreign table's contents (no trigger fires when they
/// change; they are reported as relations shadow mode cannot follow).
public struct MappingCoverage: Sendable, Hashable {
    /// A table an entity reads that its `sources` do not name.
    public struct Gap: Sendable, Hashable, CustomStringConvertible {
        /// The table, `schema.table` (quoted where it must be).
        public var table: String
        /// What reads it: `query`, `history`, `by_key`, `checks.<reason>`.
        public var readBy: [String]
        /// The views the table is read through, if any (`legacy.open_invoices`).
        public var throughViews: [String]
        /// A `sources` item to add, as YAML.
        public var suggestion: String

        public var description: String {
            var text = "\(readBy.joined(separator: ", ")) read\(readBy.count == 1 ? "s" : "") \(table)"
            if !throughViews.isEmpty { text += " (through \(throughViews.joined(separator: ", ")))" }
            return text
        }
    }

    /// A relation read whose changes no trigger can capture.
    public struct Unfollowable: Sendable, Hashable {
        public var relation: String
        /// `materialized view`, `foreign table`.
        public var kind: String
        public var readBy: [String]
    }

    /// One entity's coverage.
    public struct EntityCoverage: Sendable, Hashable {
        public var entity: Entity
        /// Every table read (`schema.table`), sorted.
        public var tablesRead: [String]
        /// Tables read and not in `sources`.
        public var gaps: [Gap]
        /// Materialized views and foreign tables read.
        public var unfollowable: [Unfollowable]
        /// User functions called (`legacy.f(integer)`): the tables they read cannot be seen.
        public var functions: [String]
        /// Parts whose SQL could not be analyzed (it does not run): `(part, PostgreSQL's message)`.
        public var failures: [Failure]

        public struct Failure: Sendable, Hashable {
            public var part: String
            public var message: String
        }

        /// No gap, nothing unfollowable, every part analyzed.
        public var isComplete: Bool { gaps.isEmpty && unfollowable.isEmpty && failures.isEmpty }
    }

    /// The entities read by SQL, in the mapping's order (entities read from a file read no table).
    public var entities: [EntityCoverage]

    /// Whether every entity's reads are covered by its `sources`.
    public var isComplete: Bool { entities.allSatisfy(\.isComplete) }

    /// One line per problem: `invoice: query reads legacy.customers, not in sources; add
    /// - { table: … }`.
    public var problems: [String] {
        entities.flatMap { coverage in
            coverage.gaps.map { "\(coverage.entity): \($0), not in sources; add \($0.suggestion)" }
                + coverage.unfollowable.map {
                    "\(coverage.entity): \($0.readBy.joined(separator: ", ")) read\($0.readBy.count == 1 ? "s" : "") "
                        + "\($0.kind) \($0.relation), whose changes no trigger can capture"
                }
                + coverage.failures.map { "\(coverage.entity): \($0.part) cannot be analyzed: \($0.message)" }
        }
    }

    public init(entities: [EntityCoverage]) { self.entities = entities }

    /// Analyzes `mapping` on `session`: in a transaction of its own when none is open, else
    /// under a savepoint; either way rolled back. The role needs the `TEMP` privilege on the
    /// database (every role has it by default) and a read-write transaction.
    ///
    /// - Throws: ``PostgresError`` when the analysis cannot run at all (a read-only transaction,
    ///   no `TEMP` privilege, a lost connection). SQL that does not run is a ``EntityCoverage/failures``
    ///   entry, not an error.
    public static func analyze(_ mapping: MappingFile, in session: Session) throws -> MappingCoverage {
        if session.isInTransaction {
            try session.execute("SAVEPOINT ledgerlift_coverage")
            do {
                let result = try analyzeInTransaction(mapping, session)
                try session.execute("ROLLBACK TO SAVEPOINT ledgerlift_coverage")
                try session.execute("RELEASE SAVEPOINT ledgerlift_coverage")
                return result
            } catch {
                if !((error as? PostgresError)?.isConnectionLost ?? false) {
                    _ = try? session.execute("ROLLBACK TO SAVEPOINT ledgerlift_coverage")
                    _ = try? session.execute("RELEASE SAVEPOINT ledgerlift_coverage")
                }
                throw error
            }
        }
        try session.execute("BEGIN READ WRITE")
        defer { _ = try? session.execute("ROLLBACK") }
        return try analyzeInTransaction(mapping, session)
    }

    /// The SQL parts of an entity, each with the name findings use.
    static func parts(_ entityMapping: MappingFile.EntityMapping) -> [(name: String, sql: String)] {
        guard entityMapping.file == nil else { return [] }
        var parts: [(String, String)] = [("query", entityMapping.query)]
        if let history = entityMapping.historyQuery { parts.append(("history", history)) }
        for check in entityMapping.checks { parts.append(("checks.\(check.reason)", check.query)) }
        if let byKey = entityMapping.byKey { parts.append(("by_key", byKey)) }
        return parts
    }

    private static func analyzeInTransaction(_ mapping: MappingFile, _ session: Session) throws -> MappingCoverage {
        var entities = [EntityCoverage]()
        var counter = 0
        for entityMapping in mapping.entities {
            let parts = parts(entityMapping)
            guard !parts.isEmpty else { continue }
            var coverage = EntityCoverage(
                entity: entityMapping.entity, tablesRead: [], gaps: [], unfollowable: [], functions: [], failures: [])
            // relation → (kind, parts reading it, views it is read through)
            var reads = [String: (kind: String, oid: Int64, parts: [String], views: [String])]()
            var order = [String]()
            for part in parts {
                counter += 1
                let function = "pg_temp.ledgerlift_coverage_\(counter)"
                // A savepoint per part: SQL that does not parse leaves the rest analyzable.
                try session.execute("SAVEPOINT ledgerlift_coverage_part")
                do {
                    // `$1` is by_key's parameter (keys as text); other SQL ignores it.
                    try session.execute(
                        "CREATE FUNCTION \(function)(text[]) RETURNS bigint LANGUAGE sql BEGIN ATOMIC "
                            + "SELECT count(*) FROM (\n\(part.sql)) AS q; END")
                } catch let error as PostgresError where !error.isConnectionLost {
                    try session.execute("ROLLBACK TO SAVEPOINT ledgerlift_coverage_part")
                    coverage.failures.append(
                        .init(part: part.name, message: error.message.split(separator: "\n").first.map(String.init) ?? ""))
                    continue
                }
                try session.execute("RELEASE SAVEPOINT ledgerlift_coverage_part")
                for row in try session.query(Self.relationsSQL, [function]).rows {
                    let name = try row.decode(at: 0, as: String.self)
                    let kind = try row.decode(at: 1, as: String.self)
                    let oid = try row.decode(at: 2, as: Int64.self)
                    let via = try row.decode(at: 3, as: String?.self)
                    if reads[name] == nil {
                        reads[name] = (kind, oid, [], [])
                        order.append(name)
                    }
                    if !reads[name]!.parts.contains(part.name) { reads[name]!.parts.append(part.name) }
                    if let via, !reads[name]!.views.contains(via) { reads[name]!.views.append(via) }
                }
                for row in try session.query(Self.functionsSQL, [function]).rows {
                    let name = try row.decode(at: 0, as: String.self)
                    if !coverage.functions.contains(name) { coverage.functions.append(name) }
                }
            }
            // The tables the sources name, as the database resolves them.
            var covered = Set<Int64>()
            for source in entityMapping.sources {
                if let oid = try session.query("SELECT to_regclass($1)::oid::bigint", [source.sqlTable]).rows.first?
                    .decode(at: 0, as: Int64?.self)
                {
                    covered.insert(oid)
                }
            }
            for name in order {
                let read = reads[name]!
                switch read.kind {
                case "r", "p":
                    coverage.tablesRead.append(name)
                    guard !covered.contains(read.oid) else { continue }
                    coverage.gaps.append(
                        Gap(
                            table: name, readBy: read.parts, throughViews: read.views,
                            suggestion: try suggestion(
                                table: name, oid: read.oid, entityMapping: entityMapping, session: session)))
                case "m", "f":
                    coverage.unfollowable.append(
                        Unfollowable(
                            relation: name, kind: read.kind == "m" ? "materialized view" : "foreign table",
                            readBy: read.parts))
                default:
                    continue
                }
            }
            coverage.tablesRead.sort()
            coverage.functions.sort()
            entities.append(coverage)
        }
        return MappingCoverage(entities: entities)
    }

    /// The relations a temporary function's body depends on, views followed through their
    /// rewrite rules: name, relkind, oid, and the view it was reached through (NULL when read
    /// directly).
    static let relationsSQL = """
        WITH RECURSIVE reads (oid, via) AS (
            SELECT d.refobjid, NULL::oid FROM pg_depend d
            WHERE d.classid = 'pg_proc'::regclass AND d.objid = to_regprocedure($1 || '(text[])')
              AND d.refclassid = 'pg_class'::regclass
            UNION
            SELECT d.refobjid, c.oid FROM reads
            JOIN pg_class c ON c.oid = reads.oid AND c.relkind = 'v'
            JOIN pg_rewrite r ON r.ev_class = c.oid
            JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> c.oid
        )
        SELECT DISTINCT format('%I.%I', n.nspname, c.relname), c.relkind::text, c.oid::bigint,
               CASE WHEN reads.via IS NULL THEN NULL
                    ELSE (SELECT format('%I.%I', vn.nspname, v.relname) FROM pg_class v
                          JOIN pg_namespace vn ON vn.oid = v.relnamespace WHERE v.oid = reads.via) END
        FROM reads JOIN pg_class c ON c.oid = reads.oid JOIN pg_namespace n ON n.oid = c.relnamespace
        ORDER BY 1, 4
        """

    /// The user functions the body calls, directly or through views: not PostgreSQL's own and
    /// not an extension's.
    static let functionsSQL = """
        WITH RECURSIVE objects (classid, objid) AS (
            SELECT 'pg_proc'::regclass::oid, to_regprocedure($1 || '(text[])')::oid
            UNION
            SELECT 'pg_rewrite'::regclass::oid, r.oid FROM objects
            JOIN pg_depend d ON d.classid = objects.classid AND d.objid = objects.objid
                AND d.refclassid = 'pg_class'::regclass
            JOIN pg_class c ON c.oid = d.refobjid AND c.relkind = 'v'
            JOIN pg_rewrite r ON r.ev_class = c.oid
            WHERE objects.classid <> 'pg_rewrite'::regclass OR d.refobjid <> (SELECT ev_class FROM pg_rewrite WHERE oid = objects.objid)
        )
        SELECT DISTINCT p.oid::regprocedure::text FROM objects
        JOIN pg_depend d ON d.classid = objects.classid AND d.objid = objects.objid AND d.refclassid = 'pg_proc'::regclass
        JOIN pg_proc p ON p.oid = d.refobjid
        JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.oid <> pg_my_temp_schema()
          AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid
                          AND e.deptype = 'e')
        ORDER BY 1
        """

    /// A `sources` item for a table the entity reads: `{ table, key }` when a column of the
    /// table obviously holds the entity's key (`<entity>_id`, a foreign key to the entity's own
    /// table, or the table's own key when the table is the entity's); else the SQL form, joined
    /// through a foreign key from the entity's own table when there is one, else a template.
    static func suggestion(
        table: String, oid: Int64, entityMapping: MappingFile.EntityMapping, session: Session
    ) throws -> String {
        let entity = entityMapping.entity
        let columns = try session.query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::bigint::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            [oid]
        ).rows.map { try $0.decode(at: 0, as: String.self) }
        let primaryKey = try session.query(
            """
            SELECT a.attname::text FROM pg_index i
            CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indrelid = $1::bigint::oid AND i.indisprimary ORDER BY k.ord
            """, [oid]
        ).rows.map { try $0.decode(at: 0, as: String.self) }
        func keyForm(_ column: String) -> String { "- { table: \(table), key: \(column) }" }
        if columns.contains(entity.keyColumn) { return keyForm(entity.keyColumn) }
        // The entity's own tables: key sources whose key is that table's single-column primary key.
        var own = [(table: String, oid: Int64, key: String)]()
        for source in entityMapping.sources {
            guard let key = source.key else { continue }
            let row = try session.query(
                """
                SELECT c.oid::bigint, format('%I.%I', n.nspname, c.relname) FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary AND i.indnatts = 1
                JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
                WHERE c.oid = to_regclass($1) AND a.attname = $2
                """, [source.sqlTable, MappingFile.Source.unquoted(key)]
            ).rows.first
            if let row { own.append((try row.decode(at: 1, as: String.self), try row.decode(at: 0, as: Int64.self), key)) }
        }
        // A foreign key of `table` to an own table: that column holds the entity's key.
        for owner in own {
            if let column = try singleColumnForeignKey(from: oid, to: owner.oid, session) {
                return keyForm(column.from)
            }
        }
        // The table named after the entity (customers for customer): its primary key.
        let relname = table.split(separator: ".").last.map(String.init) ?? table
        let name = entity.rawValue
        if primaryKey.count == 1,
            [name, name + "s", name + "es"].contains(relname) || relname.hasSuffix("_" + name + "s")
        {
            return keyForm(primaryKey[0])
        }
        // A foreign key of an own table to `table`: its rows name the entity keys to re-read.
        for owner in own {
            if let fk = try singleColumnForeignKey(from: owner.oid, to: oid, session) {
                let keys =
                    "SELECT e.\(plain(MappingFile.Source.unquoted(owner.key)))::text FROM \(owner.table) e "
                    + "JOIN changed c ON c.\(plain(fk.to)) = e.\(plain(fk.from))"
                let recorded = primaryKey.contains(fk.to) ? "[]" : "[\(fk.to)]"
                return "- { table: \(table), columns: \(recorded), keys: \"\(keys.replacing("\"", with: "\\\""))\" }"
            }
        }
        return "- { table: \(table), columns: [<columns of \(table) your keys SQL reads>], "
            + "keys: \"SELECT <\(entity) key>::text FROM <\(entity)'s table> JOIN changed c ON …\" }"
    }

    /// An identifier as SQL, quoted only when it must be (so the suggestion reads as written).
    static func plain(_ name: String) -> String {
        let simple = name.first.map { $0 == "_" || ($0.isASCII && $0.isLowercase) } ?? false
            && name.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLowercase || $0.isNumber)) }
        return simple ? name : quoteIdentifier(name)
    }

    /// A single-column foreign key of table `from` referencing table `to`: its two columns.
    static func singleColumnForeignKey(from: Int64, to: Int64, _ session: Session) throws -> (from: String, to: String)? {
        guard
            let row = try session.query(
                """
                SELECT a.attname::text, b.attname::text FROM pg_constraint k
                JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
                JOIN pg_attribute b ON b.attrelid = k.confrelid AND b.attnum = k.confkey[1]
                WHERE k.contype = 'f' AND k.conrelid = $1::bigint::oid AND k.confrelid = $2::bigint::oid
                  AND cardinality(k.conkey) = 1
                ORDER BY k.conname LIMIT 1
                """, [from, to]
            ).rows.first
        else { return nil }
        return (try row.decode(at: 0, as: String.self), try row.decode(at: 1, as: String.self))
    }
}
