import Billing
import Commands
import Foundation
import Testing

@testable import Server

/// The pure parts of the command route: decoding a body for a route, and what each failure of
/// the command layer is answered with.
@Suite("serve: command bodies and command-layer errors")
struct ExecutorCommandsTests {
    @Test func theRoutesNameIsTheCommandAndABodyNamingAnotherIsRefused() throws {
        let body = #"{"customer_id":"c-9","at":"2025-01-02T00:00:00Z"}"#
        let command = try ExecutorCommands.decode(name: "archive_customer", body: body)
        #expect(command.name == "archive_customer")
        let named = try ExecutorCommands.decode(
            name: "archive_customer",
            body: #"{"command":"archive_customer","customer_id":"c-9","at":"2025-01-02T00:00:00Z"}"#)
        #expect(named == command)
        #expect(throws: Problem.self) {
            try ExecutorCommands.decode(name: "create_customer", body: #"{"command":"archive_customer"}"#)
        }
        do {
            _ = try ExecutorCommands.decode(name: "archive_customer", body: #"{"customer_id":"c-9"}"#)
            Issue.record("a body without `at` decoded")
        } catch {
            #expect(error.code == "invalid_body")
            #expect(error.detail.contains("at"), "\(error.detail)")
        }
        do {
            _ = try ExecutorCommands.decode(name: "archive_customer", body: "[1]")
            Issue.record("an array decoded")
        } catch {
            #expect(error.code == "invalid_body")
        }
    }

    @Test func aFieldGivenTwiceIsRefused() {
        #expect(throws: Problem.self) {
            _ = try ExecutorCommands.decode(
                name: "archive_customer", body: #"{"customer_id":"c","customer_id":"d","at":"2025-01-02T00:00:00Z"}"#)
        }
    }

    @Test func eachRejectionCodeHasItsStatusAndKeepsItsCode() {
        let expected: [CommandRejection.Code: Int] = [
            .notFound: 404, .alreadyExists: 409, .invalidState: 422, .currencyMismatch: 422, .invalidAmount: 422,
            .exceedsLimit: 422, .invalidInput: 422,
        ]
        #expect(Set(expected.keys) == Set(CommandRejection.Code.allCases))
        for (code, status) in expected {
            let problem = ExecutorCommands.problem(CommandRejection(code, .invoice, "4489", "the rule's words"))
            #expect(problem.statusCode == status, "\(code)")
            #expect(problem.code == code.rawValue)
            #expect(problem.detail == "the rule's words")
        }
    }

    @Test func aConflictAfterTheRetriesIs409AndCountedAsAnAppendConflict() throws {
        let metrics = ServerMetrics()
        let problem = ExecutorCommands.problem(
            CommandError.conflict(command: "record_payment", attempts: 5, stream: "invoice-1"), metrics: metrics)
        #expect(problem.statusCode == 409)
        #expect(problem.code == "append_conflict")
        #expect(!problem.detail.contains("invoice-1"))
        let samples = try PrometheusText.parse(metrics.exposition())
        #expect(
            samples.first {
                $0.name == "ledgerlift_append_conflicts_total" && $0.labels == ["command": "record_payment"]
            }?.value
                == 1)
        let behind = ExecutorCommands.problem(
            CommandError.projectionBehind(readSchema: "ledgerlift_read", waited: .seconds(5)), metrics: metrics)
        #expect(behind.statusCode == 503)
        #expect(!behind.detail.contains("ledgerlift_read"))
        let bug = ExecutorCommands.problem(
            CommandError.invalidDecision(command: "x", reason: "SELECT secret"), metrics: metrics)
        #expect(bug == Problem.internalError)
    }
}
