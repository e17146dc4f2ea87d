import Billing
import EventStore
import Fixtures
import Foundation
import Mapping
import Migration
import Postgres
import TestSupport
import Testing

@testable import Simulator

/// Journals written by hand that state the reference fixture's real rows (fixtures/reference/
/// seed.sql), checked against the legacy tables and, after a backfill, the read models.
@Suite("simulate verify: every acknowledged effect present, or the op that lost it named")
struct JournalVerifierTests {
    // MARK: - The journal

    /// The reference fixture's real values, as the legacy application would have journaled
    /// them: USD, JPY and KWD amounts, a customer whose currency comes from its invoices, one
    /// with none, a soft delete, a voided invoice, refunds, a credit note and its balance
    /// transaction, a subscription, and a discarded draft (absent).
    static let cleanEntries: [JournalEntry] = [
        entry(
            1, .paymentSucceeded, "2025-06-16T10:16:03Z",
            [
                Effect(
                    entity: "payment", key: "101",
                    fields: [
                        "customer_id": "1", "invoice_id": "101", "status": "succeeded", "amount": "1900",
                        "currency": "USD",
                        "failure_code": nil,
                    ]),
                Effect(
                    entity: "invoice", key: "101",
                    fields: [
                        "customer_id": "1", "subscription_id": "11", "status": "paid", "number": "LL0001-0001",
                        "currency": "USD", "subtotal": "1900", "discount": "0", "tax": "0", "total": "1900",
                        "amount_paid": "1900", "amount_due": "0", "finalized_at": "2025-06-16T10:14:00.000000Z",
                        "paid_at": "2025-06-16T10:16:03.000000Z", "voided_at": nil,
                    ]),
                Effect(
                    entity: "invoice_line", key: "1011",
                    fields: [
                        "invoice_id": "101", "kind": "subscription", "quantity": "1", "amount": "1900",
                        "currency": "USD",
                    ]),
            ], "payment 101 of 19.00 USD on invoice 101 succeeded"),
        entry(
            2, .paymentSucceeded, "2025-07-16T10:16:03.000000Z",
            [
                Effect(
                    entity: "payment", key: "102",
                    fields: [
                        "customer_id": "1", "invoice_id": "102", "status": "succeeded", "amount": "1900",
                        "currency": "USD",
                    ])
            ], "payment 102 of 19.00 USD on invoice 102 succeeded"),
        entry(
            3, .paymentSucceeded, "2025-07-21T04:02:03.000000Z",
            [
                Effect(
                    entity: "payment", key: "2101",
                    fields: [
                        "customer_id": "21", "invoice_id": "2101", "status": "succeeded", "amount": "6050",
                        "currency": "JPY",
                    ]),
                Effect(
                    entity: "invoice", key: "2101",
                    fields: [
                        "status": "paid", "subtotal": "5500", "tax": "550", "total": "6050", "amount_paid": "6050",
                        "amount_due": "0",
                    ]),
            ], "payment 2101 of 6050 JPY on invoice 2101 succeeded"),
        entry(
            4, .paymentSucceeded, "2025-08-10T07:00:00.000000Z",
            [
                Effect(
                    entity: "invoice", key: "2201",
                    fields: [
                        "status": "paid", "currency": "KWD", "total": "14875", "amount_paid": "14875",
                        "amount_due": "0",
                    ]),
                Effect(entity: "invoice_line", key: "22011", fields: ["amount": "14875", "quantity": "1"]),
            ], "invoice 2201 of 14.875 KWD paid"),
        entry(
            5, .creditNote, "2025-09-01T10:00:00.000000Z",
            [
                Effect(
                    entity: "credit_note", key: "221",
                    fields: [
                        "customer_id": "22", "invoice_id": "2202", "status": "issued", "total": "2125",
                        "balance_remaining": "0",
                        "currency": "KWD",
                    ]),
                Effect(
                    entity: "balance_transaction", key: "2201",
                    fields: [
                        "customer_id": "22", "type": "credit_note", "amount": "-2125", "currency": "KWD",
                        "invoice_id": nil,
                        "credit_note_id": "221",
                    ]),
            ], "credit note 221 of 2.125 KWD on invoice 2202"),
        entry(
            6, .refundPartial, "2025-10-12T16:00:00.000000Z",
            [
                Effect(
                    entity: "refund", key: "1501",
                    fields: ["payment_id": "1503", "amount": "2000", "status": "succeeded"])
            ],
            "refund 1501 of 20.00 USD on payment 1503"),
        entry(
            7, .refundPartial, "2025-10-02T05:00:00.000000Z",
            [
                Effect(
                    entity: "refund", key: "2101",
                    fields: ["payment_id": "2103", "amount": "1100", "status": "succeeded", "currency": "JPY"])
            ], "refund 2101 of 1100 JPY on payment 2103"),
        entry(
            8, .voidInvoice, "2025-09-03T08:15:00.000000Z",
            [
                Effect(
                    entity: "invoice", key: "1202",
                    fields: ["status": "void", "amount_due": "0", "voided_at": "2025-09-03T08:15:00.000000Z"])
            ],
            "invoice 1202 voided"),
        entry(
            9, .paymentFailed, "2025-10-01T12:00:00.000000Z",
            [
                Effect(
                    entity: "payment", key: "805",
                    fields: ["status": "failed", "failure_code": "card_declined", "amount": "4900"])
            ],
            "payment 805 of 49.00 USD on invoice 805 failed"),
        entry(
            10, .activateTrial, "2025-10-16T09:14:00.000000Z",
            [
                Effect(
                    entity: "subscription", key: "11",
                    fields: [
                        "customer_id": "1", "plan_id": "1", "status": "active", "quantity": "1",
                        "cancel_at_period_end": "false",
                        "canceled_at": nil, "ended_at": nil,
                    ])
            ], "subscription 11 active"),
        entry(
            11, .softDelete, "2024-07-15T09:00:00.000000Z",
            [Effect(entity: "customer", key: "28", fields: ["archived_at": "2024-07-15T09:00:00.000000Z"])],
            "customer 28 deleted"),
        entry(
            12, .editName, "2025-10-29T16:20:00.000000Z",
            [
                Effect(entity: "customer", key: "30", fields: ["name": "Old Mill Press", "currency": "USD"]),
                Effect(entity: "customer", key: "31", fields: ["name": "Quiet Comet", "currency": nil]),
            ], "customers 30 and 31 renamed"),
        entry(
            13, .discardDraft, "2025-10-30T10:00:00.000000Z",
            [
                Effect(entity: "invoice", key: "990001", deleted: true),
                Effect(entity: "invoice_line", key: "990011", deleted: true),
            ], "draft invoice 990001 discarded"),
        // Written before the earlier edit: `at` orders them, not the file.
        entry(
            15, .editEmail, "2025-10-22T10:00:00.000000Z",
            [
                Effect(
                    entity: "customer", key: "1",
                    fields: ["email": "maya.okafor@brightloom.example", "name": "Brightloom Studio"])
            ],
            "customer 1's email is maya.okafor@brightloom.example"),
        entry(
            14, .editEmail, "2025-10-21T10:00:00.000000Z",
            [Effect(entity: "customer", key: "1", fields: ["email": "maya@old-address.example", "archived_at": nil])],
            "customer 1's email is maya@old-address.example"),
    ]

    /// 21 distinct rows (2 of them deleted); 88 field values to compare (per row, each field
    /// once: the last write of it).
    static let cleanCounts = (operations: 15, effects: 22, rows: 21, deleted: 2, fields: 88)

    static func entry(_ op: UInt64, _ kind: OperationKind, _ at: String, _ effects: [Effect], _ summary: String)
        -> JournalEntry
    {
        JournalEntry(op: op, kind: kind, at: at, keys: [:], effects: effects, summary: summary)
    }

    static func line(_ entry: JournalEntry) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(entry), as: UTF8.self)
    }

    /// Writes `lines` as a journal, each ending with a newline unless `cutOff` (the last one then
    /// has none, as a crash mid-write leaves it).
    static func journal(_ lines: [String], cutOff: Bool = false) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("journal-\(UUID().uuidString).jsonl")
            .path
        var text = lines.joined(separator: "\n")
        if !cutOff && !lines.isEmpty { text += "\n" }
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    static func journal(_ entries: [JournalEntry]) throws -> String { try journal(entries.map(line)) }

    static func stamp(_ op: UInt64, _ kind: OperationKind, _ at: String, effect: UInt32 = 0) -> JournalStamp {
        JournalStamp(at: PostgresTimestamp(at)!.microsecondsSinceEpoch, op: op, effect: effect, kind: kind)
    }

    // MARK: - Databases

    static func repositoryRoot(_ file: String = #filePath) -> URL {
        var directory = URL(fileURLWithPath: file).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
            directory = directory.deletingLastPathComponent()
        }
        return directory
    }

    /// A fresh database holding the reference fixture.
    static func withReference(_ label: String = #function, _ body: (_ dsn: String) async throws -> Void) async throws {
        try await TestDatabase.withFresh(label) { dsn in
            let fixtures = try FixtureDirectory(
                validating: repositoryRoot().appendingPathComponent("fixtures", isDirectory: true))
            _ = try await FixtureLoader(fixtures: fixtures).load(.reference, dsn: dsn)
            try await body(dsn)
        }
    }

    static func execute(_ dsn: String, _ sql: String) async throws {
        let connection = try await Connection.connect(dsn)
        defer { connection.close() }
        try await connection.executeScript(sql)
    }

    static func verifyLegacy(_ journal: String, _ dsn: String, maxRows: Int = 100) async throws -> JournalVerification {
        try await JournalVerifier(journal: journal, target: .legacy(dsn: dsn), maxRows: maxRows, batchSize: 3).run()
    }

    // MARK: - Against the legacy tables

    @Test func aJournalOfTheFixturesRealValuesIsClean() async throws {
        let path = try Self.journal(Self.cleanEntries)
        try await Self.withReference { dsn in
            let report = try await Self.verifyLegacy(path, dsn)
            #expect(report.failures == [])
            #expect(report.isClean && report.exitCode == 0)
            #expect(report.lines == Self.cleanCounts.operations && report.operations == Self.cleanCounts.operations)
            #expect(report.effects == Self.cleanCounts.effects)
            #expect(report.rows == Self.cleanCounts.rows && report.rowsChecked == Self.cleanCounts.rows)
            #expect(report.deletedRowsChecked == Self.cleanCounts.deleted)
            #expect(report.fieldsChecked == Self.cleanCounts.fields)
            #expect(report.truncated == nil && report.notes == [])
            #expect(report.text.hasSuffix("verdict:  clean: every acknowledged effect of 15 operations is present\n"))
        }
    }

    @Test func aDeletedPaymentRowIsLostNamingTheOpThatCreatedIt() async throws {
        let path = try Self.journal(Self.cleanEntries)
        try await Self.withReference { dsn in
            // Payment 102 has no refund (refunds.payment_id has a foreign key).
            try await Self.execute(dsn, "DELETE FROM legacy.payments WHERE id = 102")
            let report = try await Self.verifyLegacy(path, dsn)
            #expect(
                report.failures == [
                    JournalFailure(
                        kind: .lost, entity: .payment, key: "102", field: nil, expected: nil, actual: nil,
                        ops: [Self.stamp(2, .paymentSucceeded, "2025-07-16T10:16:03Z")],
                        summary: "payment 102 of 19.00 USD on invoice 102 succeeded")
                ])
            #expect(report.lost == 1 && report.alteredFields == 0 && report.resurrected == 0)
            #expect(report.exitCode == 1)
            #expect(report.failingOps == [2])
            #expect(report.fieldsChecked == Self.cleanCounts.fields - 5)
            #expect(
                report.text.contains(
                    "LOST        payment 102: absent; written by op 2 (payment_succeeded) at 2025-07-16T10:16:03.000000Z: "
                        + "\"payment 102 of 19.00 USD on invoice 102 succeeded\"\n"))
            #expect(
                report.text.hasSuffix(
                    "verdict:  1 lost row, 0 altered fields (in 0 rows), 0 resurrected rows — ops 2\n"))
        }
    }

    @Test func aChangedEmailIsAlteredWithExpectedAndActualAndTheOpThatSetIt() async throws {
        let path = try Self.journal(Self.cleanEntries)
        try await Self.withReference { dsn in
            try await Self.execute(dsn, "UPDATE legacy.customers SET email = 'someone@else.example' WHERE id = 1")
            let report = try await Self.verifyLegacy(path, dsn)
            #expect(
                report.failures == [
                    JournalFailure(
                        kind: .altered, entity: .customer, key: "1", field: "email",
                        expected: "maya.okafor@brightloom.example", actual: "someone@else.example",
                        ops: [Self.stamp(15, .editEmail, "2025-10-22T10:00:00Z")], summary: nil)
                ])
            #expect(report.lost == 0 && report.alteredFields == 1 && report.alteredRows == 1 && report.exitCode == 1)
            #expect(report.fieldsChecked == Self.cleanCounts.fields)
            #expect(
                report.text.contains(
                    "ALTERED     customer 1 email: expected \"maya.okafor@brightloom.example\", actual \"someone@else.example\"; "
                        + "set by op 15 (edit_email) at 2025-10-22T10:00:00.000000Z\n"))
        }
    }

    @Test func aJSONNullMeansTheColumnMustBeNULL() async throws {
        let path = try Self.journal(Self.cleanEntries)
        try await Self.withReference { dsn in
            // Customer 31 has no currency of its own and no invoice to take one from.
            try await Self.execute(dsn, "UPDATE legacy.customers SET currency = 'EUR' WHERE id = 31")
            let report = try await Self.verifyLegacy(path, dsn)
            #expect(
                report.failures == [
                    JournalFailure(
                        kind: .altered, entity: .customer, key: "31", field: "currency", expected: nil, actual: "EUR",
                        ops: [Self.stamp(12, .editName, "2025-10-29T16:20:00Z", effect: 1)], summary: nil)
                ])
            #expect(
                report.text.contains("ALTERED     customer 31 currency: expected NULL, actual \"EUR\"; set by op 12"))
        }
    }

    @Test func anAmountThatIsNotWholeMinorUnitsIsAlteredShowingItsDecimalNeverRounded() async throws {
        let path = try Self.journal(Self.cleanEntries)
        try await Self.withReference { dsn in
            try await Self.execute(
                dsn,
                "UPDATE legacy.invoices SET amount_paid = 14.8754 WHERE id = 2201; UPDATE legacy.payments SET amount = 49.001 WHERE id = 805"
            )
            let report = try await Self.verifyLegacy(path, dsn)
            #expect(
                report.failures.map { [$0.entity.rawValue, $0.key, $0.field, $0.expected, $0.actual] } == [
                    ["invoice", "2201", "amount_paid", "14875", "14.8754 KWD (not a whole number of minor units)"],
                    ["payment", "805", "amount", "4900", "49.001 USD (not a whole number of minor units)"],
                ])
        }
    }

    @Test func theLaterOperationByBusinessTimeWinsEvenWhenWrittenFirst() async throws {
        // Op 15 (later `at`) is written before op 14 and holds the real email: clean (above).
        // Here the later op holds an email the row does not have: it is the one reported.
        var entries = Self.cleanEntries
        entries[entries.count - 2].effects[0].fields["email"] = "maya@new-address.example"
        entries[entries.count - 1].effects[0].fields["email"] = "maya.okafor@brightloom.example"
        let path = try Self.journal(entries)
        try await Self.withReference { dsn in
            let report = try await Self.verifyLegacy(path, dsn)
            #expect(
                report.failures == [
                    JournalFailure(
                        kind: .altered, entity: .customer, key: "1", field: "email",
                        expected: "maya@new-address.example",
                        actual: "maya.okafor@brightloom.example",
                        ops: [Self.stamp(15, .editEmail, "2025-10-22T10:00:00Z")],
                        summary: nil)
                ])
        }
    }

    @Test func foldingKeepsPerFieldTheLastWriteByAtThenOpWhateverTheLineOrder() throws {
        let later = Self.entry(
            8, .editEmail, "2025-10-02T00:00:00Z", [Effect(entity: "customer", key: "7", fields: ["email": "b@x"])], "")
        let earlier = Self.entry(
            9, .editName, "2025-10-01T00:00:00Z",
            [Effect(entity: "customer", key: "7", fields: ["email": "a@x", "name": "Seven"])], "")
        // Same instant: the greater op id wins.
        let tie = Self.entry(
            3, .editName, "2025-10-01T00:00:00Z", [Effect(entity: "customer", key: "7", fields: ["name": "Six"])], "")
        for order in [[later, earlier, tie], [tie, earlier, later], [earlier, tie, later]] {
            var fold = JournalExpectations()
            for (line, entry) in order.enumerated() { try fold.apply(entry, line: line + 1) }
            let row = try #require(fold.rows[.customer]?["7"])
            #expect(
                row.expectedFields.map { "\($0.index)=\($0.slot.value ?? "NULL") by \($0.slot.stamp.op)" } == [
                    "0=b@x by 8", "1=Seven by 9",
                ])
            #expect(row.creator?.op == 3)
        }
    }

    @Test func aDeleteThenALaterEffectRecreatesTheRowWithOnlyTheFieldsSetSince() throws {
        var fold = JournalExpectations()
        try fold.apply(
            Self.entry(
                3, .editName, "2025-10-03T00:00:00Z", [Effect(entity: "invoice", key: "5", fields: ["number": "N-2"])],
                ""),
            line: 1)
        try fold.apply(
            Self.entry(
                1, .draftInvoice, "2025-10-01T00:00:00Z",
                [Effect(entity: "invoice", key: "5", fields: ["status": "draft"])], ""),
            line: 2)
        try fold.apply(
            Self.entry(
                2, .discardDraft, "2025-10-02T00:00:00Z", [Effect(entity: "invoice", key: "5", deleted: true)], ""),
            line: 3)
        let row = try #require(fold.rows[.invoice]?["5"])
        #expect(!row.mustBeAbsent)
        #expect(row.expectedFields.map { JournalFields.fields(.invoice)[$0.index].name } == ["number"])
        #expect(row.creator?.op == 3)
        try fold.apply(
            Self.entry(
                4, .discardDraft, "2025-10-04T00:00:00Z", [Effect(entity: "invoice", key: "5", deleted: true)], ""),
            line: 4)
        #expect(fold.rows[.invoice]?["5"]?.mustBeAbsent == true)
    }

    @Test func aDeletedRowThatIsPresentIsResurrected() async throws {
        var entries = Self.cleanEntries
        // Invoice 1303 is the fixture's draft: the journal says it was discarded.
        entries.append(
            Self.entry(
                16, .discardDraft, "2025-10-31T10:00:00Z",
                [
                    Effect(entity: "invoice", key: "1303", deleted: true),
                    Effect(entity: "invoice_line", key: "13031", deleted: true),
                ],
                "draft invoice 1303 discarded"))
        let path = try Self.journal(entries)
        try await Self.withReference { dsn in
            let report = try await Self.verifyLegacy(path, dsn)
            #expect(
                report.failures == [
                    JournalFailure(
                        kind: .resurrected, entity: .invoice, key: "1303", field: nil, expected: nil, actual: nil,
                        ops: [Self.stamp(16, .discardDraft, "2025-10-31T10:00:00Z")], summary: nil),
                    JournalFailure(
                        kind: .resurrected, entity: .invoiceLine, key: "13031", field: nil, expected: nil, actual: nil,
                        ops: [Self.stamp(16, .discardDraft, "2025-10-31T10:00:00Z", effect: 1)], summary: nil),
                ])
            #expect(
                report.resurrected == 2 && report.deletedRowsChecked == Self.cleanCounts.deleted + 2
                    && report.exitCode == 1)
            #expect(
                report.text.contains(
                    "RESURRECTED invoice 1303: present; deleted by op 16 (discard_draft) at 2025-10-31T10:00:00.000000Z\n"
                ))
        }
    }

    @Test func aLastLineWithoutNewlineIsIgnoredWithANote() async throws {
        // Whole and wrong (an email customer 1 never had): it would fail, were it acknowledged.
        let cut = try Self.line(
            Self.entry(
                16, .editEmail, "2025-10-31T10:00:00Z",
                [Effect(entity: "customer", key: "1", fields: ["email": "never@acknowledged.example"])],
                ""))
        let path = try Self.journal(try Self.cleanEntries.map(Self.line) + [cut], cutOff: true)
        let partial = try Self.journal(try Self.cleanEntries.map(Self.line) + [String(cut.prefix(30))], cutOff: true)
        try await Self.withReference { dsn in
            let report = try await Self.verifyLegacy(path, dsn)
            #expect(report.isClean && report.operations == Self.cleanCounts.operations)
            #expect(report.truncated == TruncatedJournalLine(line: 16, bytes: cut.utf8.count, op: 16))
            #expect(
                report.text.contains(
                    "note:     line 16 (\(cut.utf8.count) bytes, op 16's line) has no newline at its end: it was cut off "
                        + "by a crash"))
            let partialReport = try await Self.verifyLegacy(partial, dsn)
            #expect(
                partialReport.isClean && partialReport.truncated == TruncatedJournalLine(line: 16, bytes: 30, op: nil))
        }
    }

    @Test func aMalformedLineBeforeTheLastIsAnErrorNamingItsLineNumberOnly() async throws {
        let good = try Self.cleanEntries.map(Self.line)
        let cases: [(lines: [String], error: JournalError)] = [
            (
                [good[0], "{\"op\": 2, \"summary\": \"secret@customer.example\"", good[1]],
                .malformedLine(line: 2, reason: "not valid JSON")
            ),
            ([good[0], good[1], "", good[2]], .malformedLine(line: 3, reason: "empty line")),
            (
                [good[0], good[1].replacing("\"payment_succeeded\"", with: "\"secret@customer.example\"")],
                .malformedLine(line: 2, reason: "not a journal entry: `kind` is not an operation kind")
            ),
            (
                [good[0], good[1].replacing("\"amount\":\"1900\"", with: "\"amount\":\"19.00\"")],
                .malformedLine(line: 2, reason: "`effects[0]` `amount` is not an integer (minor units for an amount)")
            ),
            (
                [good[1].replacing("\"status\":\"succeeded\"", with: "\"secret@customer.example\":\"x\"")],
                .malformedLine(
                    line: 1,
                    reason: "`effects[0]` sets a field, which verify does not check on payment (it checks customer_id, "
                        + "invoice_id, status, amount, currency, failure_code)")
            ),
        ]
        try await Self.withReference { dsn in
            for (lines, expected) in cases {
                let path = try Self.journal(lines)
                await #expect(throws: expected) { try await Self.verifyLegacy(path, dsn) }
                #expect(!expected.description.contains("secret"))
            }
        }
    }

    @Test func batchesOfKeysFindTheSameAsOneQuery() async throws {
        let path = try Self.journal(Self.cleanEntries)
        try await Self.withReference { dsn in
            try await Self.execute(
                dsn, "DELETE FROM legacy.payments WHERE id = 102; UPDATE legacy.customers SET name = 'X' WHERE id = 31")
            for batchSize in [1, 2, 1000] {
                let report = try await JournalVerifier(journal: path, target: .legacy(dsn: dsn), batchSize: batchSize)
                    .run()
                #expect(
                    report.failures.map { "\($0.kind) \($0.entity) \($0.key)" } == [
                        "lost payment 102", "altered customer 31",
                    ])
                #expect(report.fieldsChecked == Self.cleanCounts.fields - 5)
            }
            // --max-rows lists the first by op id and counts every one.
            let one = try await Self.verifyLegacy(path, dsn, maxRows: 1)
            #expect(one.failures.map(\.key) == ["102"] && one.failureCount == 2 && one.unlisted == 1)
            #expect(one.text.contains("… and 1 more failures (--max-rows 1)\n"))
        }
    }

    // MARK: - Against the read models

    @Test func theSameJournalAgainstTheReadModelsIsCleanThenNamesLostAndAlteredWrites() async throws {
        let path = try Self.journal(Self.cleanEntries)
        try await Self.withReference { legacyDSN in
            try await TestDatabase.withConnection(#function + "_store") { store, storeDSN in
                try await store.withSession { try EventStore().migrate($0) }
                let mapping = try MappingFile.load(
                    path: Self.repositoryRoot().appendingPathComponent("fixtures/reference/mapping.yaml").path)
                let backfill = try await Backfill(
                    .init(legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: mapping, workers: 2, batchEvents: 97)
                ).run()
                #expect(backfill.totalQuarantined == 0)
                _ = try await Projector().catchUp(on: store)
                let verifier = JournalVerifier(
                    journal: path, target: .store(dsn: storeDSN, catchUpTimeout: .seconds(5)), batchSize: 4)

                let clean = try await verifier.run()
                #expect(clean.failures == [] && clean.notes == [] && clean.exitCode == 0)
                #expect(clean.rowsChecked == Self.cleanCounts.rows && clean.fieldsChecked == Self.cleanCounts.fields)
                #expect(clean.target == .store && clean.schema == "ledgerlift_read")

                try await store.executeScript(
                    """
                    DELETE FROM ledgerlift_read.payments WHERE payment_id = '102';
                    UPDATE ledgerlift_read.customers SET email = 'someone@else.example' WHERE customer_id = '1';
                    UPDATE ledgerlift_read.invoices SET amount_paid = 1899 WHERE invoice_id = '2101';
                    """)
                let broken = try await verifier.run()
                #expect(
                    broken.failures == [
                        JournalFailure(
                            kind: .lost, entity: .payment, key: "102", field: nil, expected: nil, actual: nil,
                            ops: [Self.stamp(2, .paymentSucceeded, "2025-07-16T10:16:03Z")],
                            summary: "payment 102 of 19.00 USD on invoice 102 succeeded"),
                        JournalFailure(
                            kind: .altered, entity: .invoice, key: "2101", field: "amount_paid", expected: "6050",
                            actual: "1899",
                            ops: [Self.stamp(3, .paymentSucceeded, "2025-07-21T04:02:03Z", effect: 1)], summary: nil),
                        JournalFailure(
                            kind: .altered, entity: .customer, key: "1", field: "email",
                            expected: "maya.okafor@brightloom.example", actual: "someone@else.example",
                            ops: [Self.stamp(15, .editEmail, "2025-10-22T10:00:00Z")], summary: nil),
                    ])
                #expect(broken.lost == 1 && broken.alteredFields == 2 && broken.exitCode == 1)

                // A live projector that has not applied every event: checked anyway, and said.
                try await store.execute("UPDATE ledgerlift_read.projection_state SET consumer = 'a_consumer_at_the_start'")
                let behind = try await JournalVerifier(
                    journal: path, target: .store(dsn: storeDSN, catchUpTimeout: .zero)
                ).run()
                #expect(behind.failures == broken.failures)
                #expect(
                    behind.notes == [
                        "the projection had not caught up with the event store after 0.0 seconds: rows were checked anyway, "
                            + "and a lost or altered write may be an event not yet projected"
                    ])
            }
        }
    }

    @Test func theReadModelsMissingIsAnErrorNotAVerdict() async throws {
        let path = try Self.journal(Self.cleanEntries)
        try await TestDatabase.withFresh { dsn -> Void in
            await #expect(
                throws: JournalError.cannotCheck(
                    "no read models in schema \"ledgerlift_read\": build the read models with `ledgerlift project --store DSN` first"
                )
            ) {
                try await JournalVerifier(journal: path, target: .store(dsn: dsn)).run()
            }
        }
    }

    // MARK: - The command

    /// `dsn` with a password in it (the test server trusts local connections, so it is sent
    /// nowhere; the point is that no output repeats it).
    static func withPassword(_ dsn: String) -> (dsn: String, password: String) {
        if let password = ConnectionString.password(in: dsn) { return (dsn, password) }
        let password = "Verify5ecretPw"
        for scheme in ["postgresql://", "postgres://"] where dsn.hasPrefix(scheme) {
            let rest = dsn.dropFirst(scheme.count)
            if let at = rest.firstIndex(of: "@") {
                return (scheme + rest[..<at] + ":" + password + rest[at...], password)
            }
        }
        return (dsn + (dsn.contains("://") ? "" : " password=" + password), password)
    }

    @Test func theCommandExits0Then1NamingTheOpThen2WithoutEverPrintingThePassword() async throws {
        let path = try Self.journal(Self.cleanEntries)
        let malformed = try Self.journal([
            try Self.line(Self.cleanEntries[0]), "{\"op\": 2, \"summary\": \"secret@customer.example\"",
        ])
        try await Self.withReference { plain in
            let (dsn, password) = Self.withPassword(plain)
            let clean = try await LedgerliftBinary.run(["simulate", "verify", "--journal", path, "--legacy", dsn])
            #expect(clean.status == 0)
            #expect(clean.stdout.hasSuffix("verdict:  clean: every acknowledged effect of 15 operations is present\n"))

            try await Self.execute(plain, "DELETE FROM legacy.payments WHERE id = 102")
            let lost = try await LedgerliftBinary.run(["simulate", "verify", "--journal", path, "--legacy", dsn])
            #expect(lost.status == 1)
            #expect(lost.stdout.contains("LOST        payment 102: absent; written by op 2 (payment_succeeded)"))
            let json = try await LedgerliftBinary.run([
                "simulate", "verify", "--journal", path, "--legacy", dsn, "--report", "json",
            ])
            #expect(json.status == 1)
            #expect(json.stdout.hasPrefix("{\"clean\":false,\"exit_code\":1,\"journal\":"))
            #expect(
                json.stdout.contains("\"lost\":1,\"altered_fields\":0,") && json.stdout.contains("\"failing_ops\":[2],")
            )
            #expect(json.stderr == "simulate verify: 1 lost, 0 altered, 0 resurrected\n")

            let refused = [
                (["--legacy", dsn, "--store", dsn], "give one of --legacy and --store, not both"),
                ([], "give the system to check: --legacy DSN or --store DSN"),
            ]
            for (targets, message) in refused {
                let result = try await LedgerliftBinary.run(["simulate", "verify", "--journal", path] + targets)
                #expect(result.status == 2)
                #expect(result.stderr.hasPrefix("Error: " + message))
            }
            let bad = try await LedgerliftBinary.run(["simulate", "verify", "--journal", malformed, "--legacy", dsn])
            #expect(bad.status == 2 && bad.stdout == "")
            #expect(bad.stderr == "Error: simulate verify could not run: journal line 2: not valid JSON\n")
            let unreachable = ConnectionString.withDatabase(dsn, "no_such_database_for_verify")
            let down = try await LedgerliftBinary.run(["simulate", "verify", "--journal", path, "--store", unreachable])
            #expect(
                down.status == 2
                    && down.stderr.hasPrefix("Error: simulate verify could not run: cannot connect to the store: "))
            for result in [clean, lost, json, bad, down] {
                #expect(!(result.stdout + result.stderr).contains(password))
                #expect(!(result.stdout + result.stderr).contains("secret@customer"))
            }
        }
    }

    // MARK: - The report

    @Test func theJSONReportHasItsKeysInAFixedOrder() throws {
        var report = JournalVerification(
            journal: "j.jsonl", target: .legacy, database: "postgresql://u@h/db", schema: "legacy", maxRows: 10)
        report.lines = 2
        report.operations = 2
        report.effects = 3
        report.rows = 2
        report.rowsChecked = 2
        report.fieldsChecked = 4
        report.alteredFields = 1
        report.alteredRows = 1
        report.truncated = TruncatedJournalLine(line: 3, bytes: 12, op: nil)
        report.failures = [
            JournalFailure(
                kind: .altered, entity: .customer, key: "1", field: "name", expected: nil, actual: "A\"B",
                ops: [Self.stamp(2, .editName, "2025-01-01T00:00:00Z")], summary: nil)
        ]
        #expect(
            report.json == """
                {"clean":false,"exit_code":1,"journal":"j.jsonl","target":"legacy","database":"postgresql://u@h/db",\
                "schema":"legacy","max_rows":10,"duration_ms":0,"notes":["\(report.truncatedNote!)"],\
                "truncated_line":{"line":3,"bytes":12,"op":null},"lines":2,"operations":2,"in_doubt":0,"effects":3,"rows":2,\
                "rows_checked":2,"deleted_rows_checked":0,"fields_checked":4,"lost":0,"altered_fields":1,"altered_rows":1,\
                "resurrected":0,"unlisted":0,"failing_ops":[2],"failures":[{"kind":"altered","entity":"customer","key":"1",\
                "field":"name","expected":null,"actual":"A\\"B","ops":[{"op":2,"kind":"edit_name",\
                "at":"2025-01-01T00:00:00.000000Z"}],"summary":null}]}

                """)
    }
}
