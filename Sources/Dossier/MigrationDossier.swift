import Billing
import Cutover
import EventStore
import Foundation
import Postgres
import Shadow
import TextFormats

/// The migration dossier (`ledgerlift report migration`): everything a migration left in its
/// databases, read once and rendered as one self-contained HTML page, Markdown or JSON.
///
/// Every figure is read from the databases when the dossier is made. The figures the operator
/// commands also show come from the same library reads they use — the cutover's folded stream
/// (``CutoverLog/read(in:)``, as `cutover status` and `cutover log`), ``ShadowStatus/read`` (as
/// `shadow status`, when the legacy DSN is given), ``VerificationHistory`` and
/// ``EventStore/stats(in:)`` (as `store stats`) — so the dossier never disagrees with them.
public struct MigrationDossier: Sendable {
    public struct Options: Sendable, Hashable {
        /// The event store's schema.
        public var storeSchema = "ledgerlift"
        /// The cutover's name: its stream is `cutover-<name>`.
        public var cutoverName = "default"
        /// The shadow tailer whose lag samples are charted.
        public var tailerName = "default"
        public var readSchema = "ledgerlift_read"
        /// The window of the summary's lag percentiles: `shadow status --lag-window`.
        public var lagWindow: Duration = .seconds(300)
        /// How many buckets (at most) the time charts have.
        public var buckets = 60
        /// The newest verifications listed (all are counted).
        public var verificationLimit = 500
        /// Example keys shown per quarantine entity and reason.
        public var examplesPerReason = 3

        public init() {}
    }

    /// A name and how many events carry it.
    public struct Count: Sendable, Hashable {
        public var name: String
        public var events: Int64
    }

    /// A time series in buckets of equal width, aligned on whole multiples of it (UTC epoch).
    public struct Series: Sendable, Hashable {
        public struct Bucket: Sendable, Hashable {
            public var start: PostgresTimestamp
            /// Events (write rate) or samples (lag) in the bucket.
            public var count: Int64
            public var p50Milliseconds: Int64?
            public var p99Milliseconds: Int64?
        }

        public var start: PostgresTimestamp
        public var bucketSeconds: Int64
        /// Every bucket from the first to the last, empty ones included (count 0).
        public var buckets: [Bucket]

        public var end: PostgresTimestamp {
            PostgresTimestamp(
                microsecondsSinceEpoch: start.microsecondsSinceEpoch + Int64(buckets.count) * bucketSeconds * 1_000_000)
        }
    }

    /// A stretch during which the application's writes were held: a write switch or its
    /// rollback, from the `freeze_ms` its transition recorded, ending when it was recorded.
    public struct Freeze: Sendable, Hashable {
        public var from: CutoverState
        public var to: CutoverState
        public var milliseconds: Int64
        public var endedAt: PostgresTimestamp
        public var startedAt: PostgresTimestamp {
            PostgresTimestamp(microsecondsSinceEpoch: endedAt.microsecondsSinceEpoch - milliseconds * 1000)
        }
    }

    public struct Verifications: Sendable, Hashable {
        /// Every verification stored.
        public var total: Int64
        public var byVerdict: [VerificationRecord.Verdict: Int64]
        /// The newest ones (at most ``Options/verificationLimit``), oldest first.
        public var history: [VerificationRecord]
        /// As `shadow status` and the `clean_verifications` gate count it.
        public var cleanStreak: VerificationHistory.CleanStreak
    }

    public struct Lag: Sendable, Hashable {
        /// `shadow status`'s figures: the samples of the last ``windowSeconds``.
        public var windowSeconds: Int64
        public var windowSamples: Int64
        public var windowP50Milliseconds: Int64?
        public var windowP99Milliseconds: Int64?
        /// Every sample the store still keeps (the tailer keeps an hour of them).
        public var samples: Int64
        public var p50Milliseconds: Int64?
        public var p99Milliseconds: Int64?
        public var series: Series?
    }

    public struct QuarantineGroup: Sendable, Hashable {
        public var entity: String
        public var reason: String
        public var keys: Int64
        /// The first keys (bytewise), at most ``Options/examplesPerReason``.
        public var examples: [String]
    }

    public var options: Options
    public var generatedAt: PostgresTimestamp
    /// Masked (never a password).
    public var store: String
    public var legacy: String?
    /// Whether the store holds an initialized event store.
    public var storeInitialized: Bool
    /// The cutover's folded stream; `nil` when no cutover of that name was initialized.
    public var cutover: CutoverRecord?

    /// Shadow mode's state in a word and why: a completed cutover uninstalled capture on
    /// purpose, which `shadow status` alone would call unhealthy.
    public var shadowVerdict: (word: String, note: String)? {
        guard let shadow else { return nil }
        if cutover?.state == .completed {
            return ("ended", "at completion: capture uninstalled, legacy is a read-only archive")
        }
        return (shadow.isHealthy ? "healthy" : "unhealthy", shadow.problems.joined(separator: "; "))
    }
    /// The cutover's events with the time the store recorded each, oldest first (the
    /// initialization included).
    public var cutoverRecordedAt: [PostgresTimestamp]
    /// `shadow status` as it reads now (only with the legacy DSN: it reads both databases).
    public var shadow: ShadowStatus?
    /// Whether the tailer ever ran against this store (its tables exist).
    public var shadowModeRan: Bool
    public var stats: StoreStats?
    /// Billing events by `metadata->>'evidence'` (`observed`, `inferred`, `imported`), then
    /// those that carry none (the cutover's own events).
    public var eventsByEvidence: [Count]
    /// Events by `metadata->>'origin'` (`backfill`, `shadow`, `resync`, `command`, …).
    public var eventsByOrigin: [Count]
    public var verifications: Verifications
    public var lag: Lag
    /// Events per bucket of `recorded_at`.
    public var writes: Series?
    public var freezes: [Freeze]
    public var quarantine: [QuarantineGroup]
    /// Entries a later write fixed (`quarantine_released`).
    public var quarantineReleased: Int64

    // MARK: - Summary figures

    /// The write switch's freeze: the newest `… → writes_switched` transition's `freeze_ms`.
    public var writeSwitchFreeze: Freeze? { freezes.last { $0.to == .writesSwitched } }

    /// Every event of the store (`store stats`).
    public var totalEvents: Int64 { stats?.totalEvents ?? 0 }

    /// The lag p99 `shadow status` shows (the same window).
    public var lagP99Milliseconds: Int64? { shadow?.lag?.p99Milliseconds ?? lag.windowP99Milliseconds }

    public var quarantinedKeys: Int64 { quarantine.reduce(0) { $0 + $1.keys } }

    /// The newest verification.
    public var lastVerification: VerificationRecord? { verifications.history.last }
}

// MARK: - Reading

extension MigrationDossier {
    /// Reads the dossier from the store (and legacy, when given: `shadow status`'s figures).
    /// Read only.
    public static func read(store: Connection, legacy: Connection?, options: Options = Options()) async throws
        -> MigrationDossier
    {
        // Refuses an invalid cutover name as the cutover commands do.
        let runner = try CutoverRunner(
            store: EventStore(schema: options.storeSchema), name: options.cutoverName,
            tailerName: options.tailerName, readSchema: options.readSchema, lagWindow: options.lagWindow)
        var shadow: ShadowStatus?
        if let legacy {
            shadow = try await ShadowStatus.read(
                legacy: legacy, store: store, storeSchema: options.storeSchema, tailerName: options.tailerName,
                lagWindow: options.lagWindow, readSchema: options.readSchema)
        }
        let storeDSN = store.maskedDSN
        let legacyDSN = legacy?.maskedDSN
        var dossier = try await store.withSession { session in
            try Self.readStore(session, runner: runner, options: options, store: storeDSN, legacy: legacyDSN)
        }
        dossier.shadow = shadow
        return dossier
    }

    static func readStore(
        _ session: Session, runner: CutoverRunner, options: Options, store: String, legacy: String?
    ) throws -> MigrationDossier {
        let eventStore = EventStore(schema: options.storeSchema)
        let s = quoteIdentifier(options.storeSchema)
        func exists(_ table: String) throws -> Bool {
            try session.query("SELECT to_regclass($1) IS NOT NULL", [s + "." + quoteIdentifier(table)]).rows[0]
                .decode(at: 0, as: Bool.self)
        }
        let now = try session.query("SELECT now()").rows[0].decode(at: 0, as: PostgresTimestamp.self)
        let initialized = (try? eventStore.requireInitialized(session)) != nil
        var dossier = MigrationDossier(
            options: options, generatedAt: now, store: store, legacy: legacy, storeInitialized: initialized,
            cutover: nil, cutoverRecordedAt: [], shadow: nil, shadowModeRan: false, stats: nil, eventsByEvidence: [],
            eventsByOrigin: [],
            verifications: Verifications(
                total: 0, byVerdict: [:], history: [],
                cleanStreak: VerificationHistory.CleanStreak(count: 0, since: nil, lastAt: nil)),
            lag: Lag(
                windowSeconds: options.lagWindow.components.seconds, windowSamples: 0, windowP50Milliseconds: nil,
                windowP99Milliseconds: nil, samples: 0, p50Milliseconds: nil, p99Milliseconds: nil, series: nil),
            writes: nil, freezes: [], quarantine: [], quarantineReleased: 0)
        if initialized {
            dossier.cutover = try runner.log.read(in: session)
            if dossier.cutover != nil {
                dossier.cutoverRecordedAt = try session.query(
                    "SELECT recorded_at FROM \(s).events WHERE stream_id = $1 ORDER BY stream_version",
                    [runner.log.streamID]
                ).rows.map { try $0.decode(at: 0, as: PostgresTimestamp.self) }
            }
            dossier.stats = try eventStore.stats(in: session)
            dossier.eventsByEvidence = try session.query(
                """
                SELECT coalesce(metadata->>'evidence', '(none)'), count(*)::int8 FROM \(s).events GROUP BY 1
                 ORDER BY CASE coalesce(metadata->>'evidence', '(none)') WHEN 'observed' THEN 0 WHEN 'inferred' THEN 1
                          WHEN 'imported' THEN 2 WHEN '(none)' THEN 4 ELSE 3 END, 1
                """
            ).rows.map { Count(name: try $0.decode(at: 0), events: try $0.decode(at: 1)) }
            dossier.eventsByOrigin = try session.query(
                "SELECT coalesce(metadata->>'origin', '(none)'), count(*)::int8 FROM \(s).events GROUP BY 1 ORDER BY 1"
            ).rows.map { Count(name: try $0.decode(at: 0), events: try $0.decode(at: 1)) }
            dossier.writes = try writeSeries(session, s, buckets: options.buckets)
        }
        dossier.freezes = Self.freezes(dossier.cutover)
        // Verifications: the same history `shadow status` and the gate read.
        let history = VerificationHistory(schema: options.storeSchema)
        if try exists("shadow_verifications") {
            for row in try session.query("SELECT verdict, count(*)::int8 FROM \(s).shadow_verifications GROUP BY 1")
                .rows
            {
                if let verdict = VerificationRecord.Verdict(rawValue: try row.decode(at: 0, as: String.self)) {
                    dossier.verifications.byVerdict[verdict] = try row.decode(at: 1, as: Int64.self)
                }
            }
            dossier.verifications.total = dossier.verifications.byVerdict.values.reduce(0, +)
            dossier.verifications.history = Array(
                try history.recent(limit: options.verificationLimit, in: session).reversed())
            for index in dossier.verifications.history.indices { dossier.verifications.history[index].reportJSON = nil }
        }
        dossier.verifications.cleanStreak = try history.cleanStreak(in: session)
        dossier.shadowModeRan = try exists(ShadowStatus.tailersTable) || exists(ShadowStatus.lagTable)
        if try exists(ShadowStatus.lagTable) {
            dossier.lag = try lag(session, s, options: options)
        }
        if try exists("quarantine") {
            dossier.quarantine = try session.query(
                """
                SELECT entity, reason, count(*)::int8,
                       array_to_json((array_agg(entity_key ORDER BY entity_key COLLATE "C"))[1:$1])::text
                  FROM \(s).quarantine GROUP BY entity, reason ORDER BY entity, reason
                """, [Int64(options.examplesPerReason)]
            ).rows.map { row in
                let examples: [String]
                if case .array(let items) = try JSONValue.parse(try row.decode(at: 3, as: String.self)) {
                    examples = items.compactMap { if case .string(let key) = $0 { key } else { nil } }
                } else {
                    examples = []
                }
                return QuarantineGroup(
                    entity: try row.decode(at: 0), reason: try row.decode(at: 1), keys: try row.decode(at: 2),
                    examples: examples)
            }
        }
        if try exists("quarantine_released") {
            dossier.quarantineReleased = try session.query("SELECT count(*)::int8 FROM \(s).quarantine_released")
                .rows[0].decode(at: 0, as: Int64.self)
        }
        return dossier
    }

    /// The switches that held the writes, from their transitions' `freeze_ms`.
    static func freezes(_ record: CutoverRecord?) -> [Freeze] {
        guard let record else { return [] }
        return record.history.compactMap { event in
            switch event {
            case .advanced(let t), .rolledBack(let t):
                guard let text = t.measurements?["freeze_ms"], let ms = Int64(text),
                    let at = PostgresTimestamp(t.actor.at)
                else { return nil }
                return Freeze(from: t.from, to: t.to, milliseconds: ms, endedAt: at)
            default: return nil
            }
        }
    }

    /// A bucket width for `span` seconds in at most `buckets` buckets: 1, 2, 5, 10, 15, 30 s,
    /// 1, 2, 5, 10, 15, 30 min, 1, 2, 3, 6, 12 h, then whole days.
    static func bucketWidth(span: Int64, buckets: Int) -> Int64 {
        let wanted = max(1, (span + Int64(buckets) - 1) / Int64(max(1, buckets)))
        let nice: [Int64] = [
            1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
        ]
        if let width = nice.first(where: { $0 >= wanted }) { return width }
        return (wanted + 86399) / 86400 * 86400
    }

    /// The range `[first, last]` as aligned buckets: (start epoch second, width).
    static func buckets(first: PostgresTimestamp, last: PostgresTimestamp, count: Int) -> (start: Int64, width: Int64) {
        let firstSecond = Int64((Double(first.microsecondsSinceEpoch) / 1_000_000).rounded(.down))
        let lastSecond = Int64((Double(last.microsecondsSinceEpoch) / 1_000_000).rounded(.down))
        let width = bucketWidth(span: lastSecond - firstSecond + 1, buckets: count)
        var start = firstSecond / width * width
        if start > firstSecond { start -= width }
        return (start, width)
    }

    static func timestamp(epochSecond: Int64) -> PostgresTimestamp {
        PostgresTimestamp(microsecondsSinceEpoch: epochSecond * 1_000_000)
    }

    static func writeSeries(_ session: Session, _ s: String, buckets: Int) throws -> Series? {
        let range = try session.query("SELECT min(recorded_at), max(recorded_at) FROM \(s).events").rows[0]
        guard let first = try range.decode(at: 0, as: PostgresTimestamp?.self),
            let last = try range.decode(at: 1, as: PostgresTimestamp?.self)
        else { return nil }
        let (start, width) = Self.buckets(first: first, last: last, count: buckets)
        var counts = [Int64: Int64]()
        for row in try session.query(
            """
            SELECT floor((extract(epoch FROM recorded_at) - $1::int8) / $2::int8)::int8, count(*)::int8
              FROM \(s).events GROUP BY 1 ORDER BY 1
            """, [start, width]
        ).rows {
            counts[try row.decode(at: 0, as: Int64.self)] = try row.decode(at: 1, as: Int64.self)
        }
        let n = (counts.keys.max() ?? 0) + 1
        return Series(
            start: timestamp(epochSecond: start), bucketSeconds: width,
            buckets: (0..<n).map {
                Series.Bucket(start: timestamp(epochSecond: start + $0 * width), count: counts[$0] ?? 0)
            })
    }

    /// Lag from the tailer's samples, measured as `shadow status` measures it: legacy capture to
    /// the read model (`projected_at`, else `applied_at`), bucketed by `applied_at`.
    static func lag(_ session: Session, _ s: String, options: Options) throws -> Lag {
        let table = s + "." + quoteIdentifier(ShadowStatus.lagTable)
        let sample = """
            SELECT applied_at, extract(epoch FROM coalesce(projected_at, applied_at) - captured_at) * 1000 AS ms
              FROM \(table) WHERE tailer = $1
            """
        let percentiles = """
            count(*)::int8, (percentile_cont(0.5) WITHIN GROUP (ORDER BY ms))::int8,
            (percentile_cont(0.99) WITHIN GROUP (ORDER BY ms))::int8
            """
        let window = options.lagWindow.components.seconds
        let windowRow = try session.query(
            "SELECT \(percentiles) FROM (\(sample) AND applied_at > now() - make_interval(secs => $2)) x",
            [options.tailerName, window]
        ).rows[0]
        let all = try session.query(
            "SELECT \(percentiles), min(applied_at), max(applied_at) FROM (\(sample)) x", [options.tailerName]
        ).rows[0]
        var lag = Lag(
            windowSeconds: window, windowSamples: try windowRow.decode(at: 0, as: Int64.self),
            windowP50Milliseconds: try windowRow.decode(at: 1, as: Int64?.self),
            windowP99Milliseconds: try windowRow.decode(at: 2, as: Int64?.self),
            samples: try all.decode(at: 0, as: Int64.self), p50Milliseconds: try all.decode(at: 1, as: Int64?.self),
            p99Milliseconds: try all.decode(at: 2, as: Int64?.self), series: nil)
        guard let first = try all.decode(at: 3, as: PostgresTimestamp?.self),
            let last = try all.decode(at: 4, as: PostgresTimestamp?.self)
        else { return lag }
        let (start, width) = Self.buckets(first: first, last: last, count: options.buckets)
        var rows = [Int64: Series.Bucket]()
        for row in try session.query(
            """
            SELECT floor((extract(epoch FROM applied_at) - $2::int8) / $3::int8)::int8, \(percentiles)
              FROM (\(sample)) x GROUP BY 1 ORDER BY 1
            """, [options.tailerName, start, width]
        ).rows {
            let index = try row.decode(at: 0, as: Int64.self)
            rows[index] = Series.Bucket(
                start: timestamp(epochSecond: start + index * width), count: try row.decode(at: 1, as: Int64.self),
                p50Milliseconds: try row.decode(at: 2, as: Int64?.self),
                p99Milliseconds: try row.decode(at: 3, as: Int64?.self))
        }
        let n = (rows.keys.max() ?? 0) + 1
        lag.series = Series(
            start: timestamp(epochSecond: start), bucketSeconds: width,
            buckets: (0..<n).map {
                rows[$0] ?? Series.Bucket(start: timestamp(epochSecond: start + $0 * width), count: 0)
            })
        return lag
    }
}
