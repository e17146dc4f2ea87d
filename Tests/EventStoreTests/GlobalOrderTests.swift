import EventStore
import Foundation
import Synchronization
import Postgres
import Testing

@Suite("Global order: gap safety, checkpoints, subscriptions")
struct GlobalOrderTests {
    @Test func aLowerPositionCommittingLateIsNeverSkipped() async throws {
        try await withStore { reader, dsn, store in
            let slow = try await Connection.connect(dsn)
            let fast = try await Connection.connect(dsn)
            // The slow writer takes position 1 and keeps its transaction open.
            try await slow.execute("BEGIN")
            try await slow.withSession { try store.append([testEvent("a-1", 1)], to: "a-1", in: $0) }
            // The fast writer takes position 2 and commits.
            try await fast.withSession { try store.append([testEvent("b-1", 1)], to: "b-1", in: $0) }
            let positions = try await reader.query("SELECT global_position FROM ledgerlift.events ORDER BY 1").rows
            #expect(positions.count == 1)  // the reader's snapshot sees only b-1 ...
            // ... but the global reader delivers nothing yet: the slow transaction holds the horizon.
            var cursor = GlobalCursor.start
            var delivered = [String]()
            func poll() async throws {
                let events = try await reader.withSession { [cursor] in try store.readAll(after: cursor, limit: 100, in: $0) }
                for e in events { delivered.append(e.streamID) }
                if let last = events.last { cursor = last.cursor }
            }
            try await poll()
            #expect(delivered.isEmpty)
            #expect(cursor == .start)
            try await slow.execute("COMMIT")
            let rest = try await readAllEventually(store, reader, after: cursor, expected: 2)
            #expect(rest.map(\.streamID) == ["a-1", "b-1"])
            #expect(rest.map(\.globalPosition) == [1, 2])
        }
    }

    @Test func eightWritersWithRandomCommitDelaysAreReadExactlyOnceInStreamOrder() async throws {
        try await withStore { reader, dsn, store in
            let writers = 8
            let perWriter = 1_250
            let done = Flag()
            let readTask = Task { () -> [RecordedEvent] in
                var cursor = GlobalCursor.start
                var seen = [RecordedEvent]()
                while true {
                    let finished = done.isSet  // read before the batch, so a final pass always follows
                    let batch = try await reader.withSession { [cursor] in try store.readAll(after: cursor, limit: 300, in: $0) }
                    seen += batch
                    if let last = batch.last { cursor = last.cursor }
                    if batch.isEmpty {
                        let pending = try await reader.withSession { [cursor] in try store.hasEventsBeyond(cursor, in: $0) }
                        if finished && !pending { return seen }
                        try await Task.sleep(for: .milliseconds(2))
                    }
                }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for w in 0..<writers {
                    group.addTask {
                        let connection = try await Connection.connect(dsn)
                        var generator = SystemRandomNumberGenerator()
                        var written = 0
                        while written < perWriter {
                            let size = min(perWriter - written, Int.random(in: 1...8, using: &generator))
                            // Streams shared between writers: appends interleave within a stream too.
                            let stream = "shared-\(Int.random(in: 0..<24, using: &generator))"
                            let events = (0..<size).map { testEvent("w\(w)", written + $0) }
                            let delay = UInt32.random(in: 0...3_000, using: &generator)
                            try await connection.withSession { session in
                                try session.transaction { tx in
                                    try store.append(events, to: stream, in: tx)
                                    usleep(delay)  // commit late, holding lower positions
                                }
                            }
                            written += size
                        }
                    }
                }
                try await group.waitForAll()
            }
            done.set()
            let seen = try await readTask.value
            #expect(seen.count == writers * perWriter)
            #expect(Set(seen.map(\.eventID)).count == writers * perWriter)
            var lastVersion = [String: Int64]()
            for event in seen {
                #expect(event.streamVersion == (lastVersion[event.streamID] ?? 0) + 1, "\(event.streamID)")
                lastVersion[event.streamID] = event.streamVersion
            }
        }
    }

    @Test func categoryReadsReturnOnlyThatCategoryInGlobalOrder() async throws {
        try await withStore { connection, _, store in
            for (i, stream) in ["invoice-1", "invoices-2", "invoice-3", "customer-1", "invoice-1"].enumerated() {
                try await connection.withSession { try store.append([testEvent(stream, i)], to: stream, in: $0) }
            }
            let invoices = try await readAllEventually(store, connection, category: "invoice", expected: 3)
            #expect(invoices.map(\.streamID) == ["invoice-1", "invoice-3", "invoice-1"])
            #expect(invoices.map(\.globalPosition) == invoices.map(\.globalPosition).sorted())
        }
    }

    @Test func checkpointsAreCompareAndSet() async throws {
        try await withStore { connection, dsn, store in
            try await connection.withSession { try store.append([testEvent("x-1", 1), testEvent("x-1", 2)], to: "x-1", in: $0) }
            let events = try await readAllEventually(store, connection, expected: 2)
            try await connection.withSession {
                try store.advanceCheckpoint("projector", from: .start, to: events[0].cursor, processed: 1, in: $0)
            }
            // A second copy of the consumer that still believes it is at the start loses.
            let other = try await Connection.connect(dsn)
            let error = try await #require(throws: EventStoreError.self) {
                try await other.withSession {
                    try store.advanceCheckpoint("projector", from: .start, to: events[1].cursor, in: $0)
                }
            }
            #expect(error == .checkpointConflict(consumer: "projector", expected: .start, actual: events[0].cursor))
            try await connection.withSession {
                try store.advanceCheckpoint("projector", from: events[0].cursor, to: events[1].cursor, processed: 1, in: $0)
            }
            #expect(try await connection.withSession { try store.checkpoint("projector", in: $0) } == events[1].cursor)
        }
    }

    @Test func twoCopiesOfAConsumerRacingOnOneBatchCommitOnlyOnce() async throws {
        try await withStore { connection, dsn, store in
            try await connection.execute("CREATE TABLE tally (event_id uuid PRIMARY KEY)")
            try await connection.withSession {
                try store.append((1...50).map { testEvent("y-1", $0) }, to: "y-1", in: $0)
            }
            let copies = try await [Connection.connect(dsn), Connection.connect(dsn)]
            await withTaskGroup(of: Void.self) { group in
                for copy in copies {
                    group.addTask {
                        _ = try? await CatchUpSubscription(store: store, consumer: "tally", batchSize: 10)
                            .run(on: copy) { tx, events in
                                for e in events { try tx.execute("INSERT INTO tally VALUES ($1)", [e.eventID]) }
                                usleep(20_000)
                            }
                    }
                }
            }
            // Whichever copy won each batch, every event was tallied exactly once (the table's
            // primary key would have failed a double insert; CAS keeps the losers' writes out).
            #expect(try await count(connection, "SELECT count(*) FROM tally") == 50)
            let checkpoint = try await connection.withSession { try store.checkpoint("tally", in: $0) }
            let head = try await readAllEventually(store, connection, expected: 50).last?.cursor
            #expect(checkpoint == head)
        }
    }

    // The poll interval is a day, so whatever the subscription handles before this test's time
    // limit, the notification woke it for. The limit is that generous because another
    // transaction anywhere in the cluster may hold back the readable horizon, which delays the
    // read (not the wake-up); it only turns a lost notification into this test's failure.
    // The limit catches a hang; it also counts the wait for a test database slot, which on a
    // loaded 2-core machine running the whole suite can take minutes.
    @Test(.timeLimit(.minutes(30)))
    func aFollowingSubscriptionWakesOnNotificationForNewEvents() async throws {
        try await withStore { connection, dsn, store in
            let reader = try await Connection.connect(dsn)
            let listener = try await Connection.connect(dsn)
            let (handled, handling) = AsyncStream.makeStream(of: Int.self)
            let subscription = CatchUpSubscription(store: store, consumer: "follower", batchSize: 100, pollInterval: .seconds(86_400))
            let task = Task {
                defer { handling.finish() }
                _ = try await subscription.run(on: reader, listener: listener, until: .cancelled) { _, events in
                    handling.yield(events.count)
                }
            }
            // Append only once the subscription has listened, read the empty store and committed
            // that read (the reader's only transaction so far): from then on the event can reach
            // it through the notification alone.
            while try await !connection.query(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'idle' AND query = 'COMMIT')",
                [reader.backendPID]
            ).rows[0].decode(at: 0, as: Bool.self) {
                try await Task.sleep(for: .milliseconds(10))
            }
            let writer = try await Connection.connect(dsn)
            try await writer.withSession { try store.append([testEvent("z-1", 1)], to: "z-1", in: $0) }
            #expect(await handled.first { _ in true } == 1)
            task.cancel()
            listener.cancel()
            _ = await task.result
        }
    }

    @Test func snapshotsPlusLaterEventsRebuildState() async throws {
        try await withStore { connection, _, store in
            let events = (1...6).map { testEvent("counter-1", $0, payload: #"{"add": \#($0)}"#) }
            try await connection.withSession { try store.append(events, to: "counter-1", in: $0) }
            struct Add: Decodable { let add: Int }
            let apply: @Sendable (Int, RecordedEvent) throws -> Int = { total, e in total + (try e.payload.decode(as: Add.self)).add }
            try await connection.withSession {
                try store.saveSnapshot("counter-1", version: 4, type: "total", state: PostgresJSON("1000"), in: $0)
            }
            // The snapshot deliberately disagrees with the events, to prove it was used: 1000 + 5 + 6.
            let loaded = try await connection.withSession {
                try store.loadState(
                    "counter-1", snapshotType: "total", initial: 0, restore: { Int($0.state.text) }, apply: apply, in: $0)
            }
            #expect(loaded.state == 1011 && loaded.version == 6)
            let replayed = try await connection.withSession {
                try store.loadState("counter-1", snapshotType: "total", initial: 0, restore: { _ in nil }, apply: apply, in: $0)
            }
            #expect(replayed.state == 21 && replayed.version == 6)
        }
    }
}

final class Flag: Sendable {
    private let state = Mutex(false)
    var isSet: Bool { state.withLock { $0 } }
    func set() { state.withLock { $0 = true } }
}
