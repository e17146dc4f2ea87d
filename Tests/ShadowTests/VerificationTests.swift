import Billing
import Diff
import EventStore
import Mapping
import Foundation
import Postgres
import Shadow
import TestSupport
import Synchronization
import Testing

/// Continuous verification on the reference fixture: each check is stored; a difference planted
/// in the ledger persists and is reported; one caused by a legacy write the tailer has not
/// applied yet is re-checked once the (simulated) tailer has passed the legacy position, and is
/// then gone; the clean streak the cutover's gates read counts from the last check that was not
/// clean.
@Suite("Shadow: continuous verification")
struct VerificationTests {
    static func verifier(
        _ legacyDSN: String, _ storeDSN: String, readSchema: String = "ledgerlift_read", tailerTimeout: Duration = .seconds(20)
    ) throws -> ContinuousVerifier {
        ContinuousVerifier(
            .init(
                legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: try referenceMapping(), readSchema: readSchema,
                tailerTimeout: tailerTimeout, catchUpTimeout: .seconds(5), origin: "test"))
    }

    /// No tailer: nothing captured, so there is no legacy position to wait for.
    static let noTailer: ContinuousVerifier.TailerPosition = { nil }

    @Test func everyVerificationIsStoredAndTheCleanStreakCountsFromTheLastOneNotClean() async throws {
        try await withLegacyAndStore { legacy, legacyDSN, store, storeDSN in
            _ = try await install(legacy, try referenceMapping())
            try await backfillAndProject(legacyDSN, storeDSN, store)
            let verifier = try Self.verifier(legacyDSN, storeDSN)
            let history = VerificationHistory()

            let first = try await verifier.runOnce(tailerPosition: Self.noTailer)
            #expect(first.verdict == .clean && first.id > 0, "\(first)")
            #expect(first.differences == 0 && first.persistentDifferences == 0 && first.legacyPosition == nil)
            #expect(first.rowsCompared == 45 + 11 + 48 + 146 + 169 + 151 + 5 + 5 + 12)
            #expect(first.reportJSON?.hasPrefix("{\"clean\":true") == true)
            let second = try await verifier.runOnce(tailerPosition: Self.noTailer)
            var streak = try await store.withSession { try history.cleanStreak(in: $0) }
            #expect(streak.count == 2 && streak.since == first.startedAt && streak.lastAt == second.finishedAt)
            #expect(streak.satisfies(minimum: 2, over: .zero))
            #expect(!streak.satisfies(minimum: 3, over: .zero))

            // A difference planted in the ledger: nothing in legacy will ever fix it.
            try await store.execute("UPDATE ledgerlift_read.customers SET email = 'planted@example.com' WHERE customer_id = '2'")
            let different = try await verifier.runOnce(tailerPosition: Self.noTailer)
            #expect(different.verdict == .different)
            #expect(different.differences == 1 && different.persistentDifferences == 1)
            #expect(different.reportJSON?.contains("planted@example.com") == true)
            streak = try await store.withSession { try history.cleanStreak(in: $0) }
            #expect(streak.count == 0 && streak.since == nil)

            // A check that cannot run is stored as an error and ends a streak too.
            try await store.execute(
                "UPDATE ledgerlift_read.customers SET email = $1 WHERE customer_id = '2'",
                [try await legacy.query("SELECT email FROM legacy.customers WHERE id = 2").rows[0].decode(at: 0, as: String?.self)])
            _ = try await verifier.runOnce(tailerPosition: Self.noTailer)
            let failed = try await Self.verifier(legacyDSN, storeDSN, readSchema: "no_such_schema").runOnce(
                tailerPosition: Self.noTailer)
            #expect(failed.verdict == .error && failed.error?.contains("no read model") == true, "\(failed)")
            streak = try await store.withSession { try history.cleanStreak(in: $0) }
            #expect(streak.count == 0)
            let clean = try await verifier.runOnce(tailerPosition: Self.noTailer)
            #expect(clean.verdict == .clean)
            streak = try await store.withSession { try history.cleanStreak(in: $0) }
            #expect(streak.count == 1 && streak.since == clean.startedAt)
            // Only checks covering the entities asked for count.
            let partial = try await ContinuousVerifier(
                .init(
                    legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: try referenceMapping(), entities: [.plan],
                    origin: "test")
            ).runOnce(tailerPosition: Self.noTailer)
            #expect(partial.verdict == .clean && partial.entities == [.plan])
            let covering = try await store.withSession { try history.cleanStreak(covering: [.customer], in: $0) }
            #expect(covering.count == 1)
            let all = try await store.withSession { try history.cleanStreak(in: $0) }
            #expect(all.count == 2)

            let recent = try await store.withSession { try history.recent(limit: 10, in: $0) }
            #expect(recent.map(\.verdict) == [.clean, .clean, .error, .clean, .different, .clean, .clean])
            // As stored (the report as jsonb, so its keys in jsonb's order).
            var stored = try #require(recent.first)
            #expect(stored.reportJSON?.contains("\"entity\": \"plan\"") == true)
            stored.reportJSON = partial.reportJSON
            #expect(stored == partial)
        }
    }

    /// A live write that makes a migrated row unmigratable: the tailer quarantines the key and
    /// its stream (and read model row) stays at its last good state. The diff leaves it out on
    /// both sides and lists it as quarantined, as it does the backfill's quarantine.
    @Test func aKeyTheTailerQuarantinedIsListedApartAndTheVerificationIsClean() async throws {
        try await withLegacyAndStore { legacy, legacyDSN, store, storeDSN in
            try await backfillAndProject(legacyDSN, storeDSN, store)
            // The balance no longer agrees with the customer's balance transactions.
            try await legacy.execute("UPDATE legacy.customers SET balance = balance + 1 WHERE id = 10")
            let sync = ShadowSync(
                legacy: legacy, store: store, eventStore: EventStore(), mapping: try referenceMapping(), origin: .shadow)
            let outcome = try await sync.sync([.customer: ["10"]], position: nil)
            #expect(outcome.quarantined == 1)
            _ = try await sync.project()

            let report = try await DiffChecker(
                .init(legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: try referenceMapping(), checkInvariants: false)
            ).run()
            let customers = try #require(report.entities.first { $0.entity == .customer })
            #expect(customers.isClean && customers.mismatched == 0, "\(report.rendered(.text))")
            #expect(customers.quarantined == 1 && customers.quarantine.map(\.key) == ["10"])
            #expect(customers.quarantine.first?.reason == "balance_mismatch")

            let record = try await Self.verifier(legacyDSN, storeDSN).runOnce(tailerPosition: Self.noTailer)
            #expect(record.verdict == .clean, "\(record.reportJSON ?? record.error ?? "")")
            let status = try await ShadowStatus.read(legacy: legacy, store: store)
            #expect(status.quarantined[.customer] == 1)
        }
    }

    @Test func aLegacyWriteNotYetTailedIsReCheckedAfterTheTailerPassesItAndNotReported() async throws {
        try await withLegacyAndStore { legacy, legacyDSN, store, storeDSN in
            _ = try await install(legacy, try referenceMapping())
            try await backfillAndProject(legacyDSN, storeDSN, store)
            let xid = try await xidOf("UPDATE legacy.customers SET email = 'raced@example.com' WHERE id = 1", on: legacy)
            let position = try #require(
                try await legacy.withSession { try ContinuousVerifier.newestCommitted(in: $0) })
            #expect(position.xid == xid)

            // The simulated tailer is behind for a few polls, then applies the change (to the
            // read model, as its projection would) and reports the position it reached.
            let polls = Polls()
            let tailer: ContinuousVerifier.TailerPosition = {
                let n = polls.next()
                guard n >= 3 else { return CapturePosition(xid: String(UInt64(position.xid)! - 1), id: 0) }
                if n == 3 {
                    try await store.execute(
                        "UPDATE ledgerlift_read.customers SET email = 'raced@example.com' WHERE customer_id = '1'")
                }
                return position
            }
            let record = try await Self.verifier(legacyDSN, storeDSN).runOnce(tailerPosition: tailer)
            #expect(record.verdict == .clean, "\(record.reportJSON ?? record.error ?? "")")
            #expect(record.differences == 1 && record.persistentDifferences == 0)
            #expect(record.legacyPosition == position)
            #expect(polls.count >= 3)
        }
    }

    @Test func byNameItWaitsOnTheCheckpointTheTailerCommitsInShadowTailers() async throws {
        try await withLegacyAndStore { legacy, legacyDSN, store, storeDSN in
            _ = try await install(legacy, try referenceMapping())
            try await backfillAndProject(legacyDSN, storeDSN, store)
            // The tailer's table as it creates it (the columns read here).
            try await store.executeScript(
                """
                CREATE TABLE ledgerlift.shadow_tailers (
                    name text PRIMARY KEY, checkpoint_xid xid8 NOT NULL DEFAULT '0', checkpoint_id bigint NOT NULL DEFAULT 0,
                    updated_at timestamptz NOT NULL DEFAULT now(), last_error text, last_error_at timestamptz);
                INSERT INTO ledgerlift.shadow_tailers (name) VALUES ('t1');
                """)
            try await legacy.execute("UPDATE legacy.customers SET email = 'tailed@example.com' WHERE id = 4")
            let position = try #require(try await legacy.withSession { try ContinuousVerifier.newestCommitted(in: $0) })
            let checkpoint = ContinuousVerifier.checkpoint(of: "t1", store: store)
            #expect(try await checkpoint() == CapturePosition(xid: "0", id: 0))
            #expect(try await ContinuousVerifier.checkpoint(of: "nobody", store: store)() == nil)

            // The "tailer", on a thread of its own, applies the change a while later and commits
            // its checkpoint with it, as the real one does.
            let tailer = simulatedTailer(storeDSN: storeDSN, applying: "UPDATE ledgerlift_read.customers SET email = 'tailed@example.com' WHERE customer_id = '4'", position: position)
            tailer.start()
            let record = try await Self.verifier(legacyDSN, storeDSN).runOnce(tailer: "t1")
            #expect(record.verdict == .clean, "\(record.reportJSON ?? record.error ?? "")")
            #expect(record.differences == 1 && record.persistentDifferences == 0)
            #expect(try await checkpoint() == position)
        }
    }

    /// The re-check reads legacy first, waits for the tailer, then reads the ledger: a key the
    /// application writes again during the wait is compared as it was before the wait, which the
    /// tailer has applied, so its later write is no false difference.
    @Test func aKeyWrittenAgainWhileItsReCheckWaitedIsNoDifference() async throws {
        try await withLegacyAndStore { legacy, legacyDSN, store, storeDSN in
            _ = try await install(legacy, try referenceMapping())
            try await backfillAndProject(legacyDSN, storeDSN, store)
            try await legacy.execute("UPDATE legacy.customers SET email = 'first@example.com' WHERE id = 6")
            let first = try #require(try await legacy.withSession { try ContinuousVerifier.newestCommitted(in: $0) })

            // The simulated tailer applies the first write on its third poll — just as the
            // application writes the key again — and the second write three polls later.
            let polls = Polls()
            let second = Mutex<CapturePosition?>(nil)
            let tailer: ContinuousVerifier.TailerPosition = {
                let n = polls.next()
                if n < 3 { return CapturePosition(xid: String(UInt64(first.xid)! - 1), id: 0) }
                if n == 3 {
                    try await store.execute(
                        "UPDATE ledgerlift_read.customers SET email = 'first@example.com' WHERE customer_id = '6'")
                    try await legacy.execute("UPDATE legacy.customers SET email = 'second@example.com' WHERE id = 6")
                    let newest = try await legacy.withSession { try ContinuousVerifier.newestCommitted(in: $0) }
                    second.withLock { $0 = newest }
                    return first
                }
                if n < 6 { return first }
                if n == 6 {
                    try await store.execute(
                        "UPDATE ledgerlift_read.customers SET email = 'second@example.com' WHERE customer_id = '6'")
                }
                return second.withLock { $0 }
            }
            let record = try await Self.verifier(legacyDSN, storeDSN).runOnce(tailerPosition: tailer)
            #expect(record.verdict == .clean, "\(record.reportJSON ?? record.error ?? "")")
            #expect(record.differences == 1 && record.persistentDifferences == 0)
            #expect(polls.count >= 3, "the re-check waited for the tailer")
        }
    }

    @Test func aTailerThatNeverPassesThePositionLeavesTheDifferenceReportedAndSaysSo() async throws {
        try await withLegacyAndStore { legacy, legacyDSN, store, storeDSN in
            _ = try await install(legacy, try referenceMapping())
            try await backfillAndProject(legacyDSN, storeDSN, store)
            try await legacy.execute("UPDATE legacy.customers SET email = 'untailed@example.com' WHERE id = 1")
            let record = try await Self.verifier(legacyDSN, storeDSN, tailerTimeout: .milliseconds(500)).runOnce(
                tailerPosition: Self.noTailer)
            #expect(record.verdict == .different)
            #expect(record.differences == 1 && record.persistentDifferences == 1)
            #expect(record.reportJSON?.contains("the tailer had not passed legacy position") == true)
        }
    }
}

/// Counts the simulated tailer's polls.
final class Polls: Sendable {
    private let polls = Mutex(0)
    func next() -> Int { polls.withLock { $0 += 1; return $0 } }
    var count: Int { polls.withLock { $0 } }
}
