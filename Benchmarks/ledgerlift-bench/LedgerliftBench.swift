import ArgumentParser
import Foundation
import Postgres

/// `make bench`: each benchmark measures Ledgerlift against a baseline run in the same process,
/// on the same server, at the same moment, and prints the ratio — never a wall-clock
/// threshold that depends on the machine.
@main
struct LedgerliftBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledgerlift-bench",
        abstract: "Ledgerlift's benchmarks, each against a baseline measured in the same run.",
        discussion: """
            Sizes come from the environment. serve (issue 16: `ledgerlift serve` over HTTP, \
            release binary beside this one or on PATH): LEDGERLIFT_BENCH_SERVE_SECONDS (each \
            run's length, default 10; five runs), LEDGERLIFT_BENCH_SERVE_CLIENTS (concurrent \
            clients, default 16), LEDGERLIFT_BENCH_SERVE_BINARY (the ledgerlift to start). \
            The other benchmarks' variables (LEDGERLIFT_BENCH_CUSTOMERS, _SIM_*, _SHADOW_*, …) \
            are described at the top of their sources.
            """
    )

    @Option(help: "PostgreSQL DSN of a server the benchmark may create databases on.")
    var dsn: String

    @Option(help: "Benchmarks to run (copy, store, backfill, projection, follow, diff, simulate, shadow, serve, cutover). Default: all.")
    var only: [String] = []

    @Option(help: "Repetitions of each measurement; the median is reported.")
    var repetitions: Int = 3

    func run() async throws {
        let bench = BenchContext(adminDSN: dsn, repetitions: repetitions)
        let all: [(String, (BenchContext) async throws -> Void)] = [
            ("copy", CopyBenchmark.run),
            ("store", EventStoreBenchmark.run),
            ("backfill", BackfillBenchmark.run),
            ("projection", ProjectionBenchmark.run),
            ("follow", FollowBenchmark.run),
            ("diff", DiffBenchmark.run),
            ("simulate", SimulateBenchmark.run),
            ("shadow", ShadowBenchmark.run),
            ("serve", ServeBenchmark.run),
            ("cutover", CutoverBenchmark.run),
        ]
        for (name, body) in all where only.isEmpty || only.contains(name) {
            print("== \(name)")
            try await body(bench)
        }
    }
}

/// Shared plumbing: a scratch database and timing.
struct BenchContext: Sendable {
    let adminDSN: String
    let repetitions: Int

    /// Creates (or recreates) a scratch database for one benchmark and returns its DSN.
    func scratchDatabase(_ name: String) async throws -> String {
        let admin = try await Connection.connect(adminDSN)
        defer { admin.close() }
        try await admin.execute("DROP DATABASE IF EXISTS \"\(name)\" WITH (FORCE)")
        try await admin.execute("CREATE DATABASE \"\(name)\"")
        return ConnectionString.withDatabase(adminDSN, name)
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

func rate(_ count: Int, _ duration: Duration) -> String {
    let perSecond = Double(count) / duration.seconds
    return perSecond >= 10_000 ? "\(Int(perSecond / 1000))k/s" : "\(Int(perSecond))/s"
}

func ratio(_ ours: Duration, _ baseline: Duration) -> String {
    String(format: "%.2f", baseline.seconds / ours.seconds)
}

/// Runs an external program, failing with its stderr.
func runProcess(_ executable: String, _ arguments: [String]) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let errors = Pipe()
    process.standardError = errors
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let message = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw ValidationError("\(executable) failed: \(String(decoding: message, as: UTF8.self))")
    }
}

func findExecutable(_ name: String) throws -> String {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let path = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    throw ValidationError("\(name) not found on PATH (run make setup)")
}

/// Prints a result line and flushes it, so a long run shows each figure as it is measured.
func say(_ line: String) {
    print(line)
    fflush(nil)
}
