/// An instant at microsecond precision: PostgreSQL's `timestamptz` (and, read as UTC, its
/// `timestamp`), held as an exact integer count of microseconds since 1970-01-01 00:00:00 UTC.
///
/// Foundation's `Date` is a `Double`, which cannot hold every microsecond exactly; billing
/// history compares timestamps for equality, so we keep integers.
public struct PostgresTimestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var microsecondsSinceEpoch: Int64

    public init(microsecondsSinceEpoch: Int64) { self.microsecondsSinceEpoch = microsecondsSinceEpoch }

    /// PostgreSQL's `infinity` and `-infinity`.
    public static let infinity = PostgresTimestamp(microsecondsSinceEpoch: .max)
    public static let negativeInfinity = PostgresTimestamp(microsecondsSinceEpoch: .min)

    /// A UTC calendar instant; `nil` when a field is out of range.
    public init?(
        year: Int, month: Int, day: Int, hour: Int = 0, minute: Int = 0, second: Int = 0, microsecond: Int = 0
    ) {
        guard CivilCalendar.isValid(year: Int64(year), month: Int64(month), day: Int64(day)),
            (0...23).contains(hour), (0...59).contains(minute), (0...59).contains(second),
            (0...999_999).contains(microsecond)
        else { return nil }
        let days = CivilCalendar.days(year: Int64(year), month: Int64(month), day: Int64(day))
        let seconds = days * 86_400 + Int64(hour) * 3600 + Int64(minute) * 60 + Int64(second)
        self.microsecondsSinceEpoch = seconds * 1_000_000 + Int64(microsecond)
    }

    /// Parses PostgreSQL's ISO output: `2024-01-31 23:59:59.123456+00`, with or without a
    /// fraction and with or without a UTC offset (a value without one is taken as UTC). Also
    /// accepts `T` between date and time, `Z`, and `infinity`/`-infinity`.
    public init?(_ text: String) {
        if text == "infinity" { self = .infinity; return }
        if text == "-infinity" { self = .negativeInfinity; return }
        var s = ASCIIScanner(text)
        guard let year = s.number(min: 4, max: 7), s.take(UInt8(ascii: "-")),
            let month = s.number(min: 2, max: 2), s.take(UInt8(ascii: "-")),
            let day = s.number(min: 2, max: 2),
            s.take(UInt8(ascii: " ")) || s.take(UInt8(ascii: "T")),
            let hour = s.number(min: 2, max: 2), s.take(UInt8(ascii: ":")),
            let minute = s.number(min: 2, max: 2), s.take(UInt8(ascii: ":")),
            let second = s.number(min: 2, max: 2)
        else { return nil }
        var micros: Int64 = 0
        if s.take(UInt8(ascii: ".")) {
            guard let m = s.microseconds() else { return nil }
            micros = m
        }
        var offsetSeconds: Int64 = 0
        if s.take(UInt8(ascii: "Z")) {
        } else if let sign = s.peek, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
            s.index += 1
            guard let oh = s.number(min: 2, max: 2) else { return nil }
            var om: Int64 = 0
            var os: Int64 = 0
            if s.take(UInt8(ascii: ":")) {
                guard let m = s.number(min: 2, max: 2) else { return nil }
                om = m
                if s.take(UInt8(ascii: ":")) {
                    guard let sec = s.number(min: 2, max: 2) else { return nil }
                    os = sec
                }
            }
            offsetSeconds = (oh * 3600 + om * 60 + os) * (sign == UInt8(ascii: "-") ? -1 : 1)
        }
        guard s.isAtEnd, CivilCalendar.isValid(year: year, month: month, day: day), hour < 24, minute < 60,
            second < 60
        else { return nil }
        let days = CivilCalendar.days(year: year, month: month, day: day)
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
        self.microsecondsSinceEpoch = seconds * 1_000_000 + micros
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

    /// The day this instant falls on in UTC.
    public var utcDate: PostgresDate {
        let c = components
        return PostgresDate(year: c.year, month: c.month, day: c.day)!
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
public struct PostgresDate: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var daysSinceEpoch: Int64

    public init(daysSinceEpoch: Int64) { self.daysSinceEpoch = daysSinceEpoch }

    public init?(year: Int, month: Int, day: Int) {
        guard CivilCalendar.isValid(year: Int64(year), month: Int64(month), day: Int64(day)) else { return nil }
        daysSinceEpoch = CivilCalendar.days(year: Int64(year), month: Int64(month), day: Int64(day))
    }

    /// Parses `YYYY-MM-DD`.
    public init?(_ text: String) {
        var s = ASCIIScanner(text)
        guard let y = s.number(min: 4, max: 7), s.take(UInt8(ascii: "-")), let m = s.number(min: 2, max: 2),
            s.take(UInt8(ascii: "-")), let d = s.number(min: 2, max: 2), s.isAtEnd
        else { return nil }
        self.init(year: Int(y), month: Int(m), day: Int(d))
    }

    public var components: (year: Int, month: Int, day: Int) {
        let c = CivilCalendar.civil(days: daysSinceEpoch)
        return (Int(c.year), Int(c.month), Int(c.day))
    }

    /// Midnight UTC at the start of this date.
    public var startOfDayUTC: PostgresTimestamp {
        PostgresTimestamp(microsecondsSinceEpoch: daysSinceEpoch * 86_400_000_000)
    }

    /// `YYYY-MM-DD`.
    public var description: String {
        let c = components
        return CivilCalendar.pad(Int64(c.year), 4) + "-" + CivilCalendar.pad(Int64(c.month), 2) + "-"
            + CivilCalendar.pad(Int64(c.day), 2)
    }

    public static func < (lhs: PostgresDate, rhs: PostgresDate) -> Bool { lhs.daysSinceEpoch < rhs.daysSinceEpoch }
}
