import Fixtures
import Foundation
import Postgres
import TestSupport
import Testing

@Suite("Loading the hand-written fixtures")
struct FixtureLoaderTests {
    /// The row counts `fixtures/README.md` documents.
    static let referenceCounts: [LegacyTable: Int] = [
        .plans: 11, .customers: 45, .subscriptions: 48, .subscriptionHistory: 22, .invoices: 146,
        .invoiceLineItems: 169, .payments: 151, .refunds: 5, .creditNotes: 5, .customerBalanceTransactions: 12,
    ]
    static let dirtyCounts: [LegacyTable: Int] = [
        .plans: 7, .customers: 30, .subscriptions: 24, .subscriptionHistory: 2, .invoices: 71,
        .invoiceLineItems: 77, .payments: 70, .refunds: 3, .creditNotes: 2, .customerBalanceTransactions: 7,
    ]

    @Test func referenceAndDirtySeedsLoadIntoAFreshDatabaseTwiceInARow() async throws {
        let loader = FixtureLoader(fixtures: try repositoryFixtures())
        try await TestDatabase.withConnection { connection, dsn in
            for seed in [FixtureLoader.Seed.reference, .reference, .dirty, .dirty, .reference] {
                let counts = try await loader.load(seed, into: connection)
                let expected = seed == .reference ? Self.referenceCounts : Self.dirtyCounts
                for table in LegacyTable.allCases {
                    #expect(counts[table] == expected[table], "\(seed): \(table)")
                }
            }
            // The DSN form opens its own connection.
            let viaDSN = try await loader.load(.dirty, dsn: dsn)
            #expect(viaDSN.total == Self.dirtyCounts.values.reduce(0, +))
        }
    }

    @Test func loadingRestoresTheSessionSearchPath() async throws {
        let loader = FixtureLoader(fixtures: try repositoryFixtures())
        try await TestDatabase.withConnection { connection, _ in
            try await connection.execute("SET search_path = public")
            _ = try await loader.load(.reference, into: connection)
            let path = try await connection.query("SHOW search_path").rows[0].decode(at: 0, as: String.self)
            #expect(path == "public")
        }
    }

    @Test func aFailingSeedLeavesTheEarlierLoadIntactAndNamesTheFile() async throws {
        let fixtures = try repositoryFixtures()
        let broken = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerlift-broken-\(UUID())")
        defer { try? FileManager.default.removeItem(at: broken) }
        for file in FixtureDirectory.File.allCases {
            let target = broken.appendingPathComponent(file.rawValue)
            try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
            var text = try fixtures.contents(of: file)
            if file == .dirtySeed { text += "\nINSERT INTO no_such_table VALUES (1);\n" }
            try text.write(to: target, atomically: true, encoding: .utf8)
        }
        let loader = FixtureLoader(fixtures: try FixtureDirectory(validating: broken))
        try await TestDatabase.withConnection { connection, _ in
            _ = try await loader.load(.reference, into: connection)
            let error = try await #require(throws: FixtureError.self) { try await loader.load(.dirty, into: connection) }
            #expect(error.code == .database)
            #expect(error.underlying?.sqlState == "42P01")
            #expect(error.description.contains("dirty/seed.sql"))
            // The transaction rolled back: the reference data is still there, untouched.
            let counts = try await connection.withSession { try LegacyRowCounts.count(in: $0) }
            #expect(counts[.customers] == 45)
        }
    }
}

@Suite("Finding the fixtures directory")
struct FixtureDirectoryTests {
    @Test func anExplicitPathWinsAndMustHoldTheSchema() throws {
        let fixtures = try repositoryFixtures()
        let found = try FixtureDirectory.locate(explicitPath: fixtures.url.path, environment: [:])
        #expect(found.url.path == fixtures.url.path)
        let error = #expect(throws: FixtureError.self) {
            try FixtureDirectory.locate(explicitPath: "/nonexistent/fixtures", environment: [:])
        }
        #expect(error?.code == .fixturesNotFound)
        #expect(error?.description.contains("/nonexistent/fixtures") == true)
    }

    @Test func theEnvironmentVariableComesBeforeTheSearch() throws {
        let error = #expect(throws: FixtureError.self) {
            try FixtureDirectory.locate(environment: ["LEDGERLIFT_FIXTURES": "/nonexistent/env-fixtures"])
        }
        #expect(error?.description.contains("LEDGERLIFT_FIXTURES=/nonexistent/env-fixtures") == true)
    }

    @Test func theSearchWalksUpFromTheCurrentDirectoryAndTheExecutable() throws {
        let fixtures = try repositoryFixtures()
        let nested = fixtures.url.deletingLastPathComponent().appendingPathComponent("Sources/Fixtures/Generator")
        let found = try FixtureDirectory.locate(environment: [:], currentDirectory: nested, executableURL: nil)
        #expect(found.url.path == fixtures.url.path)
        let viaExecutable = try FixtureDirectory.locate(
            environment: [:], currentDirectory: URL(fileURLWithPath: "/"),
            executableURL: fixtures.url.deletingLastPathComponent().appendingPathComponent(".build/debug/ledgerlift"))
        #expect(viaExecutable.url.path == fixtures.url.path)
    }

    @Test func notFindingItListsEveryPlaceLookedIn() throws {
        let error = #expect(throws: FixtureError.self) {
            try FixtureDirectory.locate(
                environment: [:], currentDirectory: URL(fileURLWithPath: "/proc/self"),
                executableURL: URL(fileURLWithPath: "/usr/bin/ledgerlift"))
        }
        #expect(error?.code == .fixturesNotFound)
        #expect(error?.searchedLocations.contains("/proc/self/fixtures") == true)
        #expect(error?.searchedLocations.contains("/usr/bin/fixtures") == true)
        #expect(error?.searchedLocations.contains("/fixtures") == true)
        #expect(error?.description.contains("--fixtures") == true)
    }
}
