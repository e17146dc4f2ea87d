import Billing
import Commands
import EventStore
import Foundation
import Logging
import Mapping
import Migration
import Postgres
import Synchronization

/// Shadow mode's tailer (`ledgerlift shadow run`): drains the legacy database's capture outbox
/// into the event store, batch after batch, and keeps the read models following.
///
/// Each batch: the changes after the checkpoint in the gap-safe order (``ChangeReader``), minus
/// those every backfill snapshot saw (the handover); the keys they touch through the mapping's
/// `sources` (``KeyResolver``); a state-based ``ShadowSync`` of those keys, whose store
/// transaction also moves the checkpoint (compare-and-set) and records lag samples; then the
/// applied changes are pruned from the outbox and the appended events projected. A crash at
/// any point is recovered by running again: an uncommitted batch is read again, and syncing
/// keys that are already current appends nothing; the read models are brought up to the event
/// store (finished or built when a blue/green build was cut short) each time the run catches
/// up, whether or not it appended anything.
public struct ShadowTailer: Sendable {
    public struct Configuration: Sendable {
        public var legacyDSN: String
        public var storeDSN: String
        public var mapping: MappingFile
        public var store: EventStore
        /// The read models kept following (``ShadowSync/project()``).
        public var readSchema: String
        /// The tailer's name: its checkpoint row and its lock (`ledgerlift.shadow/<name>`).
        public var name: String
        /// Captured changes per batch (one store transaction each).
        public var batchSize: Int
        /// How long to wait when there is nothing to read.
        public var pollInterval: Duration
        /// Keep following after catching up, until ``ShadowTailer/Stop/stop()``.
        public var follow: Bool
        public var capture: CaptureSchema
        /// Runs once the store is locked and the backfill found, before anything is applied:
        /// the handover's gap check (capture installed after the backfill leaves changes no
        /// snapshot and no capture row holds) belongs here. Given both connections and the
        /// backfill's legacy snapshots; throwing refuses the run. ``Handover/preflight(storeSchema:capture:)``
        /// by default.
        public var preflight:
            (@Sendable (_ legacy: Connection, _ store: Connection, _ backfillSnapshots: [String]) async throws -> Void)?
        /// Told once per stall, after ``stallNotice`` of waiting with captured changes the run
        /// cannot read yet, which session holds the xmin horizon back (``ChangeReader/horizonHolder(in:)``);
        /// `shadow run` prints it on standard error. By default nowhere.
        public var onStall: (@Sendable (String) -> Void)?
        /// How long the run waits behind the horizon before ``onStall``.
        public var stallNotice: Duration = .seconds(2)
        /// Where the run logs (`info` per batch with changes); by default nowhere.
        public var logger = Logger(label: "ledgerlift.shadow", factory: { _ in SwiftLogNoOpLogHandler() })
        /// Compare the commands `serve --mode candidate` recorded with what legacy did
        /// (``CandidateComparer``), when the store has `candidate_commands` (schema version 4).
        public var compareCandidates = true
        /// The rules candidate commands are decided by; `nil`: their own. Tests replace them with
        /// a deliberately wrong rule to prove the comparison catches it.
        public var candidateRules: (@Sendable (BillingCommand) -> any Decidable)?

        public init(
            legacyDSN: String, storeDSN: String, mapping: MappingFile, store: EventStore = EventStore(),
            readSchema: String = "ledgerlift_read", name: String = "default", batchSize: Int = 5_000,
            pollInterval: Duration = .milliseconds(100), follow: Bool = false, capture: CaptureSchema = CaptureSchema()
        ) {
            self.legacyDSN = legacyDSN
            self.storeDSN = storeDSN
            self.mapping = mapping
            self.store = store
            self.readSchema = readSchema
            self.name = name
            self.batchSize = max(1, batchSize)
            self.pollInterval = pollInterval
            self.follow = follow
            self.capture = capture
            // Refusing a gap is the default, not an option a caller must remember.
            self.preflight = Handover.preflight(storeSchema: store.schema, capture: capture)
        }
    }

    /// Asks a running tailer to stop after its current batch (SIGINT, SIGTERM).
    public final class Stop: Sendable {
        private let requested = Mutex(false)
        public init() {}
        public func stop() { requested.withLock { $0 = true } }
        public var isRequested: Bool { requested.withLock { $0 } }
    }

    /// What a run did.
    public struct Summary: Sendable {
        /// Captured changes read (applied or skipped).
        public var changesRead = 0
        /// Changes every backfill snapshot had seen: already migrated, skipped.
        public var changesSkipped = 0
        public var batches = 0
        public var sync = SyncOutcome()
        /// The checkpoint when the run ended.
        public var position = CapturePosition.start
        /// Whether the run found nothing more to read (always, without `follow`, unless stopped).
        public var caughtUp = false
        /// Whether the read models were projected in-process (`false`: another projector follows
        /// them, `project --follow`).
        public var projected = false
        /// The capture was uninstalled under the run (the cutover's completion): it ended there,
        /// having applied everything the outbox held before.
        public var captureUninstalled = false
        public var elapsed = Duration.zero
        /// Where the time went: reading the outbox, resolving keys, pruning, projecting (the
        /// sync's own phases are in ``sync``).
        public var readTime = Duration.zero
        public var keysTime = Duration.zero
        public var pruneTime = Duration.zero
        public var projectTime = Duration.zero

        /// Changes read per second of the run.
        public var changesPerSecond: Int {
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            return seconds > 0 ? Int(Double(changesRead) / seconds) : 0
        }
    }

    public let configuration: Configuration

    public init(_ configuration: Configuration) { self.configuration = configuration }

    /// What reading an outbox whose capture was dropped under the run raises: undefined
    /// table, schema or function.
    static let captureGoneStates: Set<String> = ["42P01", "3F000", "42883"]

    /// The advisory lock a tailer holds in the legacy database while it runs
    /// (`ledgerlift.shadow.outbox/<capture schema>`): one consumer per outbox.
    public static func outboxLock(_ capture: CaptureSchema) -> AdvisoryLock {
        AdvisoryLock("ledgerlift.shadow.outbox/" + capture.schema)
    }

    /// The advisory lock one tailer of a name holds while it runs.
    public static func lock(name: String) -> AdvisoryLock { AdvisoryLock("ledgerlift.shadow/" + name) }

    /// The finished backfill of `mapping` in the store: its run id and the legacy snapshots its
    /// attempts read (`nil` when none has finished).
    public static func finishedBackfill(of mapping: MappingFile, store: EventStore, in session: Session) throws
        -> (runID: String, snapshots: [String])?
    {
        let runID = Backfill(.init(legacyDSN: "", storeDSN: "", mapping: mapping, store: store)).runID
        let table = quoteIdentifier(store.schema) + ".backfill_runs"
        guard try session.query("SELECT to_regclass($1) IS NOT NULL", [table]).rows[0].decode(at: 0, as: Bool.self)
        else {
            return nil
        }
        let rows = try session.query(
            """
            SELECT s FROM \(table) r, unnest(r.legacy_snapshots) WITH ORDINALITY AS u(s, n)
            WHERE r.run_id = $1 AND r.finished_at IS NOT NULL ORDER BY u.n
            """, [runID]
        ).rows
        let finished = try session.query(
            "SELECT 1 FROM \(table) WHERE run_id = $1 AND finished_at IS NOT NULL", [runID]
        ).first
        guard finished != nil else { return nil }
        return (runID, try rows.map { try $0.decode(at: 0, as: String.self) })
    }

    /// Runs until caught up (or, with ``Configuration/follow``, until `stop`).
    ///
    /// - Throws: ``TailerError`` when it refuses (no finished backfill, capture not installed, a
    ///   source not captured, another tailer of the name running); `EventStoreError`,
    ///   connection and SQL errors (recorded as the tailer's `last_error`).
    /// - Parameter started: called once, when the run holds its locks and has passed its checks
    ///   (before the first batch): a caller announcing the run does so only then.
    public func run(
        stop: Stop = Stop(), started: (@Sendable () -> Void)? = nil, progress: (@Sendable (Summary) -> Void)? = nil
    ) async throws -> Summary {
        let config = configuration
        let legacy = try await Connection.connect(config.legacyDSN, applicationName: "ledgerlift-shadow-run")
        defer { legacy.close() }
        let store = try await Connection.connect(config.storeDSN, applicationName: "ledgerlift-shadow-run")
        defer { store.close() }
        let eventStore = config.store
        let s = quoteIdentifier(eventStore.schema)
        let name = config.name
        let lock = Self.lock(name: name)

        // Capture first: without it there is nothing to tail.
        guard let captureVersion = try await legacy.withSession({ try config.capture.version($0) }) else {
            throw TailerError.captureNotInstalled(schema: config.capture.schema)
        }
        guard captureVersion >= CaptureSchema.currentVersion else {
            throw TailerError.captureOutdated(
                schema: config.capture.schema, found: captureVersion, current: CaptureSchema.currentVersion)
        }
        let backfill = try await store.withSession { session -> (runID: String, snapshots: [String])? in
            try eventStore.requireInitialized(session)
            for attempt in 0..<10 {
                if try session.tryLock(lock) { break }
                if attempt == 9 {
                    throw TailerError.busy(
                        name: name, holder: try session.holder(of: lock) ?? "a session that has just ended")
                }
                usleep(100_000)
            }
            try TailerSchema.create(eventStore, session)
            return try Self.finishedBackfill(of: config.mapping, store: eventStore, in: session)
        }
        // One consumer per outbox, whatever the store or the name: each prunes what it applied.
        let outboxLock = Self.outboxLock(config.capture)
        try await legacy.withSession { session in
            for attempt in 0..<10 {
                if try session.tryLock(outboxLock) { return }
                if attempt < 9 { usleep(100_000) }
            }
            throw TailerError.outboxBusy(
                schema: config.capture.schema,
                holder: try session.holder(of: outboxLock) ?? "a session that has just ended")
        }
        guard let backfill else {
            let runID = Backfill(.init(legacyDSN: "", storeDSN: "", mapping: config.mapping, store: eventStore)).runID
            throw TailerError.noFinishedBackfill(runID: runID)
        }
        // The handover's gap check (capture installed after the backfill): see `preflight`.
        try await config.preflight?(legacy, store, backfill.snapshots)

        let resolver = try await legacy.withSession {
            try KeyResolver.prepare(config.mapping, capture: config.capture, in: $0)
        }
        let reader = ChangeReader(capture: config.capture)
        let candidateLog = CandidateCommandLog(store: eventStore)
        var comparer: CandidateComparer?
        if config.compareCandidates, try await store.withSession({ try candidateLog.exists(in: $0) }) {
            var executor = CommandExecutor(store: eventStore, readSchema: config.readSchema)
            if let rules = config.candidateRules { executor.rules = rules }
            comparer = CandidateComparer(log: candidateLog, executor: executor, reader: reader, resolver: resolver)
        }
        var position = try await store.withSession { session -> CapturePosition in
            try session.execute(
                "INSERT INTO \(s).shadow_tailers (name, mapping_sha1) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET mapping_sha1 = EXCLUDED.mapping_sha1",
                [name, config.mapping.fingerprint])
            let row = try session.query(
                "SELECT checkpoint_xid::text, checkpoint_id FROM \(s).shadow_tailers WHERE name = $1", [name]
            ).rows[0]
            return CapturePosition(xid: try row.decode(at: 0), id: try row.decode(at: 1))
        }
        // Another consumer of this outbox (another store, another name) may have deleted
        // changes this tailer has not applied: refused, unless this store's backfill — or a
        // finished resync of every entity — read legacy after them (a new store backfilled
        // after the prune: the normal case).
        let mappedEntities = Set(config.mapping.entities.map(\.entity.rawValue))
        let resyncSnapshots = try await store.withSession { session in
            try Handover.finishedResyncs(eventStore.schema, session)
                .filter { mappedEntities.isSubset(of: $0.entities) }.map { [$0.legacySnapshot] }
        }
        if let pruned = try await legacy.withSession({ [position] in
            try reader.prunedByAnother(
                below: position, coveringSnapshots: [backfill.snapshots] + resyncSnapshots, in: $0)
        }) {
            throw TailerError.outboxPrunedByAnother(
                name: name, checkpoint: position, through: pruned.through, by: pruned.by, at: pruned.at)
        }
        // Who prunes, as `pruned.by` names it: the store (no password) and the tailer's name.
        let consumer =
            "shadow tailer \(name) of store \(ConnectionString.masked(config.storeDSN)) (schema \(eventStore.schema))"
        // A run that crashed between its commit and the prune left applied rows behind.
        try await legacy.withSession { [position] in _ = try reader.prune(through: position, by: consumer, in: $0) }

        let sync = ShadowSync(
            legacy: legacy, store: store, eventStore: eventStore, mapping: config.mapping, origin: .shadow,
            readSchema: config.readSchema)
        // Projection runs beside the tailer on a connection of its own: batch N's events are
        // projected while batch N+1 is read and synced.
        let projectionConnection = try await Connection.connect(
            config.storeDSN, applicationName: "ledgerlift-shadow-run")
        defer { projectionConnection.close() }
        let follower = ProjectionFollower(
            ShadowSync(
                legacy: legacy, store: projectionConnection, eventStore: eventStore, mapping: config.mapping,
                origin: .shadow,
                readSchema: config.readSchema))
        started?()
        let clock = ContinuousClock()
        let startedAt = clock.now
        var summary = Summary()
        summary.position = position
        var lastLagPrune = clock.now
        // Whether the read models are known to hold every event in the store. Not at start:
        // a run killed after its store commit and before its projection left them behind (or a
        // first blue/green build half-done), and the events are in the store whatever this run
        // appends — so the first catch-up projects (`project()` finishes or builds them) even
        // when this run appends nothing. Kill at any point, run again: the same result.
        var readModelsCurrent = false
        // Since when the run waits behind the xmin horizon, and whether it said so.
        var stalledSince: ContinuousClock.Instant?
        var stallReported = false
        do {
            while true {
                let from = position
                let readStarted = clock.now
                let changes = try await legacy.withSession { session in
                    try reader.read(
                        after: from, limit: config.batchSize, backfillSnapshots: backfill.snapshots, in: session)
                }
                summary.readTime += clock.now - readStarted
                if changes.isEmpty {
                    // Caught up with the outbox: the read models too before saying so.
                    if !readModelsCurrent {
                        let projectStarted = clock.now
                        try await follower.kick()
                        if try await follower.finish() { summary.projected = true }
                        try await recordProjected(store)
                        summary.projectTime += clock.now - projectStarted
                        readModelsCurrent = true
                    }
                    let waiting = try await legacy.withSession { try reader.hasChangesBeyond(from, in: $0) }
                    if waiting {
                        // Committed changes wait behind a transaction still running somewhere in
                        // the cluster: say which, once per stall, rather than wait in silence.
                        let since = stalledSince ?? clock.now
                        stalledSince = since
                        if !stallReported, clock.now - since >= config.stallNotice, let onStall = config.onStall {
                            let holder = try await legacy.withSession { try reader.horizonHolder(in: $0) }
                            onStall(
                                "shadow tailer \(name) waits: captured changes are committed beyond the xmin horizon, held back by "
                                    + (holder
                                        ?? "a transaction no session shows (a prepared transaction? see pg_prepared_xacts)")
                                    + "; they are applied once it ends")
                            stallReported = true
                        }
                    } else {
                        stalledSince = nil
                        stallReported = false
                    }
                    if !waiting, let comparer, let xid = UInt64(position.xid) {
                        // Caught up: commands of transactions the tailer has passed (or that never
                        // came) are expired even when no batch will come to do it.
                        _ = try await store.withSession { try comparer.log.expire(below: xid, in: $0) }
                    }
                    if !waiting {
                        if !summary.caughtUp {
                            try await store.execute(
                                "UPDATE \(s).shadow_tailers SET caught_up_at = now() WHERE name = $1", [name])
                        }
                        summary.caughtUp = true
                        if !config.follow || stop.isRequested { break }
                    }
                    if stop.isRequested { break }
                    try await Task.sleep(for: config.pollInterval)
                    continue
                }
                summary.caughtUp = false
                stalledSince = nil
                stallReported = false
                // A transaction with candidate commands is synced in a batch of its own: its
                // comparison needs the ledger exactly before it and legacy exactly after it.
                var outcome = SyncOutcome()
                var keysTime = Duration.zero
                var segmentFrom = from
                for segment in try await segments(changes, comparer: comparer, store: store, legacy: legacy) {
                    let (segmentOutcome, segmentKeysTime) = try await apply(
                        segment, from: segmentFrom, resolver: resolver, sync: sync, legacy: legacy, store: store,
                        backfill: backfill, comparer: comparer)
                    outcome.add(segmentOutcome)
                    keysTime += segmentKeysTime
                    segmentFrom = segment.last!.position
                    // The next segment's candidate commands may look rows up in the read
                    // models, which wait until they hold this segment's events.
                    if segmentOutcome.eventsAppended > 0, comparer != nil { try await follower.kick() }
                }
                summary.keysTime += keysTime
                position = changes.last!.position
                summary.position = position
                summary.batches += 1
                summary.changesRead += changes.count
                summary.changesSkipped += changes.count(where: \.seenByBackfill)
                summary.sync.add(outcome)
                // Applied: the outbox no longer needs them.
                let pruneStarted = clock.now
                try await legacy.withSession { [position] in
                    _ = try reader.prune(through: position, by: consumer, in: $0)
                }
                summary.pruneTime += clock.now - pruneStarted
                if outcome.eventsAppended > 0 {
                    try await follower.kick()
                    readModelsCurrent = false
                }
                try await recordProjected(store)
                if clock.now - lastLagPrune > .seconds(60) {
                    try await store.execute(
                        "DELETE FROM \(s).shadow_lag WHERE tailer = $1 AND applied_at < now() - $2::interval",
                        [name, TailerSchema.lagWindow])
                    lastLagPrune = clock.now
                }
                summary.elapsed = clock.now - startedAt
                config.logger.info(
                    "batch applied",
                    metadata: [
                        "tailer": "\(name)", "position": "\(position)", "changes": "\(changes.count)",
                        "keys": "\(outcome.keysRead)", "events": "\(outcome.eventsAppended)",
                    ])
                progress?(summary)
                if stop.isRequested { break }
            }
        } catch {
            // The cutover's completion uninstalls capture: legacy is a read-only archive and
            // there is nothing left to follow. Everything the outbox held was applied before (the
            // write switch drained it and the guard let no application write through since).
            let dropped: Bool
            if let failure = error as? PostgresError, Self.captureGoneStates.contains(failure.sqlState?.rawValue ?? ""),
                case .some(.none) = try? await legacy.withSession({ try config.capture.version($0) })
            {
                dropped = true
            } else {
                dropped = false
            }
            guard dropped else {
                _ = try? await follower.finish()
                let message = String(describing: error)
                _ = try? await store.execute(
                    "UPDATE \(s).shadow_tailers SET last_error = $2, last_error_at = now() WHERE name = $1",
                    [name, message])
                throw error
            }
            summary.captureUninstalled = true
        }
        let projectStarted = clock.now
        if try await follower.finish() { summary.projected = true }
        try await recordProjected(store)
        summary.projectTime += clock.now - projectStarted
        summary.elapsed = clock.now - startedAt
        _ = try? await store.withSession { try $0.unlock(lock) }
        _ = try? await legacy.withSession { try $0.unlock(outboxLock) }
        return summary
    }

    /// Syncs the keys of one batch; its store transaction also moves the checkpoint from
    /// `from` to the batch's last position and records lag samples. A batch that meets a
    /// stream another writer moved (a resync) is read and synced again once.
    func apply(
        _ changes: [CapturedChange], from: CapturePosition, resolver: KeyResolver, sync: ShadowSync, legacy: Connection,
        store: Connection, backfill: (runID: String, snapshots: [String]), comparer: CandidateComparer? = nil
    ) async throws -> (SyncOutcome, keysTime: Duration) {
        let clock = ContinuousClock()
        let started = clock.now
        let config = configuration
        let s = quoteIdentifier(config.store.schema)
        let name = config.name
        let to = changes.last!.position
        let applicable = changes.filter { !$0.seenByBackfill }
        let mapping = config.mapping
        var keys = [Entity: Set<String>]()
        if !applicable.isEmpty {
            let (touched, truncated) = try await legacy.withSession { try resolver.touchedKeys(applicable, in: $0) }
            keys = touched
            for entity in truncated {
                // A TRUNCATE does not list the keys it removed: every key the ledger holds and
                // every key legacy returns now.
                guard let entityMapping = mapping[entity] else { continue }
                var all = try await legacy.withSession { try KeyResolver.legacyKeys(entityMapping, in: $0) }
                let prefix = entity.streamID(key: "")
                for row in try await store.query(
                    "SELECT stream_id FROM \(s).streams WHERE category = $1", [entity.rawValue]
                ).rows {
                    all.insert(String(try row.decode(at: 0, as: String.self).dropFirst(prefix.count)))
                }
                keys[entity, default: []].formUnion(all)
            }
        }
        // Candidate mode: the batch's recorded commands, judged (and decided) inside its sync.
        var plan: CandidateComparer.Plan?
        if let comparer, !applicable.isEmpty {
            plan = try await comparer.plan(applicable, legacy: legacy, store: store)
        }
        let keysTime = clock.now - started
        // Samples of the batch's capture times (at most 100, evenly spread) for the lag figures.
        let step = max(1, changes.count / 100)
        let samples = stride(from: 0, to: changes.count, by: step).map { changes[$0].capturedAt }
        let counts = (read: Int64(changes.count), skipped: Int64(changes.count - applicable.count))
        let record: @Sendable (Session, SyncOutcome) throws -> Void = { tx, outcome in
            let moved = try tx.execute(
                """
                UPDATE \(s).shadow_tailers
                SET checkpoint_xid = $4::xid8, checkpoint_id = $5, updated_at = now(),
                    changes_applied = changes_applied + $6, changes_skipped = changes_skipped + $7,
                    keys_synced = keys_synced + $8, events_appended = events_appended + $9,
                    quarantined = quarantined + $10, released = released + $11
                WHERE name = $1 AND checkpoint_xid = $2::xid8 AND checkpoint_id = $3
                """,
                [
                    name, from.xid, from.id, to.xid, to.id, counts.read, counts.skipped, Int64(outcome.keysRead),
                    Int64(outcome.eventsAppended), Int64(outcome.quarantined), Int64(outcome.released),
                ])
            guard moved == 1 else {
                let actual = try tx.query(
                    "SELECT checkpoint_xid::text, checkpoint_id FROM \(s).shadow_tailers WHERE name = $1", [name]
                )
                .first.map { CapturePosition(xid: try $0.decode(at: 0), id: try $0.decode(at: 1)) }
                throw TailerError.checkpointMoved(name: name, expected: from, actual: actual)
            }
            try tx.execute(
                """
                INSERT INTO \(s).shadow_lag (tailer, store_xid, captured_at, applied_at, projected_at)
                SELECT $1, pg_current_xact_id(), c, clock_timestamp(), CASE WHEN $3 THEN clock_timestamp() END
                FROM unnest($2::timestamptz[]) AS c
                """, [name, PostgresArray(samples), outcome.eventsAppended == 0])
            // Commands still pending below the new checkpoint will never be compared: said so.
            if let comparer, let xid = UInt64(to.xid) { try comparer.log.expire(below: xid, in: tx) }
        }
        func inspect(_ plan: CandidateComparer.Plan?) -> ShadowSync.Inspect? {
            guard let comparer else { return nil }
            return { legacyStates, ledger in
                // After the sync's legacy read: what was committed beyond the batch. Without a
                // plan, only needed when a transaction beyond has pending commands to taint.
                guard
                    let beyond = try await comparer.beyond(to, legacy: legacy, store: store, pendingOnly: plan == nil)
                else { return nil }
                var verdicts = [CandidateComparer.Verdict]()
                if let plan {
                    verdicts = try await comparer.judge(
                        plan, beyond: beyond, legacyStates: legacyStates, ledger: ledger, store: store)
                }
                var synced = Set<String>()
                for (entity, states) in legacyStates {
                    for key in states.keys { synced.insert(entity.streamID(key: key)) }
                }
                let tainted = comparer.taint(beyond, synced: synced, syncedEntities: Set(legacyStates.keys), by: to)
                let judged = verdicts
                return { tx in
                    for verdict in judged {
                        try comparer.log.setVerdict(
                            opID: verdict.opID, verdict.verdict, reason: verdict.reason,
                            differences: verdict.differences, in: tx)
                    }
                    for (xid, reason) in tainted { try comparer.log.setUnverifiable(xid: xid, reason: reason, in: tx) }
                }
            }
        }
        do {
            return (
                try await sync.sync(keys, position: to, inspect: inspect(plan), alsoInTransaction: record), keysTime
            )
        } catch is EventStoreError {
            // Another writer (a resync) moved a stream between our read and our append: nothing
            // was written; the state-based sync reads it again. The candidate's decisions were on
            // the state before that writer: no longer an exact prediction.
            plan?.invalidated = "another writer moved a stream of the batch while it was synced"
            return (
                try await sync.sync(keys, position: to, inspect: inspect(plan), alsoInTransaction: record), keysTime
            )
        }
    }

    /// The largest batch ``segments(_:comparer:store:legacy:)`` cuts.
    static let candidateCutLimit = 150

    /// `changes` cut so that a transaction with pending candidate commands that shares a row with
    /// another transaction of the batch is a batch of its own — its comparison needs the ledger
    /// exactly before it and legacy exactly after it; the rest stay together (a batch's cost is
    /// mostly fixed: cutting every transaction alone makes the tailer fall behind live traffic,
    /// and a tailer behind is what makes comparisons inexact). One batch when nothing is pending.
    func segments(_ changes: [CapturedChange], comparer: CandidateComparer?, store: Connection, legacy: Connection)
        async throws -> [[CapturedChange]]
    {
        guard let comparer else { return [changes] }
        var byXid = [UInt64: [CapturedChange]]()
        for change in changes where !change.seenByBackfill {
            if let xid = UInt64(change.position.xid) { byXid[xid, default: []].append(change) }
        }
        let log = comparer.log
        let xids = Set(byXid.keys)
        let pending = try await store.withSession { try log.pendingXids(among: xids, in: $0) }
        // Behind (a batch as large as this one is many seconds of traffic), the comparisons are
        // mostly unverifiable anyway: the batch stays whole so the tailer catches up, and cutting
        // resumes once it follows closely again.
        guard !pending.isEmpty, byXid.count > 1, changes.count <= Self.candidateCutLimit else { return [changes] }
        var touched = [UInt64: Set<String>]()
        for (xid, xidChanges) in byXid {
            let resolved = try await comparer.touched(xid, xidChanges, legacy: legacy)
            // A TRUNCATE shares every row of its entities.
            touched[xid] = resolved.streams.union(resolved.truncated.map { $0.streamID(key: "*") })
        }
        var alone = Set<UInt64>()
        for xid in pending {
            let mine = touched[xid] ?? []
            let shares = touched.contains { other, streams in
                other != xid && (!streams.isDisjoint(with: mine) || streams.contains { $0.hasSuffix("-*") })
            }
            if shares { alone.insert(xid) }
        }
        guard !alone.isEmpty else { return [changes] }
        var segments = [[CapturedChange]]()
        var current = [CapturedChange]()
        var currentAlone = false
        for change in changes {
            let isAlone = UInt64(change.position.xid).map(alone.contains) ?? false
            if let last = current.last, isAlone || currentAlone, last.position.xid != change.position.xid {
                segments.append(current)
                current = []
            }
            current.append(change)
            currentAlone = isAlone
        }
        if !current.isEmpty { segments.append(current) }
        return segments
    }

    /// Marks the lag samples whose events the read models' projector has passed.
    func recordProjected(_ store: Connection) async throws {
        let s = quoteIdentifier(configuration.store.schema)
        try await store.execute(
            """
            UPDATE \(s).shadow_lag l SET projected_at = clock_timestamp()
            FROM \(s).checkpoints cp
            WHERE l.tailer = $1 AND l.projected_at IS NULL AND cp.consumer = $2
              AND NOT EXISTS (
                  SELECT 1 FROM \(s).events e
                  WHERE e.transaction_id = l.store_xid
                    AND (e.transaction_id, e.global_position) > (cp.transaction_id, cp.global_position))
            """, [configuration.name, configuration.readSchema])
    }
}

/// Projects the tailer's appends in the background: ``kick()`` after each committed batch
/// starts a catch-up (or asks the running one for another pass), ``finish()`` waits until the
/// read models hold everything appended so far.
actor ProjectionFollower {
    let sync: ShadowSync
    private var running: Task<Void, Never>?
    private var pending = false
    private var projected = false
    private var failure: (any Error)?

    init(_ sync: ShadowSync) { self.sync = sync }

    /// Asks for a pass; rethrows the failure of an earlier one.
    func kick() throws {
        if let failure { throw failure }
        pending = true
        if running == nil { running = Task { await self.loop() } }
    }

    private func loop() async {
        while pending {
            pending = false
            do {
                if try await sync.project() { projected = true }
            } catch {
                failure = error
                break
            }
        }
        running = nil
    }

    /// Waits for the passes asked for. - Returns: whether any projected in-process.
    func finish() async throws -> Bool {
        while let task = running { await task.value }
        if let failure { throw failure }
        return projected
    }
}
