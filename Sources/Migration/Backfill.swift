import TextFormats
import Mapping
import Billing
import EventStore
import Foundation
import Logging
import Postgres
import Synchronization

/// Reads every entity of the legacy database from one consistent snapshot and writes the
/// history its rows imply into the event store — exactly, repeatably, resumably.
///
/// The work is split into key ranges per entity, recorded in `backfill_ranges`; a range's last
/// batch of events commits together with the record that the range is done, so a run killed at
/// any point is finished by running it again, and since event ids are deterministic the
/// final event set is the same as an uninterrupted run's.
public struct Backfill: Sendable {
    public struct Configuration: Sendable {
        public var legacyDSN: String
        public var storeDSN: String
        public var sources: [EntitySource]
        /// Identifies the run: a rerun with the same mapping resumes (or finds it finished).
        public var mappingFingerprint: String
        /// The mapping file `sources` come from. When set, the run first checks it against the
        /// legacy database exactly as `ledgerlift mapping check` does, and refuses one with
        /// errors (``BackfillError/mappingRejected(_:)``) before it converts a row or writes anything.
        public var mapping: MappingFile?
        public var store: EventStore
        /// Legacy connections reading key ranges in parallel.
        public var workers: Int
        /// Key ranges per entity (more than workers, so a slow range does not idle the rest).
        public var rangesPerEntity: Int
        /// Events per bulk batch.
        public var batchEvents: Int
        /// Read and synthesize, write nothing.
        public var dryRun: Bool
        /// Wait for another run holding the store's backfill lock instead of refusing.
        public var wait: Bool
        /// Where the run logs: one `info` line per entity, one `debug` line per key range, with
        /// `run_id`, `entity` and `range` metadata. The caller's (a library makes no logger of
        /// its own); by default nothing is logged.
        public var logger = Logger(label: "ledgerlift.backfill", factory: { _ in SwiftLogNoOpLogHandler() })

        public init(
            legacyDSN: String, storeDSN: String, sources: [EntitySource], mappingFingerprint: String,
            store: EventStore = EventStore(), workers: Int = 1, rangesPerEntity: Int? = nil, batchEvents: Int = 5_000,
            dryRun: Bool = false, wait: Bool = false
        ) {
            self.legacyDSN = legacyDSN
            self.storeDSN = storeDSN
            self.sources = sources.sorted { Entity.allCases.firstIndex(of: $0.entity)! < Entity.allCases.firstIndex(of: $1.entity)! }
            self.mappingFingerprint = mappingFingerprint
            self.store = store
            self.workers = max(1, workers)
            self.rangesPerEntity = rangesPerEntity ?? max(4, 4 * workers)
            self.batchEvents = batchEvents
            self.dryRun = dryRun
            self.wait = wait
        }

        /// A run of `mapping`: its entity sources and fingerprint, and — before anything is read —
        /// the checks of `ledgerlift mapping check` (see ``mapping``).
        public init(
            legacyDSN: String, storeDSN: String, mapping: MappingFile, store: EventStore = EventStore(),
            workers: Int = 1, rangesPerEntity: Int? = nil, batchEvents: Int = 5_000, dryRun: Bool = false,
            wait: Bool = false
        ) {
            self.init(
                legacyDSN: legacyDSN, storeDSN: storeDSN, sources: mapping.entitySources(),
                mappingFingerprint: mapping.fingerprint, store: store, workers: workers,
                rangesPerEntity: rangesPerEntity, batchEvents: batchEvents, dryRun: dryRun, wait: wait)
            self.mapping = mapping
        }
    }

    /// Progress as the run goes, for terminals and logs.
    public struct Progress: Sendable {
        public var entity: Entity
        public var rangesDone: Int
        public var rangesTotal: Int
        public var rowsRead: Int64
        public var events: Int64
    }

    public let configuration: Configuration

    public init(_ configuration: Configuration) { self.configuration = configuration }

    public var runID: String { "backfill-" + configuration.mappingFingerprint.prefix(16) }

    /// The most keys a planned range holds.
    static let keysPerRange: Int64 = 20_000

    /// Runs (or resumes) the backfill.
    ///
    /// The legacy database is always read first, so a run never reports success for a
    /// database it did not reach. A store holds the history of one legacy database made with one
    /// mapping: a run of another database or another mapping into it is refused (see
    /// ``BackfillError``), and one run at a time holds the store's backfill lock.
    ///
    /// - Parameter progress: called after each key range.
    /// - Returns: the counts of the whole run, across resumed attempts.
    /// - Throws: ``BackfillError`` for a refused or unbalanced run (``BackfillError/mappingRejected(_:)``
    ///   for a ``Configuration/mapping`` with errors, before anything is migrated or written);
    ///   connection and SQL errors.
    public func run(progress: (@Sendable (Progress) -> Void)? = nil) async throws -> BackfillReport {
        let storeConnection = try await Connection.connect(configuration.storeDSN, applicationName: "ledgerlift-backfill")
        defer { storeConnection.close() }
        do {
            let report = try await run(storeConnection, progress: progress)
            try await unlock(storeConnection)
            return report
        } catch {
            try? await unlock(storeConnection)
            throw error
        }
    }

    /// Releases the backfill lock now, so a run started right after this one returns finds it
    /// free (closing the connection releases it too, but only once the server has noticed).
    private func unlock(_ storeConnection: Connection) async throws {
        guard !configuration.dryRun else { return }
        let lock = Self.lock(for: configuration.store)
        try await storeConnection.withSession { _ = try $0.unlock(lock) }
    }

    private func run(_ storeConnection: Connection, progress: (@Sendable (Progress) -> Void)?) async throws -> BackfillReport {
        let config = configuration
        let store = config.store
        let s = quoteIdentifier(store.schema)
        // The legacy database first: an unreachable or wrong one must never look like success.
        let coordinator = try await Connection.connect(config.legacyDSN, applicationName: "ledgerlift-backfill")
        defer { coordinator.close() }
        // What `mapping check` rejects must not become events: a numeric amount under
        // `amounts: minor`, a history query missing a column, a check that fails. The check
        // runs in a read-only transaction of its own (shapes with LIMIT 0, then counts, key
        // uniqueness, checks and rules), before the store is locked or written and before any
        // row is converted, dry runs included.
        if let mapping = config.mapping {
            let report = try await MappingChecker(mapping).check(coordinator)
            if !Self.refusals(in: report).isEmpty { throw BackfillError.mappingRejected(report) }
        }
        let identity = try await coordinator.withSession { session in
            let row = try session.query(LegacyIdentity.query).rows[0]
            return LegacyIdentity(
                systemIdentifier: try row.decode(at: 0, as: String?.self) ?? "unknown",
                databaseName: try row.decode(at: 1, as: String.self), databaseOID: try row.decode(at: 2, as: String.self))
        }
        let runID = runID
        var attempt = 1
        if !config.dryRun {
            try await storeConnection.withSession { session in
                try store.requireInitialized(session)
                try Self.lock(store, session, wait: config.wait)
                try BackfillSchema.create(store, session)
            }
            let finished = try await storeConnection.withSession { session -> PostgresTimestamp? in
                try session.transaction { tx in
                    try self.checkIdentity(identity, tx)
                    try tx.execute(
                        "INSERT INTO \(s).backfill_runs (run_id, mapping_sha1, legacy_identity) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        [runID, config.mappingFingerprint, identity.text])
                    return try tx.query("SELECT finished_at FROM \(s).backfill_runs WHERE run_id = $1", [runID])
                        .rows[0].decode(at: 0, as: PostgresTimestamp?.self)
                }
            }
            if let finished {
                // Nothing left to do: the report of the run that finished. Legacy changes since
                // then are not this run's (its snapshot is gone); the summary says so.
                var earlier = try await report(storeConnection, dryRun: false, extra: nil)
                earlier.finishedEarlier = finished
                return earlier
            }
        }

        // One snapshot for every worker: the coordinator holds it open for the whole run.
        let snapshot = try await LegacySnapshot.open(on: coordinator)
        let (snapshotID, snapshotText) = (snapshot.id, snapshot.visibility)
        if !config.dryRun {
            attempt = Int(
                try await storeConnection.query(
                    """
                    UPDATE \(s).backfill_runs
                    SET legacy_snapshots = legacy_snapshots || $2::text, attempts = attempts + 1 WHERE run_id = $1
                    RETURNING attempts
                    """, [runID, snapshotText]
                ).rows[0].decode(at: 0, as: Int32.self))
        }

        let rejected = try await crossRowRejections(coordinator, snapshot: snapshot)
        var dryCounts = DryRunCounts()
        for source in config.sources {
            let ranges = try await plan(source, attempt: attempt, coordinator, storeConnection)
            let parents = try await quarantinedParents(of: source.entity, storeConnection)
            // A resumed attempt reads every range again, in its own snapshot: legacy may have
            // changed anywhere since the attempt that was interrupted, in ranges it had finished
            // too, and only a state-based sync of every key makes the result equal a fresh run's.
            // Keys whose streams are current append nothing, so this costs a read, not a rewrite.
            let resumed = attempt > 1
            let pending = resumed ? ranges : ranges.filter { !$0.done }
            let done = Counter(ranges.count - pending.count)
            let totals = Counter64()
            // Each worker keeps one legacy and one store connection and takes ranges in turn.
            let queue = WorkQueue(pending)
            let entityProgress = Locked(DryRunCounts())
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<min(config.workers, pending.count) {
                    group.addTask {
                        let legacy = try await Connection.connect(config.legacyDSN, applicationName: "ledgerlift-backfill")
                        defer { legacy.close() }
                        let store = config.dryRun ? nil : try await Connection.connect(config.storeDSN, applicationName: "ledgerlift-backfill")
                        defer { store?.close() }
                        while let range = queue.next() {
                            let outcome = try await processRange(
                                range, source: source, snapshotID: snapshotID, snapshotText: snapshotText,
                                rejected: rejected[source.entity] ?? [:], parents: parents, resumed: resumed,
                                legacy: legacy, store: store)
                            entityProgress.update { $0.add(outcome) }
                            let doneNow = done.increment()
                            let (rows, events) = totals.add(outcome.rowsRead, outcome.events)
                            config.logger.debug(
                                "range done",
                                metadata: [
                                    "run_id": "\(runID)", "entity": "\(source.entity)", "range": "\(range.ordinal)",
                                    "ranges_done": "\(doneNow)/\(ranges.count)", "rows": "\(outcome.rowsRead)",
                                    "events": "\(outcome.events)",
                                ])
                            progress?(
                                Progress(
                                    entity: source.entity, rangesDone: doneNow, rangesTotal: ranges.count, rowsRead: rows,
                                    events: events))
                        }
                    }
                }
                try await group.waitForAll()
            }
            dryCounts.merge(entityProgress.value)
            let (rows, events) = totals.add(0, 0)
            config.logger.info(
                "entity done",
                metadata: [
                    "run_id": "\(runID)", "entity": "\(source.entity)", "ranges": "\(ranges.count)",
                    "ranges_resumed": "\(ranges.count - pending.count)", "rows": "\(rows)", "events": "\(events)",
                ])
            if config.dryRun {
                let counted = try await legacyRowCount(source, coordinator)
                let read = entityProgress.value.entities[source.entity]
                let accounted = (read?.rowsMigrated ?? 0) + (read?.rowsQuarantined ?? 0)
                if counted != accounted {
                    throw BackfillError.unaccounted(entity: source.entity, legacyRows: counted, accounted: accounted)
                }
                dryCounts.legacyRows[source.entity] = counted
            } else {
                try await recordLegacyRows(source, attempt: attempt, coordinator, storeConnection)
            }
        }
        await LegacySnapshot.close(on: coordinator)
        if config.dryRun { return dryCounts.report(runID: runID) }
        let summary = try await report(storeConnection, dryRun: false, extra: nil)
        // Conservation from the source: every row the mapping query returns in this attempt's
        // snapshot was read in it (a resumed attempt reads every range again) and migrated or
        // quarantined.
        if let entity = summary.entities.first(where: { $0.legacyRows != nil && $0.legacyRows != $0.rowsRead }) {
            throw BackfillError.unaccounted(
                entity: entity.entity, legacyRows: entity.legacyRows!, accounted: entity.rowsMigrated + entity.rowsQuarantined)
        }
        try await storeConnection.execute("UPDATE \(s).backfill_runs SET finished_at = now() WHERE run_id = $1", [runID])
        return try await report(storeConnection, dryRun: false, extra: nil)
    }

    /// The findings of a `mapping check` report that stop a backfill: every error except
    /// ``MappingFinding/Code/keyNotUnique``. Several rows with one key are a finding about the
    /// data the backfill handles itself: it quarantines them together as `duplicate_key`, keeping
    /// every row (`docs/mapping.md`). Warnings and notes never stop it.
    public static func refusals(in report: MappingReport) -> [MappingFinding] {
        // Shadow mode's findings (sources that miss a table, a by_key that disagrees) say
        // nothing about what the backfill reads: `shadow install` refuses on them instead.
        report.errors.filter { $0.code != .keyNotUnique && !$0.code.concernsShadowModeOnly }
    }

    /// The store's backfill lock (`ledgerlift.backfill/<schema>`): one run — or reset — at a
    /// time. An operator takes it from psql with ``AdvisoryLock/psql``.
    public static func lock(for store: EventStore) -> AdvisoryLock { AdvisoryLock("ledgerlift.backfill/" + store.schema) }

    /// Takes the store's backfill lock for the session (released by ``unlock`` or when the
    /// connection closes).
    ///
    /// - Throws: ``BackfillError/busy(holder:)`` naming the holder when `wait` is false.
    public static func lock(_ store: EventStore, _ session: Session, wait: Bool) throws {
        let lock = lock(for: store)
        if wait {
            try session.lock(lock)
            return
        }
        // A run that has just ended may still hold the lock for the moment its server process
        // takes to notice the closed connection: a few short retries tell that apart from a run.
        for attempt in 0..<10 {
            if try session.tryLock(lock) { return }
            if attempt < 9 { usleep(100_000) }
        }
        throw BackfillError.busy(holder: try session.holder(of: lock) ?? "a session that has just ended")
    }

    /// Refuses a store that holds a run of another legacy database or another mapping.
    func checkIdentity(_ identity: LegacyIdentity, _ tx: Session) throws {
        let s = quoteIdentifier(configuration.store.schema)
        // One run at a time, checked under the lock: no two first runs can race past this.
        for row in try tx.query("SELECT run_id, mapping_sha1, legacy_identity FROM \(s).backfill_runs ORDER BY started_at").rows {
            let otherRun = try row.decode(at: 0, as: String.self)
            if let stored = try row.decode(at: 2, as: String?.self).flatMap(LegacyIdentity.init(text:)), stored != identity {
                throw BackfillError.anotherLegacyDatabase(runID: otherRun, stored: stored, given: identity)
            }
            let fingerprint = try row.decode(at: 1, as: String.self)
            if fingerprint != configuration.mappingFingerprint {
                throw BackfillError.anotherMapping(
                    runID: otherRun, storedFingerprint: fingerprint, givenFingerprint: configuration.mappingFingerprint)
            }
        }
        // A run from before identities were recorded adopts this one.
        try tx.execute("UPDATE \(s).backfill_runs SET legacy_identity = $1 WHERE legacy_identity IS NULL", [identity.text])
    }

    /// `count(*)` of the mapping query in the run's snapshot: NULL and empty keys included.
    func legacyRowCount(_ source: EntitySource, _ coordinator: Connection) async throws -> Int64 {
        try await coordinator.query("SELECT count(*) FROM (\(source.query)) q").rows[0].decode(at: 0, as: Int64.self)
    }

    /// Records what the mapping query returns in this attempt's snapshot, for the report's
    /// conservation check.
    func recordLegacyRows(_ source: EntitySource, attempt: Int, _ coordinator: Connection, _ storeConnection: Connection)
        async throws
    {
        let s = quoteIdentifier(configuration.store.schema)
        let known = try await storeConnection.query(
            "SELECT attempt FROM \(s).backfill_entities WHERE run_id = $1 AND entity = $2", [runID, source.entity.rawValue]
        ).first?.decode(at: 0, as: Int32.self)
        guard known.map({ Int($0) != attempt }) ?? true else { return }
        let count = try await legacyRowCount(source, coordinator)
        try await storeConnection.execute(
            """
            INSERT INTO \(s).backfill_entities (run_id, entity, legacy_rows, attempt) VALUES ($1, $2, $3, $4)
            ON CONFLICT (run_id, entity) DO UPDATE SET legacy_rows = EXCLUDED.legacy_rows, attempt = EXCLUDED.attempt
            """, [runID, source.entity.rawValue, count, Int32(attempt)])
    }

    // MARK: - Planning

    struct KeyRange: Sendable {
        var ordinal: Int
        /// Exclusive; `nil` is the start of the key space.
        var lower: String?
        /// Inclusive; `nil` is the end of the key space.
        var upper: String?
        var done: Bool
    }

    /// The entity's key ranges for this run: planned once (from the snapshot's key
    /// distribution) and reused by every resumed attempt. A fresh plan also records how many
    /// rows the mapping query returns in this snapshot (the same scan counts them).
    func plan(_ source: EntitySource, attempt: Int, _ coordinator: Connection, _ storeConnection: Connection) async throws
        -> [KeyRange]
    {
        let config = configuration
        let s = quoteIdentifier(config.store.schema)
        let runID = runID
        if !config.dryRun {
            let existing = try await storeConnection.query(
                "SELECT ordinal, lower_key, upper_key, done FROM \(s).backfill_ranges WHERE run_id = $1 AND entity = $2 ORDER BY ordinal",
                [runID, source.entity.rawValue]
            ).rows.map {
                KeyRange(ordinal: Int(try $0.decode(at: 0, as: Int32.self)), lower: try $0.decode(at: 1, as: String?.self),
                    upper: try $0.decode(at: 2, as: String?.self), done: try $0.decode(at: 3, as: Bool.self))
            }
            if !existing.isEmpty { return existing }
        }
        let key = quoteIdentifier(source.entity.keyColumn)
        // Each range scans the entity's query once (a mapping query's key is an expression no
        // index serves), so ranges stay few. Entities with a history query get enough ranges
        // that one range's history rows — held in memory while it is read — stay small
        // whatever the table's size (~20,000 keys a range).
        var count = config.rangesPerEntity
        if source.historyQuery != nil {
            let rows = try await coordinator.query("SELECT count(*) FROM (\(source.query)) q").rows[0]
                .decode(at: 0, as: Int64.self)
            count = max(count, Int(rows / Self.keysPerRange) + 1)
        }
        // NULL keys sort last and are counted (count(*)), never bounds: they belong to the first
        // range, whose filter takes them in.
        let tiles = try await coordinator.query(
            """
            SELECT max(k), count(*)::int8 FROM (
                SELECT q.\(key)::text COLLATE "C" AS k, ntile($1) OVER (ORDER BY q.\(key)::text COLLATE "C") AS t
                FROM (\(source.query)) q
            ) x GROUP BY t ORDER BY 1
            """, [Int32(count)]
        ).rows
        let bounds = try tiles.compactMap { try $0.decode(at: 0, as: String?.self) }
        let legacyRows = try tiles.reduce(Int64(0)) { $0 + (try $1.decode(at: 1, as: Int64.self)) }
        // Ranges (lower, upper]: the first starts at nothing, the last is open-ended.
        var ranges = [KeyRange]()
        var lower: String?
        for (i, bound) in bounds.dropLast().enumerated() {
            ranges.append(KeyRange(ordinal: i, lower: lower, upper: bound, done: false))
            lower = bound
        }
        ranges.append(KeyRange(ordinal: ranges.count, lower: lower, upper: nil, done: false))
        let planned = ranges
        if !config.dryRun {
            try await storeConnection.withSession { session in
                try session.transaction { tx in
                    for range in planned {
                        try tx.execute(
                            """
                            INSERT INTO \(s).backfill_ranges (run_id, entity, ordinal, lower_key, upper_key)
                            VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
                            """, [runID, source.entity.rawValue, Int32(range.ordinal), range.lower, range.upper])
                    }
                    try tx.execute(
                        """
                        INSERT INTO \(s).backfill_entities (run_id, entity, legacy_rows, attempt) VALUES ($1, $2, $3, $4)
                        ON CONFLICT (run_id, entity) DO UPDATE SET legacy_rows = EXCLUDED.legacy_rows, attempt = EXCLUDED.attempt
                        """, [runID, source.entity.rawValue, legacyRows, Int32(attempt)])
                }
            }
        }
        return ranges
    }

    /// Keys that cross-row checks reject, per entity, with the first reason found.
    ///
    /// The mapping's own checks come first (they know the legacy schema's caches and rules),
    /// then the built-in rules. Each is a query over the mapping's queries, so they run
    /// concurrently, on up to `workers` connections that import the run's snapshot (they were
    /// a third of a 20,000-customer backfill, one after another); the verdicts are merged in
    /// that fixed order, so the first reason found is the same however the queries interleave.
    func crossRowRejections(_ coordinator: Connection, snapshot: LegacySnapshot) async throws
        -> [Entity: [ExactKey: (String, String)]]
    {
        struct Check: Sendable {
            var entity: Entity
            var reason: String
            var sql: String
            /// A mapping check's second column is its detail, when it returns one.
            var ownCheck: Bool
        }
        var checks = [Check]()
        for source in configuration.sources {
            for check in source.checks {
                checks.append(Check(entity: source.entity, reason: check.reason, sql: "SELECT * FROM (\(check.query)) c", ownCheck: true))
            }
        }
        for check in CrossRowCheck.all {
            guard let sql = check.render(configuration.sources) else { continue }
            checks.append(Check(entity: check.entity, reason: check.reason, sql: sql, ownCheck: false))
        }
        let queue = WorkQueue(Array(checks.indices))
        let allChecks = checks
        let found = Locked([Int: [(key: String, detail: String)]]())
        let legacyDSN = configuration.legacyDSN
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<min(max(1, configuration.workers), allChecks.count) {
                group.addTask {
                    let connection = try await Connection.connect(legacyDSN, applicationName: "ledgerlift-backfill")
                    defer { connection.close() }
                    try await connection.withSession { session in
                        try session.transaction(.init(isolation: .repeatableRead, readOnly: true, snapshot: snapshot.id)) { tx in
                            while let next = queue.next() {
                                let check = allChecks[next]
                                var rows = [(key: String, detail: String)]()
                                for row in try tx.query(check.sql).rows {
                                    // A row without a key is quarantined as key_missing when it is read.
                                    guard let key = try row.decode(at: 0, as: String?.self) else { continue }
                                    let detail =
                                        check.ownCheck
                                        ? (row.values.count > 1 ? row.values[1] ?? check.reason : check.reason)
                                        : try row.decode(at: 1, as: String?.self) ?? check.reason
                                    rows.append((key, detail))
                                }
                                found.update { $0[next] = rows }
                            }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        var rejected = [Entity: [ExactKey: (String, String)]]()
        let results = found.value
        for (index, check) in checks.enumerated() {
            for (key, detail) in results[index] ?? [] where rejected[check.entity]?[ExactKey(key)] == nil {
                rejected[check.entity, default: [:]][ExactKey(key)] = (check.reason, detail)
            }
        }
        return rejected
    }

    /// Keys of the parent entities already quarantined in this run.
    func quarantinedParents(of entity: Entity, _ storeConnection: Connection) async throws -> [Entity: Set<ExactKey>] {
        guard !configuration.dryRun, let links = CrossRowCheck.parents[entity] else { return [:] }
        var result = [Entity: Set<ExactKey>]()
        let quarantine = QuarantineStore(schema: configuration.store.schema)
        for link in links where result[link.parent] == nil {
            result[link.parent] = Set(try await storeConnection.withSession { try quarantine.keys(of: link.parent, in: $0) }.map(ExactKey.init))
        }
        return result
    }
}

/// Work still to do (key ranges, check queries), handed out one at a time to the workers in
/// the order given.
final class WorkQueue<Item: Sendable>: Sendable {
    private let items: Mutex<[Item]>
    init(_ items: [Item]) { self.items = Mutex(items.reversed()) }
    func next() -> Item? { items.withLock { $0.popLast() } }
}

/// A value shared between workers.
final class Locked<Value: Sendable>: Sendable {
    private let stored: Mutex<Value>
    init(_ value: Value) { stored = Mutex(value) }
    func update(_ body: (inout Value) -> Void) { stored.withLock { body(&$0) } }
    var value: Value { stored.withLock { $0 } }
}

/// Ranges done so far, for progress.
final class Counter: Sendable {
    private let value: Mutex<Int>
    init(_ value: Int) { self.value = Mutex(value) }
    func increment() -> Int {
        value.withLock {
            $0 += 1
            return $0
        }
    }
}

/// Rows and events so far, for progress.
final class Counter64: Sendable {
    private let totals = Mutex<(rows: Int64, events: Int64)>((0, 0))
    func add(_ rows: Int64, _ events: Int64) -> (Int64, Int64) {
        totals.withLock {
            $0.rows += rows
            $0.events += events
            return ($0.rows, $0.events)
        }
    }
}
