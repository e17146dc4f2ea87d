/// An ISO 4217 currency: its alphabetic code and the number of decimal places of its minor unit.
///
/// Every value comes from the ISO 4217 table (``Currency/init(code:)`` or one of the static
/// constants such as ``usd``), so the exponent is always the one ISO 4217 assigns: `USD` 2,
/// `JPY` 0, `KWD` 3, `CLF` 4. Codes without a minor unit (gold `XAU`, `XDR`, `XTS`, `XXX`, …)
/// are refused, since they cannot hold a money amount.
///
/// Codable as its code string (`"USD"`); decoding an unknown or malformed code fails.
///
/// - Important: Codes are case-sensitive: only three uppercase ASCII letters are accepted.
///   A legacy row with `usd` or `" USD"` is a data-quality signal for the migrator to
///   quarantine, not something to normalize silently.
public struct Currency: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    /// The ISO 4217 alphabetic code: three uppercase ASCII letters, e.g. `USD`.
    public let code: String
    /// Decimal places of the minor unit: one major unit is `10^minorUnitExponent` minor units
    /// (2 for `USD`, 0 for `JPY`, 3 for `KWD`, 4 for `CLF`).
    public let minorUnitExponent: Int

    /// Looks up an ISO 4217 alphabetic code.
    ///
    /// - Parameter code: Three uppercase ASCII letters, e.g. `"USD"`. No trimming, no case
    ///   folding.
    /// - Throws: ``CurrencyError/malformedCode(_:)`` when `code` is not three uppercase ASCII
    ///   letters (`"usd"`, `" USD"`); ``CurrencyError/unknownCode(_:)`` when ISO 4217 has no
    ///   such code (`"XXY"`); ``CurrencyError/noMinorUnit(_:)`` for codes ISO 4217 lists without
    ///   a minor unit (`"XAU"`, `"XXX"`).
    public init(code: String) throws(CurrencyError) {
        guard code.utf8.count == 3, code.utf8.allSatisfy({ $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") })
        else { throw .malformedCode(code) }
        guard let entry = CurrencyTable.byCode[code] else { throw .unknownCode(code) }
        guard let exponent = entry.minorUnitExponent else { throw .noMinorUnit(code) }
        self.init(validatedCode: entry.code, minorUnitExponent: exponent)
    }

    /// For table rows and the static constants only (the tests check each constant against the table).
    private init(validatedCode code: String, minorUnitExponent: Int) {
        self.code = code
        self.minorUnitExponent = minorUnitExponent
    }

    private var entry: CurrencyTableEntry {
        // Every Currency is built from a table row, so the lookup cannot fail.
        CurrencyTable.byCode[code]!
    }

    /// The ISO 4217 numeric code, e.g. `840` for `USD` (informational; not unique across
    /// withdrawn codes: `ANG` and `XCG` share 532).
    public var numericCode: Int { entry.numericCode }
    /// The ISO 4217 English name, e.g. `US Dollar`.
    public var name: String { entry.name }
    /// `true` for ISO 4217 fund codes (`CLF`, `UYI`, `USN`, …), which still have an exponent.
    public var isFund: Bool { entry.isFund }
    /// `true` for a code withdrawn from ISO 4217 List One (e.g. `HRK`, `BGN`). Such codes are
    /// accepted so that legacy amounts recorded before the withdrawal stay readable.
    public var isWithdrawn: Bool { entry.isWithdrawn }

    /// The code, e.g. `USD`.
    public var description: String { code }

    /// Orders by code, so reports list currencies deterministically.
    public static func < (lhs: Currency, rhs: Currency) -> Bool { lhs.code < rhs.code }

    /// Every currency ``init(code:)`` accepts (active and withdrawn), sorted by code.
    public static let all: [Currency] = CurrencyTable.byCode.values
        .compactMap { entry in
            entry.minorUnitExponent.map { Currency(validatedCode: entry.code, minorUnitExponent: $0) }
        }
        .sorted()

    /// Decodes a code string such as `"USD"`.
    ///
    /// - Throws: `DecodingError.dataCorrupted` carrying the ``CurrencyError`` description.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let code = try container.decode(String.self)
        do {
            try self.init(code: code)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.description)
        }
    }

    /// Encodes the code string, e.g. `"USD"`.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(code)
    }
}

extension Currency {
    /// US Dollar, 2 decimal places.
    public static let usd = Currency(validatedCode: "USD", minorUnitExponent: 2)
    /// Euro, 2 decimal places.
    public static let eur = Currency(validatedCode: "EUR", minorUnitExponent: 2)
    /// Pound Sterling, 2 decimal places.
    public static let gbp = Currency(validatedCode: "GBP", minorUnitExponent: 2)
    /// Canadian Dollar, 2 decimal places.
    public static let cad = Currency(validatedCode: "CAD", minorUnitExponent: 2)
    /// Australian Dollar, 2 decimal places.
    public static let aud = Currency(validatedCode: "AUD", minorUnitExponent: 2)
    /// Swiss Franc, 2 decimal places.
    public static let chf = Currency(validatedCode: "CHF", minorUnitExponent: 2)
    /// Yen, no decimal places.
    public static let jpy = Currency(validatedCode: "JPY", minorUnitExponent: 0)
    /// Won, no decimal places.
    public static let krw = Currency(validatedCode: "KRW", minorUnitExponent: 0)
    /// Kuwaiti Dinar, 3 decimal places.
    public static let kwd = Currency(validatedCode: "KWD", minorUnitExponent: 3)
    /// Bahraini Dinar, 3 decimal places.
    public static let bhd = Currency(validatedCode: "BHD", minorUnitExponent: 3)
    /// Unidad de Fomento (Chile, a fund code), 4 decimal places.
    public static let clf = Currency(validatedCode: "CLF", minorUnitExponent: 4)
}

/// Why a string is not a usable ISO 4217 currency.
public enum CurrencyError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Not three uppercase ASCII letters (`"usd"`, `" USD"`, `"US"`); never normalized.
    case malformedCode(String)
    /// Three uppercase letters that ISO 4217 does not assign (`"XXY"`).
    case unknownCode(String)
    /// An ISO 4217 code without a minor unit (`XAU` gold, `XDR`, `XTS`, `XXX`, …): no amount
    /// can be expressed in it.
    case noMinorUnit(String)

    public var description: String {
        switch self {
        case .malformedCode(let code):
            "\(CurrencyError.quoted(code)) is not a currency code: "
                + "expected three uppercase ASCII letters such as \"USD\""
        case .unknownCode(let code):
            "\(CurrencyError.quoted(code)) is not an ISO 4217 currency code"
        case .noMinorUnit(let code):
            "\(code) has no minor unit in ISO 4217, so it cannot hold a money amount"
        }
    }

    /// `text` in double quotes, cut like ``abbreviated(_:)``.
    static func quoted(_ text: String) -> String {
        "\"" + abbreviated(text) + "\""
    }

    /// `text` cut to 40 characters, so one bad legacy value cannot flood a log, with control
    /// characters escaped (`\n`, `\u{7}`), so a message stays on one line whatever the value holds.
    static func abbreviated(_ text: String) -> String {
        let limit = 40
        let shown = text.count <= limit ? text : String(text.prefix(limit))
        var escaped = ""
        for scalar in shown.unicodeScalars {
            switch scalar {
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            case _ where scalar.properties.generalCategory == .control
                || scalar.properties.generalCategory == .lineSeparator
                || scalar.properties.generalCategory == .paragraphSeparator:
                escaped += "\\u{" + String(scalar.value, radix: 16) + "}"
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return text.count <= limit ? escaped : "\(escaped)… (\(text.utf8.count) bytes)"
    }
}
