import Billing
import Fixtures
import Foundation
import Postgres
import TestSupport
import Testing

@testable import Mapping

/// Shadow mode reads every changed key through `by_key`: at 100,000 generated customers that
/// must be an index lookup, not a scan of the query. Asserted on the plan's shape, never on time.
@Suite("by_key at 100,000 customers")
struct MappingByKeyScaleTests {
    @Test func everyByKeyOfTheReferenceMappingIsPlannedAsIndexLookups() async throws {
        let mapping = try MappingTestSupport.referenceMapping()
        let fixtures = try MappingTestSupport.fixtures()
        try await TestDatabase.withConnection("bykey_scale") { connection, dsn in
            // Three months of history keep the generation short; the tables that matter for a
            // by-key read (customers, subscriptions) are at full size.
            let generator = FixtureGenerator(
                configuration: .init(customers: 100_000, seed: 15, months: 3), fixtures: fixtures)
            _ = try await generator.generate(dsn: dsn)
            let customers = try await connection.query("SELECT count(*) FROM legacy.customers").rows[0]
                .decode(at: 0, as: Int64.self)
            #expect(customers == 100_000)

            for entity in mapping.entities where entity.byKey != nil {
                let key = quoteIdentifier(entity.key)
                guard
                    let one = try await connection.query(
                        "SELECT q.\(key)::text FROM (\n\(entity.query)) q WHERE q.\(key) IS NOT NULL LIMIT 1"
                    ).rows.first?.decode(at: 0, as: String.self)
                else {
                    Issue.record("\(entity.entity): no row generated")
                    continue
                }
                let plan = try await connection.query("EXPLAIN " + entity.byKeySQL, [PostgresArray([one])]).rows
                    .map { try $0.decode(at: 0, as: String.self) }
                let text = plan.joined(separator: "\n")
                #expect(!text.contains("Seq Scan"), "\(entity.entity):\n\(text)")
                #expect(text.contains("Index Scan") || text.contains("Index Only Scan"), "\(entity.entity):\n\(text)")
            }

            // Without by_key, the query filtered on its text key reads the whole table.
            let customer = try #require(mapping[entity: .customer])
            let wrapped = MappingFile.EntityMapping(entity: .customer, query: customer.query).byKeySQL
            let plan = try await connection.query("EXPLAIN " + wrapped, [PostgresArray(["1"])]).rows
                .map { try $0.decode(at: 0, as: String.self) }.joined(separator: "\n")
            #expect(plan.contains("Seq Scan on customers c"), "\(plan)")
        }
    }
}
