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
        /// The key columns the mapping's sources name on it, in order of first mention.
        public var keyColumns: [String]
        /// The entities whose sources name it.
        public var entities: [Entity]
    }

    /// The tables, in order of first mention in the mapping (canonical entity order).
    public var tables: [Table]

    public init(_ mapping: MappingFile) {
        var tables = [Table]()
        for entityMapping in mapping.entities {
            // TODO(H1): a source with `keys:` SQL records its `columns`.
            for source in entityMapping.sources {
                guard let key = source.key else { continue }
                if let index = tables.firstIndex(where: { $0.table == source.table }) {
                    if !tables[index].keyColumns.contains(key) { tables[index].keyColumns.append(key) }
                    if !tables[index].entities.contains(entityMapping.entity) {
                        tables[index].entities.append(entityMapping.entity)
                    }
                } else {
                    tables.append(
                        Table(table: source.table, keyColumns: [key], entities: [entityMapping.entity]))
                }
            }
        }
        self.tables = tables
    }

    /// The table's name as SQL: each dot-separated part quoted unless the mapping quoted it
    /// (as `mapping check` reads it).
    static func sqlName(_ table: String) -> String {
        table.split(separator: ".", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("\"") ? String($0) : quoteIdentifier(String($0)) }.joined(separator: ".")
    }
}

/// A captured table as the legacy database resolves it.
struct ResolvedTable: Sendable, Hashable {
    /// `schema.table`, each part quoted only when it must be (`format('%I.%I')`): the name
    /// `changes.source_table` records.
    var name: String
    /// The columns recorded in `old_row` and `new_row`: the primary key's, then the other key
    /// columns the mapping names, in table order.
    var columns: [String]
    /// The primary key's columns, empty when the table has none.
    var primaryKey: [String]
    /// Prefix of the trigger functions' names (`capture_invoices_1a2b3c4d`).
    var functionPrefix: String
}
