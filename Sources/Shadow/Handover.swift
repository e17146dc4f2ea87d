import EventStore
import Postgres

/// The handover from backfill to shadow mode: whether every legacy change is either in what the
/// backfill read or in the capture outbox — no gap — and which captured changes the backfill
/// already holds — no duplicate work.
///
/// Capture records changes from the transaction that installed it on. The backfill records the
/// legacy snapshot(s) it read with (`backfill_runs.legacy_snapshots`,
/// `backfill_ranges.legacy_snapshot`). If every such snapshot saw the install committed, every
/// change is in one of the two: a change committed before the snapshot was read by the backfill,
/// a later one committed after the install and was captured. If a snapshot did not see it, the
/// changes committed between that snapshot and the install are in neither: a **gap**, which
/// `ledgerlift shadow resync` closes (it compares every key with legacy and syncs those that
/// differ, and records that it ran after the install).
public enum Handover {
    /// Checks the handover (read only on both sides).
    ///
    /// - Parameters:
    ///   - legacy: the legacy database (holds `ledgerlift_capture`).
    ///   - store: the event store's database (holds the backfill's and resync's records).
    ///   - storeSchema: the event store's schema.
    ///   - capture: the capture schema.
    /// - Throws: connection and SQL errors only; every state of the databases is a verdict.
    public static func check(
        legacy: Connection, store: Connection, storeSchema: String = EventStore().schema,
        capture: CaptureSchema = CaptureSchema()
    ) async throws -> HandoverVerdict {
        let installs = try await legacy.withSession { try captureInstalls(capture, $0) }
        guard let installs, !installs.isEmpty else { return .captureNotInstalled }
        let backfill = try await store.withSession { try backfillState(storeSchema, $0) }
        let snapshots: BackfillSnapshots
        switch backfill {
        case .none: return .noBackfill
        case .unfinished(let runID): return .backfillUnfinished(runID: runID)
        case .finished(let found): snapshots = found
        }
        let resyncs = try await store.withSession { try finishedResyncs(storeSchema, $0) }
        // pg_visible_in_snapshot decides, in the legacy database whose transactions these are.
        let unseen: [(HandoverInstall, [String])] = try await legacy.withSession { session in
            try installs.map { install in
                let notSeeing = try session.query(
                    "SELECT s FROM unnest($2::text[]) s WHERE NOT pg_visible_in_snapshot($1::xid8, s::pg_snapshot)",
                    [install.xid, PostgresArray(snapshots.snapshots)]
                ).rows.map { try $0.decode(at: 0, as: String.self) }
                return (install, notSeeing)
            }
        }
        var resyncedAfter: [ResyncRecordSummary] = []
        for (install, notSeeing) in unseen where !notSeeing.isEmpty {
            // A finished resync whose starting snapshot saw this install compared everything the
            // gap could hide, for the entities it covered.
            let covering = try await legacy.withSession { session in
                try resyncs.filter { resync in
                    try session.query(
                        "SELECT pg_visible_in_snapshot($1::xid8, $2::pg_snapshot)",
                        [install.xid, resync.legacySnapshot]
                    ).rows[0].decode(at: 0, as: Bool.self)
                }
            }
            let covered = Set(covering.flatMap(\.entities))
            let missing = snapshots.entities.filter { !covered.contains($0) }
            if !missing.isEmpty {
                return .gap(
                    HandoverGap(
                        install: install, snapshotsNotSeeing: notSeeing.count, snapshots: snapshots.snapshots.count,
                        entities: missing))
            }
            resyncedAfter.append(contentsOf: covering)
        }
        return .ready(
            HandoverReady(
                installs: installs, backfillRun: snapshots.runID, snapshots: snapshots.snapshots.count,
                closedByResync: resyncedAfter.max { $0.id < $1.id }.map(\.id),
                closedAt: resyncedAfter.max { $0.id < $1.id }.map(\.finishedAt)))
    }

    /// The tailer's guard, in the form its configuration takes (`ShadowTailer.Configuration.preflight`):
    /// throws the ``HandoverError`` naming the fix unless the verdict is ready.
    public static func preflight(
        storeSchema: String = EventStore().schema, capture: CaptureSchema = CaptureSchema()
    ) -> @Sendable (_ legacy: Connection, _ store: Connection, _ backfillSnapshots: [String]) async throws -> Void {
        { legacy, store, _ in
            try await check(legacy: legacy, store: store, storeSchema: storeSchema, capture: capture).requireReady()
        }
    }

    /// The snapshots the finished backfill read with: which captured changes it already holds.
    ///
    /// - Returns: `nil` when the store holds no finished backfill.
    public static func backfillSnapshots(store: Connection, storeSchema: String = EventStore().schema) async throws
        -> BackfillSnapshots?
    {
        let state = try await store.withSession { try backfillState(storeSchema, $0) }
        if case .finished(let snapshots) = state { return snapshots }
        return nil
    }

    // MARK: - Reading

    /// The installs that started capturing a table (`tables_added` not empty), oldest first;
    /// `nil` when capture is not installed. An install that only regenerated triggers did so in
    /// one transaction with the old ones in place until it committed: no change escaped.
    static func captureInstalls(_ capture: CaptureSchema, _ session: Session) throws -> [HandoverInstall]? {
        guard try capture.version(session) != nil else { return nil }
        return try session.query(
            """
            SELECT id, xid::text, installed_at, array_to_string(tables_added, ',')
              FROM \(capture.s).installs WHERE cardinality(tables_added) > 0 ORDER BY id
            """
        ).rows.map { row in
            HandoverInstall(
                id: try row.decode(at: 0, as: Int64.self), xid: try row.decode(at: 1, as: String.self),
                installedAt: try row.decode(at: 2, as: PostgresTimestamp.self),
                tablesAdded: try row.decode(at: 3, as: String.self).split(separator: ",").map(String.init))
        }
    }

    enum BackfillState {
        case none
        case unfinished(String)
        case finished(BackfillSnapshots)
    }

    /// The backfill's record in the store.
    ///
    /// Which snapshots count: each done range's (`backfill_ranges.legacy_snapshot`, the attempt
    /// that read it) and the finishing attempt's (the last of `legacy_snapshots`, which counted
    /// the rows). An earlier, interrupted attempt's snapshot does not: a resumed attempt reads
    /// every range again in its own snapshot and syncs each key to it (state-based), so nothing
    /// only the interrupted attempt saw survives — and capture installed between two attempts
    /// leaves no gap.
    static func backfillState(_ storeSchema: String, _ session: Session) throws -> BackfillState {
        let s = quoteIdentifier(storeSchema)
        let exists = try session.query("SELECT to_regclass($1) IS NOT NULL", [s + ".backfill_runs"]).rows[0]
            .decode(at: 0, as: Bool.self)
        guard exists else { return .none }
        let runs = try session.query(
            """
            SELECT run_id, finished_at IS NOT NULL, legacy_snapshots[cardinality(legacy_snapshots)]
              FROM \(s).backfill_runs ORDER BY started_at
            """
        ).rows
        guard !runs.isEmpty else { return .none }
        if let unfinished = try runs.first(where: { try !$0.decode(at: 1, as: Bool.self) }) {
            return .unfinished(try unfinished.decode(at: 0, as: String.self))
        }
        var snapshots = [String]()
        for run in runs {
            if let last = try run.decode(at: 2, as: String?.self) { snapshots.append(last) }
        }
        let ranges = try session.query(
            """
            SELECT DISTINCT legacy_snapshot FROM \(s).backfill_ranges
             WHERE done AND legacy_snapshot IS NOT NULL ORDER BY 1
            """
        ).rows.map { try $0.decode(at: 0, as: String.self) }
        for snapshot in ranges where !snapshots.contains(snapshot) { snapshots.append(snapshot) }
        let entities = try session.query("SELECT DISTINCT entity FROM \(s).backfill_ranges ORDER BY 1").rows
            .map { try $0.decode(at: 0, as: String.self) }
        return .finished(
            BackfillSnapshots(
                runID: try runs.last!.decode(at: 0, as: String.self), snapshots: snapshots, entities: entities))
    }

    /// The resyncs that finished, each with the legacy snapshot it started from.
    static func finishedResyncs(_ storeSchema: String, _ session: Session) throws -> [ResyncRecordSummary] {
        let records = ShadowRecords(schema: storeSchema)
        guard try records.exists("shadow_resyncs", session) else { return [] }
        return try session.query(
            """
            SELECT id, legacy_snapshot, array_to_string(entities, ','), finished_at
              FROM \(records.resyncs) WHERE finished_at IS NOT NULL ORDER BY id
            """
        ).rows.map { row in
            ResyncRecordSummary(
                id: try row.decode(at: 0, as: Int64.self), legacySnapshot: try row.decode(at: 1, as: String.self),
                entities: try row.decode(at: 2, as: String.self).split(separator: ",").map(String.init),
                finishedAt: try row.decode(at: 3, as: PostgresTimestamp.self))
        }
    }
}

/// A finished resync, as the handover check reads it.
struct ResyncRecordSummary: Sendable, Hashable {
    var id: Int64
    var legacySnapshot: String
    var entities: [String]
    var finishedAt: PostgresTimestamp
}

/// An install that started capturing tables.
public struct HandoverInstall: Sendable, Hashable {
    /// `ledgerlift_capture.installs.id`.
    public var id: Int64
    /// The installing transaction (`xid8` text).
    public var xid: String
    public var installedAt: PostgresTimestamp
    /// The tables it started capturing.
    public var tablesAdded: [String]
}

/// No gap: what the check found.
public struct HandoverReady: Sendable, Hashable {
    /// The installs that started capturing tables, oldest first.
    public var installs: [HandoverInstall]
    /// The backfill run.
    public var backfillRun: String
    /// How many distinct snapshots the backfill read with.
    public var snapshots: Int
    /// The resync (`shadow_resyncs.id`) that closed a gap, if there was one.
    public var closedByResync: Int64?
    /// When that resync finished.
    public var closedAt: PostgresTimestamp?
}

/// Capture installed after (part of) the backfill read legacy.
public struct HandoverGap: Sendable, Hashable {
    /// The install the backfill did not see.
    public var install: HandoverInstall
    /// Backfill snapshots that did not see it, of `snapshots`.
    public var snapshotsNotSeeing: Int
    public var snapshots: Int
    /// Entities the backfill migrated that no later resync has covered.
    public var entities: [String]
}

/// The outcome of ``Handover/check(legacy:store:storeSchema:capture:)``.
public enum HandoverVerdict: Sendable, Hashable, CustomStringConvertible {
    /// No gap: the tailer may run.
    case ready(HandoverReady)
    /// No `ledgerlift_capture` schema (or no install recorded in it).
    case captureNotInstalled
    /// The store holds no backfill run.
    case noBackfill
    /// A backfill run has not finished.
    case backfillUnfinished(runID: String)
    /// Changes may have been lost between the backfill's snapshot and the install.
    case gap(HandoverGap)

    public var isReady: Bool {
        if case .ready = self { return true }
        return false
    }

    /// A stable snake_case name for JSON and logs: `ready`, `capture_not_installed`,
    /// `no_backfill`, `backfill_unfinished`, `gap`.
    public var name: String {
        switch self {
        case .ready: "ready"
        case .captureNotInstalled: "capture_not_installed"
        case .noBackfill: "no_backfill"
        case .backfillUnfinished: "backfill_unfinished"
        case .gap: "gap"
        }
    }

    /// Why the tailer must not start, naming the fix; `nil` when ready.
    public var error: HandoverError? {
        switch self {
        case .ready: nil
        case .captureNotInstalled: .captureNotInstalled
        case .noBackfill: .noBackfill
        case .backfillUnfinished(let runID): .backfillUnfinished(runID: runID)
        case .gap(let gap): .gap(gap)
        }
    }

    /// Throws ``error`` unless ready: the tailer's guard.
    public func requireReady() throws(HandoverError) {
        if let error { throw error }
    }

    public var description: String {
        switch self {
        case .ready(let ready):
            if let resync = ready.closedByResync {
                // The install came after (part of) the backfill's reads: saying "no gap" there
                // would contradict the resync that was needed.
                "capture was installed after the backfill read legacy; the gap was closed by resync #\(resync)"
                    + (ready.closedAt.map { " at \($0)" } ?? "")
            } else {
                "no gap: capture was installed before the backfill read legacy (\(ready.snapshots) backfill snapshot(s) "
                    + "saw every install)"
            }
        default: error!.description
        }
    }
}

/// Why shadow mode's tailer must not start: each names the command that fixes it.
public enum HandoverError: Error, Sendable, Hashable, CustomStringConvertible {
    case captureNotInstalled
    case noBackfill
    case backfillUnfinished(runID: String)
    case gap(HandoverGap)

    /// The resync command line, DSNs left for the operator to fill in (never printed).
    public static let resyncCommand = "ledgerlift shadow resync --legacy … --store … --mapping …"

    public var description: String {
        switch self {
        case .captureNotInstalled:
            "capture is not installed in the legacy database (no ledgerlift_capture schema with an install): run "
                + "`ledgerlift shadow install --legacy … --mapping …` first — before the backfill, so no change is missed"
        case .noBackfill:
            "the store holds no backfill: run `ledgerlift backfill --legacy … --store … --mapping …` (with capture "
                + "installed, so changes during the backfill are captured) before the tailer"
        case .backfillUnfinished(let runID):
            "backfill run \(runID) has not finished: run `ledgerlift backfill --legacy … --store … --mapping …` again "
                + "(it resumes) before the tailer"
        case .gap(let gap):
            "capture was installed (install #\(gap.install.id), transaction \(gap.install.xid), "
                + "\(gap.install.installedAt.iso8601)) after the backfill read the legacy database: "
                + "\(gap.snapshotsNotSeeing) of \(gap.snapshots) backfill snapshot(s) did not see it, so legacy changes "
                + "committed between the backfill's read and the install are neither migrated nor captured "
                + "(\(gap.entities.joined(separator: ", "))). Run `\(Self.resyncCommand)`: it finds every key whose "
                + "read model differs from legacy, syncs exactly those, and records that the gap is closed; then start "
                + "the tailer"
        }
    }
}

/// The snapshots a finished backfill read the legacy database with: a captured change whose
/// transaction every one of them saw committed is already in the backfill, and the tailer may
/// skip it (applying it would be harmless — sync is state-based — but costs a read per key).
public struct BackfillSnapshots: Sendable, Hashable {
    /// The backfill run.
    public var runID: String
    /// `pg_current_snapshot()` texts (`xmin:xmax:xip,…`).
    public var snapshots: [String]
    /// The entities the backfill migrated.
    public var entities: [String]

    public init(runID: String, snapshots: [String], entities: [String]) {
        self.runID = runID
        self.snapshots = snapshots
        self.entities = entities
    }

    /// Whether every snapshot saw the transaction `xid` (an `xid8` as text) committed — what
    /// `pg_visible_in_snapshot` answers for a transaction that committed, computed here so the
    /// tailer decides per change without a round trip. `false` with no snapshots.
    public func sawInEvery(_ xid: String) -> Bool {
        guard let value = UInt64(xid), !snapshots.isEmpty else { return false }
        return parsed.allSatisfy { $0?.sees(value) ?? false }
    }

    /// Transactions from this `xid8` on were seen by no snapshot (the largest `xmax`): past it,
    /// the tailer need not ask.
    public var seenBelow: UInt64 { parsed.compactMap { $0?.xmax }.max() ?? 0 }

    /// The same test in SQL, for the tailer's query over `ledgerlift_capture.changes`: true when
    /// every snapshot of the text array parameter `$n` saw the column `xidColumn`'s transaction.
    public static func seenByEverySQL(xidColumn: String, parameter n: Int) -> String {
        "NOT EXISTS (SELECT 1 FROM unnest($\(n)::text[]) AS bs(s) WHERE NOT pg_visible_in_snapshot(\(xidColumn), bs.s::pg_snapshot))"
    }

    private var parsed: [SnapshotVisibility?] { snapshots.map(SnapshotVisibility.init) }
}

/// A `pg_snapshot` as text, `xmin:xmax:xip1,xip2,…`: transactions below `xmin` had finished,
/// those from `xmax` on had not started, those listed in between were running.
struct SnapshotVisibility: Sendable, Hashable {
    let xmin: UInt64
    let xmax: UInt64
    let running: Set<UInt64>

    init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, let xmin = UInt64(parts[0]), let xmax = UInt64(parts[1]) else { return nil }
        var running = Set<UInt64>()
        for item in parts[2].split(separator: ",") {
            guard let xid = UInt64(item) else { return nil }
            running.insert(xid)
        }
        self.xmin = xmin
        self.xmax = xmax
        self.running = running
    }

    /// Whether a transaction that committed was visible (committed before the snapshot).
    func sees(_ xid: UInt64) -> Bool {
        xid < xmin || (xid < xmax && !running.contains(xid))
    }
}
