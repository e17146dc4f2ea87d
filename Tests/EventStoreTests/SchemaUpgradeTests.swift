@testable import EventStore
import Foundation
import Postgres
import TestSupport
import Testing

/// A store created and written by a binary that knew only schema version 1, then upgraded by
/// this one: nothing stored may change, and everything must work after.
@Suite("Schema upgrades: a version 1 store with events, upgraded")
struct SchemaUpgradeTests {
    /// Creates the store as a version-1 binary did: its `migrate` (schema, bookkeeping table,
    /// migration 1, its row), reproduced here because `migrate` always goes to the newest
    /// version. Migration 1's SQL is the one this binary ships: old steps are never edited.
    static func createVersion1(_ store: EventStore, in session: Session) throws {
        let first = EventStore.migrations[0]
        precondition(first.version == 1)
        try session.transaction { tx in
            try tx.execute("CREATE SCHEMA IF NOT EXISTS \(store.s)")
            try tx.execute(
                """
                CREATE TABLE IF NOT EXISTS \(store.s).schema_migrations (
                    version      integer PRIMARY KEY,
                    description  text NOT NULL,
                    applied_at   timestamptz NOT NULL DEFAULT now()
                )
                """)
            try tx.executeScript(first.sql(store))
            try tx.execute(
                "INSERT INTO \(store.s).schema_migrations (version, description) VALUES ($1, $2)",
                [Int32(first.version), first.description])
        }
    }

    /// Appends as a version-1 binary did (`EventStore.append` before `append_to_stream`): the
    /// stream's advisory lock, its row, the events, its new version — in one transaction.
    static func appendAsVersion1(_ events: [NewEvent], to stream: String, _ store: EventStore, in session: Session) throws {
        let s = store.s
        try session.transaction { tx in
            try tx.execute(
                """
                SELECT count(pg_advisory_xact_lock(k)) FROM (
                    SELECT DISTINCT hashtextextended($1 || id, 0) AS k FROM unnest($2::text[]) AS id ORDER BY k
                ) AS keys
                """, [store.schema + ".", PostgresArray([stream])])
            try tx.execute(
                "INSERT INTO \(s).streams (stream_id, category, version) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
                [stream, String(EventStore.category(of: stream))])
            let current = try tx.query("SELECT version FROM \(s).streams WHERE stream_id = $1 FOR UPDATE", [stream])
                .rows[0].decode(at: 0, as: Int64.self)
            try tx.execute(
                """
                INSERT INTO \(s).events
                    (event_id, stream_id, stream_version, event_type, schema_version, occurred_at, payload, metadata)
                SELECT * FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::int4[], $6::timestamptz[],
                                     $7::jsonb[], $8::jsonb[])
                """,
                [
                    PostgresArray(events.map(\.eventID)), PostgresArray(events.map { _ in stream }),
                    PostgresArray(events.indices.map { current + 1 + Int64($0) }), PostgresArray(events.map(\.eventType)),
                    PostgresArray(events.map(\.schemaVersion)), PostgresArray(events.map(\.occurredAt)),
                    PostgresArray(events.map(\.payload)), PostgresArray(events.map(\.metadata)),
                ])
            try tx.execute(
                "UPDATE \(s).streams SET version = $2, updated_at = now() WHERE stream_id = $1",
                [stream, current + Int64(events.count)])
        }
    }

    /// Every column of every event and stream row, as PostgreSQL prints it, in global order.
    static func everything(_ store: EventStore, in session: Session) throws -> [[String?]] {
        let events = try session.query(
            """
            SELECT global_position, event_id, stream_id, stream_version, event_type, schema_version, occurred_at,
                   recorded_at, payload, metadata, transaction_id
            FROM \(store.s).events ORDER BY global_position
            """
        ).rows.map(\.values)
        let streams = try session.query(
            "SELECT stream_id, category, version, created_at, updated_at FROM \(store.s).streams ORDER BY stream_id"
        ).rows.map(\.values)
        return events + [["streams"]] + streams
    }

    @Test(arguments: ["ledgerlift", #"Ledger's "v1" store"#])
    func aVersion1StoreWithEventsUpgradesWithEveryEventIntactAndWorksAfter(_ schema: String) async throws {
        try await TestDatabase.withConnection { connection, _ in
            let store = EventStore(schema: schema)
            try await connection.withSession { try Self.createVersion1(store, in: $0) }
            #expect(try await connection.withSession { try store.schemaVersion($0) } == 1)
            // Really version 1: this binary's append needs a function version 2 brings.
            let tooOld = try await #require(throws: PostgresError.self) {
                try await connection.withSession { try store.append([testEvent("x-1", 1)], to: "x-1", in: $0) }
            }
            #expect(tooOld.sqlState == "42883")

            // History written by the version-1 binary: three streams, interleaved, in five transactions.
            let invoice = (1...3).map { testEvent("invoice-1", $0, payload: #"{"n": \#($0), "note": "Zürich 東京 'q' \"d\""}"#) }
            let customer = (1...2).map { testEvent("customer-1", $0) }
            let payment = NewEvent(
                eventID: testEvent("payment-9", 1).eventID, eventType: "PaymentCreated", schemaVersion: 2,
                occurredAt: PostgresTimestamp(microsecondsSinceEpoch: 1_700_000_000_123_456), payload: PostgresJSON(#"{"amount": 1999}"#),
                metadata: PostgresJSON(#"{"origin": "backfill", "evidence": "observed"}"#))
            try await connection.withSession { session in
                try Self.appendAsVersion1(Array(invoice[0...1]), to: "invoice-1", store, in: session)
                try Self.appendAsVersion1([customer[0]], to: "customer-1", store, in: session)
                try Self.appendAsVersion1([payment], to: "payment-9", store, in: session)
                try Self.appendAsVersion1([invoice[2]], to: "invoice-1", store, in: session)
                try Self.appendAsVersion1([customer[1]], to: "customer-1", store, in: session)
            }
            // (Eventually: an older transaction anywhere in the cluster holds back the global order.)
            let written = try await readAllEventually(store, connection, expected: 6)
            try #require(written.count == 6)
            // A consumer that had read the first three events when the binary was replaced.
            try await connection.execute(
                "INSERT INTO \(store.s).checkpoints (consumer, transaction_id, global_position, events_processed) VALUES ($1, $2::xid8, $3, 3)",
                ["projector", String(written[2].transactionID), written[2].globalPosition])
            let before = try await connection.withSession { try Self.everything(store, in: $0) }

            let upgrade = try await connection.withSession { try store.migrate($0) }
            #expect(upgrade.from == 1 && upgrade.to == EventStore.currentSchemaVersion)
            #expect(try await connection.withSession { try store.schemaVersion($0) } == EventStore.currentSchemaVersion)
            let versions = try await connection.query("SELECT version FROM \(store.s).schema_migrations ORDER BY version")
                .rows.map { try $0.decode(at: 0, as: Int32.self) }
            #expect(versions == (1...EventStore.currentSchemaVersion).map(Int32.init))

            // Nothing stored changed: ids, streams, versions, types, times, payloads, metadata, order.
            #expect(try await connection.withSession { try Self.everything(store, in: $0) } == before)
            let read = try await readAllEventually(store, connection, expected: 6)
            #expect(read == written)
            #expect(read.map(\.streamID) == ["invoice-1", "invoice-1", "customer-1", "payment-9", "invoice-1", "customer-1"])
            #expect(read.map(\.streamVersion) == [1, 2, 1, 1, 3, 2])
            #expect(read.map(\.eventID) == [invoice[0], invoice[1], customer[0], payment, invoice[2], customer[1]].map(\.eventID))
            #expect(read.map(\.payload.text) == [invoice[0], invoice[1], customer[0], payment, invoice[2], customer[1]].map { $0.payload.text })
            #expect(read[3].schemaVersion == 2 && read[3].occurredAt == payment.occurredAt)
            #expect(read[3].metadata.text == #"{"origin": "backfill", "evidence": "observed"}"#)

            // The consumer resumes where it was.
            let cursor = try await connection.withSession { try store.checkpoint("projector", in: $0) }
            #expect(cursor == written[2].cursor)
            let rest = try await readAllEventually(store, connection, after: cursor, expected: 3)
            #expect(rest.map(\.eventID) == [payment, invoice[2], customer[1]].map(\.eventID))

            // Appends continue the version-1 streams, with expected versions and idempotency by id.
            try await connection.withSession { session in
                let next = try store.append([testEvent("invoice-1", 4)], to: "invoice-1", expectedVersion: .exact(3), in: session)
                #expect(next == AppendResult(appended: 1, duplicates: 0, streamVersion: 4))
                #expect(throws: EventStoreError.wrongExpectedVersion(stream: "invoice-1", expected: .exact(3), actual: 4)) {
                    try store.append([testEvent("invoice-1", 5)], to: "invoice-1", expectedVersion: .exact(3), in: session)
                }
                let resent = try store.append([customer[1]], to: "customer-1", in: session)
                #expect(resent == AppendResult(appended: 0, duplicates: 1, streamVersion: 2))
                var altered = invoice[0]
                altered.payload = PostgresJSON(#"{"n": 1, "note": "changed"}"#)
                #expect(throws: EventStoreError.idempotencyConflict(eventID: invoice[0].eventID, stream: "invoice-1", reason: "payload differ")) {
                    try store.append([altered], to: "invoice-1", in: session)
                }
                let fresh = try store.append([testEvent("refund-2", 1)], to: "refund-2", expectedVersion: .noStream, in: session)
                #expect(fresh == AppendResult(appended: 1, duplicates: 0, streamVersion: 1))
                #expect(try store.readStream("invoice-1", in: session).map(\.streamVersion) == [1, 2, 3, 4])
            }
            let after = try await readAllEventually(store, connection, expected: 8)
            #expect(Array(after.prefix(6)) == written)
            #expect(after.dropFirst(6).map(\.streamID) == ["invoice-1", "refund-2"])
            #expect(after.dropFirst(6).allSatisfy { $0.globalPosition > written.last!.globalPosition })

            // Events stay append-only, and running the upgrade again changes nothing.
            let error = try await #require(throws: PostgresError.self) {
                try await connection.execute("UPDATE \(store.s).events SET event_type = 'Forged'")
            }
            #expect(error.sqlState == EventStore.appendOnlyViolation)
            let again = try await connection.withSession { try store.migrate($0) }
            #expect(again.from == EventStore.currentSchemaVersion && again.to == EventStore.currentSchemaVersion)
        }
    }
}
