/// How the simulated application retries an operation the database turned away for a reason
/// that passes: a lock it could not get in time, a serialization failure, a deadlock.
///
/// A real billing application retries these (the transaction wrote nothing and running it
/// again may well succeed); it does not retry the others (a constraint violation fails again).
/// Attempt `n` (from 1) that fails with a retryable SQLSTATE is followed, if `n < maxAttempts`,
/// by a pause of ``delay(after:operation:)``: `initialBackoff · 2^(n−1)`, capped at
/// `maxBackoff`, with "equal jitter" (between half and all of it) so connections that collided
/// do not collide again in lockstep. The jitter comes from the operation's seed, never from the
/// system's random source, so a seeded run pauses the same way every time.
public struct RetryPolicy: Sendable, Hashable {
    /// The pause after the first failed attempt (before jitter).
    public var initialBackoff: Duration
    /// The longest pause.
    public var maxBackoff: Duration
    /// Attempts in all, the first included (1 = never retry).
    public var maxAttempts: Int
    /// The SQLSTATEs worth another attempt.
    public var retryableStates: Set<String>

    /// `55P03` lock_not_available (what `lock_timeout` raises), `40001` serialization_failure,
    /// `40P01` deadlock_detected.
    public static let defaultRetryableStates: Set<String> = ["55P03", "40001", "40P01"]

    /// 50 ms doubling to at most 1 s, 10 attempts: an operation gives up after about 6 s of
    /// pauses plus its attempts (with a 1 s lock timeout, about 16 s in all), long enough to
    /// ride out a cutover's write freeze of a few seconds.
    public static let standard = RetryPolicy(
        initialBackoff: .milliseconds(50), maxBackoff: .seconds(1), maxAttempts: 10,
        retryableStates: defaultRetryableStates)

    public init(
        initialBackoff: Duration, maxBackoff: Duration, maxAttempts: Int,
        retryableStates: Set<String> = defaultRetryableStates
    ) {
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.maxAttempts = maxAttempts
        self.retryableStates = retryableStates
    }

    /// Whether a failure with `sqlState` is worth another attempt.
    public func isRetryable(_ sqlState: String) -> Bool { retryableStates.contains(sqlState) }

    /// The pause after failed attempt `attempt` (from 1) of `operation`.
    public func delay(after attempt: Int, operation: BillingOperation) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        let full = min(initialBackoff * (1 << exponent), maxBackoff)
        var random = SimulationRandom(seed: SimulationRandom.derive(operation.seed, UInt64(attempt)))
        // Between half and all of `full`, in 1/1024 steps.
        let fraction = 512 + Int(random.next() % 513)
        return full * fraction / 1024
    }

    /// Checks the settings make sense.
    public func validate() throws(SimulatorError) {
        guard maxAttempts >= 1 else {
            throw .invalidConfiguration("the attempts per operation must be at least 1 (got \(maxAttempts))")
        }
        guard initialBackoff >= .zero, maxBackoff >= initialBackoff else {
            throw .invalidConfiguration("the retry backoff must be 0 or more and its cap at least the first pause")
        }
    }
}
