/// An instant at microsecond precision: PostgreSQL's `timestamptz` (and, read as UTC, its
/// `timestamp`), held as an exact integer count of microseconds since 1970-01-01 00:00:00 UTC.
///
/// Foundation's `Date` is a `Double`, which cannot hold every microsecond exactly; billing
/// history compares timestamps for equality, so we keep integers.
///
/// ## Range
/// PostgreSQL holds 4713 BC to 294276 AD; `Int64` microseconds since 1970 end earlier, at
/// 294247-01-10T04:00:54.775807Z, and that very value is ``infinity``'s sentinel. So the finite
/// instants this type reads are ``minimumFinite`` (0001-01-01T00:00:00Z: PostgreSQL prints
/// earlier ones with ` BC`, which no parser here reads) to ``maximumFinite``. Text outside that
/// range — legacy text can hold anything — is a ``PostgresTimeError``, never a trap.
public struct PostgresTimestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var microsecondsSinceEpoch: Int64

    public init(microsecondsSinceEpoch: Int64) { self.microsecondsSinceEpoch = microsecondsSinceEpoch }

    /// PostgreSQL's `infinity` and `-infinity`.
    public static let infinity = PostgresTimestamp(microsecondsSinceEpoch: .max)
    public static let negativeInfinity = PostgresTimestamp(microsecondsSinceEpoch: .min)

    /// 0001-01-01T00:00:00Z, the first instant PostgreSQL prints without ` BC`.
    public static let minimumFinite = PostgresTimestamp(microsecondsSinceEpoch: -62_135_596_800_000_000)
    /// 294247-01-10T04:00:54.775806Z, one microsecond before ``infinity``'s sentinel: the last
    /// instant `Int64` microseconds since 1970 hold.
    public static let maximumFinite = PostgresTimestamp(microsecondsSinceEpoch: .max - 1)

    /// A UTC calendar instant; `nil` when a field is out of range or the instant is outside
    /// ``minimumFinite`` ... ``maximumFinite``.
    public init?(
        year: Int, month: Int, day: Int, hour: Int = 0, minute: Int = 0, second: Int = 0, microsecond: Int = 0
    ) {
        guard (0...23).contains(hour), (0...59).contains(minute), (0...59).contains(second),
            (0...999_999).contains(microsecond),
            let value = try? Self.instant(
                year: Int64(year), month: Int64(month), day: Int64(day), hour: Int64(hour), minute: Int64(minute),
                second: Int64(second), microsecond: Int64(microsecond), offsetSeconds: 0)
        else { return nil }
        self = value
    }

    /// Parses PostgreSQL's ISO output: `2024-01-31 23:59:59.123456+00`, with or without a
    /// fraction and with or without a UTC offset (a value without one is taken as UTC). Also
    /// accepts `T` between date and time, `Z`, and `infinity`/`-infinity`.
    ///
    /// `nil` for anything ``parse(_:)`` refuses; use that to learn why.
    public init?(_ text: String) {
        guard let value = try? Self.parse(text) else { return nil }
        self = value
    }

    /// Parses PostgreSQL's ISO output, saying why when it cannot.
    ///
    /// Accepted: `YYYY-MM-DD` (4 to 7 year digits), a space or `T`, `HH:MM:SS`, an optional
    /// fraction (digits below a microsecond only if zeros), and an optional `Z` or offset
    /// `±HH[:MM[:SS]]` within PostgreSQL's ±15:59:59; or exactly `infinity` / `-infinity`.
    ///
    /// - Throws: ``PostgresTimeError`` — `malformed` for another shape, `invalidField` for an
    ///   impossible month, day, hour, minute, second or offset, `finerThanMicroseconds` for
    ///   non-zero digits that would need rounding, `beforeRange` / `afterRange` for an instant
    ///   outside ``minimumFinite`` ... ``maximumFinite``.
    public static func parse(_ text: String) throws(PostgresTimeError) -> PostgresTimestamp {
        if text == "infinity" { return .infinity }
        if text == "-infinity" { return .negativeInfinity }
        func fail(_ problem: PostgresTimeError.Problem) -> PostgresTimeError {
            PostgresTimeError(text: text, kind: .timestamp, problem: problem)
        }
        var s = ASCIIScanner(text)
        guard let year = s.number(min: 4, max: 7), s.take(UInt8(ascii: "-")),
            let month = s.number(min: 2, max: 2), s.take(UInt8(ascii: "-")),
            let day = s.number(min: 2, max: 2),
            s.take(UInt8(ascii: " ")) || s.take(UInt8(ascii: "T")),
            let hour = s.number(min: 2, max: 2), s.take(UInt8(ascii: ":")),
            let minute = s.number(min: 2, max: 2), s.take(UInt8(ascii: ":")),
            let second = s.number(min: 2, max: 2)
        else { throw fail(.malformed) }
        var micros: Int64 = 0
        var exact = true
        if s.take(UInt8(ascii: ".")) {
            switch s.fraction() {
            case .missing: throw fail(.malformed)
            case .microseconds(let m): micros = m
            case .finerThanMicroseconds: exact = false
            }
        }
        var offsetSeconds: Int64 = 0
        var offsetProblem: String?
        if s.take(UInt8(ascii: "Z")) {
        } else if let sign = s.peek, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
            let start = s.index
            s.index += 1
            guard let oh = s.number(min: 2, max: 2) else { throw fail(.malformed) }
            var om: Int64 = 0
            var os: Int64 = 0
            if s.take(UInt8(ascii: ":")) {
                guard let m = s.number(min: 2, max: 2) else { throw fail(.malformed) }
                om = m
                if s.take(UInt8(ascii: ":")) {
                    guard let sec = s.number(min: 2, max: 2) else { throw fail(.malformed) }
                    os = sec
                }
            }
            let spelled = String(decoding: s.bytes[start..<s.index], as: UTF8.self)
            // PostgreSQL: "time zone displacement out of range" at 16 hours, or minutes or
            // seconds of 60 and more.
            if om > 59 || os > 59 {
                offsetProblem = "the offset \(spelled) has minutes or seconds above 59"
            } else if oh > 15 {
                offsetProblem = "the offset \(spelled) is beyond ±15:59:59"
            }
            offsetSeconds = (oh * 3600 + om * 60 + os) * (sign == UInt8(ascii: "-") ? -1 : 1)
        }
        guard s.isAtEnd else { throw fail(.malformed) }
        if let field = dateFieldProblem(year: year, month: month, day: day) { throw fail(.invalidField(field)) }
        if hour > 23 { throw fail(.invalidField("hour \(CivilCalendar.pad(hour, 2)) is not 00–23")) }
        if minute > 59 { throw fail(.invalidField("minute \(CivilCalendar.pad(minute, 2)) is not 00–59")) }
        if second > 59 { throw fail(.invalidField("second \(CivilCalendar.pad(second, 2)) is not 00–59")) }
        if let offsetProblem { throw fail(.invalidField(offsetProblem)) }
        guard exact else { throw fail(.finerThanMicroseconds) }
        do throws(PostgresTimeError.Problem) {
            return try instant(
                year: year, month: month, day: day, hour: hour, minute: minute, second: second, microsecond: micros,
                offsetSeconds: offsetSeconds)
        } catch {
            throw fail(error)
        }
    }

    /// Why `year-month-day` is not a calendar date, or `nil` when it is one.
    static func dateFieldProblem(year: Int64, month: Int64, day: Int64) -> String? {
        guard (1...12).contains(month) else { return "month \(CivilCalendar.pad(month, 2)) is not 01–12" }
        guard CivilCalendar.isValid(year: year, month: month, day: day) else {
            return "\(CivilCalendar.pad(year, 4))-\(CivilCalendar.pad(month, 2)) has no day \(CivilCalendar.pad(day, 2))"
        }
        return nil
    }

    /// The instant of valid fields, checked against the finite range with overflow-reporting
    /// arithmetic: a seven-digit year is about 3·10¹⁴ seconds, whose microseconds do not fit.
    static func instant(
        year: Int64, month: Int64, day: Int64, hour: Int64, minute: Int64, second: Int64, microsecond: Int64,
        offsetSeconds: Int64
    ) throws(PostgresTimeError.Problem) -> PostgresTimestamp {
        guard year.magnitude <= CivilCalendar.maximumYear.magnitude else {
            throw year < 0 ? .beforeRange : .afterRange
        }
        guard dateFieldProblem(year: year, month: month, day: day) == nil else { throw .malformed }
        // All terms are below 10¹⁵ in magnitude: this sum cannot overflow.
        let seconds =
            CivilCalendar.days(year: year, month: month, day: day) * 86_400 + hour * 3600 + minute * 60 + second
            - offsetSeconds
        let (scaled, o1) = seconds.multipliedReportingOverflow(by: 1_000_000)
        let (micros, o2) = scaled.addingReportingOverflow(microsecond)
        if o1 || o2 { throw seconds < 0 ? .beforeRange : .afterRange }
        guard micros >= minimumFinite.microsecondsSinceEpoch else { throw .beforeRange }
        guard micros <= maximumFinite.microsecondsSinceEpoch else { throw .afterRange }
        return PostgresTimestamp(microsecondsSinceEpoch: micros)
    }

    /// UTC calendar fields.
    public var components: (year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, microsecond: Int) {
        let micros = microsecondsSinceEpoch
        var seconds = micros / 1_000_000
        var fraction = micros % 1_000_000
        if fraction < 0 {
            fraction += 1_000_000
            seconds -= 1
        }
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }
        let civil = CivilCalendar.civil(days: days)
        return (
            Int(civil.year), Int(civil.month), Int(civil.day), Int(secondOfDay / 3600), Int(secondOfDay % 3600 / 60),
            Int(secondOfDay % 60), Int(fraction)
        )
    }

    /// The day this instant falls on in UTC (for the sentinels, the day their `Int64` falls on).
    public var utcDate: PostgresDate {
        let (q, r) = microsecondsSinceEpoch.quotientAndRemainder(dividingBy: 86_400_000_000)
        return PostgresDate(daysSinceEpoch: r < 0 ? q - 1 : q)
    }

    /// `2024-01-31T23:59:59.123456Z`: always six fraction digits, so equal instants print equally.
    public var iso8601: String {
        if self == .infinity { return "infinity" }
        if self == .negativeInfinity { return "-infinity" }
        let c = components
        return CivilCalendar.pad(Int64(c.year), 4) + "-" + CivilCalendar.pad(Int64(c.month), 2) + "-"
            + CivilCalendar.pad(Int64(c.day), 2) + "T" + CivilCalendar.pad(Int64(c.hour), 2) + ":"
            + CivilCalendar.pad(Int64(c.minute), 2) + ":" + CivilCalendar.pad(Int64(c.second), 2) + "."
            + CivilCalendar.pad(Int64(c.microsecond), 6) + "Z"
    }

    public var description: String { iso8601 }

    public static func < (lhs: PostgresTimestamp, rhs: PostgresTimestamp) -> Bool {
        lhs.microsecondsSinceEpoch < rhs.microsecondsSinceEpoch
    }
}

/// A calendar date (PostgreSQL `date`), held as days since 1970-01-01.
///
/// The parsers read the days from ``minimum`` (0001-01-01) to ``maximum`` (294247-01-10, the
/// last day whose midnight ``PostgresTimestamp`` holds), so every parsed date has a
/// ``startOfDayUTC``. PostgreSQL's dates go on to 5874897 AD; a legacy date past ``maximum``
/// is a ``PostgresTimeError`` to quarantine, not a value that traps later.
public struct PostgresDate: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var daysSinceEpoch: Int64

    public init(daysSinceEpoch: Int64) { self.daysSinceEpoch = daysSinceEpoch }

    /// 0001-01-01, the first day PostgreSQL prints without ` BC`.
    public static let minimum = PostgresDate(daysSinceEpoch: -719_162)
    /// 294247-01-10, the last day whose midnight fits in `Int64` microseconds since 1970.
    public static let maximum = PostgresDate(daysSinceEpoch: PostgresTimestamp.maximumFinite.microsecondsSinceEpoch / 86_400_000_000)

    /// A calendar date; `nil` when a field is out of range or the date is outside
    /// ``minimum`` ... ``maximum``.
    public init?(year: Int, month: Int, day: Int) {
        guard let value = try? Self.date(year: Int64(year), month: Int64(month), day: Int64(day)) else { return nil }
        self = value
    }

    /// Parses `YYYY-MM-DD` (4 to 7 year digits); `nil` for anything ``parse(_:)`` refuses.
    public init?(_ text: String) {
        guard let value = try? Self.parse(text) else { return nil }
        self = value
    }

    /// Parses `YYYY-MM-DD` (4 to 7 year digits), saying why when it cannot.
    ///
    /// - Throws: ``PostgresTimeError`` — `malformed` for another shape, `invalidField` for an
    ///   impossible month or day, `beforeRange` / `afterRange` outside ``minimum`` ... ``maximum``.
    public static func parse(_ text: String) throws(PostgresTimeError) -> PostgresDate {
        func fail(_ problem: PostgresTimeError.Problem) -> PostgresTimeError {
            PostgresTimeError(text: text, kind: .date, problem: problem)
        }
        var s = ASCIIScanner(text)
        guard let y = s.number(min: 4, max: 7), s.take(UInt8(ascii: "-")), let m = s.number(min: 2, max: 2),
            s.take(UInt8(ascii: "-")), let d = s.number(min: 2, max: 2), s.isAtEnd
        else { throw fail(.malformed) }
        if let field = PostgresTimestamp.dateFieldProblem(year: y, month: m, day: d) { throw fail(.invalidField(field)) }
        do throws(PostgresTimeError.Problem) {
            return try date(year: y, month: m, day: d)
        } catch {
            throw fail(error)
        }
    }

    static func date(year: Int64, month: Int64, day: Int64) throws(PostgresTimeError.Problem) -> PostgresDate {
        guard year.magnitude <= CivilCalendar.maximumYear.magnitude else { throw year < 0 ? .beforeRange : .afterRange }
        guard CivilCalendar.isValid(year: year, month: month, day: day) else { throw .malformed }
        let days = CivilCalendar.days(year: year, month: month, day: day)
        guard days >= minimum.daysSinceEpoch else { throw .beforeRange }
        guard days <= maximum.daysSinceEpoch else { throw .afterRange }
        return PostgresDate(daysSinceEpoch: days)
    }

    public var components: (year: Int, month: Int, day: Int) {
        let c = CivilCalendar.civil(days: daysSinceEpoch)
        return (Int(c.year), Int(c.month), Int(c.day))
    }

    /// Midnight UTC at the start of this date. Every parsed date has one; a day built from a
    /// count beyond ``minimum`` ... ``maximum`` saturates to ``PostgresTimestamp/negativeInfinity``
    /// or ``PostgresTimestamp/infinity`` instead of overflowing.
    public var startOfDayUTC: PostgresTimestamp {
        let (micros, overflow) = daysSinceEpoch.multipliedReportingOverflow(by: 86_400_000_000)
        if overflow { return daysSinceEpoch < 0 ? .negativeInfinity : .infinity }
        return PostgresTimestamp(microsecondsSinceEpoch: micros)
    }

    /// The last microsecond of this date (23:59:59.999999 UTC), or `nil` when it is after
    /// ``PostgresTimestamp/maximumFinite`` (only ``maximum`` itself and later) or before
    /// ``PostgresTimestamp/minimumFinite``.
    public var endOfDayUTC: PostgresTimestamp? {
        let (next, o1) = daysSinceEpoch.addingReportingOverflow(1)
        let (micros, o2) = next.multipliedReportingOverflow(by: 86_400_000_000)
        guard !o1, !o2 else { return nil }
        let end = PostgresTimestamp(microsecondsSinceEpoch: micros - 1)
        guard end >= .minimumFinite, end <= .maximumFinite else { return nil }
        return end
    }

    /// `YYYY-MM-DD`.
    public var description: String {
        let c = components
        return CivilCalendar.pad(Int64(c.year), 4) + "-" + CivilCalendar.pad(Int64(c.month), 2) + "-"
            + CivilCalendar.pad(Int64(c.day), 2)
    }

    public static func < (lhs: PostgresDate, rhs: PostgresDate) -> Bool { lhs.daysSinceEpoch < rhs.daysSinceEpoch }
}

/// Why text is not a ``PostgresTimestamp`` or a ``PostgresDate``.
///
/// Legacy text reaches the parsers row by row; every refusal is this value, for the migrator
/// to quarantine or a command to print, never a trap. Its description is one sentence that
/// quotes the text (cut to 40 characters, control characters escaped, so one bad value
/// cannot flood or break a log line).
public struct PostgresTimeError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What the text was read as.
    public enum Kind: Sendable, Hashable {
        case timestamp
        case date
        /// `--as-of` and the like: a date (meaning its end) or a timestamp.
        case dateOrTimestamp
    }

    /// What is wrong with it.
    public enum Problem: Error, Sendable, Hashable {
        /// Not in a shape PostgreSQL prints.
        case malformed
        /// Well shaped, with an impossible field; the phrase says which (`2023-02 has no day 29`,
        /// `the offset +99:00 is beyond ±15:59:59`).
        case invalidField(String)
        /// Non-zero digits below a microsecond: reading them would round, which we never do.
        case finerThanMicroseconds
        /// Before ``PostgresTimestamp/minimumFinite`` / ``PostgresDate/minimum`` (PostgreSQL
        /// would print it with ` BC`, or refuses it: year 0).
        case beforeRange
        /// After ``PostgresTimestamp/maximumFinite`` / ``PostgresDate/maximum``: its
        /// microseconds since 1970 do not fit in `Int64`.
        case afterRange
    }

    /// The text as given.
    public let text: String
    public let kind: Kind
    public let problem: Problem

    public init(text: String, kind: Kind, problem: Problem) {
        self.text = text
        self.kind = kind
        self.problem = problem
    }

    /// The sentence after the quoted text, e.g. `is not a valid date: 2023-02 has no day 29`.
    public var explanation: String {
        switch (problem, kind) {
        case (.malformed, .timestamp):
            "is not a timestamp like 2024-03-01 12:00:00+00 or 2024-03-01T12:00:00Z"
        case (.malformed, .date):
            "is not a date like 2024-03-01"
        case (.malformed, .dateOrTimestamp):
            "is not a date or timestamp like 2024-03-01 or 2024-03-01T12:00:00Z"
        case (.invalidField(let field), .date):
            "is not a valid date: \(field)"
        case (.invalidField(let field), _):
            "is not a valid timestamp: \(field)"
        case (.finerThanMicroseconds, _):
            "has non-zero digits below a microsecond, which would have to be rounded"
        case (.beforeRange, .date):
            "is before 0001-01-01, the first day PostgreSQL prints without BC"
        case (.beforeRange, _):
            "is before 0001-01-01T00:00:00Z, the first instant PostgreSQL prints without BC"
        case (.afterRange, .date):
            "is after 294247-01-10, the last day whose midnight 64-bit microseconds since 1970 hold"
        case (.afterRange, _):
            "is after 294247-01-10T04:00:54.775806Z, the last instant 64-bit microseconds since 1970 hold"
        }
    }

    public var description: String { Self.quoted(text) + " " + explanation }

    /// `text` in double quotes with quotes, backslashes and control characters escaped, cut
    /// to 40 characters.
    public static func quoted(_ text: String) -> String {
        let limit = 40
        var shown = ""
        var count = 0
        for scalar in text.unicodeScalars {
            guard count < limit else { break }
            switch scalar.value {
            case 0x22, 0x5C: shown += "\\" + String(scalar)
            case 0..<0x20, 0x7F...0x9F, 0x2028, 0x2029: shown += scalar.escaped(asASCII: true)
            default: shown.unicodeScalars.append(scalar)
            }
            count += 1
        }
        let cut = text.unicodeScalars.count > limit ? "… (\(text.utf8.count) bytes)" : ""
        return "\"" + shown + "\"" + cut
    }
}
