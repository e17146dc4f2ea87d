import Postgres

/// A position in the capture outbox's order: the writing transaction (`xid8`) and the row's
/// `id`, as `ledgerlift_capture.changes` is ordered and the tailer checkpoints it.
///
/// Rows are read in `(xid, id)` order and only from transactions older than every running one,
/// so everything at or before a position the tailer has passed is final: no row can still
/// commit below it.
public struct CapturePosition: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The transaction id as PostgreSQL writes an `xid8` (decimal text, epoch included).
    public var xid: String
    /// The change row's `id` (`bigserial`).
    public var id: Int64

    public init(xid: String, id: Int64) {
        self.xid = xid
        self.id = id
    }

    /// Before every captured change.
    public static let start = CapturePosition(xid: "0", id: 0)

    /// The transaction id as a number (an `xid8` is a 64-bit unsigned integer).
    public var xidValue: UInt64 { UInt64(xid) ?? 0 }

    public static func < (a: CapturePosition, b: CapturePosition) -> Bool {
        (a.xidValue, a.id) < (b.xidValue, b.id)
    }

    /// `xid/id`, e.g. `1042/17`.
    public var description: String { "\(xid)/\(id)" }
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
