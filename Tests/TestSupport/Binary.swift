import Foundation
import Synchronization

/// Runs the built `ledgerlift` executable, as a user would.
public enum LedgerliftBinary {
    public struct Output: Sendable {
        public let status: Int32
        public let stdout: String
        public let stderr: String
    }

    /// The products directory `swift build` wrote the test bundle and the executables to.
    public static var productsDirectory: URL {
        URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    }

    public static var path: String { productsDirectory.appendingPathComponent("ledgerlift").path }

    /// Runs `ledgerlift` with `arguments` and waits for it on a thread of its own, so the awaiting
    /// task holds no cooperative thread meanwhile.
    ///
    /// Why not block: swift-testing runs the suites' tests in parallel on Swift's cooperative pool
    /// (one thread per core, two on CI). A child such as `ledgerlift project` can wait for another
    /// test — for the cluster-wide xmin horizon a test's open transaction holds back, for a lock —
    /// and that test needs a cooperative thread to commit. Two tests blocking both threads on such
    /// children deadlocked a CI run for good.
    public static func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> Output {
        try await onThread { try runBlocking(arguments, environment: environment) }
    }

    /// Runs `ledgerlift` with `arguments` and waits for it, blocking the calling thread: for
    /// threads a test started (``onThread(_:)``, `Thread`), never for async code (``run(_:environment:)``).
    @available(*, noasync, message: "blocks a cooperative thread while the child runs; use `await run(_:environment:)`")
    public static func runBlocking(_ arguments: [String], environment: [String: String] = [:]) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Read both pipes concurrently so a full one cannot block the child.
        let errData = Locked<Data?>(nil)
        let reader = Thread { errData.set(err.fileHandleForReading.readDataToEndOfFile()) }
        reader.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        while errData.value == nil { usleep(1000) }
        return Output(
            status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData.value ?? Data(), as: UTF8.self))
    }
}

/// A value shared between a test and the threads it starts.
public final class Locked<Value: Sendable>: Sendable {
    private let stored: Mutex<Value>
    public init(_ value: Value) { stored = Mutex(value) }
    public func set(_ value: Value) { stored.withLock { $0 = value } }
    public var value: Value { stored.withLock { $0 } }
}
