import Mapping
import Billing
import Fixtures
import Foundation
import Migration
import TestSupport

@testable import Postgres

/// Helpers shared by the mapping and row-converter tests.
enum MappingTestSupport {
    /// Backfills `mapping` from `legacyDSN` into `storeDSN` with two workers and small batches,
    /// as the unit-conversion tests do.
    static func backfill(_ mapping: MappingFile, legacyDSN: String, storeDSN: String) async throws -> BackfillReport {
        try await Backfill(
            .init(
                legacyDSN: legacyDSN, storeDSN: storeDSN, sources: mapping.entitySources(),
                mappingFingerprint: mapping.fingerprint, workers: 2, batchEvents: 97)
        ).run()
    }

    /// The repository root, found from this file's path.
    static func repositoryRoot(_ file: String = #filePath) throws -> URL {
        var directory = URL(fileURLWithPath: file).deletingLastPathComponent()
        while directory.path != "/" {
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
                return directory
            }
            directory = directory.deletingLastPathComponent()
        }
        throw FixtureError(code: .fixturesNotFound, message: "no Package.swift above \(file)")
    }

    static func fixtures() throws -> FixtureDirectory {
        try FixtureDirectory(validating: try repositoryRoot().appendingPathComponent("fixtures", isDirectory: true))
    }

    /// `fixtures/reference/mapping.yaml`, loaded.
    static func referenceMapping() throws -> MappingFile {
        try MappingFile.load(path: try referenceMappingPath())
    }

    static func referenceMappingPath() throws -> String {
        try repositoryRoot().appendingPathComponent("fixtures/reference/mapping.yaml").path
    }

    /// A fresh database with the legacy schema and `seed` loaded.
    static func withLegacy<T>(
        _ seed: FixtureLoader.Seed, _ label: String = #function,
        _ body: (_ connection: Connection, _ dsn: String) async throws -> T
    ) async throws -> T {
        let loader = FixtureLoader(fixtures: try fixtures())
        return try await TestDatabase.withConnection(label) { connection, dsn in
            _ = try await loader.load(seed, into: connection)
            return try await body(connection, dsn)
        }
    }

    /// Every row of `query`, converted (current rows, or history rows).
    static func convertAll(
        _ query: String, with converter: RowConverter, history: Bool = false, on connection: Connection
    ) async throws -> [RowConversion] {
        try await connection.withSession { session in
            var out = [RowConversion]()
            try session.stream(query) { row in
                out.append(history ? converter.convertHistory(row) : converter.convert(row))
            }
            return out
        }
    }
}

/// A result row built in memory: `(column, PostgreSQL type, text or nil)`.
func makeRow(_ cells: [(String, PostgresType, String?)]) -> Row {
    Row(columns: Columns(cells.map { Column(name: $0.0, type: $0.1) }), values: cells.map(\.2))
}

/// A row with `cells`, where `changes` replace (or, with a new name, append) cells and `removing`
/// drops columns.
func makeRow(
    _ cells: [(String, PostgresType, String?)], changing changes: [(String, PostgresType, String?)] = [],
    removing: Set<String> = []
) -> Row {
    var result = cells.filter { !removing.contains($0.0) }
    for change in changes {
        if let index = result.firstIndex(where: { $0.0 == change.0 }) {
            result[index] = change
        } else {
            result.append(change)
        }
    }
    return makeRow(result)
}
