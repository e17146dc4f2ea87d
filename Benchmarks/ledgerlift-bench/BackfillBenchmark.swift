import Foundation
import Postgres

/// Issue 6's benchmark: `ledgerlift backfill` of a generated legacy database with 1 and 2
/// workers, against a raw `COPY` of the very events it produced into an empty copy of the
/// events table, in the same run; and the backfill's peak memory at two sizes.
enum BackfillBenchmark {
    static func run(_ bench: BenchContext) async throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("ledgerlift").path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw BenchFailure("\(binary) not found: build it with `swift build -c release --product ledgerlift`")
        }
        let mapping = try mappingPath()
        let sizes = ProcessInfo.processInfo.environment["LEDGERLIFT_BENCH_CUSTOMERS"].map {
            $0.split(separator: ",").compactMap { Int($0) }
        } ?? [10_000, 100_000]
        for customers in sizes {
            let legacy = try await bench.scratchDatabase("ledgerlift_bench_legacy")
            try runProcess(binary, ["fixture", "generate", "--dsn", legacy, "--customers", "\(customers)", "--seed", "1"])
            let legacyConnection = try await Connection.connect(legacy)
            let legacyRows = try await legacyConnection.query(
                """
                SELECT (SELECT count(*) FROM legacy.customers) + (SELECT count(*) FROM legacy.plans)
                     + (SELECT count(*) FROM legacy.subscriptions) + (SELECT count(*) FROM legacy.subscription_history)
                     + (SELECT count(*) FROM legacy.invoices) + (SELECT count(*) FROM legacy.invoice_line_items)
                     + (SELECT count(*) FROM legacy.payments) + (SELECT count(*) FROM legacy.refunds)
                     + (SELECT count(*) FROM legacy.credit_notes) + (SELECT count(*) FROM legacy.customer_balance_transactions)
                """
            ).rows[0].decode(at: 0, as: Int64.self)
            legacyConnection.close()
            say("  \(customers) customers: \(legacyRows) legacy rows")
            // LEDGERLIFT_BENCH_COMPARE=/path/to/older/ledgerlift also runs that binary, in the same
            // run and against the same legacy database, for a before/after comparison.
            let compare = ProcessInfo.processInfo.environment["LEDGERLIFT_BENCH_COMPARE"]
            let workerCounts = ProcessInfo.processInfo.environment["LEDGERLIFT_BENCH_WORKERS"].map {
                $0.split(separator: ",").compactMap { Int($0) }
            } ?? [1, 2]
            for workers in workerCounts {
                for (label, binary) in [("", binary)] + (compare.map { [(" (\($0))", $0)] } ?? []) {
                    let store = try await bench.scratchDatabase("ledgerlift_bench_backfill")
                    try runProcess(binary, ["store", "init", "--store", store])
                    let clock = ContinuousClock()
                    let start = clock.now
                    let peak = try runMeasuringPeak(
                        binary, ["backfill", "--legacy", legacy, "--store", store, "--mapping", mapping, "--workers", "\(workers)"])
                    let elapsed = clock.now - start
                    let connection = try await Connection.connect(store)
                    defer { connection.close() }
                    let events = try await connection.query("SELECT count(*) FROM ledgerlift.events").rows[0]
                        .decode(at: 0, as: Int64.self)
                    // The same events, raw: COPY out, then COPY into an empty copy of the table.
                    try await connection.execute("CREATE TABLE raw_events (LIKE ledgerlift.events INCLUDING ALL)")
                    let dump = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerlift-bench-events.tsv")
                    try runProcess(
                        try findExecutable("psql"),
                        [store, "-c", "\\copy (SELECT event_id, stream_id, stream_version, event_type, schema_version, occurred_at, payload, metadata FROM ledgerlift.events ORDER BY global_position) TO '\(dump.path)'"])
                    // The raw COPY is short and swings with the machine's load: the median of
                    // `repetitions` loads (each into the emptied table) is the baseline.
                    var raws = [Duration]()
                    for _ in 0..<max(1, bench.repetitions) {
                        try await connection.execute("TRUNCATE raw_events")
                        let rawStart = clock.now
                        try runProcess(
                            try findExecutable("psql"),
                            [store, "-c", "\\copy raw_events (event_id, stream_id, stream_version, event_type, schema_version, occurred_at, payload, metadata) FROM '\(dump.path)'"])
                        raws.append(clock.now - rawStart)
                    }
                    let raw = raws.sorted()[raws.count / 2]
                    try? FileManager.default.removeItem(at: dump)
                    say(
                        "    --workers \(workers)\(label): \(rate(Int(legacyRows), elapsed)) legacy rows, \(rate(Int(events), elapsed)) events"
                            + " (\(events) events in \(String(format: "%.1f", elapsed.seconds)) s), peak RSS \(peak / 1024) MB;"
                            + " raw COPY of those events \(rate(Int(events), raw)) (median of \(raws.count)) → ratio \(ratio(elapsed, raw))")
                }
            }
        }
        say("  goal: ≥ 0.5 × raw COPY with 2 workers; peak memory flat as the data grows")
    }

    static func mappingPath() throws -> String {
        var dir = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        while dir.path != "/" {
            let candidate = dir.appendingPathComponent("fixtures/reference/mapping.yaml")
            if FileManager.default.fileExists(atPath: candidate.path) { return candidate.path }
            dir = dir.deletingLastPathComponent()
        }
        throw BenchFailure("fixtures/reference/mapping.yaml not found above the current directory")
    }

    /// Runs a child process and returns its peak resident set size in KiB, read from the
    /// child's own `VmHWM` while it runs.
    static func runMeasuringPeak(_ executable: String, _ arguments: [String]) throws -> Int {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        var peak = 0
        while process.isRunning {
            if let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
                let kib = Int(line.filter(\.isNumber))
            {
                peak = max(peak, kib)
            }
            usleep(20_000)
        }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw BenchFailure("\(executable) \(arguments.first ?? "") exited \(process.terminationStatus)")
        }
        return peak
    }
}
