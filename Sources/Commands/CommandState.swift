import Billing
import Postgres

/// One stream as a command reads it: its current row and version.
public struct StreamState: Sendable, Hashable {
    /// The row its events replay to; `nil` for a stream that does not exist (version 0) or
    /// that ended with `…Deleted`.
    public var row: CanonicalRow?
    /// The stream's version (0: no stream): the expected version of the command's append.
    public var version: Int64
    /// Business time of its last event: a command's events are never dated before it.
    public var lastOccurredAt: PostgresTimestamp?

    public init(row: CanonicalRow?, version: Int64, lastOccurredAt: PostgresTimestamp?) {
        self.row = row
        self.version = version
        self.lastOccurredAt = lastOccurredAt
    }

    public static let missing = StreamState(row: nil, version: 0, lastOccurredAt: nil)
}

/// What a command needs to read before it decides.
public enum Requirement: Sendable, Hashable {
    /// One stream (which may not exist).
    case stream(Entity, key: String)
    /// Every live row of `entity` whose `column` holds `value` (a customer's credit notes, a
    /// payment's refunds), each read from its own stream.
    case children(Entity, column: String, value: String)
}

/// The state a command decides on: the streams it required, at their versions.
///
/// Built by ``CommandStateLoader`` from the event store (and, for ``Requirement/children``,
/// the read models' indexes to find the keys — every row itself comes from its stream), or by
/// a test from rows it makes.
public struct CommandState: Sendable, Hashable {
    /// By stream id (`invoice-4430`).
    public var streams: [String: StreamState]
    /// The keys each ``Requirement/children(_:column:value:)`` found.
    public var children: [Requirement: [String]]

    public init(streams: [String: StreamState] = [:], children: [Requirement: [String]] = [:]) {
        self.streams = streams
        self.children = children
    }

    /// The stream of `entity` `key` (``StreamState/missing`` when not loaded or not there).
    public func stream(_ entity: Entity, _ key: String) -> StreamState { streams[entity.streamID(key: key)] ?? .missing }

    /// The current row of `entity` `key`, if it exists.
    public func row(_ entity: Entity, _ key: String) -> CanonicalRow? { stream(entity, key).row }

    /// The current rows of the children found for `requirement`, in key order.
    public func rows(_ requirement: Requirement) -> [CanonicalRow] {
        guard case .children(let entity, _, _) = requirement else { return [] }
        return (children[requirement] ?? []).compactMap { row(entity, $0) }
    }

    /// Whether every requirement is loaded.
    public func satisfies(_ requirements: Set<Requirement>) -> Bool {
        requirements.allSatisfy { requirement in
            switch requirement {
            case .stream(let entity, let key): streams[entity.streamID(key: key)] != nil
            case .children: children[requirement] != nil
            }
        }
    }
}
