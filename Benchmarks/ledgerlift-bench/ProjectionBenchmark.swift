import Billing
import EventStore
import Foundation
import Postgres

/// Issue 5's benchmark: a blue/green rebuild of every read model from ~1,000,000 backfilled
/// events, against a plain decoded read of the same events through the global reader, in the
/// same run.
enum ProjectionBenchmark {
    static func run(_ bench: BenchContext) async throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("ledgerlift").path
        let customers = Int(ProcessInfo.processInfo.environment["LEDGERLIFT_BENCH_PROJECTION_CUSTOMERS"] ?? "") ?? 16_000
        let legacy = try await bench.scratchDatabase("ledgerlift_bench_legacy")
        let storeDSN = try await bench.scratchDatabase("ledgerlift_bench_projection")
        try runProcess(binary, ["fixture", "generate", "--dsn", legacy, "--customers", "\(customers)", "--seed", "5"])
        try runProcess(binary, ["store", "init", "--store", storeDSN])
        try runProcess(
            binary,
            ["backfill", "--legacy", legacy, "--store", storeDSN, "--mapping", try BackfillBenchmark.mappingPath(), "--workers", "2"])
        let connection = try await Connection.connect(storeDSN)
        defer { connection.close() }
        let store = EventStore()
        let total = try await connection.query("SELECT count(*) FROM ledgerlift.events").rows[0].decode(at: 0, as: Int64.self)

        let clock = ContinuousClock()
        var start = clock.now
        let read = try await connection.withSession { session -> Int in
            var cursor = GlobalCursor.start
            var n = 0
            while true {
                let batch = try store.readAll(after: cursor, limit: 10_000, in: session)
                guard let last = batch.last else { return n }
                for event in batch { _ = try BillingEvent(recorded: event) }
                n += batch.count
                cursor = last.cursor
            }
        }
        let plain = clock.now - start
        guard Int64(read) == total else { throw BenchFailure("read \(read) of \(total) events") }

        let reader = try await Connection.connect(storeDSN)
        defer { reader.close() }
        start = clock.now
        _ = try await Projector().rebuild(on: connection, reader: reader)
        let rebuild = clock.now - start
        say("  \(total) events (\(customers) generated customers, backfilled):")
        say("    global read + decode      \(rate(Int(total), plain)) events")
        say("    rebuild of all read models \(rate(Int(total), rebuild)) events   ratio \(ratio(rebuild, plain))   (goal ≥ 50k events/s)")
    }
}
