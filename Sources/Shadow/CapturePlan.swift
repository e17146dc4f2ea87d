import Billing
import Mapping
import Postgres

/// What the capture triggers record, derived from a mapping: every table its entities'
/// `sources` name, and for each, the columns those sources name as keys.
public struct CapturePlan: Sendable, Hashable {
    /// One legacy table as the mapping names it.
    public struct Table: Sendable, Hashable {
        /// The table as the mapping spells it (`legacy.invoices`).
        public var table: String
        /// The columns the mapping's sources need recorded on it besides the primary key: the
        /// key columns of `{ table, key }` sources and the `columns` of SQL sources, unquoted, in
        /// order of first mention.
        public var keyColumns: [String]
        /// The entities whose sources name it.
        public var entities: [Entity]
    }

    /// The tables, in order of first mention in the mapping (canonical entity order).
    public var tables: [Table]

    public init(_ mapping: MappingFile) {
        var tables = [Table]()
        for entityMapping in mapping.entities {
            for source in entityMapping.sources {
                // A key source needs its key column; an SQL source the columns its `keys` reads
                // (possibly none: the primary key is always recorded).
                let needed = source.neededColumns
                if let index = tables.firstIndex(where: { $0.table == source.table }) {
                    for column in needed where !tables[index].keyColumns.contains(column) {
                        tables[index].keyColumns.append(column)
                    }
                    if !tables[index].entities.contains(entityMapping.entity) {
                        tables[index].entities.append(entityMapping.entity)
                    }
                } else {
                    var unique = [String]()
                    for column in needed where !unique.contains(column) { unique.append(column) }
                    tables.append(Table(table: source.table, keyColumns: unique, entities: [entityMapping.entity]))
                }
            }
        }
        self.tables = tables
    }

    /// One source of one entity, as the tailer applies it to a captured change.
    public struct EntitySourceOnTable: Sendable, Hashable {
        public var entity: Entity
        public var source: MappingFile.Source
    }

    /// The mapping's sources by the table name capture records in `changes.source_table`
    /// (`format('%I.%I')` of the resolved table, however the mapping spells it): for a change
    /// of that table, each entry's ``MappingFile/Source/touchedKeysSQL(recordedColumns:)`` over
    /// the change's row images gives the keys of its entity to re-read. Tables that do not
    /// resolve are left out (install refuses them).
    public static func sourcesByCapturedTable(
        _ mapping: MappingFile, in session: Session
    ) throws -> [String: [EntitySourceOnTable]] {
        var byTable = [String: [EntitySourceOnTable]]()
        for entityMapping in mapping.entities {
            for source in entityMapping.sources {
                guard
                    let name = try session.query(
                        """
                        SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
                        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)
                        """, [source.sqlTable]
                    ).rows.first?.decode(at: 0, as: String.self)
                else { continue }
                byTable[name, default: []].append(EntitySourceOnTable(entity: entityMapping.entity, source: source))
            }
        }
        return byTable
    }

    /// The table's name as SQL: each dot-separated part quoted unless the mapping quoted it
    /// (as `mapping check` reads it).
    static func sqlName(_ table: String) -> String { MappingFile.Source.sqlName(table) }
}

/// A captured table as the legacy database resolves it.
struct ResolvedTable: Sendable, Hashable {
    /// `schema.table`, each part quoted only when it must be (`format('%I.%I')`): the name
    /// `changes.source_table` records.
    var name: String
    /// The columns recorded in `old_row` and `new_row`: the primary key's, then the other
    /// columns the mapping's sources need (key columns, SQL sources' `columns`), in table order.
    var columns: [String]
    /// The primary key's columns, empty when the table has none.
    var primaryKey: [String]
    /// Prefix of the trigger functions' names (`capture_invoices_1a2b3c4d`).
    var functionPrefix: String
}
