import Postgres

/// A consumer that pages through the global order from its checkpoint, then waits for new
/// events (LISTEN/NOTIFY, with polling as the fallback), handling each batch in one
/// transaction together with its checkpoint.
public struct CatchUpSubscription: Sendable {
    /// When ``run(until:handler:)`` returns.
    public enum StopCondition: Sendable {
        /// Once every event committed before the last read has been handled. (When an older
        /// transaction somewhere in the cluster holds back the readable horizon, it waits for
        /// it rather than stopping short.)
        case caughtUp
        /// After this many batches (or earlier, when caught up).
        case batches(Int)
        /// Never on its own: it follows new events until the task is cancelled.
        case cancelled
    }

    public let store: EventStore
    /// The checkpoint's name.
    public let consumer: String
    public let batchSize: Int
    /// How long to wait for a notification before polling anyway. Notifications can be
    /// missed (a writer's transaction may still hold back the readable horizon when it
    /// commits), so polling keeps the subscription moving whatever happens.
    public let pollInterval: Duration

    public init(store: EventStore, consumer: String, batchSize: Int = 5_000, pollInterval: Duration = .seconds(1)) {
        self.store = store
        self.consumer = consumer
        self.batchSize = batchSize
        self.pollInterval = pollInterval
    }

    /// What one run did.
    public struct Progress: Sendable, Hashable {
        public var events: Int
        public var batches: Int
        public var cursor: GlobalCursor
    }

    /// Processes batches from the checkpoint on.
    ///
    /// - Parameters:
    ///   - connection: used for reads, the handler's writes and the checkpoint.
    ///   - listener: a second connection for LISTEN (needed only with `.cancelled`).
    ///   - handler: called inside the batch's transaction; throwing rolls back the batch and
    ///     its checkpoint, and ends the run with that error.
    public func run(
        on connection: Connection, listener: Connection? = nil, until stop: StopCondition = .caughtUp,
        handler: @escaping @Sendable (Session, [RecordedEvent]) throws -> Void
    ) async throws -> Progress {
        var progress = Progress(events: 0, batches: 0, cursor: .start)
        var horizonBackoff = Duration.milliseconds(2)
        if let listener { try await listener.withSession { [store] in try $0.listen(store.notificationChannel) } }
        while true {
            try Task.checkCancellation()
            let batch = try await connection.withSession { [self] session in
                try session.transaction { tx -> (Int, GlobalCursor, Bool) in
                    let from = try store.checkpoint(consumer, in: tx)
                    let events = try store.readAll(after: from, limit: batchSize, in: tx)
                    guard let last = events.last else { return (0, from, try store.hasEventsBeyond(from, in: tx)) }
                    try handler(tx, events)
                    try store.advanceCheckpoint(consumer, from: from, to: last.cursor, processed: events.count, in: tx)
                    return (events.count, last.cursor, true)
                }
            }
            progress.cursor = batch.1
            if batch.0 == 0, batch.2 {
                // Committed events exist but an older transaction still holds the horizon.
                try await Task.sleep(for: horizonBackoff)
                horizonBackoff = min(horizonBackoff * 2, .milliseconds(200))
                continue
            }
            horizonBackoff = .milliseconds(2)
            if batch.0 > 0 {
                progress.events += batch.0
                progress.batches += 1
                if case .batches(let n) = stop, progress.batches >= n { return progress }
                continue
            }
            switch stop {
            case .caughtUp, .batches: return progress
            case .cancelled:
                if let listener {
                    _ = try await listener.withSession { [pollInterval] in try $0.waitForNotification(timeout: pollInterval) }
                } else {
                    try await Task.sleep(for: pollInterval)
                }
            }
        }
    }
}
