import Billing
import Postgres

// The rules of credit held in a customer's balance: a credit note on a paid invoice and
// goodwill credit. Both write a balance transaction of minus the credit (fixtures/README.md:
// credit_note, customer_credit; C07, C08, C09, C12). Later invoices use it when they are
// finalized (``FinalizeInvoice``).
//
// The customer's cached `balance` and `credit_balance` are legacy attributes, carried
// unchanged: the customer row is not rewritten (only its `updated_at` and those caches move in
// legacy, which the comparison rule leaves out).

extension IssueCreditNote: Decidable {
    /// The credit note's and its transaction's keys (new), the invoice and its credit notes,
    /// then the invoice's customer and all its credit notes (they number the new one).
    public func requirements(given state: CommandState) -> Set<Requirement> {
        var needs: Set<Requirement> = [
            .stream(.creditNote, key: creditNoteID), .stream(.balanceTransaction, key: balanceTransactionID),
            .stream(.invoice, key: invoiceID), Self.notes(.invoice, invoiceID),
        ]
        if let customerID = state.row(.invoice, invoiceID)?["customer_id"].textValue {
            needs.insert(.stream(.customer, key: customerID))
            needs.insert(Self.notes(.customer, customerID))
        }
        return needs
    }

    /// The credit notes whose `invoice_id` (or `customer_id`) is `key`.
    static func notes(_ owner: Entity, _ key: String) -> Requirement {
        .children(.creditNote, column: owner.keyColumn, value: key)
    }

    /// An issued credit note of `amount` on a paid invoice of a live customer, at most what the
    /// invoice's issued credit notes leave of its total, with its whole amount as credit
    /// (`balance_remaining` = total), and its `credit_note` balance transaction of −amount in
    /// the invoice's currency (C09). The number, when not given, is the legacy application's:
    /// the invoice number's prefix, `-CN-` and one more than the customer's credit notes, on
    /// two digits at least.
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        guard amount > 0 else {
            throw CommandRejection(
                .invalidAmount, .creditNote, creditNoteID, "amount \(amount) is not a positive number of minor units")
        }
        try PaymentRuleSupport.requireNew(.creditNote, creditNoteID, in: state)
        try PaymentRuleSupport.requireNew(.balanceTransaction, balanceTransactionID, in: state)
        guard let invoice = state.row(.invoice, invoiceID) else {
            throw CommandRejection(.notFound, .invoice, invoiceID, "invoice \(invoiceID) does not exist")
        }
        let invoiceStatus = invoice["status"].textValue ?? "NULL"
        guard invoiceStatus == "paid" else {
            throw CommandRejection(
                .invalidState, .invoice, invoiceID,
                "invoice \(invoiceID) is \(invoiceStatus); a credit note needs it paid")
        }
        let currency = try PaymentRuleSupport.currency(of: invoice)
        try PaymentRuleSupport.requireStated(self.currency, equal: currency, .invoice, invoiceID)
        let customerID = try PaymentRuleSupport.text(invoice, "customer_id")
        let customer = try PaymentRuleSupport.liveCustomer(customerID, in: state, for: "issue_credit_note")
        try PaymentRuleSupport.requireCustomerCurrency(customer, equal: currency, for: .invoice, invoiceID)

        var credited: Int64 = 0
        for note in state.rows(Self.notes(.invoice, invoiceID)) where note["status"].textValue == "issued" {
            guard note["currency"].textValue == currency.code else {
                throw CommandRejection(
                    .currencyMismatch, .creditNote, note.key,
                    "credit note \(note.key) of invoice \(invoiceID) is in \(note["currency"].textValue ?? "no currency"), the invoice in \(currency.code)"
                )
            }
            credited = try PaymentRuleSupport.sum(
                credited, try PaymentRuleSupport.amount(note, "total"), .invoice, invoiceID)
        }
        let total = try PaymentRuleSupport.amount(invoice, "total")
        let creditable = total - credited
        guard amount <= creditable else {
            throw CommandRejection(
                .exceedsLimit, .creditNote, creditNoteID,
                "a credit note of \(Money(minorUnits: amount, currency: currency)) is more than the "
                    + "\(Money(minorUnits: max(creditable, 0), currency: currency)) invoice \(invoiceID) "
                    + "(\(Money(minorUnits: total, currency: currency))) has not been credited")
        }
        let customerNotes = state.rows(Self.notes(.customer, customerID))
        let number: String
        if let given = self.number {
            if let taken = customerNotes.first(where: { $0["number"].textValue == given }) {
                throw CommandRejection(
                    .alreadyExists, .creditNote, creditNoteID,
                    "credit note number \(given) is credit note \(taken.key)'s")
            }
            number = given
        } else {
            number = Self.number(
                invoiceNumber: invoice["number"].textValue, customerID: customerID, notes: customerNotes.count)
        }

        let note = CanonicalRow(
            entity: .creditNote,
            values: [
                "credit_note_id": .text(creditNoteID), "customer_id": .text(customerID), "invoice_id": .text(invoiceID),
                "number": .text(number), "status": .text("issued"), "total": .amount(amount),
                "balance_remaining": .amount(amount), "currency": .text(currency.code),
                "reason": reason.map(CanonicalValue.text) ?? .null, "created_at": .timestamp(at),
            ])
        let transaction = CanonicalRow(
            entity: .balanceTransaction,
            values: [
                "balance_transaction_id": .text(balanceTransactionID), "customer_id": .text(customerID),
                "amount": .amount(-amount), "currency": .text(currency.code), "type": .text("credit_note"),
                "credit_note_id": .text(creditNoteID), "description": .text("Credit note \(number)"),
                "created_at": .timestamp(at),
            ])
        return Decision(
            rows: [note, transaction],
            summary:
                "credit note \(creditNoteID) (\(number)) of \(Money(minorUnits: amount, currency: currency)) on invoice \(invoiceID) "
                + "credited to customer \(customerID)")
    }

    /// The legacy numbering: `LL0013-0004` with 1 credit note before → `LL0013-CN-02`. An
    /// invoice without a number (never, for a paid one) numbers after `LL<customer>`.
    static func number(invoiceNumber: String?, customerID: String, notes: Int) -> String {
        let invoiceNumber = invoiceNumber ?? "LL\(customerID)"
        let prefix = invoiceNumber.lastIndex(of: "-").map { String(invoiceNumber[..<$0]) } ?? invoiceNumber
        return prefix + "-CN-" + (notes + 1 < 10 ? "0" : "") + String(notes + 1)
    }
}

extension AddCustomerCredit: Decidable {
    /// The transaction's key (new) and the customer.
    public func requirements(given state: CommandState) -> Set<Requirement> {
        [.stream(.balanceTransaction, key: balanceTransactionID), .stream(.customer, key: customerID)]
    }

    /// Goodwill credit: an `adjustment` balance transaction of −amount in the customer's
    /// currency, for a live customer that has one (story 19).
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        guard amount > 0 else {
            throw CommandRejection(
                .invalidAmount, .balanceTransaction, balanceTransactionID,
                "amount \(amount) is not a positive number of minor units")
        }
        try PaymentRuleSupport.requireNew(.balanceTransaction, balanceTransactionID, in: state)
        let customer = try PaymentRuleSupport.liveCustomer(customerID, in: state, for: "add_customer_credit")
        guard customer["currency"].textValue != nil else {
            throw CommandRejection(
                .invalidState, .customer, customerID,
                "customer \(customerID) has no currency yet; credit needs the currency it is billed in")
        }
        let currency = try PaymentRuleSupport.currency(of: customer)
        try PaymentRuleSupport.requireStated(self.currency, equal: currency, .customer, customerID)
        let transaction = CanonicalRow(
            entity: .balanceTransaction,
            values: [
                "balance_transaction_id": .text(balanceTransactionID), "customer_id": .text(customerID),
                "amount": .amount(-amount), "currency": .text(currency.code), "type": .text("adjustment"),
                "description": .text(description ?? "Goodwill credit"), "created_at": .timestamp(at),
            ])
        return Decision(
            rows: [transaction],
            summary: "credit of \(Money(minorUnits: amount, currency: currency)) added to customer \(customerID)")
    }
}
