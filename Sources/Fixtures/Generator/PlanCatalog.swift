/// One row of `legacy.plans`, with the facts the simulation needs about it.
struct Plan {
    let id: Int64
    let code: String
    let name: String
    /// The current price (what `plans.price` says), in minor units.
    let price: Int64
    /// The price before an in-place edit, and when the edit happened (sin 3).
    let earlierPrice: Int64?
    let priceEditedAt: Instant?
    let intervalMonths: Int
    let currency: Currency
    let trialDays: Int
    let perSeat: Bool
    /// Business plans may bill metered usage.
    let business: Bool
    let createdAt: Instant
    /// When the plan was archived (still billed to those already on it).
    let archivedAt: Instant?
    /// Signup weight among the currency's plans.
    let weight: Int

    var interval: String { intervalMonths == 12 ? "year" : "month" }
    var updatedAt: Instant { max(createdAt, priceEditedAt ?? createdAt, archivedAt ?? createdAt) }

    /// The price charged for a period starting at `t`: the old price before an in-place edit.
    func price(at t: Instant) -> Int64 {
        if let earlierPrice, let priceEditedAt, t < priceEditedAt { return earlierPrice }
        return price
    }

    /// Whether a new subscription may start on this plan at `t`.
    func isOffered(at t: Instant) -> Bool {
        t >= createdAt && (archivedAt.map { t < $0 } ?? true)
    }
}

/// The plan catalog of the generated database: the reference seed's eleven plans plus a few
/// more, with launch dates, an archived plan and one in-place price edit placed relative to the
/// generation window.
struct PlanCatalog {
    let plans: [Plan]

    init(window: GenerationWindow) {
        let start = window.start
        func at(_ months: Int, days: Int = 0) -> Instant { Clock.adding(months: months, to: start) + Int64(days) * Clock.day }
        // Pro's price is edited in place five months before the window ends (1 Jun 2025 09:00
        // for the default window, as in the reference seed), when the window is long enough.
        let editMonths = window.months - 5
        let proEdit: Instant? = editMonths >= 6 ? at(editMonths) + 9 * Clock.hour : nil
        plans = [
            Plan(id: 1, code: "starter-monthly", name: "Starter", price: 1900, earlierPrice: nil, priceEditedAt: nil,
                 intervalMonths: 1, currency: .usd, trialDays: 14, perSeat: false, business: false,
                 createdAt: at(0), archivedAt: nil, weight: 34),
            Plan(id: 2, code: "pro-monthly", name: "Pro", price: proEdit == nil ? 3900 : 4900,
                 earlierPrice: proEdit == nil ? nil : 3900, priceEditedAt: proEdit,
                 intervalMonths: 1, currency: .usd, trialDays: 14, perSeat: false, business: false,
                 createdAt: at(0), archivedAt: nil, weight: 30),
            Plan(id: 3, code: "business-monthly", name: "Business", price: 9900, earlierPrice: nil, priceEditedAt: nil,
                 intervalMonths: 1, currency: .usd, trialDays: 0, perSeat: false, business: true,
                 createdAt: at(0), archivedAt: nil, weight: 12),
            Plan(id: 4, code: "pro-yearly", name: "Pro (annual)", price: 39000, earlierPrice: nil, priceEditedAt: nil,
                 intervalMonths: 12, currency: .usd, trialDays: 0, perSeat: false, business: false,
                 createdAt: at(8), archivedAt: nil, weight: 8),
            Plan(id: 5, code: "basic-yearly-2022", name: "Basic (legacy, annual)", price: 9900, earlierPrice: nil,
                 priceEditedAt: nil, intervalMonths: 12, currency: .usd, trialDays: 0, perSeat: false, business: false,
                 createdAt: at(0), archivedAt: at(6) - 7 * Clock.hour, weight: 6),
            Plan(id: 6, code: "team-seat-monthly", name: "Team (per seat)", price: 1200, earlierPrice: nil,
                 priceEditedAt: nil, intervalMonths: 1, currency: .usd, trialDays: 0, perSeat: true, business: false,
                 createdAt: at(17), archivedAt: nil, weight: 10),
            Plan(id: 7, code: "pro-monthly-eur", name: "Pro", price: 4500, earlierPrice: nil, priceEditedAt: nil,
                 intervalMonths: 1, currency: .eur, trialDays: 14, perSeat: false, business: false,
                 createdAt: at(0), archivedAt: nil, weight: 35),
            Plan(id: 8, code: "business-monthly-eur", name: "Business", price: 9000, earlierPrice: nil,
                 priceEditedAt: nil, intervalMonths: 1, currency: .eur, trialDays: 0, perSeat: false, business: true,
                 createdAt: at(0), archivedAt: nil, weight: 15),
            Plan(id: 9, code: "starter-monthly-gbp", name: "Starter", price: 1500, earlierPrice: nil,
                 priceEditedAt: nil, intervalMonths: 1, currency: .gbp, trialDays: 14, perSeat: false, business: false,
                 createdAt: at(12, days: 14), archivedAt: nil, weight: 45),
            Plan(id: 10, code: "pro-monthly-jpy", name: "Pro", price: 5500, earlierPrice: nil, priceEditedAt: nil,
                 intervalMonths: 1, currency: .jpy, trialDays: 14, perSeat: false, business: false,
                 createdAt: at(15), archivedAt: nil, weight: 70),
            Plan(id: 11, code: "pro-monthly-kwd", name: "Pro", price: 14875, earlierPrice: nil, priceEditedAt: nil,
                 intervalMonths: 1, currency: .kwd, trialDays: 0, perSeat: false, business: false,
                 createdAt: at(15), archivedAt: nil, weight: 70),
            Plan(id: 12, code: "starter-monthly-eur", name: "Starter", price: 1700, earlierPrice: nil,
                 priceEditedAt: nil, intervalMonths: 1, currency: .eur, trialDays: 14, perSeat: false, business: false,
                 createdAt: at(0), archivedAt: nil, weight: 30),
            Plan(id: 13, code: "pro-monthly-gbp", name: "Pro", price: 3900, earlierPrice: nil, priceEditedAt: nil,
                 intervalMonths: 1, currency: .gbp, trialDays: 14, perSeat: false, business: false,
                 createdAt: at(0), archivedAt: nil, weight: 40),
            Plan(id: 14, code: "business-yearly-eur", name: "Business (annual)", price: 90000, earlierPrice: nil,
                 priceEditedAt: nil, intervalMonths: 12, currency: .eur, trialDays: 0, perSeat: false, business: true,
                 createdAt: at(6), archivedAt: nil, weight: 8),
            Plan(id: 15, code: "business-monthly-jpy", name: "Business", price: 12000, earlierPrice: nil,
                 priceEditedAt: nil, intervalMonths: 1, currency: .jpy, trialDays: 0, perSeat: false, business: true,
                 createdAt: at(15), archivedAt: nil, weight: 30),
            Plan(id: 16, code: "business-monthly-kwd", name: "Business", price: 29750, earlierPrice: nil,
                 priceEditedAt: nil, intervalMonths: 1, currency: .kwd, trialDays: 0, perSeat: false, business: true,
                 createdAt: at(15), archivedAt: nil, weight: 30),
            Plan(id: 17, code: "team-seat-monthly-eur", name: "Team (per seat)", price: 1100, earlierPrice: nil,
                 priceEditedAt: nil, intervalMonths: 1, currency: .eur, trialDays: 0, perSeat: true, business: false,
                 createdAt: at(17), archivedAt: nil, weight: 12),
        ]
    }

    func plan(_ id: Int64) -> Plan { plans[Int(id) - 1] }

    /// The plans a new subscriber in `currency` may choose at `t`, in catalog order.
    func offered(_ currency: Currency, at t: Instant) -> [Plan] {
        plans.filter { $0.currency == currency && $0.isOffered(at: t) }
    }

    /// When the first plan in `currency` that is never archived launched (`nil`: no such plan).
    func launch(of currency: Currency) -> Instant? {
        plans.filter { $0.currency == currency && $0.archivedAt == nil }.map(\.createdAt).min()
    }

    /// Whether a customer created at `t` may take `currency`: from `t` on, some plan in it is
    /// offered at every instant (one that launched by `t` and is never archived), so a signup or a
    /// comeback at any later time finds one.
    func acceptsSignups(in currency: Currency, from t: Instant) -> Bool {
        launch(of: currency).map { t >= $0 } ?? false
    }

    /// Plans `plan`'s subscriber could switch to at `t`: same currency, interval and seat model.
    func alternatives(to plan: Plan, at t: Instant) -> [Plan] {
        plans.filter {
            $0.id != plan.id && $0.currency == plan.currency && $0.intervalMonths == plan.intervalMonths
                && $0.perSeat == plan.perSeat && $0.isOffered(at: t)
        }
    }
}
