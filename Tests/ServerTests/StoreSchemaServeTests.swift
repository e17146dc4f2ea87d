import Billing
import Commands
import EventStore
import Foundation
import Logging
import Postgres
import Server
import TestSupport
import Testing
import Webhooks

/// What `serve`, the webhook and the executor keep in the store — `idempotency_keys`,
/// `stripe_events`, the `command_ids_<entity>` sequences — is the store's schema version 3:
/// created by `store init` as the owner, granted to the writer role, never created at runtime.
@Suite("serve on a store initialised with --grant-to, and on one that store init has not upgraded")
struct StoreSchemaServeTests {
    static func dsn(_ dsn: String, user: String) throws -> String {
        var components = try #require(URLComponents(string: dsn))
        components.user = user
        components.password = nil
        return try #require(components.string)
    }

    @Test func commandsIdempotentRequestsAWebhookAndKeyAllocationWorkAsTheWriterRole() async throws {
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let owner = "lltest_serve_owner_" + suffix
        let writer = "lltest_serve_writer_" + suffix
        let admin = try await Connection.connect(try TestDatabase.adminDSN())
        defer { admin.close() }
        try await admin.execute("CREATE ROLE \(owner) LOGIN")
        try await admin.execute("CREATE ROLE \(writer) LOGIN")
        do {
            try await TestDatabase.withFresh { dsn in
                let database = try await withSession(dsn) {
                    try $0.query("SELECT current_database()::text").rows[0].decode(at: 0, as: String.self)
                }
                try await admin.execute("ALTER DATABASE \(quoteIdentifier(database)) OWNER TO \(owner)")
                let ownerDSN = try Self.dsn(dsn, user: owner)
                let writerDSN = try Self.dsn(dsn, user: writer)
                for arguments in [
                    ["store", "init", "--store", ownerDSN, "--grant-to", writer], ["project", "--store", writerDSN],
                ] {
                    let output = try await ledgerlift(arguments)
                    #expect(output.status == 0, "\(arguments[0]): \(output.stderr)")
                }
                // The owner's objects, which the writer uses without owning (or creating) them.
                let owners = try await withSession(dsn) { session in
                    try session.query(
                        """
                        SELECT c.relname::text, pg_get_userbyid(c.relowner)::text FROM pg_class c
                        JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = 'ledgerlift' AND c.relname IN ('idempotency_keys', 'stripe_events', 'command_ids_customer')
                        ORDER BY 1
                        """
                    ).rows.map { "\(try $0.decode(at: 0, as: String.self)) \(try $0.decode(at: 1, as: String.self))" }
                }
                #expect(
                    owners == ["command_ids_customer \(owner)", "idempotency_keys \(owner)", "stripe_events \(owner)"])

                let metrics = ServerMetrics()
                let configuration = ServeConfiguration(
                    storeDSN: writerDSN, stripeWebhookSecrets: [WebhookRouteTests.secret])
                let commands = ExecutorCommands(executor: CommandExecutor(), mode: .primary, metrics: metrics)
                try await withServer(configuration, commandHandler: commands, metrics: metrics) { _, client in
                    let body = CommandRouteTests.createCustomer("role-1")
                    let first = try await client.send(
                        "POST", "/commands/create_customer", body: body, headers: ["Idempotency-Key": "role-op-1"])
                    #expect(first.status == 200, "\(first.body)")
                    #expect(first.header("Idempotent-Replayed") == nil)
                    let replay = try await client.send(
                        "POST", "/commands/create_customer", body: body, headers: ["Idempotency-Key": "role-op-1"])
                    #expect(replay.status == 200)
                    #expect(replay.header("Idempotent-Replayed") == "true")
                    #expect(replay.body == first.body)

                    let payload = WebhookRouteTests.customerCreated(event: "evt_role_1", customer: "cus_role_1")
                    let delivered = try await client.send(
                        "POST", "/webhooks/stripe", body: payload, headers: WebhookRouteTests.signed(payload))
                    #expect(delivered.status == 200, "\(delivered.body)")
                    #expect(delivered.body == #"{"received":true,"outcome":"applied","events":1}"#)
                }
                #expect(try await CommandRouteTests.events(dsn, stream: "customer-role-1") == ["CustomerCreated"])
                #expect(try await CommandRouteTests.events(dsn, stream: "customer-cus_role_1") == ["CustomerCreated"])

                let asWriter = try await Connection.connect(writerDSN)
                defer { asWriter.close() }
                // Keys from the store's sequences (seeded above the largest numeric key on first use).
                #expect(try await CommandExecutor().allocate(.balanceTransaction, on: asWriter) == "1")
                #expect(try await CommandExecutor().allocate(.balanceTransaction, on: asWriter) == "2")
                // The hourly purge deletes as the writer.
                #expect(try await IdempotencyStore().purgeExpired(on: asWriter) == 0)
                let counted = try await asWriter.withSession { try StripeWebhookStore().counts(in: $0).applied }
                #expect(counted == 1)
            }
        } catch {
            for role in [owner, writer] { try await admin.execute("DROP ROLE IF EXISTS \(role)") }
            throw error
        }
        for role in [owner, writer] { try await admin.execute("DROP ROLE IF EXISTS \(role)") }
    }

    @Test func serveRefusesAStoreBelowSchemaVersion3AndStoreInitUpgradesIt() async throws {
        try await TestDatabase.withFresh { dsn in
            // A store as schema version 2 left it.
            try await withSession(dsn) { session in
                try EventStore().migrate(session)
                try session.execute(
                    "DROP TABLE ledgerlift.idempotency_keys, ledgerlift.stripe_events, ledgerlift.candidate_commands")
                for entity in EventStore.commandIDSequenceEntities {
                    try session.execute("DROP SEQUENCE ledgerlift.\(quoteIdentifier("command_ids_" + entity))")
                }
                try session.execute("DELETE FROM ledgerlift.schema_migrations WHERE version >= 3")
            }
            let server = LedgerliftServer(
                ServeConfiguration(storeDSN: dsn, port: 0, projects: false), commandHandler: nil,
                logger: Logger(label: "test.serve"))
            await #expect(throws: EventStoreError.schemaTooOld(found: 2, required: 3)) {
                try await server.run(gracefulShutdownSignals: []) { _ in Issue.record("listened on an old store") }
            }
            let asOld = try await Connection.connect(dsn)
            defer { asOld.close() }
            await #expect(throws: CommandError.noIDSequence(entity: "balance_transaction")) {
                _ = try await CommandExecutor().allocate(.balanceTransaction, on: asOld)
            }

            let upgraded = try await ledgerlift(["store", "init", "--store", dsn])
            #expect(upgraded.status == 0, "\(upgraded.stderr)")
            #expect(
                upgraded.stdout.contains("schema version 2 → \(EventStore.currentSchemaVersion)"), "\(upgraded.stdout)")
            _ = try await ledgerlift(["project", "--store", dsn])
            try await withServer(
                ServeConfiguration(storeDSN: dsn, projects: false, stripeWebhookSecrets: [WebhookRouteTests.secret])
            ) { _, client in
                let payload = WebhookRouteTests.customerCreated(event: "evt_up_1", customer: "cus_up_1")
                let delivered = try await client.send(
                    "POST", "/webhooks/stripe", body: payload, headers: WebhookRouteTests.signed(payload))
                #expect(delivered.body == #"{"received":true,"outcome":"applied","events":1}"#)
            }
            #expect(try await CommandExecutor().allocate(.balanceTransaction, on: asOld) == "1")
        }
    }
}
