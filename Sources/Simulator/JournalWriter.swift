import Dispatch
import Foundation
import Synchronization

/// The journal of acknowledged operations (`ledgerlift simulate --journal FILE`): one
/// ``JournalEntry`` per line, as compact JSON with sorted keys, in the order the operations
/// were acknowledged.
///
/// An operation counts as acknowledged only once its line is on disk: ``append(_:)`` writes the
/// line with `write(2)` and waits for `fdatasync(2)` before it returns, so a journal never
/// lacks an operation the report counted, even if the machine stops right after (the cost is
/// a disk flush per acknowledgement, shared by the lines of concurrent connections that arrive
/// during one flush; `ledgerlift-bench --only simulate` measures it). Lines go through one
/// serial queue: one writer for every connection, whole lines, never interleaved, and the
/// blocking calls stay off Swift's cooperative threads.
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
        guard fd >= 0 else {
            throw Failure(path: path, reason: "cannot be created: \(String(cString: strerror(errno)))")
        }
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
                reason:
                    "already holds \(status.st_size) bytes (an earlier run's journal?): a journal belongs to one run; "
                    + "give a new file, or remove this one")
        }
        descriptor = fd
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        self.encoder = encoder
    }

    /// Encodes `entry` and appends it as one line, returning once the line is on disk.
    ///
    /// Lines that arrive while a flush is under way are written and flushed together by the
    /// next one (group commit): each caller still returns only after the `fdatasync` that
    /// covers its own line, but concurrent connections share the disk flushes instead of
    /// queueing one each.
    ///
    /// - Throws: ``Failure`` when the write or the flush fails (the journal can then no longer
    ///   prove anything: every later append fails too, and the run stops).
    public func append(_ entry: JournalEntry) async throws(Failure) {
        let line: Data
        do {
            line = try encoder.encode(entry) + Data("\n".utf8)
        } catch {
            throw Failure(path: path, reason: "entry of op \(entry.op) cannot be encoded: \(error)")
        }
        let result: Result<Void, Failure> = await withCheckedContinuation { continuation in
            let startsFlush = pending.withLock { pending in
                pending.lines.append(line)
                pending.waiters.append(continuation)
                defer { pending.flushing = true }
                return !pending.flushing
            }
            if startsFlush { queue.async { self.flushPending() } }
        }
        try result.get()
    }

    /// Lines waiting for the next flush, their callers, and whether a flush is under way.
    private struct Pending: Sendable {
        var lines: [Data] = []
        var waiters: [CheckedContinuation<Result<Void, Failure>, Never>] = []
        var flushing = false
        /// The first failure: a journal with a gap proves nothing, so every later append fails.
        var failure: Failure?
    }

    private let pending = Mutex(Pending())

    /// Writes and flushes every pending line, then the lines that came meanwhile, until none is
    /// left (on the serial queue).
    private func flushPending() {
        while true {
            let (lines, waiters, failure): ([Data], [CheckedContinuation<Result<Void, Failure>, Never>], Failure?) =
                pending.withLock { pending in
                    let batch = (pending.lines, pending.waiters, pending.failure)
                    pending.lines = []
                    pending.waiters = []
                    if batch.0.isEmpty { pending.flushing = false }
                    return batch
                }
            guard !lines.isEmpty else { return }
            let result = failure.map { .failure($0) } ?? writeAndFlush(lines.reduce(Data(), +))
            if case .failure(let error) = result { pending.withLock { if $0.failure == nil { $0.failure = error } } }
            for waiter in waiters { waiter.resume(returning: result) }
        }
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
