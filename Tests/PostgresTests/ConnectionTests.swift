import Foundation
import Postgres
import TestSupport
import Testing

@Suite("Connections, errors, timeouts and sharing")
struct ConnectionTests {
    @Test func duplicateKeyRaisesUniqueViolationNamingTheConstraint() async throws {
        try await TestDatabase.withConnection { connection, _ in
            try await connection.execute("CREATE TABLE invoices (id int CONSTRAINT invoices_pkey PRIMARY KEY)")
            try await connection.execute("INSERT INTO invoices VALUES ($1)", [Int32(7)])
            let error = try await #require(throws: PostgresError.self) {
                try await connection.execute("INSERT INTO invoices VALUES ($1)", [Int32(7)])
            }
            #expect(error.sqlState == "23505")
            #expect(error.isUniqueViolation)
            #expect(error.constraint == "invoices_pkey")
            #expect(error.table == "invoices")
            #expect(error.detail == "Key (id)=(7) already exists.")
            // The connection stays usable after a server error.
            #expect(try await connection.query("SELECT 1 AS one").rows[0].decode("one", as: Int32.self) == 1)
        }
    }

    @Test func statementTimeoutCancelsPgSleepWithQueryCanceled() async throws {
        try await TestDatabase.withConnection { connection, _ in
            // pg_sleep(300) outlasts the 1 s timeout on any machine, however loaded: only the
            // timeout can end it with an error, and the message says it was the timeout.
            let error = try await #require(throws: PostgresError.self) {
                try await connection.withSession { session in
                    try session.setStatementTimeout(.seconds(1))
                    try session.execute("SELECT pg_sleep(300)")
                }
            }
            #expect(error.sqlState == "57014")
            #expect(error.isQueryCanceled)
            #expect(error.message == "canceling statement due to statement timeout")
        }
    }

    // The time limit only names a hang (a statement never seen running) as this test's failure.
    // The limit catches a hang; it also counts the wait for a test database slot, which on a
    // loaded 2-core machine running the whole suite can take minutes.
    @Test(.timeLimit(.minutes(30)))
    func cancellingTheTaskCancelsTheRunningStatement() async throws {
        try await TestDatabase.withConnection { connection, dsn in
            let observer = try await Connection.connect(dsn)
            defer { observer.close() }
            // pg_sleep(300): if a cancel were lost, the statement would succeed (after 5 minutes)
            // and the missing error fail the test; only a cancel ends it with 57014.
            let task = Task { try await connection.execute("SELECT pg_sleep(300)") }
            try await waitUntil(connection, runs: "SELECT pg_sleep(300)", seenFrom: observer)
            task.cancel()
            let error = try await #require(throws: PostgresError.self) { try await task.value }
            #expect(error.isQueryCanceled)
            #expect(error.message == "canceling statement due to user request")
            // cancel() from another thread does the same for a statement started elsewhere.
            let second = Task { try await connection.execute("SELECT pg_sleep(301)") }
            try await waitUntil(connection, runs: "SELECT pg_sleep(301)", seenFrom: observer)
            connection.cancel()
            let secondError = try await #require(throws: PostgresError.self) { try await second.value }
            #expect(secondError.sqlState == "57014")
            #expect(secondError.message == "canceling statement due to user request")
        }
    }

    /// Returns once the server runs `statement` on `connection`'s backend, as `observer` sees in
    /// `pg_stat_activity`: the cancel then reaches a running statement, where a sleep of a
    /// guessed length could send it before the statement started on a loaded machine.
    private func waitUntil(_ connection: Connection, runs statement: String, seenFrom observer: Connection) async throws {
        while try await !observer.query(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query = $2)",
            [connection.backendPID, statement]
        ).rows[0].decode(at: 0, as: Bool.self) {
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    @Test func concurrentTasksSharingOneConnectionGetTheirOwnResults() async throws {
        try await TestDatabase.withConnection { connection, _ in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for n in 1...200 {
                    group.addTask {
                        let rows = try await connection.query(
                            "SELECT $1::int8 AS n, g FROM generate_series(1, $1::int) AS g", [Int64(n % 37 + 1)]
                        ).rows
                        #expect(rows.count == n % 37 + 1)
                        for (i, row) in rows.enumerated() {
                            #expect(try row.decode("n", as: Int64.self) == Int64(n % 37 + 1))
                            #expect(try row.decode("g", as: Int32.self) == Int32(i + 1))
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    @Test func badDSNFailsWithoutThePassword() async throws {
        let error = try await #require(throws: PostgresError.self) {
            _ = try await Connection.connect("postgres://u:hunter2@127.0.0.1:1/x")
        }
        #expect(error.code == .connectionFailed)
        #expect(!error.description.contains("hunter2"))
        #expect(!error.message.contains("hunter2"))
        #expect(!"\(error)".contains("hunter2"))
        #expect(error.description.contains("postgres://u:****@127.0.0.1:1/x"))
        let kvError = try await #require(throws: PostgresError.self) {
            _ = try await Connection.connect("host=127.0.0.1 port=1 user=u password=hunter2 connect_timeout=2")
        }
        #expect(!kvError.description.contains("hunter2"))
    }

    @Test func applicationNameAndLibpqOptionsAreHonoured() async throws {
        try await TestDatabase.withFresh { dsn in
            let named = try await Connection.connect(dsn + (dsn.contains("?") ? "&" : "?") + "application_name=ll-probe")
            let row = try await named.query("SELECT current_setting('application_name') AS a, current_setting('TimeZone') AS tz").rows[0]
            #expect(try row.decode("a", as: String.self) == "ll-probe")
            #expect(try row.decode("tz", as: String.self) == "UTC")
            let fallback = try await Connection.connect(dsn)
            let name = try await fallback.query("SELECT current_setting('application_name') AS a").rows[0]
            #expect(try name.decode("a", as: String.self) == "ledgerlift")
        }
    }

    @Test func aTerminatedBackendIsReportedAsConnectionLost() async throws {
        try await TestDatabase.withConnection { connection, dsn in
            let killer = try await Connection.connect(dsn)
            try await killer.execute("SELECT pg_terminate_backend($1)", [connection.backendPID])
            let error = try await #require(throws: PostgresError.self) { try await connection.execute("SELECT 1") }
            #expect(error.isConnectionLost)
        }
    }

    @Test func tryAdvisoryLockHeldByOneConnectionIsRefusedToAnother() async throws {
        try await TestDatabase.withConnection { first, dsn in
            let second = try await Connection.connect(dsn)
            #expect(try await first.withSession { try $0.tryAdvisoryLock(4242) })
            #expect(try await second.withSession { try $0.tryAdvisoryLock(4242) } == false)
            #expect(try await first.withSession { try $0.advisoryUnlock(4242) })
            #expect(try await second.withSession { try $0.tryAdvisoryLock(4242) })
            // Transaction scope: released at commit.
            let tookInTransaction = try await first.transaction { tx in
                try tx.tryAdvisoryLock(7, scope: .transaction)
            }
            #expect(tookInTransaction)
            #expect(try await second.withSession { try $0.tryAdvisoryLock(7, scope: .session) })
        }
    }

    @Test func waitingAdvisoryLockRespectsLockTimeout() async throws {
        try await TestDatabase.withConnection { first, dsn in
            let second = try await Connection.connect(dsn)
            try await first.withSession { try $0.advisoryLock(99) }
            let error = try await #require(throws: PostgresError.self) {
                try await second.withSession { session in
                    try session.setLockTimeout(.milliseconds(200))
                    try session.advisoryLock(99)
                }
            }
            #expect(error.isLockNotAvailable)
        }
    }
}
