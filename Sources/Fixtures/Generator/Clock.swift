/// Seconds since 1970-01-01 00:00:00 UTC: every instant the generator handles.
///
/// The legacy schema stores `timestamp without time zone` in UTC, so the generator never needs
/// time zones, only the proleptic Gregorian calendar below. No wall clock is ever read.
typealias Instant = Int64

enum Clock {
    static let minute: Int64 = 60
    static let hour: Int64 = 3_600
    static let day: Int64 = 86_400

    /// Days since 1970-01-01 for a civil date (Howard Hinnant's `days_from_civil`).
    static func days(year: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let m = Int64(month)
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The civil date of a day count (Howard Hinnant's `civil_from_days`).
    static func civil(days: Int64) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (Int(yoe + era * 400 + (m <= 2 ? 1 : 0)), Int(m), Int(d))
    }

    static func instant(year: Int, month: Int, day: Int, hour: Int = 0, minute: Int = 0, second: Int = 0) -> Instant {
        days(year: year, month: month, day: day) * Self.day + Int64(hour * 3600 + minute * 60 + second)
    }

    static func isLeap(_ year: Int) -> Bool { year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) }

    static func daysIn(year: Int, month: Int) -> Int {
        switch month {
        case 2: isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// `anchor` moved by `months` calendar months, keeping its time of day and clamping the day
    /// to the target month's length (31 Jan + 1 month = 28/29 Feb), as billing anchors do.
    /// Always step from the original anchor so a clamped month does not shift later periods.
    static func adding(months: Int, to anchor: Instant) -> Instant {
        let dayCount = floorDiv(anchor, day)
        let secondOfDay = anchor - dayCount * day
        let (y, m, d) = civil(days: dayCount)
        let total = y * 12 + (m - 1) + months
        let year = floorDiv(total, 12)
        let month = total - year * 12 + 1
        let clamped = min(d, daysIn(year: year, month: month))
        return days(year: year, month: month, day: clamped) * day + secondOfDay
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    static func floorDiv(_ a: Int, _ b: Int) -> Int {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    private static let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// `2025-10-16 09:14:00`, the text of a `timestamp` column.
    static func timestampText(_ t: Instant) -> String {
        let dayCount = floorDiv(t, day)
        let (y, m, d) = civil(days: dayCount)
        var s = Int(t - dayCount * day)
        let hh = s / 3600
        s -= hh * 3600
        let mm = s / 60
        let ss = s - mm * 60
        return String(unsafeUninitializedCapacity: 19) { buffer in
            write4(y, into: buffer, at: 0)
            buffer[4] = UInt8(ascii: "-")
            write2(m, into: buffer, at: 5)
            buffer[7] = UInt8(ascii: "-")
            write2(d, into: buffer, at: 8)
            buffer[10] = UInt8(ascii: " ")
            write2(hh, into: buffer, at: 11)
            buffer[13] = UInt8(ascii: ":")
            write2(mm, into: buffer, at: 14)
            buffer[16] = UInt8(ascii: ":")
            write2(ss, into: buffer, at: 17)
            return 19
        }
    }

    /// `2025-10-16`, the text of a `date` column (the UTC date of `t`).
    static func dateText(_ t: Instant) -> String {
        let (y, m, d) = civil(days: floorDiv(t, day))
        return String(unsafeUninitializedCapacity: 10) { buffer in
            write4(y, into: buffer, at: 0)
            buffer[4] = UInt8(ascii: "-")
            write2(m, into: buffer, at: 5)
            buffer[7] = UInt8(ascii: "-")
            write2(d, into: buffer, at: 8)
            return 10
        }
    }

    /// `16 Jun 2025`, for line item descriptions.
    static func humanDate(_ t: Instant) -> String {
        let (y, m, d) = civil(days: floorDiv(t, day))
        return "\(d) \(monthNames[m - 1]) \(y)"
    }

    /// `Sep 2025`, for usage line descriptions.
    static func humanMonth(_ t: Instant) -> String {
        let (y, m, _) = civil(days: floorDiv(t, day))
        return "\(monthNames[m - 1]) \(y)"
    }

    private static func write2(_ v: Int, into buffer: UnsafeMutableBufferPointer<UInt8>, at i: Int) {
        buffer[i] = UInt8(48 + v / 10)
        buffer[i + 1] = UInt8(48 + v % 10)
    }

    private static func write4(_ v: Int, into buffer: UnsafeMutableBufferPointer<UInt8>, at i: Int) {
        buffer[i] = UInt8(48 + (v / 1000) % 10)
        buffer[i + 1] = UInt8(48 + (v / 100) % 10)
        buffer[i + 2] = UInt8(48 + (v / 10) % 10)
        buffer[i + 3] = UInt8(48 + v % 10)
    }
}
