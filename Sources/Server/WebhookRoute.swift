import Commands
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Postgres
import Webhooks

extension LedgerliftServer {
    /// `POST /webhooks/stripe`: the body's bytes as received (Stripe signs them; decoding and
    /// re-encoding would change them) and the `Stripe-Signature` header go to the
    /// ``Webhooks/StripeWebhookHandler``; its outcome is 200, its errors problem documents.
    ///
    /// Statuses follow what Stripe does with them: every outcome — applied, duplicate, stale,
    /// ignored — is 200, so Stripe stops delivering it; a delivery that cannot be trusted or read
    /// is 400 (Stripe's retries would fail the same way, and nothing was stored); one that can
    /// succeed later (a reference not in the ledger yet, concurrent writers, the store) is 5xx,
    /// so Stripe delivers it again. Problem details are written here: they never quote the
    /// payload (ids, amounts, e-mails) or a database message.
    func stripeWebhook(_ request: Request) async throws -> Response {
        guard let handler = webhookHandler else {
            metrics.webhookRejection("not_configured")
            throw Problem.webhooksNotConfigured
        }
        var request = request
        let limit = configuration.maximumBodyBytes
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: limit)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            metrics.webhookRejection("payload_too_large")
            throw Problem.payloadTooLarge(limit: limit)
        }
        let payload = Array(buffer.readableBytesView)
        guard let header = request.headers[.stripeSignature] else {
            metrics.webhookRejection("invalid_signature")
            throw Problem(
                .badRequest, code: "invalid_stripe_signature", title: "Invalid Stripe-Signature",
                detail: "the request has no Stripe-Signature header")
        }
        let outcome: WebhookOutcome
        do {
            outcome = try await pool.withConnection { connection in
                try await handler.handle(payload: payload, signatureHeader: header, now: Date(), on: connection)
            }
        } catch {
            let (reason, problem) = Self.webhookProblem(for: error)
            metrics.webhookRejection(reason)
            if let problem {
                if problem.status.code >= 500 {
                    logger.warning("POST /webhooks/stripe: \(Self.loggable(error))")
                }
                throw problem
            }
            throw error  // a database error: the middleware answers it (503 or 500) and logs it
        }
        metrics.webhookDelivery(outcome.kind)
        let events: Int
        if case .applied(let n) = outcome { events = n } else { events = 0 }
        return Self.json(.ok, "{\"received\":true,\"outcome\":\"\(outcome.kind)\",\"events\":\(events)}")
    }

    /// The rejection reason counted in `/metrics` and the problem answering a handler's error
    /// (`nil` for a database error, which the middleware answers like any route's).
    static func webhookProblem(for error: any Error) -> (reason: String, problem: Problem?) {
        switch error {
        case let error as StripeSignatureError:
            switch error {
            case .timestampOutsideTolerance:
                return (
                    "stale_timestamp",
                    Problem(
                        .badRequest, code: "stripe_signature_expired", title: "Stripe-Signature timestamp outside tolerance",
                        detail: Problem.printable(error.description))
                )
            case .noSecrets:
                return ("not_configured", Problem.webhooksNotConfigured)
            case .malformedHeader, .noV1Signature, .noMatch:
                // The header's own words only: it is not the payload.
                return (
                    "invalid_signature",
                    Problem(
                        .badRequest, code: "invalid_stripe_signature", title: "Invalid Stripe-Signature",
                        detail: Problem.printable(error.description))
                )
            }
        case let error as StripeEventError:
            let detail =
                switch error {
                case .notJSON: "the body is not a JSON object"
                case .missingField(_, let field): "the event has no \(field), which every Stripe event has"
                case .invalidObject: "the event's object lacks a field the mapping needs or holds a value it cannot map"
                }
            return (
                "invalid_event",
                Problem(.badRequest, code: "invalid_stripe_event", title: "Unreadable Stripe event", detail: detail)
            )
        case let routed as WritesRoutedElsewhere:
            // Stripe delivers again on any non-2xx: the event is applied once writes are the ledger's.
            var problem = Problem.writesRouted(routed)
            problem.retryAfterSeconds = problem.retryAfterSeconds ?? 60
            return ("writes_routed", problem)
        case is StripeUnresolvedReference:
            return (
                "unresolved_reference",
                Problem(
                    .serviceUnavailable, code: "stripe_reference_unresolved", title: "Stripe event cannot be applied yet",
                    detail:
                        "the event refers to an object the ledger does not hold yet; nothing was stored, deliver it again later"
                )
            )
        case is StripeWebhookError:
            return (
                "conflict",
                Problem(
                    .internalServerError, code: "webhook_conflict", title: "Concurrent writers",
                    detail:
                        "a stream the event writes kept moving under concurrent writers; nothing was stored, deliver it again"
                )
            )
        default:
            return ("store_error", nil)
        }
    }
}

extension Problem {
    /// `POST /webhooks/stripe` on a server started without signing secrets: 503, so Stripe
    /// keeps the deliveries and retries them once the secret is configured.
    public static let webhooksNotConfigured = Problem(
        .serviceUnavailable, code: "webhooks_not_configured", title: "Stripe webhooks not configured",
        detail:
            "this server was started without \(ServeConfiguration.stripeWebhookSecretsVariable); set it to the endpoint's signing secret(s)"
    )
}

extension HTTPField.Name {
    static let stripeSignature = HTTPField.Name("Stripe-Signature")!
}
