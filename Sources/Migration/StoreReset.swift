import Mapping
import TextFormats
import EventStore
import Postgres

/// Starting over: drops the event store's schema (events, streams, snapshots, checkpoints, the
/// backfill's bookkeeping and quarantine) and the read models built from it, then creates an
/// empty store at the current schema version.
///
/// Meant for iterating on a mapping before going live: edit, `backfill --dry-run`, reset,
/// backfill, diff. It takes the store's backfill lock, so it never pulls a store from under a
/// running backfill.
public struct StoreReset: Sendable {
    public let store: EventStore
    /// The read-model schema (its blue/green `_next` and retired `_old` copies go too).
    public let readSchema: String

    public init(store: EventStore = EventStore(), readSchema: String = "ledgerlift_read") {
        self.store = store
        self.readSchema = readSchema
    }

    /// What a reset would drop, with the events it holds: for the confirmation prompt.
    public struct Contents: Sendable, Hashable {
        public var schemas: [String]
        public var events: Int64
    }

    /// The schemas of the store that exist, and how many events the store holds.
    public func contents(_ session: Session) throws -> Contents {
        let candidates = [store.schema, readSchema, readSchema + "_next", readSchema + "_old"]
        let existing = try session.query(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[]) ORDER BY array_position($1::text[], nspname::text)",
            [PostgresArray(candidates)]
        ).rows.map { try $0.decode(at: 0, as: String.self) }
        var events: Int64 = 0
        if existing.contains(store.schema), try store.schemaVersion(session) != nil {
            events = try session.query("SELECT count(*) FROM \(quoteIdentifier(store.schema)).events").rows[0]
                .decode(at: 0, as: Int64.self)
        }
        return Contents(schemas: existing, events: events)
    }

    /// Drops every schema of ``contents(_:)`` (in one transaction) and initializes an empty
    /// store. Killed between the two, running it again finishes the job.
    ///
    /// - Parameter wait: wait for a running backfill instead of refusing.
    /// - Throws: ``BackfillError/busy(holder:)`` while a backfill runs.
    @discardableResult
    public func reset(_ session: Session, wait: Bool = false) throws -> Contents {
        try Backfill.lock(store, session, wait: wait)
        defer { _ = try? session.unlock(Backfill.lock(for: store)) }
        let dropped = try session.transaction { tx in
            let found = try self.contents(tx)
            for schema in found.schemas {
                try tx.execute("DROP SCHEMA \(quoteIdentifier(schema)) CASCADE")
            }
            return found
        }
        _ = try store.migrate(session)
        return dropped
    }
}
