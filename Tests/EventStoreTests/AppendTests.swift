import EventStore
import Foundation
import Postgres
import Testing

@Suite("Appends: expected versions and idempotency")
struct AppendTests {
    @Test func initIsIdempotentAndRecordsTheSchemaVersion() async throws {
        try await withStore { connection, _, store in
            let again = try await connection.withSession { try store.migrate($0) }
            #expect(again.from == EventStore.currentSchemaVersion && again.to == EventStore.currentSchemaVersion)
            #expect(try await connection.withSession { try store.schemaVersion($0) } == EventStore.currentSchemaVersion)
        }
    }

    @Test func appendsNumberTheStreamFromOneAndCheckExpectedVersions() async throws {
        try await withStore { connection, _, store in
            let first = try await connection.withSession {
                try store.append([testEvent("invoice-1", 1), testEvent("invoice-1", 2)], to: "invoice-1",
                    expectedVersion: .noStream, in: $0)
            }
            #expect(first == AppendResult(appended: 2, duplicates: 0, streamVersion: 2))
            let error = try await #require(throws: EventStoreError.self) {
                try await connection.withSession {
                    try store.append([testEvent("invoice-1", 3)], to: "invoice-1", expectedVersion: .exact(1), in: $0)
                }
            }
            #expect(error == .wrongExpectedVersion(stream: "invoice-1", expected: .exact(1), actual: 2))
            await #expect(throws: EventStoreError.wrongExpectedVersion(stream: "invoice-1", expected: .noStream, actual: 2)) {
                try await connection.withSession {
                    try store.append([testEvent("invoice-1", 3)], to: "invoice-1", expectedVersion: .noStream, in: $0)
                }
            }
            await #expect(throws: EventStoreError.wrongExpectedVersion(stream: "invoice-9", expected: .streamExists, actual: 0)) {
                try await connection.withSession {
                    try store.append([testEvent("invoice-9", 1)], to: "invoice-9", expectedVersion: .streamExists, in: $0)
                }
            }
            let third = try await connection.withSession {
                try store.append([testEvent("invoice-1", 3)], to: "invoice-1", expectedVersion: .exact(2), in: $0)
            }
            #expect(third.streamVersion == 3)
            let versions = try await connection.withSession { try store.readStream("invoice-1", in: $0).map(\.streamVersion) }
            #expect(versions == [1, 2, 3])
            // A refused append to a new stream leaves no stream behind.
            #expect(try await count(connection, "SELECT count(*) FROM ledgerlift.streams WHERE stream_id = 'invoice-9'") == 0)
        }
    }

    @Test func twoWritersRacingAtOneExpectedVersionLeaveOneWinnerAndNoGap() async throws {
        try await withStore { connection, dsn, store in
            try await connection.withSession {
                try store.append([testEvent("sub-1", 1)], to: "sub-1", expectedVersion: .noStream, in: $0)
            }
            for round in 0..<20 {
                let writers = try await [Connection.connect(dsn), Connection.connect(dsn)]
                let expected = Int64(round + 1)
                let outcomes = await withTaskGroup(of: Result<AppendResult, any Error>.self) { group in
                    for (w, writer) in writers.enumerated() {
                        group.addTask {
                            do {
                                return .success(
                                    try await writer.withSession {
                                        try store.append([testEvent("sub-1", 1000 * (round + 1) + w)], to: "sub-1",
                                            expectedVersion: .exact(expected), in: $0)
                                    })
                            } catch {
                                return .failure(error)
                            }
                        }
                    }
                    var all = [Result<AppendResult, any Error>]()
                    for await outcome in group { all.append(outcome) }
                    return all
                }
                let wins = outcomes.filter { if case .success = $0 { true } else { false } }
                let losses = outcomes.compactMap { outcome -> EventStoreError? in
                    if case .failure(let e) = outcome { e as? EventStoreError } else { nil }
                }
                #expect(wins.count == 1)
                #expect(losses == [.wrongExpectedVersion(stream: "sub-1", expected: .exact(expected), actual: expected + 1)])
            }
            let versions = try await connection.withSession { try store.readStream("sub-1", in: $0).map(\.streamVersion) }
            #expect(versions == Array(1...21))
        }
    }

    @Test func racingToCreateAStreamLeavesOneWinner() async throws {
        try await withStore { _, dsn, store in
            let writers = try await [Connection.connect(dsn), Connection.connect(dsn), Connection.connect(dsn)]
            let results = await withTaskGroup(of: Bool.self) { group in
                for (w, writer) in writers.enumerated() {
                    group.addTask {
                        (try? await writer.withSession {
                            try store.append([testEvent("customer-7", w)], to: "customer-7", expectedVersion: .noStream, in: $0)
                        }) != nil
                    }
                }
                var wins = 0
                for await won in group where won { wins += 1 }
                return wins
            }
            #expect(results == 1)
        }
    }

    @Test func reappendingTheSameEventIsANoOpReportedAsDuplicate() async throws {
        try await withStore { connection, _, store in
            let events = [testEvent("invoice-2", 1), testEvent("invoice-2", 2)]
            try await connection.withSession { try store.append(events, to: "invoice-2", expectedVersion: .noStream, in: $0) }
            // A retry after a lost acknowledgement: the expected version is stale, but it is a duplicate.
            let retry = try await connection.withSession {
                try store.append(events, to: "invoice-2", expectedVersion: .noStream, in: $0)
            }
            #expect(retry == AppendResult(appended: 0, duplicates: 2, streamVersion: 2))
            // Metadata is provenance, not identity.
            var otherMetadata = events[0]
            otherMetadata.metadata = PostgresJSON(#"{"run": "another"}"#)
            let withOtherMetadata = otherMetadata
            let again = try await connection.withSession { try store.append([withOtherMetadata], to: "invoice-2", in: $0) }
            #expect(again.duplicates == 1)
            #expect(try await count(connection, "SELECT count(*) FROM ledgerlift.events") == 2)
        }
    }

    @Test func theSameIdWithDifferentContentIsAnError() async throws {
        try await withStore { connection, _, store in
            let original = testEvent("invoice-3", 1, payload: #"{"total": 100}"#)
            try await connection.withSession { try store.append([original], to: "invoice-3", in: $0) }
            var changing = original
            changing.payload = PostgresJSON(#"{"total": 101}"#)
            let changed = changing
            let error = try await #require(throws: EventStoreError.self) {
                try await connection.withSession { try store.append([changed], to: "invoice-3", in: $0) }
            }
            #expect(error == .idempotencyConflict(eventID: original.eventID, stream: "invoice-3", reason: "payload differ"))
            // Same payload with keys in another order is the same JSON document.
            var reordering = original
            reordering.payload = PostgresJSON(#"{ "total" : 100 }"#)
            let reordered = reordering
            let same = try await connection.withSession { try store.append([reordered], to: "invoice-3", in: $0) }
            #expect(same.duplicates == 1)
        }
    }

    @Test func updateDeleteAndTruncateOfEventsAreRefused() async throws {
        try await withStore { connection, _, store in
            try await connection.withSession { try store.append([testEvent("invoice-4", 1)], to: "invoice-4", in: $0) }
            for sql in [
                "UPDATE ledgerlift.events SET event_type = 'Forged'", "DELETE FROM ledgerlift.events",
                "TRUNCATE ledgerlift.events CASCADE",
            ] {
                let error = try await #require(throws: PostgresError.self) { try await connection.execute(sql) }
                #expect(error.sqlState == EventStore.appendOnlyViolation, "\(sql)")
                #expect(error.message.contains("append-only"))
            }
            #expect(try await count(connection, "SELECT count(*) FROM ledgerlift.events WHERE event_type = 'Tested'") == 1)
        }
    }

    @Test func streamReadsAsOfBusinessTimeAndRecordedTimeReturnPrefixes() async throws {
        try await withStore { connection, _, store in
            let day: Int64 = 86_400_000_000
            let base = PostgresTimestamp(year: 2024, month: 1, day: 1)!.microsecondsSinceEpoch
            for n in 1...5 {
                // Each event in its own transaction, so recorded_at (transaction time) increases.
                try await connection.withSession {
                    try store.append(
                        [testEvent("customer-1", n, at: PostgresTimestamp(microsecondsSinceEpoch: base + Int64(n) * day))],
                        to: "customer-1", in: $0)
                }
            }
            let all = try await connection.withSession { try store.readStream("customer-1", in: $0) }
            // Each transaction began after the previous one committed: their times (microseconds)
            // increase without waiting for the clock to move.
            try #require(zip(all, all.dropFirst()).allSatisfy { $0.recordedAt < $1.recordedAt })
            let asOfDay3 = try await connection.withSession {
                try store.readStream(
                    "customer-1", asOf: .occurredAt(PostgresTimestamp(microsecondsSinceEpoch: base + 3 * day)), in: $0)
            }
            #expect(asOfDay3.map(\.streamVersion) == [1, 2, 3])
            let knownAtSecond = try await connection.withSession {
                try store.readStream("customer-1", asOf: .recordedAt(all[1].recordedAt), in: $0)
            }
            #expect(knownAtSecond.map(\.streamVersion) == [1, 2])
            let fromFour = try await connection.withSession { try store.readStream("customer-1", from: 4, in: $0) }
            #expect(fromFour.map(\.streamVersion) == [4, 5])
        }
    }
}
