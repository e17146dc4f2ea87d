import Foundation
import Postgres
import TestSupport
import Testing

@Suite("Type round trips through parameters and results")
struct TypeRoundTripTests {
    /// Sends `value` as a parameter cast to `type`, stores it in a column of that type, reads it
    /// back, and also round-trips NULL through the same column.
    func roundTrip<T: PostgresCodable & Equatable>(
        _ connection: Connection, _ type: String, _ value: T
    ) async throws {
        let table = "rt_" + type.filter { $0.isLetter || $0.isNumber }
        try await connection.execute("CREATE TABLE IF NOT EXISTS \(table) (id int PRIMARY KEY, v \(type))")
        try await connection.execute("DELETE FROM \(table)")
        try await connection.execute("INSERT INTO \(table) VALUES (1, $1), (2, $2)", [value, nil])
        let direct = try await connection.query("SELECT $1::\(type) AS v", [value]).rows[0]
        #expect(try direct.decode("v", as: T.self) == value)
        let rows = try await connection.query("SELECT v FROM \(table) ORDER BY id").rows
        #expect(try rows[0].decode("v", as: T.self) == value)
        #expect(try rows[1].decode("v", as: T?.self) == nil)
        let nullParam = try await connection.query("SELECT $1::\(type) AS v", [nil]).rows[0]
        #expect(try nullParam.decode("v", as: T?.self) == nil)
    }

    @Test func integersRoundTripAtTheirLimits() async throws {
        try await TestDatabase.withConnection { connection, _ in
            for v in [Int16.min, -1, 0, Int16.max] { try await roundTrip(connection, "int2", v) }
            for v in [Int32.min, 0, Int32.max] { try await roundTrip(connection, "int4", v) }
            for v in [Int64.min, -42, 0, Int64.max] { try await roundTrip(connection, "int8", v) }
        }
    }

    @Test func boolsRoundTrip() async throws {
        try await TestDatabase.withConnection { connection, _ in
            try await roundTrip(connection, "bool", true)
            try await roundTrip(connection, "bool", false)
        }
    }

    @Test func stringsKeepQuotesEscapesAndNonASCII() async throws {
        try await TestDatabase.withConnection { connection, _ in
            let nasty = "O'Brien \"quoted\" back\\slash\ttab\nnewline\r€ 東京 🧾 $1 ; DROP TABLE x; --"
            try await roundTrip(connection, "text", nasty)
            try await roundTrip(connection, "text", "")
            try await roundTrip(connection, "varchar", "plain")
        }
    }

    @Test func numericsAreExactBeyondDoublePrecision() async throws {
        try await TestDatabase.withConnection { connection, _ in
            for text in ["0", "12.30", "-0.005", "12345678901234567890.123456789", "0.30000000000000004"] {
                try await roundTrip(connection, "numeric", PostgresNumeric(text)!)
            }
            let row = try await connection.query("SELECT 0.1::numeric + 0.2::numeric AS s").rows[0]
            #expect(try row.decode("s", as: PostgresNumeric.self).description == "0.3")
        }
    }

    @Test func timestamptzKeepsMicrosecondsInUTC() async throws {
        try await TestDatabase.withConnection { connection, _ in
            let instants = [
                PostgresTimestamp(year: 2024, month: 2, day: 29, hour: 23, minute: 59, second: 59, microsecond: 999_999)!,
                PostgresTimestamp(year: 1969, month: 12, day: 31, hour: 23, minute: 59, second: 59, microsecond: 1)!,
                PostgresTimestamp(year: 2000, month: 1, day: 1)!,
                PostgresTimestamp.infinity,
            ]
            for instant in instants { try await roundTrip(connection, "timestamptz", instant) }
            // A value written with an offset is the same instant in UTC.
            let row = try await connection.query("SELECT '2024-06-01 12:00:00.000001+02'::timestamptz AS t").rows[0]
            #expect(try row.decode("t", as: PostgresTimestamp.self).iso8601 == "2024-06-01T10:00:00.000001Z")
        }
    }

    @Test func datesRoundTrip() async throws {
        try await TestDatabase.withConnection { connection, _ in
            for date in [PostgresDate(year: 2024, month: 2, day: 29)!, PostgresDate(year: 1900, month: 1, day: 1)!] {
                try await roundTrip(connection, "date", date)
            }
        }
    }

    @Test func uuidsRoundTrip() async throws {
        try await TestDatabase.withConnection { connection, _ in
            try await roundTrip(connection, "uuid", UUID(uuidString: "6F9619FF-8B86-D011-B42D-00C04FC964FF")!)
        }
    }

    @Test func jsonAndJsonbRoundTrip() async throws {
        try await TestDatabase.withConnection { connection, _ in
            let document = #"{"amount": 1250, "note": "l'été \"quoted\"", "tags": ["a", "b"]}"#
            try await roundTrip(connection, "json", PostgresJSON(document, binary: false))
            let row = try await connection.query("SELECT $1::jsonb AS j", [PostgresJSON(document)]).rows[0]
            struct Doc: Decodable, Equatable {
                let amount: Int64
                let note: String
                let tags: [String]
            }
            let decoded = try row.decode("j", as: PostgresJSON.self).decode(as: Doc.self)
            #expect(decoded == Doc(amount: 1250, note: "l'été \"quoted\"", tags: ["a", "b"]))
        }
    }

    @Test func byteaKeepsEveryByteValue() async throws {
        try await TestDatabase.withConnection { connection, _ in
            try await roundTrip(connection, "bytea", (0...255).map { UInt8($0) })
            try await roundTrip(connection, "bytea", [UInt8]())
        }
    }

    @Test func decodingErrorNamesColumnPostgresTypeAndSwiftType() async throws {
        try await TestDatabase.withConnection { connection, _ in
            let row = try await connection.query("SELECT 'abc'::text AS label, NULL::int8 AS missing").rows[0]
            let error = try #require(throws: PostgresDecodingError.self) { try row.decode("label", as: Int64.self) }
            #expect(error.column == "label")
            #expect(error.postgresType == .text)
            #expect(error.swiftType == "Int64")
            #expect(error.description.contains("\"label\"") && error.description.contains("text"))
            let nullError = try #require(throws: PostgresDecodingError.self) {
                try row.decode("missing", as: Int64.self)
            }
            #expect(nullError.reason.contains("NULL"))
            #expect(nullError.postgresType == .int8)
        }
    }
}
