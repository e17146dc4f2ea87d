import Billing
import Foundation
import Postgres
import Shadow
import TestSupport
import Testing

/// `ledgerlift shadow status` on the reference fixture: every field of its JSON, read from the
/// capture schema, the verification history, the handover check and the tailer's tables (made
/// here by hand with the columns the tailer's spec names), and the exit status: 0 healthy, 1 a
/// problem, 2 no database.
@Suite("Shadow: status")
struct StatusTests {
    static func status(_ legacyDSN: String, _ storeDSN: String, _ extra: [String] = []) async throws -> (Int32, [String: Any], String) {
        let run = try await LedgerliftBinary.run(
            ["shadow", "status", "--legacy", legacyDSN, "--store", storeDSN, "--format", "json"] + extra)
        let object = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any] ?? [:]
        return (run.status, object, run.stdout + run.stderr)
    }

    @Test func theJSONShowsCaptureBacklogTailerLagVerificationAndHandover() async throws {
        try await withLegacyAndStore { legacy, legacyDSN, store, storeDSN in
            _ = try await install(legacy, try referenceMapping())
            try await backfillAndProject(legacyDSN, storeDSN, store)
            _ = try await ContinuousVerifier(
                .init(legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: try referenceMapping(), origin: "test")
            ).runOnce(tailerPosition: { nil })
            try await legacy.execute("UPDATE legacy.customers SET email = 'backlog@example.com' WHERE id = 3")
            let newest = try #require(try await legacy.withSession { try ContinuousVerifier.newestCommitted(in: $0) })
            // The tailer's tables, as the tailer creates them (TailerSchema): a checkpoint one change
            // behind, and 100 lag samples of 1 … 100 ms.
            try await store.executeScript(
                """
                CREATE TABLE ledgerlift.shadow_tailers (
                    name text PRIMARY KEY, checkpoint_xid xid8 NOT NULL, checkpoint_id bigint NOT NULL,
                    updated_at timestamptz NOT NULL, last_error text, last_error_at timestamptz, events_appended bigint);
                INSERT INTO ledgerlift.shadow_tailers VALUES ('default', '\(newest.xid)', \(newest.id - 1), now(), NULL, NULL, 7);
                CREATE TABLE ledgerlift.shadow_lag (
                    tailer text NOT NULL, store_xid xid8 NOT NULL, captured_at timestamptz NOT NULL,
                    applied_at timestamptz NOT NULL, projected_at timestamptz);
                INSERT INTO ledgerlift.shadow_lag
                     SELECT 'default', '1', now() - interval '1 s', now() - interval '1 s' + i * interval '1 ms',
                            now() - interval '1 s' + i * interval '1 ms'
                       FROM generate_series(1, 100) i;
                -- Another tailer's samples are not this one's lag.
                INSERT INTO ledgerlift.shadow_lag VALUES ('other', '1', now() - interval '10 s', now(), now());
                """)

            let (status, json, output) = try await Self.status(legacyDSN, storeDSN)
            #expect(status == 0, "\(output)")
            #expect(json["healthy"] as? Bool == true && (json["problems"] as? [Any])?.isEmpty == true)
            let capture = try #require(json["capture"] as? [String: Any], "\(output)")
            #expect(capture["installed"] as? Bool == true)
            let tables = (capture["tables"] as? [[String: Any]] ?? []).compactMap { $0["table"] as? String }
            #expect(tables.contains("legacy.customers") && tables.contains("legacy.invoices"))
            #expect(capture["backlog_rows"] as? Int == 1)
            #expect((capture["oldest_age_ms"] as? Int).map { $0 >= 0 } == true)
            #expect((capture["newest_position"] as? [String: Any])?["xid"] as? String == newest.xid)
            let tailer = try #require(json["tailer"] as? [String: Any], "\(output)")
            #expect(tailer["name"] as? String == "default" && tailer["running"] as? Bool == false)
            #expect((tailer["checkpoint"] as? [String: Any])?["id"] as? Int == Int(newest.id - 1))
            #expect(tailer["last_error"] is NSNull)
            let lag = try #require(json["lag"] as? [String: Any], "\(output)")
            #expect(lag["samples"] as? Int == 100)
            #expect([50, 51].contains(lag["p50_ms"] as? Int ?? -1) && lag["p99_ms"] as? Int == 99, "\(lag)")
            #expect(json["events_last_minute"] as? Int ?? 0 > 0)  // the backfill's, just now
            #expect((json["quarantined"] as? [String: Any])?["total"] as? Int == 0)
            let verification = try #require(json["last_verification"] as? [String: Any], "\(output)")
            #expect(verification["verdict"] as? String == "clean" && verification["persistent_differences"] as? Int == 0)
            #expect((json["clean_streak"] as? [String: Any])?["count"] as? Int == 1)
            #expect((json["handover"] as? [String: Any])?["verdict"] as? String == "ready")

            // The tailer failed after its last progress: unhealthy, exit 1, the error named.
            try await store.execute(
                "UPDATE ledgerlift.shadow_tailers SET last_error = 'connection lost', last_error_at = updated_at + interval '1 s'")
            let (failed, failedJSON, failedOutput) = try await Self.status(legacyDSN, storeDSN)
            #expect(failed == 1, "\(failedOutput)")
            #expect(failedJSON["healthy"] as? Bool == false)
            let problems = failedJSON["problems"] as? [String] ?? []
            #expect(problems.count == 1 && problems.first?.contains("connection lost") == true, "\(problems)")

            let text = try await LedgerliftBinary.run(["shadow", "status", "--legacy", legacyDSN, "--store", storeDSN])
            #expect(text.status == 1)
            #expect(text.stdout.contains("backlog             1 change(s)"), "\(text.stdout)")
            #expect(text.stdout.contains("unhealthy:\n  - tailer \"default\" failed"), "\(text.stdout)")
        }
    }

    @Test func aGapWithoutATailerIsUnhealthyAndNoDatabaseIsExitTwo() async throws {
        try await withLegacyAndStore { legacy, legacyDSN, store, storeDSN in
            try await backfillAndProject(legacyDSN, storeDSN, store)
            let (notInstalled, notInstalledJSON, _) = try await Self.status(legacyDSN, storeDSN)
            #expect(notInstalled == 1)
            #expect((notInstalledJSON["capture"] as? [String: Any])?["installed"] as? Bool == false)
            #expect(notInstalledJSON["tailer"] is NSNull && notInstalledJSON["lag"] is NSNull)
            #expect(notInstalledJSON["last_verification"] is NSNull)

            _ = try await install(legacy, try referenceMapping())
            let (gap, gapJSON, output) = try await Self.status(legacyDSN, storeDSN)
            #expect(gap == 1, "\(output)")
            let handover = gapJSON["handover"] as? [String: Any]
            #expect(handover?["verdict"] as? String == "gap")
            #expect((handover?["message"] as? String)?.contains("ledgerlift shadow resync") == true)

            let unreachable = try await LedgerliftBinary.run([
                "shadow", "status", "--legacy", "postgresql://nobody:secret@127.0.0.1:1/none", "--store", storeDSN,
            ])
            #expect(unreachable.status == 2)
            #expect(unreachable.stderr.hasPrefix("Error: ") && !unreachable.stderr.contains("secret"), "\(unreachable.stderr)")
        }
    }

    /// A tailer killed between its commit and its projection leaves the read models behind with
    /// nothing running to catch them up; never built, they are missing: both are problems.
    @Test func readModelsMissingOrBehindWithNoTailerRunningAreProblems() async throws {
        try await withLegacyAndStore { legacy, legacyDSN, store, storeDSN in
            _ = try await install(legacy, try referenceMapping())
            try await backfillAndProject(legacyDSN, storeDSN, store)
            let (healthy, healthyJSON, healthyOutput) = try await Self.status(legacyDSN, storeDSN)
            #expect(healthy == 0, "\(healthyOutput)")
            let readModels = healthyJSON["read_models"] as? [String: Any]
            #expect(readModels?["exist"] as? Bool == true && readModels?["caught_up"] as? Bool == true, "\(healthyOutput)")

            // An event the projection has not applied (as a killed tailer leaves it).
            try await store.execute(
                """
                INSERT INTO ledgerlift.events (event_id, stream_id, stream_version, event_type, schema_version, occurred_at, payload)
                SELECT gen_random_uuid(), stream_id, stream_version + 1, 'CustomerUpdated', 1, occurred_at, '{"changes": {}}'
                FROM ledgerlift.events WHERE stream_id = (SELECT min(stream_id) FROM ledgerlift.events WHERE stream_id LIKE 'customer-%')
                ORDER BY stream_version DESC LIMIT 1
                """)
            let (behind, behindJSON, behindOutput) = try await Self.status(legacyDSN, storeDSN)
            #expect(behind == 1, "\(behindOutput)")
            #expect((behindJSON["read_models"] as? [String: Any])?["caught_up"] as? Bool == false)
            #expect(behindOutput.contains("behind the event store and no tailer is running"), "\(behindOutput)")

            try await store.execute("DROP SCHEMA ledgerlift_read CASCADE")
            let (missing, _, missingOutput) = try await Self.status(legacyDSN, storeDSN)
            #expect(missing == 1)
            #expect(missingOutput.contains("the read models (ledgerlift_read) do not exist"), "\(missingOutput)")
        }
    }
}
