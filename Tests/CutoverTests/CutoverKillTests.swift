import Cutover
import EventStore
import Foundation
import Mapping
import Postgres
import TestSupport
import Testing

/// The write switch and its rollback span two databases. The command is stopped after each of
/// their steps (`LEDGERLIFT_CUTOVER_PAUSE_AT`) and killed with SIGKILL; the next command must
/// find a cutover that is switched or not — never half — and finish the job.
@Suite("Cutover: kill -9 at every step of the write switch and its rollback")
struct CutoverKillTests {
    struct Scenario {
        let legacy: String
        let store: String
        var failures: [String] = []

        static let small = ["--clean-verifications", "2", "--clean-minutes", "0", "--max-freeze", "60", "--max-lag", "3600"]

        func run(_ arguments: [String]) throws -> LedgerliftBinary.Output { try LedgerliftBinary.runBlocking(arguments) }

        mutating func ok(_ arguments: [String]) throws {
            let output = try run(arguments)
            if output.status != 0 {
                failures.append("\(arguments.prefix(3).joined(separator: " ")) exited \(output.status): \(output.stderr)\(output.stdout)")
            }
        }

        func cutover(_ verb: String) -> [String] {
            ["cutover", verb, "--legacy", legacy, "--store", store] + Self.small
        }

        func state() throws -> (state: String, pending: Bool) {
            let output = try run(["cutover", "log", "--store", store, "--format", "json"])
            let json = try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any] ?? [:]
            return (json["state"] as? String ?? "?", !(json["pending_switch"] is NSNull))
        }

        /// Guarded source tables, and whether serve's routing gives writes to the ledger.
        func sides() throws -> (guarded: Int, writes: String) {
            let legacyConnection = try Connection.connectBlocking(legacy)
            defer { legacyConnection.close() }
            let guarded = try legacyConnection.withSessionBlocking { session in
                try session.query("SELECT count(*) FROM pg_trigger WHERE tgname = 'ledgerlift_write_guard'").rows[0]
                    .decode(at: 0, as: Int64.self)
            }
            let storeConnection = try Connection.connectBlocking(store)
            defer { storeConnection.close() }
            let writes = try storeConnection.withSessionBlocking { try RoutingTable().read(in: $0)?.writes.rawValue ?? "none" }
            return (Int(guarded), writes)
        }

        /// An application write in legacy, tailed: there is always something to drain and re-verify.
        mutating func legacyWriteTailed(_ n: Int) throws {
            let connection = try Connection.connectBlocking(legacy)
            defer { connection.close() }
            try connection.withSessionBlocking {
                try $0.execute("UPDATE legacy.customers SET name = $1 WHERE id = 2", ["Kill \(n)"])
            }
            try ok(["shadow", "run", "--legacy", legacy, "--store", store, "--mapping", referenceMappingPath])
            try ok(["diff", "--legacy", legacy, "--store", store, "--mapping", referenceMappingPath, "--record"])
        }

        /// Starts `arguments` paused after `step`, waits for it to get there, kills it.
        mutating func killed(_ arguments: [String], after step: String) throws {
            let process = try BackgroundProcess(arguments, environment: ["LEDGERLIFT_CUTOVER_PAUSE_AT": step])
            let deadline = Date().addingTimeInterval(180)
            while !process.stderrSoFar.contains("paused after \(step)"), process.isRunning, Date() < deadline {
                usleep(20_000)
            }
            guard process.isRunning else {
                let output = process.waitBlocking()
                failures.append("\(arguments[1]) ended before pausing after \(step): \(output.status) \(output.stderr)")
                return
            }
            process.signal(SIGKILL)
            let output = process.waitBlocking()
            if output.status != 128 + SIGKILL {
                failures.append("\(arguments[1]) paused after \(step) did not die of SIGKILL: \(output.status)")
            }
        }

        mutating func expectSwitched(_ switched: Bool, _ context: String) throws {
            let (state, pending) = try state()
            let (guarded, writes) = try sides()
            let tables = LegacyWriteGuard(mapping: try MappingFile.load(path: referenceMappingPath)).tables.count
            let want = switched ? ("writes_switched", tables, "ledger") : ("reads_switched", 0, "legacy")
            if state != want.0 || pending || guarded != want.1 || writes != want.2 {
                failures.append(
                    "\(context): state \(state) pending \(pending), \(guarded) guarded tables, writes \(writes); "
                        + "expected \(want.0), \(want.1) guarded, writes \(want.2)")
            }
        }
    }

    static func scenario(legacy: String, store: String) throws -> [String] {
        var s = Scenario(legacy: legacy, store: store)
        let mapping = referenceMappingPath
        try s.ok(["shadow", "install", "--legacy", legacy, "--mapping", mapping])
        try s.ok(["backfill", "--legacy", legacy, "--store", store, "--mapping", mapping])
        try s.ok(["project", "--store", store])
        try s.ok(["cutover", "init", "--legacy", legacy, "--store", store, "--mapping", mapping])
        try s.ok(["shadow", "run", "--legacy", legacy, "--store", store, "--mapping", mapping])
        for _ in 0..<3 { try s.ok(s.cutover("advance")) }
        try s.legacyWriteTailed(0)
        try s.legacyWriteTailed(0)
        try s.ok(s.cutover("advance"))  // verified
        try s.ok(s.cutover("advance"))  // reads_switched
        let reverse = try BackgroundProcess([
            "shadow", "reverse-sync", "--legacy", legacy, "--store", store, "--mapping", mapping, "--follow",
        ])
        defer {
            reverse.signal(SIGTERM)
            reverse.waitBlocking(timeout: 30)
        }
        guard s.failures.isEmpty else { return s.failures }

        for (n, step) in CutoverSwitchOptions.writeSwitchSteps.enumerated() {
            try s.legacyWriteTailed(n + 1)
            try s.killed(s.cutover("advance"), after: step)
            // Whatever the kill left, the next advance ends switched.
            try s.ok(s.cutover("advance"))
            try s.expectSwitched(true, "advance killed after \(step), then advance")
            try s.ok(s.cutover("rollback"))
            try s.expectSwitched(false, "advance killed after \(step), advance, rollback")
        }
        for step in CutoverSwitchOptions.rollbackSteps {
            try s.ok(s.cutover("advance"))
            try s.expectSwitched(true, "before the rollback killed after \(step)")
            try s.killed(s.cutover("rollback"), after: step)
            try s.ok(s.cutover("rollback"))
            try s.expectSwitched(false, "rollback killed after \(step), then rollback")
        }
        // Nothing lost on the way: legacy takes writes again, and the ledger equals it.
        try s.legacyWriteTailed(99)
        let log = try s.run(["cutover", "log", "--store", store])
        let undone = log.stdout.components(separatedBy: "undone:").count - 1
        // Killed before legacy's commit: 5 write switches and 4 rollbacks undone by recovery.
        if undone != 9 { s.failures.append("\(undone) switches recorded undone, expected 9:\n\(log.stdout)") }
        return s.failures
    }

    @Test func aCommandKilledAfterAnyStepLeavesASwitchedOrUnswitchedCutoverThatTheNextCommandFinishes() async throws {
        try await withLegacyAndStore { legacy, store in
            let failures = try await onThread { try Self.scenario(legacy: legacy, store: store) }
            #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        }
    }
}
