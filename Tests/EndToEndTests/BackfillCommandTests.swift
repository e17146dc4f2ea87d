import Foundation
import Postgres
import TestSupport
import Testing

/// `ledgerlift backfill` and `store reset` as an operator runs them: exit statuses and sentences.
@Suite("ledgerlift backfill / store reset, run as a binary")
struct BackfillCommandTests {
    static var mapping: String { BackfillResumeTests.mapping }

    @Test func exitStatusIsZeroWhenCleanOneWithQuarantineAndTwoWhenItCannotRun() async throws {
        try await TestDatabase.withFresh("clean_legacy") { legacy in
            try await TestDatabase.withFresh("dirty_legacy") { dirty in
                try await TestDatabase.withFresh("store") { store in
                    try await TestDatabase.withFresh("dirty_store") { dirtyStore in
                        #expect(try await LedgerliftBinary.run(["fixture", "load", "--dsn", legacy]).status == 0)
                        #expect(
                            try await LedgerliftBinary.run(["fixture", "load", "--dsn", dirty, "--dirty"]).status == 0)
                        for dsn in [store, dirtyStore] {
                            #expect(try await LedgerliftBinary.run(["store", "init", "--store", dsn]).status == 0)
                        }
                        let clean = try await LedgerliftBinary.run(
                            ["backfill", "--legacy", legacy, "--store", store, "--mapping", Self.mapping])
                        #expect(clean.status == 0, "\(clean.stderr)")
                        #expect(clean.stdout.contains("every legacy row is accounted for"))

                        // An unknown stream is not found, exit 1, as an unknown invoice is.
                        let unknown = try await LedgerliftBinary.run(["events", "--store", store, "--stream", "invoice-999999"])
                        #expect(unknown.status == 1)
                        #expect(unknown.stderr == "stream invoice-999999: not found\n")
                        let known = try await LedgerliftBinary.run(
                            ["events", "--store", store, "--stream", "invoice-1101"])
                        #expect(known.status == 0, "\(known.stderr)")

                        let quarantined = try await LedgerliftBinary.run(
                            ["backfill", "--legacy", dirty, "--store", dirtyStore, "--mapping", Self.mapping])
                        #expect(quarantined.status == 1, "\(quarantined.stderr)")
                        #expect(quarantined.stdout.contains("quarantined (see ledgerlift.quarantine"))

                        // Another legacy database into a store that holds a run: refused, 2.
                        let wrong = try await LedgerliftBinary.run(
                            ["backfill", "--legacy", dirty, "--store", store, "--mapping", Self.mapping])
                        #expect(wrong.status == 2)
                        #expect(wrong.stderr.contains("this store holds backfill"))
                        #expect(wrong.stdout.isEmpty)

                        // Unreachable legacy database, the store holding a finished run: never "done".
                        let unreachable = try await LedgerliftBinary.run(
                            [
                                "backfill", "--legacy", "postgresql://app:Sup3rS3cretPw@127.0.0.1:1/billing",
                                "--store", store, "--mapping", Self.mapping,
                            ])
                        #expect(unreachable.status == 2)
                        #expect(unreachable.stdout.isEmpty)
                        #expect(!unreachable.stderr.contains("Sup3rS3cretPw"))
                        #expect(unreachable.stderr.contains("could not connect"))

                        // A usage error is "could not run" too.
                        let usage = try await LedgerliftBinary.run(["backfill", "--legacy", legacy, "--store", store])
                        #expect(usage.status == 2)
                        #expect(usage.stderr.contains("Missing expected argument '--mapping <mapping>'"))
                    }
                }
            }
        }
    }

    /// Issue 13: `mapping check` exits 1 on a history query returning numeric refund amounts
    /// under `amounts: minor`, and `backfill` used to exit 0 and append events. Now it prints the
    /// check's very report, appends nothing and exits 1; the reference and starter mappings
    /// (which the check passes with a warning: the tests connect as a superuser) still backfill.
    @Test func aMappingThatMappingCheckRejectsIsRefusedWithExitOneAndTheSameFindings() async throws {
        let reference = try String(contentsOfFile: Self.mapping, encoding: .utf8)
        var rejected = reference
        for (old, new) in [
            ("             r.amount,\n", "             (r.amount * 100)::int8 AS amount,\n"),
            (
                "      - { table: legacy.refunds, key: id }\n",
                "      - { table: legacy.refunds, key: id }\n    amounts: minor\n    history:\n      query: |\n"
                    + "        SELECT r.id::text AS refund_id, r.payment_id::text AS payment_id, NULL::text AS customer_id,\n"
                    + "               r.amount, 'USD'::text AS currency, r.status, r.reason, r.created_at,\n"
                    + "               r.created_at AS valid_from\n"
                    + "        FROM legacy.refunds r\n"
            ),
        ] {
            #expect(rejected.contains(old))
            rejected = rejected.replacingOccurrences(of: old, with: new)
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("rejected-\(UUID().uuidString).yaml")
        try rejected.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let starter = URL(fileURLWithPath: Self.mapping).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("starter/mapping.yaml").path

        try await TestDatabase.withFresh("legacy") { legacy in
            try await TestDatabase.withFresh("store") { store in
                try await TestDatabase.withFresh("starter_store") { starterStore in
                    #expect(try await LedgerliftBinary.run(["fixture", "load", "--dsn", legacy]).status == 0)
                    for dsn in [store, starterStore] {
                        #expect(try await LedgerliftBinary.run(["store", "init", "--store", dsn]).status == 0)
                    }
                    let check = try await LedgerliftBinary.run(
                        ["mapping", "check", "--legacy", legacy, "--mapping", file.path])
                    #expect(check.status == 1)
                    #expect(check.stdout.contains("  error   refund.history.amount: is numeric; amounts: minor needs"))

                    for dryRun in [[], ["--dry-run"]] {
                        let backfill = try await LedgerliftBinary.run(
                            ["backfill", "--legacy", legacy, "--store", store, "--mapping", file.path] + dryRun)
                        #expect(backfill.status == 1, "\(dryRun) \(backfill.stderr)")
                        #expect(backfill.stdout == check.stdout, "\(dryRun)")
                        #expect(
                            backfill.stderr
                                == "backfill refused: the mapping has errors `ledgerlift mapping check` reports (above); "
                                + "nothing was migrated or appended\n")
                    }
                    let connection = try await Connection.connect(store)
                    defer { connection.close() }
                    func events() async throws -> Int64 {
                        try await connection.query("SELECT count(*) FROM ledgerlift.events").rows[0]
                            .decode(at: 0, as: Int64.self)
                    }
                    #expect(try await events() == 0)

                    // What the check passes, with its warning, the backfill runs: the same store
                    // takes the reference mapping (nothing of the refused run is in its way).
                    let clean = try await LedgerliftBinary.run(
                        ["backfill", "--legacy", legacy, "--store", store, "--mapping", Self.mapping])
                    #expect(clean.status == 0, "\(clean.stderr)")
                    #expect(clean.stdout.contains("every legacy row is accounted for"))
                    #expect(try await events() == 1_080)
                    let small = try await LedgerliftBinary.run(
                        ["backfill", "--legacy", legacy, "--store", starterStore, "--mapping", starter])
                    #expect(small.status == 0, "\(small.stderr)")
                    #expect(small.stdout.contains("every legacy row is accounted for"))
                }
            }
        }
    }

    @Test func storeResetAsksForTheDatabaseNameAndStartsOver() async throws {
        try await TestDatabase.withFresh("legacy") { legacy in
            try await TestDatabase.withFresh("store") { store in
                #expect(try await LedgerliftBinary.run(["fixture", "load", "--dsn", legacy]).status == 0)
                #expect(try await LedgerliftBinary.run(["store", "init", "--store", store]).status == 0)
                let first = try await LedgerliftBinary.run(["backfill", "--legacy", legacy, "--store", store, "--mapping", Self.mapping])
                #expect(first.status == 0, "\(first.stderr)")

                // No answer on standard input: nothing dropped.
                let refused = try await LedgerliftBinary.run(["store", "reset", "--store", store])
                #expect(refused.status == 2)
                #expect(refused.stderr.contains("not confirmed: no answer on standard input (pass --yes in scripts)"))
                let connection = try await Connection.connect(store)
                defer { connection.close() }
                #expect(try await connection.query("SELECT count(*) FROM ledgerlift.events").rows[0].decode(at: 0, as: Int64.self) == 1_080)

                let reset = try await LedgerliftBinary.run(["store", "reset", "--store", store, "--yes"])
                #expect(reset.status == 0, "\(reset.stderr)")
                #expect(reset.stdout.contains("dropped ledgerlift (1080 events) and created an empty event store ledgerlift"))
                #expect(try await connection.query("SELECT count(*) FROM ledgerlift.events").rows[0].decode(at: 0, as: Int64.self) == 0)

                // And the store takes a backfill again.
                let again = try await LedgerliftBinary.run(["backfill", "--legacy", legacy, "--store", store, "--mapping", Self.mapping])
                #expect(again.status == 0, "\(again.stderr)")
            }
        }
    }
}
