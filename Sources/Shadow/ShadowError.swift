/// Why shadow mode's capture could not be installed or removed. Each case names the table, the
/// column or the entity, never a value.
public enum ShadowError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A `sources` table the legacy database does not have.
    case sourceTableMissing(entity: String, table: String)
    /// A `sources` key column the table does not have.
    case sourceColumnMissing(entity: String, table: String, column: String)
    /// A `sources` table that is not an ordinary or partitioned table (a view, a foreign table):
    /// it cannot carry capture triggers.
    case sourceNotATable(entity: String, table: String, kind: String)
    /// Dropping a trigger needs ownership of its table, which the connected role lacks (it may
    /// create triggers with the TRIGGER privilege, but not drop them).
    case notTableOwner(table: String, connected: String, owner: String)
    /// Transactions kept the tables locked through every attempt to take the locks creating or
    /// dropping triggers needs.
    case tablesBusy(tables: [String], attempts: Int)
    /// The capture schema was written by a newer Ledgerlift.
    case schemaTooNew(schema: String, found: Int, supported: Int)
    /// The mapping's `sources` do not name every table its entities' SQL reads
    /// (``MappingCoverage``): capture would miss changes. One line per problem.
    case mappingIncomplete(problems: [String])

    public var description: String {
        switch self {
        case .sourceTableMissing(let entity, let table):
            "\(entity): sources table \(table) does not exist in the legacy database"
        case .sourceColumnMissing(let entity, let table, let column):
            "\(entity): sources table \(table) has no column \(column)"
        case .sourceNotATable(let entity, let table, let kind):
            "\(entity): sources table \(table) is a \(kind), not a table: changes to it cannot be captured; "
                + "name the tables it reads instead"
        case .notTableOwner(let table, let connected, let owner):
            "dropping the capture triggers of \(table) needs its owner: \(connected) is not \(owner) nor a member of it; "
                + "run this as \(owner) (or a role granted \(owner))"
        case .tablesBusy(let tables, let attempts):
            "could not lock \(tables.joined(separator: ", ")) in \(attempts) attempts: long-running transactions "
                + "are using them (see pg_stat_activity); nothing was changed, run it again when they are done"
        case .schemaTooNew(let schema, let found, let supported):
            "capture schema \(schema) is at version \(found), newer than this Ledgerlift knows (\(supported)): "
                + "use a newer ledgerlift"
        case .mappingIncomplete(let problems):
            "the mapping's sources do not cover the tables its queries read, so shadow mode would miss changes; "
                + "nothing was installed:\n" + problems.map { "  " + $0 }.joined(separator: "\n")
                + "\nrun `ledgerlift mapping check` and add the sources it names"
        }
    }
}
