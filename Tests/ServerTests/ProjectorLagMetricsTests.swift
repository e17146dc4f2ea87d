import Foundation
import Postgres
import Server
import TestSupport
import Testing

/// `ledgerlift_projector_lag_*` are absent while the lag is unknown: a 0 would say "caught up"
/// exactly when the store cannot be asked.
@Suite("serve: the projector lag gauges")
struct ProjectorLagMetricsTests {
    static func lagSamples(_ exposition: String) throws -> [String: Double] {
        var found = [String: Double]()
        for sample in try PrometheusText.parse(exposition) where sample.name.hasPrefix("ledgerlift_projector_lag_") {
            found[sample.name] = sample.value
        }
        return found
    }

    @Test func theGaugesAreAbsentUntilMeasuredPresentOnceMeasuredAndAbsentAgainWhenUnknown() throws {
        let metrics = ServerMetrics()
        #expect(try Self.lagSamples(metrics.exposition()) == [:])
        #expect(!metrics.exposition().contains("ledgerlift_projector_lag"))
        metrics.projectorLag(events: 7, seconds: 1.5)
        #expect(
            try Self.lagSamples(metrics.exposition())
                == ["ledgerlift_projector_lag_events": 7, "ledgerlift_projector_lag_seconds": 1.5])
        metrics.projectorLagUnknown()
        #expect(!metrics.exposition().contains("ledgerlift_projector_lag"))
        metrics.projectorLag(events: 0, seconds: 0)
        #expect(
            try Self.lagSamples(metrics.exposition())
                == ["ledgerlift_projector_lag_events": 0, "ledgerlift_projector_lag_seconds": 0])
    }

    @Test func withTheStoreDownMetricsLeaveTheLagOutAndReportItAgainOnceTheStoreIsBack() async throws {
        try await withEmptyStore { store in
            let database = try await withSession(store) {
                try $0.query("SELECT current_database()").rows[0].decode(at: 0, as: String.self)
            }
            let admin = try await Connection.connect(try TestDatabase.adminDSN())
            defer { admin.close() }
            try await withServer(ServeConfiguration(storeDSN: store, projects: false)) { _, client in
                let up = try await client.get("/metrics")
                #expect(
                    try Self.lagSamples(up.body)
                        == ["ledgerlift_projector_lag_events": 0, "ledgerlift_projector_lag_seconds": 0])
                try await admin.withSession { session in
                    _ = try session.execute("ALTER DATABASE \(quoteIdentifier(database)) WITH ALLOW_CONNECTIONS false")
                    _ = try session.query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                        [database])
                }
                let down = try await client.get("/metrics")
                let health = try await client.get("/health")
                let afterHealth = try await client.get("/metrics")
                try await admin.withSession {
                    _ = try $0.execute("ALTER DATABASE \(quoteIdentifier(database)) WITH ALLOW_CONNECTIONS true")
                }
                #expect(down.status == 200)
                #expect(!down.body.contains("ledgerlift_projector_lag"), "\(down.body)")
                #expect(health.status == 503)
                #expect(!afterHealth.body.contains("ledgerlift_projector_lag"), "\(afterHealth.body)")
                let back = try await client.get("/metrics")
                #expect(
                    try Self.lagSamples(back.body)
                        == ["ledgerlift_projector_lag_events": 0, "ledgerlift_projector_lag_seconds": 0])
            }
        }
    }
}
