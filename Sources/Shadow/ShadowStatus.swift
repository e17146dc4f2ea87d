import Billing
import Commands
import EventStore
import Foundation
import Mapping
import Postgres
import TextFormats

/// Where shadow mode stands (`ledgerlift shadow status`): what is captured and waiting, where
/// the tailer is and how far behind, the last verification and the handover — read only, from
/// both databases.
///
/// **Healthy** means no ``problems``: capture installed, no handover gap, no tailer error since
/// its last progress, and the last verification (if any) clean. Backlog and lag are shown, not
/// judged: what is too much depends on the application.
public struct ShadowStatus: Sendable, Hashable {
    public struct CapturedTable: Sendable, Hashable {
        public var table: String
        public var columns: [String]
    }

    public struct Capture: Sendable, Hashable {
        public var schemaVersion: Int
        public var tables: [CapturedTable]
        /// Captured changes not yet applied and pruned.
        public var backlogRows: Int64
        public var oldestCapturedAt: PostgresTimestamp?
        /// Age of the oldest, by the legacy database's clock.
        public var oldestAgeMilliseconds: Int64?
        /// The newest committed change.
        public var newest: CapturePosition?
    }

    public struct Tailer: Sendable, Hashable {
        public var name: String
        /// Whether a process holds the tailer's lock now.
        public var running: Bool
        /// Who holds it (pid, application, since).
        public var holder: String?
        /// Its checkpoint: every captured change up to here is applied.
        public var checkpoint: CapturePosition?
        public var updatedAt: PostgresTimestamp?
        public var lastError: String?
        public var lastErrorAt: PostgresTimestamp?
    }

    public struct Lag: Sendable, Hashable {
        /// The window, in seconds, the samples were taken from.
        public var windowSeconds: Int64
        public var samples: Int64
        /// Legacy capture → read model, milliseconds.
        public var p50Milliseconds: Int64?
        public var p99Milliseconds: Int64?
    }

    /// `nil` when capture is not installed.
    public var capture: Capture?
    /// `nil` when no tailer of that name has recorded anything (the tailer's table read by name,
    /// so a store without one simply shows none).
    public var tailer: Tailer?
    public var tailerName: String
    /// `nil` without lag samples in the store.
    public var lag: Lag?
    /// Events appended to the store during the last minute (every writer: in shadow mode, the
    /// tailer and resyncs).
    public var eventsLastMinute: Int64
    /// Quarantined keys per entity (`ledgerlift.quarantine`).
    public var quarantined: [Entity: Int64]
    public var lastVerification: VerificationRecord?
    public var cleanStreak: VerificationHistory.CleanStreak
    public var handover: HandoverVerdict
    /// Whether the read models exist and have applied every event the store holds; `nil` for a
    /// store without events.
    public var readModels: ReadModels?
    /// Candidate mode's comparisons (`serve --mode candidate` against legacy), when the store
    /// has recorded candidate commands.
    public var candidate: CandidateCommandLog.Summary?
    public var legacy: String
    public var store: String

    /// The read models the tailer keeps following, as the store shows them.
    public struct ReadModels: Sendable, Hashable {
        public var schema: String
        public var exist: Bool
        /// Every event of the store projected (`false` when they do not exist).
        public var caughtUp: Bool
    }

    /// What makes the status unhealthy (exit status 1), one sentence each.
    public var problems: [String] {
        var out = [String]()
        if capture == nil { out.append("capture is not installed") }
        if let readModels, !readModels.exist {
            out.append(
                "the read models (\(readModels.schema)) do not exist: `ledgerlift shadow run` (or `ledgerlift project`) builds them"
            )
        } else if let readModels, !readModels.caughtUp, !(tailer?.running ?? false) {
            // Behind while a tailer runs is its lag (shown above); behind with none running
            // stays so: a run stopped between its commit and its projection.
            out.append(
                "the read models (\(readModels.schema)) are behind the event store and no tailer is running: "
                    + "`ledgerlift shadow run` (or `ledgerlift project`) catches them up")
        }
        if capture != nil, let error = handover.error, case .gap = error { out.append("handover: \(error)") }
        if let tailer, let at = tailer.lastErrorAt, tailer.updatedAt.map({ at >= $0 }) ?? true {
            out.append(
                "tailer \"\(tailer.name)\" failed at \(at.iso8601) and has not progressed since: \(tailer.lastError ?? "")"
            )
        }
        if let last = lastVerification, last.verdict != .clean {
            out.append(
                last.verdict == .error
                    ? "the last verification (#\(last.id)) could not run: \(last.error ?? "")"
                    : "the last verification (#\(last.id)) found \(last.persistentDifferences) persistent difference(s)"
                        + (last.brokenInvariants > 0 ? " and \(last.brokenInvariants) broken invariant(s)" : ""))
        }
        if let candidate, candidate.mismatch > 0 {
            out.append(
                "candidate mode: \(candidate.mismatch) command(s) decided differently from legacy (listed under candidate)"
            )
        }
        return out
    }

    public var isHealthy: Bool { problems.isEmpty }
    public var exitCode: Int32 { isHealthy ? 0 : 1 }

    // MARK: - Reading

    /// The tailer's own tables (it creates them; status reads them by name, so a store where no
    /// tailer ran shows none).
    public static let tailersTable = "shadow_tailers"
    public static let lagTable = "shadow_lag"

    /// Reads the status.
    ///
    /// - Parameters:
    ///   - lagWindow: lag percentiles over the samples of this last stretch of time.
    public static func read(
        legacy: Connection, store: Connection, storeSchema: String = EventStore().schema,
        capture captureSchema: CaptureSchema = CaptureSchema(), tailerName: String = "default",
        lagWindow: Duration = .seconds(300), readSchema: String = "ledgerlift_read"
    ) async throws -> ShadowStatus {
        let capture = try await legacy.withSession { try readCapture(captureSchema, $0) }
        let handover = try await Handover.check(
            legacy: legacy, store: store, storeSchema: storeSchema, capture: captureSchema)
        let windowSeconds = lagWindow.components.seconds
        let s = quoteIdentifier(storeSchema)
        return try await store.withSession { session in
            let tailer = try readTailer(s, tailerName, session)
            let lag = try readLag(s, tailerName, windowSeconds, session)
            let exists = { (table: String) in
                try session.query("SELECT to_regclass($1) IS NOT NULL", [s + "." + table]).rows[0].decode(
                    at: 0, as: Bool.self)
            }
            var eventsLastMinute: Int64 = 0
            if try exists("events") {
                // The newest events by position only (an index scan backwards), not a scan of
                // the whole history: at most 100,000 a minute are counted exactly.
                eventsLastMinute = try session.query(
                    """
                    SELECT count(*)::int8 FROM (SELECT recorded_at FROM \(s).events ORDER BY global_position DESC LIMIT 100000) e
                     WHERE recorded_at > now() - interval '1 minute'
                    """
                ).rows[0].decode(at: 0, as: Int64.self)
            }
            var quarantined = [Entity: Int64]()
            if try exists("quarantine") {
                for row in try session.query("SELECT entity, count(*)::int8 FROM \(s).quarantine GROUP BY entity").rows
                {
                    if let entity = Entity(rawValue: try row.decode(at: 0, as: String.self)) {
                        quarantined[entity] = try row.decode(at: 1, as: Int64.self)
                    }
                }
            }
            var readModels: ReadModels?
            let eventStore = EventStore(schema: storeSchema)
            if try exists("events"), try eventStore.hasEventsBeyond(.start, in: session) {
                let state = quoteIdentifier(readSchema) + ".projection_state"
                let consumer =
                    try session.query("SELECT to_regclass($1) IS NOT NULL", [state]).rows[0].decode(
                        at: 0, as: Bool.self)
                    ? try session.query("SELECT consumer FROM \(state) WHERE state = 'live' LIMIT 1").first?.values[0]
                    : nil
                readModels = ReadModels(
                    schema: readSchema, exist: consumer != nil,
                    caughtUp: try consumer.map {
                        !(try eventStore.hasEventsBeyond(try eventStore.checkpoint($0, in: session), in: session))
                    }
                        ?? false)
            }
            let history = VerificationHistory(schema: storeSchema)
            var status = ShadowStatus(
                capture: capture, tailer: tailer, tailerName: tailerName, lag: lag, eventsLastMinute: eventsLastMinute,
                quarantined: quarantined, lastVerification: try history.recent(limit: 1, in: session).first,
                cleanStreak: try history.cleanStreak(in: session), handover: handover, legacy: legacy.maskedDSN,
                store: store.maskedDSN)
            status.readModels = readModels
            let candidates = CandidateCommandLog(store: eventStore)
            if try candidates.exists(in: session) {
                let summary = try candidates.summary(limit: 20, in: session)
                if summary.received > 0 { status.candidate = summary }
            }
            return status
        }
    }

    static func readCapture(_ capture: CaptureSchema, _ session: Session) throws -> Capture? {
        guard let version = try capture.version(session) else { return nil }
        let tables = try session.query(
            "SELECT source_table, array_to_string(columns, ',') FROM \(capture.s).captured_tables ORDER BY source_table"
        ).rows.map {
            CapturedTable(
                table: try $0.decode(at: 0, as: String.self),
                columns: try $0.decode(at: 1, as: String.self).split(separator: ",").map(String.init))
        }
        let backlog = try session.query(
            """
            SELECT count(*)::int8, min(captured_at),
                   (extract(epoch FROM clock_timestamp() - min(captured_at)) * 1000)::int8
              FROM \(capture.s).changes
            """
        ).rows[0]
        return Capture(
            schemaVersion: version, tables: tables, backlogRows: try backlog.decode(at: 0, as: Int64.self),
            oldestCapturedAt: try backlog.decode(at: 1, as: PostgresTimestamp?.self),
            oldestAgeMilliseconds: try backlog.decode(at: 2, as: Int64?.self),
            newest: try ContinuousVerifier.newestCommitted(in: session, capture: capture))
    }

    /// The tailer's row in `shadow_tailers`, read by column name (a column missing reads as absent).
    static func readTailer(_ s: String, _ name: String, _ session: Session) throws -> Tailer? {
        let lock = Resync.tailerLock(name: name)
        let holder = try session.holder(of: lock)
        let table = s + "." + quoteIdentifier(tailersTable)
        let exists = try session.query("SELECT to_regclass($1) IS NOT NULL", [table]).rows[0].decode(
            at: 0, as: Bool.self)
        guard exists, let row = try session.query("SELECT * FROM \(table) WHERE name = $1", [name]).first else {
            return holder.map { Tailer(name: name, running: true, holder: $0) }
        }
        let xid = row["checkpoint_xid"]
        let id = row["checkpoint_id"].flatMap { Int64($0) }
        return Tailer(
            name: name, running: holder != nil, holder: holder,
            checkpoint: xid.flatMap { xid in id.map { CapturePosition(xid: xid, id: $0) } },
            updatedAt: row["updated_at"].flatMap(PostgresTimestamp.init), lastError: row["last_error"],
            lastErrorAt: row["last_error_at"].flatMap(PostgresTimestamp.init))
    }

    /// Lag percentiles from the tailer's samples (`shadow_lag`: legacy capture time to the read
    /// model — `projected_at`, or `applied_at` while a sample's projection is not recorded).
    static func readLag(_ s: String, _ name: String, _ windowSeconds: Int64, _ session: Session) throws -> Lag? {
        let table = s + "." + quoteIdentifier(lagTable)
        guard try session.query("SELECT to_regclass($1) IS NOT NULL", [table]).rows[0].decode(at: 0, as: Bool.self)
        else {
            return nil
        }
        // By (tailer, applied_at): the tailer's index on its samples.
        let row = try session.query(
            """
            SELECT count(*)::int8,
                   (percentile_cont(0.5) WITHIN GROUP (ORDER BY ms))::int8,
                   (percentile_cont(0.99) WITHIN GROUP (ORDER BY ms))::int8
              FROM (SELECT extract(epoch FROM coalesce(projected_at, applied_at) - captured_at) * 1000 AS ms
                      FROM \(table) WHERE tailer = $2 AND applied_at > now() - make_interval(secs => $1)) x
            """, [windowSeconds, name]
        ).rows[0]
        return Lag(
            windowSeconds: windowSeconds, samples: try row.decode(at: 0, as: Int64.self),
            p50Milliseconds: try row.decode(at: 1, as: Int64?.self),
            p99Milliseconds: try row.decode(at: 2, as: Int64?.self))
    }

    // MARK: - Rendering

    /// The `json` format: snake_case keys in a fixed order, timestamps ISO 8601 UTC, absent
    /// values `null`.
    public var json: String {
        func ts(_ t: PostgresTimestamp?) -> JSONValue { t.map { .string($0.iso8601) } ?? .null }
        func int(_ v: Int64?) -> JSONValue { v.map(JSONValue.integer) ?? .null }
        func position(_ p: CapturePosition?) -> JSONValue {
            p.map { .object([("xid", .string($0.xid)), ("id", .integer($0.id))]) } ?? .null
        }
        let captureValue: JSONValue =
            capture.map { c in
                .object([
                    ("installed", .bool(true)), ("schema_version", .integer(Int64(c.schemaVersion))),
                    (
                        "tables",
                        .array(
                            c.tables.map {
                                .object([
                                    ("table", .string($0.table)), ("columns", .array($0.columns.map(JSONValue.string))),
                                ])
                            })
                    ),
                    ("backlog_rows", .integer(c.backlogRows)), ("oldest_captured_at", ts(c.oldestCapturedAt)),
                    ("oldest_age_ms", int(c.oldestAgeMilliseconds)), ("newest_position", position(c.newest)),
                ])
            } ?? .object([("installed", .bool(false))])
        let tailerValue: JSONValue =
            tailer.map { t in
                .object([
                    ("name", .string(t.name)), ("running", .bool(t.running)),
                    ("holder", t.holder.map(JSONValue.string) ?? .null),
                    ("checkpoint", position(t.checkpoint)), ("updated_at", ts(t.updatedAt)),
                    ("last_error", t.lastError.map(JSONValue.string) ?? .null), ("last_error_at", ts(t.lastErrorAt)),
                ])
            } ?? .null
        let lagValue: JSONValue =
            lag.map { l in
                .object([
                    ("window_seconds", .integer(l.windowSeconds)), ("samples", .integer(l.samples)),
                    ("p50_ms", int(l.p50Milliseconds)), ("p99_ms", int(l.p99Milliseconds)),
                ])
            } ?? .null
        let verificationValue: JSONValue =
            lastVerification.map { v in
                .object([
                    ("id", .integer(v.id)), ("origin", .string(v.origin)), ("verdict", .string(v.verdict.rawValue)),
                    ("started_at", ts(v.startedAt)), ("finished_at", ts(v.finishedAt)),
                    ("legacy_position", position(v.legacyPosition)), ("rows_compared", .integer(v.rowsCompared)),
                    ("differences", .integer(v.differences)),
                    ("persistent_differences", .integer(v.persistentDifferences)),
                    ("broken_invariants", .integer(Int64(v.brokenInvariants))),
                    ("error", v.error.map(JSONValue.string) ?? .null),
                ])
            } ?? .null
        let object: JSONValue = .object([
            ("healthy", .bool(isHealthy)), ("exit_code", .integer(Int64(exitCode))),
            ("problems", .array(problems.map(JSONValue.string))), ("legacy", .string(legacy)),
            ("store", .string(store)),
            ("capture", captureValue), ("tailer_name", .string(tailerName)), ("tailer", tailerValue), ("lag", lagValue),
            ("events_last_minute", .integer(eventsLastMinute)),
            ("events_per_second", .integer((eventsLastMinute + 30) / 60)),
            (
                "quarantined",
                .object(
                    [("total", .integer(quarantined.values.reduce(0, +)))]
                        + Entity.allCases.compactMap { e in quarantined[e].map { (e.rawValue, .integer($0)) } })
            ),
            ("last_verification", verificationValue),
            (
                "clean_streak",
                .object([
                    ("count", .integer(Int64(cleanStreak.count))), ("since", ts(cleanStreak.since)),
                    ("last_at", ts(cleanStreak.lastAt)),
                ])
            ),
            ("handover", .object([("verdict", .string(handover.name)), ("message", .string(handover.description))])),
            (
                "read_models",
                readModels.map {
                    .object([
                        ("schema", .string($0.schema)), ("exist", .bool($0.exist)), ("caught_up", .bool($0.caughtUp)),
                    ])
                } ?? .null
            ),
            ("candidate", candidate.map(Self.candidateJSON) ?? .null),
        ])
        return object.rendered + "\n"
    }

    /// The `text` format, for terminals and logs.
    public var text: String {
        var lines = [String]()
        func line(_ label: String, _ value: String) {
            lines.append(label.padding(toLength: 20, withPad: " ", startingAt: 0) + value)
        }
        line("legacy", legacy)
        line("store", store)
        if let capture {
            line("capture", "installed (schema version \(capture.schemaVersion)), \(capture.tables.count) table(s)")
            for table in capture.tables { line("", "\(table.table) (\(table.columns.joined(separator: ", ")))") }
            line(
                "backlog",
                "\(capture.backlogRows) change(s)"
                    + (capture.oldestAgeMilliseconds.map { ", oldest \(Self.duration($0)) old" } ?? ""))
        } else {
            line("capture", "not installed")
        }
        if let tailer {
            line(
                "tailer \(tailer.name)",
                (tailer.running ? "running (\(tailer.holder ?? ""))" : "not running")
                    + (tailer.checkpoint.map { ", at \($0)" } ?? ", no checkpoint")
                    + (tailer.updatedAt.map { ", updated \($0.iso8601)" } ?? ""))
            if let error = tailer.lastError {
                line("last error", (tailer.lastErrorAt.map { $0.iso8601 + ": " } ?? "") + error)
            }
        } else {
            line("tailer \(tailerName)", "has not run")
        }
        if let lag, lag.samples > 0 {
            line(
                "lag",
                "p50 \(lag.p50Milliseconds.map { "\($0) ms" } ?? "-"), p99 \(lag.p99Milliseconds.map { "\($0) ms" } ?? "-") "
                    + "(\(lag.samples) sample(s), last \(lag.windowSeconds) s)")
        } else {
            line("lag", "no samples" + (lag.map { " in the last \($0.windowSeconds) s" } ?? ""))
        }
        line("events/s", "\((eventsLastMinute + 30) / 60) (\(eventsLastMinute) in the last minute)")
        let quarantine = Entity.allCases.compactMap { e in quarantined[e].map { "\(e) \($0)" } }
        line("quarantined", quarantine.isEmpty ? "none" : quarantine.joined(separator: ", "))
        if let v = lastVerification {
            line(
                "last verification",
                "#\(v.id) \(v.verdict.rawValue) at \(v.finishedAt?.iso8601 ?? "?"): \(v.rowsCompared) row(s), "
                    + "\(v.differences) difference(s), \(v.persistentDifferences) persistent")
        } else {
            line("last verification", "none")
        }
        line(
            "clean streak",
            cleanStreak.count == 0 ? "0" : "\(cleanStreak.count) since \(cleanStreak.since?.iso8601 ?? "?")")
        line("handover", handover.description)
        if let readModels {
            line(
                "read models",
                readModels.schema + ": "
                    + (!readModels.exist
                        ? "not built" : readModels.caughtUp ? "every event projected" : "behind the event store"))
        }
        if let c = candidate {
            line(
                "candidate",
                "\(c.received) command(s): \(c.match) match, \(c.mismatch) mismatch, \(c.unverifiable) unverifiable, "
                    + "\(c.pending) pending"
                    + (c.withoutLegacyXid > 0 ? ", \(c.withoutLegacyXid) without a legacy xid" : ""))
            for reason in c.unverifiableReasons { line("", "unverifiable \(reason.count)×: \(reason.reason)") }
            for entry in c.mismatches {
                line("", "mismatch \(entry.opID) \(entry.command)" + (entry.reason.map { ": \($0)" } ?? ""))
                for d in entry.differences {
                    line(
                        "",
                        "  \(d.stream) \(d.column): candidate \(d.candidate ?? "null"), legacy \(d.legacy ?? "null")")
                }
            }
        }
        lines.append(isHealthy ? "healthy" : "unhealthy:")
        for problem in problems { lines.append("  - " + problem) }
        return lines.joined(separator: "\n") + "\n"
    }

    static func candidateJSON(_ c: CandidateCommandLog.Summary) -> JSONValue {
        func text(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }
        return .object([
            ("received", .integer(Int64(c.received))), ("without_legacy_xid", .integer(Int64(c.withoutLegacyXid))),
            ("pending", .integer(Int64(c.pending))), ("match", .integer(Int64(c.match))),
            ("mismatch", .integer(Int64(c.mismatch))), ("unverifiable", .integer(Int64(c.unverifiable))),
            (
                "unverifiable_reasons",
                .array(
                    c.unverifiableReasons.map {
                        .object([("reason", .string($0.reason)), ("count", .integer(Int64($0.count)))])
                    })
            ),
            (
                "mismatches",
                .array(
                    c.mismatches.map { entry in
                        .object([
                            ("op_id", .string(entry.opID)), ("command", .string(entry.command)),
                            ("legacy_xid", entry.legacyXid.map { .string(String($0)) } ?? .null),
                            ("reason", text(entry.reason)),
                            (
                                "differences",
                                .array(
                                    entry.differences.map {
                                        .object([
                                            ("stream", .string($0.stream)), ("column", .string($0.column)),
                                            ("candidate", text($0.candidate)), ("legacy", text($0.legacy)),
                                        ])
                                    })
                            ),
                        ])
                    })
            ),
        ])
    }

    static func duration(_ milliseconds: Int64) -> String {
        milliseconds < 1000
            ? "\(milliseconds) ms"
            : milliseconds < 120_000 ? "\(milliseconds / 1000) s" : "\(milliseconds / 60_000) min"
    }
}
