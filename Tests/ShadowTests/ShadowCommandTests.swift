import Foundation
import Postgres
import TestSupport
import Testing

/// `ledgerlift shadow install` and `uninstall` as an operator runs them, with the simulated
/// legacy application writing in between.
@Suite("ledgerlift shadow install/uninstall, run as a binary")
struct ShadowCommandTests {
    struct Report: Decodable {
        struct Figures: Decodable {
            let operations: Int
            let acknowledged: Int
            let failed: Int
            let errors: [String: Int]
        }
        let total: Figures
    }

    @Test func theSimulatedApplicationRunsCleanlyWithCaptureInstalledAndIsCaptured() async throws {
        try await withReferenceLegacy { connection, dsn in
            let before = try await schemaDump(dsn)
            let install = try await LedgerliftBinary.run([
                "shadow", "install", "--legacy", dsn, "--mapping", referenceMappingPath,
            ])
            #expect(install.status == 0, "\(install.stdout)\(install.stderr)")
            #expect(install.stdout.contains("capturing legacy.invoices"))
            #expect(install.stdout.contains("install recorded: transaction "))
            let again = try await LedgerliftBinary.run([
                "shadow", "install", "--legacy", dsn, "--mapping", referenceMappingPath,
            ])
            #expect(again.status == 0 && again.stdout.contains("nothing changed"), "\(again.stdout)\(again.stderr)")

            let run = try await LedgerliftBinary.run([
                "simulate", "--legacy", dsn, "--operations", "200", "--connections", "4", "--report", "json",
            ])
            #expect(run.status == 0, "\(run.stderr)")
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            let report = try decoder.decode(Report.self, from: Data(run.stdout.utf8))
            #expect(report.total.operations == 200)
            #expect(report.total.failed == 0)
            #expect(report.total.errors.isEmpty)

            let counts = try await connection.query(
                "SELECT count(*), count(DISTINCT source_table), count(*) FILTER (WHERE old_row IS NULL AND new_row IS NULL) FROM ledgerlift_capture.changes"
            ).rows[0]
            #expect(try counts.decode(at: 0, as: Int64.self) >= Int64(report.total.acknowledged) / 2)
            #expect(try counts.decode(at: 1, as: Int64.self) > 3, "the operations write several tables")
            #expect(try counts.decode(at: 2, as: Int64.self) == 0, "no TRUNCATE, so every row carries keys")

            let uninstall = try await LedgerliftBinary.run([
                "shadow", "uninstall", "--legacy", dsn, "--mapping", referenceMappingPath,
            ])
            #expect(uninstall.status == 0, "\(uninstall.stdout)\(uninstall.stderr)")
            #expect(uninstall.stdout.contains("captured change(s) not yet applied were discarded"))
            #expect(try await schemaDump(dsn) == before)
            let nothing = try await LedgerliftBinary.run(["shadow", "uninstall", "--legacy", dsn])
            #expect(nothing.status == 0 && nothing.stdout.contains("nothing to remove"), "\(nothing.stdout)")
        }
    }

    /// Installing, uninstalling and installing again while the application writes with four
    /// connections costs it no error: install's lock waits are bounded and retried, so it is
    /// never the application's transaction that fails.
    @Test func installAndUninstallUnderTrafficCostTheApplicationNoError() async throws {
        try await withReferenceLegacy { _, dsn in
            let simulation = Task.detached {
                try await LedgerliftBinary.run([
                    "simulate", "--legacy", dsn, "--duration", "4", "--connections", "4", "--report", "json",
                ])
            }
            try await Task.sleep(for: .milliseconds(500))
            for command in ["install", "uninstall", "install"] {
                let run = try await LedgerliftBinary.run([
                    "shadow", command, "--legacy", dsn, "--mapping", referenceMappingPath,
                ])
                #expect(run.status == 0, "\(command): \(run.stdout)\(run.stderr)")
                try await Task.sleep(for: .milliseconds(700))
            }
            let run = try await simulation.value
            #expect(run.status == 0, "\(run.stderr)")
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            let report = try decoder.decode(Report.self, from: Data(run.stdout.utf8))
            #expect(report.total.failed == 0)
            #expect(report.total.errors.isEmpty, "\(report.total.errors)")
            #expect(report.total.operations > 100)
        }
    }

    @Test func aMappingWithErrorsIsRefusedBeforeAnythingConnects() async throws {
        let bad = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerlift-shadow-\(UUID()).yaml")
        try "version: 2\n".write(to: bad, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: bad) }
        let run = try await LedgerliftBinary.run([
            "shadow", "install", "--legacy", "postgresql://nobody:secret@127.0.0.1:1/none", "--mapping", bad.path,
        ])
        #expect(run.status == 2)
        #expect(run.stderr.contains("version"), "\(run.stderr)")
        #expect(!run.stderr.contains("secret"))
    }
}
