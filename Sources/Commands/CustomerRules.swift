import Billing
import Postgres

// The customer commands: the legacy application's sign-up (its customer half), profile edits and
// soft delete (fixtures/README.md, "The simulated application"), decided on canonical rows.

// MARK: - Shared rules

/// What the customer (and subscription) commands check about the customer row, in one place so
/// every command words a refusal alike.
enum CustomerRules {
    /// The customer `key`, which must exist (`.notFound`) and not be archived (`.invalidState`:
    /// the legacy application never acts on a soft-deleted customer).
    static func liveCustomer(_ key: String, in state: CommandState, for command: String) throws(CommandRejection)
        -> CanonicalRow
    {
        guard let row = state.row(.customer, key) else {
            throw CommandRejection(.notFound, .customer, key, "customer \(key) does not exist")
        }
        if let archivedAt = row["archived_at"].timestampValue {
            throw CommandRejection(
                .invalidState, .customer, key,
                "customer \(key) is archived (since \(archivedAt.iso8601)); \(command) needs a live customer")
        }
        return row
    }

    /// A key the command creates: not empty, and no stream of it yet (`.alreadyExists`, also for
    /// a stream that ended: its key is taken).
    static func newKey(_ entity: Entity, _ key: String, in state: CommandState) throws(CommandRejection) {
        guard !key.isEmpty else {
            throw CommandRejection(.invalidInput, entity, key, "the \(entity.keyColumn) is empty")
        }
        let stream = state.stream(entity, key)
        if stream.row != nil {
            throw CommandRejection(.alreadyExists, entity, key, "\(entity) \(key) exists already")
        }
        if stream.version > 0 {
            throw CommandRejection(
                .alreadyExists, entity, key, "\(entity) \(key) existed and was deleted: its key is taken")
        }
    }

    /// A text field as a canonical value (`nil` is NULL).
    static func text(_ value: String?) -> CanonicalValue { value.map(CanonicalValue.text) ?? .null }

    /// The invoice statuses that still owe (or may come to owe) money: archive refuses them.
    static let unsettledInvoiceStatuses: Set<String> = ["draft", "open", "uncollectible"]
}

// MARK: - CreateCustomer

/// Reads the customer's stream (which must not exist); decides the new customer row: its
/// profile, `created_at` = `updated_at` = `at`, not archived. The currency, when given, must be
/// an ISO 4217 code the ledger knows.
extension CreateCustomer: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [.stream(.customer, key: customerID)] }

    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        try CustomerRules.newKey(.customer, customerID, in: state)
        var code: CanonicalValue = .null
        if let currency {
            do {
                code = .text(try Currency(code: currency).code)
            } catch {
                throw CommandRejection(
                    .invalidInput, .customer, customerID, "currency \(currency) is not a known ISO 4217 code: \(error)")
            }
        }
        let row = CanonicalRow(
            entity: .customer,
            values: [
                "customer_id": .text(customerID), "email": CustomerRules.text(email), "name": CustomerRules.text(name),
                "currency": code, "created_at": .timestamp(at), "updated_at": .timestamp(at), "archived_at": .null,
                "time_zone": CustomerRules.text(timeZone),
            ])
        return Decision(rows: [row], summary: "customer \(customerID) created" + (currency.map { " (\($0))" } ?? ""))
    }
}

// MARK: - UpdateCustomer

/// Reads the customer; refuses a missing one (`not_found`), an archived one (`invalid_state`)
/// and an edit that names no field (`invalid_input`); decides the row with the given email
/// and/or name and `updated_at` = `at` (the legacy edit bumps it even when the value is the same).
extension UpdateCustomer: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [.stream(.customer, key: customerID)] }

    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        guard email != nil || name != nil else {
            throw CommandRejection(
                .invalidInput, .customer, customerID, "update_customer names no field to change (email, name)")
        }
        var row = try CustomerRules.liveCustomer(customerID, in: state, for: "update_customer")
        var changed: [String] = []
        if let email {
            row.values["email"] = .text(email)
            changed.append("email")
        }
        if let name {
            row.values["name"] = .text(name)
            changed.append("name")
        }
        row.values["updated_at"] = .timestamp(at)
        return Decision(rows: [row], summary: "customer \(customerID) updated (\(changed.joined(separator: ", ")))")
    }
}

// MARK: - ArchiveCustomer

/// The soft delete. Reads the customer and, as children by `customer_id`, its subscriptions,
/// invoices, payments and balance transactions. Refuses a missing customer (`not_found`), an
/// archived one, one with a subscription that is not `canceled`, a `draft`, `open` or
/// `uncollectible` invoice, a `pending` payment, or a balance or credit that is not 0 (Σ of its
/// balance transactions; with no open or uncollectible invoice that is the whole balance) —
/// all `invalid_state`. Decides the customer with `archived_at` = `updated_at` = `at`.
extension ArchiveCustomer: Decidable {
    var subscriptions: Requirement { .children(.subscription, column: "customer_id", value: customerID) }
    var invoices: Requirement { .children(.invoice, column: "customer_id", value: customerID) }
    var payments: Requirement { .children(.payment, column: "customer_id", value: customerID) }
    var balanceTransactions: Requirement { .children(.balanceTransaction, column: "customer_id", value: customerID) }

    public func requirements(given state: CommandState) -> Set<Requirement> {
        [.stream(.customer, key: customerID), subscriptions, invoices, payments, balanceTransactions]
    }

    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        var row = try CustomerRules.liveCustomer(customerID, in: state, for: "archive_customer")
        func refuse(_ detail: String) -> CommandRejection {
            CommandRejection(
                .invalidState, .customer, customerID, "customer \(customerID) cannot be archived: \(detail)")
        }
        if let running = state.rows(subscriptions).first(where: { $0["status"].textValue != "canceled" }) {
            throw refuse("subscription \(running.key) is \(running["status"]); every subscription must be canceled")
        }
        if let invoice = state.rows(invoices).first(where: {
            CustomerRules.unsettledInvoiceStatuses.contains($0["status"].textValue ?? "")
        }) {
            throw refuse(
                "invoice \(invoice.key) is \(invoice["status"]); no draft, open or uncollectible invoice may remain")
        }
        if let pending = state.rows(payments).first(where: { $0["status"].textValue == "pending" }) {
            throw refuse("payment \(pending.key) is pending")
        }
        var held: Int64 = 0
        for transaction in state.rows(balanceTransactions) {
            let (sum, overflow) = held.addingReportingOverflow(transaction["amount"].amountValue ?? 0)
            guard !overflow else { throw refuse("its balance transactions overflow 64-bit minor units") }
            held = sum
        }
        if held != 0 {
            throw refuse(
                held < 0
                    ? "it holds \(-held) minor units of unapplied credit; balance and credit must be 0"
                    : "its balance transactions leave \(held) minor units owed; balance and credit must be 0")
        }
        row.values["archived_at"] = .timestamp(at)
        row.values["updated_at"] = .timestamp(at)
        return Decision(rows: [row], summary: "customer \(customerID) archived")
    }
}
