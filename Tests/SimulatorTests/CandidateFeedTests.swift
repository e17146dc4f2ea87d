import Commands
import Foundation
import Mapping
import Postgres
import Shadow
import Synchronization
import TestSupport
import Testing

@testable import Simulator

/// `simulate --candidate`: each legacy operation's commands reach the candidate from inside its
/// transaction, keyed and naming the transaction; a candidate that is down, hung or refusing
/// never fails or rolls back a legacy operation.
@Suite struct CandidateFeedTests {
    static var mappingPath: String {
        get throws {
            try LegacyTestSupport.repositoryRoot().appendingPathComponent("fixtures/reference/mapping.yaml").path
        }
    }

    /// A fresh reference legacy database with shadow capture installed for the reference mapping.
    static func withCapturedReference<T>(
        _ label: String = #function, _ body: (_ connection: Connection, _ dsn: String) async throws -> T
    ) async throws -> T {
        try await LegacyTestSupport.withReference(label) { connection, dsn in
            let mapping = try MappingFile.load(path: try mappingPath)
            _ = try await connection.withSession { try CaptureInstaller().install(mapping, in: $0) }
            return try await body(connection, dsn)
        }
    }

    /// Runs `operations` operations (seed 16, one connection) with the candidate at `url`.
    static func run(
        dsn: String, url: String, operations: UInt64 = 40, timeout: Duration = .seconds(2),
        pause: Duration = .zero, connection: Connection
    ) async throws -> (SimulationReport, CandidateFeed) {
        let feed = try CandidateFeed(
            .init(
                endpoint: try CandidateEndpoint(url: url), mapping: try MappingFile.load(path: try mappingPath),
                legacyDSN: dsn, timeout: timeout, pauseAfterFailure: pause))
        let simulation = try Simulation(
            .init(
                app: LegacySQLApp(dsn: dsn, candidate: feed), connections: 1, stop: .operations(operations), seed: 16,
                clock: try await LegacyTestSupport.dataClock(connection)))
        return (try await simulation.run(), feed)
    }

    @Test func everyOperationsCommandsArriveBeforeItsCommitKeyedAndNamingItsTransaction() async throws {
        try await Self.withCapturedReference { connection, dsn in
            // The server asks legacy, while it holds the request, whether the transaction has
            // committed yet: it must not have.
            let observer = try Connection.connectBlocking(dsn)
            defer { observer.close() }
            let statuses = Mutex([String: String]())
            let server = try TestHTTPServer { request in
                let xid = request.headers["ledgerlift-legacy-xid"] ?? ""
                let status = try? observer.withSessionBlocking { session in
                    try session.query("SELECT pg_xact_status($1::xid8)", [xid]).rows[0].decode(at: 0, as: String?.self)
                }
                statuses.withLock { $0[xid] = (status ?? nil) ?? "unknown" }
                return .status(202, body: "{\"recorded\":true}")
            }
            defer { server.stop() }
            let (report, feed) = try await Self.run(dsn: dsn, url: server.url, connection: connection)
            let figures = try #require(report.candidate)
            let requests = server.requests

            #expect(report.total.failed == 0)
            #expect(report.total.acknowledged > 20, "\(report.text)")
            #expect(figures.url == server.url)
            #expect(figures.runToken == feed.configuration.runToken)
            #expect(figures.runToken.count == 8 && figures.runToken.allSatisfy(\.isHexDigit))
            // Every acknowledged operation was fed and translated; every command answered 202.
            #expect(figures.operations == report.total.acknowledged, "\(figures.textLines)")
            #expect(figures.unreadable == 0, "\(figures.samples)")
            #expect(figures.untranslatable == 0, "\(figures.samples)")
            #expect(figures.skipped == 0)
            #expect(figures.sent == requests.count)
            #expect(figures.commands == requests.count)
            #expect(figures.answered == ["202": requests.count])
            #expect(figures.failed == 0)
            #expect(figures.notSent == 0)
            #expect(figures.samples.isEmpty)

            // Keys: `<token>:<op>/<n>`, n from 1 without gaps; one xid per operation, distinct.
            var byOperation = [UInt64: [(n: Int, xid: String)]]()
            for request in requests {
                #expect(request.method == "POST")
                let key = try #require(request.headers["idempotency-key"])
                let parts = key.split(separator: ":")
                #expect(parts.count == 2 && parts[0] == figures.runToken, "\(key)")
                let opAndN = parts[1].split(separator: "/")
                let op = try #require(UInt64(opAndN[0]))
                let n = try #require(Int(opAndN[1]))
                let xid = try #require(request.headers["ledgerlift-legacy-xid"])
                #expect(UInt64(xid) != nil, "\(xid)")
                byOperation[op, default: []].append((n, xid))
                // The body is the command, and the path names it.
                let command = try JSONDecoder().decode(BillingCommand.self, from: Data(request.body.utf8))
                #expect(request.path == "/commands/\(command.name)")
                #expect(request.headers["content-type"] == "application/json")
            }
            #expect(byOperation.count == figures.operations)
            for (op, sent) in byOperation {
                #expect(sent.map(\.n) == Array(1...sent.count), "op \(op)")
                #expect(Set(sent.map(\.xid)).count == 1, "op \(op)")
            }
            let xids = byOperation.values.map { $0[0].xid }
            #expect(Set(xids).count == xids.count)
            // Each was in progress while the candidate held its request, and committed after.
            #expect(Set(statuses.withLock { $0 }.values) == ["in progress"])
            let committed = try await connection.query(
                "SELECT count(*) FROM unnest($1::xid8[]) AS x WHERE pg_xact_status(x) = 'committed'",
                [PostgresArray(xids)]
            ).rows[0].decode(at: 0, as: Int64.self)
            #expect(committed == Int64(xids.count))
            // The outbox holds each transaction's changes: the tailer will see these xids.
            let captured = try await connection.query(
                "SELECT count(DISTINCT xid) FROM ledgerlift_capture.changes WHERE xid = ANY($1::xid8[])",
                [PostgresArray(xids)]
            ).rows[0].decode(at: 0, as: Int64.self)
            #expect(captured == Int64(xids.count))
            // One keep-alive connection served the whole run.
            #expect(server.connections == 1)

            // The report says it, in JSON and in text.
            let json = try #require(try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any])
            let candidate = try #require(json["candidate"] as? [String: Any])
            #expect(
                Set(candidate.keys) == [
                    "url", "run_token", "operations", "skipped", "unreadable", "untranslatable", "commands", "sent",
                    "answered", "failed", "not_sent", "samples",
                ])
            #expect(candidate["answered"] as? [String: Int] == ["202": requests.count])
            #expect(report.text.contains("candidate: \(server.url) (run token \(figures.runToken))"))
            #expect(report.text.contains("answers: \(requests.count) × 202"))
        }
    }

    /// The same operations with a dead candidate write the same legacy rows as without one.
    @Test func aDeadCandidateNeverFailsOrRollsBackAnOperation() async throws {
        let url = "http://127.0.0.1:\(try deadPort())"
        let (withDead, figures) = try await Self.withCapturedReference("dead_candidate") { connection, dsn in
            let (report, _) = try await Self.run(dsn: dsn, url: url, operations: 25, connection: connection)
            return (
                try await LegacyTestSupport.legacyRows(connection), try #require(report.candidate, "\(report.text)")
            )
        }
        let without = try await Self.withCapturedReference("no_candidate") { connection, dsn in
            let simulation = try Simulation(
                .init(
                    app: LegacySQLApp(dsn: dsn), connections: 1, stop: .operations(25), seed: 16,
                    clock: try await LegacyTestSupport.dataClock(connection)))
            let report = try await simulation.run()
            #expect(report.total.failed == 0)
            #expect(report.candidate == nil)
            return try await LegacyTestSupport.legacyRows(connection)
        }
        #expect(withDead == without)
        // Each fed operation's first command failed to connect; the rest of its commands were not sent.
        #expect(figures.operations > 10)
        #expect(figures.failed == figures.operations)
        #expect(figures.sent == figures.operations)
        #expect(figures.notSent == figures.commands - figures.sent)
        #expect(figures.answered.isEmpty)
        #expect(figures.samples.count == 10)
        #expect(figures.samples.allSatisfy { $0.contains("could not connect to the candidate") }, "\(figures.samples)")
        #expect(figures.hasProblems)
    }

    /// A hung candidate costs one timeout; the pause after it keeps the next operations from
    /// waiting too (counted `skipped`), and every operation commits.
    @Test func aHungCandidateCostsOneTimeoutAndTheRunGoesOn() async throws {
        try await Self.withCapturedReference { connection, dsn in
            let server = try TestHTTPServer { _ in .silence }
            defer { server.stop() }
            let (report, _) = try await Self.run(
                dsn: dsn, url: server.url, operations: 20, timeout: .milliseconds(300), pause: .seconds(600),
                connection: connection)
            let figures = try #require(report.candidate)
            #expect(report.total.failed == 0)
            #expect(figures.operations == report.total.acknowledged)
            #expect(figures.sent == 1)
            #expect(figures.failed == 1)
            #expect(figures.skipped == figures.operations - 1)
            #expect(figures.samples.count == 1)
            #expect(figures.samples.first?.contains("did not answer in time") == true, "\(figures.samples)")
            #expect(server.requests.count == 1)
        }
    }

    /// A candidate answering errors is counted by status and sampled; the operation's later
    /// commands are still sent (the candidate records rejections too).
    @Test func errorAnswersAreCountedByStatusAndSampled() async throws {
        try await Self.withCapturedReference { connection, dsn in
            let server = try TestHTTPServer { _ in .status(422, body: "{\"code\":\"invalid_state\"}") }
            defer { server.stop() }
            let (report, _) = try await Self.run(dsn: dsn, url: server.url, operations: 15, connection: connection)
            let figures = try #require(report.candidate)
            #expect(report.total.failed == 0)
            #expect(figures.sent == figures.commands)
            #expect(figures.answered == ["422": figures.sent])
            #expect(figures.failed == 0)
            #expect(figures.notSent == 0)
            #expect(figures.samples.count == min(10, figures.sent))
            #expect(
                figures.samples.first?.contains("answered 422: {\"code\":\"invalid_state\"}") == true,
                "\(figures.samples)")
        }
    }

    @Test func aLegacyDatabaseWithoutCaptureRefusesTheFeed() async throws {
        _ = try await LegacyTestSupport.withReference { _, dsn in
            #expect {
                _ = try CandidateFeed(
                    .init(
                        endpoint: try CandidateEndpoint(url: "http://127.0.0.1:1"),
                        mapping: try MappingFile.load(path: try Self.mappingPath), legacyDSN: dsn))
            } throws: { error in
                guard case .unusableLegacy(let why) = error as? CandidateFeedError else { return false }
                return why.contains("ledgerlift shadow install")
            }
        }
    }
}
