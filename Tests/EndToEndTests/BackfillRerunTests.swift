import Foundation
import Postgres
import TestSupport
import Testing

/// What `backfill` says when there is nothing for it to do, or nothing it may do.
@Suite("ledgerlift backfill: a mapping file with errors, and a run already finished")
struct BackfillRerunTests {
    static var mapping: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("fixtures/reference/mapping.yaml").path
    }

    /// A mapping file that does not load is the finding `mapping check` exits 1 for: the
    /// backfill says the same, refuses and exits 1 too, having appended nothing.
    @Test func aMappingFileThatDoesNotLoadIsRefusedWithExitOneLikeMappingCheck() async throws {
        let reference = try String(contentsOfFile: Self.mapping, encoding: .utf8)
        let broken = reference.replacingOccurrences(of: "amounts: major\n", with: "amounts: major\nreceivables: { refunds: reverse }\n")
        #expect(broken != reference)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("broken-\(UUID().uuidString).yaml")
        try broken.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        try await TestDatabase.withFresh("legacy") { legacy in
            try await TestDatabase.withFresh("store") { store in
                #expect(try await LedgerliftBinary.run(["fixture", "load", "--dsn", legacy]).status == 0)
                #expect(try await LedgerliftBinary.run(["store", "init", "--store", store]).status == 0)
                let check = try await LedgerliftBinary.run(
                    ["mapping", "check", "--legacy", legacy, "--mapping", file.path])
                #expect(check.status == 1)
                let backfill = try await LedgerliftBinary.run(["backfill", "--legacy", legacy, "--store", store, "--mapping", file.path])
                #expect(backfill.status == 1)
                #expect(backfill.stderr.hasPrefix("mapping file has errors:\n"))
                #expect(backfill.stderr.contains("receivables.refunds"))
                #expect(
                    backfill.stderr.hasSuffix(
                        "backfill refused: fix the mapping file (`ledgerlift mapping check` says the same); "
                            + "nothing was migrated or appended\n"))
                let connection = try await Connection.connect(store)
                defer { connection.close() }
                #expect(try await connection.query("SELECT count(*) FROM ledgerlift.events").rows[0].decode(at: 0, as: Int64.self) == 0)
            }
        }
    }

    /// Run again once finished, the backfill has nothing to do: it shows that run's figures and
    /// says they are of its snapshot, not of legacy now (a row added since is not counted).
    @Test func aFinishedRunRunAgainSaysItsFiguresAreOfItsSnapshot() async throws {
        try await TestDatabase.withFresh("legacy") { legacy in
            try await TestDatabase.withFresh("store") { store in
                #expect(try await LedgerliftBinary.run(["fixture", "load", "--dsn", legacy]).status == 0)
                #expect(try await LedgerliftBinary.run(["store", "init", "--store", store]).status == 0)
                let first = try await LedgerliftBinary.run(["backfill", "--legacy", legacy, "--store", store, "--mapping", Self.mapping])
                #expect(first.status == 0, "\(first.stderr)")
                #expect(!first.stdout.contains("this run finished at"))
                let connection = try await Connection.connect(legacy)
                defer { connection.close() }
                _ = try await connection.query(
                    "INSERT INTO legacy.plans (id, code, name, price, currency, interval) "
                        + "SELECT 9999, 'late', 'Late', price, currency, interval FROM legacy.plans LIMIT 1")
                let again = try await LedgerliftBinary.run(["backfill", "--legacy", legacy, "--store", store, "--mapping", Self.mapping])
                #expect(again.status == 0, "\(again.stderr)")
                #expect(again.stdout.contains("this run finished at "))
                #expect(again.stdout.contains("legacy changes since then are not migrated by a backfill"))
                // The plan added since is not in that run's figures.
                #expect(again.stdout.contains("\nplan                          11    11        11            0"))
            }
        }
    }
}
