import Foundation
import Postgres

/// Issue 17's benchmark: the write switch under live traffic, driven as an operator drives it —
/// the release `ledgerlift` binary: serve, the tailer (verifying every 2 s), reverse sync, the
/// simulated application writing at a fixed rate with `--reroute` to serve, and `cutover
/// advance` from `planned` to `writes_switched` a third of the way into the traffic.
///
/// For each rate: the **freeze** the switch recorded (`freeze_ms`: lock requested → routing
/// flipped; `legacy_locked_ms`: what `--max-freeze` bounds), the longest an operation waited
/// because of the switch (`rerouted_blocked_max_ms`: refused by the guard, then served by the
/// ledger), and the application's p99 over the run against a **baseline run in the same
/// process**: the same traffic on the same data, legacy only, no cutover (ratio = switched p99 /
/// baseline p99). Then `simulate verify` against the ledger and against legacy.
///
/// Anchor: gh-ost's cut-over holds its lock up to a 3 s timeout and retries.
///
/// Knobs: `LEDGERLIFT_BENCH_CUTOVER_CUSTOMERS` (10000), `LEDGERLIFT_BENCH_CUTOVER_RATES`
/// (`100,200,500`), `LEDGERLIFT_BENCH_CUTOVER_SECONDS` (60 per run), `LEDGERLIFT_BENCH_CUTOVER_CONNECTIONS`
/// (32), `LEDGERLIFT_BENCH_SERVE_BINARY` (the ledgerlift to run).
enum CutoverBenchmark {
    struct Knobs {
        var customers = 10_000
        var rates = [100.0, 200.0, 500.0]
        var seconds = 60
        var connections = 32

        init(_ environment: [String: String]) {
            func int(_ name: String) -> Int? { environment["LEDGERLIFT_BENCH_CUTOVER_" + name].flatMap(Int.init) }
            customers = int("CUSTOMERS") ?? customers
            seconds = int("SECONDS") ?? seconds
            connections = int("CONNECTIONS") ?? connections
            if let text = environment["LEDGERLIFT_BENCH_CUTOVER_RATES"] {
                rates = text.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
            }
        }
    }

    /// One `ledgerlift` child, its output in files.
    final class Child: @unchecked Sendable {
        let process = Process()
        let out: String
        let err: String

        init(_ binary: String, _ arguments: [String]) throws {
            let base = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerlift-bench-\(UUID().uuidString)").path
            out = base + ".out"
            err = base + ".err"
            _ = FileManager.default.createFile(atPath: out, contents: nil)
            _ = FileManager.default.createFile(atPath: err, contents: nil)
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = arguments
            process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }

        /// Waits for the end (SIGTERM first when `stop`), returns (status, stdout, stderr).
        @discardableResult
        func finish(stop: Bool = false, signal: Int32 = SIGTERM) -> (Int32, String, String) {
            if stop, process.isRunning { kill(process.processIdentifier, signal) }
            process.waitUntilExit()
            let stdout = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            let stderr = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
            try? FileManager.default.removeItem(atPath: out)
            try? FileManager.default.removeItem(atPath: err)
            return (process.terminationStatus, stdout, stderr)
        }
    }

    static func run(_ bench: BenchContext) async throws {
        let knobs = Knobs(ProcessInfo.processInfo.environment)
        let binary = try ProcessInfo.processInfo.environment["LEDGERLIFT_BENCH_SERVE_BINARY"] ?? ServeBenchmark.ledgerliftBinary()
        let mapping = try BackfillBenchmark.mappingPath()
        say(
            "cutover: \(knobs.customers) generated customers, \(knobs.seconds) s of traffic per run on "
                + "\(knobs.connections) connections, rates \(knobs.rates.map { Int($0) }); binary \(binary)")
        for rate in knobs.rates {
            let legacy = try await bench.scratchDatabase("ledgerlift_bench_cutover_legacy")
            let store = try await bench.scratchDatabase("ledgerlift_bench_cutover_store")
            try await onThread { try measure(rate: rate, legacy: legacy, store: store, binary: binary, mapping: mapping, knobs) }
        }
    }

    static func onThread(_ body: @escaping @Sendable () throws -> Void) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }

    static func run(_ binary: String, _ arguments: [String]) throws -> (Int32, String, String) {
        try Child(binary, arguments).finish()
    }

    static func ok(_ binary: String, _ arguments: [String]) throws -> String {
        let (status, out, err) = try run(binary, arguments)
        guard status == 0 else {
            throw BenchFailure("ledgerlift \(arguments.prefix(2).joined(separator: " ")) exited \(status): \(err)\(out)")
        }
        return out
    }

    static func measure(
        rate: Double, legacy: String, store: String, binary: String, mapping: String, _ knobs: Knobs
    ) throws {
        _ = try ok(binary, ["fixture", "generate", "--dsn", legacy, "--customers", "\(knobs.customers)", "--seed", "7"])
        _ = try ok(binary, ["shadow", "install", "--legacy", legacy, "--mapping", mapping])
        _ = try ok(binary, ["store", "init", "--store", store])
        _ = try ok(binary, ["backfill", "--legacy", legacy, "--store", store, "--mapping", mapping])
        _ = try ok(binary, ["project", "--store", store])

        // Baseline: the same traffic, legacy only, the tailer following (as in shadow mode).
        let tail = ["shadow", "run", "--legacy", legacy, "--store", store, "--mapping", mapping, "--follow", "--verify-every", "2s"]
        var tailer = try Child(binary, tail)
        let baselineSeconds = max(10, knobs.seconds / 2)
        let baseline = try simulate(binary, legacy, rate: rate, seconds: baselineSeconds, connections: knobs.connections, seed: 3, reroute: nil)
        tailer.finish(stop: true)

        _ = try ok(binary, ["cutover", "init", "--legacy", legacy, "--store", store, "--mapping", mapping])
        let port = try freePort()
        let serve = try Child(binary, ["serve", "--store", store, "--listen", "127.0.0.1:\(port)"])
        tailer = try Child(binary, tail)
        let reverse = try Child(binary, ["shadow", "reverse-sync", "--legacy", legacy, "--store", store, "--mapping", mapping, "--follow"])
        defer {
            serve.finish(stop: true)
            reverse.finish(stop: true)
        }
        let journal = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerlift-bench-cutover-\(UUID().uuidString).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: journal) }
        // The application runs until stopped, 10 s after the switch: the switch happens under
        // traffic however long the gates take to pass.
        let application = try Child(binary, simulateArguments(legacy, rate: rate, seconds: 3600, connections: knobs.connections, seed: 5,
            reroute: ("http://127.0.0.1:\(port)", store, mapping), journal: journal))
        Thread.sleep(forTimeInterval: Double(knobs.seconds) / 3)
        var undone = 0
        for state in ["capturing", "backfilled", "shadowing", "verified", "reads_switched", "writes_switched"] {
            var done = false
            for _ in 0..<400 where !done {
                let (status, _, err) = try run(
                    binary,
                    ["cutover", "advance", "--legacy", legacy, "--store", store, "--to", state, "--clean-verifications", "2",
                     "--clean-minutes", "0", "--max-lag", "30"])
                if status == 0 { done = true } else {
                    if err.contains("undone") { undone += 1 }
                    Thread.sleep(forTimeInterval: 0.25)
                }
            }
            guard done else { throw BenchFailure("cutover advance --to \(state) never succeeded") }
        }
        Thread.sleep(forTimeInterval: 10)
        let (appStatus, appOut, appErr) = application.finish(stop: true, signal: SIGINT)
        tailer.finish(stop: true)
        let switched = try report(appOut, appStatus, appErr)
        let log = try ok(binary, ["cutover", "log", "--store", store, "--format", "json"])
        var measured = [String: String]()
        if let json = try JSONSerialization.jsonObject(with: Data(log.utf8)) as? [String: Any],
            let events = json["events"] as? [[String: Any]]
        {
            for event in events where event["type"] as? String == "CutoverAdvanced" && event["to"] as? String == "writes_switched" {
                measured = event["measurements"] as? [String: String] ?? [:]
            }
        }
        _ = try? ok(binary, ["shadow", "reverse-sync", "--legacy", legacy, "--store", store, "--mapping", mapping])
        let verifyStore = try run(binary, ["simulate", "verify", "--journal", journal, "--store", store]).0
        let verifyLegacy = try run(binary, ["simulate", "verify", "--journal", journal, "--legacy", legacy]).0
        func ms(_ value: Double) -> String { String(Int(value.rounded())) }
        func m(_ key: String) -> String { measured[key] ?? "?" }
        let ratio = String(format: "%.2f", switched.p99 / max(baseline.p99, 0.001))
        say(
            "  \(Int(rate)) ops/s: freeze \(m("freeze_ms")) ms (legacy locked \(m("legacy_locked_ms")) ms, lock wait "
                + "\(m("lock_wait_ms")) ms, drain \(m("drain_ms")) ms, verify \(m("verify_ms")) ms on \(m("keys_verified")) keys, "
                + "routing \(m("routing_ms")) ms), "
                + "\(undone) switch(es) undone before; longest wait of a re-routed op \(ms(switched.reroutedBlockedMaxMs)) ms; "
                + "app p99 \(ms(switched.p99)) ms vs baseline \(ms(baseline.p99)) ms (×\(ratio)); achieved "
                + "\(ms(switched.achieved)) ops/s vs baseline \(ms(baseline.achieved)); failed \(switched.failed), skipped "
                + "\(switched.skipped), rerouted \(switched.rerouted); verify ledger \(verifyStore == 0 ? "clean" : "FAILED"), "
                + "legacy \(verifyLegacy == 0 ? "clean" : "FAILED")")
    }

    struct Figures {
        var p99 = 0.0
        var achieved = 0.0
        var failed = 0
        var skipped = 0
        var rerouted = 0
        var reroutedBlockedMaxMs = 0.0
    }

    static func simulateArguments(
        _ legacy: String, rate: Double, seconds: Int, connections: Int, seed: Int,
        reroute: (url: String, store: String, mapping: String)?, journal: String? = nil
    ) -> [String] {
        var arguments = [
            "simulate", "--legacy", legacy, "--rate", "\(rate)", "--duration", "\(seconds)", "--connections",
            "\(connections)", "--seed", "\(seed)", "--report", "json",
        ]
        if let journal { arguments += ["--journal", journal] }
        if let reroute { arguments += ["--reroute", reroute.url, "--store", reroute.store, "--mapping", reroute.mapping] }
        return arguments
    }

    static func simulate(
        _ binary: String, _ legacy: String, rate: Double, seconds: Int, connections: Int, seed: Int,
        reroute: (url: String, store: String, mapping: String)?
    ) throws -> Figures {
        let (status, out, err) = try run(
            binary, simulateArguments(legacy, rate: rate, seconds: seconds, connections: connections, seed: seed, reroute: reroute))
        return try report(out, status, err)
    }

    static func report(_ out: String, _ status: Int32, _ err: String) throws -> Figures {
        guard let json = try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any],
            let total = json["total"] as? [String: Any]
        else { throw BenchFailure("simulate exited \(status) without a report: \(err)") }
        var figures = Figures()
        figures.p99 = ((total["latency_ms"] as? [String: Any])?["p99"] as? Double) ?? 0
        figures.achieved = json["achieved_rate"] as? Double ?? 0
        figures.failed = total["failed"] as? Int ?? 0
        figures.skipped = total["skipped"] as? Int ?? 0
        figures.rerouted = total["rerouted"] as? Int ?? 0
        figures.reroutedBlockedMaxMs = total["rerouted_blocked_max_ms"] as? Double ?? 0
        return figures
    }

    static func freePort() throws -> Int {
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw BenchFailure("no socket") }
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0 }
        }
        guard bound else { throw BenchFailure("no free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
