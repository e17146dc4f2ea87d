import Billing
import Foundation
import Mapping
import Postgres
import Shadow
import TestSupport
import Testing

/// `write_back` in the mapping: named parameters, their types and values, the errors the
/// parser reports with their line, and what `mapping check` finds when it runs the statements.
@Suite("Mapping write_back: named parameters, checked on load and against the legacy database")
struct WriteBackMappingTests {
    static func customerMapping(_ writeBack: String) -> String {
        """
        version: 1
        entities:
          customer:
            query: SELECT c.id::text AS customer_id, c.email, c.name, c.currency, c.created_at, c.updated_at, c.deleted_at AS archived_at, c.timezone AS time_zone FROM legacy.customers c
            sources:
              - { table: legacy.customers, key: id }
        \(writeBack)
        """
    }

    @Test func namedParametersBindToNumberedOnesTypedAsTheirColumns() throws {
        let statement = try WriteBack.Statement(
            """
            UPDATE legacy.invoices SET amount_due = :amount_due, note = ':not_a_parameter', "odd:name" = 1 -- :nor_this
            /* :nor /* nested :this */ */ WHERE id = :invoice_id::bigint AND $x$ :dollar $x$ <> '' AND amount_due <> :amount_due
            """)
        #expect(statement.parameters == ["amount_due", "invoice_id"])
        let sql = statement.sql { WriteBack.parameterType($0, entity: .invoice, amounts: .major) }
        #expect(sql.contains("SET amount_due = ($1::numeric), note = ':not_a_parameter'"))
        #expect(sql.contains("WHERE id = ($2::text)::bigint AND $x$ :dollar $x$"))
        #expect(sql.hasSuffix("amount_due <> ($1::numeric)\n"))
        #expect(WriteBack.parameterType("amount_due", entity: .invoice, amounts: .minor) == "bigint")
        #expect(WriteBack.parameterType("paid_at", entity: .invoice, amounts: .major) == "timestamptz")
        #expect(WriteBack.parameterType("due_on", entity: .invoice, amounts: .major) == "date")
        #expect(WriteBack.parameterType("tax_rate", entity: .invoice, amounts: .major) == "text")
        #expect(throws: WriteBackSQLError.self) { try WriteBack.Statement("UPDATE t SET a = $1") }
    }

    @Test func onlyDataStatementsAreWriteBack() throws {
        // A COMMIT would commit `mapping check`'s scratch transaction; DDL and COPY (TO PROGRAM)
        // have no place in writing a row back.
        for text in [
            "COMMIT", "  -- why\n ROLLBACK", "DROP TABLE legacy.customers", "COPY (SELECT 1) TO PROGRAM 'true'",
            "BEGIN", "SET search_path = x", "CALL p()", "",
        ] {
            #expect(throws: WriteBackSQLError.self, "\(text)") { try WriteBack.Statement(text) }
        }
        for text in [
            "UPDATE t SET a = :amount", "/* c */ INSERT INTO t VALUES (:amount)", "(SELECT :amount)",
            "WITH x AS (SELECT 1) DELETE FROM t", "select setval('s', 1)",
        ] {
            #expect(throws: Never.self, "\(text)") { _ = try WriteBack.Statement(text) }
        }
    }

    @Test func amountsAreBoundInTheUnitTheMappingReads() throws {
        let row = CanonicalRow(
            entity: .invoiceLine,
            values: [
                "invoice_line_id": .text("7"), "invoice_id": .text("3"), "kind": .text("usage"),
                "quantity": .decimal("3"), "unit_amount": .decimal("0.0125"), "amount": .amount(-5),
                "currency": .text("USD"), "proration": .boolean(false),
                "created_at": .timestamp(PostgresTimestamp("2025-01-02T03:04:05.000006Z")!),
            ])
        let statement = try WriteBack.Statement(
            "SELECT :amount, :unit_amount, :quantity, :created_at, :proration, :description")
        #expect(
            try WriteBack.values(of: statement, row: row, amounts: .major)
                == ["-0.05", "0.0125", "3", "2025-01-02T03:04:05.000006Z", "false", nil])
        #expect(try WriteBack.values(of: statement, row: row, amounts: .minor)[0...1] == ["-5", "1.25"])
        var jpy = row
        jpy.values["currency"] = .text("JPY")
        jpy.values["amount"] = .amount(1500)
        // A library that writes every currency in hundredths: ¥1,500 is 150000.
        #expect(
            try WriteBack.values(of: statement, row: jpy, amounts: .minor, currencyExponents: [.jpy: 2])[0] == "150000")
        var kwd = row
        kwd.values["currency"] = .text("KWD")
        kwd.values["amount"] = .amount(14875)
        #expect(try WriteBack.values(of: statement, row: kwd, amounts: .major)[0] == "14.875")
        // 14.875 KWD written in hundredths is not a whole number: refused, never rounded.
        #expect(throws: WriteBack.BindingError.self) {
            try WriteBack.values(
                of: statement, row: kwd, amounts: .minor, currencyExponents: [try Currency(code: "KWD"): 2])
        }
    }

    @Test func anUnknownParameterIsAMappingErrorWithItsLine() throws {
        let yaml = Self.customerMapping(
            """
                write_back:
                  upsert:
                    - |
                      INSERT INTO legacy.customers (id, email)
                      VALUES (:customer_id::bigint, :emial)
                  delete: DELETE FROM legacy.customers WHERE id = :customer_id::bigint
            """)
        #expect {
            try MappingFile(yaml: yaml, file: "m.yaml")
        } throws: { error in
            guard let error = error as? MappingError, error.issues.count == 1 else { return false }
            let issue = error.issues[0]
            return issue.line == 11 && issue.field == "write_back.upsert"
                && issue.message.hasPrefix("unknown parameter :emial at line 2 of the statement; did you mean :email?")
        }
        let missing = Self.customerMapping(
            """
                write_back:
                  upsert: UPDATE legacy.customers SET email = :email WHERE id = :customer_id::bigint
            """)
        #expect {
            try MappingFile(yaml: missing, file: "m.yaml")
        } throws: { error in
            (error as? MappingError)?.issues.map(\.field) == ["write_back.delete"]
                && (error as? MappingError)?.codes == [.missingField]
        }
        let positional = Self.customerMapping(
            """
                write_back:
                  upsert: UPDATE legacy.customers SET email = $1
                  delete: DELETE FROM legacy.customers WHERE id = :customer_id::bigint
            """)
        #expect {
            try MappingFile(yaml: positional, file: "m.yaml")
        } throws: { error in
            (error as? MappingError)?.issues.first?.message.contains("positional parameter $1") == true
        }
    }

    @Test func theReferenceMappingWritesEveryEntityBackWithoutChangingItsFingerprint() throws {
        let mapping = try referenceMapping()
        #expect(mapping.entities.count == 9)
        #expect(mapping.entitiesWithoutWriteBack.isEmpty)
        let without = MappingFile(
            amounts: mapping.amounts, defaultCurrency: mapping.defaultCurrency,
            currencyExponents: mapping.currencyExponents, receivables: mapping.receivables,
            entities: mapping.entities.map {
                var entity = $0
                entity.writeBack = nil
                return entity
            }, file: mapping.file)
        #expect(without.fingerprint == mapping.fingerprint)
        #expect(without.entitiesWithoutWriteBack.count == 9)
    }

    @Test(
        "mapping check runs each statement and rolls it back: a failing one is an error with its SQLSTATE and line; entities without write_back get a note"
    )
    func mappingCheckRunsTheStatements() async throws {
        try await withReferenceLegacy { connection, _ in
            let yaml = try String(contentsOfFile: referenceMappingPath, encoding: .utf8)
            let broken = try MappingFile(
                yaml: yaml.replacing("SET balance = coalesce", with: "SET balanse = coalesce"),
                file: referenceMappingPath)
            let before = try await connection.query(
                "SELECT (SELECT last_value FROM legacy.customers_id_seq), (SELECT sum(balance)::text FROM legacy.customers)"
            ).rows[0].values
            let report = try await MappingChecker(broken, validatesWriteBack: true).check(connection)
            let failed = report.errors.filter { $0.code == .writeBackFailed }
            #expect(
                failed.map(\.location) == [
                    "customer.write_back.upsert[2]", "invoice.write_back.upsert[2]", "invoice.write_back.delete[1]",
                    "balance_transaction.write_back.upsert[2]", "balance_transaction.write_back.delete[1]",
                ])
            #expect(
                failed[0].message.hasPrefix(
                    "fails for customer 1 (a real row): column \"balanse\" of relation \"customers\" does not exist (SQLSTATE 42703)"
                ))
            #expect(failed[0].message.contains("(the statement starts at line 128 of the mapping file)"))
            // Rolled back: nothing changed, not even the sequence.
            let after = try await connection.query(
                "SELECT (SELECT last_value FROM legacy.customers_id_seq), (SELECT sum(balance)::text FROM legacy.customers)"
            ).rows[0].values
            #expect(after == before)
            let clean = try await MappingChecker(try referenceMapping(), validatesWriteBack: true).check(connection)
            #expect(!clean.findings.contains { $0.part == .writeBack })
            // Without validation (the backfill's own check), nothing runs.
            #expect(try await MappingChecker(broken).check(connection).errors.isEmpty)
            // Some entities written back and not others: a note on each of the others.
            var partial = try referenceMapping()
            partial = MappingFile(
                amounts: partial.amounts,
                entities: partial.entities.map {
                    var entity = $0
                    if entity.entity != .customer { entity.writeBack = nil }
                    return entity
                }, file: partial.file)
            let notes = try await MappingChecker(partial, validatesWriteBack: true).check(connection).notes
                .filter { $0.code == .writeBackMissing }
            #expect(notes.count == 8)
            // Only mapping check judges write_back: other callers see nothing of it.
            #expect(!(try await MappingChecker(partial).check(connection).findings.contains { $0.part == .writeBack }))
        }
    }
}
