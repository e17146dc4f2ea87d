import Billing
import Diff
import EventStore
import Foundation
import Logging
import Mapping
import Migration
import Postgres
import TextFormats

/// Every key whose read model differs from legacy, per entity, taken from a diff report: what a
/// resync syncs.
///
/// A key missing in the ledger, extra in it, or mismatched is synced alike: the sync re-reads
/// the key's legacy row and appends what takes the ledger's stream there (a `…Deleted` event
/// for a key legacy no longer has).
public struct ResyncPlan: Sendable, Hashable {
    /// One entity's differing keys, bytewise ordered, by kind.
    public struct EntityKeys: Sendable, Hashable {
        public var entity: Entity
        public var missingInLedger: [String]
        public var extraInLedger: [String]
        public var mismatched: [String]
        /// Differences the report counted but did not list (beyond the diff's
        /// `maxReverifiedKeys`): a later round finds them.
        public var unlisted: Int64
        /// Legacy rows without a usable key that the quarantine does not account for: there is
        /// no key to sync them by (the mapping must give them one).
        public var keyless: Int64

        public var keys: [String] { missingInLedger + extraInLedger + mismatched }
    }

    /// Per entity with a difference, in the report's (canonical) order.
    public var entities: [EntityKeys]

    /// Reads the differing keys of `report`. Listing every difference needs the diff run with
    /// `maxRows` and `maxReverifiedKeys` above the number of differences; what it did not list
    /// is counted in ``EntityKeys/unlisted``.
    public init(_ report: DiffReport) {
        entities = report.entities.compactMap { diff in
            guard !diff.isClean else { return nil }
            var keys = EntityKeys(
                entity: diff.entity, missingInLedger: [], extraInLedger: [], mismatched: [], unlisted: 0, keyless: 0)
            for difference in diff.differences {
                // The diff lists legacy rows without a key first, under `<null>`, as missing.
                if difference.key == Quarantine.nullKey && difference.kind == .missingInLedger {
                    keys.keyless += 1
                    continue
                }
                switch difference.kind {
                case .missingInLedger: keys.missingInLedger.append(difference.key)
                case .extraInLedger: keys.extraInLedger.append(difference.key)
                case .mismatched: keys.mismatched.append(difference.key)
                }
            }
            keys.unlisted = diff.differenceCount - Int64(diff.differences.count)
            return keys
        }
    }

    /// The keys to sync, per entity (what ``ShadowSync`` takes).
    public var keys: [Entity: Set<String>] {
        var out = [Entity: Set<String>]()
        for entity in entities where !entity.keys.isEmpty { out[entity.entity] = Set(entity.keys) }
        return out
    }

    /// Keys to sync over all entities.
    public var keyCount: Int { entities.reduce(0) { $0 + $1.keys.count } }
    /// Differences not listed: another round after this one's sync lists them.
    public var unlisted: Int64 { entities.reduce(0) { $0 + $1.unlisted } }
    public var keyless: Int64 { entities.reduce(0) { $0 + $1.keyless } }
    public var isEmpty: Bool { keyCount == 0 }
}

/// `ledgerlift shadow resync`: finds every key whose read model differs from legacy (the diff's
/// checksum bisection) and syncs exactly those keys through the tailer's path, then diffs again.
///
/// Used to close a handover gap (capture installed after the backfill read legacy) and as the
/// repair tool after any incident. It holds the tailer's advisory lock for its whole run, so it
/// never runs beside a tailer of that name, and records itself in `shadow_resyncs`: a finished
/// resync whose starting snapshot saw the capture install closes the gap for the entities it
/// covered (``Handover``).
public struct Resync: Sendable {
    public struct Options: Sendable {
        public var legacyDSN: String
        public var storeDSN: String
        public var mapping: MappingFile
        /// Entities to resync; `nil` for every entity the mapping maps.
        public var entities: [Entity]?
        public var storeSchema: String
        public var readSchema: String
        /// The tailer whose lock is taken.
        public var tailerName: String
        /// Differing keys listed (and synced) per entity per round.
        public var keysPerRound: Int
        /// Rounds at most (each a diff and a sync), when an entity has more differences than
        /// one round lists.
        public var maxRounds: Int
        /// How long the final diff waits for a live projector before re-checking.
        public var catchUpTimeout: Duration
        public var logger = Logger(label: "ledgerlift.shadow.resync", factory: { _ in SwiftLogNoOpLogHandler() })

        public init(
            legacyDSN: String, storeDSN: String, mapping: MappingFile, entities: [Entity]? = nil,
            storeSchema: String = EventStore().schema, readSchema: String = "ledgerlift_read",
            tailerName: String = "default", keysPerRound: Int = 1_000_000, maxRounds: Int = 5,
            catchUpTimeout: Duration = .seconds(30)
        ) {
            self.legacyDSN = legacyDSN
            self.storeDSN = storeDSN
            self.mapping = mapping
            self.entities = entities
            self.storeSchema = storeSchema
            self.readSchema = readSchema
            self.tailerName = tailerName
            self.keysPerRound = keysPerRound
            self.maxRounds = maxRounds
            self.catchUpTimeout = catchUpTimeout
        }
    }

    /// What a sync of some keys did.
    public struct SyncCounts: Sendable, Hashable {
        public var keysRead: Int
        public var eventsAppended: Int
        public var quarantined: Int

        public init(keysRead: Int, eventsAppended: Int, quarantined: Int = 0) {
            self.keysRead = keysRead
            self.eventsAppended = eventsAppended
            self.quarantined = quarantined
        }
    }

    /// Syncs the given keys from legacy to the ledger and returns once the read models show
    /// what it appended (the diff that follows reads them): ``ShadowSync`` with origin resync,
    /// then a projection catch-up.
    public typealias Sync = @Sendable (_ keys: [Entity: Set<String>]) async throws -> SyncCounts

    public let options: Options

    public init(_ options: Options) {
        self.options = options
    }

    /// The advisory lock a tailer named `name` holds while it runs, in the store database: a
    /// resync takes it too, so the two never run at once.
    public static func tailerLock(name: String) -> AdvisoryLock { AdvisoryLock("ledgerlift.shadow/" + name) }

    /// Runs the resync.
    ///
    /// - Parameters:
    ///   - prepare: runs once the resync holds the tailer's lock and its preconditions hold,
    ///     before anything is recorded: brings the read models up to date (builds them when
    ///     they were never built), so the first diff has something to read.
    ///   - sync: syncs one round's keys.
    /// - Throws: ``ResyncError/noFinishedBackfill(runID:)`` and
    ///   ``ResyncError/mappingIncomplete(problems:)`` before anything is recorded, as
    ///   `shadow run` and `shadow install` refuse; a resync that fails once recorded keeps its
    ///   row in `shadow_resyncs` with the `error` (never with `finished_at`).
    public func run(prepare: (@Sendable () async throws -> Void)? = nil, sync: Sync) async throws(ResyncError)
        -> ResyncReport
    {
        let options = options
        let entities = options.entities ?? Entity.allCases.filter { options.mapping[entity: $0] != nil }
        let records = ShadowRecords(schema: options.storeSchema)
        let lock = Self.tailerLock(name: options.tailerName)
        let store: Connection
        let legacy: Connection
        do {
            store = try await Connection.connect(options.storeDSN, applicationName: "ledgerlift shadow resync")
        } catch { throw ResyncError.connect(side: "store", "\(error)") }
        defer { store.close() }
        do {
            legacy = try await Connection.connect(options.legacyDSN, applicationName: "ledgerlift shadow resync")
        } catch { throw ResyncError.connect(side: "legacy", "\(error)") }
        defer { legacy.close() }

        let resyncID: Int64
        do {
            let holder = try await store.withSession { session -> String? in
                // A tailer that has just stopped may hold the lock until its server process
                // notices the closed connection: a few short retries tell that apart.
                for attempt in 0..<10 {
                    if try session.tryLock(lock) { return nil }
                    if attempt < 9 { usleep(100_000) }
                }
                return try session.holder(of: lock) ?? "a session that has just ended"
            }
            if let holder { throw ResyncError.tailerRunning(name: options.tailerName, holder: holder) }
            // The same refusals as `shadow run` (a resync appends through the tailer's path, on
            // top of a finished backfill of this very mapping) and `shadow install` (a table the
            // mapping reads that capture misses: its later changes would never reach the ledger).
            // Coverage first: an incomplete mapping has its own fingerprint, so it has no backfill
            // either, and that refusal would not say what to fix.
            let coverage = try await legacy.withSession { [options] in
                try MappingCoverage.analyze(options.mapping, in: $0)
            }
            guard coverage.isComplete else { throw ResyncError.mappingIncomplete(problems: coverage.problems) }
            let eventStore = EventStore(schema: options.storeSchema)
            let backfill = try await store.withSession { [options] session in
                try ShadowTailer.finishedBackfill(of: options.mapping, store: eventStore, in: session)
            }
            guard backfill != nil else {
                let runID = Backfill(.init(legacyDSN: "", storeDSN: "", mapping: options.mapping, store: eventStore))
                    .runID
                throw ResyncError.noFinishedBackfill(runID: runID)
            }
            if let prepare {
                do { try await prepare() } catch {
                    throw ResyncError.failed(doing: "bringing the read models up to date", "\(error)")
                }
            }
            // Read before the diff opens its snapshot: everything this snapshot saw, the diff saw.
            let snapshot = try await legacy.query("SELECT pg_current_snapshot()::text").rows[0].decode(
                at: 0, as: String.self)
            resyncID = try await store.withSession { session in
                try records.create(session)
                return try session.query(
                    "INSERT INTO \(records.resyncs) (legacy_snapshot, entities) VALUES ($1, $2::text[]) RETURNING id",
                    [snapshot, PostgresArray(entities.map(\.rawValue))]
                ).rows[0].decode(at: 0, as: Int64.self)
            }
        } catch let error as ResyncError {
            throw error
        } catch {
            throw ResyncError.failed(doing: "preparing the resync", "\(error)")
        }

        do {
            return try await rounds(resyncID, records: records, lock: lock, store: store, sync: sync)
        } catch {
            // Recorded, so the next resync's number is explained: this one failed, and why.
            // Best effort: the store may be what failed.
            _ = try? await store.execute(
                "UPDATE \(records.resyncs) SET error = $2 WHERE id = $1", [resyncID, error.description])
            throw error
        }
    }

    /// The diff-and-sync rounds of the resync recorded as `resyncID`, and its record.
    private func rounds(
        _ resyncID: Int64, records: ShadowRecords, lock: AdvisoryLock, store: Connection, sync: Sync
    ) async throws(ResyncError) -> ResyncReport {
        let options = options
        var rounds = [ResyncRound]()
        var before: DiffReport?
        var after: DiffReport
        while true {
            // No re-verification while planning: the tailer is stopped (this holds its lock), so
            // a re-check would find the same differences; syncing a key that raced is harmless.
            let report = try await diff(reverify: false)
            if before == nil { before = report }
            let plan = ResyncPlan(report)
            if plan.isEmpty {
                after = report
                break
            }
            let counts: SyncCounts
            do {
                counts = try await sync(plan.keys)
            } catch {
                throw ResyncError.failed(doing: "syncing \(plan.keyCount) key(s)", "\(error)")
            }
            rounds.append(ResyncRound(plan: plan, counts: counts))
            options.logger.info(
                "resync round",
                metadata: [
                    "round": "\(rounds.count)", "keys": "\(plan.keyCount)", "events": "\(counts.eventsAppended)",
                    "unlisted": "\(plan.unlisted)",
                ])
            if plan.unlisted == 0 || rounds.count >= options.maxRounds {
                after = try await diff(reverify: true)
                break
            }
        }
        let report = ResyncReport(id: resyncID, before: before!, rounds: rounds, after: after)
        do {
            try await store.execute(
                """
                UPDATE \(records.resyncs) SET finished_at = clock_timestamp(), differences_before = $2, keys_synced = $3,
                       events_appended = $4, differences_after = $5
                 WHERE id = $1
                """,
                [
                    resyncID, report.before.differenceCount, Int64(report.keysSynced), Int64(report.eventsAppended),
                    report.after.differenceCount,
                ])
        } catch {
            throw ResyncError.failed(doing: "recording the resync", "\(error)")
        }
        // Released now, so a tailer started right after finds it free (closing the connection
        // releases it too, on every other way out, once the server notices).
        _ = try? await store.withSession { try $0.unlock(lock) }
        return report
    }

    private func diff(reverify: Bool) async throws(ResyncError) -> DiffReport {
        var diffOptions = DiffChecker.Options(
            legacyDSN: options.legacyDSN, storeDSN: options.storeDSN, mapping: options.mapping,
            entities: options.entities,
            maxRows: max(options.keysPerRound, 1), storeSchema: options.storeSchema, readSchema: options.readSchema,
            reverify: reverify, checkInvariants: false, catchUpTimeout: options.catchUpTimeout,
            maxReverifiedKeys: max(options.keysPerRound, 1))
        diffOptions.logger = options.logger
        do {
            return try await DiffChecker(diffOptions).run()
        } catch {
            throw ResyncError.diff(error)
        }
    }
}

/// One diff-and-sync round of a resync.
public struct ResyncRound: Sendable, Hashable {
    public var plan: ResyncPlan
    public var counts: Resync.SyncCounts
}

/// What a resync did: the differences before, each round, and those left after.
public struct ResyncReport: Sendable, Hashable {
    /// `shadow_resyncs.id`.
    public var id: Int64
    /// The first diff (first pass, not re-checked).
    public var before: DiffReport
    public var rounds: [ResyncRound]
    /// The diff after the last sync, re-checked: what still differs (legacy writes made during
    /// the resync are captured, and the tailer applies them).
    public var after: DiffReport

    public var keysSynced: Int { rounds.reduce(0) { $0 + $1.plan.keyCount } }
    public var eventsAppended: Int { rounds.reduce(0) { $0 + $1.counts.eventsAppended } }
    public var quarantined: Int { rounds.reduce(0) { $0 + $1.counts.quarantined } }
}

/// Why a resync stopped.
public enum ResyncError: Error, Sendable, CustomStringConvertible {
    /// A tailer holds the lock: stop it first (resync and tailer would both append to the same
    /// streams).
    case tailerRunning(name: String, holder: String)
    case connect(side: String, String)
    /// No backfill of this mapping has finished in the store (what `shadow run` refuses too).
    case noFinishedBackfill(runID: String)
    /// The mapping's sources miss tables its SQL reads (``MappingCoverage``, what `shadow
    /// install` refuses): one line per problem.
    case mappingIncomplete(problems: [String])
    case diff(DiffError)
    case failed(doing: String, String)

    public var description: String {
        switch self {
        case .tailerRunning(let name, let holder):
            "the shadow tailer \"\(name)\" is running (\(holder)): stop `ledgerlift shadow run` first, resync, then start it again"
        case .connect(_, let message): message
        case .noFinishedBackfill(let runID): "\(TailerError.noFinishedBackfill(runID: runID))"
        case .mappingIncomplete(let problems): "\(ShadowError.mappingIncomplete(problems: problems))"
        case .diff(let error): "\(error)"
        case .failed(let doing, let message): "\(doing) failed: \(message)"
        }
    }
}

// MARK: - Rendering

extension ResyncReport {
    /// What still differs after the resync, one sentence each.
    public var notes: [String] {
        var out = [String]()
        let keyless = ResyncPlan(before).keyless
        if keyless > 0 {
            out.append(
                "\(keyless) legacy row(s) without a usable key cannot be synced by key: give them one in the mapping, "
                    + "or quarantine them with `ledgerlift backfill`")
        }
        if let last = rounds.last, last.plan.unlisted > 0, !after.isClean {
            out.append(
                "the last round listed at most --keys-per-round keys per entity and \(last.plan.unlisted) difference(s) "
                    + "were left for another run")
        }
        if !after.isClean {
            out.append(
                "\(after.differenceCount) difference(s) remain: keys written in legacy during the resync are captured "
                    + "and the tailer applies them; a key whose stream already matched legacy (the sync appended nothing "
                    + "for it) differs in the read model only — rebuild the read models with `ledgerlift project "
                    + "--rebuild`")
        }
        return out
    }

    /// 0 when nothing differs afterwards, 1 otherwise.
    public var exitCode: Int32 { after.isClean ? 0 : 1 }

    /// The `json` format: snake_case keys in a fixed order.
    public var json: String {
        func counts(_ report: DiffReport) -> JSONValue {
            .object([
                ("differences", .integer(report.differenceCount)),
                (
                    "entities",
                    .array(
                        report.entities.filter { !$0.isClean }.map {
                            .object([
                                ("entity", .string($0.entity.rawValue)),
                                ("missing_in_ledger", .integer($0.missingInLedger)),
                                ("extra_in_ledger", .integer($0.extraInLedger)),
                                ("mismatched", .integer($0.mismatched)),
                            ])
                        })
                ),
            ])
        }
        let object: JSONValue = .object([
            ("id", .integer(id)), ("clean", .bool(after.isClean)), ("exit_code", .integer(Int64(exitCode))),
            ("legacy", .string(before.legacy)), ("store", .string(before.store)), ("before", counts(before)),
            (
                "rounds",
                .array(
                    rounds.map {
                        .object([
                            ("keys", .integer(Int64($0.plan.keyCount))), ("unlisted", .integer($0.plan.unlisted)),
                            ("keys_read", .integer(Int64($0.counts.keysRead))),
                            ("events_appended", .integer(Int64($0.counts.eventsAppended))),
                            ("quarantined", .integer(Int64($0.counts.quarantined))),
                        ])
                    })
            ),
            ("keys_synced", .integer(Int64(keysSynced))), ("events_appended", .integer(Int64(eventsAppended))),
            ("after", counts(after)), ("notes", .array(notes.map(JSONValue.string))),
        ])
        return object.rendered + "\n"
    }

    /// The `text` format.
    public var text: String {
        func counts(_ report: DiffReport) -> String {
            guard !report.isClean else { return "no difference" }
            return "\(report.differenceCount) difference(s): "
                + report.entities.filter { !$0.isClean }.map {
                    "\($0.entity) \($0.differenceCount) (\($0.missingInLedger) missing, \($0.extraInLedger) extra, "
                        + "\($0.mismatched) mismatched)"
                }.joined(separator: "; ")
        }
        var lines = ["resync #\(id): \(before.legacy) → \(before.store)", "before: " + counts(before)]
        for (index, round) in rounds.enumerated() {
            lines.append(
                "round \(index + 1): \(round.plan.keyCount) key(s) synced, \(round.counts.eventsAppended) event(s) appended"
                    + (round.counts.quarantined > 0 ? ", \(round.counts.quarantined) quarantined" : ""))
        }
        lines.append("after: " + counts(after))
        for note in notes { lines.append("note: " + note) }
        return lines.joined(separator: "\n") + "\n"
    }
}
