import Billing
import Foundation
import Postgres
import TestSupport
import Testing

@testable import Simulator

/// The two-phase journal (docs/journal.md): acknowledged operations are required, operations
/// prepared and never acknowledged are in doubt — allowed, never required.
@Suite("simulate verify: operations in doubt")
struct JournalInDoubtTests {
    typealias V = JournalVerifierTests

    static func prepared(_ entry: JournalEntry, attempt: Int = 1) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(JournalRecord.PreparedLine(entry: entry, attempt: attempt)), as: UTF8.self)
    }

    static func acknowledged(_ op: UInt64, attempt: Int = 1) -> String {
        "{\"attempt\":\(attempt),\"op\":\(op),\"phase\":\"acknowledged\"}"
    }

    /// Op 16: customer 1's email set after op 15 set it (2025-10-22).
    static func editEmail(_ email: String, at: String = "2025-11-01T10:00:00Z", op: UInt64 = 16) -> JournalEntry {
        V.entry(op, .editEmail, at, [Effect(entity: "customer", key: "1", fields: ["email": email])], "email changed")
    }

    // MARK: - The fold

    @Test func aPreparedLineWaitsForItsAcknowledgementAndTheAcknowledgedAttemptIsRequired() throws {
        var fold = JournalExpectations()
        try fold.read(.prepared(Self.editEmail("first@attempt.example"), attempt: 1), line: 1)
        try fold.read(.prepared(Self.editEmail("second@attempt.example"), attempt: 2), line: 2)
        #expect(fold.operations == 0)
        try fold.read(.acknowledged(op: 16, attempt: 2), line: 3)
        try fold.finish()
        #expect(fold.operations == 1 && fold.inDoubt == 0)
        let row = try #require(fold.rows[.customer]?["1"])
        #expect(row.slots.map(\.value) == ["second@attempt.example"])
        // The other attempt is ignored, not allowed.
        #expect(row.allowed.isEmpty)
    }

    @Test func anUnacknowledgedOperationsAttemptsAreAllAllowedAfterTheRequiredValueOnly() throws {
        var fold = JournalExpectations()
        try fold.read(.entry(Self.editEmail("required@example", at: "2025-11-01T10:00:00Z", op: 1)), line: 1)
        try fold.read(.prepared(Self.editEmail("later1@example", at: "2025-11-01T11:00:00Z", op: 2), attempt: 1), line: 2)
        try fold.read(.prepared(Self.editEmail("later2@example", at: "2025-11-01T11:00:01Z", op: 2), attempt: 2), line: 3)
        try fold.read(.prepared(Self.editEmail("earlier@example", at: "2025-11-01T09:00:00Z", op: 3), attempt: 1), line: 4)
        try fold.finish()
        #expect(fold.operations == 1 && fold.inDoubt == 2)
        let row = try #require(fold.rows[.customer]?["1"])
        let slot = try #require(row.slots.first)
        #expect(row.allows("later1@example", for: slot) && row.allows("later2@example", for: slot))
        // Ordered before the required value: a committed earlier op was overwritten by it.
        #expect(!row.allows("earlier@example", for: slot))
        #expect(!row.allows("other@example", for: slot))
    }

    @Test func anOperationAcknowledgedTwiceOrWithoutItsPreparedLineIsRefusedByLine() throws {
        var twice = JournalExpectations()
        try twice.read(.prepared(Self.editEmail("a@example"), attempt: 1), line: 1)
        try twice.read(.acknowledged(op: 16, attempt: 1), line: 2)
        #expect(throws: JournalError.malformedLine(line: 3, reason: "op 16 is acknowledged twice (two runs wrote one journal?)")) {
            try twice.read(.acknowledged(op: 16, attempt: 1), line: 3)
        }
        var old = JournalExpectations()
        try old.read(.entry(Self.editEmail("a@example")), line: 1)
        #expect(throws: JournalError.malformedLine(line: 2, reason: "op 16 is acknowledged twice (two runs wrote one journal?)")) {
            try old.read(.entry(Self.editEmail("b@example")), line: 2)
        }
        var orphan = JournalExpectations()
        #expect(
            throws: JournalError.malformedLine(
                line: 1, reason: "op 7 is acknowledged (attempt 1) without a prepared line before it")
        ) {
            try orphan.read(.acknowledged(op: 7, attempt: 1), line: 1)
        }
    }

    // MARK: - Against the legacy tables

    @Test func aCommittedButUnacknowledgedWriteIsAllowedAndCountedInDoubt() async throws {
        let lines =
            try V.cleanEntries.map(V.line) + [
                Self.prepared(Self.editEmail("someone@else.example")),
                // An in-doubt delete of a row op 2 created, and an in-doubt creation.
                Self.prepared(
                    V.entry(
                        17, .paymentSucceeded, "2025-11-01T10:00:01Z",
                        [Effect(entity: "payment", key: "102", deleted: true)], "payment 102 deleted")),
                Self.prepared(
                    V.entry(
                        18, .signUp, "2025-11-01T10:00:02Z",
                        [Effect(entity: "customer", key: "99999", fields: ["email": "new@example"])], "sign up")),
            ]
        let path = try V.journal(lines)
        try await V.withReference { dsn in
            // Nothing of the in-doubt ops committed: clean.
            let none = try await V.verifyLegacy(path, dsn)
            #expect(none.failures == [] && none.isClean)
            #expect(none.operations == V.cleanCounts.operations && none.inDoubt == 3)
            #expect(none.rowsChecked == V.cleanCounts.rows)
            #expect(
                none.notes == [
                    "3 operations in doubt: prepared, not acknowledged — their effects may or may not be present"
                ])
            // All of them committed (the crash came between COMMIT and acknowledgement): clean.
            try await V.execute(
                dsn,
                "UPDATE legacy.customers SET email = 'someone@else.example' WHERE id = 1; DELETE FROM legacy.payments WHERE id = 102")
            let all = try await V.verifyLegacy(path, dsn)
            #expect(all.failures == [] && all.isClean && all.inDoubt == 3)
            #expect(all.json.contains("\"in_doubt\":3"))
            // A value no operation wrote is still altered.
            try await V.execute(dsn, "UPDATE legacy.customers SET email = 'nobody@wrote.this' WHERE id = 1")
            let altered = try await V.verifyLegacy(path, dsn)
            #expect(altered.alteredFields == 1 && altered.failures.first?.field == "email")
        }
    }

    @Test func anInDoubtValueOrderedBeforeTheRequiredOneDoesNotExcuseIt() async throws {
        // Op 16 is prepared at a business time before op 15's acknowledged email.
        let path = try V.journal(
            try V.cleanEntries.map(V.line) + [Self.prepared(Self.editEmail("someone@else.example", at: "2025-10-01T00:00:00Z"))])
        try await V.withReference { dsn in
            try await V.execute(dsn, "UPDATE legacy.customers SET email = 'someone@else.example' WHERE id = 1")
            let report = try await V.verifyLegacy(path, dsn)
            #expect(report.alteredFields == 1 && report.inDoubt == 1)
        }
    }

    @Test func theAcknowledgedAttemptIsRequiredAndTheOthersIgnored() async throws {
        let path = try V.journal(
            try V.cleanEntries.map(V.line) + [
                Self.prepared(Self.editEmail("first@attempt.example"), attempt: 1),
                Self.prepared(Self.editEmail("second@attempt.example", at: "2025-11-01T10:00:05Z"), attempt: 2),
                Self.acknowledged(16, attempt: 2),
            ])
        try await V.withReference { dsn in
            try await V.execute(dsn, "UPDATE legacy.customers SET email = 'first@attempt.example' WHERE id = 1")
            let report = try await V.verifyLegacy(path, dsn)
            #expect(report.inDoubt == 0 && report.operations == V.cleanCounts.operations + 1)
            #expect(report.alteredFields == 1 && report.failures.first?.expected == "second@attempt.example")
        }
    }

    // MARK: - A real crash

    /// `ledgerlift simulate --journal` killed with SIGKILL mid-run, several times, with 8
    /// connections in closed loop: operations committed whose acknowledgement never reached
    /// the journal must not show as lost or altered writes.
    @Test func killingTheSimulatorMidRunNeverMakesVerifyFail() async throws {
        try await TestDatabase.withFresh("sim_kill9") { dsn in
            #expect(try await LedgerliftBinary.run(["fixture", "load", "--dsn", dsn]).status == 0)
            var inDoubt = 0
            for round in 1...4 {
                let path = FileManager.default.temporaryDirectory.appendingPathComponent(
                    "ledgerlift-kill-\(UUID().uuidString).jsonl"
                ).path
                defer { try? FileManager.default.removeItem(atPath: path) }
                // Started, watched and killed on a thread of its own, not on a cooperative thread.
                let reason = try await onThread { () throws -> Process.TerminationReason in
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: LedgerliftBinary.path)
                    process.arguments = [
                        "simulate", "--legacy", dsn, "--connections", "8", "--duration", "60", "--seed", "\(round)",
                        "--journal", path,
                    ]
                    process.standardOutput = FileHandle.nullDevice
                    process.standardError = FileHandle.nullDevice
                    process.standardInput = FileHandle.nullDevice
                    try process.run()
                    // Kill once operations are flowing: some lines written, at a moment that varies.
                    let deadline = Date().addingTimeInterval(20)
                    while Date() < deadline,
                        ((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? nil ?? 0) < 2000 * round
                    {
                        usleep(20_000)
                    }
                    usleep(UInt32(37_000 * round))
                    kill(process.processIdentifier, SIGKILL)
                    process.waitUntilExit()
                    return process.terminationReason
                }
                #expect(reason == .uncaughtSignal)
                let verify = try await LedgerliftBinary.run([
                    "simulate", "verify", "--legacy", dsn, "--journal", path, "--report", "json",
                ])
                #expect(verify.status == 0, "round \(round): \(verify.stdout) \(verify.stderr)")
                let object = try JSONSerialization.jsonObject(with: Data(verify.stdout.utf8)) as? [String: Any]
                #expect((object?["operations"] as? Int ?? 0) > 0, "round \(round): nothing was acknowledged")
                inDoubt += object?["in_doubt"] as? Int ?? 0
            }
            // With 8 connections busy, some operation is between its prepared line and its
            // acknowledgement at almost every instant.
            #expect(inDoubt > 0)
        }
    }
}

@Suite("simulate: error labels and messages for the report")
struct SimulationErrorLabelTests {
    @Test func aFailureWithoutSQLSTATEIsLabelledInSnakeCase() {
        #expect(Simulation.errorCode(of: PostgresError(code: .connectionLost, message: "x")) == "connection_lost")
        #expect(Simulation.errorCode(of: SimulatorError.database(PostgresError(code: .cancelled, message: "x"))) == "cancelled")
        #expect(Simulation.errorCode(of: SimulatorError.unusableData("x")) == "app")
    }

    @Test func libpqsMultiLineMessagesAreStoredOnOneLine() {
        #expect(
            Simulation.oneLine("server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n")
                == "server closed the connection unexpectedly This probably means the server terminated abnormally")
    }
}
