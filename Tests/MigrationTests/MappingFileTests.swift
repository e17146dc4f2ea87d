import Mapping
import Billing
import Foundation
import Migration
import Testing

private func load(_ yaml: String) throws(MappingError) -> MappingFile {
    try MappingFile(yaml: yaml, file: "test.yaml")
}

/// The error loading `yaml` throws (the test fails if it loads).
private func loadError(_ yaml: String) throws -> MappingError {
    do {
        _ = try load(yaml)
    } catch {
        return error
    }
    Issue.record("the mapping loaded, but an error was expected")
    throw CancellationError()
}

private let minimalInvoice = """
    version: 1
    amounts: major
    entities:
      invoice:
        key: invoice_id
        query: SELECT 1
    """

@Suite("Mapping file: loading and validation")
struct MappingFileTests {
    @Test func theReferenceMappingLoadsAllNineEntitiesInCanonicalOrder() throws {
        let mapping = try MappingTestSupport.referenceMapping()
        #expect(mapping.version == 1)
        #expect(mapping.amounts == .major)
        #expect(mapping.defaultCurrency == nil)
        #expect(mapping.entities.map(\.entity) == referenceEntities)
        #expect(mapping.unmappedEntities == Entity.allCases.filter { !referenceEntities.contains($0) })
        #expect(mapping.entities.map(\.key) == referenceEntities.map(\.keyColumn))
        #expect(mapping.entities.filter { $0.historyQuery != nil }.map(\.entity) == [.subscription])
        #expect(
            mapping[entity: .invoice]?.sources == [
                MappingFile.Source(
                    table: "legacy.customers", columns: [],
                    keys:
                        "SELECT i.id::text FROM legacy.invoices i JOIN changed c ON c.id = i.customer_id WHERE i.currency IS NULL"
                ),
                MappingFile.Source(table: "legacy.invoices", key: "id"),
            ])
        #expect(mapping.entities.filter { $0.byKey == nil }.map(\.entity) == [.plan])
        #expect(
            mapping[entity: .subscription]?.sources.map(\.description) == [
                "legacy.subscriptions.id", "legacy.subscription_history.subscription_id",
            ])
        #expect(mapping[entity: .invoice]?.query.contains("ELSE 'unknown:' || i.status") == true)
        for entity in Entity.allCases {
            #expect(mapping.amounts(for: entity) == .major)
            #expect(mapping.defaultCurrency(for: entity) == nil)
        }
    }

    @Test func entitiesMayBeOmitted() throws {
        let mapping = try load(minimalInvoice)
        #expect(mapping.entities.map(\.entity) == [.invoice])
        #expect(
            mapping.unmappedEntities == [
                .customer, .plan, .subscription, .invoiceLine, .payment, .refund, .creditNote, .balanceTransaction,
                .billingEntity, .paymentAllocation, .wallet, .walletTransaction, .creditApplication, .chargeback,
                .paymentTransaction,
            ])
        #expect(mapping.converter(for: .invoice) != nil)
        #expect(mapping.converter(for: .payment) == nil)
        #expect(mapping.entitySources().map(\.entity) == [.invoice])
    }

    @Test func theKeyMayBeLeftOutAndDefaultsToTheCanonicalKeyColumn() throws {
        let mapping = try load("version: 1\nentities:\n  customer:\n    query: SELECT 1\n")
        #expect(mapping[entity: .customer]?.key == "customer_id")
    }

    @Test func perEntityAmountsAndDefaultCurrencyOverrideTheFilesSettings() throws {
        let mapping = try load(
            """
            version: 1
            amounts: major
            default_currency: USD
            entities:
              customer:
                query: SELECT 1
                default_currency: null
              invoice:
                query: SELECT 1
                default_currency: EUR
              payment:
                query: SELECT 1
                amounts: minor
            """)
        #expect(mapping.amounts(for: .invoice) == .major)
        #expect(mapping.amounts(for: .payment) == .minor)
        #expect(mapping.defaultCurrency(for: .invoice) == .eur)
        #expect(mapping.defaultCurrency(for: .payment) == .usd)
        #expect(mapping.defaultCurrency(for: .customer) == nil)
        #expect(mapping[entity: .customer]?.defaultCurrency == MappingFile.CurrencyDefault.none)
        let payments = try #require(mapping.converter(for: .payment))
        #expect(payments.amounts == .minor)
        #expect(payments.defaultCurrency == .usd)
    }

    @Test func queriesLoseTrailingSemicolonsAndEndWithANewline() throws {
        let mapping = try load(
            """
            version: 1
            entities:
              customer:
                query: |
                  SELECT c.id::text AS customer_id FROM customers c -- all of them;
                  ;
            """)
        // The semicolon ending the comment goes too: harmless, it was in a comment.
        #expect(
            mapping[entity: .customer]?.query == "SELECT c.id::text AS customer_id FROM customers c -- all of them\n")
    }

    @Test func theFingerprintIgnoresLayoutButFollowsMeaning() throws {
        let base = try load(minimalInvoice)
        let reformatted = try load(
            """
            # a comment
            version: 1
            amounts: major   # units
            entities:
              invoice: { key: invoice_id, query: "SELECT 1" }
            """)
        let changed = try load(minimalInvoice.replacing("SELECT 1", with: "SELECT 2"))
        let minor = try load(minimalInvoice.replacing("amounts: major", with: "amounts: minor"))
        #expect(base.fingerprint.count == 32)
        #expect(base.fingerprint == reformatted.fingerprint)
        #expect(base.fingerprint != changed.fingerprint)
        #expect(base.fingerprint != minor.fingerprint)
    }

    // MARK: Receivables

    @Test func receivableRulesDefaultToRefundsAndChargebacksKeepingInvoicesPaid() throws {
        let plain = try load(minimalInvoice)
        #expect(plain.receivables == .standard)
        #expect(plain.receivables.refunds == .keepPaid)
        #expect(plain.receivables.chargebacks == .keepPaid)
        let declared = try load(
            minimalInvoice.replacing("amounts: major", with: "amounts: major\nreceivables: { refunds: reopen, chargebacks: keep_paid }"))
        #expect(declared.receivables == MappingFile.ReceivableRules(refunds: .reopen, chargebacks: .keepPaid))
        #expect(declared.receivables.description == "refunds: reopen, chargebacks: keep_paid")
        let one = try load(minimalInvoice.replacing("amounts: major", with: "amounts: major\nreceivables:\n  refunds: reopen"))
        #expect(one.receivables == MappingFile.ReceivableRules(refunds: .reopen, chargebacks: .keepPaid))
    }

    @Test func receivableRulesOtherThanTheDefaultsChangeTheFingerprint() throws {
        func with(_ receivables: String) throws -> String {
            try load(minimalInvoice.replacing("amounts: major", with: "amounts: major\nreceivables: " + receivables))
                .fingerprint
        }
        let plain = try load(minimalInvoice).fingerprint
        #expect(try with("{ refunds: keep_paid, chargebacks: keep_paid }") == plain)
        #expect(try with("{}") == plain)
        let refunds = try with("{ refunds: reopen }")
        let chargebacks = try with("{ chargebacks: reopen }")
        let both = try with("{ refunds: reopen, chargebacks: reopen }")
        #expect(Set([plain, refunds, chargebacks, both]).count == 4)
    }

    @Test func unknownReceivableKeysAndValuesAreRefusedWithTheirLine() throws {
        let error = try loadError(
            minimalInvoice.replacing(
                "amounts: major", with: "amounts: major\nreceivables:\n  refund: reopen\n  chargebacks: reverse"))
        #expect(error.codes == [.unknownField, .invalidValue])
        #expect(error.issues.map(\.path) == ["receivables.refund", "receivables.chargebacks"])
        #expect(error.issues.map(\.line) == [4, 5])
        #expect(
            error.issues[0].message
                == "unknown field \"refund\" in receivables; did you mean refunds? Allowed: refunds, chargebacks")
        #expect(
            error.issues[1].message
                == "expected keep_paid or reopen, got \"reverse\": whether a lost chargeback leaves its invoice paid "
                + "(keep_paid) or owed again (reopen)")
        let scalar = try loadError(minimalInvoice.replacing("amounts: major", with: "amounts: major\nreceivables: reopen"))
        #expect(scalar.codes == [.invalidValue])
        #expect(
            scalar.issues[0].message == "expected `{ refunds: keep_paid | reopen, chargebacks: keep_paid | reopen }`")
    }

    // MARK: Errors

    @Test func anUnsupportedVersionIsRefused() throws {
        let error = try loadError(minimalInvoice.replacing("version: 1", with: "version: 2"))
        #expect(error.codes == [.unsupportedVersion])
        #expect(error.issues[0].field == "version")
        #expect(
            error.description == "test.yaml:1:10: version: version 2 is not supported: this Ledgerlift reads version 1")
        let missing = try loadError(minimalInvoice.replacing("version: 1\n", with: ""))
        #expect(missing.codes == [.unsupportedVersion])
        #expect(missing.description == "test.yaml:1:1: version: missing: write `version: 1` at the top of the file")
    }

    @Test func anUnknownEntityNameIsRefusedWithASuggestion() throws {
        let error = try loadError(minimalInvoice.replacing("  invoice:", with: "  invoices:"))
        #expect(error.codes == [.unknownEntity])
        #expect(error.issues[0].entity == "invoices")
        #expect(error.issues[0].line == 4)
        #expect(
            error.issues[0].message.hasPrefix(
                "unknown entity \"invoices\"; did you mean invoice? Canonical entities: customer, plan,"))
        let lineItems = try loadError(minimalInvoice.replacing("  invoice:", with: "  invoice_line_items:"))
        #expect(lineItems.issues[0].message.contains("did you mean invoice_line?"))
    }

    @Test func aMissingOrEmptyQueryIsRefusedNamingTheEntity() throws {
        let error = try loadError(minimalInvoice.replacing("    query: SELECT 1", with: "    sources: []"))
        #expect(error.codes == [.missingField])
        #expect(error.issues[0].entity == "invoice")
        #expect(error.issues[0].field == "query")
        #expect(error.issues[0].path == "entities.invoice.query")
        #expect(
            error.issues[0].message.hasPrefix(
                "missing: write the SQL that returns invoice's canonical columns (invoice_id, customer_id,"))
        let empty = try loadError(minimalInvoice.replacing("query: SELECT 1", with: "query: \"  ;  \""))
        #expect(empty.codes == [.missingField])
        #expect(empty.issues[0].message == "is empty: write the SQL text of a query")
    }

    @Test func aBadAmountsValueIsRefusedAtTheFileOrTheEntity() throws {
        let file = try loadError(minimalInvoice.replacing("amounts: major", with: "amounts: cents"))
        #expect(file.codes == [.invalidValue])
        #expect(file.issues[0].entity == nil)
        #expect(file.issues[0].field == "amounts")
        #expect(
            file.description
                == "test.yaml:2:10: amounts: expected major or minor, got \"cents\" (major: decimals such as 12.30; minor: integers such as 1230)"
        )
        let entity = try loadError(minimalInvoice + "\n    amounts: Major")
        #expect(entity.codes == [.invalidValue])
        #expect(entity.issues[0].path == "entities.invoice.amounts")
        #expect(entity.issues[0].line == 7)
    }

    @Test func anEntityWithAmountsNeedsToKnowTheirUnit() throws {
        let error = try loadError(minimalInvoice.replacing("amounts: major\n", with: ""))
        #expect(error.codes == [.missingField])
        #expect(error.issues[0].path == "entities.invoice.amounts")
        #expect(
            error.issues[0].message.hasPrefix(
                "invoice has amount columns (subtotal, discount, tax, total, amount_paid, amount_due, rounding, credit_applied) but no `amounts` is set"
            ))
        // Customers hold no money, so they need no unit.
        #expect(throws: Never.self) { try load("version: 1\nentities:\n  customer:\n    query: SELECT 1\n") }
    }

    @Test func anUnknownDefaultCurrencyIsRefused() throws {
        let file = try loadError(
            minimalInvoice.replacing("amounts: major", with: "amounts: major\ndefault_currency: XXY"))
        #expect(file.codes == [.unknownCurrency])
        #expect(file.issues[0].field == "default_currency")
        #expect(file.issues[0].message == "\"XXY\" is not an ISO 4217 currency code")
        let entity = try loadError(minimalInvoice + "\n    default_currency: usd")
        #expect(entity.codes == [.unknownCurrency])
        #expect(entity.issues[0].path == "entities.invoice.default_currency")
        #expect(entity.issues[0].message.hasPrefix("\"usd\" is not a currency code"))
    }

    @Test func anUnknownFieldIsATypoNotSilence() throws {
        let error = try loadError(minimalInvoice + "\n    defualt_currency: USD")
        #expect(error.codes == [.unknownField])
        #expect(error.issues[0].path == "entities.invoice.defualt_currency")
        #expect(
            error.issues[0].message
                == "unknown field \"defualt_currency\" in an entity; did you mean default_currency? Allowed: key, query, by_key, file, sources, history, amounts, default_currency, currency_exponents, checks, write_back"
        )
        let history = try loadError(minimalInvoice + "\n    history:\n      sql: SELECT 1")
        #expect(history.codes == [.unknownField, .missingField])
        #expect(history.issues.map(\.path) == ["entities.invoice.history.sql", "entities.invoice.history.query"])
    }

    @Test func aKeyOtherThanTheCanonicalKeyColumnIsRefused() throws {
        let error = try loadError(minimalInvoice.replacing("key: invoice_id", with: "key: id"))
        #expect(error.codes == [.invalidValue])
        #expect(error.issues[0].path == "entities.invoice.key")
        #expect(
            error.issues[0].message
                == "the key of invoice is invoice_id (the canonical key column), got \"id\": return your legacy key as text, e.g. `id::text AS invoice_id`"
        )
    }

    @Test func sourcesNeedATableAndAKey() throws {
        let error = try loadError(minimalInvoice + "\n    sources:\n      - { table: invoices }\n      - invoices")
        #expect(error.codes == [.missingField, .invalidValue])
        #expect(error.issues.map(\.path) == ["entities.invoice.sources[0].key", "entities.invoice.sources[1]"])
    }

    @Test func invalidYAMLAndRepeatedKeysAreReportedWithTheirLine() throws {
        let broken = try loadError("version: 1\nentities:\n  invoice:\n    query: [SELECT 1\n")
        #expect(broken.codes == [.invalidYAML])
        #expect(broken.issues[0].line != nil)
        #expect(broken.issues[0].message.hasPrefix("not valid YAML: "))
        let repeated = try loadError(minimalInvoice + "\n  invoice:\n    query: SELECT 2")
        #expect(repeated.codes == [.invalidYAML])
        #expect(repeated.issues[0].message == "a key appears twice in one mapping: invoice")
    }

    @Test func everyProblemIsReportedAtOnce() throws {
        let error = try loadError(
            """
            version: 1
            amounts: cents
            default_currency: XXY
            entities:
              invoices:
                query: SELECT 1
              payment:
                key: payment_id
            """)
        #expect(error.codes == [.invalidValue, .unknownCurrency, .unknownEntity, .missingField])
        #expect(
            error.issues.map(\.path) == ["amounts", "default_currency", "entities.invoices", "entities.payment.query"])
        #expect(error.description.split(separator: "\n").count == 4)
    }

    @Test func aFileThatCannotBeReadSaysSo() throws {
        do {
            _ = try MappingFile.load(path: "/nonexistent/mapping.yaml")
            Issue.record("loaded a file that does not exist")
        } catch {
            #expect(error.codes == [.unreadableFile])
            #expect(error.description == "/nonexistent/mapping.yaml: cannot read the mapping file: no such file")
        }
    }
}
