import Foundation
import Mapping
import Postgres
import Shadow
import TestSupport
import Testing

/// Shadow mode's capture on the reference fixture: every committed write to a `sources` table
/// leaves one row per changed row — its transaction's xid8, the operation, the key columns old
/// and new — and nothing else does; install is idempotent and uninstall leaves no trace.
@Suite("Shadow: capture triggers")
struct CaptureTests {
    @Test func committedWritesAreCapturedWithTheirTransactionAndKeys() async throws {
        try await withReferenceLegacy { connection, _ in
            let report = try await install(connection, try referenceMapping())
            #expect(report.schemaFrom == 0 && report.schemaTo == CaptureSchema.currentVersion)
            #expect(report.added.contains("legacy.invoices") && report.added.contains("legacy.customers"))
            #expect(report.recordedXid != nil)
            #expect(try await capturedChanges(connection).isEmpty)

            // INSERT: the new row's keys, in the writing transaction.
            let (customer, insertXid) = try await connection.transaction { tx in
                let id = try tx.query(
                    "INSERT INTO legacy.customers (email, currency) VALUES ('shadow@example.com', 'USD') RETURNING id"
                ).rows[0].decode(at: 0, as: Int64.self)
                return (id, try tx.query("SELECT pg_current_xact_id()::text").rows[0].decode(at: 0, as: String.self))
            }
            var changes = try await capturedChanges(connection)
            #expect(changes.count == 1)
            #expect(changes.first?.xid == insertXid)
            #expect(changes.first?.table == "legacy.customers" && changes.first?.op == "I")
            #expect(changes.first?.old == nil && changes.first?.new == "{\"id\": \(customer)}")

            // UPDATE moving an invoice to another customer: old and new customer_id.
            let invoice = try await connection.query(
                "SELECT id, customer_id FROM legacy.invoices ORDER BY id LIMIT 1"
            ).rows[0]
            let invoiceID = try invoice.decode(at: 0, as: Int64.self)
            let formerCustomer = try invoice.decode(at: 1, as: Int64.self)
            let last = changes.last!.id
            let updateXid = try await connection.transaction { tx in
                try tx.execute("UPDATE legacy.invoices SET customer_id = $1 WHERE id = $2", [customer, invoiceID])
                return try tx.query("SELECT pg_current_xact_id()::text").rows[0].decode(at: 0, as: String.self)
            }
            changes = try await capturedChanges(connection, after: last)
            #expect(changes.count == 1)
            #expect(
                changes.first?.xid == updateXid && changes.first?.op == "U" && changes.first?.table == "legacy.invoices"
            )
            #expect(changes.first?.old == "{\"id\": \(invoiceID), \"customer_id\": \(formerCustomer)}")
            #expect(changes.first?.new == "{\"id\": \(invoiceID), \"customer_id\": \(customer)}")

            // DELETE: the old row's keys.
            try await connection.execute(
                "UPDATE legacy.invoices SET customer_id = $1 WHERE id = $2", [formerCustomer, invoiceID])
            let beforeDelete = try await capturedChanges(connection).last!.id
            try await connection.execute("DELETE FROM legacy.customers WHERE id = $1", [customer])
            changes = try await capturedChanges(connection, after: beforeDelete)
            #expect(changes.map(\.op) == ["D"])
            #expect(changes.first?.old == "{\"id\": \(customer)}" && changes.first?.new == nil)
        }
    }

    @Test func aRolledBackWriteLeavesNoCaptureRow() async throws {
        try await withReferenceLegacy { connection, _ in
            _ = try await install(connection, try referenceMapping())
            try await connection.execute("BEGIN")
            try await connection.execute("UPDATE legacy.invoices SET status = status")
            try await connection.execute("INSERT INTO legacy.customers (email) VALUES ('gone@example.com')")
            try await connection.execute("DELETE FROM legacy.refunds")
            try await connection.execute("ROLLBACK")
            #expect(try await capturedChanges(connection).isEmpty)
        }
    }

    @Test func aMultiRowStatementCapturesOneRowPerChangedRow() async throws {
        try await withReferenceLegacy { connection, _ in
            _ = try await install(connection, try referenceMapping())
            let invoices = try await connection.query("SELECT count(*) FROM legacy.invoices").rows[0].decode(
                at: 0, as: Int64.self)
            #expect(invoices > 1)
            try await connection.execute("UPDATE legacy.invoices SET updated_at = updated_at")
            let changes = try await capturedChanges(connection)
            #expect(changes.count == Int(invoices))
            #expect(Set(changes.map(\.xid)).count == 1)
            #expect(changes.allSatisfy { $0.op == "U" && $0.old == $0.new && $0.old != nil })
            let ids = try await connection.query("SELECT id FROM legacy.invoices ORDER BY id").rows
                .map { try $0.decode(at: 0, as: Int64.self) }
            let captured = try await connection.query(
                "SELECT (old_row->>'id')::bigint FROM ledgerlift_capture.changes ORDER BY 1"
            ).rows.map { try $0.decode(at: 0, as: Int64.self) }
            #expect(captured == ids)
        }
    }

    @Test func truncateIsRecordedAsAMarker() async throws {
        try await withReferenceLegacy { connection, _ in
            _ = try await install(connection, try referenceMapping())
            try await connection.execute("TRUNCATE legacy.refunds")
            let changes = try await capturedChanges(connection)
            #expect(changes.map { "\($0.op) \($0.table)" } == ["T legacy.refunds"])
            #expect(changes.first?.old == nil && changes.first?.new == nil)
        }
    }

    @Test func installingTwiceChangesNothingAndNewSourcesAddTriggers() async throws {
        try await withReferenceLegacy { connection, dsn in
            let full = try referenceMapping()
            // First without payments and refunds (whose sources name legacy.payments): a mapping
            // naming fewer tables, still covering everything its entities read.
            let smaller = MappingFile(
                amounts: full.amounts, entities: full.entities.filter { !["payment_id", "refund_id"].contains($0.key) },
                file: referenceMappingPath)
            let first = try await install(connection, smaller)
            #expect(!first.added.contains("legacy.payments"))

            let dump = try await schemaDump(dsn, legacyOnly: false)
            let again = try await install(connection, smaller)
            #expect(again.changedNothing, "\(again)")
            #expect(again.unchanged.count == first.added.count)
            #expect(try await schemaDump(dsn, legacyOnly: false) == dump)
            #expect(
                try await connection.query("SELECT count(*) FROM ledgerlift_capture.installs").rows[0].decode(
                    at: 0, as: Int64.self) == 1)

            let grown = try await install(connection, full)
            #expect(grown.added == ["legacy.payments", "legacy.refunds"])
            #expect(grown.recordedXid != nil)
            try await connection.execute(
                "UPDATE legacy.payments SET updated_at = updated_at WHERE id = (SELECT min(id) FROM legacy.payments)")
            #expect(try await capturedChanges(connection).map(\.table) == ["legacy.payments"])
            #expect(try await install(connection, full).changedNothing)

            // Another key column on a captured table: its triggers are regenerated to record it.
            var yaml = try String(contentsOfFile: referenceMappingPath, encoding: .utf8)
            yaml = yaml.replacing(
                "- { table: legacy.payments, key: id }",
                with: "- { table: legacy.payments, key: id }\n      - { table: legacy.payments, key: invoice_id }")
            let wider = try MappingFile(yaml: yaml, file: referenceMappingPath)
            let regenerated = try await install(connection, wider)
            #expect(regenerated.changed == ["legacy.payments"] && regenerated.added.isEmpty, "\(regenerated)")
            let last = try await capturedChanges(connection).last!.id
            try await connection.execute(
                "UPDATE legacy.payments SET updated_at = updated_at WHERE id = (SELECT min(id) FROM legacy.payments WHERE invoice_id IS NOT NULL)"
            )
            let recorded = try #require(try await capturedChanges(connection, after: last).first)
            #expect(recorded.new?.contains("\"invoice_id\": ") == true, "\(recorded)")
            #expect(
                try await connection.query(
                    "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'legacy.payments'::regclass AND NOT tgisinternal"
                ).rows[0].decode(at: 0, as: Int64.self) == 4)
        }
    }

    @Test func uninstallLeavesTheLegacySchemaByteIdentical() async throws {
        try await withReferenceLegacy { connection, dsn in
            let before = try await schemaDump(dsn)
            _ = try await install(connection, try referenceMapping())
            #expect(try await schemaDump(dsn) != before, "the triggers show in the dump")
            try await connection.execute("UPDATE legacy.customers SET updated_at = updated_at")
            let report = try await connection.withSession { try CaptureInstaller().uninstall(in: $0) }
            #expect(report.schemaExisted && report.pendingChanges > 0)
            #expect(report.tables.contains("legacy.invoices"))
            #expect(try await schemaDump(dsn) == before)
            #expect(
                try await connection.query("SELECT to_regnamespace('ledgerlift_capture') IS NULL").rows[0].decode(
                    at: 0, as: Bool.self))
            // Nothing left to remove: a second uninstall does nothing.
            let again = try await connection.withSession {
                try CaptureInstaller().uninstall(mapping: try referenceMapping(), in: $0)
            }
            #expect(!again.schemaExisted && again.tables.isEmpty)
        }
    }

    /// The application's role writes through the triggers with only its own grants, and cannot
    /// read the outbox.
    @Test func theApplicationsRoleNeedsNoNewGrant() async throws {
        try await withReferenceLegacy { connection, _ in
            _ = try await install(connection, try referenceMapping())
            let role = "ll_shadow_app_" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
            try await connection.execute("CREATE ROLE \(role) NOLOGIN")
            do {
                try await connection.executeScript(
                    """
                    GRANT USAGE ON SCHEMA legacy TO \(role);
                    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA legacy TO \(role);
                    GRANT USAGE ON ALL SEQUENCES IN SCHEMA legacy TO \(role);
                    SET ROLE \(role);
                    INSERT INTO legacy.customers (email) VALUES ('app@example.com');
                    UPDATE legacy.invoices SET updated_at = updated_at WHERE id = (SELECT min(id) FROM legacy.invoices);
                    """)
                var denied = false
                do {
                    _ = try await connection.query("SELECT count(*) FROM ledgerlift_capture.changes")
                } catch let error as PostgresError {
                    denied = error.sqlState == "42501"
                }
                try await connection.execute("RESET ROLE")
                #expect(denied, "the application's role cannot read the outbox")
                #expect(try await capturedChanges(connection).map(\.op) == ["I", "U"])
            } catch {
                _ = try? await connection.execute("RESET ROLE")
                try? await connection.executeScript("DROP OWNED BY \(role); DROP ROLE \(role);")
                throw error
            }
            try await connection.executeScript("DROP OWNED BY \(role); DROP ROLE \(role);")
        }
    }

    /// A role with only TRIGGER on the tables installs; dropping the triggers needs the tables'
    /// owner, and uninstall says so before changing anything.
    @Test func aRoleWithTriggerPrivilegeInstallsButOnlyTheOwnerUninstalls() async throws {
        try await withReferenceLegacy { connection, _ in
            let role = "ll_shadow_installer_" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
            let database = try await connection.query("SELECT current_database()::text").rows[0].decode(
                at: 0, as: String.self)
            try await connection.executeScript(
                """
                CREATE ROLE \(role) NOLOGIN;
                GRANT CREATE ON DATABASE "\(database)" TO \(role);
                GRANT USAGE ON SCHEMA legacy TO \(role);
                GRANT TRIGGER ON ALL TABLES IN SCHEMA legacy TO \(role);
                SET ROLE \(role);
                """)
            let mapping = try referenceMapping()
            let installed = try await install(connection, mapping)
            #expect(installed.added.count == 10)
            #expect(try await install(connection, mapping).changedNothing)
            await #expect(throws: ShadowError.self) {
                _ = try await connection.withSession { try CaptureInstaller().uninstall(in: $0) }
            }
            #expect(
                try await connection.query("SELECT to_regnamespace('ledgerlift_capture') IS NOT NULL").rows[0].decode(
                    at: 0, as: Bool.self))
            try await connection.execute("RESET ROLE")
            let before = try await connection.query(
                "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'ledgerlift_capture_%'"
            ).rows[0]
                .decode(at: 0, as: Int64.self)
            #expect(before == 40)
            // The superuser owns the tables: it uninstalls.
            _ = try await connection.withSession { try CaptureInstaller().uninstall(in: $0) }
            try await connection.executeScript("DROP OWNED BY \(role); DROP ROLE \(role);")
        }
    }

    /// The capture schema is versioned like the event store's: each version applied once, in
    /// order; a schema newer than this Ledgerlift is refused, changing nothing.
    @Test func theCaptureSchemaIsVersionedAndANewerOneIsRefused() async throws {
        try await withReferenceLegacy { connection, _ in
            let capture = CaptureSchema()
            #expect(try await connection.withSession { try capture.version($0) } == nil)
            _ = try await install(connection, try referenceMapping())
            #expect(try await connection.withSession { try capture.version($0) } == CaptureSchema.currentVersion)
            let applied = try await connection.query(
                "SELECT string_agg(version::text, ',' ORDER BY version) FROM ledgerlift_capture.schema_migrations"
            ).rows[0].decode(at: 0, as: String.self)
            #expect(applied == (1...CaptureSchema.currentVersion).map(String.init).joined(separator: ","))

            try await connection.execute(
                "INSERT INTO ledgerlift_capture.schema_migrations (version, description) VALUES (99, 'from the future')"
            )
            await #expect(
                throws: ShadowError.schemaTooNew(
                    schema: "ledgerlift_capture", found: 99, supported: CaptureSchema.currentVersion)
            ) {
                _ = try await install(connection, try referenceMapping())
            }
        }
    }

    /// A transaction that keeps writing a table holds install off: each attempt waits a bounded
    /// time, so the application is never the one that fails; after the last, nothing changed.
    @Test func aLongTransactionOnATableMakesInstallWaitThenGiveUpWithoutHarm() async throws {
        try await withReferenceLegacy { connection, dsn in
            let application = try await Connection.connect(dsn)
            defer { application.close() }
            try await application.execute("BEGIN")
            try await application.execute(
                "UPDATE legacy.payments SET updated_at = updated_at WHERE id = (SELECT min(id) FROM legacy.payments)")
            let installer = CaptureInstaller(lockTimeout: .milliseconds(50), lockAttempts: 3)
            let mapping = try referenceMapping()
            await #expect(throws: ShadowError.self) {
                _ = try await connection.withSession { try installer.install(mapping, in: $0) }
            }
            #expect(
                try await connection.query("SELECT to_regnamespace('ledgerlift_capture') IS NULL").rows[0].decode(
                    at: 0, as: Bool.self))
            // The application's transaction carries on and commits.
            try await application.execute(
                "UPDATE legacy.customers SET updated_at = updated_at WHERE id = (SELECT min(id) FROM legacy.customers)")
            try await application.execute("COMMIT")
            #expect(try await connection.withSession { try installer.install(mapping, in: $0) }.added.count == 10)
        }
    }

    @Test func aSourceTableThatDoesNotExistIsRefusedAndNothingIsInstalled() async throws {
        try await withReferenceLegacy { connection, _ in
            var yaml = try String(contentsOfFile: referenceMappingPath, encoding: .utf8)
            yaml = yaml.replacing("- { table: legacy.refunds, key: id }", with: "- { table: legacy.refundz, key: id }")
            let mapping = try MappingFile(yaml: yaml, file: referenceMappingPath)
            await #expect(throws: ShadowError.sourceTableMissing(entity: "refund", table: "legacy.refundz")) {
                _ = try await install(connection, mapping)
            }
            #expect(
                try await connection.query("SELECT to_regnamespace('ledgerlift_capture') IS NULL").rows[0].decode(
                    at: 0, as: Bool.self))
        }
    }
}
