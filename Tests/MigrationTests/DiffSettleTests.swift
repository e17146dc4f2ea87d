import Billing
import Diff
import Fixtures
import Foundation
import Mapping
import Migration
import Postgres
import TestSupport
import Testing

/// Under live writes a key can change during every re-check: with `settleRacingWrites` (shadow
/// mode's verification) such a key is named in a note, not reported as a difference; a key
/// whose legacy row holds still is.
@Suite("diff: keys written during every re-check are unsettled, not differences")
struct DiffSettleTests {
    /// The reference mapping, with customer 1's name read as the time of the read: its legacy
    /// row moves on every read, as a key the application writes all the time does.
    static func movingMapping() throws -> MappingFile {
        var yaml = try String(contentsOfFile: try MappingTestSupport.referenceMappingPath(), encoding: .utf8)
        let name = "             c.name,\n"
        #expect(yaml.contains(name))
        yaml = yaml.replacingOccurrences(
            of: name, with: "             CASE WHEN c.id = 1 THEN clock_timestamp()::text ELSE c.name END AS name,\n")
        return try MappingFile(yaml: yaml, file: "moving.yaml")
    }

    static func check(_ mapping: MappingFile, _ legacy: String, _ store: String, settle: Bool) async throws -> DiffReport {
        var options = DiffChecker.Options(legacyDSN: legacy, storeDSN: store, mapping: mapping, entities: [.customer])
        options.settleRacingWrites = settle
        options.reverificationRounds = 2
        return try await DiffChecker(options).run()
    }

    @Test func aKeyMovingDuringEveryRecheckIsANoteWithSettlingAndADifferenceWithout() async throws {
        let mapping = try Self.movingMapping()
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            _ = try await MappingTestSupport.backfill(mapping, legacyDSN: legacy, storeDSN: storeDSN)
            _ = try await Projector().catchUp(on: store)
            // A difference that holds still: customer 2's email in the ledger only.
            #expect(try await store.execute("UPDATE ledgerlift_read.customers SET email = 'x@example.com' WHERE customer_id = '2'") == 1)

            let settled = try await Self.check(mapping, legacy, storeDSN, settle: true)
            let customers = try #require(settled.entities.first)
            #expect(customers.differences.map(\.key) == ["2"], "the still key is a difference, the moving one is not")
            #expect(settled.notes.contains { $0.hasPrefix("customer: 1 differing key(s) were written again") && $0.contains("(1)") })

            let unsettled = try await Self.check(mapping, legacy, storeDSN, settle: false)
            #expect(try #require(unsettled.entities.first).differences.map(\.key) == ["1", "2"])
            #expect(!unsettled.notes.contains { $0.contains("written again") })
        }
    }
}
