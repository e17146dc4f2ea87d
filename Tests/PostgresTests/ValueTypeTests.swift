import Postgres
import Testing

@Suite("Exact value types")
struct ValueTypeTests {
    @Test func numericScalesExactlyOrRefuses() throws {
        #expect(try PostgresNumeric("12.34")!.scaledInteger(exponent: 2) == 1234)
        #expect(try PostgresNumeric("-12.3")!.scaledInteger(exponent: 2) == -1230)
        #expect(try PostgresNumeric("12.3400")!.scaledInteger(exponent: 2) == 1234)
        #expect(try PostgresNumeric("1500")!.scaledInteger(exponent: 0) == 1500)
        #expect(try PostgresNumeric("-9223372036854775.808")!.scaledInteger(exponent: 3) == Int64.min)
        #expect(throws: PostgresNumeric.ScalingError.inexact(value: "12.345", exponent: 2)) {
            try PostgresNumeric("12.345")!.scaledInteger(exponent: 2)
        }
        #expect(throws: PostgresNumeric.ScalingError.overflow(value: "99999999999999999999.99")) {
            try PostgresNumeric("99999999999999999999.99")!.scaledInteger(exponent: 2)
        }
        #expect(PostgresNumeric("1e5") == nil)
        #expect(PostgresNumeric("12.") != nil)
        #expect(PostgresNumeric(".") == nil)
        #expect(PostgresNumeric(units: -5, scale: 3).description == "-0.005")
        #expect(PostgresNumeric(units: 123_456, scale: 2).description == "1234.56")
        #expect(PostgresNumeric(units: 7, scale: 0).description == "7")
    }

    @Test func timestampsParsePostgresOutputForms() throws {
        let t = try #require(PostgresTimestamp("2024-01-31 23:59:59.5+00"))
        #expect(t.iso8601 == "2024-01-31T23:59:59.500000Z")
        #expect(PostgresTimestamp("2024-01-31 23:59:59-05:30")?.iso8601 == "2024-02-01T05:29:59.000000Z")
        #expect(PostgresTimestamp("2024-01-31T23:59:59Z") == PostgresTimestamp("2024-01-31 23:59:59+00"))
        #expect(PostgresTimestamp("2024-02-30 00:00:00") == nil)
        #expect(PostgresTimestamp("1969-12-31 23:59:59.999999+00")?.microsecondsSinceEpoch == -1)
        #expect(PostgresDate("2024-02-29")?.description == "2024-02-29")
        #expect(PostgresDate("2023-02-29") == nil)
    }

    @Test func maskingHidesPasswordsInEveryForm() {
        #expect(ConnectionString.masked("postgres://u:hunter2@127.0.0.1:1/x") == "postgres://u:****@127.0.0.1:1/x")
        #expect(
            ConnectionString.masked("postgresql://u@h/db?sslmode=require&password=hunter2")
                == "postgresql://u@h/db?sslmode=require&password=****")
        #expect(ConnectionString.masked("host=h user=u password=hunter2 dbname=d") == "host=h user=u password=**** dbname=d")
        #expect(ConnectionString.masked("host=h password='hun ter2' dbname=d") == "host=h password=**** dbname=d")
        #expect(ConnectionString.masked("postgres://u@h/db") == "postgres://u@h/db")
    }

    @Test func withDatabaseRetargetsBothForms() {
        #expect(ConnectionString.withDatabase("postgres://u@h:5/a?sslmode=disable", "b") == "postgres://u@h:5/b?sslmode=disable")
        #expect(ConnectionString.withDatabase("postgresql://u@h", "b") == "postgresql://u@h/b")
        #expect(ConnectionString.withDatabase("host=h dbname=a", "b") == "host=h dbname=a dbname='b'")
    }
}
