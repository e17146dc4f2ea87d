import Billing
import Commands
import Foundation
import Postgres
import Simulator
import Testing

/// Rows and a loader the payment and credit rule tests share: a USD customer with an open
/// invoice, decided the way the executor decides (requirements asked until nothing new).
enum PaymentFixtures {
    static func time(_ text: String) -> PostgresTimestamp { PostgresTimestamp(text)! }

    static let finalizedAt = time("2025-11-01 09:00:00")
    static let at = time("2025-11-02 10:15:30.5")

    static func customer(_ id: String = "7", currency: String? = "USD", archivedAt: PostgresTimestamp? = nil)
        -> CanonicalRow
    {
        CanonicalRow(
            entity: .customer,
            values: [
                "customer_id": .text(id), "email": .text("ap@acme.example"), "name": .text("Acme Ltd"),
                "currency": currency.map(CanonicalValue.text) ?? .null,
                "created_at": .timestamp(time("2025-01-05 08:00:00")),
                "updated_at": .timestamp(finalizedAt), "archived_at": archivedAt.map(CanonicalValue.timestamp) ?? .null,
                "time_zone": .text("America/New_York"),
            ],
            attributes: ["balance": "162.00", "credit_balance": "0"])
    }

    /// Invoice 4489 of customer 7: 162.00 USD, `paid` of it paid.
    static func invoice(
        _ id: String = "4489", status: String = "open", total: Int64 = 16_200, paid: Int64 = 0,
        currency: String = "USD",
        customer: String = "7", number: String? = "LL0007-0003"
    ) -> CanonicalRow {
        CanonicalRow(
            entity: .invoice,
            values: [
                "invoice_id": .text(id), "customer_id": .text(customer), "subscription_id": .text("12"),
                "number": number.map(CanonicalValue.text) ?? .null, "status": .text(status),
                "currency": .text(currency),
                "subtotal": .amount(13_500), "discount": .amount(0), "tax": .amount(total - 13_500),
                "total": .amount(total),
                "amount_paid": .amount(paid),
                "amount_due": .amount(status == "paid" || status == "void" ? 0 : total - paid),
                "period_start": .timestamp(time("2025-10-01 00:00:00")),
                "period_end": .timestamp(time("2025-11-01 00:00:00")),
                "issued_on": status == "draft" ? .null : .date(PostgresDate("2025-11-01")!),
                "due_on": status == "draft" ? .null : .date(PostgresDate("2025-11-01")!),
                "finalized_at": status == "draft" ? .null : .timestamp(finalizedAt),
                "paid_at": status == "paid" ? .timestamp(finalizedAt) : .null,
                "created_at": .timestamp(time("2025-10-31 23:00:00")), "updated_at": .timestamp(finalizedAt),
            ],
            attributes: ["tax_rate": "0.2"])
    }

    static func payment(
        _ id: String, invoice: String = "4489", status: String = "succeeded", amount: Int64 = 16_200,
        currency: String = "USD",
        customer: String = "7", createdAt: PostgresTimestamp = finalizedAt
    ) -> CanonicalRow {
        CanonicalRow(
            entity: .payment,
            values: [
                "payment_id": .text(id), "customer_id": .text(customer), "invoice_id": .text(invoice),
                "status": .text(status),
                "amount": .amount(amount), "currency": .text(currency), "provider_payment_id": .text("pi_3Xyz" + id),
                "created_at": .timestamp(createdAt), "updated_at": .timestamp(createdAt),
            ],
            attributes: ["method": "card"])
    }

    static func subscription(_ id: String = "12", status: String) -> CanonicalRow {
        CanonicalRow(
            entity: .subscription,
            values: [
                "subscription_id": .text(id), "customer_id": .text("7"), "plan_id": .text("3"), "status": .text(status),
                "quantity": .integer(1), "started_at": .timestamp(time("2025-01-05 08:00:00")),
                "current_period_start": .timestamp(time("2025-11-01 00:00:00")),
                "current_period_end": .timestamp(time("2025-12-01 00:00:00")), "cancel_at_period_end": .boolean(false),
                "created_at": .timestamp(time("2025-01-05 08:00:00")), "updated_at": .timestamp(finalizedAt),
            ])
    }

    static func refund(
        _ id: String, payment: String, amount: Int64, status: String = "succeeded", currency: String = "USD"
    ) -> CanonicalRow {
        CanonicalRow(
            entity: .refund,
            values: [
                "refund_id": .text(id), "payment_id": .text(payment), "customer_id": .text("7"),
                "amount": .amount(amount),
                "currency": .text(currency), "status": .text(status), "reason": .text("duplicate"),
                "created_at": .timestamp(finalizedAt),
            ])
    }

    /// The state `command` decides on when the ledger holds `rows`: its requirements asked
    /// until it asks nothing new, children found by scanning `rows` (as the loader does in the
    /// read models), every row at version 3. `ended` are keys whose streams ended (`…Deleted`).
    static func state(for command: BillingCommand, rows: [CanonicalRow], ended: Set<String> = []) -> CommandState {
        var state = CommandState()
        for _ in 0..<10 {
            let needs = command.requirements(given: state)
            if state.satisfies(needs) { return state }
            for need in needs {
                switch need {
                case .stream(let entity, let key):
                    let streamID = entity.streamID(key: key)
                    if let row = rows.first(where: { $0.streamID == streamID }) {
                        state.streams[streamID] = StreamState(row: row, version: 3, lastOccurredAt: finalizedAt)
                    } else {
                        state.streams[streamID] =
                            ended.contains(streamID)
                            ? StreamState(row: nil, version: 2, lastOccurredAt: finalizedAt) : .missing
                    }
                case .children(let entity, let column, let value):
                    let found = rows.filter { $0.entity == entity && $0[column].textValue == value }
                    state.children[need] = found.map(\.key).sorted()
                    for row in found {
                        state.streams[row.streamID] = StreamState(row: row, version: 3, lastOccurredAt: finalizedAt)
                    }
                }
            }
        }
        Issue.record("requirements never settled")
        return state
    }

    static func decide(_ command: BillingCommand, rows: [CanonicalRow], ended: Set<String> = [])
        throws(CommandRejection) -> Decision
    {
        try command.decide(in: state(for: command, rows: rows, ended: ended))
    }

    /// The rejection's code, or `nil` when the command is decided.
    static func rejection(_ command: BillingCommand, rows: [CanonicalRow], ended: Set<String> = []) -> CommandRejection
        .Code?
    {
        do {
            _ = try decide(command, rows: rows, ended: ended)
            return nil
        } catch {
            return error.code
        }
    }

    static func pay(
        _ id: String = "4501", invoice: String = "4489", amount: Int64? = nil, status: String = "succeeded",
        method: String? = "card", provider: String? = "pi_3AbCdEfGhIjKlMnOpQrStU0001aZ", failureCode: String? = nil,
        currency: String? = nil, at: PostgresTimestamp = at
    ) -> BillingCommand {
        .recordPayment(
            RecordPayment(
                paymentID: id, invoiceID: invoice, amount: amount, status: status, method: method,
                providerPaymentID: provider,
                failureCode: failureCode, currency: currency, at: at))
    }

    static func refundCommand(
        _ id: String = "880", payment: String = "4501", amount: Int64? = nil, reason: String? = "requested_by_customer",
        currency: String? = nil, at: PostgresTimestamp = at
    ) -> BillingCommand {
        .refundPayment(
            RefundPayment(refundID: id, paymentID: payment, amount: amount, reason: reason, currency: currency, at: at))
    }
}

@Suite struct PaymentRulesTests {
    typealias F = PaymentFixtures
    let world = [F.customer(), F.invoice()]

    // MARK: Record payment: what it writes

    @Test func aPaymentOfWhatIsDuePaysTheInvoice() throws {
        let decision = try F.decide(F.pay(), rows: world)
        let payment = CanonicalRow(
            entity: .payment,
            values: [
                "payment_id": .text("4501"), "customer_id": .text("7"), "invoice_id": .text("4489"),
                "status": .text("succeeded"),
                "amount": .amount(16_200), "currency": .text("USD"),
                "provider_payment_id": .text("pi_3AbCdEfGhIjKlMnOpQrStU0001aZ"),
                "failure_code": .null, "created_at": .timestamp(F.at), "updated_at": .timestamp(F.at),
            ],
            attributes: ["method": "card"])
        var invoice = F.invoice()
        invoice.values["status"] = .text("paid")
        invoice.values["amount_paid"] = .amount(16_200)
        invoice.values["amount_due"] = .amount(0)
        invoice.values["paid_at"] = .timestamp(F.at)
        invoice.values["updated_at"] = .timestamp(F.at)
        #expect(decision.rows == [payment, invoice])
        #expect(decision.deleted.isEmpty)
        #expect(decision.summary == "payment 4501 of 162.00 USD on invoice 4489 succeeded; the invoice is paid")
    }

    @Test func aPaymentInFullIsPaymentSucceededThenInvoicePaid() throws {
        let decision = try F.decide(F.pay(), rows: world)
        let created = Transitions.transitions(before: nil, after: decision.rows[0], syncedFromVersion: 0)
        let paid = Transitions.transitions(
            before: F.invoice(), after: decision.rows[1], notBefore: F.finalizedAt, syncedFromVersion: 3)
        #expect(created.map(\.type) == [.paymentCreated, .paymentSucceeded])
        #expect(paid.map(\.type) == [.invoicePaid])
        #expect(paid.allSatisfy { $0.occurredAt == F.at })
    }

    @Test func aPartialBankTransferLeavesTheInvoiceOpen() throws {
        let decision = try F.decide(F.pay(amount: 5_000, method: "bank_transfer", provider: nil), rows: world)
        #expect(decision.rows.count == 2)
        let payment = decision.rows[0]
        #expect(payment["amount"] == .amount(5_000))
        #expect(payment["provider_payment_id"] == .null)
        #expect(payment.attributes == ["method": "bank_transfer"])
        var invoice = F.invoice()
        invoice.values["amount_paid"] = .amount(5_000)
        invoice.values["amount_due"] = .amount(11_200)
        invoice.values["updated_at"] = .timestamp(F.at)
        #expect(decision.rows[1] == invoice)
        #expect(decision.summary == "payment 4501 of 50.00 USD on invoice 4489 succeeded; 112.00 USD still due")
    }

    @Test func whatIsLeftAfterAPartPaysTheInvoiceAndAmountPaidIsTheTotal() throws {
        let rows = [F.customer(), F.invoice(paid: 5_000), F.payment("4400", amount: 5_000)]
        let decision = try F.decide(F.pay(), rows: rows)
        #expect(decision.rows[0]["amount"] == .amount(11_200))
        #expect(decision.rows[1]["status"] == .text("paid"))
        #expect(decision.rows[1]["amount_paid"] == .amount(16_200))
        #expect(decision.rows[1]["amount_due"] == .amount(0))
        #expect(decision.rows[1]["paid_at"] == .timestamp(F.at))
    }

    @Test func aFailedAttemptWritesOnlyThePayment() throws {
        let decision = try F.decide(F.pay(status: "failed", failureCode: "card_declined"), rows: world)
        #expect(decision.rows.count == 1)
        #expect(decision.rows[0]["status"] == .text("failed"))
        #expect(decision.rows[0]["failure_code"] == .text("card_declined"))
        #expect(decision.rows[0]["amount"] == .amount(16_200))
        #expect(decision.summary == "payment 4501 of 162.00 USD on invoice 4489 failed (card_declined)")
        let events = Transitions.transitions(before: nil, after: decision.rows[0], syncedFromVersion: 0)
        #expect(events.map(\.type) == [.paymentCreated, .paymentFailed])
    }

    @Test func aRetryPaysAnUncollectibleInvoice() throws {
        let rows = [F.customer(), F.invoice(status: "uncollectible"), F.payment("4400", status: "failed")]
        let decision = try F.decide(F.pay(), rows: rows)
        #expect(decision.rows[1]["status"] == .text("paid"))
        #expect(decision.rows[1]["amount_due"] == .amount(0))
    }

    @Test func aRetryThatSettlesAnInvoiceInDunningMakesItsPastDueSubscriptionActive() throws {
        let rows = [F.customer(), F.invoice(), F.payment("4400", status: "failed"), F.subscription(status: "past_due")]
        let decision = try F.decide(F.pay(), rows: rows)
        var active = F.subscription(status: "active")
        active.values["updated_at"] = .timestamp(F.at)
        #expect(decision.rows.count == 3)
        #expect(decision.rows[2] == active)
        #expect(
            decision.summary
                == "payment 4501 of 162.00 USD on invoice 4489 succeeded; the invoice is paid; subscription 12 is active again"
        )
        let events = Transitions.transitions(
            before: F.subscription(status: "past_due"), after: active, notBefore: F.finalizedAt, syncedFromVersion: 3)
        #expect(events.map(\.type) == [.subscriptionUpdated])
    }

    @Test func aPaymentOfAnInvoiceNobodyFailedToPayLeavesThePastDueSubscription() throws {
        let rows = [F.customer(), F.invoice(), F.subscription(status: "past_due")]
        #expect(try F.decide(F.pay(), rows: rows).rows.map(\.entity) == [.payment, .invoice])
    }

    @Test func aPartOfAnInvoiceInDunningLeavesTheSubscriptionPastDue() throws {
        let rows = [F.customer(), F.invoice(), F.payment("4400", status: "failed"), F.subscription(status: "past_due")]
        #expect(try F.decide(F.pay(amount: 100), rows: rows).rows.map(\.entity) == [.payment, .invoice])
    }

    @Test func aRetryLeavesAnUnpaidOrActiveSubscriptionAsItIs() throws {
        for status in ["unpaid", "active", "canceled"] {
            let rows = [F.customer(), F.invoice(), F.payment("4400", status: "failed"), F.subscription(status: status)]
            #expect(try F.decide(F.pay(), rows: rows).rows.map(\.entity) == [.payment, .invoice], "\(status)")
        }
    }

    @Test func aPartOfAnUncollectibleInvoiceLeavesItUncollectible() throws {
        let decision = try F.decide(F.pay(amount: 200), rows: [F.customer(), F.invoice(status: "uncollectible")])
        #expect(decision.rows[1]["status"] == .text("uncollectible"))
        #expect(decision.rows[1]["amount_due"] == .amount(16_000))
    }

    @Test func aStatedCurrencyThatIsTheInvoicesIsAccepted() throws {
        #expect(try F.decide(F.pay(currency: "USD"), rows: world).rows.count == 2)
    }

    @Test func aJPYPaymentIsInWholeYen() throws {
        let decision = try F.decide(
            F.pay(amount: 5_500), rows: [F.customer(currency: "JPY"), F.invoice(total: 16_200, currency: "JPY")])
        #expect(decision.rows[0]["currency"] == .text("JPY"))
        #expect(decision.summary == "payment 4501 of 5500 JPY on invoice 4489 succeeded; 10700 JPY still due")
    }

    @Test func theCustomerIsTheInvoicesAndItIsReadAfterTheInvoice() {
        let command = F.pay()
        #expect(
            command.requirements(given: CommandState())
                == [
                    .stream(.payment, key: "4501"), .stream(.invoice, key: "4489"),
                    .children(.payment, column: "invoice_id", value: "4489"),
                ])
        let state = F.state(for: command, rows: world)
        #expect(command.requirements(given: state).contains(.stream(.customer, key: "7")))
        #expect(command.requirements(given: state).contains(.stream(.subscription, key: "12")))
    }

    // MARK: Record payment: every rejection

    @Test func aPaidInvoiceIsPaidOnce() {
        #expect(F.rejection(F.pay(), rows: [F.customer(), F.invoice(status: "paid", paid: 16_200)]) == .invalidState)
        #expect(
            F.rejection(F.pay(status: "failed"), rows: [F.customer(), F.invoice(status: "paid", paid: 16_200)])
                == .invalidState)
    }

    @Test func voidAndDraftInvoicesTakeNoPayment() {
        #expect(F.rejection(F.pay(), rows: [F.customer(), F.invoice(status: "void")]) == .invalidState)
        #expect(F.rejection(F.pay(), rows: [F.customer(), F.invoice(status: "draft", number: nil)]) == .invalidState)
    }

    @Test func theRejectionNamesTheStateFoundAndTheOneNeeded() {
        do {
            _ = try F.decide(F.pay(), rows: [F.customer(), F.invoice(status: "paid", paid: 16_200)])
            Issue.record("decided")
        } catch {
            #expect(error.entity == .invoice)
            #expect(error.key == "4489")
            #expect(
                error.detail
                    == "invoice 4489 is paid: an invoice is paid once; a payment needs it open or uncollectible")
        }
    }

    @Test func aPaymentBeyondWhatIsDueExceedsTheLimit() {
        #expect(F.rejection(F.pay(amount: 16_201), rows: world) == .exceedsLimit)
        #expect(F.rejection(F.pay(amount: 11_201), rows: [F.customer(), F.invoice(paid: 5_000)]) == .exceedsLimit)
        #expect(F.rejection(F.pay(amount: 11_200), rows: [F.customer(), F.invoice(paid: 5_000)]) == nil)
    }

    @Test func aPaymentIsAPositiveAmount() {
        #expect(F.rejection(F.pay(amount: 0), rows: world) == .invalidAmount)
        #expect(F.rejection(F.pay(amount: -100), rows: world) == .invalidAmount)
    }

    @Test func onlySucceededAndFailedAreRecorded() {
        #expect(F.rejection(F.pay(status: "pending"), rows: world) == .invalidInput)
        #expect(F.rejection(F.pay(status: "SUCCEEDED"), rows: world) == .invalidInput)
    }

    @Test func aSucceededPaymentHasNoFailureCode() {
        #expect(F.rejection(F.pay(failureCode: "card_declined"), rows: world) == .invalidInput)
    }

    @Test func aPaymentIsNotDatedBeforeItsInvoiceWasFinalized() {
        #expect(F.rejection(F.pay(at: F.time("2025-11-01 08:59:59")), rows: world) == .invalidInput)
        #expect(F.rejection(F.pay(at: F.finalizedAt), rows: world) == nil)
    }

    @Test func anExistingPaymentKeyIsNotReused() {
        #expect(F.rejection(F.pay(), rows: world + [F.payment("4501", invoice: "4000")]) == .alreadyExists)
        #expect(F.rejection(F.pay(), rows: world, ended: ["payment-4501"]) == .alreadyExists)
    }

    @Test func aMissingInvoiceOrCustomerIsNotFound() {
        #expect(F.rejection(F.pay(invoice: "9999"), rows: world) == .notFound)
        #expect(F.rejection(F.pay(), rows: [F.invoice()]) == .notFound)
    }

    @Test func anArchivedCustomersInvoiceTakesNoPayment() {
        #expect(F.rejection(F.pay(), rows: [F.customer(archivedAt: F.finalizedAt), F.invoice()]) == .invalidState)
        do {
            _ = try F.decide(F.pay(), rows: [F.customer(archivedAt: F.finalizedAt), F.invoice()])
            Issue.record("decided")
        } catch {
            #expect(error.entity == .customer)
            #expect(
                error.detail
                    == "customer 7 is archived (since 2025-11-01T09:00:00.000000Z); record_payment needs a live customer"
            )
        }
    }

    @Test func currenciesNeverMix() {
        #expect(F.rejection(F.pay(currency: "EUR"), rows: world) == .currencyMismatch)
        #expect(F.rejection(F.pay(), rows: [F.customer(currency: "EUR"), F.invoice()]) == .currencyMismatch)
        // A customer without a currency of its own takes its invoices'.
        #expect(F.rejection(F.pay(), rows: [F.customer(currency: nil), F.invoice()]) == nil)
    }

    @Test func aPendingPaymentBlocksAnotherAttempt() {
        let rows = world + [F.payment("4400", status: "pending")]
        #expect(F.rejection(F.pay(), rows: rows) == .invalidState)
        #expect(F.rejection(F.pay(), rows: world + [F.payment("4400", status: "failed")]) == nil)
    }

    @Test func anOpenInvoiceWithNothingDueTakesNoPayment() {
        var invoice = F.invoice()
        invoice.values["amount_due"] = .amount(0)
        #expect(F.rejection(F.pay(), rows: [F.customer(), invoice]) == .invalidState)
    }

    @Test func anAmountPaidThatWouldOverflowIsRefused() {
        var invoice = F.invoice()
        invoice.values["amount_paid"] = .amount(.max - 10)
        invoice.values["amount_due"] = .amount(100)
        #expect(F.rejection(F.pay(amount: 100), rows: [F.customer(), invoice]) == .invalidAmount)
    }

    // MARK: Refund: what it writes

    @Test func aRefundInFullTakesAllThatIsLeft() throws {
        let rows = world + [F.payment("4501")]
        let decision = try F.decide(F.refundCommand(), rows: rows)
        let refund = CanonicalRow(
            entity: .refund,
            values: [
                "refund_id": .text("880"), "payment_id": .text("4501"), "customer_id": .text("7"),
                "amount": .amount(16_200),
                "currency": .text("USD"), "status": .text("succeeded"), "reason": .text("requested_by_customer"),
                "created_at": .timestamp(F.at),
            ])
        #expect(decision.rows == [refund])
        #expect(decision.summary == "refund 880 of 162.00 USD on payment 4501 succeeded; nothing is left to refund")
        let events = Transitions.transitions(before: nil, after: refund, syncedFromVersion: 0)
        #expect(events.map(\.type) == [.refundIssued])
    }

    @Test func aPartialRefundIsItsAmountAndChangesNoInvoice() throws {
        let decision = try F.decide(
            F.refundCommand(amount: 4_000, reason: "duplicate"), rows: world + [F.payment("4501")])
        #expect(decision.rows.count == 1)
        #expect(decision.rows[0]["amount"] == .amount(4_000))
        #expect(decision.rows[0]["reason"] == .text("duplicate"))
        #expect(decision.summary == "refund 880 of 40.00 USD on payment 4501 succeeded")
    }

    @Test func succeededAndPendingRefundsCountFailedOnesDoNot() throws {
        let rows =
            world + [
                F.payment("4501"), F.refund("870", payment: "4501", amount: 10_000),
                F.refund("871", payment: "4501", amount: 2_000, status: "pending"),
                F.refund("872", payment: "4501", amount: 4_000, status: "failed"),
                F.refund("873", payment: "4999", amount: 9_000),
            ]
        let decision = try F.decide(F.refundCommand(), rows: rows)
        #expect(decision.rows[0]["amount"] == .amount(4_200))
        #expect(F.rejection(F.refundCommand(amount: 4_201), rows: rows) == .exceedsLimit)
        #expect(F.rejection(F.refundCommand(amount: 4_200), rows: rows) == nil)
    }

    @Test func aRefundReadsThePaymentsRefundsThenItsCustomer() {
        let command = F.refundCommand()
        #expect(
            command.requirements(given: CommandState())
                == [
                    .stream(.refund, key: "880"), .stream(.payment, key: "4501"),
                    .children(.refund, column: "payment_id", value: "4501"),
                ])
        let state = F.state(for: command, rows: world + [F.payment("4501")])
        #expect(command.requirements(given: state).contains(.stream(.customer, key: "7")))
    }

    // MARK: Refund: every rejection

    @Test func aRefundNeverExceedsWhatIsLeftOfItsPayment() {
        let rows = world + [F.payment("4501"), F.refund("870", payment: "4501", amount: 16_200)]
        #expect(F.rejection(F.refundCommand(), rows: rows) == .exceedsLimit)
        #expect(F.rejection(F.refundCommand(amount: 1), rows: rows) == .exceedsLimit)
        #expect(F.rejection(F.refundCommand(amount: 16_201), rows: world + [F.payment("4501")]) == .exceedsLimit)
    }

    @Test func onlyASucceededPaymentIsRefunded() {
        #expect(F.rejection(F.refundCommand(), rows: world + [F.payment("4501", status: "failed")]) == .invalidState)
        #expect(F.rejection(F.refundCommand(), rows: world + [F.payment("4501", status: "pending")]) == .invalidState)
    }

    @Test func aRefundIsAPositiveAmount() {
        #expect(F.rejection(F.refundCommand(amount: 0), rows: world + [F.payment("4501")]) == .invalidAmount)
        #expect(F.rejection(F.refundCommand(amount: -5), rows: world + [F.payment("4501")]) == .invalidAmount)
    }

    @Test func aRefundOfAMissingPaymentIsNotFound() {
        #expect(F.rejection(F.refundCommand(), rows: world) == .notFound)
        #expect(F.rejection(F.refundCommand(), rows: [F.invoice(), F.payment("4501")]) == .notFound)
    }

    @Test func anArchivedCustomerIsRefundedNothing() {
        #expect(
            F.rejection(F.refundCommand(), rows: [F.customer(archivedAt: F.at), F.invoice(), F.payment("4501")])
                == .invalidState)
    }

    @Test func anExistingRefundKeyIsNotReused() {
        let rows = world + [F.payment("4501"), F.refund("880", payment: "4400", amount: 100)]
        #expect(F.rejection(F.refundCommand(), rows: rows) == .alreadyExists)
        #expect(
            F.rejection(F.refundCommand(), rows: world + [F.payment("4501")], ended: ["refund-880"]) == .alreadyExists)
    }

    @Test func aRefundIsInItsPaymentsCurrency() {
        let rows = world + [F.payment("4501")]
        #expect(F.rejection(F.refundCommand(currency: "GBP"), rows: rows) == .currencyMismatch)
        #expect(F.rejection(F.refundCommand(currency: "USD"), rows: rows) == nil)
        #expect(
            F.rejection(F.refundCommand(), rows: [F.customer(currency: "EUR"), F.invoice(), F.payment("4501")])
                == .currencyMismatch)
        let mixed = rows + [F.refund("870", payment: "4501", amount: 100, currency: "EUR")]
        #expect(F.rejection(F.refundCommand(amount: 100), rows: mixed) == .currencyMismatch)
    }

    @Test func aRefundIsNotDatedBeforeItsPayment() {
        let rows = world + [F.payment("4501", createdAt: F.at)]
        #expect(F.rejection(F.refundCommand(at: F.time("2025-11-02 10:15:30.499999")), rows: rows) == .invalidInput)
        #expect(F.rejection(F.refundCommand(at: F.at), rows: rows) == nil)
    }
}

/// The payment and credit operations of the legacy application as commands: what came from
/// outside is stated, what legacy derived from its state is left for the ledger to derive.
@Suite struct PaymentTranslationTests {
    typealias F = PaymentFixtures
    static let at = "2025-11-02T10:15:30.500000Z"

    static func entry(_ kind: OperationKind, _ keys: [String: String], effects: [Effect] = []) -> JournalEntry {
        JournalEntry(op: 41, kind: kind, at: at, keys: keys, effects: effects, summary: "")
    }

    static func rows(after: [CanonicalRow], before: [CanonicalRow] = []) -> LegacyRows {
        LegacyRows(
            before: Dictionary(uniqueKeysWithValues: before.map { (LegacyRows.Key($0.entity, $0.key), $0) }),
            after: Dictionary(uniqueKeysWithValues: after.map { (LegacyRows.Key($0.entity, $0.key), $0) }))
    }

    @Test func aFailedCardPaymentThatPutTheSubscriptionPastDueIsTwoCommands() throws {
        var failed = F.payment("4501", status: "failed", createdAt: F.at)
        failed.values["failure_code"] = .text("insufficient_funds")
        let keys = ["customer": "7", "invoice": "4489", "payment": "4501", "subscription": "12"]
        let legacy = Self.rows(
            after: [failed, F.subscription(status: "past_due")], before: [F.subscription(status: "active")])
        let commands = try CommandTranslation.commands(for: Self.entry(.paymentFailed, keys), legacy: legacy)
        #expect(
            commands == [
                .recordPayment(
                    RecordPayment(
                        paymentID: "4501", invoiceID: "4489", status: "failed", method: "card",
                        providerPaymentID: "pi_3Xyz4501",
                        failureCode: "insufficient_funds", at: F.at)),
                try JSONDecoder().decode(
                    BillingCommand.self,
                    from: Data(
                        #"{"command": "mark_past_due", "subscription_id": "12", "at": "2025-11-02T10:15:30.500000Z"}"#
                            .utf8)),
            ])
        let stayed = Self.rows(
            after: [failed, F.subscription(status: "past_due")], before: [F.subscription(status: "past_due")])
        #expect(try CommandTranslation.commands(for: Self.entry(.paymentFailed, keys), legacy: stayed).count == 1)
    }

    @Test func paymentsInFullLeaveTheAmountToTheLedgerPartsStateIt() throws {
        let keys = ["customer": "7", "invoice": "4489", "payment": "4501"]
        let full = Self.rows(after: [F.payment("4501", createdAt: F.at)])
        for kind in [OperationKind.paymentSucceeded, .paymentRetried] {
            let commands = try CommandTranslation.commands(for: Self.entry(kind, keys), legacy: full)
            #expect(
                commands == [
                    .recordPayment(
                        RecordPayment(
                            paymentID: "4501", invoiceID: "4489", status: "succeeded", method: "card",
                            providerPaymentID: "pi_3Xyz4501",
                            at: F.at))
                ])
        }
        var transfer = F.payment("4501", amount: 6_000, createdAt: F.at)
        transfer.values["provider_payment_id"] = .null
        transfer.attributes = ["method": "bank_transfer"]
        let part = try CommandTranslation.commands(
            for: Self.entry(.partialPayment, keys), legacy: Self.rows(after: [transfer]))
        #expect(
            part == [
                .recordPayment(
                    RecordPayment(
                        paymentID: "4501", invoiceID: "4489", amount: 6_000, status: "succeeded",
                        method: "bank_transfer", at: F.at))
            ])
    }

    @Test func refundsInFullTakeWhatIsLeftPartsStateTheirAmount() throws {
        let keys = ["customer": "7", "invoice": "4489", "payment": "4501", "refund": "880"]
        let legacy = Self.rows(after: [F.refund("880", payment: "4501", amount: 3_000)])
        #expect(
            try CommandTranslation.commands(for: Self.entry(.refundFull, keys), legacy: legacy)
                == [.refundPayment(RefundPayment(refundID: "880", paymentID: "4501", reason: "duplicate", at: F.at))])
        #expect(
            try CommandTranslation.commands(for: Self.entry(.refundPartial, keys), legacy: legacy)
                == [
                    .refundPayment(
                        RefundPayment(refundID: "880", paymentID: "4501", amount: 3_000, reason: "duplicate", at: F.at))
                ])
    }

    @Test func creditIsStatedItsNumberAndLabelAreTheLedgers() throws {
        let note = CreditRulesTests.note("310", total: 4_050)
        let keys = ["customer": "7", "invoice": "4489", "credit_note": "310", "balance_transaction": "9120"]
        #expect(
            try CommandTranslation.commands(for: Self.entry(.creditNote, keys), legacy: Self.rows(after: [note]))
                == [
                    .issueCreditNote(
                        IssueCreditNote(
                            creditNoteID: "310", invoiceID: "4489", amount: 4_050, balanceTransactionID: "9120",
                            reason: "goodwill", at: F.at))
                ])
        let goodwill = CanonicalRow(
            entity: .balanceTransaction,
            values: [
                "balance_transaction_id": .text("9121"), "customer_id": .text("7"), "amount": .amount(-2_500),
                "currency": .text("USD"),
                "type": .text("adjustment"), "description": .text("Goodwill credit"), "created_at": .timestamp(F.at),
            ])
        #expect(
            try CommandTranslation.commands(
                for: Self.entry(.customerCredit, ["customer": "7", "balance_transaction": "9121"]),
                legacy: Self.rows(after: [goodwill]))
                == [
                    .addCustomerCredit(
                        AddCustomerCredit(balanceTransactionID: "9121", customerID: "7", amount: 2_500, at: F.at))
                ])
    }

    @Test func anOperationWithoutItsRowsIsATranslationError() {
        #expect(throws: CommandTranslationError.self) {
            try CommandTranslation.commands(
                for: Self.entry(.refundFull, ["customer": "7", "payment": "4501", "refund": "880"]),
                legacy: LegacyRows())
        }
    }
}
