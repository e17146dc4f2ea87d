import Billing
import Fixtures
import Foundation
import Migration
import Postgres
import Testing

@testable import Mapping

/// What `mapping check` proves for shadow mode, on the reference fixture: every table an
/// entity's SQL reads is in its sources (found in PostgreSQL's dependencies, through views),
/// SQL sources run over the captured columns only, and by_key returns the query's rows without
/// scanning a large table.
@Suite("mapping check: sources cover what the queries read; by_key")
struct MappingCoverageTests {
    static let customerColumns = """
        SELECT c.id::text AS customer_id, c.email, c.name, c.currency, c.created_at, c.updated_at,
               c.deleted_at AS archived_at
        """

    /// The reference mapping with the customer entity replaced.
    static func withCustomer(
        query: String, sources: [MappingFile.Source], byKey: String? = nil, checks: [SourceCheck] = []
    ) throws -> MappingFile {
        let reference = try MappingTestSupport.referenceMapping()
        let entities = reference.entities.map { mapping -> MappingFile.EntityMapping in
            guard mapping.entity == .customer else { return mapping }
            return MappingFile.EntityMapping(
                entity: .customer, query: query, sources: sources, checks: checks, byKey: byKey)
        }
        return MappingFile(amounts: reference.amounts, entities: entities, file: "edited.yaml")
    }

    @Test func theReferenceMappingCoversEveryTableItsEntitiesRead() async throws {
        let mapping = try MappingTestSupport.referenceMapping()
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let coverage = try await connection.withSession { try MappingCoverage.analyze(mapping, in: $0) }
            #expect(coverage.isComplete, "\(coverage.problems)")
            let read = Dictionary(uniqueKeysWithValues: coverage.entities.map { ($0.entity, $0.tablesRead) })
            // Found in the catalog, not in the text: the checks' tables count for the customer.
            #expect(read[.customer] == ["legacy.customer_balance_transactions", "legacy.customers", "legacy.invoices"])
            #expect(read[.refund] == ["legacy.customers", "legacy.invoices", "legacy.payments", "legacy.refunds"])
            #expect(read[.subscription] == ["legacy.subscription_history", "legacy.subscriptions"])
            // Nothing is left behind: the temporary functions were rolled back.
            let left = try await connection.query(
                "SELECT count(*) FROM pg_proc WHERE proname LIKE 'ledgerlift_coverage_%'"
            ).rows[0].decode(at: 0, as: Int64.self)
            #expect(left == 0)
        }
    }

    @Test func aTableReadThroughAViewAndMissingFromSourcesIsAnErrorNamingTheLineToAdd() async throws {
        let mapping = try Self.withCustomer(
            query: Self.customerColumns + """
                , d.paid
                FROM legacy.customers c
                LEFT JOIN reporting.paid d ON d.customer_id = c.id
                """,
            sources: [MappingFile.Source(table: "legacy.customers", key: "id")])
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            try await connection.executeScript(
                """
                CREATE SCHEMA reporting;
                CREATE VIEW reporting.succeeded AS SELECT * FROM legacy.payments WHERE status = 'succeeded';
                CREATE VIEW reporting.paid AS SELECT customer_id, sum(amount) AS paid FROM reporting.succeeded GROUP BY 1;
                """)
            let report = try await MappingChecker(mapping).check(connection)
            let customer = try #require(report[entity: .customer])
            let missing = customer.errors.filter { $0.code == .sourceMissing }
            #expect(missing.count == 1)
            #expect(
                missing.first?.message
                    == "customer's query reads legacy.payments (through reporting.succeeded), which is not in its "
                    + "sources: shadow mode would miss its changes. Add to customer.sources:\n"
                    + "- { table: legacy.payments, key: customer_id }")
            #expect(missing.first?.location == "customer.sources")
            // The same mapping: shadow install refuses it (MappingCoverage), the backfill does not.
            #expect(Backfill.refusals(in: report).isEmpty)
            let coverage = try await connection.withSession { try MappingCoverage.analyze(mapping, in: $0) }
            #expect(!coverage.isComplete)
            #expect(coverage.entities.first { $0.entity == .customer }?.gaps.map(\.table) == ["legacy.payments"])
        }
    }

    @Test func aTableTheEntityBorrowsFromGetsAnSQLSourceSuggestion() async throws {
        let reference = try MappingTestSupport.referenceMapping()
        let invoice = try #require(reference[entity: .invoice])
        let mapping = MappingFile(
            amounts: .major,
            entities: [
                MappingFile.EntityMapping(
                    entity: .invoice, query: invoice.query, sources: [.init(table: "legacy.invoices", key: "id")])
            ])
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            let messages = report.errors.filter { $0.code == .sourceMissing }.map(\.message)
            #expect(
                messages == [
                    "invoice's query reads legacy.customers, which is not in its sources: shadow mode would miss its "
                        + "changes. Add to invoice.sources:\n- { table: legacy.customers, columns: [], keys: "
                        + "\"SELECT e.id::text FROM legacy.invoices e JOIN changed c ON c.id = e.customer_id\" }"
                ])
        }
    }

    @Test func aMappingWithoutSourcesIsForBackfillOnlyAndSaysSo() async throws {
        let reference = try MappingTestSupport.referenceMapping()
        let mapping = MappingFile(
            amounts: .major,
            entities: reference.entities.map {
                MappingFile.EntityMapping(
                    entity: $0.entity, query: $0.query, historyQuery: $0.historyQuery, checks: $0.checks)
            })
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            #expect(report.isClean)
            #expect(report.notes.filter { $0.code == .noSources }.count == 1)
            let coverage = try await connection.withSession { try MappingCoverage.analyze(mapping, in: $0) }
            #expect(!coverage.isComplete, "shadow install refuses it")
        }
    }

    @Test func keysThatReadAColumnCaptureDoesNotRecordFail() async throws {
        var sources = try #require(try MappingTestSupport.referenceMapping()[entity: .customer]).sources
        // Reads c.currency from changed, but records only the primary key.
        sources.append(
            MappingFile.Source(
                table: "legacy.customers", columns: [],
                keys: "SELECT c.id::text FROM changed c WHERE c.currency IS NOT NULL"))
        let reference = try MappingTestSupport.referenceMapping()
        let mapping = try Self.withCustomer(
            query: reference[entity: .customer]!.query, sources: sources, byKey: reference[entity: .customer]!.byKey,
            checks: reference[entity: .customer]!.checks)
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            let failed = try #require(report.errors.first { $0.code == .sourceKeysFailed })
            #expect(failed.location == "customer.sources[3]")
            #expect(failed.message.hasPrefix("keys fails over no changed rows: column c.currency does not exist"))
            #expect(failed.message.contains("capture records only the primary key and columns of legacy.customers (id)"))
            // Listed in columns, it runs, over nothing and over a real row.
            sources[3] = MappingFile.Source(
                table: "legacy.customers", columns: ["currency"],
                keys: "SELECT c.id::text FROM changed c WHERE c.currency IS NOT NULL")
            let fixed = try Self.withCustomer(
                query: reference[entity: .customer]!.query, sources: sources,
                byKey: reference[entity: .customer]!.byKey, checks: reference[entity: .customer]!.checks)
            #expect(try await MappingChecker(fixed).check(connection).isClean)
        }
    }

    @Test func aByKeyThatReturnsOtherRowsOrColumnsIsAnError() async throws {
        let reference = try MappingTestSupport.referenceMapping()
        let customer = try #require(reference[entity: .customer])
        let byKey = try #require(customer.byKey)
        func mapping(_ byKey: String) throws -> MappingFile {
            try Self.withCustomer(query: customer.query, sources: customer.sources, byKey: byKey, checks: customer.checks)
        }
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            // Loses the customers whose id ends in 7.
            let lossy = try mapping(byKey.replacing("WHERE c.id = ANY($1::bigint[])", with: "WHERE c.id = ANY($1::bigint[]) AND c.id % 10 <> 7"))
            let report = try await MappingChecker(lossy).check(connection)
            let mismatch = try #require(report.errors.first { $0.code == .byKeyMismatch })
            #expect(mismatch.location == "customer.by_key")
            #expect(mismatch.message.hasPrefix("by_key returns other rows than the query for "))
            #expect(mismatch.message.contains("by_key gives no row"))
            #expect(Backfill.refusals(in: report).isEmpty, "by_key is shadow mode's: the backfill does not read it")

            // Another value in one column.
            let changed = try mapping(byKey.replacing("c.name,", with: "upper(c.name) AS name,"))
            let other = try await MappingChecker(changed).check(connection)
            #expect(other.errors.first { $0.code == .byKeyMismatch }?.message.contains("\"name\": \"") == true)

            // Another type.
            let typed = try mapping(byKey.replacing("c.balance,", with: "c.balance::text AS balance,"))
            let types = try await MappingChecker(typed).check(connection)
            #expect(
                types.errors.first { $0.code == .byKeyMismatch }?.message
                    == "by_key must return the query's columns with the same types: it returns balance as text, the query as numeric")
        }
    }

    @Test func readingOneKeyByScanningALargeTableIsAWarningWithThePlan() async throws {
        let reference = try MappingTestSupport.referenceMapping()
        let customer = try #require(reference[entity: .customer])
        let withoutByKey = try Self.withCustomer(
            query: customer.query, sources: customer.sources, checks: customer.checks)
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            // 45 customers: "large" is lowered to 10 rows for the test. Analyzed, the planner's
            // estimate is the table's size.
            try await connection.execute("ANALYZE legacy.customers")
            let report = try await MappingChecker(withoutByKey, scanWarningRows: 10).check(connection)
            let scan = try #require(report.warnings.first { $0.code == .byKeyScans && $0.entity == .customer })
            #expect(scan.location == "customer.by_key")
            #expect(
                scan.message.hasPrefix(
                    "reading one customer through the query filtered on customer_id (no by_key) scans legacy.customers "
                        + "(about 45 rows)"))
            #expect(scan.message.contains("Fix: write by_key"))
            #expect(scan.message.contains("Seq Scan on legacy.customers c"))
            // At the default threshold 45 rows are not large: nothing to say.
            let quiet = try await MappingChecker(withoutByKey).check(connection)
            #expect(!quiet.warnings.contains { $0.code == .byKeyScans })
        }
    }

    @Test func coverageThatCannotBeAnalyzedIsAWarningNotASilence() async throws {
        let mapping = try MappingTestSupport.referenceMapping()
        try await MappingTestSupport.withLegacy(.reference) { connection, dsn in
            let role = "ledgerlift_notemp_\(UInt32.random(in: 0...UInt32.max))"
            let database = try await connection.query("SELECT current_database()").rows[0].decode(at: 0, as: String.self)
            try await connection.executeScript(
                """
                CREATE ROLE \(role) LOGIN;
                REVOKE TEMP ON DATABASE \(quoteIdentifier(database)) FROM PUBLIC;
                GRANT USAGE ON SCHEMA legacy TO \(role);
                GRANT SELECT ON ALL TABLES IN SCHEMA legacy TO \(role);
                """)
            let reader = try await Connection.connect(dsn.replacing("postgres@", with: "\(role)@"))
            let checked: Result<MappingReport, any Error>
            do {
                checked = .success(try await MappingChecker(mapping).check(reader))
            } catch {
                checked = .failure(error)
            }
            reader.close()
            // Roles belong to the cluster, not to the test's database.
            try await connection.executeScript("DROP OWNED BY \(role); DROP ROLE \(role);")
            let report = try checked.get()
            let unchecked = report.warnings.filter { $0.code == .coverageUnchecked }
            #expect(unchecked.count == mapping.entities.count)
            #expect(unchecked.first?.message.contains("permission denied to create temporary tables") == true)
            #expect(report.isClean, "a warning: the backfill's own checks do not need it")
        }
    }
}
