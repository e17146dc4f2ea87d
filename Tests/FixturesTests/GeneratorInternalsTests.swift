@testable import Fixtures
import Testing

@Suite("Generator building blocks")
struct GeneratorInternalsTests {
    @Test func theRandomStreamIsFixedForASeedAndStream() {
        var a = Xoshiro256(seed: 1, stream: 7)
        var b = Xoshiro256(seed: 1, stream: 7)
        var c = Xoshiro256(seed: 1, stream: 8)
        let first = (0..<8).map { _ in a.next() }
        #expect(first == (0..<8).map { _ in b.next() })
        #expect(first != (0..<8).map { _ in c.next() })
        var d = Xoshiro256(seed: 3, stream: 0)
        for _ in 0..<10_000 {
            let x = d.below(7)
            #expect(x < 7)
        }
    }

    @Test func amountsAreWrittenAtTheirCurrencysScale() {
        #expect(MinorUnits.text(1900, .usd) == "19.00")
        #expect(MinorUnits.text(-2450, .usd) == "-24.50")
        #expect(MinorUnits.text(5, .eur) == "0.05")
        #expect(MinorUnits.text(5500, .jpy) == "5500")
        #expect(MinorUnits.text(14875, .kwd) == "14.875")
        #expect(MinorUnits.text(0, .kwd) == "0.000")
        #expect(MinorUnits.unitText(1900, .usd) == "19.0000")
        #expect(MinorUnits.unitText(14875, .kwd) == "14.8750")
        #expect(MinorUnits.rateText(19000) == "0.19")
        #expect(MinorUnits.rateText(8875) == "0.08875")
        #expect(MinorUnits.rateText(0) == "0")
    }

    @Test func roundingIsHalfAwayFromZeroLikePostgres() {
        #expect(MinorUnits.divideRounded(5, 10) == 1)
        #expect(MinorUnits.divideRounded(-5, 10) == -1)
        #expect(MinorUnits.divideRounded(14, 10) == 1)
        #expect(MinorUnits.divideRounded(-15, 10) == -2)
        // 36.00 × 0.19 = 6.84 (story 23).
        #expect(MinorUnits.divideRounded(3600 * 19000, 100_000) == 684)
    }

    @Test func billingPeriodsStepFromTheAnchorAndClampTheDay() {
        let anchor = Clock.instant(year: 2024, month: 1, day: 31, hour: 9, minute: 14)
        #expect(Clock.timestampText(Clock.adding(months: 1, to: anchor)) == "2024-02-29 09:14:00")
        #expect(Clock.timestampText(Clock.adding(months: 2, to: anchor)) == "2024-03-31 09:14:00")
        #expect(Clock.timestampText(Clock.adding(months: 13, to: anchor)) == "2025-02-28 09:14:00")
        #expect(Clock.dateText(Clock.instant(year: 1999, month: 12, day: 31)) == "1999-12-31")
        #expect(Clock.humanDate(anchor) == "31 Jan 2024")
        for days: Int64 in stride(from: -800_000, through: 800_000, by: 997) {
            let (y, m, d) = Clock.civil(days: days)
            #expect(Clock.days(year: y, month: m, day: d) == days)
        }
    }

    @Test func aCustomersStoryDependsOnlyOnTheSeedAndItsId() throws {
        let window = GenerationWindow(start: Clock.instant(year: 2023, month: 1, day: 1), months: 34)
        let catalog = PlanCatalog(window: window)
        var one = StoryGenerator(catalog: catalog, window: window, seed: 5, customerCount: 1_000)
        var two = StoryGenerator(catalog: catalog, window: window, seed: 5, customerCount: 1_000)
        for id in 1...20 { try one.generate(customer: Int64(id)) }
        for id in 1...20 { try two.generate(customer: Int64(id)) }
        #expect(one.rows.customer.email == two.rows.customer.email)
        #expect(one.rows.invoices.map(\.total) == two.rows.invoices.map(\.total))
        #expect(one.ids.invoice == two.ids.invoice)
    }

    /// Issue 11 §2: seed 42 at 3,000 customers trapped ("weightedIndex needs a positive weight").
    /// A customer created in the hour before JPY and KWD launched could take one of them (the rule
    /// looked at `created + 1 hour`), and its subscription, a few minutes after signup, then found
    /// no plan in its currency. From the moment a customer may take a currency on, every later
    /// instant must offer a plan in it: the first signup, a comeback, a concurrent subscription.
    @Test(arguments: [(2023, 1, 1, 34), (2024, 2, 29, 16), (1990, 1, 31, 120), (2200, 12, 31, 1)])
    func aCustomerTakesACurrencyOnlyOnceAPlanInItIsOfferedFromThenOn(
        year: Int, month: Int, day: Int, months: Int
    ) {
        let window = GenerationWindow(start: Clock.instant(year: year, month: month, day: day), months: months)
        let catalog = PlanCatalog(window: window)
        var failures: [String] = []
        for currency in Currency.allCases {
            guard let launch = catalog.launch(of: currency) else {
                failures.append("\(currency.code) has no plan that stays offered")
                continue
            }
            if !catalog.acceptsSignups(in: currency, from: launch) { failures.append("\(currency.code) refused at its launch") }
            for created in stride(from: launch - 3 * Clock.hour, through: launch + 3 * Clock.hour, by: Int(Clock.minute))
            where catalog.acceptsSignups(in: currency, from: created) {
                for delay in [Clock.minute, 30 * Clock.minute, Clock.day, 400 * Clock.day] where created + delay < window.clock {
                    if catalog.offered(currency, at: created + delay).isEmpty {
                        failures.append("\(currency.code) created \(Clock.timestampText(created)) + \(delay) s: no plan")
                    }
                }
            }
        }
        let failed = failures.count
        #expect(failed == 0, "first: \(failures.prefix(3))")
        // A launch inside the window really is refused before it happens (the rule is not vacuous).
        let jpyLaunch = catalog.launch(of: .jpy) ?? window.start
        let jpyRefusedAMinuteBeforeItsLaunch = !catalog.acceptsSignups(in: .jpy, from: jpyLaunch - Clock.minute)
        #expect(jpyRefusedAMinuteBeforeItsLaunch)
        let usdAcceptedFromTheStart = catalog.acceptsSignups(in: .usd, from: window.start)
        #expect(usdAcceptedFromTheStart)
    }
}
