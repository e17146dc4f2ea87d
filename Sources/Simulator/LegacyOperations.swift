import Fixtures
import Postgres

/// The legacy application's operations, one per ``OperationKind``, each writing the reference
/// schema the way the application does (fixtures/README.md: its caches updated one by one, the
/// history callback's earlier versions, amounts at the currency's scale) so that every rule
/// C01–C19 still holds afterwards.
///
/// Each returns `nil`, having written nothing, when the data holds nothing it can act on.
extension LegacyOperationRun {
    mutating func perform() throws -> JournalEntry? {
        switch operation.kind {
        case .signUp: try signUp()
        case .activateTrial: try activateTrial()
        case .upgrade: try changePlan(dearer: true)
        case .downgrade: try changePlan(dearer: false)
        case .cancelAtPeriodEnd: try cancelAtPeriodEnd()
        case .markUnpaid: try markUnpaid()
        case .draftInvoice: try draftInvoice()
        case .finalizeInvoice: try finalizeInvoice()
        case .paymentSucceeded: try paymentSucceeded()
        case .paymentFailed: try paymentFailed()
        case .paymentRetried: try paymentRetried()
        case .partialPayment: try partialPayment()
        case .voidInvoice: try voidInvoice()
        case .markUncollectible: try markUncollectible()
        case .refundFull: try refund(full: true)
        case .refundPartial: try refund(full: false)
        case .creditNote: try creditNote()
        case .customerCredit: try customerCredit()
        case .editEmail: try editEmail()
        case .editName: try editName()
        case .softDelete: try softDelete()
        case .discardDraft: try discardDraft()
        }
    }

    // MARK: - Customers and subscriptions

    /// A new customer in a plan's currency and its subscription: trialing for the plan's trial
    /// days when it has some, else active for one period (invoiced later by `draft_invoice`).
    private mutating func signUp() throws -> JournalEntry? {
        let plans = try rows(
            "SELECT id, name, price::text, interval, currency, trial_days, code FROM plans WHERE NOT archived ORDER BY id")
        guard !plans.isEmpty else { return nil }
        let plan = random.pick(plans)
        let planID = try plan.decode(at: 0, as: Int64.self)
        let planName = try plan.decode(at: 1, as: String.self)
        let interval = try plan.decode(at: 3, as: String.self)
        let currency = try LegacyCurrency(try plan.decode(at: 4, as: String.self), context: "plan \(planID)")
        let trialDays = try plan.decode(at: 5, as: Int64.self)
        let perSeat = try plan.decode(at: 6, as: String.self).contains("seat")
        let quantity: Int64 = perSeat ? random.int(2...12) : 1
        let company = random.pick(LegacyVocabulary.companyFirst) + random.pick(LegacyVocabulary.companySecond)
        let name = company + " " + random.pick(LegacyVocabulary.companySuffix)
        let mailbox =
            random.chance(0.5)
            ? random.pick(LegacyVocabulary.firstNames) + "." + random.pick(LegacyVocabulary.lastNames)
            : random.pick(LegacyVocabulary.mailboxes)
        let email = "\(mailbox)@\(company.lowercased()).example"
        let timezone = random.pick(LegacyVocabulary.timezones(currency.code))
        let status = trialDays > 0 ? "trialing" : "active"

        let t = now()
        let customerID = try insert(
            """
            INSERT INTO customers (email, name, currency, timezone, balance, credit_balance, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5::numeric, 0, $6::timestamptz::timestamp, $6::timestamptz::timestamp) RETURNING id
            """, [email, name, currency.code, timezone, currency.text(0), t])
        let periodLength = trialDays > 0 ? "\(trialDays) days" : "1 \(interval)"
        let subscriptionID = try insert(
            """
            INSERT INTO subscriptions (customer_id, plan_id, status, quantity, started_at, trial_ends_at,
                current_period_start, current_period_end, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5::timestamptz::timestamp,
                    CASE WHEN $6 THEN $5::timestamptz::timestamp + $7::interval END,
                    $5::timestamptz::timestamp, $5::timestamptz::timestamp + $7::interval,
                    $5::timestamptz::timestamp, $5::timestamptz::timestamp)
            RETURNING id
            """, [customerID, planID, status, quantity, t, trialDays > 0, periodLength])
        return entry(
            keys: ["customer": customerID, "subscription": subscriptionID],
            effects: [
                Effect(
                    entity: "customer", key: String(customerID),
                    fields: ["email": email, "name": name, "currency": currency.code, "archived_at": LegacyEffects.null]),
                Effect(
                    entity: "subscription", key: String(subscriptionID),
                    fields: [
                        "customer_id": String(customerID), "plan_id": String(planID), "status": status,
                        "quantity": String(quantity), "cancel_at_period_end": "false",
                        "canceled_at": LegacyEffects.null, "ended_at": LegacyEffects.null,
                    ]),
            ],
            summary: "customer \(customerID) signed up for \(planName) (plan \(planID), \(currency.code)) with subscription \(subscriptionID), \(status)")
    }

    /// Locks the subscription `id` and its customer; `nil` when the condition no longer holds.
    private mutating func lockedSubscription(_ id: Int64, _ condition: String) throws -> (LockedCustomer, Int64)? {
        guard let row = try one("SELECT customer_id FROM subscriptions WHERE id = $1", [id]) else { return nil }
        let customerID = try row.decode(at: 0, as: Int64.self)
        guard let customer = try lockCustomer(customerID) else { return nil }
        try lockSubscription(id)
        guard try holds("subscriptions", id, condition) else { return nil }
        return (customer, customerID)
    }

    /// A trialing subscription becomes active: the customer added a card. The trial ends now
    /// (or ended at its end), and the first paid period starts now.
    private mutating func activateTrial() throws -> JournalEntry? {
        let condition = "x.status = 'trialing' AND \(Self.live("x.customer_id"))"
        guard let id = try pick("subscriptions", where: condition), let (customer, _) = try lockedSubscription(id, condition)
        else { return nil }
        let t = now()
        try recordHistory(id, at: t)
        try execute(
            """
            UPDATE subscriptions s SET status = 'active',
                trial_ends_at = LEAST(COALESCE(s.trial_ends_at, $2::timestamptz::timestamp), $2::timestamptz::timestamp),
                current_period_start = $2::timestamptz::timestamp,
                current_period_end = $2::timestamptz::timestamp + ('1 ' || p.interval)::interval,
                updated_at = $2::timestamptz::timestamp
            FROM plans p WHERE s.id = $1 AND p.id = s.plan_id
            """, [id, t])
        return entry(
            keys: ["customer": customer.id, "subscription": id],
            effects: [Effect(entity: "subscription", key: String(id), fields: ["status": "active"])],
            summary: "subscription \(id) of customer \(customer.id) converted from trial to active")
    }

    /// The plan of a running subscription is overwritten with a dearer (or cheaper) plan of the
    /// same currency, interval and seat model; the history callback keeps the earlier version.
    private mutating func changePlan(dearer: Bool) throws -> JournalEntry? {
        let comparison = dearer ? ">" : "<"
        func alternatives(to plan: String) -> String {
            """
            SELECT q.id, q.name, p.id FROM plans p JOIN plans q ON q.currency = p.currency AND q.interval = p.interval
                AND q.price \(comparison) p.price AND NOT q.archived AND (q.code LIKE '%seat%') = (p.code LIKE '%seat%')
            WHERE p.id = \(plan)
            """
        }
        let condition =
            "x.status IN ('active', 'trialing') AND \(Self.live("x.customer_id")) AND EXISTS (\(alternatives(to: "x.plan_id")) OFFSET 0)"
        guard let id = try pick("subscriptions", where: condition), let (customer, _) = try lockedSubscription(id, condition)
        else { return nil }
        let choices = try rows(
            alternatives(to: "(SELECT plan_id FROM subscriptions WHERE id = $1)") + " ORDER BY q.id", [id])
        guard !choices.isEmpty else { return nil }
        let choice = random.pick(choices)
        let planID = try choice.decode(at: 0, as: Int64.self)
        let planName = try choice.decode(at: 1, as: String.self)
        let previous = try choice.decode(at: 2, as: Int64.self)
        let t = now()
        try recordHistory(id, at: t)
        try execute(
            "UPDATE subscriptions SET plan_id = $2, updated_at = $3::timestamptz::timestamp WHERE id = $1", [id, planID, t])
        return entry(
            keys: ["customer": customer.id, "subscription": id],
            effects: [Effect(entity: "subscription", key: String(id), fields: ["plan_id": String(planID)])],
            summary: "subscription \(id) of customer \(customer.id) \(dearer ? "upgraded" : "downgraded") from plan \(previous) to \(planName) (plan \(planID))")
    }

    /// A running subscription is set to cancel at the end of its period (canceled_at records
    /// the request, as in story 6; it keeps running until then).
    private mutating func cancelAtPeriodEnd() throws -> JournalEntry? {
        let condition = "x.status IN ('active', 'trialing', 'past_due') AND NOT x.cancel_at_period_end AND \(Self.live("x.customer_id"))"
        guard let id = try pick("subscriptions", where: condition), let (customer, _) = try lockedSubscription(id, condition)
        else { return nil }
        let t = now()
        try recordHistory(id, at: t)
        try execute(
            """
            UPDATE subscriptions SET cancel_at_period_end = true, canceled_at = $2::timestamptz::timestamp,
                updated_at = $2::timestamptz::timestamp WHERE id = $1
            """, [id, t])
        return entry(
            keys: ["customer": customer.id, "subscription": id],
            effects: [
                Effect(
                    entity: "subscription", key: String(id),
                    fields: ["cancel_at_period_end": "true", "canceled_at": t.iso8601])
            ],
            summary: "subscription \(id) of customer \(customer.id) set to cancel at the end of its period")
    }

    /// A past-due subscription whose dunning ran out becomes unpaid (story 8).
    private mutating func markUnpaid() throws -> JournalEntry? {
        let condition = "x.status = 'past_due' AND \(Self.live("x.customer_id"))"
        guard let id = try pick("subscriptions", where: condition), let (customer, _) = try lockedSubscription(id, condition)
        else { return nil }
        let t = now()
        try recordHistory(id, at: t)
        try execute(
            "UPDATE subscriptions SET status = 'unpaid', updated_at = $2::timestamptz::timestamp WHERE id = $1", [id, t])
        return entry(
            keys: ["customer": customer.id, "subscription": id],
            effects: [Effect(entity: "subscription", key: String(id), fields: ["status": "unpaid"])],
            summary: "subscription \(id) of customer \(customer.id) became unpaid after dunning")
    }

    // MARK: - Invoices

    /// The billing worker and the invoicing screen: a draft invoice, almost always.
    ///
    /// First the billing worker's path: a running subscription whose current period has ended,
    /// or has no invoice yet. A subscription set to cancel at its period's end whose period has
    /// ended is ended instead of renewed (``endAtPeriodEnd(_:customer:at:)``). Otherwise the
    /// period is advanced over whole periods until the one in progress, as the worker's bulk
    /// UPDATE does (no history row), and a draft for it is written: the subscription line ×
    /// quantity, usage for business plans now and then, a coupon now and then, and tax at the
    /// customer's rate (its latest invoice's).
    ///
    /// When no subscription is due (every running one is invoiced for its period, the usual
    /// case between two period ends), a one-off draft for a live customer instead
    /// (``oneOffDraft(for:)``): setup fees, extra seats and professional services are billed
    /// between renewals, which keeps the invoice pipeline fed.
    private mutating func draftInvoice() throws -> JournalEntry? {
        let invoiced = """
            EXISTS (SELECT 1 FROM invoices i WHERE i.subscription_id = x.id
                    AND i.period_start = x.current_period_start AND i.status <> 3 OFFSET 0)
            """
        let pickedAt = clock.current
        let ended = "x.current_period_end <= '\(pickedAt.iso8601)'::timestamptz::timestamp"
        // Set to cancel at its period's end: due only once that end has passed (to be ended);
        // a trial set to cancel ends at the trial's end (story 3).
        let condition = """
            x.current_period_end IS NOT NULL AND \(Self.live("x.customer_id"))
            AND ((x.cancel_at_period_end AND x.status IN ('active', 'past_due', 'trialing') AND \(ended))
                 OR (NOT x.cancel_at_period_end AND x.status IN ('active', 'past_due') AND (\(ended) OR NOT \(invoiced))))
            """
        guard let id = try pick("subscriptions", where: condition) else { return try oneOffDraft(for: nil) }
        guard let row = try one("SELECT customer_id FROM subscriptions WHERE id = $1", [id]),
            let customer = try lockCustomer(try row.decode(at: 0, as: Int64.self))
        else { return nil }
        try lockSubscription(id)
        // Another connection renewed (or invoiced) it in between: with the customer locked, the
        // one-off is still worth drafting (on a busy small database the workers often pick the
        // same due subscription at once).
        guard try holds("subscriptions", id, condition), let currency = customer.currency else { return try oneOffDraft(for: customer) }
        let t = now()
        if try holds("subscriptions", id, "x.cancel_at_period_end AND x.current_period_end <= '\(t.iso8601)'::timestamptz::timestamp") {
            return try endAtPeriodEnd(id, customer: customer, at: t)
        }
        // The billing worker's renewal: whole periods until the one in progress.
        var advanced = false
        for _ in 0..<1200 {
            let due = try one(
                """
                UPDATE subscriptions s SET current_period_start = s.current_period_end,
                    current_period_end = s.current_period_end + ('1 ' || p.interval)::interval,
                    updated_at = $2::timestamptz::timestamp
                FROM plans p WHERE s.id = $1 AND p.id = s.plan_id AND s.current_period_end <= $2::timestamptz::timestamp
                RETURNING s.id
                """, [id, t])
            guard due != nil else { break }
            advanced = true
        }
        if !advanced, try holds("subscriptions", id, invoiced) { return try oneOffDraft(for: customer) }
        guard
            let sub = try one(
                """
                SELECT s.quantity, p.name, p.price::text, p.code, s.current_period_start, s.current_period_end,
                       to_char(s.current_period_start, 'FMDD Mon YYYY'), to_char(s.current_period_end, 'FMDD Mon YYYY')
                FROM subscriptions s JOIN plans p ON p.id = s.plan_id WHERE s.id = $1
                """, [id])
        else { return nil }
        let quantity = try sub.decode(at: 0, as: Int64.self)
        let planName = try sub.decode(at: 1, as: String.self)
        let price = try currency.minor(try sub.decode(at: 2, as: String.self), context: "the plan of subscription \(id)")
        let business = try sub.decode(at: 3, as: String.self).hasPrefix("business")
        let periodStart = try sub.decode(at: 4, as: PostgresTimestamp.self)
        let periodEnd = try sub.decode(at: 5, as: PostgresTimestamp.self)
        let periodText = "\(try sub.decode(at: 6, as: String.self)) – \(try sub.decode(at: 7, as: String.self))"

        var lines: [DraftLine] = [
            DraftLine(
                kind: "subscription", description: "\(quantity) × \(planName) (\(periodText))", quantity: quantity,
                unit4: currency.unitText(price), amount: quantity * price)
        ]
        if business, random.chance(0.4) {
            // Metered API calls, priced so quantity × unit price is exact (story 24).
            let (unit, granularity): (Int64, Int64) =
                switch currency.exponent {
                case 0: (20_000, 1)
                case 3: (40, 1)
                default: (125, 4)
                }
            let calls = granularity * random.int(50...6_000)
            lines.append(
                DraftLine(
                    kind: "usage", description: "API calls (\(periodText))", quantity: calls,
                    unit4: MinorUnits.decimal(unit, scale: 4),
                    amount: calls * unit / MinorUnits.powerOfTen(4 - currency.exponent)))
        }
        let subtotal = lines.reduce(Int64(0)) { $0 + $1.amount }
        if subtotal > 0, random.chance(0.1) {
            let discount = MinorUnits.percent(subtotal, 20)
            lines.append(
                DraftLine(
                    kind: "discount", description: "Coupon SAVE20 (20% off)", quantity: 1, unit4: currency.unitText(-discount),
                    amount: -discount))
        }
        let draft = try writeDraft(
            customer: customer, currency: currency, subscription: id, lines: lines, period: (periodStart, periodEnd), at: t)
        return entry(
            keys: ["customer": customer.id, "subscription": id, "invoice": draft.invoice], effects: draft.effects,
            summary: "draft invoice \(draft.invoice) of \(currency.human(draft.total)) for subscription \(id) of customer \(customer.id)"
                + (advanced ? " (period renewed)" : ""))
    }

    /// The billing worker ends a subscription set to cancel at its period's end once that end
    /// has passed, instead of renewing it: `canceled`, `ended_at` its period's end, `canceled_at`
    /// kept (the request, story 6). Through the model, so the ORM callback's history row keeps
    /// the running version (story 5).
    ///
    /// `ended_at` is never before `canceled_at`: a request made after the period's end (the
    /// worker had not come by yet) ends the subscription at the request, so its timeline stays
    /// ordered (the mapping replays cancel, then end).
    private mutating func endAtPeriodEnd(_ id: Int64, customer: LockedCustomer, at t: PostgresTimestamp) throws -> JournalEntry? {
        try recordHistory(id, at: t)
        guard
            let row = try one(
                """
                UPDATE subscriptions SET status = 'canceled',
                    ended_at = GREATEST(current_period_end, COALESCE(canceled_at, current_period_end)),
                    canceled_at = COALESCE(canceled_at, current_period_end), updated_at = $2::timestamptz::timestamp
                WHERE id = $1
                RETURNING ended_at, canceled_at
                """, [id, t])
        else { return nil }
        let endedAt = try row.decode(at: 0, as: PostgresTimestamp.self)
        let canceledAt = try row.decode(at: 1, as: PostgresTimestamp.self)
        return entry(
            keys: ["customer": customer.id, "subscription": id],
            effects: [
                Effect(
                    entity: "subscription", key: String(id),
                    fields: ["status": "canceled", "canceled_at": canceledAt.iso8601, "ended_at": endedAt.iso8601])
            ],
            summary: "subscription \(id) of customer \(customer.id) ended at the end of its period (\(endedAt.iso8601))")
    }

    /// A one-off draft (no subscription, no period): a setup fee, extra seats or professional
    /// services, `quantity × unit price` exactly (C01), taxed at the customer's rate like its
    /// subscription invoices (C04). For `customer` (already locked), else for a live customer
    /// with a currency and something running, picked and locked here.
    private mutating func oneOffDraft(for locked: LockedCustomer?) throws -> JournalEntry? {
        var customer = locked
        if customer == nil {
            let condition = """
                x.deleted_at IS NULL
                AND (x.currency IS NOT NULL
                     OR EXISTS (SELECT 1 FROM invoices i WHERE i.customer_id = x.id AND i.currency IS NOT NULL OFFSET 0))
                AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.customer_id = x.id
                            AND s.status IN ('active', 'past_due', 'trialing') OFFSET 0)
                """
            guard let id = try pick("customers", where: condition), let picked = try lockCustomer(id),
                try holds("customers", id, condition)
            else { return nil }
            customer = picked
        }
        guard let customer, let currency = customer.currency else { return nil }
        let dollar = currency.roughDollar
        let line: DraftLine
        switch random.int(0...2) {
        case 0:
            let unit = dollar * random.pick([49, 99, 149, 299])
            line = DraftLine(kind: "one_off", description: "Setup fee", quantity: 1, unit4: currency.unitText(unit), amount: unit)
        case 1:
            let seats = random.int(1...10)
            let unit = dollar * random.pick([10, 12, 15])
            line = DraftLine(
                kind: "one_off", description: "Extra seats (\(seats))", quantity: seats, unit4: currency.unitText(unit),
                amount: seats * unit)
        default:
            let hours = random.int(1...8)
            let unit = dollar * random.pick([120, 150, 200])
            line = DraftLine(
                kind: "one_off", description: "Professional services (hours)", quantity: hours, unit4: currency.unitText(unit),
                amount: hours * unit)
        }
        let t = now()
        let draft = try writeDraft(customer: customer, currency: currency, subscription: nil, lines: [line], period: nil, at: t)
        return entry(
            keys: ["customer": customer.id, "invoice": draft.invoice], effects: draft.effects,
            summary: "one-off draft invoice \(draft.invoice) of \(currency.human(draft.total)) (\(line.description)) for customer \(customer.id)")
    }

    /// Writes a draft (status 0, no number) of `lines` and, when the customer's rate makes it
    /// non-zero, its tax line: the customer's tax rate is its latest invoice's (the app keeps
    /// it on the customer's billing profile). C04: round((subtotal − discount) ×
    /// tax_rate::numeric, exponent), computed by PostgreSQL from the very float8 that is stored.
    /// `subtotal`, `discount`, `tax`, `total` = Σ lines (C02, C03).
    private func writeDraft(
        customer: LockedCustomer, currency: LegacyCurrency, subscription: Int64?, lines draftLines: [DraftLine],
        period: (start: PostgresTimestamp, end: PostgresTimestamp)?, at t: PostgresTimestamp
    ) throws -> (invoice: Int64, total: Int64, effects: [Effect]) {
        var lines = draftLines
        let subtotal = lines.filter { $0.kind != "discount" }.reduce(Int64(0)) { $0 + $1.amount }
        let discount = -lines.filter { $0.kind == "discount" }.reduce(Int64(0)) { $0 + $1.amount }
        let rate = try one("SELECT tax_rate::text FROM invoices WHERE customer_id = $1 ORDER BY id DESC LIMIT 1", [customer.id])?
            .decode(at: 0, as: String?.self)
        var tax: Int64 = 0
        if let rate {
            let taxText = try one(
                "SELECT CASE WHEN $2::float8 = 0 THEN 0 ELSE round($1::numeric * $2::float8::numeric, $3::int) END::text",
                [currency.text(subtotal - discount), rate, Int64(currency.exponent)]
            )!.decode(at: 0, as: String.self)
            tax = try currency.minor(taxText, context: "the tax of a draft for customer \(customer.id)")
            if tax != 0 {
                lines.append(DraftLine(kind: "tax", description: "Tax", quantity: 1, unit4: currency.unitText(tax), amount: tax))
            }
        }
        let total = subtotal - discount + tax
        let invoiceID = try insert(
            """
            INSERT INTO invoices (customer_id, subscription_id, number, status, currency, subtotal, discount, tax, total,
                amount_paid, amount_due, tax_rate, period_start, period_end, created_at, updated_at)
            VALUES ($1, $2, NULL, 0, $3, $4::numeric, $5::numeric, $6::numeric, $7::numeric, $8::numeric, $7::numeric,
                    $9::float8, $10::timestamptz::timestamp, $11::timestamptz::timestamp,
                    $12::timestamptz::timestamp, $12::timestamptz::timestamp)
            RETURNING id
            """,
            [
                customer.id, subscription, currency.code, currency.text(subtotal), currency.text(discount), currency.text(tax),
                currency.text(total), currency.text(0), rate, period?.start, period?.end, t,
            ])
        var effects = [
            Effect(
                entity: "invoice", key: String(invoiceID),
                fields: [
                    "customer_id": String(customer.id), "subscription_id": subscription.map(String.init), "status": "draft",
                    "number": LegacyEffects.null, "currency": currency.code, "subtotal": String(subtotal),
                    "discount": String(discount), "tax": String(tax), "total": String(total), "amount_paid": "0",
                    "amount_due": String(total), "finalized_at": LegacyEffects.null, "paid_at": LegacyEffects.null,
                    "voided_at": LegacyEffects.null,
                ])
        ]
        for line in lines {
            let lineID = try insert(
                """
                INSERT INTO invoice_line_items (invoice_id, kind, description, quantity, unit_amount, amount,
                    period_start, period_end, proration)
                VALUES ($1, $2, $3, $4, $5::numeric, $6::numeric, $7::timestamptz::timestamp, $8::timestamptz::timestamp, false)
                RETURNING id
                """,
                [invoiceID, line.kind, line.description, line.quantity, line.unit4, currency.text(line.amount), period?.start, period?.end])
            effects.append(
                Effect(
                    entity: "invoice_line", key: String(lineID),
                    fields: [
                        "invoice_id": String(invoiceID), "kind": line.kind, "quantity": String(line.quantity),
                        "amount": String(line.amount),
                    ]))
        }
        return (invoiceID, total, effects)
    }

    /// Locks invoice `id` with its customer (and subscription); `nil` when the condition no
    /// longer holds. Returns the customer and the invoice's subscription.
    private mutating func lockedInvoice(_ id: Int64, _ condition: String) throws -> (LockedCustomer, Int64?)? {
        guard let row = try one("SELECT customer_id, subscription_id FROM invoices WHERE id = $1", [id]) else { return nil }
        let customerID = try row.decode(at: 0, as: Int64.self)
        let subscriptionID = try row.decode(at: 1, as: Int64?.self)
        guard let customer = try lockCustomer(customerID), customer.currency != nil else { return nil }
        if let subscriptionID { try lockSubscription(subscriptionID) }
        try lockInvoice(id)
        guard try holds("invoices", id, condition) else { return nil }
        return (customer, subscriptionID)
    }

    /// The money columns of a locked invoice, in minor units.
    private func invoiceMoney(_ id: Int64, _ currency: LegacyCurrency) throws -> (total: Int64, paid: Int64, due: Int64, number: String?) {
        let row = try one("SELECT total::text, amount_paid::text, amount_due::text, number FROM invoices WHERE id = $1", [id])!
        return (
            try currency.minor(try row.decode(at: 0, as: String.self), context: "invoice \(id)"),
            try currency.minor(try row.decode(at: 1, as: String.self), context: "invoice \(id)"),
            try currency.minor(try row.decode(at: 2, as: String.self), context: "invoice \(id)"),
            try row.decode(at: 3, as: String?.self)
        )
    }

    /// A draft is finalized: the customer's next invoice number, issued today, due today (30
    /// days for bank-transfer customers); the customer now owes it (balance). A draft of 0
    /// is paid at once, with no payment (story 3). The customer's unapplied credit pays what
    /// it can at once, as the generator does (stories 16, 17): credit notes' remaining credit
    /// first, oldest first, then goodwill; each use an `applied_to_invoice` transaction of +x
    /// (with its credit note) that counts in `amount_paid` (C05, C09). An invoice the credit
    /// covers is paid with no payment.
    private mutating func finalizeInvoice() throws -> JournalEntry? {
        let condition = "x.status = 0 AND \(Self.live("x.customer_id"))"
        guard let id = try pick("invoices", where: condition), let (customer, subscriptionID) = try lockedInvoice(id, condition),
            let currency = customer.currency
        else { return nil }
        let money = try invoiceMoney(id, currency)
        let number = try nextInvoiceNumber(customer.id)
        let bankTransfer =
            try one("SELECT method FROM payments WHERE customer_id = $1 ORDER BY id DESC LIMIT 1", [customer.id])?
            .decode(at: 0, as: String?.self) == "bank_transfer"
        let uses = try creditUses(customer, currency, due: money.total)
        let applied = uses.reduce(Int64(0)) { $0 + $1.amount }
        let t = now()
        let paid = money.total == applied
        try execute(
            """
            UPDATE invoices SET status = $2, number = $3, finalized_at = $4::timestamptz::timestamp,
                issued_on = ($4::timestamptz::timestamp)::date, due_on = ($4::timestamptz::timestamp)::date + $5::int,
                paid_at = CASE WHEN $6 THEN $4::timestamptz::timestamp END, amount_paid = $7::numeric,
                amount_due = CASE WHEN $6 THEN 0 ELSE total - $7::numeric END, updated_at = $4::timestamptz::timestamp
            WHERE id = $1
            """, [id, Int64(paid ? 2 : 1), number, t, Int64(bankTransfer ? 30 : 0), paid, currency.text(applied)])
        var effects = [
            Effect(
                entity: "invoice", key: String(id),
                fields: [
                    "status": paid ? "paid" : "open", "number": number, "finalized_at": t.iso8601,
                    "paid_at": paid ? t.iso8601 : LegacyEffects.null, "amount_paid": String(applied),
                    "amount_due": String(money.total - applied), "total": String(money.total), "currency": currency.code,
                ])
        ]
        var keys: [String: Int64] = ["customer": customer.id, "invoice": id]
        keys["subscription"] = subscriptionID
        for use in uses {
            let transactionID = try insert(
                """
                INSERT INTO customer_balance_transactions (customer_id, amount, currency, type, invoice_id, credit_note_id,
                    description, created_at)
                VALUES ($1, $2::numeric, $3, 'applied_to_invoice', $4, $5, $6, $7::timestamptz::timestamp) RETURNING id
                """, [customer.id, currency.text(use.amount), currency.code, id, use.creditNote, "Applied to invoice \(number)", t])
            effects.append(
                Effect(
                    entity: "balance_transaction", key: String(transactionID),
                    fields: [
                        "customer_id": String(customer.id), "type": "applied_to_invoice", "amount": String(use.amount),
                        "currency": currency.code, "invoice_id": String(id), "credit_note_id": use.creditNote.map(String.init),
                    ]))
            if let note = use.creditNote {
                try execute(
                    "UPDATE credit_notes SET balance_remaining = balance_remaining - $2::numeric WHERE id = $1",
                    [note, currency.text(use.amount)])
                effects.append(
                    Effect(entity: "credit_note", key: String(note), fields: ["balance_remaining": String(use.remainingAfter)]))
            }
        }
        // The balance counts what is owed minus the unapplied credit: applying credit lowers
        // both alike, so only the invoice's total is new.
        if money.total != 0 { try addToBalance(customer, currency, money.total, at: t) }
        if applied != 0 { try refreshCreditBalance(customer.id) }
        return entry(
            keys: keys, effects: effects,
            summary: "invoice \(id) of \(currency.human(money.total)) finalized as \(number) for customer \(customer.id)"
                + (applied > 0 ? ", \(currency.human(applied)) of credit applied" : "")
                + (paid ? ", paid at once" + (money.total == 0 ? " (nothing to pay)" : " by credit") : ""))
    }

    /// How the customer's unapplied credit pays up to `due`: credit notes with credit left,
    /// oldest first (locked: last in the global lock order), then goodwill credit.
    private func creditUses(_ customer: LockedCustomer, _ currency: LegacyCurrency, due: Int64) throws -> [CreditUse] {
        guard due > 0 else { return [] }
        let unapplied = try currency.minor(
            try one(
                "SELECT (-COALESCE(sum(amount), 0))::text FROM customer_balance_transactions WHERE customer_id = $1", [customer.id]
            )!.decode(at: 0, as: String.self), context: "the balance transactions of customer \(customer.id)")
        guard unapplied > 0 else { return [] }
        var left = min(due, unapplied)
        var uses: [CreditUse] = []
        var inNotes: Int64 = 0
        for row in try rows(
            """
            SELECT id, balance_remaining::text FROM credit_notes
            WHERE customer_id = $1 AND status = 'issued' AND balance_remaining > 0 ORDER BY id FOR UPDATE
            """, [customer.id])
        {
            let note = try row.decode(at: 0, as: Int64.self)
            let remaining = try currency.minor(try row.decode(at: 1, as: String.self), context: "credit note \(note)")
            inNotes += remaining
            guard left > 0 else { continue }
            let used = min(remaining, left)
            left -= used
            uses.append(CreditUse(creditNote: note, amount: used, remainingAfter: remaining - used))
        }
        let goodwill = unapplied - inNotes
        if left > 0, goodwill > 0 { uses.append(CreditUse(creditNote: nil, amount: min(left, goodwill), remainingAfter: 0)) }
        return uses
    }

    /// The customer's next invoice number: its numbering's prefix (`LL0016`) and one more than
    /// the highest sequence it used, so numbers stay unique (C16); the customer row is locked,
    /// so two connections cannot take the same number.
    private func nextInvoiceNumber(_ customerID: Int64) throws -> String {
        var prefix: Substring?
        var highest: Int64 = 0
        for row in try rows("SELECT number FROM invoices WHERE customer_id = $1 AND number IS NOT NULL ORDER BY id", [customerID]) {
            let number = try row.decode(at: 0, as: String.self)
            guard let dash = number.lastIndex(of: "-"), let sequence = Int64(number[number.index(after: dash)...]),
                number.hasPrefix("LL"), !number.contains("CN")
            else { continue }
            if sequence >= highest {
                highest = sequence
                prefix = number[..<dash]
            }
        }
        let digits = String(highest + 1)
        let padded = String(repeating: "0", count: max(0, 4 - digits.count)) + digits
        let customerDigits = String(customerID)
        return String(prefix ?? Substring("LL" + String(repeating: "0", count: max(0, 4 - customerDigits.count)) + customerDigits))
            + "-" + padded
    }

    /// The SQL value of one minor unit of the currency `code` evaluates to (0.01, 1, 0.001).
    private static func minorUnit(_ code: String) -> String {
        "(10::numeric ^ (-CASE \(code) WHEN 'JPY' THEN 0 WHEN 'KWD' THEN 3 ELSE 2 END))"
    }

    private static let noPending =
        "NOT EXISTS (SELECT 1 FROM payments p WHERE p.invoice_id = x.id AND p.status = 'pending' OFFSET 0)"

    /// Inserts a payment of `amount` on invoice `id` and returns its id.
    private mutating func insertPayment(
        customer: LockedCustomer, currency: LegacyCurrency, invoice id: Int64, status: String, method: String,
        amount: Int64, failureCode: String?, at t: PostgresTimestamp
    ) throws -> Int64 {
        let paymentID = try nextPaymentID()
        let provider: String? = method == "bank_transfer" ? nil : providerPaymentID(paymentID)
        try execute(
            """
            INSERT INTO payments (id, customer_id, invoice_id, status, method, provider_payment_id, failure_code, amount,
                currency, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8::numeric, $9, $10::timestamptz::timestamp, $10::timestamptz::timestamp)
            """, [paymentID, customer.id, id, status, method, provider, failureCode, currency.text(amount), currency.code, t])
        return paymentID
    }

    private func paymentEffect(
        _ paymentID: Int64, customer: LockedCustomer, invoice: Int64, status: String, amount: Int64,
        currency: LegacyCurrency, failureCode: String?
    ) -> Effect {
        Effect(
            entity: "payment", key: String(paymentID),
            fields: [
                "customer_id": String(customer.id), "invoice_id": String(invoice), "status": status, "amount": String(amount),
                "currency": currency.code, "failure_code": failureCode,
            ])
    }

    /// Settles what is left of invoice `id` with a succeeded payment: the invoice is paid, the
    /// customer owes that much less.
    private mutating func payInFull(
        _ id: Int64, customer: LockedCustomer, currency: LegacyCurrency, method: String, at t: PostgresTimestamp
    ) throws -> (paymentID: Int64, amount: Int64, effects: [Effect]) {
        let money = try invoiceMoney(id, currency)
        let paymentID = try insertPayment(
            customer: customer, currency: currency, invoice: id, status: "succeeded", method: method, amount: money.due,
            failureCode: nil, at: t)
        try execute(
            """
            UPDATE invoices SET status = 2, amount_paid = total, amount_due = 0, paid_at = $2::timestamptz::timestamp,
                updated_at = $2::timestamptz::timestamp WHERE id = $1
            """, [id, t])
        try addToBalance(customer, currency, -money.due, at: t)
        return (
            paymentID, money.due,
            [
                paymentEffect(paymentID, customer: customer, invoice: id, status: "succeeded", amount: money.due, currency: currency, failureCode: nil),
                Effect(
                    entity: "invoice", key: String(id),
                    fields: ["status": "paid", "amount_paid": String(money.total), "amount_due": "0", "paid_at": t.iso8601]),
            ]
        )
    }

    /// An open invoice is paid in full by card at its first attempt. An invoice whose attempt
    /// failed is in dunning: its retry pays it (`payment_retried`), so the two do not compete
    /// for the same invoices and a failed attempt waits for its retry.
    private mutating func paymentSucceeded() throws -> JournalEntry? {
        let condition = """
            x.status = 1 AND x.amount_due > 0 AND \(Self.noPending) AND \(Self.live("x.customer_id"))
            AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.invoice_id = x.id AND p.status = 'failed' OFFSET 0)
            """
        guard let id = try pick("invoices", where: condition), let (customer, subscriptionID) = try lockedInvoice(id, condition),
            let currency = customer.currency
        else { return nil }
        let t = now()
        let paid = try payInFull(id, customer: customer, currency: currency, method: "card", at: t)
        var keys: [String: Int64] = ["customer": customer.id, "invoice": id, "payment": paid.paymentID]
        keys["subscription"] = subscriptionID
        return entry(
            keys: keys, effects: paid.effects,
            summary: "payment \(paid.paymentID) of \(currency.human(paid.amount)) on invoice \(id) succeeded")
    }

    /// A card payment on an open invoice fails; an active subscription becomes past due.
    private mutating func paymentFailed() throws -> JournalEntry? {
        let condition = "x.status = 1 AND x.amount_due > 0 AND \(Self.noPending) AND \(Self.live("x.customer_id"))"
        guard let id = try pick("invoices", where: condition), let (customer, subscriptionID) = try lockedInvoice(id, condition),
            let currency = customer.currency
        else { return nil }
        let money = try invoiceMoney(id, currency)
        let code = random.pick(LegacyVocabulary.cardFailureCodes)
        let t = now()
        let paymentID = try insertPayment(
            customer: customer, currency: currency, invoice: id, status: "failed", method: "card", amount: money.due,
            failureCode: code, at: t)
        var effects = [
            paymentEffect(paymentID, customer: customer, invoice: id, status: "failed", amount: money.due, currency: currency, failureCode: code)
        ]
        var keys: [String: Int64] = ["customer": customer.id, "invoice": id, "payment": paymentID]
        var pastDue = false
        if let subscriptionID {
            keys["subscription"] = subscriptionID
            if try holds("subscriptions", subscriptionID, "x.status = 'active'") {
                try recordHistory(subscriptionID, at: t)
                try execute(
                    "UPDATE subscriptions SET status = 'past_due', updated_at = $2::timestamptz::timestamp WHERE id = $1",
                    [subscriptionID, t])
                effects.append(Effect(entity: "subscription", key: String(subscriptionID), fields: ["status": "past_due"]))
                pastDue = true
            }
        }
        return entry(
            keys: keys, effects: effects,
            summary: "payment \(paymentID) of \(currency.human(money.due)) on invoice \(id) failed (\(code))"
                + (pastDue ? "; subscription \(subscriptionID!) is past due" : ""))
    }

    /// An invoice with a failed attempt (open, or written off) is paid by a retry; a past-due
    /// subscription becomes active again.
    private mutating func paymentRetried() throws -> JournalEntry? {
        let condition = """
            x.status IN (1, 4) AND x.amount_due > 0 AND \(Self.noPending) AND \(Self.live("x.customer_id"))
            AND EXISTS (SELECT 1 FROM payments p WHERE p.invoice_id = x.id AND p.status = 'failed' OFFSET 0)
            """
        guard let id = try pick("invoices", where: condition), let (customer, subscriptionID) = try lockedInvoice(id, condition),
            let currency = customer.currency
        else { return nil }
        let wasUncollectible = try holds("invoices", id, "x.status = 4")
        let t = now()
        let paid = try payInFull(id, customer: customer, currency: currency, method: "card", at: t)
        var effects = paid.effects
        var keys: [String: Int64] = ["customer": customer.id, "invoice": id, "payment": paid.paymentID]
        var reactivated = false
        if let subscriptionID {
            keys["subscription"] = subscriptionID
            if try holds("subscriptions", subscriptionID, "x.status = 'past_due'") {
                try recordHistory(subscriptionID, at: t)
                try execute(
                    "UPDATE subscriptions SET status = 'active', updated_at = $2::timestamptz::timestamp WHERE id = $1",
                    [subscriptionID, t])
                effects.append(Effect(entity: "subscription", key: String(subscriptionID), fields: ["status": "active"]))
                reactivated = true
            }
        }
        return entry(
            keys: keys, effects: effects,
            summary: "retried payment \(paid.paymentID) of \(currency.human(paid.amount)) on \(wasUncollectible ? "uncollectible " : "")invoice \(id) succeeded"
                + (reactivated ? "; subscription \(subscriptionID!) is active again" : ""))
    }

    /// Part of an open invoice arrives by bank transfer (story 11): no provider id.
    private mutating func partialPayment() throws -> JournalEntry? {
        // At least two minor units due, in the condition itself: a pick that then gave up would
        // pick the same invoice again and again.
        let currency = "btrim(COALESCE(x.currency, (SELECT c.currency FROM customers c WHERE c.id = x.customer_id)))"
        let condition = """
            x.status = 1 AND x.amount_due >= 2 * \(Self.minorUnit(currency)) AND \(Self.noPending) AND \(Self.live("x.customer_id"))
            """
        guard let id = try pick("invoices", where: condition), let (customer, subscriptionID) = try lockedInvoice(id, condition),
            let currency = customer.currency
        else { return nil }
        let money = try invoiceMoney(id, currency)
        guard money.due >= 2 else { return nil }
        let part = min(money.due - 1, max(1, MinorUnits.percent(money.due, random.int(30...70))))
        let t = now()
        let paymentID = try insertPayment(
            customer: customer, currency: currency, invoice: id, status: "succeeded", method: "bank_transfer", amount: part,
            failureCode: nil, at: t)
        try execute(
            """
            UPDATE invoices SET amount_paid = amount_paid + $2::numeric, amount_due = amount_due - $2::numeric,
                updated_at = $3::timestamptz::timestamp WHERE id = $1
            """, [id, currency.text(part), t])
        try addToBalance(customer, currency, -part, at: t)
        var keys: [String: Int64] = ["customer": customer.id, "invoice": id, "payment": paymentID]
        keys["subscription"] = subscriptionID
        return entry(
            keys: keys,
            effects: [
                paymentEffect(paymentID, customer: customer, invoice: id, status: "succeeded", amount: part, currency: currency, failureCode: nil),
                Effect(
                    entity: "invoice", key: String(id),
                    fields: ["status": "open", "amount_paid": String(money.paid + part), "amount_due": String(money.due - part)]),
            ],
            summary: "bank transfer \(paymentID) paid \(currency.human(part)) of invoice \(id), \(currency.human(money.due - part)) still due")
    }

    /// An open invoice with nothing paid on it (no money, no credit, no credit note) is voided;
    /// the customer no longer owes it.
    private mutating func voidInvoice() throws -> JournalEntry? {
        let condition = """
            x.status = 1 AND x.amount_paid = 0 AND \(Self.live("x.customer_id"))
            AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.invoice_id = x.id AND p.status IN ('succeeded', 'pending') OFFSET 0)
            AND NOT EXISTS (SELECT 1 FROM credit_notes n WHERE n.invoice_id = x.id OFFSET 0)
            AND NOT EXISTS (SELECT 1 FROM customer_balance_transactions b
                        WHERE b.customer_id = x.customer_id AND b.invoice_id = x.id OFFSET 0)
            """
        guard let id = try pick("invoices", where: condition), let (customer, subscriptionID) = try lockedInvoice(id, condition),
            let currency = customer.currency
        else { return nil }
        let money = try invoiceMoney(id, currency)
        let t = now()
        try execute(
            """
            UPDATE invoices SET status = 3, amount_due = 0, voided_at = $2::timestamptz::timestamp,
                updated_at = $2::timestamptz::timestamp WHERE id = $1
            """, [id, t])
        try addToBalance(customer, currency, -money.due, at: t)
        var keys: [String: Int64] = ["customer": customer.id, "invoice": id]
        keys["subscription"] = subscriptionID
        return entry(
            keys: keys,
            effects: [
                Effect(
                    entity: "invoice", key: String(id),
                    fields: ["status": "void", "amount_paid": "0", "amount_due": "0", "voided_at": t.iso8601])
            ],
            summary: "invoice \(id) of \(currency.human(money.total)) of customer \(customer.id) voided")
    }

    /// An open invoice is written off: uncollectible, still owed (story 37; nothing records when).
    private mutating func markUncollectible() throws -> JournalEntry? {
        let condition = "x.status = 1 AND \(Self.noPending) AND \(Self.live("x.customer_id"))"
        guard let id = try pick("invoices", where: condition), let (customer, subscriptionID) = try lockedInvoice(id, condition),
            let currency = customer.currency
        else { return nil }
        let money = try invoiceMoney(id, currency)
        let t = now()
        try execute("UPDATE invoices SET status = 4, updated_at = $2::timestamptz::timestamp WHERE id = $1", [id, t])
        var keys: [String: Int64] = ["customer": customer.id, "invoice": id]
        keys["subscription"] = subscriptionID
        return entry(
            keys: keys,
            effects: [
                Effect(entity: "invoice", key: String(id), fields: ["status": "uncollectible", "amount_due": String(money.due)])
            ],
            summary: "invoice \(id) of customer \(customer.id) marked uncollectible with \(currency.human(money.due)) due")
    }

    /// A draft is discarded: the application really deletes the invoice and its lines.
    private mutating func discardDraft() throws -> JournalEntry? {
        let condition = "x.status = 0 AND \(Self.live("x.customer_id"))"
        guard let id = try pick("invoices", where: condition), let (customer, subscriptionID) = try lockedInvoice(id, condition)
        else { return nil }
        let lines = try rows("SELECT id FROM invoice_line_items WHERE invoice_id = $1 ORDER BY id", [id]).map {
            try $0.decode(at: 0, as: Int64.self)
        }
        _ = now()
        try execute("DELETE FROM invoice_line_items WHERE invoice_id = $1", [id])
        try execute("DELETE FROM invoices WHERE id = $1", [id])
        var keys: [String: Int64] = ["customer": customer.id, "invoice": id]
        keys["subscription"] = subscriptionID
        return entry(
            keys: keys,
            effects: [Effect(entity: "invoice", key: String(id), deleted: true)]
                + lines.map { Effect(entity: "invoice_line", key: String($0), deleted: true) },
            summary: "draft invoice \(id) of customer \(customer.id) discarded with its \(lines.count) line(s)")
    }

    // MARK: - Refunds and credit

    /// A succeeded payment is refunded, in full (what is left of it) or in part (C10: the
    /// refunds that count never exceed the payment). The invoice stays paid.
    private mutating func refund(full: Bool) throws -> JournalEntry? {
        let refunded = "COALESCE((SELECT sum(r.amount) FROM refunds r WHERE r.payment_id = x.id AND r.status IN ('succeeded', 'pending')), 0)"
        let condition =
            "x.status = 'succeeded' AND x.invoice_id IS NOT NULL AND \(Self.live("x.customer_id")) AND "
            + (full ? "\(refunded) = 0" : "x.amount - \(refunded) >= 2 * \(Self.minorUnit("btrim(x.currency)"))")
        guard let id = try pick("payments", where: condition),
            let row = try one("SELECT customer_id, invoice_id FROM payments WHERE id = $1", [id])
        else { return nil }
        let customerID = try row.decode(at: 0, as: Int64.self)
        let invoiceID = try row.decode(at: 1, as: Int64.self)
        guard let customer = try lockCustomer(customerID) else { return nil }
        try lockPayment(id)
        guard try holds("payments", id, condition),
            let amounts = try one("SELECT x.amount::text, (\(refunded))::text, x.currency FROM payments x WHERE x.id = $1", [id])
        else { return nil }
        let currency = try LegacyCurrency(try amounts.decode(at: 2, as: String?.self) ?? customer.currency?.code ?? "", context: "payment \(id)")
        let amount = try currency.minor(try amounts.decode(at: 0, as: String.self), context: "payment \(id)")
        let refundable = amount - (try currency.minor(try amounts.decode(at: 1, as: String.self), context: "refunds of payment \(id)"))
        let value: Int64
        if full {
            value = refundable
        } else {
            guard refundable >= 2 else { return nil }
            value = min(refundable - 1, max(1, MinorUnits.percent(refundable, random.int(10...60))))
        }
        let reason = full ? "requested_by_customer" : random.pick(LegacyVocabulary.refundReasons)
        let t = now()
        let refundID = try insert(
            """
            INSERT INTO refunds (payment_id, amount, reason, status, created_at)
            VALUES ($1, $2::numeric, $3, 'succeeded', $4::timestamptz::timestamp) RETURNING id
            """, [id, currency.text(value), reason, t])
        return entry(
            keys: ["customer": customer.id, "invoice": invoiceID, "payment": id, "refund": refundID],
            effects: [
                Effect(entity: "refund", key: String(refundID), fields: ["payment_id": String(id), "amount": String(value), "status": "succeeded"])
            ],
            summary: "refund \(refundID) of \(currency.human(value)) on payment \(id) (\(full ? "in full" : "in part"), \(reason)) succeeded")
    }

    /// A credit note on a paid invoice: its credit goes to the customer balance (a
    /// `credit_note` transaction of −total), to be used by later invoices (C09).
    private mutating func creditNote() throws -> JournalEntry? {
        let credited = "COALESCE((SELECT sum(n.total) FROM credit_notes n WHERE n.invoice_id = x.id AND n.status = 'issued'), 0)"
        let condition = "x.status = 2 AND x.total > \(credited) AND \(Self.live("x.customer_id"))"
        guard let id = try pick("invoices", where: condition), let (customer, subscriptionID) = try lockedInvoice(id, condition),
            let currency = customer.currency,
            let row = try one("SELECT x.total::text, (\(credited))::text, x.number FROM invoices x WHERE x.id = $1", [id])
        else { return nil }
        let total = try currency.minor(try row.decode(at: 0, as: String.self), context: "invoice \(id)")
        let creditable = total - (try currency.minor(try row.decode(at: 1, as: String.self), context: "credit notes of invoice \(id)"))
        guard creditable > 0 else { return nil }
        let amount = min(creditable, max(1, MinorUnits.percent(total, random.pick([10, 20, 25, 50, 100]))))
        let reason = random.pick(LegacyVocabulary.creditNoteReasons)
        let invoiceNumber = try row.decode(at: 2, as: String?.self) ?? "LL\(customer.id)"
        let notes = try one("SELECT count(*) FROM credit_notes WHERE customer_id = $1", [customer.id])!.decode(at: 0, as: Int64.self)
        let prefix = invoiceNumber.lastIndex(of: "-").map { String(invoiceNumber[..<$0]) } ?? invoiceNumber
        let number = prefix + "-CN-" + (notes + 1 < 10 ? "0" : "") + String(notes + 1)
        let t = now()
        let noteID = try insert(
            """
            INSERT INTO credit_notes (invoice_id, customer_id, number, total, balance_remaining, reason, status, created_at)
            VALUES ($1, $2, $3, $4::numeric, $4::numeric, $5, 'issued', $6::timestamptz::timestamp) RETURNING id
            """, [id, customer.id, number, currency.text(amount), reason, t])
        let transactionID = try insert(
            """
            INSERT INTO customer_balance_transactions (customer_id, amount, currency, type, invoice_id, credit_note_id,
                description, created_at)
            VALUES ($1, $2::numeric, $3, 'credit_note', NULL, $4, $5, $6::timestamptz::timestamp) RETURNING id
            """, [customer.id, currency.text(-amount), currency.code, noteID, "Credit note \(number)", t])
        try addToBalance(customer, currency, -amount, at: t)
        try refreshCreditBalance(customer.id)
        var keys: [String: Int64] = ["customer": customer.id, "invoice": id, "credit_note": noteID, "balance_transaction": transactionID]
        keys["subscription"] = subscriptionID
        return entry(
            keys: keys,
            effects: [
                Effect(
                    entity: "credit_note", key: String(noteID),
                    fields: [
                        "customer_id": String(customer.id), "invoice_id": String(id), "status": "issued", "total": String(amount),
                        "balance_remaining": String(amount),
                    ]),
                Effect(
                    entity: "balance_transaction", key: String(transactionID),
                    fields: [
                        "customer_id": String(customer.id), "type": "credit_note", "amount": String(-amount),
                        "currency": currency.code, "invoice_id": LegacyEffects.null, "credit_note_id": String(noteID),
                    ]),
            ],
            summary: "credit note \(noteID) (\(number)) of \(currency.human(amount)) on invoice \(id) credited to customer \(customer.id)")
    }

    /// Goodwill credit added to a customer's balance: an `adjustment` of −x (story 19).
    private mutating func customerCredit() throws -> JournalEntry? {
        let condition = """
            x.deleted_at IS NULL
            AND (x.currency IS NOT NULL OR EXISTS (SELECT 1 FROM invoices i WHERE i.customer_id = x.id AND i.currency IS NOT NULL OFFSET 0))
            """
        guard let id = try pick("customers", where: condition), let customer = try lockCustomer(id), let currency = customer.currency
        else { return nil }
        let amount = currency.roughDollar * random.pick([5, 10, 20, 25, 50])
        let t = now()
        let transactionID = try insert(
            """
            INSERT INTO customer_balance_transactions (customer_id, amount, currency, type, invoice_id, credit_note_id,
                description, created_at)
            VALUES ($1, $2::numeric, $3, 'adjustment', NULL, NULL, 'Goodwill credit', $4::timestamptz::timestamp) RETURNING id
            """, [id, currency.text(-amount), currency.code, t])
        try addToBalance(customer, currency, -amount, at: t)
        try refreshCreditBalance(id)
        return entry(
            keys: ["customer": id, "balance_transaction": transactionID],
            effects: [
                Effect(
                    entity: "balance_transaction", key: String(transactionID),
                    fields: [
                        "customer_id": String(id), "type": "adjustment", "amount": String(-amount), "currency": currency.code,
                        "invoice_id": LegacyEffects.null, "credit_note_id": LegacyEffects.null,
                    ])
            ],
            summary: "goodwill credit of \(currency.human(amount)) added to customer \(id)")
    }

    // MARK: - Customer details

    private mutating func editEmail() throws -> JournalEntry? {
        guard let id = try pick("customers", where: "x.deleted_at IS NULL"), let customer = try lockCustomer(id) else { return nil }
        let domain = customer.email.split(separator: "@").last.map(String.init) ?? "example.com"
        let email = random.pick(LegacyVocabulary.mailboxes) + "+\(operation.id)@" + domain
        let t = now()
        try execute("UPDATE customers SET email = $2, updated_at = $3::timestamptz::timestamp WHERE id = $1", [id, email, t])
        return entry(
            keys: ["customer": id], effects: [Effect(entity: "customer", key: String(id), fields: ["email": email])],
            summary: "customer \(id) changed its billing email to \(email)")
    }

    private mutating func editName() throws -> JournalEntry? {
        guard let id = try pick("customers", where: "x.deleted_at IS NULL"), let customer = try lockCustomer(id) else { return nil }
        let base = customer.name.map { $0.split(separator: " ").dropLast().joined(separator: " ") } ?? ""
        let name = (base.isEmpty ? random.pick(LegacyVocabulary.companyFirst) + random.pick(LegacyVocabulary.companySecond) : base)
            + " " + random.pick(LegacyVocabulary.companySuffix)
        let t = now()
        try execute("UPDATE customers SET name = $2, updated_at = $3::timestamptz::timestamp WHERE id = $1", [id, name, t])
        return entry(
            keys: ["customer": id], effects: [Effect(entity: "customer", key: String(id), fields: ["name": name])],
            summary: "customer \(id) renamed to \(name)")
    }

    /// A customer with nothing running (every subscription canceled, or none) and nothing owed
    /// or credited (no draft, open or uncollectible invoice, balance and credit 0) is
    /// soft-deleted: `deleted_at`, the rows and the PII stay (sin 14).
    private mutating func softDelete() throws -> JournalEntry? {
        let condition = """
            x.deleted_at IS NULL AND x.balance = 0 AND x.credit_balance = 0
            AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.customer_id = x.id AND s.status <> 'canceled' OFFSET 0)
            AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.customer_id = x.id AND i.status IN (0, 1, 4) OFFSET 0)
            AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.customer_id = x.id AND p.status = 'pending' OFFSET 0)
            """
        guard let id = try pick("customers", where: condition), try lockCustomer(id) != nil, try holds("customers", id, condition)
        else { return nil }
        let t = now()
        try execute(
            "UPDATE customers SET deleted_at = $2::timestamptz::timestamp, updated_at = $2::timestamptz::timestamp WHERE id = $1",
            [id, t])
        return entry(
            keys: ["customer": id], effects: [Effect(entity: "customer", key: String(id), fields: ["archived_at": t.iso8601])],
            summary: "customer \(id) soft-deleted")
    }
}

/// Credit used to pay an invoice: from a credit note (with what it has left afterwards), or
/// goodwill credit (`creditNote` nil).
private struct CreditUse {
    let creditNote: Int64?
    let amount: Int64
    let remainingAfter: Int64
}

/// A line of a draft invoice before it is written.
private struct DraftLine {
    let kind: String
    let description: String
    let quantity: Int64
    /// `unit_amount` text at four decimals.
    let unit4: String
    let amount: Int64
}
