import Billing
import Commands
import Postgres
import Testing

/// The customer commands decided on rows the tests make: the exact rows each decides, and each
/// rule's refusal with its stable code.
@Suite("Customer commands: rules and decided rows")
struct CustomerRulesTests {
    static let created = PostgresTimestamp("2025-03-01T09:00:00Z")!
    static let now = PostgresTimestamp("2025-10-31T12:00:00.123456Z")!

    static func customer(
        _ id: String = "7", currency: String? = "USD", archivedAt: PostgresTimestamp? = nil,
        attributes: [String: String?] = ["balance": "0.00", "credit_balance": "0"]
    ) -> CanonicalRow {
        CanonicalRow(
            entity: .customer,
            values: [
                "customer_id": .text(id), "email": .text("ada@acme.example"), "name": .text("Acme Labs Inc"),
                "currency": currency.map(CanonicalValue.text) ?? .null, "created_at": .timestamp(created),
                "updated_at": .timestamp(created), "archived_at": archivedAt.map(CanonicalValue.timestamp) ?? .null,
                "time_zone": .text("America/New_York"),
            ],
            attributes: attributes)
    }

    static func row(_ entity: Entity, _ key: String, customer: String = "7", _ values: [String: CanonicalValue])
        -> CanonicalRow
    {
        var all = values
        all[entity.keyColumn] = .text(key)
        all["customer_id"] = .text(customer)
        return CanonicalRow(entity: entity, values: all)
    }

    /// A state holding `rows` (each at version 2) and the children found for `children`.
    static func state(_ rows: [CanonicalRow], children: [Requirement: [String]] = [:], ended: [String] = [])
        -> CommandState
    {
        var streams: [String: StreamState] = [:]
        for row in rows { streams[row.streamID] = StreamState(row: row, version: 2, lastOccurredAt: created) }
        for stream in ended { streams[stream] = StreamState(row: nil, version: 3, lastOccurredAt: created) }
        return CommandState(streams: streams, children: children)
    }

    static func rejection(_ command: BillingCommand, _ state: CommandState) -> CommandRejection? {
        do {
            _ = try command.decide(in: state)
            return nil
        } catch {
            return error
        }
    }

    // MARK: create_customer

    @Test func createCustomerDecidesTheNewRow() throws {
        let command = BillingCommand.createCustomer(
            CreateCustomer(
                customerID: "46", email: "li@nordwind.example", name: "Nordwind GmbH", currency: "EUR",
                timeZone: "Europe/Berlin", at: Self.now))
        #expect(command.requirements(given: CommandState()) == [.stream(.customer, key: "46")])
        let decision = try command.decide(in: CommandState())
        #expect(
            decision.rows == [
                CanonicalRow(
                    entity: .customer,
                    values: [
                        "customer_id": .text("46"), "email": .text("li@nordwind.example"),
                        "name": .text("Nordwind GmbH"),
                        "currency": .text("EUR"), "created_at": .timestamp(Self.now),
                        "updated_at": .timestamp(Self.now),
                        "archived_at": .null, "time_zone": .text("Europe/Berlin"), "billing_entity_id": .null,
                        "parent_customer_id": .null, "payment_delegated": .boolean(false),
                    ])
            ])
        #expect(decision.deleted.isEmpty)
    }

    @Test func createCustomerRefusesACurrencyThatIsNoUpperCaseISOCode() throws {
        for bad in ["ZZZ", "US", "EURO", "€", "jpy"] {
            let command = BillingCommand.createCustomer(CreateCustomer(customerID: "46", currency: bad, at: Self.now))
            let refused = Self.rejection(command, CommandState())
            #expect(refused?.code == .invalidInput, "\(bad): \(String(describing: refused))")
            #expect(refused?.detail.contains("is not a known ISO 4217 code") == true, "\(bad)")
        }
        let yen = BillingCommand.createCustomer(CreateCustomer(customerID: "46", currency: "JPY", at: Self.now))
        #expect(try yen.decide(in: CommandState()).rows.first?["currency"] == .text("JPY"))
    }

    @Test func createCustomerWithoutCurrencyLeavesItNull() throws {
        let decision = try BillingCommand.createCustomer(CreateCustomer(customerID: "47", at: Self.now)).decide(
            in: CommandState())
        #expect(decision.rows.count == 1)
        #expect(decision.rows[0]["currency"] == .null)
        #expect(decision.rows[0]["email"] == .null)
        #expect(decision.rows[0]["created_at"] == .timestamp(Self.now))
    }

    @Test func createCustomerRefusesAnExistingKey() {
        let command = BillingCommand.createCustomer(CreateCustomer(customerID: "7", currency: "USD", at: Self.now))
        let rejection = Self.rejection(command, Self.state([Self.customer()]))
        #expect(rejection?.code == .alreadyExists)
        #expect(rejection?.entity == .customer)
        #expect(rejection?.key == "7")
    }

    @Test func createCustomerRefusesTheKeyOfAnEndedStream() {
        let command = BillingCommand.createCustomer(CreateCustomer(customerID: "8", at: Self.now))
        #expect(Self.rejection(command, Self.state([], ended: ["customer-8"]))?.code == .alreadyExists)
    }

    @Test func createCustomerRefusesAnUnknownCurrency() {
        let command = BillingCommand.createCustomer(CreateCustomer(customerID: "48", currency: "XXY", at: Self.now))
        #expect(Self.rejection(command, CommandState())?.code == .invalidInput)
    }

    @Test func createCustomerRefusesAnEmptyKey() {
        let command = BillingCommand.createCustomer(CreateCustomer(customerID: "", at: Self.now))
        #expect(Self.rejection(command, CommandState())?.code == .invalidInput)
    }

    // MARK: update_customer

    @Test func updateCustomerChangesTheEmailAndBumpsUpdatedAt() throws {
        let command = BillingCommand.updateCustomer(
            UpdateCustomer(customerID: "7", email: "billing+12@acme.example", at: Self.now))
        #expect(command.requirements(given: CommandState()) == [.stream(.customer, key: "7")])
        let decision = try command.decide(in: Self.state([Self.customer()]))
        var expected = Self.customer()
        expected.values["email"] = .text("billing+12@acme.example")
        expected.values["updated_at"] = .timestamp(Self.now)
        #expect(decision.rows == [expected])
        // The legacy-only cached balances travel unchanged.
        #expect(decision.rows[0].attributes == ["balance": "0.00", "credit_balance": "0"])
    }

    @Test func updateCustomerChangesTheName() throws {
        let command = BillingCommand.updateCustomer(
            UpdateCustomer(customerID: "7", name: "Acme Labs LLC", at: Self.now))
        let decision = try command.decide(in: Self.state([Self.customer()]))
        var expected = Self.customer()
        expected.values["name"] = .text("Acme Labs LLC")
        expected.values["updated_at"] = .timestamp(Self.now)
        #expect(decision.rows == [expected])
    }

    @Test func updateCustomerRefusesAnEditOfNothing() {
        let command = BillingCommand.updateCustomer(UpdateCustomer(customerID: "7", at: Self.now))
        #expect(Self.rejection(command, Self.state([Self.customer()]))?.code == .invalidInput)
    }

    @Test func updateCustomerRefusesAMissingCustomer() {
        let command = BillingCommand.updateCustomer(UpdateCustomer(customerID: "9", name: "X", at: Self.now))
        #expect(Self.rejection(command, Self.state([Self.customer()]))?.code == .notFound)
    }

    @Test func updateCustomerRefusesAnArchivedCustomer() {
        let command = BillingCommand.updateCustomer(UpdateCustomer(customerID: "7", name: "X", at: Self.now))
        let rejection = Self.rejection(command, Self.state([Self.customer(archivedAt: Self.created)]))
        #expect(rejection?.code == .invalidState)
        #expect(rejection?.detail.contains("archived") == true)
    }

    // MARK: archive_customer

    static let archive = ArchiveCustomer(customerID: "7", at: now)
    static let subscriptions = Requirement.children(.subscription, column: "customer_id", value: "7")
    static let invoices = Requirement.children(.invoice, column: "customer_id", value: "7")
    static let payments = Requirement.children(.payment, column: "customer_id", value: "7")
    static let transactions = Requirement.children(.balanceTransaction, column: "customer_id", value: "7")

    /// A customer with a canceled subscription, a paid and a void invoice, a succeeded and a
    /// failed payment, and credit fully used (−10.00 then +10.00): nothing running, owed or held.
    static func settledCustomer(_ extra: [CanonicalRow] = []) -> CommandState {
        var rows = [
            customer(),
            row(.subscription, "71", ["status": .text("canceled")]),
            row(.invoice, "701", ["status": .text("paid"), "amount_due": .amount(0)]),
            row(.invoice, "702", ["status": .text("void"), "amount_due": .amount(0)]),
            row(.payment, "7001", ["status": .text("succeeded"), "amount": .amount(9900)]),
            row(.payment, "7002", ["status": .text("failed"), "amount": .amount(9900)]),
            row(.balanceTransaction, "7101", ["amount": .amount(-1000), "type": .text("credit_note")]),
            row(.balanceTransaction, "7102", ["amount": .amount(1000), "type": .text("applied_to_invoice")]),
        ]
        rows += extra
        func keys(_ entity: Entity) -> [String] { rows.filter { $0.entity == entity }.map(\.key).sorted() }
        return state(
            rows,
            children: [
                subscriptions: keys(.subscription), invoices: keys(.invoice), payments: keys(.payment),
                transactions: keys(.balanceTransaction),
            ])
    }

    @Test func archiveCustomerReadsTheCustomersChildren() {
        #expect(
            BillingCommand.archiveCustomer(Self.archive).requirements(given: CommandState())
                == [.stream(.customer, key: "7"), Self.subscriptions, Self.invoices, Self.payments, Self.transactions])
    }

    @Test func archiveCustomerSetsArchivedAt() throws {
        let decision = try BillingCommand.archiveCustomer(Self.archive).decide(in: Self.settledCustomer())
        var expected = Self.customer()
        expected.values["archived_at"] = .timestamp(Self.now)
        expected.values["updated_at"] = .timestamp(Self.now)
        #expect(decision.rows == [expected])
    }

    @Test func archiveCustomerWithNoChildrenAtAll() throws {
        let state = Self.state(
            [Self.customer()],
            children: [Self.subscriptions: [], Self.invoices: [], Self.payments: [], Self.transactions: []])
        let decision = try BillingCommand.archiveCustomer(Self.archive).decide(in: state)
        #expect(decision.rows.map { $0["archived_at"] } == [.timestamp(Self.now)])
    }

    @Test(arguments: ["active", "trialing", "past_due", "unpaid", "incomplete", "paused"])
    func archiveCustomerRefusesASubscriptionThatIsNotCanceled(status: String) {
        let state = Self.settledCustomer([Self.row(.subscription, "72", ["status": .text(status)])])
        let rejection = Self.rejection(.archiveCustomer(Self.archive), state)
        #expect(rejection?.code == .invalidState)
        #expect(rejection?.detail.contains("subscription 72 is \(status)") == true)
    }

    @Test(arguments: ["draft", "open", "uncollectible"])
    func archiveCustomerRefusesAnUnsettledInvoice(status: String) {
        let state = Self.settledCustomer([Self.row(.invoice, "703", ["status": .text(status)])])
        let rejection = Self.rejection(.archiveCustomer(Self.archive), state)
        #expect(rejection?.code == .invalidState)
        #expect(rejection?.detail.contains("invoice 703 is \(status)") == true)
    }

    @Test func archiveCustomerRefusesAPendingPayment() {
        let state = Self.settledCustomer([Self.row(.payment, "7003", ["status": .text("pending")])])
        let rejection = Self.rejection(.archiveCustomer(Self.archive), state)
        #expect(rejection?.code == .invalidState)
        #expect(rejection?.detail.contains("payment 7003 is pending") == true)
    }

    @Test func archiveCustomerRefusesUnappliedCredit() {
        let state = Self.settledCustomer([Self.row(.balanceTransaction, "7103", ["amount": .amount(-2500)])])
        let rejection = Self.rejection(.archiveCustomer(Self.archive), state)
        #expect(rejection?.code == .invalidState)
        #expect(rejection?.detail.contains("2500 minor units of unapplied credit") == true)
    }

    @Test func archiveCustomerRefusesABalanceOwed() {
        let state = Self.settledCustomer([Self.row(.balanceTransaction, "7103", ["amount": .amount(300)])])
        #expect(Self.rejection(.archiveCustomer(Self.archive), state)?.code == .invalidState)
    }

    @Test func archiveCustomerRefusesAMissingCustomer() {
        let command = BillingCommand.archiveCustomer(ArchiveCustomer(customerID: "99", at: Self.now))
        #expect(Self.rejection(command, CommandState())?.code == .notFound)
    }

    @Test func archiveCustomerRefusesAnArchivedCustomer() {
        let state = Self.state(
            [Self.customer(archivedAt: Self.created)],
            children: [Self.subscriptions: [], Self.invoices: [], Self.payments: [], Self.transactions: []])
        #expect(Self.rejection(.archiveCustomer(Self.archive), state)?.code == .invalidState)
    }
}
