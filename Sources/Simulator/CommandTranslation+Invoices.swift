import Billing
import Commands
import Postgres

extension CommandTranslation {
    /// The invoice operations as commands: what the legacy application decided (the keys it
    /// allocated, the lines it wrote, the rate it taxed at, the due date it chose), stated so
    /// that the ledger decides the same rows.
    ///
    /// - `draft_invoice`: the billing worker's renewal first (`renew_subscription` when the
    ///   subscription's period moved, or `end_subscription` when a subscription set to cancel at
    ///   its period's end was ended instead of invoiced), then `draft_invoice` with the legacy
    ///   lines — the discount and tax lines as the percentage and the rate they come from, which
    ///   the command computes again.
    /// - `finalize_invoice`: the due date and the ids of the credit applications legacy wrote.
    /// - `void_invoice`, `mark_uncollectible`, `discard_draft`: the invoice.
    public static func invoiceCommands(for entry: JournalEntry, legacy: LegacyRows) throws -> [BillingCommand] {
        let at = try at(entry)
        switch entry.kind {
        case .draftInvoice:
            var commands: [BillingCommand] = []
            if let subscription = entry.keys["subscription"], let renewal = try renewal(entry, legacy, subscription, at: at) {
                commands.append(renewal)
            }
            if let invoice = entry.keys["invoice"] {
                commands.append(.draftInvoice(try draft(entry, legacy, invoice, at: at)))
            }
            guard !commands.isEmpty else {
                throw CommandTranslationError(entry.kind, "the entry names no invoice and no subscription that changed")
            }
            return commands
        case .finalizeInvoice:
            let invoice = try key(entry, "invoice")
            let row = try after(legacy, entry.kind, .invoice, invoice)
            guard case .date(let dueOn) = row["due_on"] else {
                throw CommandTranslationError(entry.kind, "invoice \(invoice) has no due_on after it was finalized")
            }
            let applications = legacy.created(.balanceTransaction)
                .filter { $0["invoice_id"].textValue == invoice && $0["type"].textValue == "applied_to_invoice" }
                .map(\.key).sorted(by: InvoiceArithmetic.keyOrder)
            return [
                .finalizeInvoice(
                    FinalizeInvoice(invoiceID: invoice, dueOn: dueOn, creditApplicationIDs: applications.isEmpty ? nil : applications, at: at))
            ]
        case .voidInvoice:
            return [.voidInvoice(VoidInvoice(invoiceID: try key(entry, "invoice"), at: at))]
        case .markUncollectible:
            return [.markUncollectible(MarkUncollectible(invoiceID: try key(entry, "invoice"), at: at))]
        case .discardDraft:
            return [.discardDraft(DiscardDraft(invoiceID: try key(entry, "invoice"), at: at))]
        default:
            throw CommandTranslationError(entry.kind, "not an invoice operation")
        }
    }

    /// The billing worker's step before a draft: the subscription ended at its period's end, or
    /// renewed to the period in progress; `nil` when it did not change (a first invoice, or a
    /// one-off draft).
    private static func renewal(_ entry: JournalEntry, _ legacy: LegacyRows, _ subscription: String, at: PostgresTimestamp) throws
        -> BillingCommand?
    {
        guard let before = legacy.before(.subscription, subscription) else { return nil }
        let after = try after(legacy, entry.kind, .subscription, subscription)
        if after["status"].textValue == "canceled", before["status"].textValue != "canceled" {
            return .endSubscription(EndSubscription(subscriptionID: subscription, at: at))
        }
        guard before["current_period_start"] != after["current_period_start"] || before["current_period_end"] != after["current_period_end"]
        else { return nil }
        guard case .timestamp(let start) = after["current_period_start"], case .timestamp(let end) = after["current_period_end"] else {
            throw CommandTranslationError(entry.kind, "subscription \(subscription) was renewed to a period without bounds")
        }
        return .renewSubscription(RenewSubscription(subscriptionID: subscription, periodStart: start, periodEnd: end, at: at))
    }

    /// The draft legacy wrote: its charge lines as given, its discount line as the percentage
    /// of the subtotal it is, its tax line as the rate copied onto the invoice.
    private static func draft(_ entry: JournalEntry, _ legacy: LegacyRows, _ key: String, at: PostgresTimestamp) throws -> DraftInvoice {
        let invoice = try after(legacy, entry.kind, .invoice, key)
        let lines = legacy.created(.invoiceLine).filter { $0["invoice_id"].textValue == key }
            .sorted { InvoiceArithmetic.keyOrder($0.key, $1.key) }
        guard !lines.isEmpty else { throw CommandTranslationError(entry.kind, "legacy wrote invoice \(key) without lines") }
        func timestamp(_ value: CanonicalValue) -> PostgresTimestamp? { value.timestampValue }
        var inputs: [InvoiceLineInput] = []
        var discountLine: CanonicalRow?
        var taxLine: CanonicalRow?
        for line in lines {
            switch line["kind"].textValue {
            case "discount" where discountLine == nil: discountLine = line
            case "tax" where taxLine == nil: taxLine = line
            default:
                let kind = line["kind"].textValue ?? ""
                inputs.append(
                    InvoiceLineInput(
                        invoiceLineID: line.key, kind: kind, description: line["description"].textValue,
                        quantity: line["quantity"].isNull ? nil : line["quantity"].description,
                        unitAmount: line["unit_amount"].isNull ? nil : line["unit_amount"].description,
                        // Charge lines are quantity × unit_amount, computed by the command.
                        amount: kind == "proration" ? line["amount"].amountValue : nil,
                        periodStart: timestamp(line["period_start"]), periodEnd: timestamp(line["period_end"])))
            }
        }
        var percent: Int64?
        if let discountLine {
            let subtotal = invoice["subtotal"].amountValue ?? 0
            let off = -(discountLine["amount"].amountValue ?? 0)
            percent = discountPercent(subtotal: subtotal, off: off, description: discountLine["description"].textValue)
            guard percent != nil else {
                throw CommandTranslationError(
                    entry.kind, "discount line \(discountLine.key) (\(off) of \(subtotal)) is no whole percentage of the subtotal")
            }
        }
        // The rate legacy copied onto the draft (its float8 as text), which it taxed at.
        let rate = invoice.attributes["tax_rate"] ?? nil
        return DraftInvoice(
            invoiceID: key, customerID: try required(invoice, "customer_id", entry.kind),
            subscriptionID: invoice["subscription_id"].textValue, periodStart: timestamp(invoice["period_start"]),
            periodEnd: timestamp(invoice["period_end"]), lines: inputs, discountLineID: discountLine?.key, discountPercent: percent,
            discountDescription: discountLine?["description"].textValue, taxLineID: taxLine?.key, taxRate: rate, at: at)
    }

    /// The percentage a discount of `off` is of `subtotal`: the one its label names (`SAVE20
    /// (20% off)`) when it gives that amount, else the smallest that does.
    private static func discountPercent(subtotal: Int64, off: Int64, description: String?) -> Int64? {
        if let description, let sign = description.firstIndex(of: "%") {
            let digits = description[..<sign].reversed().prefix { $0.isNumber }
            if let named = Int64(String(digits.reversed())), (1...100).contains(named),
                InvoiceArithmetic.discount(subtotal: subtotal, percent: named) == off
            {
                return named
            }
        }
        return (1...100).first { InvoiceArithmetic.discount(subtotal: subtotal, percent: $0) == off }
    }

    private static func required(_ row: CanonicalRow, _ column: String, _ kind: OperationKind) throws -> String {
        guard let value = row[column].textValue else {
            throw CommandTranslationError(kind, "\(row.entity) \(row.key) has no \(column)")
        }
        return value
    }
}
