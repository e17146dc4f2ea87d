import Billing
import Postgres

// The subscription commands: the legacy application's sign-up (its subscription half), trial
// conversion, plan changes, cancellation, dunning (past due, unpaid) and the billing worker's
// renewal and end of a subscription set to cancel (fixtures/README.md, "The simulated
// application"), decided on canonical rows.

// MARK: - Period arithmetic

/// Billing periods computed exactly as PostgreSQL's `timestamp + interval` computes them, which
/// is what the legacy application stores (`current_period_end + '1 month'`): months are
/// calendar months with the day clamped to the target month's length (31 Jan + 1 month = 28 or
/// 29 Feb), a year is 12 months (29 Feb 2024 + 1 year = 28 Feb 2025), a week 7 days and a day
/// 24 hours (a `timestamp without time zone`, so no daylight saving). The time of day is kept.
///
/// Each step is computed from the previous result, as the legacy loop does: 31 Jan + 1 month is
/// 29 Feb 2024, and + 1 month again is 29 Mar — not 31 Mar.
public enum SubscriptionPeriod {
    /// `start + count × 1 interval`, `interval` one of `day`, `week`, `month`, `year`; `nil` for
    /// another interval, a negative count or a result outside PostgreSQL's timestamps.
    public static func advance(_ start: PostgresTimestamp, by interval: String, count: Int64 = 1) -> PostgresTimestamp?
    {
        guard count >= 0, count <= 1_000_000 else { return nil }
        switch interval {
        case "day": return adding(days: count, to: start)
        case "week": return adding(days: count * 7, to: start)
        case "month": return adding(months: count, to: start)
        case "year": return adding(months: count * 12, to: start)
        default: return nil
        }
    }

    /// `start + 'N days'` for a `timestamp without time zone`: N × 24 hours.
    public static func adding(days: Int64, to start: PostgresTimestamp) -> PostgresTimestamp? {
        guard start != .infinity, start != .negativeInfinity else { return nil }
        let (delta, o1) = days.multipliedReportingOverflow(by: 86_400_000_000)
        let (micros, o2) = start.microsecondsSinceEpoch.addingReportingOverflow(delta)
        guard !o1, !o2 else { return nil }
        let result = PostgresTimestamp(microsecondsSinceEpoch: micros)
        guard result >= .minimumFinite, result <= .maximumFinite else { return nil }
        return result
    }

    /// `start + 'N months'`: the calendar month moves by N, the day is clamped to the last day
    /// of the month reached, the time of day stays (PostgreSQL's `timestamp_pl_interval`).
    public static func adding(months: Int64, to start: PostgresTimestamp) -> PostgresTimestamp? {
        guard start != .infinity, start != .negativeInfinity else { return nil }
        let c = start.components
        let (total, overflow) = (Int64(c.year) * 12 + Int64(c.month - 1)).addingReportingOverflow(months)
        guard !overflow else { return nil }
        let (q, r) = total.quotientAndRemainder(dividingBy: 12)
        let year = r < 0 ? q - 1 : q
        let month = r < 0 ? r + 13 : r + 1
        guard year.magnitude < 300_000 else { return nil }
        let day = min(Int64(c.day), daysIn(month: month, of: year))
        return PostgresTimestamp(
            year: Int(year), month: Int(month), day: Int(day), hour: c.hour, minute: c.minute, second: c.second,
            microsecond: c.microsecond)
    }

    /// The days of `month` (1...12) in the proleptic Gregorian `year`.
    public static func daysIn(month: Int64, of year: Int64) -> Int64 {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}

// MARK: - Shared rules

/// The subscription lifecycle's transitions as pure functions of rows, public so that another
/// command whose legacy write also moves a subscription (a retried payment makes a past-due
/// subscription active again) decides exactly what these commands decide.
public enum SubscriptionRules {
    /// Statuses of a subscription that still runs (is billed or may be): what a cancellation
    /// at the period's end applies to.
    public static let cancellableAtPeriodEnd: Set<String> = ["active", "trialing", "past_due"]

    /// `subscription` made `past_due` at `at` (a failed payment), or `nil` when it is not
    /// `active` (the legacy application leaves any other status as it is).
    public static func pastDue(_ subscription: CanonicalRow, at: PostgresTimestamp) -> CanonicalRow? {
        guard subscription["status"].textValue == "active" else { return nil }
        var row = subscription
        row.values["status"] = .text("past_due")
        row.values["updated_at"] = .timestamp(at)
        return row
    }

    /// `subscription` made `active` again at `at` (a retried payment succeeded), or `nil` when
    /// it is not `past_due`.
    public static func reactivated(_ subscription: CanonicalRow, at: PostgresTimestamp) -> CanonicalRow? {
        guard subscription["status"].textValue == "past_due" else { return nil }
        var row = subscription
        row.values["status"] = .text("active")
        row.values["updated_at"] = .timestamp(at)
        return row
    }

    /// The subscription `key`, which must exist (`.notFound`).
    static func subscription(_ key: String, in state: CommandState) throws(CommandRejection) -> CanonicalRow {
        guard let row = state.row(.subscription, key) else {
            throw CommandRejection(.notFound, .subscription, key, "subscription \(key) does not exist")
        }
        return row
    }

    /// The subscription's status must be one of `allowed`, else `.invalidState` naming both.
    static func require(_ row: CanonicalRow, statusIn allowed: [String], for command: String) throws(CommandRejection) {
        let status = row["status"].textValue ?? "NULL"
        guard allowed.contains(status) else {
            throw CommandRejection(
                .invalidState, .subscription, row.key,
                "subscription \(row.key) is \(status); \(command) needs \(allowed.joined(separator: " or "))")
        }
    }

    /// The plan `key`, which must exist (`.notFound`).
    static func plan(_ key: String, in state: CommandState, for subscription: String) throws(CommandRejection)
        -> CanonicalRow
    {
        guard let row = state.row(.plan, key) else {
            throw CommandRejection(.notFound, .plan, key, "plan \(key) of subscription \(subscription) does not exist")
        }
        return row
    }

    /// The plan's interval and count (`interval_count`, 1 by default); `.invalidState` for a
    /// plan whose interval the period arithmetic does not know.
    static func interval(of plan: CanonicalRow) throws(CommandRejection) -> (unit: String, count: Int64) {
        let unit = plan["interval"].textValue ?? "NULL"
        let count = plan["interval_count"].integerValue ?? 1
        guard ["day", "week", "month", "year"].contains(unit), count > 0 else {
            throw CommandRejection(
                .invalidState, .plan, plan.key,
                "plan \(plan.key) bills every \(count) \(unit), which is not a billing interval")
        }
        return (unit, count)
    }

    /// `start` plus one billing period of `plan`; `.invalidState` when it leaves the timestamps.
    static func periodEnd(from start: PostgresTimestamp, plan: CanonicalRow, subscription: String)
        throws(CommandRejection) -> PostgresTimestamp
    {
        let (unit, count) = try interval(of: plan)
        guard let end = SubscriptionPeriod.advance(start, by: unit, count: count) else {
            throw CommandRejection(
                .invalidState, .subscription, subscription,
                "one \(unit) after \(start.iso8601) is not a representable timestamp")
        }
        return end
    }

    /// The subscription's own customer must be live (the legacy application never acts on a
    /// soft-deleted customer's subscriptions).
    static func requireLiveCustomer(of row: CanonicalRow, in state: CommandState, for command: String)
        throws(CommandRejection)
    {
        guard let customer = row["customer_id"].textValue else {
            throw CommandRejection(.invalidState, .subscription, row.key, "subscription \(row.key) has no customer")
        }
        _ = try CustomerRules.liveCustomer(customer, in: state, for: command)
    }

    /// What a command on an existing subscription reads: the subscription, then its customer
    /// (and, with `plan`, its current plan).
    static func requirements(_ key: String, plan: Bool, given state: CommandState) -> Set<Requirement> {
        var needed: Set<Requirement> = [.stream(.subscription, key: key)]
        if let row = state.row(.subscription, key) {
            if let customer = row["customer_id"].textValue { needed.insert(.stream(.customer, key: customer)) }
            if plan, let planID = row["plan_id"].textValue { needed.insert(.stream(.plan, key: planID)) }
        }
        return needed
    }

    /// Whether a plan bills per seat: the reference data's convention, a code naming `seat`
    /// (a plan change never moves between the two models).
    static func perSeat(_ plan: CanonicalRow) -> Bool { plan["code"].textValue?.contains("seat") ?? false }
}

// MARK: - StartSubscription

/// Reads the subscription's stream (which must not exist), the customer and the plan. Refuses an
/// existing key (`already_exists`), a missing customer or plan (`not_found`), an archived
/// customer or plan (`invalid_state`), a quantity below 1 (`invalid_input`) and a customer whose
/// currency is not the plan's (`currency_mismatch`). Decides the new row: `trialing` with
/// `trial_ends_at` = period end = `at` + the plan's trial days when it has some, else `active` for
/// one interval from `at`; `started_at` = `created_at` = `updated_at` = `at`.
extension StartSubscription: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> {
        [.stream(.subscription, key: subscriptionID), .stream(.customer, key: customerID), .stream(.plan, key: planID)]
    }

    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        try CustomerRules.newKey(.subscription, subscriptionID, in: state)
        guard quantity > 0 else {
            throw CommandRejection(
                .invalidInput, .subscription, subscriptionID, "quantity \(quantity) is not a positive number of seats")
        }
        let customer = try CustomerRules.liveCustomer(customerID, in: state, for: "start_subscription")
        let plan = try SubscriptionRules.plan(planID, in: state, for: subscriptionID)
        if plan["archived"].booleanValue == true {
            throw CommandRejection(.invalidState, .plan, planID, "plan \(planID) is archived: it is no longer sold")
        }
        let planCurrency = plan["currency"].textValue ?? "NULL"
        if let currency = customer["currency"].textValue, currency != planCurrency {
            throw CommandRejection(
                .currencyMismatch, .subscription, subscriptionID,
                "customer \(customerID) is billed in \(currency), plan \(planID) is priced in \(planCurrency)")
        }
        let trialDays = plan["trial_days"].integerValue ?? 0
        let status: String
        let end: PostgresTimestamp
        if trialDays > 0 {
            status = "trialing"
            guard let trialEnd = SubscriptionPeriod.adding(days: trialDays, to: at) else {
                throw CommandRejection(
                    .invalidState, .plan, planID,
                    "a trial of \(trialDays) days from \(at.iso8601) is not a representable timestamp")
            }
            end = trialEnd
        } else {
            status = "active"
            end = try SubscriptionRules.periodEnd(from: at, plan: plan, subscription: subscriptionID)
        }
        let row = CanonicalRow(
            entity: .subscription,
            values: [
                "subscription_id": .text(subscriptionID), "customer_id": .text(customerID), "plan_id": .text(planID),
                "status": .text(status), "quantity": .integer(quantity), "started_at": .timestamp(at),
                "trial_ends_at": trialDays > 0 ? .timestamp(end) : .null, "current_period_start": .timestamp(at),
                "current_period_end": .timestamp(end), "cancel_at_period_end": .boolean(false), "canceled_at": .null,
                "ended_at": .null, "previous_subscription_id": .null, "created_at": .timestamp(at),
                "updated_at": .timestamp(at),
            ])
        return Decision(
            rows: [row],
            summary:
                "subscription \(subscriptionID) of customer \(customerID) started on plan \(planID), \(status) until \(end.iso8601)"
        )
    }
}

// MARK: - ActivateTrial

/// Reads the subscription, its customer and its plan. Refuses a missing subscription
/// (`not_found`), one that is not `trialing` or whose customer is archived (`invalid_state`).
/// Decides `active`, `trial_ends_at` = the earlier of its end and `at` (a trial converted early
/// ends now), the period [`at`, `at` + one interval), `updated_at` = `at`.
extension ActivateTrial: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> {
        SubscriptionRules.requirements(subscriptionID, plan: true, given: state)
    }

    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        var row = try SubscriptionRules.subscription(subscriptionID, in: state)
        try SubscriptionRules.require(row, statusIn: ["trialing"], for: "activate_trial")
        try SubscriptionRules.requireLiveCustomer(of: row, in: state, for: "activate_trial")
        let plan = try SubscriptionRules.plan(row["plan_id"].textValue ?? "", in: state, for: subscriptionID)
        let end = try SubscriptionRules.periodEnd(from: at, plan: plan, subscription: subscriptionID)
        let trialEnd = row["trial_ends_at"].timestampValue.map { Swift.min($0, at) } ?? at
        row.values["status"] = .text("active")
        row.values["trial_ends_at"] = .timestamp(trialEnd)
        row.values["current_period_start"] = .timestamp(at)
        row.values["current_period_end"] = .timestamp(end)
        row.values["updated_at"] = .timestamp(at)
        return Decision(
            rows: [row], summary: "subscription \(subscriptionID) converted from trial to active until \(end.iso8601)")
    }
}

// MARK: - ChangePlan

/// Reads the subscription, its customer, its current plan and the new plan. Refuses a missing
/// subscription or new plan (`not_found`); a subscription that is not `active` or `trialing`, an
/// archived customer or new plan, or the plan it is already on (`invalid_state`); a new plan in
/// another currency (`currency_mismatch`); one with another interval or seat model
/// (`invalid_input`). Decides the row with `plan_id` overwritten and `updated_at` = `at` — the
/// period and quantity stay; the next invoice bills the new price.
extension ChangePlan: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> {
        SubscriptionRules.requirements(subscriptionID, plan: true, given: state).union([.stream(.plan, key: planID)])
    }

    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        var row = try SubscriptionRules.subscription(subscriptionID, in: state)
        try SubscriptionRules.require(row, statusIn: ["active", "trialing"], for: "change_plan")
        try SubscriptionRules.requireLiveCustomer(of: row, in: state, for: "change_plan")
        let currentID = row["plan_id"].textValue ?? ""
        guard currentID != planID else {
            throw CommandRejection(
                .invalidState, .subscription, subscriptionID,
                "subscription \(subscriptionID) is on plan \(planID) already")
        }
        let current = try SubscriptionRules.plan(currentID, in: state, for: subscriptionID)
        let target = try SubscriptionRules.plan(planID, in: state, for: subscriptionID)
        if target["archived"].booleanValue == true {
            throw CommandRejection(.invalidState, .plan, planID, "plan \(planID) is archived: it is no longer sold")
        }
        let (from, to) = (current["currency"].textValue ?? "NULL", target["currency"].textValue ?? "NULL")
        guard from == to else {
            throw CommandRejection(
                .currencyMismatch, .subscription, subscriptionID,
                "plan \(planID) is priced in \(to), subscription \(subscriptionID)'s plan \(currentID) in \(from)")
        }
        let (currentInterval, targetInterval) = (
            try SubscriptionRules.interval(of: current), try SubscriptionRules.interval(of: target)
        )
        guard currentInterval == targetInterval else {
            throw CommandRejection(
                .invalidInput, .subscription, subscriptionID,
                "plan \(planID) bills every \(targetInterval.count) \(targetInterval.unit), plan \(currentID) every \(currentInterval.count) \(currentInterval.unit)"
            )
        }
        guard SubscriptionRules.perSeat(current) == SubscriptionRules.perSeat(target) else {
            throw CommandRejection(
                .invalidInput, .subscription, subscriptionID,
                "plan \(planID) and plan \(currentID) do not share a seat model (per seat or flat)")
        }
        row.values["plan_id"] = .text(planID)
        row.values["updated_at"] = .timestamp(at)
        let direction: String
        switch (current["amount"].amountValue, target["amount"].amountValue) {
        case (let a?, let b?) where b > a: direction = "upgraded"
        case (let a?, let b?) where b < a: direction = "downgraded"
        default: direction = "moved"
        }
        return Decision(
            rows: [row], summary: "subscription \(subscriptionID) \(direction) from plan \(currentID) to plan \(planID)"
        )
    }
}

// MARK: - CancelSubscription

/// Reads the subscription and its customer. Refuses a missing subscription (`not_found`) and an
/// archived customer (`invalid_state`). At the period's end: the subscription must be `active`,
/// `trialing` or `past_due` and not set to cancel already (`invalid_state`); decides
/// `cancel_at_period_end` true, `canceled_at` = `at` (the request; it runs until its period
/// ends, when `end_subscription` ends it). Now: any status but `canceled`; decides `canceled`,
/// `canceled_at` = `ended_at` = `at`, `cancel_at_period_end` false (stories 7 and 14). Both set
/// `updated_at` = `at`.
extension CancelSubscription: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> {
        SubscriptionRules.requirements(subscriptionID, plan: false, given: state)
    }

    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        var row = try SubscriptionRules.subscription(subscriptionID, in: state)
        if atPeriodEnd {
            try SubscriptionRules.require(
                row, statusIn: ["active", "trialing", "past_due"], for: "cancel_subscription at the period's end")
            if row["cancel_at_period_end"].booleanValue == true {
                throw CommandRejection(
                    .invalidState, .subscription, subscriptionID,
                    "subscription \(subscriptionID) is set to cancel at its period's end already; cancel_subscription at the period's end needs one that is not"
                )
            }
        } else if row["status"].textValue == "canceled" {
            throw CommandRejection(
                .invalidState, .subscription, subscriptionID,
                "subscription \(subscriptionID) is canceled; cancel_subscription needs one that is not canceled")
        }
        try SubscriptionRules.requireLiveCustomer(of: row, in: state, for: "cancel_subscription")
        if atPeriodEnd {
            row.values["cancel_at_period_end"] = .boolean(true)
            row.values["canceled_at"] = .timestamp(at)
        } else {
            row.values["status"] = .text("canceled")
            row.values["cancel_at_period_end"] = .boolean(false)
            row.values["canceled_at"] = .timestamp(at)
            row.values["ended_at"] = .timestamp(at)
        }
        row.values["updated_at"] = .timestamp(at)
        let end = row["current_period_end"].timestampValue.map { " (\($0.iso8601))" } ?? ""
        return Decision(
            rows: [row],
            summary: atPeriodEnd
                ? "subscription \(subscriptionID) set to cancel at the end of its period\(end)"
                : "subscription \(subscriptionID) canceled")
    }
}

// MARK: - MarkPastDue

/// Reads the subscription and its customer. Refuses a missing subscription (`not_found`), one
/// that is not `active` or whose customer is archived (`invalid_state`). Decides `past_due`,
/// `updated_at` = `at` (a failed payment; the legacy app leaves other statuses alone).
extension MarkPastDue: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> {
        SubscriptionRules.requirements(subscriptionID, plan: false, given: state)
    }

    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        let row = try SubscriptionRules.subscription(subscriptionID, in: state)
        try SubscriptionRules.require(row, statusIn: ["active"], for: "mark_past_due")
        try SubscriptionRules.requireLiveCustomer(of: row, in: state, for: "mark_past_due")
        guard let pastDue = SubscriptionRules.pastDue(row, at: at) else {
            throw CommandRejection(
                .invalidState, .subscription, subscriptionID, "subscription \(subscriptionID) is not active")
        }
        return Decision(rows: [pastDue], summary: "subscription \(subscriptionID) is past due")
    }
}

// MARK: - MarkUnpaid

/// Reads the subscription and its customer. Refuses a missing subscription (`not_found`), one
/// that is not `past_due` or whose customer is archived (`invalid_state`). Decides `unpaid`,
/// `updated_at` = `at`: dunning gave up, billing stops (the period no longer advances).
extension MarkUnpaid: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> {
        SubscriptionRules.requirements(subscriptionID, plan: false, given: state)
    }

    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        var row = try SubscriptionRules.subscription(subscriptionID, in: state)
        try SubscriptionRules.require(row, statusIn: ["past_due"], for: "mark_unpaid")
        try SubscriptionRules.requireLiveCustomer(of: row, in: state, for: "mark_unpaid")
        row.values["status"] = .text("unpaid")
        row.values["updated_at"] = .timestamp(at)
        return Decision(rows: [row], summary: "subscription \(subscriptionID) became unpaid after dunning")
    }
}

// MARK: - RenewSubscription

/// The billing worker's renewal. Reads the subscription, its customer and its plan. Refuses a
/// missing subscription (`not_found`); one that is not `active` or `past_due`, is set to cancel
/// at its period's end (it ends instead: `end_subscription`), whose period has not ended at
/// `at`, or whose customer is archived (`invalid_state`); and a stated period that is not the
/// one in progress (`invalid_input`). The period advances by whole intervals from its end until
/// the one in progress (`current_period_end` > `at`), each step from the previous end exactly as
/// PostgreSQL adds an interval; decides that period and `updated_at` = `at`.
extension RenewSubscription: Decidable {
    /// The legacy worker's bound on the periods one renewal crosses.
    static let maximumPeriods = 1200

    public func requirements(given state: CommandState) -> Set<Requirement> {
        SubscriptionRules.requirements(subscriptionID, plan: true, given: state)
    }

    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        var row = try SubscriptionRules.subscription(subscriptionID, in: state)
        try SubscriptionRules.require(row, statusIn: ["active", "past_due"], for: "renew_subscription")
        if row["cancel_at_period_end"].booleanValue == true {
            throw CommandRejection(
                .invalidState, .subscription, subscriptionID,
                "subscription \(subscriptionID) is set to cancel at its period's end: it ends (end_subscription), it is not renewed"
            )
        }
        try SubscriptionRules.requireLiveCustomer(of: row, in: state, for: "renew_subscription")
        guard var end = row["current_period_end"].timestampValue else {
            throw CommandRejection(
                .invalidState, .subscription, subscriptionID, "subscription \(subscriptionID) has no current period")
        }
        guard end <= at else {
            throw CommandRejection(
                .invalidState, .subscription, subscriptionID,
                "subscription \(subscriptionID)'s period runs until \(end.iso8601); renew_subscription needs one that ended by \(at.iso8601)"
            )
        }
        let plan = try SubscriptionRules.plan(row["plan_id"].textValue ?? "", in: state, for: subscriptionID)
        var start = end
        var periods = 0
        while end <= at {
            guard periods < Self.maximumPeriods else {
                throw CommandRejection(
                    .invalidState, .subscription, subscriptionID,
                    "subscription \(subscriptionID) is more than \(Self.maximumPeriods) periods behind \(at.iso8601)")
            }
            start = end
            end = try SubscriptionRules.periodEnd(from: start, plan: plan, subscription: subscriptionID)
            periods += 1
        }
        guard start == periodStart, end == periodEnd else {
            throw CommandRejection(
                .invalidInput, .subscription, subscriptionID,
                "the period in progress at \(at.iso8601) is \(start.iso8601) – \(end.iso8601), not \(periodStart.iso8601) – \(periodEnd.iso8601)"
            )
        }
        row.values["current_period_start"] = .timestamp(start)
        row.values["current_period_end"] = .timestamp(end)
        row.values["updated_at"] = .timestamp(at)
        return Decision(
            rows: [row],
            summary:
                "subscription \(subscriptionID) renewed for \(start.iso8601) – \(end.iso8601) (\(periods) period(s))")
    }
}

// MARK: - EndSubscription

/// The billing worker ends a subscription set to cancel at its period's end once that end has
/// passed. Reads the subscription and its customer. Refuses a missing subscription
/// (`not_found`); one that is not `active`, `trialing` or `past_due`, is not set to cancel, whose
/// period has not ended at `at`, or whose customer is archived (`invalid_state`). Decides
/// `canceled`, `ended_at` = its period's end (or the request's `canceled_at` when that is later,
/// so the timeline stays ordered), `canceled_at` kept (its period's end when there was none),
/// `updated_at` = `at`.
extension EndSubscription: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> {
        SubscriptionRules.requirements(subscriptionID, plan: false, given: state)
    }

    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        var row = try SubscriptionRules.subscription(subscriptionID, in: state)
        try SubscriptionRules.require(row, statusIn: ["active", "trialing", "past_due"], for: "end_subscription")
        guard row["cancel_at_period_end"].booleanValue == true else {
            throw CommandRejection(
                .invalidState, .subscription, subscriptionID,
                "subscription \(subscriptionID) is not set to cancel at its period's end; end_subscription needs one that is"
            )
        }
        try SubscriptionRules.requireLiveCustomer(of: row, in: state, for: "end_subscription")
        guard let end = row["current_period_end"].timestampValue else {
            throw CommandRejection(
                .invalidState, .subscription, subscriptionID, "subscription \(subscriptionID) has no current period")
        }
        guard end <= at else {
            throw CommandRejection(
                .invalidState, .subscription, subscriptionID,
                "subscription \(subscriptionID)'s period runs until \(end.iso8601); end_subscription needs one that ended by \(at.iso8601)"
            )
        }
        let canceledAt = row["canceled_at"].timestampValue ?? end
        let endedAt = Swift.max(end, canceledAt)
        row.values["status"] = .text("canceled")
        row.values["canceled_at"] = .timestamp(canceledAt)
        row.values["ended_at"] = .timestamp(endedAt)
        row.values["updated_at"] = .timestamp(at)
        return Decision(
            rows: [row], summary: "subscription \(subscriptionID) ended at the end of its period (\(endedAt.iso8601))")
    }
}
