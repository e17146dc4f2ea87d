import Billing
import Mapping
import Postgres

/// Turns captured changes into the entity keys they touch, through each entity's `sources`.
///
/// Prepared once per run against the legacy database: each source's table is resolved to the
/// name the capture triggers record (`format('%I.%I')`), which must be captured — a source
/// without triggers would be a silent gap, so the run refuses it — and each source's statement
/// (``MappingFile/Source/touchedKeysSQL(recordedColumns:)``) is built with the columns capture
/// records for its table.
struct KeyResolver: Sendable {
    struct Route: Sendable {
        var entity: Entity
        /// The captured table (`legacy.invoices`), for errors.
        var table: String
        /// `$1`: a JSON array of the changed rows' images.
        var sql: String
    }

    /// By captured table name.
    let routes: [String: [Route]]

    static func prepare(_ mapping: MappingFile, capture: CaptureSchema, in session: Session) throws -> KeyResolver {
        var recorded = [String: [String]]()
        for row in try session.query(
            """
            SELECT t.source_table, u.col FROM \(capture.s).captured_tables t, unnest(t.columns) WITH ORDINALITY AS u(col, n)
            ORDER BY t.source_table, u.n
            """
        ).rows {
            recorded[try row.decode(at: 0, as: String.self), default: []].append(try row.decode(at: 1, as: String.self))
        }
        var routes = [String: [Route]]()
        for entityMapping in mapping.entities {
            for source in entityMapping.sources {
                let name = try session.query(
                    """
                    SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.oid = to_regclass($1)
                    """, [CapturePlan.sqlName(source.table)]
                ).first?.decode(at: 0, as: String.self)
                guard let name else {
                    throw TailerError.sourceTableMissing(entity: entityMapping.entity.rawValue, table: source.table)
                }
                guard let columns = recorded[name] else {
                    throw TailerError.sourceNotCaptured(entity: entityMapping.entity.rawValue, table: name)
                }
                routes[name, default: []].append(
                    Route(
                        entity: entityMapping.entity, table: name, sql: source.touchedKeysSQL(recordedColumns: columns))
                )
            }
        }
        return KeyResolver(routes: routes)
    }

    /// The keys `changes` touch, per entity, and the entities whose every key a TRUNCATE may
    /// have changed. One statement per (entity, source table) present in the batch.
    func touchedKeys(_ changes: [CapturedChange], in session: Session) throws -> (
        keys: [Entity: Set<String>], truncated: Set<Entity>
    ) {
        var images = [String: [String]]()
        var truncated = Set<Entity>()
        for change in changes {
            guard let routes = routes[change.sourceTable] else { continue }
            if change.op == "T" {
                for route in routes { truncated.insert(route.entity) }
                continue
            }
            if let old = change.oldRow { images[change.sourceTable, default: []].append(old) }
            if let new = change.newRow { images[change.sourceTable, default: []].append(new) }
        }
        // Every (entity, source) of the batch in one statement: each source's statement reads
        // its table's images from a parameter of its own. One round trip and one plan instead of
        // one per source — at live traffic's small batches, the statements' fixed cost is most
        // of the work.
        var parts = [String]()
        var parameters = [(any PostgresEncodable)?]()
        var entities = [Entity]()
        var statements = [(route: Route, sql: String, parameter: String)]()
        for (table, tableImages) in images.sorted(by: { $0.key < $1.key }) {
            let tableRoutes = (routes[table] ?? []).filter { !truncated.contains($0.entity) }
            // A parameter no statement reads would have no type: only tables with routes left.
            guard !tableRoutes.isEmpty else { continue }
            let imagesJSON = "[" + tableImages.joined(separator: ",") + "]"
            parameters.append(imagesJSON)
            for route in tableRoutes {
                // `touchedKeysSQL` binds the images as `$1::jsonb`, once.
                let sql = route.sql.replacing("$1::jsonb", with: "$\(parameters.count)::jsonb")
                parts.append("SELECT \(entities.count) AS route, t.key::text FROM (\n\(sql)\n) AS t(key)")
                entities.append(route.entity)
                statements.append((route, route.sql, imagesJSON))
            }
        }
        var keys = [Entity: Set<String>]()
        guard !parts.isEmpty else { return (keys, truncated) }
        // The changed rows are few, but PostgreSQL cannot know it: it plans `changed` at 100
        // rows, and a source filtered on a rare value (`WHERE p.currency IS NULL`) was planned
        // as a scan of the whole table (12 ms of 100,000 payments) instead of index lookups
        // from the changed rows. Sources join the changed rows' columns to indexed keys, so
        // sequential scans are discouraged for this statement only (a table without an index
        // on the joined column is still scanned).
        let rows: [Row]
        do {
            if session.isInTransaction {
                // Inside a transaction of the caller's (a legacy application's, before its
                // COMMIT: candidate mode's feed): its own snapshot, no hint that would outlive
                // this statement, and a failure left to the caller's savepoint.
                rows = try session.query(parts.joined(separator: "\nUNION ALL\n"), parameters).rows
            } else {
                rows = try session.transaction(.init(readOnly: true)) { tx in
                    try tx.execute("SET LOCAL enable_seqscan = off")
                    return try tx.query(parts.joined(separator: "\nUNION ALL\n"), parameters).rows
                }
            }
        } catch let error as PostgresError where session.isInTransaction {
            throw TailerError.mappingStatementFailed(
                entity: Set(statements.map(\.route.entity.rawValue)).sorted().joined(separator: ", "),
                table: Set(statements.map(\.route.table)).sorted().joined(separator: ", "), statement: "keys",
                error: error.description)
        } catch let error as PostgresError {
            // The combined statement does not say whose `keys:` failed: run each alone to name it.
            for statement in statements {
                do {
                    _ = try session.transaction(.init(readOnly: true)) {
                        try $0.query(statement.sql, [statement.parameter])
                    }
                } catch let failure as PostgresError {
                    throw TailerError.mappingStatementFailed(
                        entity: statement.route.entity.rawValue, table: statement.route.table, statement: "keys",
                        error: failure.description)
                }
            }
            throw TailerError.mappingStatementFailed(
                entity: Set(statements.map(\.route.entity.rawValue)).sorted().joined(separator: ", "),
                table: Set(statements.map(\.route.table)).sorted().joined(separator: ", "), statement: "keys",
                error: error.description)
        }
        for row in rows {
            guard let key = row.values[1], let route = row.values[0].flatMap({ Int($0) }) else { continue }
            keys[entities[route], default: []].insert(key)
        }
        return (keys, truncated)
    }

    /// Every key legacy returns for `entity` (after a TRUNCATE of one of its sources).
    static func legacyKeys(_ entityMapping: MappingFile.EntityMapping, in session: Session) throws -> Set<String> {
        let key = quoteIdentifier(entityMapping.entity.keyColumn)
        return Set(
            try session.query("SELECT q.\(key)::text FROM (\n\(entityMapping.query)) AS q WHERE q.\(key) IS NOT NULL")
                .rows
                .compactMap { $0.values[0] })
    }
}
