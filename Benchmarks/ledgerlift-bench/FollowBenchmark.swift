import Billing
import EventStore
import Foundation
import Postgres

/// Issue 12's benchmark: incremental projection (what `project` does to a live read model, and
/// `project --follow` batch by batch: history, canonical tables and derived models) against a
/// plain read of the very same events through `EventStore.readAll` in the same run.
///
/// A read model is built blue/green from the first `base` events (untimed); the rest are
/// appended after it. Per repetition, one chunk is projected in turn on one connection and the
/// next one pipelined over a reader connection, each right after a plain read of the same chunk,
/// so every figure has its baseline measured under the same load.
enum FollowBenchmark {
    static let base = 300_000
    static let chunk = 100_000
    static let batchSize = 10_000

    static func run(_ bench: BenchContext) async throws {
        let dsn = try await bench.scratchDatabase("ledgerlift_bench_follow")
        let connection = try await Connection.connect(dsn)
        let reader = try await Connection.connect(dsn)
        defer {
            connection.close()
            reader.close()
        }
        let store = EventStore()
        try await connection.withSession { try store.migrate($0) }
        let repetitions = max(1, bench.repetitions)
        let events = SyntheticBilling.events(count: base + 2 * chunk * repetitions)
        // The live model is built blue/green from the first `base` events (untimed); the rest
        // are appended after it, so the projection reads a backlog, as `project` does after a
        // pause, one batch per transaction.
        func append(_ range: Range<Int>) async throws {
            try await connection.withSession { session in
                for start in stride(from: range.lowerBound, to: range.upperBound, by: batchSize) {
                    try store.appendBulk(Array(events[start..<min(range.upperBound, start + batchSize)]), in: session)
                }
            }
        }
        try await append(0..<base)
        try await connection.execute("VACUUM ANALYZE ledgerlift.events")
        let projector = Projector(store: store, batchSize: batchSize)
        let built = try await projector.rebuild(on: connection, reader: reader)
        guard built.swapped, built.progress.events == base else {
            throw BenchFailure("the blue/green build read \(built.progress.events) events, expected \(base)")
        }
        try await append(base..<events.count)
        try await connection.execute("VACUUM ANALYZE")

        // Per repetition, two chunks: one projected in turn on one connection (read, write,
        // read, …), one pipelined (`reader:`, read and decoded ahead on a second connection, as
        // `ledgerlift project` catches up); each against a plain read of the same chunk.
        var reads = [Duration]()
        var sequential = [Duration]()
        var pipelined = [Duration]()
        var cursor = built.progress.cursor
        let clock = ContinuousClock()
        for _ in 0..<repetitions {
            for pipelining in [false, true] {
                var start = clock.now
                let (read, position) = try await connection.withSession { [cursor] session in
                    var read = 0
                    var position = cursor
                    while read < chunk {
                        let batch = try store.readAll(after: position, limit: batchSize, in: session)
                        guard let last = batch.last else { break }
                        read += batch.count
                        position = last.cursor
                    }
                    return (read, position)
                }
                reads.append(clock.now - start)
                guard read == chunk else { throw BenchFailure("readAll read \(read) of \(chunk) events") }

                start = clock.now
                let result = try await projector.run(
                    on: connection, reader: pipelining ? reader : nil, until: .batches(chunk / batchSize))
                let elapsed = clock.now - start
                if pipelining { pipelined.append(elapsed) } else { sequential.append(elapsed) }
                guard result.progress.events == chunk, result.progress.cursor == position else {
                    throw BenchFailure("incremental projection handled \(result.progress.events) of \(chunk) events")
                }
                cursor = position
                say(
                    "    repetition \(sequential.count): readAll \(rate(chunk, reads.last!)) events, incremental projection "
                        + "\(pipelining ? "pipelined" : "in turn") \(rate(chunk, elapsed)) events")
            }
        }
        let read = reads.sorted()[reads.count / 2]
        let inTurn = sequential.sorted()[sequential.count / 2]
        let ahead = pipelined.sorted()[pipelined.count / 2]
        say("  incremental projection of \(chunk) events per measurement onto a model of \(base)+, batches of \(batchSize), median of \(repetitions):")
        say("    readAll (plain global read)                      \(rate(chunk, read)) events")
        say("    incremental projection, in turn (one connection)  \(rate(chunk, inTurn)) events   ratio \(ratio(inTurn, read))")
        say("    incremental projection, pipelined (reader:)       \(rate(chunk, ahead)) events   ratio \(ratio(ahead, read))")
        say("  goal: ≥ 50k events/s")
    }
}
