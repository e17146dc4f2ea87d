import Foundation
import Postgres
import Synchronization
import TestSupport
import Testing

@testable import Simulator

/// The runner against a real PostgreSQL, driving ``ProbeApp``: a real application of its own
/// that inserts one row per operation into `probe`, and can be told to find nothing to do or
/// to fail with a given SQLSTATE (raised by the server, `RAISE … USING ERRCODE`).
@Suite struct SimulationRunnerTests {
    /// One kind only, so per-kind figures are the totals.
    static let oneKind = try! OperationMix([.editName: 1])
    /// Short pauses: the tests are about what is counted, not about how long a real app waits.
    static let quickRetry = RetryPolicy(
        initialBackoff: .milliseconds(10), maxBackoff: .milliseconds(40), maxAttempts: 10)

    @Test func aStalledDatabaseShowsAsLatencyFromTheScheduledStartWhileTheScheduleKeepsItsRate() async throws {
        try await TestDatabase.withConnection { admin, dsn in
            try await ProbeApp.createTable(admin)
            // Another session holds the table for about a second from before the first operation.
            let locker = try await Connection.connect(dsn)
            defer { locker.close() }
            try await locker.execute("BEGIN")
            try await locker.execute("LOCK TABLE probe IN EXCLUSIVE MODE")
            let app = ProbeApp(dsn: dsn)
            let simulation = try Simulation(
                .init(
                    app: app, connections: 1, rate: 10, stop: .duration(.seconds(2)), seed: 3, mix: Self.oneKind,
                    clock: BusinessClock(.wall)))
            let progress = Mutex([Simulation.Progress]())
            async let running = simulation.run { update in progress.withLock { $0.append(update) } }
            // Held for a second from the moment the first operation is under way.
            while app.log.firstCall(of: 1) == nil { try await Task.sleep(for: .milliseconds(10)) }
            try await Task.sleep(for: .seconds(1))
            let released = ContinuousClock.now
            try await locker.execute("COMMIT")
            let report = try await running

            // rate × duration operations, whatever the stall.
            #expect(report.total.operations == 20)
            #expect(report.total.acknowledged == 20)
            // Op 1 is scheduled at the run's start, no later than its perform call, and ends
            // after the lock is released: its latency is at least `hold`. Op 2, scheduled 0.1 s
            // later, waited behind it on the one connection: measured from its scheduled start,
            // its latency is at least `hold − 0.1 s` (from its actual start it would be tiny).
            let firstCall = try #require(app.log.firstCall(of: 1))
            let hold = (released - firstCall).seconds
            #expect(hold > 0.5, "the lock must have stalled the first operation")
            let latency = try #require(report.total.latencyMs)
            #expect(latency.max >= hold * 1000)
            #expect(
                latency.p95 >= (hold - 0.1) * 1000, "the second slowest operation is measured from its scheduled start")
            #expect(report.mode == "open")
            #expect(report.targetRate == 10)
            #expect(report.total.blockedSeconds == 0, "a lock wait without a timeout is latency, not a retry")
            // Progress came about once a second while the run lasted (it lasts at least 2 s).
            let updates = progress.withLock { $0 }
            #expect(!updates.isEmpty)
            #expect(updates.map(\.operations) == updates.map(\.operations).sorted())
            #expect(updates.allSatisfy { $0.operations <= 20 && $0.failed == 0 })
        }
    }

    @Test func retriesALockTimeoutThenSucceedsCountingRetriesAndBlockedTime() async throws {
        try await TestDatabase.withConnection { admin, dsn in
            try await ProbeApp.createTable(admin)
            let app = ProbeApp(dsn: dsn) { operation, attempt in
                operation.id == 2 && attempt <= 2 ? .raise("55P03") : .insert
            }
            let simulation = try Simulation(
                .init(
                    app: app, stop: .operations(5), seed: 1, mix: Self.oneKind, clock: BusinessClock(.wall),
                    retry: Self.quickRetry))
            let report = try await simulation.run()
            #expect(report.total.operations == 5)
            #expect(report.total.acknowledged == 5)
            #expect(report.total.failed == 0)
            #expect(report.total.retries == 2)
            #expect(report.kinds.map(\.retries) == [2])
            // Blocked: the failed attempts and the two pauses, each at least its planned length.
            let operation = Simulation.operation(2, seed: 1, mix: Self.oneKind)
            let pauses =
                Self.quickRetry.delay(after: 1, operation: operation)
                + Self.quickRetry.delay(after: 2, operation: operation)
            #expect(report.total.blockedSeconds >= pauses.seconds)
            #expect(try await ProbeApp.rows(admin) == [1, 2, 3, 4, 5])
        }
    }

    @Test func aRealLockTimeoutDuringATableLockIsRetriedUntilTheLockIsGone() async throws {
        try await TestDatabase.withConnection { admin, dsn in
            try await ProbeApp.createTable(admin)
            // psql's `LOCK TABLE … IN EXCLUSIVE MODE`, against an application whose lock_timeout
            // is 200 ms.
            let locker = try await Connection.connect(dsn)
            defer { locker.close() }
            try await locker.execute("BEGIN")
            try await locker.execute("LOCK TABLE probe IN EXCLUSIVE MODE")
            let app = ProbeApp(dsn: dsn, lockTimeoutMilliseconds: 200)
            let retry = RetryPolicy(initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(100), maxAttempts: 100)
            let simulation = try Simulation(
                .init(
                    app: app, stop: .operations(3), seed: 4, mix: Self.oneKind, clock: BusinessClock(.wall),
                    retry: retry))
            async let running = simulation.run()
            // Released once the first operation has timed out at least once.
            while app.log.attempts(of: 1) < 2 { try await Task.sleep(for: .milliseconds(10)) }
            try await locker.execute("COMMIT")
            let report = try await running
            #expect(report.total.acknowledged == 3)
            #expect(report.total.failed == 0)
            #expect(report.total.retries >= 1)
            // Each failed attempt waited out the 200 ms lock timeout.
            #expect(report.total.blockedSeconds >= 0.2 * Double(report.total.retries))
            #expect(try await ProbeApp.rows(admin) == [1, 2, 3])
        }
    }

    @Test func anOperationRefusedByTheWriteGuardIsCountedReroutedAndSentToTheSecondApplication() async throws {
        try await TestDatabase.withConnection { admin, dsn in
            try await ProbeApp.createTable(admin)
            let refusing = { @Sendable (operation: BillingOperation, _: Int) -> ProbeApp.Step in
                operation.id == 2 ? .raise(WriteGuard.sqlState) : .insert
            }
            let alone = try await Simulation(
                .init(
                    app: ProbeApp(dsn: dsn, plan: refusing), stop: .operations(4), seed: 1, mix: Self.oneKind,
                    clock: BusinessClock(.wall))
            ).run()
            #expect(alone.total.rerouted == 1)
            #expect(alone.total.acknowledged == 3)
            #expect(alone.total.failed == 0)
            #expect(alone.total.retries == 0)
            #expect(alone.hasErrors == false)

            try await admin.execute("TRUNCATE probe")
            let ledger = ProbeApp(dsn: dsn)
            let rerouted = try await Simulation(
                .init(
                    app: ProbeApp(dsn: dsn, plan: refusing), stop: .operations(4), seed: 1, mix: Self.oneKind,
                    clock: BusinessClock(.wall),
                    reroute: ledger)
            ).run()
            #expect(rerouted.total.rerouted == 1)
            #expect(rerouted.total.acknowledged == 4)
            #expect(ledger.log.performed().map(\.id) == [2])
            #expect(try await ProbeApp.rows(admin) == [1, 2, 3, 4])
        }
    }

    @Test func otherErrorsAreCountedBySQLStateWithoutRetryAndRetriesAreBounded() async throws {
        try await TestDatabase.withConnection { admin, dsn in
            try await ProbeApp.createTable(admin)
            let app = ProbeApp(dsn: dsn) { operation, _ in
                switch operation.id {
                case 2: .raise("23505")
                case 3: .raise("40001")
                case 4: .skip
                default: .insert
                }
            }
            let retry = RetryPolicy(initialBackoff: .milliseconds(1), maxBackoff: .milliseconds(2), maxAttempts: 3)
            let report = try await Simulation(
                .init(
                    app: app, stop: .operations(6), seed: 1, mix: Self.oneKind, clock: BusinessClock(.wall),
                    retry: retry)
            ).run()
            #expect(report.total.operations == 6)
            #expect(report.total.errors == ["23505": 1, "40001": 1])
            #expect(report.total.failed == 2)
            #expect(report.total.retries == 2, "40001 tried 3 times in all; 23505 once")
            #expect(report.total.skipped == 1)
            #expect(report.total.acknowledged == 3)
            #expect(report.hasErrors)
            #expect(report.errorMessages["23505"] == "probe failure 23505")
            #expect(app.log.attempts(of: 2) == 1)
            #expect(app.log.attempts(of: 3) == 3)
            #expect(try await ProbeApp.rows(admin) == [1, 5, 6])
        }
    }

    @Test func oneConnectionWithASeedPerformsTheSameOperationsInTheSameOrderEveryRun() async throws {
        try await TestDatabase.withConnection { admin, dsn in
            try await ProbeApp.createTable(admin)
            func run(seed: UInt64, connections: Int) async throws -> [BillingOperation] {
                let app = ProbeApp(dsn: dsn)
                _ = try await Simulation(
                    .init(
                        app: app, connections: connections, stop: .operations(40), seed: seed,
                        clock: BusinessClock(.wall))
                ).run()
                return app.log.performed()
            }
            let first = try await run(seed: 11, connections: 1)
            let second = try await run(seed: 11, connections: 1)
            #expect(first == second)
            // The documented rule: kind from the first draw of derive(seed, id), the
            // operation's seed from the second.
            let expected = (UInt64(1)...40).map { id in
                var random = SimulationRandom(seed: SimulationRandom.derive(11, id))
                return BillingOperation(
                    id: id, kind: OperationMix.standard.kind(for: random.next()), seed: random.next())
            }
            #expect(first == expected)
            #expect(Set(first.map(\.kind)).count > 5)
            #expect(try await run(seed: 12, connections: 1) != first)
            // Several connections: the same operations, in whatever order they are reached.
            #expect(try await run(seed: 11, connections: 3).sorted { $0.id < $1.id } == first)
        }
    }

    /// The journal's lines, decoded (every line ends with a newline).
    static func records(_ path: String) throws -> [JournalRecord] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.isEmpty || text.hasSuffix("\n"), "every line ends with a newline")
        return try text.split(separator: "\n").map { try JournalRecord.decode(Data($0.utf8), JSONDecoder()) }
    }

    @Test func theJournalPreparesEachOperationBeforeItsCommitAndAcknowledgesItBeforeTheNextStarts() async throws {
        try await TestDatabase.withConnection { admin, dsn in
            try await ProbeApp.createTable(admin)
            let path = FileManager.default.temporaryDirectory.appendingPathComponent(
                "ledgerlift-journal-\(UUID().uuidString).jsonl"
            ).path
            defer { try? FileManager.default.removeItem(atPath: path) }
            let app = ProbeApp(dsn: dsn, journal: path) { operation, _ in
                switch operation.id {
                case 3: .skip
                case 4: .raise("23514")
                default: .insert
                }
            }
            let journal = try JournalWriter(path: path)
            let report = try await Simulation(
                .init(app: app, stop: .operations(7), seed: 5, journal: journal, clock: BusinessClock(.wall))
            ).run()
            journal.close()
            let records = try Self.records(path)
            // Two lines per acknowledged operation: prepared (whole entry), then acknowledged.
            var expected = [JournalRecord]()
            for record in records {
                if case .prepared(let entry, let attempt) = record {
                    expected.append(record)
                    expected.append(.acknowledged(op: entry.op, attempt: attempt))
                }
            }
            #expect(records == expected)
            #expect(records.map(\.op) == [1, 1, 2, 2, 5, 5, 6, 6, 7, 7])
            let entries = records.compactMap { record -> JournalEntry? in
                if case .prepared(let entry, _) = record { return entry }
                return nil
            }
            #expect(
                entries.map(\.kind) == [1, 2, 5, 6, 7].map { Simulation.operation($0, seed: 5, mix: .standard).kind })
            #expect(report.journalLines == 5)
            #expect(report.total.acknowledged == 5)
            // Compact JSON with sorted keys, one object per line; the acknowledgement is short.
            let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
            #expect(lines[0].hasPrefix("{\"at\":") && lines[0].hasSuffix(",\"phase\":\"prepared\",\"summary\":\"probe row 1\"}"))
            #expect(lines[1] == "{\"attempt\":1,\"op\":1,\"phase\":\"acknowledged\"}")
            // When operation i started, both lines of every operation acknowledged before it
            // were already in the file.
            #expect(app.log.journalLinesSeen() == [1: 0, 2: 2, 3: 4, 4: 4, 5: 4, 6: 6, 7: 8])
            // A journal belongs to one run: the file now holds lines and is refused.
            #expect(throws: JournalWriter.Failure.self) { try JournalWriter(path: path) }
        }
    }

    @Test func aSecondWriterOfTheSameJournalIsRefusedWhileTheFirstHoldsIt() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "ledgerlift-journal-\(UUID().uuidString).jsonl"
        ).path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let first = try JournalWriter(path: path)
        // The file exists and is still empty: only the lock tells the second run it is taken.
        let refusal = #expect(throws: JournalWriter.Failure.self) { try JournalWriter(path: path) }
        #expect(
            refusal?.description
                == "journal \(path): another run is writing this journal (it holds the file's lock): "
                + "give each run its own journal file")
        first.close()
        // Released with the file: an empty journal can be taken again.
        let again = try JournalWriter(path: path)
        again.close()
    }

    @Test func retriedAttemptsArePreparedEachAndTheAcknowledgementNamesTheOneThatCommitted() async throws {
        try await TestDatabase.withConnection { admin, dsn in
            try await ProbeApp.createTable(admin)
            let path = FileManager.default.temporaryDirectory.appendingPathComponent(
                "ledgerlift-journal-\(UUID().uuidString).jsonl"
            ).path
            defer { try? FileManager.default.removeItem(atPath: path) }
            // Attempt 1 prepares, then its COMMIT fails (a serialization failure after the writes).
            let app = ProbeApp(dsn: dsn) { _, attempt in attempt == 1 ? .insertThenFail("40001") : .insert }
            let journal = try JournalWriter(path: path)
            let report = try await Simulation(
                .init(
                    app: app, stop: .operations(1), seed: 5, journal: journal, clock: BusinessClock(.wall),
                    retry: Self.quickRetry)
            ).run()
            journal.close()
            #expect(report.total.acknowledged == 1 && report.total.retries == 1)
            let records = try Self.records(path)
            #expect(records.count == 3)
            guard records.count == 3, case .prepared(_, 1) = records[0], case .prepared(_, 2) = records[1] else {
                Issue.record("expected two prepared attempts, got \(records)")
                return
            }
            #expect(records[2] == .acknowledged(op: 1, attempt: 2))
        }
    }

    @Test func concurrentConnectionsShareTheJournalWholeLineByLine() async throws {
        try await TestDatabase.withConnection { admin, dsn in
            try await ProbeApp.createTable(admin)
            let path = FileManager.default.temporaryDirectory.appendingPathComponent(
                "ledgerlift-journal-\(UUID().uuidString).jsonl"
            ).path
            defer { try? FileManager.default.removeItem(atPath: path) }
            let app = ProbeApp(dsn: dsn) { operation, _ in operation.id % 5 == 0 ? .skip : .insert }
            let journal = try JournalWriter(path: path)
            let report = try await Simulation(
                .init(
                    app: app, connections: 4, stop: .operations(60), seed: 8, journal: journal,
                    clock: BusinessClock(.wall))
            ).run()
            journal.close()
            let records = try Self.records(path)
            #expect(records.count == 96)
            #expect(report.journalLines == 48)
            var prepared = [UInt64]()
            var acknowledged = [UInt64]()
            for record in records {
                switch record {
                case .prepared(let entry, _):
                    prepared.append(entry.op)
                case .acknowledged(let op, _):
                    // Each acknowledgement follows its own prepared line.
                    #expect(prepared.contains(op))
                    acknowledged.append(op)
                case .entry: Issue.record("a line without phase")
                }
            }
            #expect(Set(prepared) == Set((UInt64(1)...60).filter { $0 % 5 != 0 }))
            #expect(Set(acknowledged) == Set(prepared) && acknowledged.count == 48)
            #expect(try await ProbeApp.rows(admin).map(UInt64.init) == prepared.sorted())
        }
    }

    @Test func theJSONReportHasAStableShape() async throws {
        try await TestDatabase.withConnection { admin, dsn in
            try await ProbeApp.createTable(admin)
            let app = ProbeApp(dsn: dsn) { operation, _ in operation.id == 1 ? .raise("23505") : .insert }
            let report = try await Simulation(
                .init(
                    app: app, connections: 2, stop: .operations(3), seed: 9, mix: Self.oneKind,
                    clock: BusinessClock(.wall))
            ).run()
            let object = try #require(try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any])
            #expect(
                Set(object.keys) == [
                    "mode", "app", "connections", "seed", "target_rate", "achieved_rate", "duration_seconds",
                    "stopped_by", "failure",
                    "journal", "journal_lines", "kinds", "total", "error_messages", "business_time_from",
                    "business_time_to", "candidate",
                ])
            #expect(object["mode"] as? String == "closed")
            #expect(object["app"] as? String == "probe")
            #expect(object["target_rate"] is NSNull)
            #expect(object["stopped_by"] is NSNull)
            #expect(object["candidate"] is NSNull)
            let total = try #require(object["total"] as? [String: Any])
            #expect(
                Set(total.keys) == [
                    "kind", "operations", "acknowledged", "skipped", "rerouted", "errors", "failed", "retries",
                    "blocked_seconds", "rerouted_blocked_seconds", "rerouted_blocked_max_ms", "latency_ms",
                ])
            #expect(total["kind"] as? String == "total")
            #expect(total["errors"] as? [String: Int] == ["23505": 1])
            let latency = try #require(total["latency_ms"] as? [String: Double])
            #expect(Set(latency.keys) == ["p50", "p95", "p99", "max"])
            let kinds = try #require(object["kinds"] as? [[String: Any]])
            #expect(kinds.map { $0["kind"] as? String } == ["edit_name"])
            // A kind none of whose operations completed still has every key.
            let failing = ProbeApp(dsn: dsn) { _, _ in .raise("23505") }
            let failed = try await Simulation(
                .init(app: failing, stop: .operations(1), seed: 9, mix: Self.oneKind, clock: BusinessClock(.wall))
            ).run()
            let failedObject = try #require(
                try JSONSerialization.jsonObject(with: Data(failed.json.utf8)) as? [String: Any])
            let failedKind = try #require((failedObject["kinds"] as? [[String: Any]])?.first)
            #expect(Set(failedKind.keys) == Set(total.keys))
            #expect(failedKind["latency_ms"] is NSNull)
            // The text form names every kind and the total.
            #expect(report.text.contains("edit_name"))
            #expect(report.text.contains("23505: 1"))
        }
    }

    @Test func stopLetsRunningOperationsFinishAndStillReports() async throws {
        try await TestDatabase.withConnection { admin, dsn in
            try await ProbeApp.createTable(admin)
            let app = ProbeApp(dsn: dsn)
            let simulation = try Simulation(
                .init(app: app, connections: 2, stop: .duration(.seconds(600)), seed: 2, clock: BusinessClock(.wall)))
            async let running = simulation.run()
            // Stop once operations are under way (however long the connections took to open).
            while app.log.performed().count < 3 { try await Task.sleep(for: .milliseconds(10)) }
            simulation.stop(.interrupt)
            let report = try await running
            #expect(report.stoppedBy == "SIGINT")
            #expect(report.total.operations > 0)
            #expect(report.total.failed == 0, "running operations finished, none was cut off")
            // Everything counted was performed, and nothing performed was left uncounted.
            #expect(report.total.acknowledged == app.log.performed().count)
            #expect(try await ProbeApp.rows(admin).count == report.total.acknowledged)
        }
    }
}

@Suite struct OperationMixFileTests {
    @Test func readsAMappingOfKindToWeight() throws {
        let mix = try OperationMix.parse(yaml: "payment_succeeded: 3\nedit_email: 1\nsign_up: 0\n", file: "mix.yaml")
        #expect(mix == (try OperationMix([.paymentSucceeded: 3, .editEmail: 1])))
    }

    @Test func namesAnUnknownKindWithTheClosestOne() {
        for (name, meant) in [
            ("payment_succeded", "payment_succeeded"), ("PaymentFailed", "payment_failed"),
            ("edit-email", "edit_email"),
        ] {
            #expect {
                try OperationMix.parse(yaml: "\(name): 1\n", file: "mix.yaml")
            } throws: { error in
                "\(error)".contains("unknown operation kind \"\(name)\" (did you mean \(meant)?)")
                    && "\(error)".contains("mix.yaml")
            }
        }
        #expect {
            try OperationMix.parse(yaml: "teleport: 1\n", file: "mix.yaml")
        } throws: { error in
            "\(error)".contains("unknown operation kind \"teleport\"; the kinds are: sign_up, ")
        }
    }

    @Test func refusesWeightsThatAreNotWholeNumbersAndMixesWithoutOne() {
        #expect(throws: SimulatorError.self) { try OperationMix.parse(yaml: "sign_up: 1.5\n", file: "m") }
        #expect(throws: SimulatorError.self) { try OperationMix.parse(yaml: "sign_up: -1\n", file: "m") }
        #expect(throws: SimulatorError.self) { try OperationMix.parse(yaml: "sign_up: 0\n", file: "m") }
        #expect(throws: SimulatorError.self) { try OperationMix.parse(yaml: "- sign_up\n", file: "m") }
    }
}

/// A real billing application of the tests' own: one `INSERT INTO probe` per operation, in a
/// transaction, on its own connection per worker.
final class ProbeApp: BillingApp {
    enum Step: Sendable {
        case insert
        case skip
        /// Inserts, prepares its entry, then fails with this SQLSTATE before the COMMIT.
        case insertThenFail(String)
        /// Fails with this SQLSTATE, raised by the server.
        case raise(String)
    }

    /// What the application saw, in order.
    final class Log: Sendable {
        private let state = Mutex(
            (
                performed: [BillingOperation](), attempts: [UInt64: Int](),
                firstCalls: [UInt64: ContinuousClock.Instant](), lines: [UInt64: Int]()
            ))

        /// Counts an attempt; returns its number (from 1).
        func attempt(_ operation: BillingOperation, journalLines: Int?) -> Int {
            state.withLock { state in
                state.attempts[operation.id, default: 0] += 1
                let number = state.attempts[operation.id]!
                if number == 1 {
                    state.performed.append(operation)
                    state.firstCalls[operation.id] = ContinuousClock.now
                    if let journalLines { state.lines[operation.id] = journalLines }
                }
                return number
            }
        }

        func performed() -> [BillingOperation] { state.withLock { $0.performed } }
        func attempts(of id: UInt64) -> Int { state.withLock { $0.attempts[id] ?? 0 } }
        func firstCall(of id: UInt64) -> ContinuousClock.Instant? { state.withLock { $0.firstCalls[id] } }
        func journalLinesSeen() -> [UInt64: Int] { state.withLock { $0.lines } }
    }

    let dsn: String
    let journal: String?
    let lockTimeoutMilliseconds: Int?
    let plan: @Sendable (BillingOperation, Int) -> Step
    let log = Log()
    var name: String { "probe" }

    init(
        dsn: String, journal: String? = nil, lockTimeoutMilliseconds: Int? = nil,
        plan: @escaping @Sendable (BillingOperation, Int) -> Step = { _, _ in .insert }
    ) {
        self.dsn = dsn
        self.journal = journal
        self.lockTimeoutMilliseconds = lockTimeoutMilliseconds
        self.plan = plan
    }

    static func createTable(_ connection: Connection) async throws {
        try await connection.execute(
            "CREATE TABLE probe (op bigint PRIMARY KEY, kind text NOT NULL, at timestamptz NOT NULL)")
    }

    static func rows(_ connection: Connection) async throws -> [Int64] {
        try await connection.query("SELECT op FROM probe ORDER BY op").rows.map { try $0.decode(at: 0, as: Int64.self) }
    }

    func makeWorker() async throws -> any BillingAppWorker {
        let connection = try await Connection.connect(dsn, applicationName: "ledgerlift-probe")
        // As the legacy application does: a lock wait longer than this fails with 55P03.
        if let lockTimeoutMilliseconds {
            try await connection.execute("SET lock_timeout = \(lockTimeoutMilliseconds)")
        }
        return Worker(app: self, connection: connection)
    }

    struct Worker: BillingAppWorker {
        let app: ProbeApp
        let connection: Connection

        func perform(
            _ operation: BillingOperation, clock: BusinessClock,
            prepared: @escaping @Sendable (JournalEntry) throws -> Void
        ) async throws -> JournalEntry? {
            let lines = app.journal.map { path in
                (try? String(contentsOfFile: path, encoding: .utf8))?.split(separator: "\n").count ?? 0
            }
            let attempt = app.log.attempt(operation, journalLines: lines)
            do {
                switch app.plan(operation, attempt) {
                case .skip:
                    return nil
                case .raise(let sqlState):
                    try await connection.execute(
                        "DO $$ BEGIN RAISE EXCEPTION 'probe failure \(sqlState)' USING ERRCODE = '\(sqlState)'; END $$")
                    Issue.record("RAISE did not raise")
                    return nil
                case .insert, .insertThenFail:
                    let step = app.plan(operation, attempt)
                    return try await connection.transaction { session in
                        // The time is taken once the row is locked (here: inserted), as BusinessClock asks.
                        try session.execute(
                            "INSERT INTO probe (op, kind, at) VALUES ($1, $2, now())",
                            [Int64(operation.id), operation.kind.rawValue])
                        let at = clock.next()
                        try session.execute("UPDATE probe SET at = $1 WHERE op = $2", [at, Int64(operation.id)])
                        let entry = JournalEntry(
                            op: operation.id, kind: operation.kind, at: at.iso8601, keys: ["probe": "\(operation.id)"],
                            effects: [
                                Effect(entity: "probe", key: "\(operation.id)", fields: ["kind": operation.kind.rawValue])
                            ],
                            summary: "probe row \(operation.id)")
                        // Before the COMMIT, as the protocol asks.
                        try prepared(entry)
                        if case .insertThenFail(let sqlState) = step {
                            try session.execute(
                                "DO $$ BEGIN RAISE EXCEPTION 'probe failure \(sqlState)' USING ERRCODE = '\(sqlState)'; END $$")
                        }
                        return entry
                    }
                }
            } catch let error as PostgresError {
                throw SimulatorError.database(error)
            }
        }

        func close() { connection.close() }
    }
}
