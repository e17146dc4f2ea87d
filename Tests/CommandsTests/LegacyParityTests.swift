import Billing
import Commands
import Simulator
import Testing

/// Every legacy operation, stated as commands, decides exactly the rows the legacy application
/// writes (see ``LegacyParity``): the acceptance "a property test that its events equal the
/// transitions of the legacy write it replaces", for every operation kind.
@Suite struct LegacyParityTests {
    /// Operations of each kind checked per run.
    static let operationsPerKind = 6

    /// Operations performed on legacy alone first, so the kind has something to act on in the
    /// reference fixture (a failed attempt before a retry, a draft before a finalization).
    static let preparations: [OperationKind: [OperationKind]] = [
        .finalizeInvoice: [.draftInvoice, .draftInvoice],
        .discardDraft: [.draftInvoice, .draftInvoice],
        .paymentRetried: [.paymentFailed, .paymentFailed],
        .markUnpaid: [.paymentFailed, .paymentFailed],
        .refundFull: [.paymentSucceeded],
        .refundPartial: [.paymentSucceeded],
        .creditNote: [.paymentSucceeded],
    ]

    @Test(arguments: OperationKind.allCases)
    func commandsDecideWhatTheLegacyOperationWrote(_ kind: OperationKind) async throws {
        let report = try await LegacyParity.withFresh("parity_\(kind.rawValue)") { parity in
            try await parity.run(kind, count: Self.operationsPerKind, preparing: Self.preparations[kind] ?? [])
        }
        print(report)
        #expect(report.operations > 0, "the fixture gave \(kind.rawValue) nothing to act on")
        #expect(report.rejections.isEmpty, "\(report)")
        #expect(report.mismatches.isEmpty, "\(report)")
        #expect(report.syncUnexplained.isEmpty, "\(report)")
    }

    /// The harness itself: an operation stated as no command at all is caught twice — the
    /// rows legacy changed are missing, and shadow mode's sync has to append them.
    @Test func theHarnessCatchesAnOperationTheCommandsDoNotMake() async throws {
        let report = try await LegacyParity.withFresh { parity in
            try await parity.run(.editName, count: 1, translate: { _, _ in [] })
        }
        #expect(report.operations == 1)
        #expect(report.commands == 0)
        #expect(report.mismatches.count == 1)
        #expect(report.mismatches.first?.key.hasPrefix("customer-") == true)
        #expect(report.mismatches.first?.columns == ["(missing)", "name", "updated_at"])
        #expect(report.syncUnexplained == report.mismatches.map(\.key))
        #expect(!report.passed)
    }
}

@Suite struct LegacyRowsTests {
    static func customer(_ key: String, _ email: String) -> CanonicalRow {
        CanonicalRow(entity: .customer, values: ["customer_id": .text(key), "email": .text(email)])
    }

    @Test func createdChangedAndDeletedRowsFollowFromBeforeAndAfter() {
        let rows = LegacyRows(
            before: [
                .init(.customer, "1"): Self.customer("1", "a@example.com"), .init(.customer, "2"): Self.customer("2", "b@example.com"),
                .init(.customer, "3"): Self.customer("3", "c@example.com"),
            ],
            after: [
                .init(.customer, "1"): Self.customer("1", "a@example.com"), .init(.customer, "2"): Self.customer("2", "new@example.com"),
                .init(.customer, "4"): Self.customer("4", "d@example.com"), .init(.customer, "10"): Self.customer("10", "e@example.com"),
            ])
        #expect(rows.created(.customer).map(\.key) == ["4", "10"])
        #expect(rows.changed(.customer).map(\.key) == ["2", "4", "10"])
        #expect(rows.deleted(.customer) == ["3"])
        #expect(rows.before(.customer, "2")?["email"] == .text("b@example.com"))
        #expect(rows.after(.customer, "3") == nil)
        #expect(rows.keys.count == 5)
        #expect(rows.created(.invoice).isEmpty)
    }
}
