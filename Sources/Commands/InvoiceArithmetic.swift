import Billing
import Foundation

/// An exact decimal number, `units × 10^-scale`, parsed from text digit by digit.
///
/// The decimal inputs of an invoice (a line's quantity and unit price, the tax rate) are text
/// so that nothing passes through binary floating point: `0.0125 × 333` is computed on
/// integers and found inexact in cents instead of silently becoming 4.16. 128-bit units leave
/// room for the products of 64-bit amounts with rates of 15 significant digits.
public struct ExactDecimal: Sendable, Hashable, CustomStringConvertible {
    /// The value times `10^scale`.
    public let units: Int128
    /// Digits after the point (trailing zeros kept: `19.0000` has scale 4).
    public let scale: Int

    public init(units: Int128, scale: Int) {
        precondition(scale >= 0, "scale must not be negative")
        self.units = units
        self.scale = scale
    }

    /// Parses `[+-]digits[.digits]` (`"2.5"`, `"-0.0125"`, `"19.0000"`); `nil` for anything
    /// else (exponents, blanks, a bare point, `NaN`) or beyond 38 digits.
    public init?(_ text: String) {
        var bytes = Substring(text).utf8[...]
        var negative = false
        if let first = bytes.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") {
            negative = first == UInt8(ascii: "-")
            bytes = bytes.dropFirst()
        }
        let point = bytes.firstIndex(of: UInt8(ascii: "."))
        let whole = point.map { bytes[..<$0] } ?? bytes
        let fraction = point.map { bytes[bytes.index(after: $0)...] } ?? bytes[bytes.endIndex...]
        guard !whole.isEmpty, point == nil || !fraction.isEmpty else { return nil }
        var units: Int128 = 0
        for byte in Array(whole) + Array(fraction) {
            guard byte >= 48, byte <= 57 else { return nil }
            let (times10, o1) = units.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(Int128(byte - 48))
            guard !o1, !o2 else { return nil }
            units = sum
        }
        self.init(units: negative ? -units : units, scale: fraction.count)
    }

    public var isZero: Bool { units == 0 }
    public var isNegative: Bool { units < 0 }

    /// The same value with at least `minimumScale` decimals (`19.00` → `19.0000`): exact.
    public func padded(toScale minimumScale: Int) -> ExactDecimal? {
        guard minimumScale > scale else { return self }
        guard let factor = InvoiceArithmetic.powerOfTen(minimumScale - scale) else { return nil }
        let (value, overflow) = units.multipliedReportingOverflow(by: factor)
        return overflow ? nil : ExactDecimal(units: value, scale: minimumScale)
    }

    /// The same value without trailing zeros after the point (`0.190` → `0.19`, `20.0` → `20`).
    public var trimmed: ExactDecimal {
        var value = units
        var scale = scale
        while scale > 0, value % 10 == 0 {
            value /= 10
            scale -= 1
        }
        return ExactDecimal(units: value, scale: scale)
    }

    /// Plain decimal text with exactly `scale` decimals, as PostgreSQL prints a `numeric`.
    public var description: String {
        let digits = String(units.magnitude)
        let padded = digits.count <= scale ? String(repeating: "0", count: scale - digits.count + 1) + digits : digits
        let cut = padded.index(padded.endIndex, offsetBy: -scale)
        let sign = units < 0 ? "-" : ""
        return sign + padded[..<cut] + (scale > 0 ? "." + padded[cut...] : "")
    }
}

/// The exact arithmetic of an invoice (fixtures/README.md C01–C04, C16 and finalize's credit):
/// integer minor units, decimal inputs parsed exactly, rounding as PostgreSQL's `round()`
/// (half away from zero). Nothing here reads a database, so every rule has a unit test.
public enum InvoiceArithmetic {
    /// `10^n` when it fits in 128 bits.
    static func powerOfTen(_ n: Int) -> Int128? {
        guard n >= 0, n <= 38 else { return nil }
        var p: Int128 = 1
        for _ in 0..<n { p *= 10 }
        return p
    }

    /// `numerator / 10^scale` rounded half away from zero, as `round(numeric)` rounds; `nil` when
    /// `10^scale` does not fit.
    public static func roundHalfAwayFromZero(_ numerator: Int128, scale: Int) -> Int128? {
        guard let denominator = powerOfTen(scale) else { return nil }
        let (q, r) = numerator.quotientAndRemainder(dividingBy: denominator)
        guard r.magnitude * 2 >= denominator.magnitude else { return q }
        return numerator < 0 ? q - 1 : q + 1
    }

    /// A 128-bit intermediate as minor units, when it fits in `Int64` (C11).
    static func int64(_ value: Int128) -> Int64? {
        value >= Int128(Int64.min) && value <= Int128(Int64.max) ? Int64(value) : nil
    }

    /// C01: `quantity × unit_amount` in minor units of a currency of `exponent` decimals.
    ///
    /// - Throws: `.invalidAmount` when the product is not a whole number of minor units
    ///   (`333 × 0.0125` USD is 4.1625) or does not fit in 64 bits.
    public static func lineAmount(quantity: ExactDecimal, unitAmount: ExactDecimal, exponent: Int) throws(CommandRejection) -> Int64 {
        let (product, overflow) = quantity.units.multipliedReportingOverflow(by: unitAmount.units)
        let scale = quantity.scale + unitAmount.scale
        guard !overflow else {
            throw CommandRejection(.invalidAmount, nil, nil, "\(quantity) × \(unitAmount) overflows")
        }
        // In minor units the product has `scale - exponent` decimals too many: they must be zeros.
        if scale <= exponent {
            guard let factor = powerOfTen(exponent - scale), case let (minor, false) = product.multipliedReportingOverflow(by: factor),
                let amount = int64(minor)
            else { throw CommandRejection(.invalidAmount, nil, nil, "\(quantity) × \(unitAmount) overflows 64-bit minor units") }
            return amount
        }
        guard let divisor = powerOfTen(scale - exponent) else {
            throw CommandRejection(.invalidAmount, nil, nil, "\(quantity) × \(unitAmount) has too many decimals")
        }
        let (minor, remainder) = product.quotientAndRemainder(dividingBy: divisor)
        guard remainder == 0 else {
            let exact = ExactDecimal(units: product, scale: scale).trimmed
            throw CommandRejection(
                .invalidAmount, nil, nil,
                "\(quantity) × \(unitAmount) = \(exact) is not a whole number of minor units (\(exponent) decimal\(exponent == 1 ? "" : "s"))")
        }
        guard let amount = int64(minor) else {
            throw CommandRejection(.invalidAmount, nil, nil, "\(quantity) × \(unitAmount) overflows 64-bit minor units")
        }
        return amount
    }

    /// The discount of `percent` % of `subtotal`: `round(subtotal × percent / 100)`, half away
    /// from zero (the legacy `SAVE20` coupon: 20 % of 49.99 is 10.00). The discount line's amount
    /// is its negation.
    public static func discount(subtotal: Int64, percent: Int64) -> Int64 {
        // |subtotal × percent| < 2^63 × 100 < 2^127: no overflow in 128 bits; the result is at
        // most |subtotal| for percent ≤ 100 (callers check the range).
        Int64(roundHalfAwayFromZero(Int128(subtotal) * Int128(percent), scale: 2)!)
    }

    /// C04: `round(base × rate, exponent)` in minor units, half away from zero: `base` (the
    /// subtotal less the discount) is already in minor units, so the rounding is to units.
    ///
    /// - Throws: `.invalidAmount` when the tax does not fit in 64 bits.
    public static func tax(base: Int64, rate: ExactDecimal) throws(CommandRejection) -> Int64 {
        guard !rate.isZero else { return 0 }
        let (product, overflow) = Int128(base).multipliedReportingOverflow(by: rate.units)
        guard !overflow, let rounded = roundHalfAwayFromZero(product, scale: rate.scale), let tax = int64(rounded) else {
            throw CommandRejection(.invalidAmount, nil, nil, "the tax of \(base) minor units at \(rate) overflows")
        }
        return tax
    }

    /// The tax rate a legacy `float8` text stands for in C04's `tax_rate::numeric`.
    ///
    /// The legacy application stores the rate as `float8` and computes the tax as
    /// `round(amount × tax_rate::float8::numeric, exponent)`. PostgreSQL's `float8::numeric`
    /// prints the double with 15 significant digits (`%.15g`, DBL_DIG) and reads that back, so:
    /// - text of at most 15 significant digits (`0.19`, `0.08875`, `1e-05` — every rate the
    ///   application writes) is that decimal exactly: the double nearest to it prints back as it,
    ///   which is what DBL_DIG guarantees; parsed here on integers, no floating point;
    /// - longer text (`0.30000000000000004`, a float8's shortest form) is the double it names
    ///   printed with 15 digits (`0.3`). That needs the double itself — a 17-digit text can lie
    ///   on the other side of a 15-digit rounding boundary than its double — so this one case
    ///   goes through `Double` exactly as PostgreSQL does; it is a rate, never money.
    ///
    /// The result has no trailing zeros (`%g` drops them). Accepts the forms PostgreSQL prints
    /// a float8 in (`0.19`, `1e-05`, `1.5e+20`) and plain decimals.
    ///
    /// - Throws: `.invalidInput` for text that is not a finite, non-negative number.
    public static func taxRate(_ text: String) throws(CommandRejection) -> ExactDecimal {
        guard let parsed = scientific(text) else {
            throw CommandRejection(.invalidInput, nil, nil, "tax_rate \"\(text)\" is not a decimal number")
        }
        guard !parsed.negative || parsed.digits.allSatisfy({ $0 == 0 }) else {
            throw CommandRejection(.invalidInput, nil, nil, "tax_rate \(text) is negative")
        }
        // Significant digits: without leading and trailing zeros.
        let significant = parsed.digits.drop { $0 == 0 }.reversed().drop { $0 == 0 }
        if significant.isEmpty { return ExactDecimal(units: 0, scale: 0) }
        if significant.count <= 15 {
            return try exact(parsed, text)
        }
        guard let double = Double(text), double.isFinite else {
            throw CommandRejection(.invalidInput, nil, nil, "tax_rate \(text) is not a finite number")
        }
        let printed = String(format: "%.15g", double)
        guard let parsedBack = scientific(printed), !parsedBack.negative else {
            throw CommandRejection(.invalidInput, nil, nil, "tax_rate \(text) is out of range")
        }
        return try exact(parsedBack, text)
    }

    /// `digits × 10^(exponent − fractionCount)` as an exact decimal: the exponent folded into
    /// the scale (`text` names the rate in the rejection).
    private static func exact(
        _ parsed: (negative: Bool, digits: [UInt8], fractionCount: Int, exponent: Int), _ text: String
    ) throws(CommandRejection) -> ExactDecimal {
        var units: Int128 = 0
        for digit in parsed.digits { units = units * 10 + Int128(digit) }
        var scale = parsed.fractionCount - parsed.exponent
        if scale < 0 {
            guard let factor = powerOfTen(-scale), case let (scaled, false) = units.multipliedReportingOverflow(by: factor) else {
                throw CommandRejection(.invalidInput, nil, nil, "tax_rate \(text) is out of range")
            }
            units = scaled
            scale = 0
        }
        guard scale <= 38 else { throw CommandRejection(.invalidInput, nil, nil, "tax_rate \(text) is out of range") }
        return ExactDecimal(units: units, scale: scale).trimmed
    }

    /// `[+-]digits[.digits][e[+-]digits]` split into its digits (at most 38), the number of them
    /// after the point and the power of ten.
    private static func scientific(_ text: String) -> (negative: Bool, digits: [UInt8], fractionCount: Int, exponent: Int)? {
        var bytes = Array(text.utf8)
        var negative = false
        if let first = bytes.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") {
            negative = first == UInt8(ascii: "-")
            bytes.removeFirst()
        }
        var exponent = 0
        if let e = bytes.firstIndex(where: { $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }) {
            var tail = bytes[(e + 1)...]
            var exponentNegative = false
            if let first = tail.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") {
                exponentNegative = first == UInt8(ascii: "-")
                tail = tail.dropFirst()
            }
            guard !tail.isEmpty, tail.count <= 4, tail.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
            exponent = tail.reduce(0) { $0 * 10 + Int($1 - 48) } * (exponentNegative ? -1 : 1)
            bytes.removeSubrange(e...)
        }
        let point = bytes.firstIndex(of: UInt8(ascii: "."))
        let whole = point.map { bytes[..<$0] } ?? bytes[...]
        let fraction = point.map { bytes[($0 + 1)...] } ?? []
        guard !whole.isEmpty, point == nil || !fraction.isEmpty else { return nil }
        guard (whole + fraction).allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        // Leading zeros carry nothing; dropping them keeps long plain zeros in range.
        let digits = Array((whole + fraction).map { $0 - 48 }.drop { $0 == 0 })
        guard digits.count <= 38 else { return nil }
        return (negative, digits, fraction.count, exponent)
    }

    /// C16: the customer's next invoice number, as the legacy application numbers them.
    ///
    /// Its numbering's prefix (`LL0016`) is the one of the customer's invoice with the highest
    /// sequence among `LL…-NNNN` numbers (credit-note numbers, `…CN…`, and foreign forms are
    /// skipped; on equal sequences the later invoice's prefix wins), and the sequence is one more,
    /// zero-padded to 4 digits. A customer with no such number starts at `LL` + its id
    /// zero-padded to 4 (`LL0042-0001`).
    ///
    /// - Parameter numbers: the numbers of the customer's numbered invoices, in invoice order
    ///   (ascending id).
    public static func nextInvoiceNumber(customerID: String, numbers: [String]) -> String {
        var prefix: Substring?
        var highest: Int64 = 0
        for number in numbers {
            guard let dash = number.lastIndex(of: "-"), let sequence = Int64(number[number.index(after: dash)...]),
                number.hasPrefix("LL"), !number.contains("CN")
            else { continue }
            if sequence >= highest {
                highest = sequence
                prefix = number[..<dash]
            }
        }
        return String(prefix ?? Substring("LL" + zeroPadded(customerID, 4))) + "-" + zeroPadded(String(highest + 1), 4)
    }

    private static func zeroPadded(_ digits: String, _ width: Int) -> String {
        String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    /// One use of the customer's unapplied credit at finalize.
    public struct CreditUse: Sendable, Hashable {
        /// The credit note whose credit pays (`nil`: goodwill credit).
        public var creditNoteID: String?
        public var amount: Int64
        /// The note's `balance_remaining` after this use (0 for goodwill).
        public var remainingAfter: Int64
    }

    /// How the customer's unapplied credit pays up to `due` (fixtures/README.md, finalize):
    /// credit notes with credit left, in order (oldest first), then goodwill credit — what is
    /// unapplied beyond the notes' remaining credit.
    ///
    /// - Parameters:
    ///   - due: the invoice's total; nothing is applied to a total of 0 or less.
    ///   - unapplied: −Σ of the customer's balance transactions (C07).
    ///   - notes: the issued credit notes with `balance_remaining > 0`, oldest first.
    public static func creditUses(due: Int64, unapplied: Int64, notes: [(id: String, remaining: Int64)]) -> [CreditUse] {
        guard due > 0, unapplied > 0 else { return [] }
        var left = min(due, unapplied)
        var uses: [CreditUse] = []
        var inNotes: Int64 = 0
        for note in notes {
            inNotes += note.remaining
            guard left > 0 else { continue }
            let used = min(note.remaining, left)
            left -= used
            uses.append(CreditUse(creditNoteID: note.id, amount: used, remainingAfter: note.remaining - used))
        }
        let goodwill = unapplied - inNotes
        if left > 0, goodwill > 0 { uses.append(CreditUse(creditNoteID: nil, amount: min(left, goodwill), remainingAfter: 0)) }
        return uses
    }

    /// Keys in the order the legacy application's `ORDER BY id` gives: numerically when both
    /// are integers, else as text (integers first).
    public static func keyOrder(_ a: String, _ b: String) -> Bool {
        switch (Int64(a), Int64(b)) {
        case let (x?, y?): x < y
        case (.some, nil): true
        case (nil, .some): false
        case (nil, nil): a < b
        }
    }
}
