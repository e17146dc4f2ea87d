import Postgres
import TestSupport
import Testing

@Suite("SQL: interpolated values are bound, identifiers quoted")
struct SQLTests {
    @Test func valuesBecomeParametersAndIdentifiersAreQuoted() {
        let schema = #"ledger"s"#
        let stream = "invoice-1'; DROP TABLE x; --"
        let sql: SQL = "SELECT * FROM \(identifier: schema, "events") WHERE stream_id = \(stream) LIMIT \(Int64(10))"
        #expect(sql.text == #"SELECT * FROM "ledger""s"."events" WHERE stream_id = $1 LIMIT $2"#)
        #expect(sql.bindings.count == 2)
        #expect("\(sql)" == sql.text)
        let raw = SQL(unsafeSQL: "SELECT 1")
        #expect(raw.text == "SELECT 1")
        let fragment: SQL = "SELECT \(unsafeSQL: "count(*)") FROM \(identifier: "t") WHERE a = \(nil as String?)"
        #expect(fragment.text == #"SELECT count(*) FROM "t" WHERE a = $1"#)
        #expect(quoteLiteral("O'Brien") == "'O''Brien'")
    }

    @Test func hostileValuesRoundTripAsDataNeverAsSQL() async throws {
        try await TestDatabase.withConnection { connection, _ in
            let hostile = "x'); DROP TABLE \"odd \"\"name\"; --"
            _ = try await connection.execute(sql: "CREATE TABLE \(identifier: "odd \"name") (v text)")
            _ = try await connection.execute(sql: "INSERT INTO \(identifier: "odd \"name") VALUES (\(hostile))")
            let back = try await connection.query(sql: "SELECT v FROM \(identifier: "odd \"name") WHERE v = \(hostile)")
                .rows.map { try $0.decode(at: 0, as: String.self) }
            #expect(back == [hostile])
        }
    }
}
