import Mapping
import Billing
import EventStore
import Fixtures
import Foundation
import Migration
import Postgres
import TestSupport
import Testing

@Suite("Backfill then project: the read models equal the legacy data")
struct BackfillProjectionTests {
    @Test func everyCanonicalReadModelRowEqualsTheMappingQuerysRowExactly() async throws {
        try await withLegacyAndStore(.reference) { legacyDSN, store, storeDSN in
            let report = try await backfill(legacyDSN, storeDSN)
            #expect(report.totalQuarantined == 0)
            _ = try await Projector().catchUp(on: store)
            let mapping = try MappingTestSupport.referenceMapping()
            let legacy = try await Connection.connect(legacyDSN)
            defer { legacy.close() }
            let reader = ReadModelReader()
            for entity in referenceEntities {
                let mapped = try #require(mapping[entity: entity])
                let converter = try #require(mapping.converter(for: entity))
                let expected = try await legacy.withSession { session in
                    var rows = [String: CanonicalRow]()
                    try session.stream(mapped.query) { row in
                        if case .migrated(let migrated) = converter.convert(row) { rows[migrated.row.key] = migrated.row }
                    }
                    return rows
                }
                #expect(Int64(expected.count) == BackfillTests.referenceRows[entity], "\(entity)")
                let stored = try await store.withSession { session in
                    try expected.keys.sorted().map { key in (key, try reader.row(entity, key: key, in: session)) }
                }
                for (key, row) in stored {
                    #expect(row == expected[key], "\(entity) \(key)")
                }
                let tableCount = try await count(store, "SELECT count(*) FROM ledgerlift_read.\(entity.tableName)")
                #expect(tableCount == Int64(expected.count), "\(entity): extra rows in the read model")
            }
        }
    }
}
