import TextFormats
import Billing
import Foundation
import Postgres
import PropertyBased
import TestSupport
import Testing

// Every parser that legacy text, payloads or options reach is fed random and extreme text
// and must return a valid value or a typed error. A trap would kill the test process, so
// "never traps" is checked by running at all; each property also checks the answer exactly,
// against an independent computation where one exists.

// MARK: - Generators

/// One of `items`, shrinking towards the first.
private func oneOf<T: Sendable>(_ items: [T]) -> Generator<T, AnySequence<Any>> {
    Gen.int(in: 0...(items.count - 1)).map { items[$0] }.eraseToAny()
}

/// Text made of pieces that matter to the parsers (digits, separators, signs, escapes,
/// keywords, control characters, non-ASCII digits and letters), so random text often comes
/// close to a valid value and then breaks it somewhere.
private func soup(_ pieces: [String], length: ClosedRange<Int> = 0...16) -> Generator<String, AnySequence<Any>> {
    oneOf(pieces).array(of: length).map { $0.joined() }.eraseToAny()
}

private let timePieces: [String] = [
    "0", "1", "2", "9", "00", "01", "12", "23", "24", "29", "30", "31", "59", "60", "99", "2024", "0000", "0001",
    "294247", "294276", "294277", "9999999", "10000000", "-", "--", ":", " ", "T", "t", "Z", "z", "+", ".", ",",
    "+15:59", "+16:00", "-99:00", "infinity", "-infinity", "BC", " BC", "000000000", "\u{0}", "\n", "\u{7F}",
    "٣", "２", "é", "😀", "\u{FFFD}",
]

private let numericPieces: [String] = [
    "0", "1", "5", "9", "00", "12", "99", "9223372036854775807", "9223372036854775808", "18446744073709551616",
    "-", "+", ".", "..", "e", "E", "e5", "NaN", "nan", "Infinity", " ", ",", "_", "٣", "\u{0}", "0000000000",
]

private let jsonPieces: [String] = [
    "[", "]", "{", "}", ",", ":", "\"", "\\", "\\\"", "\\\\", "\\/", "\\n", "\\u", "\\u0041", "\\uD800",
    "\\uDBFF", "\\uDC00", "\\uDFFF", "\\uD83D\\uDE00", "\\u+123", "\\x", "null", "true", "false", "nul", "0", "-",
    "-0", "01", "1", "9223372036854775807", "9223372036854775808", "1.5", "1e3", " ", "\t", "\n", "\u{1}", "a",
    "é", "😀", "\"a\"", "\"key\":",
]

/// Any Unicode scalar (a surrogate code point, which no `String` can hold, becomes U+FFFD).
private let anyScalarText = Gen.uint32(in: 0...0x10FFFF)
    .map { Character(Unicode.Scalar($0) ?? "\u{FFFD}") }
    .array(of: 0...24)
    .map { String($0) }
    .eraseToAny()

/// Arbitrary bytes, decoded as the drivers decode text: invalid UTF-8 becomes U+FFFD.
private let anyBytesText = Gen.uint8().array(of: 0...32).map { String(decoding: $0, as: UTF8.self) }.eraseToAny()

/// A value for a field, biased towards its edges: one of `edges` a third of the time, else
/// any value of `range`.
private func field(_ range: ClosedRange<Int64>, edges: [Int64]) -> Generator<Int64, AnySequence<Any>> {
    zip(Gen.int(in: 0...(edges.count * 3 - 1)), Gen.int64(in: range)).map { pick, any in
        pick < edges.count ? edges[pick] : any
    }.eraseToAny()
}

// MARK: - Independent calendar arithmetic (Int128, floor division, day counting)

private func floorDiv(_ a: Int128, _ b: Int128) -> Int128 {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}

private func isLeap(_ y: Int128) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }

private func monthLength(_ y: Int128, _ m: Int128) -> Int128 {
    [31, isLeap(y) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][Int(m - 1)]
}

/// Days from 1970-01-01, counting whole years, then months, then days (not the library's era method).
private func daysFromEpoch(_ y: Int128, _ m: Int128, _ d: Int128) -> Int128 {
    let p = y - 1
    let daysBeforeYear = 365 * p + floorDiv(p, 4) - floorDiv(p, 100) + floorDiv(p, 400)
    var daysBeforeMonth: Int128 = 0
    var month: Int128 = 1
    while month < m {
        daysBeforeMonth += monthLength(y, month)
        month += 1
    }
    return daysBeforeYear + daysBeforeMonth + d - 1 - 719_162
}

private let firstMicrosecond: Int128 = -62_135_596_800_000_000
private let lastMicrosecond = Int128(Int64.max) - 1

private func pad(_ value: Int64, _ width: Int) -> String {
    let digits = String(value)
    return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
}

/// The category of a time parse outcome, for comparing with the oracle.
private enum TimeOutcome: Equatable, CustomStringConvertible {
    case value(Int64)
    case malformed, invalidField, finerThanMicroseconds, beforeRange, afterRange

    init(_ parse: () throws(PostgresTimeError) -> Int64) {
        do {
            self = .value(try parse())
        } catch {
            switch error.problem {
            case .malformed: self = .malformed
            case .invalidField: self = .invalidField
            case .finerThanMicroseconds: self = .finerThanMicroseconds
            case .beforeRange: self = .beforeRange
            case .afterRange: self = .afterRange
            }
        }
    }

    var description: String {
        switch self {
        case .value(let v): "value(\(v))"
        case .malformed: "malformed"
        case .invalidField: "invalidField"
        case .finerThanMicroseconds: "finerThanMicroseconds"
        case .beforeRange: "beforeRange"
        case .afterRange: "afterRange"
        }
    }
}

/// A timestamp spelled field by field, some fields out of range, and what it must parse to.
private struct TimestampCase: Sendable, CustomStringConvertible {
    var yearDigits: Int
    var year, month, day, hour, minute, second: Int64
    var fraction: String?
    var offset: (sign: Int64, hours: Int64, minutes: Int64?, seconds: Int64?)?
    var utc: Bool
    var separator: String

    var text: String {
        var t = pad(year, yearDigits) + "-" + pad(month, 2) + "-" + pad(day, 2) + separator + pad(hour, 2) + ":"
            + pad(minute, 2) + ":" + pad(second, 2)
        if let fraction { t += "." + fraction }
        if utc { t += "Z" }
        if let o = offset {
            t += (o.sign < 0 ? "-" : "+") + pad(o.hours, 2)
            if let m = o.minutes { t += ":" + pad(m, 2) }
            if let s = o.seconds, o.minutes != nil { t += ":" + pad(s, 2) }
        }
        return t
    }

    var description: String { text }

    /// What PostgreSQL's rules and the Int64 range say, computed without the library.
    var expected: TimeOutcome {
        let digits = String(year).count
        guard digits <= yearDigits, (4...7).contains(yearDigits) else { return .malformed }
        let (y, m, d) = (Int128(year), Int128(month), Int128(day))
        guard (1...12).contains(m), d >= 1, d <= monthLength(y, m), hour <= 23, minute <= 59, second <= 59 else {
            return .invalidField
        }
        var offsetSeconds: Int128 = 0
        if let o = offset {
            let minutes = o.minutes ?? 0
            let seconds = o.minutes == nil ? 0 : (o.seconds ?? 0)
            guard minutes <= 59, seconds <= 59, o.hours <= 15 else { return .invalidField }
            offsetSeconds = Int128(o.sign) * Int128(o.hours * 3600 + minutes * 60 + seconds)
        }
        var micros: Int128 = 0
        if let fraction {
            let digits = Array(fraction)
            guard digits.dropFirst(6).allSatisfy({ $0 == "0" }) else { return .finerThanMicroseconds }
            micros = Int128(String(digits.prefix(6)).padding(toLength: 6, withPad: "0", startingAt: 0))!
        }
        let seconds =
            daysFromEpoch(y, m, d) * 86_400 + Int128(hour) * 3600 + Int128(minute) * 60 + Int128(second) - offsetSeconds
        let instant = seconds * 1_000_000 + micros
        if instant < firstMicrosecond { return .beforeRange }
        if instant > lastMicrosecond { return .afterRange }
        return .value(Int64(instant))
    }
}

private let yearEdges: [Int64] = [
    0, 1, 2, 1969, 1970, 2000, 2024, 9999, 10000, 294246, 294247, 294248, 294276, 294277, 999_999, 9_999_999,
    10_000_000, 99_999_999,
]

private let timestampCases = zip(
    zip(field(0...9_999_999, edges: yearEdges), Gen.int(in: 0...3).map { [4, 4, 5, 7][$0] }),
    zip(field(0...13, edges: [0, 1, 2, 12, 13]), field(0...32, edges: [0, 1, 28, 29, 30, 31, 32])),
    zip(field(0...25, edges: [0, 4, 23, 24]), field(0...61, edges: [0, 59, 60]), field(0...61, edges: [0, 54, 55, 59, 60])),
    Gen.int(in: 0...5).map { n -> String? in
        [nil, "5", "000001", "775806", "7758070", "1234560000000000000000000000"][n]
    },
    zip(Gen.int(in: 0...4), Gen.bool, field(0...17, edges: [0, 15, 16, 99]), field(0...61, edges: [0, 59, 60]),
        field(0...61, edges: [0, 1, 59, 60])),
    Gen.bool
).map { (generated) -> TimestampCase in
    let (yearAndWidth, date, time, fraction, offset, t) = generated
    let (year, width) = yearAndWidth
    let (kind, negative, oh, om, os) = offset
    let sign: Int64 = negative ? -1 : 1
    let o: (sign: Int64, hours: Int64, minutes: Int64?, seconds: Int64?)? =
        switch kind {
        case 0, 1: nil
        case 2: (sign, oh, nil, nil)
        case 3: (sign, oh, om, nil)
        default: (sign, oh, om, os)
        }
    return TimestampCase(
        yearDigits: max(width, String(year).count), year: year, month: date.0, day: date.1, hour: time.0,
        minute: time.1, second: time.2, fraction: fraction, offset: o, utc: kind == 1, separator: t ? "T" : " ")
}

// MARK: - Tests

@Suite("Parsers: random and extreme text gives a value or a typed error, never a trap")
struct ParserPropertyTests {
    // MARK: Timestamps and dates

    @Test func timestampsSpelledFieldByFieldParseExactlyAsComputedIndependently() async {
        await propertyCheck(count: 3000, input: timestampCases) { c in
            let outcome = TimeOutcome { () throws(PostgresTimeError) in try PostgresTimestamp.parse(c.text).microsecondsSinceEpoch }
            #expect(outcome == c.expected, "\(c.text)")
            if case .value(let micros) = outcome {
                let t = PostgresTimestamp(microsecondsSinceEpoch: micros)
                #expect(PostgresTimestamp(t.iso8601) == t)
                #expect(t != .infinity && t != .negativeInfinity)
            }
        }
    }

    @Test func datesParseExactlyAsComputedIndependently() async {
        await propertyCheck(
            count: 2000, input: field(0...9_999_999, edges: yearEdges), field(0...13, edges: [0, 1, 2, 12, 13]),
            field(0...32, edges: [0, 1, 28, 29, 30, 31, 32]), Gen.int(in: 4...8)
        ) { year, month, day, width in
            let text = pad(year, width) + "-" + pad(month, 2) + "-" + pad(day, 2)
            let outcome = TimeOutcome { () throws(PostgresTimeError) in try PostgresDate.parse(text).daysSinceEpoch }
            let expected: TimeOutcome
            if !(4...7).contains(max(width, String(year).count)) {
                expected = .malformed
            } else if !(1...12).contains(month) || day < 1 || Int128(day) > monthLength(Int128(year), Int128(month)) {
                expected = .invalidField
            } else {
                let days = daysFromEpoch(Int128(year), Int128(month), Int128(day))
                // The last day is the one whose midnight fits: 294247-01-10.
                expected = days < -719_162 ? .beforeRange : days * 86_400_000_000 > lastMicrosecond ? .afterRange : .value(Int64(days))
            }
            #expect(outcome == expected, "\(text)")
            if case .value = outcome, let date = PostgresDate(text) {
                #expect(date.description == pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2))
                #expect(PostgresDate(date.description) == date)
                #expect(date.startOfDayUTC.utcDate == date)
            }
        }
    }

    @Test func anyTextGivesAFiniteInstantInRangeOrATypedError() async {
        for generator in [soup(timePieces), anyScalarText, anyBytesText] {
            await propertyCheck(count: 1500, input: generator) { text in
                switch Result(catching: { () throws(PostgresTimeError) in try PostgresTimestamp.parse(text) }) {
                case .success(let t):
                    if t != .infinity, t != .negativeInfinity {
                        #expect(t >= .minimumFinite && t <= .maximumFinite, "\(text)")
                        #expect(PostgresTimestamp(t.iso8601) == t)
                    }
                case .failure(let error):
                    #expect(error.text == text)
                    #expect(!error.description.contains("\n"))
                }
                switch Result(catching: { () throws(PostgresTimeError) in try PostgresDate.parse(text) }) {
                case .success(let d):
                    #expect(d >= .minimum && d <= .maximum, "\(text)")
                    #expect(PostgresDate(d.description) == d)
                case .failure(let error):
                    #expect(error.text == text)
                    #expect(!error.description.contains("\n"))
                }
            }
        }
    }

    @Test func everyInt64InstantPrintsAndEveryFiniteOneReadsBack() async {
        let anyMicros = zip(Gen.int64(), Gen.int(in: 0...63)).map { value, shift in value >> Int64(shift) }
        await propertyCheck(count: 3000, input: anyMicros) { micros in
            let t = PostgresTimestamp(microsecondsSinceEpoch: micros)
            let text = t.iso8601
            let date = t.utcDate
            _ = date.description
            if t >= .minimumFinite, t <= .maximumFinite {
                #expect(PostgresTimestamp(text) == t, "\(text)")
                #expect(PostgresDate(date.description) == date)
            } else if t != .infinity, t != .negativeInfinity {
                #expect(PostgresTimestamp(text) == nil, "\(text)")
            }
        }
    }

    @Test(arguments: [
        ("0001-01-01 00:00:00Z", TimeOutcome.value(-62_135_596_800_000_000)),
        ("0000-12-31 23:59:59.999999Z", .beforeRange),
        ("0000-12-31 23:00:00-01", .value(-62_135_596_800_000_000)),
        ("294276-12-31 23:59:59.999999+00", .afterRange),
        ("294277-01-01 00:00:00+00", .afterRange),
        ("294247-01-10 04:00:54.775806Z", .value(Int64.max - 1)),
        ("294247-01-10 04:00:54.775807Z", .afterRange),
        ("9999999-12-31 23:59:59.999999-15:59:59", .afterRange),
        ("10000000-01-01 00:00:00Z", .malformed),
        ("infinity", .value(.max)),
        ("-infinity", .value(.min)),
        ("Infinity", .malformed),
        ("2024-01-01 00:00:00." + String(repeating: "0", count: 100_000) + "Z", .value(1_704_067_200_000_000)),
        ("2024-01-01 00:00:00." + String(repeating: "0", count: 100_000) + "1Z", .finerThanMicroseconds),
        ("2024-01-01 00:00:00.Z", .malformed),
        ("2024-01-01\u{0}00:00:00Z", .malformed),
        ("2024-01-01 00:00:00Z\n", .malformed),
        ("٢٠٢٤-01-01 00:00:00Z", .malformed),
        ("2024-01-01 00:00:00+15:59:59", .value(1_704_009_601_000_000)),
        ("2024-01-01 00:00:00-16", .invalidField),
        ("2024-01-01 00:00:00+00:00:60", .invalidField),
    ] as [(String, TimeOutcome)])
    fileprivate func extremeTimestamps(text: String, expected: TimeOutcome) {
        #expect(TimeOutcome { () throws(PostgresTimeError) in try PostgresTimestamp.parse(text).microsecondsSinceEpoch } == expected)
    }

    @Test func postgreSQLReadsEveryAcceptedInstantExactlyAndPrintsWhatWeRead() async throws {
        // The range's ends, the neighbours of the sentinels and of the epoch, then random
        // instants spread over the whole finite range, bound as parameters in one array.
        var instants: [PostgresTimestamp] = [
            .minimumFinite, .maximumFinite, PostgresTimestamp(microsecondsSinceEpoch: -1),
            PostgresTimestamp(microsecondsSinceEpoch: 0), try BusinessTime.parse("294247-01-09"),
            try BusinessTime.parse("0001-01-01"), .infinity, .negativeInfinity,
        ]
        // SplitMix64 with a fixed seed: the same instants every run.
        var state: UInt64 = 0x5EED_1234_ABCD_0011
        let first = Int128(PostgresTimestamp.minimumFinite.microsecondsSinceEpoch)
        let span = UInt64(Int128(PostgresTimestamp.maximumFinite.microsecondsSinceEpoch) - first + 1)
        for index in 0..<1000 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            // Every scale of distance from 0001-01-01, from microseconds to the whole range.
            let offset = (z % span) >> UInt64(index % 60)
            instants.append(PostgresTimestamp(microsecondsSinceEpoch: Int64(first + Int128(offset))))
        }
        let sent = instants
        try await TestDatabase.withConnection { connection, _ in
            // Bound as our text, read by PostgreSQL, printed by PostgreSQL, read by us.
            let rows = try await connection.query(
                "SELECT t::text FROM unnest($1::timestamptz[]) WITH ORDINALITY AS x(t, n) ORDER BY n", [PostgresArray(sent)]
            ).rows
            #expect(rows.count == sent.count)
            for (instant, row) in zip(sent, rows) {
                let printed = try row.decode(at: 0, as: String.self)
                #expect(PostgresTimestamp(printed) == instant, "\(instant.iso8601) printed as \(printed)")
            }
        }
    }

    // MARK: Business time (--as-of)

    @Test func asOfTextGivesAnInstantPostgreSQLReadsOrATypedError() async {
        for generator in [soup(timePieces), anyScalarText] {
            await propertyCheck(count: 1500, input: generator) { text in
                switch Result(catching: { () throws(PostgresTimeError) in try BusinessTime.parse(text) }) {
                case .success(let t):
                    if t != .infinity, t != .negativeInfinity {
                        #expect(t >= .minimumFinite && t <= .maximumFinite, "\(text)")
                    }
                    if let date = PostgresDate(text) { #expect(t == date.endOfDayUTC) }
                    if let timestamp = PostgresTimestamp(text) { #expect(t == timestamp) }
                case .failure(let error):
                    #expect(error.text == text)
                    #expect(!error.description.contains("\n"))
                }
            }
        }
    }

    @Test func asOfADateMeansItsLastMicrosecond() throws {
        #expect(try BusinessTime.parse("2024-03-01").iso8601 == "2024-03-01T23:59:59.999999Z")
        #expect(try BusinessTime.parse("294247-01-09").iso8601 == "294247-01-09T23:59:59.999999Z")
        #expect(try BusinessTime.parse("2024-03-01T12:00:00+01:00").iso8601 == "2024-03-01T11:00:00.000000Z")
        #expect(try BusinessTime.parse("infinity") == .infinity)
        func refusal(_ text: String) -> String {
            do { return try BusinessTime.parse(text).iso8601 } catch { return "\(error.kind) \(error.problem)" }
        }
        #expect(refusal("294247-01-10") == "timestamp afterRange")
        #expect(refusal("294250-01-01") == "timestamp afterRange")
        #expect(refusal("0000-01-01") == "date beforeRange")
        #expect(refusal("2024-02-30") == #"date invalidField("2024-02 has no day 30")"#)
        #expect(refusal("2024-03-01 25:00:00") == #"timestamp invalidField("hour 25 is not 00–23")"#)
        #expect(refusal("yesterday") == "dateOrTimestamp malformed")
        #expect(refusal("") == "dateOrTimestamp malformed")
    }

    // MARK: Numerics and money

    @Test func numericTextIsReadExactlyOrRefused() async {
        for generator in [soup(numericPieces, length: 0...8), anyBytesText] {
            await propertyCheck(count: 2000, input: generator) { text in
                guard let numeric = PostgresNumeric(text) else {
                    #expect(text != "NaN" && Self.exact(text, exponent: 0, plain: false) == .notANumber, "\(text)")
                    return
                }
                #expect(PostgresNumeric(numeric.description) == numeric)
                #expect(numeric.isNumericallyEqual(to: PostgresNumeric(numeric.description)!))
                for exponent in [0, 2, 3] {
                    let expected = text == "NaN" ? .notANumber : Self.exact(text, exponent: exponent, plain: false)
                    switch Result(catching: { () throws(PostgresNumeric.ScalingError) in
                        try numeric.scaledInteger(exponent: exponent)
                    }) {
                    case .success(let units):
                        #expect(expected == .value(Int128(units)), "\(text) at \(exponent)")
                    case .failure(let error):
                        switch error {
                        case .notANumber: #expect(expected == .notANumber, "\(text)")
                        case .inexact: #expect(expected == .inexact, "\(text) at \(exponent)")
                        case .overflow: #expect(expected.isBeyondInt64, "\(text) at \(exponent)")
                        }
                    }
                }
            }
        }
    }

    @Test func moneyTextIsExactOrATypedError() async {
        let currencies: [Currency] = [.jpy, .usd, .kwd, .clf]
        for generator in [soup(numericPieces, length: 0...6), anyScalarText] {
            await propertyCheck(count: 1500, input: generator, oneOf(currencies)) { text, currency in
                let expected = Self.exact(text, exponent: currency.minorUnitExponent, plain: true)
                switch Result(catching: { () throws(MoneyError) in try Money(parsing: text, currency: currency) }) {
                case .success(let money):
                    #expect(expected == .value(Int128(money.minorUnits)), "\(text)")
                case .failure(let error):
                    switch error {
                    case .notANumber: #expect(expected == .notANumber, "\(text)")
                    case .inexact: #expect(expected == .inexact, "\(text)")
                    case .outOfRange: #expect(expected.isBeyondInt64, "\(text)")
                    default: Issue.record("unexpected \(error) for \(text)")
                    }
                    #expect(!error.description.contains("\n"))
                }
            }
        }
    }

    /// What decimal text is at `exponent` decimal places, computed on the digits alone.
    enum Exact: Equatable {
        case notANumber
        case inexact
        /// Exact in 128 bits; past 30 digits, ±10^30 stands for "far beyond Int64".
        case value(Int128)

        var isBeyondInt64: Bool {
            if case .value(let v) = self { return v < Int128(Int64.min) || v > Int128(Int64.max) }
            return false
        }
    }

    /// `[+-]?digits(.digits)?` (`plain`: Money's syntax) or also `.5` and `5.` (PostgreSQL's
    /// numeric output syntax) as a count of 10^-exponent units; extra fraction digits only if zeros.
    static func exact(_ text: String, exponent: Int, plain: Bool) -> Exact {
        var s = Substring(text)
        var negative = false
        if let first = s.first, first == "+" || first == "-" {
            negative = first == "-"
            s = s.dropFirst()
        }
        let parts = s.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let isDigits = { (part: Substring) in part.utf8.allSatisfy { $0 >= 48 && $0 <= 57 } }
        guard parts.allSatisfy(isDigits) else { return .notANumber }
        if plain {
            guard parts.allSatisfy({ !$0.isEmpty }) else { return .notANumber }
        } else {
            guard parts.contains(where: { !$0.isEmpty }) else { return .notANumber }
        }
        var fraction = parts.count > 1 ? String(parts[1]) : ""
        while fraction.count > exponent, fraction.last == "0" { fraction.removeLast() }
        guard fraction.count <= exponent else { return .inexact }
        fraction += String(repeating: "0", count: exponent - fraction.count)
        let digits = (parts[0] + fraction).drop { $0 == "0" }
        let magnitude = digits.count > 30 ? Int128(1e30) : Int128(digits.isEmpty ? "0" : String(digits))!
        return .value(negative ? -magnitude : magnitude)
    }

    @Test(arguments: [
        // At and beyond Int64 minor units for JPY (0), USD (2) and KWD (3).
        ("9223372036854775807", Currency.jpy, "9223372036854775807"),
        ("-9223372036854775808", .jpy, "-9223372036854775808"),
        ("9223372036854775808", .jpy, "out of range"),
        ("-9223372036854775809", .jpy, "out of range"),
        ("92233720368547758.07", .usd, "92233720368547758.07"),
        ("92233720368547758.08", .usd, "out of range"),
        ("-92233720368547758.08", .usd, "-92233720368547758.08"),
        ("-92233720368547758.09", .usd, "out of range"),
        ("9223372036854775.807", .kwd, "9223372036854775.807"),
        ("9223372036854775.808", .kwd, "out of range"),
        ("-9223372036854775.808", .kwd, "-9223372036854775.808"),
        ("9223372036854775.8070000000000000000000", .kwd, "9223372036854775.807"),
        ("1234567890123456789012345678901234567890", .usd, "out of range"),
        ("-1234567890123456789012345678901234567890.00", .kwd, "out of range"),
        ("0.0000000000000000000000000000000000000001", .usd, "inexact"),
        ("0." + String(repeating: "0", count: 100_000), .jpy, "0"),
        ("1.5", .jpy, "inexact"),
        ("1e5", .usd, "not a number"),
        ("٣", .usd, "not a number"),
        ("1\u{0}", .usd, "not a number"),
        ("NaN", .usd, "not a number"),
    ])
    func extremeAmounts(text: String, currency: Currency, expected: String) {
        func outcome(_ read: () throws(MoneyError) -> Money) -> String {
            do {
                return try read().decimalString
            } catch {
                switch error {
                case .outOfRange: return "out of range"
                case .inexact: return "inexact"
                case .notANumber: return "not a number"
                default: return "\(error)"
                }
            }
        }
        #expect(outcome { () throws(MoneyError) in try Money(parsing: text, currency: currency) } == expected)
        // The same through PostgreSQL's numeric, as a legacy numeric column arrives.
        if let numeric = PostgresNumeric(text) {
            #expect(outcome { () throws(MoneyError) in try Money(numeric, currency: currency) } == expected)
        }
    }

    @Test func integerColumnsDecodeOrRefuse() async {
        await propertyCheck(count: 1000, input: soup(numericPieces, length: 0...4)) { text in
            let expected = text.contains(".") ? .notANumber : Self.exact(text, exponent: 0, plain: true)
            let fits: Int128? = if case .value(let v) = expected, !expected.isBeyondInt64 { v } else { nil }
            #expect(Int64.decode(postgresText: text, type: .int8).map { Int128($0) } == fits, "\(text)")
            #expect(Int64.decode(postgresText: text, type: .text) == nil)
            let fits32 = fits.flatMap { Int32(exactly: $0) }
            #expect(Int32.decode(postgresText: text, type: .int4) == fits32, "\(text)")
        }
    }

    // MARK: JSON

    @Test func jsonTextParsesToAValueThatRoundTripsOrATypedError() async {
        for generator in [soup(jsonPieces, length: 0...12), anyScalarText, anyBytesText] {
            await propertyCheck(count: 2000, input: generator) { text in
                switch Result(catching: { () throws(JSONParseError) in try JSONValue.parse(text) }) {
                case .success(let value):
                    #expect((try? JSONValue.parse(value.rendered)) == value, "\(text)")
                case .failure(let error):
                    #expect(error.offset >= 0 && error.offset <= text.utf8.count, "\(text)")
                    #expect(!error.reason.isEmpty)
                }
            }
        }
    }

    @Test func everyEscapeSequenceParsesAsPostgreSQLReadsIt() async {
        // \uXXXX\uYYYY for random code units, surrogates included: a pair is one character,
        // anything unpaired is an error, never a trap.
        await propertyCheck(count: 3000, input: Gen.uint16(), Gen.uint16()) { first, second in
            let hex = { (v: UInt16) in String(v, radix: 16).leftPadded(to: 4) }
            let text = "\"\\u\(hex(first))\\u\(hex(second))\""
            let highLow = (0xD800...0xDBFF).contains(first) && (0xDC00...0xDFFF).contains(second)
            let valid = highLow || (!(0xD800...0xDFFF).contains(first) && !(0xD800...0xDFFF).contains(second))
            do {
                let value = try JSONValue.parse(text)
                #expect(valid, "\(text)")
                let expected =
                    highLow
                    ? String(Unicode.Scalar(0x10000 + ((UInt32(first) - 0xD800) << 10) + (UInt32(second) - 0xDC00))!)
                    : String(Unicode.Scalar(UInt32(first))!) + String(Unicode.Scalar(UInt32(second))!)
                #expect(value == .string(expected))
            } catch {
                #expect(!valid, "\(text): \(error)")
            }
        }
    }

    @Test func randomDocumentsRoundTrip() async {
        // Documents built from the parts payloads use, rendered then parsed back.
        let scalars = zip(Gen.int(in: 0...4), Gen.int64(), anyScalarText).map { kind, n, s -> JSONValue in
            [.null, .bool(n & 1 == 0), .integer(n), .string(s), .string(String(n))][kind]
        }
        let documents = zip(scalars.array(of: 0...6), anyScalarText.array(of: 0...6), Gen.int(in: 0...40)).map {
            values, keys, depth -> JSONValue in
            var value = JSONValue.object(zip(keys, values).map { ($0, $1) })
            for level in 0..<depth { value = level % 2 == 0 ? .array([value, .null]) : .object([("k", value)]) }
            return value
        }
        await propertyCheck(count: 500, input: documents) { value throws in
            #expect(try JSONValue.parse(value.rendered) == value)
        }
    }

    @Test(arguments: [
        (String(repeating: "[", count: 100_000), "nested deeper than 256 levels"),
        (String(repeating: "[", count: 256) + String(repeating: "]", count: 256), nil),
        (String(repeating: "[", count: 257) + String(repeating: "]", count: 257), "nested deeper than 256 levels"),
        (String(repeating: #"{"a":"#, count: 300) + "1" + String(repeating: "}", count: 300), "nested deeper than 256 levels"),
        (#""\uD800\u0041""#, "a high surrogate escape without a low surrogate after it"),
        (#""\uD800""#, "a high surrogate escape without a low surrogate after it"),
        (#""\uD800\n""#, "a high surrogate escape without a low surrogate after it"),
        (#""\uDC00\uD800""#, "a low surrogate escape without a high surrogate before it"),
        (#""\u+123""#, #"bad \u escape"#),
        (#""\u12""#, #"bad \u escape"#),
        (#""\x""#, #"an invalid escape: JSON has only \" \\ \/ \b \f \n \r \t and \uXXXX"#),
        ("\"a\u{1}b\"", "a control character must be escaped in a string"),
        ("\"a\nb\"", "a control character must be escaped in a string"),
        ("01", "a number with a leading zero"),
        ("-01", "a number with a leading zero"),
        ("-", "expected a value"),
        ("9223372036854775808", "not an integer in range"),
        ("-9223372036854775809", "not an integer in range"),
        ("1234567890123456789012345678901234567890", "not an integer in range"),
        ("1.5", "non-integer numbers are not allowed in payloads"),
        ("\u{FEFF}1", "expected a value"),
        ("", "unexpected end"),
        ("\"", "unterminated string"),
        ("[1,", "unexpected end"),
        ("{\"a\":1,}", "expected a key"),
        ("[1]x", "trailing text"),
    ] as [(String, String?)])
    func extremeJSON(text: String, reason: String?) {
        do {
            _ = try JSONValue.parse(text)
            #expect(reason == nil)
        } catch {
            #expect(error.reason == reason)
        }
    }

    @Test func validEdgeValuesParse() throws {
        #expect(try JSONValue.parse("-9223372036854775808") == .integer(.min))
        #expect(try JSONValue.parse("-0") == .integer(0))
        #expect(try JSONValue.parse(#""\u0000\u001f\/""#) == .string("\u{0}\u{1F}/"))
        #expect(try JSONValue.parse(#""\uDBFF\uDFFF""#) == .string("\u{10FFFF}"))
        #expect(try JSONValue.parse(" \t\r\n[ ] ") == .array([]))
    }

    // MARK: Currency codes

    @Test func currencyCodesAreKnownOrATypedError() async {
        await propertyCheck(count: 1000, input: soup(["U", "S", "D", "X", "J", "P", "Y", "usd", " ", "é", "\u{0}"], length: 0...4)) {
            text in
            switch Result(catching: { () throws(CurrencyError) in try Currency(code: text) }) {
            case .success(let currency):
                #expect(currency.code == text)
                #expect((0...4).contains(currency.minorUnitExponent))
            case .failure(let error):
                let wellFormed = text.utf8.count == 3 && text.utf8.allSatisfy { $0 >= 65 && $0 <= 90 }
                #expect(wellFormed == (error != .malformedCode(text)), "\(text)")
            }
        }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
