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

    @Test func timestampAndDateErrorsSayWhyInOneSentence() {
        func timestamp(_ text: String) -> String {
            do { return try PostgresTimestamp.parse(text).iso8601 } catch { return error.description }
        }
        func date(_ text: String) -> String {
            do { return try PostgresDate.parse(text).description } catch { return error.description }
        }
        #expect(timestamp("2024-03-01") == #""2024-03-01" is not a timestamp like 2024-03-01 12:00:00+00 or 2024-03-01T12:00:00Z"#)
        #expect(timestamp("2023-02-29 00:00:00Z") == #""2023-02-29 00:00:00Z" is not a valid timestamp: 2023-02 has no day 29"#)
        #expect(timestamp("2024-13-01 00:00:00Z") == #""2024-13-01 00:00:00Z" is not a valid timestamp: month 13 is not 01–12"#)
        #expect(timestamp("2024-01-01 24:00:00Z") == #""2024-01-01 24:00:00Z" is not a valid timestamp: hour 24 is not 00–23"#)
        #expect(timestamp("2024-01-01 23:60:00Z") == #""2024-01-01 23:60:00Z" is not a valid timestamp: minute 60 is not 00–59"#)
        #expect(timestamp("2024-01-01 23:59:60Z") == #""2024-01-01 23:59:60Z" is not a valid timestamp: second 60 is not 00–59"#)
        #expect(
            timestamp("2024-01-01 00:00:00+99:00")
                == #""2024-01-01 00:00:00+99:00" is not a valid timestamp: the offset +99:00 is beyond ±15:59:59"#)
        #expect(
            timestamp("2024-01-01 00:00:00-01:60")
                == #""2024-01-01 00:00:00-01:60" is not a valid timestamp: the offset -01:60 has minutes or seconds above 59"#)
        #expect(
            timestamp("2024-01-01 00:00:00.0000001Z")
                == #""2024-01-01 00:00:00.0000001Z" has non-zero digits below a microsecond, which would have to be rounded"#)
        #expect(timestamp("2024-01-01 00:00:00.1234560000000Z") == "2024-01-01T00:00:00.123456Z")
        #expect(
            timestamp("0001-01-01 00:00:00+00:00:01")
                == #""0001-01-01 00:00:00+00:00:01" is before 0001-01-01T00:00:00Z, the first instant PostgreSQL prints without BC"#)
        #expect(
            timestamp("294276-12-31 23:59:59.999999+00")
                == #""294276-12-31 23:59:59.999999+00" is after 294247-01-10T04:00:54.775806Z, the last instant 64-bit microseconds since 1970 hold"#)
        #expect(timestamp("294247-01-10 04:00:54.775806-00:00:01") == #""294247-01-10 04:00:54.775806-00:00:01" is after 294247-01-10T04:00:54.775806Z, the last instant 64-bit microseconds since 1970 hold"#)
        #expect(timestamp("294247-01-10 04:00:55.775806+00:00:01") == "294247-01-10T04:00:54.775806Z")
        #expect(date("9999999-12-31") == #""9999999-12-31" is after 294247-01-10, the last day whose midnight 64-bit microseconds since 1970 hold"#)
        #expect(date("0000-12-31") == #""0000-12-31" is before 0001-01-01, the first day PostgreSQL prints without BC"#)
        #expect(date("2024-04-31") == #""2024-04-31" is not a valid date: 2024-04 has no day 31"#)
        #expect(date("2024-4-1") == #""2024-4-1" is not a date like 2024-03-01"#)
        // Control characters are escaped and long text is cut, so an error stays one short line.
        #expect(date("\u{1}\n\"x\\") == #""\u{01}\n\"x\\" is not a date like 2024-03-01"#)
        #expect(
            date(String(repeating: "9", count: 100))
                == #""\#(String(repeating: "9", count: 40))"… (100 bytes) is not a date like 2024-03-01"#)
    }

    @Test func theFiniteRangeEndsAreExact() {
        #expect(PostgresTimestamp.minimumFinite.iso8601 == "0001-01-01T00:00:00.000000Z")
        #expect(PostgresTimestamp.maximumFinite.iso8601 == "294247-01-10T04:00:54.775806Z")
        #expect(PostgresDate.minimum.description == "0001-01-01")
        #expect(PostgresDate.maximum.description == "294247-01-10")
        #expect(PostgresDate.maximum.endOfDayUTC == nil)
        #expect(PostgresDate(year: 294247, month: 1, day: 9)?.endOfDayUTC?.iso8601 == "294247-01-09T23:59:59.999999Z")
        #expect(PostgresDate.minimum.endOfDayUTC?.iso8601 == "0001-01-01T23:59:59.999999Z")
        #expect(PostgresTimestamp(year: 294247, month: 1, day: 10, hour: 4, minute: 1) == nil)
        #expect(PostgresTimestamp(year: 294247, month: 1, day: 10, hour: 3)?.iso8601 == "294247-01-10T03:00:00.000000Z")
        #expect(PostgresTimestamp(year: .max, month: 1, day: 1) == nil)
        #expect(PostgresDate(year: .min, month: 1, day: 1) == nil)
        // Every Int64 prints, the sentinels' neighbours included.
        #expect(PostgresTimestamp(microsecondsSinceEpoch: .min + 1).iso8601 == "-290308-12-21T19:59:05.224193Z")
        #expect(PostgresDate(daysSinceEpoch: .max).description == "25252734927768524-07-27")
        #expect(PostgresDate(daysSinceEpoch: .min).description == "-25252734927764585-06-07")
        #expect(PostgresTimestamp.negativeInfinity.utcDate.description == "-290308-12-21")
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
