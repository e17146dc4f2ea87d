import EventStore
import Foundation
import Logging
import Postgres
import Synchronization

/// Maintains the read models of one schema from the event store's global order.
///
/// A projector consumes the global order in batches (through a ``CatchUpSubscription``, or a
/// pipelined loop with the same rules): each batch's writes and the checkpoint commit in one
/// transaction, so a projector killed at any moment resumes exactly where it stopped, and
/// running it again yields the same tables as one uninterrupted run.
///
/// ```swift
/// let projector = Projector(store: EventStore())
/// let summary = try await projector.catchUp(on: connection)   // builds blue/green the first time
/// try await projector.follow(on: connection, listener: second) // then keeps following
/// ```
///
/// Two ways to bring a read model up to date:
/// - **incremental** (``run(on:listener:until:progress:)``): each batch updates the canonical
///   and history tables and recomputes the derived read models for the keys it touched;
/// - **blue/green** (``rebuild(on:reader:until:progress:)``): builds a fresh copy in `<schema>_next`
///   with its own consumer, writing only history rows per batch (pipelined over a second
///   connection when given one), then — once caught up — completes the canonical tables and
///   indexes, computes the derived models once, and swaps the copy in with schema renames in
///   one transaction. Readers see the old tables until the swap commits and the new ones
///   after it, never a half-built model.
public struct Projector: Sendable {
    /// Whether batches maintain the derived read models (incremental) or leave them to the end
    /// of a blue/green build (bulk).
    enum Mode: Sendable, Hashable {
        case incremental
        case bulk
    }

    /// The event store read from.
    public let store: EventStore
    /// The schema the read models live in.
    public let schema: ReadModelSchema
    /// The checkpoint's name.
    public let consumer: String
    /// Events per batch (per transaction).
    public let batchSize: Int
    let mode: Mode
    /// Where batches are logged (`debug`, with `consumer` and `position` metadata): the
    /// caller's, since a library makes no logger of its own; by default nothing is logged.
    public var logger = Logger(label: "ledgerlift.projection", factory: { _ in SwiftLogNoOpLogHandler() })

    /// - Parameters:
    ///   - store: the event store to read.
    ///   - readSchema: where the read models live (`ledgerlift_read`).
    ///   - consumer: the checkpoint's name; defaults to the schema's name.
    ///   - batchSize: events per transaction. Larger batches amortize the per-batch statements;
    ///     10,000 keeps a batch's memory to a few tens of megabytes.
    public init(
        store: EventStore = EventStore(), readSchema: String = "ledgerlift_read", consumer: String? = nil,
        batchSize: Int = 10_000
    ) {
        self.init(
            store: store, schema: ReadModelSchema(readSchema), consumer: consumer ?? readSchema, batchSize: batchSize,
            mode: .incremental)
    }

    init(store: EventStore, schema: ReadModelSchema, consumer: String, batchSize: Int, mode: Mode) {
        self.store = store
        self.schema = schema
        self.consumer = consumer
        self.batchSize = max(1, batchSize)
        self.mode = mode
    }

    /// The projector that builds the blue/green copy: schema and consumer suffixed `_next`.
    public var next: Projector {
        Projector(
            store: store, schema: ReadModelSchema(schema.name + "_next"), consumer: consumer + "_next",
            batchSize: batchSize, mode: .bulk)
    }

    /// Where the replaced schema goes for the moment between the swap and its drop.
    var retired: ReadModelSchema { ReadModelSchema(schema.name + "_old") }

    // MARK: - State

    /// The read model's state, or `nil` when it has never been built.
    ///
    /// - Throws: ``ProjectionError/foreignSchema(schema:)`` when the schema exists but is not a
    ///   Ledgerlift read model (so nothing of the user's is ever replaced).
    public func state(in session: Session) throws -> ReadModelState? {
        if let state = try schema.state(session) { return state }
        if try schema.exists(session) { throw ProjectionError.foreignSchema(schema: schema.name) }
        return nil
    }

    /// Creates the read model empty, ready for incremental projection from the start of the
    /// global order (no-op when it exists).
    ///
    /// ``catchUp(on:reader:progress:)`` builds a missing read model blue/green instead, which
    /// is faster and never shows a partial model; this is for tests and for following a store
    /// from its first event.
    /// - Returns: whether it was created.
    @discardableResult
    public func install(in session: Session) throws -> Bool {
        try session.transaction { tx in
            try tx.lock(Self.batchLock(schema.name), scope: .transaction)
            guard try state(in: tx) == nil else { return false }
            try tx.executeScript(schema.createScript(bulk: false) + schema.secondaryIndexesScript)
            try tx.execute(
                "INSERT INTO \(schema.qualified("projection_state")) (model_version, consumer, state) VALUES ($1, $2, 'live')",
                [ReadModelSchema.modelVersion, consumer])
            try store.resetCheckpoint(consumer, in: tx)
            return true
        }
    }

    // MARK: - Running

    /// Brings the read model up to date: blue/green when it has never been built (or was built
    /// by another model version), incrementally otherwise.
    ///
    /// - Parameter reader: a second connection, which pipelines a blue/green build (see
    ///   ``rebuild(on:reader:until:progress:)``).
    public func catchUp(
        on connection: Connection, reader: Connection? = nil, progress: (@Sendable (ProjectionProgress) -> Void)? = nil
    ) async throws -> ProjectionSummary {
        let state = try await connection.withSession { [self] in try self.state(in: $0) }
        if let state, state.isLive, state.modelVersion == ReadModelSchema.modelVersion {
            return try await run(on: connection, reader: reader, until: .caughtUp, progress: progress)
        }
        return try await rebuild(on: connection, reader: reader, progress: progress)
    }

    /// Projects incrementally from the checkpoint until `stop`.
    ///
    /// - Parameters:
    ///   - connection: reads, writes and the checkpoint.
    ///   - listener: a second connection for LISTEN, when following (`.cancelled`).
    ///   - reader: a third connection, which pipelines catching up: the next batches are read
    ///     and decoded on it while the current one is written (each batch still commits with
    ///     its checkpoint, compare-and-set), which the read and the decoding no longer hold up.
    ///     Once caught up, a `.cancelled` run follows through the subscription.
    ///   - progress: called after each batch (inside its transaction, before the commit).
    /// - Throws: ``ProjectionError/notBuilt(schema:)`` or
    ///   ``ProjectionError/modelVersionMismatch(schema:found:expected:)`` when there is no live
    ///   read model to continue; ``ProjectionError/consumerBusy(consumer:)`` when another
    ///   process projects with this consumer; `EventStoreError.checkpointConflict` when a
    ///   blue/green swap moved the checkpoint under a running batch (run again to continue).
    public func run(
        on connection: Connection, listener: Connection? = nil, reader: Connection? = nil,
        until stop: CatchUpSubscription.StopCondition = .caughtUp, progress: (@Sendable (ProjectionProgress) -> Void)? = nil
    ) async throws -> ProjectionSummary {
        try await requireLive(connection)
        let tracker = ProgressTracker(progress, logger: logger, consumer: consumer)
        let cursor = try await withConsumerLock(connection) { () async throws -> GlobalCursor in
            var remaining: Int? = if case .batches(let n) = stop { n } else { nil }
            if let reader {
                let reachedHead = try await buildPipelined(
                    writer: connection, reader: reader, limit: remaining, known: nil, tracker: tracker)
                remaining = remaining.map { $0 - tracker.snapshot.batches }
                let following = if case .cancelled = stop { true } else { false }
                if !following || !reachedHead {
                    return try await connection.withSession { [self] in try store.checkpoint(consumer, in: $0) }
                }
            }
            let until = remaining.map { CatchUpSubscription.StopCondition.batches($0) } ?? stop
            return try await subscription.run(on: connection, listener: listener, until: until) { [self] tx, events in
                let outcome = try self.project(events, in: tx)
                tracker.record(outcome, cursor: events.last!.cursor)
            }.cursor
        }
        var summary = ProjectionSummary(schema: schema.name, consumer: consumer, progress: tracker.snapshot)
        summary.progress.cursor = cursor
        return summary
    }

    /// Follows the global order until the task is cancelled, continuing across blue/green swaps
    /// (whose checkpoint move makes a running batch fail and start again from the new one).
    ///
    /// With a `reader`, each backlog is caught up pipelined (see ``run(on:listener:reader:until:progress:)``).
    public func follow(
        on connection: Connection, listener: Connection, reader: Connection? = nil,
        progress: (@Sendable (ProjectionProgress) -> Void)? = nil
    ) async throws {
        while true {
            do {
                _ = try await run(on: connection, listener: listener, reader: reader, until: .cancelled, progress: progress)
                return
            } catch EventStoreError.checkpointConflict {
                try Task.checkCancellation()
                continue
            }
        }
    }

    /// Rebuilds the read model blue/green: builds a fresh copy in ``next`` from the start of the
    /// global order (or continues an unfinished build of the same model version), completes
    /// it, and, once it has caught up, swaps it in.
    ///
    /// - Parameters:
    ///   - connection: the build's writes, its checkpoint and the swap.
    ///   - reader: a second connection to the same database. With it the build is pipelined
    ///     (the next batches are read and decoded while the current one is written; each batch
    ///     still commits with its checkpoint, compare-and-set) and its completion runs on both
    ///     connections at once. Without it, batches are read and written in turn through a
    ///     ``CatchUpSubscription``.
    ///   - stop: `.caughtUp` (default) builds to the head and swaps; `.batches(n)` builds at
    ///     most `n` batches and goes on only if they reached the head — a later call continues
    ///     where it stopped.
    /// - Throws: ``ProjectionError/consumerBusy(consumer:)`` when another build runs;
    ///   ``ProjectionError/foreignSchema(schema:)`` when a schema it would replace is not a read
    ///   model; ``ProjectionError/couldNotCatchUp(schema:attempts:)`` when writes outpace the
    ///   final catch-up several times in a row.
    public func rebuild(
        on connection: Connection, reader: Connection? = nil,
        until stop: CatchUpSubscription.StopCondition = .caughtUp,
        progress: (@Sendable (ProjectionProgress) -> Void)? = nil
    ) async throws -> ProjectionSummary {
        let next = self.next
        let tracker = ProgressTracker(progress, logger: logger, consumer: next.consumer)
        let swapped = try await next.withConsumerLock(connection) { () async throws -> Bool in
            let (phase, known) = try await connection.withSession { [self] session -> (ReadModelState.Phase, KnownKeys?) in
                if let state = try self.state(in: session), state.modelVersion > ReadModelSchema.modelVersion {
                    throw ProjectionError.modelVersionMismatch(
                        schema: schema.name, found: state.modelVersion, expected: ReadModelSchema.modelVersion)
                }
                let (phase, fresh) = try next.prepareBuild(in: session)
                // A copy whose completion has begun is completed, never built further: a bulk
                // batch writes history only, and an entity already completed (its canonical
                // table filled from history) would never take those versions in. The events
                // after the build's checkpoint go in incrementally once it is complete.
                guard phase == .building, try !next.schema.completionStarted(in: session) else { return (phase, nil) }
                return (phase, try KnownKeys.load(next.schema, empty: fresh, in: session))
            }
            if phase == .building, known == nil {
                try await next.complete(on: connection, and: reader)
            } else if phase == .building, let known {
                let limit: Int? = if case .batches(let n) = stop { n } else { nil }
                let reachedHead =
                    if let reader {
                        try await next.buildPipelined(
                            writer: connection, reader: reader, limit: limit, known: known, tracker: tracker)
                    } else {
                        try await next.buildSequential(on: connection, limit: limit, known: known, tracker: tracker)
                    }
                guard reachedHead else { return false }
                try await next.complete(on: connection, and: reader)
            }
            // Events that arrived meanwhile go into the complete copy incrementally; then the swap.
            let catchingUp = next.incremental
            let attempts = 8
            for attempt in 1...attempts {
                _ = try await catchingUp.subscription.run(on: connection, until: .caughtUp) { tx, events in
                    let outcome = try catchingUp.project(events, in: tx)
                    tracker.record(outcome, cursor: events.last!.cursor)
                }
                let swapped = try await connection.withSession { [self] session in
                    try self.swap(in: next, events: tracker.snapshot.events, in: session)
                }
                if swapped { return true }
                if attempt < attempts { try await Task.sleep(for: .milliseconds(20 * attempt)) }
            }
            throw ProjectionError.couldNotCatchUp(schema: next.schema.name, attempts: attempts)
        }
        if swapped {
            // Best effort: should it fail, the next swap drops the retired schema first.
            _ = try? await connection.execute("DROP SCHEMA IF EXISTS \(retired.q) CASCADE")
        }
        let cursor = try await connection.withSession { [self] session in
            try store.checkpoint(swapped ? consumer : next.consumer, in: session)
        }
        var summary = ProjectionSummary(
            schema: schema.name, consumer: consumer, progress: tracker.snapshot, rebuilt: true, swapped: swapped)
        summary.progress.cursor = cursor
        return summary
    }

    /// This projector, maintaining the derived models batch by batch.
    var incremental: Projector {
        Projector(store: store, schema: schema, consumer: consumer, batchSize: batchSize, mode: .incremental)
    }

    /// Builds batches in turn through a ``CatchUpSubscription``.
    /// - Returns: whether the build reached the head (rather than stopping at `limit` batches).
    func buildSequential(on connection: Connection, limit: Int?, known: KnownKeys, tracker: ProgressTracker)
        async throws -> Bool
    {
        let built = try await subscription.run(on: connection, until: limit.map { .batches($0) } ?? .caughtUp) {
            [self] tx, events in
            let result = try apply(try prepare(events), known: known, in: tx)
            known.insert(result.created)
            tracker.record(result.outcome, cursor: events.last!.cursor)
        }
        return limit.map { built.batches < $0 } ?? true
    }

    var subscription: CatchUpSubscription {
        CatchUpSubscription(store: store, consumer: consumer, batchSize: batchSize)
    }

    // MARK: - Blue/green internals

    /// Makes this (bulk) projector's schema ready to build into: continues a build (or a
    /// completed copy) of the same model version and consumer, or starts a fresh one from the
    /// start of the global order.
    /// - Returns: where the copy stands, and whether it starts fresh (empty tables).
    func prepareBuild(in session: Session) throws -> (ReadModelState.Phase, fresh: Bool) {
        try session.transaction { tx in
            if let state = try schema.state(tx), !state.isLive, state.consumer == consumer,
                state.modelVersion == ReadModelSchema.modelVersion
            {
                return (state.phase, false)
            }
            try schema.dropIfOwned(tx)
            try tx.executeScript(schema.createScript(bulk: true))
            try tx.execute(
                "INSERT INTO \(schema.qualified("projection_state")) (model_version, consumer, state) VALUES ($1, $2, 'building')",
                [ReadModelSchema.modelVersion, consumer])
            try store.resetCheckpoint(consumer, in: tx)
            return (.building, true)
        }
    }

    /// Completes a bulk build that has read everything: per entity (one transaction each) the
    /// history primary key, the canonical table, the secondary indexes and statistics; then
    /// every derived model from scratch; then marks the copy `complete`. Each step is
    /// idempotent, so an interrupted completion is simply run again. With a second
    /// connection, the work is shared between the two.
    func complete(on connection: Connection, and second: Connection?) async throws {
        // Largest tables first, dealt alternately, so both connections finish about together.
        let largest: [Entity] = [
            .invoice, .payment, .invoiceLine, .subscription, .customer, .balanceTransaction, .creditNote, .refund, .plan,
        ]
        let order = largest + Entity.allCases.filter { !largest.contains($0) }
        let derived = DerivedModels(schema: schema)
        if let second {
            let first = order.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
            let other = order.enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
            async let a: Void = completeEntities(first, on: connection)
            async let b: Void = completeEntities(other, on: second)
            _ = try await (a, b)
            async let c: Void = connection.withSession { try $0.transaction { try derived.rebuildBalancesAndRevenue(in: $0) } }
            async let d: Void = second.withSession { try $0.transaction { try derived.rebuildMRR(in: $0) } }
            _ = try await (c, d)
        } else {
            try await completeEntities(order, on: connection)
            try await connection.withSession { try $0.transaction { try derived.rebuildAll(in: $0) } }
        }
        try await connection.execute(
            "UPDATE \(schema.qualified("projection_state")) SET state = 'complete' WHERE state = 'building'")
    }

    /// Completes each of `entities` (unless done), one transaction each.
    func completeEntities(_ entities: [Entity], on connection: Connection) async throws {
        for entity in entities {
            try await connection.withSession { [schema] session in
                try session.transaction { tx in
                    guard try !schema.isComplete(entity, in: tx) else { return }
                    try tx.executeScript(schema.completeScript(entity))
                }
            }
        }
    }

    /// In one transaction: confirms the complete copy `next` has read everything committed,
    /// swaps it in for this schema, and hands its checkpoint over to this projector's consumer.
    ///
    /// - Returns: `false`, having written nothing, when events remain to be read first.
    func swap(in next: Projector, events: Int, in session: Session) throws -> Bool {
        try session.transaction { tx in
            // Read-only until we know the copy is caught up: the transaction takes no id, so it
            // holds back no one's horizon and sees every transaction that finished before it.
            let cursor = try store.checkpoint(next.consumer, in: tx)
            guard try store.readAll(after: cursor, limit: 1, in: tx).isEmpty,
                try !store.hasEventsBeyond(cursor, in: tx)
            else { return false }

            try tx.lock(Self.batchLock(next.schema.name), scope: .transaction)
            try tx.lock(Self.batchLock(schema.name), scope: .transaction)
            try lockLiveTables(in: tx)
            try retired.dropIfOwned(tx)
            if try schema.exists(tx) {
                try tx.execute("ALTER SCHEMA \(schema.q) RENAME TO \(retired.q)")
            }
            try tx.execute("ALTER SCHEMA \(next.schema.q) RENAME TO \(schema.q)")
            try tx.execute(
                "UPDATE \(schema.qualified("projection_state")) SET consumer = $1, state = 'live', swapped_at = now()",
                [consumer])
            try store.resetCheckpoint(consumer, in: tx)
            try store.advanceCheckpoint(consumer, from: .start, to: cursor, processed: events, in: tx)
            try store.resetCheckpoint(next.consumer, in: tx)
            return true
        }
    }

    /// Takes every live table exclusively before the renames, so that no statement reading
    /// several read-model tables can resolve some names before the swap and some after it: a
    /// reader either finishes before the swap or starts after it.
    ///
    /// The locks are taken all at once or not at all (`NOWAIT`, retried every few
    /// milliseconds), so the swap never holds some tables while waiting for others — which
    /// could deadlock with a reader that holds one and wants the next — and new readers never
    /// queue behind it. Only after ten seconds of readers always holding some table does it
    /// wait for them (two seconds at a time).
    func lockLiveTables(in tx: Session) throws {
        let tables = try tx.query(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = $1 ORDER BY tablename",
            [schema.name]
        ).rows.map { try $0.decode(at: 0, as: String.self) }
        guard !tables.isEmpty else { return }
        let lock = "LOCK TABLE " + tables.joined(separator: ", ") + " IN ACCESS EXCLUSIVE MODE"
        let clock = ContinuousClock()
        let patient = clock.now + .seconds(10)
        try tx.execute("SET LOCAL lock_timeout = '2s'")
        defer { _ = try? tx.execute("SET LOCAL lock_timeout = DEFAULT") }
        var waits = 0
        var onlyAutovacuum = false
        while true {
            // Waiting is also what makes an autovacuum worker give way (after deadlock_timeout).
            let waiting = onlyAutovacuum || clock.now >= patient
            try tx.execute("SAVEPOINT ledgerlift_swap")
            do {
                try tx.execute(waiting ? lock : lock + " NOWAIT")
                try tx.execute("RELEASE SAVEPOINT ledgerlift_swap")
                return
            } catch let error as PostgresError where error.isLockNotAvailable || error.isDeadlock {
                try tx.execute("ROLLBACK TO SAVEPOINT ledgerlift_swap")
                if waiting {
                    waits += 1
                    if waits >= 30 { throw error }
                } else {
                    onlyAutovacuum = try tx.query(
                        """
                        SELECT coalesce(bool_and(a.backend_type = 'autovacuum worker'), false)
                        FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
                        WHERE l.granted AND l.pid <> pg_backend_pid()
                          AND l.relation IN (SELECT oid FROM pg_class WHERE relnamespace = $1::regnamespace)
                        """, [schema.q]
                    ).rows[0].decode(at: 0, as: Bool.self)
                    if !onlyAutovacuum { usleep(5_000) }
                }
            }
        }
    }

    // MARK: - Helpers

    func requireLive(_ connection: Connection) async throws {
        let state = try await connection.withSession { [self] in try self.state(in: $0) }
        guard let state, state.isLive else { throw ProjectionError.notBuilt(schema: schema.name) }
        guard state.modelVersion == ReadModelSchema.modelVersion else {
            throw ProjectionError.modelVersionMismatch(
                schema: schema.name, found: state.modelVersion, expected: ReadModelSchema.modelVersion)
        }
    }

    /// The session-level advisory lock a process holds while it projects with this consumer
    /// (`ledgerlift.project.consumer/<store>.<consumer>`), so two processes never project with
    /// one consumer at once; an operator can take it from psql (``AdvisoryLock/psql``).
    public var consumerLock: AdvisoryLock { AdvisoryLock("ledgerlift.project.consumer/" + store.schema + "." + consumer) }

    /// Runs `body` holding the consumer's session-level advisory lock on `connection`, so two
    /// processes never project with one consumer at once.
    func withConsumerLock<T: Sendable>(_ connection: Connection, _ body: () async throws -> T) async throws -> T {
        let lock = consumerLock
        let acquired = try await connection.withSession { try $0.tryLock(lock) }
        guard acquired else { throw ProjectionError.consumerBusy(consumer: consumer) }
        do {
            let value = try await body()
            _ = try await connection.withSession { try $0.unlock(lock) }
            return value
        } catch {
            _ = try? await connection.withSession { try $0.unlock(lock) }
            throw error
        }
    }

    /// The transaction-level lock a batch and a swap of the read model `schema` take.
    static func batchLock(_ schema: String) -> AdvisoryLock { AdvisoryLock("ledgerlift.project.batch/" + schema) }
}

/// How far a projection has come.
public struct ProjectionProgress: Sendable, Hashable {
    /// Events read from the global order (billing and other).
    public var events: Int = 0
    /// Batches committed.
    public var batches: Int = 0
    /// Events passed over because they are not billing events.
    public var skipped: Int = 0
    /// History versions written.
    public var versions: Int = 0
    /// The last position handled.
    public var cursor: GlobalCursor = .start
    /// Time since the run started.
    public var elapsed: Duration = .zero

    public init() {}

    /// Events per second over the run so far.
    public var eventsPerSecond: Int {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return seconds > 0 ? Int(Double(events) / seconds) : 0
    }
}

/// What a projection run did.
public struct ProjectionSummary: Sendable, Hashable {
    /// The read-model schema.
    public var schema: String
    /// The consumer that now feeds it.
    public var consumer: String
    public var progress: ProjectionProgress
    /// Built blue/green into a fresh copy.
    public var rebuilt: Bool = false
    /// The fresh copy was swapped in (only for a blue/green build that caught up).
    public var swapped: Bool = false
}

/// Counts batches from inside the subscription's handler.
final class ProgressTracker: Sendable {
    private struct State {
        var progress = ProjectionProgress()
    }

    private let state = Mutex(State())
    private let start = ContinuousClock.now
    private let report: (@Sendable (ProjectionProgress) -> Void)?
    private let logger: Logger
    private let consumer: String

    init(_ report: (@Sendable (ProjectionProgress) -> Void)?, logger: Logger, consumer: String) {
        self.report = report
        self.logger = logger
        self.consumer = consumer
    }

    func record(_ outcome: ProjectionBatchOutcome, cursor: GlobalCursor) {
        let snapshot = state.withLock { s in
            s.progress.events += outcome.events
            s.progress.skipped += outcome.skipped
            s.progress.versions += outcome.versions
            s.progress.batches += 1
            s.progress.cursor = cursor
            s.progress.elapsed = ContinuousClock.now - start
            return s.progress
        }
        logger.debug(
            "batch projected",
            metadata: [
                "consumer": "\(consumer)", "position": "\(cursor.position)", "events": "\(outcome.events)",
                "batches": "\(snapshot.batches)",
            ])
        report?(snapshot)
    }

    var snapshot: ProjectionProgress {
        state.withLock { s in
            var p = s.progress
            p.elapsed = ContinuousClock.now - start
            return p
        }
    }
}
