import Foundation
import Postgres

/// An event to append: what happened, when in business time, and its provenance.
public struct NewEvent: Sendable, Hashable {
    /// Idempotency key: appending the same id twice stores the event once.
    public var eventID: UUID
    /// Stable name in the store, e.g. `InvoiceFinalized`.
    public var eventType: String
    /// Version of the payload's shape.
    public var schemaVersion: Int32
    /// Business time: when it happened according to the legacy data.
    public var occurredAt: PostgresTimestamp
    public var payload: PostgresJSON
    /// Provenance (origin, evidence, legacy table and key, run id). Not part of an event's
    /// identity: a retry from another run may carry different metadata and is still a duplicate.
    public var metadata: PostgresJSON

    public init(
        eventID: UUID, eventType: String, schemaVersion: Int32 = 1, occurredAt: PostgresTimestamp,
        payload: PostgresJSON, metadata: PostgresJSON = PostgresJSON("{}")
    ) {
        self.eventID = eventID
        self.eventType = eventType
        self.schemaVersion = schemaVersion
        self.occurredAt = occurredAt
        self.payload = payload
        self.metadata = metadata
    }
}

/// An event placed at an explicit position in its stream, for bulk appends where the writer
/// owns whole streams (backfill).
public struct StreamEvent: Sendable, Hashable {
    public var streamID: String
    /// 1 for a stream's first event.
    public var streamVersion: Int64
    public var event: NewEvent

    public init(streamID: String, streamVersion: Int64, event: NewEvent) {
        self.streamID = streamID
        self.streamVersion = streamVersion
        self.event = event
    }
}

/// An event as stored.
public struct RecordedEvent: Sendable, Hashable {
    public var globalPosition: Int64
    public var eventID: UUID
    public var streamID: String
    public var streamVersion: Int64
    public var eventType: String
    public var schemaVersion: Int32
    public var occurredAt: PostgresTimestamp
    /// System time: when the store committed it.
    public var recordedAt: PostgresTimestamp
    public var payload: PostgresJSON
    public var metadata: PostgresJSON
    /// The writing transaction's id (`xid8`).
    public var transactionID: Int64

    /// Where this event sits in the global order.
    public var cursor: GlobalCursor { GlobalCursor(transactionID: transactionID, position: globalPosition) }

    /// The stream's category: the part of its id before the first `-`.
    public var category: Substring { EventStore.category(of: streamID) }

    public init(
        globalPosition: Int64, eventID: UUID, streamID: String, streamVersion: Int64, eventType: String,
        schemaVersion: Int32, occurredAt: PostgresTimestamp, recordedAt: PostgresTimestamp, payload: PostgresJSON,
        metadata: PostgresJSON, transactionID: Int64
    ) {
        self.globalPosition = globalPosition
        self.eventID = eventID
        self.streamID = streamID
        self.streamVersion = streamVersion
        self.eventType = eventType
        self.schemaVersion = schemaVersion
        self.occurredAt = occurredAt
        self.recordedAt = recordedAt
        self.payload = payload
        self.metadata = metadata
        self.transactionID = transactionID
    }

    static let columns =
        "global_position, event_id, stream_id, stream_version, event_type, schema_version, occurred_at, recorded_at, payload, metadata, transaction_id"

    init(row: Row) throws {
        globalPosition = try row.decode(at: 0)
        eventID = try row.decode(at: 1)
        streamID = try row.decode(at: 2)
        streamVersion = try row.decode(at: 3)
        eventType = try row.decode(at: 4)
        schemaVersion = try row.decode(at: 5)
        occurredAt = try row.decode(at: 6)
        recordedAt = try row.decode(at: 7)
        payload = try row.decode(at: 8)
        metadata = try row.decode(at: 9)
        transactionID = try row.decode(at: 10)
    }
}

/// What the writer believes the stream's version is, checked under the stream's row lock.
public enum ExpectedVersion: Sendable, Hashable, CustomStringConvertible {
    /// No check.
    case any
    /// The stream must not exist yet.
    case noStream
    /// The stream must exist (any version).
    case streamExists
    /// The stream's last event must have exactly this version (0: no events).
    case exact(Int64)

    public var description: String {
        switch self {
        case .any: "any"
        case .noStream: "no stream"
        case .streamExists: "stream exists"
        case .exact(let v): "version \(v)"
        }
    }

    func admits(_ actual: Int64) -> Bool {
        switch self {
        case .any: true
        case .noStream: actual == 0
        case .streamExists: actual > 0
        case .exact(let v): actual == v
        }
    }
}

/// A position in the global order: `(transaction id, global position)`.
///
/// Readers order and checkpoint by this pair rather than by `global_position` alone, because a
/// transaction can take a lower position and commit after one with a higher position; it is
/// only read once every older transaction has finished, so nothing behind a cursor can appear
/// later.
public struct GlobalCursor: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var transactionID: Int64
    public var position: Int64

    public init(transactionID: Int64, position: Int64) {
        self.transactionID = transactionID
        self.position = position
    }

    /// Before the first event.
    public static let start = GlobalCursor(transactionID: 0, position: 0)

    public static func < (a: GlobalCursor, b: GlobalCursor) -> Bool {
        (a.transactionID, a.position) < (b.transactionID, b.position)
    }

    public var description: String { "\(transactionID)/\(position)" }
}

/// The outcome of an append.
public struct AppendResult: Sendable, Hashable {
    /// Events written now.
    public var appended: Int
    /// Events that were already stored with the same id and content.
    public var duplicates: Int
    /// The stream's version after the append.
    public var streamVersion: Int64

    public init(appended: Int, duplicates: Int, streamVersion: Int64) {
        self.appended = appended
        self.duplicates = duplicates
        self.streamVersion = streamVersion
    }
}
