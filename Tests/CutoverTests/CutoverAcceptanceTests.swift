import Cutover
import Foundation
import Postgres
import TestSupport
import Testing

/// Issue 17's acceptance, as an operator runs it: the reference fixture, the simulated legacy
/// application writing at 100 operations a second (re-routing to serve what the legacy write
/// guard refuses), the tailer verifying every second, reverse sync following — and the cutover
/// driven by `ledgerlift cutover` from `planned` to `completed` (or to `writes_switched` and back)
/// while the traffic runs. Nothing the application saw acknowledged may be lost: `simulate
/// verify` against the ledger and against legacy, and `diff`. `make test` runs seconds of
/// traffic after each switch (`LEDGERLIFT_CUTOVER_SECONDS`, default 10); `make bench` measures the freeze.
@Suite("Cutover under live traffic, end to end", .serialized)
struct CutoverAcceptanceTests {
    struct Outcome: Sendable {
        var failures: [String] = []
        var report: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(reportJSON.utf8))) as? [String: Any] ?? [:] }
        var reportJSON = ""
        var freezeMs: Int?
        var undone = 0
        var states: [String] = []
        /// Events the ledger's write path appended (the writes serve took).
        var commandEvents = 0
        /// Events the tailer appended after the last rollback (legacy took writes again).
        var legacyEventsAfterRollback = 0
    }

    /// Seconds of traffic after the write switch (and again after the rollback).
    static var seconds: Int { Int(ProcessInfo.processInfo.environment["LEDGERLIFT_CUTOVER_SECONDS"] ?? "") ?? 10 }

    /// Runs the whole scenario on the calling thread (it blocks).
    static func scenario(legacy: String, store: String, rollback: Bool) throws -> Outcome {
        var outcome = Outcome()
        let mapping = referenceMappingPath
        func run(_ arguments: [String]) throws -> LedgerliftBinary.Output { try LedgerliftBinary.runBlocking(arguments) }
        func ok(_ arguments: [String]) throws {
            let output = try run(arguments)
            if output.status != 0 {
                outcome.failures.append(
                    "\(arguments.prefix(3).joined(separator: " ")) exited \(output.status): \(output.stderr)\(output.stdout)")
            }
        }
        /// `cutover advance`/`rollback` again until it succeeds (a gate not yet passing under
        /// traffic, a switch undone because the tailer lagged on a loaded machine: with the whole
        /// suite loading both cores, a debug tailer falls minutes behind 100 ops/s and catches up
        /// once the other tests are done — seen at 190 s of lag in CI).
        func until(_ verb: String, _ extra: [String] = [], deadline seconds: Double = 600) throws -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            var last: LedgerliftBinary.Output?
            while Date() < deadline {
                last = try run(
                    ["cutover", verb, "--legacy", legacy, "--store", store, "--clean-verifications", "2",
                    "--clean-minutes", "0", "--max-lag", "3600"] + extra)
                if last?.status == 0 { return true }
                if last?.stderr.contains("undone") == true { outcome.undone += 1 }
                if last?.status == 2 { break }
                usleep(300_000)
            }
            outcome.failures.append(
                "cutover \(verb) did not succeed: \(last?.status ?? -1) \(last?.stderr ?? "")\(last?.stdout ?? "")")
            return false
        }

        try ok(["shadow", "install", "--legacy", legacy, "--mapping", mapping])
        try ok(["backfill", "--legacy", legacy, "--store", store, "--mapping", mapping])
        try ok(["project", "--store", store])
        try ok(["cutover", "init", "--legacy", legacy, "--store", store, "--mapping", mapping])
        guard outcome.failures.isEmpty else { return outcome }

        // The long-running pieces first, each confirmed following before the traffic starts.
        let port = try freeLocalPort()
        let serve = try BackgroundProcess(["serve", "--store", store, "--listen", "127.0.0.1:\(port)"])
        let tailer = try BackgroundProcess([
            "shadow", "run", "--legacy", legacy, "--store", store, "--mapping", mapping, "--follow",
            "--verify-every", "1s",
        ])
        let reverse = try BackgroundProcess([
            "shadow", "reverse-sync", "--legacy", legacy, "--store", store, "--mapping", mapping, "--follow",
        ])
        defer {
            for process in [serve, tailer, reverse] {
                process.signal(SIGTERM)
                process.waitBlocking(timeout: 60)
            }
        }
        let up = Date().addingTimeInterval(180)
        while !localPortAccepts(port), serve.isRunning, Date() < up { usleep(50_000) }
        guard serve.isRunning, localPortAccepts(port) else {
            outcome.failures.append("serve did not come up: \(serve.stderrSoFar)")
            return outcome
        }

        let journal = FileManager.default.temporaryDirectory
            .appendingPathComponent("ledgerlift-cutover-\(UUID().uuidString).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: journal) }
        let application = try BackgroundProcess([
            // Runs until stopped (SIGINT) a while after the last switch: however long the cutover
            // takes on a loaded machine, traffic runs before, during and after it.
            "simulate", "--legacy", legacy, "--rate", "100", "--duration", "3600", "--connections", "16",
            "--seed", rollback ? "17" : "11", "--journal", journal, "--report", "json",
            "--reroute", "http://127.0.0.1:\(port)", "--store", store, "--mapping", mapping,
        ])
        let started = Date().addingTimeInterval(60)
        while ((try? Data(contentsOf: URL(fileURLWithPath: journal)))?.isEmpty ?? true), application.isRunning,
            Date() < started
        {
            usleep(20_000)
        }

        // The cutover, under the traffic.
        for state in ["capturing", "backfilled", "shadowing", "verified", "reads_switched", "writes_switched"] {
            guard try until("advance", ["--to", state]) else { break }
            outcome.states.append(state)
        }
        // The ledger takes the writes for a while (then, for the rollback, legacy again).
        usleep(UInt32(seconds) * 1_000_000 / 2)
        if rollback, outcome.states.last == "writes_switched" {
            if try until("rollback") { outcome.states.append("reads_switched (rolled back)") }
            usleep(UInt32(seconds) * 1_000_000 / 2)
        }
        application.signal(SIGINT)
        let app = application.waitBlocking(timeout: 300)
        outcome.reportJSON = app.stdout
        // 130: stopped by SIGINT, as asked.
        if app.status != 130 { outcome.failures.append("simulate exited \(app.status): \(app.stderr)") }

        if !rollback, outcome.states.last == "writes_switched" {
            // Capture goes at completed: the tailer has nothing left to follow.
            tailer.signal(SIGTERM)
            tailer.waitBlocking(timeout: 60)
            if try until("advance", ["--to", "completed"]) { outcome.states.append("completed") }
        } else {
            // Legacy writes again: let the tailer take the last ones before comparing.
            let drained = Date().addingTimeInterval(120)
            while Date() < drained {
                if try run(["shadow", "status", "--legacy", legacy, "--store", store, "--format", "json"]).stdout
                    .contains("\"backlog_rows\":0")
                {
                    break
                }
                usleep(200_000)
            }
        }
        // Reverse sync applied everything the ledger took before legacy is compared.
        _ = try run([
            "shadow", "reverse-sync", "--legacy", legacy, "--store", store, "--mapping", mapping, "--format", "json",
        ])

        let log = try run(["cutover", "log", "--store", store, "--format", "json"])
        if let json = try? JSONSerialization.jsonObject(with: Data(log.stdout.utf8)) as? [String: Any],
            let events = json["events"] as? [[String: Any]]
        {
            for event in events where event["to"] as? String == "writes_switched" && event["type"] as? String == "CutoverAdvanced" {
                outcome.freezeMs = ((event["measurements"] as? [String: String])?["freeze_ms"]).flatMap { Int($0) }
            }
        }
        for target in [["--store", store], ["--legacy", legacy]] {
            let verify = try run(["simulate", "verify", "--journal", journal] + target)
            if verify.status != 0 {
                outcome.failures.append("simulate verify \(target[0]) exited \(verify.status): \(verify.stdout.suffix(3000))")
            }
        }
        let connection = try Connection.connectBlocking(store)
        defer { connection.close() }
        try connection.withSessionBlocking { session in
            outcome.commandEvents = Int(
                try session.query("SELECT count(*) FROM ledgerlift.events WHERE metadata->>'origin' = 'command'").rows[0]
                    .decode(at: 0, as: Int64.self))
            outcome.legacyEventsAfterRollback = Int(
                try session.query(
                    """
                    SELECT count(*) FROM ledgerlift.events e WHERE e.metadata->>'origin' = 'shadow'
                       AND e.global_position > (SELECT coalesce(max(global_position), 0) FROM ledgerlift.events
                                                 WHERE event_type = 'CutoverRolledBack')
                       AND EXISTS (SELECT 1 FROM ledgerlift.events WHERE event_type = 'CutoverRolledBack')
                    """
                ).rows[0].decode(at: 0, as: Int64.self))
        }
        let diff = try run(["diff", "--legacy", legacy, "--store", store, "--mapping", mapping])
        if diff.status != 0 { outcome.failures.append("diff exited \(diff.status): \(diff.stdout.suffix(3000))") }
        return outcome
    }

    static func check(_ outcome: Outcome, through states: [String]) {
        #expect(outcome.failures.isEmpty, "\(outcome.failures.joined(separator: "\n"))")
        #expect(outcome.states == states)
        let total = outcome.report["total"] as? [String: Any] ?? [:]
        #expect(total["failed"] as? Int == 0, "\(outcome.reportJSON)")
        #expect((total["acknowledged"] as? Int ?? 0) > 0)
        // The ledger took writes after the switch (routed there, or re-routed on the guard's
        // refusal: counted, never failed).
        #expect(outcome.commandEvents > 0, "\(outcome.reportJSON)")
        #expect(outcome.freezeMs != nil)
        print("cutover under traffic: states \(outcome.states), freeze \(outcome.freezeMs ?? -1) ms, switches undone \(outcome.undone), simulator total \(total)")
    }

    @Test func theReferenceFixtureGoesFromPlannedToCompletedUnderTrafficLosingNothing() async throws {
        try await withLegacyAndStore { legacy, store in
            let outcome = try await onThread { try Self.scenario(legacy: legacy, store: store, rollback: false) }
            Self.check(
                outcome,
                through: ["capturing", "backfilled", "shadowing", "verified", "reads_switched", "writes_switched", "completed"])
        }
    }

    @Test func aRollbackFromWritesSwitchedUnderTrafficHandsWritesBackLosingNothing() async throws {
        try await withLegacyAndStore { legacy, store in
            let outcome = try await onThread { try Self.scenario(legacy: legacy, store: store, rollback: true) }
            Self.check(
                outcome,
                through: [
                    "capturing", "backfilled", "shadowing", "verified", "reads_switched", "writes_switched",
                    "reads_switched (rolled back)",
                ])
            // After the rollback legacy took the writes again, and the tailer followed them.
            #expect(outcome.legacyEventsAfterRollback > 0)
        }
    }
}
