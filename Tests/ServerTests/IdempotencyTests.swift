import Foundation
import Postgres
import Server
import TestSupport
import Testing

/// A command handler with a visible effect: each run inserts a row and answers its id and a
/// fresh nonce, so a second run would be seen twice over (a row and a different body).
struct CountingHandler: CommandHandling {
    func handle(
        name: String, body: String, idempotencyKey: String?, legacyXid: UInt64?, on connection: Connection
    ) async throws
        -> IdempotencyStore.StoredResponse
    {
        let id = try await connection.withSession { session -> Int64 in
            // Widens the window in which concurrent duplicates overlap.
            _ = try session.query("SELECT pg_sleep(0.05)")
            return try session.query("INSERT INTO serve_test_effects (name) VALUES ($1) RETURNING id", [name]).rows[0]
                .decode(at: 0)
        }
        if body.contains("\"reject\"") {
            return .init(
                status: 422, contentType: "application/problem+json",
                body: #"{"type":"x","title":"Rejected","status":422,"detail":"effect \#(id)","code":"invalid_state"}"#)
        }
        return .init(
            status: 200, contentType: "application/json", body: #"{"effect":\#(id),"nonce":"\#(UUID().uuidString)"}"#)
    }
}

@Suite("serve: Idempotency-Key")
struct IdempotencyTests {
    static func effects(_ store: String) async throws -> Int64 {
        try await withSession(store) {
            try $0.query("SELECT count(*)::int8 FROM serve_test_effects").rows[0].decode(at: 0)
        }
    }

    @Test func theSameRequestAHundredTimesConcurrentlyHasOneEffectAndAHundredIdenticalResponses() async throws {
        try await withEmptyStore { store in
            try await withSession(store) {
                _ = try $0.execute("CREATE TABLE serve_test_effects (id bigserial PRIMARY KEY, name text)")
            }
            try await withServer(
                ServeConfiguration(storeDSN: store, projects: false), commandHandler: CountingHandler()
            ) { server, client in
                let body = #"{"customer_id":"c-1","amount":1200,"at":"2024-03-01T00:00:00Z"}"#
                let answers = try await withThrowingTaskGroup(of: HTTPAnswer.self) { group in
                    for _ in 0..<100 {
                        group.addTask {
                            try await client.send(
                                "POST", "/commands/record_payment", body: body, headers: ["Idempotency-Key": "k-100"])
                        }
                    }
                    return try await group.reduce(into: [HTTPAnswer]()) { $0.append($1) }
                }
                #expect(try await Self.effects(store) == 1)
                #expect(answers.count == 100)
                #expect(Set(answers.map(\.status)) == [200])
                #expect(Set(answers.map(\.body)).count == 1, "\(Set(answers.map(\.body)))")
                #expect(answers.filter { $0.header("Idempotent-Replayed") == "true" }.count == 99)
                #expect(server.metrics.exposition().contains("ledgerlift_idempotent_replays_total 99"))

                // The same body with its keys in another order and spaces is the same request.
                let reordered = try await client.send(
                    "POST", "/commands/record_payment",
                    body: #"{ "at":"2024-03-01T00:00:00Z", "amount":1200, "customer_id":"c-1" }"#,
                    headers: ["Idempotency-Key": "k-100"])
                #expect(reordered.status == 200)
                #expect(reordered.body == answers[0].body)
                #expect(reordered.header("Idempotent-Replayed") == "true")

                // Another body under the key: 422, nothing run.
                let reused = try await client.send(
                    "POST", "/commands/record_payment", body: #"{"customer_id":"c-1","amount":1300}"#,
                    headers: ["Idempotency-Key": "k-100"])
                #expect(reused.status == 422)
                #expect(try reused.json["code"] as? String == "idempotency_key_reused")
                #expect(reused.header("Content-Type") == "application/problem+json")
                // Another route under the key: another request too.
                let otherRoute = try await client.send(
                    "POST", "/commands/refund_payment", body: body, headers: ["Idempotency-Key": "k-100"])
                #expect(otherRoute.status == 422)
                #expect(try await Self.effects(store) == 1)

                // Without a key, each request runs.
                _ = try await client.send("POST", "/commands/record_payment", body: body)
                _ = try await client.send("POST", "/commands/record_payment", body: body)
                #expect(try await Self.effects(store) == 3)
            }
        }
    }

    @Test func aRejectionIsReplayedAnExpiredKeyRunsAgainAndIsPurgedAndABusyKeyAnswers409() async throws {
        try await withEmptyStore { store in
            try await withSession(store) {
                _ = try $0.execute("CREATE TABLE serve_test_effects (id bigserial PRIMARY KEY, name text)")
            }
            var configuration = ServeConfiguration(storeDSN: store, projects: false)
            configuration.idempotencyWait = .milliseconds(500)
            configuration.maximumBodyBytes = 4096
            try await withServer(configuration, commandHandler: CountingHandler()) { server, client in
                // A rejection is the command's answer: stored and replayed byte for byte.
                let first = try await client.send(
                    "POST", "/commands/void_invoice", body: #"{"reject":true}"#, headers: ["Idempotency-Key": "r-1"])
                let again = try await client.send(
                    "POST", "/commands/void_invoice", body: #"{"reject":true}"#, headers: ["Idempotency-Key": "r-1"])
                #expect(first.status == 422)
                #expect(again.status == 422)
                #expect(again.body == first.body)
                #expect(again.header("Content-Type") == "application/problem+json")
                #expect(again.header("Idempotent-Replayed") == "true")
                #expect(try await Self.effects(store) == 1)

                // Kept 24 hours: the row says so; once expired, the key runs again.
                let hours = try await withSession(store) {
                    try $0.query(
                        "SELECT round(extract(epoch FROM expires_at - created_at) / 3600)::int8 FROM ledgerlift.idempotency_keys WHERE idempotency_key = 'r-1'"
                    ).rows[0].decode(at: 0, as: Int64.self)
                }
                #expect(hours == 24)
                try await withSession(store) {
                    _ = try $0.execute(
                        "UPDATE ledgerlift.idempotency_keys SET expires_at = now() - interval '1 second' WHERE idempotency_key = 'r-1'"
                    )
                }
                let afterExpiry = try await client.send(
                    "POST", "/commands/void_invoice", body: #"{"other":1}"#, headers: ["Idempotency-Key": "r-1"])
                #expect(afterExpiry.status == 200)
                #expect(afterExpiry.header("Idempotent-Replayed") == nil)
                #expect(try await Self.effects(store) == 2)
                try await withSession(store) {
                    _ = try $0.execute(
                        "UPDATE ledgerlift.idempotency_keys SET expires_at = now() - interval '1 second'")
                }
                let purged = try await server.pool.withConnection { try await server.idempotency.purgeExpired(on: $0) }
                #expect(purged == 1)

                // A key held by a request still running: after the bounded wait, 409.
                let holder = try await Connection.connect(store)
                defer { holder.close() }
                let lock = server.idempotency.lock("busy-1")
                try await holder.withSession { try $0.lock(lock) }
                let busy = try await client.send(
                    "POST", "/commands/void_invoice", body: "{}", headers: ["Idempotency-Key": "busy-1"])
                #expect(busy.status == 409)
                #expect(try busy.json["code"] as? String == "idempotency_key_in_use")
                _ = try await holder.withSession { try $0.unlock(lock) }
                let free = try await client.send(
                    "POST", "/commands/void_invoice", body: "{}", headers: ["Idempotency-Key": "busy-1"])
                #expect(free.status == 200)

                // A body over the limit: 413, nothing run.
                let large = try await client.send(
                    "POST", "/commands/void_invoice",
                    body: #"{"pad":""# + String(repeating: "x", count: 10_000) + #""}"#)
                #expect(large.status == 413)
                #expect(try large.json["code"] as? String == "payload_too_large")
                #expect(try await Self.effects(store) == 3)

                // A key that is not 1 to 255 printable characters.
                let long = try await client.send(
                    "POST", "/commands/void_invoice", body: "{}",
                    headers: ["Idempotency-Key": String(repeating: "k", count: 256)])
                #expect(long.status == 400)
                #expect(try long.json["code"] as? String == "invalid_idempotency_key")
            }
        }
    }
}
