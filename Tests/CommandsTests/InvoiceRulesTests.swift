import Billing
@testable import Commands
import Postgres
import Simulator
import Testing

/// The rows a test's ledger holds, loaded the way the executor loads them: each requirement
/// until the command asks for nothing new (a stream, or the keys of every live row of an
/// entity whose column holds a value), then `decide`.
private struct Ledger {
    var rows: [CanonicalRow]
    /// Streams that existed and ended (a discarded draft), by stream id.
    var ended: Set<String> = []

    func state(for command: BillingCommand) -> CommandState {
        var state = CommandState()
        for _ in 0..<10 {
            let needed = command.requirements(given: state)
            if state.satisfies(needed) { return state }
            for requirement in needed {
                switch requirement {
                case .stream(let entity, let key):
                    if let row = rows.first(where: { $0.entity == entity && $0.key == key }) {
                        state.streams[row.streamID] = StreamState(row: row, version: 3, lastOccurredAt: nil)
                    } else if ended.contains(entity.streamID(key: key)) {
                        state.streams[entity.streamID(key: key)] = StreamState(row: nil, version: 2, lastOccurredAt: nil)
                    } else {
                        state.streams[entity.streamID(key: key)] = .missing
                    }
                case .children(let entity, let column, let value):
                    let found = rows.filter { $0.entity == entity && $0[column].textValue == value }
                    for row in found { state.streams[row.streamID] = StreamState(row: row, version: 3, lastOccurredAt: nil) }
                    state.children[requirement] = found.map(\.key)
                }
            }
        }
        Issue.record("the requirements of \(command.name) never settle")
        return state
    }

    func decide(_ command: BillingCommand) throws(CommandRejection) -> Decision {
        try command.decide(in: state(for: command))
    }

    /// The rejection's code (fails the test when the command is decided).
    func rejection(_ command: BillingCommand) -> CommandRejection.Code? {
        do throws(CommandRejection) {
            let decision = try decide(command)
            Issue.record("\(command.name) was decided: \(decision.summary)")
            return nil
        } catch {
            return error.code
        }
    }
}

private func ts(_ text: String) -> PostgresTimestamp { PostgresTimestamp(text)! }
private func day(_ text: String) -> PostgresDate { PostgresDate(text)! }

private let created = ts("2025-03-01 09:00:00")
private let now = ts("2025-03-04 10:30:00.250000")

private func customer(_ id: String, currency: String? = "USD", archived: PostgresTimestamp? = nil) -> CanonicalRow {
    CanonicalRow(
        entity: .customer,
        values: [
            "customer_id": .text(id), "email": .text("billing@\(id).example"), "name": .text("Customer \(id)"),
            "currency": currency.map { .text($0) } ?? .null, "created_at": .timestamp(created),
            "updated_at": .timestamp(created), "archived_at": archived.map { .timestamp($0) } ?? .null,
        ],
        attributes: ["balance": "0.00", "credit_balance": "0"])
}

private func plan(_ id: String, currency: String = "USD") -> CanonicalRow {
    CanonicalRow(
        entity: .plan,
        values: [
            "plan_id": .text(id), "code": .text("team_monthly"), "name": .text("Team"), "amount": .amount(1900),
            "currency": .text(currency), "interval": .text("month"), "trial_days": .integer(0), "archived": .boolean(false),
            "created_at": .timestamp(created),
        ])
}

private func subscription(_ id: String, customer: String, plan: String, status: String = "active") -> CanonicalRow {
    CanonicalRow(
        entity: .subscription,
        values: [
            "subscription_id": .text(id), "customer_id": .text(customer), "plan_id": .text(plan), "status": .text(status),
            "quantity": .integer(2), "started_at": .timestamp(created), "current_period_start": .timestamp(created),
            "current_period_end": .timestamp(ts("2025-04-01 09:00:00")), "cancel_at_period_end": .boolean(false),
            "created_at": .timestamp(created), "updated_at": .timestamp(created),
        ])
}

private func invoice(
    _ id: String, customer: String, status: String = "draft", currency: String = "USD", total: Int64 = 5000, paid: Int64 = 0,
    number: String? = nil
) -> CanonicalRow {
    CanonicalRow(
        entity: .invoice,
        values: [
            "invoice_id": .text(id), "customer_id": .text(customer), "subscription_id": .null,
            "number": number.map { .text($0) } ?? .null, "status": .text(status), "currency": .text(currency),
            "subtotal": .amount(total), "discount": .amount(0), "tax": .amount(0), "total": .amount(total),
            "amount_paid": .amount(paid), "amount_due": .amount(status == "draft" || status == "open" ? total - paid : 0),
            "finalized_at": status == "draft" ? .null : .timestamp(created),
            "issued_on": status == "draft" ? .null : .date(created.utcDate),
            "due_on": status == "draft" ? .null : .date(created.utcDate), "created_at": .timestamp(created),
            "updated_at": .timestamp(created),
        ],
        attributes: ["tax_rate": "0.19"])
}

private func line(_ id: String, invoice: String, amount: Int64) -> CanonicalRow {
    CanonicalRow(
        entity: .invoiceLine,
        values: [
            "invoice_line_id": .text(id), "invoice_id": .text(invoice), "kind": .text("one_off"), "description": .text("Setup fee"),
            "quantity": .decimal("1"), "unit_amount": .decimal("50.0000"), "amount": .amount(amount), "currency": .text("USD"),
            "proration": .boolean(false), "created_at": .timestamp(created),
        ])
}

private func creditNote(_ id: String, customer: String, invoice: String, total: Int64, remaining: Int64, status: String = "issued", currency: String = "USD")
    -> CanonicalRow
{
    CanonicalRow(
        entity: .creditNote,
        values: [
            "credit_note_id": .text(id), "customer_id": .text(customer), "invoice_id": .text(invoice), "number": .text("CN-\(id)"),
            "status": .text(status), "total": .amount(total), "balance_remaining": .amount(remaining), "currency": .text(currency),
            "reason": .text("service_outage"), "created_at": .timestamp(created),
        ])
}

private func balanceTransaction(
    _ id: String, customer: String, amount: Int64, type: String, invoice: String? = nil, note: String? = nil, currency: String = "USD"
) -> CanonicalRow {
    CanonicalRow(
        entity: .balanceTransaction,
        values: [
            "balance_transaction_id": .text(id), "customer_id": .text(customer), "amount": .amount(amount), "currency": .text(currency),
            "type": .text(type), "invoice_id": invoice.map { .text($0) } ?? .null, "credit_note_id": note.map { .text($0) } ?? .null,
            "description": .text(type), "created_at": .timestamp(created),
        ])
}

private func payment(_ id: String, invoice: String, customer: String, status: String) -> CanonicalRow {
    CanonicalRow(
        entity: .payment,
        values: [
            "payment_id": .text(id), "customer_id": .text(customer), "invoice_id": .text(invoice), "status": .text(status),
            "amount": .amount(1000), "currency": .text("USD"), "created_at": .timestamp(created),
        ])
}

private func lineInput(
    _ id: String, _ kind: String, quantity: String? = "1", unit: String? = nil, amount: Int64? = nil, description: String? = nil
) -> InvoiceLineInput {
    InvoiceLineInput(
        invoiceLineID: id, kind: kind, description: description, quantity: quantity, unitAmount: unit, amount: amount, periodStart: nil,
        periodEnd: nil)
}

// MARK: - Arithmetic

@Suite("Invoice arithmetic: exact amounts, PostgreSQL's rounding, numbering, credit")
struct InvoiceArithmeticTests {
    private func amount(_ quantity: String, _ unit: String, _ exponent: Int) throws -> Int64 {
        try InvoiceArithmetic.lineAmount(quantity: ExactDecimal(quantity)!, unitAmount: ExactDecimal(unit)!, exponent: exponent)
    }

    private func inexact(_ quantity: String, _ unit: String, _ exponent: Int) -> CommandRejection.Code? {
        do {
            let minor = try amount(quantity, unit, exponent)
            Issue.record("\(quantity) × \(unit) gave \(minor)")
            return nil
        } catch let error as CommandRejection {
            return error.code
        } catch {
            Issue.record("unexpected \(error)")
            return nil
        }
    }

    @Test func aLineAmountIsQuantityTimesUnitPriceExactlyInTheCurrencysMinorUnits() throws {
        #expect(try amount("2", "19.0000", 2) == 3800)
        #expect(try amount("400", "0.0125", 2) == 500)
        #expect(try amount("2.5", "10.00", 2) == 2500)
        // JPY has no minor unit: yen are whole.
        #expect(try amount("3", "4500", 0) == 13_500)
        #expect(try amount("5", "2.0000", 0) == 10)
        // KWD has three decimals (fils).
        #expect(try amount("3", "14.875", 3) == 44_625)
        #expect(try amount("0.5", "0.002", 3) == 1)
        #expect(try amount("1", "-9.8000", 2) == -980)
    }

    @Test func aProductThatIsNotAWholeNumberOfMinorUnitsIsRejectedNeverRounded() {
        // D17's line: 333 × 0.0125 = 4.1625 USD.
        #expect(inexact("333", "0.0125", 2) == .invalidAmount)
        #expect(inexact("2.5", "1", 0) == .invalidAmount)
        #expect(inexact("1", "0.0004", 3) == .invalidAmount)
        #expect(inexact("9223372036854775807", "100", 2) == .invalidAmount)
    }

    @Test func theDiscountIsThePercentOfTheSubtotalRoundedHalfAwayFromZero() {
        #expect(InvoiceArithmetic.discount(subtotal: 4999, percent: 20) == 1000)  // 999.8
        #expect(InvoiceArithmetic.discount(subtotal: 12, percent: 20) == 2)  // 2.4
        #expect(InvoiceArithmetic.discount(subtotal: 13, percent: 20) == 3)  // 2.6
        #expect(InvoiceArithmetic.discount(subtotal: 5, percent: 10) == 1)  // 0.5 away from zero
        #expect(InvoiceArithmetic.discount(subtotal: -5, percent: 10) == -1)  // −0.5 away from zero
        #expect(InvoiceArithmetic.discount(subtotal: 0, percent: 20) == 0)
    }

    @Test func taxIsRoundedHalfAwayFromZeroAsPostgreSQLsRoundOfNumeric() throws {
        let rate = try InvoiceArithmetic.taxRate("0.19")
        #expect(try InvoiceArithmetic.tax(base: 1050, rate: rate) == 200)  // 199.5 → 200
        #expect(try InvoiceArithmetic.tax(base: -1050, rate: rate) == -200)  // −199.5 → −200
        #expect(try InvoiceArithmetic.tax(base: 1049, rate: rate) == 199)  // 199.31
        #expect(try InvoiceArithmetic.tax(base: 3440, rate: rate) == 654)  // 653.6
        // JPY: round(999 × 0.1, 0) = 100; KWD: round(14.875 × 0.08875, 3) = 1.320 (1320.15625 fils).
        #expect(try InvoiceArithmetic.tax(base: 999, rate: try InvoiceArithmetic.taxRate("0.1")) == 100)
        #expect(try InvoiceArithmetic.tax(base: 14_875, rate: try InvoiceArithmetic.taxRate("0.08875")) == 1320)
        #expect(try InvoiceArithmetic.tax(base: 12_345, rate: try InvoiceArithmetic.taxRate("0")) == 0)
    }

    @Test func theTaxRateTextBecomesWhatPostgreSQLsFloat8ToNumericGives() throws {
        // SELECT '<text>'::float8::numeric: at most 15 significant digits, no trailing zeros.
        let cases: [(String, String)] = [
            ("0.19", "0.19"), ("0.190", "0.19"), ("0.08875", "0.08875"), ("0.2", "0.2"), ("0", "0"), ("1e-05", "0.00001"),
            ("8.875e-02", "0.08875"), ("0.30000000000000004", "0.3"), ("0.123456789012345678", "0.123456789012346"),
            ("20", "20"), ("1.5e+2", "150"),
        ]
        for (text, numeric) in cases {
            #expect(try InvoiceArithmetic.taxRate(text).description == numeric, "\(text)")
        }
        for bad in ["NaN", "Infinity", "-0.1", "abc", "", "0.1.2", " 0.1"] {
            do throws(CommandRejection) {
                let rate = try InvoiceArithmetic.taxRate(bad)
                Issue.record("\(bad) became \(rate)")
            } catch {
                #expect(error.code == .invalidInput, "\(bad)")
            }
        }
    }

    @Test func theNextInvoiceNumberContinuesTheCustomersNumbering() {
        #expect(InvoiceArithmetic.nextInvoiceNumber(customerID: "42", numbers: []) == "LL0042-0001")
        #expect(InvoiceArithmetic.nextInvoiceNumber(customerID: "12345", numbers: []) == "LL12345-0001")
        #expect(InvoiceArithmetic.nextInvoiceNumber(customerID: "13", numbers: ["LL0013-0007", "LL0013-0002"]) == "LL0013-0008")
        // The prefix is the one of the highest sequence (a renumbered customer keeps its new one).
        #expect(InvoiceArithmetic.nextInvoiceNumber(customerID: "13", numbers: ["LL0099-0003", "LL0013-0001"]) == "LL0099-0004")
        // On equal sequences the later invoice's prefix wins.
        #expect(InvoiceArithmetic.nextInvoiceNumber(customerID: "13", numbers: ["LLA-0005", "LLB-0005"]) == "LLB-0006")
        // Credit-note numbers and foreign forms do not count.
        #expect(
            InvoiceArithmetic.nextInvoiceNumber(customerID: "13", numbers: ["LL0013-CN-0009", "INV-0042", "LL0013-x", "LL0013-0004"])
                == "LL0013-0005")
        #expect(InvoiceArithmetic.nextInvoiceNumber(customerID: "7", numbers: ["LL0007-9999"]) == "LL0007-10000")
    }

    @Test func creditPaysFromCreditNotesOldestFirstThenGoodwill() {
        typealias Use = InvoiceArithmetic.CreditUse
        #expect(
            InvoiceArithmetic.creditUses(due: 1000, unapplied: 1500, notes: [("5", 400), ("9", 800)]) == [
                Use(creditNoteID: "5", amount: 400, remainingAfter: 0), Use(creditNoteID: "9", amount: 600, remainingAfter: 200),
            ])
        #expect(
            InvoiceArithmetic.creditUses(due: 1000, unapplied: 700, notes: [("5", 400)]) == [
                Use(creditNoteID: "5", amount: 400, remainingAfter: 0), Use(creditNoteID: nil, amount: 300, remainingAfter: 0),
            ])
        #expect(InvoiceArithmetic.creditUses(due: 0, unapplied: 700, notes: [("5", 400)]) == [])
        #expect(InvoiceArithmetic.creditUses(due: -100, unapplied: 700, notes: []) == [])
        #expect(InvoiceArithmetic.creditUses(due: 1000, unapplied: 0, notes: []) == [])
    }

    @Test func keysSortAsTheLegacyOrderByIdDoes() {
        #expect(["10", "9", "100", "x"].sorted(by: InvoiceArithmetic.keyOrder) == ["9", "10", "100", "x"])
    }
}

// MARK: - Commands

@Suite("Invoice commands: the legacy application's rules in the canonical model")
struct InvoiceRulesTests {
    private let base = Ledger(rows: [customer("12"), plan("3"), subscription("40", customer: "12", plan: "3")])

    private func draft(
        invoice: String = "500", customer: String = "12", subscription: String? = "40", lines: [InvoiceLineInput]? = nil,
        discount: Int64? = nil, taxRate: String? = nil
    ) -> BillingCommand {
        .draftInvoice(
            DraftInvoice(
                invoiceID: invoice, customerID: customer, subscriptionID: subscription,
                periodStart: subscription == nil ? nil : created, periodEnd: subscription == nil ? nil : ts("2025-04-01 09:00:00"),
                lines: lines ?? [lineInput("900", "subscription", quantity: "2", unit: "19.0000", description: "2 × Team")],
                discountLineID: discount == nil ? nil : "902", discountPercent: discount,
                discountDescription: discount == nil ? nil : "Coupon SAVE20 (20% off)", taxLineID: taxRate == nil ? nil : "903",
                taxRate: taxRate, at: now))
    }

    // MARK: draft_invoice

    @Test func aDraftHasItsLinesADiscountLineAndATaxLineAndTheirSums() throws {
        let command = draft(
            lines: [
                lineInput("900", "subscription", quantity: "2", unit: "19.0000", description: "2 × Team"),
                lineInput("901", "usage", quantity: "400", unit: "0.0125", description: "API calls"),
            ], discount: 20, taxRate: "0.19")
        let decision = try base.decide(command)
        let period: [String: CanonicalValue] = [
            "period_start": .timestamp(created), "period_end": .timestamp(ts("2025-04-01 09:00:00")),
        ]
        // subtotal 38.00 + 5.00 = 43.00; discount round(43.00 × 20 %) = 8.60; tax round(34.40 × 0.19, 2) = 6.54.
        let expectedInvoice = CanonicalRow(
            entity: .invoice,
            values: [
                "invoice_id": .text("500"), "customer_id": .text("12"), "subscription_id": .text("40"), "number": .null,
                "status": .text("draft"), "currency": .text("USD"), "subtotal": .amount(4300), "discount": .amount(860),
                "tax": .amount(654), "total": .amount(4094), "amount_paid": .amount(0), "amount_due": .amount(4094),
                "issued_on": .null, "due_on": .null, "finalized_at": .null, "paid_at": .null, "voided_at": .null,
                "created_at": .timestamp(now), "updated_at": .timestamp(now),
            ].merging(period) { $1 },
            attributes: ["tax_rate": "0.19"])
        func expectedLine(_ id: String, _ kind: String, _ description: String, _ quantity: String, _ unit: String, _ amount: Int64)
            -> CanonicalRow
        {
            CanonicalRow(
                entity: .invoiceLine,
                values: [
                    "invoice_line_id": .text(id), "invoice_id": .text("500"), "kind": .text(kind), "description": .text(description),
                    "quantity": .decimal(quantity), "unit_amount": .decimal(unit), "amount": .amount(amount), "currency": .text("USD"),
                    "proration": .boolean(false), "created_at": .timestamp(now),
                ].merging(period) { $1 })
        }
        #expect(
            decision.rows == [
                expectedInvoice,
                expectedLine("900", "subscription", "2 × Team", "2", "19.0000", 3800),
                expectedLine("901", "usage", "API calls", "400", "0.0125", 500),
                expectedLine("902", "discount", "Coupon SAVE20 (20% off)", "1", "-8.6000", -860),
                expectedLine("903", "tax", "Tax", "1", "6.5400", 654),
            ])
        #expect(decision.deleted.isEmpty)
        #expect(decision.summary == "draft invoice 500 of 40.94 USD with 4 lines for customer 12 (subscription 40)")
    }

    @Test func aOneOffDraftInYenHasNoPeriodAndWholeYen() throws {
        let ledger = Ledger(rows: [customer("77", currency: "JPY")])
        let decision = try ledger.decide(
            draft(
                invoice: "501", customer: "77", subscription: nil,
                lines: [lineInput("910", "one_off", quantity: "3", unit: "4500", description: "Extra seats (3)")], taxRate: "0.1"))
        #expect(decision.rows.count == 3)
        let invoice = try #require(decision.rows.first)
        #expect(invoice["subtotal"] == .amount(13_500))
        #expect(invoice["tax"] == .amount(1350))
        #expect(invoice["total"] == .amount(14_850))
        #expect(invoice["currency"] == .text("JPY"))
        #expect(invoice["subscription_id"] == .null)
        #expect(invoice["period_start"] == .null)
        #expect(decision.rows[1]["unit_amount"] == .decimal("4500.0000"))
        #expect(decision.rows[1]["period_end"] == .null)
        #expect(decision.rows[2]["unit_amount"] == .decimal("1350.0000"))
        #expect(decision.rows[2]["currency"] == .text("JPY"))
    }

    @Test func aDraftInDinarsKeepsThreeDecimalsAndRoundsTheTaxHalfAwayFromZero() throws {
        let ledger = Ledger(rows: [customer("78", currency: "KWD")])
        let decision = try ledger.decide(
            draft(
                invoice: "502", customer: "78", subscription: nil,
                lines: [lineInput("920", "one_off", quantity: "1", unit: "14.875", description: "Setup fee")], taxRate: "0.08875"))
        #expect(decision.rows.map { $0["amount"] } == [.null, .amount(14_875), .amount(1320)])
        #expect(decision.rows[0]["total"] == .amount(16_195))
        #expect(decision.rows[1]["unit_amount"] == .decimal("14.8750"))
        #expect(decision.rows[2]["unit_amount"] == .decimal("1.3200"))
    }

    @Test func aZeroTaxWritesNoTaxLineAndNoRateNoTax() throws {
        let zero = try base.decide(draft(taxRate: "0"))
        #expect(zero.rows.map(\.entity) == [.invoice, .invoiceLine])
        #expect(zero.rows[0]["tax"] == .amount(0))
        let none = try base.decide(draft())
        #expect(none.rows.count == 2)
        #expect(none.rows[0]["total"] == .amount(3800))
        let noRate: [String: String?] = ["tax_rate": nil]
        #expect(none.rows[0].attributes == noRate)
    }

    @Test func aProrationLineStatesItsAmount() throws {
        let decision = try base.decide(
            draft(lines: [
                lineInput("900", "subscription", quantity: "1", unit: "49.0000"),
                lineInput("901", "proration", quantity: "1", unit: nil, amount: -3003, description: "Unused time"),
            ]))
        #expect(decision.rows[0]["subtotal"] == .amount(1897))
        #expect(decision.rows[2]["proration"] == .boolean(true))
        #expect(decision.rows[2]["unit_amount"] == .null)
        #expect(decision.rows[2]["amount"] == .amount(-3003))
    }

    @Test func draftRejections() {
        var existing = base
        existing.rows.append(invoice("500", customer: "12"))
        #expect(existing.rejection(draft()) == .alreadyExists)
        var discarded = base
        discarded.ended.insert("invoice-500")
        #expect(discarded.rejection(draft()) == .alreadyExists)
        var lineExists = base
        lineExists.rows.append(line("900", invoice: "499", amount: 5000))
        #expect(lineExists.rejection(draft()) == .alreadyExists)
        #expect(base.rejection(draft(customer: "13")) == .notFound)
        #expect(
            Ledger(rows: [customer("12", archived: created), plan("3"), subscription("40", customer: "12", plan: "3")])
                .rejection(draft()) == .invalidState)
        #expect(Ledger(rows: [customer("12", currency: nil)]).rejection(draft(subscription: nil)) == .invalidState)
        #expect(base.rejection(draft(subscription: "41")) == .notFound)
        #expect(
            Ledger(rows: [customer("12"), plan("3"), subscription("40", customer: "12", plan: "3", status: "canceled")])
                .rejection(draft()) == .invalidState)
        #expect(
            Ledger(rows: [customer("12"), customer("13"), plan("3"), subscription("40", customer: "13", plan: "3")])
                .rejection(draft()) == .invalidInput)
        // Currencies never mix: the plan's currency is the customer's.
        #expect(
            Ledger(rows: [customer("12"), plan("3", currency: "EUR"), subscription("40", customer: "12", plan: "3")])
                .rejection(draft()) == .currencyMismatch)
        #expect(base.rejection(draft(lines: [])) == .invalidInput)
        #expect(base.rejection(draft(lines: [lineInput("900", "usage", quantity: "333", unit: "0.0125")])) == .invalidAmount)
        #expect(base.rejection(draft(lines: [lineInput("900", "setup", unit: "1.00")])) == .invalidInput)
        #expect(base.rejection(draft(lines: [lineInput("900", "one_off", quantity: "0", unit: "1.00")])) == .invalidInput)
        #expect(base.rejection(draft(lines: [lineInput("900", "one_off", quantity: "1,5", unit: "1.00")])) == .invalidInput)
        #expect(base.rejection(draft(lines: [lineInput("900", "one_off", unit: "1e2")])) == .invalidInput)
        #expect(base.rejection(draft(lines: [lineInput("900", "one_off", unit: nil)])) == .invalidInput)
        #expect(base.rejection(draft(lines: [lineInput("900", "one_off", unit: "1.00", amount: 101)])) == .invalidAmount)
        #expect(base.rejection(draft(lines: [lineInput("900", "proration", unit: nil)])) == .invalidInput)
        #expect(base.rejection(draft(lines: [lineInput("900", "discount", unit: nil, amount: 100)])) == .invalidAmount)
        #expect(
            base.rejection(draft(lines: [lineInput("900", "one_off", unit: "1.00"), lineInput("900", "one_off", unit: "2.00")]))
                == .invalidInput)
        #expect(base.rejection(draft(discount: 120)) == .invalidInput)
        #expect(base.rejection(draft(taxRate: "-0.2")) == .invalidInput)
        #expect(
            base.rejection(draft(lines: [lineInput("900", "one_off", unit: "10.00"), lineInput("901", "tax", unit: nil, amount: 190)], taxRate: "0.19"))
                == .invalidInput)
        // A tax that is not 0 needs its line's id.
        #expect(
            base.rejection(
                .draftInvoice(
                    DraftInvoice(
                        invoiceID: "500", customerID: "12", subscriptionID: nil, periodStart: nil, periodEnd: nil,
                        lines: [lineInput("900", "one_off", unit: "10.00")], discountLineID: nil, discountPercent: nil,
                        taxLineID: nil, taxRate: "0.19", at: now))) == .invalidInput)
        #expect(
            base.rejection(
                .draftInvoice(
                    DraftInvoice(
                        invoiceID: "500", customerID: "12", subscriptionID: nil, periodStart: now, periodEnd: created,
                        lines: [lineInput("900", "one_off", unit: "10.00")], discountLineID: nil, discountPercent: nil,
                        taxLineID: nil, taxRate: nil, at: now))) == .invalidInput)
    }

    // MARK: finalize_invoice

    private func finalize(_ id: String = "500", dueOn: PostgresDate? = nil, ids: [String]? = ["700", "701", "702"]) -> BillingCommand {
        .finalizeInvoice(FinalizeInvoice(invoiceID: id, dueOn: dueOn, creditApplicationIDs: ids, at: now))
    }

    @Test func finalizingNumbersTheInvoiceAndAppliesCreditNotesOldestFirstThenGoodwill() throws {
        let note7 = creditNote("7", customer: "12", invoice: "400", total: 2000, remaining: 1000)
        let ledger = Ledger(rows: [
            customer("12"),
            invoice("400", customer: "12", status: "paid", total: 2000, paid: 2000, number: "LL0012-0003"),
            invoice("401", customer: "12", status: "void", total: 1000, number: "LL0012-0004"),
            invoice("500", customer: "12"),
            note7,
            creditNote("8", customer: "12", invoice: "400", total: 500, remaining: 0),
            creditNote("6", customer: "12", invoice: "400", total: 300, remaining: 300, status: "void"),
            balanceTransaction("60", customer: "12", amount: -2000, type: "credit_note", note: "7"),
            balanceTransaction("61", customer: "12", amount: 1000, type: "applied_to_invoice", invoice: "399", note: "7"),
            balanceTransaction("62", customer: "12", amount: -1500, type: "adjustment"),
        ])
        let decision = try ledger.decide(finalize())
        // Unapplied credit 2500: note 7's 1000 first, then 1500 of goodwill; 25.00 still due.
        var expectedInvoice = invoice("500", customer: "12")
        expectedInvoice.values.merge(
            [
                "status": .text("open"), "number": .text("LL0012-0005"), "finalized_at": .timestamp(now),
                "issued_on": .date(day("2025-03-04")), "due_on": .date(day("2025-03-04")), "paid_at": .null,
                "amount_paid": .amount(2500), "amount_due": .amount(2500), "updated_at": .timestamp(now),
            ]) { $1 }
        var expectedNote = note7
        expectedNote.values["balance_remaining"] = .amount(0)
        func application(_ id: String, _ amount: Int64, _ note: String?) -> CanonicalRow {
            CanonicalRow(
                entity: .balanceTransaction,
                values: [
                    "balance_transaction_id": .text(id), "customer_id": .text("12"), "amount": .amount(amount), "currency": .text("USD"),
                    "type": .text("applied_to_invoice"), "invoice_id": .text("500"), "credit_note_id": note.map { .text($0) } ?? .null,
                    "description": .text("Applied to invoice LL0012-0005"), "created_at": .timestamp(now),
                ])
        }
        #expect(decision.rows == [expectedInvoice, application("700", 1000, "7"), expectedNote, application("701", 1500, nil)])
        #expect(
            decision.summary == "invoice 500 of 50.00 USD finalized as LL0012-0005 for customer 12, 25.00 USD of credit applied")
    }

    @Test func anInvoiceTheCreditCoversIsPaidAtOnceAndSoIsAZeroTotal() throws {
        let covered = Ledger(rows: [
            customer("12"), invoice("500", customer: "12", total: 800),
            balanceTransaction("62", customer: "12", amount: -1500, type: "adjustment"),
        ])
        let paid = try covered.decide(finalize(dueOn: day("2025-04-03")))
        #expect(paid.rows.count == 2)
        #expect(paid.rows[0]["status"] == .text("paid"))
        #expect(paid.rows[0]["paid_at"] == .timestamp(now))
        #expect(paid.rows[0]["amount_paid"] == .amount(800))
        #expect(paid.rows[0]["amount_due"] == .amount(0))
        #expect(paid.rows[0]["due_on"] == .date(day("2025-04-03")))
        #expect(paid.rows[0]["number"] == .text("LL0012-0001"))
        #expect(paid.rows[1]["amount"] == .amount(800))
        #expect(paid.rows[1]["credit_note_id"] == .null)

        let zero = try Ledger(rows: [customer("12"), invoice("500", customer: "12", total: 0)]).decide(finalize(ids: nil))
        #expect(zero.rows.count == 1)
        #expect(zero.rows[0]["status"] == .text("paid"))
        #expect(zero.rows[0]["paid_at"] == .timestamp(now))
        #expect(zero.rows[0]["amount_due"] == .amount(0))
        #expect(zero.summary.hasSuffix("paid at once (nothing to pay)"))

        let noCredit = try Ledger(rows: [customer("12"), invoice("500", customer: "12", total: 800)]).decide(finalize(ids: nil))
        #expect(noCredit.rows.count == 1)
        #expect(noCredit.rows[0]["status"] == .text("open"))
        #expect(noCredit.rows[0]["amount_due"] == .amount(800))
        #expect(noCredit.rows[0]["paid_at"] == .null)
    }

    @Test func finalizeRejections() {
        let ledger = Ledger(rows: [
            customer("12"), invoice("500", customer: "12"), invoice("501", customer: "12", status: "open"),
            balanceTransaction("62", customer: "12", amount: -1500, type: "adjustment"),
        ])
        #expect(ledger.rejection(finalize("499")) == .notFound)
        #expect(ledger.rejection(finalize("501")) == .invalidState)
        #expect(ledger.rejection(finalize(ids: nil)) == .invalidInput)
        #expect(ledger.rejection(finalize(ids: ["62"])) == .alreadyExists)
        #expect(ledger.rejection(finalize(dueOn: day("2025-03-03"))) == .invalidInput)
        #expect(
            Ledger(rows: [customer("12", archived: created), invoice("500", customer: "12")]).rejection(finalize()) == .invalidState)
        #expect(Ledger(rows: [customer("12", currency: "EUR"), invoice("500", customer: "12")]).rejection(finalize()) == .currencyMismatch)
        #expect(
            Ledger(rows: [
                customer("12"), invoice("500", customer: "12"),
                creditNote("7", customer: "12", invoice: "400", total: 2000, remaining: 2000, currency: "EUR"),
                balanceTransaction("60", customer: "12", amount: -2000, type: "credit_note", note: "7"),
            ]).rejection(finalize()) == .currencyMismatch)
        #expect(
            Ledger(rows: [customer("12"), invoice("500", customer: "12"), balanceTransaction("62", customer: "12", amount: -1500, type: "adjustment", currency: "EUR")])
                .rejection(finalize()) == .currencyMismatch)
        #expect(Ledger(rows: [invoice("500", customer: "12")]).rejection(finalize()) == .notFound)
    }

    // MARK: discard_draft

    @Test func discardingADraftEndsTheInvoiceAndItsLines() throws {
        let ledger = Ledger(rows: [
            customer("12"), invoice("500", customer: "12"), line("901", invoice: "500", amount: 3000),
            line("900", invoice: "500", amount: 2000), line("905", invoice: "501", amount: 1),
        ])
        let decision = try ledger.decide(.discardDraft(DiscardDraft(invoiceID: "500", at: now)))
        #expect(decision.rows.isEmpty)
        #expect(
            decision.deleted == [
                .init(entity: .invoice, key: "500"), .init(entity: .invoiceLine, key: "900"), .init(entity: .invoiceLine, key: "901"),
            ])
        #expect(decision.summary == "draft invoice 500 of customer 12 discarded with its 2 lines")
    }

    @Test func aFinalizedInvoicesLinesAreFrozen() {
        let ledger = Ledger(rows: [
            customer("12"), invoice("500", customer: "12", status: "open", number: "LL0012-0001"), line("900", invoice: "500", amount: 5000),
        ])
        #expect(ledger.rejection(.discardDraft(DiscardDraft(invoiceID: "500", at: now))) == .invalidState)
        #expect(ledger.rejection(.discardDraft(DiscardDraft(invoiceID: "499", at: now))) == .notFound)
        #expect(ledger.rejection(finalize()) == .invalidState)
        // A draft's new lines are a new draft: an existing invoice is never drafted again.
        #expect(ledger.rejection(.draftInvoice(DraftInvoice(
            invoiceID: "500", customerID: "12", subscriptionID: nil, periodStart: nil, periodEnd: nil,
            lines: [lineInput("910", "one_off", unit: "1.00")], discountLineID: nil, discountPercent: nil, taxLineID: nil,
            taxRate: nil, at: now))) == .alreadyExists)
        #expect(
            Ledger(rows: [customer("12", archived: created), invoice("500", customer: "12")])
                .rejection(.discardDraft(DiscardDraft(invoiceID: "500", at: now))) == .invalidState)
    }

    // MARK: void_invoice

    private func void(_ id: String = "500") -> BillingCommand { .voidInvoice(VoidInvoice(invoiceID: id, at: now)) }

    @Test func voidingAnOpenInvoiceWithNothingPaidEndsWhatIsDue() throws {
        let open = invoice("500", customer: "12", status: "open", number: "LL0012-0001")
        let ledger = Ledger(rows: [
            customer("12"), open, payment("800", invoice: "500", customer: "12", status: "failed"),
            balanceTransaction("62", customer: "12", amount: -1500, type: "adjustment"),
        ])
        let decision = try ledger.decide(void())
        var expected = open
        expected.values.merge(
            ["status": .text("void"), "amount_due": .amount(0), "voided_at": .timestamp(now), "updated_at": .timestamp(now)]) { $1 }
        #expect(decision.rows == [expected])
        #expect(decision.summary == "invoice 500 of customer 12 voided (50.00 USD no longer due)")
    }

    @Test func voidRejections() {
        let open = invoice("500", customer: "12", status: "open", number: "LL0012-0001")
        #expect(Ledger(rows: [customer("12")]).rejection(void()) == .notFound)
        #expect(Ledger(rows: [customer("12"), invoice("500", customer: "12")]).rejection(void()) == .invalidState)
        #expect(
            Ledger(rows: [customer("12"), invoice("500", customer: "12", status: "paid", total: 5000, paid: 5000)]).rejection(void())
                == .invalidState)
        #expect(
            Ledger(rows: [customer("12"), invoice("500", customer: "12", status: "open", total: 5000, paid: 1000)]).rejection(void())
                == .invalidState)
        #expect(
            Ledger(rows: [customer("12"), open, payment("800", invoice: "500", customer: "12", status: "succeeded")]).rejection(void())
                == .invalidState)
        #expect(
            Ledger(rows: [customer("12"), open, payment("800", invoice: "500", customer: "12", status: "pending")]).rejection(void())
                == .invalidState)
        #expect(
            Ledger(rows: [customer("12"), open, creditNote("7", customer: "12", invoice: "500", total: 100, remaining: 0)])
                .rejection(void()) == .invalidState)
        #expect(
            Ledger(rows: [customer("12"), open, balanceTransaction("61", customer: "12", amount: 0, type: "adjustment", invoice: "500")])
                .rejection(void()) == .invalidState)
        #expect(Ledger(rows: [customer("12", archived: created), open]).rejection(void()) == .invalidState)
    }

    // MARK: mark_uncollectible

    private func writeOff(_ id: String = "500") -> BillingCommand { .markUncollectible(MarkUncollectible(invoiceID: id, at: now)) }

    @Test func anUncollectibleInvoiceIsStillOwedAndNoTimeIsRecorded() throws {
        let open = invoice("500", customer: "12", status: "open", total: 5000, paid: 1000, number: "LL0012-0001")
        let decision = try Ledger(rows: [customer("12"), open, payment("800", invoice: "500", customer: "12", status: "succeeded")])
            .decide(writeOff())
        var expected = open
        expected.values["status"] = .text("uncollectible")
        expected.values["updated_at"] = .timestamp(now)
        #expect(decision.rows == [expected])
        #expect(decision.rows[0]["amount_due"] == .amount(4000))
        #expect(decision.rows[0]["marked_uncollectible_at"] == .null)
        #expect(decision.summary == "invoice 500 of customer 12 marked uncollectible with 40.00 USD due")
    }

    @Test func markUncollectibleRejections() {
        let open = invoice("500", customer: "12", status: "open", number: "LL0012-0001")
        #expect(Ledger(rows: [customer("12")]).rejection(writeOff()) == .notFound)
        #expect(Ledger(rows: [customer("12"), invoice("500", customer: "12")]).rejection(writeOff()) == .invalidState)
        #expect(
            Ledger(rows: [customer("12"), invoice("500", customer: "12", status: "uncollectible", number: "LL0012-0001")])
                .rejection(writeOff()) == .invalidState)
        #expect(
            Ledger(rows: [customer("12"), open, payment("800", invoice: "500", customer: "12", status: "pending")]).rejection(writeOff())
                == .invalidState)
        #expect(Ledger(rows: [customer("12", archived: created), open]).rejection(writeOff()) == .invalidState)
    }

    @Test func finalizeReadsTheInvoiceFirstThenItsCustomersNumberingAndCredit() {
        let command = finalize(ids: ["700"])
        #expect(command.requirements(given: CommandState()) == [.stream(.invoice, key: "500"), .stream(.balanceTransaction, key: "700")])
        let state = Ledger(rows: [customer("12"), invoice("500", customer: "12")]).state(for: command)
        #expect(
            command.requirements(given: state) == [
                .stream(.invoice, key: "500"), .stream(.balanceTransaction, key: "700"), .stream(.customer, key: "12"),
                .children(.invoice, column: "customer_id", value: "12"), .children(.creditNote, column: "customer_id", value: "12"),
                .children(.balanceTransaction, column: "customer_id", value: "12"),
            ])
    }
}

// MARK: - Translation

@Suite("Invoice operations stated as commands")
struct InvoiceTranslationTests {
    private func entry(_ kind: OperationKind, _ keys: [String: String]) -> JournalEntry {
        JournalEntry(op: 1, kind: kind, at: now.iso8601, keys: keys, effects: [], summary: "")
    }

    private func row(_ row: CanonicalRow) -> (LegacyRows.Key, CanonicalRow) { (LegacyRows.Key(row.entity, row.key), row) }

    @Test func aRenewedSubscriptionsDraftIsARenewalThenTheDraftWithItsCouponAndRate() throws {
        let before = subscription("40", customer: "12", plan: "3")
        var renewed = before
        renewed.values["current_period_start"] = .timestamp(ts("2025-04-01 09:00:00"))
        renewed.values["current_period_end"] = .timestamp(ts("2025-05-01 09:00:00"))
        renewed.values["updated_at"] = .timestamp(now)
        var draft = invoice("500", customer: "12")
        draft.values["subscription_id"] = .text("40")
        draft.values["subtotal"] = .amount(4300)
        draft.values["period_start"] = renewed["current_period_start"]
        draft.values["period_end"] = renewed["current_period_end"]
        func legacyLine(_ id: String, _ kind: String, _ description: String, _ quantity: String, _ unit: String, _ amount: Int64)
            -> CanonicalRow
        {
            var line = line(id, invoice: "500", amount: amount)
            line.values["kind"] = .text(kind)
            line.values["description"] = .text(description)
            line.values["quantity"] = .decimal(quantity)
            line.values["unit_amount"] = .decimal(unit)
            line.values["period_start"] = renewed["current_period_start"]
            line.values["period_end"] = renewed["current_period_end"]
            return line
        }
        let legacy = LegacyRows(
            before: Dictionary(uniqueKeysWithValues: [row(before), row(customer("12"))]),
            after: Dictionary(uniqueKeysWithValues: [
                row(renewed), row(customer("12")), row(draft),
                row(legacyLine("1000", "subscription", "2 × Team", "2", "19.0000", 3800)),
                row(legacyLine("999", "usage", "API calls", "400", "0.0125", 500)),
                row(legacyLine("1001", "discount", "Coupon SAVE20 (20% off)", "1", "-8.6000", -860)),
                row(legacyLine("1002", "tax", "Tax", "1", "6.5400", 654)),
            ]))
        let commands = try CommandTranslation.commands(
            for: entry(.draftInvoice, ["customer": "12", "subscription": "40", "invoice": "500"]), legacy: legacy)
        let period = (ts("2025-04-01 09:00:00"), ts("2025-05-01 09:00:00"))
        #expect(
            commands == [
                .renewSubscription(RenewSubscription(subscriptionID: "40", periodStart: period.0, periodEnd: period.1, at: now)),
                .draftInvoice(
                    DraftInvoice(
                        invoiceID: "500", customerID: "12", subscriptionID: "40", periodStart: period.0, periodEnd: period.1,
                        lines: [
                            InvoiceLineInput(
                                invoiceLineID: "999", kind: "usage", description: "API calls", quantity: "400", unitAmount: "0.0125",
                                periodStart: period.0, periodEnd: period.1),
                            InvoiceLineInput(
                                invoiceLineID: "1000", kind: "subscription", description: "2 × Team", quantity: "2", unitAmount: "19.0000",
                                periodStart: period.0, periodEnd: period.1),
                        ],
                        discountLineID: "1001", discountPercent: 20, discountDescription: "Coupon SAVE20 (20% off)", taxLineID: "1002",
                        taxRate: "0.19", at: now)),
            ])
    }

    @Test func aSubscriptionSetToCancelIsEndedInsteadOfInvoiced() throws {
        var before = subscription("40", customer: "12", plan: "3")
        before.values["cancel_at_period_end"] = .boolean(true)
        var ended = before
        ended.values["status"] = .text("canceled")
        ended.values["ended_at"] = before["current_period_end"]
        let legacy = LegacyRows(
            before: Dictionary(uniqueKeysWithValues: [row(before)]), after: Dictionary(uniqueKeysWithValues: [row(ended)]))
        let commands = try CommandTranslation.commands(
            for: entry(.draftInvoice, ["customer": "12", "subscription": "40"]), legacy: legacy)
        #expect(commands == [.endSubscription(EndSubscription(subscriptionID: "40", at: now))])
    }

    @Test func aFinalizationCarriesItsDueDateAndTheCreditApplicationsInTheirOrder() throws {
        var finalized = invoice("500", customer: "12", status: "open", number: "LL0012-0001")
        finalized.values["due_on"] = .date(day("2025-04-03"))
        let legacy = LegacyRows(
            before: Dictionary(uniqueKeysWithValues: [row(invoice("500", customer: "12"))]),
            after: Dictionary(uniqueKeysWithValues: [
                row(finalized),
                row(balanceTransaction("10", customer: "12", amount: 300, type: "applied_to_invoice", invoice: "500")),
                row(balanceTransaction("9", customer: "12", amount: 700, type: "applied_to_invoice", invoice: "500", note: "7")),
            ]))
        let commands = try CommandTranslation.commands(for: entry(.finalizeInvoice, ["customer": "12", "invoice": "500"]), legacy: legacy)
        #expect(
            commands == [
                .finalizeInvoice(
                    FinalizeInvoice(invoiceID: "500", dueOn: day("2025-04-03"), creditApplicationIDs: ["9", "10"], at: now))
            ])
        let plain = try CommandTranslation.commands(
            for: entry(.finalizeInvoice, ["customer": "12", "invoice": "500"]),
            legacy: LegacyRows(after: Dictionary(uniqueKeysWithValues: [row(finalized)])))
        #expect(plain == [.finalizeInvoice(FinalizeInvoice(invoiceID: "500", dueOn: day("2025-04-03"), at: now))])
    }

    @Test func voidWriteOffAndDiscardNameTheInvoice() throws {
        let keys = ["customer": "12", "invoice": "500"]
        #expect(
            try CommandTranslation.commands(for: entry(.voidInvoice, keys), legacy: LegacyRows())
                == [.voidInvoice(VoidInvoice(invoiceID: "500", at: now))])
        #expect(
            try CommandTranslation.commands(for: entry(.markUncollectible, keys), legacy: LegacyRows())
                == [.markUncollectible(MarkUncollectible(invoiceID: "500", at: now))])
        #expect(
            try CommandTranslation.commands(for: entry(.discardDraft, keys), legacy: LegacyRows())
                == [.discardDraft(DiscardDraft(invoiceID: "500", at: now))])
        #expect(throws: CommandTranslationError.self) {
            try CommandTranslation.commands(for: entry(.voidInvoice, ["customer": "12"]), legacy: LegacyRows())
        }
    }
}
