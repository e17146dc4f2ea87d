import Foundation
import Postgres
import TestSupport
import Testing

/// `ledgerlift simulate` and `simulate verify` as an operator runs them, on the reference
/// fixture: live traffic keeps every rule of the legacy data, migrates without a quarantine, and
/// every acknowledged write is found again — in legacy, and in the ledger after a backfill.
/// (Seconds of traffic here; `make bench` runs minutes.)
@Suite("ledgerlift simulate, run as a binary")
struct SimulateCommandTests {
    static var mapping: String { BackfillResumeTests.mapping }

    /// The report's JSON.
    struct Report: Decodable {
        struct Figures: Decodable {
            let operations: Int
            let acknowledged: Int
            let failed: Int
            let retries: Int
            let blockedSeconds: Double
            let errors: [String: Int]
        }
        let total: Figures
        let journalLines: Int
        let businessTimeTo: String
    }

    static func report(_ output: LedgerliftBinary.Output) throws -> Report {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(Report.self, from: Data(output.stdout.utf8))
    }

    static func journalPath(_ name: String) -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerlift-simulate-\(UUID())")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory.appendingPathComponent(name).path
    }

    @Test func liveTrafficKeepsEveryRuleMigratesCleanAndLosesNoAcknowledgedWrite() async throws {
        try await TestDatabase.withFresh("sim_legacy") { legacy in
            try await TestDatabase.withFresh("sim_store") { store in
                #expect(try await LedgerliftBinary.run(["fixture", "load", "--dsn", legacy]).status == 0)
                let journal = Self.journalPath("journal.jsonl")
                let run = try await LedgerliftBinary.run([
                    "simulate", "--legacy", legacy, "--rate", "40", "--duration", "3", "--connections", "4",
                    "--journal", journal, "--report", "json",
                ])
                #expect(run.status == 0, "\(run.stderr)")
                let report = try Self.report(run)
                // Open loop: the schedule, not the database's speed, decides how many operations run.
                #expect(report.total.operations == 120)
                #expect(report.total.failed == 0)
                #expect(report.total.errors.isEmpty)
                #expect(report.journalLines == report.total.acknowledged)
                #expect(report.total.acknowledged > 60, "most operations find something to act on")

                let checks = try await LedgerliftBinary.run(["fixture", "check", "--dsn", legacy, "--until", report.businessTimeTo])
                #expect(checks.status == 0, "\(checks.stdout)\(checks.stderr)")

                let verifyLegacy = try await LedgerliftBinary.run(["simulate", "verify", "--journal", journal, "--legacy", legacy])
                #expect(verifyLegacy.status == 0, "\(verifyLegacy.stdout)\(verifyLegacy.stderr)")

                #expect(try await LedgerliftBinary.run(["store", "init", "--store", store]).status == 0)
                let backfill = try await LedgerliftBinary.run(["backfill", "--legacy", legacy, "--store", store, "--mapping", Self.mapping])
                #expect(backfill.status == 0, "the simulator writes what the mapping accepts: \(backfill.stdout)\(backfill.stderr)")
                #expect(try await LedgerliftBinary.run(["project", "--store", store]).status == 0)
                let verifyStore = try await LedgerliftBinary.run(["simulate", "verify", "--journal", journal, "--store", store])
                #expect(verifyStore.status == 0, "\(verifyStore.stdout)\(verifyStore.stderr)")
            }
        }
    }

    @Test func aTableLockedForThreeSecondsIsWaitedOutAndNothingIsLost() async throws {
        try await TestDatabase.withFresh("sim_locked") { legacy in
            #expect(try await LedgerliftBinary.run(["fixture", "load", "--dsn", legacy]).status == 0)
            let journal = Self.journalPath("journal.jsonl")
            // The lock is taken from a thread of its own, not a task: on a loaded machine a task
            // could be scheduled only after the simulation had ended, holding its lock over nothing.
            let lockHeld = Locked<(overlapped: Bool, error: String?)>((false, nil))
            let simulation = Task.detached {
                try await LedgerliftBinary.run([
                    "simulate", "--legacy", legacy, "--rate", "30", "--duration", "8", "--connections", "4",
                    "--journal", journal, "--report", "json",
                ])
            }
            let locker = Thread {
                do {
                    // Lock once the application is writing (its first operation is journaled),
                    // however long a loaded machine takes to start it.
                    let deadline = Date().addingTimeInterval(60)
                    while ((try? Data(contentsOf: URL(fileURLWithPath: journal)))?.isEmpty ?? true), Date() < deadline {
                        usleep(20_000)
                    }
                    let connection = try Connection.connectBlocking(legacy)
                    defer { connection.close() }
                    try connection.withSessionBlocking { session in
                        try session.transaction { tx in
                            try tx.execute("LOCK TABLE legacy.invoices IN EXCLUSIVE MODE")
                            _ = try tx.query("SELECT pg_sleep(3)")
                        }
                    }
                    // The run lasts 8 s from its first operation: it was still writing.
                    let journaled = (try? String(contentsOfFile: journal, encoding: .utf8))?.split(separator: "\n").count ?? 0
                    lockHeld.set((journaled < 480, nil))
                } catch {
                    lockHeld.set((false, String(describing: error)))
                }
            }
            locker.start()
            let run = try await simulation.value
            while !locker.isFinished { try await Task.sleep(for: .milliseconds(20)) }
            #expect(lockHeld.value.error == nil, "\(lockHeld.value.error ?? "")")
            #expect(lockHeld.value.overlapped, "the lock was held while the application wrote")
            #expect(run.status == 0, "\(run.stderr)")
            let report = try Self.report(run)
            #expect(report.total.operations == 240)
            #expect(report.total.failed == 0, "blocked operations wait or retry, they do not fail")
            // The lock outlasts the application's 1 s lock timeout: operations on invoices time out,
            // back off and retry, and the report shows the time they spent blocked.
            #expect(report.total.retries > 0, "\(run.stdout)")
            #expect(report.total.blockedSeconds >= 1)
            let verify = try await LedgerliftBinary.run(
                ["simulate", "verify", "--journal", journal, "--legacy", legacy])
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        }
    }

    @Test func aJournaledPaymentDeletedByHandIsNamedByItsOperation() async throws {
        try await TestDatabase.withFresh("sim_lost") { legacy in
            #expect(try await LedgerliftBinary.run(["fixture", "load", "--dsn", legacy]).status == 0)
            let journal = Self.journalPath("journal.jsonl")
            let run = try await LedgerliftBinary.run([
                "simulate", "--legacy", legacy, "--operations", "300", "--connections", "1", "--seed", "5",
                "--journal", journal, "--report", "json",
            ])
            #expect(run.status == 0, "\(run.stderr)")
            // The first payment a `payment_succeeded` operation recorded that nothing refunded.
            let lines = try String(contentsOfFile: journal, encoding: .utf8).split(separator: "\n")
            let connection = try await Connection.connect(legacy)
            defer { connection.close() }
            var victim: (op: String, payment: String)?
            for line in lines {
                guard let entry = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                    entry["kind"] as? String == "payment_succeeded",
                    let keys = entry["keys"] as? [String: String], let payment = keys["payment"],
                    let op = entry["op"] as? Int
                else { continue }
                let refunds = try await connection.query(
                    "SELECT count(*) FROM legacy.refunds WHERE payment_id = $1::bigint", [payment]
                ).rows[0].decode(at: 0, as: Int64.self)
                if refunds == 0 {
                    victim = (String(op), payment)
                    break
                }
            }
            let (op, payment) = try #require(victim, "the run made a payment")
            #expect(try await LedgerliftBinary.run(["simulate", "verify", "--journal", journal, "--legacy", legacy]).status == 0)
            try await connection.execute("DELETE FROM legacy.payments WHERE id = $1::bigint", [payment])
            let verify = try await LedgerliftBinary.run(
                ["simulate", "verify", "--journal", journal, "--legacy", legacy])
            #expect(verify.status == 1)
            #expect(verify.stdout.contains("op \(op)"), "\(verify.stdout)")
            #expect(verify.stdout.contains("payment \(payment)"), "\(verify.stdout)")
        }
    }

    @Test func oneConnectionWithTheSameSeedWritesByteIdenticalData() async throws {
        try await TestDatabase.withFresh("sim_det_a") { first in
            try await TestDatabase.withFresh("sim_det_b") { second in
                var dumps = [Data]()
                for legacy in [first, second] {
                    #expect(try await LedgerliftBinary.run(["fixture", "load", "--dsn", legacy]).status == 0)
                    let run = try await LedgerliftBinary.run([
                        "simulate", "--legacy", legacy, "--operations", "250", "--connections", "1", "--seed", "9",
                    ])
                    #expect(run.status == 0, "\(run.stderr)")
                    try await Self.clusterByKey(legacy)
                    dumps.append(try await dumpLegacyData(legacy))
                }
                #expect(dumps[0] == dumps[1])
                // …and the run did write: the dump differs from the fixture's.
                let simulated = dumps[0]
                let untouched = try await TestDatabase.withFresh("sim_det_fixture") { fixture -> Data in
                    let load = try await LedgerliftBinary.run(["fixture", "load", "--dsn", fixture])
                    #expect(load.status == 0)
                    return try await dumpLegacyData(fixture)
                }
                #expect(untouched != simulated)
            }
        }
    }

    /// Rewrites every legacy table in key order. pg_dump writes rows in their physical order,
    /// and where an UPDATE puts a row's new version depends on when page pruning ran, which
    /// depends on the oldest snapshot of any database on the server (other tests'): the same
    /// rows, written by the same statements, can come out in another order. Clustered, equal rows
    /// dump to equal bytes. (On an otherwise idle server the dumps are byte-identical as they
    /// are: measured by hand.)
    static func clusterByKey(_ dsn: String) async throws {
        let connection = try await Connection.connect(dsn)
        defer { connection.close() }
        try await connection.withSession { session in
            let tables = try session.query(
                """
                SELECT format('%I.%I', n.nspname, c.relname), format('%I', i.relname)
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_index x ON x.indrelid = c.oid AND x.indisprimary JOIN pg_class i ON i.oid = x.indexrelid
                WHERE n.nspname = 'legacy' AND c.relkind = 'r' ORDER BY 1
                """
            ).rows.map { (try $0.decode(at: 0, as: String.self), try $0.decode(at: 1, as: String.self)) }
            for (table, index) in tables { try session.execute("CLUSTER \(table) USING \(index)") }
        }
    }
}
