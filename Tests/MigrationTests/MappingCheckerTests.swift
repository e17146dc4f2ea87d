import Billing
import Fixtures
import Foundation
import Migration
import Postgres
import Testing

@testable import Mapping

/// Rows per entity in the reference and the dirty seeds (fixtures/README.md).
let referenceRowCounts: [Entity: Int64] = [
    .customer: 45, .plan: 11, .subscription: 48, .invoice: 146, .invoiceLine: 169, .payment: 151, .refund: 5,
    .creditNote: 5, .balanceTransaction: 12,
]
/// The entities the reference and dirty mappings map: the nine of every billing system (the
/// wider model's entities are exercised by the Lago and Kill Bill fixtures).
let referenceEntities: [Entity] = [
    .customer, .plan, .subscription, .invoice, .invoiceLine, .payment, .refund, .creditNote, .balanceTransaction,
]
let dirtyRowCounts: [Entity: Int64] = [
    .customer: 30, .plan: 7, .subscription: 24, .invoice: 71, .invoiceLine: 77, .payment: 70, .refund: 3,
    .creditNote: 2, .balanceTransaction: 7,
]

/// The reference mapping with one entity's query (or history query) replaced.
private func referenceMapping(
    replacing entity: Entity, query: String? = nil, history: String? = nil, sources: [MappingFile.Source]? = nil,
    amounts: MappingFile.AmountUnit? = nil, checks: [SourceCheck]? = nil
) throws -> MappingFile {
    let reference = try MappingTestSupport.referenceMapping()
    let entities = reference.entities.map { mapping -> MappingFile.EntityMapping in
        guard mapping.entity == entity else { return mapping }
        // A replaced query makes the entity's by_key meaningless: it is read from the query then.
        return MappingFile.EntityMapping(
            entity: entity, query: query ?? mapping.query, sources: sources ?? mapping.sources,
            historyQuery: history ?? mapping.historyQuery, amounts: amounts ?? mapping.amounts,
            checks: checks ?? mapping.checks, byKey: query == nil ? mapping.byKey : nil)
    }
    return MappingFile(amounts: reference.amounts, entities: entities, file: "broken.yaml")
}

@Suite("mapping check against a live legacy database")
struct MappingCheckerTests {
    static let superuserWarning =
        "warning: customer.sources: the legacy role is a superuser: a mapping query runs read-only, but dblink_exec "
        + "or a function that writes could still change legacy data. Connect --legacy with a role that can only "
        + "SELECT (docs/security.md)."

    /// The reference schema records no moment for these steps: they are dated by inference.
    static let referenceDatingNotes = [
        "note: invoice.marked_uncollectible_at: InvoiceMarkedUncollectible will be dated at finalized_at, else "
            + "created_at, inferred: return `marked_uncollectible_at` if legacy records that moment",
        "note: payment.succeeded_at: PaymentSucceeded will be dated at created_at, inferred: return `succeeded_at` if "
            + "legacy records that moment",
        "note: payment.failed_at: PaymentFailed will be dated at created_at, inferred: return `failed_at` if legacy "
            + "records that moment",
        "note: payment.canceled_at: PaymentCanceled will be dated at created_at, inferred: return `canceled_at` if "
            + "legacy records that moment",
        "note: credit_note.applied_at: CreditNoteApplied will be dated at created_at, inferred: return `applied_at` if "
            + "legacy records that moment",
    ]

    @Test func theReferenceMappingIsCleanOnTheReferenceFixture() async throws {
        let mapping = try MappingTestSupport.referenceMapping()
        try await MappingTestSupport.withLegacy(.reference) { connection, dsn in
            let report = try await MappingChecker(mapping).check(connection)
            // The tests connect as a superuser: the one warning is that the role could write.
            #expect(report.warnings.map(\.code) == [.sourceWritable])
            #expect(report.warnings.map(\.description) == [MappingCheckerTests.superuserWarning])
            #expect(report.notes.map(\.description) == MappingCheckerTests.referenceDatingNotes)
            #expect(report.isClean)
            #expect(report.unmapped == Entity.allCases.filter { !referenceEntities.contains($0) })
            #expect(report.entities.map(\.entity) == referenceEntities)
            let datingColumns: [Entity: Set<String>] = [
                .payment: ["succeeded_at", "failed_at", "canceled_at"], .invoice: ["marked_uncollectible_at"],
                .creditNote: ["applied_at"],
            ]
            for check in report.entities {
                #expect(check.rowCount == referenceRowCounts[check.entity], "\(check.entity)")
                let unmapped = datingColumns[check.entity] ?? []
                // The wider model's optional columns are left out (customer.time_zone is mapped).
                #expect(
                    check.columnsReturned
                        == check.entity.columns.filter { !$0.isOptional || $0.name == "time_zone" }.map(\.name)
                        .filter { !unmapped.contains($0) },
                    "\(check.entity)")
            }
            #expect(report[entity: .subscription]?.historyRowCount == 22)
            #expect(report[entity: .customer]?.attributes == ["balance", "credit_balance"])
            #expect(report[entity: .invoice]?.attributes == ["tax_rate"])
            #expect(report[entity: .payment]?.attributes == ["method"])
            #expect(report[entity: .plan]?.attributes == [])

            let text = report.rendered(database: ConnectionString.masked(dsn))
            #expect(
                text.contains(
                    """
                    entity               status   columns  rows  history  attributes
                    -------------------  -------  -------  ----  -------  -----------------------
                    customer             warning      8/8    45           balance, credit_balance
                    plan                 ok         10/10    11
                    subscription         ok         15/15    48       22
                    invoice              ok         21/22   146           tax_rate
                    """))
            #expect(
                text.contains(
                    "  note    payment.succeeded_at: PaymentSucceeded will be dated at created_at, inferred: "
                        + "return `succeeded_at` if legacy records that moment\n"))
            #expect(text.hasSuffix("mapping ok: 9 entities checked, 0 errors, 1 warning, 5 notes"))
        }
    }

    static let dirtyForecast = [
        "note: customer.checks.credit_balance_mismatch: the backfill will quarantine 1 customer as "
            + "credit_balance_mismatch: 9004",
        "note: customer.checks.balance_mismatch: the backfill will quarantine 2 customer rows as balance_mismatch: "
            + "9004, 9005",
        "note: subscription.rules.subscription_chain_foreign_customer: the backfill will quarantine 1 subscription as "
            + "subscription_chain_foreign_customer: 90222 (previous_subscription_id 91011 belongs to customer 9101, "
            + "not 9022)",
        "note: subscription.rules.quantity_negative: the backfill will quarantine 1 subscription as quantity_negative: "
            + "90151 (quantity -2)",
        "note: invoice.rules.invoice_total_mismatch: the backfill will quarantine 1 invoice as invoice_total_mismatch: "
            + "901001 (total 120.00 USD but subtotal - discount + tax = 110.00 USD and lines sum to 110.00 USD)",
        "note: invoice.rules.paid_before_finalized: the backfill will quarantine 1 invoice as paid_before_finalized: "
            + "901201 (paid_at 2025-03-01 08:00:00 is before finalized_at 2025-03-04 11:00:00)",
        "note: invoice.rules.currency_mismatch: the backfill will quarantine 1 invoice as currency_mismatch: 902402 "
            + "(invoice in EUR but customer 9024 bills in USD)",
        "note: invoice.rules.duplicate_invoice_number: the backfill will quarantine 1 invoice as "
            + "duplicate_invoice_number: 902102 (number LL9021-0001 is already used by invoice 902101)",
        "note: invoice.rules.paid_without_payment: the backfill will quarantine 1 invoice as paid_without_payment: "
            + "901801 (status paid, total 99.00, but no succeeded payment, payment allocation, balance application or credit applied settles it)",
        "note: invoice.rules.payment_currency_mismatch: the backfill will quarantine 1 invoice as "
            + "payment_currency_mismatch: 902301 (payment 902301 in EUR for an invoice in USD)",
        "note: payment.rules.reference_missing: the backfill will quarantine 1 payment as reference_missing: 901103 "
            + "(invoice_id 999999 names no invoice)",
        "note: payment.rules.duplicate_provider_payment_id: the backfill will quarantine 1 payment as "
            + "duplicate_provider_payment_id: 901302 (provider_payment_id pi_3hgWADuNFInEJ9htxRubvrMja is already used "
            + "by payment 901301)",
        "note: refund.rules.refund_exceeds_payment: the backfill will quarantine 1 refund as refund_exceeds_payment: "
            + "901601 (refunds of payment 901601 total 80.00 USD, more than its amount 50.00 USD)",
        "note: refund.rules.refund_of_unsucceeded_payment: the backfill will quarantine 1 refund as "
            + "refund_of_unsucceeded_payment: 901901 (payment 901901 is failed, not succeeded)",
        "note: credit_note.rules.credit_note_balance_exceeds_total: the backfill will quarantine 1 credit_note as "
            + "credit_note_balance_exceeds_total: 90201 (balance_remaining 60.00 exceeds total 40.00)",
    ]

    @Test func theSameMappingIsCleanOnTheDirtyFixture() async throws {
        let mapping = try MappingTestSupport.referenceMapping()
        try await MappingTestSupport.withLegacy(.dirty) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            #expect(report.warnings.map(\.description) == [MappingCheckerTests.superuserWarning])
            #expect(report.notes.filter { $0.code == .datedByInference }.map(\.description) == MappingCheckerTests.referenceDatingNotes)
            // The check forecasts exactly the quarantine the backfill's checks and rules decide
            // (BackfillTests: the dirty fixture's cross-row reasons), with the first keys.
            let forecast = report.notes.filter { $0.code == .willQuarantine }.map(\.description)
            #expect(forecast == MappingCheckerTests.dirtyForecast)
            for check in report.entities {
                #expect(check.rowCount == dirtyRowCounts[check.entity], "\(check.entity)")
            }
            #expect(report[entity: .subscription]?.historyRowCount == 2)
        }
    }

    @Test func aQueryThatFailsIsReportedWithPostgresMessageAndPosition() async throws {
        let mapping = try referenceMapping(
            replacing: .invoice,
            query: "SELECT i.id::text AS invoice_id,\n       i.statuss AS status\nFROM legacy.invoices i")
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            #expect(!report.isClean)
            let errors = try #require(report[entity: .invoice]?.errors)
            #expect(errors.map(\.code) == [.queryFailed])
            #expect(errors[0].entity == .invoice)
            #expect(errors[0].part == .query)
            #expect(
                errors[0].message.hasPrefix(
                    "the query fails: column i.statuss does not exist (SQLSTATE 42703) at line 2, column 8 of the query"
                ))
            // The other entities are still checked.
            #expect(report.entities.filter(\.isClean).count == 8)
            #expect(report[entity: .payment]?.rowCount == 151)
            let text = report.rendered(database: "db")
            #expect(text.contains("\ninvoice              ERROR          -     -\n"))
            #expect(
                text.contains(
                    "  error   invoice: the query fails: column i.statuss does not exist (SQLSTATE 42703) at line 2, column 8 of the query\n"
                        + "            hint: Perhaps you meant to reference the column \"i.status\".\n"))
        }
    }

    @Test func aMissingRequiredColumnIsAnErrorAndAMissingNullableOneAWarning() async throws {
        let query = """
            SELECT p.id::text AS payment_id, p.customer_id::text AS customer_id, p.invoice_id::text AS invoice_id,
                   p.status, p.amount, p.provider_payment_id, p.created_at, p.updated_at
            FROM legacy.payments p
            """
        let mapping = try referenceMapping(replacing: .payment, query: query)
        try await MappingTestSupport.withLegacy(.reference) { connection, dsn in
            let report = try await MappingChecker(mapping).check(connection)
            let check = try #require(report[entity: .payment])
            #expect(check.errors.map(\.column) == ["currency"])
            #expect(check.errors.map(\.code) == [.columnMissing])
            #expect(
                check.errors[0].description
                    == "error: payment.currency: missing: the query must return it (ISO 4217 code as text, required)")
            #expect(check.warnings.map(\.column) == ["failure_code"])
            #expect(check.notes.map(\.column) == ["succeeded_at", "failed_at", "canceled_at"])
            #expect(
                check.warnings[0].description
                    == "warning: payment.failure_code: not returned, so every row reads it as NULL (text)")
            #expect(check.columnsReturned.count == 8)
            let text = report.rendered(database: ConnectionString.masked(dsn))
            #expect(text.contains("payment              ERROR       8/13   151\n"))
            #expect(text.contains("  error   payment.currency: missing: the query must return it"))
            #expect(
                text.hasSuffix(
                    "mapping has errors (1 error, 2 warnings, 5 notes) in: payment. Fix them and run `ledgerlift mapping check` again."
                ))
        }
    }

    @Test func aColumnOfTheWrongTypeIsReportedWithItsTypeAndAHint() async throws {
        let plans = """
            SELECT p.id AS plan_id, p.code, p.name, p.price::float8 AS amount, p.currency, p."interval",
                   p.trial_days, p.archived::int AS archived, p.created_at::date AS created_at, p.updated_at
            FROM legacy.plans p
            """
        let mapping = try referenceMapping(replacing: .plan, query: plans)
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            let errors = try #require(report[entity: .plan]?.errors)
            #expect(errors.map(\.code) == [.columnType, .columnType, .columnType, .columnType])
            #expect(
                errors.map(\.description) == [
                    "error: plan.plan_id: is int4; plan_id must be text of type text, varchar or char: cast it with ::text",
                    "error: plan.amount: is float8; money in floating point is not exact: amounts must be numeric or integer "
                        + "(a ::numeric cast keeps the value as stored, and inexact amounts are then quarantined)",
                    "error: plan.archived: is int4; archived must be boolean: turn it into one in SQL, e.g. (x = 1)",
                    "error: plan.created_at: is date; created_at must be timestamptz, or timestamp (read as UTC): "
                        + "cast the date with ::timestamp (midnight UTC)",
                ])
        }
    }

    @Test func minorAmountsRequireAnIntegerColumn() async throws {
        let mapping = try referenceMapping(replacing: .refund, amounts: .minor)
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            let errors = try #require(report[entity: .refund]?.errors)
            #expect(
                errors.map(\.description) == [
                    "error: refund.amount: is numeric; amounts: minor needs an integer column (int2, int4, int8) holding "
                        + "minor units; for decimals of the major unit (12.30) set amounts: major on this entity"
                ])
        }
    }

    @Test func duplicateKeysAreReportedWithExamples() async throws {
        // A join to a one-to-many table repeats each customer once per invoice.
        let customers = """
            SELECT c.id::text AS customer_id, c.email, c.name, c.currency, c.created_at, c.updated_at,
                   c.deleted_at AS archived_at, i.id AS invoice
            FROM legacy.customers c JOIN legacy.invoices i ON i.customer_id = c.id
            """
        let mapping = try referenceMapping(replacing: .customer, query: customers)
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            let check = try #require(report[entity: .customer])
            #expect(check.errors.map(\.code) == [.keyNotUnique])
            #expect(check.errors[0].column == "customer_id")
            #expect(
                check.errors[0].message
                    == "not unique: 38 keys appear on several rows, e.g. 9 (9 rows), 26 (8 rows), 35 (8 rows), 5 (8 rows), "
                    + "1 (5 rows). Each customer must be one row: a join to a one-to-many table repeats rows")
            #expect(check.attributes == ["invoice"])
        }
    }

    @Test func historyVersionsMustBeUniquePerKeyAndValidFrom() async throws {
        let reference = try MappingTestSupport.referenceMapping()
        let history = try #require(reference[entity: .subscription]?.historyQuery)
            .replacing(
                "coalesce(lag(h.changed_at) OVER w, s.created_at) AS valid_from", with: "s.created_at AS valid_from")
        let mapping = try referenceMapping(replacing: .subscription, history: history)
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            let check = try #require(report[entity: .subscription])
            #expect(check.errors.map(\.code) == [.historyVersionNotUnique])
            #expect(check.errors[0].location == "subscription.history.valid_from")
            #expect(
                check.errors[0].message.hasPrefix(
                    "7 versions are not unique by (subscription_id, valid_from), e.g. 91 at 2025-02-05 06:00:00 (3 rows), "
                ))
            #expect(check.historyRowCount == 22)
        }
    }

    @Test func aHistoryQueryWithoutValidFromIsAnError() async throws {
        let reference = try MappingTestSupport.referenceMapping()
        let current = try #require(reference[entity: .subscription]).query
        let mapping = try referenceMapping(replacing: .subscription, history: current)
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            #expect(
                report[entity: .subscription]?.errors.map(\.description) == [
                    "error: subscription.history.valid_from: missing: a history query returns, beside the canonical columns, "
                        + "valid_from: when each past version became valid"
                ])
        }
    }

    @Test func reservedAndRepeatedColumnNamesAreErrors() async throws {
        let refunds = """
            SELECT r.id::text AS refund_id, r.payment_id::text AS payment_id, p.customer_id::text AS customer_id,
                   r.amount, p.currency, r.status, r.reason, r.created_at, r.created_at AS valid_from, r.created_at AS valid_to,
                   r.reason AS note, p.method AS note
            FROM legacy.refunds r JOIN legacy.payments p ON p.id = r.payment_id
            """
        let mapping = try referenceMapping(replacing: .refund, query: refunds)
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            let check = try #require(report[entity: .refund])
            #expect(check.errors.map(\.code) == [.columnDuplicated, .columnReserved, .columnReserved])
            #expect(check.errors.map(\.column) == ["note", "valid_from", "valid_to"])
            #expect(check.attributes == ["valid_from", "valid_to", "note"])
        }
    }

    @Test func aSourceTableOrColumnThatDoesNotExistIsAnError() async throws {
        let mapping = try referenceMapping(
            replacing: .invoiceLine,
            sources: try MappingTestSupport.referenceMapping()[entity: .invoiceLine]!.sources + [
                MappingFile.Source(table: "legacy.invoice_items", key: "id"),
                MappingFile.Source(table: "legacy.invoices", key: "line_id"),
            ])
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            #expect(
                report[entity: .invoiceLine]?.errors.map(\.description) == [
                    "error: invoice_line.sources[3]: legacy.invoice_items (key id): relation \"legacy.invoice_items\" does not exist",
                    "error: invoice_line.sources[4]: legacy.invoices (key line_id): column \"line_id\" does not exist",
                ])
        }
    }

    @Test func unmappedEntitiesAreListedNotFailed() async throws {
        let reference = try MappingTestSupport.referenceMapping()
        let mapping = MappingFile(
            amounts: .major, entities: reference.entities.filter { [.customer, .invoice].contains($0.entity) })
        try await MappingTestSupport.withLegacy(.reference) { connection, dsn in
            let report = try await MappingChecker(mapping).check(connection)
            #expect(report.isClean)
            #expect(report.entities.map(\.entity) == [.customer, .invoice])
            #expect(
                report.unmapped == [
                    .plan, .subscription, .invoiceLine, .payment, .refund, .creditNote, .balanceTransaction,
                    .billingEntity, .paymentAllocation, .wallet, .walletTransaction, .creditApplication, .chargeback,
                    .paymentTransaction,
                ])
            #expect(
                report.rendered(database: dsn).contains(
                    "not mapped (nothing of theirs is migrated): plan, subscription, invoice_line, payment, refund, credit_note, balance_transaction, billing_entity, payment_allocation, wallet, wallet_transaction, credit_application, chargeback, payment_transaction"
                ))
        }
    }

    @Test func theCheckRunsReadOnly() async throws {
        let mapping = try referenceMapping(
            replacing: .plan,
            query: "SELECT p.id::text AS plan_id, nextval('legacy.plans_id_seq') AS n FROM legacy.plans p")
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            // nextval writes, so the read-only transaction refuses the statement.
            let failure = try #require(report[entity: .plan]?.errors.first { $0.code == .queryFailed })
            #expect(
                failure.message
                    == "the query fails when it reads rows: cannot execute nextval() in a read-only transaction (SQLSTATE 25006)"
            )
        }
    }

    // MARK: - What the backfill runs besides the queries

    /// A typo in a `checks:` query used to pass the check, then stop the backfill with 42703
    /// naming neither entity nor check.
    @Test func aBrokenChecksQueryIsAnErrorNamingTheEntityAndTheCheck() async throws {
        let reference = try MappingTestSupport.referenceMapping()
        var checks = try #require(reference[.customer]?.checks)
        checks[1] = SourceCheck(
            reason: "balance_mismatch",
            query: "SELECT c.id::text, 'balance ' || c.balanse\nFROM legacy.customers c WHERE c.balanse <> 0")
        let mapping = try referenceMapping(replacing: .customer, checks: checks)
        try await MappingTestSupport.withLegacy(.reference) { connection, dsn in
            let report = try await MappingChecker(mapping).check(connection)
            #expect(!report.isClean)
            let errors = try #require(report[entity: .customer]?.errors)
            #expect(errors.map(\.code) == [.checkFailed])
            #expect(errors[0].part == .checks)
            #expect(errors[0].column == "balance_mismatch")
            #expect(
                errors[0].description.hasPrefix(
                    "error: customer.checks.balance_mismatch: the check balance_mismatch fails: column c.balanse does "
                        + "not exist (SQLSTATE 42703) at line 1, column 34 of the query"))
            #expect(errors[0].message.contains("hint: Perhaps you meant to reference the column \"c.balance\""))
            // The other check still runs (and rejects nothing on the clean seed).
            #expect(report.errors.count == 1)
            let text = report.rendered(database: ConnectionString.masked(dsn))
            #expect(text.contains("\ncustomer             ERROR"))
            #expect(text.hasSuffix("in: customer. Fix them and run `ledgerlift mapping check` again."))
        }
    }

    /// A rule the backfill runs reads a column the mapping does not return: the backfill would
    /// stop, so the check says so, naming the entity and the rule.
    @Test func aCrossRowRuleThatCannotRunIsAnErrorNamingTheEntityAndTheRule() async throws {
        let query = """
            SELECT s.id::text AS subscription_id, s.customer_id::text AS customer_id, s.plan_id::text AS plan_id,
                   s.status, s.quantity, s.started_at, s.trial_ends_at, s.current_period_start, s.current_period_end,
                   s.cancel_at_period_end, s.canceled_at, s.ended_at, s.created_at, s.updated_at
            FROM legacy.subscriptions s
            """
        let reference = try MappingTestSupport.referenceMapping()
        let withoutHistory = MappingFile(
            amounts: reference.amounts,
            entities: reference.entities.map {
                $0.entity == .subscription
                    ? MappingFile.EntityMapping(entity: .subscription, query: query, sources: $0.sources) : $0
            })
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let report = try await MappingChecker(withoutHistory).check(connection)
            let check = try #require(report[entity: .subscription])
            #expect(check.warnings.map(\.column) == ["previous_subscription_id"])
            #expect(check.errors.map(\.code) == [.ruleFailed])
            #expect(
                check.errors.map(\.description) == [
                    "error: subscription.rules.subscription_chain_foreign_customer: the rule "
                        + "subscription_chain_foreign_customer (Ledgerlift's own, run by the backfill over subscription) "
                        + "fails over this mapping: column s.previous_subscription_id does not exist (SQLSTATE 42703); "
                        + "return the column from the query, NULL if legacy has no such data "
                        + "(e.g. `NULL::text AS previous_subscription_id`)"
                ])
        }
    }

    // MARK: - Misnamed columns

    @Test func aMisnamedCanonicalColumnGetsTheCanonicalNameSuggested() async throws {
        let customers = """
            SELECT c.id::text AS customer_id, c.email, c.name, c.currency, c.created_at, c.updated_at, c.deleted_at
            FROM legacy.customers c
            """
        let invoices = try #require(MappingTestSupport.referenceMapping()[.invoice]?.query)
            .replacing("i.due_on,", with: "i.due_on AS due_at,")
        var mapping = try referenceMapping(replacing: .customer, query: customers)
        mapping = MappingFile(
            amounts: mapping.amounts,
            entities: mapping.entities.map {
                $0.entity == .invoice
                    ? MappingFile.EntityMapping(entity: .invoice, query: invoices, sources: $0.sources) : $0
            })
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            #expect(report.isClean)
            let misnamed = report.warnings.filter { $0.code == .columnMisnamed }
            #expect(
                misnamed.map(\.description) == [
                    "warning: customer.deleted_at: did you mean `archived_at`? The query returns `deleted_at`, which "
                        + "is not canonical and would be carried as an attribute, but not archived_at (timestamp, "
                        + "which would be NULL on every row): alias it, `… AS archived_at`",
                    "warning: invoice.due_at: did you mean `due_on`? The query returns `due_at`, which is not "
                        + "canonical and would be carried as an attribute, but not due_on (date, which would be NULL "
                        + "on every row): alias it, `… AS due_on`",
                ])
            // The suggestion replaces the plain "not returned" warning for that column (the dating
            // note stays: until it is renamed, archiving is dated by inference).
            #expect(report.notes.contains { $0.code == .datedByInference && $0.column == "archived_at" })
            #expect(!report.warnings.contains { $0.code == .nullableColumnMissing && $0.column == "archived_at" })
            #expect(!report.passes(strict: true))
            #expect(report.passes(strict: false))
            let text = report.rendered(database: "db", strict: true)
            #expect(
                text.hasSuffix(
                    "mapping has warnings (0 errors, 3 warnings, 6 notes) in: customer, invoice, and --strict fails on "
                        + "warnings. Fix them and run `ledgerlift mapping check` again."))
        }
    }

    @Test func aMisnamedRequiredColumnIsAnErrorWithTheSuggestion() async throws {
        let query = try #require(MappingTestSupport.referenceMapping()[.payment]?.query)
            .replacing("p.amount,", with: "p.amount AS amount_cents,")
        let mapping = try referenceMapping(replacing: .payment, query: query)
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            let errors = try #require(report[entity: .payment]?.errors)
            #expect(errors.map(\.code) == [.columnMisnamed])
            #expect(errors[0].column == "amount_cents")
            #expect(errors[0].message.hasPrefix("did you mean `amount`?"))
        }
    }

    @Test func namesAreSuggestedBySynonymOrCloseSpellingOnlyTowardsMissingColumns() {
        let pairs = ColumnNameSuggestion.pairs(
            extras: ["deleted_at", "issue_date", "cancelled_at", "total_cents", "timezone", "tax_rate", "method"],
            missing: ["archived_at", "issued_on", "canceled_at", "total", "succeeded_at"])
        #expect(
            pairs == [
                "archived_at": "deleted_at", "issued_on": "issue_date", "canceled_at": "cancelled_at",
                "total": "total_cents",
            ])
        // Nothing missing, nothing suggested: an attribute beside its canonical column is fine.
        #expect(ColumnNameSuggestion.pairs(extras: ["deleted_at"], missing: []).isEmpty)
        #expect(ColumnNameSuggestion.pairs(extras: ["balance", "credit_balance"], missing: ["email"]).isEmpty)
    }

    // MARK: - History without a current row

    @Test func historyRowsWithoutACurrentRowAreListedByKey() async throws {
        let reference = try #require(MappingTestSupport.referenceMapping()[.subscription]?.historyQuery)
        // Two drafts deleted from legacy: 900001 with two versions, 900002 with one; and 12 more.
        let orphanRows = (0..<14).map { i in
            """
            SELECT '\(900_001 + i)'::text, s.customer_id::text, s.plan_id::text, s.status,
                   s.quantity, s.started_at, s.trial_ends_at, s.current_period_start, s.current_period_end,
                   s.cancel_at_period_end, s.canceled_at, s.ended_at, NULL::text, s.created_at, s.updated_at,
                   s.created_at + interval '\(i) second', NULL::timestamp
            FROM legacy.subscriptions s WHERE s.id = (SELECT min(id) FROM legacy.subscriptions)
            """
        }
        let orphans = orphanRows.joined(separator: "\nUNION ALL\n")
        let twice = orphanRows[0].replacing("interval '0 second'", with: "interval '1 day'")
        let history = "SELECT * FROM (\n" + reference + ") h\nUNION ALL\n" + orphans + "\nUNION ALL\n" + twice
        let mapping = try referenceMapping(replacing: .subscription, history: history)
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            let warning = try #require(
                report[entity: .subscription]?.warnings.first { $0.code == .historyWithoutCurrentRow })
            #expect(
                warning.description
                    == "warning: subscription.history.subscription_id: 15 history rows of 14 subscription_ids with no "
                    + "current subscription (deleted from legacy?): 900001 (2 rows), 900002, 900003, 900004, 900005, "
                    + "900006, 900007, 900008, 900009, 900010 and 4 more; they are migrated as a history ending in subscription's deletion")
        }
    }

    // MARK: - The starter mapping and the docs

    /// fixtures/starter/mapping.yaml: the smallest useful mapping passes the check on the
    /// reference fixture, rules included, and rejects no row.
    @Test func theStarterMappingPassesOnTheReferenceFixture() async throws {
        let path = try MappingTestSupport.repositoryRoot().appendingPathComponent("fixtures/starter/mapping.yaml").path
        let mapping = try MappingFile.load(path: path)
        #expect(mapping.entities.map(\.entity) == [.customer, .invoice, .invoiceLine, .payment])
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            #expect(report.errors.isEmpty)
            #expect(report.warnings.map(\.code) == [.sourceWritable])
            #expect(report.notes.allSatisfy { $0.code == .datedByInference })
            #expect(report[entity: .invoice]?.rowCount == 146)
        }
    }

    /// docs/mapping.md describes every built-in rule by its reason code, in a table row.
    @Test func theDocsDescribeEveryCrossRowRule() throws {
        let doc = try String(
            contentsOf: MappingTestSupport.repositoryRoot().appendingPathComponent("docs/mapping.md"), encoding: .utf8)
        for reason in Set(CrossRowCheck.all.map(\.reason)) {
            #expect(doc.contains("| `\(reason)` |"), "\(reason) is not in docs/mapping.md's table of rules")
        }
        #expect(!doc.contains("CrossRowChecks.swift"))
    }
}
