import Foundation
import Postgres
import Shadow
import TestSupport
import Testing

/// A tailer killed with SIGKILL at several moments and run again ends with exactly the events of
/// an uninterrupted run: the checkpoint commits with each batch's events, and a batch that did
/// not commit is read again and synced state-based.
@Suite("Shadow: the tailer killed and run again")
struct TailerKillTests {
    @Test func killedFourTimesThenRunAgainAppendsTheEventsOfAnUninterruptedRun() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            let simulation = try await ledgerlift([
                "simulate", "--legacy", scenario.legacy, "--operations", "400", "--rate", "400", "--connections", "3",
                "--seed", "77",
            ])
            #expect(simulation.status == 0, "\(simulation.stderr)")
            // The same legacy backlog and store, twice: one copy drained in one run, the other by
            // a run killed four times.
            let admin = try TestDatabase.adminDSN()
            let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
            let legacyCopy = "lltest_tailer_kill_legacy_" + suffix
            let storeCopy = "lltest_tailer_kill_store_" + suffix
            try await copyDatabase(scenario.legacy, to: legacyCopy, admin: admin)
            try await copyDatabase(scenario.store, to: storeCopy, admin: admin)
            defer {
                if let connection = try? Connection.connectBlocking(admin) {
                    for name in [legacyCopy, storeCopy] {
                        _ = try? connection.withSessionBlocking { try $0.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
                    }
                    connection.close()
                }
            }
            let killed = ShadowScenario(
                legacy: ConnectionString.withDatabase(admin, legacyCopy), store: ConnectionString.withDatabase(admin, storeCopy),
                mappingPath: scenario.mappingPath)

            let uninterrupted = try await scenario.tail(batchSize: 40)
            #expect(uninterrupted.caughtUp && uninterrupted.changesRead > 400)

            let kills = try await killRepeatedly(killed, times: 4)
            #expect(kills == 4, "each kill landed while the tailer was applying")
            let rerun = try await ledgerlift([
                "shadow", "run", "--legacy", killed.legacy, "--store", killed.store, "--mapping", killed.mappingPath, "--batch", "40",
            ])
            #expect(rerun.status == 0, "\(rerun.stdout)\(rerun.stderr)")
            #expect(rerun.stdout.contains("caught up"))

            #expect(try await killed.streamsWithGaps().isEmpty, "no event twice, no version gap")
            let expected = try await scenario.events()
            let got = try await killed.events()
            #expect(got.count == expected.count)
            #expect(got == expected, "the same events (ids, versions, business time, payloads)")
            let diff = try await killed.diff()
            #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")
            let outbox = try await killed.withLegacy {
                try $0.query("SELECT count(*) FROM ledgerlift_capture.changes").rows[0].decode(at: 0, as: Int64.self)
            }
            #expect(outbox == 0)
        }
    }

    /// `CREATE DATABASE … TEMPLATE`, once the sessions of the finished commands have gone.
    func copyDatabase(_ dsn: String, to name: String, admin: String) async throws {
        let source = try await Connection.connect(dsn)
        let sourceName = try await source.query("SELECT current_database()").rows[0].decode(at: 0, as: String.self)
        source.close()
        let connection = try await Connection.connect(admin)
        defer { connection.close() }
        for attempt in 1...50 {
            do {
                try await connection.execute("CREATE DATABASE \(name) TEMPLATE \(quoteIdentifier(sourceName))")
                return
            } catch let error as PostgresError where attempt < 50 && error.sqlState == "55006" {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// Starts `shadow run` with small batches and kills it with SIGKILL once its checkpoint has
    /// moved, `times` times, each after a random few milliseconds more (mid-batch, between the
    /// commit and the prune, during projection). Runs on a thread of its own.
    /// - Returns: how many kills happened while the tailer had work left.
    func killRepeatedly(_ scenario: ShadowScenario, times: Int) async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(
                    with: Result {
                        let store = try Connection.connectBlocking(scenario.store)
                        defer { store.close() }
                        func checkpoint() throws -> Int64 {
                            try store.withSessionBlocking { session in
                                guard try session.query("SELECT to_regclass('ledgerlift.shadow_tailers') IS NOT NULL").rows[0]
                                    .decode(at: 0, as: Bool.self)
                                else { return 0 }
                                return try session.query("SELECT coalesce(max(checkpoint_id), 0) FROM ledgerlift.shadow_tailers")
                                    .rows[0].decode(at: 0, as: Int64.self)
                            }
                        }
                        var kills = 0
                        for _ in 0..<times {
                            let process = Process()
                            process.executableURL = URL(fileURLWithPath: LedgerliftBinary.path)
                            process.arguments = [
                                "shadow", "run", "--legacy", scenario.legacy, "--store", scenario.store, "--mapping",
                                scenario.mappingPath, "--batch", "40",
                            ]
                            process.standardOutput = FileHandle.nullDevice
                            process.standardError = FileHandle.nullDevice
                            let start = try checkpoint()
                            try process.run()
                            let deadline = Date().addingTimeInterval(60)
                            while try checkpoint() == start, process.isRunning, Date() < deadline { usleep(2_000) }
                            usleep(UInt32.random(in: 0...40_000))
                            if process.isRunning {
                                kill(process.processIdentifier, SIGKILL)
                                kills += 1
                            }
                            process.waitUntilExit()
                        }
                        return kills
                    })
            }.start()
        }
    }
}
