import Billing
import Commands
import Postgres
import TestSupport
import Testing

private func ts(_ text: String) -> PostgresTimestamp { PostgresTimestamp(text)! }

/// Rows and states the subscription tests decide on.
private enum Rows {
    static let created = ts("2025-01-31T09:30:00Z")

    static func customer(_ id: String = "5", currency: String? = "USD", archived: Bool = false) -> CanonicalRow {
        CanonicalRow(
            entity: .customer,
            values: [
                "customer_id": .text(id), "email": .text("ops@borealis.example"), "name": .text("Borealis Ltd"),
                "currency": currency.map(CanonicalValue.text) ?? .null, "created_at": .timestamp(created),
                "updated_at": .timestamp(created), "archived_at": archived ? .timestamp(created) : .null,
            ],
            attributes: ["balance": "0.00", "credit_balance": "0"])
    }

    static func plan(
        _ id: String, amount: Int64, currency: String = "USD", interval: String = "month", trialDays: Int64? = 0,
        code: String = "pro-monthly", archived: Bool = false
    ) -> CanonicalRow {
        CanonicalRow(
            entity: .plan,
            values: [
                "plan_id": .text(id), "code": .text(code), "name": .text(code), "amount": .amount(amount),
                "currency": .text(currency), "interval": .text(interval),
                "trial_days": trialDays.map(CanonicalValue.integer) ?? .null, "archived": .boolean(archived),
                "created_at": .timestamp(ts("2023-01-01T00:00:00Z")),
            ])
    }

    /// Starter 19.00, Pro 49.00, Business 99.00 (USD/month), Pro EUR, Pro annual, Team per seat,
    /// an archived plan, a trial plan and a weekly plan.
    static let plans = [
        plan("1", amount: 1900, code: "starter-monthly"), plan("2", amount: 4900),
        plan("3", amount: 9900, code: "business-monthly"),
        plan("7", amount: 4500, currency: "EUR"), plan("4", amount: 39000, interval: "year", code: "pro-annual"),
        plan("6", amount: 1200, code: "team-seat-monthly"),
        plan("5", amount: 9900, interval: "year", code: "basic-annual", archived: true),
        plan("12", amount: 1900, trialDays: 14, code: "starter-trial"),
        plan("13", amount: 500, interval: "week", code: "weekly"),
    ]

    static func subscription(
        _ id: String = "51", plan: String = "2", status: String = "active", start: String = "2025-01-31T09:30:00Z",
        end: String = "2025-02-28T09:30:00Z", cancelAtPeriodEnd: Bool = false, canceledAt: PostgresTimestamp? = nil,
        trialEndsAt: PostgresTimestamp? = nil, quantity: Int64 = 1
    ) -> CanonicalRow {
        CanonicalRow(
            entity: .subscription,
            values: [
                "subscription_id": .text(id), "customer_id": .text("5"), "plan_id": .text(plan),
                "status": .text(status),
                "quantity": .integer(quantity), "started_at": .timestamp(created),
                "trial_ends_at": trialEndsAt.map(CanonicalValue.timestamp) ?? .null,
                "current_period_start": .timestamp(ts(start)), "current_period_end": .timestamp(ts(end)),
                "cancel_at_period_end": .boolean(cancelAtPeriodEnd),
                "canceled_at": canceledAt.map(CanonicalValue.timestamp) ?? .null,
                "ended_at": .null, "previous_subscription_id": .null, "created_at": .timestamp(created),
                "updated_at": .timestamp(created),
            ])
    }

    static func state(_ rows: [CanonicalRow]) -> CommandState {
        var streams: [String: StreamState] = [:]
        for row in rows { streams[row.streamID] = StreamState(row: row, version: 4, lastOccurredAt: created) }
        return CommandState(streams: streams)
    }

    /// The customer, every plan and `subscriptions`.
    static func world(_ subscriptions: [CanonicalRow], customer: CanonicalRow = customer()) -> CommandState {
        state([customer] + plans + subscriptions)
    }

    static func rejection(_ command: BillingCommand, _ state: CommandState) -> CommandRejection? {
        do {
            _ = try command.decide(in: state)
            return nil
        } catch {
            return error
        }
    }

    /// `row` with `changes` applied.
    static func with(_ row: CanonicalRow, _ changes: [String: CanonicalValue]) -> CanonicalRow {
        var changed = row
        for (column, value) in changes { changed.values[column] = value }
        return changed
    }
}

// MARK: - Period arithmetic

@Suite("Subscription periods: PostgreSQL's timestamp + interval")
struct SubscriptionPeriodTests {
    @Test(arguments: [
        ("2024-01-31T10:11:12.345678Z", "month", Int64(1), "2024-02-29T10:11:12.345678Z"),
        ("2025-01-31T10:11:12Z", "month", 1, "2025-02-28T10:11:12Z"),
        ("2025-03-31T00:00:00Z", "month", 1, "2025-04-30T00:00:00Z"),
        ("2025-12-31T23:59:59.999999Z", "month", 1, "2026-01-31T23:59:59.999999Z"),
        ("2025-01-31T08:00:00Z", "month", 2, "2025-03-31T08:00:00Z"),
        ("2025-11-15T08:00:00Z", "month", 3, "2026-02-15T08:00:00Z"),
        ("2024-02-29T12:00:00Z", "year", 1, "2025-02-28T12:00:00Z"),
        ("2024-02-29T12:00:00Z", "year", 4, "2028-02-29T12:00:00Z"),
        ("2100-01-31T00:00:00Z", "month", 1, "2100-02-28T00:00:00Z"),
        ("2000-01-31T00:00:00Z", "month", 1, "2000-02-29T00:00:00Z"),
        ("2025-12-29T06:30:00Z", "week", 1, "2026-01-05T06:30:00Z"),
        ("2024-02-28T06:30:00Z", "day", 1, "2024-02-29T06:30:00Z"),
        ("2025-10-20T15:40:00Z", "day", 14, "2025-11-03T15:40:00Z"),
    ])
    func advancesLikePostgreSQL(start: String, unit: String, count: Int64, expected: String) {
        #expect(SubscriptionPeriod.advance(ts(start), by: unit, count: count) == ts(expected))
    }

    @Test func eachRenewalStepStartsFromThePreviousClampedEnd() {
        var end = ts("2024-01-31T09:00:00Z")
        var ends: [String] = []
        for _ in 0..<3 {
            end = SubscriptionPeriod.advance(end, by: "month")!
            ends.append(end.iso8601)
        }
        #expect(ends == ["2024-02-29T09:00:00.000000Z", "2024-03-29T09:00:00.000000Z", "2024-04-29T09:00:00.000000Z"])
    }

    @Test func refusesWhatItCannotCompute() {
        #expect(SubscriptionPeriod.advance(ts("2025-01-01T00:00:00Z"), by: "fortnight") == nil)
        #expect(SubscriptionPeriod.advance(ts("2025-01-01T00:00:00Z"), by: "month", count: -1) == nil)
        #expect(SubscriptionPeriod.advance(.infinity, by: "month") == nil)
        #expect(SubscriptionPeriod.advance(PostgresTimestamp.maximumFinite, by: "day") == nil)
    }

    /// Every day of four years (a leap year, a century that is not one, 2000 that is) at a
    /// time with microseconds, plus each interval the plans use: the same instants PostgreSQL
    /// computes.
    @Test func agreesWithPostgreSQLOnEveryDayOfFourYears() async throws {
        var cases: [(PostgresTimestamp, String, Int64)] = []
        for year in [1999, 2000, 2024, 2100] {
            for month in 1...12 {
                for day in 1...Int(SubscriptionPeriod.daysIn(month: Int64(month), of: Int64(year))) {
                    let start = PostgresTimestamp(
                        year: year, month: month, day: day, hour: 23, minute: 59, second: 58, microsecond: 123_457)!
                    let (unit, count) = [("month", Int64(1)), ("year", 1), ("week", 1), ("day", 14), ("month", 5)][
                        (day + month) % 5]
                    cases.append((start, unit, count))
                }
            }
        }
        try await TestDatabase.withConnection { connection, _ in
            let values = cases.enumerated().map { index, c in "(\(index), '\(c.0.iso8601)', '\(c.2) \(c.1)')" }
            let result = try await connection.query(
                """
                SELECT n, to_char(t::timestamptz AT TIME ZONE 'UTC' + i::interval, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                FROM (VALUES \(values.joined(separator: ", "))) AS v(n, t, i) ORDER BY n
                """)
            #expect(result.rows.count == cases.count)
            var mismatches: [String] = []
            for row in result.rows {
                let index = try row.decode(at: 0, as: Int64.self)
                let expected = try row.decode(at: 1, as: String.self)
                let c = cases[Int(index)]
                let ours = SubscriptionPeriod.advance(c.0, by: c.1, count: c.2)
                if ours != PostgresTimestamp(expected) {
                    mismatches.append(
                        "\(c.0.iso8601) + \(c.2) \(c.1): PostgreSQL \(expected), ours \(ours?.iso8601 ?? "nil")")
                }
            }
            #expect(mismatches == [])
        }
    }
}

// MARK: - Commands

@Suite("Subscription commands: rules and decided rows")
struct SubscriptionRulesTests {
    static let now = ts("2025-10-31T12:00:00.5Z")

    // MARK: start_subscription

    @Test func startSubscriptionReadsTheSubscriptionCustomerAndPlan() {
        let command = BillingCommand.startSubscription(
            StartSubscription(subscriptionID: "52", customerID: "5", planID: "2", at: Self.now))
        #expect(
            command.requirements(given: CommandState())
                == [.stream(.subscription, key: "52"), .stream(.customer, key: "5"), .stream(.plan, key: "2")])
    }

    @Test func startSubscriptionWithoutTrialIsActiveForOneInterval() throws {
        let at = ts("2025-01-31T10:00:00Z")
        let command = BillingCommand.startSubscription(
            StartSubscription(subscriptionID: "52", customerID: "5", planID: "2", at: at))
        let decision = try command.decide(in: Rows.world([]))
        #expect(
            decision.rows == [
                CanonicalRow(
                    entity: .subscription,
                    values: [
                        "subscription_id": .text("52"), "customer_id": .text("5"), "plan_id": .text("2"),
                        "status": .text("active"),
                        "quantity": .integer(1), "started_at": .timestamp(at), "trial_ends_at": .null,
                        "current_period_start": .timestamp(at),
                        "current_period_end": .timestamp(ts("2025-02-28T10:00:00Z")),
                        "cancel_at_period_end": .boolean(false), "canceled_at": .null, "ended_at": .null,
                        "previous_subscription_id": .null, "created_at": .timestamp(at), "updated_at": .timestamp(at),
                    ])
            ])
    }

    @Test func startSubscriptionWithTrialDaysIsTrialingUntilTheTrialEnds() throws {
        let at = ts("2025-10-25T15:40:00.25Z")
        let command = BillingCommand.startSubscription(
            StartSubscription(subscriptionID: "53", customerID: "5", planID: "12", at: at))
        let decision = try command.decide(in: Rows.world([]))
        let trialEnd = ts("2025-11-08T15:40:00.25Z")
        #expect(decision.rows.count == 1)
        #expect(decision.rows.first?["status"] == .text("trialing"))
        #expect(decision.rows.first?["trial_ends_at"] == .timestamp(trialEnd))
        #expect(decision.rows.first?["current_period_start"] == .timestamp(at))
        #expect(decision.rows.first?["current_period_end"] == .timestamp(trialEnd))
    }

    @Test func startSubscriptionOnAPerSeatPlanKeepsTheQuantity() throws {
        let command = BillingCommand.startSubscription(
            StartSubscription(subscriptionID: "54", customerID: "5", planID: "6", quantity: 8, at: Self.now))
        #expect(try command.decide(in: Rows.world([])).rows.first?["quantity"] == .integer(8))
    }

    @Test func startSubscriptionForACustomerWithoutCurrency() throws {
        let command = BillingCommand.startSubscription(
            StartSubscription(subscriptionID: "52", customerID: "5", planID: "7", at: Self.now))
        #expect(
            try command.decide(in: Rows.world([], customer: Rows.customer(currency: nil))).rows.first?["plan_id"]
                == .text("7"))
    }

    @Test func startSubscriptionRefusesAnExistingKey() {
        let command = BillingCommand.startSubscription(
            StartSubscription(subscriptionID: "51", customerID: "5", planID: "2", at: Self.now))
        #expect(Rows.rejection(command, Rows.world([Rows.subscription()]))?.code == .alreadyExists)
    }

    @Test func startSubscriptionRefusesAMissingCustomer() {
        let command = BillingCommand.startSubscription(
            StartSubscription(subscriptionID: "52", customerID: "6", planID: "2", at: Self.now))
        #expect(Rows.rejection(command, Rows.world([]))?.code == .notFound)
    }

    @Test func startSubscriptionRefusesAnArchivedCustomer() {
        let command = BillingCommand.startSubscription(
            StartSubscription(subscriptionID: "52", customerID: "5", planID: "2", at: Self.now))
        #expect(Rows.rejection(command, Rows.world([], customer: Rows.customer(archived: true)))?.code == .invalidState)
    }

    @Test func startSubscriptionRefusesAMissingPlan() {
        let command = BillingCommand.startSubscription(
            StartSubscription(subscriptionID: "52", customerID: "5", planID: "99", at: Self.now))
        let rejection = Rows.rejection(command, Rows.world([]))
        #expect(rejection?.code == .notFound)
        #expect(rejection?.entity == .plan)
    }

    @Test func startSubscriptionRefusesAnArchivedPlan() {
        let command = BillingCommand.startSubscription(
            StartSubscription(subscriptionID: "52", customerID: "5", planID: "5", at: Self.now))
        #expect(Rows.rejection(command, Rows.world([]))?.code == .invalidState)
    }

    @Test func startSubscriptionRefusesAPlanInAnotherCurrency() {
        let command = BillingCommand.startSubscription(
            StartSubscription(subscriptionID: "52", customerID: "5", planID: "7", at: Self.now))
        let rejection = Rows.rejection(command, Rows.world([]))
        #expect(rejection?.code == .currencyMismatch)
        #expect(rejection?.detail == "customer 5 is billed in USD, plan 7 is priced in EUR")
    }

    @Test(arguments: [Int64(0), -2])
    func startSubscriptionRefusesAQuantityBelowOne(quantity: Int64) {
        let command = BillingCommand.startSubscription(
            StartSubscription(subscriptionID: "52", customerID: "5", planID: "6", quantity: quantity, at: Self.now))
        #expect(Rows.rejection(command, Rows.world([]))?.code == .invalidInput)
    }

    // MARK: activate_trial

    static let trial = Rows.subscription(
        plan: "12", status: "trialing", start: "2025-10-25T15:40:00Z", end: "2025-11-08T15:40:00Z",
        trialEndsAt: ts("2025-11-08T15:40:00Z"))

    @Test func activateTrialReadsTheSubscriptionThenItsCustomerAndPlan() {
        let command = BillingCommand.activateTrial(ActivateTrial(subscriptionID: "51", at: Self.now))
        #expect(command.requirements(given: CommandState()) == [.stream(.subscription, key: "51")])
        #expect(
            command.requirements(given: Rows.state([Self.trial]))
                == [.stream(.subscription, key: "51"), .stream(.customer, key: "5"), .stream(.plan, key: "12")])
    }

    @Test func activateTrialEndsTheTrialNowAndStartsAPaidPeriod() throws {
        let decision = try BillingCommand.activateTrial(ActivateTrial(subscriptionID: "51", at: Self.now)).decide(
            in: Rows.world([Self.trial]))
        #expect(
            decision.rows == [
                Rows.with(
                    Self.trial,
                    [
                        "status": .text("active"), "trial_ends_at": .timestamp(Self.now),
                        "current_period_start": .timestamp(Self.now),
                        "current_period_end": .timestamp(ts("2025-11-30T12:00:00.5Z")),
                        "updated_at": .timestamp(Self.now),
                    ])
            ])
    }

    @Test func activateTrialAfterTheTrialsEndKeepsItsEnd() throws {
        let at = ts("2025-11-10T08:00:00Z")
        let decision = try BillingCommand.activateTrial(ActivateTrial(subscriptionID: "51", at: at)).decide(
            in: Rows.world([Self.trial]))
        #expect(decision.rows.first?["trial_ends_at"] == .timestamp(ts("2025-11-08T15:40:00Z")))
        #expect(decision.rows.first?["current_period_end"] == .timestamp(ts("2025-12-10T08:00:00Z")))
    }

    @Test func activateTrialWithoutATrialEndEndsItNow() throws {
        let trial = Rows.with(Self.trial, ["trial_ends_at": .null])
        let decision = try BillingCommand.activateTrial(ActivateTrial(subscriptionID: "51", at: Self.now)).decide(
            in: Rows.world([trial]))
        #expect(decision.rows.first?["trial_ends_at"] == .timestamp(Self.now))
    }

    @Test func activateTrialRefusesASubscriptionThatIsNotTrialing() {
        let rejection = Rows.rejection(
            .activateTrial(ActivateTrial(subscriptionID: "51", at: Self.now)), Rows.world([Rows.subscription()]))
        #expect(rejection?.code == .invalidState)
        #expect(rejection?.detail == "subscription 51 is active; activate_trial needs trialing")
    }

    @Test func activateTrialRefusesAMissingSubscription() {
        #expect(
            Rows.rejection(.activateTrial(ActivateTrial(subscriptionID: "59", at: Self.now)), Rows.world([]))?.code
                == .notFound)
    }

    @Test func activateTrialRefusesAnArchivedCustomer() {
        let state = Rows.world([Self.trial], customer: Rows.customer(archived: true))
        #expect(
            Rows.rejection(.activateTrial(ActivateTrial(subscriptionID: "51", at: Self.now)), state)?.code
                == .invalidState)
    }

    // MARK: change_plan

    @Test func changePlanReadsBothPlans() {
        let command = BillingCommand.changePlan(ChangePlan(subscriptionID: "51", planID: "3", at: Self.now))
        #expect(
            command.requirements(given: CommandState()) == [
                .stream(.subscription, key: "51"), .stream(.plan, key: "3"),
            ])
        #expect(
            command.requirements(given: Rows.state([Rows.subscription()]))
                == [
                    .stream(.subscription, key: "51"), .stream(.customer, key: "5"), .stream(.plan, key: "2"),
                    .stream(.plan, key: "3"),
                ])
    }

    @Test(arguments: [("3", "upgraded"), ("1", "downgraded")])
    func changePlanOverwritesThePlanOnly(plan: String, direction: String) throws {
        let decision = try BillingCommand.changePlan(ChangePlan(subscriptionID: "51", planID: plan, at: Self.now))
            .decide(in: Rows.world([Rows.subscription()]))
        #expect(
            decision.rows == [
                Rows.with(Rows.subscription(), ["plan_id": .text(plan), "updated_at": .timestamp(Self.now)])
            ])
        #expect(decision.summary == "subscription 51 \(direction) from plan 2 to plan \(plan)")
    }

    @Test func changePlanOfATrial() throws {
        let trial = Rows.subscription(plan: "1", status: "trialing")
        let decision = try BillingCommand.changePlan(ChangePlan(subscriptionID: "51", planID: "2", at: Self.now))
            .decide(in: Rows.world([trial]))
        #expect(decision.rows.first?["plan_id"] == .text("2"))
        #expect(decision.rows.first?["status"] == .text("trialing"))
    }

    @Test(arguments: ["past_due", "canceled", "unpaid", "incomplete", "paused"])
    func changePlanRefusesASubscriptionThatIsNotRunning(status: String) {
        let state = Rows.world([Rows.subscription(status: status)])
        #expect(
            Rows.rejection(.changePlan(ChangePlan(subscriptionID: "51", planID: "3", at: Self.now)), state)?.code
                == .invalidState)
    }

    @Test func changePlanRefusesTheSamePlan() {
        let state = Rows.world([Rows.subscription()])
        #expect(
            Rows.rejection(.changePlan(ChangePlan(subscriptionID: "51", planID: "2", at: Self.now)), state)?.code
                == .invalidState)
    }

    @Test func changePlanRefusesAMissingPlanOrSubscription() {
        let state = Rows.world([Rows.subscription()])
        #expect(
            Rows.rejection(.changePlan(ChangePlan(subscriptionID: "51", planID: "98", at: Self.now)), state)?.code
                == .notFound)
        #expect(
            Rows.rejection(.changePlan(ChangePlan(subscriptionID: "58", planID: "3", at: Self.now)), state)?.code
                == .notFound)
    }

    @Test func changePlanRefusesAnArchivedPlan() {
        let state = Rows.world([Rows.subscription(plan: "4")])
        #expect(
            Rows.rejection(.changePlan(ChangePlan(subscriptionID: "51", planID: "5", at: Self.now)), state)?.code
                == .invalidState)
    }

    @Test func changePlanRefusesAnotherCurrency() {
        let state = Rows.world([Rows.subscription()])
        #expect(
            Rows.rejection(.changePlan(ChangePlan(subscriptionID: "51", planID: "7", at: Self.now)), state)?.code
                == .currencyMismatch)
    }

    @Test func changePlanRefusesAnotherIntervalOrSeatModel() {
        let state = Rows.world([Rows.subscription()])
        #expect(
            Rows.rejection(.changePlan(ChangePlan(subscriptionID: "51", planID: "4", at: Self.now)), state)?.code
                == .invalidInput)
        #expect(
            Rows.rejection(.changePlan(ChangePlan(subscriptionID: "51", planID: "6", at: Self.now)), state)?.code
                == .invalidInput)
    }

    @Test func changePlanRefusesAnArchivedCustomer() {
        let state = Rows.world([Rows.subscription()], customer: Rows.customer(archived: true))
        #expect(
            Rows.rejection(.changePlan(ChangePlan(subscriptionID: "51", planID: "3", at: Self.now)), state)?.code
                == .invalidState)
    }

    // MARK: cancel_subscription

    @Test(arguments: ["active", "trialing", "past_due"])
    func cancelAtPeriodEndRecordsTheRequest(status: String) throws {
        let subscription = Rows.subscription(status: status)
        let decision = try BillingCommand.cancelSubscription(
            CancelSubscription(subscriptionID: "51", atPeriodEnd: true, at: Self.now)
        )
        .decide(in: Rows.world([subscription]))
        #expect(
            decision.rows == [
                Rows.with(
                    subscription,
                    [
                        "cancel_at_period_end": .boolean(true), "canceled_at": .timestamp(Self.now),
                        "updated_at": .timestamp(Self.now),
                    ])
            ])
    }

    @Test func cancelNowEndsTheSubscription() throws {
        let decision = try BillingCommand.cancelSubscription(
            CancelSubscription(subscriptionID: "51", atPeriodEnd: false, at: Self.now)
        )
        .decide(in: Rows.world([Rows.subscription(status: "unpaid")]))
        #expect(
            decision.rows == [
                Rows.with(
                    Rows.subscription(status: "unpaid"),
                    [
                        "status": .text("canceled"), "canceled_at": .timestamp(Self.now),
                        "ended_at": .timestamp(Self.now),
                        "updated_at": .timestamp(Self.now),
                    ])
            ])
    }

    @Test func cancelAtPeriodEndRefusesOneSetToCancelAlready() {
        let state = Rows.world([Rows.subscription(cancelAtPeriodEnd: true, canceledAt: Rows.created)])
        let rejection = Rows.rejection(
            .cancelSubscription(CancelSubscription(subscriptionID: "51", atPeriodEnd: true, at: Self.now)), state)
        #expect(rejection?.code == .invalidState)
    }

    @Test(arguments: ["canceled", "unpaid", "incomplete", "paused"])
    func cancelAtPeriodEndRefusesASubscriptionThatIsNotRunning(status: String) {
        let state = Rows.world([Rows.subscription(status: status)])
        let rejection = Rows.rejection(
            .cancelSubscription(CancelSubscription(subscriptionID: "51", atPeriodEnd: true, at: Self.now)), state)
        #expect(rejection?.code == .invalidState)
    }

    @Test func cancelNowRefusesACanceledSubscription() {
        let state = Rows.world([Rows.subscription(status: "canceled")])
        let rejection = Rows.rejection(
            .cancelSubscription(CancelSubscription(subscriptionID: "51", atPeriodEnd: false, at: Self.now)), state)
        #expect(rejection?.code == .invalidState)
    }

    @Test func cancelRefusesAMissingSubscriptionOrArchivedCustomer() {
        let command = BillingCommand.cancelSubscription(
            CancelSubscription(subscriptionID: "51", atPeriodEnd: true, at: Self.now))
        #expect(Rows.rejection(command, Rows.world([]))?.code == .notFound)
        #expect(
            Rows.rejection(command, Rows.world([Rows.subscription()], customer: Rows.customer(archived: true)))?.code
                == .invalidState)
    }

    // MARK: mark_past_due, mark_unpaid

    @Test func markPastDueMovesAnActiveSubscription() throws {
        let decision = try BillingCommand.markPastDue(MarkPastDue(subscriptionID: "51", at: Self.now)).decide(
            in: Rows.world([Rows.subscription()]))
        #expect(
            decision.rows == [
                Rows.with(Rows.subscription(), ["status": .text("past_due"), "updated_at": .timestamp(Self.now)])
            ])
    }

    @Test(arguments: ["trialing", "past_due", "canceled", "unpaid"])
    func markPastDueRefusesASubscriptionThatIsNotActive(status: String) {
        let rejection = Rows.rejection(
            .markPastDue(MarkPastDue(subscriptionID: "51", at: Self.now)),
            Rows.world([Rows.subscription(status: status)]))
        #expect(rejection?.code == .invalidState)
        #expect(rejection?.detail == "subscription 51 is \(status); mark_past_due needs active")
    }

    @Test func markPastDueRefusesAMissingSubscription() {
        #expect(
            Rows.rejection(.markPastDue(MarkPastDue(subscriptionID: "51", at: Self.now)), Rows.world([]))?.code
                == .notFound)
    }

    @Test func markUnpaidMovesAPastDueSubscription() throws {
        let pastDue = Rows.subscription(status: "past_due")
        let decision = try BillingCommand.markUnpaid(MarkUnpaid(subscriptionID: "51", at: Self.now)).decide(
            in: Rows.world([pastDue]))
        #expect(decision.rows == [Rows.with(pastDue, ["status": .text("unpaid"), "updated_at": .timestamp(Self.now)])])
    }

    @Test(arguments: ["active", "trialing", "canceled", "unpaid"])
    func markUnpaidRefusesASubscriptionThatIsNotPastDue(status: String) {
        let rejection = Rows.rejection(
            .markUnpaid(MarkUnpaid(subscriptionID: "51", at: Self.now)), Rows.world([Rows.subscription(status: status)])
        )
        #expect(rejection?.code == .invalidState)
    }

    @Test func markUnpaidRefusesAMissingSubscriptionOrArchivedCustomer() {
        let command = BillingCommand.markUnpaid(MarkUnpaid(subscriptionID: "51", at: Self.now))
        #expect(Rows.rejection(command, Rows.world([]))?.code == .notFound)
        let state = Rows.world([Rows.subscription(status: "past_due")], customer: Rows.customer(archived: true))
        #expect(Rows.rejection(command, state)?.code == .invalidState)
    }

    @Test func theReactivationOtherCommandsShareOnlyMovesPastDue() {
        let pastDue = Rows.subscription(status: "past_due")
        #expect(
            SubscriptionRules.reactivated(pastDue, at: Self.now)
                == Rows.with(pastDue, ["status": .text("active"), "updated_at": .timestamp(Self.now)]))
        #expect(SubscriptionRules.reactivated(Rows.subscription(), at: Self.now) == nil)
        #expect(SubscriptionRules.pastDue(pastDue, at: Self.now) == nil)
    }

    // MARK: renew_subscription

    @Test func renewAdvancesOnePeriodFromTheClampedEnd() throws {
        // 31 Jan → 28 Feb (clamped), then 28 Feb → 28 Mar: the next step starts from the clamped end.
        let subscription = Rows.subscription()
        let at = ts("2025-03-01T00:00:00Z")
        let command = BillingCommand.renewSubscription(
            RenewSubscription(
                subscriptionID: "51", periodStart: ts("2025-02-28T09:30:00Z"), periodEnd: ts("2025-03-28T09:30:00Z"),
                at: at))
        let decision = try command.decide(in: Rows.world([subscription]))
        #expect(
            decision.rows == [
                Rows.with(
                    subscription,
                    [
                        "current_period_start": .timestamp(ts("2025-02-28T09:30:00Z")),
                        "current_period_end": .timestamp(ts("2025-03-28T09:30:00Z")), "updated_at": .timestamp(at),
                    ])
            ])
    }

    @Test func renewCrossesWholePeriodsUntilTheOneInProgress() throws {
        let subscription = Rows.subscription(status: "past_due")
        let at = ts("2025-06-10T00:00:00Z")
        let command = BillingCommand.renewSubscription(
            RenewSubscription(
                subscriptionID: "51", periodStart: ts("2025-05-28T09:30:00Z"), periodEnd: ts("2025-06-28T09:30:00Z"),
                at: at))
        let decision = try command.decide(in: Rows.world([subscription]))
        #expect(decision.rows.first?["current_period_start"] == .timestamp(ts("2025-05-28T09:30:00Z")))
        #expect(decision.rows.first?["current_period_end"] == .timestamp(ts("2025-06-28T09:30:00Z")))
        #expect(decision.rows.first?["status"] == .text("past_due"))
    }

    @Test func renewAtTheExactEndStartsTheNextPeriod() throws {
        let at = ts("2025-02-28T09:30:00Z")
        let command = BillingCommand.renewSubscription(
            RenewSubscription(subscriptionID: "51", periodStart: at, periodEnd: ts("2025-03-28T09:30:00Z"), at: at))
        #expect(
            try command.decide(in: Rows.world([Rows.subscription()])).rows.first?["current_period_start"]
                == .timestamp(at))
    }

    @Test func renewBillsTheCurrentPlansInterval() throws {
        let annual = Rows.subscription(plan: "4", start: "2024-02-29T00:00:00Z", end: "2025-02-28T00:00:00Z")
        let at = ts("2025-03-01T00:00:00Z")
        let command = BillingCommand.renewSubscription(
            RenewSubscription(
                subscriptionID: "51", periodStart: ts("2025-02-28T00:00:00Z"), periodEnd: ts("2026-02-28T00:00:00Z"),
                at: at))
        #expect(
            try command.decide(in: Rows.world([annual])).rows.first?["current_period_end"]
                == .timestamp(ts("2026-02-28T00:00:00Z")))
    }

    @Test func renewRefusesAStatedPeriodThatIsNotTheOneInProgress() {
        let command = BillingCommand.renewSubscription(
            RenewSubscription(
                subscriptionID: "51", periodStart: ts("2025-02-28T09:30:00Z"), periodEnd: ts("2025-03-31T09:30:00Z"),
                at: ts("2025-03-01T00:00:00Z")))
        let rejection = Rows.rejection(command, Rows.world([Rows.subscription()]))
        #expect(rejection?.code == .invalidInput)
        #expect(rejection?.detail.contains("2025-02-28T09:30:00.000000Z – 2025-03-28T09:30:00.000000Z") == true)
    }

    @Test func renewRefusesAPeriodThatHasNotEnded() {
        let command = BillingCommand.renewSubscription(
            RenewSubscription(
                subscriptionID: "51", periodStart: ts("2025-02-28T09:30:00Z"), periodEnd: ts("2025-03-28T09:30:00Z"),
                at: ts("2025-02-28T09:29:59.999999Z")))
        #expect(Rows.rejection(command, Rows.world([Rows.subscription()]))?.code == .invalidState)
    }

    static let renewal = BillingCommand.renewSubscription(
        RenewSubscription(
            subscriptionID: "51", periodStart: ts("2025-02-28T09:30:00Z"), periodEnd: ts("2025-03-28T09:30:00Z"),
            at: ts("2025-03-01T00:00:00Z")))

    @Test(arguments: ["trialing", "canceled", "unpaid", "incomplete", "paused"])
    func renewRefusesASubscriptionThatDoesNotBill(status: String) {
        #expect(Rows.rejection(Self.renewal, Rows.world([Rows.subscription(status: status)]))?.code == .invalidState)
    }

    @Test func renewRefusesOneSetToCancel() {
        let state = Rows.world([Rows.subscription(cancelAtPeriodEnd: true, canceledAt: Rows.created)])
        #expect(Rows.rejection(Self.renewal, state)?.code == .invalidState)
    }

    @Test func renewRefusesAMissingSubscriptionOrArchivedCustomer() {
        #expect(Rows.rejection(Self.renewal, Rows.world([]))?.code == .notFound)
        #expect(
            Rows.rejection(Self.renewal, Rows.world([Rows.subscription()], customer: Rows.customer(archived: true)))?
                .code == .invalidState)
    }

    // MARK: end_subscription

    @Test func endSubscriptionEndsAtThePeriodsEnd() throws {
        let requested = ts("2025-02-10T08:00:00Z")
        let subscription = Rows.subscription(cancelAtPeriodEnd: true, canceledAt: requested)
        let at = ts("2025-03-01T00:00:00Z")
        let decision = try BillingCommand.endSubscription(EndSubscription(subscriptionID: "51", at: at)).decide(
            in: Rows.world([subscription]))
        #expect(
            decision.rows == [
                Rows.with(
                    subscription,
                    [
                        "status": .text("canceled"), "ended_at": .timestamp(ts("2025-02-28T09:30:00Z")),
                        "updated_at": .timestamp(at),
                    ])
            ])
    }

    @Test func endSubscriptionRequestedAfterThePeriodsEndEndsAtTheRequest() throws {
        let requested = ts("2025-02-28T10:00:00Z")
        let subscription = Rows.subscription(status: "trialing", cancelAtPeriodEnd: true, canceledAt: requested)
        let decision = try BillingCommand.endSubscription(EndSubscription(subscriptionID: "51", at: Self.now)).decide(
            in: Rows.world([subscription]))
        #expect(decision.rows.first?["ended_at"] == .timestamp(requested))
        #expect(decision.rows.first?["canceled_at"] == .timestamp(requested))
    }

    @Test func endSubscriptionWithoutARequestTimeTakesThePeriodsEnd() throws {
        let subscription = Rows.subscription(status: "past_due", cancelAtPeriodEnd: true)
        let decision = try BillingCommand.endSubscription(EndSubscription(subscriptionID: "51", at: Self.now)).decide(
            in: Rows.world([subscription]))
        #expect(decision.rows.first?["canceled_at"] == .timestamp(ts("2025-02-28T09:30:00Z")))
        #expect(decision.rows.first?["ended_at"] == .timestamp(ts("2025-02-28T09:30:00Z")))
    }

    @Test func endSubscriptionRefusesOneNotSetToCancel() {
        let rejection = Rows.rejection(
            .endSubscription(EndSubscription(subscriptionID: "51", at: Self.now)), Rows.world([Rows.subscription()]))
        #expect(rejection?.code == .invalidState)
    }

    @Test func endSubscriptionRefusesAPeriodThatHasNotEnded() {
        let state = Rows.world([Rows.subscription(cancelAtPeriodEnd: true, canceledAt: Rows.created)])
        let command = BillingCommand.endSubscription(
            EndSubscription(subscriptionID: "51", at: ts("2025-02-20T00:00:00Z")))
        #expect(Rows.rejection(command, state)?.code == .invalidState)
    }

    @Test(arguments: ["canceled", "unpaid"])
    func endSubscriptionRefusesASubscriptionThatIsNotRunning(status: String) {
        let state = Rows.world([Rows.subscription(status: status, cancelAtPeriodEnd: true, canceledAt: Rows.created)])
        #expect(
            Rows.rejection(.endSubscription(EndSubscription(subscriptionID: "51", at: Self.now)), state)?.code
                == .invalidState)
    }

    @Test func endSubscriptionRefusesAMissingSubscriptionOrArchivedCustomer() {
        let command = BillingCommand.endSubscription(EndSubscription(subscriptionID: "51", at: Self.now))
        #expect(Rows.rejection(command, Rows.world([]))?.code == .notFound)
        let state = Rows.world(
            [Rows.subscription(cancelAtPeriodEnd: true, canceledAt: Rows.created)],
            customer: Rows.customer(archived: true))
        #expect(Rows.rejection(command, state)?.code == .invalidState)
    }
}
