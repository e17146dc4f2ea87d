import Billing
import EventStore
import Foundation
import Postgres
import TestSupport
import Testing

@testable import Commands

/// The rules an independent trial of the command layer found missing: request ids reused with
/// another command, business time out of order, unknown time zones, negative invoices, keys
/// the read routes cannot serve, times without a zone, unknown currencies.
@Suite("Commands: integrity of requests, times, keys and amounts")
struct CommandIntegrityTests {
    static let t = PostgresTimestamp("2026-11-03T10:00:00Z")!
    static func later(_ seconds: Int64) -> PostgresTimestamp {
        PostgresTimestamp(microsecondsSinceEpoch: t.microsecondsSinceEpoch + seconds * 1_000_000)
    }

    static func create(_ id: String = "c1", timeZone: String? = nil, at: PostgresTimestamp = t) -> BillingCommand {
        .createCustomer(CreateCustomer(customerID: id, email: "\(id)@example.com", currency: "USD", timeZone: timeZone, at: at))
    }

    static func draft(_ id: String = "i1", customer: String = "c1", lines: [InvoiceLineInput]? = nil, at: PostgresTimestamp)
        -> BillingCommand
    {
        .draftInvoice(
            DraftInvoice(
                invoiceID: id, customerID: customer,
                lines: lines ?? [InvoiceLineInput(invoiceLineID: id + "-1", kind: "one_off", description: "Setup", quantity: "1", unitAmount: "10.00")],
                at: at))
    }

    /// The rejection `body` throws (fails the test when it succeeds or throws something else).
    static func rejection(_ body: () async throws -> CommandOutcome) async -> CommandRejection? {
        do {
            let outcome = try await body()
            Issue.record("the command was executed: \(outcome.summary)")
        } catch let rejection as CommandRejection {
            return rejection
        } catch {
            Issue.record("not a rejection: \(error)")
        }
        return nil
    }

    // MARK: 1. request ids

    @Test func aRequestIDSentAgainWithTheSameCommandReplaysAndWithAnotherIsRefused() async throws {
        try await withStore { connection, _ in
            let executor = CommandExecutor()
            let first = try await executor.execute(Self.create(), requestID: "r1", on: connection)
            let events = try await storedEvents("customer-c1", connection)
            #expect(!events.isEmpty && events.allSatisfy { $0.metadata.text.contains(Self.create().fingerprint) })
            let again = try await executor.execute(Self.create(), requestID: "r1", on: connection)
            #expect(again.replayed)
            #expect(again.events == first.events)
            // The same request id with another command: neither the old answer nor a silent drop.
            let update = BillingCommand.updateCustomer(UpdateCustomer(customerID: "c1", email: "new@example.com", at: Self.later(60)))
            await #expect(throws: CommandRequestReused(requestID: "r1")) {
                _ = try await executor.execute(update, requestID: "r1", on: connection)
            }
            #expect(try await storedEvents("customer-c1", connection).count == events.count)
            // With a request id of its own it is executed.
            #expect(try await executor.execute(update, requestID: "r2", on: connection).events.count == 1)
        }
    }

    @Test func theFingerprintIsTheCommandsCanonicalJSON() {
        #expect(Self.create().fingerprint == Self.create().fingerprint)
        #expect(Self.create().fingerprint != Self.create("c2").fingerprint)
    }

    // MARK: 2. business time

    @Test func aCommandDatedBeforeTheLastChangeOfAStreamItChangesIsRefused() async throws {
        try await withStore { connection, _ in
            let executor = CommandExecutor()
            _ = try await executor.execute(Self.create(), requestID: nil, on: connection)
            let early = Self.later(-3600)
            let update = BillingCommand.updateCustomer(UpdateCustomer(customerID: "c1", email: "x@example.com", at: early))
            let refused = await Self.rejection { try await executor.execute(update, requestID: nil, on: connection) }
            #expect(
                refused
                    == CommandRejection(
                        .invalidState, .customer, "c1",
                        "update_customer at \(early) is dated before the last change of customer c1 at \(Self.t); "
                            + "business time runs forward: date the command at or after \(Self.t)"))
        }
    }

    @Test func aCommandDatedBeforeTheCreationOfARowItNamesIsRefused() async throws {
        try await withStore { connection, _ in
            let executor = CommandExecutor()
            _ = try await executor.execute(Self.create(), requestID: nil, on: connection)
            let refused = await Self.rejection {
                try await executor.execute(Self.draft(at: Self.later(-60)), requestID: nil, on: connection)
            }
            #expect(refused?.code == .invalidState)
            #expect(refused?.detail.contains("\(Self.later(-60))") == true)
            #expect(refused?.detail.contains("\(Self.t)") == true)
        }
    }

    @Test func infiniteTimesAreRefused() async throws {
        try await withStore { connection, _ in
            for time in [PostgresTimestamp.infinity, .negativeInfinity] {
                let refused = await Self.rejection {
                    try await CommandExecutor().execute(Self.create(at: time), requestID: nil, on: connection)
                }
                #expect(
                    refused == CommandRejection(.invalidInput, nil, nil, "create_customer: at is \(time); a command happens at a finite time"))
            }
            let stored = try await storedEvents("customer-c1", connection)
            #expect(stored.isEmpty)
        }
    }

    // MARK: 3. time zones

    @Test func aCustomerTimeZoneMustBeOnePostgreSQLKnows() async throws {
        try await withStore { connection, _ in
            let executor = CommandExecutor()
            let refused = await Self.rejection {
                try await executor.execute(Self.create(timeZone: "Mars/Olympus"), requestID: nil, on: connection)
            }
            #expect(
                refused
                    == CommandRejection(
                        .invalidInput, .customer, nil,
                        "create_customer: time_zone \"Mars/Olympus\" is not a time zone PostgreSQL knows (pg_timezone_names); "
                            + "use an IANA name such as Europe/Paris"))
            let paris = try await executor.execute(Self.create(timeZone: "Europe/Paris"), requestID: nil, on: connection)
            #expect(paris.events.count == 1)
        }
    }

    // MARK: 4. negative totals

    @Test func aDraftWithANegativeTotalIsRefused() async throws {
        try await withStore { connection, _ in
            let executor = CommandExecutor()
            _ = try await executor.execute(Self.create(), requestID: nil, on: connection)
            let lines = [InvoiceLineInput(invoiceLineID: "l1", kind: "proration", description: "Unused time", amount: -500)]
            let refused = await Self.rejection {
                try await executor.execute(Self.draft(lines: lines, at: Self.later(10)), requestID: nil, on: connection)
            }
            #expect(refused?.code == .invalidAmount)
            #expect(refused?.detail.contains("credit note") == true)
            #expect(try await storedEvents("invoice-i1", connection).isEmpty)
        }
    }

    // MARK: 5. keys

    @Test func theKeyRuleIsTheReadRoutes() {
        #expect(CommandKey.isValid("cus_1.A-b:c@d~e+f"))
        #expect(CommandKey.isValid(String(repeating: "a", count: 200)))
        #expect(!CommandKey.isValid(String(repeating: "a", count: 201)))
        #expect(!CommandKey.isValid(""))
        #expect(!CommandKey.isValid("a\u{0}b"))
        #expect(!CommandKey.isValid("a b"))
        #expect(!CommandKey.isValid("a/b"))
        #expect(!CommandKey.isValid("é"))
    }

    @Test func everyKeyACommandNamesFollowsTheRuleOrIsRefusedNamingItsField() async throws {
        try await withStore { connection, _ in
            let executor = CommandExecutor()
            let refused = await Self.rejection { try await executor.execute(Self.create("a\u{0}b"), requestID: nil, on: connection) }
            #expect(
                refused
                    == CommandRejection(
                        .invalidInput, nil, nil, "create_customer: customer_id \"a\\0b\" is not a valid key; \(CommandKey.rule)"))
            let long = String(repeating: "k", count: 201)
            #expect(await Self.rejection { try await executor.execute(Self.create(long), requestID: nil, on: connection) }?.code == .invalidInput)
            _ = try await executor.execute(Self.create(), requestID: nil, on: connection)
            let lines = [InvoiceLineInput(invoiceLineID: "line 1", kind: "one_off", description: "Setup", quantity: "1", unitAmount: "10.00")]
            let line = await Self.rejection {
                try await executor.execute(Self.draft(lines: lines, at: Self.later(10)), requestID: nil, on: connection)
            }
            #expect(line?.detail == "draft_invoice: lines[0].invoice_line_id \"line 1\" is not a valid key; \(CommandKey.rule)")
            let ids = BillingCommand.finalizeInvoice(FinalizeInvoice(invoiceID: "i1", creditApplicationIDs: ["ok", "b\n"], at: Self.later(20)))
            #expect(
                await Self.rejection { try await executor.execute(ids, requestID: nil, on: connection) }?.detail
                    == "finalize_invoice: credit_application_ids[1] \"b\\n\" is not a valid key; \(CommandKey.rule)")
        }
    }

    // MARK: 6. times carry a zone

    @Test func aTimeWithoutAZoneIsRefusedInCommandJSON() throws {
        let decoder = JSONDecoder()
        func decode(_ json: String) throws -> BillingCommand { try decoder.decode(BillingCommand.self, from: Data(json.utf8)) }
        #expect(throws: DecodingError.self) {
            try decode(#"{"command":"archive_customer","customer_id":"c","at":"2026-11-03T10:00:00"}"#)
        }
        do {
            _ = try decode(#"{"command":"archive_customer","customer_id":"c","at":"2026-11-03 10:00:00.5"}"#)
            Issue.record("a zoneless time was accepted")
        } catch DecodingError.dataCorrupted(let context) {
            #expect(context.codingPath.map(\.stringValue) == ["at"])
            #expect(context.debugDescription.hasPrefix("archive_customer: at is a time without a zone"))
        }
        #expect(throws: DecodingError.self) {
            try decode(
                #"{"command":"draft_invoice","invoice_id":"i","customer_id":"c","at":"2026-11-03T10:00:00Z","lines":[{"invoice_line_id":"l","kind":"usage","period_start":"2026-11-01T00:00:00"}]}"#
            )
        }
        let z = try decode(#"{"command":"archive_customer","customer_id":"c","at":"2026-11-03T10:00:00Z"}"#)
        let offset = try decode(#"{"command":"archive_customer","customer_id":"c","at":"2026-11-03T11:00:00+01:00"}"#)
        let negative = try decode(#"{"command":"archive_customer","customer_id":"c","at":"2026-11-03T05:00:00-05"}"#)
        #expect(z.at == Self.t)
        #expect(offset.at == Self.t)
        #expect(negative.at == Self.t)
    }

    // MARK: 8. grammar

    // MARK: 9. currencies

}
