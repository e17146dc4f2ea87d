import Billing
import Postgres

// The rules of money received and given back: a payment attempt on an invoice (succeeded in
// full or in part, or failed) and a refund of a succeeded payment. Each decides the canonical
// rows the reference mapping reads from the legacy application's write of the same operation
// (fixtures/README.md: payment_succeeded, payment_failed, payment_retried, partial_payment,
// refund_full, refund_partial; C05, C06, C10, C12, C14).
//
// The customer's cached `balance` is a legacy attribute, carried unchanged: the customer row is
// not rewritten (only its `updated_at` and that cache move in legacy, which the comparison
// rule leaves out).

extension RecordPayment: Decidable {
    /// The payment's key (new), its invoice and the invoice's other payments (one pending
    /// blocks another attempt, a failed one makes this a retry), then the invoice's customer and
    /// subscription (a retry reactivates it).
    public func requirements(given state: CommandState) -> Set<Requirement> {
        var needs: Set<Requirement> = [
            .stream(.payment, key: paymentID), .stream(.invoice, key: invoiceID), Self.payments(of: invoiceID),
        ]
        if let invoice = state.row(.invoice, invoiceID) {
            if let customerID = invoice["customer_id"].textValue { needs.insert(.stream(.customer, key: customerID)) }
            if let subscriptionID = invoice["subscription_id"].textValue {
                needs.insert(.stream(.subscription, key: subscriptionID))
            }
        }
        return needs
    }

    static func payments(of invoiceID: String) -> Requirement {
        .children(.payment, column: "invoice_id", value: invoiceID)
    }

    /// An attempt on an open or uncollectible invoice of a live customer, in the invoice's
    /// currency, of at most what is due (all of it when `amount` is `nil`). A succeeded one
    /// adds to `amount_paid` and takes from `amount_due`; the invoice is paid (`paid_at`) when
    /// nothing is left due. A failed one changes no invoice (its subscription's past-due step is
    /// ``MarkPastDue``, a command of its own).
    ///
    /// Dunning ends with the invoice it is about: a succeeded payment that settles an invoice
    /// with a failed attempt (the legacy `payment_retried`) makes the invoice's `past_due`
    /// subscription `active` again, as the legacy application does in the same transaction. A
    /// payment of an invoice nobody failed to pay leaves the subscription alone, even past due
    /// (another invoice's attempt failed), as legacy `payment_succeeded` does.
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        try PaymentRuleSupport.requireNew(.payment, paymentID, in: state)
        let succeeded: Bool
        switch status {
        case "succeeded": succeeded = true
        case "failed": succeeded = false
        default:
            throw CommandRejection(
                .invalidInput, .payment, paymentID, "status \(status) is not recorded: succeeded or failed")
        }
        if let amount, amount <= 0 {
            throw CommandRejection(
                .invalidAmount, .payment, paymentID, "amount \(amount) is not a positive number of minor units")
        }
        if succeeded, let failureCode {
            throw CommandRejection(
                .invalidInput, .payment, paymentID, "a succeeded payment has no failure code (\(failureCode) given)")
        }
        guard let invoice = state.row(.invoice, invoiceID) else {
            throw CommandRejection(.notFound, .invoice, invoiceID, "invoice \(invoiceID) does not exist")
        }
        let invoiceStatus = invoice["status"].textValue ?? "NULL"
        guard invoiceStatus == "open" || invoiceStatus == "uncollectible" else {
            let why = invoiceStatus == "paid" ? ": an invoice is paid once" : ""
            throw CommandRejection(
                .invalidState, .invoice, invoiceID,
                "invoice \(invoiceID) is \(invoiceStatus)\(why); a payment needs it open or uncollectible")
        }
        let currency = try PaymentRuleSupport.currency(of: invoice)
        try PaymentRuleSupport.requireStated(self.currency, equal: currency, .invoice, invoiceID)
        let customerID = try PaymentRuleSupport.text(invoice, "customer_id")
        let customer = try PaymentRuleSupport.liveCustomer(customerID, in: state, for: "record_payment")
        try PaymentRuleSupport.requireCustomerCurrency(customer, equal: currency, for: .invoice, invoiceID)
        let otherPayments = state.rows(Self.payments(of: invoiceID)).filter { $0.key != paymentID }
        if let pending = otherPayments.first(where: { $0["status"].textValue == "pending" }) {
            throw CommandRejection(
                .invalidState, .invoice, invoiceID,
                "invoice \(invoiceID) has payment \(pending.key) pending; another attempt needs it settled")
        }
        if let finalizedAt = invoice["finalized_at"].timestampValue, at < finalizedAt {
            throw CommandRejection(
                .invalidInput, .payment, paymentID,
                "the payment at \(at.iso8601) precedes invoice \(invoiceID)'s finalization at \(finalizedAt.iso8601)")
        }
        let due = try PaymentRuleSupport.amount(invoice, "amount_due")
        guard due > 0 else {
            throw CommandRejection(
                .invalidState, .invoice, invoiceID,
                "invoice \(invoiceID) has nothing due; a payment needs an amount due")
        }
        let amount = self.amount ?? due
        guard amount <= due else {
            throw CommandRejection(
                .exceedsLimit, .payment, paymentID,
                "\(Money(minorUnits: amount, currency: currency)) exceeds the \(Money(minorUnits: due, currency: currency)) due on invoice \(invoiceID)"
            )
        }

        let payment = CanonicalRow(
            entity: .payment,
            values: [
                "payment_id": .text(paymentID), "customer_id": .text(customerID), "invoice_id": .text(invoiceID),
                "status": .text(status), "amount": .amount(amount), "currency": .text(currency.code),
                "provider_payment_id": providerPaymentID.map(CanonicalValue.text) ?? .null,
                "failure_code": failureCode.map(CanonicalValue.text) ?? .null,
                "created_at": .timestamp(at), "updated_at": .timestamp(at),
            ],
            attributes: ["method": method])
        let money = Money(minorUnits: amount, currency: currency)
        guard succeeded else {
            return Decision(
                rows: [payment],
                summary: "payment \(paymentID) of \(money) on invoice \(invoiceID) failed"
                    + (failureCode.map { " (\($0))" } ?? ""))
        }
        var paidInvoice = invoice
        let paid = try PaymentRuleSupport.sum(
            try PaymentRuleSupport.amount(invoice, "amount_paid"), amount, .invoice, invoiceID)
        let left = due - amount
        paidInvoice.values["amount_paid"] = .amount(paid)
        paidInvoice.values["amount_due"] = .amount(left)
        if left == 0 {
            paidInvoice.values["status"] = .text("paid")
            paidInvoice.values["paid_at"] = .timestamp(at)
        }
        paidInvoice.values["updated_at"] = .timestamp(at)
        var rows = [payment, paidInvoice]
        var summary =
            "payment \(paymentID) of \(money) on invoice \(invoiceID) succeeded; "
            + (left == 0 ? "the invoice is paid" : "\(Money(minorUnits: left, currency: currency)) still due")
        let dunning = otherPayments.contains { $0["status"].textValue == "failed" }
        if left == 0, dunning, let subscriptionID = invoice["subscription_id"].textValue,
            let subscription = state.row(.subscription, subscriptionID), subscription["status"].textValue == "past_due"
        {
            var active = subscription
            active.values["status"] = .text("active")
            active.values["updated_at"] = .timestamp(at)
            rows.append(active)
            summary += "; subscription \(subscriptionID) is active again"
        }
        return Decision(rows: rows, summary: summary)
    }
}

extension RefundPayment: Decidable {
    /// The refund's key (new), the payment, its refunds so far, then the payment's customer.
    public func requirements(given state: CommandState) -> Set<Requirement> {
        var needs: Set<Requirement> = [
            .stream(.refund, key: refundID), .stream(.payment, key: paymentID), Self.refunds(of: paymentID),
        ]
        if let customerID = state.row(.payment, paymentID)?["customer_id"].textValue {
            needs.insert(.stream(.customer, key: customerID))
        }
        return needs
    }

    static func refunds(of paymentID: String) -> Requirement {
        .children(.refund, column: "payment_id", value: paymentID)
    }

    /// A succeeded refund of a succeeded payment of a live customer, in the payment's currency,
    /// of at most what is left of it: its amount less its succeeded and pending refunds (failed
    /// ones do not count, C10); all that is left when `amount` is `nil`. It changes no invoice:
    /// a refunded invoice stays paid (C05).
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        try PaymentRuleSupport.requireNew(.refund, refundID, in: state)
        if let amount, amount <= 0 {
            throw CommandRejection(
                .invalidAmount, .refund, refundID, "amount \(amount) is not a positive number of minor units")
        }
        guard let payment = state.row(.payment, paymentID) else {
            throw CommandRejection(.notFound, .payment, paymentID, "payment \(paymentID) does not exist")
        }
        let paymentStatus = payment["status"].textValue ?? "NULL"
        guard paymentStatus == "succeeded" else {
            throw CommandRejection(
                .invalidState, .payment, paymentID,
                "payment \(paymentID) is \(paymentStatus); a refund needs it succeeded")
        }
        let currency = try PaymentRuleSupport.currency(of: payment)
        try PaymentRuleSupport.requireStated(self.currency, equal: currency, .payment, paymentID)
        let customerID = try PaymentRuleSupport.text(payment, "customer_id")
        let customer = try PaymentRuleSupport.liveCustomer(customerID, in: state, for: "refund_payment")
        try PaymentRuleSupport.requireCustomerCurrency(customer, equal: currency, for: .payment, paymentID)
        if let createdAt = payment["created_at"].timestampValue, at < createdAt {
            throw CommandRejection(
                .invalidInput, .refund, refundID,
                "the refund at \(at.iso8601) precedes payment \(paymentID), made at \(createdAt.iso8601)")
        }
        var refunded: Int64 = 0
        for refund in state.rows(Self.refunds(of: paymentID)) where refund.key != refundID {
            guard let status = refund["status"].textValue, status == "succeeded" || status == "pending" else {
                continue
            }
            let refundCurrency = refund["currency"].textValue
            guard refundCurrency == currency.code else {
                throw CommandRejection(
                    .currencyMismatch, .refund, refund.key,
                    "refund \(refund.key) of payment \(paymentID) is in \(refundCurrency ?? "no currency"), the payment in \(currency.code)"
                )
            }
            refunded = try PaymentRuleSupport.sum(
                refunded, try PaymentRuleSupport.amount(refund, "amount"), .payment, paymentID)
        }
        let paid = try PaymentRuleSupport.amount(payment, "amount")
        let left = paid - refunded
        func limit(_ what: String) -> CommandRejection {
            CommandRejection(
                .exceedsLimit, .refund, refundID,
                "\(what): payment \(paymentID) of \(Money(minorUnits: paid, currency: currency)) has "
                    + "\(Money(minorUnits: refunded, currency: currency)) refunded or pending, "
                    + "\(Money(minorUnits: max(left, 0), currency: currency)) left")
        }
        guard left > 0 else { throw limit("nothing is left to refund") }
        let amount = self.amount ?? left
        guard amount <= left else {
            throw limit("a refund of \(Money(minorUnits: amount, currency: currency)) is more than what is left")
        }
        let refund = CanonicalRow(
            entity: .refund,
            values: [
                "refund_id": .text(refundID), "payment_id": .text(paymentID), "customer_id": .text(customerID),
                "amount": .amount(amount), "currency": .text(currency.code), "status": .text("succeeded"),
                "reason": reason.map(CanonicalValue.text) ?? .null, "created_at": .timestamp(at),
            ])
        return Decision(
            rows: [refund],
            summary:
                "refund \(refundID) of \(Money(minorUnits: amount, currency: currency)) on payment \(paymentID) succeeded"
                + (amount == left ? "; nothing is left to refund" : ""))
    }
}

/// Rules the payment and credit commands share.
enum PaymentRuleSupport {
    /// A row the command creates must not exist yet, nor have existed (a stream that ended
    /// keeps its key).
    static func requireNew(_ entity: Entity, _ key: String, in state: CommandState) throws(CommandRejection) {
        let stream = state.stream(entity, key)
        guard stream.row == nil, stream.version == 0 else {
            throw CommandRejection(.alreadyExists, entity, key, "\(entity) \(key) exists already")
        }
    }

    /// The customer `key`, which must exist (`.notFound`) and not be archived (`.invalidState`,
    /// as the customer and invoice commands say it: the legacy application never acts on a
    /// soft-deleted customer).
    static func liveCustomer(_ key: String, in state: CommandState, for command: String) throws(CommandRejection)
        -> CanonicalRow
    {
        guard let customer = state.row(.customer, key) else {
            throw CommandRejection(.notFound, .customer, key, "customer \(key) does not exist")
        }
        if let archivedAt = customer["archived_at"].timestampValue {
            throw CommandRejection(
                .invalidState, .customer, key,
                "customer \(key) is archived (since \(archivedAt.iso8601)); \(command) needs a live customer")
        }
        return customer
    }

    /// The row's currency, which every amount on it is in.
    static func currency(of row: CanonicalRow) throws(CommandRejection) -> Currency {
        guard let code = row["currency"].textValue else {
            throw CommandRejection(.invalidState, row.entity, row.key, "\(row.entity) \(row.key) has no currency")
        }
        do {
            return try Currency(code: code)
        } catch {
            throw CommandRejection(
                .invalidState, row.entity, row.key, "\(row.entity) \(row.key) is in an unknown currency \(code)")
        }
    }

    /// The currency a command states, if it states one, is the row's.
    static func requireStated(_ stated: String?, equal currency: Currency, _ entity: Entity, _ key: String)
        throws(CommandRejection)
    {
        guard let stated, stated != currency.code else { return }
        guard (try? Currency(code: stated)) != nil else {
            throw CommandRejection(
                .invalidInput, entity, key, "currency \(stated.debugDescription) is not an ISO 4217 code Ledgerlift knows")
        }
        throw CommandRejection(.currencyMismatch, entity, key, "\(entity) \(key) is in \(currency.code), not \(stated)")
    }

    /// A customer's money is in one currency (C12): a customer with a currency holds no row in
    /// another. (A customer without one yet takes its invoices'.)
    static func requireCustomerCurrency(
        _ customer: CanonicalRow, equal currency: Currency, for entity: Entity, _ key: String
    ) throws(CommandRejection) {
        guard let code = customer["currency"].textValue, code != currency.code else { return }
        throw CommandRejection(
            .currencyMismatch, entity, key,
            "\(entity) \(key) is in \(currency.code) but customer \(customer.key) is billed in \(code)")
    }

    /// A non-null text column.
    static func text(_ row: CanonicalRow, _ column: String) throws(CommandRejection) -> String {
        guard let value = row[column].textValue else {
            throw CommandRejection(.invalidState, row.entity, row.key, "\(row.entity) \(row.key) has no \(column)")
        }
        return value
    }

    /// A non-null amount column, in minor units.
    static func amount(_ row: CanonicalRow, _ column: String) throws(CommandRejection) -> Int64 {
        guard let value = row[column].amountValue else {
            throw CommandRejection(.invalidState, row.entity, row.key, "\(row.entity) \(row.key) has no \(column)")
        }
        return value
    }

    /// `a + b` in minor units, refused rather than wrapped when it does not fit in `Int64`.
    static func sum(_ a: Int64, _ b: Int64, _ entity: Entity, _ key: String) throws(CommandRejection) -> Int64 {
        let (result, overflow) = a.addingReportingOverflow(b)
        guard !overflow else {
            throw CommandRejection(
                .invalidAmount, entity, key, "\(a) + \(b) minor units does not fit in a 64-bit amount")
        }
        return result
    }
}
