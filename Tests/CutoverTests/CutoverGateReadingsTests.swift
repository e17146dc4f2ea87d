import Commands
import Cutover
import EventStore
import Foundation
import Postgres
import TestSupport
import Testing

/// Gates measured on real databases where the command test does not reach: quarantined keys
/// from the dirty seed (refused, then accepted with a recorded reason) and candidate verdicts
/// over the last M commands.
@Suite("Cutover: gate readings")
struct CutoverGateReadingsTests {
    @Test func quarantinedKeysBlockBackfilledUntilAcceptedWithAReasonThatIsRecorded() async throws {
        try await TestDatabase.withFresh("cutover_dirty_legacy") { legacy in
            try await TestDatabase.withFresh("cutover_dirty_store") { store in
                try await ledgerliftOK(["fixture", "load", "--dsn", legacy, "--dirty"])
                try await ledgerliftOK(["store", "init", "--store", store])
                try await ledgerliftOK(["shadow", "install", "--legacy", legacy, "--mapping", referenceMappingPath])
                let db = ["--legacy", legacy, "--store", store]
                try await ledgerliftOK(["cutover", "init", "--mapping", referenceMappingPath] + db)
                try await ledgerliftOK(["cutover", "advance"] + db)
                try await ledgerliftOK(
                    ["backfill", "--mapping", referenceMappingPath, "--allow-quarantine"] + db)
                let quarantined = try await withSession(store) {
                    try $0.query("SELECT count(*)::int8 FROM ledgerlift.quarantine").rows[0].decode(
                        at: 0, as: Int64.self)
                }
                #expect(quarantined > 0)

                let refused = try await ledgerlift(["cutover", "advance"] + db)
                #expect(refused.status == 1)
                #expect(refused.stdout.contains("  [FAIL] quarantine: "), "\(refused.stdout)")
                #expect(refused.stdout.contains("quarantined=\(quarantined)"), "\(refused.stdout)")
                #expect(refused.stdout.contains("  [pass] backfill_after_capture: "), "\(refused.stdout)")
                #expect(refused.stderr == "Error: capturing → backfilled: gate(s) failed: quarantine\n")

                let noReason = try await ledgerlift(["cutover", "advance", "--accept-quarantine"] + db)
                #expect(noReason.status == 2)
                #expect(noReason.stderr.contains("--accept-quarantine needs --reason TEXT"), "\(noReason.stderr)")

                let accepted = try await ledgerlift(
                    ["cutover", "advance", "--accept-quarantine", "--reason", "seeded defects, fixed in legacy later"]
                        + db)
                #expect(accepted.status == 0, "\(accepted.stdout)\(accepted.stderr)")
                #expect(
                    accepted.stdout.contains("  [pass] quarantine: accepted=seeded defects, fixed in legacy later; "))
                let log = try await ledgerliftOK(["cutover", "log", "--store", store])
                #expect(
                    log.stdout.contains("  quarantine accepted: seeded defects, fixed in legacy later\n"),
                    "\(log.stdout)")
                let recorded = try await withSession(store) {
                    try $0.query(
                        "SELECT payload->>'accepted_quarantine' FROM ledgerlift.events WHERE stream_id = 'cutover-default' AND stream_version = 3"
                    ).rows[0].decode(at: 0, as: String?.self)
                }
                #expect(recorded == "seeded defects, fixed in legacy later")
            }
        }
    }

    /// `recentVerdicts` counts the newest M commands only: an old mismatch outside the window
    /// no longer blocks, one inside it does.
    @Test func candidateVerdictsOverTheLastCommands() async throws {
        try await TestDatabase.withFresh { dsn in
            try await ledgerliftOK(["store", "init", "--store", dsn])
            let connection = try await Connection.connect(dsn)
            defer { connection.close() }
            let log = CandidateCommandLog()
            for n in 1...5 {
                try await log.record(
                    .init(
                        opID: "run:op\(n)/1", command: "record_payment", commandJSON: "{}", legacyXid: UInt64(1000 + n),
                        answerStatus: 201), on: connection)
            }
            try await connection.withSession { session in
                try log.setVerdict(
                    opID: "run:op1/1", .mismatch, reason: nil,
                    differences: [.init(stream: "payment-1", column: "amount", candidate: "1", legacy: "2")],
                    in: session)
                for n in 2...4 {
                    try log.setVerdict(opID: "run:op\(n)/1", .match, reason: nil, differences: [], in: session)
                }
            }
            let (all, recent) = try await connection.withSession { session in
                (
                    try log.recentVerdicts(lastCommands: 10, in: session),
                    try log.recentVerdicts(lastCommands: 4, in: session)
                )
            }
            #expect(
                all.commands == 5 && all.mismatch == 1 && all.match == 3 && all.pending == 1 && all.unverifiable == 0)
            #expect(recent.commands == 4 && recent.mismatch == 0 && recent.match == 3 && recent.pending == 1)
        }
    }
}
