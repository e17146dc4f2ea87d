import EventStore
import Postgres

extension Projector {
    /// How many batches a pipelined build reads ahead of the one being written.
    static let readAheadDepth = 3

    /// Builds batches as a pipeline over two connections: `reader` reads the global order batch
    /// after batch, each batch is decoded on its own task, and `writer` writes them in order —
    /// each batch with its checkpoint (compare-and-set from where the batch before ended) in
    /// one transaction, exactly as a ``CatchUpSubscription`` would.
    ///
    /// The reads follow the subscription's rules: only below the readable horizon, waiting
    /// while an older transaction holds it back. At most ``readAheadDepth`` batches are held
    /// in memory.
    ///
    /// An incremental projector (``run(on:listener:reader:until:progress:)``) catches up the same
    /// way, with `known` `nil`: each batch then looks up every key's current row, exactly as
    /// ``project(_:in:)`` does.
    /// - Returns: whether the build reached the head (rather than stopping at `limit` batches).
    func buildPipelined(
        writer: Connection, reader: Connection, limit: Int?, known: KnownKeys?, tracker: ProgressTracker
    ) async throws -> Bool {
        var cursor = try await writer.withSession { [self] in try store.checkpoint(consumer, in: $0) }
        let slots = ReadAheadSlots(Self.readAheadDepth)
        let (batches, continuation) = AsyncThrowingStream<Task<PreparedBatch, any Error>, any Error>.makeStream()
        let producer = Task { [self, cursor] in
            var position = cursor
            var count = 0
            do {
                while limit.map({ count < $0 }) ?? true {
                    try await slots.acquire()
                    guard let events = try await readBatch(after: position, on: reader) else { break }
                    position = events.last!.cursor
                    count += 1
                    continuation.yield(Task { [self] in try prepare(events) })
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        var written = 0
        do {
            for try await decoding in batches {
                let batch = try await decoding.value
                let from = cursor
                let result = try await writer.withSession { [self] session in
                    try session.transaction { tx in
                        let result = try apply(batch, known: known, in: tx)
                        try store.advanceCheckpoint(
                            consumer, from: from, to: batch.cursor, processed: batch.outcome.events, in: tx)
                        return result
                    }
                }
                known?.insert(result.created)
                tracker.record(result.outcome, cursor: batch.cursor)
                cursor = batch.cursor
                written += 1
                await slots.release()
            }
        } catch {
            producer.cancel()
            await slots.close()
            _ = await producer.result
            throw error
        }
        // Iterating the stream ends quietly when this task is cancelled, while the producer may
        // wait for a slot no one will release: stop it, and say the build was cancelled rather
        // than report the head reached.
        if Task.isCancelled {
            producer.cancel()
            await slots.close()
            _ = await producer.result
            throw CancellationError()
        }
        return limit.map { written < $0 } ?? true
    }

    /// The batch after `cursor`, or `nil` once every committed event has been read.
    func readBatch(after cursor: GlobalCursor, on reader: Connection) async throws -> [RecordedEvent]? {
        var backoff = Duration.milliseconds(2)
        while true {
            let (events, beyond) = try await reader.withSession { [self] session in
                let events = try store.readAll(after: cursor, limit: batchSize, in: session)
                return (events, events.isEmpty ? try store.hasEventsBeyond(cursor, in: session) : false)
            }
            if !events.isEmpty { return events }
            // Nothing readable: done, unless an older transaction holds the horizon back.
            guard beyond else { return nil }
            try await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .milliseconds(200))
        }
    }
}

/// A counting semaphore bounding the read-ahead.
actor ReadAheadSlots {
    private var free: Int
    private var waiting = [CheckedContinuation<Void, any Error>]()
    private var closed = false

    init(_ count: Int) { free = count }

    func acquire() async throws {
        if closed { throw CancellationError() }
        if free > 0 {
            free -= 1
            return
        }
        try await withCheckedThrowingContinuation { waiting.append($0) }
    }

    func release() {
        if waiting.isEmpty {
            free += 1
        } else {
            waiting.removeFirst().resume()
        }
    }

    /// Fails every waiter and every later acquire.
    func close() {
        closed = true
        for waiter in waiting { waiter.resume(throwing: CancellationError()) }
        waiting.removeAll()
    }
}
