/// The span of time a generated database covers.
///
/// Everything that *happens* lies in `[start, clock)`; only forward-looking boundaries (the end
/// of a period in progress, a running trial's end) may lie later, as in the reference seed.
struct GenerationWindow {
    let start: Instant
    let months: Int
    /// The generator's "now": the end of the window (exclusive).
    let clock: Instant

    init(start: Instant, months: Int) {
        self.start = start
        self.months = months
        self.clock = Clock.adding(months: months, to: start)
    }

    func monthsAfterStart(_ months: Int, days: Int = 0) -> Instant {
        Clock.adding(months: months, to: start) + Int64(days) * Clock.day
    }

    /// The ORM callback that writes `subscription_history` was added here (mid-January of the
    /// second year: 15 Jan 2024 for the default window).
    var auditCallbackAt: Instant { monthsAfterStart(12, days: 14) }
    /// Trials started before this got a 0.00 invoice (1 Jul 2024 for the default window).
    var trialInvoicesUntil: Instant { monthsAfterStart(18) }
    /// Customers created before this may have `customers.currency` NULL.
    var nullCustomerCurrencyUntil: Instant { monthsAfterStart(9) }
    /// Invoices created before this may have `invoices.currency` NULL.
    var nullInvoiceCurrencyUntil: Instant { monthsAfterStart(6) }
}

/// Generates one customer's whole history — signup, subscriptions, invoices, payments, credit —
/// by simulating it forward in time, so every cached column is computed from the rows it caches.
///
/// A customer's random choices come from its own generator stream, seeded from (seed,
/// customer id); ids are dense per table and follow generation order. The rows for one customer
/// are built in ``rows`` and emitted before the next customer starts, so memory does not grow
/// with the number of customers.
struct StoryGenerator {
    let catalog: PlanCatalog
    let window: GenerationWindow
    let seed: UInt64
    let customerCount: Int
    private let numberWidth: Int

    private(set) var ids = IDSequences()
    private(set) var rows = CustomerRows()

    private var rng = Xoshiro256(seed: 0, stream: 0)
    private var profile = Profile()
    private var invoiceNumber = 0
    private var creditNoteNumber = 0
    /// Unapplied credit, oldest first: consumed first-in first-out when invoices finalize.
    private var pool: [CreditEntry] = []
    /// The latest event of the current customer (its `updated_at`).
    private var lastActivity: Instant = 0

    private struct Profile {
        var method: PaymentMethod = .card
        var taxRate: Int64?
        var taxLabel = ""
        var couponPercent: Int64 = 0
        var couponCode = ""
        var couponInvoicesLeft = 0
        /// Customers with two concurrent subscriptions get no credit and no one-off invoices,
        /// so their subscriptions can be simulated one after the other.
        var allowsCredit = true
    }

    private struct CreditEntry {
        var noteIndex: Int?
        var remaining: Int64
    }

    private struct PendingLine {
        var kind: LineKind
        var description: String
        var quantity: Int64
        var unitAmount4: Int64
        var amount: Int64
        var periodStart: Instant?
        var periodEnd: Instant?
    }

    /// How a subscription row came to be.
    private enum Link {
        case signup
        /// A mid-period upgrade: the new row's first invoice credits the unused time.
        case upgrade(previous: Int, credit: Int64, from: Instant, to: Instant, planName: String)
        /// A downgrade at the old row's period end.
        case downgrade(previous: Int)
    }

    /// How a subscription row's story ended.
    private enum Ending {
        /// Still billing at the clock (or trialing, past due, pending cancellation).
        case running
        /// Stopped billing for good without ending (unpaid, paused).
        case stopped
        /// Ended at this instant (canceled, trial not converted, incomplete expired).
        case ended(Instant)
        /// Replaced by a new row on another plan, starting at this instant.
        case replaced(by: Plan, at: Instant, link: Link)
    }

    private enum Collection {
        case paid(Instant)
        /// Not (fully) paid at the clock, or paid later than the next period start.
        case outstanding
        /// The subscription stopped billing (unpaid).
        case stopped
        case ended(Instant)
    }

    init(catalog: PlanCatalog, window: GenerationWindow, seed: UInt64, customerCount: Int) {
        self.catalog = catalog
        self.window = window
        self.seed = seed
        self.customerCount = customerCount
        self.numberWidth = max(4, String(customerCount).count)
    }

    // MARK: - Customer

    /// Builds customer `id`'s rows into ``rows`` (ids 1…N, in order).
    ///
    /// - Throws: ``FixtureError`` with code ``FixtureError/Code/generation`` when the story
    ///   reaches a state the simulation cannot continue from (a defect of the generator, never of
    ///   the input); the message names the seed and the customer, which reproduce it.
    mutating func generate(customer id: Int64) throws(FixtureError) {
        rows.reset()
        rng = Xoshiro256(seed: seed, stream: UInt64(id))
        pool.removeAll(keepingCapacity: true)
        invoiceNumber = 0
        creditNoteNumber = 0
        ids.customer = id

        let created = signupInstant(id)
        var currency = Currency.allCases[rng.weightedIndex([70, 16, 8, 3, 3])]
        // A currency whose plans launch later is not offered yet: the customer's subscription
        // starts minutes after `created`, and must find a plan in its currency then.
        if !catalog.acceptsSignups(in: currency, from: created) { currency = .usd }
        let first = rng.pick(Vocabulary.firstNames)
        let last = rng.pick(Vocabulary.lastNames)
        let company = rng.pick(Vocabulary.companyFirst) + rng.pick(Vocabulary.companySecond)
        let name = company + " " + rng.pick(Vocabulary.companySuffix)
        let email =
            rng.chance(0.5)
            ? "\(first).\(last)@\(company.lowercased()).example"
            : "\(rng.pick(["billing", "accounts", "finance", "ops", "admin", "hello", "team"]))@\(company.lowercased()).example"
        rows.customer = CustomerRow(
            id: id, email: email, name: name, currency: currency, moneyCurrency: currency,
            timezone: rng.pick(Vocabulary.timezones(currency)), balance: 0, creditBalance: 0, deletedAt: nil,
            createdAt: created, updatedAt: created)
        // Sin 10: early customers got a currency only when the app first needed one.
        if currency == .usd, created < window.nullCustomerCurrencyUntil, rng.chance(0.25) { rows.customer.currency = nil }
        profile = makeProfile(currency)

        let kind = rng.weightedIndex([4, 1, 95])
        if kind == 0 {
            lead(created)
        } else if kind == 1 {
            try servicesOnly(created)
        } else {
            try subscriber(created)
        }
        finishCustomer()
    }

    /// Signups grow linearly over the window (three times as many at the end as at the start);
    /// customer ids follow signup order.
    private mutating func signupInstant(_ id: Int64) -> Instant {
        let u = (Double(id - 1) + rng.unit()) / Double(customerCount)
        let f = ((1 + 8 * u).squareRoot() - 1) / 2
        let span = Double(window.clock - 2 * Clock.day - window.start)
        let offset = Int64(f * span)
        return window.start + offset - offset % Clock.minute
    }

    private mutating func makeProfile(_ currency: Currency) -> Profile {
        var p = Profile()
        switch currency {
        case .eur:
            let i = rng.weightedIndex([40, 25, 20, 15])
            p.taxRate = [19000, 20000, 21000, 0][i]
            p.taxLabel = ["VAT 19%", "VAT 20%", "VAT 21%", ""][i]
        case .gbp:
            p.taxRate = 20000
            p.taxLabel = "VAT 20%"
        case .jpy:
            p.taxRate = 10000
            p.taxLabel = "Consumption tax 10%"
        case .kwd:
            p.taxRate = nil
        case .usd:
            if rng.chance(0.15) {
                let i = rng.weightedIndex([40, 35, 25])
                p.taxRate = [6250, 7000, 8875][i]
                p.taxLabel = ["Sales tax 6.25%", "Sales tax 7%", "Sales tax 8.875%"][i]
            }
        }
        if rng.chance(0.06) {
            let i = rng.weightedIndex([70, 30])
            p.couponPercent = [20, 25][i]
            p.couponCode = ["WELCOME20", "LAUNCH25"][i]
            p.couponInvoicesLeft = 3
        }
        return p
    }

    private mutating func choosePaymentMethod(for plan: Plan?) {
        let currency = rows.customer.moneyCurrency
        if plan?.business ?? true, rng.chance(0.3) {
            profile.method = .bankTransfer
        } else if currency == .kwd, rng.chance(0.5) {
            profile.method = .bankTransfer
        } else if currency == .usd, rng.chance(0.05) {
            profile.method = .achDebit
        } else if rng.chance(0.05) {
            profile.method = .bankTransfer
        } else {
            profile.method = .card
        }
    }

    /// A lead who never subscribed: no money, often no currency, sometimes deleted.
    private mutating func lead(_ created: Instant) {
        if rng.chance(0.5) { rows.customer.currency = nil }
        if rng.chance(0.3) {
            let deleted = created + rng.int64(1...200) * Clock.day + rng.int64(0...86_399)
            if deleted < window.clock {
                rows.customer.deletedAt = deleted
                touch(deleted)
            }
        }
    }

    /// A customer billed only for services (one-off invoices, no subscription), by bank transfer.
    private mutating func servicesOnly(_ created: Instant) throws(FixtureError) {
        profile.method = .bankTransfer
        var t = created + rng.int64(1...72) * Clock.hour
        for _ in 0..<rng.int(1...3) {
            guard t < window.clock else { break }
            try oneOff(at: t)
            t += rng.int64(20...200) * Clock.day
        }
    }

    private mutating func subscriber(_ created: Instant) throws(FixtureError) {
        let currency = rows.customer.moneyCurrency
        var start = created + rng.int64(1...30) * Clock.minute
        var plan = try signupPlan(currency, at: start)
        choosePaymentMethod(for: plan)
        let teamPlan = catalog.plans.first { $0.perSeat && $0.currency == currency }
        let concurrentStart = start + rng.int64(0...400) * Clock.day
        let concurrent =
            teamPlan.map { !plan.perSeat && $0.isOffered(at: concurrentStart) && concurrentStart < window.clock - 2 * Clock.day }
            ?? false
        let wantsConcurrent = concurrent && rng.chance(0.02)
        profile.allowsCredit = !wantsConcurrent

        var link = Link.signup
        var quantity: Int64 = plan.perSeat ? rng.int64(2...25) : 1
        var endedAt: Instant?
        chain: while true {
            switch try runSubscription(plan: plan, quantity: quantity, start: start, link: link) {
            case .running, .stopped:
                endedAt = nil
                break chain
            case .replaced(let next, let at, let nextLink):
                plan = next
                start = at
                link = nextLink
                quantity = try lastSubscription().quantity
            case .ended(let at):
                endedAt = at
                // Some churned customers come back later with a new signup (no
                // previous_subscription_id: story 41).
                let comeback = max(at, try lastSubscription().periodEnd ?? at) + rng.int64(20...300) * Clock.day
                guard !wantsConcurrent, rng.chance(0.08), comeback < window.clock - 2 * Clock.day else { break chain }
                start = comeback
                plan = try signupPlan(currency, at: start)
                quantity = plan.perSeat ? rng.int64(2...25) : 1
                link = .signup
                endedAt = nil
            }
        }
        if wantsConcurrent, let teamPlan {
            _ = try runSubscription(plan: teamPlan, quantity: rng.int64(2...12), start: concurrentStart, link: .signup)
        } else if let endedAt, rng.chance(0.12) {
            // Soft delete (sin 14): the rows and the PII stay; the customer may still owe.
            let deleted = endedAt + rng.int64(1...90) * Clock.day + rng.int64(0...86_399)
            if deleted < window.clock {
                rows.customer.deletedAt = deleted
                touch(deleted)
            }
        }
    }

    /// A plan a new subscriber in `currency` picks at `t`, by the plans' signup weights.
    private mutating func signupPlan(_ currency: Currency, at t: Instant) throws(FixtureError) -> Plan {
        let offered = catalog.offered(currency, at: t)
        guard offered.contains(where: { $0.weight > 0 }) else {
            throw inconsistency(
                "no \(currency.code) plan is offered at \(Clock.timestampText(t)) for a signup "
                    + "(the customer was created \(Clock.timestampText(rows.customer.createdAt)); "
                    + "\(currency.code) launches \(catalog.launch(of: currency).map(Clock.timestampText) ?? "never"))")
        }
        return offered[rng.weightedIndex(offered.map(\.weight))]
    }

    /// The subscription row ``runSubscription(plan:quantity:start:link:)`` appended last.
    private func lastSubscription() throws(FixtureError) -> SubscriptionRow {
        guard let last = rows.subscriptions.last else { throw inconsistency("a subscription ended before any was created") }
        return last
    }

    /// A defect of the generator met while building the current customer, with what reproduces it.
    private func inconsistency(_ what: String) -> FixtureError {
        FixtureError(
            code: .generation,
            message: "the generator cannot build customer \(ids.customer) of \(customerCount) (seed \(seed), window "
                + "\(Clock.timestampText(window.start)) + \(window.months) months): \(what)")
    }

    /// Derives the customer's caches from its rows.
    private mutating func finishCustomer() {
        var owed: Int64 = 0
        for invoice in rows.invoices where invoice.status == .open || invoice.status == .uncollectible {
            owed += invoice.amountDue
        }
        let credit = pool.reduce(0) { $0 + $1.remaining }
        rows.customer.balance = owed - credit
        rows.customer.creditBalance = credit
        rows.customer.updatedAt = max(rows.customer.createdAt, lastActivity)
        lastActivity = 0
    }

    private mutating func touch(_ t: Instant) {
        if t > lastActivity { lastActivity = t }
    }

    // MARK: - Subscription

    private mutating func runSubscription(
        plan initialPlan: Plan, quantity: Int64, start: Instant, link: Link
    ) throws(FixtureError) -> Ending {
        var plan = initialPlan
        let clock = window.clock
        ids.subscription += 1
        var previousID: Int64?
        switch link {
        case .signup: previousID = nil
        case .upgrade(let previous, _, _, _, _), .downgrade(let previous): previousID = rows.subscriptions[previous].id
        }
        rows.subscriptions.append(
            SubscriptionRow(
                id: ids.subscription, planID: plan.id, status: .active, quantity: quantity, startedAt: start,
                trialEndsAt: nil, periodStart: nil, periodEnd: nil, previousID: previousID, createdAt: start,
                updatedAt: start, managedByBulkWorker: rng.chance(0.75)))
        let s = rows.subscriptions.count - 1
        touch(start)
        let meteredUsage = plan.business && rng.chance(0.35)
        var anchor = start
        var newSignup = false
        var pending: [PendingLine] = []
        if case .upgrade(_, let credit, let from, let to, let planName) = link, credit > 0 {
            pending.append(
                PendingLine(
                    kind: .proration, description: "Unused time on \(planName) after \(Clock.humanDate(from))",
                    quantity: 1, unitAmount4: unit4(-credit), amount: -credit, periodStart: from, periodEnd: to))
        }

        if case .signup = link, plan.trialDays > 0, rng.chance(0.65) {
            let trialEnd = start + Int64(plan.trialDays) * Clock.day
            rows.subscriptions[s].status = .trialing
            rows.subscriptions[s].trialEndsAt = trialEnd
            rows.subscriptions[s].periodStart = start
            rows.subscriptions[s].periodEnd = trialEnd
            if start < window.trialInvoicesUntil { trialInvoice(s, plan: plan, start: start, end: trialEnd) }
            guard trialEnd < clock else { return .running }
            guard rng.chance(0.78) else {
                snapshot(s, at: trialEnd, byUser: false)
                rows.subscriptions[s].status = .canceled
                rows.subscriptions[s].canceledAt = trialEnd
                rows.subscriptions[s].endedAt = trialEnd
                rows.subscriptions[s].updatedAt = trialEnd
                touch(trialEnd)
                return .ended(trialEnd)
            }
            snapshot(s, at: trialEnd, byUser: false)
            rows.subscriptions[s].status = .active
            rows.subscriptions[s].updatedAt = trialEnd
            anchor = trialEnd
        } else if case .signup = link {
            newSignup = true
        }

        var k = 0
        var previousPeriodStart: Instant?
        while true {
            let periodStart = Clock.adding(months: k * plan.intervalMonths, to: anchor)
            guard periodStart < clock else { return .running }
            let periodEnd = Clock.adding(months: (k + 1) * plan.intervalMonths, to: anchor)
            rows.subscriptions[s].periodStart = periodStart
            rows.subscriptions[s].periodEnd = periodEnd
            rows.subscriptions[s].updatedAt = max(rows.subscriptions[s].updatedAt, periodStart)
            touch(periodStart)

            // The invoice for the period: prorations carried over, the plan, usage in arrears.
            let quantityNow = rows.subscriptions[s].quantity
            let unitPrice = plan.price(at: periodStart)
            pending.append(
                PendingLine(
                    kind: .subscription,
                    description: "\(quantityNow) × \(plan.name) (\(Clock.humanDate(periodStart)) – \(Clock.humanDate(periodEnd)))",
                    quantity: quantityNow, unitAmount4: unit4(unitPrice), amount: quantityNow * unitPrice,
                    periodStart: periodStart, periodEnd: periodEnd))
            if meteredUsage, let usageStart = previousPeriodStart { pending.append(usageLine(from: usageStart, to: periodStart)) }
            let invoiceIndex = issueWithPossibleVoid(
                subscription: s, items: pending, periodStart: periodStart, periodEnd: periodEnd, at: periodStart)
            pending.removeAll()
            guard rows.invoices[invoiceIndex].status != .draft else { return .running }

            let collected = try collect(invoiceIndex, subscription: s, newSignup: newSignup && k == 0)
            var paidAt: Instant
            switch collected {
            case .paid(let t): paidAt = t
            case .outstanding: paidAt = periodEnd
            case .stopped: return .stopped
            case .ended(let t): return .ended(t)
            }

            // Things that happen during the period, in time order. Only once the period's
            // invoice is paid; one lifecycle change at most.
            let low = paidAt + Clock.hour
            let high = min(periodEnd - 2 * Clock.hour, clock - Clock.minute)
            if case .paid = collected, high - low > Clock.day {
                var events: [(at: Instant, kind: Int)] = []
                let yearly = plan.intervalMonths == 12
                func time(_ rng: inout Xoshiro256) -> Instant { rng.int64(low...high) }
                if rng.chance(0.02) { events.append((time(&rng), 0)) }  // refund
                if profile.allowsCredit {
                    if rng.chance(0.008) { events.append((time(&rng), 1)) }  // credit note
                    if rng.chance(0.002) { events.append((time(&rng), 2)) }  // goodwill credit
                    if rng.chance(0.004) { events.append((time(&rng), 3)) }  // one-off invoice
                }
                let scale = yearly ? 6.0 : 1.0
                let lifecycle = rng.unit()
                let thresholds: [Double] = [
                    0.010 * scale,  // 4 cancel now
                    0.014 * scale,  // 5 cancel at period end
                    0.010,  // 6 upgrade
                    0.004,  // 7 downgrade at period end
                    0.004,  // 8 plan overwritten in place
                    plan.perSeat ? 0.05 : 0,  // 9 seats change
                    plan.business ? 0.002 : 0,  // 10 pause
                ]
                var cumulative = 0.0
                for (i, p) in thresholds.enumerated() {
                    cumulative += p
                    if lifecycle < cumulative {
                        events.append((time(&rng), 4 + i))
                        break
                    }
                }
                events.sort { $0.at != $1.at ? $0.at < $1.at : $0.kind < $1.kind }
                var stoppedAt: Instant?
                var ending: Ending?
                for event in events {
                    if let stoppedAt, event.at > stoppedAt, event.kind != 0 { continue }
                    switch event.kind {
                    case 0: refund(invoiceIndex, at: event.at, full: false)
                    case 1: creditNote(on: invoiceIndex, at: event.at, before: high)
                    case 2: goodwillCredit(at: event.at)
                    case 3: try oneOff(at: event.at)
                    case 4:
                        snapshot(s, at: event.at, byUser: true)
                        rows.subscriptions[s].status = .canceled
                        rows.subscriptions[s].canceledAt = event.at
                        rows.subscriptions[s].endedAt = event.at
                        rows.subscriptions[s].updatedAt = event.at
                        touch(event.at)
                        // Story 14: a first payment refunded in full when canceling right away.
                        if k == 0, rng.chance(0.35) { refund(invoiceIndex, at: event.at, full: true) }
                        stoppedAt = event.at
                        ending = .ended(event.at)
                    case 5, 7:
                        var target: Plan?
                        if event.kind == 7 {
                            let cheaper = catalog.alternatives(to: plan, at: periodEnd).filter {
                                $0.price(at: periodEnd) < plan.price(at: periodEnd)
                            }
                            guard periodEnd < clock, !cheaper.isEmpty else { continue }
                            target = rng.pick(cheaper)
                        }
                        snapshot(s, at: event.at, byUser: true)
                        rows.subscriptions[s].cancelAtPeriodEnd = true
                        rows.subscriptions[s].canceledAt = event.at
                        rows.subscriptions[s].updatedAt = event.at
                        touch(event.at)
                        guard periodEnd < clock else {
                            ending = .running
                            break
                        }
                        snapshot(s, at: periodEnd, byUser: false)
                        rows.subscriptions[s].status = .canceled
                        rows.subscriptions[s].endedAt = periodEnd
                        rows.subscriptions[s].updatedAt = periodEnd
                        touch(periodEnd)
                        if let target {
                            ending = .replaced(by: target, at: periodEnd, link: .downgrade(previous: s))
                        } else {
                            ending = .ended(periodEnd)
                        }
                    case 6:
                        let better = catalog.alternatives(to: plan, at: event.at).filter {
                            $0.price(at: event.at) > unitPrice
                        }
                        guard !better.isEmpty else { continue }
                        let target = rng.pick(better)
                        let credit = MinorUnits.divideRounded(
                            quantityNow * unitPrice * (periodEnd - event.at), periodEnd - periodStart)
                        snapshot(s, at: event.at, byUser: true)
                        rows.subscriptions[s].status = .canceled
                        rows.subscriptions[s].canceledAt = event.at
                        rows.subscriptions[s].endedAt = event.at
                        rows.subscriptions[s].updatedAt = event.at
                        touch(event.at)
                        stoppedAt = event.at
                        ending = .replaced(
                            by: target, at: event.at,
                            link: .upgrade(previous: s, credit: credit, from: event.at, to: periodEnd, planName: plan.name))
                    case 8:
                        let others = catalog.alternatives(to: plan, at: event.at)
                        guard !others.isEmpty else { continue }
                        // Sin 4: plan_id overwritten in place; the next invoice shows the new plan.
                        snapshot(s, at: event.at, byUser: true)
                        plan = rng.pick(others)
                        rows.subscriptions[s].planID = plan.id
                        rows.subscriptions[s].updatedAt = event.at
                        touch(event.at)
                    case 9:
                        let old = rows.subscriptions[s].quantity
                        let new = max(1, old + rng.pick([-3, -2, -1, 1, 2, 3, 5]))
                        guard new != old else { continue }
                        snapshot(s, at: event.at, byUser: true)
                        rows.subscriptions[s].quantity = new
                        rows.subscriptions[s].updatedAt = event.at
                        touch(event.at)
                        if new > old {
                            // Story 27: added seats are prorated on the next invoice.
                            let amount = MinorUnits.divideRounded(
                                (new - old) * unitPrice * (periodEnd - event.at), periodEnd - periodStart)
                            if amount > 0 {
                                pending.append(
                                    PendingLine(
                                        kind: .proration,
                                        description: "Prorated \(new - old) additional seat\(new - old == 1 ? "" : "s") (\(Clock.humanDate(event.at)) – \(Clock.humanDate(periodEnd)))",
                                        quantity: 1, unitAmount4: unit4(amount), amount: amount, periodStart: event.at,
                                        periodEnd: periodEnd))
                            }
                        }
                    case 10:
                        snapshot(s, at: event.at, byUser: true)
                        rows.subscriptions[s].status = .paused
                        rows.subscriptions[s].updatedAt = event.at
                        touch(event.at)
                        stoppedAt = event.at
                        ending = .stopped
                    default: break
                    }
                }
                if let ending { return ending }
            }
            previousPeriodStart = periodStart
            k += 1
        }
    }

    /// Records the row's current version as replaced at `t` (sin 2): only after the audit
    /// callback existed, and never for the billing worker's bulk updates on rows it manages.
    private mutating func snapshot(_ s: Int, at t: Instant, byUser: Bool) {
        let sub = rows.subscriptions[s]
        guard t >= window.auditCallbackAt, byUser || !sub.managedByBulkWorker else { return }
        ids.history += 1
        rows.history.append(
            HistoryRow(
                id: ids.history, subscriptionID: sub.id, planID: sub.planID, status: sub.status, quantity: sub.quantity,
                cancelAtPeriodEnd: sub.cancelAtPeriodEnd, periodStart: sub.periodStart, periodEnd: sub.periodEnd,
                canceledAt: sub.canceledAt, endedAt: sub.endedAt, changedAt: t))
    }

    private func unit4(_ minor: Int64) -> Int64 { minor * MinorUnits.powerOfTen(4 - rows.customer.moneyCurrency.exponent) }

    /// Metered API calls billed in arrears, priced so quantity × unit price is exact (story 24).
    private mutating func usageLine(from start: Instant, to end: Instant) -> PendingLine {
        let currency = rows.customer.moneyCurrency
        // Unit price in ten-thousandths, and the call-count granularity that keeps the amount exact.
        let (unit, step): (Int64, Int64) =
            switch currency {
            case .usd, .eur, .gbp: (125, 4)  // 0.0125 per call, billed in blocks of 4
            case .jpy: (20_000, 1)  // 2 JPY per call
            case .kwd: (40, 1)  // 0.004 KWD per call
            }
        let calls = step * rng.int64(50...6_000)
        let amount = calls * unit / MinorUnits.powerOfTen(4 - currency.exponent)
        return PendingLine(
            kind: .usage, description: "API calls (\(Clock.humanMonth(start)))", quantity: calls, unitAmount4: unit,
            amount: amount, periodStart: start, periodEnd: end)
    }

    // MARK: - Invoices

    /// Before July 2024 (default window) the app issued a 0.00 invoice for a trial (story 3).
    private mutating func trialInvoice(_ s: Int, plan: Plan, start: Instant, end: Instant) {
        let line = PendingLine(
            kind: .subscription,
            description: "Trial period for \(plan.name) (\(Clock.humanDate(start)) – \(Clock.humanDate(end)))",
            quantity: 1, unitAmount4: 0, amount: 0, periodStart: start, periodEnd: end)
        let i = issue(
            subscriptionID: rows.subscriptions[s].id, items: [line], periodStart: start, periodEnd: end, at: start,
            finalizeAfter: 0, applyCredit: false)
        if rows.invoices[i].status == .open { markPaid(i, at: start) }
    }

    /// Issues a subscription invoice; a bank-transfer customer's invoice is sometimes voided
    /// the next hours and replaced by a corrected one (story 12). Returns the invoice to collect.
    private mutating func issueWithPossibleVoid(
        subscription s: Int, items: [PendingLine], periodStart: Instant, periodEnd: Instant, at t: Instant
    ) -> Int {
        let voidAt = t + Clock.hour + rng.int64(2...20) * Clock.hour
        let voids = profile.method == .bankTransfer && rng.chance(0.01) && voidAt < window.clock
        let subscriptionID = rows.subscriptions[s].id
        let first = issue(
            subscriptionID: subscriptionID, items: items, periodStart: periodStart, periodEnd: periodEnd, at: t,
            applyCredit: !voids)
        guard voids, rows.invoices[first].status == .open else { return first }
        rows.invoices[first].status = .void
        rows.invoices[first].voidedAt = voidAt
        rows.invoices[first].updatedAt = voidAt
        if rows.invoices[first].discount > 0 { profile.couponInvoicesLeft += 1 }
        touch(voidAt)
        return issue(
            subscriptionID: subscriptionID, items: items, periodStart: periodStart, periodEnd: periodEnd, at: voidAt,
            applyCredit: true)
    }

    /// Creates an invoice with its lines: discount and tax lines derived from the items, a
    /// number and the customer's credit applied when it finalizes, or a draft if the clock comes
    /// first. Returns its index in ``rows``.
    private mutating func issue(
        subscriptionID: Int64?, items: [PendingLine], periodStart: Instant?, periodEnd: Instant?, at created: Instant,
        finalizeAfter: Int64 = Clock.hour, applyCredit: Bool = true
    ) -> Int {
        let currency = rows.customer.moneyCurrency
        let finalizedAt = created + finalizeAfter
        let isDraft = finalizedAt >= window.clock
        ids.invoice += 1
        let invoiceID = ids.invoice
        var subtotal: Int64 = 0
        for item in items {
            appendLine(invoiceID, item)
            subtotal += item.amount
        }
        var discount: Int64 = 0
        if profile.couponInvoicesLeft > 0, subtotal > 0 {
            discount = MinorUnits.percent(subtotal, profile.couponPercent)
            if !isDraft { profile.couponInvoicesLeft -= 1 }
            appendLine(
                invoiceID,
                PendingLine(
                    kind: .discount, description: "Coupon \(profile.couponCode) (\(profile.couponPercent)% off)",
                    quantity: 1, unitAmount4: unit4(-discount), amount: -discount, periodStart: periodStart,
                    periodEnd: periodEnd))
        }
        var tax: Int64 = 0
        if let rate = profile.taxRate, rate != 0 {
            // round((subtotal - discount) × tax_rate, exponent), half away from zero (C04).
            tax = MinorUnits.divideRounded((subtotal - discount) * rate, 100_000)
            if tax != 0 {
                appendLine(
                    invoiceID,
                    PendingLine(
                        kind: .tax, description: profile.taxLabel, quantity: 1, unitAmount4: unit4(tax), amount: tax,
                        periodStart: periodStart, periodEnd: periodEnd))
            }
        }
        var currencyColumn: Currency? = currency
        if rows.customer.currency != nil, created < window.nullInvoiceCurrencyUntil, rng.chance(0.3) { currencyColumn = nil }
        var invoice = InvoiceRow(
            id: invoiceID, subscriptionID: subscriptionID, number: nil, status: .draft, currency: currencyColumn,
            subtotal: subtotal, discount: discount, tax: tax, total: subtotal - discount + tax, taxRate: profile.taxRate,
            periodStart: periodStart, periodEnd: periodEnd, finalizedAt: nil, createdAt: created, updatedAt: created,
            dueDays: profile.method == .bankTransfer ? 30 : 0)
        touch(created)
        if !isDraft {
            invoiceNumber += 1
            invoice.number = invoiceNumberText()
            invoice.status = .open
            invoice.finalizedAt = finalizedAt
            invoice.updatedAt = finalizedAt
            touch(finalizedAt)
        }
        rows.invoices.append(invoice)
        let index = rows.invoices.count - 1
        if !isDraft, applyCredit { applyCreditBalance(to: index, at: finalizedAt) }
        return index
    }

    private mutating func appendLine(_ invoiceID: Int64, _ item: PendingLine) {
        ids.line += 1
        rows.lines.append(
            LineRow(
                id: ids.line, invoiceID: invoiceID, kind: item.kind, description: item.description,
                quantity: item.quantity, unitAmount4: item.unitAmount4, amount: item.amount,
                periodStart: item.periodStart, periodEnd: item.periodEnd))
    }

    private func invoiceNumberText() -> String {
        "LL" + padded(rows.customer.id, numberWidth) + "-" + padded(Int64(invoiceNumber), 4)
    }

    private func padded(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }

    /// Credit passes through the customer balance: each use writes an `applied_to_invoice`
    /// transaction (+x, with the credit note it came from) and counts in `amount_paid` (C05, C09).
    private mutating func applyCreditBalance(to i: Int, at t: Instant) {
        var due = rows.invoices[i].total - rows.invoices[i].amountPaid
        guard due > 0 else {
            if rows.invoices[i].total == 0 { markPaid(i, at: t) }
            return
        }
        while due > 0, let first = pool.first {
            let used = min(first.remaining, due)
            due -= used
            ids.transaction += 1
            var noteID: Int64?
            if let n = first.noteIndex {
                rows.creditNotes[n].remaining -= used
                noteID = rows.creditNotes[n].id
            }
            rows.transactions.append(
                BalanceTransactionRow(
                    id: ids.transaction, amount: used, type: .appliedToInvoice, invoiceID: rows.invoices[i].id,
                    creditNoteID: noteID, description: "Applied to invoice \(rows.invoices[i].number ?? "")",
                    createdAt: t))
            rows.invoices[i].amountPaid += used
            if used == first.remaining { pool.removeFirst() } else { pool[0].remaining -= used }
        }
        // Story 17: an invoice paid entirely by credit has no payment; paid_at is when it was applied.
        if due == 0 { markPaid(i, at: t) }
    }

    private mutating func markPaid(_ i: Int, at t: Instant) {
        rows.invoices[i].status = .paid
        rows.invoices[i].paidAt = t
        rows.invoices[i].updatedAt = max(rows.invoices[i].updatedAt, t)
        touch(t)
    }

    /// A one-off invoice for services (story 34), collected like any other.
    private mutating func oneOff(at t: Instant) throws(FixtureError) {
        let currency = rows.customer.moneyCurrency
        var items: [PendingLine] = []
        for _ in 0..<rng.int(1...2) {
            let service = rng.pick(Vocabulary.services)
            let quantity = Int64(rng.int(1...service.maxQuantity))
            let price = service.dollars * currency.roughDollar
            items.append(
                PendingLine(
                    kind: .oneOff, description: service.description, quantity: quantity, unitAmount4: unit4(price),
                    amount: quantity * price, periodStart: nil, periodEnd: nil))
        }
        let i = issue(subscriptionID: nil, items: items, periodStart: nil, periodEnd: nil, at: t)
        if rows.invoices[i].status == .open { _ = try collect(i, subscription: nil, newSignup: false) }
    }

    // MARK: - Payments

    /// Collects an open invoice the way the customer pays: cards and ACH debits are charged and
    /// retried through dunning; bank transfers arrive days later, sometimes in two parts.
    private mutating func collect(_ i: Int, subscription s: Int?, newSignup: Bool) throws(FixtureError) -> Collection {
        let clock = window.clock
        let due = rows.invoices[i].total - rows.invoices[i].amountPaid
        guard let finalizedAt = rows.invoices[i].finalizedAt else {
            throw inconsistency("invoice \(rows.invoices[i].id) is collected but was never finalized")
        }
        if rows.invoices[i].status == .paid {
            guard let paidAt = rows.invoices[i].paidAt else { throw inconsistency("invoice \(rows.invoices[i].id) is paid with no paid_at") }
            return .paid(paidAt)
        }
        guard due > 0 else {
            markPaid(i, at: finalizedAt)
            return .paid(finalizedAt)
        }

        if profile.method == .bankTransfer {
            let first = finalizedAt + rng.int64(2...18) * Clock.day + rng.int64(0...600) * Clock.minute
            guard first < clock else { return .outstanding }
            if due >= 2, rng.chance(0.06) {
                // Story 11: partly paid, the rest a few weeks later.
                let part = min(due - 1, max(1, MinorUnits.percent(due, rng.int64(30...70))))
                pay(i, amount: part, method: .bankTransfer, at: first, settlesAfter: 0)
                let second = first + rng.int64(3...20) * Clock.day
                guard second < clock else { return .outstanding }
                pay(i, amount: due - part, method: .bankTransfer, at: second, settlesAfter: 0)
                markPaid(i, at: second)
                return .paid(second)
            }
            pay(i, amount: due, method: .bankTransfer, at: first, settlesAfter: 0)
            markPaid(i, at: first)
            return .paid(first)
        }

        let method = profile.method
        let settle: Int64 = method == .card ? 3 : 3 * Clock.day
        var t = finalizedAt + 2 * Clock.minute
        guard t < clock else { return .outstanding }
        if method == .card, t + Clock.day + settle < clock, rng.chance(0.004) {
            // Story 36: 3-D Secure abandoned, paid the next day.
            failedAttempt(i, amount: due, at: t, status: .canceled, code: nil, settlesAfter: 5 * Clock.minute)
            t += Clock.day
            guard t < clock else { return .outstanding }
        }
        guard let s, rng.chance(0.05) else { return attempt(i, amount: due, method: method, at: t, settle: settle) }

        // The first attempt fails.
        let resolved = t + settle
        guard resolved < clock else {
            pay(i, amount: due, method: method, at: t, settlesAfter: nil)
            return .outstanding
        }
        let codes = method == .card ? Vocabulary.cardFailureCodes : Vocabulary.debitFailureCodes
        let code =
            newSignup && method == .card
            ? "authentication_required"
            : (method == .card ? codes[rng.weightedIndex(Vocabulary.cardFailureWeights)] : rng.pick(codes))
        failedAttempt(i, amount: due, at: t, status: .failed, code: code, settlesAfter: settle)

        if newSignup && method == .card {
            // Story 33: a new subscription whose first payment fails is incomplete; it expires
            // after 23 hours unless the customer completes it.
            rows.subscriptions[s].status = .incomplete
            rows.subscriptions[s].updatedAt = resolved
            let retry = t + rng.int64(1...20) * Clock.hour
            guard retry < clock else { return .outstanding }
            if rng.chance(0.5) {
                guard retry + settle < clock else {
                    pay(i, amount: due, method: method, at: retry, settlesAfter: nil)
                    return .outstanding
                }
                pay(i, amount: due, method: method, at: retry, settlesAfter: settle)
                snapshot(s, at: retry + settle, byUser: true)
                rows.subscriptions[s].status = .active
                rows.subscriptions[s].updatedAt = retry + settle
                markPaid(i, at: retry + settle)
                return .paid(retry + settle)
            }
            let expires = rows.subscriptions[s].startedAt + 23 * Clock.hour
            guard expires < clock else { return .outstanding }
            snapshot(s, at: expires, byUser: false)
            rows.subscriptions[s].status = .canceled
            rows.subscriptions[s].canceledAt = expires
            rows.subscriptions[s].endedAt = expires
            rows.subscriptions[s].updatedAt = expires
            rows.invoices[i].status = .void
            rows.invoices[i].voidedAt = expires
            rows.invoices[i].updatedAt = expires
            touch(expires)
            return .ended(expires)
        }

        // Dunning (stories 8, 9, 10, 37): past_due, three retries, then a decision.
        snapshot(s, at: resolved, byUser: false)
        rows.subscriptions[s].status = .pastDue
        rows.subscriptions[s].updatedAt = resolved
        for days: Int64 in [3, 7, 12] {
            let retry = t + days * Clock.day
            guard retry < clock else { return .outstanding }
            guard retry + settle < clock else {
                pay(i, amount: due, method: method, at: retry, settlesAfter: nil)
                return .outstanding
            }
            if rng.chance(0.5) {
                pay(i, amount: due, method: method, at: retry, settlesAfter: settle)
                snapshot(s, at: retry + settle, byUser: false)
                rows.subscriptions[s].status = .active
                rows.subscriptions[s].updatedAt = retry + settle
                markPaid(i, at: retry + settle)
                return .paid(retry + settle)
            }
            failedAttempt(i, amount: due, at: retry, status: .failed, code: code, settlesAfter: settle)
        }
        let decision = t + 15 * Clock.day + rng.int64(0...8) * Clock.hour
        guard decision < clock else { return .outstanding }
        let outcome = rng.weightedIndex([45, 35, 20])
        snapshot(s, at: decision, byUser: false)
        rows.subscriptions[s].updatedAt = decision
        touch(decision)
        if outcome == 0 {
            // Written off and canceled; the amount still counts in the balance (story 37).
            rows.invoices[i].status = .uncollectible
            rows.invoices[i].updatedAt = decision
            rows.subscriptions[s].status = .canceled
            rows.subscriptions[s].canceledAt = decision
            rows.subscriptions[s].endedAt = decision
            return .ended(decision)
        }
        rows.subscriptions[s].status = .unpaid
        if outcome == 1 {
            // Billing stops; the invoice stays open (story 8).
            return .stopped
        }
        // Written off, then paid by bank transfer after all (story 9).
        rows.invoices[i].status = .uncollectible
        rows.invoices[i].updatedAt = decision
        let paidAt = decision + rng.int64(2...8) * Clock.day + rng.int64(0...600) * Clock.minute
        guard paidAt < clock else { return .stopped }
        pay(i, amount: due, method: .bankTransfer, at: paidAt, settlesAfter: 0)
        snapshot(s, at: paidAt, byUser: true)
        rows.subscriptions[s].status = .active
        rows.subscriptions[s].updatedAt = paidAt
        markPaid(i, at: paidAt)
        return .paid(paidAt)
    }

    /// One attempt that succeeds (or is still pending at the clock).
    private mutating func attempt(_ i: Int, amount: Int64, method: PaymentMethod, at t: Instant, settle: Int64) -> Collection {
        guard t + settle < window.clock else {
            pay(i, amount: amount, method: method, at: t, settlesAfter: nil)
            return .outstanding
        }
        pay(i, amount: amount, method: method, at: t, settlesAfter: settle)
        markPaid(i, at: t + settle)
        return .paid(t + settle)
    }

    /// A payment that succeeded `settlesAfter` seconds after `t`, or is still pending (`nil`).
    private mutating func pay(_ i: Int, amount: Int64, method: PaymentMethod, at t: Instant, settlesAfter: Int64?) {
        ids.payment += 1
        rows.payments.append(
            PaymentRow(
                id: ids.payment, invoiceID: rows.invoices[i].id, status: settlesAfter == nil ? .pending : .succeeded,
                method: method, providerPaymentID: providerID(method), failureCode: nil, amount: amount, createdAt: t,
                updatedAt: t + (settlesAfter ?? 0)))
        if let settlesAfter {
            rows.invoices[i].amountPaid += amount
            rows.invoices[i].updatedAt = max(rows.invoices[i].updatedAt, t + settlesAfter)
        }
        touch(t + (settlesAfter ?? 0))
    }

    private mutating func failedAttempt(
        _ i: Int, amount: Int64, at t: Instant, status: PaymentStatus, code: String?, settlesAfter: Int64
    ) {
        ids.payment += 1
        rows.payments.append(
            PaymentRow(
                id: ids.payment, invoiceID: rows.invoices[i].id, status: status, method: profile.method,
                providerPaymentID: providerID(profile.method), failureCode: code, amount: amount, createdAt: t,
                updatedAt: t + settlesAfter))
        touch(t + settlesAfter)
    }

    /// `pi_3…`: random-looking, and unique because the payment id is encoded at the end (C15).
    /// Manual bank transfers have none.
    private mutating func providerID(_ method: PaymentMethod) -> String? {
        guard method != .bankTransfer else { return nil }
        var bytes: [UInt8] = Array("pi_3".utf8)
        bytes.reserveCapacity(29)
        for _ in 0..<19 { bytes.append(Vocabulary.base62[Int(rng.below(62))]) }
        var id = UInt64(ids.payment)
        var tail = [UInt8](repeating: 0, count: 6)
        for k in stride(from: 5, through: 0, by: -1) {
            tail[k] = Vocabulary.base62[Int(id % 62)]
            id /= 62
        }
        bytes += tail
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: - Refunds and credit

    /// Refunds the last succeeded payment of invoice `i` in full or in part (C10: the refunds
    /// that count never exceed the payment). Some fail and are retried (story 40).
    private mutating func refund(_ i: Int, at t: Instant, full: Bool) {
        let invoiceID = rows.invoices[i].id
        guard let p = rows.payments.lastIndex(where: { $0.invoiceID == invoiceID && $0.status == .succeeded }) else { return }
        let payment = rows.payments[p]
        guard t >= payment.createdAt else { return }
        let refunded = rows.refunds.reduce(Int64(0)) {
            $0 + ($1.paymentID == payment.id && $1.status != .failed ? $1.amount : 0)
        }
        let refundable = payment.amount - refunded
        guard refundable > 0 else { return }
        let amount =
            full || rng.chance(0.35) ? refundable : min(refundable, max(1, MinorUnits.percent(refundable, rng.int64(10...60))))
        let reason = full ? "requested_by_customer" : Vocabulary.refundReasons[rng.weightedIndex(Vocabulary.refundReasonWeights)]
        touch(t)
        if t > window.clock - 2 * Clock.day {
            appendRefund(payment.id, amount, reason, .pending, t)
        } else if rng.chance(0.04) {
            appendRefund(payment.id, amount, reason, .failed, t)
            let retry = t + Clock.day
            appendRefund(payment.id, amount, reason, retry + 2 * Clock.day < window.clock ? .succeeded : .pending, retry)
            touch(retry)
        } else {
            appendRefund(payment.id, amount, reason, .succeeded, t)
        }
    }

    private mutating func appendRefund(_ paymentID: Int64, _ amount: Int64, _ reason: String, _ status: RefundStatus, _ t: Instant) {
        ids.refund += 1
        rows.refunds.append(RefundRow(id: ids.refund, paymentID: paymentID, amount: amount, reason: reason, status: status, createdAt: t))
    }

    /// A credit note on invoice `i`: its credit goes to the customer balance (a `credit_note`
    /// transaction of −total) and is used by later invoices. A few are voided ten minutes later
    /// (story 38: an `adjustment` of +total reverses the credit).
    private mutating func creditNote(on i: Int, at t: Instant, before limit: Instant) {
        let total = rows.invoices[i].total
        guard total > 0 else { return }
        let amount = min(total, max(1, MinorUnits.percent(total, rng.pick([10, 20, 25, 50, 100]))))
        creditNoteNumber += 1
        ids.creditNote += 1
        let number = "LL" + padded(rows.customer.id, numberWidth) + "-CN-" + padded(Int64(creditNoteNumber), 2)
        let voidAt = t + 10 * Clock.minute
        let voids = rng.chance(0.05) && voidAt < limit
        rows.creditNotes.append(
            CreditNoteRow(
                id: ids.creditNote, invoiceID: rows.invoices[i].id, number: number, total: amount,
                remaining: voids ? 0 : amount, reason: rng.pick(Vocabulary.creditNoteReasons), isVoid: voids,
                createdAt: t, voidedAt: voids ? voidAt : nil))
        ids.transaction += 1
        rows.transactions.append(
            BalanceTransactionRow(
                id: ids.transaction, amount: -amount, type: .creditNote, invoiceID: nil, creditNoteID: ids.creditNote,
                description: "Credit note \(number)", createdAt: t))
        touch(t)
        if voids {
            ids.transaction += 1
            rows.transactions.append(
                BalanceTransactionRow(
                    id: ids.transaction, amount: amount, type: .adjustment, invoiceID: nil, creditNoteID: ids.creditNote,
                    description: "Credit note \(number) voided", createdAt: voidAt))
            touch(voidAt)
        } else {
            pool.append(CreditEntry(noteIndex: rows.creditNotes.count - 1, remaining: amount))
        }
    }

    /// Goodwill credit not tied to a credit note (story 19).
    private mutating func goodwillCredit(at t: Instant) {
        let amount = rows.customer.moneyCurrency.roughDollar * rng.pick([5, 10, 20, 25, 50])
        ids.transaction += 1
        rows.transactions.append(
            BalanceTransactionRow(
                id: ids.transaction, amount: -amount, type: .adjustment, invoiceID: nil, creditNoteID: nil,
                description: "Goodwill credit", createdAt: t))
        pool.append(CreditEntry(noteIndex: nil, remaining: amount))
        touch(t)
    }
}
