import Postgres
import TestSupport
import Testing

@Suite("Transactions and exported snapshots")
struct TransactionTests {
    struct Boom: Error {}

    @Test func aThrowingBodyRollsBack() async throws {
        try await TestDatabase.withConnection { connection, _ in
            try await connection.execute("CREATE TABLE t (v int)")
            await #expect(throws: Boom.self) {
                try await connection.transaction { tx in
                    try tx.execute("INSERT INTO t VALUES (1)")
                    throw Boom()
                }
            }
            #expect(try await connection.query("SELECT count(*) AS n FROM t").rows[0].decode("n", as: Int64.self) == 0)
            try await connection.transaction { tx in try tx.execute("INSERT INTO t VALUES (2)") }
            #expect(try await connection.query("SELECT count(*) AS n FROM t").rows[0].decode("n", as: Int64.self) == 1)
        }
    }

    @Test func aSwallowedStatementErrorMakesCommitThrow() async throws {
        try await TestDatabase.withConnection { connection, _ in
            try await connection.execute("CREATE TABLE t (v int PRIMARY KEY)")
            let error = try await #require(throws: PostgresError.self) {
                try await connection.transaction { tx in
                    try tx.execute("INSERT INTO t VALUES (1)")
                    _ = try? tx.execute("INSERT INTO t VALUES (1)")
                }
            }
            #expect(error.sqlState == "25P02")
            #expect(try await connection.query("SELECT count(*) AS n FROM t").rows[0].decode("n", as: Int64.self) == 0)
        }
    }

    @Test func optionsSetIsolationReadOnlyAndDeferrable() async throws {
        try await TestDatabase.withConnection { connection, _ in
            let row = try await connection.transaction(.init(isolation: .serializable, readOnly: true, deferrable: true)) {
                tx in
                try tx.query(
                    "SELECT current_setting('transaction_isolation') AS i, current_setting('transaction_read_only') AS r,"
                        + " current_setting('transaction_deferrable') AS d"
                ).rows[0]
            }
            #expect(try row.decode("i", as: String.self) == "serializable")
            #expect(try row.decode("r", as: String.self) == "on")
            #expect(try row.decode("d", as: String.self) == "on")
            await #expect(throws: PostgresError.self) {
                try await connection.transaction(.init(readOnly: true)) { tx in
                    try tx.execute("CREATE TABLE nope (v int)")
                }
            }
        }
    }

    @Test func anImportedSnapshotSeesExactlyTheExportersData() async throws {
        try await TestDatabase.withConnection { exporter, dsn in
            try await exporter.execute("CREATE TABLE t (v int)")
            try await exporter.execute("INSERT INTO t VALUES (1), (2)")
            let writer = try await Connection.connect(dsn)
            let importer = try await Connection.connect(dsn)
            let counts = try await exporter.withSession { session in
                try session.transaction(.init(isolation: .repeatableRead)) { tx -> [Int64] in
                    let id = try tx.exportSnapshot()
                    // Committed after the export: invisible to anyone using the snapshot.
                    try writer.withSessionBlocking { try $0.execute("INSERT INTO t VALUES (3)") }
                    let seen = try importer.withSessionBlocking { other in
                        try other.transaction(.init(isolation: .repeatableRead, readOnly: true, snapshot: id)) { itx in
                            try itx.query("SELECT count(*) AS n FROM t").rows[0].decode("n", as: Int64.self)
                        }
                    }
                    let mine = try tx.query("SELECT count(*) AS n FROM t").rows[0].decode("n", as: Int64.self)
                    return [seen, mine]
                }
            }
            #expect(counts == [2, 2])
            #expect(try await importer.query("SELECT count(*) AS n FROM t").rows[0].decode("n", as: Int64.self) == 3)
        }
    }

    @Test func nestedTransactionIsRefused() async throws {
        try await TestDatabase.withConnection { connection, _ in
            let error = try await #require(throws: PostgresError.self) {
                try await connection.transaction { tx in try tx.transaction { _ in } }
            }
            #expect(error.code == .misuse)
        }
    }
}
