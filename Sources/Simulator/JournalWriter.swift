import Dispatch
import Foundation

/// The journal of acknowledged operations (`ledgerlift simulate --journal FILE`): one
/// ``JournalEntry`` per line, as compact JSON with sorted keys, in the order the operations
/// were acknowledged.
///
/// An operation counts as acknowledged only once its line is on disk: ``append(_:)`` writes the
/// line with one `write(2)` and waits for `fdatasync(2)` before it returns, so a journal never
/// lacks an operation the report counted, even if the machine stops right after (the cost is
/// one disk flush per operation; `ledgerlift-bench --only simulate` measures it). Lines go
/// through one serial queue: one writer for every connection, whole lines, never interleaved,
/// and the blocking calls stay off Swift's cooperative threads.
///
/// The file must not exist or be empty: a journal belongs to one run (op ids start at 1 in
/// each), and an existing one is never appended to or overwritten.
public final class JournalWriter: Sendable {
    /// The file, as given.
    public let path: String
    private let descriptor: Int32
    private let queue = DispatchQueue(label: "ledgerlift.simulator.journal")
    private let encoder: JSONEncoder

    /// Why the journal could not be opened or written.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let path: String
        public let reason: String
        public var description: String { "journal \(path): \(reason)" }
    }

    /// Opens `path` for a new journal: creates it, or takes an existing empty file.
    ///
    /// - Throws: ``Failure`` when the file holds something (an earlier run's journal) or
    ///   cannot be created.
    public init(path: String) throws(Failure) {
        self.path = path
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Failure(path: path, reason: "cannot be created: \(String(cString: strerror(errno)))") }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            let reason = String(cString: strerror(errno))
            _ = Foundation.close(fd)
            throw Failure(path: path, reason: "cannot be read: \(reason)")
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            _ = Foundation.close(fd)
            throw Failure(path: path, reason: "is not a regular file")
        }
        guard status.st_size == 0 else {
            _ = Foundation.close(fd)
            throw Failure(
                path: path,
                reason: "already holds \(status.st_size) bytes (an earlier run's journal?): a journal belongs to one run; "
                    + "give a new file, or remove this one")
        }
        descriptor = fd
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        self.encoder = encoder
    }

    /// Encodes `entry` and appends it as one line, returning once the line is on disk.
    ///
    /// - Throws: ``Failure`` when the write or the flush fails (the journal can then no longer
    ///   prove anything: the run stops).
    public func append(_ entry: JournalEntry) async throws(Failure) {
        let line: Data
        do {
            line = try encoder.encode(entry) + Data("\n".utf8)
        } catch {
            throw Failure(path: path, reason: "entry of op \(entry.op) cannot be encoded: \(error)")
        }
        let result: Result<Void, Failure> = await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: self.writeAndFlush(line)) }
        }
        try result.get()
    }

    private func writeAndFlush(_ line: Data) -> Result<Void, Failure> {
        let failed: String? = line.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return "write failed: \(String(cString: strerror(errno)))"
                }
                offset += written
            }
            // fdatasync: the data and the size that makes it readable, not the timestamps.
            while fdatasync(descriptor) != 0 {
                if errno == EINTR { continue }
                return "flush (fdatasync) failed: \(String(cString: strerror(errno)))"
            }
            return nil
        }
        return failed.map { .failure(Failure(path: path, reason: $0)) } ?? .success(())
    }

    /// Closes the file (after the last append has returned).
    public func close() {
        queue.sync { _ = Foundation.close(descriptor) }
    }
}
