import Dispatch
import Foundation
import Synchronization

/// The journal of a run (`ledgerlift simulate --journal FILE`): JSON lines with sorted keys,
/// two per performed operation (``JournalRecord``, docs/journal.md): a `prepared` line with the
/// whole ``JournalEntry`` before the operation's COMMIT (``prepare(_:attempt:)``), and an
/// `acknowledged` line once the COMMIT is confirmed (``acknowledge(op:attempt:)``).
///
/// Each line is on disk before its call returns: the line is written with `write(2)` and
/// followed by `fdatasync(2)`, so a journal never lacks an operation the report counted, nor
/// a committed write (its prepared line came first), even if the machine stops right after
/// (the cost is a disk flush per line, shared by the lines of concurrent connections that
/// arrive during one flush; `ledgerlift-bench --only simulate` measures it). Lines go through
/// one serial queue: one writer for every connection, whole lines, never interleaved, and the
/// blocking calls stay off Swift's cooperative threads.
///
/// The file must not exist or be empty, and belongs to one run: it is created with `O_EXCL`
/// (or an existing empty file taken) and held with `flock(LOCK_EX)` until ``close()``, so a
/// second run given the same file refuses it instead of interleaving its lines (op ids start
/// at 1 in each).
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

    /// Opens `path` for a new journal: creates it, or takes an existing empty file, and locks
    /// it for the run.
    ///
    /// - Throws: ``Failure`` when the file holds something (an earlier run's journal), another
    ///   run holds it, or it cannot be created.
    public init(path: String) throws(Failure) {
        self.path = path
        // O_EXCL first: of two runs creating the file at once, one creates it; the other takes
        // the existing file below and then fails to lock it (or finds it non-empty).
        var fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o644)
        if fd < 0 && errno == EEXIST { fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC) }
        guard fd >= 0 else {
            throw Failure(path: path, reason: "cannot be created: \(String(cString: strerror(errno)))")
        }
        // Held until close(): the lock is the file's, released by the kernel if the run dies.
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            let busy = errno == EWOULDBLOCK
            let reason = String(cString: strerror(errno))
            _ = Foundation.close(fd)
            throw Failure(
                path: path,
                reason: busy
                    ? "another run is writing this journal (it holds the file's lock): give each run its own journal file"
                    : "cannot be locked: \(reason)")
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

    /// Appends the `prepared` line of attempt `attempt` of `entry`'s operation, returning once
    /// it is on disk. Blocking: called by the application inside the operation's transaction,
    /// before its COMMIT, on the connection's own thread (never a Swift concurrency thread).
    ///
    /// - Throws: ``Failure`` when the line cannot be encoded, written or flushed: the
    ///   application then rolls the operation back.
    public func prepare(_ entry: JournalEntry, attempt: Int) throws(Failure) {
        let line = try encode(JournalRecord.PreparedLine(entry: entry, attempt: attempt), op: entry.op)
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<Void, Failure>?>(nil)
        enqueue(line) { result in
            outcome.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        try outcome.withLock { $0 }!.get()
    }

    /// Appends the `acknowledged` line of operation `op`, whose attempt `attempt` committed,
    /// returning once it is on disk: only then is the operation acknowledged.
    ///
    /// - Throws: ``Failure`` when the write or the flush fails.
    public func acknowledge(op: UInt64, attempt: Int) async throws(Failure) {
        let line = try encode(JournalRecord.AcknowledgementLine(attempt: attempt, op: op, phase: .acknowledged), op: op)
        let result: Result<Void, Failure> = await withCheckedContinuation { continuation in
            enqueue(line) { continuation.resume(returning: $0) }
        }
        try result.get()
    }

    private func encode(_ value: some Encodable, op: UInt64) throws(Failure) -> Data {
        do {
            return try encoder.encode(value) + Data("\n".utf8)
        } catch {
            throw Failure(path: path, reason: "line of op \(op) cannot be encoded: \(error)")
        }
    }

    /// Queues `line` for the next flush; `done` is called once the flush that covers it ends.
    ///
    /// Lines that arrive while a flush is under way are written and flushed together by the
    /// next one (group commit): each caller still hears back only after the `fdatasync` that
    /// covers its own line, but concurrent connections share the disk flushes instead of
    /// queueing one each.
    private func enqueue(_ line: Data, done: @escaping @Sendable (Result<Void, Failure>) -> Void) {
        let startsFlush = pending.withLock { pending in
            pending.lines.append(line)
            pending.waiters.append(done)
            defer { pending.flushing = true }
            return !pending.flushing
        }
        if startsFlush { queue.async { self.flushPending() } }
    }

    /// Lines waiting for the next flush, their callers, and whether a flush is under way.
    private struct Pending: Sendable {
        var lines: [Data] = []
        var waiters: [@Sendable (Result<Void, Failure>) -> Void] = []
        var flushing = false
        /// The first failure: a journal with a gap proves nothing, so every later append fails.
        var failure: Failure?
    }

    private let pending = Mutex(Pending())

    /// Writes and flushes every pending line, then the lines that came meanwhile, until none is
    /// left (on the serial queue).
    private func flushPending() {
        while true {
            let (lines, waiters, failure): ([Data], [@Sendable (Result<Void, Failure>) -> Void], Failure?) =
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
            for waiter in waiters { waiter(result) }
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

    /// Closes the file (after the last line has been written), which releases its lock.
    public func close() {
        queue.sync { _ = Foundation.close(descriptor) }
    }
}
