import Billing
import EventStore
import Foundation
import Postgres

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
        public var store: EventStore
        /// Legacy connections reading key ranges in parallel.
        public var workers: Int
        /// Key ranges per entity (more than workers, so a slow range does not idle the rest).
        public var rangesPerEntity: Int
        /// Events per bulk batch.
        public var batchEvents: Int
        /// Read and synthesize, write nothing.
        public var dryRun: Bool

        public init(
            legacyDSN: String, storeDSN: String, sources: [EntitySource], mappingFingerprint: String,
            store: EventStore = EventStore(), workers: Int = 1, rangesPerEntity: Int? = nil, batchEvents: Int = 5_000,
            dryRun: Bool = false
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
    /// - Parameter progress: called after each key range.
    /// - Returns: the counts of the whole run, across resumed attempts.
    public func run(progress: (@Sendable (Progress) -> Void)? = nil) async throws -> BackfillReport {
        let config = configuration
        let store = config.store
        let storeConnection = try await Connection.connect(config.storeDSN, applicationName: "ledgerlift-backfill")
        defer { storeConnection.close() }
        let runID = runID
        if !config.dryRun {
            let finished = try await storeConnection.withSession { session -> Bool in
                try store.requireInitialized(session)
                try BackfillSchema.create(store, session)
                try session.execute(
                    "INSERT INTO \(quoteIdentifier(store.schema)).backfill_runs (run_id, mapping_sha1) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    [runID, config.mappingFingerprint])
                return try session.query(
                    "SELECT finished_at IS NOT NULL FROM \(quoteIdentifier(store.schema)).backfill_runs WHERE run_id = $1", [runID]
                ).rows[0].decode(at: 0, as: Bool.self)
            }
            if finished { return try await report(storeConnection, dryRun: false, extra: nil) }
        }

        // One snapshot for every worker: the coordinator holds it open for the whole run.
        let coordinator = try await Connection.connect(config.legacyDSN, applicationName: "ledgerlift-backfill")
        defer { coordinator.close() }
        let (snapshotID, snapshotText) = try await coordinator.withSession { session -> (String, String) in
            try session.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            let id = try session.exportSnapshot()
            let text = try session.query("SELECT pg_current_snapshot()::text").rows[0].decode(at: 0, as: String.self)
            return (id, text)
        }
        if !config.dryRun {
            try await storeConnection.execute(
                """
                UPDATE \(quoteIdentifier(store.schema)).backfill_runs
                SET legacy_snapshots = legacy_snapshots || $2::text, attempts = attempts + 1 WHERE run_id = $1
                """, [runID, snapshotText])
        }

        let rejected = try await crossRowRejections(coordinator)
        var dryCounts = DryRunCounts()
        for source in config.sources {
            let ranges = try await plan(source, coordinator, storeConnection)
            let parents = try await quarantinedParents(of: source.entity, storeConnection)
            let pending = ranges.filter { !$0.done }
            let done = Counter(ranges.count - pending.count)
            let totals = Counter64()
            // Each worker keeps one legacy and one store connection and takes ranges in turn.
            let queue = RangeQueue(pending)
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
                                range, source: source, snapshotID: snapshotID, rejected: rejected[source.entity] ?? [:],
                                parents: parents, legacy: legacy, store: store)
                            entityProgress.update { $0.add(outcome) }
                            let doneNow = done.increment()
                            let (rows, events) = totals.add(outcome.rowsRead, outcome.events)
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
        }
        _ = try? await coordinator.execute("ROLLBACK")
        if config.dryRun { return dryCounts.report(runID: runID) }
        try await storeConnection.execute(
            "UPDATE \(quoteIdentifier(store.schema)).backfill_runs SET finished_at = now() WHERE run_id = $1", [runID])
        return try await report(storeConnection, dryRun: false, extra: nil)
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
    /// distribution) and reused by every resumed attempt.
    func plan(_ source: EntitySource, _ coordinator: Connection, _ storeConnection: Connection) async throws -> [KeyRange] {
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
        let bounds = try await coordinator.query(
            """
            SELECT max(k) FROM (
                SELECT q.\(key)::text COLLATE "C" AS k, ntile($1) OVER (ORDER BY q.\(key)::text COLLATE "C") AS t
                FROM (\(source.query)) q
            ) x GROUP BY t ORDER BY 1
            """, [Int32(count)]
        ).rows.compactMap { try $0.decode(at: 0, as: String?.self) }
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
                for range in planned {
                    try session.execute(
                        """
                        INSERT INTO \(s).backfill_ranges (run_id, entity, ordinal, lower_key, upper_key)
                        VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
                        """, [runID, source.entity.rawValue, Int32(range.ordinal), range.lower, range.upper])
                }
            }
        }
        return ranges
    }

    /// Keys that cross-row checks reject, per entity, with the first reason found.
    func crossRowRejections(_ coordinator: Connection) async throws -> [Entity: [String: (String, String)]] {
        let queries = Dictionary(uniqueKeysWithValues: configuration.sources.map { ($0.entity, $0.query) })
        var rejected = [Entity: [String: (String, String)]]()
        // The mapping's own checks first: they know the legacy schema's caches and rules.
        for source in configuration.sources {
            for check in source.checks {
                for row in try await coordinator.query("SELECT * FROM (\(check.query)) c").rows {
                    guard let key = try row.decode(at: 0, as: String?.self) else { continue }
                    if rejected[source.entity]?[key] == nil {
                        let detail = row.values.count > 1 ? row.values[1] ?? check.reason : check.reason
                        rejected[source.entity, default: [:]][key] = (check.reason, detail)
                    }
                }
            }
        }
        for check in CrossRowCheck.all {
            guard let sql = check.render(queries) else { continue }
            for row in try await coordinator.query(sql).rows {
                let key = try row.decode(at: 0, as: String.self)
                if rejected[check.entity]?[key] == nil {
                    rejected[check.entity, default: [:]][key] = (check.reason, try row.decode(at: 1, as: String?.self) ?? check.reason)
                }
            }
        }
        return rejected
    }

    /// Keys of the parent entities already quarantined in this run.
    func quarantinedParents(of entity: Entity, _ storeConnection: Connection) async throws -> [Entity: Set<String>] {
        guard !configuration.dryRun, let links = CrossRowCheck.parents[entity] else { return [:] }
        var result = [Entity: Set<String>]()
        for link in links where result[link.parent] == nil {
            let keys = try await storeConnection.query(
                "SELECT entity_key FROM \(quoteIdentifier(configuration.store.schema)).quarantine WHERE entity = $1",
                [link.parent.rawValue]
            ).rows.map { try $0.decode(at: 0, as: String.self) }
            result[link.parent] = Set(keys)
        }
        return result
    }
}

/// The ranges still to read, handed out one at a time to the workers.
final class RangeQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var ranges: [Backfill.KeyRange]
    init(_ ranges: [Backfill.KeyRange]) { self.ranges = ranges.reversed() }
    func next() -> Backfill.KeyRange? {
        lock.lock()
        defer { lock.unlock() }
        return ranges.popLast()
    }
}

/// A value shared between workers.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    func update(_ body: (inout Value) -> Void) {
        lock.lock()
        body(&stored)
        lock.unlock()
    }
    var value: Value {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }
}

/// Thread-safe counters for progress.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int
    init(_ value: Int) { self.value = value }
    func increment() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value
    }
}

final class Counter64: @unchecked Sendable {
    private let lock = NSLock()
    private var rows: Int64 = 0
    private var events: Int64 = 0
    func add(_ r: Int64, _ e: Int64) -> (Int64, Int64) {
        lock.lock()
        defer { lock.unlock() }
        rows += r
        events += e
        return (rows, events)
    }
}
