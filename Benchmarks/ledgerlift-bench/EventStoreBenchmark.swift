import EventStore
import Foundation
import Postgres
import Synchronization

/// Issue 4's benchmarks: bulk append vs raw COPY into the same table shape; single-stream
/// appends with expected versions from 1, 4 and 16 writers; global catch-up read.
enum EventStoreBenchmark {
    static let totalEvents = 1_000_000
    static let streams = 100_000
    static let batchSize = 10_000

    /// Event `i` of the synthetic load: stream `i % streams`, version `i / streams + 1`, so
    /// each batch holds consecutive versions of its streams. The payload is ~300 bytes of JSON.
    static func event(_ i: Int) -> StreamEvent {
        let stream = i % streams
        let version = Int64(i / streams + 1)
        let id = UUID(uuid: uuidBytes(UInt64(i)))
        let payload = #"""
            {"invoice_id": "inv-\#(stream)", "customer_id": "cus-\#(stream % 9973)", "amount": \#(1000 + i % 90000), "currency": "USD", "status": "open", "lines": [{"kind": "subscription", "amount": \#(1000 + i % 90000), "description": "Pro plan, monthly", "period": "2024-\#(1 + i % 12)"}], "note": "synthetic benchmark event number \#(i)"}
            """#
        return StreamEvent(
            streamID: "invoice-\(stream)", streamVersion: version,
            event: NewEvent(
                eventID: id, eventType: "InvoiceFinalized",
                occurredAt: PostgresTimestamp(microsecondsSinceEpoch: 1_700_000_000_000_000 + Int64(i) * 1_000_000),
                payload: PostgresJSON(payload), metadata: PostgresJSON(#"{"origin": "bench"}"#)))
    }

    static func uuidBytes(_ n: UInt64) -> uuid_t {
        var x = n &* 0x9E37_79B9_7F4A_7C15
        var b = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 { b[i] = UInt8(truncatingIfNeeded: x >> (8 * UInt64(i))) }
        x = (n ^ 0xDEAD_BEEF) &* 0xBF58_476D_1CE4_E5B9
        for i in 0..<8 { b[8 + i] = UInt8(truncatingIfNeeded: x >> (8 * UInt64(i))) }
        b[6] = (b[6] & 0x0F) | 0x40
        b[8] = (b[8] & 0x3F) | 0x80
        return (b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15])
    }

    static func run(_ bench: BenchContext) async throws {
        let dsn = try await bench.scratchDatabase("ledgerlift_bench_store")
        let connection = try await Connection.connect(dsn)
        defer { connection.close() }
        let store = EventStore()
        try await connection.withSession { try store.migrate($0) }
        try await connection.execute("CREATE TABLE raw_events (LIKE ledgerlift.events INCLUDING ALL)")

        // Raw COPY of the same rows into the same table shape, batch for batch, interleaved with
        // ours so both see the same machine load; each batch is its own transaction.
        let (raw, ours) = try await connection.withSession { session in
            var raw = Duration.zero
            var ours = Duration.zero
            let clock = ContinuousClock()
            for start in stride(from: 0, to: totalEvents, by: batchSize) {
                let t0 = clock.now
                let rawBatch = (start..<start + batchSize).map(event)
                try session.transaction { tx in try store.copyRowsForBenchmark(rawBatch, into: "raw_events", tx) }
                let t1 = clock.now
                try store.appendBulk((start..<start + batchSize).map(event), in: session)
                let t2 = clock.now
                raw += t1 - t0
                ours += t2 - t1
            }
            return (raw, ours)
        }
        print("  bulk append, \(totalEvents) events in \(streams) streams, batches of \(batchSize):")
        print("    raw COPY          \(rate(totalEvents, raw)) events")
        print("    appendBulk        \(rate(totalEvents, ours)) events")
        print("    ratio ours/raw = \(ratio(ours, raw))   (goal ≥ 0.80; Marten reports 80–110k events/s)")

        // Global catch-up read of the million events, against a plain COPY of the same order.
        let plain = try await timed {
            _ = try await connection.withSession { session in
                try session.copyOutLines(
                    "COPY (SELECT * FROM ledgerlift.events ORDER BY transaction_id, global_position) TO STDOUT") { _ in }
            }
        }
        var readCount = 0
        let catchUp = try await timed {
            readCount = try await connection.withSession { session in
                var cursor = GlobalCursor.start
                var n = 0
                while true {
                    let batch = try store.readAll(after: cursor, limit: batchSize, in: session)
                    guard let last = batch.last else { return n }
                    n += batch.count
                    cursor = last.cursor
                }
            }
        }
        guard readCount == totalEvents else { throw BenchFailure("catch-up read \(readCount) of \(totalEvents) events") }
        print("  global catch-up read of \(totalEvents) events (decoded, batches of \(batchSize)):")
        print("    plain COPY TO of the same order  \(rate(totalEvents, plain)) events")
        print("    readAll                           \(rate(totalEvents, catchUp)) events   ratio \(ratio(catchUp, plain))")

        // Single-stream appends with an exact expected version.
        print("  single-stream appends with expected version (1 event each, own streams per writer):")
        for writers in [1, 4, 16] {
            let perWriter = 4_000 / writers
            let latencies = Locked<[Duration]>([])
            let elapsed = try await timed {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for w in 0..<writers {
                        group.addTask {
                            let c = try await Connection.connect(dsn)
                            defer { c.close() }
                            var versions = [Int64](repeating: 0, count: 10)
                            var mine = [Duration]()
                            mine.reserveCapacity(perWriter)
                            for k in 0..<perWriter {
                                let s = k % 10
                                let stream = "single\(writers)_\(w)-\(s)"
                                let e = NewEvent(
                                    eventID: UUID(uuid: uuidBytes(UInt64(10_000_000 + writers * 100_000 + w * 10_000 + k))),
                                    eventType: "Tested", occurredAt: PostgresTimestamp(microsecondsSinceEpoch: 0),
                                    payload: PostgresJSON(#"{"k": \#(k)}"#))
                                let clock = ContinuousClock()
                                let start = clock.now
                                let expected = versions[s]
                                let result = try await c.withSession {
                                    try store.append([e], to: stream, expectedVersion: .exact(expected), in: $0)
                                }
                                mine.append(clock.now - start)
                                versions[s] = result.streamVersion
                            }
                            latencies.withLock { $0 += mine }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            let sorted = latencies.withLock { $0.sorted() }
            let p99 = sorted[min(sorted.count - 1, sorted.count * 99 / 100)]
            print(
                "    \(writers) writer\(writers == 1 ? " " : "s")  \(rate(perWriter * writers, elapsed)) events   p99 \(String(format: "%.2f", p99.seconds * 1000)) ms"
            )
        }
    }

    static func timed(_ body: () async throws -> Void) async throws -> Duration {
        let clock = ContinuousClock()
        let start = clock.now
        try await body()
        return clock.now - start
    }
}

/// A value shared between benchmark tasks.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}
