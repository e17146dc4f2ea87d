import Fixtures
import Foundation
import Mapping
import Postgres
import Shadow
import Simulator

/// Issue 14's benchmark: the legacy application's closed-loop capacity (`ledgerlift simulate`
/// without --rate) with 4 connections on 10,000 generated customers: operations per second and
/// p99 latency. It is the baseline the next issue's capture overhead is measured against, so it
/// prints a baseline row (the ratio comes with the capture). Beside it: the same run writing a
/// journal, and the cost of one operation's journal lines (prepared + acknowledged: two writes and
/// fdatasyncs) alone. Issue 15: the same run with shadow mode's capture triggers installed
/// (reference mapping), and its ratio to the baseline (goal ≥ 0.8).
///
/// `LEDGERLIFT_BENCH_SIM_SECONDS` sets the length of each run (default 20),
/// `LEDGERLIFT_BENCH_SIM_CUSTOMERS` the customers generated (default 10000).
enum SimulateBenchmark {
    static func run(_ bench: BenchContext) async throws {
        let environment = ProcessInfo.processInfo.environment
        let seconds = environment["LEDGERLIFT_BENCH_SIM_SECONDS"].flatMap(Int.init) ?? 20
        let customers = environment["LEDGERLIFT_BENCH_SIM_CUSTOMERS"].flatMap(Int.init) ?? 10_000
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "ledgerlift-bench-simulate-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        // The journal's price per acknowledged operation, alone: its two lines (prepared before
        // the COMMIT, acknowledged after), each written and flushed.
        let appends = 500
        let writer = try JournalWriter(path: directory.appendingPathComponent("fsync.jsonl").path)
        let entry = JournalEntry(
            op: 1, kind: .paymentSucceeded, at: "2025-11-02T10:00:00.000000Z",
            keys: ["invoice": "1203", "payment": "15201"],
            effects: [
                Effect(
                    entity: "payment", key: "15201",
                    fields: ["status": "succeeded", "amount": "4900", "currency": "USD", "invoice_id": "1203"]),
                Effect(
                    entity: "invoice", key: "1203",
                    fields: ["status": "paid", "amount_paid": "4900", "amount_due": "0"]),
            ], summary: "payment 15201 of 49.00 USD on invoice 1203 succeeded")
        let clock = ContinuousClock()
        var times = [Duration]()
        for _ in 0..<appends {
            let start = clock.now
            try await Self.journal(entry, on: writer)
            times.append(clock.now - start)
        }
        writer.close()
        times.sort()
        say(
            "  journal prepare + acknowledge (2 × write + fdatasync, \(appends)×, one at a time): median \(micros(times[appends / 2])) µs, "
                + "p99 \(micros(times[appends * 99 / 100])) µs")
        // Four connections appending at once share flushes (group commit).
        let shared = try JournalWriter(path: directory.appendingPathComponent("fsync-4.jsonl").path)
        let concurrentStart = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask { for _ in 0..<(appends / 4) { try await Self.journal(entry, on: shared) } }
            }
            try await group.waitForAll()
        }
        let concurrent = clock.now - concurrentStart
        shared.close()
        say(
            "  journal prepare + acknowledge, 4 writers at once: \(Int((Double(appends) / concurrent.seconds).rounded())) operations/s "
                + "(one at a time: \(Int((1 / times[appends / 2].seconds).rounded())) operations/s)")

        let legacy = try await bench.scratchDatabase("ledgerlift_bench_simulate")
        let fixtures = try FixtureDirectory.locate()
        let generated = clock.now
        _ = try await FixtureGenerator(configuration: .init(customers: customers, seed: 1), fixtures: fixtures)
            .generate(dsn: legacy)
        say("  \(customers) customers generated in \(String(format: "%.1f", (clock.now - generated).seconds)) s")

        // The runner's own ceiling: the same closed loop with an application that only runs
        // `SELECT 1` per operation (scheduling, counting, one round trip).
        let ceiling = try await Simulation(
            .init(
                app: RoundTripApp(dsn: legacy), connections: 4, stop: .duration(.seconds(min(seconds, 5))), seed: 1,
                clock: BusinessClock(.wall))
        ).run()
        say(
            "  runner ceiling (SELECT 1 per operation, 4 connections): \(Int(ceiling.achievedRate.rounded())) ops/s, "
                + "p99 \(ceiling.total.latencyMs.map { String(format: "%.2f ms", $0.p99) } ?? "-")")

        let mapping = try MappingFile.load(path: fixtures.url.appendingPathComponent("reference/mapping.yaml").path)
        var baselineRate: Double?
        for mode in ["baseline", "with capture installed", "with --journal"] {
            let journaled = mode == "with --journal"
            let captured = mode == "with capture installed"
            let connection = try await Connection.connect(legacy)
            let start = try await LegacySQLApp.latestRecordedMoment(on: connection)
            if captured { _ = try await connection.withSession { try CaptureInstaller().install(mapping, in: $0) } }
            defer { connection.close() }
            let journal = journaled ? try JournalWriter(path: directory.appendingPathComponent("run.jsonl").path) : nil
            let simulation = try Simulation(
                .init(
                    app: LegacySQLApp(dsn: legacy), connections: 4, rate: nil, stop: .duration(.seconds(seconds)),
                    seed: 1,
                    journal: journal, clock: BusinessClock(.data(start: start))))
            let report = try await simulation.run()
            journal?.close()
            var capturedRows = ""
            if captured {
                let rows = try await connection.query("SELECT count(*) FROM ledgerlift_capture.changes").rows[0]
                    .decode(at: 0, as: Int64.self)
                _ = try await connection.withSession { try CaptureInstaller().uninstall(in: $0) }
                capturedRows = ", \(rows) changes captured"
            }
            if mode == "baseline" { baselineRate = report.achievedRate }
            let p99 = report.total.latencyMs.map { String(format: "%.2f ms", $0.p99) } ?? "-"
            let ratio =
                captured
                ? baselineRate.map { String(format: ", ratio to baseline %.2f (goal ≥ 0.80)", report.achievedRate / $0) } ?? ""
                : ""
            say(
                "  \(mode): closed loop, 4 connections, \(seconds) s: \(Int(report.achievedRate.rounded())) ops/s, p99 \(p99), "
                    + "\(report.total.operations) operations (\(report.total.acknowledged) ok, \(report.total.skipped) skipped, "
                    + "\(report.total.failed) failed, \(report.total.retries) retries)\(capturedRows)\(ratio)")
            if report.total.failed > 0 {
                say(
                    "    errors: "
                        + report.total.errors.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(
                            separator: ", "))
            }
        }
    }

    /// One operation's journal lines: `prepared` (blocking, so off the cooperative threads, as
    /// the application calls it on its connection's queue), then `acknowledged`.
    private static func journal(_ entry: JournalEntry, on writer: JournalWriter) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            DispatchQueue.global().async {
                do {
                    try writer.prepare(entry, attempt: 1)
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
        try await writer.acknowledge(op: entry.op, attempt: 1)
    }

    private static func micros(_ duration: Duration) -> Int { Int((duration.seconds * 1_000_000).rounded()) }
}

/// An application whose every operation is one `SELECT 1` round trip and finds nothing to do:
/// what the runner costs around the database, without any billing work.
private struct RoundTripApp: BillingApp {
    let dsn: String
    var name: String { "round-trip" }

    func makeWorker() async throws -> any BillingAppWorker { Worker(connection: try await Connection.connect(dsn)) }

    struct Worker: BillingAppWorker {
        let connection: Connection

        func perform(
            _ operation: BillingOperation, clock: BusinessClock,
            prepared: @escaping @Sendable (JournalEntry) throws -> Void
        ) async throws -> JournalEntry? {
            try await connection.query("SELECT 1")
            return nil
        }

        func close() { connection.close() }
    }
}
