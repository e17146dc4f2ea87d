import Billing
import EventStore
import Postgres

/// Reads the ledger's canonical read models (`ledgerlift_read` by default, docs/read-models.md)
/// into the canonical form of ``JournalFields``, for `ledgerlift simulate verify --store`.
///
/// The read models already hold canonical values: statuses as names, amounts as `bigint`
/// minor units, timestamps as `timestamptz` (rendered here in UTC, whatever the session's time
/// zone). Each entity is read from its table `entity.tableName` by its key column.
public struct StoreStateReader: JournalStateReader {
    /// The read models' schema.
    public let readSchema: String

    public init(readSchema: String = "ledgerlift_read") { self.readSchema = readSchema }

    /// The canonical tables verify reads, quoted and schema-qualified.
    public var tables: [String] {
        JournalFields.entities.map { quoteIdentifier(readSchema) + "." + quoteIdentifier($0.tableName) }
    }

    /// One entity's query: the key, then one column per field of ``JournalFields/fields(_:)``
    /// in order, for rows whose key is in `$1`.
    func sql(_ entity: Entity) -> String {
        let columns = JournalFields.fields(entity).map { field -> String in
            let column = quoteIdentifier(field.name)
            switch field.kind {
            case .text, .key, .status, .amount: return column + "::text"
            // char(3) as text drops the padding, as the legacy side's does.
            case .currency: return "rtrim(\(column)::text)"
            // A line's quantity is numeric in the canonical model (metered usage: 37.5):
            // without its trailing zeros, a whole quantity reads as the integer it is.
            case .integer: return "trim_scale(\(column)::numeric)::text"
            case .boolean: return "CASE WHEN \(column) THEN 'true' WHEN NOT \(column) THEN 'false' END"
            case .timestamp: return "to_char(\(column) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
            }
        }
        let key = quoteIdentifier(entity.keyColumn)
        return
            "SELECT \(key), \(columns.joined(separator: ", ")) FROM \(quoteIdentifier(readSchema)).\(quoteIdentifier(entity.tableName)) "
            + "WHERE \(key) = ANY($1::text[])"
    }

    public func read(_ entity: Entity, keys: [String], in session: Session) throws -> [String: [String?]] {
        var rows = [String: [String?]]()
        for row in try session.query(sql(entity), [PostgresArray(keys)]).rows {
            guard let key = row.values[0] else { continue }
            rows[key] = Array(row.values.dropFirst())
        }
        return rows
    }

    /// The read models that do not exist (verify cannot run without them).
    func missingTables(in session: Session) throws -> [String] {
        try tables.filter { table in
            try session.query("SELECT to_regclass($1) IS NULL", [table]).first?.decode(at: 0, as: Bool.self) ?? true
        }
    }

    /// Waits until the read models' live projector has applied every event the store holds
    /// now, or `timeout` has passed — the wait `ledgerlift diff` does before re-checking, on
    /// the same library calls (`EventStore.checkpoint`, `EventStore.hasEventsBeyond`).
    ///
    /// A read model with no live projector (none recorded in `projection_state`) counts as
    /// caught up: there is nothing to wait for.
    ///
    /// - Returns: whether it caught up.
    public func waitForProjection(
        on connection: Connection, store: EventStore, timeout: Duration, waiting: (@Sendable () -> Void)? = nil
    ) async throws -> Bool {
        let stateTable = quoteIdentifier(readSchema) + ".projection_state"
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            let caughtUp = try await connection.withSession { session -> Bool in
                guard
                    let consumer = try session.query("SELECT consumer FROM \(stateTable) WHERE state = 'live' LIMIT 1")
                        .first?.values[0]
                else { return true }
                return !(try store.hasEventsBeyond(try store.checkpoint(consumer, in: session), in: session))
            }
            if caughtUp { return true }
            guard clock.now < deadline else { return false }
            waiting?()
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}
