import Billing
import Commands
import Postgres
import Testing

@Suite struct CreditRulesTests {
    typealias F = PaymentFixtures
    let paid = [F.customer(), F.invoice(status: "paid", paid: 16_200)]

    static func note(
        _ id: String, invoice: String = "4489", total: Int64, status: String = "issued",
        number: String = "LL0007-CN-01",
        currency: String = "USD"
    ) -> CanonicalRow {
        CanonicalRow(
            entity: .creditNote,
            values: [
                "credit_note_id": .text(id), "customer_id": .text("7"), "invoice_id": .text(invoice),
                "number": .text(number),
                "status": .text(status), "total": .amount(total),
                "balance_remaining": .amount(status == "void" ? 0 : total),
                "currency": .text(currency), "reason": .text("goodwill"), "created_at": .timestamp(F.finalizedAt),
            ])
    }

    static func issue(
        _ id: String = "310", invoice: String = "4489", amount: Int64 = 4_050, transaction: String = "9120",
        number: String? = nil,
        reason: String? = "service_outage", currency: String? = nil
    ) -> BillingCommand {
        .issueCreditNote(
            IssueCreditNote(
                creditNoteID: id, invoiceID: invoice, amount: amount, balanceTransactionID: transaction, number: number,
                reason: reason, currency: currency, at: F.at))
    }

    static func credit(
        _ id: String = "9121", customer: String = "7", amount: Int64 = 2_500, description: String? = nil,
        currency: String? = nil
    ) -> BillingCommand {
        .addCustomerCredit(
            AddCustomerCredit(
                balanceTransactionID: id, customerID: customer, amount: amount, description: description,
                currency: currency, at: F.at))
    }

    // MARK: Credit note: what it writes

    @Test func aCreditNoteAndItsCreditNoteTransactionOfMinusItsTotal() throws {
        let decision = try F.decide(Self.issue(), rows: paid)
        let note = CanonicalRow(
            entity: .creditNote,
            values: [
                "credit_note_id": .text("310"), "customer_id": .text("7"), "invoice_id": .text("4489"),
                "number": .text("LL0007-CN-01"),
                "status": .text("issued"), "total": .amount(4_050), "balance_remaining": .amount(4_050),
                "currency": .text("USD"),
                "reason": .text("service_outage"), "created_at": .timestamp(F.at), "voided_at": .null,
            ])
        let transaction = CanonicalRow(
            entity: .balanceTransaction,
            values: [
                "balance_transaction_id": .text("9120"), "customer_id": .text("7"), "amount": .amount(-4_050),
                "currency": .text("USD"),
                "type": .text("credit_note"), "invoice_id": .null, "credit_note_id": .text("310"),
                "description": .text("Credit note LL0007-CN-01"), "created_at": .timestamp(F.at),
            ])
        #expect(decision.rows == [note, transaction])
        #expect(
            decision.summary == "credit note 310 (LL0007-CN-01) of 40.50 USD on invoice 4489 credited to customer 7")
        #expect(
            Transitions.transitions(before: nil, after: note, syncedFromVersion: 0).map(\.type) == [.creditNoteIssued])
    }

    @Test func theNumberCountsEveryCreditNoteOfTheCustomer() throws {
        let earlier = (1...9).map {
            Self.note("30\($0)", invoice: "4000", total: 100, status: $0 == 3 ? "void" : "issued")
        }
        let decision = try F.decide(Self.issue(), rows: paid + earlier)
        #expect(decision.rows[0]["number"] == .text("LL0007-CN-10"))
        #expect(decision.rows[1]["description"] == .text("Credit note LL0007-CN-10"))
        let second = try F.decide(Self.issue(), rows: paid + [Self.note("301", total: 100)])
        #expect(second.rows[0]["number"] == .text("LL0007-CN-02"))
    }

    @Test func anInvoiceNumberWithoutADashIsThePrefix() throws {
        let rows = [F.customer(), F.invoice(status: "paid", paid: 16_200, number: "INV77")]
        #expect(try F.decide(Self.issue(), rows: rows).rows[0]["number"] == .text("INV77-CN-01"))
    }

    @Test func aGivenNumberIsUsedAsItIs() throws {
        let decision = try F.decide(Self.issue(number: "CN-2025-0042"), rows: paid)
        #expect(decision.rows[0]["number"] == .text("CN-2025-0042"))
        #expect(decision.rows[1]["description"] == .text("Credit note CN-2025-0042"))
    }

    @Test func issuedNotesLeaveTheRestOfTheTotalVoidOnesDoNotCount() throws {
        let rows =
            paid + [
                Self.note("301", total: 10_000), Self.note("302", total: 6_000, status: "void", number: "LL0007-CN-02"),
            ]
        #expect(F.rejection(Self.issue(amount: 6_200), rows: rows) == nil)
        #expect(F.rejection(Self.issue(amount: 6_201), rows: rows) == .exceedsLimit)
    }

    @Test func aCreditNoteReadsTheInvoiceThenItsCustomersNotes() {
        let command = Self.issue()
        #expect(
            command.requirements(given: CommandState())
                == [
                    .stream(.creditNote, key: "310"), .stream(.balanceTransaction, key: "9120"),
                    .stream(.invoice, key: "4489"),
                    .children(.creditNote, column: "invoice_id", value: "4489"),
                ])
        let state = F.state(for: command, rows: paid)
        let needs = command.requirements(given: state)
        #expect(needs.contains(.stream(.customer, key: "7")))
        #expect(needs.contains(.children(.creditNote, column: "customer_id", value: "7")))
    }

    // MARK: Credit note: every rejection

    @Test func onlyAPaidInvoiceIsCredited() {
        for status in ["draft", "open", "void", "uncollectible"] {
            #expect(
                F.rejection(Self.issue(), rows: [F.customer(), F.invoice(status: status)]) == .invalidState, "\(status)"
            )
        }
    }

    @Test func aCreditNoteNeverExceedsTheInvoice() {
        #expect(F.rejection(Self.issue(amount: 16_201), rows: paid) == .exceedsLimit)
        #expect(F.rejection(Self.issue(amount: 16_200), rows: paid) == nil)
        #expect(F.rejection(Self.issue(amount: 1), rows: paid + [Self.note("301", total: 16_200)]) == .exceedsLimit)
    }

    @Test func aCreditNoteIsAPositiveAmount() {
        #expect(F.rejection(Self.issue(amount: 0), rows: paid) == .invalidAmount)
        #expect(F.rejection(Self.issue(amount: -1), rows: paid) == .invalidAmount)
    }

    @Test func existingKeysAreNotReused() {
        #expect(
            F.rejection(Self.issue(), rows: paid + [Self.note("310", invoice: "4000", total: 100)]) == .alreadyExists)
        #expect(F.rejection(Self.issue(), rows: paid, ended: ["balance_transaction-9120"]) == .alreadyExists)
        #expect(
            F.rejection(
                Self.issue(number: "LL0007-CN-01"), rows: paid + [Self.note("301", invoice: "4000", total: 100)])
                == .alreadyExists)
    }

    @Test func aMissingInvoiceOrCustomerIsNotFound() {
        #expect(F.rejection(Self.issue(invoice: "1"), rows: paid) == .notFound)
        #expect(F.rejection(Self.issue(), rows: [F.invoice(status: "paid", paid: 16_200)]) == .notFound)
    }

    @Test func anArchivedCustomerIsCreditedNothing() {
        #expect(
            F.rejection(Self.issue(), rows: [F.customer(archivedAt: F.at), F.invoice(status: "paid", paid: 16_200)])
                == .invalidState)
        #expect(F.rejection(Self.credit(), rows: [F.customer(archivedAt: F.at)]) == .invalidState)
    }

    @Test func aCreditNoteIsInItsInvoicesCurrency() {
        #expect(F.rejection(Self.issue(currency: "EUR"), rows: paid) == .currencyMismatch)
        #expect(F.rejection(Self.issue(currency: "USD"), rows: paid) == nil)
        #expect(
            F.rejection(Self.issue(), rows: [F.customer(currency: "GBP"), F.invoice(status: "paid", paid: 16_200)])
                == .currencyMismatch)
        #expect(
            F.rejection(Self.issue(amount: 1), rows: paid + [Self.note("301", total: 100, currency: "EUR")])
                == .currencyMismatch)
    }

    // MARK: Customer credit

    @Test func goodwillCreditIsAnAdjustmentOfMinusItsAmount() throws {
        let decision = try F.decide(Self.credit(), rows: [F.customer()])
        let transaction = CanonicalRow(
            entity: .balanceTransaction,
            values: [
                "balance_transaction_id": .text("9121"), "customer_id": .text("7"), "amount": .amount(-2_500),
                "currency": .text("USD"),
                "type": .text("adjustment"), "invoice_id": .null, "credit_note_id": .null,
                "description": .text("Goodwill credit"),
                "created_at": .timestamp(F.at),
            ])
        #expect(decision.rows == [transaction])
        #expect(decision.summary == "credit of 25.00 USD added to customer 7")
        #expect(
            Transitions.transitions(before: nil, after: transaction, syncedFromVersion: 0).map(\.type) == [
                .balanceAdjusted
            ])
    }

    @Test func aGivenDescriptionIsKept() throws {
        let decision = try F.decide(Self.credit(description: "Outage of 3 November"), rows: [F.customer()])
        #expect(decision.rows[0]["description"] == .text("Outage of 3 November"))
    }

    @Test func creditReadsTheCustomerOnly() {
        #expect(
            Self.credit().requirements(given: CommandState()) == [
                .stream(.balanceTransaction, key: "9121"), .stream(.customer, key: "7"),
            ])
    }

    @Test func customerCreditRejections() {
        #expect(F.rejection(Self.credit(amount: 0), rows: [F.customer()]) == .invalidAmount)
        #expect(F.rejection(Self.credit(amount: -2_500), rows: [F.customer()]) == .invalidAmount)
        #expect(F.rejection(Self.credit(customer: "8"), rows: [F.customer()]) == .notFound)
        #expect(F.rejection(Self.credit(), rows: [F.customer(currency: nil)]) == .invalidState)
        #expect(F.rejection(Self.credit(currency: "EUR"), rows: [F.customer()]) == .currencyMismatch)
        #expect(F.rejection(Self.credit(currency: "USD"), rows: [F.customer()]) == nil)
        #expect(F.rejection(Self.credit(), rows: [F.customer()], ended: ["balance_transaction-9121"]) == .alreadyExists)
    }
}
