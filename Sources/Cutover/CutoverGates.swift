import Postgres
import Shadow

/// What the gates judge, measured from both databases (``CutoverRunner/readings``). A plain
/// value, so the gate rules are tested on every edge without staging each database state.
public struct CutoverReadings: Sendable, Hashable {
    /// The mapping's source tables as the legacy database resolves them (`schema.table`), or as
    /// the mapping spells them when they do not resolve.
    public var sourceTables: [String]
    /// The captured tables; `nil` when capture is not installed.
    public var capturedTables: [String]?
    /// Whether a backfill ran from snapshots that saw every capture install (``Handover``), and
    /// what the verdict says.
    public var handoverReady: Bool
    public var handover: String
    /// Quarantined keys per entity.
    public var quarantined: [String: Int64]
    public var tailerRunning: Bool
    /// The tailer's checkpoint is at or past the newest committed capture (nothing waits).
    public var tailerCaughtUp: Bool
    public var tailerCheckpoint: String?
    public var newestCapture: String?
    public var lagSamples: Int64
    public var lagP99Milliseconds: Int64?
    public var lagWindowSeconds: Int64
    public var cleanStreak: VerificationHistory.CleanStreak
    /// The last M candidate commands' verdicts; `nil` when no candidate command was recorded.
    public var candidate: CandidateWindow?
    /// Reverse sync: what the write switch needs ready and `completed` needs drained.
    public var reverseSync: ReverseSyncReading = ReverseSyncReading()

    /// Reverse sync as measured: the mapping's write-back statements and the consumer.
    public struct ReverseSyncReading: Sendable, Hashable {
        /// Mapped entities without `write_back` SQL in the mapping.
        public var entitiesWithoutWriteBack: [String] = []
        /// Whether a reverse-sync consumer (`shadow reverse-sync --follow`) runs now.
        public var running = false
        /// Write-path events not yet applied to legacy; `nil` before reverse sync started.
        public var behind: Int64?
        /// Rows legacy refused (`reverse_sync_quarantine`), and the first few, described.
        public var quarantined: Int64
        public var quarantineExamples: [String]

        public init(
            entitiesWithoutWriteBack: [String] = [], running: Bool = false, behind: Int64? = nil,
            quarantined: Int64 = 0, quarantineExamples: [String] = []
        ) {
            self.entitiesWithoutWriteBack = entitiesWithoutWriteBack
            self.running = running
            self.behind = behind
            self.quarantined = quarantined
            self.quarantineExamples = quarantineExamples
        }
    }

    /// Candidate mode's verdicts over the last commands.
    public struct CandidateWindow: Sendable, Hashable {
        public var commands: Int
        public var mismatches: Int
        public var unverifiable: Int
        public var pending: Int

        public init(commands: Int, mismatches: Int, unverifiable: Int, pending: Int) {
            self.commands = commands
            self.mismatches = mismatches
            self.unverifiable = unverifiable
            self.pending = pending
        }
    }

    public init(
        sourceTables: [String], capturedTables: [String]?, handoverReady: Bool, handover: String,
        quarantined: [String: Int64], tailerRunning: Bool, tailerCaughtUp: Bool, tailerCheckpoint: String?,
        newestCapture: String?, lagSamples: Int64, lagP99Milliseconds: Int64?, lagWindowSeconds: Int64,
        cleanStreak: VerificationHistory.CleanStreak, candidate: CandidateWindow?,
        reverseSync: ReverseSyncReading = ReverseSyncReading()
    ) {
        self.reverseSync = reverseSync
        self.sourceTables = sourceTables
        self.capturedTables = capturedTables
        self.handoverReady = handoverReady
        self.handover = handover
        self.quarantined = quarantined
        self.tailerRunning = tailerRunning
        self.tailerCaughtUp = tailerCaughtUp
        self.tailerCheckpoint = tailerCheckpoint
        self.newestCapture = newestCapture
        self.lagSamples = lagSamples
        self.lagP99Milliseconds = lagP99Milliseconds
        self.lagWindowSeconds = lagWindowSeconds
        self.cleanStreak = cleanStreak
        self.candidate = candidate
    }
}

/// The thresholds of the gates, with production defaults.
public struct CutoverGateOptions: Sendable, Hashable {
    /// The tailer's lag (p99) must stay below this.
    public var maxLag: Duration = .seconds(5)
    /// N clean verifications in a row…
    public var cleanVerifications: Int = 3
    /// …spanning at least T: one clean check proves little; a streak under traffic does.
    public var cleanSpan: Duration = .seconds(3600)
    /// Candidate mismatches are counted over the last M commands.
    public var candidateCommands: Int = 1000
    /// Quarantined keys accepted with this reason (`--accept-quarantine --reason`).
    public var acceptQuarantine: String?

    public init() {}
}

/// The gates of each step up to `verified`: pure functions of the readings.
public enum CutoverGates {
    /// The gates `step` must pass; `nil` when this build does not implement the step (from
    /// `verified` on: the read and write switches).
    public static func evaluate(
        _ step: CutoverStep, readings r: CutoverReadings, options: CutoverGateOptions
    ) -> [CutoverGate]? {
        switch (step.from, step.to) {
        case (.planned, .capturing): [captureInstalled(r)]
        case (.capturing, .backfilled): [backfillAfterCapture(r), quarantine(r, options)]
        case (.backfilled, .shadowing): [tailerFollowing(r), lag(r, options)]
        case (.shadowing, .verified): [cleanVerifications(r, options), candidateMismatches(r, options)]
        case (.verified, .readsSwitched): [tailerFollowing(r), lag(r, options)]
        case (.readsSwitched, .writesSwitched):
            [
                tailerFollowing(r), lag(r, options), cleanVerifications(r, options), candidateMismatches(r, options),
                reverseSyncReady(r),
            ]
        case (.writesSwitched, .completed): [reverseSyncDrained(r, options)]
        default: nil
        }
    }

    /// Whether this build has the gates (and the runner) of `step`: every step.
    public static func isImplemented(_ step: CutoverStep) -> Bool {
        step.to != .aborted && step.to != .planned
    }

    static func reverseSyncReady(_ r: CutoverReadings) -> CutoverGate {
        let missing = r.reverseSync.entitiesWithoutWriteBack
        return CutoverGate(
            name: "reverse_sync_ready", passed: missing.isEmpty && r.reverseSync.running,
            evidence: [
                "entities_without_write_back": missing.joined(separator: ", "),
                "running": String(r.reverseSync.running),
            ],
            remedy:
                "give every mapped entity write_back SQL (ledgerlift mapping check validates it) and run "
                + "ledgerlift shadow reverse-sync --legacy … --store … --mapping … --follow before the write switch")
    }

    static func reverseSyncDrained(_ r: CutoverReadings, _ options: CutoverGateOptions) -> CutoverGate {
        // Legacy becomes the read-only archive at completion: a row it refused would be missing
        // from it for good, so it blocks unless accepted like the backfill's quarantine.
        let refused = r.reverseSync.quarantined
        var evidence = [
            "behind_events": r.reverseSync.behind.map(String.init) ?? "(not started)",
            "quarantined": String(refused),
        ]
        if refused > 0 {
            evidence["examples"] = r.reverseSync.quarantineExamples.joined(separator: "; ")
            if let reason = options.acceptQuarantine { evidence["accepted"] = reason }
        }
        return CutoverGate(
            name: "reverse_sync_drained",
            passed: r.reverseSync.behind == 0 && (refused == 0 || options.acceptQuarantine != nil), evidence: evidence,
            remedy:
                refused > 0
                ? "legacy refused \(refused) row(s) of the ledger (ledgerlift shadow reverse-sync --status lists them): "
                    + "fix the write_back SQL or legacy's constraint and let reverse sync write them again, or accept "
                    + "them explicitly: --accept-quarantine --reason TEXT (recorded)"
                : "let reverse sync apply every write of the ledger to legacy (ledgerlift shadow reverse-sync --follow)")
    }

    static func captureInstalled(_ r: CutoverReadings) -> CutoverGate {
        let captured = Set(r.capturedTables ?? [])
        let missing = r.sourceTables.filter { !captured.contains($0) }
        return CutoverGate(
            name: "capture_installed", passed: r.capturedTables != nil && missing.isEmpty,
            evidence: [
                "source_tables": r.sourceTables.joined(separator: ", "),
                "captured_tables": r.capturedTables.map { $0.joined(separator: ", ") } ?? "(capture not installed)",
                "missing": missing.joined(separator: ", "),
            ],
            remedy: "install capture on every source table: ledgerlift shadow install --legacy … --mapping …")
    }

    static func backfillAfterCapture(_ r: CutoverReadings) -> CutoverGate {
        CutoverGate(
            name: "backfill_after_capture", passed: r.handoverReady, evidence: ["handover": r.handover],
            remedy:
                "run a backfill after capture was installed (ledgerlift backfill …), or close the gap with "
                + "ledgerlift shadow resync --legacy … --store … --mapping …")
    }

    static func quarantine(_ r: CutoverReadings, _ options: CutoverGateOptions) -> CutoverGate {
        let total = r.quarantined.values.reduce(0, +)
        var evidence = [
            "quarantined": String(total),
            "by_entity": r.quarantined.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(
                separator: ", "),
        ]
        if let reason = options.acceptQuarantine, total > 0 { evidence["accepted"] = reason }
        return CutoverGate(
            name: "quarantine", passed: total == 0 || options.acceptQuarantine != nil, evidence: evidence,
            remedy:
                "fix the quarantined rows and backfill or resync them, or accept them explicitly: "
                + "--accept-quarantine --reason TEXT (recorded)")
    }

    static func tailerFollowing(_ r: CutoverReadings) -> CutoverGate {
        CutoverGate(
            name: "tailer_following", passed: r.tailerRunning || r.tailerCaughtUp,
            evidence: [
                "running": String(r.tailerRunning), "caught_up": String(r.tailerCaughtUp),
                "checkpoint": r.tailerCheckpoint ?? "(none)", "newest_capture": r.newestCapture ?? "(none)",
            ],
            remedy: "start the tailer: ledgerlift shadow run --legacy … --store … --mapping … --follow")
    }

    static func lag(_ r: CutoverReadings, _ options: CutoverGateOptions) -> CutoverGate {
        let limit =
            options.maxLag.components.seconds * 1000 + options.maxLag.components.attoseconds / 1_000_000_000_000_000
        // Without samples in the window, only a caught-up tailer shows there is no lag to measure.
        let passed = r.lagP99Milliseconds.map { $0 < limit } ?? r.tailerCaughtUp
        return CutoverGate(
            name: "lag", passed: passed,
            evidence: [
                "p99_ms": r.lagP99Milliseconds.map(String.init) ?? "(no samples)", "max_ms": String(limit),
                "samples": String(r.lagSamples), "window_s": String(r.lagWindowSeconds),
            ],
            remedy: "wait for the tailer to catch up (ledgerlift shadow status shows its lag), or raise --max-lag")
    }

    static func cleanVerifications(_ r: CutoverReadings, _ options: CutoverGateOptions) -> CutoverGate {
        let streak = r.cleanStreak
        let minutes = options.cleanSpan.components.seconds / 60
        let spanSeconds = streak.since.flatMap { since in
            streak.lastAt.map { ($0.microsecondsSinceEpoch - since.microsecondsSinceEpoch) / 1_000_000 }
        }
        return CutoverGate(
            name: "clean_verifications",
            passed: streak.satisfies(minimum: options.cleanVerifications, over: options.cleanSpan),
            evidence: [
                "streak": String(streak.count), "required": String(options.cleanVerifications),
                "span_s": spanSeconds.map(String.init) ?? "0",
                "required_span_s": String(options.cleanSpan.components.seconds),
                "since": streak.since?.iso8601 ?? "(none)",
            ],
            remedy:
                "keep verifying under traffic until \(options.cleanVerifications) clean verifications in a row span "
                + "\(minutes) minute(s) (ledgerlift shadow run --verify-every …); a difference restarts the streak: "
                + "ledgerlift diff shows it")
    }

    static func candidateMismatches(_ r: CutoverReadings, _ options: CutoverGateOptions) -> CutoverGate {
        guard let window = r.candidate, window.commands > 0 else {
            return CutoverGate(
                name: "candidate_mismatches", passed: true,
                evidence: [
                    "commands": "0", "note": "no candidate commands recorded (serve --mode candidate did not run)",
                ],
                remedy: nil)
        }
        return CutoverGate(
            name: "candidate_mismatches", passed: window.mismatches == 0,
            evidence: [
                "commands": String(window.commands), "window": String(options.candidateCommands),
                "mismatches": String(window.mismatches), "unverifiable": String(window.unverifiable),
                "pending": String(window.pending),
            ],
            remedy: "investigate and fix the mismatches (ledgerlift shadow status lists them), then run candidate mode "
                + "until the last \(options.candidateCommands) commands have none")
    }
}
