import Billing
import Commands
import EventStore
import Mapping
import Postgres
import Shadow

/// Why a cutover command could not do what it was asked. Each case says what to do.
public enum CutoverError: Error, Sendable, Hashable, CustomStringConvertible {
    case notInitialized(name: String)
    case alreadyInitialized(name: String, state: CutoverState)
    /// Another cutover command holds the operator lock.
    case busy(name: String, holder: String)
    case refused(CutoverRefusal)
    /// A gate failed: the transition was not made (its gates are in the outcome).
    case gatesFailed(step: CutoverStep, failing: [String])
    /// This build stops at `verified`: the read and write switches are not in it.
    case notImplemented(step: CutoverStep)
    /// The mapping file changed since `cutover init`: its gates would judge another migration.
    case mappingChanged(path: String, recorded: String, now: String)
    /// Another writer appended to the cutover's stream meanwhile.
    case concurrentChange(stream: String)
    case undecodableEvent(stream: String, version: Int64, type: String, reason: String)
    case inconsistentStream(stream: String, version: Int64, reason: String)
    case invalidName(String)
    /// Another cutover of this store, not aborted, owns the store's routing.
    case routingOwned(by: String, state: CutoverState)
    /// A switch was interrupted (its command killed midway); `advance` or `rollback` finishes it.
    case switchPending(from: CutoverState, to: CutoverState)

    public var description: String {
        switch self {
        case .notInitialized(let name):
            "no cutover named \"\(name)\" in this store: start one with `ledgerlift cutover init --name \(name) …`"
        case .alreadyInitialized(let name, let state):
            "the cutover \"\(name)\" already exists (state \(state.rawValue)); use another --name for a new one"
        case .busy(let name, let holder):
            "another cutover command holds the cutover \"\(name)\" (\(holder)); wait for it, or add --wait to queue"
        case .refused(let refusal): refusal.description
        case .gatesFailed(let step, let failing):
            "\(step): gate(s) failed: \(failing.joined(separator: ", "))"
        case .notImplemented(let step):
            "\(step) is not implemented in this build: the read switch, write switch, rollback and completion "
                + "come in a later release; this build takes a cutover up to verified (and abort)"
        case .mappingChanged(let path, let recorded, let now):
            "the mapping \(path) changed since cutover init (fingerprint \(recorded), now \(now)): "
                + "restore it, or abort this cutover and init a new one with the new mapping"
        case .concurrentChange(let stream):
            "the stream \(stream) changed while this command ran (another writer?): run the command again"
        case .undecodableEvent(let stream, let version, let type, let reason):
            "event \(version) of \(stream) (\(type)) cannot be read: \(reason)"
        case .inconsistentStream(let stream, let version, let reason):
            "the stream \(stream) is inconsistent at version \(version): \(reason)"
        case .routingOwned(let other, let state):
            "the cutover \"\(other)\" (state \(state.rawValue)) owns this store's routing: a store has one cutover at "
                + "a time; abort it first\(state == .completed ? " (it is completed: the ledger is the authority for good)" : "")"
        case .switchPending(let from, let to):
            "the switch \(from.rawValue) → \(to.rawValue) was interrupted; run `ledgerlift cutover advance` or "
                + "`cutover rollback` (with --legacy) first: it completes or undoes it from what legacy shows"
        case .invalidName(let name):
            "invalid cutover name \"\(name)\": use letters, digits, '_', '.' and '-' (at most 100 characters)"
        }
    }

    /// The command's exit status: 1 when a gate or the machine refused, 2 when it could not run.
    public var exitCode: Int32 {
        switch self {
        case .gatesFailed, .refused, .busy, .switchPending: 1
        default: 2
        }
    }
}

/// What `advance` did (or, with `--dry-run`, would do).
public struct CutoverAdvanceOutcome: Sendable, Hashable {
    public var step: CutoverStep
    public var gates: [CutoverGate]
    public var dryRun: Bool
    /// Whether the transition was recorded (never with `--dry-run`, never with a failing gate).
    public var recorded: Bool
    /// What a switch measured (freeze time, lock wait, keys re-verified…); empty for other steps.
    public var measurements: [String: String] = [:]
    /// `--to` named the state the cutover is in already: nothing to do (a playbook's step run
    /// again after a kill, a script re-run). The step is the one that got there.
    public var already = false

    public init(
        step: CutoverStep, gates: [CutoverGate], dryRun: Bool, recorded: Bool, measurements: [String: String] = [:]
    ) {
        self.step = step
        self.gates = gates
        self.dryRun = dryRun
        self.recorded = recorded
        self.measurements = measurements
    }

    public var passed: Bool { gates.allSatisfy(\.passed) }
}

/// Where a cutover stands: its state, the next step and that step's gates as measured now.
public struct CutoverStatus: Sendable, Hashable {
    public var record: CutoverRecord
    public var next: CutoverStep?
    /// The next step's gates; `nil` when there is no next step or this build does not implement it.
    public var gates: [CutoverGate]?
    /// Who takes reads and writes now (`nil`: no routing row — another cutover cleared it).
    public var routing: Routing?
    /// The source tables carrying legacy's write guard now.
    public var guardedTables: [String] = []
    /// The cutover's reverse sync, once the write switch started it.
    public var reverseSync: ReverseSync.Status?

    public init(
        record: CutoverRecord, next: CutoverStep?, gates: [CutoverGate]?, routing: Routing? = nil,
        guardedTables: [String] = [], reverseSync: ReverseSync.Status? = nil
    ) {
        self.record = record
        self.next = next
        self.gates = gates
        self.routing = routing
        self.guardedTables = guardedTables
        self.reverseSync = reverseSync
    }
}

/// Carries out cutover commands: reads the stream, asks ``CutoverMachine``, evaluates gates on
/// real readings, appends the event. Every command holds the operator lock
/// (``CutoverLog/lock``) on a connection of its own for its whole run.
public struct CutoverRunner: Sendable {
    public var log: CutoverLog
    public var capture: CaptureSchema
    public var tailerName: String
    public var readSchema: String
    public var lagWindow: Duration

    public init(
        store: EventStore = EventStore(), name: String, capture: CaptureSchema = CaptureSchema(),
        tailerName: String = "default", readSchema: String = "ledgerlift_read", lagWindow: Duration = .seconds(300)
    ) throws(CutoverError) {
        guard !name.isEmpty, name.count <= 100,
            name.unicodeScalars.allSatisfy({
                $0.properties.isAlphabetic && $0.isASCII || "0123456789_.-".unicodeScalars.contains($0)
            })
        else { throw .invalidName(name) }
        self.log = CutoverLog(store: store, name: name)
        self.capture = capture
        self.tailerName = tailerName
        self.readSchema = readSchema
        self.lagWindow = lagWindow
    }

    /// Takes the operator lock on `connection` (refusing, naming the holder, unless `wait`),
    /// runs `body`, and releases it.
    public func withOperatorLock<T: Sendable>(
        on connection: Connection, wait: Bool, _ body: () async throws -> T
    ) async throws -> T {
        let lock = log.lock
        let name = log.name
        try await connection.withSession { session in
            if wait { return try session.lock(lock) }
            guard try session.tryLock(lock) else {
                throw CutoverError.busy(name: name, holder: try session.holder(of: lock) ?? "a session that just ended")
            }
        }
        do {
            let value = try await body()
            try await connection.withSession { _ = try $0.unlock(lock) }
            return value
        } catch {
            _ = try? await connection.withSession { _ = try $0.unlock(lock) }
            throw error
        }
    }

    /// Starts the cutover's stream at `planned`.
    public func initialize(
        legacy: String, store: Connection, mappingPath: String, mapping: MappingFile
    ) async throws -> CutoverRecord {
        let log = self.log
        let event = CutoverEvent.Initialized(
            name: log.name, legacy: ConnectionString.masked(legacy), store: store.maskedDSN, mappingPath: mappingPath,
            mappingFingerprint: mapping.fingerprint, actor: .current())
        return try await store.withSession { session in
            if let existing = try log.read(in: session) {
                throw CutoverError.alreadyInitialized(name: log.name, state: existing.state)
            }
            // One routing per store: another cutover that has not been aborted owns it (a
            // completed one made the ledger the authority for good).
            if let routing = try RoutingTable(store: log.store).read(in: session), routing.cutover != log.name {
                let owner = CutoverLog(store: log.store, name: routing.cutover)
                if let other = try owner.read(in: session), other.state != .aborted {
                    throw CutoverError.routingOwned(by: routing.cutover, state: other.state)
                }
            }
            return try session.transaction { tx in
                try log.append(.initialized(event), expectedVersion: 0, in: tx)
                // From now on serve refuses writes: legacy takes them until the write switch.
                try RoutingTable(store: log.store).set(cutover: log.name, reads: .legacy, writes: .legacy, in: tx)
                guard let record = try log.read(in: tx) else { throw CutoverError.notInitialized(name: log.name) }
                return record
            }
        }
    }

    /// The folded stream.
    public func record(store: Connection) async throws -> CutoverRecord {
        let log = self.log
        return try await store.withSession { session in
            guard let record = try log.read(in: session) else { throw CutoverError.notInitialized(name: log.name) }
            return record
        }
    }

    /// The state and the next step's gates as measured now.
    public func status(
        legacy: Connection, store: Connection, mapping: MappingFile, options: CutoverGateOptions
    ) async throws -> CutoverStatus {
        let record = try await self.record(store: store)
        // What the application meets now, whatever the state says: a rollback killed while
        // writes were frozen leaves them frozen until the next cutover command finishes it.
        var status = CutoverStatus(record: record, next: nil, gates: nil)
        let (log, name) = (self.log, self.log.name)
        (status.routing, status.reverseSync) = try await store.withSession { session in
            let routing = try RoutingTable(store: log.store).read(in: session)
            return (
                routing?.cutover == name ? routing : nil,
                try ReverseSync.status(scope: name, store: log.store, in: session)
            )
        }
        status.guardedTables = try await legacy.withSession { try LegacyWriteGuard(mapping: mapping).guardedTables(in: $0) }
        guard let next = record.state.next else { return status }
        let step = CutoverStep(from: record.state, to: next)
        status.next = step
        guard CutoverGates.isImplemented(step) else { return status }
        try Self.checkMapping(mapping, record)
        let readings = try await readings(legacy: legacy, store: store, mapping: mapping, options: options)
        status.gates = CutoverGates.evaluate(step, readings: readings, options: options)
        return status
    }

    /// One gated step forward (the next state; `to` must name it when given).
    ///
    /// Gates are measured, then the event is appended expecting the version the state was read
    /// at: a concurrent writer makes the append fail rather than two transitions from one state.
    /// - Returns: the gates as measured; a failing gate is not an error here (the caller shows
    ///   the gates, then refuses), and nothing is recorded then.
    /// - Throws: ``CutoverError/refused(_:)`` when the machine refuses the step,
    ///   ``CutoverError/notImplemented(step:)`` past `verified`,
    ///   ``CutoverError/mappingChanged(path:recorded:now:)``, ``CutoverError/concurrentChange(stream:)``.
    public func advance(
        to target: CutoverState?, dryRun: Bool, reason: String?, legacy: Connection, store: Connection,
        mapping: MappingFile, options: CutoverGateOptions, switchOptions: CutoverSwitchOptions = CutoverSwitchOptions()
    ) async throws -> CutoverAdvanceOutcome {
        try Self.checkMapping(mapping, try await self.record(store: store))
        let before = try await self.record(store: store)
        let record = dryRun ? before : try await recover(legacy: legacy, store: store, mapping: mapping)
        // A write switch interrupted after legacy's commit was just completed: that was this
        // advance (the operator asked for the step the killed command was taking).
        if let pending = before.pendingSwitch, pending.to == .writesSwitched, record.state == .writesSwitched,
            case .advanced(let done)? = record.history.last
        {
            return CutoverAdvanceOutcome(
                step: CutoverStep(from: pending.from, to: pending.to), gates: done.gates, dryRun: false, recorded: true,
                measurements: done.measurements ?? [:])
        }
        if let target, record.state == target, record.pendingSwitch == nil {
            var from = target
            for event in record.history.reversed() {
                if case .advanced(let t) = event, t.to == target {
                    from = t.from
                    break
                }
            }
            var outcome = CutoverAdvanceOutcome(
                step: CutoverStep(from: from, to: target), gates: [], dryRun: dryRun, recorded: false)
            outcome.already = true
            if let pending = before.pendingSwitch, !dryRun {
                // Not "nothing": the interrupted switch was just completed or undone (its event says which).
                outcome.measurements["recovered"] =
                    "the interrupted switch \(pending.from.rawValue) → \(pending.to.rawValue) was finished or undone first (cutover log says which)"
            }
            return outcome
        }
        let next: CutoverState
        switch CutoverMachine.transition(record.state, .advance(to: target)) {
        case .failure(let refusal): throw CutoverError.refused(refusal)
        case .success(let result): next = result.state
        }
        let step = CutoverStep(from: record.state, to: next)
        guard CutoverGates.isImplemented(step) else {
            throw CutoverError.notImplemented(step: step)
        }
        try Self.checkMapping(mapping, record)
        let readings = try await readings(legacy: legacy, store: store, mapping: mapping, options: options)
        let gates = CutoverGates.evaluate(step, readings: readings, options: options) ?? []
        var outcome = CutoverAdvanceOutcome(step: step, gates: gates, dryRun: dryRun, recorded: false)
        guard !dryRun, outcome.passed else { return outcome }
        let accepted =
            readings.quarantined.values.reduce(0, +) > 0 && step.to == .backfilled ? options.acceptQuarantine : nil
        let log = self.log
        switch step.to {
        case .writesSwitched:
            var switchOptions = switchOptions
            switchOptions.acceptQuarantine = options.acceptQuarantine
            let transition = try await switchWrites(
                record, gates: gates, reason: reason, legacy: legacy, store: store, mapping: mapping,
                options: switchOptions)
            outcome.measurements = transition.measurements ?? [:]
        case .completed:
            outcome.measurements = try await finish(
                record, gates: gates, reason: reason, legacy: legacy, store: store, mapping: mapping,
                acceptQuarantine: options.acceptQuarantine)
        default:
            let event = CutoverEvent.advanced(
                .init(
                    from: step.from, to: step.to, actor: .current(), reason: reason, gates: gates,
                    acceptedQuarantine: accepted))
            // The read switch flips the read routing in the same transaction as its record.
            let routeReads = step.to == .readsSwitched
            try await store.withSession { session in
                try session.transaction { tx in
                    if routeReads {
                        try RoutingTable(store: log.store).set(cutover: log.name, reads: .ledger, writes: .legacy, in: tx)
                    }
                    try log.append(event, expectedVersion: record.version, in: tx)
                }
            }
        }
        outcome.recorded = true
        return outcome
    }

    /// One step back: `reads_switched → shadowing` (reads routed to legacy again) or
    /// `writes_switched → reads_switched` (the write switch's rollback, bounded by the freeze
    /// budget; `drain` applies the ledger's writes to legacy first).
    public func rollback(
        reason: String?, legacy: Connection, store: Connection, mapping: MappingFile,
        switchOptions: CutoverSwitchOptions = CutoverSwitchOptions(), drain: ReverseSyncDrain
    ) async throws -> CutoverEvent.Transition {
        try Self.checkMapping(mapping, try await self.record(store: store))
        let before = try await self.record(store: store)
        let record = try await recover(legacy: legacy, store: store, mapping: mapping)
        // A rollback interrupted after the guard was removed was just completed: that was this rollback.
        if let pending = before.pendingSwitch, pending.from == .writesSwitched, record.state == .readsSwitched,
            case .rolledBack(let done)? = record.history.last
        {
            return done
        }
        guard case .success(let result) = CutoverMachine.transition(record.state, .rollback) else {
            throw CutoverError.refused(.rollbackNotAllowed(from: record.state))
        }
        if record.state == .writesSwitched {
            return try await rollbackWrites(
                record, reason: reason, legacy: legacy, store: store, mapping: mapping, options: switchOptions,
                drain: drain)
        }
        let transition = CutoverEvent.Transition(
            from: record.state, to: result.state, actor: .current(), reason: reason, gates: [])
        let log = self.log
        try await store.withSession { session in
            try session.transaction { tx in
                try RoutingTable(store: log.store).set(cutover: log.name, reads: .legacy, writes: .legacy, in: tx)
                try log.append(.rolledBack(transition), expectedVersion: record.version, in: tx)
            }
        }
        return transition
    }

    /// Ends the cutover at `aborted` (allowed before the write switch), with the reason.
    public func abort(reason: String, store: Connection) async throws -> CutoverRecord {
        let record = try await self.record(store: store)
        if let pending = record.pendingSwitch {
            // Only `advance` or `rollback` (which take the legacy DSN) can finish it.
            throw CutoverError.switchPending(from: pending.from, to: pending.to)
        }
        let step: CutoverStep
        switch CutoverMachine.transition(record.state, .abort) {
        case .failure(let refusal): throw CutoverError.refused(refusal)
        case .success(let result): step = CutoverStep(from: record.state, to: result.state)
        }
        let log = self.log
        let event = CutoverEvent.aborted(
            .init(from: step.from, to: step.to, actor: .current(), reason: reason, gates: []))
        return try await store.withSession { session in
            try session.transaction { tx in
                // Legacy keeps (or takes back) reads and writes; serve keeps refusing writes.
                try RoutingTable(store: log.store).set(cutover: log.name, reads: .legacy, writes: .legacy, in: tx)
                try log.append(event, expectedVersion: record.version, in: tx)
                guard let record = try log.read(in: tx) else { throw CutoverError.notInitialized(name: log.name) }
                return record
            }
        }
    }

    static func checkMapping(_ mapping: MappingFile, _ record: CutoverRecord) throws(CutoverError) {
        guard mapping.fingerprint == record.initialized.mappingFingerprint else {
            throw .mappingChanged(
                path: record.initialized.mappingPath, recorded: record.initialized.mappingFingerprint,
                now: mapping.fingerprint)
        }
    }

    /// Measures everything the gates judge, read only, from both databases.
    public func readings(
        legacy: Connection, store: Connection, mapping: MappingFile, options: CutoverGateOptions
    ) async throws -> CutoverReadings {
        let status = try await ShadowStatus.read(
            legacy: legacy, store: store, storeSchema: log.store.schema, capture: capture, tailerName: tailerName,
            lagWindow: lagWindow, readSchema: readSchema)
        let planned = CapturePlan(mapping).tables.map(\.table)
        // Resolved as the capture records them (`format('%I.%I')`), so `legacy.invoices` and
        // `invoices` on the search path compare equal to what was installed.
        let sourceTables = try await legacy.withSession { session in
            try planned.map { table in
                try session.query(
                    """
                    SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
                      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)
                    """, [MappingFile.Source.sqlName(table)]
                ).first?.decode(at: 0, as: String.self) ?? table
            }
        }
        let candidates = CandidateCommandLog(store: log.store)
        let window = options.candidateCommands
        let recent = try await store.withSession { session -> CandidateCommandLog.RecentVerdicts? in
            try candidates.exists(in: session) ? try candidates.recentVerdicts(lastCommands: window, in: session) : nil
        }
        let reverse = try await store.withSession { [log] session -> CutoverReadings.ReverseSyncReading in
            let status = try ReverseSync.status(scope: log.name, store: log.store, in: session)
            let running = try session.holder(of: ReverseSync.lock(scope: log.name)) != nil
            return CutoverReadings.ReverseSyncReading(
                entitiesWithoutWriteBack: mapping.entitiesWithoutWriteBack.map(\.rawValue),
                running: running && !(status?.failing ?? false), behind: status?.pendingEvents,
                quarantined: status?.quarantined ?? 0,
                quarantineExamples: status?.quarantineExamples.map(\.description) ?? [])
        }
        let checkpoint = status.tailer?.checkpoint
        let newest = status.capture?.newest
        let caughtUp = newest.map { newest in checkpoint.map { $0 >= newest } ?? false } ?? (status.capture != nil)
        return CutoverReadings(
            sourceTables: sourceTables, capturedTables: status.capture.map { $0.tables.map(\.table) },
            handoverReady: status.handover.isReady, handover: status.handover.description,
            quarantined: Dictionary(uniqueKeysWithValues: status.quarantined.map { ($0.key.rawValue, $0.value) }),
            tailerRunning: status.tailer?.running ?? false, tailerCaughtUp: caughtUp,
            tailerCheckpoint: checkpoint?.description, newestCapture: newest?.description,
            lagSamples: status.lag?.samples ?? 0, lagP99Milliseconds: status.lag?.p99Milliseconds,
            lagWindowSeconds: lagWindow.components.seconds, cleanStreak: status.cleanStreak,
            candidate: recent.flatMap {
                $0.commands == 0
                    ? nil
                    : .init(
                        commands: $0.commands, mismatches: $0.mismatch, unverifiable: $0.unverifiable,
                        pending: $0.pending)
            }, reverseSync: reverse)
    }
}
