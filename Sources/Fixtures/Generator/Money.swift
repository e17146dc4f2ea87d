/// The currencies the legacy application knows, with the exponent only it knows.
enum Currency: Int, CaseIterable, Sendable {
    case usd, eur, gbp, jpy, kwd

    var code: String {
        switch self {
        case .usd: "USD"
        case .eur: "EUR"
        case .gbp: "GBP"
        case .jpy: "JPY"
        case .kwd: "KWD"
        }
    }

    /// Decimal places of the minor unit: USD/EUR/GBP 2, JPY 0, KWD 3.
    var exponent: Int {
        switch self {
        case .usd, .eur, .gbp: 2
        case .jpy: 0
        case .kwd: 3
        }
    }

    /// Minor units in one major unit.
    var minorPerMajor: Int64 { MinorUnits.powerOfTen(exponent) }

    /// Minor units worth roughly one US dollar, to scale one-off prices and goodwill credits.
    var roughDollar: Int64 {
        switch self {
        case .usd, .eur, .gbp: 100
        case .jpy: 150
        case .kwd: 300
        }
    }
}

/// Exact money arithmetic on integer minor units, and their text for `numeric` columns.
///
/// Every amount in the generator is an `Int64` count of minor units; nothing goes through
/// `Double`. The text written to PostgreSQL has exactly the currency's decimals (`19.00`,
/// `5500`, `14.875`), as the hand-written seeds do. The simulated application
/// (`Simulator.LegacySQLApp`) writes its amounts with the same functions.
public enum MinorUnits {
    public static func powerOfTen(_ n: Int) -> Int64 {
        var p: Int64 = 1
        for _ in 0..<n { p *= 10 }
        return p
    }

    /// `numerator / denominator` rounded half away from zero, as PostgreSQL's `round(numeric)`.
    public static func divideRounded(_ numerator: Int64, _ denominator: Int64) -> Int64 {
        precondition(denominator > 0)
        let q = numerator / denominator
        let r = numerator % denominator
        if r.magnitude * 2 >= denominator.magnitude { return numerator < 0 ? q - 1 : q + 1 }
        return q
    }

    /// `amount × percent / 100`, rounded half away from zero.
    public static func percent(_ amount: Int64, _ percent: Int64) -> Int64 { divideRounded(amount * percent, 100) }

    /// `minor` units written with `scale` decimals: `decimal(-2450, scale: 2)` is `-24.50`.
    public static func decimal(_ minor: Int64, scale: Int) -> String {
        let negative = minor < 0
        var magnitude = minor.magnitude
        // Digits, least significant first; at most 20 digits + scale padding.
        var digits: [UInt8] = []
        digits.reserveCapacity(24)
        repeat {
            digits.append(UInt8(magnitude % 10) + 48)
            magnitude /= 10
        } while magnitude > 0
        while digits.count <= scale { digits.append(48) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count + 2)
        if negative { bytes.append(UInt8(ascii: "-")) }
        for i in stride(from: digits.count - 1, through: 0, by: -1) {
            if i == scale - 1 { bytes.append(UInt8(ascii: ".")) }
            bytes.append(digits[i])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// An amount in the currency's own scale: `19.00`, `5500`, `14.875`.
    static func text(_ minor: Int64, _ currency: Currency) -> String { decimal(minor, scale: currency.exponent) }

    /// An amount as a `numeric(14,4)` unit price: `19.0000`, `5500.0000`, `14.8750`.
    static func unitText(_ minor: Int64, _ currency: Currency) -> String {
        decimal(minor * powerOfTen(4 - currency.exponent), scale: 4)
    }

    /// A tax rate given in hundred-thousandths (`19000` is 0.19), as the shortest decimal
    /// (`0.19`, `0.08875`, `0`), which PostgreSQL parses into the nearest float8 and casts back
    /// to the same numeric.
    static func rateText(_ hundredThousandths: Int64) -> String {
        if hundredThousandths == 0 { return "0" }
        var text = decimal(hundredThousandths, scale: 5)
        while text.hasSuffix("0") { text.removeLast() }
        return text
    }
}
