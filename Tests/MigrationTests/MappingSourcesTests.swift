import Billing
import Foundation
import Postgres
import Testing

@testable import Mapping

/// `sources` in both forms and `by_key`: what the parser accepts, what it refuses (with the
/// line), and the SQL the tailer runs for each.
@Suite("Mapping file: sources by column or by SQL, and by_key")
struct MappingSourcesTests {
    static func yaml(_ sources: String, byKey: String? = nil) -> String {
        var text = """
            version: 1
            amounts: major
            entities:
              invoice:
                query: SELECT i.id::text AS invoice_id FROM legacy.invoices i
            """
        if let byKey { text += "\n    by_key: \(byKey)" }
        return text + "\n    sources:\n" + sources
    }

    static func loadError(_ yaml: String) throws -> MappingError {
        do {
            _ = try MappingFile(yaml: yaml, file: "t.yaml")
        } catch {
            return error
        }
        Issue.record("the mapping loaded")
        throw MappingError(file: "t.yaml", issues: [])
    }

    @Test func bothFormsLoadAndKeepTheirParts() throws {
        let mapping = try MappingFile(
            yaml: Self.yaml(
                """
                      - { table: legacy.invoices, key: id }
                      - table: legacy.customers
                        columns: [id, currency]
                        keys: |
                          SELECT i.id::text FROM legacy.invoices i JOIN changed c ON c.id = i.customer_id;
                      - { table: legacy.plans, columns: [], keys: "SELECT NULL::text WHERE false" }
                """, byKey: "SELECT i.id::text AS invoice_id FROM legacy.invoices i WHERE i.id = ANY($1::bigint[])"),
            file: "t.yaml")
        let invoice = try #require(mapping[entity: .invoice])
        #expect(
            invoice.sources == [
                MappingFile.Source(table: "legacy.invoices", key: "id"),
                MappingFile.Source(
                    table: "legacy.customers", columns: ["id", "currency"],
                    keys: "SELECT i.id::text FROM legacy.invoices i JOIN changed c ON c.id = i.customer_id"),
                MappingFile.Source(table: "legacy.plans", columns: [], keys: "SELECT NULL::text WHERE false"),
            ])
        #expect(invoice.sources[1].keys?.hasSuffix("c.id = i.customer_id\n") == true, "trailing semicolon removed")
        #expect(invoice.byKey == "SELECT i.id::text AS invoice_id FROM legacy.invoices i WHERE i.id = ANY($1::bigint[])\n")
        #expect(invoice.byKeySQL == invoice.byKey)
        // The runtime view carries what the tailer needs.
        let source = try #require(mapping.entitySources().first)
        #expect(source.byKeyQuery == invoice.byKey)
        #expect(source.sources == invoice.sources)
        // by_key is part of what the mapping means.
        let without = try MappingFile(
            yaml: Self.yaml("      - { table: legacy.invoices, key: id }\n"), file: "t.yaml")
        #expect(without[entity: .invoice]?.byKey == nil)
        #expect(
            without[entity: .invoice]?.byKeySQL
                == "SELECT * FROM (\nSELECT i.id::text AS invoice_id FROM legacy.invoices i\n) AS q WHERE q.\"invoice_id\" = ANY($1::text[])"
        )
        #expect(without.entitySources().first?.byKeyQuery == without[entity: .invoice]?.byKeySQL)
    }

    @Test func theRecordedColumnsAreThePrimaryKeyThenTheSourcesColumns() {
        let sql = MappingFile.Source(table: "legacy.customers", columns: ["id", "\"Region\""], keys: "SELECT 1")
        #expect(sql.neededColumns == ["id", "Region"])
        #expect(sql.recordedColumns(primaryKey: ["id"]) == ["id", "Region"])
        let text = sql.touchedKeysSQL(recordedColumns: ["id", "Region"])
        #expect(text.contains("SELECT \"id\", \"Region\" FROM jsonb_populate_recordset(NULL::\"legacy\".\"customers\", $1::jsonb)"))
        let key = MappingFile.Source(table: "legacy.invoices", key: "\"Customer\"")
        #expect(key.neededColumns == ["Customer"])
        #expect(key.touchedKeysSQL(recordedColumns: []).contains("r ->> 'Customer'"))
    }

    @Test func aSourceNeedsExactlyOneOfKeyAndKeys() throws {
        let both = try Self.loadError(
            Self.yaml("      - { table: legacy.customers, key: id, columns: [id], keys: SELECT 1 }\n"))
        #expect(both.issues.map(\.code) == [.invalidValue])
        #expect(both.issues[0].path == "entities.invoice.sources[0].keys")
        #expect(both.issues[0].line == 7)
        #expect(both.issues[0].message.hasPrefix("write either key (line 7"))

        let neither = try Self.loadError(Self.yaml("      - { table: legacy.customers }\n"))
        #expect(neither.issues.map(\.code) == [.missingField])
        #expect(neither.issues[0].path == "entities.invoice.sources[0].key")
        #expect(neither.issues[0].line == 7)
        #expect(neither.issues[0].message.contains("or keys (SQL over the changed rows, `changed`"))
    }

    @Test func keysNeedColumnsAndAKeySourceTakesNone() throws {
        let noColumns = try Self.loadError(
            Self.yaml("      - table: legacy.customers\n        keys: SELECT c.id::text FROM changed c\n"))
        #expect(noColumns.issues.map(\.code) == [.missingField])
        #expect(noColumns.issues[0].path == "entities.invoice.sources[0].columns")
        #expect(noColumns.issues[0].line == 7)
        #expect(noColumns.issues[0].message.contains("`columns: []` when the primary key is enough"))

        let columnsWithKey = try Self.loadError(
            Self.yaml("      - table: legacy.invoices\n        key: id\n        columns: [customer_id]\n"))
        #expect(columnsWithKey.issues.map(\.code) == [.invalidValue])
        #expect(columnsWithKey.issues[0].path == "entities.invoice.sources[0].columns")
        #expect(columnsWithKey.issues[0].line == 9)

        let badColumns = try Self.loadError(
            Self.yaml("      - { table: legacy.customers, columns: id, keys: SELECT 1 }\n"))
        #expect(badColumns.issues.map(\.path) == ["entities.invoice.sources[0].columns"])
        let twice = try Self.loadError(
            Self.yaml("      - { table: legacy.customers, columns: [id, id], keys: SELECT 1 }\n"))
        #expect(twice.issues[0].message == "\"id\" is listed twice")

        let emptyKeys = try Self.loadError(Self.yaml("      - { table: legacy.customers, columns: [], keys: \"\" }\n"))
        #expect(emptyKeys.issues.map(\.path) == ["entities.invoice.sources[0].keys"])
        let noTable = try Self.loadError(Self.yaml("      - { key: id }\n"))
        #expect(noTable.issues.map(\.path) == ["entities.invoice.sources[0].table"])
        let typo = try Self.loadError(Self.yaml("      - { table: legacy.customers, columns: [], kyes: SELECT 1 }\n"))
        #expect(typo.issues.map(\.code).contains(.unknownField))
        #expect(
            typo.issues.first { $0.code == .unknownField }?.message.hasSuffix("Allowed: table, key, columns, keys") == true)
    }

    @Test func byKeyIsAQueryAndNotForFileEntities() throws {
        let empty = try Self.loadError(Self.yaml("      - { table: legacy.invoices, key: id }\n", byKey: "\"\""))
        #expect(empty.issues.map(\.path) == ["entities.invoice.by_key"])
        #expect(empty.issues[0].line == 6)
        let file = try Self.loadError(
            """
            version: 1
            entities:
              plan:
                file: nowhere.yaml
                by_key: SELECT 1
            """)
        #expect(file.issues.map(\.path).contains("entities.plan.by_key"))
    }
}
