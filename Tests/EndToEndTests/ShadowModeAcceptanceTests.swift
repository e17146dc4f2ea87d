import Foundation
import Postgres
import TestSupport
import Testing

/// Issue 15's acceptance, as a user runs it: the reference fixture, the simulated application
/// writing at 50 operations a second, capture installed first, the backfill under that traffic,
/// the tailer following it — then every acknowledged write must be in the read models and the
/// diff clean. `make bench` runs the same for minutes; here it runs seconds.
@Suite("shadow mode under live traffic, end to end")
struct ShadowModeAcceptanceTests {
    static var mapping: String {
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
            dir = dir.deletingLastPathComponent()
        }
        return dir.appendingPathComponent("fixtures/reference/mapping.yaml").path
    }

    struct Outcome: Sendable {
        var failures: [String] = []
        var kills = 0
        var journaled = 0
        var diff = ""
        var verify = ""
    }

    /// Runs the whole scenario on the calling thread (it blocks): install, traffic, backfill under
    /// it, the tailer following — killed with SIGKILL `kills` times at seeded random moments and
    /// started again — then stop the application, drain, diff and verify.
    static func scenario(
        legacy: String, store: String, seconds: Int, kills: Int, seed: UInt64, follow: [String] = ["--follow"]
    ) throws -> Outcome {
        var outcome = Outcome()
        func expectZero(_ output: LedgerliftBinary.Output, _ what: String) {
            if output.status != 0 { outcome.failures.append("\(what) exited \(output.status): \(output.stdout)\(output.stderr)") }
        }
        expectZero(try LedgerliftBinary.runBlocking(["fixture", "load", "--dsn", legacy]), "fixture load")
        expectZero(try LedgerliftBinary.runBlocking(["store", "init", "--store", store]), "store init")
        expectZero(try LedgerliftBinary.runBlocking(["shadow", "install", "--legacy", legacy, "--mapping", mapping]), "shadow install")

        let journal = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerlift-shadow-\(UUID().uuidString).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: journal) }
        let application = try BackgroundProcess([
            "simulate", "--legacy", legacy, "--rate", "50", "--duration", "\(seconds)", "--connections", "4",
            "--seed", "\(seed)", "--journal", journal, "--report", "json",
        ])
        // The backfill starts once the application is writing.
        let deadline = Date().addingTimeInterval(60)
        while ((try? Data(contentsOf: URL(fileURLWithPath: journal)))?.isEmpty ?? true), application.isRunning, Date() < deadline {
            usleep(20_000)
        }
        expectZero(
            try LedgerliftBinary.runBlocking(["backfill", "--legacy", legacy, "--store", store, "--mapping", mapping]),
            "backfill under traffic")

        let tail = ["shadow", "run", "--legacy", legacy, "--store", store, "--mapping", mapping]
        var tailer = try BackgroundProcess(tail + follow)
        var random = SeededRandom(seed)
        while application.isRunning {
            if outcome.kills < kills {
                usleep(UInt32(300_000 + random.next(below: 2_200_000)))
                tailer.signal(SIGKILL)
                let killed = tailer.waitBlocking()
                // It may have died of something else first: that is a failure, not a kill.
                if killed.status != 128 + SIGKILL {
                    outcome.failures.append("the tailer ended with \(killed.status) before its kill: \(killed.stderr)")
                }
                outcome.kills += 1
                tailer = try BackgroundProcess(tail + follow)
            } else {
                usleep(50_000)
            }
        }
        let app = application.waitBlocking()
        expectZero(app, "simulate")
        if follow.contains("--verify-every") {
            // A loaded machine may have spent the traffic's seconds on the backfill and the first
            // build of the read models: the tailer keeps following until it has verified once.
            let store = try Connection.connectBlocking(store)
            defer { store.close() }
            let deadline = Date().addingTimeInterval(180)
            while Date() < deadline, tailer.isRunning,
                try store.withSessionBlocking({ session in
                    // The table is created by the first verification.
                    guard
                        try session.query("SELECT to_regclass('ledgerlift.shadow_verifications') IS NOT NULL").rows[0]
                            .decode(at: 0, as: Bool.self)
                    else { return 0 }
                    return try session.query("SELECT count(*) FROM ledgerlift.shadow_verifications").rows[0]
                        .decode(at: 0, as: Int64.self)
                }) == 0
            {
                usleep(100_000)
            }
        }
        // A tailer the last kill restarted may not have installed its SIGTERM handler yet (a loaded
        // machine starts a debug binary slowly): it has once it is connected to the store.
        let observer = try Connection.connectBlocking(store)
        defer { observer.close() }
        let connected = Date().addingTimeInterval(120)
        while Date() < connected, tailer.isRunning,
            try observer.withSessionBlocking({ session in
                try session.query(
                    """
                    SELECT count(*) FROM pg_stat_activity
                    WHERE datname = current_database() AND application_name LIKE 'ledgerlift-shadow%' AND pid <> pg_backend_pid()
                    """
                ).rows[0].decode(at: 0, as: Int64.self)
            }) == 0
        {
            usleep(50_000)
        }
        // It stops after its current batch and projection: minutes on a loaded CI machine.
        tailer.signal(SIGTERM)
        expectZero(tailer.waitBlocking(timeout: 600), "shadow run --follow, stopped by SIGTERM")
        // Without --follow the tailer drains what is left and stops: caught up.
        expectZero(try LedgerliftBinary.runBlocking(tail), "shadow run (drain)")

        outcome.journaled = ((try? String(contentsOfFile: journal, encoding: .utf8)) ?? "").split(separator: "\n").count
        let diff = try LedgerliftBinary.runBlocking(["diff", "--legacy", legacy, "--store", store, "--mapping", mapping])
        outcome.diff = diff.stdout + diff.stderr
        expectZero(diff, "diff")
        let verify = try LedgerliftBinary.runBlocking(["simulate", "verify", "--journal", journal, "--store", store])
        outcome.verify = verify.stdout + verify.stderr
        expectZero(verify, "simulate verify --store")
        return outcome
    }

    /// Streams whose versions are not 1…n without a gap, and events whose id appears twice.
    static func storeIntegrity(_ store: String) async throws -> (gaps: Int64, duplicateIDs: Int64, events: Int64) {
        let connection = try await Connection.connect(store)
        defer { connection.close() }
        let row = try await connection.query(
            """
            SELECT (SELECT count(*) FROM (SELECT stream_id FROM ledgerlift.events GROUP BY stream_id
                                          HAVING max(stream_version) <> count(*) OR min(stream_version) <> 1) g),
                   (SELECT count(*) - count(DISTINCT event_id) FROM ledgerlift.events),
                   (SELECT count(*) FROM ledgerlift.events)
            """
        ).rows[0]
        return (try row.decode(at: 0), try row.decode(at: 1), try row.decode(at: 2))
    }

    @Test func theReferenceFixtureFollowedUnderTrafficEndsWithACleanDiffAndEveryWriteInTheReadModels() async throws {
        try await TestDatabase.withFresh("shadow_e2e_legacy") { legacy in
            try await TestDatabase.withFresh("shadow_e2e_store") { store in
                let outcome = try await onThread {
                    try Self.scenario(
                        legacy: legacy, store: store, seconds: 15, kills: 0, seed: 1, follow: ["--follow", "--verify-every", "3s"])
                }
                #expect(outcome.failures.isEmpty, "\(outcome.failures.joined(separator: "\n"))")
                #expect(outcome.journaled > 100, "the application wrote under the tailer")
                // The tailer verified under traffic, and every verdict was clean: differences
                // of writes not yet tailed are re-checked after the tailer passed them.
                let connection = try await Connection.connect(store)
                defer { connection.close() }
                let verdicts = try await connection.query(
                    "SELECT verdict, count(*)::int8 FROM ledgerlift.shadow_verifications GROUP BY 1 ORDER BY 1"
                ).rows.map { "\(try $0.decode(at: 0, as: String.self)): \(try $0.decode(at: 1, as: Int64.self))" }
                let errors = try await connection.query(
                    "SELECT coalesce(error, '') || ' ' || coalesce(report::text, '') FROM ledgerlift.shadow_verifications WHERE verdict <> 'clean'"
                ).rows.map { try $0.decode(at: 0, as: String.self) }
                #expect(verdicts.count == 1 && verdicts[0].hasPrefix("clean: "), "\(verdicts) \(errors)")
                let integrity = try await Self.storeIntegrity(store)
                #expect(integrity.gaps == 0)
                #expect(integrity.duplicateIDs == 0)
            }
        }
    }

    @Test func aTailerKilledAtFiveRandomMomentsEndsTheSameAndReplayReproducesTheReadModels() async throws {
        try await TestDatabase.withFresh("shadow_kill_legacy") { legacy in
            try await TestDatabase.withFresh("shadow_kill_store") { store in
                let outcome = try await onThread { try Self.scenario(legacy: legacy, store: store, seconds: 20, kills: 5, seed: 2) }
                #expect(outcome.failures.isEmpty, "\(outcome.failures.joined(separator: "\n"))")
                #expect(outcome.kills == 5, "the application ended before five kills")
                let integrity = try await Self.storeIntegrity(store)
                #expect(integrity.gaps == 0, "every stream's versions are 1…n")
                #expect(integrity.duplicateIDs == 0)
                // Replaying every stream from the first event into fresh read models gives the
                // same rows: the diff against legacy is clean for the rebuilt read models too.
                let rebuilt = try await LedgerliftBinary.run(["project", "--store", store, "--read-schema", "ledgerlift_replayed"])
                #expect(rebuilt.status == 0, "\(rebuilt.stderr)")
                let diff = try await LedgerliftBinary.run([
                    "diff", "--legacy", legacy, "--store", store, "--mapping", Self.mapping, "--read-schema", "ledgerlift_replayed",
                ])
                #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")
                #expect(try await Self.sameReadModels(store, "ledgerlift_read", "ledgerlift_replayed"))
            }
        }
    }

    /// Whether every canonical table of two read-model schemas holds the same rows.
    static func sameReadModels(_ store: String, _ a: String, _ b: String) async throws -> Bool {
        let connection = try await Connection.connect(store)
        defer { connection.close() }
        let tables = try await connection.query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY 1",
            [a]
        ).rows.map { try $0.decode(at: 0, as: String.self) }
        var same = true
        for table in tables where !table.hasPrefix("projection") && !table.hasPrefix("checkpoint") {
            let differing = try await connection.query(
                """
                SELECT count(*) FROM ((TABLE \(quoteIdentifier(a)).\(quoteIdentifier(table))
                                       EXCEPT ALL TABLE \(quoteIdentifier(b)).\(quoteIdentifier(table)))
                                      UNION ALL
                                      (TABLE \(quoteIdentifier(b)).\(quoteIdentifier(table))
                                       EXCEPT ALL TABLE \(quoteIdentifier(a)).\(quoteIdentifier(table)))) d
                """
            ).rows[0].decode(at: 0, as: Int64.self)
            if differing != 0 {
                Issue.record("\(table): \(differing) rows differ between \(a) and \(b)")
                same = false
            }
        }
        return same
    }
}

/// SplitMix64: seeded moments for the kills, the same on every run.
struct SeededRandom {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next(below bound: UInt64) -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return (z ^ (z >> 31)) % bound
    }
}
