import EventStore
import Foundation
import Postgres
import TestSupport

/// A fresh database with an initialized store.
func withStore(
    _ label: String = #function, _ body: (_ connection: Connection, _ dsn: String, _ store: EventStore) async throws -> Void
) async throws {
    try await TestDatabase.withConnection(label) { connection, dsn in
        let store = EventStore()
        try await connection.withSession { try store.migrate($0) }
        try await body(connection, dsn, store)
    }
}

/// A deterministic event for tests: its id derives from `stream` and `n`.
func testEvent(_ stream: String, _ n: Int, type: String = "Tested", payload: String? = nil, at: PostgresTimestamp? = nil)
    -> NewEvent
{
    var bytes = [UInt8](repeating: 0, count: 16)
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in "\(stream)#\(n)".utf8 {
        hash ^= UInt64(byte)
        hash = hash &* 0x100_0000_01b3
    }
    for i in 0..<8 { bytes[i] = UInt8(truncatingIfNeeded: hash >> (8 * UInt64(i))) }
    for i in 0..<8 { bytes[8 + i] = UInt8(truncatingIfNeeded: (hash &* 31 &+ UInt64(n)) >> (8 * UInt64(i))) }
    let id = UUID(
        uuid: (
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9],
            bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
        ))
    return NewEvent(
        eventID: id, eventType: type,
        occurredAt: at ?? PostgresTimestamp(microsecondsSinceEpoch: 1_700_000_000_000_000 + Int64(n) * 1_000_000),
        payload: PostgresJSON(payload ?? #"{"n": \#(n), "stream": "\#(stream)"}"#))
}

func count(_ connection: Connection, _ sql: String) async throws -> Int64 {
    try await connection.query(sql).rows[0].decode(at: 0, as: Int64.self)
}

/// Reads the global order from `cursor` until `expected` events have arrived (other tests'
/// transactions on the same cluster may hold back the readable horizon for a while).
func readAllEventually(
    _ store: EventStore, _ connection: Connection, after cursor: GlobalCursor = .start, category: String? = nil,
    expected: Int, timeout: Duration = .seconds(180)
) async throws -> [RecordedEvent] {
    var seen = [RecordedEvent]()
    var cursor = cursor
    let clock = ContinuousClock()
    let start = clock.now
    while seen.count < expected, clock.now - start < timeout {
        let batch = try await connection.withSession { [cursor] in
            try store.readAll(after: cursor, limit: 1000, category: category, in: $0)
        }
        seen += batch
        if let last = batch.last { cursor = last.cursor } else { try await Task.sleep(for: .milliseconds(5)) }
    }
    return seen
}
