import Billing
import EventStore

/// Why the executor could not carry a command out, when no business rule refused it (those are
/// ``CommandRejection``s): the caller may retry these later, unchanged.
public enum CommandError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Another writer kept moving a stream the command appends to, through every retry.
    case conflict(command: String, attempts: Int, stream: String)
    /// A children lookup waited this long and the read models had still not reached the store's
    /// head (is a projector running — `ledgerlift project --follow`?).
    case projectionBehind(readSchema: String, waited: Duration)
    /// The command kept asking for more state than this many rounds of reads gave it.
    case requirementsUnsettled(command: String, rounds: Int)
    /// A stream the command reads holds an event that is not a billing event.
    case unreadableStream(stream: String, reason: String)
    /// A children requirement names a column its entity does not have.
    case unknownColumn(entity: String, column: String)
    /// A decision names a row twice, writes an existing row it did not read, or ends a row that
    /// does not exist.
    case invalidDecision(command: String, reason: String)
    /// The id sequence could not hand out a key that no stream uses.
    case allocationExhausted(entity: String)
    /// The store has no key sequence for the entity: it predates schema version 3 (`ledgerlift
    /// store init` upgrades it), or the entity is newer than the migration that made them.
    case noIDSequence(entity: String)

    public var description: String {
        switch self {
        case .conflict(let command, let attempts, let stream):
            "\(command): stream \(stream) kept moving under concurrent writers (\(attempts) attempts); send the command again"
        case .projectionBehind(let schema, let waited):
            "the read models in \(schema) did not reach the event store's head within \(waited) "
                + "(run `ledgerlift project --follow` beside the write path)"
        case .requirementsUnsettled(let command, let rounds):
            "\(command) still asked for more state after \(rounds) rounds of reads"
        case .unreadableStream(let stream, let reason):
            "stream \(stream) holds an event that is not a billing event: \(reason)"
        case .unknownColumn(let entity, let column):
            "\(entity) has no column \(column) to look children up by"
        case .invalidDecision(let command, let reason):
            "\(command) decided something the executor cannot append: \(reason)"
        case .allocationExhausted(let entity):
            "no free \(entity) key found from the id sequence"
        case .noIDSequence(let entity):
            "the event store has no key sequence for \(entity) (command_ids_\(entity)): "
                + "run `ledgerlift store init --store DSN` as the store's owner to upgrade it"
        }
    }
}

/// The store's routing (``EventStore/Routing``) does not give writes to the ledger now: the
/// cutover has not switched them yet (`legacy`), or a rollback is moving them back (`frozen`).
/// Nothing was appended. (A type of its own, like ``CommandRequestReused``.)
public struct WritesRoutedElsewhere: Error, Sendable, Hashable, CustomStringConvertible {
    /// The cutover that set the routing.
    public var cutover: String
    /// Where writes go: `legacy` or `frozen`.
    public var writes: RouteTarget

    public init(cutover: String, writes: RouteTarget) {
        self.cutover = cutover
        self.writes = writes
    }

    public var description: String {
        writes == .frozen
            ? "writes have moved back: the cutover \(cutover) is rolling the write switch back; "
                + "send the write to the legacy application once its write guard is gone"
            : "writes go to the legacy application: the cutover \(cutover) has not switched them to the ledger"
    }
}

/// A request id executed before with another command (its events' `request_sha1` differs):
/// nothing is appended, and the earlier command's events are not this command's answer. The
/// HTTP layer answers 422 `idempotency_key_reused`. (A type of its own, not a
/// ``CommandError`` case, so that exhaustive switches over ``CommandError`` stay as they are.)
public struct CommandRequestReused: Error, Sendable, Hashable, CustomStringConvertible {
    public var requestID: String

    public init(requestID: String) { self.requestID = requestID }

    public var description: String {
        "request id \(requestID) was used before with another command; send a new request id for a new command"
    }
}
