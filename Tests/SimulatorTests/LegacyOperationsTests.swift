import Fixtures
import Foundation
import Postgres
import TestSupport
import Testing

@testable import Simulator

@Suite("The legacy application's operations on the reference schema")
struct LegacyOperationsTests {
    @Test func aMixedRunOnTheReferenceFixtureKeepsEveryRuleAndMigratesWithoutQuarantine() async throws {
        try await LegacyTestSupport.withReference { connection, dsn in
            let clock = try await LegacyTestSupport.dataClock(connection)
            let run = try await LegacyTestSupport.runSequentially(dsn: dsn, clock: clock, seed: 11, count: 400)
            print("journal \(run.journal.count) idle \(run.idle)")
            let violations = try await LegacyTestSupport.violations(connection, clock: clock)
            #expect(violations.map(\.description) == [])
            let backfill = try await LegacyTestSupport.quarantinedByBackfill(dsn)
            #expect(backfill.clean)
            #expect(backfill.quarantined == [])
        }
    }
}
