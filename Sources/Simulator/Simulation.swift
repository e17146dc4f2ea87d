import EventStore
import Foundation
import Histogram
import Postgres
import Synchronization

/// A run of business operations against a ``BillingApp``: the load generator behind
/// `ledgerlift simulate` (which only parses options and prints the ``SimulationReport``).
///
/// **The operations.** Operation `i` (from 1) is ``operation(_:seed:mix:)``: a generator seeded
/// with `SimulationRandom.derive(seed, i)` draws once for the kind (`mix.kind(for:)`) and once
/// more for the seed of the operation's own stream (``Operation/random``). Each operation is a
/// function of (seed, mix, i) alone, so with one connection and `.operations(N)` a run performs
/// the same operations in the same order every time; with several, the same operations, in the
/// order the connections reach them.
///
/// **Open loop** (`rate` set): operation `i` is scheduled at `start + (i−1)/rate`, however long
/// earlier ones take. A free connection takes the next operation in schedule order and starts
/// it at its scheduled time (or at once, when late); latency runs from the scheduled start, so
/// a stalled database shows as latency, not as a lower rate (wrk2's correction of coordinated
/// omission). With `.duration(D)`, the operations scheduled before `start + D` run — all of
/// them, even when the database stalls and the last ones start late, so their number is
/// `⌈rate · D⌉`. **Closed loop** (`rate` nil): each connection starts the next operation as soon
/// as its previous one ends (latency from the actual start); with `.duration(D)` no operation
/// starts after `start + D`.
///
/// **Failures.** An attempt failing with a retryable SQLSTATE (``RetryPolicy``: lock timeout
/// 55P03, serialization 40001, deadlock 40P01) is retried after a backoff, at most
/// `maxAttempts` attempts in all; the time in those failed attempts and pauses is the
/// operation's *blocked time*. (A successful attempt that waited on a lock for less than the
/// application's lock timeout is not told apart: that wait shows in its latency only.) An
/// operation refused by ``WriteGuard`` (LL001) is counted `rerouted` and, when
/// ``Configuration/reroute`` names a second application, performed there (the cutover's write
/// path); otherwise it is not performed. With ``Configuration/routing`` too, each operation goes
/// first to the application the store's write routing names (``WriteRouting``), and one the
/// second application sends back (``LedgerAppError/writesOnLegacy(op:command:)``: writes went
/// back to legacy) is performed by the first, also counted `rerouted` — at most
/// ``maxHops`` times back and forth. Any other error is counted by SQLSTATE and not
/// retried. A `nil` result (nothing to act on) is counted `skipped`. A connection whose link to
/// the server was lost opens a new worker before its next operation.
///
/// **Acknowledgement.** With a journal, each attempt's ``JournalEntry`` is made durable as a
/// `prepared` line before the application COMMITs (``BillingAppWorker/perform(_:clock:prepared:)``
/// calls ``JournalWriter/prepare(_:attempt:)``), and once the COMMIT is confirmed an
/// `acknowledged` line naming the attempt is (``JournalWriter/acknowledge(op:attempt:)``). An
/// operation is acknowledged once that line is on disk (without a journal: once the commit is
/// confirmed); only then is it counted and its latency taken. A crash between the two lines
/// leaves the operation *in doubt*, which `simulate verify` allows but does not require
/// (docs/journal.md). If the journal cannot be written the run stops
/// (``SimulationReport/failure``): a failing `prepared` line rolls its operation back.
///
/// **Stopping.** ``stop(_:)`` (on SIGINT or SIGTERM): no operation starts after it, those
/// running finish (with their retries); a second call cancels them (their statements are
/// cancelled, and they count as errors with SQLSTATE 57014 or `cancelled`).
public final class Simulation: Sendable {
    /// When a run ends.
    public enum Stop: Sendable, Hashable {
        /// Open loop: the operations scheduled within the duration. Closed loop: none started after it.
        case duration(Duration)
        /// Exactly this many operations (ids 1…N).
        case operations(UInt64)
    }

    /// Why a run was stopped early.
    public enum StopReason: String, Sendable {
        case interrupt = "SIGINT"
        case terminate = "SIGTERM"
        case requested = "stop"
    }

    /// What to run.
    public struct Configuration: Sendable {
        /// The application performing the operations.
        public var app: any BillingApp
        /// Where operations the write guard refuses (LL001) go, when anywhere: the cutover's
        /// write path (``LedgerApp``). `nil`: they are counted `rerouted` and not performed.
        public var reroute: (any BillingApp)?
        /// Concurrent connections (workers of `app`), each running one operation at a time.
        public var connections: Int
        /// Operations per second on a fixed schedule (open loop); `nil`: closed loop.
        public var rate: Double?
        public var stop: Stop
        public var seed: UInt64
        public var mix: OperationMix
        /// The journal of acknowledged operations, if any.
        public var journal: JournalWriter?
        /// The business time operations write.
        public var clock: BusinessClock
        public var retry: RetryPolicy
        /// The store's write routing, consulted before each operation when ``reroute`` is set:
        /// writes routed to the ledger (or frozen) go to ``reroute`` first, the others to
        /// ``app``. `nil`: every operation goes to ``app`` first.
        public var routing: WriteRouting?

        public init(
            app: any BillingApp, connections: Int = 1, rate: Double? = nil, stop: Stop, seed: UInt64 = 1,
            mix: OperationMix = .standard, journal: JournalWriter? = nil, clock: BusinessClock,
            retry: RetryPolicy = .standard, reroute: (any BillingApp)? = nil, routing: WriteRouting? = nil
        ) {
            self.app = app
            self.connections = connections
            self.rate = rate
            self.stop = stop
            self.seed = seed
            self.mix = mix
            self.journal = journal
            self.clock = clock
            self.retry = retry
            self.reroute = reroute
            self.routing = routing
        }
    }

    /// Figures while a run goes on, about once a second.
    public struct Progress: Sendable {
        public var elapsed: Duration
        public var operations: Int
        /// Operations per second since the previous progress.
        public var recentRate: Double
        public var failed: Int
        /// p99 latency of the run so far.
        public var p99: Duration
    }

    public let configuration: Configuration

    private struct State: Sendable {
        var nextID: UInt64 = 1
        var stopReason: StopReason?
        var stopCalls = 0
        var failure: String?
        var runTask: Task<Void, Never>?
        var started = false
    }

    private let state = Mutex(State())
    private let recorder = LatencyRecorder()
    /// When the last operation ended (the run's end).
    private let lastEnd = Mutex<ContinuousClock.Instant?>(nil)
    private let clock = ContinuousClock()

    /// - Throws: ``SimulatorError/invalidConfiguration(_:)`` for settings out of range.
    public init(_ configuration: Configuration) throws(SimulatorError) {
        guard (1...1_000).contains(configuration.connections) else {
            throw .invalidConfiguration("connections must be between 1 and 1000 (got \(configuration.connections))")
        }
        // Bounded so every scheduled start fits a Duration.
        if let rate = configuration.rate, !(rate.isFinite && rate >= 0.001 && rate <= 1_000_000) {
            throw .invalidConfiguration(
                "the rate must be between 0.001 and 1000000 operations per second (got \(rate))")
        }
        switch configuration.stop {
        case .duration(let duration) where duration <= .zero:
            throw .invalidConfiguration("the duration must be positive")
        case .operations(let count) where count == 0:
            throw .invalidConfiguration("the number of operations must be at least 1")
        default: break
        }
        try configuration.retry.validate()
        self.configuration = configuration
    }

    /// Operation `id` of a run with `seed` and `mix`: kind from the first draw of
    /// `SimulationRandom(seed: derive(seed, id))`, the operation's own seed from the second.
    public static func operation(_ id: UInt64, seed: UInt64, mix: OperationMix) -> BillingOperation {
        var random = SimulationRandom(seed: SimulationRandom.derive(seed, id))
        let kind = mix.kind(for: random.next())
        return BillingOperation(id: id, kind: kind, seed: random.next())
    }

    /// Stops the run: the first call lets running operations finish, a second cancels them.
    public func stop(_ reason: StopReason) {
        let task: Task<Void, Never>? = state.withLock { state in
            state.stopCalls += 1
            if state.stopReason == nil { state.stopReason = reason }
            return state.stopCalls > 1 ? state.runTask : nil
        }
        task?.cancel()
    }

    private var isStopping: Bool { state.withLock { $0.stopReason != nil || $0.failure != nil } }

    /// Runs the operations (once per ``Simulation``) and returns the report, also when stopped
    /// early or when the journal failed (``SimulationReport/stoppedBy``,
    /// ``SimulationReport/failure``).
    ///
    /// - Parameter progress: called about once a second from a background task.
    /// - Throws: when the application cannot open its connections (nothing ran).
    public func run(progress: (@Sendable (Progress) -> Void)? = nil) async throws -> SimulationReport {
        // Operation ids, counts and the end time belong to one run.
        let first = state.withLock { state in
            defer { state.started = true }
            return !state.started
        }
        guard first else {
            throw SimulatorError.invalidConfiguration("a Simulation runs once: make a new one for another run")
        }
        // Every connection first: a run that cannot open them all does not start.
        var workers = [any BillingAppWorker]()
        do {
            for _ in 0..<configuration.connections { workers.append(try await configuration.app.makeWorker()) }
        } catch {
            for worker in workers { worker.close() }
            throw error
        }
        let businessStart = configuration.clock.current
        let start = clock.now
        let task = Task { [workers] in
            await withTaskGroup(of: Void.self) { group in
                for worker in workers {
                    group.addTask { await self.connectionLoop(worker: worker, start: start) }
                }
            }
        }
        state.withLock { $0.runTask = task }
        let monitor = progress.map { progress in
            Task {
                var last = (instant: start, operations: 0)
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    if Task.isCancelled { break }
                    let now = clock.now
                    let figures = recorder.progress()
                    let seconds = max(0.001, (now - last.instant).seconds)
                    progress(
                        Progress(
                            elapsed: now - start, operations: figures.operations,
                            recentRate: Double(figures.operations - last.operations) / seconds, failed: figures.failed,
                            p99: .microseconds(figures.p99Microseconds)))
                    last = (now, figures.operations)
                }
            }
        }
        // A cancelled caller stops the run as a second signal would.
        await withTaskCancellationHandler {
            await task.value
        } onCancel: {
            task.cancel()
        }
        monitor?.cancel()
        return report(businessStart: businessStart, duration: (lastEnd.withLock { $0 } ?? start) - start)
    }

    /// One connection: takes the next operation, waits for its scheduled time (open loop),
    /// performs it, counts it; until the schedule is exhausted or the run stops.
    private func connectionLoop(worker: any BillingAppWorker, start: ContinuousClock.Instant) async {
        var connection = ConnectionState(worker: worker)
        defer {
            connection.worker?.close()
            connection.rerouteWorker?.close()
        }
        while let (operation, scheduled) = nextOperation(start: start) {
            if let scheduled {
                // Wait in short slices so a stop is noticed while waiting for a far-off slot.
                while clock.now < scheduled {
                    if isStopping || Task.isCancelled { return }
                    try? await Task.sleep(until: min(scheduled, clock.now + .milliseconds(100)), clock: clock)
                }
            }
            if Task.isCancelled { return }
            let began = scheduled ?? clock.now
            await perform(operation, on: &connection, began: began)
            let now = clock.now
            lastEnd.withLock { $0 = max($0 ?? now, now) }
        }
    }

    /// The next operation and, in open loop, its scheduled start; `nil` when the run is over.
    private func nextOperation(start: ContinuousClock.Instant) -> (BillingOperation, ContinuousClock.Instant?)? {
        let now = clock.now
        let id: UInt64? = state.withLock { state in
            guard state.stopReason == nil, state.failure == nil else { return nil }
            let id = state.nextID
            switch configuration.stop {
            case .operations(let count):
                guard id <= count else { return nil }
            case .duration(let duration):
                if let rate = configuration.rate {
                    guard Double(id - 1) / rate < duration.seconds else { return nil }
                } else {
                    guard now - start < duration else { return nil }
                }
            }
            state.nextID += 1
            return id
        }
        guard let id else { return nil }
        let operation = Self.operation(id, seed: configuration.seed, mix: configuration.mix)
        let scheduled = configuration.rate.map { rate in
            // Capped (at ~285 years) so a huge --operations at a low rate cannot overflow.
            start + .nanoseconds(Int64(min((Double(id - 1) / rate * 1e9).rounded(), 9e18)))
        }
        return (operation, scheduled)
    }

    /// A connection's workers: its own, and the re-route target's, opened on first use.
    private struct ConnectionState {
        var worker: (any BillingAppWorker)?
        var rerouteWorker: (any BillingAppWorker)?
    }

    /// What the attempts of one operation on one application came to.
    private struct Attempts {
        var result: Result<JournalEntry?, any Error> = .success(nil)
        var retries = 0
        var blocked: Duration = .zero
        /// The number of the last attempt (the one that committed, on success).
        var attempt = 0
        var code: String? {
            if case .failure(let error) = result { return Simulation.errorCode(of: error) }
            return nil
        }
    }

    /// The most times one operation is sent from one application to the other (a refusal by
    /// each in turn while routing flips back and forth): then it counts as failed.
    static let maxHops = 3

    private func perform(
        _ operation: BillingOperation, on connection: inout ConnectionState, began: ContinuousClock.Instant
    )
        async
    {
        // Where the routing sends writes now (with a second application only).
        var onReroute = false
        if configuration.reroute != nil, let routing = configuration.routing {
            switch await routing.writes() {
            case .ledger?, .frozen?: onReroute = true
            case .legacy?, nil: onReroute = false
            }
        }
        var attempts = Attempts()
        var rerouted = false
        var reroutedBlocked = Duration.zero
        var hops = 0
        while true {
            let hopStart = clock.now
            // Attempt numbers run on across applications: each names one prepared line.
            let previous = attempts
            if onReroute, let reroute = configuration.reroute {
                attempts = await attempt(
                    operation, worker: &connection.rerouteWorker, app: reroute, after: previous.attempt)
                reroutedBlocked += connection.rerouteWorker?.takeRoutedWait() ?? .zero
            } else {
                attempts = await attempt(
                    operation, worker: &connection.worker, app: configuration.app, after: previous.attempt)
            }
            attempts.retries += previous.retries
            attempts.blocked += previous.blocked
            // Refused by the application writes no longer (or not yet) go to: the other one.
            let refused =
                onReroute ? attempts.code == LedgerAppError.writesOnLegacyCode : attempts.code == WriteGuard.sqlState
            guard refused else { break }
            rerouted = true
            reroutedBlocked += clock.now - hopStart
            configuration.routing?.invalidate()
            guard configuration.reroute != nil, hops < Self.maxHops else { break }
            hops += 1
            onReroute.toggle()
        }
        if !rerouted {
            // Waits on a routing refusal of an operation that went straight to its application
            // (the routing had changed already) are blocked time like a lock's.
            attempts.blocked += reroutedBlocked
            reroutedBlocked = .zero
        }
        let outcome: OperationOutcome
        switch attempts.result {
        case .success(nil):
            outcome = .skipped
        case .success(_?):
            if let journal = configuration.journal {
                do {
                    try await journal.acknowledge(op: operation.id, attempt: attempts.attempt)
                } catch {
                    // Committed but not journaled: the journal can no longer prove anything.
                    state.withLock { if $0.failure == nil { $0.failure = error.description } }
                    return
                }
            }
            outcome = .acknowledged
        case .failure(let error as JournalWriter.Failure):
            // The prepared line failed (the operation was rolled back): the journal can no
            // longer prove anything.
            state.withLock { if $0.failure == nil { $0.failure = error.description } }
            return
        case .failure(let error):
            if rerouted && configuration.reroute == nil && Self.errorCode(of: error) == WriteGuard.sqlState {
                outcome = .refused
            } else {
                outcome = .failed(code: Self.errorCode(of: error), message: Self.message(of: error))
            }
        }
        recorder.record(
            kind: operation.kind, outcome: outcome, rerouted: rerouted, retries: attempts.retries,
            blocked: attempts.blocked, reroutedBlocked: reroutedBlocked,
            latency: clock.now - began)
    }

    /// Runs `operation` on `worker` (opening one of `app` when there is none), retrying the
    /// retryable failures; attempts are numbered from `after + 1`.
    private func attempt(
        _ operation: BillingOperation, worker: inout (any BillingAppWorker)?, app: any BillingApp, after: Int
    ) async -> Attempts {
        var attempts = Attempts()
        var number = 1
        while true {
            attempts.attempt = after + number
            let attemptStart = clock.now
            do {
                let current: any BillingAppWorker
                if let worker {
                    current = worker
                } else {
                    current = try await app.makeWorker()
                    worker = current
                }
                let prepared = preparedCallback(operation, attempt: attempts.attempt)
                attempts.result = .success(
                    try await current.perform(operation, clock: configuration.clock, prepared: prepared))
                return attempts
            } catch {
                attempts.result = .failure(error)
                if Self.isConnectionLost(error) {
                    // The next attempt, or the next operation, opens a new connection.
                    worker?.close()
                    worker = nil
                }
                let code = Self.errorCode(of: error)
                guard configuration.retry.isRetryable(code) else { return attempts }
                attempts.blocked += clock.now - attemptStart
                guard number < configuration.retry.maxAttempts, !Task.isCancelled else { return attempts }
                let pauseStart = clock.now
                try? await Task.sleep(for: configuration.retry.delay(after: number, operation: operation))
                attempts.blocked += clock.now - pauseStart
                attempts.retries += 1
                number += 1
            }
        }
    }

    /// What the application calls before COMMIT: the journal's `prepared` line of this
    /// attempt, durable before it returns (nothing without a journal).
    private func preparedCallback(_ operation: BillingOperation, attempt: Int)
        -> @Sendable (JournalEntry) throws -> Void
    {
        guard let journal = configuration.journal else { return { _ in } }
        return { entry in
            // The journal records the runner's operation, whatever the application echoed.
            var entry = entry
            entry.op = operation.id
            entry.kind = operation.kind
            try journal.prepare(entry, attempt: attempt)
        }
    }

    /// The code an error is counted under: its SQLSTATE; for a failure without one (a lost
    /// connection, a cancelled statement), the client's code in snake case, like a SQLSTATE
    /// condition name (`connection_lost`, `cancelled`); `app` for an error that is not the
    /// database's.
    public static func errorCode(of error: any Error) -> String {
        switch error {
        case let error as SimulatorError:
            if case .database(let database) = error { return code(of: database) }
            return "app"
        case let error as PostgresError: return code(of: error)
        case let error as LedgerAppError: return error.code
        default: return "app"
        }
    }

    private static func code(of error: PostgresError) -> String {
        error.sqlState?.rawValue ?? snakeCase(error.code.description)
    }

    /// `connectionLost` → `connection_lost`.
    static func snakeCase(_ name: String) -> String {
        var out = ""
        for character in name {
            if character.isUppercase {
                if !out.isEmpty { out += "_" }
                out += character.lowercased()
            } else {
                out.append(character)
            }
        }
        return out
    }

    /// `text` on one line: every run of whitespace (libpq's newlines and tabs) as one space.
    static func oneLine(_ text: String) -> String {
        text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    private static func isConnectionLost(_ error: any Error) -> Bool {
        switch error {
        case let error as SimulatorError:
            if case .database(let database) = error { return database.isConnectionLost }
            return false
        case let error as PostgresError: return error.isConnectionLost
        default: return false
        }
    }

    private static func message(of error: any Error) -> String { oneLine(rawMessage(of: error)) }

    private static func rawMessage(of error: any Error) -> String {
        switch error {
        case let error as SimulatorError:
            if case .database(let database) = error { return database.message }
            return error.description
        case let error as PostgresError: return error.message
        default: return String(describing: error)
        }
    }

    private func report(businessStart: PostgresTimestamp, duration: Duration) -> SimulationReport {
        let (kinds, total, messages) = recorder.snapshot()
        let (stopReason, failure) = state.withLock { ($0.stopReason, $0.failure) }
        func figures(_ name: String, _ f: LatencyRecorder.Figures) -> SimulationReport.Figures {
            let latency: SimulationReport.Latency? =
                f.latency.totalCount == 0
                ? nil
                : SimulationReport.Latency(
                    p50: Self.milliseconds(f.latency.valueAtPercentile(50)),
                    p95: Self.milliseconds(f.latency.valueAtPercentile(95)),
                    p99: Self.milliseconds(f.latency.valueAtPercentile(99)), max: Self.milliseconds(f.maxMicroseconds))
            return SimulationReport.Figures(
                kind: name, operations: f.operations, acknowledged: f.acknowledged, skipped: f.skipped,
                rerouted: f.rerouted,
                errors: f.errors, failed: f.failed, retries: f.retries, blockedSeconds: Self.rounded(f.blocked.seconds),
                reroutedBlockedSeconds: Self.rounded(f.reroutedBlocked.seconds),
                reroutedBlockedMaxMs: Self.milliseconds(f.reroutedBlockedMaxMicroseconds), latencyMs: latency)
        }
        let seconds = duration.seconds
        return SimulationReport(
            mode: configuration.rate == nil ? "closed" : "open", app: configuration.app.name,
            connections: configuration.connections,
            seed: configuration.seed, targetRate: configuration.rate,
            achievedRate: seconds > 0 ? Self.rounded(Double(total.operations) / seconds) : 0,
            durationSeconds: Self.rounded(seconds),
            stoppedBy: stopReason?.rawValue, failure: failure, journal: configuration.journal?.path,
            journalLines: configuration.journal == nil ? 0 : total.acknowledged,
            kinds: OperationKind.allCases.compactMap { kind in kinds[kind].map { figures(kind.rawValue, $0) } },
            total: figures("total", total), errorMessages: messages,
            businessTimeFrom: businessStart.iso8601, businessTimeTo: configuration.clock.current.iso8601,
            candidate: configuration.app.candidate?.figures())
    }

    private static func milliseconds(_ micros: UInt64) -> Double { Double(micros) / 1000 }
    private static func rounded(_ value: Double) -> Double { (value * 1_000_000).rounded() / 1_000_000 }
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
