import Foundation

/// One line of the journal (docs/journal.md): the two phases of an operation's write.
///
/// An operation's commit and its journal line cannot be one atomic act: a crash (or a full
/// disk) between the two would leave either a journaled write that never committed or a
/// committed write the journal does not know. So the journal states both sides of the commit:
/// - ``prepared(_:attempt:)``: written (and flushed) after the operation's writes and BEFORE
///   its COMMIT, with the whole entry. The writes may or may not be committed.
/// - ``acknowledged(op:attempt:)``: written (and flushed) after the COMMIT was confirmed, as a
///   short line naming the op and the attempt that committed; only then is the operation
///   acknowledged.
/// - ``entry(_:)``: a line without `phase`, the format before the two phases: an acknowledged
///   entry (still read).
///
/// `simulate verify` requires the effects of acknowledged operations, and allows — never
/// requires — those of operations prepared but not acknowledged (in doubt).
public enum JournalRecord: Sendable, Hashable {
    /// The whole entry of one attempt, before its COMMIT.
    case prepared(JournalEntry, attempt: Int)
    /// Attempt `attempt` of operation `op` committed.
    case acknowledged(op: UInt64, attempt: Int)
    /// An acknowledged entry in the single-phase format (no `phase`).
    case entry(JournalEntry)

    /// The operation the line is about.
    public var op: UInt64 {
        switch self {
        case .prepared(let entry, _), .entry(let entry): entry.op
        case .acknowledged(let op, _): op
        }
    }

    /// The `phase` member of a line.
    enum Phase: String, Codable { case prepared, acknowledged }

    /// The members that tell a line's phase (the rest of a prepared line is its entry).
    struct Header: Decodable {
        var phase: Phase?
        var op: UInt64?
        var attempt: Int?
    }

    /// A prepared line: the entry's members plus `phase` and `attempt`.
    struct PreparedLine: Encodable {
        var entry: JournalEntry
        var attempt: Int
        enum Keys: String, CodingKey { case phase, attempt }
        func encode(to encoder: any Encoder) throws {
            try entry.encode(to: encoder)
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(Phase.prepared, forKey: .phase)
            try c.encode(attempt, forKey: .attempt)
        }
    }

    /// An acknowledgement line: `{"attempt":1,"op":17,"phase":"acknowledged"}`.
    struct AcknowledgementLine: Codable {
        var attempt: Int
        var op: UInt64
        var phase: Phase
    }

    /// Decodes one line.
    static func decode(_ bytes: Data, _ decoder: JSONDecoder) throws -> JournalRecord {
        let header = try decoder.decode(Header.self, from: bytes)
        switch header.phase {
        case nil:
            return .entry(try decoder.decode(JournalEntry.self, from: bytes))
        case .prepared:
            let entry = try decoder.decode(JournalEntry.self, from: bytes)
            guard let attempt = header.attempt else {
                throw DecodingError.keyNotFound(
                    PreparedLine.Keys.attempt, .init(codingPath: [], debugDescription: "a prepared line has no attempt"))
            }
            return .prepared(entry, attempt: attempt)
        case .acknowledged:
            let line = try decoder.decode(AcknowledgementLine.self, from: bytes)
            return .acknowledged(op: line.op, attempt: line.attempt)
        }
    }
}
