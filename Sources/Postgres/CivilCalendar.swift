/// Proleptic Gregorian day arithmetic (Howard Hinnant's `days_from_civil`), so dates and
/// timestamps convert exactly without Foundation's floating-point `Date`.
///
/// Legacy text reaches these functions row by row, so none of them may trap: ``civil(days:)``
/// is total over `Int64`, and ``days(year:month:day:)`` is only called on years the parsers
/// have bounded first (``maximumYear``).
enum CivilCalendar {
    /// The largest year magnitude ``days(year:month:day:)`` is called with: a parser reads at
    /// most seven year digits, and `era * 146097` stays far inside `Int64` for such years.
    static let maximumYear: Int64 = 9_999_999

    /// Days since 1970-01-01 of a valid date whose year is within ±``maximumYear``.
    static func days(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    /// The date `days` after 1970-01-01, for every `Int64` (a `PostgresDate` can be built
    /// from any count): `days + 719468` is never formed, the eras are split off first.
    static func civil(days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        // z = days + 719468 = 146097 × q + (r + 719468), with r + 719468 ≥ 0.
        let (q, r) = days.quotientAndRemainder(dividingBy: 146097)
        let shifted = r + 719468
        let era = q + shifted / 146097
        let doe = shifted % 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        // |era| ≤ Int64.max / 146097 + 5, so era × 400 fits.
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    static func isLeap(_ year: Int64) -> Bool { (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 }

    /// The number of days of `month` (1...12) in `year`.
    static func length(year: Int64, month: Int64) -> Int64 {
        let lengths: [Int64] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        return month == 2 && isLeap(year) ? 29 : lengths[Int(month - 1)]
    }

    static func isValid(year: Int64, month: Int64, day: Int64) -> Bool {
        guard (1...12).contains(month), day >= 1 else { return false }
        return day <= length(year: year, month: month)
    }

    /// `value` in decimal, zero-padded to `width` digits after any sign (`-0005`, not `00-5`).
    static func pad(_ value: Int64, _ width: Int) -> String {
        let digits = String(value.magnitude)
        let padded = digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
        return value < 0 ? "-" + padded : padded
    }
}

/// A tiny cursor over ASCII bytes for the fixed formats PostgreSQL prints.
struct ASCIIScanner {
    let bytes: [UInt8]
    var index = 0

    init(_ text: String) { bytes = Array(text.utf8) }

    var isAtEnd: Bool { index >= bytes.count }
    var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

    mutating func take(_ byte: UInt8) -> Bool {
        guard peek == byte else { return false }
        index += 1
        return true
    }

    /// Reads `min...max` decimal digits (`max` ≤ 18, so the value always fits).
    mutating func number(min: Int, max: Int) -> Int64? {
        var value: Int64 = 0
        var count = 0
        while count < max, let b = peek, b >= 48, b <= 57 {
            value = value * 10 + Int64(b - 48)
            index += 1
            count += 1
        }
        return count >= min ? value : nil
    }

    /// What fraction digits after a `.` hold.
    enum Fraction {
        /// No digit follows the point.
        case missing
        /// The digits as microseconds; any digit beyond the sixth was a zero.
        case microseconds(Int64)
        /// A digit beyond the sixth is not zero: the value would have to be rounded.
        case finerThanMicroseconds
    }

    /// Reads fraction digits, any number of them (sub-microsecond digits must be zeros, which
    /// is all PostgreSQL prints; the rest are read to the end so the caller can say why).
    mutating func fraction() -> Fraction {
        var value: Int64 = 0
        var count = 0
        var exact = true
        while let b = peek, b >= 48, b <= 57 {
            if count < 6 {
                value = value * 10 + Int64(b - 48)
            } else if b != 48 {
                exact = false
            }
            index += 1
            count += 1
        }
        guard count > 0 else { return .missing }
        guard exact else { return .finerThanMicroseconds }
        for _ in count..<max(count, 6) { value *= 10 }
        return .microseconds(value)
    }
}
