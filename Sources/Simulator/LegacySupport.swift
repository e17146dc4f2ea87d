import Fixtures
import Postgres

/// A currency the legacy application knows, with the exponent only it knows (the reference
/// schema's money columns are unconstrained `numeric`: fixtures/README.md, "Money column types").
struct LegacyCurrency: Sendable, Hashable {
    let code: String
    /// Decimal places of the minor unit: USD/EUR/GBP 2, JPY 0, KWD 3.
    let exponent: Int

    /// Minor units worth roughly one US dollar (goodwill credits and usage are priced in it), as
    /// the fixture generator does.
    var roughDollar: Int64 {
        switch exponent {
        case 0: 150
        case 3: 300
        default: 100
        }
    }

    static let known: [String: Int] = ["USD": 2, "EUR": 2, "GBP": 2, "JPY": 0, "KWD": 3]

    /// The currency of `code` (trailing blanks of `char(3)` ignored).
    ///
    /// - Throws: ``SimulatorError/unusableData(_:)`` for a code the application does not know.
    init(_ code: String, context: @autoclosure () -> String) throws(SimulatorError) {
        let trimmed = String(code.prefix { $0 != " " })
        guard let exponent = Self.known[trimmed] else {
            throw .unusableData("\(context()) is in currency '\(code)', which the legacy application does not know")
        }
        self.code = trimmed
        self.exponent = exponent
    }

    /// `minor` written at the currency's scale: `19.00`, `5500`, `14.875`.
    func text(_ minor: Int64) -> String { MinorUnits.decimal(minor, scale: exponent) }

    /// `minor` as a `numeric(14,4)` unit price: `19.0000`.
    func unitText(_ minor: Int64) -> String {
        MinorUnits.decimal(minor * MinorUnits.powerOfTen(4 - exponent), scale: 4)
    }

    /// An amount for a summary: `49.00 USD`.
    func human(_ minor: Int64) -> String { text(minor) + " " + code }

    /// The minor units of a `numeric` value read as text.
    ///
    /// - Throws: ``SimulatorError/unusableData(_:)`` when the value has more decimals than the
    ///   currency (the data breaks C11; the application refuses to act on it).
    func minor(_ text: String, context: @autoclosure () -> String) throws(SimulatorError) -> Int64 {
        guard let value = LegacyMoney.minorUnits(text, exponent: exponent) else {
            throw .unusableData("\(context()) holds \(text) \(code), which is not a whole number of minor units")
        }
        return value
    }
}

/// Reading amounts back into integer minor units (never `Double`); the arithmetic and the text
/// written are the fixture generator's (``MinorUnits``), so what the simulator writes obeys the
/// same rules (C01–C04, C11).
enum LegacyMoney {
    /// Parses a decimal (`-24.50`, `5500`, `14.875`) into minor units of `exponent`; `nil` when
    /// it has more significant decimals than that or does not fit.
    static func minorUnits(_ text: String, exponent: Int) -> Int64? {
        var s = Substring(text)
        var negative = false
        if s.first == "-" {
            negative = true
            s = s.dropFirst()
        } else if s.first == "+" {
            s = s.dropFirst()
        }
        let parts = s.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, !whole.isEmpty || parts.count == 2 else { return nil }
        var fraction = parts.count == 2 ? parts[1] : ""
        while fraction.count > exponent, fraction.last == "0" { fraction = fraction.dropLast() }
        guard fraction.count <= exponent, whole.allSatisfy(\.isASCII), fraction.allSatisfy(\.isASCII) else { return nil }
        let padded = String(whole) + fraction + String(repeating: "0", count: exponent - fraction.count)
        guard let magnitude = Int64(padded.isEmpty ? "0" : padded) else { return nil }
        return negative ? -magnitude : magnitude
    }
}

extension SimulationRandom {
    /// A uniform draw in `range` (the modulo bias is far below anything a simulation notices).
    mutating func int(_ range: ClosedRange<Int64>) -> Int64 {
        let span = UInt64(range.upperBound - range.lowerBound) &+ 1
        return span == 0 ? Int64(bitPattern: next()) : range.lowerBound + Int64(next() % span)
    }

    /// True with probability `p`.
    mutating func chance(_ p: Double) -> Bool {
        Double(next() >> 11) / Double(UInt64(1) << 53) < p
    }

    mutating func pick<T>(_ values: [T]) -> T { values[Int(int(0...Int64(values.count - 1)))] }
}

/// Words the simulated customers are made of (like the fixture generator's vocabulary).
enum LegacyVocabulary {
    static let firstNames = ["maya", "liam", "sofia", "noah", "amara", "kenji", "lena", "omar", "ines", "tomas", "priya", "jonas"]
    static let lastNames = ["okafor", "berg", "silva", "tanaka", "novak", "haddad", "moreau", "jensen", "rossi", "kowalski"]
    static let companyFirst = ["Bright", "North", "Blue", "Silver", "Quiet", "Rapid", "Cedar", "Harbor", "Lumen", "Copper"]
    static let companySecond = ["loom", "field", "stack", "works", "forge", "line", "grove", "path", "wave", "craft"]
    static let companySuffix = ["Studio", "Labs", "GmbH", "Ltd", "Inc.", "BV", "KK", "Co."]
    static let mailboxes = ["billing", "accounts", "finance", "ops", "admin", "hello", "team"]
    static let cardFailureCodes = ["card_declined", "insufficient_funds", "expired_card", "processing_error"]
    static let refundReasons = ["requested_by_customer", "duplicate", "service_outage", "billing_error"]
    static let creditNoteReasons = ["service_outage", "billing_error", "goodwill", "order_change"]
    static let base62 = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    static func timezones(_ currency: String) -> [String] {
        switch currency {
        case "EUR": ["Europe/Berlin", "Europe/Paris", "Europe/Amsterdam", "Europe/Madrid"]
        case "GBP": ["Europe/London"]
        case "JPY": ["Asia/Tokyo"]
        case "KWD": ["Asia/Kuwait"]
        default: ["America/New_York", "America/Chicago", "America/Los_Angeles", "UTC"]
        }
    }
}
