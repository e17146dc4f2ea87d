import Foundation
import Mapping
import Postgres
import Shadow
import TestSupport
import Testing

/// Capture records what SQL sources read (their `columns`, with the primary key), so the
/// tailer's `touchedKeysSQL` finds the keys in the captured rows; and install refuses a mapping
/// whose sources miss a table its queries read.
@Suite("shadow install: SQL sources and coverage", .serialized)
struct CaptureSourcesTests {
    @Test func sqlSourcesColumnsAreRecordedAndNameTheTouchedKeys() async throws {
        try await withReferenceLegacy { connection, _ in
            // The reference mapping, plus a source recording customers.currency.
            var yaml = try String(contentsOfFile: referenceMappingPath, encoding: .utf8)
            let source = """
                      - table: legacy.customers
                        columns: [currency]
                        keys: SELECT i.id::text FROM legacy.invoices i JOIN changed c ON c.id = i.customer_id WHERE c.currency IS NOT NULL

                """
            yaml = yaml.replacing("      - { table: legacy.invoices, key: id }\n", with: source + "      - { table: legacy.invoices, key: id }\n")
            let mapping = try MappingFile(yaml: yaml, file: referenceMappingPath)
            _ = try await install(connection, mapping)
            let columns = try await connection.withSession { try CaptureInstaller().capturedTables($0) }
            let recorded = Dictionary(uniqueKeysWithValues: columns.map { ($0.table, $0.columns) })
            #expect(recorded["legacy.customers"] == "id, currency")
            // The customer's check reads the balance transactions: recorded by customer.
            #expect(recorded["legacy.customer_balance_transactions"] == "id, customer_id")
            #expect(recorded["legacy.invoices"] == "id, customer_id")

            let customer = try await connection.query(
                """
                SELECT c.id FROM legacy.customers c
                WHERE c.currency IS NOT NULL AND EXISTS (SELECT 1 FROM legacy.invoices i WHERE i.customer_id = c.id)
                ORDER BY c.id LIMIT 1
                """
            ).rows[0].decode(at: 0, as: Int64.self)
            try await connection.execute("UPDATE legacy.customers SET name = name WHERE id = $1", [customer])
            let change = try #require(try await capturedChanges(connection).first)
            #expect(change.table == "legacy.customers")
            #expect(change.new?.contains("\"currency\": ") == true, "\(change)")

            // What the tailer runs: the images into the source's SQL.
            // The tailer finds the sources of a captured table by the name capture records.
            let byTable = try await connection.withSession { try CapturePlan.sourcesByCapturedTable(mapping, in: $0) }
            let onCustomers = try #require(byTable[change.table])
            #expect(onCustomers.count == 8, "customer's own, and each entity that borrows from customers")
            let sqlSource = try #require(onCustomers.map(\.source).first { $0.columns == ["currency"] })
            let images = "[" + [change.old, change.new].compactMap { $0 }.joined(separator: ",") + "]"
            let keys = try await connection.query(
                sqlSource.touchedKeysSQL(recordedColumns: ["id", "currency"]), [images]
            ).rows.map { try $0.decode(at: 0, as: String.self) }.sorted()
            let expected = try await connection.query(
                "SELECT id::text FROM legacy.invoices WHERE customer_id = $1 ORDER BY 1", [customer]
            ).rows.map { try $0.decode(at: 0, as: String.self) }.sorted()
            #expect(!expected.isEmpty && keys == expected)
        }
    }

    @Test func aMappingWhoseSourcesMissATableItReadsIsRefusedAndNothingIsInstalled() async throws {
        try await withReferenceLegacy { connection, dsn in
            let mapping = try referenceMappingMissingPaymentCustomersSource()
            let before = try await schemaDump(dsn, legacyOnly: false)
            await #expect {
                _ = try await install(connection, mapping)
            } throws: { error in
                guard case ShadowError.mappingIncomplete(let problems) = error else { return false }
                return problems == [
                    "payment: query, by_key read legacy.customers, not in sources; add - { table: legacy.customers, "
                        + "columns: [], keys: \"SELECT e.id::text FROM legacy.payments e JOIN changed c ON c.id = e.customer_id\" }"
                ]
            }
            #expect(try await schemaDump(dsn, legacyOnly: false) == before)
        }
    }
}
