import Foundation
import Postgres
import TestSupport
import Testing

/// Issue 11 §3, as a user runs it: `store init --grant-to` as the owner, then every other
/// command as the writer — and the writer cannot switch the append-only trigger off.
@Suite("store init --grant-to, then the whole migration as the writer role")
struct WriterRoleEndToEndTests {
    static var mapping: String {
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
            dir = dir.deletingLastPathComponent()
        }
        return dir.appendingPathComponent("fixtures/reference/mapping.yaml").path
    }

    @Test func theWriterMigratesProjectsAndDiffsButCannotDisableTheTrigger() async throws {
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let owner = "lltest_e2e_owner_" + suffix
        let writer = "lltest_e2e_writer_" + suffix
        let admin = try await Connection.connect(try TestDatabase.adminDSN())
        defer { admin.close() }
        try await admin.execute("CREATE ROLE \(owner) LOGIN")
        try await admin.execute("CREATE ROLE \(writer) LOGIN")
        do {
            try await TestDatabase.withFresh { dsn in
                try await Self.run(dsn: dsn, owner: owner, writer: writer, admin: admin)
            }
        } catch {
            for role in [owner, writer] { try await admin.execute("DROP ROLE IF EXISTS \(role)") }
            throw error
        }
        for role in [owner, writer] { try await admin.execute("DROP ROLE IF EXISTS \(role)") }
    }

    static func run(dsn: String, owner: String, writer: String, admin: Connection) async throws {
        let database = try await {
            let connection = try await Connection.connect(dsn)
            defer { connection.close() }
            return try await connection.query("SELECT current_database()::text").rows[0].decode(at: 0, as: String.self)
        }()
        try await admin.execute("ALTER DATABASE \(quoteIdentifier(database)) OWNER TO \(owner)")
        let ownerDSN = try Self.dsn(dsn, user: owner)
        let writerDSN = try Self.dsn(dsn, user: writer)
        // The legacy data, loaded by the superuser; the legacy side is not what is tested here.
        let loaded = try await LedgerliftBinary.run(["fixture", "load", "--dsn", dsn])
        #expect(loaded.status == 0, "\(loaded.stderr)")

        let initialized = try await LedgerliftBinary.run(["store", "init", "--store", ownerDSN, "--grant-to", writer])
        #expect(initialized.status == 0, "\(initialized.stderr)")
        #expect(initialized.stdout.contains("\(writer) may now append and read, but not alter the event log; granted:"))
        #expect(initialized.stdout.contains(#"GRANT SELECT, INSERT ON "ledgerlift".events TO "\#(writer)";"#))

        // Everything else, as the writer.
        let steps: [[String]] = [
            ["backfill", "--legacy", dsn, "--store", writerDSN, "--mapping", mapping, "--allow-quarantine"],
            ["project", "--store", writerDSN],
            ["project", "--store", writerDSN, "--rebuild"],
            ["diff", "--legacy", dsn, "--store", writerDSN, "--mapping", mapping],
            ["query", "balance", "--store", writerDSN, "--customer", "1"],
            ["store", "stats", "--store", writerDSN],
            ["store", "init", "--store", writerDSN],
        ]
        for step in steps {
            let result = try await LedgerliftBinary.run(step)
            #expect(result.status == 0, "\(step[0]) \(step[1]): \(result.stderr)")
        }
        let asWriter = try await Connection.connect(writerDSN)
        defer { asWriter.close() }
        let events = try await asWriter.query("SELECT count(*) FROM ledgerlift.events").rows[0].decode(
            at: 0, as: Int64.self)
        #expect(events > 1000)
        let readModelOwner = try await asWriter.query(
            "SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = 'ledgerlift_read'"
        ).rows[0].decode(at: 0, as: String.self)
        #expect(readModelOwner == writer)
        for sql in [
            "ALTER TABLE ledgerlift.events DISABLE TRIGGER ALL", "SET session_replication_role = replica",
            "DELETE FROM ledgerlift.events", "UPDATE ledgerlift.events SET payload = '{}'",
        ] {
            let error = try await #require(throws: PostgresError.self, "\(sql)") {
                try await asWriter.executeScript(sql)
            }
            #expect(error.sqlState == .insufficientPrivilege, "\(sql): \(error)")
        }
        let after = try await asWriter.query("SELECT count(*) FROM ledgerlift.events").rows[0].decode(
            at: 0, as: Int64.self)
        #expect(after == events)

        // The writer cannot grant itself anything, and a superuser is not a writer.
        let selfGrant = try await LedgerliftBinary.run(["store", "init", "--store", writerDSN, "--grant-to", writer])
        #expect(selfGrant.status == 2)
        #expect(
            selfGrant.stderr.contains(
                "\(writer) does not own the event store (\(owner) does): run store init --grant-to as \(owner)"))
        let superuser = try await admin.query("SELECT current_user::text").rows[0].decode(at: 0, as: String.self)
        let toSuperuser = try await LedgerliftBinary.run(
            ["store", "init", "--store", ownerDSN, "--grant-to", superuser])
        #expect(toSuperuser.status == 2)
        #expect(
            toSuperuser.stderr.contains("role \(superuser) is a superuser: it could disable the append-only trigger"))
    }

    /// `dsn` connecting as `user` (the test server trusts local connections).
    static func dsn(_ dsn: String, user: String) throws -> String {
        guard dsn.hasPrefix("postgresql://") || dsn.hasPrefix("postgres://") else { return dsn + " user=\(user)" }
        var components = try #require(URLComponents(string: dsn))
        components.user = user
        components.password = nil
        return try #require(components.string)
    }
}
