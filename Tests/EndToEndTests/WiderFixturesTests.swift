import Foundation
import Postgres
import TestSupport
import Testing

/// The Lago and Kill Bill worked examples (`fixtures/lago/`, `fixtures/killbill/`), run as a user
/// runs them: their own arithmetic holds on the seed, the mapping checks, the backfill migrates
/// every row with nothing quarantined, the diff is clean, and the reports give the figures
/// computed by hand in each fixture's README.
@Suite("Lago and Kill Bill fixtures: mapped, migrated, diffed clean, with the hand-computed figures")
struct WiderFixturesTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func file(_ path: String) throws -> String {
        try String(contentsOf: repository.appendingPathComponent(path), encoding: .utf8)
    }

    /// Each `-- check:` query of a fixture's checks.sql, by name.
    static func checks(_ path: String) throws -> [(name: String, sql: String)] {
        try file(path).components(separatedBy: "-- check: ").dropFirst().map { part in
            let name = String(part.prefix { $0 != "\n" })
            let body = part.drop { $0 != "\n" }
            let sql = body.components(separatedBy: ";\n").first!
            return (name, sql)
        }
    }

    /// Loads `fixture`'s schema and seed into `legacy`, checks its own rules, then migrates it
    /// into `store` with the fixture's mapping and returns the diff's output.
    static func migrate(_ fixture: String, legacy: String, store: String, schema: String) async throws -> String {
        let connection = try await Connection.connect(legacy)
        defer { connection.close() }
        try await connection.executeScript(try file("fixtures/\(fixture)/schema.sql"))
        try await connection.executeScript(try file("fixtures/\(fixture)/seed.sql"))
        let rules = try checks("fixtures/\(fixture)/checks.sql")
        #expect(rules.count > 10)
        for rule in rules {
            let violations = try await connection.withSession { session in
                try session.execute("SET search_path = \(schema), pg_catalog")
                return try session.query(rule.sql).rows.count
            }
            #expect(violations == 0, "\(fixture) \(rule.name)")
        }

        let mapping = repository.appendingPathComponent("fixtures/\(fixture)/mapping.yaml").path
        #expect(try await LedgerliftBinary.run(["store", "init", "--store", store]).status == 0)
        let check = try await LedgerliftBinary.run(["mapping", "check", "--legacy", legacy, "--mapping", mapping])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains("mapping ok: 13 entities checked, 0 errors"))
        let backfill = try await LedgerliftBinary.run(["backfill", "--legacy", legacy, "--store", store, "--mapping", mapping])
        #expect(backfill.status == 0, "\(backfill.stderr)")
        #expect(backfill.stdout.contains("every legacy row is accounted for"))
        let quarantine = try await Connection.connect(store)
        defer { quarantine.close() }
        #expect(try await quarantine.query("SELECT count(*) FROM ledgerlift.quarantine").rows[0].decode(at: 0, as: Int64.self) == 0)
        #expect(try await LedgerliftBinary.run(["project", "--store", store]).status == 0)
        let diff = try await LedgerliftBinary.run(["diff", "--legacy", legacy, "--store", store, "--mapping", mapping])
        #expect(diff.status == 0, "\(diff.stdout)")
        #expect(diff.stdout.contains("CLEAN: 0 differences, 0 broken invariants"))
        return diff.stdout
    }

    /// `(customer name, currency) → receivables, unapplied credit, prepaid credit` in minor units.
    static func balances(_ store: String) async throws -> [String: [Int64]] {
        let connection = try await Connection.connect(store)
        defer { connection.close() }
        let rows = try await connection.query(
            """
            SELECT c.name || ' ' || b.currency, b.receivables::int8, b.unapplied_credit::int8, b.prepaid_credit::int8
            FROM ledgerlift_read.customer_balances b JOIN ledgerlift_read.customers c USING (customer_id)
            """
        ).rows
        var result = [String: [Int64]]()
        for row in rows {
            result[try row.decode(at: 0, as: String.self)] = try (1...3).map { try row.decode(at: $0, as: Int64.self) }
        }
        return result
    }

    static func report(_ arguments: [String]) async throws -> String {
        let run = try await LedgerliftBinary.run(["report"] + arguments + ["--format", "json"])
        #expect(run.status == 0, "\(arguments) \(run.stderr)")
        return run.stdout
    }

    @Test func theLagoExampleMigratesCleanAndGivesItsHandComputedFigures() async throws {
        try await TestDatabase.withFresh("lago") { legacy in
            try await TestDatabase.withFresh("lago_store") { store in
                let diff = try await Self.migrate("lago", legacy: legacy, store: store, schema: "lago")
                for entity in ["payment_allocation", "wallet", "wallet_transaction", "credit_application", "billing_entity"] {
                    #expect(diff.contains("\n\(entity) "), "\(entity) is compared")
                }
                // CN0601's credit was used by the March invoice (finalized 28 Feb 23:00:30 UTC, its
                // Lago credits row): that is when it was applied, observed, not at its issue.
                let events = try await Connection.connect(store)
                defer { events.close() }
                let applied = try await events.query(
                    """
                    SELECT occurred_at::text || ' ' || (metadata ->> 'evidence') FROM ledgerlift.events
                    WHERE stream_id = 'credit_note-00000070-0000-4000-8000-000000006001' AND event_type = 'CreditNoteApplied'
                    """
                ).rows.map { try $0.decode(at: 0, as: String.self) }
                #expect(applied == ["2025-02-28 23:00:30+00 observed"])

                // Receivables EUR 168.80, USD 283.49, HUF 19 050; Café Lumière's wallet 30.40.
                let balances = try await Self.balances(store)
                #expect(balances["Boulangerie Martin EUR"] == [11_880, 0, 0])
                #expect(balances["Café Lumière EUR"] == [5_000, 0, 3_040])
                #expect(balances["Hudson Labs USD"] == [6_683, 0, 0])
                #expect(balances["Riverside Media USD"] == [21_666, 0, 0])
                #expect(balances["Tisza Webshop Kft HUF"] == [1_905_000, 0, 0])
                #expect(balances["Atelier Dupont EUR"] == [0, 0, 0])  // the rounding invoice, paid
                #expect(balances["Studio Bleu EUR"] == [0, 0, 0])

                // The December run at 00:30 Paris is December in UTC, January in Paris: 297.00
                // + 20 % tax in UTC, 99.00 + tax in the billing entity's zone; the 100.00 top-up
                // is prepaid cash, not revenue.
                let utc = try await Self.report(["revenue", "--store", store, "--from", "2024-12", "--to", "2024-12"])
                #expect(utc.contains(#"{"month":"2024-12","currency":"EUR","invoiced":"356.40","#))
                let local = try await Self.report(
                    ["revenue", "--store", store, "--from", "2024-12", "--to", "2025-03", "--time-zone", "billing-entity"])
                #expect(local.contains(#"{"month":"2024-12","currency":"EUR","invoiced":"118.80","#))
                #expect(
                    local.contains(
                        #"{"month":"2025-01","currency":"EUR","invoiced":"1425.60","collected":"1425.60","prepaid_collected":"100.00""#))
                // Budapest: 15 000 + 27 % tax in February and March locally, January and February in UTC.
                #expect(local.contains(#"{"month":"2025-03","currency":"HUF","invoiced":"19050.00","#))
                #expect(!local.contains(#"{"month":"2025-01","currency":"HUF""#))

                // MRR: EUR 338.50, USD 537.00 (Delta's pending downgrade not yet), HUF 15 000.
                let mrr = try await Self.report(["mrr", "--store", store, "--from", "2025-04", "--to", "2025-04"])
                for (currency, figure) in [("EUR", "338.50"), ("USD", "537.00"), ("HUF", "15000.00")] {
                    #expect(mrr.contains(#""currency":"\#(currency)""#) && mrr.contains(#""mrr":"\#(figure)""#), "\(currency)")
                }
                // One billing entity: Nimbus Kft (Budapest) alone.
                let kft = try await Self.report(
                    ["mrr", "--store", store, "--from", "2025-04", "--to", "2025-04", "--billing-entity",
                     "00000002-0000-4000-8000-000000000002"])
                #expect(kft.contains(#""mrr":"15000.00""#) && !kft.contains(#""currency":"EUR""#), "\(kft)")
            }
        }
    }

    @Test func theKillBillExampleMigratesCleanUnderItsReopeningReceivables() async throws {
        try await TestDatabase.withFresh("killbill") { legacy in
            try await TestDatabase.withFresh("killbill_store") { store in
                let diff = try await Self.migrate("killbill", legacy: legacy, store: store, schema: "killbill")
                for entity in ["chargeback", "payment_transaction", "payment_allocation", "plan"] {
                    #expect(diff.contains("\n\(entity) "), "\(entity) is compared")
                }
                // Receivables 152.80 USD (Bob's 20.00 reopened by a refund, 35.00 of Dan's by a
                // lost chargeback) and 48.00 EUR.
                let balances = try await Self.balances(store)
                #expect(balances["Alice Martin USD"] == [3_780, 0, 0])
                #expect(balances["Bob Chen USD"] == [2_000, 0, 0])
                #expect(balances["Dan Evans USD"] == [8_500, 0, 0])
                #expect(balances["Frank Green USD"] == [1_000, 0, 0])
                #expect(balances["Globex Lyon SAS EUR"] == [4_800, 0, 0])
                #expect(balances["Carol Diaz USD"] == [0, 0, 0])

                // MRR: 130.00 USD through May, 80.00 once Dan's premium plan ended in June; 50.00 EUR.
                let mrr = try await Self.report(["mrr", "--store", store, "--from", "2025-05", "--to", "2025-06"])
                #expect(mrr.contains(#"{"month":"2025-05","currency":"USD","new":"0.00","expansion":"0.00","contraction":"0.00","churn":"0.00","mrr":"130.00"}"#))
                #expect(mrr.contains(#"{"month":"2025-06","currency":"USD","new":"0.00","expansion":"0.00","contraction":"0.00","churn":"-50.00","mrr":"80.00"}"#))
                #expect(mrr.contains(#"{"month":"2025-06","currency":"EUR","new":"0.00","expansion":"0.00","contraction":"0.00","churn":"0.00","mrr":"50.00"}"#))

                // Six months of USD invoiced, tax included: 667.58 + 33.41 = 700.99.
                let revenue = try await Self.report(
                    ["revenue", "--store", store, "--from", "2025-01", "--to", "2025-06"])
                let months = try JSONSerialization.jsonObject(with: Data(revenue.utf8)) as! [[String: String]]
                // In cents: every figure prints with USD's two decimals.
                let usd = months.filter { $0["currency"] == "USD" }.compactMap { $0["invoiced"] }
                #expect(usd.allSatisfy { $0.split(separator: ".").last?.count == 2 })
                #expect(usd.compactMap { Int64($0.replacingOccurrences(of: ".", with: "")) }.reduce(0, +) == 70_099)
            }
        }
    }
}
