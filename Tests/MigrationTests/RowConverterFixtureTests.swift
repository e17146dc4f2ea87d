import Mapping
import Billing
import Fixtures
import Migration
import Postgres
import Testing

/// Converts every row of every mapped entity (and every history row) of the loaded seed.
private func convertEverything(
    _ mapping: MappingFile, on connection: Connection
) async throws -> (current: [Entity: [RowConversion]], history: [Entity: [RowConversion]]) {
    var current = [Entity: [RowConversion]]()
    var history = [Entity: [RowConversion]]()
    for entityMapping in mapping.entities {
        let converter = try #require(mapping.converter(for: entityMapping.entity))
        current[entityMapping.entity] = try await MappingTestSupport.convertAll(
            entityMapping.query, with: converter, on: connection)
        if let historyQuery = entityMapping.historyQuery {
            history[entityMapping.entity] = try await MappingTestSupport.convertAll(
                historyQuery, with: converter, history: true, on: connection)
        }
    }
    return (current, history)
}

@Suite("RowConverter over the fixture seeds, through the reference mapping")
struct RowConverterFixtureTests {
    @Test func everyRowOfTheReferenceSeedConvertsWithNoQuarantine() async throws {
        let mapping = try MappingTestSupport.referenceMapping()
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let (current, history) = try await convertEverything(mapping, on: connection)
            for entity in referenceEntities {
                let rows = current[entity] ?? []
                #expect(Int64(rows.count) == referenceRowCounts[entity], "\(entity)")
                #expect(rows.compactMap(\.quarantine).map(\.description) == [], "\(entity)")
                #expect(rows.compactMap(\.migrated).filter(\.isInferred).isEmpty, "\(entity)")
                let keys = Set(rows.compactMap(\.migrated).map(\.row.key))
                #expect(keys.count == rows.count, "\(entity): keys are unique")
            }
            let versions = try #require(history[.subscription])
            #expect(versions.count == 22)
            #expect(versions.compactMap(\.quarantine).map(\.description) == [])
            #expect(versions.allSatisfy { $0.migrated?.validFrom != nil })
        }
    }

    @Test func referenceRowsCarryExactMoneyAndTheLegacyDetails() async throws {
        let mapping = try MappingTestSupport.referenceMapping()
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            let (current, history) = try await convertEverything(mapping, on: connection)
            func row(_ entity: Entity, _ key: String) throws -> CanonicalRow {
                try #require(current[entity]?.compactMap(\.migrated).first { $0.row.key == key }?.row)
            }
            // Story 21: JPY (0 decimals); story 22: KWD (3 decimals).
            #expect(try row(.plan, "10")["amount"] == .amount(5500))
            #expect(try row(.plan, "11")["amount"] == .amount(14875))
            #expect(try row(.plan, "11")["currency"] == .text("KWD"))
            // Story 24: usage lines at 0.0125 per call keep their exact unit amount.
            let usage = try #require(
                current[.invoiceLine]?.compactMap(\.migrated).map(\.row).first {
                    $0["unit_amount"] == .decimal("0.0125")
                })
            #expect(usage["kind"] == .text("usage"))
            #expect(usage["currency"] == .text("EUR"))
            // Story 28: the soft-deleted customer is archived; story 30's currency comes from its invoices.
            #expect(try row(.customer, "28")["archived_at"].timestampValue != nil)
            #expect(try row(.customer, "30")["currency"] == .text("USD"))
            #expect(try row(.customer, "29")["currency"] == .null)
            #expect(try row(.customer, "1")["archived_at"] == .null)
            #expect(try row(.customer, "1")["time_zone"] != .null)
            // Story 13's draft invoice, story 12's void one, story 37's uncollectible one.
            #expect(try row(.invoice, "1303")["status"] == .text("draft"))
            #expect(current[.invoice]?.compactMap(\.migrated).filter { $0.row["status"] == .text("void") }.count == 1)
            #expect(
                current[.invoice]?.compactMap(\.migrated).filter { $0.row["status"] == .text("uncollectible") }.count
                    == 1)
            // Refunds get their customer and currency through the payment.
            let refund = try #require(current[.refund]?.compactMap(\.migrated).first?.row)
            #expect(refund["customer_id"] != .null)
            #expect(refund["currency"] != .null)
            // Subscription 11's history: the trialing version, valid from creation.
            let version = try #require(history[.subscription]?.compactMap(\.migrated).first { $0.row.key == "11" })
            #expect(version.row["status"] == .text("trialing"))
            #expect(version.validFrom == PostgresTimestamp(year: 2025, month: 6, day: 2, hour: 9, minute: 14))
            #expect(version.validTo == PostgresTimestamp(year: 2025, month: 6, day: 16, hour: 9, minute: 14))
            #expect(version.row["updated_at"] == .null)
            // Subscription 271's seat change 5 → 8 happened at the audit row's changed_at, although
            // the current row's updated_at is a later renewal: valid_to keeps that time.
            let seats = try #require(history[.subscription]?.compactMap(\.migrated).first { $0.row.key == "271" })
            #expect(seats.row["quantity"] == .integer(5))
            #expect(seats.validTo == PostgresTimestamp(year: 2025, month: 9, day: 21, hour: 10))
            #expect(
                try row(.subscription, "271")["updated_at"]
                    == .timestamp(PostgresTimestamp(year: 2025, month: 10, day: 6, hour: 10)!))
        }
    }

    @Test func theDirtySeedsSingleRowCasesAreQuarantinedWithTheirOwnReasons() async throws {
        let mapping = try MappingTestSupport.referenceMapping()
        try await MappingTestSupport.withLegacy(.dirty) { connection, _ in
            let (current, history) = try await convertEverything(mapping, on: connection)
            var quarantined = [String: Quarantine.Reason]()
            for (entity, rows) in current {
                for record in rows.compactMap(\.quarantine) { quarantined["\(entity) \(record.key)"] = record.reason }
            }
            let expected: [String: Quarantine.Reason] = [
                // D01: 12.345 USD, and its line.
                "invoice 900102": .amountNotMinorUnit, "invoice_line 9001021": .amountNotMinorUnit,
                // D02: 1500.5 JPY, and its line.
                "invoice 900202": .amountNotMinorUnit, "invoice_line 9002021": .amountNotMinorUnit,
                // D06: no currency on the customer, the invoice or the payment (the customer itself migrates).
                "invoice 900601": .currencyMissing, "invoice_line 9006011": .currencyMissing,
                "payment 900601": .currencyMissing,
                // D07: 'XXY' on the customer, the invoice (and so its line) and the payment.
                "customer 9007": .currencyUnknown, "invoice 900701": .currencyUnknown,
                "invoice_line 9007011": .currencyUnknown, "payment 900701": .currencyUnknown,
                // D08: invoice status smallint 7, passed through by the mapping's CASE as 'unknown:7'.
                "invoice 900803": .statusUnknown,
                // D09: subscription status 'suspended'.
                "subscription 90091": .statusUnknown,
                // D14: 99999999999999999999.99 USD.
                "payment 901402": .amountOverflow,
            ]
            #expect(quarantined == expected)
            func detail(_ entity: Entity, _ key: String) -> String? {
                current[entity]?.compactMap(\.quarantine).first { $0.key == key }?.detail
            }
            #expect(
                detail(.invoice, "900803")
                    == "status \"unknown:7\" is not one of draft, open, paid, void, uncollectible")
            #expect(
                detail(.subscription, "90091")
                    == "status \"suspended\" is not one of trialing, active, past_due, canceled, unpaid, incomplete, paused, pending"
            )
            #expect(
                detail(.payment, "901402")
                    == "amount 99999999999999999999.99 USD does not fit in 64-bit minor units (at most 92233720368547758.07 USD)"
            )
            #expect(
                detail(.invoice, "900102")
                    == "subtotal 12.345 is not a whole number of USD minor units (USD has 2 decimal places); it is never rounded"
            )
            #expect(
                detail(.customer, "9007")
                    == "currency \"XXY\" is not a usable ISO 4217 code: \"XXY\" is not an ISO 4217 currency code")
            // Controls: 12.345 KWD is exact (D26); the soft-deleted debtor (D28) and the clean customers migrate.
            #expect(
                current[.invoiceLine]?.compactMap(\.migrated).first { $0.row.key == "9026012" }?.row["amount"]
                    == .amount(12345))
            #expect(
                current[.invoice]?.compactMap(\.migrated).first { $0.row.key == "902601" }?.row["total"]
                    == .amount(27220))
            #expect(current[.customer]?.compactMap(\.migrated).contains { $0.row.key == "9028" } == true)
            // Conservation: every row is either migrated or quarantined.
            for entity in referenceEntities {
                #expect(Int64(current[entity]?.count ?? 0) == dirtyRowCounts[entity], "\(entity)")
            }
            // The history rows themselves are clean; the backfill takes them along with their subscription.
            #expect(history[.subscription]?.compactMap(\.quarantine).isEmpty == true)
            #expect(history[.subscription]?.count == 2)
        }
    }

    @Test func theEntitySourcesHandTheBackfillTheSameAnswers() async throws {
        let mapping = try MappingTestSupport.referenceMapping()
        let sources = mapping.entitySources()
        #expect(sources.map(\.entity) == referenceEntities)
        let invoices = try #require(sources.first { $0.entity == .invoice })
        let subscriptions = try #require(sources.first { $0.entity == .subscription })
        #expect(invoices.historyQuery == nil)
        try await MappingTestSupport.withLegacy(.dirty) { connection, _ in
            let outcomes = try await connection.withSession { session in
                var out = [String: String]()
                try session.stream(invoices.query) { row in
                    switch invoices.convert(row) {
                    case .canonical(let canonical, let validFrom, _, _):
                        out[canonical.key] = validFrom == nil ? "migrated" : "history?"
                    case .quarantined(let key, let reason, _):
                        out[key] = reason
                    }
                }
                try session.stream(try #require(subscriptions.historyQuery)) { row in
                    if case .canonical(let canonical, let validFrom, _, _) = subscriptions.convert(row), validFrom != nil {
                        out["history " + canonical.key] = "version"
                    }
                }
                return out
            }
            #expect(outcomes.count == 73)
            #expect(outcomes["900102"] == "amount_not_minor_unit")
            #expect(outcomes["900803"] == "status_unknown")
            #expect(outcomes["900101"] == "migrated")
            #expect(outcomes["history 90091"] == "version")
            #expect(outcomes["history 90151"] == "version")
        }
    }
}
