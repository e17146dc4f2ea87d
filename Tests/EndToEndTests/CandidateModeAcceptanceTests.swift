import Foundation
import Postgres
import TestSupport
import Testing

/// Issue 16's candidate acceptance, as a user runs it: shadow mode following the reference
/// fixture, `serve --mode candidate`, and the simulated application writing to legacy at 50
/// operations a second with `--candidate` — every operation also sent as commands to the
/// candidate before its COMMIT. Once the tailer has synced everything, no comparison may be a
/// mismatch and none may stay pending; the comparisons that could not be exact are counted with
/// their reasons. `LEDGERLIFT_CANDIDATE_SECONDS` sets the traffic's length (default 8; the
/// acceptance's 60 s run is `LEDGERLIFT_CANDIDATE_SECONDS=60 swift test --filter CandidateModeAcceptance`).
@Suite("candidate mode under live traffic, end to end")
struct CandidateModeAcceptanceTests {
    static var mapping: String { ShadowModeAcceptanceTests.mapping }

    struct Outcome: Sendable {
        var failures: [String] = []
        var status: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(statusJSON.utf8)) as? [String: Any]) ?? [:]
        }
        var statusJSON = ""
        var report: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(reportJSON.utf8)) as? [String: Any]) ?? [:]
        }
        var reportJSON = ""
        var diff = ""
    }

    static func scenario(legacy: String, store: String, seconds: Int, rate: Int, customers: Int) throws -> Outcome {
        var outcome = Outcome()
        func expectZero(_ output: LedgerliftBinary.Output, _ what: String) {
            if output.status != 0 {
                outcome.failures.append("\(what) exited \(output.status): \(output.stdout)\(output.stderr)")
            }
        }
        for arguments in [
            ["fixture", "generate", "--dsn", legacy, "--customers", "\(customers)", "--seed", "1"],
            ["store", "init", "--store", store],
            ["shadow", "install", "--legacy", legacy, "--mapping", mapping],
            ["backfill", "--legacy", legacy, "--store", store, "--mapping", mapping], ["project", "--store", store],
        ] {
            expectZero(try LedgerliftBinary.runBlocking(arguments), arguments[0])
        }
        guard outcome.failures.isEmpty else { return outcome }

        let port = try freeLocalPort()
        let server = try BackgroundProcess([
            "serve", "--store", store, "--listen", "127.0.0.1:\(port)", "--mode", "candidate",
        ])
        defer { if server.isRunning { server.signal(SIGKILL) } }
        // Up when it accepts connections (it listens only once the store is checked).
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, server.isRunning, !localPortAccepts(port) {
            usleep(100_000)
        }
        guard server.isRunning else {
            outcome.failures.append("serve --mode candidate did not come up: \(server.waitBlocking(timeout: 5).stderr)")
            return outcome
        }
        let tail = ["shadow", "run", "--legacy", legacy, "--store", store, "--mapping", mapping]
        let tailer = try BackgroundProcess(tail + ["--follow"])
        defer { if tailer.isRunning { tailer.signal(SIGKILL) } }
        // Traffic once the tailer follows (caught up once): shadow mode as it runs in production.
        let connection = try Connection.connectBlocking(store)
        defer { connection.close() }
        let following = Date().addingTimeInterval(180)
        while Date() < following, tailer.isRunning,
            try connection.withSessionBlocking({ session in
                guard
                    try session.query("SELECT to_regclass('ledgerlift.shadow_tailers') IS NOT NULL").rows[0]
                        .decode(at: 0, as: Bool.self)
                else { return false }
                return try session.query("SELECT caught_up_at IS NOT NULL FROM ledgerlift.shadow_tailers").first?
                    .decode(at: 0, as: Bool.self) ?? false
            }) == false
        {
            usleep(100_000)
        }

        let simulate = try LedgerliftBinary.runBlocking([
            "simulate", "--legacy", legacy, "--rate", "\(rate)", "--duration", "\(seconds)", "--connections", "4",
            "--seed", "16",
            "--candidate", "http://127.0.0.1:\(port)", "--mapping", mapping, "--report", "json",
        ])
        expectZero(simulate, "simulate --candidate")
        outcome.reportJSON = simulate.stdout

        // Every recorded command compared: the tailer has synced past every legacy transaction.
        let caughtUp = Date().addingTimeInterval(180)
        while Date() < caughtUp, tailer.isRunning,
            try connection.withSessionBlocking({
                try $0.query("SELECT count(*) FROM ledgerlift.candidate_commands WHERE verdict IS NULL").rows[0]
                    .decode(at: 0, as: Int64.self)
            }) > 0
        {
            usleep(200_000)
        }
        let status = try LedgerliftBinary.runBlocking([
            "shadow", "status", "--legacy", legacy, "--store", store, "--format", "json",
        ])
        outcome.statusJSON = status.stdout
        tailer.signal(SIGTERM)
        expectZero(tailer.waitBlocking(timeout: 60), "shadow run --follow, stopped by SIGTERM")
        server.signal(SIGTERM)
        expectZero(server.waitBlocking(timeout: 60), "serve, stopped by SIGTERM")
        let diff = try LedgerliftBinary.runBlocking(["diff", "--legacy", legacy, "--store", store, "--mapping", mapping])
        outcome.diff = diff.stdout + diff.stderr
        expectZero(diff, "diff")
        return outcome
    }

    @Test func theCandidateDecidesLikeLegacyUnderTrafficZeroMismatches() async throws {
        let environment = ProcessInfo.processInfo.environment
        let seconds = environment["LEDGERLIFT_CANDIDATE_SECONDS"].flatMap(Int.init) ?? 8
        // A billing database's customers: at 50 operations a second on the reference fixture's
        // 45, each customer is written about once a second, and a state-based tailer that lags
        // by as much cannot tell one operation's change from the next (docs/serve.md).
        let customers = environment["LEDGERLIFT_CANDIDATE_CUSTOMERS"].flatMap(Int.init) ?? 1000
        try await TestDatabase.withFresh("candidate_e2e_legacy") { legacy in
            try await TestDatabase.withFresh("candidate_e2e_store") { store in
                let outcome = try await onThread {
                    try Self.scenario(legacy: legacy, store: store, seconds: seconds, rate: 50, customers: customers)
                }
                #expect(outcome.failures.isEmpty, "\(outcome.failures.joined(separator: "\n"))")
                let candidate = try #require(outcome.status["candidate"] as? [String: Any], "\(outcome.statusJSON)")
                let feed = try #require(outcome.report["candidate"] as? [String: Any], "\(outcome.reportJSON)")
                let sent = feed["sent"] as? Int ?? -1
                #expect(feed["failed"] as? Int == 0, "\(feed)")
                #expect(sent > seconds * 25, "the application sent too few commands: \(feed)")
                #expect(candidate["received"] as? Int == sent, "\(candidate)")
                #expect(candidate["mismatch"] as? Int == 0, "\(outcome.statusJSON)")
                #expect(candidate["pending"] as? Int == 0, "\(candidate)")
                let match = candidate["match"] as? Int ?? 0
                let unverifiable = candidate["unverifiable"] as? Int ?? 0
                // Exact comparisons happened under traffic (how many depends on how far behind the
                // tailer runs: a loaded machine leaves more unverifiable, each with its reason).
                #expect(match > 0, "\(candidate)")
                #expect(match + unverifiable == sent, "\(candidate)")
                print(
                    "candidate under \(seconds) s of traffic at 50 ops/s on \(customers) customers: sent \(sent), match \(match), "
                        + "unverifiable \(unverifiable), reasons \(candidate["unverifiable_reasons"] ?? [])")
            }
        }
    }
}
