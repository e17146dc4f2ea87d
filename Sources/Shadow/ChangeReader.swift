import Postgres

/// Reads the capture outbox (`ledgerlift_capture.changes`) in the legacy database in its
/// gap-safe order, and prunes what the tailer has applied.
struct ChangeReader: Sendable {
    let capture: CaptureSchema

    /// At most `limit` changes after `position`, in `(xid, id)` order, of transactions older
    /// than every transaction still running (`xid < pg_snapshot_xmin(pg_current_snapshot())`).
    ///
    /// A transaction that took its xid early and commits late holds the horizon back: nothing
    /// after it is read until it has finished, so its rows — which sort before everything
    /// later — are never skipped. Transaction ids are cluster-wide: any transaction that has
    /// written in any database of the legacy cluster holds it back while it runs.
    ///
    /// - Parameter backfillSnapshots: `pg_current_snapshot()` of each backfill attempt; a
    ///   change whose transaction every one of them saw is marked ``CapturedChange/seenByBackfill``.
    func read(after position: CapturePosition, limit: Int, backfillSnapshots: [String], in session: Session) throws
        -> [CapturedChange]
    {
        try session.query(
            """
            SELECT c.id, c.xid::text, c.source_table, c.op::text, c.old_row::text, c.new_row::text, c.captured_at,
                   coalesce((SELECT bool_and(pg_visible_in_snapshot(c.xid, s::pg_snapshot))
                             FROM unnest($4::text[]) AS s), false)
            FROM \(capture.s).changes c
            WHERE (c.xid, c.id) > ($1::xid8, $2::int8) AND c.xid < pg_snapshot_xmin(pg_current_snapshot())
            ORDER BY c.xid, c.id
            LIMIT $3
            """, [position.xid, position.id, Int64(limit), PostgresArray(backfillSnapshots)]
        ).rows.map { row in
            CapturedChange(
                position: CapturePosition(xid: try row.decode(at: 1), id: try row.decode(at: 0)),
                sourceTable: try row.decode(at: 2), op: Character(try row.decode(at: 3, as: String.self)),
                oldRow: try row.decode(at: 4, as: String?.self), newRow: try row.decode(at: 5, as: String?.self), capturedAt: try row.decode(at: 6),
                seenByBackfill: try row.decode(at: 7))
        }
    }

    /// Whether committed changes exist after `position` that ``read(after:limit:backfillSnapshots:in:)``
    /// cannot return yet because an older transaction is still running.
    func hasChangesBeyond(_ position: CapturePosition, in session: Session) throws -> Bool {
        try session.query(
            "SELECT EXISTS (SELECT 1 FROM \(capture.s).changes WHERE (xid, id) > ($1::xid8, $2::int8))",
            [position.xid, position.id]
        ).rows[0].decode(at: 0, as: Bool.self)
    }

    /// Deletes the changes at or before `position` (applied: the store's checkpoint has passed
    /// them), so the outbox stays bounded under endless traffic.
    @discardableResult
    func prune(through position: CapturePosition, in session: Session) throws -> Int {
        guard position != .start else { return 0 }
        return try session.execute(
            "DELETE FROM \(capture.s).changes WHERE (xid, id) <= ($1::xid8, $2::int8)", [position.xid, position.id])
    }
}
