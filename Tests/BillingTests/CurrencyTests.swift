import Billing
import Foundation
import Testing

@Suite("Currency: ISO 4217 codes and exponents")
struct CurrencyTests {
    /// Exponents written from ISO 4217 List One, not read back from the table.
    static let expectedExponents: [(String, Int)] = [
        ("USD", 2), ("EUR", 2), ("GBP", 2), ("CAD", 2), ("AUD", 2), ("CHF", 2),
        ("JPY", 0), ("KRW", 0), ("ISK", 0), ("VND", 0), ("XOF", 0), ("XAF", 0), ("XPF", 0),
        ("CLP", 0), ("PYG", 0), ("UGX", 0), ("VUV", 0), ("UYI", 0),
        ("KWD", 3), ("BHD", 3), ("JOD", 3), ("OMR", 3), ("TND", 3), ("IQD", 3), ("LYD", 3),
        ("CLF", 4), ("UYW", 4),
        ("MGA", 2), ("MRU", 2), ("IDR", 2), ("HUF", 2), ("XCD", 2), ("XCG", 2), ("XAD", 2),
        ("ZWG", 2), ("SLE", 2), ("VES", 2), ("VED", 2), ("USN", 2), ("CHE", 2), ("CHW", 2),
    ]

    @Test("exponent matches ISO 4217", arguments: expectedExponents)
    func exponentMatchesISO4217(code: String, exponent: Int) throws {
        let currency = try Currency(code: code)
        #expect(currency.code == code)
        #expect(currency.minorUnitExponent == exponent)
        #expect(!currency.isWithdrawn)
    }

    @Test func everyExponentOtherThanTwoIsOneOfTheKnownExceptions() {
        let zero: Set = [
            "BIF", "BYR", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
            "VUV", "XAF", "XOF", "XPF",
        ]
        let three: Set = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"]
        let four: Set = ["CLF", "UYW"]
        for currency in Currency.all {
            let expected =
                zero.contains(currency.code)
                ? 0 : three.contains(currency.code) ? 3 : four.contains(currency.code) ? 4 : 2
            #expect(currency.minorUnitExponent == expected, "\(currency.code)")
        }
    }

    @Test func tableHoldsAllActiveCodesOfListOneAndTheRecentlyWithdrawnOnes() {
        let active = Currency.all.filter { !$0.isWithdrawn }
        // List One of 2026-01-01: 178 alphabetic codes, 13 of them without a minor unit.
        #expect(active.count == 165)
        #expect(
            Set(Currency.all.filter(\.isWithdrawn).map(\.code)) == [
                "ANG", "BGN", "BYR", "CUC", "HRK", "LTL", "LVL", "MRO", "SLL", "STD", "VEF", "ZWL",
            ])
        #expect(Set(Currency.all.map(\.code)).count == Currency.all.count)
        #expect(Currency.all.map(\.code) == Currency.all.map(\.code).sorted())
        #expect(Currency.all.allSatisfy { $0.code.count == 3 && $0.code.allSatisfy { $0.isASCII && $0.isUppercase } })
    }

    @Test func staticConstantsAgreeWithTheTable() throws {
        let constants: [Currency] = [.usd, .eur, .gbp, .cad, .aud, .chf, .jpy, .krw, .kwd, .bhd, .clf]
        for constant in constants {
            #expect(try Currency(code: constant.code) == constant)
            #expect(Currency.all.contains(constant))
        }
    }

    @Test func tableCarriesNumericCodeNameAndFundFlag() throws {
        #expect(Currency.usd.numericCode == 840)
        #expect(Currency.usd.name == "US Dollar")
        #expect(!Currency.usd.isFund)
        #expect(Currency.clf.isFund)
        #expect(try Currency(code: "HRK").isWithdrawn)
        #expect(try Currency(code: "HRK").minorUnitExponent == 2)
        #expect(Currency.kwd.description == "KWD")
    }

    @Test func unknownCodeIsRejected() {
        #expect(throws: CurrencyError.unknownCode("XXY")) { try Currency(code: "XXY") }
        #expect(throws: CurrencyError.unknownCode("ABC")) { try Currency(code: "ABC") }
    }

    @Test(
        "codes that are not three uppercase ASCII letters are refused, never normalized",
        arguments: ["usd", "Usd", " USD", "USD ", "US", "USDX", "", "ÜSD", "U$D", "840"])
    func malformedCodeIsRejected(code: String) {
        #expect(throws: CurrencyError.malformedCode(code)) { try Currency(code: code) }
    }

    @Test(
        "codes without a minor unit cannot hold money",
        arguments: ["XAU", "XAG", "XPT", "XPD", "XBA", "XBB", "XBC", "XBD", "XDR", "XSU", "XUA", "XTS", "XXX"])
    func codeWithoutMinorUnitIsRejected(code: String) {
        #expect(throws: CurrencyError.noMinorUnit(code)) { try Currency(code: code) }
    }

    @Test func errorDescriptionsNameTheProblem() {
        #expect(
            CurrencyError.malformedCode("usd").description
                == "\"usd\" is not a currency code: expected three uppercase ASCII letters such as \"USD\"")
        #expect(CurrencyError.unknownCode("XXY").description == "\"XXY\" is not an ISO 4217 currency code")
        #expect(
            CurrencyError.noMinorUnit("XAU").description
                == "XAU has no minor unit in ISO 4217, so it cannot hold a money amount")
        let long = String(repeating: "x", count: 1000)
        #expect(
            CurrencyError.malformedCode(long).description.hasPrefix(
                "\"\(String(repeating: "x", count: 40))… (1000 bytes)\" is not"))
    }

    @Test func codableAsItsCodeString() throws {
        let data = try JSONEncoder().encode([Currency.usd, Currency.jpy])
        #expect(String(decoding: data, as: UTF8.self) == #"["USD","JPY"]"#)
        #expect(try JSONDecoder().decode([Currency].self, from: Data(#"["KWD","EUR"]"#.utf8)) == [.kwd, .eur])
    }

    @Test func decodingAnUnknownOrLowercaseCodeFails() {
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Currency.self, from: Data(#""XXY""#.utf8)) }
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Currency.self, from: Data(#""usd""#.utf8)) }
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Currency.self, from: Data(#""XAU""#.utf8)) }
    }
}
