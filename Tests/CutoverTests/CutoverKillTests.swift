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
        /// Switches undone for want of time (a loaded machine), and run again.
        var undoneAndRetried = 0

        static let small = ["--clean-verifications", "2", "--clean-minutes", "0", "--max-freeze", "60", "--max-lag", "3600"]

        func run(_ arguments: [String]) throws -> LedgerliftBinary.Output { try LedgerliftBinary.runBlocking(arguments) }

        mutating func ok(_ arguments: [String]) throws {
            let output = try run(arguments)
            if output.status != 0 {
                failures.append("\(arguments.prefix(3).joined(separator: " ")) exited \(output.status): \(output.stderr)\(output.stdout)")
            }
        }

        /// A switch run until it is not undone: on a machine loaded by the whole suite, a drain
        /// or a catch-up can outlast the budget (another database's long transaction holds the
        /// cluster's xmin horizon, which reverse sync and the tailer read behind). The switch is
        /// then undone whole — what the test checks is that it is never half done — and an
        /// operator would run it again.
        mutating func switched(_ arguments: [String]) throws {
            let deadline = Date().addingTimeInterval(600)
            while true {
                let output = try run(arguments)
                if output.status == 0 { return }
                if output.status == 1, output.stderr.contains("undone"), Date() < deadline {
                    undoneAndRetried += 1
                    usleep(500_000)
                    continue
                }
                failures.append("\(arguments.prefix(3).joined(separator: " ")) exited \(output.status): \(output.stderr)\(output.stdout)")
                return
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
        do {
            try steps(&s, legacy: legacy, store: store)
        } catch {
            // What went wrong before the error says why it was thrown (a rollback refused leaves
            // the guard, and the next legacy write meets it).
            s.failures.append("stopped by \(error)")
        }
        return s.failures
    }

    static func steps(_ s: inout Scenario, legacy: String, store: String) throws {
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
        guard s.failures.isEmpty else { return }

        for (n, step) in CutoverSwitchOptions.writeSwitchSteps.enumerated() {
            try s.legacyWriteTailed(n + 1)
            try s.killed(s.cutover("advance"), after: step)
            // Whatever the kill left, the next advance ends switched.
            try s.switched(s.cutover("advance"))
            try s.expectSwitched(true, "advance killed after \(step), then advance")
            try s.switched(s.cutover("rollback"))
            try s.expectSwitched(false, "advance killed after \(step), advance, rollback")
        }
        for step in CutoverSwitchOptions.rollbackSteps {
            try s.switched(s.cutover("advance"))
            try s.expectSwitched(true, "before the rollback killed after \(step)")
            try s.killed(s.cutover("rollback"), after: step)
            if ["frozen", "drained", "verified"].contains(step) {
                // Killed while the write path is frozen: status says so loudly until it is finished.
                let text = try s.run(["cutover", "status", "--legacy", legacy, "--store", store])
                let json = try s.run(["cutover", "status", "--legacy", legacy, "--store", store, "--format", "json"])
                let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any] ?? [:]
                if !text.stdout.contains("WRITES ARE FROZEN") || object["writes_frozen"] as? Bool != true {
                    s.failures.append("rollback killed after \(step): status does not say writes are frozen:\n\(text.stdout)")
                }
            }
            try s.switched(s.cutover("rollback"))
            try s.expectSwitched(false, "rollback killed after \(step), then rollback")
        }
        // A lock not granted within --max-freeze: exit 1, and with --format json the undone step on stdout.
        try s.switched(s.cutover("advance"))
        try s.switched(s.cutover("rollback"))
        let holder = try Connection.connectBlocking(legacy)
        try holder.withSessionBlocking { session in
            try session.execute("BEGIN")
            try session.execute("UPDATE legacy.customers SET name = name WHERE id = 3")
        }
        let refused = try s.run([
            "cutover", "advance", "--legacy", legacy, "--store", store, "--clean-verifications", "2", "--clean-minutes",
            "0", "--max-lag", "3600", "--max-freeze", "0.3", "--format", "json",
        ])
        try holder.withSessionBlocking { try $0.execute("ROLLBACK") }
        holder.close()
        let undoneJSON = try JSONSerialization.jsonObject(with: Data(refused.stdout.utf8)) as? [String: Any] ?? [:]
        if refused.status != 1 || undoneJSON["undone"] as? Bool != true || undoneJSON["state"] as? String != "reads_switched"
            || (undoneJSON["failure"] as? String ?? "").isEmpty
        {
            s.failures.append("advance with a lock held: exit \(refused.status), stdout \(refused.stdout), stderr \(refused.stderr)")
        }
        try s.expectSwitched(false, "advance refused by a held lock")
        // Nothing lost on the way: legacy takes writes again, and the ledger equals it.
        try s.legacyWriteTailed(99)
        let log = try s.run(["cutover", "log", "--store", store])
        let undone = log.stdout.components(separatedBy: "undone:").count - 1
        // Killed before legacy's commit: 5 write switches and 4 rollbacks undone by recovery, and
        // the switch the held lock refused.
        if undone != 10 + s.undoneAndRetried {
            s.failures.append(
                "\(undone) switches recorded undone, expected 10 + \(s.undoneAndRetried) retried:\n\(log.stdout)")
        }
    }

    @Test func aCommandKilledAfterAnyStepLeavesASwitchedOrUnswitchedCutoverThatTheNextCommandFinishes() async throws {
        try await withLegacyAndStore { legacy, store in
            let failures = try await onThread { try Self.scenario(legacy: legacy, store: store) }
            #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        }
    }
}
