import Commands
import CoreMetrics
import Metrics
import Prometheus

/// What `serve` counts, recorded through swift-metrics into a Prometheus registry of its own
/// (no global bootstrap: several servers — the tests' — live in one process) and served as
/// Prometheus text at `GET /metrics`.
///
/// Every metric keeps one set of label names, as Prometheus requires:
/// - `ledgerlift_http_requests_total{route,method,status}` and
///   `ledgerlift_http_request_duration_seconds{route,method}` (a histogram);
/// - `ledgerlift_commands_total{command,outcome}` (`appended`, `decided`, `rejected`, `failed`);
/// - `ledgerlift_append_conflicts_total{command}`: commands that gave up on a concurrent writer
///   after the executor's retries;
/// - `ledgerlift_idempotent_replays_total`: responses replayed from an `Idempotency-Key`;
/// - `ledgerlift_candidate_commands_total{recorded}`: commands candidate mode received, recorded
///   (`true`, they had an `Idempotency-Key`) or not (`false`: they can never be compared);
/// - `ledgerlift_webhook_deliveries_total{outcome}`: Stripe deliveries acknowledged, by outcome
///   (`applied`, `duplicate` — the dedups —, `stale`, `ignored`);
/// - `ledgerlift_webhook_rejections_total{reason}`: Stripe deliveries refused (`invalid_signature`,
///   `stale_timestamp`, `invalid_event`, `unresolved_reference`, `conflict`, `store_error`,
///   `payload_too_large`, `not_configured`);
/// - `ledgerlift_projector_lag_events` and `ledgerlift_projector_lag_seconds`: how far the
///   read models are behind the store (refreshed by `/health` and each scrape); absent while
///   it is unknown — the store unreachable or the read models not built — because a 0 there
///   would read as "caught up" exactly when nothing is known (alert on `absent(...)`).
public final class ServerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private let replays: CoreMetrics.Counter

    public init() {
        registry = PrometheusCollectorRegistry()
        factory = PrometheusMetricsFactory(registry: registry)
        replays = CoreMetrics.Counter(label: "ledgerlift_idempotent_replays_total", factory: factory)
    }

    /// One answered request. `route` is the route's template (`/invoices/{id}`), never the
    /// path a client sent, so the label set stays bounded.
    public func request(route: String, method: String, status: Int, duration: Duration) {
        CoreMetrics.Counter(
            label: "ledgerlift_http_requests_total",
            dimensions: [("route", route), ("method", method), ("status", String(status))],
            factory: factory
        ).increment()
        CoreMetrics.Timer(
            label: "ledgerlift_http_request_duration_seconds", dimensions: [("route", route), ("method", method)],
            factory: factory
        ).recordNanoseconds(
            duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }

    public func command(_ name: String, outcome: String) {
        CoreMetrics.Counter(
            label: "ledgerlift_commands_total", dimensions: [("command", name), ("outcome", outcome)], factory: factory
        ).increment()
    }

    public func appendConflict(_ command: String) {
        CoreMetrics.Counter(
            label: "ledgerlift_append_conflicts_total", dimensions: [("command", command)], factory: factory
        )
        .increment()
    }

    public func idempotentReplay() { replays.increment() }

    public func candidateCommand(recorded: Bool) {
        CoreMetrics.Counter(
            label: "ledgerlift_candidate_commands_total", dimensions: [("recorded", String(recorded))],
            factory: factory
        ).increment()
    }

    /// One Stripe delivery answered 200; `outcome` is ``Webhooks/WebhookOutcome/kind``.
    public func webhookDelivery(_ outcome: String) {
        CoreMetrics.Counter(
            label: "ledgerlift_webhook_deliveries_total", dimensions: [("outcome", outcome)], factory: factory
        ).increment()
    }

    /// One Stripe delivery refused (4xx or 5xx), by a reason from a fixed set.
    public func webhookRejection(_ reason: String) {
        CoreMetrics.Counter(
            label: "ledgerlift_webhook_rejections_total", dimensions: [("reason", reason)], factory: factory
        ).increment()
    }

    /// `ledgerlift_candidate_comparisons{verdict}`: candidate commands in the store by the shadow
    /// tailer's verdict (`match`, `mismatch`, `unverifiable`, `pending`), as last read (at a scrape).
    public func candidateComparisons(_ summary: CandidateCommandLog.Summary) {
        for (verdict, count) in [
            ("match", summary.match), ("mismatch", summary.mismatch), ("unverifiable", summary.unverifiable),
            ("pending", summary.pending),
        ] {
            CoreMetrics.Gauge(
                label: "ledgerlift_candidate_comparisons", dimensions: [("verdict", verdict)], factory: factory
            )
            .record(Double(count))
        }
    }

    /// `ledgerlift_projector_lag_events` and `ledgerlift_projector_lag_seconds`.
    static var lagGauges: [MetricNameDescriptor] {
        ["events", "seconds"].map {
            MetricNameDescriptor(
                namespace: "ledgerlift", subsystem: "projector", metricName: "lag", unitName: $0,
                helpText: "How far the read models are behind the event store (absent while unknown).")
        }
    }

    /// The lag as last measured (registering the gauges again after ``projectorLagUnknown()``).
    public func projectorLag(events: Int64, seconds: Double) {
        registry.makeGauge(descriptor: Self.lagGauges[0]).set(Double(events))
        registry.makeGauge(descriptor: Self.lagGauges[1]).set(seconds)
    }

    /// The lag cannot be measured now: both gauges leave the exposition until it can.
    public func projectorLagUnknown() {
        for descriptor in Self.lagGauges { registry.unregisterGauge(registry.makeGauge(descriptor: descriptor)) }
    }

    /// The Prometheus text exposition of everything recorded.
    public func exposition() -> String { registry.emitToString() }
}
