import Billing
import EventStore
import Foundation
import Logging
import Mapping
import Postgres
import TextFormats

/// Reverse sync: after the cutover's write switch the ledger takes the writes, and this
/// consumer applies what its write path appended back to the legacy tables, so legacy readers
/// (reports, BI, support tools) stay current and a rollback finds legacy complete.
///
/// Each batch:
/// 1. reads the store's global order after the checkpoint (gap-safe, ``EventStore/readAll(after:limit:category:in:)``)
///    and keeps the events of the **write path** — `metadata.origin` `command` (`ledgerlift
///    serve`'s commands) or `stripe` (its webhook) — of the mapped entities; what the tailer,
///    a resync or the backfill synthesized from legacy is legacy's already;
/// 2. groups them by stream and folds each affected stream to the row **the ledger holds now**
///    (from the events, not the read models: the fold is never behind the batch, needs no
///    projector, and gives the stream's exact version for step 4; a later event of the same
///    stream only makes the row newer, and the batch that reads it writes the same row again);
/// 3. in **one legacy transaction** with `SET LOCAL ledgerlift.origin = 'reverse_sync'` (the
///    capture triggers skip such writes, the cutover's write guard lets them through) and
///    `SET LOCAL TimeZone = 'UTC'`, runs the entity's `write_back.upsert` for each row (parents
///    first, canonical order) and `write_back.delete` for each ended stream (children first),
///    then reads each written key back through the mapping (`by_key`), as the tailer would;
/// 4. in **one store transaction** moves its checkpoint (compare-and-set) and — when the legacy
///    row carries other attributes than the ledger's (caches the write-back SQL recomputed: a
///    customer's balance) — appends an attributes-only `<Entity>Updated` (origin
///    `reverse_sync`, skipped by step 1) on streams still at the version folded, so the read
///    models and legacy compare equal (`ledgerlift diff`). A canonical column that does not
///    read back as written is a mistake in the write-back SQL: counted and kept in
///    `last_difference`, never written to the ledger.
///
/// Idempotent and resumable: killed before the store commit, the batch is applied again with
/// the rows the ledger holds then, which gives the same legacy rows (state, not deltas); killed
/// after it, nothing is left to do. One run per scope at a time (advisory lock
/// `ledgerlift.reverse_sync/<scope>` on the store).
public struct ReverseSync: Sendable {
    public struct Configuration: Sendable {
        public var legacyDSN: String
        public var storeDSN: String
        public var mapping: MappingFile
        public var store: EventStore
        /// Names the checkpoint row and the lock: one reverse sync per scope (a cutover's name).
        public var scope: String
        /// Events read per batch (one legacy and one store transaction each).
        public var batchSize: Int
        /// How long to wait when there is nothing to read.
        public var pollInterval: Duration
        /// Keep following after catching up, until stopped.
        public var follow: Bool
        /// Where the run logs; by default nowhere.
        public var logger = Logger(label: "ledgerlift.reverse-sync", factory: { _ in SwiftLogNoOpLogHandler() })
        /// Called (tests only) after the legacy transaction committed and before the store's:
        /// the window a crash leaves legacy ahead of the checkpoint.
        public var afterLegacyCommit: (@Sendable () throws -> Void)?

        public init(
            legacyDSN: String, storeDSN: String, mapping: MappingFile, store: EventStore = EventStore(),
            scope: String = "default", batchSize: Int = 1_000, pollInterval: Duration = .milliseconds(100),
            follow: Bool = false
        ) {
            self.legacyDSN = legacyDSN
            self.storeDSN = storeDSN
            self.mapping = mapping
            self.store = store
            self.scope = scope
            self.batchSize = max(1, batchSize)
            self.pollInterval = pollInterval
            self.follow = follow
        }
    }

    /// SQLSTATEs after which a batch is applied again: deadlock, serialization failure, lock
    /// not available (a `lock_timeout`).
    static let retryableStates: Set<String> = ["40P01", "40001", "55P03"]

    /// The origins of the ledger's write path, as events record them in `metadata.origin`.
    public static let writePathOrigins: Set<String> = [
        SyncOrigin.command.metadataOrigin, SyncOrigin.stripe.metadataOrigin,
    ]

    public let configuration: Configuration

    public init(_ configuration: Configuration) { self.configuration = configuration }

    /// The advisory lock (session scope, in the store) a run of `scope` holds.
    public static func lock(scope: String) -> AdvisoryLock { AdvisoryLock("ledgerlift.reverse_sync/" + scope) }

    // MARK: - Status and start

    /// A reverse sync's row in the store, as the cutover's gate and `shadow reverse-sync` read it.
    public struct Status: Sendable, Hashable {
        public var scope: String
        /// Every write-path event at or before it is applied to legacy.
        public var checkpoint: GlobalCursor
        /// Where it was started (``ReverseSync/start(at:scope:mapping:store:in:)``).
        public var startedAt: GlobalCursor
        /// The mapping's fingerprint it was started with.
        public var mappingFingerprint: String
        public var createdAt: PostgresTimestamp
        public var updatedAt: PostgresTimestamp
        /// The last sign of life of a run (each poll, at most once a second, and each batch).
        public var heartbeatAt: PostgresTimestamp?
        /// The last time a run found nothing more to read.
        public var caughtUpAt: PostgresTimestamp?
        /// Whether a session holds ``ReverseSync/lock(scope:)`` now, and which.
        public var running: Bool
        public var holder: String?
        public var batches: Int64
        public var eventsApplied: Int64
        public var keysUpserted: Int64
        public var keysDeleted: Int64
        /// Canonical values that did not read back as written (a write-back SQL mistake).
        public var roundTripDifferences: Int64
        public var lastDifference: String?
        public var lastError: String?
        public var lastErrorAt: PostgresTimestamp?
        /// When the cutover's completion stopped it for good.
        public var stoppedAt: PostgresTimestamp?
        /// Rows legacy refused (``Quarantined``): not in legacy, reported, the run went on.
        public var quarantined: Int64 = 0
        /// The first few of them, by entity and key.
        public var quarantineExamples: [Quarantined] = []
        /// Write-path events after the checkpoint (counted up to 100,000).
        public var pendingEvents: Int64
        /// When the oldest of them was recorded, and its age in milliseconds (the store's clock).
        public var oldestPendingAt: PostgresTimestamp?
        public var lagMilliseconds: Int64?

        /// A run failed since its last progress (`last_error_at` not before `updated_at`, the
        /// last batch, nor `caught_up_at`).
        public var failing: Bool {
            guard let lastErrorAt else { return false }
            return lastErrorAt >= max(updatedAt, caughtUpAt ?? updatedAt)
        }
    }

    /// A canonical row whose write-back legacy refused (its SQL failed for that row alone: a
    /// `cus_…` key in a `bigint` column, a constraint): rolled back to a savepoint, recorded in
    /// the store's `reverse_sync_quarantine`, the batch and the run go on. Legacy lacks the row
    /// until a later write of the key succeeds; a rollback's verification finds it missing.
    public struct Quarantined: Sendable, Hashable, CustomStringConvertible {
        public var entity: String
        public var key: String
        /// `write_back.upsert[0]`, or `binding` when the value has no legacy form.
        public var statement: String
        public var sqlState: String?
        public var reason: String
        /// The event whose batch first hit it.
        public var position: GlobalCursor
        public var attempts: Int64

        public var description: String {
            "\(entity) \(key): \(statement) failed: \(reason)" + (sqlState.map { " (SQLSTATE \($0))" } ?? "")
        }
    }

    /// Creates the store's `reverse_syncs` table if needed (idempotent).
    public static func createSchema(_ store: EventStore, in session: Session) throws {
        let s = quoteIdentifier(store.schema)
        // Nothing to do once in place, and then no DDL: `ALTER TABLE … ADD COLUMN IF NOT EXISTS`
        // takes an ACCESS EXCLUSIVE lock even when the column exists, and the write switch starts
        // reverse sync inside its freeze — it waited up to a second for the following reverse
        // sync's transaction to end.
        let ready = try session.query(
            """
            SELECT to_regclass($2) IS NOT NULL AND EXISTS (
                SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'stopped_at' AND NOT attisdropped)
            """, ["\(s).reverse_syncs", "\(s).reverse_sync_quarantine"]
        ).rows[0].decode(at: 0, as: Bool?.self)
        if ready == true { return }
        try session.executeScript(
            """
            CREATE TABLE IF NOT EXISTS \(s).reverse_syncs (
                scope                   text PRIMARY KEY,
                -- Every write-path event at or before (checkpoint_xid, checkpoint_position) is applied.
                checkpoint_xid          xid8 NOT NULL,
                checkpoint_position     bigint NOT NULL,
                started_xid             xid8 NOT NULL,
                started_position        bigint NOT NULL,
                mapping_sha1            text NOT NULL,
                created_at              timestamptz NOT NULL DEFAULT now(),
                updated_at              timestamptz NOT NULL DEFAULT now(),
                heartbeat_at            timestamptz,
                caught_up_at            timestamptz,
                batches                 bigint NOT NULL DEFAULT 0,
                events_applied          bigint NOT NULL DEFAULT 0,
                keys_upserted           bigint NOT NULL DEFAULT 0,
                keys_deleted            bigint NOT NULL DEFAULT 0,
                round_trip_differences  bigint NOT NULL DEFAULT 0,
                last_difference         text,
                last_error              text,
                last_error_at           timestamptz
            );
            -- Set when the cutover completes: legacy is an archive from then on.
            ALTER TABLE \(s).reverse_syncs ADD COLUMN IF NOT EXISTS stopped_at timestamptz;
            -- Rows the write-back SQL refused (a key legacy's column type cannot hold, a constraint):
            -- the run goes on without them; a later write of the key that succeeds removes its row.
            CREATE TABLE IF NOT EXISTS \(s).reverse_sync_quarantine (
                scope           text NOT NULL,
                entity          text NOT NULL,
                key             text NOT NULL,
                statement       text NOT NULL,
                sqlstate        text,
                reason          text NOT NULL,
                event_xid       xid8 NOT NULL,
                event_position  bigint NOT NULL,
                first_at        timestamptz NOT NULL DEFAULT now(),
                last_at         timestamptz NOT NULL DEFAULT now(),
                attempts        bigint NOT NULL DEFAULT 1,
                PRIMARY KEY (scope, entity, key)
            );
            """)
    }

    /// Stops the reverse sync of `scope` for good (the cutover's `completed`): a following run
    /// ends within a second, and nothing is applied to legacy after this commits.
    public static func stop(scope: String, store: EventStore = EventStore(), in session: Session) throws {
        try createSchema(store, in: session)
        try session.execute(
            "UPDATE \(quoteIdentifier(store.schema)).reverse_syncs SET stopped_at = coalesce(stopped_at, now()) WHERE scope = $1",
            [scope])
    }

    static func isStopped(scope: String, store: EventStore, in session: Session) throws -> Bool {
        try session.query(
            "SELECT stopped_at IS NOT NULL FROM \(quoteIdentifier(store.schema)).reverse_syncs WHERE scope = $1", [scope]
        ).first?.decode(at: 0, as: Bool.self) ?? false
    }

    /// A position to start at that misses no event the write path may still commit: the
    /// store's head, or — when a transaction that may still append is running — just before the
    /// oldest running transaction (`pg_snapshot_xmin`). Events between it and the head are read
    /// again; re-applying is harmless (rows are written as the ledger holds them now).
    /// The store's last event's cursor, whatever is still running: what a drain must reach once
    /// the write path is frozen (``safeHead(_:in:)`` may stand before it while any transaction of
    /// the cluster — another database's included — runs).
    public static func head(_ store: EventStore, in session: Session) throws -> GlobalCursor {
        let s = quoteIdentifier(store.schema)
        guard
            let row = try session.query(
                "SELECT e.transaction_id::text::int8, e.global_position FROM \(s).events e ORDER BY e.transaction_id DESC, e.global_position DESC LIMIT 1"
            ).first
        else { return .start }
        return GlobalCursor(transactionID: try row.decode(at: 0), position: try row.decode(at: 1))
    }

    public static func safeHead(_ store: EventStore, in session: Session) throws -> GlobalCursor {
        let s = quoteIdentifier(store.schema)
        // `e.` everywhere: an unqualified `ORDER BY transaction_id` names the output column, the
        // `::text::int8` cast, and sorted every event (1 s on 1.7 million, inside the write
        // switch's freeze) instead of reading the last entry of `events_global_order`.
        let row = try session.query(
            """
            SELECT coalesce((SELECT e.transaction_id::text::int8 FROM \(s).events e
                             ORDER BY e.transaction_id DESC, e.global_position DESC LIMIT 1), 0),
                   coalesce((SELECT e.global_position FROM \(s).events e
                             ORDER BY e.transaction_id DESC, e.global_position DESC LIMIT 1), 0),
                   pg_snapshot_xmin(pg_current_snapshot())::text::int8
            """
        ).rows[0]
        let head = GlobalCursor(transactionID: try row.decode(at: 0), position: try row.decode(at: 1))
        let xmin: Int64 = try row.decode(at: 2)
        // Everything of a transaction at or after xmin is read: (xmin - 1, max) precedes it.
        let horizon = GlobalCursor(transactionID: xmin - 1, position: .max)
        return min(head, horizon)
    }

    /// Creates the reverse sync of `scope`, its checkpoint at `position` (the cutover's write
    /// switch: ``safeHead(_:in:)`` at the switch), in `session`'s transaction if one is open.
    /// Idempotent: a scope that exists is returned as it is (its checkpoint is not moved back),
    /// so a write switch completed again after a crash keeps what was applied.
    @discardableResult
    public static func start(
        at position: GlobalCursor, scope: String = "default", mapping: MappingFile, store: EventStore = EventStore(),
        in session: Session
    ) throws -> Status {
        try createSchema(store, in: session)
        let s = quoteIdentifier(store.schema)
        try session.execute(
            """
            INSERT INTO \(s).reverse_syncs
                (scope, checkpoint_xid, checkpoint_position, started_xid, started_position, mapping_sha1)
            VALUES ($1, $2::text::xid8, $3, $2::text::xid8, $3, $4)
            ON CONFLICT (scope) DO NOTHING
            """, [scope, String(position.transactionID), position.position, mapping.fingerprint])
        return try status(scope: scope, store: store, in: session)!
    }

    /// The reverse sync of `scope`, or `nil` when it was never started (or the table does not exist).
    public static func status(scope: String = "default", store: EventStore = EventStore(), in session: Session) throws
        -> Status?
    {
        let s = quoteIdentifier(store.schema)
        guard
            try session.query("SELECT to_regclass($1) IS NOT NULL", [s + ".reverse_syncs"]).rows[0].decode(
                at: 0, as: Bool.self)
        else { return nil }
        guard
            let row = try session.query(
                """
                SELECT checkpoint_xid::text::int8, checkpoint_position, started_xid::text::int8, started_position,
                       mapping_sha1, created_at, updated_at, heartbeat_at, caught_up_at, batches, events_applied,
                       keys_upserted, keys_deleted, round_trip_differences, last_difference, last_error, last_error_at,
                       stopped_at
                FROM \(s).reverse_syncs WHERE scope = $1
                """, [scope]
            ).first
        else { return nil }
        let checkpoint = GlobalCursor(transactionID: try row.decode(at: 0), position: try row.decode(at: 1))
        let pending = try session.query(
            """
            SELECT count(*), min(recorded_at), (extract(epoch FROM now() - min(recorded_at)) * 1000)::int8 FROM (
                SELECT recorded_at FROM \(s).events
                WHERE (transaction_id, global_position) > ($1::text::xid8, $2::int8)
                  AND metadata ->> 'origin' = ANY($3::text[])
                LIMIT 100000) p
            """,
            [String(checkpoint.transactionID), checkpoint.position, PostgresArray(Array(writePathOrigins).sorted())]
        ).rows[0]
        let lock = Self.lock(scope: scope)
        let holder = try session.holder(of: lock)
        let quarantine = try quarantined(scope: scope, store: store, limit: 5, in: session)
        var result = Status(
            scope: scope, checkpoint: checkpoint,
            startedAt: GlobalCursor(transactionID: try row.decode(at: 2), position: try row.decode(at: 3)),
            mappingFingerprint: try row.decode(at: 4), createdAt: try row.decode(at: 5),
            updatedAt: try row.decode(at: 6),
            heartbeatAt: try row.decode(at: 7, as: PostgresTimestamp?.self),
            caughtUpAt: try row.decode(at: 8, as: PostgresTimestamp?.self), running: holder != nil,
            holder: holder, batches: try row.decode(at: 9), eventsApplied: try row.decode(at: 10),
            keysUpserted: try row.decode(at: 11), keysDeleted: try row.decode(at: 12),
            roundTripDifferences: try row.decode(at: 13), lastDifference: try row.decode(at: 14, as: String?.self),
            lastError: try row.decode(at: 15, as: String?.self),
            lastErrorAt: try row.decode(at: 16, as: PostgresTimestamp?.self),
            pendingEvents: try pending.decode(at: 0),
            oldestPendingAt: try pending.decode(at: 1, as: PostgresTimestamp?.self),
            lagMilliseconds: try pending.decode(at: 2, as: Int64?.self))
        result.stoppedAt = try row.decode(at: 17, as: PostgresTimestamp?.self)
        result.quarantined = quarantine.count
        result.quarantineExamples = quarantine.examples
        return result
    }

    /// The quarantined rows of `scope`: how many, and the first `limit` by entity and key.
    public static func quarantined(scope: String, store: EventStore = EventStore(), limit: Int = 100, in session: Session)
        throws -> (count: Int64, examples: [Quarantined])
    {
        let s = quoteIdentifier(store.schema)
        guard
            try session.query("SELECT to_regclass($1) IS NOT NULL", [s + ".reverse_sync_quarantine"]).rows[0].decode(
                at: 0, as: Bool.self)
        else { return (0, []) }
        let count: Int64 = try session.query(
            "SELECT count(*) FROM \(s).reverse_sync_quarantine WHERE scope = $1", [scope]
        ).rows[0].decode(at: 0)
        let examples = try session.query(
            """
            SELECT entity, key, statement, sqlstate, reason, event_xid::text::int8, event_position, attempts
            FROM \(s).reverse_sync_quarantine WHERE scope = $1 ORDER BY entity, key LIMIT $2
            """, [scope, Int64(limit)]
        ).rows.map { row in
            Quarantined(
                entity: try row.decode(at: 0), key: try row.decode(at: 1), statement: try row.decode(at: 2),
                sqlState: try row.decode(at: 3, as: String?.self), reason: try row.decode(at: 4),
                position: GlobalCursor(transactionID: try row.decode(at: 5), position: try row.decode(at: 6)),
                attempts: try row.decode(at: 7))
        }
        return (count, examples)
    }

    // MARK: - Running

    /// What a run did.
    public struct Summary: Sendable, Hashable {
        public var batches = 0
        /// Events read (every origin) and write-path events applied.
        public var eventsRead = 0
        public var eventsApplied = 0
        public var keysUpserted = 0
        public var keysDeleted = 0
        /// Attributes-only events appended to the ledger (legacy caches read back).
        public var attributeRefreshes = 0
        public var roundTripDifferences = 0
        /// Rows legacy refused in this run (``Quarantined``), counted once per batch that hit them.
        public var keysQuarantined = 0
        public var checkpoint = GlobalCursor.start
        public var caughtUp = false
        /// The cutover completed: the reverse sync was stopped for good (``stop(scope:store:in:)``).
        public var stopped = false
        public var elapsed = Duration.zero
    }

    /// Runs until caught up (with ``Configuration/follow``: until `stop`).
    ///
    /// - Throws: ``ReverseSyncError`` (not started, another run holds the scope, an entity
    ///   without `write_back`, a write-back statement that fails — recorded as `last_error`),
    ///   connection and SQL errors.
    public func run(
        stop: ShadowTailer.Stop = ShadowTailer.Stop(), started: (@Sendable () -> Void)? = nil,
        progress: (@Sendable (Summary) -> Void)? = nil
    ) async throws -> Summary {
        try await run(until: nil, stop: stop, started: started, progress: progress)
    }

    /// Applies everything up to `position` and returns (the rollback's drain: the write path
    /// frozen, every event it appended reaches legacy). When another run of the scope holds the
    /// lock (a `--follow` process), waits instead until its checkpoint has passed `position`,
    /// at most `timeout`.
    ///
    /// - Throws: ``ReverseSyncError/drainTimedOut(scope:position:checkpoint:)`` and what
    ///   ``run(stop:started:progress:)`` throws.
    public func drain(until position: GlobalCursor, timeout: Duration = .seconds(60)) async throws -> Summary {
        let config = configuration
        let store = try await Connection.connect(config.storeDSN, applicationName: "ledgerlift-reverse-sync")
        defer { store.close() }
        let busy = try await store.withSession { session -> Bool in
            let lock = Self.lock(scope: config.scope)
            guard try session.tryLock(lock) else { return true }
            _ = try session.unlock(lock)
            return false
        }
        if !busy {
            do {
                return try await run(until: position, stop: ShadowTailer.Stop(), started: nil, progress: nil)
            } catch ReverseSyncError.busy {
                // Another run started meanwhile: wait for it below.
            }
        }
        let deadline = ContinuousClock.now + timeout
        while true {
            let status = try await store.withSession { [config] in
                try Self.status(scope: config.scope, store: config.store, in: $0)
            }
            guard let status else { throw ReverseSyncError.notStarted(scope: config.scope) }
            let done = try await store.withSession { [config] session in
                try status.checkpoint >= position
                    || !config.store.hasEventsBeyond(status.checkpoint, in: session)
            }
            if done {
                var summary = Summary()
                summary.checkpoint = status.checkpoint
                summary.caughtUp = true
                return summary
            }
            guard ContinuousClock.now < deadline else {
                throw ReverseSyncError.drainTimedOut(
                    scope: config.scope, position: position, checkpoint: status.checkpoint)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    func run(
        until target: GlobalCursor?, stop: ShadowTailer.Stop, started: (@Sendable () -> Void)?,
        progress: (@Sendable (Summary) -> Void)?
    ) async throws -> Summary {
        let config = configuration
        let legacy = try await Connection.connect(config.legacyDSN, applicationName: "ledgerlift-reverse-sync")
        defer { legacy.close() }
        let store = try await Connection.connect(config.storeDSN, applicationName: "ledgerlift-reverse-sync")
        defer { store.close() }
        let eventStore = config.store
        let s = quoteIdentifier(eventStore.schema)
        let scope = config.scope
        let lock = Self.lock(scope: scope)
        var checkpoint = try await store.withSession { session -> GlobalCursor in
            try eventStore.requireInitialized(session)
            guard try session.tryLock(lock) else {
                throw ReverseSyncError.busy(
                    scope: scope, holder: try session.holder(of: lock) ?? "a session that has just ended")
            }
            // A scope started by an earlier version lacks the quarantine table.
            if try Self.status(scope: scope, store: eventStore, in: session) != nil {
                try Self.createSchema(eventStore, in: session)
            }
            guard let status = try Self.status(scope: scope, store: eventStore, in: session) else {
                // Following, it may be started before the write switch: it holds its lock (so
                // the cutover's gate sees it running) and waits below for the switch to start it.
                if target == nil, config.follow, !stop.isRequested { return GlobalCursor.start }
                _ = try session.unlock(lock)
                throw ReverseSyncError.notStarted(scope: scope)
            }
            return status.checkpoint
        }
        if checkpoint == .start {
            while !stop.isRequested {
                let status = try await store.withSession { try Self.status(scope: scope, store: eventStore, in: $0) }
                if let status {
                    checkpoint = status.checkpoint
                    break
                }
                try await Task.sleep(for: config.pollInterval)
            }
            if stop.isRequested {
                _ = try? await store.withSession { try $0.unlock(lock) }
                var summary = Summary()
                summary.caughtUp = true
                return summary
            }
        }
        let plan = try WriteBackPlan(config.mapping)
        started?()
        let clock = ContinuousClock()
        let startedAt = clock.now
        var summary = Summary()
        summary.checkpoint = checkpoint
        var lastHeartbeat = clock.now - .seconds(10)
        var lastStopCheck = clock.now - .seconds(10)
        var conflicts = 0
        do {
            while true {
                if let target, checkpoint >= target {
                    summary.caughtUp = true
                    break
                }
                if clock.now - lastStopCheck >= .seconds(1) {
                    lastStopCheck = clock.now
                    if try await store.withSession({ try Self.isStopped(scope: scope, store: eventStore, in: $0) }) {
                        summary.stopped = true
                        break
                    }
                }
                let from = checkpoint
                let events = try await store.withSession { [batchSize = config.batchSize] session in
                    try eventStore.readAll(after: from, limit: batchSize, in: session)
                }
                if events.isEmpty {
                    let waiting = try await store.withSession { try eventStore.hasEventsBeyond(from, in: $0) }
                    if !waiting {
                        if !summary.caughtUp || clock.now - lastHeartbeat >= .seconds(1) {
                            try await store.execute(
                                "UPDATE \(s).reverse_syncs SET heartbeat_at = now(), caught_up_at = now() WHERE scope = $1",
                                [scope])
                            lastHeartbeat = clock.now
                        }
                        summary.caughtUp = true
                        if !config.follow || stop.isRequested || target != nil { break }
                    } else if clock.now - lastHeartbeat >= .seconds(1) {
                        try await store.execute(
                            "UPDATE \(s).reverse_syncs SET heartbeat_at = now() WHERE scope = $1", [scope])
                        lastHeartbeat = clock.now
                    }
                    if stop.isRequested { break }
                    try await Task.sleep(for: waiting ? .milliseconds(5) : config.pollInterval)
                    continue
                }
                summary.caughtUp = false
                let to = events.last!.cursor
                let outcome: BatchOutcome
                do {
                    outcome = try await apply(events, from: from, to: to, plan: plan, legacy: legacy, store: store)
                } catch let error as EventStoreError {
                    // A command moved a stream between the fold and the refresh's append: nothing
                    // was committed in the store; the batch is applied again (legacy included).
                    conflicts += 1
                    if conflicts > 5 { throw error }
                    continue
                } catch ReverseSyncError.statementFailed(_, _, _, let sqlState, _)
                    where Self.retryableStates.contains(sqlState)
                {
                    // Legacy's own transactions (an application reading under locks, a report)
                    // can deadlock with a batch or outlast a lock wait: PostgreSQL rolled the
                    // batch back whole; it is applied again after a growing pause.
                    conflicts += 1
                    if conflicts > 20 {
                        throw ReverseSyncError.statementFailed(
                            entity: "(batch)", key: "", statement: "(any)", sqlState: sqlState,
                            message: "still failing after 20 attempts")
                    }
                    try await Task.sleep(for: .milliseconds(10 * conflicts))
                    continue
                } catch let error as PostgresError where Self.retryableStates.contains(error.sqlState?.rawValue ?? "") {
                    conflicts += 1
                    if conflicts > 20 { throw error }
                    try await Task.sleep(for: .milliseconds(10 * conflicts))
                    continue
                }
                conflicts = 0
                checkpoint = to
                lastHeartbeat = clock.now
                summary.batches += 1
                summary.eventsRead += events.count
                summary.eventsApplied += outcome.eventsApplied
                summary.keysUpserted += outcome.keysUpserted
                summary.keysDeleted += outcome.keysDeleted
                summary.attributeRefreshes += outcome.attributeRefreshes
                summary.roundTripDifferences += outcome.roundTripDifferences
                summary.keysQuarantined += outcome.quarantined.count
                summary.checkpoint = checkpoint
                summary.elapsed = clock.now - startedAt
                config.logger.info(
                    "batch applied",
                    metadata: [
                        "scope": "\(scope)", "checkpoint": "\(checkpoint)", "events": "\(events.count)",
                        "upserted": "\(outcome.keysUpserted)", "deleted": "\(outcome.keysDeleted)",
                        "quarantined": "\(outcome.quarantined.count)",
                    ])
                for entry in outcome.quarantined {
                    config.logger.warning("row quarantined", metadata: ["scope": "\(scope)", "row": "\(entry)"])
                }
                progress?(summary)
                if stop.isRequested { break }
            }
        } catch {
            _ = try? await store.execute(
                "UPDATE \(s).reverse_syncs SET last_error = $2, last_error_at = now() WHERE scope = $1",
                [scope, String(describing: error)])
            _ = try? await store.withSession { try $0.unlock(lock) }
            throw error
        }
        summary.elapsed = clock.now - startedAt
        _ = try? await store.withSession { try $0.unlock(lock) }
        return summary
    }

    /// What one batch did.
    struct BatchOutcome {
        var eventsApplied = 0
        var keysUpserted = 0
        var keysDeleted = 0
        var attributeRefreshes = 0
        var roundTripDifferences = 0
        var lastDifference: String?
        /// Rows legacy refused in this batch.
        var quarantined = [Quarantined]()
        /// Keys written without error (their quarantine rows, if any, are resolved).
        var written = [Entity: Set<String>]()
    }

    /// A stream folded: the row the ledger holds now (`nil`: ended), the row before its ending,
    /// its version and the time of its last event.
    struct Folded: Sendable {
        var row: CanonicalRow?
        var lastLive: CanonicalRow?
        var version: Int64
        var lastOccurredAt: PostgresTimestamp?
    }

    /// Applies one batch: legacy first (one transaction), then the store (checkpoint, attribute
    /// refreshes; one transaction).
    func apply(
        _ events: [RecordedEvent], from: GlobalCursor, to: GlobalCursor, plan: WriteBackPlan, legacy: Connection,
        store: Connection
    ) async throws -> BatchOutcome {
        let config = configuration
        let eventStore = config.store
        let s = quoteIdentifier(eventStore.schema)
        var keys = [Entity: Set<String>]()
        var applied = 0
        for event in events {
            guard let entity = Entity(rawValue: String(event.category)), Self.isWritePath(event) else { continue }
            let key = String(event.streamID.dropFirst(entity.rawValue.count + 1))
            keys[entity, default: []].insert(key)
            applied += 1
        }
        var outcome = BatchOutcome()
        outcome.eventsApplied = applied
        var refreshes = [StreamEvent]()
        var expected = [String: Int64]()
        if !keys.isEmpty {
            for entity in keys.keys where plan.statements[entity] == nil {
                throw ReverseSyncError.noWriteBack(
                    entity: entity.rawValue, keys: Array(keys[entity]!).sorted().prefix(5).joined(separator: ", "))
            }
            let touched = keys
            let mapping = config.mapping
            var folded = try await store.withSession { try Self.fold(touched, store: eventStore, in: $0) }
            // The rows the written rows reference (an invoice's customer, a payment's invoice):
            // caches the write-back SQL recomputes live there, so they are read back too.
            let referenced = Self.referencedKeys(folded, excluding: touched, mapping: mapping)
            if !referenced.isEmpty {
                let more = try await store.withSession { try Self.fold(referenced, store: eventStore, in: $0) }
                folded.merge(more) { own, other in own.merging(other) { first, _ in first } }
            }
            let readBack = Self.union(touched, referenced)
            let allFolded = folded
            let sources = Dictionary(uniqueKeysWithValues: mapping.entitySources().map { ($0.entity, $0) })
            let result = try await legacy.withSession { session in
                try session.transaction { tx in
                    try Self.writeLegacy(
                        keys: touched, readBack: readBack, folded: allFolded, plan: plan, mapping: mapping,
                        sources: sources, position: to, in: tx)
                }
            }
            outcome.keysUpserted = result.upserted
            outcome.keysDeleted = result.deleted
            outcome.quarantined = result.quarantined
            outcome.written = result.written
            outcome.roundTripDifferences = result.differences.count
            outcome.lastDifference = result.differences.last
            for (entity, byKey) in result.readBack {
                for (key, legacyRow) in byKey {
                    guard let stream = folded[entity]?[key], let ledgerRow = stream.row,
                        legacyRow.attributes != ledgerRow.attributes
                    else { continue }
                    var after = ledgerRow
                    after.attributes = legacyRow.attributes
                    let synthesized = Transitions.transitions(
                        before: ledgerRow, after: after, notBefore: stream.lastOccurredAt,
                        syncedFromVersion: stream.version, origin: .reverseSync)
                    for (index, event) in synthesized.enumerated() {
                        var stored = event.newEvent(
                            origin: SyncOrigin.reverseSync.metadataOrigin, source: "\(entity.rawValue)/\(key)")
                        stored.metadata = PostgresJSON(
                            JSONValue.object([
                                ("origin", .string(SyncOrigin.reverseSync.metadataOrigin)),
                                ("evidence", .string(event.evidence.rawValue)),
                                ("source", .string("\(entity.rawValue)/\(key)")),
                                ("reverse_sync", .string(config.scope)),
                            ]).rendered)
                        refreshes.append(
                            StreamEvent(
                                streamID: event.streamID, streamVersion: stream.version + 1 + Int64(index),
                                event: stored))
                    }
                    expected[entity.streamID(key: key)] = stream.version
                }
            }
        }
        try config.afterLegacyCommit?()
        let batch = refreshes
        let versions = expected
        let scope = config.scope
        let counts = outcome
        let appended = try await store.withSession { session -> Int in
            // Streams another writer moved since the fold are left: the batch that reads that
            // writer's event writes legacy again and refreshes them then. (One that moves
            // between this read and the append fails the append: the batch is applied again.)
            var current = [String: Int64]()
            if !versions.isEmpty {
                for row in try session.query(
                    "SELECT stream_id, version FROM \(s).streams WHERE stream_id = ANY($1::text[])",
                    [PostgresArray(versions.keys.sorted())]
                ).rows {
                    current[try row.decode(at: 0, as: String.self)] = try row.decode(at: 1, as: Int64.self)
                }
            }
            let kept = batch.filter { current[$0.streamID] == versions[$0.streamID] }
            let record = { (tx: Session) throws in
                let moved = try tx.execute(
                    """
                    UPDATE \(s).reverse_syncs
                    SET checkpoint_xid = $4::text::xid8, checkpoint_position = $5, updated_at = now(), heartbeat_at = now(),
                        batches = batches + 1, events_applied = events_applied + $6, keys_upserted = keys_upserted + $7,
                        keys_deleted = keys_deleted + $8, round_trip_differences = round_trip_differences + $9,
                        last_difference = coalesce($10, last_difference)
                    WHERE scope = $1 AND checkpoint_xid = $2::text::xid8 AND checkpoint_position = $3
                    """,
                    [
                        scope, String(from.transactionID), from.position, String(to.transactionID), to.position,
                        Int64(counts.eventsApplied), Int64(counts.keysUpserted), Int64(counts.keysDeleted),
                        Int64(counts.roundTripDifferences), counts.lastDifference,
                    ])
                guard moved == 1 else { throw ReverseSyncError.checkpointMoved(scope: scope, expected: from) }
                for entry in counts.quarantined {
                    try tx.execute(
                        """
                        INSERT INTO \(s).reverse_sync_quarantine
                            (scope, entity, key, statement, sqlstate, reason, event_xid, event_position)
                        VALUES ($1, $2, $3, $4, $5, $6, $7::text::xid8, $8)
                        ON CONFLICT (scope, entity, key) DO UPDATE
                        SET statement = excluded.statement, sqlstate = excluded.sqlstate, reason = excluded.reason,
                            last_at = now(), attempts = \(s).reverse_sync_quarantine.attempts + 1
                        """,
                        [
                            scope, entry.entity, entry.key, entry.statement, entry.sqlState, entry.reason,
                            String(entry.position.transactionID), entry.position.position,
                        ])
                }
                for (entity, keys) in counts.written where !keys.isEmpty {
                    try tx.execute(
                        "DELETE FROM \(s).reverse_sync_quarantine WHERE scope = $1 AND entity = $2 AND key = ANY($3::text[])",
                        [scope, entity.rawValue, PostgresArray(keys.sorted())])
                }
            }
            if kept.isEmpty {
                try session.transaction { try record($0) }
            } else {
                try eventStore.appendBulk(kept, in: session, alsoInTransaction: record)
            }
            return kept.count
        }
        outcome.attributeRefreshes = appended
        return outcome
    }

    /// Whether `event` comes from the ledger's write path (``writePathOrigins``).
    static func isWritePath(_ event: RecordedEvent) -> Bool {
        // Cheap test first: most events of a shadowed store are the tailer's.
        guard let data = event.metadata.text.data(using: .utf8),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let origin = object["origin"] as? String
        else { return false }
        return writePathOrigins.contains(origin)
    }

    /// Each key's stream folded, as it is now (one query per entity).
    static func fold(_ keys: [Entity: Set<String>], store: EventStore, in session: Session) throws -> [Entity: [String:
        Folded]]
    {
        let s = quoteIdentifier(store.schema)
        var result = [Entity: [String: Folded]]()
        for (entity, set) in keys {
            let prefix = entity.streamID(key: "")
            var states = [String: Folded]()
            for row in try session.query(
                """
                SELECT stream_id, stream_version, event_type, schema_version, occurred_at, payload
                FROM \(s).events WHERE stream_id = ANY($1::text[]) ORDER BY stream_id, stream_version
                """, [PostgresArray(set.sorted().map { prefix + $0 })]
            ).rows {
                let occurredAt = try row.decode(at: 4, as: PostgresTimestamp.self)
                let recorded = RecordedEvent(
                    globalPosition: 0, eventID: ShadowSync.unusedID, streamID: try row.decode(at: 0),
                    streamVersion: try row.decode(at: 1), eventType: try row.decode(at: 2),
                    schemaVersion: try row.decode(at: 3), occurredAt: occurredAt, recordedAt: occurredAt,
                    payload: try row.decode(at: 5), metadata: PostgresJSON("{}"), transactionID: 0)
                let key = String(recorded.streamID.dropFirst(prefix.count))
                let event = try BillingEvent(recorded: recorded)
                var state = states[key] ?? Folded(row: nil, lastLive: nil, version: 0, lastOccurredAt: nil)
                state.row = Transitions.applying(event, to: state.row)
                if let row = state.row { state.lastLive = row }
                state.version = recorded.streamVersion
                state.lastOccurredAt = occurredAt
                states[key] = state
            }
            result[entity] = states
        }
        return result
    }

    /// What the legacy transaction did.
    struct LegacyWrite: Sendable {
        var upserted = 0
        var deleted = 0
        /// Each upserted key read back through the mapping, converted.
        var readBack = [Entity: [String: CanonicalRow]]()
        /// `invoice 17: amount_due wrote 1200, reads back 1300`, per canonical mismatch.
        var differences = [String]()
        var quarantined = [Quarantined]()
        var written = [Entity: Set<String>]()
    }

    /// The legacy transaction of one batch: origin and time zone set, upserts in canonical
    /// order, deletes in reverse, then the written keys read back through the mapping.
    /// The keys of mapped entities that `folded`'s rows name in a reference column
    /// (`customer_id`, `invoice_id`, …: a column `<entity>_id` other than the row's own key),
    /// without those in `excluding`.
    static func referencedKeys(
        _ folded: [Entity: [String: Folded]], excluding: [Entity: Set<String>], mapping: MappingFile
    ) -> [Entity: Set<String>] {
        var result = [Entity: Set<String>]()
        for (entity, streams) in folded {
            let references = entity.columns.compactMap { column -> (String, Entity)? in
                guard column.name != entity.keyColumn, column.name.hasSuffix("_id"),
                    let target = Entity(rawValue: String(column.name.dropLast(3))), mapping[target] != nil
                else { return nil }
                return (column.name, target)
            }
            for stream in streams.values {
                guard let row = stream.row ?? stream.lastLive else { continue }
                for (column, target) in references {
                    guard let key = row[column].textValue, !(excluding[target]?.contains(key) ?? false) else {
                        continue
                    }
                    result[target, default: []].insert(key)
                }
            }
        }
        return result
    }

    static func union(_ a: [Entity: Set<String>], _ b: [Entity: Set<String>]) -> [Entity: Set<String>] {
        a.merging(b) { $0.union($1) }
    }

    static func writeLegacy(
        keys: [Entity: Set<String>], readBack: [Entity: Set<String>], folded: [Entity: [String: Folded]],
        plan: WriteBackPlan, mapping: MappingFile, sources: [Entity: EntitySource], position: GlobalCursor,
        in tx: Session
    ) throws -> LegacyWrite {
        try tx.execute("SET LOCAL ledgerlift.origin = '\(CaptureSchema.reverseSyncOrigin)'")
        try tx.execute("SET LOCAL TimeZone = 'UTC'")
        var result = LegacyWrite()
        var refused = [Entity: Set<String>]()
        let bytewise: (String, String) -> Bool = { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        // Each row under its own savepoint: a row legacy refuses (a key its column type cannot
        // hold, a constraint) is quarantined alone; the batch goes on. A deadlock, a
        // serialization failure or a lock timeout is the batch's: it is applied again whole.
        func guarded(_ entity: Entity, _ key: String, _ body: () throws -> Void) throws -> Bool {
            try tx.execute("SAVEPOINT ledgerlift_write_back")
            do {
                try body()
                try tx.execute("RELEASE SAVEPOINT ledgerlift_write_back")
                return true
            } catch ReverseSyncError.statementFailed(_, _, let statement, let sqlState, let message)
                where !retryableStates.contains(sqlState)
            {
                try tx.execute("ROLLBACK TO SAVEPOINT ledgerlift_write_back")
                try tx.execute("RELEASE SAVEPOINT ledgerlift_write_back")
                result.quarantined.append(
                    Quarantined(
                        entity: entity.rawValue, key: key, statement: statement, sqlState: sqlState, reason: message,
                        position: position, attempts: 1))
            } catch ReverseSyncError.binding(let reason) {
                try tx.execute("ROLLBACK TO SAVEPOINT ledgerlift_write_back")
                try tx.execute("RELEASE SAVEPOINT ledgerlift_write_back")
                result.quarantined.append(
                    Quarantined(
                        entity: entity.rawValue, key: key, statement: "binding", sqlState: nil, reason: reason,
                        position: position, attempts: 1))
            }
            refused[entity, default: []].insert(key)
            return false
        }
        for entity in Entity.allCases {
            guard let set = keys[entity], let statements = plan.statements[entity] else { continue }
            for key in set.sorted(by: bytewise) {
                guard let row = folded[entity]?[key]?.row else { continue }
                if try guarded(entity, key, {
                    try plan.execute(statements.upsert, entity: entity, row: row, kind: "upsert", in: tx)
                }) {
                    result.upserted += 1
                    result.written[entity, default: []].insert(key)
                }
            }
        }
        for entity in Entity.allCases.reversed() {
            guard let set = keys[entity], let statements = plan.statements[entity] else { continue }
            for key in set.sorted(by: bytewise) {
                guard let stream = folded[entity]?[key], stream.row == nil, let last = stream.lastLive else { continue }
                if try guarded(entity, key, {
                    try plan.execute(statements.delete, entity: entity, row: last, kind: "delete", in: tx)
                }) {
                    result.deleted += 1
                    result.written[entity, default: []].insert(key)
                }
            }
        }
        // Read back: what the tailer would read for these keys now — the rows written, and the
        // rows they reference (whose caches the SQL may have recomputed) that the ledger has.
        let group = Entity.allCases.compactMap { entity -> (Entity, [String])? in
            let live = (readBack[entity] ?? []).filter {
                folded[entity]?[$0]?.row != nil && !(refused[entity]?.contains($0) ?? false)
            }.sorted(by: bytewise)
            return live.isEmpty ? nil : (entity, live)
        }
        let states = try ShadowSync.readLegacy(group, sources: sources, mapping: mapping, in: tx)
        for (entity, keys) in group {
            for key in keys {
                guard let ledgerRow = folded[entity]?[key]?.row else { continue }
                switch states[entity]?[key] ?? .absent {
                case .row(let legacyRow):
                    result.readBack[entity, default: [:]][key] = legacyRow
                    let columns = entity.columns.map(\.name).filter { legacyRow[$0] != ledgerRow[$0] }
                    if !columns.isEmpty {
                        result.differences.append(
                            "\(entity) \(key): "
                                + columns.map { "\($0) wrote \(ledgerRow[$0]), reads back \(legacyRow[$0])" }
                                .joined(separator: "; "))
                    }
                case .absent:
                    result.differences.append("\(entity) \(key): written, but the mapping query does not return it")
                case .quarantined(let reason, let detail, _):
                    result.differences.append("\(entity) \(key): reads back quarantined (\(reason): \(detail))")
                }
            }
        }
        return result
    }
}

/// The mapping's `write_back` statements, compiled once: each named parameter bound to its
/// `$n` and typed (``WriteBack/parameterType(_:entity:amounts:)``).
public struct WriteBackPlan: Sendable {
    public struct Compiled: Sendable {
        public let name: String
        public let statement: WriteBack.Statement
        public let sql: String
    }

    public struct EntityStatements: Sendable {
        public let upsert: [Compiled]
        public let delete: [Compiled]
    }

    public let mapping: MappingFile
    /// Per entity with `write_back`.
    public let statements: [Entity: EntityStatements]

    public init(_ mapping: MappingFile) throws {
        self.mapping = mapping
        var statements = [Entity: EntityStatements]()
        for entityMapping in mapping.entities {
            guard let writeBack = entityMapping.writeBack else { continue }
            let entity = entityMapping.entity
            let amounts = mapping.amounts(for: entity)
            func compile(_ list: [WriteBack.Statement], _ kind: String) -> [Compiled] {
                list.enumerated().map { index, statement in
                    Compiled(
                        name: "\(kind)[\(index)]", statement: statement,
                        sql: statement.sql { WriteBack.parameterType($0, entity: entity, amounts: amounts) })
                }
            }
            statements[entity] = EntityStatements(
                upsert: compile(writeBack.upsert, "upsert"), delete: compile(writeBack.delete, "delete"))
        }
        self.statements = statements
    }

    /// Runs `statements` for `row` in `tx`.
    ///
    /// - Throws: ``ReverseSyncError/statementFailed(entity:key:statement:sqlState:message:)``
    ///   naming the entity, the key, the statement and PostgreSQL's SQLSTATE;
    ///   ``ReverseSyncError/binding(_:)``.
    public func execute(_ statements: [Compiled], entity: Entity, row: CanonicalRow, kind: String, in tx: Session)
        throws
    {
        let amounts = mapping.amounts(for: entity)
        let exponents = mapping.currencyExponents(for: entity)
        for compiled in statements {
            let values: [String?]
            do {
                values = try WriteBack.values(
                    of: compiled.statement, row: row, amounts: amounts, currencyExponents: exponents)
            } catch {
                throw ReverseSyncError.binding(error.description)
            }
            do {
                _ = try tx.query(compiled.sql, values)
            } catch let error as PostgresError where !error.isConnectionLost {
                throw ReverseSyncError.statementFailed(
                    entity: entity.rawValue, key: row.key, statement: "write_back.\(compiled.name)",
                    sqlState: error.sqlState?.description ?? "?", message: error.message)
            }
        }
    }
}

/// Why reverse sync refused or stopped.
public enum ReverseSyncError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No checkpoint row for the scope: the cutover's write switch creates it.
    case notStarted(scope: String)
    /// Another run of the scope holds its lock.
    case busy(scope: String, holder: String)
    /// The write path changed rows of an entity whose mapping has no `write_back`.
    case noWriteBack(entity: String, keys: String)
    /// A write-back statement failed.
    case statementFailed(entity: String, key: String, statement: String, sqlState: String, message: String)
    /// A row's value cannot be written in the legacy unit.
    case binding(String)
    /// The checkpoint moved under the batch (two runs of one scope).
    case checkpointMoved(scope: String, expected: GlobalCursor)
    /// `drain(until:)` waited for another run that did not get there in time.
    case drainTimedOut(scope: String, position: GlobalCursor, checkpoint: GlobalCursor)

    public var description: String {
        switch self {
        case .notStarted(let scope):
            "reverse sync \(scope) was not started: the cutover's write switch starts it "
                + "(or run ledgerlift shadow reverse-sync … --start-at-head)"
        case .busy(let scope, let holder):
            "reverse sync \(scope) is already running (held by \(holder)): one run per scope"
        case .noWriteBack(let entity, let keys):
            "the ledger's write path changed \(entity) rows (\(keys)) but the mapping has no write_back for \(entity): "
                + "add write_back (docs/reverse-sync.md), then run reverse sync again"
        case .statementFailed(let entity, let key, let statement, let sqlState, let message):
            "\(entity) \(key): \(statement) failed: \(message) (SQLSTATE \(sqlState))"
        case .binding(let reason): "cannot write back: \(reason)"
        case .checkpointMoved(let scope, let expected):
            "the checkpoint of reverse sync \(scope) moved from \(expected) under this run: another run applied the batch"
        case .drainTimedOut(let scope, let position, let checkpoint):
            "reverse sync \(scope) did not reach \(position) in time (checkpoint \(checkpoint))"
        }
    }
}
