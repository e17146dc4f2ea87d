import Postgres

extension CapturePosition {
    /// Before every captured change: where a new tailer starts.
    public static let start = CapturePosition(xid: "0", id: 0)
}

/// One row of the capture outbox, as the tailer reads it.
public struct CapturedChange: Sendable, Hashable {
    public var position: CapturePosition
    /// The table as the capture triggers record it (`format('%I.%I')`: `legacy.invoices`).
    public var sourceTable: String
    /// `I`, `U`, `D` or `T` (a TRUNCATE marker: no images).
    public var op: Character
    /// The row before the change (`U`, `D`): its recorded columns, as JSON text.
    public var oldRow: String?
    /// The row after the change (`I`, `U`).
    public var newRow: String?
    /// When the capture trigger ran (legacy's clock).
    public var capturedAt: PostgresTimestamp
    /// Whether every snapshot the backfill read legacy in saw this change's transaction: the
    /// backfill migrated it already, so the tailer skips it (the handover).
    public var seenByBackfill: Bool
}

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
            SELECT \(Self.columns),
                   coalesce((SELECT bool_and(pg_visible_in_snapshot(c.xid, s::pg_snapshot))
                             FROM unnest($4::text[]) AS s), false)
            FROM \(capture.s).changes c
            WHERE (c.xid, c.id) > ($1::xid8, $2::int8) AND c.xid < pg_snapshot_xmin(pg_current_snapshot())
            ORDER BY c.xid, c.id
            LIMIT $3
            """, [position.xid, position.id, Int64(limit), PostgresArray(backfillSnapshots)]
        ).rows.map { try Self.change($0, seenByBackfill: try $0.decode(at: 7)) }
    }

    /// The outbox columns ``change(_:seenByBackfill:)`` reads, in its order (`c` the outbox).
    static let columns =
        "c.id, c.xid::text, c.source_table, c.op::text, c.old_row::text, c.new_row::text, c.captured_at"

    /// One outbox row of ``columns``.
    static func change(_ row: Row, seenByBackfill: Bool) throws -> CapturedChange {
        CapturedChange(
            position: CapturePosition(xid: try row.decode(at: 1), id: try row.decode(at: 0)),
            sourceTable: try row.decode(at: 2), op: Character(try row.decode(at: 3, as: String.self)),
            oldRow: try row.decode(at: 4, as: String?.self), newRow: try row.decode(at: 5, as: String?.self),
            capturedAt: try row.decode(at: 6), seenByBackfill: seenByBackfill)
    }

    /// Whether committed changes exist after `position` that ``read(after:limit:backfillSnapshots:in:)``
    /// cannot return yet because an older transaction is still running.
    func hasChangesBeyond(_ position: CapturePosition, in session: Session) throws -> Bool {
        try session.query(
            "SELECT EXISTS (SELECT 1 FROM \(capture.s).changes WHERE (xid, id) > ($1::xid8, $2::int8))",
            [position.xid, position.id]
        ).rows[0].decode(at: 0, as: Bool.self)
    }

    /// The session whose transaction holds the xmin horizon back (the oldest running
    /// transaction with an xid, in any database of the cluster), described for a person: pid,
    /// database, state, how long its transaction has run, its xid and xmin. `nil` when no
    /// session shows one (a prepared transaction holds it).
    func horizonHolder(in session: Session) throws -> String? {
        try session.query(
            """
            SELECT pid, coalesce(datname, '?'), coalesce(state, '?'),
                   coalesce(extract(epoch FROM now() - xact_start)::bigint, 0), backend_xid::text, coalesce(backend_xmin::text, '-')
            FROM pg_stat_activity
            WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
            ORDER BY age(backend_xid) DESC LIMIT 1
            """
        ).first.map { row in
            "session pid \(try row.decode(at: 0, as: Int32.self)) (database \(try row.decode(at: 1, as: String.self)), "
                + "\(try row.decode(at: 2, as: String.self)), transaction started \(try row.decode(at: 3, as: Int64.self))s ago, "
                + "backend_xid \(try row.decode(at: 4, as: String.self)), backend_xmin \(try row.decode(at: 5, as: String.self)))"
        }
    }

    /// Deletes the changes at or before `position` (applied: the store's checkpoint has passed
    /// them), so the outbox stays bounded under endless traffic; in the same transaction,
    /// records in `pruned` that `consumer` deleted through `position`, so another consumer of
    /// this outbox learns what it can no longer read (``prunedByAnother(below:backfillSnapshots:in:)``).
    @discardableResult
    func prune(through position: CapturePosition, by consumer: String, in session: Session) throws -> Int {
        guard position != .start else { return 0 }
        return try session.transaction { tx in
            let deleted = try tx.execute(
                "DELETE FROM \(capture.s).changes WHERE (xid, id) <= ($1::xid8, $2::int8)", [position.xid, position.id])
            // A capture schema of version 1 (installed by an older binary) has no `pruned`:
            // `shadow install` upgrades it.
            if deleted > 0, try hasPrunedTable(tx) {
                try tx.execute(
                    """
                    INSERT INTO \(capture.s).pruned AS p (through_xid, through_id, by, at) VALUES ($1::xid8, $2, $3, now())
                    ON CONFLICT (one_row) DO UPDATE SET through_xid = EXCLUDED.through_xid, through_id = EXCLUDED.through_id,
                        by = EXCLUDED.by, at = EXCLUDED.at
                    WHERE (p.through_xid, p.through_id) < (EXCLUDED.through_xid, EXCLUDED.through_id)
                    """, [position.xid, position.id, consumer])
            }
            return deleted
        }
    }

    func hasPrunedTable(_ session: Session) throws -> Bool {
        try session.query("SELECT to_regclass($1) IS NOT NULL", [capture.s + ".pruned"]).rows[0].decode(
            at: 0, as: Bool.self)
    }

    /// What another consumer deleted from the outbox that a tailer at `position` has not
    /// applied, or `nil` when nothing it needs is gone: nothing was pruned beyond `position`, or
    /// each of `coveringSnapshots` saw every transaction up to the pruned-through one (the
    /// pruned xid visible, and no transaction at or below it still running in the snapshot) —
    /// a backfill or a resync that read legacy after the prune already holds those changes.
    func prunedByAnother(below position: CapturePosition, coveringSnapshots: [[String]], in session: Session) throws
        -> (through: CapturePosition, by: String, at: String)?
    {
        guard try hasPrunedTable(session) else { return nil }
        guard
            let row = try session.query(
                "SELECT through_xid::text, through_id, by, at::text FROM \(capture.s).pruned WHERE (through_xid, through_id) > ($1::xid8, $2::int8)",
                [position.xid, position.id]
            ).first
        else { return nil }
        let through = CapturePosition(xid: try row.decode(at: 0), id: try row.decode(at: 1))
        for snapshots in coveringSnapshots where !snapshots.isEmpty {
            let covered = try session.query(
                """
                SELECT bool_and(pg_visible_in_snapshot($1::xid8, s::pg_snapshot)
                                AND NOT EXISTS (SELECT 1 FROM pg_snapshot_xip(s::pg_snapshot) AS x WHERE x <= $1::xid8))
                FROM unnest($2::text[]) AS s
                """, [through.xid, PostgresArray(snapshots)]
            ).rows[0].decode(at: 0, as: Bool?.self)
            if covered == true { return nil }
        }
        return (through, try row.decode(at: 2), try row.decode(at: 3))
    }
}

extension ChangeReader {
    /// Every committed change after `position` (at most `limit`), whatever transaction still
    /// runs: what candidate mode's comparison must know was committed beyond a batch.
    func read(beyond position: CapturePosition, limit: Int, in session: Session) throws -> [CapturedChange] {
        try session.query(
            """
            SELECT \(Self.columns)
            FROM \(capture.s).changes c
            WHERE (c.xid, c.id) > ($1::xid8, $2::int8)
            ORDER BY c.xid, c.id
            LIMIT $3
            """, [position.xid, position.id, Int64(limit)]
        ).rows.map { try Self.change($0, seenByBackfill: false) }
    }

    /// How many committed changes each transaction after `position` has (no row images).
    func countsByXid(beyond position: CapturePosition, in session: Session) throws -> [UInt64: Int] {
        var counts = [UInt64: Int]()
        for row in try session.query(
            """
            SELECT c.xid::text, count(*) FROM \(capture.s).changes c
            WHERE (c.xid, c.id) > ($1::xid8, $2::int8) GROUP BY c.xid
            """, [position.xid, position.id]
        ).rows {
            if let xid = UInt64(try row.decode(at: 0, as: String.self)) {
                counts[xid] = Int(try row.decode(at: 1, as: Int64.self))
            }
        }
        return counts
    }

    /// Every committed change of the transactions `xids`, in outbox order.
    func read(xids: [UInt64], in session: Session) throws -> [CapturedChange] {
        try session.query(
            """
            SELECT \(Self.columns) FROM \(capture.s).changes c
            WHERE c.xid = ANY($1::xid8[]) ORDER BY c.xid, c.id
            """, [PostgresArray(xids.map { String($0) })]
        ).rows.map { try Self.change($0, seenByBackfill: false) }
    }
}
