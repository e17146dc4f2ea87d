import Foundation
import Postgres
import Testing

@testable import Commands

@Suite struct CodableTests {
    static let at = PostgresTimestamp(microsecondsSinceEpoch: 1_780_000_000_123_456)

    /// One command of every kind, with every optional field set where it has one.
    static let samples: [BillingCommand] = [
        .createCustomer(CreateCustomer(customerID: "1", email: "a@example.com", name: "A", currency: "USD", timeZone: "Europe/Paris", at: at)),
        .updateCustomer(UpdateCustomer(customerID: "1", email: "b@example.com", at: at)),
        .archiveCustomer(ArchiveCustomer(customerID: "1", at: at)),
        .startSubscription(StartSubscription(subscriptionID: "2", customerID: "1", planID: "3", quantity: 4, at: at)),
        .activateTrial(ActivateTrial(subscriptionID: "2", at: at)),
        .changePlan(ChangePlan(subscriptionID: "2", planID: "5", at: at)),
        .cancelSubscription(CancelSubscription(subscriptionID: "2", atPeriodEnd: true, at: at)),
        .markPastDue(MarkPastDue(subscriptionID: "2", at: at)),
        .markUnpaid(MarkUnpaid(subscriptionID: "2", at: at)),
        .renewSubscription(RenewSubscription(subscriptionID: "2", periodStart: at, periodEnd: at, at: at)),
        .endSubscription(EndSubscription(subscriptionID: "2", at: at)),
        .draftInvoice(
            DraftInvoice(
                invoiceID: "6", customerID: "1", subscriptionID: "2", periodStart: at, periodEnd: at,
                lines: [
                    InvoiceLineInput(
                        invoiceLineID: "7", kind: "usage", description: "API calls", quantity: "1200", unitAmount: "0.0125",
                        periodStart: at, periodEnd: at),
                    InvoiceLineInput(invoiceLineID: "8", kind: "proration", amount: -1250),
                ],
                discountLineID: "9", discountPercent: 20, taxLineID: "10", taxRate: "0.2", at: at)),
        .finalizeInvoice(FinalizeInvoice(invoiceID: "6", dueOn: PostgresDate(year: 2026, month: 7, day: 1)!, creditApplicationIDs: ["11", "12"], at: at)),
        .discardDraft(DiscardDraft(invoiceID: "6", at: at)),
        .recordPayment(
            RecordPayment(
                paymentID: "13", invoiceID: "6", amount: 4900, status: "failed", method: "card", providerPaymentID: "pi_1",
                failureCode: "card_declined", at: at)),
        .voidInvoice(VoidInvoice(invoiceID: "6", at: at)),
        .markUncollectible(MarkUncollectible(invoiceID: "6", at: at)),
        .refundPayment(RefundPayment(refundID: "14", paymentID: "13", amount: 100, reason: "requested_by_customer", at: at)),
        .issueCreditNote(IssueCreditNote(creditNoteID: "15", invoiceID: "6", amount: 500, balanceTransactionID: "16", number: "CN-1", reason: "goodwill", at: at)),
        .addCustomerCredit(AddCustomerCredit(balanceTransactionID: "17", customerID: "1", amount: 1000, description: "sorry", at: at)),
    ]

    @Test func everyCommandRoundTripsThroughItsJSON() throws {
        #expect(Self.samples.map(\.name) == BillingCommand.names)
        for command in Self.samples {
            let data = try JSONEncoder().encode(command)
            #expect(try JSONDecoder().decode(BillingCommand.self, from: data) == command, "\(command.name)")
        }
    }

    @Test func theJSONNamesTheCommandAndUsesSnakeCaseWhateverTheEncoder() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let payment = Self.samples[14]
        #expect(
            String(decoding: try encoder.encode(payment), as: UTF8.self)
                == #"{"amount":4900,"at":"2026-05-28T20:26:40.123456Z","command":"record_payment","failure_code":"card_declined","invoice_id":"6","method":"card","payment_id":"13","provider_payment_id":"pi_1","status":"failed"}"#)
        let finalize = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(Self.samples[12])) as? [String: Any]
        #expect(finalize?["credit_application_ids"] as? [String] == ["11", "12"])
        #expect(finalize?["due_on"] as? String == "2026-07-01")
        let draft = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(Self.samples[11])) as? [String: Any]
        let line = (draft?["lines"] as? [[String: Any]])?.first
        #expect(line?["invoice_line_id"] as? String == "7")
        #expect(line?["unit_amount"] as? String == "0.0125")
    }

    @Test func aRequestLeavesOptionalFieldsOut() throws {
        let json = #"{"command":"record_payment","payment_id":"13","invoice_id":"6","status":"succeeded","at":"2026-05-28T20:26:40Z"}"#
        let command = try JSONDecoder().decode(BillingCommand.self, from: Data(json.utf8))
        #expect(
            command
                == .recordPayment(
                    RecordPayment(
                        paymentID: "13", invoiceID: "6", status: "succeeded",
                        at: PostgresTimestamp(microsecondsSinceEpoch: 1_780_000_000_000_000))))
    }

    @Test func anUnknownCommandIsADecodingErrorNamingIt() throws {
        let json = #"{"command":"pay_invoice","invoice_id":"6"}"#
        do {
            _ = try JSONDecoder().decode(BillingCommand.self, from: Data(json.utf8))
            Issue.record("decoded an unknown command")
        } catch DecodingError.dataCorrupted(let context) {
            #expect(context.debugDescription.hasPrefix("unknown command \"pay_invoice\"; the commands are create_customer, update_customer"))
            #expect(context.codingPath.map(\.stringValue) == ["command"])
        }
    }

    @Test func anUnknownFieldIsRefusedRatherThanDropped() throws {
        // A misspelled amount would otherwise pay the whole invoice.
        let json = #"{"command":"record_payment","payment_id":"13","invoice_id":"6","status":"succeeded","ammount":100,"at":"2026-05-28T20:26:40Z"}"#
        do {
            _ = try JSONDecoder().decode(BillingCommand.self, from: Data(json.utf8))
            Issue.record("decoded an unknown field")
        } catch DecodingError.dataCorrupted(let context) {
            #expect(context.debugDescription.hasPrefix("record_payment has no field \"ammount\"; its fields are amount, at, failure_code"))
            #expect(context.codingPath.map(\.stringValue) == ["ammount"])
        }
    }

    @Test func aMissingFieldAndAFractionalAmountAreNamed() throws {
        let missing = #"{"command":"add_customer_credit","balance_transaction_id":"17","amount":100,"at":"2026-05-28T20:26:40Z"}"#
        do {
            _ = try JSONDecoder().decode(BillingCommand.self, from: Data(missing.utf8))
            Issue.record("decoded without customer_id")
        } catch DecodingError.keyNotFound(let key, let context) {
            #expect(key.stringValue == "customer_id")
            #expect(context.debugDescription == "add_customer_credit needs the field \"customer_id\"")
        }
        let fractional = #"{"command":"add_customer_credit","balance_transaction_id":"17","customer_id":"1","amount":10.5,"at":"2026-05-28T20:26:40Z"}"#
        do {
            _ = try JSONDecoder().decode(BillingCommand.self, from: Data(fractional.utf8))
            Issue.record("decoded a fractional amount")
        } catch DecodingError.dataCorrupted(let context) {
            #expect(context.codingPath.map(\.stringValue) == ["amount"], "\(context)")
        } catch DecodingError.typeMismatch(_, let context) {
            #expect(context.codingPath.map(\.stringValue) == ["amount"])
        }
    }

    @Test func fieldNamesConvertBothWays() {
        for (camel, snake) in [
            ("customerID", "customer_id"), ("creditApplicationIDs", "credit_application_ids"), ("providerPaymentID", "provider_payment_id"),
            ("atPeriodEnd", "at_period_end"), ("timeZone", "time_zone"), ("at", "at"), ("unitAmount", "unit_amount"),
        ] {
            #expect(BillingCommand.snakeCase(camel) == snake)
            #expect(BillingCommand.camelCase(snake) == camel)
        }
    }
}
