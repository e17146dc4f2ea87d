import Cutover
import Postgres
import Shadow
import Testing

/// Each gate's rule on its edges, with the evidence it shows. (The readings themselves are
/// measured from real databases in ``CutoverCommandTests``.)
@Suite("Cutover: gates")
struct CutoverGatesTests {
    static let tables = ["legacy.customers", "legacy.invoices"]

    static func readings(
        captured: [String]? = tables, handoverReady: Bool = true, quarantined: [String: Int64] = [:],
        running: Bool = false, caughtUp: Bool = true, p99: Int64? = nil, samples: Int64 = 0,
        streak: VerificationHistory.CleanStreak = .init(count: 0, since: nil, lastAt: nil),
        candidate: CutoverReadings.CandidateWindow? = nil
    ) -> CutoverReadings {
        CutoverReadings(
            sourceTables: tables, capturedTables: captured, handoverReady: handoverReady,
            handover: handoverReady ? "ready" : "no backfill has finished", quarantined: quarantined,
            tailerRunning: running, tailerCaughtUp: caughtUp, tailerCheckpoint: nil, newestCapture: nil,
            lagSamples: samples, lagP99Milliseconds: p99, lagWindowSeconds: 300, cleanStreak: streak,
            candidate: candidate)
    }

    static func gates(
        _ from: CutoverState, _ to: CutoverState, _ r: CutoverReadings, _ options: CutoverGateOptions = .init()
    )
        -> [String: CutoverGate]
    {
        Dictionary(
            uniqueKeysWithValues: (CutoverGates.evaluate(.init(from: from, to: to), readings: r, options: options) ?? [])
                .map {
                    ($0.name, $0)
                })
    }

    @Test func captureMustCoverEverySourceTable() {
        #expect(Self.gates(.planned, .capturing, Self.readings())["capture_installed"]?.passed == true)
        let partial = Self.gates(.planned, .capturing, Self.readings(captured: ["legacy.customers"]))[
            "capture_installed"]!
        #expect(!partial.passed && partial.evidence["missing"] == "legacy.invoices")
        #expect(
            partial.remedy == "install capture on every source table: ledgerlift shadow install --legacy … --mapping …")
        let none = Self.gates(.planned, .capturing, Self.readings(captured: nil))["capture_installed"]!
        #expect(!none.passed && none.evidence["captured_tables"] == "(capture not installed)")
    }

    @Test func backfillAndQuarantine() {
        var g = Self.gates(.capturing, .backfilled, Self.readings(handoverReady: false))
        #expect(
            g["backfill_after_capture"]?.passed == false
                && g["backfill_after_capture"]?.evidence["handover"] == "no backfill has finished")
        #expect(g["quarantine"]?.passed == true && g["quarantine"]?.evidence["quarantined"] == "0")
        g = Self.gates(.capturing, .backfilled, Self.readings(quarantined: ["invoice": 2, "customer": 1]))
        #expect(g["quarantine"]?.passed == false && g["quarantine"]?.evidence["by_entity"] == "customer: 1, invoice: 2")
        #expect(g["quarantine"]?.remedy?.contains("--accept-quarantine --reason TEXT") == true)
        var accepting = CutoverGateOptions()
        accepting.acceptQuarantine = "three known-bad 2019 invoices"
        g = Self.gates(.capturing, .backfilled, Self.readings(quarantined: ["invoice": 3]), accepting)
        #expect(
            g["quarantine"]?.passed == true && g["quarantine"]?.evidence["accepted"] == "three known-bad 2019 invoices")
        #expect(g["quarantine"]?.remedy == nil)
    }

    @Test func tailerAndLag() {
        var options = CutoverGateOptions()
        options.maxLag = .seconds(5)
        var g = Self.gates(
            .backfilled, .shadowing, Self.readings(running: true, caughtUp: false, p99: 4_999, samples: 10), options)
        #expect(
            g["tailer_following"]?.passed == true && g["lag"]?.passed == true && g["lag"]?.evidence["max_ms"] == "5000")
        g = Self.gates(
            .backfilled, .shadowing, Self.readings(running: true, caughtUp: false, p99: 5_000, samples: 10), options)
        #expect(g["lag"]?.passed == false && g["lag"]?.evidence["p99_ms"] == "5000")
        // Nothing running and changes waiting: neither passes.
        g = Self.gates(.backfilled, .shadowing, Self.readings(running: false, caughtUp: false), options)
        #expect(g["tailer_following"]?.passed == false && g["lag"]?.passed == false)
        #expect(g["lag"]?.evidence["p99_ms"] == "(no samples)")
        // Stopped but caught up, without samples: nothing lags.
        g = Self.gates(.backfilled, .shadowing, Self.readings(running: false, caughtUp: true), options)
        #expect(g["tailer_following"]?.passed == true && g["lag"]?.passed == true)
    }

    @Test func cleanStreakOverTimeAndCandidates() {
        let t0 = PostgresTimestamp(microsecondsSinceEpoch: 1_700_000_000_000_000)
        let hour = PostgresTimestamp(microsecondsSinceEpoch: t0.microsecondsSinceEpoch + 3_600_000_000)
        let short = PostgresTimestamp(microsecondsSinceEpoch: t0.microsecondsSinceEpoch + 3_599_000_000)
        var g = Self.gates(.shadowing, .verified, Self.readings(streak: .init(count: 3, since: t0, lastAt: hour)))
        #expect(g["clean_verifications"]?.passed == true && g["clean_verifications"]?.evidence["span_s"] == "3600")
        #expect(g["candidate_mismatches"]?.passed == true && g["candidate_mismatches"]?.evidence["commands"] == "0")
        g = Self.gates(.shadowing, .verified, Self.readings(streak: .init(count: 3, since: t0, lastAt: short)))
        #expect(g["clean_verifications"]?.passed == false)
        g = Self.gates(.shadowing, .verified, Self.readings(streak: .init(count: 2, since: t0, lastAt: hour)))
        #expect(g["clean_verifications"]?.passed == false && g["clean_verifications"]?.evidence["streak"] == "2")
        g = Self.gates(
            .shadowing, .verified,
            Self.readings(
                streak: .init(count: 3, since: t0, lastAt: hour),
                candidate: .init(commands: 1000, mismatches: 1, unverifiable: 40, pending: 2)))
        #expect(g["candidate_mismatches"]?.passed == false && g["candidate_mismatches"]?.evidence["mismatches"] == "1")
        g = Self.gates(
            .shadowing, .verified,
            Self.readings(
                streak: .init(count: 3, since: t0, lastAt: hour),
                candidate: .init(commands: 1000, mismatches: 0, unverifiable: 40, pending: 2)))
        #expect(g["candidate_mismatches"]?.passed == true)
    }

    @Test func theSwitchesGatesNameWhatTheyNeed() {
        let t0 = PostgresTimestamp(microsecondsSinceEpoch: 1_700_000_000_000_000)
        let hour = PostgresTimestamp(microsecondsSinceEpoch: t0.microsecondsSinceEpoch + 3_600_000_000)
        let reads = Self.gates(.verified, .readsSwitched, Self.readings())
        #expect(Set(reads.keys) == ["tailer_following", "lag"])
        var r = Self.readings(streak: .init(count: 3, since: t0, lastAt: hour))
        var writes = Self.gates(.readsSwitched, .writesSwitched, r)
        #expect(
            Set(writes.keys) == ["tailer_following", "lag", "clean_verifications", "candidate_mismatches", "reverse_sync_ready"])
        // Reverse sync: every entity written back and a consumer running.
        #expect(writes["reverse_sync_ready"]?.passed == false)
        r.reverseSync = .init(entitiesWithoutWriteBack: ["wallet"], running: true)
        writes = Self.gates(.readsSwitched, .writesSwitched, r)
        #expect(writes["reverse_sync_ready"]?.passed == false)
        #expect(writes["reverse_sync_ready"]?.evidence["entities_without_write_back"] == "wallet")
        r.reverseSync = .init(entitiesWithoutWriteBack: [], running: true)
        #expect(Self.gates(.readsSwitched, .writesSwitched, r)["reverse_sync_ready"]?.passed == true)
        // Completion: reverse sync has applied everything.
        r.reverseSync = .init(running: true, behind: 3)
        #expect(Self.gates(.writesSwitched, .completed, r)["reverse_sync_drained"]?.passed == false)
        r.reverseSync = .init(running: true, behind: 0)
        #expect(Self.gates(.writesSwitched, .completed, r)["reverse_sync_drained"]?.passed == true)
        // A row legacy refused would be missing from the archive for good: it blocks unless accepted.
        r.reverseSync = .init(
            running: true, behind: 0, quarantined: 1,
            quarantineExamples: ["customer cus_1: write_back.upsert[0] failed: invalid input (SQLSTATE 22P02)"])
        let refused = Self.gates(.writesSwitched, .completed, r)["reverse_sync_drained"]
        #expect(refused?.passed == false)
        #expect(refused?.evidence["quarantined"] == "1")
        #expect(refused?.evidence["examples"]?.contains("customer cus_1") == true)
        #expect(refused?.remedy?.contains("--accept-quarantine") == true)
        var accepting = CutoverGateOptions()
        accepting.acceptQuarantine = "Stripe-only customers"
        let accepted = Self.gates(.writesSwitched, .completed, r, accepting)["reverse_sync_drained"]
        #expect(accepted?.passed == true)
        #expect(accepted?.evidence["accepted"] == "Stripe-only customers")
        for (from, to) in [
            (CutoverState.verified, CutoverState.readsSwitched), (.readsSwitched, .writesSwitched),
            (.writesSwitched, .completed),
        ] {
            #expect(CutoverGates.isImplemented(.init(from: from, to: to)))
        }
    }
}
