import Mapping
import Billing
import Fixtures
import Migration
import Postgres
import Testing

/// Rows per entity in the reference and the dirty seeds (fixtures/README.md).
let referenceRowCounts: [Entity: Int64] = [
    .customer: 45, .plan: 11, .subscription: 48, .invoice: 146, .invoiceLine: 169, .payment: 151, .refund: 5,
    .creditNote: 5, .balanceTransaction: 12,
]
let dirtyRowCounts: [Entity: Int64] = [
    .customer: 30, .plan: 7, .subscription: 24, .invoice: 71, .invoiceLine: 77, .payment: 70, .refund: 3,
    .creditNote: 2, .balanceTransaction: 7,
]

/// The reference mapping with one entity's query (or history query) replaced.
private func referenceMapping(
    replacing entity: Entity, query: String? = nil, history: String? = nil, sources: [MappingFile.Source]? = nil,
    amounts: MappingFile.AmountUnit? = nil
) throws -> MappingFile {
    let reference = try MappingTestSupport.referenceMapping()
    let entities = reference.entities.map { mapping -> MappingFile.EntityMapping in
        guard mapping.entity == entity else { return mapping }
        return MappingFile.EntityMapping(
            entity: entity, query: query ?? mapping.query, sources: sources ?? mapping.sources,
            historyQuery: history ?? mapping.historyQuery, amounts: amounts ?? mapping.amounts)
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
            #expect(report.unmapped.isEmpty)
            #expect(report.entities.map(\.entity) == Entity.allCases)
            let datingColumns: [Entity: Set<String>] = [
                .payment: ["succeeded_at", "failed_at", "canceled_at"], .invoice: ["marked_uncollectible_at"],
            ]
            for check in report.entities {
                #expect(check.rowCount == referenceRowCounts[check.entity], "\(check.entity)")
                let unmapped = datingColumns[check.entity] ?? []
                #expect(
                    check.columnsReturned == check.entity.columns.map(\.name).filter { !unmapped.contains($0) },
                    "\(check.entity)")
            }
            #expect(report[entity: .subscription]?.historyRowCount == 22)
            #expect(report[entity: .customer]?.attributes == ["timezone", "balance", "credit_balance"])
            #expect(report[entity: .invoice]?.attributes == ["tax_rate"])
            #expect(report[entity: .payment]?.attributes == ["method"])
            #expect(report[entity: .plan]?.attributes == [])

            let text = report.rendered(database: ConnectionString.masked(dsn))
            #expect(
                text.contains(
                    """
                    entity               status   columns  rows  history  attributes
                    -------------------  -------  -------  ----  -------  ---------------------------------
                    customer             warning      7/7    45           timezone, balance, credit_balance
                    plan                 ok         10/10    11
                    subscription         ok         15/15    48       22
                    invoice              ok         21/22   146           tax_rate
                    """))
            #expect(
                text.contains(
                    "  note    payment.succeeded_at: PaymentSucceeded will be dated at created_at, inferred: "
                        + "return `succeeded_at` if legacy records that moment\n"))
            #expect(text.hasSuffix("mapping ok: 9 entities checked, 0 errors, 1 warning, 4 notes"))
        }
    }

    @Test func theSameMappingIsCleanOnTheDirtyFixture() async throws {
        let mapping = try MappingTestSupport.referenceMapping()
        try await MappingTestSupport.withLegacy(.dirty) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            #expect(report.warnings.map(\.description) == [MappingCheckerTests.superuserWarning])
            #expect(report.notes.map(\.description) == MappingCheckerTests.referenceDatingNotes)
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
                    "mapping has errors (1 error, 2 warnings, 4 notes) in: payment. Fix them and run `ledgerlift mapping check` again."
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
            sources: [
                MappingFile.Source(table: "legacy.invoice_line_items", key: "id"),
                MappingFile.Source(table: "legacy.invoice_items", key: "id"),
                MappingFile.Source(table: "legacy.invoices", key: "line_id"),
            ])
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let report = try await MappingChecker(mapping).check(connection)
            #expect(
                report[entity: .invoiceLine]?.errors.map(\.description) == [
                    "error: invoice_line.sources[1]: legacy.invoice_items (key id): relation \"legacy.invoice_items\" does not exist",
                    "error: invoice_line.sources[2]: legacy.invoices (key line_id): column \"line_id\" does not exist",
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
                ])
            #expect(
                report.rendered(database: dsn).contains(
                    "not mapped (nothing of theirs is migrated): plan, subscription, invoice_line, payment, refund, credit_note, balance_transaction"
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
}
