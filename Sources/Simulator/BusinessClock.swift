import Foundation
import Postgres
import Synchronization

/// The time the simulated application writes into its rows (`created_at`, `paid_at`, …).
///
/// Two modes:
/// - ``Mode-swift.enum/data(start:)`` (the default of `ledgerlift simulate`): the clock
///   continues the data's own timeline from `start` (the latest moment the legacy data
///   records), advancing by each operation's own step, so a seeded single-connection run writes
///   the same timestamps every time (byte-identical dumps) and stays close to the fixture's
///   window;
/// - ``Mode-swift.enum/wall``: the real UTC time, as the production application writes it.
///
/// Either way the clock never goes back: an operation asks for its time only once it holds the
/// locks on the rows it changes, so an operation that changes a row after another one did
/// always writes a later time than the other — rows' timelines stay ordered (fixtures C17) and
/// the journal can order changes of one row by time even when connections acknowledge out of
/// order.
public final class BusinessClock: Sendable {
    public enum Mode: Sendable, Hashable {
        case data(start: PostgresTimestamp)
        case wall
    }

    public let mode: Mode
    private let last: Mutex<Int64>

    public init(_ mode: Mode) {
        self.mode = mode
        switch mode {
        case .data(let start): last = Mutex(start.microsecondsSinceEpoch)
        case .wall: last = Mutex(Int64.min)
        }
    }

    /// The next moment: `step` after the previous one (data mode) or now (wall mode), and at
    /// least a microsecond after every moment handed out before.
    public func next(step: Duration = .seconds(1)) -> PostgresTimestamp {
        let stepMicros = max(1, step.components.seconds * 1_000_000 + step.components.attoseconds / 1_000_000_000_000)
        return last.withLock { last in
            let candidate: Int64
            switch mode {
            case .data: candidate = last + stepMicros
            case .wall:
                let now = Int64((Date().timeIntervalSince1970 * 1_000_000).rounded(.down))
                candidate = max(now, last == .min ? now : last + 1)
            }
            last = max(candidate, last == .min ? candidate : last + 1)
            return PostgresTimestamp(microsecondsSinceEpoch: last)
        }
    }

    /// The last moment handed out (the start, before any).
    public var current: PostgresTimestamp {
        PostgresTimestamp(microsecondsSinceEpoch: last.withLock { $0 })
    }
}
