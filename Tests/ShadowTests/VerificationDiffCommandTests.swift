import Foundation
import Postgres
import Shadow
import TestSupport
import Testing

/// `ledgerlift diff` in shadow mode: `--tailer NAME` re-checks differences once that tailer has
/// passed the legacy position, `--record` stores the result where the cutover's gates read it.
@Suite("Shadow: diff --tailer --record")
struct VerificationDiffCommandTests {
    @Test func diffWaitsForTheNamedTailerAndRecordsItsVerdict() async throws {
        try await withLegacyAndStore { legacy, legacyDSN, store, storeDSN in
            _ = try await install(legacy, try referenceMapping())
            try await backfillAndProject(legacyDSN, storeDSN, store)
            let arguments = ["diff", "--legacy", legacyDSN, "--store", storeDSN, "--mapping", referenceMappingPath]

            let clean = try await LedgerliftBinary.run(arguments + ["--record"])
            #expect(clean.status == 0, "\(clean.stdout)\(clean.stderr)")
            var recent = try await store.withSession { try VerificationHistory().recent(limit: 5, in: $0) }
            #expect(recent.map(\.verdict) == [.clean] && recent.first?.origin == "diff")

            // A legacy write the tailer "t1" applies three seconds later, committing its
            // checkpoint with it (the tailer's table as it creates it).
            try await store.executeScript(
                """
                CREATE TABLE ledgerlift.shadow_tailers (
                    name text PRIMARY KEY, checkpoint_xid xid8 NOT NULL DEFAULT '0', checkpoint_id bigint NOT NULL DEFAULT 0,
                    updated_at timestamptz NOT NULL DEFAULT now(), last_error text, last_error_at timestamptz);
                INSERT INTO ledgerlift.shadow_tailers (name) VALUES ('t1');
                """)
            try await legacy.execute("UPDATE legacy.customers SET email = 'diffed@example.com' WHERE id = 10")
            let position = try #require(try await legacy.withSession { try ContinuousVerifier.newestCommitted(in: $0) })
            let tailer = simulatedTailer(storeDSN: storeDSN, applying: "UPDATE ledgerlift_read.customers SET email = 'diffed@example.com' WHERE customer_id = '10'", position: position)
            // A running tailer holds its lock: the diff waits for it only then.
            let lockHolder = try await Connection.connect(storeDSN, applicationName: "ledgerlift-shadow-run")
            defer { lockHolder.close() }
            #expect(try await lockHolder.withSession { try $0.tryLock(ShadowTailer.lock(name: "t1")) })
            tailer.start()
            let waited = try await LedgerliftBinary.run(arguments + ["--tailer", "t1", "--record", "--format", "json"])
            #expect(waited.status == 0, "\(waited.stdout)\(waited.stderr)")
            recent = try await store.withSession { try VerificationHistory().recent(limit: 5, in: $0) }
            #expect(recent.count == 2)
            let last = try #require(recent.first)
            #expect(last.verdict == .clean && last.differences == 1 && last.persistentDifferences == 0, "\(last)")
            #expect(last.legacyPosition == position)

            // A check that cannot run is recorded as an error.
            let failed = try await LedgerliftBinary.run(arguments + ["--record", "--read-schema", "no_such_schema"])
            #expect(failed.status == 2)
            recent = try await store.withSession { try VerificationHistory().recent(limit: 5, in: $0) }
            #expect(recent.first?.verdict == .error && recent.first?.error?.contains("no read model") == true)
            #expect(try await store.withSession { try VerificationHistory().cleanStreak(in: $0) }.count == 0)
        }
    }

    /// A tailer that is not running (nobody holds `ledgerlift.shadow/<name>`) will not pass any
    /// position: the diff re-checks at once instead of waiting 60 s a round, and says why.
    @Test func aTailerNotRunningIsNotWaitedForAndTheReportSaysSo() async throws {
        try await withLegacyAndStore { legacy, legacyDSN, store, storeDSN in
            _ = try await install(legacy, try referenceMapping())
            try await backfillAndProject(legacyDSN, storeDSN, store)
            try await legacy.execute("UPDATE legacy.customers SET email = 'untailed@example.com' WHERE id = 10")
            let result = try await LedgerliftBinary.run([
                "diff", "--legacy", legacyDSN, "--store", storeDSN, "--mapping", referenceMappingPath, "--tailer", "stopped",
                "--skip-invariants",
            ])
            #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
            #expect(
                result.stdout.contains(
                    "the tailer stopped is not running: differences were re-checked without waiting for it"),
                "\(result.stdout)")
            #expect(!result.stdout.contains("had not passed legacy position"), "\(result.stdout)")
        }
    }
}
