import EventStore
import Foundation
import Postgres
import TextFormats

/// A billing fact: which entity, what happened, when, how well it is proven, and the canonical
/// columns it sets.
public struct BillingEvent: Sendable, Hashable {
    public let eventID: UUID
    public let entity: Entity
    public let key: String
    public let type: BillingEventType
    public let occurredAt: PostgresTimestamp
    public let evidence: Evidence
    /// Canonical columns this event sets, in column order.
    public let changes: [ColumnChange]
    /// The entity's full attribute map after this event, when it changed.
    public let attributes: [String: String?]?

    public struct ColumnChange: Sendable, Hashable {
        public let column: String
        public let value: CanonicalValue
    }

    public var streamID: String { entity.streamID(key: key) }

    /// The same event with weaker evidence (never stronger: `imported` stays `imported`).
    public func withEvidence(_ weaker: Evidence) -> BillingEvent {
        let order: [Evidence] = [.observed, .inferred, .imported]
        let evidence = order.firstIndex(of: weaker)! > order.firstIndex(of: self.evidence)! ? weaker : self.evidence
        return BillingEvent(
            eventID: eventID, entity: entity, key: key, type: type, occurredAt: occurredAt, evidence: evidence,
            changes: changes, attributes: attributes)
    }

    /// The JSON payload stored in the event store: `{"entity", "key", "set": {...}, "attributes"?: {...}}`.
    public var payload: PostgresJSON {
        var pairs: [(String, JSONValue)] = [
            ("entity", .string(entity.rawValue)), ("key", .string(key)),
            ("set", .object(changes.map { ($0.column, $0.value.json) })),
        ]
        if let attributes {
            pairs.append(
                ("attributes", .object(attributes.keys.sorted().map { ($0, attributes[$0]!.map(JSONValue.string) ?? .null) })))
        }
        return PostgresJSON(JSONValue.object(pairs).rendered)
    }

    /// The event ready for the store, with provenance metadata.
    public func newEvent(origin: String, runID: String? = nil, source: String? = nil) -> NewEvent {
        var meta: [(String, JSONValue)] = [("origin", .string(origin)), ("evidence", .string(evidence.rawValue))]
        if let source { meta.append(("source", .string(source))) }
        if let runID { meta.append(("run_id", .string(runID))) }
        return NewEvent(
            eventID: eventID, eventType: type.rawValue, schemaVersion: type.schemaVersion, occurredAt: occurredAt,
            payload: payload, metadata: PostgresJSON(JSONValue.object(meta).rendered))
    }

    /// Reads a stored billing event back.
    ///
    /// - Throws: ``BillingDecodingError`` when the payload is not a billing event.
    public init(recorded: RecordedEvent) throws {
        guard let type = BillingEventType(rawValue: recorded.eventType) else {
            throw BillingDecodingError(eventID: recorded.eventID, reason: "unknown event type \(recorded.eventType)")
        }
        let json: JSONValue
        do { json = try JSONValue.parse(recorded.payload.text) } catch {
            throw BillingDecodingError(eventID: recorded.eventID, reason: "\(error)")
        }
        guard case .string(let entityName)? = json["entity"], let entity = Entity(rawValue: entityName),
            case .string(let key)? = json["key"], case .object(let set)? = json["set"]
        else { throw BillingDecodingError(eventID: recorded.eventID, reason: "payload lacks entity, key or set") }
        var changes = [ColumnChange]()
        for (column, value) in set {
            guard let definition = entity.column(column), let decoded = CanonicalValue.from(value, as: definition.type)
            else {
                throw BillingDecodingError(eventID: recorded.eventID, reason: "column \(column) of \(entity) does not decode")
            }
            changes.append(ColumnChange(column: column, value: decoded))
        }
        var attributes: [String: String?]?
        if case .object(let pairs)? = json["attributes"] {
            var map = [String: String?]()
            for (name, value) in pairs {
                switch value {
                case .string(let s): map[name] = .some(s)
                case .null: map[name] = .some(nil)
                default: throw BillingDecodingError(eventID: recorded.eventID, reason: "attribute \(name) is not text")
                }
            }
            attributes = map
        }
        let evidence: Evidence
        if case .object? = JSONValue.parseOrNil(recorded.metadata.text),
            case .string(let e)? = JSONValue.parseOrNil(recorded.metadata.text)?["evidence"], let parsed = Evidence(rawValue: e)
        {
            evidence = parsed
        } else {
            evidence = .imported
        }
        self.init(
            eventID: recorded.eventID, entity: entity, key: key, type: type, occurredAt: recorded.occurredAt,
            evidence: evidence, changes: changes, attributes: attributes)
    }

    public init(
        eventID: UUID, entity: Entity, key: String, type: BillingEventType, occurredAt: PostgresTimestamp,
        evidence: Evidence, changes: [ColumnChange], attributes: [String: String?]?
    ) {
        self.eventID = eventID
        self.entity = entity
        self.key = key
        self.type = type
        self.occurredAt = occurredAt
        self.evidence = evidence
        self.changes = changes
        self.attributes = attributes
    }
}

/// A stored event that is not a readable billing event.
public struct BillingDecodingError: Error, Sendable, Hashable, CustomStringConvertible {
    public let eventID: UUID
    public let reason: String
    public var description: String { "event \(eventID.uuidString.lowercased()): \(reason)" }
}

extension JSONValue {
    static func parseOrNil(_ text: String) -> JSONValue? { try? parse(text) }
}
