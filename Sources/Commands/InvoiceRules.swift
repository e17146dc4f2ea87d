import Billing
import Postgres

// The invoice commands' rules: the legacy application's (fixtures/README.md, "The simulated
// application": draft_invoice, finalize_invoice, void_invoice, mark_uncollectible,
// discard_draft; C01–C06, C16, C17) in the canonical model, deciding exactly the rows the
// reference mapping reads from legacy after the same write.

// MARK: - Reading rows

extension CanonicalRow {
    fileprivate func invoiceText(_ column: String) -> String? { self[column].textValue }
    fileprivate func invoiceAmount(_ column: String) -> Int64 { self[column].amountValue ?? 0 }
}

/// The rules every invoice command shares: the invoice, its customer, their currency.
enum InvoiceRuleSupport {
    /// The invoice `key`, or `.notFound`.
    static func invoice(_ key: String, in state: CommandState) throws(CommandRejection) -> CanonicalRow {
        guard let row = state.row(.invoice, key) else {
            throw CommandRejection(.notFound, .invoice, key, "invoice \(key) does not exist")
        }
        return row
    }

    /// The invoice in `needed` status, or `.invalidState` naming the one found.
    static func require(_ invoice: CanonicalRow, status needed: String, for action: String) throws(CommandRejection) {
        let found = invoice.invoiceText("status") ?? "NULL"
        guard found == needed else {
            throw CommandRejection(
                .invalidState, .invoice, invoice.key, "invoice \(invoice.key) is \(found); \(action) needs \(article(needed)) \(needed) invoice")
        }
    }

    /// `an` before a vowel (`an open invoice`), else `a`.
    static func article(_ word: String) -> String {
        guard let first = word.first?.lowercased() else { return "a" }
        return "aeiou".contains(first) ? "an" : "a"
    }

    /// The live customer `key` (not archived), or `.notFound` / `.invalidState`.
    static func liveCustomer(_ key: String, in state: CommandState) throws(CommandRejection) -> CanonicalRow {
        guard let row = state.row(.customer, key) else {
            throw CommandRejection(.notFound, .customer, key, "customer \(key) does not exist")
        }
        guard row["archived_at"].isNull else {
            throw CommandRejection(
                .invalidState, .customer, key, "customer \(key) is archived (at \(row["archived_at"])); invoices need a live customer")
        }
        return row
    }

    /// The currency of `row`'s `currency` column, or `.invalidState` when it has none usable.
    static func currency(of row: CanonicalRow) throws(CommandRejection) -> Currency {
        guard let code = row.invoiceText("currency") else {
            throw CommandRejection(.invalidState, row.entity, row.key, "\(row.entity) \(row.key) has no currency")
        }
        do throws(CurrencyError) {
            return try Currency(code: code)
        } catch {
            throw CommandRejection(.invalidState, row.entity, row.key, "\(row.entity) \(row.key) has an unusable currency: \(error)")
        }
    }

    /// `minor` in major units for a summary: `49.00 USD`.
    static func human(_ minor: Int64, _ currency: Currency) -> String {
        ExactDecimal(units: Int128(minor), scale: currency.minorUnitExponent).description + " " + currency.code
    }

    /// A stream that exists or existed (ended streams keep their key: keys are never reused).
    static func exists(_ entity: Entity, _ key: String, in state: CommandState) -> Bool {
        let stream = state.stream(entity, key)
        return stream.row != nil || stream.version > 0
    }

    /// The customer the invoice `key` belongs to, once the invoice is loaded.
    static func customerID(ofInvoice key: String, in state: CommandState) -> String? {
        state.row(.invoice, key)?.invoiceText("customer_id")
    }

    /// `rows` in legacy `ORDER BY id` order.
    static func sorted(_ rows: [CanonicalRow]) -> [CanonicalRow] {
        rows.sorted { InvoiceArithmetic.keyOrder($0.key, $1.key) }
    }
}

// MARK: - draft_invoice

extension DraftInvoice: Decidable {
    /// The keys of the lines the draft creates: the given lines, the discount line, the tax line.
    private var createdLineIDs: [String] {
        lines.map(\.invoiceLineID) + [discountPercent == nil ? nil : discountLineID, taxRate == nil ? nil : taxLineID].compactMap { $0 }
    }

    public func requirements(given state: CommandState) -> Set<Requirement> {
        var needed: Set<Requirement> = [.stream(.invoice, key: invoiceID), .stream(.customer, key: customerID)]
        for id in createdLineIDs { needed.insert(.stream(.invoiceLine, key: id)) }
        if let subscriptionID {
            needed.insert(.stream(.subscription, key: subscriptionID))
            if let plan = state.row(.subscription, subscriptionID)?.invoiceText("plan_id") { needed.insert(.stream(.plan, key: plan)) }
        }
        return needed
    }

    /// One line as decided: its canonical values but the invoice's.
    private struct Line {
        var id: String
        var kind: String
        var description: String?
        var quantity: String
        var unitAmount: String?
        var amount: Int64
        var periodStart: PostgresTimestamp?
        var periodEnd: PostgresTimestamp?
    }

    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        if InvoiceRuleSupport.exists(.invoice, invoiceID, in: state) {
            throw CommandRejection(.alreadyExists, .invoice, invoiceID, "invoice \(invoiceID) exists already")
        }
        let customer = try InvoiceRuleSupport.liveCustomer(customerID, in: state)
        // Lines take the invoice's currency, which is the customer's (C12).
        let currency = try InvoiceRuleSupport.currency(of: customer)
        let exponent = currency.minorUnitExponent
        if let subscriptionID {
            guard let subscription = state.row(.subscription, subscriptionID) else {
                throw CommandRejection(.notFound, .subscription, subscriptionID, "subscription \(subscriptionID) does not exist")
            }
            guard subscription.invoiceText("customer_id") == customerID else {
                throw CommandRejection(
                    .invalidInput, .subscription, subscriptionID,
                    "subscription \(subscriptionID) belongs to customer \(subscription["customer_id"]), not \(customerID)")
            }
            let status = subscription.invoiceText("status") ?? "NULL"
            guard status == "active" || status == "past_due" else {
                throw CommandRejection(
                    .invalidState, .subscription, subscriptionID,
                    "subscription \(subscriptionID) is \(status); a subscription invoice needs an active or past_due subscription")
            }
            if let planID = subscription.invoiceText("plan_id"), let plan = state.row(.plan, planID),
                let planCurrency = plan.invoiceText("currency"), planCurrency != currency.code
            {
                throw CommandRejection(
                    .currencyMismatch, .subscription, subscriptionID,
                    "subscription \(subscriptionID)'s plan \(planID) is in \(planCurrency) but customer \(customerID) is billed in \(currency.code)")
            }
        }
        if let periodStart, let periodEnd, periodStart >= periodEnd {
            throw CommandRejection(.invalidInput, .invoice, invoiceID, "period_start \(periodStart) is not before period_end \(periodEnd)")
        }
        guard !lines.isEmpty else {
            throw CommandRejection(.invalidInput, .invoice, invoiceID, "an invoice has at least one line (C02)")
        }
        let ids = createdLineIDs
        if let duplicate = Dictionary(grouping: ids, by: { $0 }).first(where: { $0.value.count > 1 })?.key {
            throw CommandRejection(.invalidInput, .invoiceLine, duplicate, "invoice line \(duplicate) is given twice")
        }
        for id in ids where InvoiceRuleSupport.exists(.invoiceLine, id, in: state) {
            throw CommandRejection(.alreadyExists, .invoiceLine, id, "invoice line \(id) exists already")
        }

        var decided: [Line] = []
        for input in lines { decided.append(try line(input, exponent: exponent)) }
        // C03: subtotal = the charge lines; discount = −Σ discount lines; tax = Σ tax lines.
        var subtotal: Int64 = 0
        var discount: Int64 = 0
        var tax: Int64 = 0
        for line in decided {
            switch line.kind {
            case "discount": discount = try Self.add(discount, -line.amount, invoiceID)
            case "tax": tax = try Self.add(tax, line.amount, invoiceID)
            default: subtotal = try Self.add(subtotal, line.amount, invoiceID)
            }
        }
        let unitScale = max(4, exponent)
        if let discountPercent {
            guard let discountLineID else {
                throw CommandRejection(.invalidInput, .invoice, invoiceID, "discount_percent needs a discount_line_id")
            }
            guard (1...100).contains(discountPercent) else {
                throw CommandRejection(.invalidInput, .invoice, invoiceID, "discount_percent \(discountPercent) is not within 1…100")
            }
            guard subtotal >= 0 else {
                throw CommandRejection(
                    .invalidAmount, .invoice, invoiceID, "a percentage discount needs a subtotal of 0 or more, not \(subtotal)")
            }
            let off = InvoiceArithmetic.discount(subtotal: subtotal, percent: discountPercent)
            discount = try Self.add(discount, off, invoiceID)
            decided.append(
                Line(
                    id: discountLineID, kind: "discount", description: discountDescription ?? "\(discountPercent)% off", quantity: "1",
                    unitAmount: try Self.unitText(-off, exponent: exponent, scale: unitScale, invoiceID), amount: -off,
                    periodStart: periodStart, periodEnd: periodEnd))
        }
        if let taxRate {
            guard !decided.contains(where: { $0.kind == "tax" }) else {
                throw CommandRejection(.invalidInput, .invoice, invoiceID, "tax is given both as a line and as tax_rate")
            }
            let rate: ExactDecimal
            do throws(CommandRejection) {
                rate = try InvoiceArithmetic.taxRate(taxRate)
            } catch {
                throw CommandRejection(error.code, .invoice, invoiceID, error.detail)
            }
            // C04: round((subtotal − discount) × tax_rate::numeric, exponent); a line when not 0.
            let base = try Self.add(subtotal, -discount, invoiceID)
            do throws(CommandRejection) {
                tax = try InvoiceArithmetic.tax(base: base, rate: rate)
            } catch {
                throw CommandRejection(error.code, .invoice, invoiceID, error.detail)
            }
            if tax != 0 {
                guard let taxLineID else {
                    throw CommandRejection(.invalidInput, .invoice, invoiceID, "a tax of \(tax) minor units needs a tax_line_id")
                }
                decided.append(
                    Line(
                        id: taxLineID, kind: "tax", description: "Tax", quantity: "1",
                        unitAmount: try Self.unitText(tax, exponent: exponent, scale: unitScale, invoiceID), amount: tax,
                        periodStart: periodStart, periodEnd: periodEnd))
            }
        }
        // C02: total = subtotal − discount + tax = Σ lines.
        let total = try Self.add(try Self.add(subtotal, -discount, invoiceID), tax, invoiceID)
        // An invoice asks for money: one with a negative total could never be settled.
        guard total >= 0 else {
            throw CommandRejection(
                .invalidAmount, .invoice, invoiceID,
                "the draft's total is \(InvoiceRuleSupport.human(total, currency)); an invoice cannot total less than 0 — "
                    + "to give money back, issue a credit note (issue_credit_note) or add customer credit (add_customer_credit)")
        }

        let invoice = CanonicalRow(
            entity: .invoice,
            values: [
                "invoice_id": .text(invoiceID), "customer_id": .text(customerID),
                "subscription_id": subscriptionID.map { .text($0) } ?? .null, "number": .null, "status": .text("draft"),
                "currency": .text(currency.code), "subtotal": .amount(subtotal), "discount": .amount(discount),
                "tax": .amount(tax), "total": .amount(total), "amount_paid": .amount(0), "amount_due": .amount(total),
                "period_start": periodStart.map { .timestamp($0) } ?? .null, "period_end": periodEnd.map { .timestamp($0) } ?? .null,
                "issued_on": .null, "due_on": .null, "finalized_at": .null, "paid_at": .null, "voided_at": .null,
                "created_at": .timestamp(at), "updated_at": .timestamp(at),
            ],
            // The legacy-only column the mapping carries: the rate the tax was computed at.
            attributes: ["tax_rate": taxRate])
        let lineRows = decided.map { line in
            CanonicalRow(
                entity: .invoiceLine,
                values: [
                    "invoice_line_id": .text(line.id), "invoice_id": .text(invoiceID), "kind": .text(line.kind),
                    "description": line.description.map { .text($0) } ?? .null, "quantity": .decimal(line.quantity),
                    "unit_amount": line.unitAmount.map { .decimal($0) } ?? .null, "amount": .amount(line.amount),
                    "currency": .text(currency.code), "period_start": line.periodStart.map { .timestamp($0) } ?? .null,
                    "period_end": line.periodEnd.map { .timestamp($0) } ?? .null, "proration": .boolean(line.kind == "proration"),
                    "created_at": .timestamp(at),
                ])
        }
        return Decision(
            rows: [invoice] + lineRows,
            summary: "draft invoice \(invoiceID) of \(InvoiceRuleSupport.human(total, currency)) with \(lineRows.count) line"
                + (lineRows.count == 1 ? "" : "s") + " for customer \(customerID)"
                + (subscriptionID.map { " (subscription \($0))" } ?? ""))
    }

    /// C01: a charge line's amount is `quantity × unit_amount` exactly; `proration` lines (and
    /// stated `discount` / `tax` lines) state theirs.
    private func line(_ input: InvoiceLineInput, exponent: Int) throws(CommandRejection) -> Line {
        let id = input.invoiceLineID
        guard Vocabulary.lineKind.contains(input.kind) else {
            throw CommandRejection(
                .invalidInput, .invoiceLine, id, "line kind '\(input.kind)' is not one of \(Vocabulary.lineKind.joined(separator: ", "))")
        }
        let quantityText = input.quantity ?? "1"
        guard let quantity = ExactDecimal(quantityText) else {
            throw CommandRejection(.invalidInput, .invoiceLine, id, "quantity \"\(quantityText)\" is not a decimal number")
        }
        guard quantity.units > 0 else {
            throw CommandRejection(.invalidInput, .invoiceLine, id, "quantity \(quantity) is not more than 0 (C19)")
        }
        var unitAmount: ExactDecimal?
        if let text = input.unitAmount {
            guard let parsed = ExactDecimal(text) else {
                throw CommandRejection(.invalidInput, .invoiceLine, id, "unit_amount \"\(text)\" is not a decimal number")
            }
            // A unit price keeps at least four decimals, as the legacy numeric(14,4) prints it.
            guard let padded = parsed.padded(toScale: max(4, exponent)) else {
                throw CommandRejection(.invalidAmount, .invoiceLine, id, "unit_amount \(text) is out of range")
            }
            unitAmount = padded
        }
        let amount: Int64
        switch input.kind {
        case "proration", "discount", "tax":
            guard let stated = input.amount else {
                throw CommandRejection(.invalidInput, .invoiceLine, id, "a \(input.kind) line states its amount")
            }
            if input.kind == "discount", stated > 0 {
                throw CommandRejection(.invalidAmount, .invoiceLine, id, "a discount line is 0 or less, not \(stated) (C03)")
            }
            amount = stated
        default:
            guard let unitAmount else {
                throw CommandRejection(.invalidInput, .invoiceLine, id, "a \(input.kind) line needs unit_amount")
            }
            do throws(CommandRejection) {
                amount = try InvoiceArithmetic.lineAmount(quantity: quantity, unitAmount: unitAmount, exponent: exponent)
            } catch {
                throw CommandRejection(error.code, .invoiceLine, id, error.detail)
            }
            if let stated = input.amount, stated != amount {
                throw CommandRejection(
                    .invalidAmount, .invoiceLine, id, "amount \(stated) is not quantity × unit_amount = \(amount) minor units (C01)")
            }
        }
        return Line(
            id: id, kind: input.kind, description: input.description, quantity: quantity.description,
            unitAmount: unitAmount?.description, amount: amount, periodStart: input.periodStart ?? periodStart,
            periodEnd: input.periodEnd ?? periodEnd)
    }

    private static func add(_ a: Int64, _ b: Int64, _ invoiceID: String) throws(CommandRejection) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        guard !overflow else { throw CommandRejection(.invalidAmount, .invoice, invoiceID, "the invoice's amounts overflow 64 bits") }
        return sum
    }

    /// `minor` as a unit price in major units with `scale` decimals (`-980` USD → `-9.8000`).
    private static func unitText(_ minor: Int64, exponent: Int, scale: Int, _ invoiceID: String) throws(CommandRejection) -> String {
        guard let text = ExactDecimal(units: Int128(minor), scale: exponent).padded(toScale: scale) else {
            throw CommandRejection(.invalidAmount, .invoice, invoiceID, "\(minor) minor units is out of range")
        }
        return text.description
    }
}

// MARK: - finalize_invoice

extension FinalizeInvoice: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> {
        var needed: Set<Requirement> = [.stream(.invoice, key: invoiceID)]
        for id in creditApplicationIDs ?? [] { needed.insert(.stream(.balanceTransaction, key: id)) }
        if let customer = InvoiceRuleSupport.customerID(ofInvoice: invoiceID, in: state) {
            needed.insert(.stream(.customer, key: customer))
            // The numbering (C16) and the unapplied credit (C07, C09).
            needed.insert(.children(.invoice, column: "customer_id", value: customer))
            needed.insert(.children(.creditNote, column: "customer_id", value: customer))
            needed.insert(.children(.balanceTransaction, column: "customer_id", value: customer))
        }
        return needed
    }

    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        var invoice = try InvoiceRuleSupport.invoice(invoiceID, in: state)
        try InvoiceRuleSupport.require(invoice, status: "draft", for: "finalize_invoice")
        guard let customerID = invoice.invoiceText("customer_id") else {
            throw CommandRejection(.invalidState, .invoice, invoiceID, "invoice \(invoiceID) has no customer")
        }
        let customer = try InvoiceRuleSupport.liveCustomer(customerID, in: state)
        let currency = try InvoiceRuleSupport.currency(of: invoice)
        if let customerCurrency = customer.invoiceText("currency"), customerCurrency != currency.code {
            throw CommandRejection(
                .currencyMismatch, .invoice, invoiceID,
                "invoice \(invoiceID) is in \(currency.code) but customer \(customerID) is billed in \(customerCurrency)")
        }
        if let created = invoice["created_at"].timestampValue, at < created {
            throw CommandRejection(
                .invalidInput, .invoice, invoiceID, "finalized at \(at) is before the draft was created (\(created)) (C17)")
        }
        let issuedOn = at.utcDate
        let dueOn = dueOn ?? issuedOn
        guard dueOn >= issuedOn else {
            throw CommandRejection(.invalidInput, .invoice, invoiceID, "due_on \(dueOn) is before the issue date \(issuedOn) (C17)")
        }

        // C16: the customer's next number.
        let numbered = InvoiceRuleSupport.sorted(state.rows(.children(.invoice, column: "customer_id", value: customerID)))
            .compactMap { $0.invoiceText("number") }
        let number = InvoiceArithmetic.nextInvoiceNumber(customerID: customerID, numbers: numbered)

        // The unapplied credit (C07) and the credit notes' remaining credit (C09), all in the
        // invoice's currency: currencies never mix. Only credit that exists at `at` counts:
        // a balance transaction or credit note created later is not there yet.
        func existsAt(_ row: CanonicalRow) -> Bool { row["created_at"].timestampValue.map { $0 <= at } ?? true }
        var unapplied: Int64 = 0
        for transaction in state.rows(.children(.balanceTransaction, column: "customer_id", value: customerID))
        where existsAt(transaction) {
            let amount = transaction.invoiceAmount("amount")
            guard amount == 0 || transaction.invoiceText("currency") == currency.code else {
                throw CommandRejection(
                    .currencyMismatch, .balanceTransaction, transaction.key,
                    "balance transaction \(transaction.key) is in \(transaction["currency"]), invoice \(invoiceID) in \(currency.code)")
            }
            let (sum, overflow) = unapplied.subtractingReportingOverflow(amount)
            guard !overflow else {
                throw CommandRejection(.invalidAmount, .customer, customerID, "customer \(customerID)'s credit overflows 64 bits")
            }
            unapplied = sum
        }
        var notes: [(id: String, remaining: Int64)] = []
        var noteRows: [String: CanonicalRow] = [:]
        for note in InvoiceRuleSupport.sorted(state.rows(.children(.creditNote, column: "customer_id", value: customerID)))
        where note.invoiceText("status") == "issued" && note.invoiceAmount("balance_remaining") > 0 && existsAt(note) {
            guard note.invoiceText("currency") == currency.code else {
                throw CommandRejection(
                    .currencyMismatch, .creditNote, note.key,
                    "credit note \(note.key) is in \(note["currency"]), invoice \(invoiceID) in \(currency.code)")
            }
            notes.append((note.key, note.invoiceAmount("balance_remaining")))
            noteRows[note.key] = note
        }
        let total = invoice.invoiceAmount("total")
        let uses = InvoiceArithmetic.creditUses(due: total, unapplied: unapplied, notes: notes)
        let ids = creditApplicationIDs ?? []
        guard ids.count >= uses.count else {
            throw CommandRejection(
                .invalidInput, .invoice, invoiceID,
                "applying credit takes \(uses.count) balance transaction id\(uses.count == 1 ? "" : "s"), \(ids.count) given")
        }
        let used = Array(ids.prefix(uses.count))
        if Set(used).count != used.count {
            throw CommandRejection(.invalidInput, .invoice, invoiceID, "credit_application_ids repeats an id")
        }
        for id in used where InvoiceRuleSupport.exists(.balanceTransaction, id, in: state) {
            throw CommandRejection(.alreadyExists, .balanceTransaction, id, "balance transaction \(id) exists already")
        }
        let applied = uses.reduce(Int64(0)) { $0 + $1.amount }
        // Paid at once when nothing is left to pay, a total of 0 included (C06).
        let paid = total == applied

        invoice.values["status"] = .text(paid ? "paid" : "open")
        invoice.values["number"] = .text(number)
        invoice.values["finalized_at"] = .timestamp(at)
        invoice.values["issued_on"] = .date(issuedOn)
        invoice.values["due_on"] = .date(dueOn)
        invoice.values["paid_at"] = paid ? .timestamp(at) : .null
        invoice.values["amount_paid"] = .amount(applied)
        invoice.values["amount_due"] = .amount(paid ? 0 : total - applied)
        invoice.values["updated_at"] = .timestamp(at)
        var rows = [invoice]
        for (use, id) in zip(uses, used) {
            rows.append(
                CanonicalRow(
                    entity: .balanceTransaction,
                    values: [
                        "balance_transaction_id": .text(id), "customer_id": .text(customerID), "amount": .amount(use.amount),
                        "currency": .text(currency.code), "type": .text("applied_to_invoice"), "invoice_id": .text(invoiceID),
                        "credit_note_id": use.creditNoteID.map { .text($0) } ?? .null,
                        "description": .text("Applied to invoice \(number)"), "created_at": .timestamp(at),
                    ]))
            if let noteID = use.creditNoteID, var note = noteRows[noteID] {
                note.values["balance_remaining"] = .amount(use.remainingAfter)
                rows.append(note)
            }
        }
        return Decision(
            rows: rows,
            summary: "invoice \(invoiceID) of \(InvoiceRuleSupport.human(total, currency)) finalized as \(number) for customer \(customerID)"
                + (applied > 0 ? ", \(InvoiceRuleSupport.human(applied, currency)) of credit applied" : "")
                + (paid ? ", paid at once" + (total == 0 ? " (nothing to pay)" : " by credit") : ""))
    }
}

// MARK: - discard_draft

extension DiscardDraft: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> {
        var needed: Set<Requirement> = [
            .stream(.invoice, key: invoiceID), .children(.invoiceLine, column: "invoice_id", value: invoiceID),
        ]
        if let customer = InvoiceRuleSupport.customerID(ofInvoice: invoiceID, in: state) {
            needed.insert(.stream(.customer, key: customer))
        }
        return needed
    }

    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        let invoice = try InvoiceRuleSupport.invoice(invoiceID, in: state)
        // A finalized invoice's lines are frozen: only a draft is thrown away.
        try InvoiceRuleSupport.require(invoice, status: "draft", for: "discard_draft")
        _ = try InvoiceRuleSupport.liveCustomer(invoice.invoiceText("customer_id") ?? "", in: state)
        let lines = InvoiceRuleSupport.sorted(state.rows(.children(.invoiceLine, column: "invoice_id", value: invoiceID)))
        return Decision(
            rows: [],
            deleted: [Decision.DeletedRow(entity: .invoice, key: invoiceID)]
                + lines.map { Decision.DeletedRow(entity: .invoiceLine, key: $0.key) },
            summary: "draft invoice \(invoiceID) of customer \(invoice["customer_id"]) discarded with its \(lines.count) line"
                + (lines.count == 1 ? "" : "s"))
    }
}

// MARK: - void_invoice

extension VoidInvoice: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> {
        var needed: Set<Requirement> = [
            .stream(.invoice, key: invoiceID), .children(.payment, column: "invoice_id", value: invoiceID),
            .children(.creditNote, column: "invoice_id", value: invoiceID),
            .children(.balanceTransaction, column: "invoice_id", value: invoiceID),
        ]
        if let customer = InvoiceRuleSupport.customerID(ofInvoice: invoiceID, in: state) {
            needed.insert(.stream(.customer, key: customer))
        }
        return needed
    }

    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        var invoice = try InvoiceRuleSupport.invoice(invoiceID, in: state)
        try InvoiceRuleSupport.require(invoice, status: "open", for: "void_invoice")
        let customerID = invoice.invoiceText("customer_id") ?? ""
        _ = try InvoiceRuleSupport.liveCustomer(customerID, in: state)
        let currency = try InvoiceRuleSupport.currency(of: invoice)
        // Only an invoice with nothing paid on it: no money, no credit, no credit note.
        let paid = invoice.invoiceAmount("amount_paid")
        guard paid == 0 else {
            throw CommandRejection(
                .invalidState, .invoice, invoiceID,
                "invoice \(invoiceID) has \(InvoiceRuleSupport.human(paid, currency)) paid; void_invoice needs nothing paid")
        }
        for payment in InvoiceRuleSupport.sorted(state.rows(.children(.payment, column: "invoice_id", value: invoiceID))) {
            let status = payment.invoiceText("status") ?? "NULL"
            guard status != "succeeded", status != "pending" else {
                throw CommandRejection(
                    .invalidState, .invoice, invoiceID,
                    "invoice \(invoiceID) has a \(status) payment \(payment.key); void_invoice needs none succeeded or pending")
            }
        }
        if let note = InvoiceRuleSupport.sorted(state.rows(.children(.creditNote, column: "invoice_id", value: invoiceID))).first {
            throw CommandRejection(
                .invalidState, .invoice, invoiceID, "invoice \(invoiceID) has credit note \(note.key); void_invoice needs none")
        }
        if let transaction = InvoiceRuleSupport.sorted(state.rows(.children(.balanceTransaction, column: "invoice_id", value: invoiceID)))
            .first(where: { $0.invoiceText("customer_id") == customerID })
        {
            throw CommandRejection(
                .invalidState, .invoice, invoiceID,
                "invoice \(invoiceID) has balance transaction \(transaction.key); void_invoice needs none")
        }
        let due = invoice.invoiceAmount("amount_due")
        invoice.values["status"] = .text("void")
        invoice.values["amount_due"] = .amount(0)
        invoice.values["voided_at"] = .timestamp(at)
        invoice.values["updated_at"] = .timestamp(at)
        return Decision(
            rows: [invoice],
            summary: "invoice \(invoiceID) of customer \(customerID) voided (\(InvoiceRuleSupport.human(due, currency)) no longer due)")
    }
}

// MARK: - mark_uncollectible

extension MarkUncollectible: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> {
        var needed: Set<Requirement> = [
            .stream(.invoice, key: invoiceID), .children(.payment, column: "invoice_id", value: invoiceID),
        ]
        if let customer = InvoiceRuleSupport.customerID(ofInvoice: invoiceID, in: state) {
            needed.insert(.stream(.customer, key: customer))
        }
        return needed
    }

    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        var invoice = try InvoiceRuleSupport.invoice(invoiceID, in: state)
        try InvoiceRuleSupport.require(invoice, status: "open", for: "mark_uncollectible")
        let customerID = invoice.invoiceText("customer_id") ?? ""
        _ = try InvoiceRuleSupport.liveCustomer(customerID, in: state)
        let currency = try InvoiceRuleSupport.currency(of: invoice)
        if let pending = InvoiceRuleSupport.sorted(state.rows(.children(.payment, column: "invoice_id", value: invoiceID)))
            .first(where: { $0.invoiceText("status") == "pending" })
        {
            throw CommandRejection(
                .invalidState, .invoice, invoiceID,
                "invoice \(invoiceID) has a pending payment \(pending.key); mark_uncollectible needs none pending")
        }
        // Still owed: amount_due unchanged. The legacy application records no time of the
        // write-off (marked_uncollectible_at stays NULL, as the mapping reads it).
        invoice.values["status"] = .text("uncollectible")
        invoice.values["updated_at"] = .timestamp(at)
        return Decision(
            rows: [invoice],
            summary: "invoice \(invoiceID) of customer \(customerID) marked uncollectible with "
                + "\(InvoiceRuleSupport.human(invoice.invoiceAmount("amount_due"), currency)) due")
    }
}
