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
                    Route(entity: entityMapping.entity, sql: source.touchedKeysSQL(recordedColumns: columns)))
            }
        }
        return KeyResolver(routes: routes)
    }

    /// The keys `changes` touch, per entity, and the entities whose every key a TRUNCATE may
    /// have changed. One statement per (entity, source table) present in the batch.
    func touchedKeys(_ changes: [CapturedChange], in session: Session) throws -> (keys: [Entity: Set<String>], truncated: Set<Entity>) {
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
        var keys = [Entity: Set<String>]()
        for (table, tableImages) in images.sorted(by: { $0.key < $1.key }) {
            let array = "[" + tableImages.joined(separator: ",") + "]"
            for route in routes[table] ?? [] where !truncated.contains(route.entity) {
                for row in try session.query(route.sql, [array]).rows {
                    if let key = row.values[0] { keys[route.entity, default: []].insert(key) }
                }
            }
        }
        return (keys, truncated)
    }

    /// Every key legacy returns for `entity` (after a TRUNCATE of one of its sources).
    static func legacyKeys(_ entityMapping: MappingFile.EntityMapping, in session: Session) throws -> Set<String> {
        let key = quoteIdentifier(entityMapping.entity.keyColumn)
        return Set(
            try session.query("SELECT q.\(key)::text FROM (\n\(entityMapping.query)) AS q WHERE q.\(key) IS NOT NULL").rows
                .compactMap { $0.values[0] })
    }
}
