import Cutover
import EventStore
import Foundation
import Postgres
import TestSupport
import Testing

/// `ledgerlift cutover` end to end on the reference fixture: every gate up to `verified`
/// failing, then passing, on real databases; the refusal past `verified`; abort; the log; one
/// operator at a time.
@Suite("Cutover: the command")
struct CutoverCommandTests {
    struct Scenario {
        let legacy: String
        let store: String

        func cutover(_ arguments: [String]) async throws -> LedgerliftBinary.Output {
            // abort and log read the store only.
            let legacyFlag = arguments[0] == "abort" || arguments[0] == "log" ? [] : ["--legacy", legacy]
            return try await ledgerlift(["cutover"] + arguments + ["--store", store] + legacyFlag)
        }

        func json(_ output: LedgerliftBinary.Output) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as! [String: Any]
        }

        /// The gates of an advance's JSON output, by name.
        func gates(_ output: LedgerliftBinary.Output) throws -> [String: [String: Any]] {
            let gates = try json(output)["gates"] as! [[String: Any]]
            return Dictionary(uniqueKeysWithValues: gates.map { ($0["name"] as! String, $0) })
        }
    }

    static let small = ["--clean-verifications", "2", "--clean-minutes", "0"]

    @Test func fromPlannedToVerifiedThroughEveryGate() async throws {
        try await withLegacyAndStore { legacy, store in
            let s = Scenario(legacy: legacy, store: store)
            let initialized = try await s.cutover(["init", "--mapping", referenceMappingPath, "--format", "json"])
            #expect(initialized.status == 0, "\(initialized.stderr)")
            #expect(try s.json(initialized)["state"] as? String == "planned")
            #expect(try s.json(initialized)["legacy"] as? String == ConnectionString.masked(legacy))
            let again = try await s.cutover(["init", "--mapping", referenceMappingPath])
            #expect(again.status == 2)
            #expect(
                again.stderr
                    == "Error: the cutover \"default\" already exists (state planned); use another --name for a new one\n"
            )

            // planned → capturing: capture not installed.
            var dry = try await s.cutover(["advance", "--dry-run", "--format", "json"])
            #expect(dry.status == 1)
            #expect(dry.stderr == "Error: planned → capturing: gate(s) failed: capture_installed\n")
            var gate = try s.gates(dry)["capture_installed"]!
            #expect(gate["passed"] as? Bool == false)
            #expect((gate["evidence"] as! [String: String])["captured_tables"] == "(capture not installed)")
            #expect((gate["remedy"] as? String)?.hasPrefix("install capture on every source table") == true)
            try await ledgerliftOK(["shadow", "install", "--legacy", legacy, "--mapping", referenceMappingPath])
            dry = try await s.cutover(["advance", "--dry-run", "--format", "json"])
            #expect(dry.status == 0, "\(dry.stderr)")
            #expect(try s.json(dry)["recorded"] as? Bool == false)
            #expect(try s.gates(dry)["capture_installed"]?["passed"] as? Bool == true)
            try await ledgerliftOK([
                "cutover", "advance", "--legacy", legacy, "--store", store, "--reason", "change 4711",
            ])

            // capturing → backfilled: no backfill yet, then one after capture.
            var advance = try await s.cutover(["advance", "--format", "json"])
            #expect(advance.status == 1)
            gate = try s.gates(advance)["backfill_after_capture"]!
            #expect(gate["passed"] as? Bool == false)
            #expect((gate["evidence"] as! [String: String])["handover"]?.isEmpty == false)
            try await ledgerliftOK([
                "backfill", "--legacy", legacy, "--store", store, "--mapping", referenceMappingPath,
            ])
            try await ledgerliftOK(["project", "--store", store])
            advance = try await s.cutover(["advance", "--to", "backfilled", "--format", "json"])
            #expect(advance.status == 0, "\(advance.stdout)\(advance.stderr)")
            #expect(try s.gates(advance)["quarantine"]?["passed"] as? Bool == true)
            // Asked again (a playbook's step run again after a kill): nothing to do, exit 0, nothing recorded.
            let repeated = try await s.cutover(["advance", "--to", "backfilled", "--format", "json"])
            #expect(repeated.status == 0, "\(repeated.stderr)")
            #expect(try s.json(repeated)["already"] as? Bool == true)
            #expect(try s.json(repeated)["recorded"] as? Bool == false)
            #expect(try s.json(repeated)["from"] as? String == "capturing")
            let againText = try await s.cutover(["advance", "--to", "backfilled"])
            #expect(againText.stdout == "already backfilled: nothing to do (--to names the current state)\n")

            // backfilled → shadowing: a legacy write no tailer applied, then the tailer drains it.
            try await withSession(legacy) {
                try $0.execute("UPDATE legacy.customers SET email = 'moved@example.com' WHERE id = 3")
            }
            advance = try await s.cutover(["advance", "--format", "json"])
            #expect(advance.status == 1)
            let tailerGate = try s.gates(advance)["tailer_following"]!
            #expect(tailerGate["passed"] as? Bool == false)
            #expect((tailerGate["evidence"] as! [String: String])["checkpoint"] == "(none)")
            try await ledgerliftOK([
                "shadow", "run", "--legacy", legacy, "--store", store, "--mapping", referenceMappingPath,
            ])
            // The tailer's own lag samples judged against a threshold below them.
            let strict = try await s.cutover(["status", "--max-lag", "0.001", "--format", "json"])
            #expect(strict.status == 1)
            #expect(strict.stderr == "Error: backfilled → shadowing: gate(s) failed: lag\n")
            let lagEvidence = try s.gates(strict)["lag"]!["evidence"] as! [String: String]
            #expect(lagEvidence["max_ms"] == "1" && (Int(lagEvidence["samples"] ?? "") ?? 0) > 0, "\(lagEvidence)")
            #expect((Int(lagEvidence["p99_ms"] ?? "") ?? 0) >= 1, "\(lagEvidence)")
            #expect(try s.gates(strict)["tailer_following"]?["passed"] as? Bool == true)
            // The samples hold the time from the legacy write to the tailer's run, seconds on a
            // loaded machine: a threshold above them passes.
            advance = try await s.cutover(["advance", "--max-lag", "3600", "--format", "json"])
            #expect(advance.status == 0, "\(advance.stdout)\(advance.stderr)")
            #expect(try s.gates(advance)["lag"]?["passed"] as? Bool == true)

            // shadowing → verified: a planted difference blocks it; --dry-run shows the gate.
            let diff = ["diff", "--legacy", legacy, "--store", store, "--mapping", referenceMappingPath, "--record"]
            try await ledgerliftOK(diff)
            try await withSession(store) {
                try $0.execute(
                    "UPDATE ledgerlift_read.customers SET email = 'planted@example.com' WHERE customer_id = '2'")
            }
            #expect(try await ledgerlift(diff).status == 1)
            dry = try await s.cutover(["advance", "--dry-run"] + Self.small)
            #expect(dry.status == 1)
            #expect(dry.stdout.contains("shadowing → verified: blocked (nothing recorded)\n"), "\(dry.stdout)")
            #expect(dry.stdout.contains("  [FAIL] clean_verifications: "), "\(dry.stdout)")
            #expect(dry.stdout.contains("required=2; "), "\(dry.stdout)")
            #expect(dry.stdout.contains("streak=0"), "\(dry.stdout)")
            #expect(dry.stdout.contains("         to do: keep verifying under traffic"), "\(dry.stdout)")
            #expect(dry.stdout.contains("  [pass] candidate_mismatches: "), "\(dry.stdout)")
            #expect(dry.stderr == "Error: shadowing → verified: gate(s) failed: clean_verifications\n")
            // Repaired the honest way: rebuild the read models from the events.
            try await ledgerliftOK(["project", "--store", store, "--rebuild"])
            try await ledgerliftOK(diff)
            #expect(try await s.cutover(["advance"] + Self.small).status == 1)  // one clean check is not two
            try await ledgerliftOK(diff)
            advance = try await s.cutover(["advance", "--reason", "two clean checks"] + Self.small)
            #expect(advance.status == 0, "\(advance.stdout)\(advance.stderr)")
            #expect(advance.stdout.hasPrefix("shadowing → verified: advanced\n"), "\(advance.stdout)")

            // verified → reads_switched: reads move to the ledger, writes stay with legacy.
            advance = try await s.cutover(["advance", "--reason", "reads first", "--max-lag", "3600"])
            #expect(advance.status == 0, "\(advance.stdout)\(advance.stderr)")
            #expect(advance.stdout.hasPrefix("verified → reads_switched: advanced\n"), "\(advance.stdout)")
            var routing = try await withSession(store) { try RoutingTable().read(in: $0) }
            #expect(routing?.reads == .ledger && routing?.writes == .legacy)
            let status = try await s.cutover(["status", "--format", "json"])
            #expect(try s.json(status)["state"] as? String == "reads_switched")
            #expect(try s.json(status)["next"] as? String == "writes_switched")

            // Abort, then the log tells everything.
            #expect(try await s.cutover(["abort"]).status == 2)  // --reason is required
            let abort = try await s.cutover(["abort", "--reason", "rehearsal over"])
            #expect(abort.status == 0, "\(abort.stderr)")
            #expect(try await s.cutover(["advance"]).status == 1)
            let log = try await s.cutover(["log", "--format", "json"])
            let events = try s.json(log)["events"] as! [[String: Any]]
            // Seven events or stop here: a failed advance above leaves fewer, and indexing them
            // would crash the whole test process (and every test running in it).
            try #require(events.count == 7, "\(events)")
            #expect(
                events.map { $0["type"] as! String } == ["CutoverInitialized"]
                    + Array(repeating: "CutoverAdvanced", count: 5) + ["CutoverAborted"])
            #expect(
                events.dropFirst().map { $0["to"] as! String } == [
                    "capturing", "backfilled", "shadowing", "verified", "reads_switched", "aborted",
                ])
            #expect(
                events[1]["reason"] as? String == "change 4711" && events[6]["reason"] as? String == "rehearsal over")
            // Abort gave reads back to legacy; serve keeps refusing writes.
            routing = try await withSession(store) { try RoutingTable().read(in: $0) }
            #expect(routing?.reads == .legacy && routing?.writes == .legacy)
            #expect(
                events.allSatisfy {
                    ($0["who"] as? String)?.isEmpty == false && ($0["host"] as? String)?.isEmpty == false
                })
            let text = try await s.cutover(["log"])
            #expect(text.stdout.contains("advanced shadowing → verified: two clean checks\n"), "\(text.stdout)")
            #expect(text.stdout.contains("aborted reads_switched → aborted: rehearsal over\n"), "\(text.stdout)")

            // The cutover's events changed nothing the billing side reads.
            try await ledgerliftOK(["project", "--store", store])
            try await ledgerliftOK(diff)
        }
    }

    /// The projector skips the cutover's event types: `project` passes over them, and `query`,
    /// `diff` and `shadow status` answer exactly as before they were appended.
    @Test func billingReadersIgnoreTheCutoverStream() async throws {
        try await withLegacyAndStore { legacy, store in
            let s = Scenario(legacy: legacy, store: store)
            try await ledgerliftOK(["shadow", "install", "--legacy", legacy, "--mapping", referenceMappingPath])
            try await ledgerliftOK([
                "backfill", "--legacy", legacy, "--store", store, "--mapping", referenceMappingPath,
            ])
            try await ledgerliftOK(["project", "--store", store])
            let query = ["query", "balance", "--store", store, "--customer", "2", "--format", "json"]
            let diff = ["diff", "--legacy", legacy, "--store", store, "--mapping", referenceMappingPath]
            let shadowStatus = ["shadow", "status", "--legacy", legacy, "--store", store, "--format", "json"]
            let balanceBefore = try await ledgerliftOK(query).stdout
            try await ledgerliftOK(diff)
            try await ledgerliftOK(shadowStatus)

            #expect(try await s.cutover(["init", "--mapping", referenceMappingPath]).status == 0)
            #expect(try await s.cutover(["advance"]).status == 0)
            #expect(try await s.cutover(["advance"]).status == 0)
            let cutoverEvents = try await withSession(store) {
                try $0.query("SELECT count(*)::int8 FROM ledgerlift.events WHERE stream_id = 'cutover-default'").rows[0]
                    .decode(at: 0, as: Int64.self)
            }
            #expect(cutoverEvents == 3)

            try await ledgerliftOK(["project", "--store", store])
            #expect(try await ledgerliftOK(query).stdout == balanceBefore)
            try await ledgerliftOK(diff)
            // Healthy, with the read models caught up past the cutover's events.
            let status = try await ledgerliftOK(shadowStatus)
            #expect(!status.stdout.contains("behind"), "\(status.stdout)")
            try await ledgerliftOK(["project", "--store", store, "--rebuild"])
            #expect(try await ledgerliftOK(query).stdout == balanceBefore)
        }
    }

    /// Two `cutover advance` at once: the second is refused naming the first (its pid and
    /// application); `--wait` queues behind it instead.
    @Test func oneOperatorAtATime() async throws {
        try await withLegacyAndStore { legacy, store in
            let s = Scenario(legacy: legacy, store: store)
            try await ledgerliftOK(["shadow", "install", "--legacy", legacy, "--mapping", referenceMappingPath])
            #expect(try await s.cutover(["init", "--mapping", referenceMappingPath]).status == 0)
            // The first advance is held inside its gate readings by a lock on the capture outbox.
            let blocker = try await Connection.connect(legacy)
            defer { blocker.close() }
            try await blocker.execute("BEGIN")
            try await blocker.execute("LOCK TABLE ledgerlift_capture.changes IN ACCESS EXCLUSIVE MODE")
            async let first = s.cutover(["advance"])
            let lock = AdvisoryLock("ledgerlift.cutover/default")
            var holder: String?
            for _ in 0..<200 where holder == nil {
                holder = try await withSession(store) { try $0.holder(of: lock) }
                if holder == nil { try await Task.sleep(for: .milliseconds(50)) }
            }
            let held = try #require(holder)
            #expect(held.contains(", ledgerlift-cutover-advance, since "), "\(held)")
            async let queued = s.cutover(["advance", "--wait"])
            let second = try await s.cutover(["advance"])
            #expect(second.status == 1)
            #expect(
                second.stderr
                    == "Error: another cutover command holds the cutover \"default\" (\(held)); wait for it, or add --wait to queue\n"
            )
            try await blocker.execute("COMMIT")
            let firstOutput = try await first
            #expect(firstOutput.status == 0, "\(firstOutput.stderr)")
            #expect(firstOutput.stdout.hasPrefix("planned → capturing: advanced\n"))
            // The queued one ran after it, from capturing: no backfill yet, so its gate fails.
            let queuedOutput = try await queued
            #expect(queuedOutput.status == 1)
            #expect(
                queuedOutput.stdout.hasPrefix("capturing → backfilled: blocked (nothing recorded)\n"),
                "\(queuedOutput.stdout)")
        }
    }

    /// A password in a DSN is never printed nor stored: `init` records the masked form only.
    @Test func passwordsAreNeitherPrintedNorStored() async throws {
        try await withLegacyAndStore { legacy, store in
            var withPassword = URLComponents(string: legacy)!
            withPassword.password = "s3cret-pw"
            let dsn = withPassword.string!
            let output = try await ledgerlift(
                [
                    "cutover", "init", "--legacy", dsn, "--store", store, "--mapping", referenceMappingPath, "--format",
                    "json",
                ])
            #expect(output.status == 0, "\(output.stderr)")
            #expect(!output.stdout.contains("s3cret-pw") && !output.stderr.contains("s3cret-pw"))
            #expect(output.stdout.contains(ConnectionString.masked(dsn)), "\(output.stdout)")
            let failed = try await ledgerlift(["cutover", "advance", "--legacy", dsn + "-nope", "--store", store])
            #expect(failed.status == 2 && !failed.stderr.contains("s3cret-pw"), "\(failed.stderr)")
            let stored = try await withSession(store) {
                try $0.query("SELECT count(*)::int8 FROM ledgerlift.events WHERE payload::text LIKE '%s3cret-pw%'")
                    .rows[0]
                    .decode(at: 0, as: Int64.self)
            }
            #expect(stored == 0)
        }
    }

    /// The gates judge the migration that was planned: a mapping that changed since `init` is
    /// refused (exit 2) naming both fingerprints; a name that cannot be a stream id is refused.
    @Test func aStoreThatWasNeverInitializedIsSaidPlainly() async throws {
        try await TestDatabase.withFresh("cutover_uninitialized_store") { store in
            let output = try await ledgerlift([
                "cutover", "init", "--legacy", store, "--store", store, "--mapping", referenceMappingPath,
            ])
            #expect(output.status == 2)
            #expect(output.stderr == "Error: no event store in schema ledgerlift: run `ledgerlift store init --store DSN`\n")
            let status = try await ledgerlift(["cutover", "status", "--legacy", store, "--store", store])
            #expect(status.stderr == output.stderr)
        }
    }

    @Test func aChangedMappingOrABadNameIsRefused() async throws {
        try await withLegacyAndStore { legacy, store in
            let s = Scenario(legacy: legacy, store: store)
            #expect(try await s.cutover(["init", "--mapping", referenceMappingPath]).status == 0)
            let yaml = try String(contentsOfFile: referenceMappingPath, encoding: .utf8)
            let wider = yaml.replacing(
                "- { table: legacy.payments, key: id }",
                with: "- { table: legacy.payments, key: id }\n      - { table: legacy.payments, key: invoice_id }")
            #expect(wider != yaml)
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("cutover-\(UUID()).yaml").path
            try wider.write(toFile: path, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let changed = try await s.cutover(["advance", "--mapping", path])
            #expect(changed.status == 2)
            #expect(
                changed.stderr.hasPrefix(
                    "Error: the mapping \(referenceMappingPath) changed since cutover init (fingerprint "))
            #expect(
                changed.stderr.hasSuffix("restore it, or abort this cutover and init a new one with the new mapping\n"))
            let badName = try await s.cutover(["log", "--name", "q4 rollout"])
            #expect(badName.status == 2)
            #expect(
                badName.stderr
                    == "Error: invalid cutover name \"q4 rollout\": use letters, digits, '_', '.' and '-' (at most 100 characters)\n"
            )
            // A reason is printed by cutover log and the dossier: an escape sequence is refused.
            let escape = try await s.cutover(["abort", "--reason", "done\u{1B}[2J"])
            #expect(escape.status == 2)
            #expect(
                escape.stderr.contains(
                    "--reason must be printable text on one line: it contains the control character U+001B"),
                "\(escape.stderr)")
            let unknown = try await s.cutover(["log", "--name", "q5"])
            #expect(unknown.status == 2)
            #expect(
                unknown.stderr
                    == "Error: no cutover named \"q5\" in this store: start one with `ledgerlift cutover init --name q5 …`\n"
            )
        }
    }
}
