import EventStore
import Foundation
import Postgres
import Testing

@Suite("Bulk appends: COPY, batches, crash recovery")
struct BulkAppendTests {
    struct Crash: Error {}

    /// 3 batches over 30 streams; each stream's events spread over the batches.
    static func batches() -> [[StreamEvent]] {
        (0..<3).map { b in
            (0..<30).flatMap { stream in
                (1...4).map { k in
                    let version = Int64(b * 4 + k)
                    return StreamEvent(
                        streamID: "invoice-\(stream)", streamVersion: version,
                        event: testEvent("invoice-\(stream)", Int(version)))
                }
            }
        }
    }

    func assertEachEventOnce(_ connection: Connection) async throws {
        let row = try await connection.query(
            """
            SELECT count(*) AS n, count(DISTINCT event_id) AS ids, count(DISTINCT (stream_id, stream_version)) AS slots,
                   (SELECT count(*) FROM ledgerlift.streams WHERE version = 12) AS full_streams
            FROM ledgerlift.events
            """
        ).rows[0]
        #expect(try row.decode("n", as: Int64.self) == 360)
        #expect(try row.decode("ids", as: Int64.self) == 360)
        #expect(try row.decode("slots", as: Int64.self) == 360)
        #expect(try row.decode("full_streams", as: Int64.self) == 30)
    }

    @Test func aResentBatchIsReportedAsDuplicatesAndStoredOnce() async throws {
        try await withStore { connection, _, store in
            let batch = Self.batches()[0]
            let first = try await connection.withSession { try store.appendBulk(batch, in: $0) }
            #expect(first == BulkAppendResult(appended: 120, duplicates: 0, compared: false))
            let second = try await connection.withSession { try store.appendBulk(Self.batches()[1], in: $0) }
            #expect(second == BulkAppendResult(appended: 120, duplicates: 0, compared: false))
            let again = try await connection.withSession { try store.appendBulk(batch, in: $0) }
            #expect(again == BulkAppendResult(appended: 0, duplicates: 120, compared: true))
            #expect(try await count(connection, "SELECT count(*) FROM ledgerlift.events") == 240)
        }
    }

    @Test func resendingEverythingAfterAThrownErrorBetweenBatchesStoresEachEventOnce() async throws {
        try await withStore { connection, _, store in
            let batches = Self.batches()
            await #expect(throws: Crash.self) {
                try await connection.withSession { session in
                    for (i, batch) in batches.enumerated() {
                        if i == 2 { throw Crash() }
                        try store.appendBulk(batch, in: session)
                    }
                }
            }
            #expect(try await count(connection, "SELECT count(*) FROM ledgerlift.events") == 240)
            // The restarted writer does not know what committed: it sends everything again.
            var results = [BulkAppendResult]()
            for batch in batches {
                results.append(try await connection.withSession { try store.appendBulk(batch, in: $0) })
            }
            #expect(results.map(\.appended) == [0, 0, 120])
            #expect(results.map(\.duplicates) == [120, 120, 0])
            try await assertEachEventOnce(connection)
        }
    }

    @Test func resendingAfterTheConnectionDropsMidBatchStoresEachEventOnce() async throws {
        try await withStore { connection, dsn, store in
            let batches = Self.batches()
            let writer = try await Connection.connect(dsn)
            try await writer.withSession { try store.appendBulk(batches[0], in: $0) }
            // The second batch's connection dies after its COPY, before COMMIT.
            let pid = writer.backendPID
            let error = try await #require(throws: PostgresError.self) {
                try await writer.withSession { session in
                    try store.appendBulk(batches[1], in: session) { _ in
                        let killer = try Connection.connectBlocking(dsn)
                        try killer.withSessionBlocking { try $0.execute("SELECT pg_terminate_backend($1)", [pid]) }
                    }
                }
            }
            #expect(error.isConnectionLost)
            #expect(try await count(connection, "SELECT count(*) FROM ledgerlift.events") == 120)
            let restarted = try await Connection.connect(dsn)
            for batch in batches { try await restarted.withSession { try store.appendBulk(batch, in: $0) } }
            try await assertEachEventOnce(connection)
        }
    }

    @Test func aBatchMixingStoredAndNewEventsAppendsOnlyTheNewOnes() async throws {
        try await withStore { connection, _, store in
            let batches = Self.batches()
            try await connection.withSession { try store.appendBulk(batches[0], in: $0) }
            let mixed = batches[0] + batches[1]
            let result = try await connection.withSession { try store.appendBulk(mixed, in: $0) }
            #expect(result == BulkAppendResult(appended: 120, duplicates: 120, compared: true))
            let versions = try await connection.withSession { try store.readStream("invoice-7", in: $0).map(\.streamVersion) }
            #expect(versions == Array(1...8))
        }
    }

    @Test func aBatchThatWouldLeaveAHoleIsRefused() async throws {
        try await withStore { connection, _, store in
            let batches = Self.batches()
            let error = try await #require(throws: EventStoreError.self) {
                try await connection.withSession { try store.appendBulk(batches[1], in: $0) }
            }
            #expect(error == .versionGap(stream: "invoice-0", storedVersion: 0, firstNewVersion: 5))
            #expect(try await count(connection, "SELECT count(*) FROM ledgerlift.events") == 0)
            await #expect(throws: EventStoreError.self) {
                try await connection.withSession {
                    try store.appendBulk(
                        [StreamEvent(streamID: "a-1", streamVersion: 1, event: testEvent("a-1", 1)),
                         StreamEvent(streamID: "a-1", streamVersion: 3, event: testEvent("a-1", 3))], in: $0)
                }
            }
        }
    }

    @Test func aResentEventWithDifferentContentIsAConflict() async throws {
        try await withStore { connection, _, store in
            let original = StreamEvent(streamID: "p-1", streamVersion: 1, event: testEvent("p-1", 1, payload: #"{"a": 1}"#))
            try await connection.withSession { try store.appendBulk([original], in: $0) }
            var changing = original
            changing.event.payload = PostgresJSON(#"{"a": 2}"#)
            let changed = changing
            let error = try await #require(throws: EventStoreError.self) {
                try await connection.withSession { try store.appendBulk([changed], in: $0) }
            }
            #expect(error == .idempotencyConflict(eventID: original.event.eventID, stream: "p-1", reason: "payload differ"))
        }
    }

    @Test func theCheckpointWrittenWithABatchCommitsOrVanishesWithIt() async throws {
        try await withStore { connection, _, store in
            try await connection.execute("CREATE TABLE progress (batch int)")
            let batches = Self.batches()
            await #expect(throws: Crash.self) {
                try await connection.withSession { session in
                    try store.appendBulk(batches[0], in: session) { tx in
                        try tx.execute("INSERT INTO progress VALUES (0)")
                        throw Crash()
                    }
                }
            }
            #expect(try await count(connection, "SELECT count(*) FROM ledgerlift.events") == 0)
            #expect(try await count(connection, "SELECT count(*) FROM progress") == 0)
        }
    }
}
