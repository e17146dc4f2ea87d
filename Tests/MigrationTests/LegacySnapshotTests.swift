import Migration
import Postgres
import TestSupport
import Testing

@Suite("LegacySnapshot: one view of the legacy database, shared and recorded")
struct LegacySnapshotTests {
    @Test func workersSeeTheSnapshotAndItTellsWhichTransactionsItSaw() async throws {
        try await TestDatabase.withConnection { writer, dsn in
            _ = try await writer.execute("CREATE TABLE t (id int)")
            let before = try await writer.query("INSERT INTO t VALUES (1) RETURNING pg_current_xact_id()::text").rows[0]
                .decode(at: 0, as: String.self)
            let coordinator = try await Connection.connect(dsn)
            defer { coordinator.close() }
            let snapshot = try await LegacySnapshot.open(on: coordinator)
            #expect(snapshot.visibility.split(separator: ":", omittingEmptySubsequences: false).count == 3)
            let after = try await writer.query("INSERT INTO t VALUES (2) RETURNING pg_current_xact_id()::text").rows[0]
                .decode(at: 0, as: String.self)

            let worker = try await Connection.connect(dsn)
            defer { worker.close() }
            let seen = try await worker.withSession { session in
                try session.transaction(.init(isolation: .repeatableRead, readOnly: true, snapshot: snapshot.id)) {
                    try $0.query("SELECT count(*) FROM t").rows[0].decode(at: 0, as: Int64.self)
                }
            }
            #expect(seen == 1)
            let (sawBefore, sawAfter) = try await worker.withSession { session in
                (try snapshot.saw(before, in: session), try snapshot.saw(after, in: session))
            }
            #expect(sawBefore)
            #expect(!sawAfter)
            await LegacySnapshot.close(on: coordinator)
            // Closed: the exported snapshot is gone.
            await #expect(throws: PostgresError.self) {
                try await worker.withSession { session in
                    try session.transaction(.init(isolation: .repeatableRead, readOnly: true, snapshot: snapshot.id)) { _ in }
                }
            }
        }
    }
}
