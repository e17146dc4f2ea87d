import Foundation

/// Why a journal could not be verified (`ledgerlift simulate verify` exits 2).
///
/// No case carries more of the journal than its line number and the name of what is wrong in
/// it: a journal holds customers' emails and names, and a message goes to logs.
public enum JournalError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The file cannot be opened or read.
    case unreadable(path: String, reason: String)
    /// A complete line (one ending with a newline) is not a journal entry, or states an effect
    /// verify cannot check.
    case malformedLine(line: Int, reason: String)
    /// The system to check against could not be read (the message names the side and never
    /// holds a password).
    case cannotCheck(String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): "cannot read the journal \(path): \(reason)"
        case .malformedLine(let line, let reason): "journal line \(line): \(reason)"
        case .cannotCheck(let reason): reason
        }
    }
}

/// The last line of a journal when it has no newline at its end: a line cut off by a crash
/// (the writer flushes each whole line, newline included, before the operation goes on). A
/// cut-off `prepared` line is a write that never committed; a cut-off `acknowledged` line
/// leaves its operation in doubt. Either way it acknowledges nothing.
public struct TruncatedJournalLine: Sendable, Hashable {
    /// Its line number, from 1.
    public let line: Int
    /// How many bytes of it were written.
    public let bytes: Int
    /// The operation, when what was written happens to parse as a whole entry.
    public let op: UInt64?
}

/// Reads a journal (JSON lines, one ``JournalRecord`` each) as a stream: memory holds one line
/// at a time, whatever the file's size.
///
/// A complete line that is not a journal record is an error naming its line number; a last
/// line without a newline is reported as ``TruncatedJournalLine`` and not handed on.
public struct JournalReader: Sendable {
    /// The journal file.
    public let path: String
    /// A line longer than this is refused rather than buffered (a journal line is a few
    /// hundred bytes; a file without newlines is not a journal).
    public static let maximumLineLength = 16 << 20
    /// Bytes read from the file at a time.
    static let chunkSize = 1 << 20

    public init(path: String) { self.path = path }

    /// What reading the whole journal found.
    public struct Summary: Sendable, Hashable {
        /// Complete lines read (each one a record).
        public var lines: Int = 0
        /// The cut-off last line, if any.
        public var truncated: TruncatedJournalLine?
    }

    /// Calls `body` with each record and its line number, in file order.
    ///
    /// - Throws: ``JournalError/unreadable(path:reason:)`` for a file that cannot be read,
    ///   ``JournalError/malformedLine(line:reason:)`` for a complete line that is not a
    ///   record (or is too long), and whatever `body` throws.
    public func forEachRecord(
        _ body: (_ record: JournalRecord, _ line: Int) throws(JournalError) -> Void
    ) throws(JournalError) -> Summary {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "permission denied" : "no such file"
            throw .unreadable(path: path, reason: reason)
        }
        defer { try? handle.close() }
        let decoder = JSONDecoder()
        var summary = Summary()
        var pending = [UInt8]()
        var lineNumber = 0
        while true {
            // Scanned as an array: searching `Data` for newlines goes through its generic
            // slicing, a fifth of the time of a large journal.
            let chunk: [UInt8]
            do {
                guard let data = try handle.read(upToCount: Self.chunkSize), !data.isEmpty else { break }
                chunk = [UInt8](data)
            } catch {
                throw .unreadable(path: path, reason: error.localizedDescription)
            }
            var start = 0
            while let newline = chunk[start...].firstIndex(of: UInt8(ascii: "\n")) {
                lineNumber += 1
                let entry: JournalRecord
                if pending.isEmpty {
                    entry = try Self.decode(Data(chunk[start..<newline]), line: lineNumber, decoder)
                } else {
                    pending.append(contentsOf: chunk[start..<newline])
                    guard pending.count <= Self.maximumLineLength else { throw Self.tooLong(lineNumber) }
                    entry = try Self.decode(Data(pending), line: lineNumber, decoder)
                    pending.removeAll(keepingCapacity: true)
                }
                summary.lines += 1
                try body(entry, lineNumber)
                start = newline + 1
            }
            pending.append(contentsOf: chunk[start...])
            guard pending.count <= Self.maximumLineLength else { throw Self.tooLong(lineNumber + 1) }
        }
        if !pending.isEmpty {
            let op = try? decoder.decode(JournalRecord.Header.self, from: Data(pending)).op
            summary.truncated = TruncatedJournalLine(line: lineNumber + 1, bytes: pending.count, op: op)
        }
        return summary
    }

    private static func tooLong(_ line: Int) -> JournalError {
        .malformedLine(line: line, reason: "longer than \(maximumLineLength >> 20) MiB without a newline")
    }

    private static func decode(_ bytes: Data, line: Int, _ decoder: JSONDecoder) throws(JournalError) -> JournalRecord {
        if bytes.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") || $0 == UInt8(ascii: "\r") }) {
            throw .malformedLine(line: line, reason: "empty line")
        }
        do {
            return try JournalRecord.decode(bytes, decoder)
        } catch {
            throw .malformedLine(line: line, reason: reason(error))
        }
    }

    /// What is wrong with a line, by the path of the offending member (`effects[0].entity`),
    /// never by its value.
    static func reason(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "not a journal entry" }
        func path(_ codingPath: [any CodingKey]) -> String {
            var text = ""
            for key in codingPath {
                if let index = key.intValue {
                    text += "[\(index)]"
                } else {
                    text += (text.isEmpty ? "" : ".") + key.stringValue
                }
            }
            return "`" + text + "`"
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "not a journal entry: \(path(context.codingPath + [key])) is missing"
        case .typeMismatch(_, let context):
            return "not a journal entry: \(path(context.codingPath)) has the wrong type"
        case .valueNotFound(_, let context):
            return "not a journal entry: \(path(context.codingPath)) is null"
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty { return "not valid JSON" }
            if context.codingPath.last?.stringValue == "kind" {
                return "not a journal entry: `kind` is not an operation kind"
            }
            return "not a journal entry: \(path(context.codingPath)) has an invalid value"
        @unknown default:
            return "not a journal entry"
        }
    }
}
