import Commands
import Foundation
import Postgres
import Server
import TestSupport
import Testing

/// `POST /commands/{name}` on the real executor: appended and readable at once in primary
/// mode, once per `Idempotency-Key`, rejections as problem documents with the rule's code, and
/// nothing appended in candidate mode.
@Suite("serve: command routes on the executor")
struct CommandRouteTests {
    static func server(
        _ store: String, mode: ServeMode, _ body: @Sendable (LedgerliftServer, HTTPClient) async throws -> Void
    )
        async throws
    {
        let configuration = ServeConfiguration(storeDSN: store, mode: mode)
        let metrics = ServerMetrics()
        // Read-your-write is what these tests check, so the response waits for the read models
        // as long as a loaded CI machine needs (the first one builds them: seconds to minutes),
        // not the production 5 s after which it answers anyway.
        let commands = ExecutorCommands(
            executor: CommandExecutor(), mode: mode, metrics: metrics, projectionWait: .seconds(180))
        try await withServer(configuration, commandHandler: commands, metrics: metrics, body)
    }

    static func events(_ store: String, stream: String) async throws -> [String] {
        try await withSession(store) { session in
            try session.query(
                "SELECT event_type FROM ledgerlift.events WHERE stream_id = $1 ORDER BY stream_version", [stream]
            ).rows
                .map { try $0.decode(at: 0, as: String.self) }
        }
    }

    static func createCustomer(_ id: String) -> String {
        #"{"customer_id":"\#(id)","email":"\#(id)@example.com","name":"Serve Test","currency":"USD","at":"2025-01-02T03:04:05Z"}"#
    }

    @Test func aCommandIsAppendedAndAReadAfterItsResponseSeesIt() async throws {
        try await withEmptyStore { store in
            try await Self.server(store, mode: .primary) { server, client in
                let created = try await client.send(
                    "POST", "/commands/create_customer", body: Self.createCustomer("srv-1"))
                #expect(created.status == 200, "\(created.body)")
                #expect(created.header("Content-Type") == "application/json")
                let outcome = try JSONDecoder().decode(CommandOutcome.self, from: Data(created.body.utf8))
                #expect(outcome.command == "create_customer")
                #expect(outcome.events.map(\.type) == ["CustomerCreated"])
                #expect(outcome.events.map(\.streamID) == ["customer-srv-1"])
                #expect(outcome.rows["customer-srv-1"]?["email"] == "srv-1@example.com")
                #expect(try await Self.events(store, stream: "customer-srv-1") == ["CustomerCreated"])
                // Read your write: the serve projector took the event in before the response.
                let balance = try await client.get("/customers/srv-1/balance")
                #expect(balance.status == 200, "\(balance.body)")
                #expect(try balance.json["customer_id"] as? String == "srv-1")

                // Rejections: the rule's code and status, a problem document, nothing appended.
                let again = try await client.send(
                    "POST", "/commands/create_customer", body: Self.createCustomer("srv-1"))
                #expect(again.status == 409)
                #expect(again.header("Content-Type") == "application/problem+json")
                #expect(try again.json["code"] as? String == "already_exists")
                let missing = try await client.send(
                    "POST", "/commands/update_customer",
                    body: #"{"customer_id":"nobody","name":"X","at":"2025-01-03T00:00:00Z"}"#)
                #expect(missing.status == 404)
                #expect(try missing.json["code"] as? String == "not_found")
                let nothing = try await client.send(
                    "POST", "/commands/update_customer", body: #"{"customer_id":"srv-1","at":"2025-01-03T00:00:00Z"}"#)
                #expect(nothing.status == 422)
                #expect(try nothing.json["code"] as? String == "invalid_input")
                #expect(try await Self.events(store, stream: "customer-srv-1") == ["CustomerCreated"])

                // Bodies that are no command of the route: 400, before anything runs.
                let unknownField = try await client.send(
                    "POST", "/commands/create_customer",
                    body: #"{"customer_id":"srv-2","at":"2025-01-02T00:00:00Z","colour":"red"}"#)
                #expect(unknownField.status == 400)
                #expect(try unknownField.json["code"] as? String == "invalid_body")
                let mismatch = try await client.send(
                    "POST", "/commands/create_customer",
                    body: #"{"command":"archive_customer","customer_id":"srv-1","at":"2025-01-02T00:00:00Z"}"#)
                #expect(mismatch.status == 400)
                #expect(try mismatch.json["code"] as? String == "command_mismatch")
                let missingField = try await client.send(
                    "POST", "/commands/create_customer", body: #"{"customer_id":"srv-2"}"#)
                #expect(missingField.status == 400)
                #expect(try missingField.json["code"] as? String == "invalid_body")
                for answer in [unknownField, mismatch, missingField, again, missing] {
                    ReadRouteTests.expectNoLeak(answer.body, path: "POST /commands")
                }
                #expect(try await Self.events(store, stream: "customer-srv-2").isEmpty)

                let metrics = try PrometheusText.parse(server.metrics.exposition())
                func value(_ name: String, _ labels: [String: String]) -> Double? {
                    metrics.first { $0.name == name && $0.labels == labels }?.value
                }
                #expect(value("ledgerlift_commands_total", ["command": "create_customer", "outcome": "appended"]) == 1)
                #expect(value("ledgerlift_commands_total", ["command": "create_customer", "outcome": "rejected"]) == 1)
                #expect(value("ledgerlift_commands_total", ["command": "update_customer", "outcome": "rejected"]) == 2)
            }
        }
    }

    @Test func theSameCommandAHundredTimesConcurrentlyWithOneKeyAppendsOnceAndAnswersAHundredIdenticalResponses()
        async throws
    {
        try await withEmptyStore { store in
            try await Self.server(store, mode: .primary) { server, client in
                let body = Self.createCustomer("srv-100")
                let answers = try await withThrowingTaskGroup(of: HTTPAnswer.self) { group in
                    for _ in 0..<100 {
                        group.addTask {
                            try await client.send(
                                "POST", "/commands/create_customer", body: body, headers: ["Idempotency-Key": "op-100"])
                        }
                    }
                    return try await group.reduce(into: [HTTPAnswer]()) { $0.append($1) }
                }
                #expect(try await Self.events(store, stream: "customer-srv-100") == ["CustomerCreated"])
                #expect(Set(answers.map(\.status)) == [200])
                #expect(Set(answers.map(\.body)).count == 1)
                #expect(answers.filter { $0.header("Idempotent-Replayed") == "true" }.count == 99)
                let metrics = try PrometheusText.parse(server.metrics.exposition())
                #expect(metrics.first { $0.name == "ledgerlift_idempotent_replays_total" }?.value == 99)
                #expect(
                    metrics.first { $0.name == "ledgerlift_commands_total" && $0.labels["outcome"] == "appended" }?
                        .value == 1)
                // The key's events carry it as their request id.
                let requestIDs = try await withSession(store) { session in
                    try session.query(
                        "SELECT DISTINCT metadata->>'request_id' FROM ledgerlift.events WHERE stream_id = 'customer-srv-100'"
                    )
                    .rows.map { try $0.decode(at: 0, as: String.self) }
                }
                #expect(requestIDs == ["op-100"])
            }
        }
    }

    @Test func candidateModeDecidesAndAppendsNothing() async throws {
        try await withEmptyStore { store in
            try await Self.server(store, mode: .candidate) { _, client in
                let decided = try await client.send(
                    "POST", "/commands/create_customer", body: Self.createCustomer("srv-c"))
                #expect(decided.status == 202, "\(decided.body)")
                let json = try decided.json
                #expect(json["mode"] as? String == "candidate")
                #expect(json["command"] as? String == "create_customer")
                let events = try #require(json["events"] as? [[String: Any]])
                #expect(events.map { $0["type"] as? String } == ["CustomerCreated"])
                let rows = try #require(json["rows"] as? [String: [String: Any]])
                #expect(rows["customer-srv-c"]?["email"] as? String == "srv-c@example.com")
                #expect(try await Self.events(store, stream: "customer-srv-c").isEmpty)
                let total = try await withSession(store) {
                    try $0.query("SELECT count(*)::int8 FROM ledgerlift.events").rows[0].decode(at: 0, as: Int64.self)
                }
                #expect(total == 0)
                // Rules still apply.
                let bad = try await client.send(
                    "POST", "/commands/create_customer",
                    body: #"{"customer_id":"srv-d","currency":"ZZZ","at":"2025-01-02T00:00:00Z"}"#)
                #expect(bad.status == 422)
                #expect(try bad.json["code"] as? String == "invalid_input")
            }
        }
    }
}
