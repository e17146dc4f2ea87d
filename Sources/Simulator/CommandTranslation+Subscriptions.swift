import Billing
import Commands
import Postgres

extension CommandTranslation {
    /// The customer and subscription operations as commands, each stating what the legacy
    /// application decided (read from the legacy rows after the operation) and nothing the
    /// ledger decides itself (periods, statuses, times come from the rules and `at`):
    ///
    /// - `sign_up`: `create_customer` (its email, name, currency, time zone) then
    ///   `start_subscription` (its plan and quantity);
    /// - `trial_to_active`: `activate_trial`; `upgrade` / `downgrade`: `change_plan` to the plan
    ///   it holds afterwards; `cancel_at_period_end`: `cancel_subscription` at the period's end;
    ///   `past_due_to_unpaid`: `mark_unpaid`;
    /// - `edit_email` / `edit_name`: `update_customer` with the new value; `soft_delete`:
    ///   `archive_customer`.
    ///
    /// - Throws: ``CommandTranslationError`` when the entry names no row the operation needs, or
    ///   the legacy rows do not show it.
    public static func subscriptionCommands(for entry: JournalEntry, legacy: LegacyRows) throws -> [BillingCommand] {
        let at = try at(entry)
        switch entry.kind {
        case .signUp:
            let customerID = try key(entry, "customer")
            let subscriptionID = try key(entry, "subscription")
            let customer = try after(legacy, entry.kind, .customer, customerID)
            let subscription = try after(legacy, entry.kind, .subscription, subscriptionID)
            guard let planID = subscription["plan_id"].textValue, let quantity = subscription["quantity"].integerValue else {
                throw CommandTranslationError(entry.kind, "subscription \(subscriptionID) has no plan or quantity after the sign-up")
            }
            return [
                .createCustomer(
                    CreateCustomer(
                        customerID: customerID, email: customer["email"].textValue, name: customer["name"].textValue,
                        currency: customer["currency"].textValue, timeZone: customer["time_zone"].textValue, at: at)),
                .startSubscription(
                    StartSubscription(subscriptionID: subscriptionID, customerID: customerID, planID: planID, quantity: quantity, at: at)),
            ]
        case .activateTrial:
            return [.activateTrial(ActivateTrial(subscriptionID: try key(entry, "subscription"), at: at))]
        case .upgrade, .downgrade:
            let subscriptionID = try key(entry, "subscription")
            guard let planID = try after(legacy, entry.kind, .subscription, subscriptionID)["plan_id"].textValue else {
                throw CommandTranslationError(entry.kind, "subscription \(subscriptionID) has no plan after the change")
            }
            return [.changePlan(ChangePlan(subscriptionID: subscriptionID, planID: planID, at: at))]
        case .cancelAtPeriodEnd:
            return [.cancelSubscription(CancelSubscription(subscriptionID: try key(entry, "subscription"), atPeriodEnd: true, at: at))]
        case .markUnpaid:
            return [.markUnpaid(MarkUnpaid(subscriptionID: try key(entry, "subscription"), at: at))]
        case .editEmail, .editName:
            let customerID = try key(entry, "customer")
            let customer = try after(legacy, entry.kind, .customer, customerID)
            let field = entry.kind == .editEmail ? "email" : "name"
            guard let value = customer[field].textValue else {
                throw CommandTranslationError(entry.kind, "customer \(customerID) has no \(field) after the edit")
            }
            return [
                .updateCustomer(
                    entry.kind == .editEmail
                        ? UpdateCustomer(customerID: customerID, email: value, at: at)
                        : UpdateCustomer(customerID: customerID, name: value, at: at))
            ]
        case .softDelete:
            return [.archiveCustomer(ArchiveCustomer(customerID: try key(entry, "customer"), at: at))]
        default:
            throw CommandTranslationError(entry.kind, "not a customer or subscription operation")
        }
    }
}
