import Billing
import Diff
import Foundation
import Mapping
import Migration
import Postgres
import Shadow
import TestSupport
import Testing

/// `shadow resync`'s plan: the diff's bisection gives every differing key, per entity and kind,
/// and exactly those are synced; more differences than one round lists are counted for the
/// next round; a running tailer (its lock held) makes resync refuse before it reads anything.
@Suite("Shadow: resync")
struct ResyncTests {
    static func plant(legacy: Connection, store: Connection) async throws {
        try await legacy.executeScript(
            """
            UPDATE legacy.customers c SET email = o.email FROM legacy.customers o WHERE (c.id, o.id) IN ((1, 2), (2, 1));
            """)
        try await store.executeScript(
            """
            UPDATE ledgerlift_read.subscriptions SET status = 'past_due' WHERE subscription_id = '11';
            DELETE FROM ledgerlift_read.subscriptions WHERE subscription_id = '21';
            INSERT INTO ledgerlift_read.plans (plan_id, code, name, amount, currency, "interval", trial_days, archived, created_at)
                 VALUES ('999', 'ghost', 'Ghost', 100, 'USD', 'month', 0, false, '2025-01-01 00:00:00+00');
            """)
    }

    static func diff(_ legacyDSN: String, _ storeDSN: String, keys: Int) async throws -> DiffReport {
        try await DiffChecker(
            .init(
                legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: try referenceMapping(), maxRows: keys, reverify: false,
                checkInvariants: false, maxReverifiedKeys: keys)
        ).run()
    }

    @Test func thePlanListsEveryDifferingKeyByEntityAndKind() async throws {
        try await withLegacyAndStore { legacy, legacyDSN, store, storeDSN in
            try await backfillAndProject(legacyDSN, storeDSN, store)
            #expect(ResyncPlan(try await Self.diff(legacyDSN, storeDSN, keys: 1000)).isEmpty)
            try await Self.plant(legacy: legacy, store: store)

            let plan = ResyncPlan(try await Self.diff(legacyDSN, storeDSN, keys: 1000))
            #expect(plan.keys == [.customer: ["1", "2"], .plan: ["999"], .subscription: ["11", "21"]])
            #expect(plan.keyCount == 5 && plan.unlisted == 0 && plan.keyless == 0)
            let subscription = try #require(plan.entities.first { $0.entity == .subscription })
            #expect(subscription.mismatched == ["11"] && subscription.missingInLedger == ["21"])
            #expect(plan.entities.first { $0.entity == .plan }?.extraInLedger == ["999"])
            #expect(plan.entities.map(\.entity) == [.customer, .plan, .subscription])

            // One key listed per entity: the rest are counted, for the next round.
            let bounded = ResyncPlan(try await Self.diff(legacyDSN, storeDSN, keys: 1))
            #expect(bounded.keyCount == 3 && bounded.unlisted == 2)
        }
    }

    @Test func aRunningTailerMakesResyncRefuseNamingIt() async throws {
        try await withLegacyAndStore { _, legacyDSN, store, storeDSN in
            try await backfillAndProject(legacyDSN, storeDSN, store)
            let tailer = try await Connection.connect(storeDSN, applicationName: "ledgerlift-shadow-run")
            defer { tailer.close() }
            #expect(try await tailer.withSession { try $0.tryLock(Resync.tailerLock(name: "default")) })
            let resync = Resync(try resyncOptions(legacyDSN, storeDSN))
            do {
                _ = try await resync.run(sync: noSyncExpected)
                Issue.record("resync ran beside a tailer")
            } catch {
                guard case .tailerRunning(let name, let holder) = error as? ResyncError else {
                    Issue.record("unexpected \(error)")
                    return
                }
                #expect(name == "default" && holder.contains("ledgerlift-shadow-run"))
                #expect("\(error)".contains("stop `ledgerlift shadow run` first"))
            }
            // Nothing was recorded: the refusal comes before the resync starts.
            let recorded = try await store.query("SELECT to_regclass('ledgerlift.shadow_resyncs') IS NOT NULL").rows[0]
                .decode(at: 0, as: Bool.self)
            #expect(!recorded)
            // Another tailer's name is another lock.
            var other = try resyncOptions(legacyDSN, storeDSN)
            other.tailerName = "other"
            let report = try await Resync(other).run(sync: noSyncExpected)
            #expect(report.before.isClean && report.after.isClean)
        }
    }
}

/// `shadow resync` refuses what `shadow run` and `shadow install` refuse, before it records
/// anything; it builds read models never built; a resync that fails once recorded says so.
@Suite("Shadow: resync preconditions")
struct ResyncPreconditionTests {
    static func recorded(_ store: Connection) async throws -> [(finished: Bool, error: String?)] {
        guard try await store.query("SELECT to_regclass('ledgerlift.shadow_resyncs') IS NOT NULL").rows[0].decode(at: 0, as: Bool.self)
        else { return [] }
        return try await store.query("SELECT finished_at IS NOT NULL, error FROM ledgerlift.shadow_resyncs ORDER BY id").rows.map {
            (try $0.decode(at: 0, as: Bool.self), try $0.decode(at: 1, as: String?.self))
        }
    }

    @Test func withoutAFinishedBackfillOfTheMappingResyncRefusesAsTheTailerDoes() async throws {
        try await withLegacyAndStore { _, legacyDSN, store, storeDSN in
            let resync = Resync(try resyncOptions(legacyDSN, storeDSN))
            await #expect {
                _ = try await resync.run(sync: noSyncExpected)
            } throws: { error in
                guard case ResyncError.noFinishedBackfill = error else { return false }
                return "\(error)".hasPrefix("no backfill of this mapping has finished in the store")
            }
            #expect(try await Self.recorded(store).isEmpty)
        }
    }

    @Test func aMappingWhoseSourcesMissATableItReadsIsRefused() async throws {
        try await withLegacyAndStore { _, legacyDSN, store, storeDSN in
            try await backfillAndProject(legacyDSN, storeDSN, store)
            var options = try resyncOptions(legacyDSN, storeDSN)
            options.mapping = try referenceMappingMissingPaymentCustomersSource()
            let resync = Resync(options)
            await #expect {
                _ = try await resync.run(sync: noSyncExpected)
            } throws: { error in
                guard case ResyncError.mappingIncomplete(let problems) = error else { return false }
                return problems.count == 1 && problems[0].hasPrefix("payment: query, by_key read legacy.customers, not in sources")
            }
            #expect(try await Self.recorded(store).isEmpty)
        }
    }

    @Test func readModelsNeverBuiltAreBuiltFirstAndAFailedResyncRecordsWhy() async throws {
        try await withLegacyAndStore { legacy, legacyDSN, store, storeDSN in
            _ = try await Backfill(
                .init(legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: try referenceMapping(), workers: 2, batchEvents: 97)
            ).run()
            try await legacy.execute("UPDATE legacy.customers SET email = 'changed@example.com' WHERE id = 5")

            // A sync that fails: the resync is recorded with its error, never as finished.
            let failing: Resync.Sync = { _ in throw ResyncTestError.unexpectedSync([:]) }
            let resync = Resync(try resyncOptions(legacyDSN, storeDSN))
            await #expect(throws: ResyncError.self) {
                _ = try await resync.run(prepare: { _ = try await Projector().catchUp(on: store) }, sync: failing)
            }
            let failed = try await Self.recorded(store)
            #expect(failed.count == 1 && !failed[0].finished)
            #expect(failed[0].error?.hasPrefix("syncing 1 key(s) failed") == true, "\(failed)")

            // Through ShadowSync: the read models exist now; drop them to stand for a store never projected.
            try await store.execute("DROP SCHEMA ledgerlift_read CASCADE")
            let report = try await resync.run()
            #expect(report.keysSynced == 1 && report.after.isClean, "\(report.text)")
            let all = try await Self.recorded(store)
            #expect(all.count == 2 && all[1].finished && all[1].error == nil)
        }
    }
}
