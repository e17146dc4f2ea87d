import Billing
import Diff
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
