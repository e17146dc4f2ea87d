import Fixtures
import Foundation
import Postgres
import Testing

/// The repository's `fixtures/` directory, found from this file's path.
func repositoryFixtures(_ file: String = #filePath) throws -> FixtureDirectory {
    var directory = URL(fileURLWithPath: file).deletingLastPathComponent()
    while directory.path != "/" {
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
            return try FixtureDirectory(validating: directory.appendingPathComponent("fixtures", isDirectory: true))
        }
        directory = directory.deletingLastPathComponent()
    }
    throw FixtureError(code: .fixturesNotFound, message: "no Package.swift above \(file)")
}

/// Runs every check of `checks.sql` and returns the violations, keyed by check.
func runChecks(_ connection: Connection) async throws -> [(check: FixtureCheck, violations: [FixtureCheckViolation])] {
    let suite = try FixtureCheckSuite(fixtures: try repositoryFixtures())
    return try await connection.withSession { try suite.run(in: $0) }
}

