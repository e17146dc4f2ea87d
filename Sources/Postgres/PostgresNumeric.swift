/// An exact decimal as PostgreSQL's `numeric` prints it: never a binary floating point value.
///
/// The value is kept as its canonical decimal text (`-12.30`, `0`, `12345678901234567890.123`),
/// so any precision survives. Money code converts it to integer minor units with
/// ``scaledInteger(exponent:)``, which refuses anything inexact.
public struct PostgresNumeric: Sendable, Hashable, CustomStringConvertible, LosslessStringConvertible {
    /// `true` for negative values (never for zero).
    public let isNegative: Bool
    /// Digits before the point, no leading zeros ("" for values below one).
    public let integerDigits: String
    /// Digits after the point exactly as written (trailing zeros kept: `12.50` has scale 2).
    public let fractionDigits: String
    /// `true` for PostgreSQL's `NaN`.
    public let isNaN: Bool

    /// Parses `[+-]digits[.digits]` (also `NaN`). Exponent notation is refused: PostgreSQL never
    /// prints it for `numeric`, and accepting it would hide float-looking input.
    public init?(_ text: String) {
        if text == "NaN" {
            (isNegative, integerDigits, fractionDigits, isNaN) = (false, "", "", true)
            return
        }
        var rest = Substring(text)
        var negative = false
        if rest.first == "-" || rest.first == "+" {
            negative = rest.first == "-"
            rest = rest.dropFirst()
        }
        let parts = rest.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let intPart = parts[0]
        let fracPart = parts.count > 1 ? parts[1] : ""
        guard !(intPart.isEmpty && fracPart.isEmpty),
            intPart.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
            fracPart.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
            !(parts.count > 1 && fracPart.isEmpty && intPart.isEmpty)
        else { return nil }
        let trimmed = intPart.drop(while: { $0 == "0" })
        let isZero = trimmed.isEmpty && fracPart.allSatisfy { $0 == "0" }
        self.isNegative = negative && !isZero
        self.integerDigits = String(trimmed)
        self.fractionDigits = String(fracPart)
        self.isNaN = false
    }

    /// Builds the exact value `units × 10^-scale` (e.g. `1234, 2` is `12.34`).
    public init(units: Int64, scale: Int) {
        precondition(scale >= 0, "scale must not be negative")
        let magnitude = String(units.magnitude)
        let padded = magnitude.count <= scale ? String(repeating: "0", count: scale - magnitude.count + 1) + magnitude : magnitude
        let cut = padded.index(padded.endIndex, offsetBy: -scale)
        self.init((units < 0 ? "-" : "") + padded[..<cut] + (scale > 0 ? "." + padded[cut...] : ""))!
    }

    /// Number of digits after the point as written.
    public var scale: Int { fractionDigits.count }

    public var description: String {
        if isNaN { return "NaN" }
        let intText = integerDigits.isEmpty ? "0" : integerDigits
        return (isNegative ? "-" : "") + intText + (fractionDigits.isEmpty ? "" : "." + fractionDigits)
    }

    /// Why a numeric could not become an integer count of minor units.
    public enum ScalingError: Error, Sendable, Hashable, CustomStringConvertible {
        /// Non-zero digits beyond the exponent (`12.345` at exponent 2).
        case inexact(value: String, exponent: Int)
        /// The result does not fit in `Int64`.
        case overflow(value: String)
        /// `NaN` has no amount.
        case notANumber

        public var description: String {
            switch self {
            case .inexact(let value, let exponent):
                "\(value) is not exact at \(exponent) decimal place\(exponent == 1 ? "" : "s")"
            case .overflow(let value): "\(value) overflows 64-bit minor units"
            case .notANumber: "NaN is not an amount"
            }
        }
    }

    /// The value times `10^exponent` as an exact `Int64`.
    ///
    /// - Throws: ``ScalingError/inexact(value:exponent:)`` when digits would be lost,
    ///   ``ScalingError/overflow(value:)`` when it does not fit.
    public func scaledInteger(exponent: Int) throws(ScalingError) -> Int64 {
        if isNaN { throw .notANumber }
        // Bytes, so trimming a fraction of thousands of zeros (PostgreSQL allows 16,383 digits)
        // is linear, not a `count` per removed character.
        var frac = Array(fractionDigits.utf8)
        while frac.count > exponent, frac.last == UInt8(ascii: "0") { frac.removeLast() }
        guard frac.count <= exponent else { throw .inexact(value: description, exponent: exponent) }
        let digits = Array(integerDigits.utf8) + frac + Array(repeating: UInt8(ascii: "0"), count: exponent - frac.count)
        var magnitude: UInt64 = 0
        for byte in digits {
            let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(byte - 48))
            guard !o1, !o2 else { throw .overflow(value: description) }
            magnitude = sum
        }
        if isNegative {
            guard magnitude <= UInt64(Int64.max) + 1 else { throw .overflow(value: description) }
            return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
        }
        guard magnitude <= UInt64(Int64.max) else { throw .overflow(value: description) }
        return Int64(magnitude)
    }

    /// Equality of values, not of spellings: `1.50 == 1.5`.
    public func isNumericallyEqual(to other: PostgresNumeric) -> Bool {
        func normalized(_ n: PostgresNumeric) -> String {
            var f = Substring(n.fractionDigits)
            while f.last == "0" { f.removeLast() }
            return n.description.isEmpty ? "" : (n.isNegative ? "-" : "") + n.integerDigits + "." + f
        }
        return isNaN == other.isNaN && normalized(self) == normalized(other)
    }
}
