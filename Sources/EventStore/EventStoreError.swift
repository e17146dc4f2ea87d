import Foundation
import Postgres

/// Refusals of the event store, each carrying the stream, event or consumer involved.
public enum EventStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Another writer moved the stream first.
    case wrongExpectedVersion(stream: String, expected: ExpectedVersion, actual: Int64)
    /// An event id is already stored with different content.
    case idempotencyConflict(eventID: UUID, stream: String, reason: String)
    /// A bulk append would leave a hole or an overlap in a stream's versions.
    case versionGap(stream: String, storedVersion: Int64, firstNewVersion: Int64)
    /// Two events of one batch share an id or a stream version.
    case invalidBatch(reason: String)
    /// Another copy of the consumer advanced the checkpoint first.
    case checkpointConflict(consumer: String, expected: GlobalCursor, actual: GlobalCursor?)
    /// The store's schema is newer than this binary understands.
    case schemaTooNew(found: Int, supported: Int)
    /// The store has not been initialized (`ledgerlift store init`).
    case notInitialized(schema: String)
    /// The store's schema is older than what the caller needs (`ledgerlift store init` upgrades it).
    case schemaTooOld(found: Int, required: Int)

    public var description: String {
        switch self {
        case .wrongExpectedVersion(let stream, let expected, let actual):
            "wrong expected version for stream \(stream): expected \(expected), actual version \(actual)"
        case .idempotencyConflict(let id, let stream, let reason):
            "event \(id.uuidString.lowercased()) in stream \(stream) is already stored with different content (\(reason))"
        case .versionGap(let stream, let stored, let first):
            "stream \(stream) is at version \(stored); a batch cannot continue it at version \(first)"
        case .invalidBatch(let reason):
            "invalid batch: \(reason)"
        case .checkpointConflict(let consumer, let expected, let actual):
            "checkpoint of \(consumer) moved: expected \(expected), found \(actual.map(\.description) ?? "none")"
        case .schemaTooNew(let found, let supported):
            "the event store schema is at version \(found); this ledgerlift supports up to \(supported)"
        case .schemaTooOld(let found, let required):
            "the event store schema is at version \(found); this needs version \(required): "
                + "run `ledgerlift store init --store DSN` as the store's owner to upgrade it"
        case .notInitialized(let schema):
            "no event store in schema \(schema): run `ledgerlift store init --store DSN`"
        }
    }
}
