import Fixtures
import Foundation
import Mapping
import Postgres
import Shadow
import TestSupport
import Testing

/// The repository's root, found from this file's path.
func repositoryRoot(_ file: String = #filePath) -> URL {
    var directory = URL(fileURLWithPath: file).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
        directory = directory.deletingLastPathComponent()
    }
    return directory
}

/// The reference fixture's mapping file.
var referenceMappingPath: String { repositoryRoot().appendingPathComponent("fixtures/reference/mapping.yaml").path }

func referenceMapping() throws -> MappingFile { try MappingFile.load(path: referenceMappingPath) }

/// The reference mapping without the payment's `legacy.customers` source (a payment's currency
/// comes from its customer): an incomplete mapping, which install and resync must refuse.
func referenceMappingMissingPaymentCustomersSource() throws -> MappingFile {
    let yaml = try String(contentsOfFile: referenceMappingPath, encoding: .utf8)
    let source = """
                      - table: legacy.customers
                        columns: []
                        keys: |
                          SELECT p.id::text FROM changed c
                          JOIN legacy.invoices i ON i.customer_id = c.id
                          JOIN legacy.payments p ON p.invoice_id = i.id
                          WHERE p.currency IS NULL
                          UNION
                          SELECT p.id::text FROM changed c
                          JOIN legacy.payments p ON p.customer_id = c.id
                          WHERE p.invoice_id IS NULL AND p.currency IS NULL

                """
    #expect(yaml.contains(source), "the reference mapping's payment source changed: update this test helper")
    return try MappingFile(yaml: yaml.replacing(source, with: ""), file: referenceMappingPath)
}

/// A fresh database holding the reference fixture, with a connection to it.
func withReferenceLegacy<T>(
    _ label: String = #function, _ body: (_ connection: Connection, _ dsn: String) async throws -> T
) async throws -> T {
    try await TestDatabase.withConnection(label) { connection, dsn in
        let fixtures = try FixtureDirectory(
            validating: repositoryRoot().appendingPathComponent("fixtures", isDirectory: true))
        _ = try await FixtureLoader(fixtures: fixtures).load(.reference, into: connection)
        return try await body(connection, dsn)
    }
}

/// One captured change, as the tests read it.
struct CapturedChange: Equatable, CustomStringConvertible {
    let id: Int64
    let xid: String
    let table: String
    let op: String
    let old: String?
    let new: String?

    var description: String { "#\(id) xid \(xid) \(op) \(table) old \(old ?? "NULL") new \(new ?? "NULL")" }
}

/// Every captured change, in the tailer's order `(xid, id)`.
func capturedChanges(_ connection: Connection, after id: Int64 = 0) async throws -> [CapturedChange] {
    try await connection.query(
        """
        SELECT id, xid::text AS xid_text, source_table, op::text, old_row::text, new_row::text
        FROM ledgerlift_capture.changes WHERE id > $1 ORDER BY xid, id
        """, [id]
    ).rows.map {
        CapturedChange(
            id: try $0.decode(at: 0, as: Int64.self), xid: try $0.decode(at: 1, as: String.self),
            table: try $0.decode(at: 2, as: String.self), op: try $0.decode(at: 3, as: String.self),
            old: try $0.decode(at: 4, as: String?.self), new: try $0.decode(at: 5, as: String?.self))
    }
}

func install(_ connection: Connection, _ mapping: MappingFile) async throws -> CaptureInstaller.InstallReport {
    try await connection.withSession { try CaptureInstaller().install(mapping, in: $0) }
}

func schemaDump(_ dsn: String, legacyOnly: Bool = true) async throws -> String {
    String(
        decoding: try await PgDump.run(dsn, ["--schema-only"] + (legacyOnly ? ["--schema=legacy"] : [])),
        as: UTF8.self)
}
