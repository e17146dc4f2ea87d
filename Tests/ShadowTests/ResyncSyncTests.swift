import Billing
import Diff
import Foundation
import Postgres
import Shadow
import TestSupport
import Testing

/// `shadow resync` through the tailer's sync: legacy changes that capture never saw (made
/// before it was installed, or with triggers off) are found by the diff and synced key by key,
/// with origin `resync`, leaving a clean diff and a closed handover gap.
@Suite("Shadow: resync through ShadowSync")
struct ResyncSyncTests {
    /// Legacy writes the capture does not see (`session_replication_role = replica` fires no
    /// ordinary trigger): a changed price, a changed email, a hard-deleted refund.
    static func plantUncaptured(_ legacy: Connection) async throws -> String {
        try await legacy.executeScript(
            """
            SET session_replication_role = replica;
            UPDATE legacy.plans SET price = 49.01 WHERE id = 2;
            UPDATE legacy.customers SET email = 'resynced@example.com' WHERE id = 5;
            RESET session_replication_role;
            """)
        let refund = try await legacy.query("SELECT id::text FROM legacy.refunds ORDER BY id LIMIT 1").rows[0].decode(
            at: 0, as: String.self)
        try await legacy.executeScript(
            """
            SET session_replication_role = replica;
            DELETE FROM legacy.refunds WHERE id = \(refund);
            RESET session_replication_role;
            """)
        return refund
    }

    @Test func resyncSyncsExactlyTheDifferingKeysAndTheDiffIsCleanAfter() async throws {
        try await withLegacyAndStore { legacy, legacyDSN, store, storeDSN in
            _ = try await install(legacy, try referenceMapping())
            try await backfillAndProject(legacyDSN, storeDSN, store)
            let refund = try await Self.plantUncaptured(legacy)
            #expect(try await capturedChanges(legacy).isEmpty)

            let report = try await Resync(try resyncOptions(legacyDSN, storeDSN)).run()
            #expect(report.before.differenceCount == 3, "\(report.text)")
            let plan = try #require(report.rounds.first?.plan)
            #expect(plan.keys == [.customer: ["5"], .plan: ["2"], .refund: [refund]])
            #expect(report.rounds.count == 1 && report.keysSynced == 3)
            #expect(report.eventsAppended >= 3)
            #expect(report.after.isClean && report.exitCode == 0, "\(report.text)")
            let origins = try await store.query(
                """
                SELECT DISTINCT metadata->>'origin' FROM ledgerlift.events
                 WHERE global_position > (SELECT max(global_position) FROM ledgerlift.events) - $1
                """, [Int64(report.eventsAppended)]
            ).rows.map { try $0.decode(at: 0, as: String.self) }
            #expect(origins == ["resync"])
            #expect(Resync.tailerLock(name: "x") == ShadowTailer.lock(name: "x"))

            // A full diff, invariants included, agrees; a second resync finds nothing.
            let diff = try await DiffChecker(
                .init(legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: try referenceMapping())
            ).run()
            #expect(diff.isClean)
            let again = try await Resync(try resyncOptions(legacyDSN, storeDSN)).run()
            #expect(again.before.isClean && again.rounds.isEmpty)
        }
    }

    @Test func backfillFirstThenInstallThenResyncClosesTheGapAndTheCommandReportsIt() async throws {
        try await withLegacyAndStore { legacy, legacyDSN, store, storeDSN in
            try await backfillAndProject(legacyDSN, storeDSN, store)
            // Written after the backfill's snapshot, before capture: the gap.
            try await legacy.execute("UPDATE legacy.customers SET email = 'gap@example.com' WHERE id = 7")
            _ = try await install(legacy, try referenceMapping())
            #expect(try await Handover.check(legacy: legacy, store: store).name == "gap")

            let run = try await LedgerliftBinary.run([
                "shadow", "resync", "--legacy", legacyDSN, "--store", storeDSN, "--mapping", referenceMappingPath,
                "--format", "json",
            ])
            #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
            let json = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any] ?? [:]
            #expect((json["before"] as? [String: Any])?["differences"] as? Int == 1, "\(run.stdout)")
            #expect(json["keys_synced"] as? Int == 1 && json["clean"] as? Bool == true)
            #expect((json["after"] as? [String: Any])?["differences"] as? Int == 0)
            #expect(try await Handover.check(legacy: legacy, store: store).isReady)

            // A read model changed behind its events' back: resync appends nothing for it (its
            // stream matches legacy), says so and exits 1.
            try await store.execute("UPDATE ledgerlift_read.customers SET email = 'drift@example.com' WHERE customer_id = '8'")
            let text = try await LedgerliftBinary.run([
                "shadow", "resync", "--legacy", legacyDSN, "--store", storeDSN, "--mapping", referenceMappingPath,
            ])
            #expect(text.status == 1, "\(text.stdout)\(text.stderr)")
            #expect(text.stdout.contains("round 1: 1 key(s) synced, 0 event(s) appended"), "\(text.stdout)")
            #expect(text.stdout.contains("ledgerlift project --rebuild"), "\(text.stdout)")
        }
    }
}
