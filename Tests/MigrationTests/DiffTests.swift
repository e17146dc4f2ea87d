import Mapping
import Billing
import Diff
import EventStore
import Fixtures
import Foundation
import FoundationXML
import Migration
import Postgres
import TestSupport
import Testing

/// The reference (or dirty) fixture migrated: backfilled and projected, ready to diff.
func withMigrated(
    _ seed: FixtureLoader.Seed = .reference, _ label: String = #function,
    _ body: (_ legacy: Connection, _ legacyDSN: String, _ store: Connection, _ storeDSN: String) async throws -> Void
) async throws {
    try await MappingTestSupport.withLegacy(seed, label) { legacy, legacyDSN in
        try await TestDatabase.withConnection(label + "_store") { store, storeDSN in
            try await store.withSession { try EventStore().migrate($0) }
            _ = try await backfill(legacyDSN, storeDSN)
            _ = try await Projector().catchUp(on: store)
            try await body(legacy, legacyDSN, store, storeDSN)
        }
    }
}

func diff(
    _ legacyDSN: String, _ storeDSN: String, maxRows: Int = 100, rowsPerBucket: Int = 64, fetchBucketRows: Int = 1024,
    maxReverifiedKeys: Int = 100_000, catchUpTimeout: Duration = .seconds(10), beforeReverification: (@Sendable () async throws -> Void)? = nil
) async throws -> DiffReport {
    try await DiffChecker(
        .init(
            legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: try MappingTestSupport.referenceMapping(),
            maxRows: maxRows, rowsPerBucket: rowsPerBucket, fetchBucketRows: fetchBucketRows,
            catchUpTimeout: catchUpTimeout, maxReverifiedKeys: maxReverifiedKeys,
            beforeReverification: beforeReverification)
    ).run()
}

/// `(key, kind, [columns])` of every difference listed, entity by entity.
func found(_ report: DiffReport) -> [String: [String]] {
    var out = [String: [String]]()
    for entity in report.entities {
        for difference in entity.differences {
            let columns = difference.kind == .mismatched ? difference.columns.map(\.column).joined(separator: ",") : ""
            out["\(entity.entity)/\(difference.key)", default: []].append("\(difference.kind)\(columns.isEmpty ? "" : ":" + columns)")
        }
    }
    return out
}

@Suite("Diff: the read models against the legacy data")
struct DiffTests {
    @Test func theMigratedReferenceFixtureIsCleanWithEveryEntityComparedRowByRow() async throws {
        try await withMigrated { _, legacyDSN, _, storeDSN in
            let report = try await diff(legacyDSN, storeDSN)
            #expect(report.isClean)
            #expect(report.exitCode == 0)
            #expect(report.entities.map(\.entity) == referenceEntities)
            for entity in report.entities {
                let rows = BackfillTests.referenceRows[entity.entity]!
                #expect(entity.legacyRows == rows, "\(entity.entity)")
                #expect(entity.ledgerRows == rows, "\(entity.entity)")
                #expect(entity.compared == rows && entity.matched == rows, "\(entity.entity)")
                #expect(entity.differences.isEmpty && entity.quarantined == 0 && entity.rowsFetched == 0)
            }
            #expect(report.invariants.map(\.name) == Invariant.all.map(\.name))
            #expect(report.invariants.allSatisfy { $0.holds })
        }
    }

    /// The acceptance's planted differences, on both sides: each found with its key and column,
    /// nothing else reported.
    static let planted: [String: [String]] = [
        "plan/2": ["mismatched:amount"],  // legacy price 49.00 → 49.01
        "subscription/11": ["mismatched:status"],  // ledger active → past_due
        "subscription/21": ["missing_in_ledger"],  // deleted from the ledger
        "plan/999": ["extra_in_ledger"],  // inserted into the ledger only
        "customer/1": ["mismatched:email"],  // legacy emails of 1 and 2 swapped
        "customer/2": ["mismatched:email"],
        "invoice/1303": ["mismatched:number"],  // legacy '' where the ledger has NULL
        "payment/101": ["mismatched:created_at"],  // ledger one microsecond later
    ]

    static func plant(legacy: Connection, store: Connection) async throws {
        try await legacy.executeScript(
            """
            UPDATE legacy.plans SET price = 49.01 WHERE id = 2;
            UPDATE legacy.customers c SET email = o.email FROM legacy.customers o
             WHERE (c.id, o.id) IN ((1, 2), (2, 1));
            UPDATE legacy.invoices SET number = '' WHERE id = 1303;
            """)
        try await store.executeScript(
            """
            UPDATE ledgerlift_read.subscriptions SET status = 'past_due' WHERE subscription_id = '11';
            DELETE FROM ledgerlift_read.subscriptions WHERE subscription_id = '21';
            INSERT INTO ledgerlift_read.plans (plan_id, code, name, amount, currency, "interval", trial_days, archived, created_at)
                 VALUES ('999', 'ghost', 'Ghost', 100, 'USD', 'month', 0, false, '2025-01-01 00:00:00+00');
            UPDATE ledgerlift_read.payments SET created_at = created_at + interval '1 microsecond' WHERE payment_id = '101';
            """)
    }

    @Test func everyPlantedDifferenceIsFoundWithItsKeyAndColumnAndNothingElse() async throws {
        try await withMigrated { legacy, legacyDSN, store, storeDSN in
            try await Self.plant(legacy: legacy, store: store)
            let report = try await diff(legacyDSN, storeDSN)
            #expect(found(report) == Self.planted)
            #expect(report.exitCode == 1)
            #expect(report.invariants.allSatisfy { $0.holds })
            #expect(report.entities.allSatisfy { $0.resolvedByReverification == 0 })

            let plan = try #require(report.entities.first { $0.entity == .plan })
            #expect(plan.legacyRows == 11 && plan.ledgerRows == 12)
            #expect(plan.compared == 12 && plan.matched == 10 && plan.mismatched == 1 && plan.extraInLedger == 1)
            #expect(
                plan.differences.first { $0.key == "2" }?.columns
                    == [ColumnDifference(column: "amount", legacy: "4901", ledger: "4900")])
            let invoice = try #require(report.entities.first { $0.entity == .invoice })
            #expect(invoice.differences.first?.columns == [ColumnDifference(column: "number", legacy: "", ledger: nil)])
            let payment = try #require(report.entities.first { $0.entity == .payment })
            #expect(
                payment.differences.first?.columns
                    == [
                        ColumnDifference(
                            column: "created_at", legacy: "2025-06-16 10:16:00+00", ledger: "2025-06-16 10:16:00.000001+00")
                    ])
            let customers = try #require(report.entities.first { $0.entity == .customer })
            #expect(
                customers.differences.map { $0.columns }
                    == [
                        [ColumnDifference(column: "email", legacy: "ops@quillandcask.example", ledger: "maya.okafor@brightloom.example")],
                        [ColumnDifference(column: "email", legacy: "maya.okafor@brightloom.example", ledger: "ops@quillandcask.example")],
                    ])
            let missing = try #require(report.entities.first { $0.entity == .subscription }?.differences.first { $0.key == "21" })
            #expect(missing.columns.first == ColumnDifference(column: "subscription_id", legacy: "21", ledger: nil))
            #expect(missing.columns.allSatisfy { $0.ledger == nil })

            // The JSON report names each key and column.
            let json = try #require(
                try JSONSerialization.jsonObject(with: Data(report.rendered(.json).utf8)) as? [String: Any])
            #expect(json["clean"] as? Bool == false)
            var named = [String: [String]]()
            for entity in json["entities"] as? [[String: Any]] ?? [] {
                for difference in entity["differences"] as? [[String: Any]] ?? [] {
                    let kind = difference["kind"] as? String ?? "?"
                    let columns = (difference["columns"] as? [[String: Any]] ?? []).compactMap { $0["column"] as? String }
                    named["\(entity["entity"] as? String ?? "?")/\(difference["key"] as? String ?? "?")", default: []]
                        .append(kind == "mismatched" ? "\(kind):\(columns.joined(separator: ","))" : kind)
                }
            }
            #expect(named == Self.planted)
        }
    }

    @Test func bisectionFindsTheSameDifferencesWhenBucketsMustBeSplitSeveralTimes() async throws {
        try await withMigrated { legacy, legacyDSN, store, storeDSN in
            try await Self.plant(legacy: legacy, store: store)
            // Two buckets at the first level and at most two rows fetched per bucket: every
            // differing bucket is split, level after level, until its rows are few.
            let report = try await diff(legacyDSN, storeDSN, rowsPerBucket: 1_000_000, fetchBucketRows: 2)
            #expect(found(report) == Self.planted)
            let lines = try #require(report.entities.first { $0.entity == .invoiceLine })
            #expect(lines.bucketsCompared == 2 && lines.rowsFetched == 0)
            let payment = try #require(report.entities.first { $0.entity == .payment })
            #expect(payment.bucketsCompared > 2)
            // 151 payments on each side, one differing: only its few bucket neighbours travel.
            #expect(payment.rowsFetched <= 4)
        }
    }

    @Test func maxRowsCapsTheListedDifferencesButNotTheCounts() async throws {
        try await withMigrated { legacy, legacyDSN, store, storeDSN in
            try await store.execute("UPDATE ledgerlift_read.invoice_lines SET description = description || '!'")
            // Only 20 differences are even kept in memory: the counts stay exact.
            let report = try await diff(legacyDSN, storeDSN, maxRows: 5, maxReverifiedKeys: 20)
            let lines = try #require(report.entities.first { $0.entity == .invoiceLine })
            #expect(lines.mismatched == 169 && lines.matched == 0 && lines.compared == 169)
            #expect(lines.differences.count == 5 && lines.isTruncated)
            #expect(lines.differences.map(\.key) == lines.differences.map(\.key).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
            #expect(report.differenceCount == 169)
            #expect(report.notes == ["invoice_line: 149 differences beyond the first 20 were counted only, not listed or re-checked"])
        }
    }

    @Test func aDifferenceGoneWhenReCheckedIsCountedAsResolvedNotReported() async throws {
        try await withMigrated { legacy, legacyDSN, store, storeDSN in
            try await store.execute("UPDATE ledgerlift_read.plans SET name = 'racing' WHERE plan_id = '3'")
            try await legacy.execute("UPDATE legacy.plans SET name = 'still different' WHERE id = 4")
            // The write the check raced with lands before the re-check: plan 3 is equal again.
            let report = try await diff(legacyDSN, storeDSN) {
                try await legacy.execute("UPDATE legacy.plans SET name = 'racing' WHERE id = 3")
            }
            let plan = try #require(report.entities.first { $0.entity == .plan })
            #expect(plan.resolvedByReverification == 1)
            #expect(plan.differences.map(\.key) == ["4"])
            #expect(plan.mismatched == 1 && plan.matched == 10)
            #expect(report.exitCode == 1)
        }
    }

    @Test func quarantinedRowsAreListedApartAndNotCountedAsDifferences() async throws {
        try await withMigrated(.dirty) { _, legacyDSN, store, storeDSN in
            let quarantined = try await store.query("SELECT entity, count(*)::int8 FROM ledgerlift.quarantine GROUP BY 1")
            let expected = Dictionary(uniqueKeysWithValues: try quarantined.rows.map { ($0.values[0]!, try $0.decode(at: 1, as: Int64.self)) })
            let report = try await diff(legacyDSN, storeDSN, maxRows: 1000)
            #expect(report.differenceCount == 0)
            var listed = [String: Int64]()
            for entity in report.entities where entity.quarantined > 0 {
                listed[entity.entity.rawValue] = entity.quarantined
                #expect(entity.quarantine.count == Int(entity.quarantined))
                #expect(entity.quarantine.allSatisfy { !$0.reason.isEmpty && !$0.detail.isEmpty })
            }
            #expect(listed == expected)
            #expect(!expected.isEmpty)
        }
    }
}

@Suite("ledgerlift diff: exit codes and reports")
struct DiffCommandTests {
    @Test func exitsZeroWhenCleanOneWithDifferencesAndWritesTheJUnitReport() async throws {
        try await withMigrated { legacy, legacyDSN, _, storeDSN in
            let mapping = try MappingTestSupport.referenceMappingPath()
            let clean = try await LedgerliftBinary.run(["diff", "--legacy", legacyDSN, "--store", storeDSN, "--mapping", mapping])
            #expect(clean.status == 0, "\(clean.stderr)")
            // The text report ends with the verdict; standard error does not repeat it.
            #expect(clean.stdout.contains("\nCLEAN: 0 differences"))
            #expect(clean.stderr.isEmpty, "\(clean.stderr)")

            try await legacy.execute("UPDATE legacy.plans SET price = 49.01 WHERE id = 2")
            let output = FileManager.default.temporaryDirectory.appendingPathComponent("diff-\(UUID()).xml").path
            let summary = FileManager.default.temporaryDirectory.appendingPathComponent("diff-\(UUID()).md").path
            try "# earlier steps\n".write(toFile: summary, atomically: true, encoding: .utf8)
            defer {
                try? FileManager.default.removeItem(atPath: output)
                try? FileManager.default.removeItem(atPath: summary)
            }
            let dirty = try await LedgerliftBinary.run([
                "diff", "--legacy", legacyDSN, "--store", storeDSN, "--mapping", mapping, "--format", "junit",
                "--output", output, "--entity", "plan,customer", "--summary", summary,
            ])
            #expect(dirty.status == 1, "\(dirty.stderr)")
            // The log gets the text report; the summary file keeps what was there and gains the Markdown.
            #expect(dirty.stdout.contains("plan: 1 difference"))
            let markdown = try String(contentsOfFile: summary, encoding: .utf8)
            #expect(markdown.hasPrefix("# earlier steps\n## "))
            #expect(markdown.contains("| `plan` | 11 | 11 | 10 | 0 | 0 | 1 |"))
            let document = try XMLDocument(xmlString: try String(contentsOfFile: output, encoding: .utf8))
            let cases = try document.nodes(forXPath: "//testcase").compactMap { ($0 as? XMLElement)?.attribute(forName: "name")?.stringValue }
            #expect(cases == ["customer", "plan"] + Invariant.all.map(\.name))
            let failures = try document.nodes(forXPath: "//testcase[failure]").compactMap {
                ($0 as? XMLElement)?.attribute(forName: "name")?.stringValue
            }
            #expect(failures == ["plan"])
        }
    }

    @Test func exitsTwoWhenItCannotRunAndNeverPrintsThePassword() async throws {
        try await withMigrated { _, legacyDSN, _, storeDSN in
            let mapping = try MappingTestSupport.referenceMappingPath()
            let secret = "s3cr3t-pw"
            var wrong = URLComponents(string: storeDSN)!
            wrong.user = "nobody_here"
            wrong.password = secret
            let unreachable = try await LedgerliftBinary.run([
                "diff", "--legacy", legacyDSN, "--store", wrong.string!, "--mapping", mapping,
            ])
            #expect(unreachable.status == 2)
            #expect(unreachable.stderr.contains("could not run"))
            #expect(!unreachable.stderr.contains(secret) && !unreachable.stdout.contains(secret))

            let badEntity = try await LedgerliftBinary.run([
                "diff", "--legacy", legacyDSN, "--store", storeDSN, "--mapping", mapping, "--entity", "invoices",
            ])
            #expect(badEntity.status == 2)
            #expect(badEntity.stderr.contains("unknown entity 'invoices'"))

            let noReadModels = try await LedgerliftBinary.run([
                "diff", "--legacy", legacyDSN, "--store", storeDSN, "--mapping", mapping, "--read-schema", "nothing_here",
            ])
            #expect(noReadModels.status == 2)
            #expect(noReadModels.stderr.contains("ledgerlift project"))
        }
    }
}
