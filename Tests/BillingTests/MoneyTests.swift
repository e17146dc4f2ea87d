import Billing
import Foundation
import Postgres
import PropertyBased
import Testing

/// Random currencies from the whole table (active and withdrawn), shrinking towards the first.
private let anyCurrency = Gen.int(in: 0...(Currency.all.count - 1)).map { Currency.all[$0] }

/// Random `Int64` of every magnitude: a full-range value shifted right by 0...63 bits, so small
/// amounts, cents-sized amounts and values near the limits all turn up.
private let anyMinorUnits = zip(Gen.int64(), Gen.int(in: 0...63)).map { value, shift in value >> Int64(shift) }

@Suite("Money: exact parsing, formatting and arithmetic")
struct MoneyTests {
    // MARK: Properties

    @Test func formattingThenParsingRoundTripsExactly() async {
        await propertyCheck(count: 1000, input: anyMinorUnits, anyCurrency) { units, currency throws in
            let money = Money(minorUnits: units, currency: currency)
            let text = money.decimalString
            #expect(try Money(parsing: text, currency: currency) == money)
            #expect(money.numeric.description == text)
            #expect(try Money(money.numeric, currency: currency) == money)
            #expect(try JSONDecoder().decode(Money.self, from: JSONEncoder().encode(money)) == money)
        }
    }

    @Test func parsingAnExactDecimalThenFormattingGivesTheCanonicalString() async {
        // A sign ("", "+", "-"), 1...20 integer digits (leading zeros included), the currency's
        // exponent worth of fraction digits, then 0...2 extra trailing zeros.
        await propertyCheck(
            count: 1000, input: Gen.int(in: 0...2), Gen.number.string(of: 1...20), Gen.number.string(of: 4),
            Gen.int(in: 0...2), anyCurrency
        ) { sign, integerDigits, fractionDigits, extraZeros, currency throws in
            let exponent = currency.minorUnitExponent
            let kept = String(fractionDigits.prefix(exponent))
            let writtenFraction = kept + String(repeating: "0", count: extraZeros)
            let text =
                ["", "+", "-"][sign] + integerDigits + (writtenFraction.isEmpty ? "" : "." + writtenFraction)

            // The expectation is computed independently in 128-bit integers.
            let magnitude = Int128(integerDigits + kept)!
            let value = sign == 2 ? -magnitude : magnitude
            if value >= Int128(Int64.min), value <= Int128(Int64.max) {
                let integerPart = integerDigits.drop { $0 == "0" }
                let canonical =
                    (value < 0 ? "-" : "") + (integerPart.isEmpty ? "0" : integerPart)
                    + (exponent > 0 ? "." + kept : "")
                let money = try Money(parsing: text, currency: currency)
                #expect(money.minorUnits == Int64(value))
                #expect(money.decimalString == canonical)
            } else {
                #expect(throws: MoneyError.outOfRange(value: text, currency: currency)) {
                    try Money(parsing: text, currency: currency)
                }
            }
        }
    }

    @Test func aNonZeroDigitBeyondTheExponentIsInexact() async {
        await propertyCheck(
            count: 500, input: anyMinorUnits, anyCurrency, Gen.int(in: 0...2), Gen.int(in: 1...9)
        ) { units, currency, zeros, digit in
            let canonical = Money(minorUnits: units, currency: currency).decimalString
            let text =
                canonical + (currency.minorUnitExponent == 0 ? "." : "") + String(repeating: "0", count: zeros)
                + String(digit)
            #expect(throws: MoneyError.inexact(value: text, currency: currency)) {
                try Money(parsing: text, currency: currency)
            }
        }
    }

    @Test func addingThenSubtractingReturnsTheOriginalOrReportsOverflow() async {
        // Full-range operands, so about a quarter of the pairs overflow.
        await propertyCheck(count: 1000, input: Gen.int64(), Gen.int64(), anyCurrency) { a, b, currency throws in
            let x = Money(minorUnits: a, currency: currency)
            let y = Money(minorUnits: b, currency: currency)
            if a.addingReportingOverflow(b).overflow {
                #expect(throws: MoneyError.overflow(.addition(x, y))) { try x.adding(y) }
            } else {
                let sum = try x.adding(y)
                #expect(sum.minorUnits == a + b)
                #expect(try sum.subtracting(y) == x)
            }
        }
    }

    @Test func overflowNearInt64MaxIsAnErrorNotATrap() async {
        await propertyCheck(
            count: 500, input: Gen.int64(in: (Int64.max - 1000)...Int64.max), Gen.int64(in: 0...2000), anyCurrency
        ) { a, b, currency throws in
            let x = Money(minorUnits: a, currency: currency)
            let y = Money(minorUnits: b, currency: currency)
            let minusX = Money(minorUnits: -a, currency: currency)
            let minusY = Money(minorUnits: -b, currency: currency)
            if b <= Int64.max - a {
                #expect(try x.adding(y).subtracting(y) == x)
            } else {
                #expect(throws: MoneyError.overflow(.addition(x, y))) { try x.adding(y) }
                // -a - b < Int64.min exactly when a + b > Int64.max + 1.
                if b > Int64.max - a + 1 {
                    #expect(throws: MoneyError.overflow(.subtraction(minusX, y))) { try minusX.subtracting(y) }
                } else {
                    #expect(try minusX.subtracting(y).minorUnits == Int64.min)
                }
                #expect(try x.negated() == minusX && y.negated() == minusY)
            }
        }
    }

    @Test func mixedCurrenciesAreRefused() async {
        let count = Currency.all.count
        await propertyCheck(
            input: anyMinorUnits, anyMinorUnits, Gen.int(in: 0...(count - 1)), Gen.int(in: 1...(count - 1))
        ) { a, b, first, offset in
            let x = Money(minorUnits: a, currency: Currency.all[first])
            let y = Money(minorUnits: b, currency: Currency.all[(first + offset) % count])
            #expect(throws: MoneyError.mixedCurrencies(.addition(x, y))) { try x.adding(y) }
            #expect(throws: MoneyError.mixedCurrencies(.subtraction(x, y))) { try x.subtracting(y) }
            #expect(throws: MoneyError.mixedCurrencies(.comparison(x, y))) { try x.isLess(than: y) }
            #expect(throws: MoneyError.mixedCurrencies(.addition(x, y))) {
                try Money.sum([x, y], in: x.currency)
            }
            #expect(x != y)
        }
    }

    // MARK: Parsing examples

    @Test func parsesExactDecimalsIntoMinorUnits() throws {
        #expect(try Money(parsing: "12.30", currency: .usd).minorUnits == 1230)
        #expect(try Money(parsing: "12.340", currency: .usd).minorUnits == 1234)
        #expect(try Money(parsing: "-0.05", currency: .usd).minorUnits == -5)
        #expect(try Money(parsing: "+7", currency: .usd).minorUnits == 700)
        #expect(try Money(parsing: "007.50", currency: .usd).minorUnits == 750)
        #expect(try Money(parsing: "-0", currency: .usd) == .zero(.usd))
        #expect(try Money(parsing: "1500", currency: .jpy).minorUnits == 1500)
        #expect(try Money(parsing: "1500.000", currency: .jpy).minorUnits == 1500)
        #expect(try Money(parsing: "12.345", currency: .kwd).minorUnits == 12345)
        #expect(try Money(parsing: "0.0001", currency: .clf).minorUnits == 1)
        #expect(try Money(parsing: "12.30", currency: .usd).currency == .usd)
    }

    @Test func inexactValueIsAnErrorThatNamesValueCurrencyAndExponent() {
        #expect(throws: MoneyError.inexact(value: "12.345", currency: .usd)) {
            try Money(parsing: "12.345", currency: .usd)
        }
        #expect(throws: MoneyError.inexact(value: "1500.5", currency: .jpy)) {
            try Money(parsing: "1500.5", currency: .jpy)
        }
        #expect(throws: MoneyError.inexact(value: "0.00001", currency: .clf)) {
            try Money(parsing: "0.00001", currency: .clf)
        }
        #expect(
            MoneyError.inexact(value: "12.345", currency: .usd).description
                == "12.345 USD is not a whole number of minor units: USD has 2 decimal places (never rounded)")
        #expect(
            MoneyError.inexact(value: "1500.5", currency: .jpy).description
                == "1500.5 JPY is not a whole number of minor units: JPY has 0 decimal places (never rounded)")
    }

    @Test func int64LimitsParseAndOneMinorUnitBeyondIsOutOfRange() throws {
        #expect(try Money(parsing: "92233720368547758.07", currency: .usd).minorUnits == Int64.max)
        #expect(try Money(parsing: "-92233720368547758.08", currency: .usd).minorUnits == Int64.min)
        #expect(try Money(parsing: "9223372036854775807", currency: .jpy).minorUnits == Int64.max)
        #expect(throws: MoneyError.outOfRange(value: "92233720368547758.08", currency: .usd)) {
            try Money(parsing: "92233720368547758.08", currency: .usd)
        }
        #expect(throws: MoneyError.outOfRange(value: "-92233720368547758.09", currency: .usd)) {
            try Money(parsing: "-92233720368547758.09", currency: .usd)
        }
        #expect(throws: MoneyError.outOfRange(value: "99999999999999999999.99", currency: .usd)) {
            try Money(parsing: "99999999999999999999.99", currency: .usd)
        }
        #expect(
            MoneyError.outOfRange(value: "92233720368547758.08", currency: .usd).description
                == "92233720368547758.08 USD is out of range: 64-bit minor units hold "
                + "-92233720368547758.08 to 92233720368547758.07 USD")
    }

    @Test(
        "text that is not a plain decimal is refused",
        arguments: [
            "abc", "", "1e5", "1E5", "1,000.00", "1 000.00", " 1.00", "1.00 ", "\t1", "1.00\n", ".5", "5.", "-", "+",
            "+-1", "--1", "-+1", "NaN", "nan", "Infinity", "-Infinity", "1.2.3", "0x10", "1_000", "12.30USD",
            "$12.30", "\u{2212}5", "١٢", "１", "12,30",
        ])
    func nonDecimalTextIsRejected(text: String) {
        #expect(throws: MoneyError.notANumber(text)) { try Money(parsing: text, currency: .usd) }
    }

    @Test func notANumberDescriptionQuotesTheText() {
        #expect(
            MoneyError.notANumber("1,000.00").description
                == "\"1,000.00\" is not a decimal number: expected optional sign, digits, optional '.' and digits "
                + "(e.g. \"-12.30\"), without spaces, separators or exponent")
    }

    @Test func convertsPostgresNumericExactly() throws {
        #expect(try Money(#require(PostgresNumeric("12.3400")), currency: .usd).minorUnits == 1234)
        #expect(try Money(#require(PostgresNumeric("-1500")), currency: .jpy).minorUnits == -1500)
        #expect(throws: MoneyError.inexact(value: "12.345", currency: .usd)) {
            try Money(#require(PostgresNumeric("12.345")), currency: .usd)
        }
        #expect(throws: MoneyError.outOfRange(value: "99999999999999999999.99", currency: .usd)) {
            try Money(#require(PostgresNumeric("99999999999999999999.99")), currency: .usd)
        }
        #expect(throws: MoneyError.notANumber("NaN")) {
            try Money(#require(PostgresNumeric("NaN")), currency: .usd)
        }
        #expect(Money(minorUnits: -5, currency: .kwd).numeric.description == "-0.005")
    }

    // MARK: Formatting examples

    @Test func formatsWithExactlyTheCurrencysDecimalPlaces() {
        #expect(Money(minorUnits: 1230, currency: .usd).decimalString == "12.30")
        #expect(Money(minorUnits: -5, currency: .usd).decimalString == "-0.05")
        #expect(Money(minorUnits: 0, currency: .usd).decimalString == "0.00")
        #expect(Money(minorUnits: 1500, currency: .jpy).decimalString == "1500")
        #expect(Money(minorUnits: -1500, currency: .jpy).decimalString == "-1500")
        #expect(Money(minorUnits: 12345, currency: .kwd).decimalString == "12.345")
        #expect(Money(minorUnits: 1, currency: .clf).decimalString == "0.0001")
        #expect(Money(minorUnits: Int64.min, currency: .usd).decimalString == "-92233720368547758.08")
        #expect(Money(minorUnits: Int64.max, currency: .kwd).decimalString == "9223372036854775.807")
        #expect(Money(minorUnits: 1230, currency: .usd).description == "12.30 USD")
        #expect(Money(minorUnits: 1500, currency: .jpy).description == "1500 JPY")
    }

    // MARK: Arithmetic examples

    @Test func arithmeticWithinOneCurrency() throws {
        let price = Money(minorUnits: 1999, currency: .usd)
        #expect(try price.adding(Money(minorUnits: 1, currency: .usd)) == Money(minorUnits: 2000, currency: .usd))
        #expect(try price.subtracting(Money(minorUnits: 2000, currency: .usd)) == Money(minorUnits: -1, currency: .usd))
        #expect(try price.negated() == Money(minorUnits: -1999, currency: .usd))
        #expect(try price.multiplied(by: 3) == Money(minorUnits: 5997, currency: .usd))
        #expect(try price.multiplied(by: -2) == Money(minorUnits: -3998, currency: .usd))
        #expect(try price.multiplied(by: 0) == .zero(.usd))
        #expect(try Money.sum([price, price, price.negated()], in: .usd) == price)
        #expect(try Money.sum([Money](), in: .kwd) == .zero(.kwd))
        #expect(price.isPositive && !price.isNegative && !price.isZero)
    }

    @Test func overflowingArithmeticThrowsInsteadOfTrappingOrWrapping() {
        let max = Money(minorUnits: .max, currency: .usd)
        let min = Money(minorUnits: .min, currency: .usd)
        let cent = Money(minorUnits: 1, currency: .usd)
        #expect(throws: MoneyError.overflow(.addition(max, cent))) { try max.adding(cent) }
        #expect(throws: MoneyError.overflow(.subtraction(min, cent))) { try min.subtracting(cent) }
        #expect(throws: MoneyError.overflow(.negation(min))) { try min.negated() }
        #expect(throws: MoneyError.overflow(.multiplication(max, by: 2))) { try max.multiplied(by: 2) }
        #expect(throws: MoneyError.overflow(.multiplication(min, by: -1))) { try min.multiplied(by: -1) }
        // The running total overflows even though the last amount would bring it back.
        #expect(throws: MoneyError.overflow(.addition(max, cent))) {
            try Money.sum([max, cent, cent.negated()], in: .usd)
        }
        #expect(
            MoneyError.overflow(.addition(max, cent)).description
                == "92233720368547758.07 USD + 0.01 USD overflows 64-bit USD minor units")
        #expect(
            MoneyError.overflow(.multiplication(max, by: 2)).description
                == "92233720368547758.07 USD × 2 overflows 64-bit USD minor units")
    }

    @Test func mixedCurrencyErrorSaysWhichCurrencies() {
        let usd = Money(minorUnits: 1230, currency: .usd)
        let eur = Money(minorUnits: 100, currency: .eur)
        #expect(
            MoneyError.mixedCurrencies(.addition(usd, eur)).description
                == "cannot compute 12.30 USD + 1.00 EUR: it mixes USD and EUR")
        #expect(throws: MoneyError.mixedCurrencies(.addition(Money.zero(.usd), eur))) {
            try Money.sum([eur], in: .usd)
        }
    }

    @Test func comparisonWorksWithinACurrencyAndCanonicalOrderSortsAcrossCurrencies() throws {
        let small = Money(minorUnits: 5, currency: .usd)
        let large = Money(minorUnits: 500, currency: .usd)
        #expect(try small.isLess(than: large))
        #expect(try !large.isLess(than: small))
        #expect(try !small.isLess(than: small))
        let euro = Money(minorUnits: 100_000, currency: .eur)
        #expect([large, euro, small].sorted(by: Money.canonicalOrder) == [euro, small, large])
    }

    // MARK: Codable

    @Test func encodesMinorUnitsAsAJSONIntegerWithTheCurrencyCode() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = { (money: Money) in String(decoding: try encoder.encode(money), as: UTF8.self) }
        #expect(try json(Money(minorUnits: 1230, currency: .usd)) == #"{"amount":1230,"currency":"USD"}"#)
        #expect(
            try json(Money(minorUnits: .max, currency: .jpy)) == #"{"amount":9223372036854775807,"currency":"JPY"}"#)
        #expect(
            try json(Money(minorUnits: .min, currency: .kwd)) == #"{"amount":-9223372036854775808,"currency":"KWD"}"#)
    }

    @Test func decodesExactlyAndRefusesNonIntegerAmountsOrUnknownCurrencies() throws {
        let decode = { (json: String) in try JSONDecoder().decode(Money.self, from: Data(json.utf8)) }
        #expect(
            try decode(#"{"amount":-9223372036854775808,"currency":"USD"}"#)
                == Money(minorUnits: .min, currency: .usd))
        #expect(try decode(#"{"currency":"KWD","amount":12345}"#) == Money(minorUnits: 12345, currency: .kwd))
        #expect(throws: DecodingError.self) { try decode(#"{"amount":12.5,"currency":"USD"}"#) }
        #expect(throws: DecodingError.self) { try decode(#"{"amount":"1230","currency":"USD"}"#) }
        #expect(throws: DecodingError.self) { try decode(#"{"amount":9223372036854775808,"currency":"USD"}"#) }
        #expect(throws: DecodingError.self) { try decode(#"{"amount":1230,"currency":"usd"}"#) }
        #expect(throws: DecodingError.self) { try decode(#"{"amount":1230,"currency":"XXY"}"#) }
        #expect(throws: DecodingError.self) { try decode(#"{"amount":1230}"#) }
    }
}
