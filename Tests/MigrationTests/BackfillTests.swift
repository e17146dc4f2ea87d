import Mapping
import Billing
import EventStore
import Fixtures
import Foundation
import Migration
import Postgres
import TestSupport
import Testing

/// A legacy database loaded with a seed, and an empty initialized store, side by side.
func withLegacyAndStore(
    _ seed: FixtureLoader.Seed, _ label: String = #function,
    _ body: (_ legacyDSN: String, _ store: Connection, _ storeDSN: String) async throws -> Void
) async throws {
    try await MappingTestSupport.withLegacy(seed, label) { _, legacyDSN in
        try await TestDatabase.withConnection(label + "_store") { store, storeDSN in
            try await store.withSession { try EventStore().migrate($0) }
            try await body(legacyDSN, store, storeDSN)
        }
    }
}

func backfill(_ legacyDSN: String, _ storeDSN: String, workers: Int = 2, dryRun: Bool = false) async throws
    -> BackfillReport
{
    let mapping = try MappingTestSupport.referenceMapping()
    return try await Backfill(
        .init(legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: mapping, workers: workers, batchEvents: 97, dryRun: dryRun)
    ).run()
}

@Suite("Backfill: the reference and dirty fixtures")
struct BackfillTests {
    /// Row counts of the reference seed (fixtures/README.md).
    static let referenceRows: [Entity: Int64] = [
        .customer: 45, .plan: 11, .subscription: 48, .invoice: 146, .invoiceLine: 169, .payment: 151, .refund: 5,
        .creditNote: 5, .balanceTransaction: 12,
    ]

    @Test func theReferenceFixtureMigratesEveryRowAndQuarantinesNothing() async throws {
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            let report = try await backfill(legacy, storeDSN)
            #expect(report.totalQuarantined == 0)
            #expect(Dictionary(uniqueKeysWithValues: report.entities.map { ($0.entity, $0.rowsRead) }) == Self.referenceRows)
            #expect(report.entities.allSatisfy { $0.isBalanced && $0.rowsMigrated == $0.rowsRead })
            let events = try await count(store, "SELECT count(*) FROM ledgerlift.events")
            #expect(events == report.entities.reduce(0) { $0 + $1.events })
            #expect(events == report.eventsAppended)
            // Each migrated row has exactly one stream.
            #expect(try await count(store, "SELECT count(*) FROM ledgerlift.streams") == Self.referenceRows.values.reduce(0, +))
        }
    }

    @Test func runningTwiceAppendsNothingTheSecondTime() async throws {
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            _ = try await backfill(legacy, storeDSN)
            let first = try await count(store, "SELECT count(*) FROM ledgerlift.events")
            let head = try await count(store, "SELECT max(global_position) FROM ledgerlift.events")
            let second = try await backfill(legacy, storeDSN)
            #expect(second.totalQuarantined == 0)
            #expect(try await count(store, "SELECT count(*) FROM ledgerlift.events") == first)
            #expect(try await count(store, "SELECT max(global_position) FROM ledgerlift.events") == head)
        }
    }

    @Test func aDryRunSynthesizesTheSameEventsAndWritesNothing() async throws {
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            let dry = try await backfill(legacy, storeDSN, dryRun: true)
            #expect(dry.dryRun)
            #expect(try await count(store, "SELECT count(*) FROM ledgerlift.events") == 0)
            let real = try await backfill(legacy, storeDSN)
            #expect(dry.eventsByType.map(\.type) == real.eventsByType.map(\.type))
            #expect(dry.eventsByType.map(\.count) == real.eventsByType.map(\.count))
        }
    }

    /// Every bad case of fixtures/dirty/seed.sql, by entity and key, with the reason the
    /// backfill must give (fixtures/README.md, "The dirty cases").
    static let dirtyCases: [String: String] = [
        "invoice 900102": "amount_not_minor_unit",  // D01 12.345 USD
        "invoice 900202": "amount_not_minor_unit",  // D02 1500.5 JPY
        "customer 9004": "credit_balance_mismatch",  // D04 credit_balance disagrees with the ledger
        "customer 9005": "balance_mismatch",  // D05 balance disagrees with open invoices
        "invoice 900601": "currency_missing",  // D06
        "invoice 900701": "currency_unknown",  // D07 XXY
        "customer 9007": "currency_unknown",  // D07
        "invoice 900803": "status_unknown",  // D08 status 7
        "subscription 90091": "status_unknown",  // D09 'suspended'
        "invoice 901001": "invoice_total_mismatch",  // D10
        "payment 901103": "reference_missing",  // D11 invoice 999999
        "invoice 901201": "paid_before_finalized",  // D12
        "payment 901302": "duplicate_provider_payment_id",  // D13
        "payment 901402": "amount_overflow",  // D14
        "subscription 90151": "quantity_negative",  // D15
        "refund 901601": "refund_exceeds_payment",  // D16
        "invoice 901801": "paid_without_payment",  // D18
        "refund 901901": "refund_of_unsucceeded_payment",  // D19
        "credit_note 90201": "credit_note_balance_exceeds_total",  // D20
        "invoice 902102": "duplicate_invoice_number",  // D21
        "subscription 90222": "subscription_chain_foreign_customer",  // D22
        "invoice 902301": "payment_currency_mismatch",  // D23
        "invoice 902402": "currency_mismatch",  // D24
    ]

    @Test func theDirtyFixtureQuarantinesEachBadCaseWithItsOwnReasonAndMigratesTheRest() async throws {
        try await withLegacyAndStore(.dirty) { legacy, store, storeDSN in
            let report = try await backfill(legacy, storeDSN)
            let quarantined = try await store.query(
                "SELECT entity || ' ' || entity_key, reason FROM ledgerlift.quarantine ORDER BY 1"
            ).rows.map { (try $0.decode(at: 0, as: String.self), try $0.decode(at: 1, as: String.self)) }
            let byKey = Dictionary(uniqueKeysWithValues: quarantined)
            for (key, reason) in Self.dirtyCases {
                #expect(byKey[key] == reason, "\(key)")
            }
            // Everything else quarantined follows a quarantined parent, or is the same defect
            // seen on a child row (an invoice line carrying its invoice's inexact amount).
            for (key, reason) in quarantined where Self.dirtyCases[key] == nil {
                #expect(["parent_quarantined", "amount_not_minor_unit", "currency_missing", "currency_unknown"].contains(reason), "\(key): \(reason)")
            }
            // Clean rows migrate: the five clean control customers have streams.
            for customer in ["9026", "9027", "9028", "9101", "9102", "9003", "9025"] {
                #expect(try await count(store, "SELECT count(*) FROM ledgerlift.streams WHERE stream_id = 'customer-\(customer)'") == 1)
            }
            // Conservation, against the legacy row counts.
            let legacyConnection = try await Connection.connect(legacy)
            let mapping = try MappingTestSupport.referenceMapping()
            for counts in report.entities {
                let query = try #require(mapping[entity: counts.entity]).query
                let rows = try await count(legacyConnection, "SELECT count(*) FROM (\(query)) q")
                #expect(counts.rowsRead == rows, "\(counts.entity)")
                #expect(counts.isBalanced, "\(counts.entity)")
            }
            #expect(report.totalQuarantined == Int64(quarantined.count))
        }
    }

    @Test func subscriptionHistoryBecomesObservedEventsAtTheAuditTimestamps() async throws {
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            _ = try await backfill(legacy, storeDSN)
            let legacyConnection = try await Connection.connect(legacy)
            // Each audit row is a version replaced at changed_at: the change is an event then.
            let audits = try await legacyConnection.query(
                "SELECT subscription_id::text, changed_at FROM legacy.subscription_history ORDER BY 1, 2"
            ).rows.map { (try $0.decode(at: 0, as: String.self), try $0.decode(at: 1, as: PostgresTimestamp.self)) }
            #expect(audits.count == 22)
            for (subscription, changedAt) in audits {
                let rows = try await store.query(
                    """
                    SELECT event_type, metadata->>'evidence' FROM ledgerlift.events
                    WHERE stream_id = $1 AND occurred_at = $2 ORDER BY stream_version
                    """, ["subscription-\(subscription)", changedAt]
                ).rows
                #expect(!rows.isEmpty, "no event of subscription \(subscription) at \(changedAt)")
                for row in rows {
                    let type = try row.decode(at: 0, as: String.self)
                    let evidence = try row.decode(at: 1, as: String.self)
                    #expect(evidence == "observed", "\(subscription) \(type)")
                }
            }
        }
    }
}

func count(_ connection: Connection, _ sql: String) async throws -> Int64 {
    try await connection.query(sql).rows[0].decode(at: 0, as: Int64.self)
}
