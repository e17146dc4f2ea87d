import Foundation
import Postgres
import TestSupport
import Testing

/// `ledgerlift playbook run` on real databases: the whole migration killed at three points and
/// finished by running it again; the dress rehearsal under live traffic.
@Suite("Playbooks: runs, kills and the rehearsal under traffic", .serialized)
struct PlaybookRunTests {
    static var playbooks: URL { repositoryRoot().appendingPathComponent("playbooks") }

    /// The same DSN with a password the server ignores (trust authentication): what must never
    /// be printed, logged or recorded.
    static func withPassword(_ dsn: String, _ password: String) -> String {
        dsn.replacingOccurrences(of: "://postgres@", with: "://postgres:\(password)@")
    }

    /// Small gates for a test (production defaults are minutes and hours).
    static func small(port: Int, directory: String, dossier: Bool = true) -> [String] {
        [
            "--yes", "--log-dir", directory, "--var", "mapping=\(referenceMappingPath)", "--var", "listen=127.0.0.1:\(port)",
            "--var", "verify_every=1s", "--var", "clean_verifications=2", "--var", "clean_minutes=0", "--var",
            "max_lag=3600",
        ] + (dossier ? ["--var", "dossier=\(directory)/dossier.html"] : [])
    }

    /// The step the latest run of `playbook` is at, read from the store.
    static func position(_ store: String) throws -> String? {
        let connection = try Connection.connectBlocking(store)
        defer { connection.close() }
        return try connection.withSessionBlocking { session in
            guard try session.query("SELECT to_regclass('ledgerlift_playbook.runs') IS NOT NULL").rows[0].decode(at: 0, as: Bool.self)
            else { return nil }
            return try session.query("SELECT step_id FROM ledgerlift_playbook.runs ORDER BY run_id DESC LIMIT 1").first?
                .decode(at: 0, as: String?.self)
        }
    }

    /// Stops the services the playbook's start steps left running (serve: the ledger is the
    /// authority after `completed`, and keeps serving).
    static func stopServices(_ store: String) throws {
        for pid in try servicePids(store) { kill(pid, SIGTERM) }
    }

    static func servicePids(_ store: String) throws -> [Int32] {
        let connection = try Connection.connectBlocking(store)
        defer { connection.close() }
        return try connection.withSessionBlocking { session -> [Int32] in
            guard try session.query("SELECT to_regclass('ledgerlift_playbook.services') IS NOT NULL").rows[0].decode(at: 0, as: Bool.self)
            else { return [] }
            return try session.query("SELECT pid FROM ledgerlift_playbook.services").rows.map { try $0.decode(at: 0, as: Int32.self) }
        }
    }

    static func killedAndResumed(legacy: String, store: String) throws -> [String] {
        var failures = [String]()
        let secret = "Pw-\(UUID().uuidString.prefix(8))"
        let environment = [
            "LEDGERLIFT_LEGACY_DSN": withPassword(legacy, secret), "LEDGERLIFT_STORE_DSN": withPassword(store, secret),
        ]
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("playbook-\(UUID().uuidString)").path
        defer {
            try? stopServices(store)
            try? FileManager.default.removeItem(atPath: directory)
        }
        let arguments = ["playbook", "run", playbooks.appendingPathComponent("zero-downtime.yaml").path]
            + small(port: try freeLocalPort(), directory: directory)
        var outputs = [String]()
        // A dry run runs nothing and records nothing: no gate acts (only read-only checks run).
        let dry = try LedgerliftBinary.runBlocking(arguments + ["--dry-run"], environment: environment)
        outputs.append(dry.stdout + dry.stderr)
        if dry.status != 0 || !dry.stdout.contains("dry run: nothing is run or recorded") {
            failures.append("the dry run exited \(dry.status):\n\(dry.stdout)\(dry.stderr)")
        }
        if try position(store) != nil { failures.append("the dry run recorded a run") }
        if try LedgerliftBinary.runBlocking(["cutover", "log", "--store", store]).status != 2 {
            failures.append("the dry run began a cutover")
        }
        // Killed inside a command step, inside a gate, and inside the write switch's gate.
        for target in ["backfill", "verified", "writes_switched"] {
            let process = try BackgroundProcess(arguments, environment: environment)
            let deadline = Date().addingTimeInterval(600)
            var at: String?
            while process.isRunning, Date() < deadline {
                at = try position(store)
                if at == target { break }
                usleep(20_000)
            }
            guard process.isRunning, at == target else {
                let output = process.waitBlocking()
                failures.append("the run did not reach \(target) (at \(at ?? "nothing")): exit \(output.status)\n\(output.stdout)\(output.stderr)")
                return failures
            }
            usleep(300_000)
            process.signal(SIGKILL)
            let output = process.waitBlocking()
            outputs.append(output.stdout + output.stderr)
            if target != "backfill", !output.stdout.contains("resuming run #1 at step") {
                failures.append("the run after a kill did not resume run #1:\n\(output.stdout)")
            }
        }
        let last = try LedgerliftBinary.runBlocking(arguments, environment: environment)
        outputs.append(last.stdout + last.stderr)
        if last.status != 0 { failures.append("the last run exited \(last.status):\n\(last.stdout)\(last.stderr)") }
        if !last.stdout.contains("resuming run #1 at step"), !last.stdout.contains("playbook zero-downtime: finished") {
            failures.append("the last run neither resumed nor finished:\n\(last.stdout)")
        }
        let log = try LedgerliftBinary.runBlocking(["cutover", "log", "--store", store, "--format", "json"])
        let state = (try? JSONSerialization.jsonObject(with: Data(log.stdout.utf8)) as? [String: Any])?["state"] as? String
        if state != "completed" { failures.append("the cutover is \(state ?? "?"), not completed") }
        let status = try LedgerliftBinary.runBlocking(["playbook", "status", "--store", store, "--format", "json"])
        let runs = (try? JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])?["runs"] as? [[String: Any]]
        if runs?.count != 1 || runs?.first?["status"] as? String != "finished" {
            failures.append("playbook status: \(status.stdout)")
        }
        let diff = try LedgerliftBinary.runBlocking([
            "diff", "--legacy", legacy, "--store", store, "--mapping", referenceMappingPath,
        ])
        if diff.status != 0 { failures.append("diff after the migration: \(diff.stdout)") }
        // The password: in no output, no service log, no recorded row, no command line of a
        // service still running (serve); only in the run's password file, which only its owner reads.
        var texts = outputs + [status.stdout, log.stdout]
        let passwordFile = directory + "/zero-downtime.pgpass"
        for file in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where directory + "/" + file != passwordFile {
            texts.append((try? String(contentsOfFile: directory + "/" + file, encoding: .utf8)) ?? "")
        }
        let mode = (try? FileManager.default.attributesOfItem(atPath: passwordFile))?[.posixPermissions] as? Int
        if mode != 0o600 { failures.append("the password file's mode is \(mode.map { String($0, radix: 8) } ?? "none"), not 600") }
        if (try? String(contentsOfFile: passwordFile, encoding: .utf8))?.contains(":\(secret)\n") != true {
            failures.append("the password file does not hold the DSNs' password")
        }
        var commandLines = 0
        for pid in try Self.servicePids(store) {
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !data.isEmpty else { continue }
            commandLines += 1
            texts.append(String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self))
        }
        if commandLines == 0 { failures.append("no service of the playbook was running to read the command line of") }
        let connection = try Connection.connectBlocking(store)
        defer { connection.close() }
        texts += try connection.withSessionBlocking { session in
            try ["runs", "steps", "services"].map { table in
                try session.query("SELECT coalesce(string_agg(t::text, ' '), '') FROM ledgerlift_playbook.\(table) t").rows[0]
                    .decode(at: 0, as: String.self)
            }
        }
        for text in texts where text.contains(secret) {
            failures.append("the password was printed or recorded: …\(text.prefix(400))")
        }
        return failures
    }

    @Test func killedAtThreePointsTheMigrationIsFinishedByRunningItAgain() async throws {
        try await TestDatabase.withFresh("playbook_kill_legacy") { legacy in
            try await TestDatabase.withFresh("playbook_kill_store") { store in
                try await ledgerliftOK(["fixture", "load", "--dsn", legacy])
                let failures = try await onThread { try Self.killedAndResumed(legacy: legacy, store: store) }
                #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
            }
        }
    }

    static func rehearsal(legacy: String, store: String) throws -> [String] {
        var failures = [String]()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rehearsal-\(UUID().uuidString)").path
        let journal = directory + "-journal.jsonl"
        defer {
            try? stopServices(store)
            try? FileManager.default.removeItem(atPath: directory)
            try? FileManager.default.removeItem(atPath: journal)
        }
        let port = try freeLocalPort()
        let application = try BackgroundProcess([
            "simulate", "--legacy", legacy, "--rate", "100", "--duration", "3600", "--connections", "16", "--seed", "23",
            "--journal", journal, "--report", "json", "--reroute", "http://127.0.0.1:\(port)", "--store", store,
            "--mapping", referenceMappingPath,
        ])
        let playbook = try LedgerliftBinary.runBlocking(
            ["playbook", "run", playbooks.appendingPathComponent("rehearsal.yaml").path]
                + small(port: port, directory: directory, dossier: false) + ["--var", "soak=5s"],
            environment: ["LEDGERLIFT_LEGACY_DSN": legacy, "LEDGERLIFT_STORE_DSN": store])
        application.signal(SIGINT)
        let app = application.waitBlocking(timeout: 300)
        if playbook.status != 0 { failures.append("playbook run rehearsal.yaml exited \(playbook.status):\n\(playbook.stdout.suffix(6000))\(playbook.stderr)") }
        for step in ["writes_switched", "writes-back", "reads-back", "nothing-lost"] {
            if !playbook.stdout.contains("/18 \(step)") { failures.append("the rehearsal did not run \(step)") }
        }
        if app.status != 130 { failures.append("simulate exited \(app.status): \(app.stderr)") }
        let report = (try? JSONSerialization.jsonObject(with: Data(app.stdout.utf8)) as? [String: Any]) ?? [:]
        let total = report["total"] as? [String: Any] ?? [:]
        if total["failed"] as? Int != 0 { failures.append("the application had failed operations: \(total)") }
        for target in [["--store", store], ["--legacy", legacy]] {
            let verify = try LedgerliftBinary.runBlocking(["simulate", "verify", "--journal", journal] + target)
            if verify.status != 0 { failures.append("simulate verify \(target[0]) exited \(verify.status): \(verify.stdout.suffix(3000))") }
        }
        let log = try LedgerliftBinary.runBlocking(["cutover", "log", "--store", store, "--format", "json"])
        let state = (try? JSONSerialization.jsonObject(with: Data(log.stdout.utf8)) as? [String: Any])?["state"] as? String
        if state != "shadowing" { failures.append("after the rehearsal the cutover is \(state ?? "?"), not shadowing") }
        return failures
    }

    @Test func theRehearsalUnderTrafficRollsBackAndProvesNothingWasLost() async throws {
        try await TestDatabase.withFresh("playbook_rehearsal_legacy") { legacy in
            try await TestDatabase.withFresh("playbook_rehearsal_store") { store in
                try await ledgerliftOK(["fixture", "load", "--dsn", legacy])
                let failures = try await onThread { try Self.rehearsal(legacy: legacy, store: store) }
                #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
            }
        }
    }
}
