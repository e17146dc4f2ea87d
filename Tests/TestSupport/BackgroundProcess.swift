import Foundation

/// `ledgerlift` running in the background while a test does other things: the simulated
/// application, a tailer following the capture. Its output goes to files (a pipe nobody reads
/// would block it once full), read when it has ended.
///
/// Everything here blocks: call it from a `Thread` (or a test's synchronous part), never from
/// a task that other tests' tasks must share the cooperative pool with.
public final class BackgroundProcess: @unchecked Sendable {
    // @unchecked: `Process` is not Sendable; every use goes through `lock`.
    private let process = Process()
    private let lock = NSLock()
    private let stdoutPath: String
    private let stderrPath: String
    public let arguments: [String]

    /// Starts `ledgerlift` with `arguments`.
    public init(_ arguments: [String], environment: [String: String] = [:]) throws {
        self.arguments = arguments
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerlift-bg-\(UUID().uuidString)").path
        stdoutPath = base + ".out"
        stderrPath = base + ".err"
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: LedgerliftBinary.path)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: stdoutPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    public var isRunning: Bool { lock.withLock { process.isRunning } }

    /// What it has written to standard error so far (it may still be running).
    public var stderrSoFar: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
    public var pid: Int32 { lock.withLock { process.processIdentifier } }

    /// Sends `signal` (SIGTERM, SIGINT, SIGKILL) unless it has ended already.
    public func signal(_ signal: Int32) {
        lock.withLock {
            if process.isRunning { kill(process.processIdentifier, signal) }
        }
    }

    /// Waits for the end, at most `timeout` (then SIGKILL), and returns what it printed, on a
    /// thread of its own: the awaiting task holds no cooperative thread meanwhile.
    @discardableResult
    public func wait(timeout: TimeInterval = 300) async throws -> LedgerliftBinary.Output {
        try await onThread { self.waitBlocking(timeout: timeout) }
    }

    /// Waits for the end, at most `timeout` (then SIGKILL), and returns what it printed,
    /// blocking the calling thread (a thread a test started, never async code).
    @discardableResult
    @available(*, noasync, message: "blocks a cooperative thread while the process runs; use `await wait(timeout:)`")
    public func waitBlocking(timeout: TimeInterval = 300) -> LedgerliftBinary.Output {
        let deadline = Date().addingTimeInterval(timeout)
        while isRunning, Date() < deadline { usleep(10_000) }
        if isRunning {
            signal(SIGKILL)
        }
        lock.withLock { process.waitUntilExit() }
        let out = (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: stdoutPath)
        try? FileManager.default.removeItem(atPath: stderrPath)
        let status = lock.withLock { process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus }
        return LedgerliftBinary.Output(status: status, stdout: out, stderr: err)
    }
}

/// Runs `body` on a thread of its own and awaits its result without holding a cooperative
/// thread: the way to drive processes with blocking calls and timing from an async test.
///
/// The thread resumes the awaiting task itself when `body` returns: nothing polls, and the
/// result does not depend on a cooperative thread being free in the meantime. Cancelling the
/// task does not interrupt `body` (a blocking call cannot be): the task waits for it to end.
public func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.stackSize = 8 << 20
        thread.start()
    }
}
