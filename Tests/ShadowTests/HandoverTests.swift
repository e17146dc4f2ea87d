import Billing
import Diff
import Postgres
import Shadow
import TestSupport
import Testing

/// The handover from backfill to shadow mode on the reference fixture: capture installed before
/// the backfill leaves no gap, and the changes the backfill already saw are known; installed
/// after, the gap is found and named with its fix, and a resync that ran after the install
/// closes it.
@Suite("Shadow: handover from backfill to capture")
struct HandoverTests {
    @Test func captureInstalledBeforeTheBackfillLeavesNoGapAndTellsWhatTheBackfillSaw() async throws {
        try await withLegacyAndStore { legacy, legacyDSN, store, storeDSN in
            _ = try await install(legacy, try referenceMapping())
            let before = try await xidOf("UPDATE legacy.customers SET email = 'before@example.com' WHERE id = 1", on: legacy)
            try await backfillAndProject(legacyDSN, storeDSN, store)
            let after = try await xidOf("UPDATE legacy.customers SET email = 'after@example.com' WHERE id = 2", on: legacy)

            let verdict = try await Handover.check(legacy: legacy, store: store)
            guard case .ready(let ready) = verdict else {
                Issue.record("expected ready, got \(verdict)")
                return
            }
            #expect(ready.closedByResync == nil && ready.snapshots >= 1 && ready.installs.count == 1)
            #expect(verdict.error == nil)
            try verdict.requireReady()

            // The change before the backfill is in it (the tailer may skip it); the one after is not.
            let snapshots = try #require(try await Handover.backfillSnapshots(store: store))
            #expect(snapshots.sawInEvery(before))
            #expect(!snapshots.sawInEvery(after))
            #expect(snapshots.seenBelow <= UInt64(after)!)
            // The SQL form answers alike, per captured change.
            let seen = try await legacy.query(
                """
                SELECT c.xid::text, \(BackfillSnapshots.seenByEverySQL(xidColumn: "c.xid", parameter: 1))
                  FROM ledgerlift_capture.changes c ORDER BY c.xid, c.id
                """, [PostgresArray(snapshots.snapshots)]
            ).rows.map { (try $0.decode(at: 0, as: String.self), try $0.decode(at: 1, as: Bool.self)) }
            #expect(seen.map(\.0) == [before, after])
            #expect(seen.map(\.1) == [true, false])
            #expect(seen.allSatisfy { snapshots.sawInEvery($0.0) == $0.1 })
        }
    }

    @Test func captureInstalledAfterTheBackfillIsAGapNamingResyncWhichClosesIt() async throws {
        try await withLegacyAndStore { legacy, legacyDSN, store, storeDSN in
            try await backfillAndProject(legacyDSN, storeDSN, store)
            _ = try await install(legacy, try referenceMapping())

            let verdict = try await Handover.check(legacy: legacy, store: store)
            guard case .gap(let gap) = verdict else {
                Issue.record("expected a gap, got \(verdict)")
                return
            }
            #expect(gap.snapshotsNotSeeing == gap.snapshots && gap.snapshots >= 1)
            #expect(gap.entities.contains("customer") && gap.entities.contains("invoice"))
            let message = "\(verdict.error!)"
            #expect(message.contains("ledgerlift shadow resync --legacy … --store … --mapping …"), "\(message)")
            #expect(message.contains("records that the gap is closed"))
            #expect(throws: HandoverError.gap(gap)) { try verdict.requireReady() }
            // The tailer's guard throws the same.
            await #expect(throws: HandoverError.gap(gap)) { try await Handover.preflight()(legacy, store, []) }

            // A resync of one entity closes the gap for that entity only.
            let partial = try await Resync(try resyncOptions(legacyDSN, storeDSN, entities: [.customer])).run(sync: noSyncExpected)
            #expect(partial.before.isClean && partial.rounds.isEmpty)
            guard case .gap(let rest) = try await Handover.check(legacy: legacy, store: store) else {
                Issue.record("a resync of customers only must leave the gap of the others")
                return
            }
            #expect(!rest.entities.contains("customer") && rest.entities.contains("invoice"))

            // Nothing changed in legacy meanwhile: the full resync finds nothing to sync, and
            // having compared everything after the install, closes the gap.
            let full = try await Resync(try resyncOptions(legacyDSN, storeDSN)).run(sync: noSyncExpected)
            #expect(full.after.isClean && full.keysSynced == 0)
            let closed = try await Handover.check(legacy: legacy, store: store)
            guard case .ready(let ready) = closed else {
                Issue.record("expected ready after the resync, got \(closed)")
                return
            }
            #expect(ready.closedByResync == full.id)
            // The message must not say "no gap" when a resync was needed to close one.
            let closedMessage = "\(closed)"
            #expect(
                closedMessage.hasPrefix("capture was installed after the backfill read legacy; the gap was closed by resync #\(full.id) at "),
                "\(closedMessage)")
            #expect(!closedMessage.contains("no gap"))
            try await Handover.preflight()(legacy, store, [])
        }
    }

    @Test func aResyncThatStartedBeforeTheInstallDoesNotCloseItsGap() async throws {
        try await withLegacyAndStore { legacy, legacyDSN, store, storeDSN in
            try await backfillAndProject(legacyDSN, storeDSN, store)
            _ = try await Resync(try resyncOptions(legacyDSN, storeDSN)).run(sync: noSyncExpected)
            _ = try await install(legacy, try referenceMapping())
            let verdict = try await Handover.check(legacy: legacy, store: store)
            #expect(verdict.name == "gap", "\(verdict)")
        }
    }

    @Test func withoutCaptureOrWithoutABackfillTheVerdictNamesTheFix() async throws {
        try await withLegacyAndStore { legacy, _, store, _ in
            let none = try await Handover.check(legacy: legacy, store: store)
            #expect(none == .captureNotInstalled)
            #expect("\(none)".contains("ledgerlift shadow install --legacy … --mapping …"))
            _ = try await install(legacy, try referenceMapping())
            let noBackfill = try await Handover.check(legacy: legacy, store: store)
            #expect(noBackfill == .noBackfill)
            #expect("\(noBackfill)".contains("ledgerlift backfill --legacy … --store … --mapping …"))
            #expect(!noBackfill.isReady)
        }
    }
}
