import EventStore
import Foundation
import Postgres
import TestSupport
import Testing

/// Issue 11 §3: the role that owns `ledgerlift.events` can disable its append-only trigger. Run
/// with an owner role (`store init`) and a writer role (everything else): the writer appends and
/// reads, and every way of altering the log is refused to it with SQLSTATE 42501.
///
/// Roles are cluster-wide: each test makes its own, with a random suffix, and drops them after
/// the database that holds their objects.
@Suite("A writer role that appends and reads but cannot alter the event log")
struct WriterRoleTests {
    /// An owner and a writer, both LOGIN without SUPERUSER, and a fresh database owned by the
    /// owner with the store created by it and `grantWriter` run — as docs/security.md sets it up.
    struct Setup {
        let owner: String
        let writer: String
        let database: String
        let adminDSN: String
        let ownerDSN: String
        let writerDSN: String
    }

    static func withOwnerAndWriter(
        _ label: String = #function, grant: Bool = true, _ body: (Setup, EventStore) async throws -> Void
    ) async throws {
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let owner = "lltest_owner_" + suffix
        let writer = "lltest_writer_" + suffix
        let admin = try await Connection.connect(try TestDatabase.adminDSN())
        defer { admin.close() }
        try await admin.execute("CREATE ROLE \(owner) LOGIN")
        try await admin.execute("CREATE ROLE \(writer) LOGIN")
        do {
            try await TestDatabase.withFresh(label) { dsn in
                let database = try await Self.databaseName(dsn)
                try await admin.execute("ALTER DATABASE \(quoteIdentifier(database)) OWNER TO \(owner)")
                let setup = Setup(
                    owner: owner, writer: writer, database: database, adminDSN: dsn,
                    ownerDSN: try Self.dsn(dsn, user: owner), writerDSN: try Self.dsn(dsn, user: writer))
                let store = EventStore()
                let asOwner = try await Connection.connect(setup.ownerDSN)
                defer { asOwner.close() }
                try await asOwner.withSession { session in
                    try store.migrate(session)
                    if grant { try store.grantWriter(writer, in: session) }
                }
                try await body(setup, store)
            }
        } catch {
            try await Self.dropRoles([owner, writer], admin)
            throw error
        }
        try await Self.dropRoles([owner, writer], admin)
    }

    @Test func theWriterAppendsReadsAndKeepsItsBookkeeping() async throws {
        try await Self.withOwnerAndWriter { setup, store in
            let writer = try await Connection.connect(setup.writerDSN)
            defer { writer.close() }
            let who = try await writer.query("SELECT current_user::text").rows[0].decode(at: 0, as: String.self)
            #expect(who == setup.writer)
            try await writer.withSession { session in
                let appended = try store.append(
                    [testEvent("invoice-1", 1), testEvent("invoice-1", 2)], to: "invoice-1", expectedVersion: .noStream,
                    in: session)
                #expect(appended.appended == 2)
                let batch = [1, 2].map {
                    StreamEvent(streamID: "customer-1", streamVersion: Int64($0), event: testEvent("customer-1", $0))
                }
                #expect(try store.appendBulk(batch, in: session).appended == 2)
                // The same batch again takes the careful path (a temporary table) and stores nothing.
                #expect(try store.appendBulk(batch, in: session).duplicates == 2)
                #expect(try store.readStream("invoice-1", in: session).map(\.streamVersion) == [1, 2])
                // (The global order is not read here: it shows only what every older transaction
                // of the cluster has finished with, and other tests run beside this one.)
                let last = try #require(try store.readStream("customer-1", in: session).last).cursor
                try store.advanceCheckpoint("probe", from: .start, to: last, processed: 4, in: session)
                #expect(try store.checkpoint("probe", in: session) == last)
                try store.resetCheckpoint("probe", in: session)
                try store.saveSnapshot("invoice-1", version: 2, type: "probe", state: PostgresJSON("{}"), in: session)
                try store.saveSnapshot(
                    "invoice-1", version: 2, type: "probe", state: PostgresJSON(#"{"a": 1}"#), in: session)
                #expect(try store.stats(in: session).totalEvents == 4)
                // The backfill creates its bookkeeping tables in the store's schema on its first run.
                try session.execute("CREATE TABLE IF NOT EXISTS ledgerlift.backfill_probe (x int)")
                try session.execute("CREATE TABLE IF NOT EXISTS ledgerlift.backfill_probe (x int)")
                // Read models live in schemas the writer creates, renames and drops.
                try session.execute("CREATE SCHEMA ledgerlift_read_next")
                try session.execute("ALTER SCHEMA ledgerlift_read_next RENAME TO ledgerlift_read")
                try session.execute("DROP SCHEMA ledgerlift_read")
            }
        }
    }

    /// Every way of changing stored events or of switching the trigger off, as the writer.
    static let forbidden = [
        "ALTER TABLE ledgerlift.events DISABLE TRIGGER ALL",
        "ALTER TABLE ledgerlift.events DISABLE TRIGGER events_append_only",
        "SET session_replication_role = replica",
        "UPDATE ledgerlift.events SET payload = '{}'",
        "DELETE FROM ledgerlift.events",
        "TRUNCATE ledgerlift.events",
        "DROP TRIGGER events_append_only ON ledgerlift.events",
        "DROP TABLE ledgerlift.events",
        "ALTER TABLE ledgerlift.events OWNER TO CURRENT_USER",
        "CREATE OR REPLACE FUNCTION ledgerlift.refuse_event_mutation() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN OLD; END$$",
        "CREATE TRIGGER sneaky BEFORE INSERT ON ledgerlift.events FOR EACH ROW EXECUTE FUNCTION ledgerlift.refuse_event_mutation()",
        "CREATE RULE sneaky AS ON DELETE TO ledgerlift.events DO INSTEAD NOTHING",
        "DELETE FROM ledgerlift.streams",
        "DELETE FROM ledgerlift.schema_migrations",
        "DROP SCHEMA ledgerlift CASCADE",
    ]

    @Test func everyWayOfAlteringTheLogIsRefusedToTheWriterWith42501() async throws {
        try await Self.withOwnerAndWriter { setup, store in
            let writer = try await Connection.connect(setup.writerDSN)
            defer { writer.close() }
            try await writer.withSession { try store.append([testEvent("invoice-1", 1)], to: "invoice-1", in: $0) }
            for sql in Self.forbidden + ["SET ROLE \(setup.owner)"] {
                let error = try await #require(throws: PostgresError.self, "\(sql)") {
                    try await writer.executeScript(sql)
                }
                #expect(error.sqlState == .insufficientPrivilege, "\(sql): \(error)")
            }
            let events = try await writer.withSession { try store.readStream("invoice-1", in: $0) }
            #expect(events.map(\.eventType) == ["Tested"])
            // What the separation guards against: the owner can switch the trigger off.
            let owner = try await Connection.connect(setup.ownerDSN)
            defer { owner.close() }
            try await owner.executeScript("BEGIN; ALTER TABLE ledgerlift.events DISABLE TRIGGER ALL; ROLLBACK")
        }
    }

    @Test func theGrantIsRefusedWhenTheSeparationWouldMeanNothing() async throws {
        try await Self.withOwnerAndWriter(grant: false) { setup, store in
            let owner = try await Connection.connect(setup.ownerDSN)
            defer { owner.close() }
            let admin = try await Connection.connect(setup.adminDSN)
            defer { admin.close() }
            let superuser = try await admin.query("SELECT current_user::text").rows[0].decode(at: 0, as: String.self)
            let member = setup.owner + "_member"
            try await admin.execute("CREATE ROLE \(member) LOGIN IN ROLE \(setup.owner)")
            do {
                try await Self.expectRefusals(
                    setup, store, owner: owner, admin: admin, superuser: superuser, member: member)
            } catch {
                try await Self.dropRoles([member], admin)
                throw error
            }
            try await Self.dropRoles([member], admin)
        }
    }

    static func expectRefusals(
        _ setup: Setup, _ store: EventStore, owner: Connection, admin: Connection, superuser: String, member: String
    ) async throws {
        let cases: [(String, WriterRoleError)] = [
            ("lltest_nobody_" + setup.writer, .noSuchRole(role: "lltest_nobody_" + setup.writer)),
            (setup.owner, .isTheOwner(role: setup.owner)),
            (superuser, .superuser(role: superuser)),
            (member, .memberOfOwner(role: member, owner: setup.owner)),
        ]
        for (role, expected) in cases {
            await #expect(throws: expected) { try await owner.withSession { try store.grantWriter(role, in: $0) } }
        }
        // Only the owner grants: a writer cannot hand itself the privileges.
        let writer = try await Connection.connect(setup.writerDSN)
        defer { writer.close() }
        await #expect(throws: WriterRoleError.notOwner(connected: setup.writer, owner: setup.owner)) {
            try await writer.withSession { try store.grantWriter(setup.writer, in: $0) }
        }
        // Nothing was granted by the refusals.
        let privileges = try await admin.query(
            "SELECT has_table_privilege($1, 'ledgerlift.events', 'INSERT')", [setup.writer]
        ).rows[0].decode(at: 0, as: Bool.self)
        #expect(!privileges)
    }

    /// The owner of the store must be able to grant CREATE on the database (the read models
    /// need it); when it cannot, the refusal says who can and what to run.
    @Test func anOwnerThatDoesNotOwnTheDatabaseIsToldWhatToDo() async throws {
        try await Self.withOwnerAndWriter(grant: false) { setup, store in
            let admin = try await Connection.connect(setup.adminDSN)
            defer { admin.close() }
            let superuser = try await admin.query("SELECT current_user::text").rows[0].decode(at: 0, as: String.self)
            try await admin.execute(
                "ALTER DATABASE \(quoteIdentifier(setup.database)) OWNER TO \(quoteIdentifier(superuser))")
            let owner = try await Connection.connect(setup.ownerDSN)
            defer { owner.close() }
            let error = try await #require(throws: WriterRoleError.self) {
                try await owner.withSession { try store.grantWriter(setup.writer, in: $0) }
            }
            #expect(error == .cannotGrantOnDatabase(database: setup.database, role: setup.writer))
            #expect(
                error.description.hasSuffix(
                    "GRANT CREATE ON DATABASE \(quoteIdentifier(setup.database)) TO \(quoteIdentifier(setup.writer))"))
        }
    }

    @Test func theGrantsAreExactlyTheDocumentedOnes() throws {
        let statements = EventStore().writerGrants(to: "app", database: "billing")
        #expect(
            statements == [
                #"GRANT USAGE, CREATE ON SCHEMA "ledgerlift" TO "app""#,
                #"REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES ON "ledgerlift".events FROM "app""#,
                #"GRANT SELECT, INSERT ON "ledgerlift".events TO "app""#,
                #"GRANT SELECT, INSERT, UPDATE ON "ledgerlift".streams TO "app""#,
                #"GRANT SELECT, INSERT, UPDATE ON "ledgerlift".snapshots TO "app""#,
                #"GRANT SELECT, INSERT, UPDATE, DELETE ON "ledgerlift".checkpoints TO "app""#,
                #"GRANT SELECT ON "ledgerlift".schema_migrations TO "app""#,
                #"GRANT EXECUTE ON FUNCTION "ledgerlift".append_to_stream(text, text, bigint, uuid[], text[], integer[], timestamptz[], jsonb[], jsonb[]) TO "app""#,
                #"GRANT SELECT, INSERT, UPDATE, DELETE ON "ledgerlift".idempotency_keys TO "app""#,
                #"GRANT SELECT, INSERT, UPDATE ON "ledgerlift".stripe_events TO "app""#,
                #"GRANT SELECT, INSERT ON "ledgerlift".candidate_commands TO "app""#,
                #"GRANT SELECT, UPDATE (singleton) ON "ledgerlift".routing TO "app""#,
                #"GRANT USAGE, SELECT, UPDATE ON SEQUENCE "ledgerlift"."command_ids_customer", "ledgerlift"."command_ids_plan", "ledgerlift"."command_ids_subscription", "ledgerlift"."command_ids_invoice", "ledgerlift"."command_ids_invoice_line", "ledgerlift"."command_ids_payment", "ledgerlift"."command_ids_refund", "ledgerlift"."command_ids_credit_note", "ledgerlift"."command_ids_balance_transaction", "ledgerlift"."command_ids_billing_entity", "ledgerlift"."command_ids_payment_allocation", "ledgerlift"."command_ids_wallet", "ledgerlift"."command_ids_wallet_transaction", "ledgerlift"."command_ids_credit_application", "ledgerlift"."command_ids_chargeback", "ledgerlift"."command_ids_payment_transaction" TO "app""#,
                #"GRANT CREATE ON DATABASE "billing" TO "app""#,
            ])
        // docs/security.md shows the same statements.
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
            dir = dir.deletingLastPathComponent()
        }
        let doc = try String(contentsOf: dir.appendingPathComponent("docs/security.md"), encoding: .utf8)
        for statement in EventStore().writerGrants(to: "ledgerlift_writer", database: "ledger") {
            #expect(doc.contains(statement + ";"), "docs/security.md lacks: \(statement)")
        }
    }

    // MARK: - Helpers

    static func databaseName(_ dsn: String) async throws -> String {
        let connection = try await Connection.connect(dsn)
        defer { connection.close() }
        return try await connection.query("SELECT current_database()::text").rows[0].decode(at: 0, as: String.self)
    }

    /// `dsn` connecting as `user` (the test server trusts local connections).
    static func dsn(_ dsn: String, user: String) throws -> String {
        guard dsn.hasPrefix("postgresql://") || dsn.hasPrefix("postgres://") else { return dsn + " user=\(user)" }
        var components = try #require(URLComponents(string: dsn))
        components.user = user
        components.password = nil
        return try #require(components.string)
    }

    static func dropRoles(_ roles: [String], _ admin: Connection) async throws {
        for role in roles { try await admin.execute("DROP ROLE IF EXISTS \(role)") }
    }

}
