import EventStore
import Foundation
import Postgres

/// One gate's verdict as evaluated and as recorded in the cutover's stream: what was measured,
/// and what to do when it failed.
public struct CutoverGate: Sendable, Hashable, Codable {
    /// Stable name (`capture_installed`), for scripts reading the JSON.
    public var name: String
    public var passed: Bool
    /// The measurements the verdict rests on, as text values (a JSON object in the event).
    public var evidence: [String: String]
    /// What to do when it fails; `nil` when it passed.
    public var remedy: String?

    public init(name: String, passed: Bool, evidence: [String: String], remedy: String?) {
        self.name = name
        self.passed = passed
        self.evidence = evidence
        self.remedy = passed ? nil : remedy
    }
}

/// Who ran a cutover command, where and when: the audit trail's provenance.
public struct CutoverActor: Sendable, Hashable, Codable {
    /// The operating-system user.
    public var who: String
    public var host: String
    /// ISO 8601 UTC.
    public var at: String

    public init(who: String, host: String, at: String) {
        self.who = who
        self.host = host
        self.at = at
    }

    /// This process's user and host, now.
    public static func current() -> CutoverActor {
        let environment = ProcessInfo.processInfo.environment
        let user = ProcessInfo.processInfo.userName
        return CutoverActor(
            who: user.isEmpty ? (environment["USER"] ?? "unknown") : user, host: ProcessInfo.processInfo.hostName,
            at: PostgresTimestamp.now.iso8601)
    }
}

extension PostgresTimestamp {
    /// This process's clock, to the microsecond.
    static var now: PostgresTimestamp {
        PostgresTimestamp(microsecondsSinceEpoch: Int64((Date().timeIntervalSince1970 * 1_000_000).rounded()))
    }
}

/// The events of a `cutover-<name>` stream. They are not billing events: the projector skips
/// their types (``Billing/Projector/decode(_:)`` returns `nil`), so read models, `diff` and
/// `query` never see them, while the migration's own audit trail lives in the same append-only,
/// versioned store as the ledger it builds.
public enum CutoverEvent: Sendable, Hashable {
    /// Where the cutover was planned: never a password, only masked connection strings and the
    /// mapping's path and fingerprint (advance refuses a mapping that changed since).
    public struct Initialized: Sendable, Hashable, Codable {
        public var name: String
        public var legacy: String
        public var store: String
        public var mappingPath: String
        public var mappingFingerprint: String
        public var actor: CutoverActor

        public init(
            name: String, legacy: String, store: String, mappingPath: String, mappingFingerprint: String,
            actor: CutoverActor
        ) {
            self.name = name
            self.legacy = legacy
            self.store = store
            self.mappingPath = mappingPath
            self.mappingFingerprint = mappingFingerprint
            self.actor = actor
        }

        enum CodingKeys: String, CodingKey {
            case name, legacy, store, actor
            case mappingPath = "mapping_path"
            case mappingFingerprint = "mapping_fingerprint"
        }
    }

    /// A transition: its step, who asked and why, and the gates as they were measured.
    public struct Transition: Sendable, Hashable, Codable {
        public var from: CutoverState
        public var to: CutoverState
        public var actor: CutoverActor
        public var reason: String?
        public var gates: [CutoverGate]
        /// The reason quarantined keys were accepted (`--accept-quarantine --reason`), when they were.
        public var acceptedQuarantine: String?
        /// What a switch measured while it ran (freeze time, lock wait, keys re-verified…).
        public var measurements: [String: String]?

        public init(
            from: CutoverState, to: CutoverState, actor: CutoverActor, reason: String?, gates: [CutoverGate],
            acceptedQuarantine: String? = nil, measurements: [String: String]? = nil
        ) {
            self.from = from
            self.to = to
            self.actor = actor
            self.reason = reason
            self.gates = gates
            self.acceptedQuarantine = acceptedQuarantine
            self.measurements = measurements
        }

        enum CodingKeys: String, CodingKey {
            case from, to, actor, reason, gates, measurements
            case acceptedQuarantine = "accepted_quarantine"
        }
    }

    /// A switch that spans both databases (the write switch, or its rollback) is about to
    /// start: recorded BEFORE anything changes, so a command killed midway leaves this behind
    /// and the next command completes or undoes the switch from what the legacy database shows.
    public struct SwitchIntent: Sendable, Hashable, Codable {
        /// The step the switch carries out.
        public var from: CutoverState
        public var to: CutoverState
        public var actor: CutoverActor
        public var reason: String?
        public var maxFreezeMilliseconds: Int64
        public var gates: [CutoverGate]

        public init(
            from: CutoverState, to: CutoverState, actor: CutoverActor, reason: String?, maxFreezeMilliseconds: Int64,
            gates: [CutoverGate]
        ) {
            self.from = from
            self.to = to
            self.actor = actor
            self.reason = reason
            self.maxFreezeMilliseconds = maxFreezeMilliseconds
            self.gates = gates
        }

        enum CodingKeys: String, CodingKey {
            case from, to, actor, reason, gates
            case maxFreezeMilliseconds = "max_freeze_ms"
        }
    }

    /// A switch that did not happen: every step undone, the state where it was, and why.
    public struct SwitchUndone: Sendable, Hashable, Codable {
        public var from: CutoverState
        public var to: CutoverState
        public var actor: CutoverActor
        /// What failed (a lock not granted in time, a difference, a command killed midway…).
        public var failure: String
        public var measurements: [String: String]

        public init(
            from: CutoverState, to: CutoverState, actor: CutoverActor, failure: String, measurements: [String: String]
        ) {
            self.from = from
            self.to = to
            self.actor = actor
            self.failure = failure
            self.measurements = measurements
        }
    }

    case initialized(Initialized)
    case advanced(Transition)
    case rolledBack(Transition)
    case aborted(Transition)
    case switchIntended(SwitchIntent)
    case switchUndone(SwitchUndone)

    /// The stored event type.
    public var type: String {
        switch self {
        case .initialized: "CutoverInitialized"
        case .advanced: "CutoverAdvanced"
        case .rolledBack: "CutoverRolledBack"
        case .aborted: "CutoverAborted"
        case .switchIntended: "CutoverSwitchIntended"
        case .switchUndone: "CutoverSwitchUndone"
        }
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    func payload() throws -> PostgresJSON {
        let data: Data =
            switch self {
            case .initialized(let value): try Self.encoder.encode(value)
            case .advanced(let value), .rolledBack(let value), .aborted(let value): try Self.encoder.encode(value)
            case .switchIntended(let value): try Self.encoder.encode(value)
            case .switchUndone(let value): try Self.encoder.encode(value)
            }
        return PostgresJSON(String(decoding: data, as: UTF8.self))
    }

    /// Decodes a stored event of the cutover's stream.
    /// - Throws: ``CutoverError/undecodableEvent(stream:version:type:reason:)`` for an unknown
    ///   type or a payload of another shape — a fold must not skip what it cannot read.
    public init(recorded: RecordedEvent) throws(CutoverError) {
        let data = Data(recorded.payload.text.utf8)
        let decoder = JSONDecoder()
        do {
            switch recorded.eventType {
            case "CutoverInitialized": self = .initialized(try decoder.decode(Initialized.self, from: data))
            case "CutoverAdvanced": self = .advanced(try decoder.decode(Transition.self, from: data))
            case "CutoverRolledBack": self = .rolledBack(try decoder.decode(Transition.self, from: data))
            case "CutoverAborted": self = .aborted(try decoder.decode(Transition.self, from: data))
            case "CutoverSwitchIntended": self = .switchIntended(try decoder.decode(SwitchIntent.self, from: data))
            case "CutoverSwitchUndone": self = .switchUndone(try decoder.decode(SwitchUndone.self, from: data))
            default:
                throw CutoverError.undecodableEvent(
                    stream: recorded.streamID, version: recorded.streamVersion, type: recorded.eventType,
                    reason: "not a cutover event type")
            }
        } catch let error as CutoverError {
            throw error
        } catch {
            throw CutoverError.undecodableEvent(
                stream: recorded.streamID, version: recorded.streamVersion, type: recorded.eventType,
                reason: "\(error)")
        }
    }
}

/// A cutover as its stream tells it: the fold of every event.
public struct CutoverRecord: Sendable, Hashable {
    public var initialized: CutoverEvent.Initialized
    public var state: CutoverState
    /// The stream's version: what the next append expects.
    public var version: Int64
    /// Every event after the first, oldest first.
    public var history: [CutoverEvent]
    /// A switch recorded as intended and neither completed nor undone: the command that ran it
    /// was killed midway. The next command finishes it first (``CutoverRunner/recover``).
    public var pendingSwitch: CutoverEvent.SwitchIntent?

    /// Folds a stream's events, oldest first.
    /// - Throws: ``CutoverError/inconsistentStream(stream:version:reason:)`` when an event does
    ///   not follow from the state before it (the stream was written by something else).
    public static func fold(_ events: [RecordedEvent]) throws(CutoverError) -> CutoverRecord? {
        guard let first = events.first else { return nil }
        guard case .initialized(let initialized) = try CutoverEvent(recorded: first) else {
            throw CutoverError.inconsistentStream(
                stream: first.streamID, version: first.streamVersion,
                reason: "the first event is not CutoverInitialized")
        }
        var record = CutoverRecord(initialized: initialized, state: .planned, version: first.streamVersion, history: [])
        for recorded in events.dropFirst() {
            let event = try CutoverEvent(recorded: recorded)
            let transition: CutoverEvent.Transition
            let input: CutoverInput
            switch event {
            case .switchIntended(let intent):
                guard intent.from == record.state, record.pendingSwitch == nil else {
                    throw CutoverError.inconsistentStream(
                        stream: recorded.streamID, version: recorded.streamVersion,
                        reason: "a switch from \(intent.from.rawValue) intended in \(record.state.rawValue)"
                            + (record.pendingSwitch == nil ? "" : " while another was pending"))
                }
                record.pendingSwitch = intent
                record.version = recorded.streamVersion
                record.history.append(event)
                continue
            case .switchUndone(let undone):
                guard let pending = record.pendingSwitch, pending.from == undone.from, pending.to == undone.to else {
                    throw CutoverError.inconsistentStream(
                        stream: recorded.streamID, version: recorded.streamVersion,
                        reason: "a switch undone that was not intended")
                }
                record.pendingSwitch = nil
                record.version = recorded.streamVersion
                record.history.append(event)
                continue
            case .initialized:
                throw CutoverError.inconsistentStream(
                    stream: recorded.streamID, version: recorded.streamVersion, reason: "initialized twice")
            case .advanced(let t):
                (transition, input) = (t, .advance(to: t.to))
            case .rolledBack(let t):
                (transition, input) = (t, .rollback)
            case .aborted(let t):
                (transition, input) = (t, .abort)
            }
            // The stored transition must be one the machine allows from the folded state.
            guard transition.from == record.state,
                case .success(let next) = CutoverMachine.transition(record.state, input), next.state == transition.to
            else {
                throw CutoverError.inconsistentStream(
                    stream: recorded.streamID, version: recorded.streamVersion,
                    reason: "\(event.type) \(transition.from.rawValue) → \(transition.to.rawValue) "
                        + "does not follow from \(record.state.rawValue)")
            }
            if let pending = record.pendingSwitch, pending.from != transition.from || pending.to != transition.to {
                throw CutoverError.inconsistentStream(
                    stream: recorded.streamID, version: recorded.streamVersion,
                    reason: "\(event.type) while the switch \(pending.from.rawValue) → \(pending.to.rawValue) was pending")
            }
            record.pendingSwitch = nil
            record.state = next.state
            record.version = recorded.streamVersion
            record.history.append(event)
        }
        return record
    }
}

/// The cutover's stream in the event store: `cutover-<name>`.
public struct CutoverLog: Sendable {
    public let store: EventStore
    public let name: String

    public init(store: EventStore = EventStore(), name: String) {
        self.store = store
        self.name = name
    }

    public var streamID: String { "cutover-" + name }

    /// The one-operator lock: held by every cutover command for its whole run, on the store.
    public var lock: AdvisoryLock { AdvisoryLock("ledgerlift.cutover/" + name) }

    /// The folded stream; `nil` when the cutover was never initialized.
    public func read(in session: Session) throws -> CutoverRecord? {
        try CutoverRecord.fold(store.readStream(streamID, in: session))
    }

    /// Appends `event` expecting exactly `version` (0: the stream must be new), so two writers
    /// can never both move the same state.
    /// - Throws: ``CutoverError/concurrentChange(stream:)`` when the stream moved meanwhile.
    public func append(_ event: CutoverEvent, expectedVersion version: Int64, in session: Session) throws {
        let new = NewEvent(
            eventID: UUID(), eventType: event.type, occurredAt: .now, payload: try event.payload())
        do {
            try store.append([new], to: streamID, expectedVersion: .exact(version), in: session)
        } catch EventStoreError.wrongExpectedVersion {
            throw CutoverError.concurrentChange(stream: streamID)
        }
    }
}
