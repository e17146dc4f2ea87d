import Fixtures
import Postgres
import TestSupport
import Testing

@Suite("The dirty seed trips the checks it documents")
struct DirtySeedTests {
    /// (check, table, key) rows the README's dirty-case table promises.
    static let knownDefects: [(check: String, table: String, key: Int64, defect: String)] = [
        ("C01", "invoice_line_items", 9_017_022, "D17 usage line rounded"),
        ("C02", "invoices", 901_001, "D10 total differs from lines"),
        ("C05", "invoices", 901_801, "D18 paid without payment"),
        ("C05", "invoices", 902_501, "D25 overpayment"),
        ("C07", "customers", 9005, "D05 balance cache drift"),
        ("C07", "customers", 9004, "D04 credit cache edited"),
        ("C08", "customers", 9003, "D03 float noise"),
        ("C09", "credit_notes", 90201, "D20 balance_remaining above total"),
        ("C10", "refunds", 901_601, "D16 refund above payment"),
        ("C10", "refunds", 901_901, "D19 refund of a failed payment"),
        ("C11", "invoices", 900_102, "D01 12.345 USD"),
        ("C11", "invoices", 900_202, "D02 1500.5 JPY"),
        ("C11", "payments", 901_402, "D14 overflows 64-bit minor units"),
        ("C12", "invoices", 900_601, "D06 currency missing"),
        ("C12", "invoices", 900_701, "D07 currency XXY"),
        ("C12", "payments", 902_301, "D23 payment in another currency"),
        ("C12", "invoices", 902_402, "D24 invoice currency differs from customer"),
        ("C13", "invoices", 900_803, "D08 status 7"),
        ("C13", "subscriptions", 90091, "D09 status suspended"),
        ("C14", "payments", 901_103, "D11 payment for a missing invoice"),
        ("C15", "payments", 901_302, "D13 duplicate provider id"),
        ("C16", "invoices", 902_102, "D21 duplicate invoice number"),
        ("C17", "invoices", 901_201, "D12 paid before finalized"),
        ("C19", "subscriptions", 90151, "D15 negative quantity"),
        ("C19", "subscriptions", 90222, "D22 chain to another customer"),
    ]

    @Test func specificChecksReportTheDocumentedDefectsByKey() async throws {
        let loader = FixtureLoader(fixtures: try repositoryFixtures())
        try await TestDatabase.withConnection { connection, _ in
            _ = try await loader.load(.dirty, into: connection)
            let found = try await runChecks(connection).flatMap(\.violations)
            for defect in Self.knownDefects {
                #expect(
                    found.contains { $0.check == defect.check && $0.table == defect.table && $0.key == defect.key },
                    "\(defect.check) should report \(defect.table) \(defect.key) (\(defect.defect))")
            }
        }
    }

    @Test func theCleanControlsTripNoCheck() async throws {
        let loader = FixtureLoader(fixtures: try repositoryFixtures())
        try await TestDatabase.withConnection { connection, _ in
            _ = try await loader.load(.dirty, into: connection)
            let found = try await runChecks(connection).flatMap(\.violations)
            let controls: [(table: String, key: Int64)] = [
                ("customers", 9101), ("customers", 9102), ("customers", 9028), ("invoices", 902_601),
                ("payments", 902_702), ("payments", 902_703), ("subscriptions", 91011),
            ]
            for control in controls {
                #expect(!found.contains { $0.table == control.table && $0.key == control.key }, "control \(control)")
            }
        }
    }
}
