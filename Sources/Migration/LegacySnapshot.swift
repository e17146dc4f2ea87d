import Postgres

/// One consistent view of the legacy database that several sessions share: a `REPEATABLE READ
/// READ ONLY` transaction held open on a coordinator connection, its exported snapshot (which
/// workers import), and its `pg_current_snapshot()` — the transactions it saw — which the run
/// records so shadow mode can hand over exactly: a captured change whose transaction the
/// snapshot saw is already in the backfill, any other is not.
public struct LegacySnapshot: Sendable, Hashable {
    /// `pg_export_snapshot()`: what another session passes to `SET TRANSACTION SNAPSHOT`.
    public let id: String
    /// `pg_current_snapshot()` as text (`xmin:xmax:xip,…`), for `pg_visible_in_snapshot`.
    public let visibility: String

    public init(id: String, visibility: String) {
        self.id = id
        self.visibility = visibility
    }

    /// Opens the snapshot's transaction on `connection`, which must stay open and otherwise
    /// unused until ``close(on:)``: the exported snapshot lives as long as that transaction.
    public static func open(on connection: Connection) async throws -> LegacySnapshot {
        try await connection.withSession { session in
            try session.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            do {
                let id = try session.exportSnapshot()
                let visibility = try session.query("SELECT pg_current_snapshot()::text").rows[0].decode(at: 0, as: String.self)
                return LegacySnapshot(id: id, visibility: visibility)
            } catch {
                _ = try? session.execute("ROLLBACK")
                throw error
            }
        }
    }

    /// Ends the snapshot's transaction (it only read).
    public static func close(on connection: Connection) async {
        _ = try? await connection.execute("ROLLBACK")
    }

    /// Whether the legacy transaction `xid` (an `xid8` as text) had committed in this snapshot.
    public func saw(_ xid: String, in session: Session) throws -> Bool {
        try session.query("SELECT pg_visible_in_snapshot($1::xid8, $2::pg_snapshot)", [xid, visibility]).rows[0]
            .decode(at: 0, as: Bool.self)
    }
}
