/// A position in the legacy capture outbox, in the order the tailer reads it: the writing
/// transaction's `xid8`, then the change row's `id` (`ledgerlift_capture.changes` is keyed and
/// read by `(xid, id)`, as the event store's global order is).
///
/// The contract shared by the tailer (which checkpoints one) and the verification and status
/// code around it (which compare with it): `docs/shadow.md`.
public struct CapturePosition: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The transaction id as PostgreSQL prints an `xid8` (a decimal 64-bit number).
    public var xid: String
    /// The change row's `id` within the outbox.
    public var id: Int64

    public init(xid: String, id: Int64) {
        self.xid = xid
        self.id = id
    }

    /// `xid` as a number; `xid8` never wraps, so numeric order is commit-independent transaction
    /// order. Text that is not a number (never written by PostgreSQL) sorts first.
    public var xidValue: UInt64 { UInt64(xid) ?? 0 }

    public static func < (a: CapturePosition, b: CapturePosition) -> Bool {
        (a.xidValue, a.id) < (b.xidValue, b.id)
    }

    /// `xid/id`, as logs and `shadow status` print it.
    public var description: String { "\(xid)/\(id)" }
}
