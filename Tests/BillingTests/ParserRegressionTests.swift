import TextFormats
import Billing
import Postgres
import Testing

/// The inputs issue 11 §2 found crashing the process (or silently wrapping), each pinned on
/// its own so a regression names the input. Written against the API as it was, so each one
/// could be run before the fix: the traps killed the test process, the others failed.
@Suite("Parser regressions: bad text is a typed error, never a trap")
struct ParserRegressionTests {
    // MARK: Timestamps

    @Test func aTimestampPastTheLastMicrosecondIsRefused() {
        // 294,247-01-10T04:00:54.775807Z is Int64.max microseconds: the sentinel of `infinity`.
        #expect(PostgresTimestamp("294247-01-10 04:00:54.775807+00") == nil)
        #expect(PostgresTimestamp("294247-01-10 04:00:55+00") == nil)
        #expect(PostgresTimestamp("294277-01-01 00:00:00+00") == nil)
    }

    @Test func aSevenDigitYearIsRefused() {
        #expect(PostgresTimestamp("9999999-12-31 23:59:59.999999Z") == nil)
        #expect(PostgresTimestamp("1000000-01-01T00:00:00Z") == nil)
    }

    @Test func theLastMicrosecondThatFitsIsKept() throws {
        let last = try #require(PostgresTimestamp("294247-01-10T04:00:54.775806Z"))
        #expect(last.microsecondsSinceEpoch == Int64.max - 1)
        #expect(last.iso8601 == "294247-01-10T04:00:54.775806Z")
        #expect(last != .infinity)
    }

    @Test func anOffsetPostgreSQLRefusesIsRefused() {
        #expect(PostgresTimestamp("2024-03-01 12:00:00+99:00") == nil)
        #expect(PostgresTimestamp("2024-03-01 12:00:00+16:00") == nil)
        #expect(PostgresTimestamp("2024-03-01 12:00:00-12:60") == nil)
        #expect(PostgresTimestamp("2024-03-01 12:00:00+15:59:59")?.iso8601 == "2024-02-29T20:00:01.000000Z")
    }

    @Test func anInstantBeforeYearOneIsRefused() {
        // PostgreSQL reads year 0 as out of range, and prints earlier instants with ` BC`.
        #expect(PostgresTimestamp("0000-12-31 23:59:59Z") == nil)
        #expect(PostgresTimestamp("0001-01-01 00:00:00+01") == nil)
        #expect(PostgresTimestamp("0001-01-01 00:00:00+00")?.iso8601 == "0001-01-01T00:00:00.000000Z")
    }

    @Test func infinityIsUnchanged() {
        #expect(PostgresTimestamp("infinity") == .infinity)
        #expect(PostgresTimestamp("-infinity") == .negativeInfinity)
        #expect(PostgresTimestamp.infinity.iso8601 == "infinity")
    }

    // MARK: Dates

    @Test func aDateWhoseMidnightDoesNotFitIsRefused() {
        // It parsed, and its `startOfDayUTC` (what `--as-of DATE` uses) then trapped.
        #expect(PostgresDate("294250-01-01") == nil)
        #expect(PostgresDate("9999999-12-31") == nil)
        #expect(PostgresDate("0000-01-01") == nil)
        #expect(PostgresDate("294247-01-10")?.startOfDayUTC.iso8601 == "294247-01-10T00:00:00.000000Z")
    }

    @Test func theStartOfAnyDaySaturatesInsteadOfTrapping() {
        #expect(PostgresDate(daysSinceEpoch: .max).startOfDayUTC == .infinity)
        #expect(PostgresDate(daysSinceEpoch: .min).startOfDayUTC == .negativeInfinity)
    }

    // MARK: JSON

    @Test func aHighSurrogateFollowedByAnotherEscapeIsAParseError() throws {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(#""\uD800\u0041""#) }
        #expect(throws: JSONParseError.self) { try JSONValue.parse(#"{"a": "\uDBFF\uDBFF"}"#) }
        #expect(throws: JSONParseError.self) { try JSONValue.parse(#""\uD800""#) }
        #expect(throws: JSONParseError.self) { try JSONValue.parse(#""\uDC00""#) }
        #expect(try JSONValue.parse(#""\uD83D\uDE00""#) == .string("😀"))
    }

    @Test func deepNestingIsAParseErrorNotAStackOverflow() {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(String(repeating: "[", count: 100_000)) }
        #expect(throws: JSONParseError.self) {
            try JSONValue.parse(String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000))
        }
        #expect(throws: JSONParseError.self) { try JSONValue.parse(String(repeating: #"{"a":"#, count: 100_000)) }
    }

    // MARK: Sums

    @Test func anAgingTotalNeverWraps() {
        let row = AgingRow(
            customerID: "c", currency: "USD", current: .max, days1to30: 1, days31to60: .max, days61to90: 0, over90: 0)
        // Two Int64.max plus one: exact, not the wrapped -9223372036854775807.
        #expect(String(row.total) == "18446744073709551615")
        #expect(ReportAmount.decimal(row.total, currency: "USD") == "184467440737095516.15")
    }

    /// Found by the property test `moneyTextIsExactOrATypedError` (a random text with a line
    /// break): the message repeated the text raw and ran over two lines.
    @Test func aMoneyErrorStaysOnOneLineWhateverTheTextHolds() {
        let error = MoneyError.notANumber("12\n.3\r\t\u{7}\u{2028}")
        #expect(error.description.hasPrefix(#""12\n.3\r\t\u{7}\u{2028}" is not a decimal number"#))
        #expect(!error.description.contains("\n"))
    }
}
