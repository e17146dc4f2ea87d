import Billing
import EventStore
import Foundation
import Postgres
import TextFormats

/// Reads what a command requires from the event store: every stream it names replayed to its
/// current row, and the children it asks for.
///
/// It calls ``Decidable/requirements(given:)`` with what it has loaded until the command asks
/// for nothing new (a payment needs its invoice first, then the invoice's customer), so a
/// command states its reads as rules, never as queries.
///
/// Rows always come from their streams (``Transitions/replay(_:)``, so a stream that ended with
/// `…Deleted` has no row). The read models serve only as an index for
/// ``Requirement/children(_:column:value:)``: the keys of a customer's credit notes are looked
/// up in `<read schema>.<table>` once the projection has reached the store's head (waited for,
/// bounded), then each child is read from its own stream. A child the index names but whose
/// stream ended is left out; under the executor's customer lock no command can create one
/// meanwhile.
public struct CommandStateLoader: Sendable {
    public let store: EventStore
    /// The read models' schema (its projection checkpoint is the consumer of the same name).
    public let readSchema: String
    /// How long a children lookup waits for the projection to reach the store's head.
    public var projectionTimeout: Duration
    /// Rounds of ``Decidable/requirements(given:)`` before the command is deemed to never settle.
    public var maximumRounds = 16

    public init(store: EventStore = EventStore(), readSchema: String = "ledgerlift_read", projectionTimeout: Duration = .seconds(10)) {
        self.store = store
        self.readSchema = readSchema
        self.projectionTimeout = projectionTimeout
    }

    /// What a load found: the state, and the events already stored for a request id (a
    /// command sent again after its acknowledgement was lost).
    public struct Loaded: Sendable, Hashable {
        public var state: CommandState
        /// Events of the loaded streams whose metadata carries the request id asked about, in
        /// stream order.
        public var requestEvents: [AppendedEvent]
        /// The `request_sha1` fingerprints of those events (events written before fingerprints
        /// were kept have none).
        public var requestFingerprints: Set<String> = []
    }

    /// Loads every requirement of `command` (iterating until it asks for nothing new), on
    /// `session` — in the executor's transaction.
    ///
    /// - Parameters:
    ///   - state: what is loaded already (streams are not read again).
    ///   - requestID: collects the loaded streams' events carrying this `request_id`.
    /// - Throws: ``CommandError/requirementsUnsettled(command:rounds:)``,
    ///   ``CommandError/projectionBehind(readSchema:waited:)``,
    ///   ``CommandError/unreadableStream(stream:reason:)``, database errors.
    public func load(
        _ command: any Decidable, name: String, into state: CommandState = CommandState(), requestID: String? = nil,
        in session: Session
    ) throws -> Loaded {
        var loaded = Loaded(state: state, requestEvents: [])
        var projectionCaughtUp = false
        for _ in 0..<maximumRounds {
            let requirements = command.requirements(given: loaded.state)
            let missing = requirements.filter { requirement in
                switch requirement {
                case .stream(let entity, let key): loaded.state.streams[entity.streamID(key: key)] == nil
                case .children: loaded.state.children[requirement] == nil
                }
            }
            if missing.isEmpty { return loaded }
            // Deterministic order: the same command reads in the same order every time.
            for requirement in missing.sorted(by: { "\($0)" < "\($1)" }) {
                switch requirement {
                case .stream(let entity, let key):
                    try loadStream(entity, key, into: &loaded, requestID: requestID, session)
                case .children(let entity, let column, let value):
                    if !projectionCaughtUp {
                        try waitForProjection(session)
                        projectionCaughtUp = true
                    }
                    let keys = try childKeys(entity, column: column, value: value, session)
                    for key in keys where loaded.state.streams[entity.streamID(key: key)] == nil {
                        try loadStream(entity, key, into: &loaded, requestID: requestID, session)
                    }
                    loaded.state.children[requirement] = keys
                }
            }
        }
        throw CommandError.requirementsUnsettled(command: name, rounds: maximumRounds)
    }

    /// One stream, replayed.
    public func stream(_ entity: Entity, _ key: String, in session: Session) throws -> StreamState {
        var loaded = Loaded(state: CommandState(), requestEvents: [])
        try loadStream(entity, key, into: &loaded, requestID: nil, session)
        return loaded.state.stream(entity, key)
    }

    private func loadStream(_ entity: Entity, _ key: String, into loaded: inout Loaded, requestID: String?, _ session: Session) throws {
        let streamID = entity.streamID(key: key)
        let recorded = try store.readStream(streamID, in: session)
        var events = [BillingEvent]()
        events.reserveCapacity(recorded.count)
        for event in recorded {
            do {
                events.append(try BillingEvent(recorded: event))
            } catch {
                throw CommandError.unreadableStream(stream: streamID, reason: "\(error)")
            }
            if let requestID, Self.requestID(of: event) == requestID {
                if let fingerprint = Self.metadataText(of: event, "request_sha1") { loaded.requestFingerprints.insert(fingerprint) }
                loaded.requestEvents.append(
                    AppendedEvent(
                        streamID: streamID, streamVersion: event.streamVersion, type: event.eventType,
                        eventID: event.eventID.uuidString.lowercased()))
            }
        }
        loaded.state.streams[streamID] = StreamState(
            row: Transitions.replay(events), version: recorded.last?.streamVersion ?? 0,
            lastOccurredAt: recorded.last?.occurredAt)
    }

    /// The `request_id` of an event's metadata, if any.
    static func requestID(of event: RecordedEvent) -> String? {
        metadataText(of: event, "request_id")
    }

    /// A text member of an event's metadata, if any.
    static func metadataText(of event: RecordedEvent, _ member: String) -> String? {
        guard event.metadata.text.contains(member), let metadata = try? JSONValue.parse(event.metadata.text),
            case .string(let value)? = metadata[member]
        else { return nil }
        return value
    }

    /// Keys of `entity` whose canonical `column` holds `value`, from the read model, in key
    /// order (numeric keys by number).
    func childKeys(_ entity: Entity, column: String, value: String, _ session: Session) throws -> [String] {
        guard entity.column(column) != nil else {
            throw CommandError.unknownColumn(entity: entity.rawValue, column: column)
        }
        let table = quoteIdentifier(readSchema) + "." + quoteIdentifier(entity.tableName)
        let keys = try session.query(
            "SELECT \(quoteIdentifier(entity.keyColumn))::text FROM \(table) WHERE \(quoteIdentifier(column))::text = $1",
            [value]
        ).rows.map { try $0.decode(at: 0, as: String.self) }
        return Self.keyOrder(keys)
    }

    /// Numeric keys by number, then other keys bytewise.
    static func keyOrder(_ keys: [String]) -> [String] {
        keys.sorted { a, b in
            switch (Int64(a), Int64(b)) {
            case (let x?, let y?): x < y
            case (.some, nil): true
            case (nil, .some): false
            case (nil, nil): a.utf8.lexicographicallyPrecedes(b.utf8)
            }
        }
    }

    /// Waits until the read models' checkpoint has passed every committed event, bounded by
    /// ``projectionTimeout``.
    func waitForProjection(_ session: Session) throws {
        let clock = ContinuousClock()
        let started = clock.now
        while true {
            let cursor = try store.checkpoint(readSchema, in: session)
            if try !store.hasEventsBeyond(cursor, in: session) { return }
            let waited = clock.now - started
            guard waited < projectionTimeout else { throw CommandError.projectionBehind(readSchema: readSchema, waited: waited) }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }
}
