/// Proleptic Gregorian day arithmetic (Howard Hinnant's `days_from_civil`), so dates and
/// timestamps convert exactly without Foundation's floating-point `Date`.
enum CivilCalendar {
    static func days(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    static func civil(days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    static func isValid(year: Int64, month: Int64, day: Int64) -> Bool {
        guard (1...12).contains(month), day >= 1 else { return false }
        let lengths: [Int64] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
        return day <= (month == 2 && leap ? 29 : lengths[Int(month - 1)])
    }

    static func pad(_ value: Int64, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
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

    /// Reads `min...max` decimal digits.
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

    /// Reads fraction digits and returns them as microseconds (refusing sub-microsecond digits
    /// that are not zero, which PostgreSQL never prints).
    mutating func microseconds() -> Int64? {
        var value: Int64 = 0
        var count = 0
        while let b = peek, b >= 48, b <= 57 {
            if count < 6 {
                value = value * 10 + Int64(b - 48)
            } else if b != 48 {
                return nil
            }
            index += 1
            count += 1
        }
        guard count > 0 else { return nil }
        for _ in count..<max(count, 6) { value *= 10 }
        return value
    }
}
