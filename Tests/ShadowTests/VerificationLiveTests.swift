import Billing
import Foundation
import Postgres
import Shadow
import TestSupport
import Testing

/// Continuous verification beside the real tailer, with `ledgerlift simulate` writing to legacy
/// meanwhile: differences of writes not yet tailed are re-checked after the tailer passed them,
/// so the verifications are clean; `shadow status` reads the running tailer and its lag.
@Suite("Shadow: continuous verification under traffic")
struct VerificationLiveTests {
    @Test func withTheTailerFollowingSimulatedTrafficVerificationsAreClean() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            let mapping = try scenario.mapping
            let stop = ShadowTailer.Stop()
            let tailer = Task {
                try await ShadowTailer(
                    .init(legacyDSN: scenario.legacy, storeDSN: scenario.store, mapping: mapping, follow: true)
                ).run(stop: stop)
            }
            async let traffic = ledgerlift([
                "simulate", "--legacy", scenario.legacy, "--duration", "15", "--rate", "40", "--connections", "2",
            ])
            let verifier = ContinuousVerifier(
                .init(legacyDSN: scenario.legacy, storeDSN: scenario.store, mapping: mapping, origin: "test"))
            var records = [VerificationRecord]()
            for _ in 0..<3 { records.append(try await verifier.runOnce(tailer: "default")) }
            let status = try await ledgerlift([
                "shadow", "status", "--legacy", scenario.legacy, "--store", scenario.store, "--format", "json",
            ])
            let simulated = try await traffic
            stop.stop()
            let summary = try await tailer.value
            #expect(simulated.status == 0, "\(simulated.stderr)")
            #expect(summary.changesRead > 0)
            for record in records {
                #expect(record.verdict == .clean, "\(record.reportJSON ?? record.error ?? "")")
                #expect(record.persistentDifferences == 0)
            }
            print(
                "verifications under traffic: first-pass differences \(records.map(\.differences)), "
                    + "persistent \(records.map(\.persistentDifferences))")

            let json = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any] ?? [:]
            #expect(status.status == 0, "\(status.stdout)\(status.stderr)")
            let tailerJSON = json["tailer"] as? [String: Any]
            #expect(tailerJSON?["running"] as? Bool == true, "\(status.stdout)")
            #expect((tailerJSON?["checkpoint"] as? [String: Any])?["xid"] is String)
            let lag = json["lag"] as? [String: Any]
            #expect(lag?["samples"] as? Int ?? 0 > 0, "\(status.stdout)")
            #expect(lag?["p99_ms"] is Int, "\(status.stdout)")
            #expect((json["clean_streak"] as? [String: Any])?["count"] as? Int == 3)
            print("status under traffic: lag \(lag ?? [:]), events/s \(json["events_per_second"] ?? "?")")
        }
    }
}
