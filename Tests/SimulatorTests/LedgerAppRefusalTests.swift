import Foundation
import Mapping
import Postgres
import Synchronization
import TestSupport
import Testing

@testable import Simulator

/// ``LedgerApp``'s answers to serve's routing refusals and rejections, against a scripted HTTP
/// server (``TestHTTPServer``) standing in for serve; the dry runs run on the reference fixture.
@Suite("LedgerApp: routing refusals, retries and rejections")
struct LedgerAppRefusalTests {
    static func problem(_ status: Int, _ code: String) -> TestHTTPServer.Answer {
        .status(
            status,
            body:
                "{\"type\":\"https://ledgerlift.dev/problems/\(code)\",\"title\":\"t\",\"status\":\(status),\"detail\":\"d\",\"code\":\"\(code)\"}"
        )
    }

    static let ok = TestHTTPServer.Answer.status(200, body: "{\"command\":\"x\",\"replayed\":false}")

    /// Runs `kind` once through a LedgerApp talking to a server answering `answer` (called with
    /// the request's number, from 1).
    static func run(
        _ kind: OperationKind, budget: Duration = .seconds(3),
        answer: @escaping @Sendable (Int) -> TestHTTPServer.Answer
    ) async throws -> (
        result: Result<JournalEntry?, any Error>, requests: [TestHTTPServer.Request], prepared: Int, wait: Duration,
        app: LedgerApp
    ) {
        try await LegacyTestSupport.withReference { connection, dsn in
            let count = Mutex(0)
            let server = try TestHTTPServer { _ in
                answer(
                    count.withLock { count in
                        count += 1
                        return count
                    })
            }
            defer { server.stop() }
            let mapping = try MappingFile.load(
                path: try LegacyTestSupport.repositoryRoot().appendingPathComponent("fixtures/reference/mapping.yaml")
                    .path)
            let app = try LedgerApp(
                .init(
                    endpoint: try CandidateEndpoint(url: server.url), legacyDSN: dsn, mapping: mapping,
                    runToken: "0a1b2c3d",
                    routingBudget: budget))
            let worker = try await app.makeWorker()
            defer { worker.close() }
            let clock = try await LegacyTestSupport.dataClock(connection)
            let prepared = Mutex(0)
            let before = clock.current
            let result: Result<JournalEntry?, any Error>
            do {
                result = .success(
                    try await worker.perform(BillingOperation(id: 7, kind: kind, seed: 11), clock: clock) { _ in
                        prepared.withLock { $0 += 1 }
                    })
            } catch {
                result = .failure(error)
            }
            // The dry run left nothing behind in legacy (its writes carry a later business time).
            let written = try await connection.withSession { session in
                try session.query(
                    "SELECT count(*) FROM legacy.customers WHERE updated_at > $1::timestamptz::timestamp", [before]
                ).rows[0].decode(at: 0, as: Int64.self)
            }
            #expect(written == 0)
            return (result, server.requests, prepared.withLock { $0 }, worker.takeRoutedWait(), app)
        }
    }

    @Test func writesOnLegacyIsRetriedWithTheSameKeyUntilTheRoutingFlips() async throws {
        let outcome = try await Self.run(.editName) { n in n <= 3 ? Self.problem(409, "writes_on_legacy") : Self.ok }
        let entry = try #require(try outcome.result.get())
        #expect(entry.kind == .editName)
        #expect(outcome.requests.count == 4)
        #expect(Set(outcome.requests.map { $0.headers["idempotency-key"] }) == ["0a1b2c3d:7/1"])
        #expect(Set(outcome.requests.map(\.path)) == ["/commands/update_customer"])
        #expect(outcome.prepared == 1, "prepared once, before the first request")
        #expect(outcome.wait > .zero)
    }

    @Test func writesOnLegacyThroughoutTheBudgetSendsTheOperationBackToLegacy() async throws {
        let outcome = try await Self.run(.editName, budget: .milliseconds(100)) { _ in
            Self.problem(409, "writes_on_legacy")
        }
        guard case .failure(let error as LedgerAppError) = outcome.result,
            case .writesOnLegacy(7, "update_customer") = error
        else {
            Issue.record("expected writes_on_legacy, got \(outcome.result)")
            return
        }
        #expect(Simulation.errorCode(of: error) == LedgerAppError.writesOnLegacyCode)
        // How many requests fit in the budget depends on the machine's load (one, in a loaded
        // CI); that refusals are retried under the same key is writesOnLegacyIsRetried…'s.
        #expect(!outcome.requests.isEmpty)
        #expect(Set(outcome.requests.map { $0.headers["idempotency-key"] }) == ["0a1b2c3d:7/1"])
    }

    @Test func frozenWritesAreRetriedThenFail() async throws {
        let thawed = try await Self.run(.editName) { n in n <= 2 ? Self.problem(503, "writes_frozen") : Self.ok }
        #expect(try thawed.result.get() != nil)
        let frozen = try await Self.run(.editName, budget: .milliseconds(50)) { _ in Self.problem(503, "writes_frozen")
        }
        guard case .failure(let error as LedgerAppError) = frozen.result else {
            Issue.record("expected a failure, got \(frozen.result)")
            return
        }
        #expect(error.code == "writes_frozen")
    }

    @Test func aRuleRejectionOfTheFirstCommandIsNothingToActOn() async throws {
        let outcome = try await Self.run(.editName) { _ in Self.problem(422, "invalid_state") }
        #expect(try outcome.result.get() == nil)
        #expect(outcome.requests.count == 1)
        // Nothing was applied: the journal holds nothing of it (its line is written once the
        // ledger has answered every command).
        #expect(outcome.prepared == 0)
        #expect(outcome.app.rejectionCount == 1)
        #expect(outcome.app.rejections.first?.contains("update_customer answered 422 invalid_state") == true)
    }

    @Test func aRefusalAfterTheFirstCommandIsAnError() async throws {
        // sign_up is create_customer, then start_subscription.
        let outcome = try await Self.run(.signUp, budget: .milliseconds(50)) { n in
            n == 1 ? Self.ok : Self.problem(409, "writes_on_legacy")
        }
        guard case .failure(let error as LedgerAppError) = outcome.result else {
            Issue.record("expected a failure, got \(outcome.result)")
            return
        }
        #expect(error.code == "partially_applied")
        #expect(outcome.requests.first?.path == "/commands/create_customer")
        #expect(outcome.requests.last?.path == "/commands/start_subscription")
        #expect(outcome.requests.last?.headers["idempotency-key"] == "0a1b2c3d:7/2")
    }
}
