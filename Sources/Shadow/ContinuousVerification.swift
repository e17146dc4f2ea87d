import Billing
import Diff
import EventStore
import Foundation
import Logging
import Mapping
import Postgres
import Synchronization

/// Verifies, again and again under live traffic, that the read models equal legacy — the
/// evidence the cutover's gates read (`shadow run --verify-every DURATION`).
///
/// Each verification is one ``DiffChecker`` run whose differences are re-checked only once the
/// tailer has applied every change legacy had committed when the first pass ended: a row
/// written in legacy during the check and not yet tailed looks like a difference in the first
/// pass and is gone in the re-check, so only **persistent** differences make a verification
/// `different`. Every verification is stored in `shadow_verifications` (``ShadowRecords``),
/// errors included, so a gate reading ``VerificationHistory/cleanStreak(covering:in:)`` never
/// passes over a check that could not run.
public struct ContinuousVerifier: Sendable {
    public struct Options: Sendable {
        public var legacyDSN: String
        public var storeDSN: String
        public var mapping: MappingFile
        /// Entities to compare; `nil` for every entity the mapping maps.
        public var entities: [Entity]?
        public var storeSchema: String
        public var readSchema: String
        public var capture: CaptureSchema
        /// How long to wait for the tailer to pass the legacy position before re-checking anyway
        /// (the report then says so in its notes).
        public var tailerTimeout: Duration
        /// How long the diff waits for the projection after that.
        public var catchUpTimeout: Duration
        /// Re-checks at most: a key legacy wrote again while its re-check waited still differs
        /// then, and is re-checked once more after the tailer has passed the newer position.
        public var reverificationRounds: Int
        /// Differences listed per entity in the stored report.
        public var maxRows: Int
        public var checkInvariants: Bool
        /// Stored as the verification's `origin`.
        public var origin: String
        /// The caller's logger (one line per verification at `info`); none by default.
        public var logger = Logger(label: "ledgerlift.shadow.verify", factory: { _ in SwiftLogNoOpLogHandler() })

        public init(
            legacyDSN: String, storeDSN: String, mapping: MappingFile, entities: [Entity]? = nil,
            storeSchema: String = EventStore().schema, readSchema: String = "ledgerlift_read",
            capture: CaptureSchema = CaptureSchema(), tailerTimeout: Duration = .seconds(60),
            catchUpTimeout: Duration = .seconds(30), reverificationRounds: Int = 3, maxRows: Int = 100,
            checkInvariants: Bool = true, origin: String = "shadow run"
        ) {
            self.legacyDSN = legacyDSN
            self.storeDSN = storeDSN
            self.mapping = mapping
            self.entities = entities
            self.storeSchema = storeSchema
            self.readSchema = readSchema
            self.capture = capture
            self.tailerTimeout = tailerTimeout
            self.catchUpTimeout = catchUpTimeout
            self.reverificationRounds = reverificationRounds
            self.maxRows = maxRows
            self.checkInvariants = checkInvariants
            self.origin = origin
        }
    }

    public let options: Options

    public init(_ options: Options) {
        self.options = options
    }

    /// Where the tailer is: its checkpoint, `nil` before it applied anything.
    public typealias TailerPosition = @Sendable () async throws -> CapturePosition?

    /// Runs one verification and stores it.
    ///
    /// - Parameter tailerPosition: the tailer's checkpoint now; polled (every 100 ms) while
    ///   waiting for it to pass the legacy position. In-process, the tailer's own state; from
    ///   another process, its row in `shadow_tailers`.
    /// - Returns: the stored record; a check that could not run is stored with verdict `error`.
    /// - Throws: only when the record cannot be stored.
    public func runOnce(tailerPosition: @escaping TailerPosition) async throws -> VerificationRecord {
        let options = options
        let store = try await Connection.connect(options.storeDSN, applicationName: "ledgerlift shadow verify")
        defer { store.close() }
        let startedAt = try await store.query("SELECT clock_timestamp()").rows[0].decode(
            at: 0, as: PostgresTimestamp.self)
        let entities = options.entities ?? Entity.allCases.filter { options.mapping[entity: $0] != nil }
        var record = VerificationRecord(
            origin: options.origin, startedAt: startedAt, legacyPosition: nil, entities: entities, verdict: .error)
        do {
            var diffOptions = DiffChecker.Options(
                legacyDSN: options.legacyDSN, storeDSN: options.storeDSN, mapping: options.mapping,
                entities: options.entities, maxRows: options.maxRows, storeSchema: options.storeSchema,
                readSchema: options.readSchema, checkInvariants: options.checkInvariants,
                catchUpTimeout: options.catchUpTimeout)
            diffOptions.logger = options.logger
            diffOptions.reverificationRounds = options.reverificationRounds
            let (report, position) = try await Self.check(
                diffOptions, capture: options.capture, tailerTimeout: options.tailerTimeout,
                tailerPosition: tailerPosition)
            record.legacyPosition = position
            record.record(report)
        } catch {
            record.verdict = .error
            record.error = "\(error)"
        }
        let stored = try await store.withSession { [record] in
            try ShadowRecords(schema: options.storeSchema).insert(record, in: $0)
        }
        options.logger.info(
            "verification",
            metadata: [
                "verdict": "\(stored.verdict.rawValue)", "rows": "\(stored.rowsCompared)",
                "differences": "\(stored.differences)", "persistent": "\(stored.persistentDifferences)",
                "legacy_position": "\(stored.legacyPosition?.description ?? "none")",
            ])
        return stored
    }

    /// One diff whose differences are re-checked only after the tailer has passed the legacy
    /// position (see the type's documentation), not stored: what ``runOnce(tailerPosition:)``
    /// and `ledgerlift diff --tailer NAME` run.
    ///
    /// - Parameters:
    ///   - diff: the check; its ``DiffChecker/Options/beforeReverification`` is replaced.
    ///   - tailerPosition: where the tailer is; `nil` re-checks without waiting for a tailer.
    /// - Returns: the report (a note says when the tailer did not pass the position in time) and
    ///   the newest committed capture position when the check started (`nil`: nothing captured).
    ///   - tailerRunning: whether that tailer runs, asked before each wait; when it does not,
    ///     the differences are re-checked at once (waiting would only time out) and a note says so.
    public static func check(
        _ diff: DiffChecker.Options, capture: CaptureSchema = CaptureSchema(), tailerTimeout: Duration = .seconds(60),
        tailerPosition: TailerPosition?, tailerRunning: TailerLiveness? = nil
    ) async throws -> (report: DiffReport, legacyPosition: CapturePosition?) {
        let legacyDSN = diff.legacyDSN
        let position = try await newestCommitted(legacyDSN, capture)
        var diff = diff
        // Under live traffic a hot key can be written again during every re-check: its
        // difference then says nothing, and it is named in a note instead (docs/diff.md).
        diff.settleRacingWrites = true
        let waitNote = Mutex<String?>(nil)
        let notRunningNote = Mutex<String?>(nil)
        if let tailerPosition {
            diff.beforeReverification = {
                if let tailerRunning, try await !tailerRunning.isRunning() {
                    notRunningNote.withLock {
                        $0 =
                            "the tailer \(tailerRunning.name) is not running: differences were re-checked without "
                            + "waiting for it"
                    }
                    return
                }
                // The position now is at least every position the first pass could see: the
                // first pass's legacy snapshot was taken before this read. Waiting for the
                // position read at check start instead would miss a write committed between
                // that read and the snapshot.
                guard let target = try await newestCommitted(legacyDSN, capture) else { return }
                if try await !waitForTailer(passing: target, timeout: tailerTimeout, tailerPosition) {
                    waitNote.withLock {
                        $0 =
                            "the tailer had not passed legacy position \(target) after \(tailerTimeout): "
                            + "differences were re-checked anyway and may include changes not yet tailed"
                    }
                }
            }
        }
        var report = try await DiffChecker(diff).run()
        if let note = notRunningNote.withLock({ $0 }) { report.notes.append(note) }
        if let note = waitNote.withLock({ $0 }) { report.notes.append(note) }
        return (report, position)
    }

    /// Whether the tailer named ``name`` runs: whether a session holds its advisory lock
    /// (`ledgerlift.shadow/<name>`) in the store, as `shadow status` decides it.
    public struct TailerLiveness: Sendable {
        public var name: String
        public var isRunning: @Sendable () async throws -> Bool

        public init(name: String, isRunning: @escaping @Sendable () async throws -> Bool) {
            self.name = name
            self.isRunning = isRunning
        }

        /// Asks `store` at each call.
        public static func of(_ name: String, store: Connection) -> TailerLiveness {
            TailerLiveness(name: name) {
                try await store.withSession { try $0.holder(of: Resync.tailerLock(name: name)) } != nil
            }
        }
    }

    /// Whether there is something to verify: the read models exist. Right after a backfill the
    /// tailer builds them first (blue/green, as `project` does); a verification started before
    /// that could only record an error that says nothing about the data.
    public func readModelsExist() async throws -> Bool {
        let store = try await Connection.connect(options.storeDSN, applicationName: "ledgerlift shadow verify")
        defer { store.close() }
        let table = quoteIdentifier(options.readSchema) + ".projection_state"
        return try await store.query("SELECT to_regclass($1) IS NOT NULL", [table]).rows[0].decode(at: 0, as: Bool.self)
    }

    /// Runs one verification, waiting on the checkpoint the tailer named `name` commits in
    /// `shadow_tailers` (in this process or another).
    public func runOnce(tailer name: String) async throws -> VerificationRecord {
        let store = try await Connection.connect(options.storeDSN, applicationName: "ledgerlift shadow verify")
        defer { store.close() }
        return try await runOnce(
            tailerPosition: Self.checkpoint(of: name, store: store, storeSchema: options.storeSchema))
    }

    /// The checkpoint the tailer named `name` committed, read from `shadow_tailers` on `store`
    /// at each call; `nil` before the tailer recorded one.
    public static func checkpoint(of name: String, store: Connection, storeSchema: String = EventStore().schema)
        -> TailerPosition
    {
        let table = quoteIdentifier(storeSchema) + ".shadow_tailers"
        return {
            try await store.withSession { session -> CapturePosition? in
                guard
                    try session.query("SELECT to_regclass($1) IS NOT NULL", [table]).rows[0].decode(
                        at: 0, as: Bool.self),
                    let row = try session.query(
                        "SELECT checkpoint_xid::text, checkpoint_id FROM \(table) WHERE name = $1", [name]
                    ).first
                else { return nil }
                return CapturePosition(
                    xid: try row.decode(at: 0, as: String.self), id: try row.decode(at: 1, as: Int64.self))
            }
        }
    }

    /// ``run(every:tailerPosition:onResult:)`` waiting on the tailer named `name` (see
    /// ``runOnce(tailer:)``): what `shadow run --verify-every DURATION` runs beside its tailer.
    public func run(
        every interval: Duration, tailer name: String, onResult: @Sendable (VerificationRecord) -> Void = { _ in }
    )
        async throws
    {
        let store = try await Connection.connect(options.storeDSN, applicationName: "ledgerlift shadow verify")
        defer { store.close() }
        try await run(
            every: interval, tailerPosition: Self.checkpoint(of: name, store: store, storeSchema: options.storeSchema),
            onResult: onResult)
    }

    /// Runs a verification every `interval` (from the start of one to the start of the next; a
    /// verification longer than that is followed at once by the next) until the task is
    /// cancelled.
    ///
    /// - Parameter onResult: called with each stored record.
    public func run(
        every interval: Duration, tailerPosition: @escaping TailerPosition,
        onResult: @Sendable (VerificationRecord) -> Void = { _ in }
    ) async throws {
        let clock = ContinuousClock()
        while !Task.isCancelled {
            let next = clock.now + interval
            onResult(try await runOnce(tailerPosition: tailerPosition))
            do { try await clock.sleep(until: next) } catch { return }
        }
    }

    // MARK: - Positions

    /// The newest committed change in the legacy outbox, `(xid, id)` order; `nil` when it is
    /// empty (everything applied and pruned) or capture is not installed.
    ///
    /// One statement in its own snapshot: it sees exactly the transactions committed now. A
    /// transaction with a smaller xid that commits later holds the tailer back until it does
    /// (the tailer reads in gap-safe order), which is what waiting for this position means.
    public static func newestCommitted(in session: Session, capture: CaptureSchema = CaptureSchema()) throws
        -> CapturePosition?
    {
        guard try capture.version(session) != nil else { return nil }
        guard
            let row = try session.query(
                // Ordered by the xid8 column, not by its text (`ORDER BY xid` would name the output).
                "SELECT c.xid::text, c.id FROM \(capture.s).changes c ORDER BY c.xid DESC, c.id DESC LIMIT 1"
            ).first
        else { return nil }
        return CapturePosition(xid: try row.decode(at: 0, as: String.self), id: try row.decode(at: 1, as: Int64.self))
    }

    static func newestCommitted(_ legacyDSN: String, _ capture: CaptureSchema) async throws -> CapturePosition? {
        let legacy = try await Connection.connect(legacyDSN, applicationName: "ledgerlift shadow verify")
        defer { legacy.close() }
        return try await legacy.withSession { try newestCommitted(in: $0, capture: capture) }
    }

    /// Polls `tailerPosition` until it is at or past `target`.
    /// - Returns: whether it got there within `timeout`.
    static func waitForTailer(passing target: CapturePosition, timeout: Duration, _ tailerPosition: TailerPosition)
        async throws -> Bool
    {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            if let position = try await tailerPosition(), position >= target { return true }
            guard clock.now < deadline else { return false }
            try await clock.sleep(for: .milliseconds(100))
        }
    }
}
