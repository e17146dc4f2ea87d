import Billing
import EventStore
import Foundation
import Postgres
import TestSupport
import Testing

extension ProjectionTests {
    /// Catching up a live model over a reader connection (what `project` does after the first
    /// build) writes exactly what catching up in turn on one connection writes, batch for
    /// batch, with the checkpoint where the in-turn run leaves it — also when stopped after a
    /// few batches and continued.
    @Test func pipelinedIncrementalCatchUpEqualsCatchingUpInTurn() async throws {
        try await withProjectionStore { connection, dsn, store in
            let reader = try await Connection.connect(dsn)
            defer { reader.close() }
            let all = Self.fixture(customers: 30, seed: 17).events
            let half = all.count / 2
            var firstHalf = ProjectionEvents([])
            firstHalf.events = Array(all[..<half])
            var secondHalf = ProjectionEvents([])
            secondHalf.events = Array(all[half...])
            try await firstHalf.append(to: store, on: connection)

            let inTurn = Projector(store: store, readSchema: "read_in_turn", batchSize: 41)
            let pipelined = Projector(store: store, readSchema: "read_pipelined", batchSize: 41)
            for projector in [inTurn, pipelined] {
                let built = try await projector.catchUp(on: connection, reader: reader)
                #expect(built.swapped)
            }
            try await secondHalf.append(to: store, on: connection)

            let sequential = try await inTurn.run(on: connection)
            let first = try await pipelined.run(on: connection, reader: reader, until: .batches(2))
            #expect(first.progress.batches == 2)
            #expect(first.progress.events == 2 * 41)
            let rest = try await pipelined.catchUp(on: connection, reader: reader)
            #expect(!rest.rebuilt)
            #expect(first.progress.events + rest.progress.events == sequential.progress.events)
            #expect(first.progress.batches + rest.progress.batches == sequential.progress.batches)
            #expect(rest.progress.cursor == sequential.progress.cursor)

            let a = try await tableHashes(connection, schema: "read_in_turn")
            let b = try await tableHashes(connection, schema: "read_pipelined")
            #expect(!a.isEmpty)
            for table in a.keys.sorted() { #expect(a[table] == b[table], "\(table) differs") }

            // Caught up: a further pipelined run reads nothing and leaves the checkpoint.
            let idle = try await pipelined.run(on: connection, reader: reader)
            #expect(idle.progress.events == 0)
            #expect(idle.progress.cursor == sequential.progress.cursor)
        }
    }
}

extension ProjectionTests {
    /// Cancelling a pipelined run ends it — the read-ahead producer waiting for a slot is
    /// stopped too — and never reports the head reached.
    // The limit catches a hang; it also counts the wait for a test database slot, which on a
    // loaded 2-core machine running the whole suite can take minutes.
    @Test(.timeLimit(.minutes(30)))
    func cancellingAPipelinedRunEndsItAndItsProducer() async throws {
        try await withProjectionStore { connection, dsn, store in
            let reader = try await Connection.connect(dsn)
            defer { reader.close() }
            let all = Self.fixture(customers: 40, seed: 23).events
            var first = ProjectionEvents([])
            first.events = Array(all[..<20])
            var rest = ProjectionEvents([])
            rest.events = Array(all[20...])
            try await first.append(to: store, on: connection)
            let projector = Projector(store: store, readSchema: "read_cancelled", batchSize: 7)
            let built = try await projector.catchUp(on: connection, reader: reader)
            try await rest.append(to: store, on: connection)
            let running = Task { try await projector.run(on: connection, reader: reader, until: .cancelled) }
            // Cancel once it has written a batch of the backlog.
            let start = built.progress.cursor.position
            while try await connection.query(
                "SELECT global_position FROM ledgerlift.checkpoints WHERE consumer = $1", [projector.consumer]
            ).rows[0].decode(at: 0, as: Int64.self) <= start {
                try await Task.sleep(for: .milliseconds(10))
            }
            running.cancel()
            switch await running.result {
            case .success(let summary):
                // It may have written every batch before the cancellation landed.
                #expect(summary.progress.events > 0)
            case .failure(let error):
                #expect(error is CancellationError || "\(error)".lowercased().contains("cancel"), "\(error)")
            }
        }
    }
}
