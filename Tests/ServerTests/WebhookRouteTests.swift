import Foundation
import Postgres
import Server
import TestSupport
import Testing
import Webhooks

/// `POST /webhooks/stripe` over HTTP: the raw body and `Stripe-Signature` reach the handler,
/// outcomes are 200, refusals problem documents, and `/metrics` counts both.
@Suite("serve: POST /webhooks/stripe")
struct WebhookRouteTests {
    static let secret = "whsec_serve_test_Qm4Lzn8Xf3kQ"
    static let rolledSecret = "whsec_serve_test_new_7C1D2E3F"

    /// A `customer.created` as Stripe sends it: pretty-printed, keys in Stripe's order and a
    /// `\u00e9` escape — bytes a decode and re-encode would change, so the signature holds only
    /// if the route passes the body as received.
    static func customerCreated(event: String, customer: String, created: Int64 = 1_733_486_400) -> String {
        """
        {
          "id": "\(event)",
          "object": "event",
          "api_version": "2024-06-20",
          "created": \(created),
          "data": {
            "object": {
              "id": "\(customer)",
              "object": "customer",
              "balance": 0,
              "created": \(created),
              "currency": null,
              "email": "ada@example.com",
              "livemode": false,
              "metadata": {},
              "name": "Ada Lovelac\\u00e9"
            }
          },
          "livemode": false,
          "pending_webhooks": 1,
          "request": { "id": null, "idempotency_key": null },
          "type": "customer.created"
        }
        """
    }

    /// The headers of a delivery signed at `at` with `secret`.
    static func signed(_ payload: String, secret: String = secret, at: Date = Date()) -> [String: String] {
        [
            "Stripe-Signature": StripeSignature.header(
                payload: Array(payload.utf8), secret: secret, timestamp: Int64(at.timeIntervalSince1970)),
            "Content-Type": "application/json; charset=utf-8",
        ]
    }

    /// Events in the store, then deliveries recorded.
    static func totals(_ store: String) async throws -> [Int64] {
        try await withSession(store) { session in
            [
                try session.query("SELECT count(*) FROM ledgerlift.events").rows[0].decode(at: 0, as: Int64.self),
                try session.query("SELECT count(*) FROM ledgerlift.stripe_events").rows[0].decode(at: 0, as: Int64.self),
            ]
        }
    }

    static func server(
        _ store: String, secrets: [String] = [secret], _ body: @Sendable (LedgerliftServer, HTTPClient) async throws -> Void
    ) async throws {
        try await withServer(
            ServeConfiguration(storeDSN: store, projects: false, stripeWebhookSecrets: secrets), body)
    }

    @Test func aSignedDeliveryIsAppliedItsRetryIsADuplicateAndBadOrStaleSignaturesStoreNothing() async throws {
        try await withEmptyStore { store in
            try await Self.server(store) { server, client in
                let payload = Self.customerCreated(event: "evt_serve_1", customer: "cus_serve_1")
                let applied = try await client.send("POST", "/webhooks/stripe", body: payload, headers: Self.signed(payload))
                #expect(applied.status == 200, "\(applied.body)")
                #expect(applied.header("Content-Type") == "application/json")
                #expect(applied.body == #"{"received":true,"outcome":"applied","events":1}"#)
                #expect(try await CommandRouteTests.events(store, stream: "customer-cus_serve_1") == ["CustomerCreated"])
                let stored = try await withSession(store) { session in
                    try session.query("SELECT payload::text FROM ledgerlift.events WHERE stream_id = 'customer-cus_serve_1'")
                        .rows[0].decode(at: 0, as: String.self)
                }
                #expect(stored.contains("Ada Lovelacé"), "\(stored)")
                #expect(try await Self.totals(store) == [1, 1])

                // Stripe's retry of the same delivery (signed again, later): acknowledged, nothing new.
                let again = try await client.send(
                    "POST", "/webhooks/stripe", body: payload, headers: Self.signed(payload, at: Date().addingTimeInterval(5)))
                #expect(again.status == 200)
                #expect(again.body == #"{"received":true,"outcome":"duplicate","events":0}"#)
                #expect(try await Self.totals(store) == [1, 1])
                let deliveries = try await withSession(store) {
                    try StripeWebhookStore().delivery("evt_serve_1", in: $0)?.deliveries
                }
                #expect(deliveries == 2)

                // Another event, signed with a secret the server does not know: 400, nothing stored.
                let forgedPayload = Self.customerCreated(event: "evt_serve_2", customer: "cus_serve_2")
                let forged = try await client.send(
                    "POST", "/webhooks/stripe", body: forgedPayload,
                    headers: Self.signed(forgedPayload, secret: "whsec_someone_else"))
                #expect(forged.status == 400)
                #expect(forged.header("Content-Type") == "application/problem+json")
                #expect(try forged.json["code"] as? String == "invalid_stripe_signature")
                // A body changed after signing is forged too.
                let tampered = try await client.send(
                    "POST", "/webhooks/stripe", body: forgedPayload.replacing("ada@", with: "eve@"),
                    headers: Self.signed(forgedPayload))
                #expect(tampered.status == 400)
                #expect(try tampered.json["code"] as? String == "invalid_stripe_signature")
                let unsigned = try await client.send("POST", "/webhooks/stripe", body: forgedPayload)
                #expect(unsigned.status == 400)
                #expect(try unsigned.json["code"] as? String == "invalid_stripe_signature")

                // Correctly signed ten minutes ago: a replay outside the 5-minute tolerance.
                let stale = try await client.send(
                    "POST", "/webhooks/stripe", body: forgedPayload,
                    headers: Self.signed(forgedPayload, at: Date().addingTimeInterval(-600)))
                #expect(stale.status == 400)
                #expect(try stale.json["code"] as? String == "stripe_signature_expired")
                #expect(try await Self.totals(store) == [1, 1])
                #expect(try await CommandRouteTests.events(store, stream: "customer-cus_serve_2").isEmpty)

                // Signed, but not a Stripe event: 400, and the detail does not echo the body.
                let junk = #"{"secret_note":"do-not-echo-4242"}"#
                let unreadable = try await client.send("POST", "/webhooks/stripe", body: junk, headers: Self.signed(junk))
                #expect(unreadable.status == 400)
                #expect(try unreadable.json["code"] as? String == "invalid_stripe_event")
                #expect(try await Self.totals(store) == [1, 1])
                for answer in [forged, tampered, unsigned, stale, unreadable] {
                    ReadRouteTests.expectNoLeak(answer.body, path: "POST /webhooks/stripe")
                    for marker in ["ada@example.com", "eve@", "cus_serve", "evt_serve", "do-not-echo", "whsec_"] {
                        #expect(!answer.body.contains(marker), "leaks \(marker): \(answer.body)")
                    }
                }

                let samples = try PrometheusText.parse(try await client.get("/metrics").body)
                func value(_ name: String, _ labels: [String: String]) -> Double? {
                    samples.first { $0.name == name && $0.labels == labels }?.value
                }
                #expect(value("ledgerlift_webhook_deliveries_total", ["outcome": "applied"]) == 1)
                #expect(value("ledgerlift_webhook_deliveries_total", ["outcome": "duplicate"]) == 1)
                #expect(value("ledgerlift_webhook_deliveries_total", ["outcome": "stale"]) == nil)
                #expect(value("ledgerlift_webhook_rejections_total", ["reason": "invalid_signature"]) == 3)
                #expect(value("ledgerlift_webhook_rejections_total", ["reason": "stale_timestamp"]) == 1)
                #expect(value("ledgerlift_webhook_rejections_total", ["reason": "invalid_event"]) == 1)
                #expect(
                    value("ledgerlift_http_requests_total", ["route": "/webhooks/stripe", "method": "POST", "status": "200"])
                        == 2)
                #expect(
                    value("ledgerlift_http_requests_total", ["route": "/webhooks/stripe", "method": "POST", "status": "400"])
                        == 5)
                _ = server
            }
        }
    }

    @Test func eitherOfTwoSecretsVerifiesWhileOneIsRolledAndOutOfOrderEventsAreStale() async throws {
        try await withEmptyStore { store in
            try await Self.server(store, secrets: [Self.secret, Self.rolledSecret]) { _, client in
                let later = Self.customerCreated(event: "evt_roll_2", customer: "cus_roll", created: 1_733_486_500)
                    .replacing("\"customer.created\"", with: "\"customer.updated\"")
                let first = try await client.send(
                    "POST", "/webhooks/stripe", body: later, headers: Self.signed(later, secret: Self.rolledSecret))
                #expect(first.body == #"{"received":true,"outcome":"applied","events":1}"#)
                let earlier = Self.customerCreated(event: "evt_roll_1", customer: "cus_roll", created: 1_733_486_400)
                let second = try await client.send("POST", "/webhooks/stripe", body: earlier, headers: Self.signed(earlier))
                #expect(second.status == 200)
                #expect(second.body == #"{"received":true,"outcome":"stale","events":0}"#)
                #expect(try await Self.totals(store) == [1, 2])
                let samples = try PrometheusText.parse(try await client.get("/metrics").body)
                #expect(
                    samples.first { $0.name == "ledgerlift_webhook_deliveries_total" && $0.labels == ["outcome": "stale"] }?
                        .value == 1)
            }
        }
    }

    @Test func withoutSecretsTheRouteAnswers503WebhooksNotConfiguredAndStoresNothing() async throws {
        try await withEmptyStore { store in
            try await Self.server(store, secrets: []) { server, client in
                let payload = Self.customerCreated(event: "evt_off_1", customer: "cus_off")
                let answer = try await client.send("POST", "/webhooks/stripe", body: payload, headers: Self.signed(payload))
                #expect(answer.status == 503)
                #expect(try answer.json["code"] as? String == "webhooks_not_configured")
                #expect(try answer.json["detail"] as? String == Problem.webhooksNotConfigured.detail)
                #expect(try await Self.totals(store) == [0, 0])
                let samples = try PrometheusText.parse(server.metrics.exposition())
                #expect(
                    samples.first {
                        $0.name == "ledgerlift_webhook_rejections_total" && $0.labels == ["reason": "not_configured"]
                    }?.value == 1)
            }
        }
    }

    @Test func theSecretsVariableIsSplitAtCommasWithBlanksAndEmptyItemsDropped() {
        #expect(ServeConfiguration.stripeWebhookSecrets(fromEnvironmentValue: nil) == [])
        #expect(ServeConfiguration.stripeWebhookSecrets(fromEnvironmentValue: " , ") == [])
        #expect(ServeConfiguration.stripeWebhookSecrets(fromEnvironmentValue: "whsec_a") == ["whsec_a"])
        #expect(
            ServeConfiguration.stripeWebhookSecrets(fromEnvironmentValue: " whsec_old , whsec_new,,") == [
                "whsec_old", "whsec_new",
            ])
    }

    @Test func serveReadsTheSecretsFromTheEnvironmentNotFromAnOption() async throws {
        let help = try await ledgerlift(["serve", "--help"])
        #expect(help.stdout.contains("LEDGERLIFT_STRIPE_WEBHOOK_SECRETS"))
        #expect(!help.stdout.contains("--stripe"))
        #expect(!help.stdout.contains("--webhook"))
    }
}
