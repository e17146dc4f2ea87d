import Billing
import EventStore
import Mapping
import Postgres
import TestSupport
import Testing

@Suite("QuarantineStore: the one reader and writer of the quarantine table")
struct QuarantineStoreTests {
    @Test func entriesAreWrittenReplacedReleasedListedAndCounted() async throws {
        try await TestDatabase.withConnection { connection, _ in
            let store = QuarantineStore(schema: "ledger's store")
            try await connection.withSession { session in
                try session.execute("CREATE SCHEMA \"ledger's store\"")
                #expect(try store.exists(session) == false)
                try store.create(session)
                try store.create(session)
                #expect(try store.exists(session))
                try session.transaction { tx in
                    try store.write(
                        [
                            .init(entity: .refund, key: "2101", reason: .duplicateKey, detail: "2 rows", raw: "[{}, {}]", runID: "r1"),
                            .init(entity: .refund, key: "<null>#abc", reason: .keyMissing, detail: "NULL", raw: "{}", runID: "r1"),
                            .init(entity: .invoice, key: "7", reason: "invoice_total_mismatch", detail: "x", raw: "{}", runID: "r1"),
                        ], tx)
                }
                // A rerun's verdict replaces the entry of the same key.
                try session.transaction { tx in
                    try store.write(
                        [.init(entity: .invoice, key: "7", reason: .amountOverflow, detail: "too big", raw: "{\"a\": \"1\"}", runID: "r1")],
                        tx)
                }
                let invoices = try store.entries(of: .invoice, in: session)
                #expect(invoices.map(\.reason) == [.amountOverflow])
                #expect(invoices.map(\.detail) == ["too big"])
                #expect(invoices.map(\.raw) == [#"{"a": "1"}"#])
                #expect(try store.keys(of: .refund, in: session) == ["2101", "<null>#abc"])
                #expect(try store.rowsByReason(runID: "r1", in: session).map { "\($0.reason) \($0.rows)" } == [
                    "amount_overflow 1", "duplicate_key 2", "key_missing 1",
                ])

                // Keys a read model holds are compared by the diff, not listed as quarantined.
                try session.execute("CREATE TABLE refunds (refund_id text PRIMARY KEY)")
                try session.execute("INSERT INTO refunds VALUES ('2101')")
                #expect(try store.entries(of: .refund, unlessIn: ("refunds", "refund_id"), in: session).map(\.key) == ["<null>#abc"])

                try session.transaction { try store.release(.refund, keys: ["2101"], $0) }
                #expect(try store.keys(of: .refund, in: session) == ["<null>#abc"])
            }
        }
    }

    @Test func reasonsAreAnOpenSetOfStableCodes() {
        #expect(QuarantineReason.allCases.map(\.code) == [
            "key_missing", "required_value_missing", "currency_missing", "currency_unknown", "amount_not_minor_unit",
            "amount_overflow", "amount_not_a_number", "status_unknown", "value_invalid",
        ])
        let own: QuarantineReason = "balance_cache_mismatch"
        #expect(own.summary == nil)
        #expect(QuarantineReason.rowVanished.summary == "deleted from legacy after an interrupted run had migrated it")
    }
}
