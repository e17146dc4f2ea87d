import Billing
import Foundation
import Postgres
import Shadow
import TestSupport
import Testing

/// `shadow run`'s command-line edges: its poll interval, what it announces before refusing, and
/// errors of the mapping's own statements.
@Suite("shadow run: options, announcements and mapping errors")
struct TailerCommandTests {
    @Test func aPollIntervalBelowTenMillisecondsIsRefused() async throws {
        for interval in ["0", "0ms", "9ms"] {
            let run = try await ledgerlift([
                "shadow", "run", "--legacy", "postgresql://u@127.0.0.1:1/l", "--store", "postgresql://u@127.0.0.1:1/s",
                "--mapping", referenceMappingPath, "--poll-interval", interval,
            ])
            #expect(run.status == 2)
            #expect(run.stderr.contains("--poll-interval must be a duration of at least 10ms"), "\(run.stderr)")
        }
    }

    @Test func aRefusedFollowDoesNotFirstSayItIsFollowing() async throws {
        try await TestDatabase.withFresh("tailer_announce_legacy") { legacy in
            try await TestDatabase.withFresh("tailer_announce_store") { store in
                for arguments in [
                    ["fixture", "load", "--dsn", legacy], ["shadow", "install", "--legacy", legacy, "--mapping", referenceMappingPath],
                    ["store", "init", "--store", store],
                ] {
                    #expect(try await ledgerlift(arguments).status == 0)
                }
                let run = try await ledgerlift([
                    "shadow", "run", "--follow", "--legacy", legacy, "--store", store, "--mapping", referenceMappingPath,
                ])
                #expect(run.status == 2)
                #expect(run.stderr.hasPrefix("Error: no backfill"), "\(run.stderr)")
                #expect(!run.stderr.contains("following"), "\(run.stderr)")
            }
        }
    }

    @Test func captureUninstalledUnderAFollowingTailerEndsItCleanly() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            let process = try BackgroundProcess([
                "shadow", "run", "--follow", "--legacy", scenario.legacy, "--store", scenario.store, "--mapping",
                scenario.mappingPath,
            ])
            let deadline = Date().addingTimeInterval(300)
            while !process.stderrSoFar.contains("following"), process.isRunning, Date() < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            let uninstall = try await ledgerlift([
                "shadow", "uninstall", "--legacy", scenario.legacy, "--mapping", scenario.mappingPath,
            ])
            #expect(uninstall.status == 0, "\(uninstall.stderr)")
            let output = try await process.wait(timeout: 300)
            #expect(output.status == 0, "\(output.stdout)\(output.stderr)")
            #expect(output.stdout.contains("capture uninstalled: nothing left to follow"), "\(output.stdout)")
        }
    }

    @Test func aFailingKeysStatementNamesItsEntityAndSourceTable() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            // Only invoice lines' `keys:` of source legacy.invoices reads legacy.invoice_line_items:
            // held locked while the tailer's sessions give up on locks after 200ms, it fails.
            try await scenario.withLegacy { session in
                _ = try session.execute("ALTER DATABASE \(quoteIdentifier(try session.query("SELECT current_database()").rows[0].decode(at: 0, as: String.self))) SET lock_timeout = '200ms'")
                _ = try session.execute("UPDATE legacy.invoices SET updated_at = updated_at + interval '1 second' WHERE id = (SELECT min(id) FROM legacy.invoices)")
            }
            let holder = try await Connection.connect(scenario.legacy)
            defer { holder.close() }
            try await holder.execute("BEGIN")
            try await holder.execute("LOCK TABLE legacy.invoice_line_items IN ACCESS EXCLUSIVE MODE")
            let error = await #expect(throws: TailerError.self) { try await scenario.tail() }
            try await holder.execute("ROLLBACK")
            guard case .mappingStatementFailed(let entity, let table, let statement, _) = error else {
                Issue.record("\(String(describing: error))")
                return
            }
            #expect(entity == Entity.invoiceLine.rawValue)
            #expect(table == "legacy.invoices")
            #expect(statement == "keys")
            #expect(String(describing: error!).contains("lock"), "PostgreSQL's own message is kept")
        }
    }
}
