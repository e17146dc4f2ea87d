import Foundation
import Postgres
import TestSupport
import Testing

/// What a playbook run does at its limits: a gate attempt that outlives the gate's timeout, a log
/// directory it cannot use, a dry run stopped midway with a password in its file.
@Suite("Playbooks: timeouts, the log directory and the dry run's password file", .serialized)
struct PlaybookLimitsTests {
    static func write(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("playbook-\(UUID().uuidString).yaml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A playbook whose gate (or dry-run check) is serve: a command that never exits by itself.
    static func neverEnding(port: Int) throws -> String {
        try write(
            """
            name: limits
            state: store
            variables:
              store: { env: LIMITS_STORE, secret: true }
              limit: { default: 3s }
            steps:
              - id: init
                run: store init --store ${store}
              - id: endless
                gate: serve --store ${store} --listen 127.0.0.1:\(port)
                check: serve --store ${store} --listen 127.0.0.1:\(port)
                timeout: ${limit}
            """)
    }

    /// Kills the `ledgerlift serve` of this suite listening on `port` (found by its command line).
    static func stop(listening port: Int) {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            let line = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            if line.contains(" serve "), line.contains("127.0.0.1:\(port)") { kill(pid, SIGKILL) }
        }
    }

    static func withPassword(_ dsn: String) -> String {
        dsn.replacingOccurrences(of: "://postgres@", with: "://postgres:Limits-pw@")
    }

    @Test func aGateAttemptStillRunningAtTheTimeoutIsStoppedAndTheStepFails() async throws {
        try await TestDatabase.withFresh("playbook_limits_gate") { store in
            let file = try Self.neverEnding(port: try freeLocalPort())
            let logs = FileManager.default.temporaryDirectory.appendingPathComponent("limits-\(UUID().uuidString)").path
            defer {
                try? FileManager.default.removeItem(atPath: file)
                try? FileManager.default.removeItem(atPath: logs)
            }
            let run = try await onThread {
                try LedgerliftBinary.runBlocking(
                    ["playbook", "run", file, "--yes", "--log-dir", logs], environment: ["LIMITS_STORE": Self.withPassword(store)])
            }
            #expect(run.status == 1, "\(run.stdout)\(run.stderr)")
            #expect(run.stdout.contains("not passed within 3s: attempt 1 was still running then and was stopped"), "\(run.stdout)")
            // The stopped attempt is gone: nothing listens on its behalf any more.
            let status = try await ledgerlift(["playbook", "status", "--store", store, "--format", "json"])
            #expect(status.stdout.contains("\"failed\""), "\(status.stdout)")
        }
    }

    @Test func aLogDirectoryThatCannotBeUsedIsRefusedBeforeAnythingIsRecorded() async throws {
        try await TestDatabase.withFresh("playbook_limits_logdir") { store in
            let file = try Self.neverEnding(port: try freeLocalPort())
            let notADirectory = FileManager.default.temporaryDirectory.appendingPathComponent("limits-\(UUID().uuidString)").path
            try "x".write(toFile: notADirectory, atomically: true, encoding: .utf8)
            defer {
                try? FileManager.default.removeItem(atPath: file)
                try? FileManager.default.removeItem(atPath: notADirectory)
            }
            let run = try await onThread {
                try LedgerliftBinary.runBlocking(
                    ["playbook", "run", file, "--yes", "--log-dir", notADirectory + "/sub"],
                    environment: ["LIMITS_STORE": Self.withPassword(store)])
            }
            #expect(run.status == 2, "\(run.stdout)\(run.stderr)")
            #expect(run.stderr.hasPrefix("Error: "), "\(run.stderr)")
            #expect(run.stderr.contains("--log-dir \(notADirectory)/sub: cannot create it"), "\(run.stderr)")
            #expect(!run.stderr.contains("NSCocoaErrorDomain"), "\(run.stderr)")
            let recorded = try await withSession(store) { session in
                try session.query("SELECT to_regclass('ledgerlift_playbook.runs') IS NOT NULL").rows[0].decode(at: 0, as: Bool.self)
            }
            #expect(!recorded, "a run was recorded")
        }
    }

    @Test func aDryRunStoppedMidwayLeavesNoPasswordFileBehind() async throws {
        try await TestDatabase.withFresh("playbook_limits_dry") { store in
            let port = try freeLocalPort()
            let file = try Self.neverEnding(port: port)
            let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("limits-tmp-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: true)
            defer {
                try? FileManager.default.removeItem(atPath: file)
                try? FileManager.default.removeItem(atPath: temporary)
            }
            try await ledgerliftOK(["store", "init", "--store", store])
            let process = try BackgroundProcess(
                ["playbook", "run", file, "--dry-run", "--var", "limit=10m"],
                environment: ["LIMITS_STORE": Self.withPassword(store), "TMPDIR": temporary])
            // The dry run is in its endless check once its private directory holds the file.
            let deadline = Date().addingTimeInterval(120)
            var written: String?
            while written == nil, process.isRunning, Date() < deadline {
                let entries = (try? FileManager.default.contentsOfDirectory(atPath: temporary)) ?? []
                if let directory = entries.first(where: { $0.hasPrefix("ledgerlift-playbook-") && !$0.hasSuffix(".log") }),
                    FileManager.default.fileExists(atPath: temporary + "/" + directory + "/limits.pgpass")
                {
                    written = temporary + "/" + directory + "/limits.pgpass"
                }
                usleep(20_000)
            }
            let path = try #require(written, "the dry run wrote no password file")
            let mode = (try FileManager.default.attributesOfItem(atPath: path))[.posixPermissions] as? Int
            #expect(mode == 0o600)
            process.signal(SIGTERM)
            let output = try await process.wait(timeout: 60)
            #expect(output.status == 128 + SIGTERM, "\(output.status) \(output.stderr)")
            #expect(!FileManager.default.fileExists(atPath: path))
            #expect(!FileManager.default.fileExists(atPath: (path as NSString).deletingLastPathComponent))
            // Its check (serve) is left to the process group a Ctrl-C would stop: stopped here.
            Self.stop(listening: port)
        }
    }
}
