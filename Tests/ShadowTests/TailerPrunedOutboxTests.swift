import Foundation
import Postgres
import Shadow
import TestSupport
import Testing

/// The outbox is pruned once applied: a second consumer (a new tailer name, another store) whose
/// checkpoint is below what was pruned would find nothing and say "caught up" having missed it
/// all. It refuses instead — unless its backfill, or a finished resync, read legacy after the
/// prune.
@Suite("shadow run: an outbox another consumer pruned")
struct TailerPrunedOutboxTests {
    @Test func aSecondNameRefusesUntilAResyncThenANewStoreBackfilledAfterThePruneStarts() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            try await scenario.withLegacy { session in
                _ = try session.execute(
                    "UPDATE legacy.customers SET name = name || ' (renamed)' WHERE id = (SELECT min(id) FROM legacy.customers)")
            }
            let first = try await scenario.tail()
            #expect(first.changesRead == 1)
            let pruned = try await scenario.withLegacy { session in
                try session.query("SELECT through_xid::text, through_id, by FROM ledgerlift_capture.pruned").rows.map(\.values)
            }
            #expect(pruned.count == 1)
            #expect(pruned.first?[2]?.contains("shadow tailer default of store") == true, "\(pruned)")

            // A new name on the same store starts at 0/0: what `default` pruned is gone for it.
            let refused = try await ledgerlift([
                "shadow", "run", "--legacy", scenario.legacy, "--store", scenario.store, "--mapping", scenario.mappingPath,
                "--name", "other",
            ])
            #expect(refused.status == 2, "\(refused.stdout)\(refused.stderr)")
            #expect(refused.stderr.hasPrefix("Error: the capture outbox was pruned through"), "\(refused.stderr)")
            #expect(refused.stderr.contains("shadow tailer default"))
            #expect(refused.stderr.contains("ledgerlift shadow resync"))

            // A resync into this store after the prune compared everything the prune removed.
            let resync = try await ledgerlift([
                "shadow", "resync", "--legacy", scenario.legacy, "--store", scenario.store, "--mapping", scenario.mappingPath,
                "--name", "other",
            ])
            #expect(resync.status == 0, "\(resync.stdout)\(resync.stderr)")
            let other = try await scenario.tail(name: "other")
            #expect(other.caughtUp)

            // A new store backfilled after the prune: its backfill saw the pruned changes.
            try await TestDatabase.withFresh("tailer_pruned_second_store") { second in
                for arguments in [
                    ["store", "init", "--store", second],
                    ["backfill", "--legacy", scenario.legacy, "--store", second, "--mapping", scenario.mappingPath],
                ] {
                    let output = try await ledgerlift(arguments)
                    #expect(output.status == 0, "\(output.stdout)\(output.stderr)")
                }
                let run = try await ledgerlift([
                    "shadow", "run", "--legacy", scenario.legacy, "--store", second, "--mapping", scenario.mappingPath,
                ])
                #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
                #expect(run.stdout.contains("caught up"))
                let diff = try await ledgerlift(["diff", "--legacy", scenario.legacy, "--store", second, "--mapping", scenario.mappingPath])
                #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")
            }
        }
    }
}

@Suite("shadow run: a capture schema older than the tailer")
struct TailerCaptureVersionTests {
    /// A capture installed by an earlier Ledgerlift (version 1: no record of what was pruned)
    /// would let the pruned-outbox check pass unseen: the tailer asks for the upgrade instead.
    @Test func anOutdatedCaptureSchemaIsRefusedAndInstallAgainUpgradesIt() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            try await scenario.withLegacy { session in
                try session.execute("DROP TABLE ledgerlift_capture.pruned")
                try session.execute("DELETE FROM ledgerlift_capture.schema_migrations WHERE version > 1")
            }
            let run = ["shadow", "run", "--legacy", scenario.legacy, "--store", scenario.store, "--mapping", scenario.mappingPath]
            let refused = try await ledgerlift(run)
            #expect(refused.status == 2)
            #expect(
                refused.stderr.hasPrefix("Error: the capture schema ledgerlift_capture is at version 1, this Ledgerlift needs"),
                "\(refused.stderr)")
            let install = try await ledgerlift(["shadow", "install", "--legacy", scenario.legacy, "--mapping", scenario.mappingPath])
            #expect(install.status == 0, "\(install.stderr)")
            #expect(install.stdout.contains("schema version 1 → "), "\(install.stdout)")
            let tailed = try await ledgerlift(run)
            #expect(tailed.status == 0, "\(tailed.stderr)")
        }
    }
}
