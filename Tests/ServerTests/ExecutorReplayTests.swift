import Commands
import Foundation
import Postgres
import Server
import TestSupport
import Testing

/// A request id the command layer finds committed already (its stored response was lost — a
/// 503 after the commit is not stored) is answered as the idempotent replay it is.
@Suite("serve: the executor's replay of a committed request id")
struct ExecutorReplayTests {
    @Test func aCommittedRequestWhoseStoredResponseIsLostIsAnsweredWithIdempotentReplayedAndCountedAsAReplay()
        async throws
    {
        try await withEmptyStore { store in
            try await CommandRouteTests.server(store, mode: .primary) { server, client in
                let body = CommandRouteTests.createCustomer("srv-lost")
                let first = try await client.send(
                    "POST", "/commands/create_customer", body: body, headers: ["Idempotency-Key": "lost-1"])
                #expect(first.status == 200, "\(first.body)")
                #expect(first.header("Idempotent-Replayed") == nil)
                // The stored response is lost; the events (carrying the key as request id) are not.
                _ = try await withSession(store) { try $0.execute("DELETE FROM ledgerlift.idempotency_keys") }
                let again = try await client.send(
                    "POST", "/commands/create_customer", body: body, headers: ["Idempotency-Key": "lost-1"])
                #expect(again.status == 200, "\(again.body)")
                #expect(again.header("Idempotent-Replayed") == "true")
                let outcome = try JSONDecoder().decode(CommandOutcome.self, from: Data(again.body.utf8))
                #expect(outcome.replayed == true)
                #expect(outcome.events.map(\.type) == ["CustomerCreated"])
                #expect(try await CommandRouteTests.events(store, stream: "customer-srv-lost") == ["CustomerCreated"])
                let metrics = try PrometheusText.parse(server.metrics.exposition())
                #expect(metrics.first { $0.name == "ledgerlift_idempotent_replays_total" }?.value == 1)
                #expect(
                    metrics.first {
                        $0.name == "ledgerlift_commands_total"
                            && $0.labels == ["command": "create_customer", "outcome": "appended"]
                    }?.value == 1)
            }
        }
    }

    @Test func aKeyWhoseStoredResponseIsLostSentWithAnotherBodyIs422AndAppendsNothing() async throws {
        try await withEmptyStore { store in
            try await CommandRouteTests.server(store, mode: .primary) { _, client in
                let first = try await client.send(
                    "POST", "/commands/update_customer",
                    body: #"{"customer_id":"srv-reuse","email":"a@example.com","at":"2025-01-02T00:00:00Z"}"#,
                    headers: ["Idempotency-Key": "reuse-1"])
                #expect(first.status == 404, "\(first.body)")  // no such customer yet: fine, a rejection
                let created = try await client.send(
                    "POST", "/commands/create_customer", body: CommandRouteTests.createCustomer("srv-reuse"),
                    headers: ["Idempotency-Key": "reuse-2"])
                #expect(created.status == 200, "\(created.body)")
                // The stored response of reuse-2 is lost (expired, or a crash after the commit) …
                _ = try await withSession(store) { try $0.execute("DELETE FROM ledgerlift.idempotency_keys") }
                // … and the key comes back with another command on the same customer.
                let reused = try await client.send(
                    "POST", "/commands/update_customer",
                    body: #"{"customer_id":"srv-reuse","email":"b@example.com","at":"2030-01-02T00:00:00Z"}"#,
                    headers: ["Idempotency-Key": "reuse-2"])
                #expect(reused.status == 422, "\(reused.body)")
                #expect(try reused.json["code"] as? String == "idempotency_key_reused")
                #expect(try await CommandRouteTests.events(store, stream: "customer-srv-reuse") == ["CustomerCreated"])
            }
        }
    }
}
