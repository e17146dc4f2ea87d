import Billing
import Commands
import Foundation
import Postgres

extension CommandTranslation {
    /// The payment and credit operations as commands.
    ///
    /// What the legacy application decided from its own state (the amount due, what is left of
    /// a payment, the credit note's number, the goodwill label) is left for the ledger to
    /// decide from its state, so the parity test checks those rules too; what came from outside
    /// (a partial amount, the card's outcome, the provider's id, a reason, the credit's size)
    /// is stated as the application received it.
    ///
    /// - `payment_succeeded`, `payment_retried`: `record_payment` succeeded, of what is due (a
    ///   retry that settles an invoice in dunning reactivates its past-due subscription within
    ///   the same command).
    /// - `payment_failed`: `record_payment` failed, then `mark_past_due` when legacy put the
    ///   invoice's subscription past due.
    /// - `partial_payment`: `record_payment` succeeded of the part legacy received.
    /// - `refund_full` / `refund_partial`: `refund_payment` of all that is left / of the part.
    /// - `credit_note`: `issue_credit_note` of the note's total, numbered by the ledger.
    /// - `customer_credit`: `add_customer_credit` of minus the transaction's amount.
    public static func paymentCommands(for entry: JournalEntry, legacy: LegacyRows) throws -> [BillingCommand] {
        let at = try at(entry)
        let kind = entry.kind
        switch kind {
        case .paymentSucceeded, .paymentRetried, .paymentFailed, .partialPayment:
            let paymentID = try key(entry, "payment")
            let invoiceID = try key(entry, "invoice")
            let payment = try after(legacy, kind, .payment, paymentID)
            guard let status = payment["status"].textValue else {
                throw CommandTranslationError(kind, "legacy payment \(paymentID) has no status")
            }
            let record = RecordPayment(
                paymentID: paymentID, invoiceID: invoiceID,
                amount: kind == .partialPayment ? try amount(payment, "amount", kind) : nil, status: status,
                method: payment.attributes["method"] ?? nil,
                providerPaymentID: payment["provider_payment_id"].textValue,
                failureCode: payment["failure_code"].textValue, at: at)
            var commands: [BillingCommand] = [.recordPayment(record)]
            if kind == .paymentFailed, let subscriptionID = entry.keys["subscription"],
                subscription(subscriptionID, of: entry, legacy: legacy, wentTo: "past_due")
            {
                commands.append(try markPastDue(subscriptionID, at: at, kind))
            }
            return commands
        case .refundFull, .refundPartial:
            let refundID = try key(entry, "refund")
            let refund = try after(legacy, kind, .refund, refundID)
            return [
                .refundPayment(
                    RefundPayment(
                        refundID: refundID, paymentID: try key(entry, "payment"),
                        amount: kind == .refundPartial ? try amount(refund, "amount", kind) : nil,
                        reason: refund["reason"].textValue, at: at))
            ]
        case .creditNote:
            let noteID = try key(entry, "credit_note")
            let note = try after(legacy, kind, .creditNote, noteID)
            return [
                .issueCreditNote(
                    IssueCreditNote(
                        creditNoteID: noteID, invoiceID: try key(entry, "invoice"),
                        amount: try amount(note, "total", kind),
                        balanceTransactionID: try key(entry, "balance_transaction"), reason: note["reason"].textValue,
                        at: at))
            ]
        case .customerCredit:
            let transactionID = try key(entry, "balance_transaction")
            let transaction = try after(legacy, kind, .balanceTransaction, transactionID)
            let credit = try amount(transaction, "amount", kind)
            guard credit < 0 else {
                throw CommandTranslationError(
                    kind, "legacy balance transaction \(transactionID) of \(credit) is no credit")
            }
            return [
                .addCustomerCredit(
                    AddCustomerCredit(
                        balanceTransactionID: transactionID, customerID: try key(entry, "customer"), amount: -credit,
                        at: at))
            ]
        default:
            throw CommandTranslationError(kind, "not a payment or credit operation")
        }
    }

    /// `mark_past_due` of `subscriptionID`, built from its JSON form: its payload's initializer
    /// is H2's (public on branch i16-subs), this works before and after it is merged.
    private static func markPastDue(_ subscriptionID: String, at: PostgresTimestamp, _ kind: OperationKind) throws
        -> BillingCommand
    {
        let fields = ["command": "mark_past_due", "subscription_id": subscriptionID, "at": at.iso8601]
        do {
            return try JSONDecoder().decode(BillingCommand.self, from: try JSONEncoder().encode(fields))
        } catch {
            throw CommandTranslationError(
                kind, "mark_past_due of subscription \(subscriptionID) does not decode: \(error)")
        }
    }

    /// An amount column of a legacy row.
    private static func amount(_ row: CanonicalRow, _ column: String, _ kind: OperationKind) throws -> Int64 {
        guard let value = row[column].amountValue else {
            throw CommandTranslationError(kind, "legacy \(row.entity) \(row.key) has no \(column)")
        }
        return value
    }

    /// Whether the operation moved subscription `key` to `status`: its rows before and after,
    /// else (rows not read) the journal's effects.
    private static func subscription(_ key: String, of entry: JournalEntry, legacy: LegacyRows, wentTo status: String)
        -> Bool
    {
        if let after = legacy.after(.subscription, key) {
            return after["status"].textValue == status
                && legacy.before(.subscription, key)?["status"].textValue != status
        }
        return entry.effects.contains {
            $0.entity == Entity.subscription.rawValue && $0.key == key && $0.fields["status"] == status
        }
    }
}
