@testable import Billing
import EventStore
import Foundation
import Postgres
import TestSupport
import Testing

/// A blue/green build killed while it completes its copy (one transaction per entity) leaves
/// some entities complete — canonical table filled from history — and others not. Seen in CI:
/// the next run built the events appended meanwhile into the copy in bulk (history only), then
/// skipped the completed entities, and the swapped-in read models lacked a whole transaction's
/// payments and invoices while their checkpoint said they held it.
@Suite("Blue/green: a build killed while completing")
struct BlueGreenCompletionTests {
    @Test(arguments: [false, true])
    func theEventsAppendedAfterAKillMidCompletionReachEveryTable(pipelined: Bool) async throws {
        try await withProjectionStore { connection, dsn, store in
            let reader = pipelined ? try await Connection.connect(dsn) : nil
            defer { reader?.close() }
            let all = ProjectionTests.fixture(customers: 20, seed: 23).events
            var first = ProjectionEvents([])
            first.events = Array(all[..<(all.count / 2)])
            var second = ProjectionEvents([])
            second.events = Array(all[(all.count / 2)...])
            try await first.append(to: store, on: connection)

            // What a kill mid-completion leaves: the copy built to the head of the first half,
            // the two largest entities completed, the rest not, the copy still `building`.
            let projector = Projector(store: store, readSchema: "read_resumed", batchSize: 100)
            let next = projector.next
            let fresh = try await connection.withSession { try next.prepareBuild(in: $0).fresh }
            let known = try await connection.withSession { try KnownKeys.load(next.schema, empty: fresh, in: $0) }
            let tracker = ProgressTracker(nil, logger: projector.logger, consumer: next.consumer)
            #expect(try await next.buildSequential(on: connection, limit: nil, known: known, tracker: tracker))
            try await next.completeEntities([.invoice, .payment], on: connection)
            #expect(try await connection.withSession { try next.schema.completionStarted(in: $0) })
            #expect(try await connection.withSession { try next.state(in: $0)?.phase } == .building)

            // Then the application writes on, and a new run resumes the build.
            try await second.append(to: store, on: connection)
            let resumed = try await projector.rebuild(on: connection, reader: reader)
            #expect(resumed.swapped)
            #expect(resumed.progress.events == second.events.count, "the new events went in incrementally")

            _ = try await Projector(store: store, readSchema: "fresh", batchSize: 999).rebuild(on: connection)
            let expected = try await tableHashes(connection, schema: "fresh")
            let actual = try await tableHashes(connection, schema: "read_resumed")
            for table in expected.keys.sorted() { #expect(actual[table] == expected[table], "\(table) differs") }
        }
    }
}
