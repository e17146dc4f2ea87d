import Postgres

/// An exact amount of money: a whole number of minor units (cents, fils, yen) in one currency.
///
/// `Money(minorUnits: 1230, currency: .usd)` is 12.30 USD. There is no floating point anywhere:
/// decimal text is parsed digit by digit, and a value that is not a whole number of minor units
/// is an error, never rounded.
///
/// Arithmetic (``adding(_:)``, ``subtracting(_:)``, ``negated()``, ``multiplied(by:)``,
/// ``sum(_:in:)``) throws ``MoneyError`` on mixed currencies and on `Int64` overflow; it never
/// traps and never wraps.
///
/// Codable as `{"amount": 1230, "currency": "USD"}`, `amount` being the minor units as a JSON
/// integer.
///
/// - Important: `Money` is deliberately not `Comparable`: `<` across currencies has no meaning,
///   and a silent answer would be a billing bug. Use ``isLess(than:)``, which throws on mixed
///   currencies, or ``canonicalOrder(_:_:)`` to sort deterministically for output.
public struct Money: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The amount in minor units of ``currency`` (1230 for 12.30 USD, 1500 for 1500 JPY).
    public let minorUnits: Int64
    /// The currency; its ``Currency/minorUnitExponent`` says where the decimal point goes.
    public let currency: Currency

    /// An amount given in minor units.
    ///
    /// - Parameters:
    ///   - minorUnits: The amount in minor units, e.g. `1230` for 12.30 USD.
    ///   - currency: The currency.
    public init(minorUnits: Int64, currency: Currency) {
        self.minorUnits = minorUnits
        self.currency = currency
    }

    /// Zero in `currency`.
    public static func zero(_ currency: Currency) -> Money {
        Money(minorUnits: 0, currency: currency)
    }

    /// Parses a plain decimal string exactly: `"12.30"`, `"-0.05"`, `"+7"`, `"12.340"`.
    ///
    /// Accepted: an optional `+` or `-`, one or more ASCII digits, and optionally a `.` followed by
    /// one or more ASCII digits. Digits beyond the currency's exponent are accepted only when they
    /// are zeros (`"12.340"` USD is 1234). Leading zeros are accepted (`"007.50"`).
    ///
    /// Refused: whitespace anywhere, thousands separators, exponent notation (`"1e5"`), a bare
    /// point (`".5"`, `"5."`), `NaN`, `Infinity`, non-ASCII digits.
    ///
    /// - Parameters:
    ///   - text: The decimal text, exactly as stored.
    ///   - currency: The currency that gives the number of decimal places.
    /// - Throws: ``MoneyError/notANumber(_:)`` for text outside that syntax;
    ///   ``MoneyError/inexact(value:currency:)`` when non-zero digits go beyond the exponent
    ///   (`"12.345"` USD); ``MoneyError/outOfRange(value:currency:)`` when the minor units do not
    ///   fit in `Int64`.
    /// - Important: Nothing is ever rounded. An inexact value is an error for the migrator to
    ///   quarantine.
    public init(parsing text: String, currency: Currency) throws(MoneyError) {
        guard Money.isPlainDecimal(text), let numeric = PostgresNumeric(text) else {
            throw .notANumber(text)
        }
        self = try Money.scaled(numeric, currency: currency, spelledAs: text)
    }

    /// Converts a `numeric` read from PostgreSQL exactly.
    ///
    /// - Parameters:
    ///   - numeric: The exact decimal, e.g. a legacy `amount numeric(12,2)` column.
    ///   - currency: The currency that gives the number of decimal places.
    /// - Throws: ``MoneyError/notANumber(_:)`` for `NaN`; ``MoneyError/inexact(value:currency:)``
    ///   when non-zero digits go beyond the exponent; ``MoneyError/outOfRange(value:currency:)``
    ///   when the minor units do not fit in `Int64`.
    public init(_ numeric: PostgresNumeric, currency: Currency) throws(MoneyError) {
        self = try Money.scaled(numeric, currency: currency, spelledAs: numeric.description)
    }

    private static func scaled(
        _ numeric: PostgresNumeric, currency: Currency, spelledAs text: String
    ) throws(MoneyError) -> Money {
        do throws(PostgresNumeric.ScalingError) {
            let units = try numeric.scaledInteger(exponent: currency.minorUnitExponent)
            return Money(minorUnits: units, currency: currency)
        } catch {
            switch error {
            case .notANumber: throw .notANumber(text)
            case .inexact: throw .inexact(value: text, currency: currency)
            case .overflow: throw .outOfRange(value: text, currency: currency)
            }
        }
    }

    /// `[+-]?[0-9]+(\.[0-9]+)?` — stricter than `PostgresNumeric`, which also takes `NaN`,
    /// `".5"` and `"5."`.
    private static func isPlainDecimal(_ text: String) -> Bool {
        var bytes = text.utf8[...]
        if let first = bytes.first, first == UInt8(ascii: "+") || first == UInt8(ascii: "-") {
            bytes = bytes.dropFirst()
        }
        func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
        let integerPart = bytes.prefix(while: isDigit)
        guard !integerPart.isEmpty else { return false }
        let rest = bytes[integerPart.endIndex...]
        guard let point = rest.first else { return true }
        let fraction = rest.dropFirst()
        return point == UInt8(ascii: ".") && !fraction.isEmpty && fraction.allSatisfy(isDigit)
    }

    /// The canonical decimal with exactly ``Currency/minorUnitExponent`` fraction digits:
    /// `"12.30"`, `"-0.05"`, `"1500"` (JPY), `"12.345"` (KWD). No currency, no grouping.
    ///
    /// ``init(parsing:currency:)`` reads it back to the same value.
    public var decimalString: String {
        Self.decimalString(
            negative: minorUnits < 0, digits: String(minorUnits.magnitude), exponent: currency.minorUnitExponent)
    }

    /// `digits` minor units (a count of any length) as a decimal with `exponent` fraction
    /// digits: `decimalString(negative: true, digits: "5", exponent: 2)` is `"-0.05"`. For
    /// figures beyond `Int64`, such as sums PostgreSQL computes in `numeric`.
    public static func decimalString(negative: Bool, digits: String, exponent: Int) -> String {
        let digits = digits.isEmpty ? "0" : digits
        let sign = negative ? "-" : ""
        guard exponent > 0 else { return sign + digits }
        // Counted and cut in UTF-8 bytes, so no text can make the cut fall outside the string.
        var bytes = Array(digits.utf8)
        if bytes.count <= exponent {
            bytes.insert(contentsOf: repeatElement(UInt8(ascii: "0"), count: exponent - bytes.count + 1), at: 0)
        }
        let point = bytes.count - exponent
        return sign + String(decoding: bytes[..<point], as: UTF8.self) + "." + String(decoding: bytes[point...], as: UTF8.self)
    }

    /// The decimal and the code: `"12.30 USD"`, `"1500 JPY"`.
    public var description: String { decimalString + " " + currency.code }

    /// The same exact value as a `PostgresNumeric` (scale = the currency's exponent), for binding
    /// to a `numeric` column.
    public var numeric: PostgresNumeric {
        PostgresNumeric(units: minorUnits, scale: currency.minorUnitExponent)
    }

    /// `true` when the amount is zero.
    public var isZero: Bool { minorUnits == 0 }
    /// `true` when the amount is below zero.
    public var isNegative: Bool { minorUnits < 0 }
    /// `true` when the amount is above zero.
    public var isPositive: Bool { minorUnits > 0 }

    // MARK: Arithmetic

    /// `self + other`.
    ///
    /// - Throws: ``MoneyError/mixedCurrencies(_:)`` when the currencies differ;
    ///   ``MoneyError/overflow(_:)`` when the result does not fit in `Int64` minor units.
    public func adding(_ other: Money) throws(MoneyError) -> Money {
        guard currency == other.currency else { throw .mixedCurrencies(.addition(self, other)) }
        let (result, overflow) = minorUnits.addingReportingOverflow(other.minorUnits)
        guard !overflow else { throw .overflow(.addition(self, other)) }
        return Money(minorUnits: result, currency: currency)
    }

    /// `self - other`.
    ///
    /// - Throws: ``MoneyError/mixedCurrencies(_:)`` when the currencies differ;
    ///   ``MoneyError/overflow(_:)`` when the result does not fit in `Int64` minor units.
    public func subtracting(_ other: Money) throws(MoneyError) -> Money {
        guard currency == other.currency else { throw .mixedCurrencies(.subtraction(self, other)) }
        let (result, overflow) = minorUnits.subtractingReportingOverflow(other.minorUnits)
        guard !overflow else { throw .overflow(.subtraction(self, other)) }
        return Money(minorUnits: result, currency: currency)
    }

    /// `-self`.
    ///
    /// - Throws: ``MoneyError/overflow(_:)`` for `Int64.min` minor units, whose negation does not fit.
    public func negated() throws(MoneyError) -> Money {
        let (result, overflow) = Int64(0).subtractingReportingOverflow(minorUnits)
        guard !overflow else { throw .overflow(.negation(self)) }
        return Money(minorUnits: result, currency: currency)
    }

    /// `self × quantity`, e.g. a unit price times a seat count.
    ///
    /// - Parameter quantity: A whole number, possibly zero or negative.
    /// - Throws: ``MoneyError/overflow(_:)`` when the result does not fit in `Int64` minor units.
    public func multiplied(by quantity: Int64) throws(MoneyError) -> Money {
        let (result, overflow) = minorUnits.multipliedReportingOverflow(by: quantity)
        guard !overflow else { throw .overflow(.multiplication(self, by: quantity)) }
        return Money(minorUnits: result, currency: currency)
    }

    /// The total of `amounts`, all in `currency`; zero for an empty sequence.
    ///
    /// - Parameters:
    ///   - amounts: The amounts to add, in order.
    ///   - currency: The currency of the total, which every amount must share (it also gives
    ///     the empty sum its currency).
    /// - Throws: ``MoneyError/mixedCurrencies(_:)`` at the first amount in another currency;
    ///   ``MoneyError/overflow(_:)`` when a running total does not fit in `Int64` minor units,
    ///   even if later amounts would bring it back into range.
    public static func sum(_ amounts: some Sequence<Money>, in currency: Currency) throws(MoneyError) -> Money {
        var total = Money.zero(currency)
        for amount in amounts {
            total = try total.adding(amount)
        }
        return total
    }

    // MARK: Ordering

    /// `self < other`, for two amounts in the same currency.
    ///
    /// - Throws: ``MoneyError/mixedCurrencies(_:)`` when the currencies differ.
    public func isLess(than other: Money) throws(MoneyError) -> Bool {
        guard currency == other.currency else { throw .mixedCurrencies(.comparison(self, other)) }
        return minorUnits < other.minorUnits
    }

    /// A total order for sorting output deterministically: by currency code, then by amount.
    ///
    /// - Important: This is not a comparison of values across currencies (`1.00 EUR` sorts
    ///   before `0.01 USD` only because `EUR < USD`). Use ``isLess(than:)`` for decisions.
    public static func canonicalOrder(_ lhs: Money, _ rhs: Money) -> Bool {
        lhs.currency == rhs.currency ? lhs.minorUnits < rhs.minorUnits : lhs.currency < rhs.currency
    }

    // MARK: Codable

    private enum CodingKeys: String, CodingKey {
        case amount
        case currency
    }

    /// Decodes `{"amount": <minor units as a JSON integer>, "currency": "USD"}`.
    ///
    /// - Throws: `DecodingError` when `amount` is not an integer that fits in `Int64` or
    ///   `currency` is not a usable ISO 4217 code.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.minorUnits = try container.decode(Int64.self, forKey: .amount)
        self.currency = try container.decode(Currency.self, forKey: .currency)
    }

    /// Encodes `{"amount": <minor units as a JSON integer>, "currency": "USD"}`.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(minorUnits, forKey: .amount)
        try container.encode(currency, forKey: .currency)
    }
}

/// Why an amount could not be read or computed exactly.
public enum MoneyError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The text is not a plain decimal number (`"abc"`, `""`, `"1e5"`, `"1,000.00"`, `" 1.00"`, `NaN`).
    case notANumber(String)
    /// The value has non-zero digits beyond the currency's exponent (`"12.345"` in USD).
    /// Never rounded: the row is quarantined instead.
    case inexact(value: String, currency: Currency)
    /// The value's minor units do not fit in `Int64` (`"92233720368547758.08"` in USD).
    case outOfRange(value: String, currency: Currency)
    /// An operation combined two currencies.
    case mixedCurrencies(Operation)
    /// An operation's result does not fit in `Int64` minor units.
    case overflow(Operation)

    /// The operation an arithmetic error happened in, with its operands.
    public enum Operation: Sendable, Hashable, CustomStringConvertible {
        /// `lhs + rhs` (also each step of ``Money/sum(_:in:)``).
        case addition(Money, Money)
        /// `lhs - rhs`.
        case subtraction(Money, Money)
        /// `-amount`.
        case negation(Money)
        /// `amount × quantity`.
        case multiplication(Money, by: Int64)
        /// `lhs < rhs`.
        case comparison(Money, Money)

        /// The operation written out, e.g. `12.30 USD + 1.00 EUR`.
        public var description: String {
            switch self {
            case .addition(let lhs, let rhs): "\(lhs) + \(rhs)"
            case .subtraction(let lhs, let rhs): "\(lhs) - \(rhs)"
            case .negation(let amount): "-(\(amount))"
            case .multiplication(let amount, let quantity): "\(amount) × \(quantity)"
            case .comparison(let lhs, let rhs): "\(lhs) < \(rhs)"
            }
        }

        /// The operands' currencies, in order.
        var currencies: [Currency] {
            switch self {
            case .addition(let lhs, let rhs), .subtraction(let lhs, let rhs), .comparison(let lhs, let rhs):
                [lhs.currency, rhs.currency]
            case .negation(let amount), .multiplication(let amount, _):
                [amount.currency]
            }
        }
    }

    public var description: String {
        switch self {
        case .notANumber(let text):
            return "\(CurrencyError.quoted(text)) is not a decimal number: expected optional sign, digits, "
                + "optional '.' and digits (e.g. \"-12.30\"), without spaces, separators or exponent"
        case .inexact(let value, let currency):
            let places = currency.minorUnitExponent
            let code = currency.code
            return "\(CurrencyError.abbreviated(value)) \(code) is not a whole number of minor units: \(code) has "
                + "\(places) decimal place\(places == 1 ? "" : "s") (never rounded)"
        case .outOfRange(let value, let currency):
            let lowest = Money(minorUnits: .min, currency: currency)
            let highest = Money(minorUnits: .max, currency: currency)
            return "\(CurrencyError.abbreviated(value)) \(currency.code) is out of range: 64-bit minor units hold "
                + "\(lowest.decimalString) to \(highest.decimalString) \(currency.code)"
        case .mixedCurrencies(let operation):
            let codes = operation.currencies.map(\.code).joined(separator: " and ")
            return "cannot compute \(operation): it mixes \(codes)"
        case .overflow(let operation):
            let code = operation.currencies.first?.code ?? ""
            return "\(operation) overflows 64-bit \(code) minor units"
        }
    }
}
