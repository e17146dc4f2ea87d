import Histogram
import Synchronization

/// How one operation ended, as the runner counts it.
enum OperationOutcome: Sendable {
    /// Committed (and journaled, with a journal).
    case acknowledged
    /// Nothing to act on: nothing written.
    case skipped
    /// Failed for good: the SQLSTATE (or another code, see ``Simulation/errorCode(of:)``) and
    /// the message.
    case failed(code: String, message: String)
    /// Refused by the write guard (``WriteGuard``) and not sent anywhere else.
    case refused
}

/// The figures of a run so far, per operation kind and in total: counts, errors by SQLSTATE,
/// retries, blocked time, and latencies in an HdrHistogram (microseconds, 3 significant
/// digits, up to an hour).
///
/// Every connection records into the one recorder under a lock: a record is a few counter
/// increments and a histogram slot, far cheaper than the database round trip it follows.
final class LatencyRecorder: Sendable {
    struct Figures: Sendable {
        var operations = 0
        var acknowledged = 0
        var skipped = 0
        var rerouted = 0
        var errors: [String: Int] = [:]
        var retries = 0
        var blocked: Duration = .zero
        /// Re-routed operations: the time from their start until the application that took
        /// them began its last attempt, plus its waits on routing refusals.
        var reroutedBlocked: Duration = .zero
        /// The longest of those, in µs.
        var reroutedBlockedMaxMicroseconds: UInt64 = 0
        /// Latencies of the operations that completed (acknowledged or skipped), in µs.
        var latency = Histogram<UInt64>(
            lowestDiscernibleValue: 1, highestTrackableValue: LatencyRecorder.highestMicroseconds)
        /// The exact largest latency (the histogram keeps 3 digits).
        var maxMicroseconds: UInt64 = 0

        var failed: Int { errors.values.reduce(0, +) }
    }

    /// One hour: a latency past it is recorded as an hour.
    static let highestMicroseconds: UInt64 = 3_600_000_000

    private struct State: Sendable {
        var kinds: [OperationKind: Figures] = [:]
        var total = Figures()
        /// The first message seen per error code (reports show one example each).
        var messages: [String: String] = [:]
    }

    private let state = Mutex(State())

    /// Counts one finished operation.
    func record(
        kind: OperationKind, outcome: OperationOutcome, rerouted: Bool, retries: Int, blocked: Duration,
        reroutedBlocked: Duration = .zero, latency: Duration
    ) {
        let micros = Self.microseconds(latency)
        let reroutedMicros = Self.microseconds(reroutedBlocked)
        state.withLock { state in
            func apply(_ figures: inout Figures) {
                figures.operations += 1
                figures.retries += retries
                figures.blocked += blocked
                if rerouted {
                    figures.rerouted += 1
                    figures.reroutedBlocked += reroutedBlocked
                    figures.reroutedBlockedMaxMicroseconds = max(figures.reroutedBlockedMaxMicroseconds, reroutedMicros)
                }
                switch outcome {
                case .acknowledged, .skipped:
                    if case .acknowledged = outcome { figures.acknowledged += 1 } else { figures.skipped += 1 }
                    figures.latency.record(min(micros, Self.highestMicroseconds))
                    figures.maxMicroseconds = max(figures.maxMicroseconds, micros)
                case .failed(let code, _):
                    figures.errors[code, default: 0] += 1
                case .refused:
                    break
                }
            }
            apply(&state.kinds[kind, default: Figures()])
            apply(&state.total)
            if case .failed(let code, let message) = outcome, state.messages[code] == nil {
                state.messages[code] = message
            }
        }
    }

    /// A copy of everything so far.
    func snapshot() -> (kinds: [OperationKind: Figures], total: Figures, messages: [String: String]) {
        state.withLock { ($0.kinds, $0.total, $0.messages) }
    }

    /// Totals only, for progress lines: operations, failed, p99 in µs.
    func progress() -> (operations: Int, failed: Int, p99Microseconds: UInt64) {
        state.withLock { state in
            let p99 = state.total.latency.totalCount == 0 ? 0 : state.total.latency.valueAtPercentile(99)
            return (state.total.operations, state.total.failed, p99)
        }
    }

    static func microseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0, attoseconds >= 0 || seconds > 0 else { return 0 }
        let micros = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
        return UInt64(max(0, micros))
    }
}
