import Fixtures
import Postgres
import TestSupport
import Testing

@Suite("The clean reference seed obeys its own arithmetic")
struct ReferenceSeedTests {
    @Test func checksFileSplitsIntoNineteenNamedChecks() throws {
        let suite = try FixtureCheckSuite(fixtures: try repositoryFixtures())
        #expect(suite.setup.count == 1)
        #expect(suite.checks.map(\.code) == (1...19).map { $0 < 10 ? "C0\($0)" : "C\($0)" })
        #expect(suite.checks.allSatisfy { $0.sql.hasSuffix(";") && !$0.sql.dropLast().contains(";") })
    }

    @Test func everyCheckReturnsZeroRowsOnTheReferenceSeed() async throws {
        let loader = FixtureLoader(fixtures: try repositoryFixtures())
        try await TestDatabase.withConnection { connection, _ in
            _ = try await loader.load(.reference, into: connection)
            let results = try await runChecks(connection)
            #expect(results.count == 19)
            for (check, violations) in results {
                #expect(violations.isEmpty, "\(check.name) found \(violations.count) rows, first: \(violations.prefix(3))")
            }
        }
    }

    /// Recomputed in Swift from the rows, independently of checks.sql: every invoice's total is
    /// the exact sum of its lines.
    @Test func eachInvoiceTotalEqualsTheSumOfItsLines() async throws {
        let loader = FixtureLoader(fixtures: try repositoryFixtures())
        try await TestDatabase.withConnection { connection, _ in
            _ = try await loader.load(.reference, into: connection)
            let invoices = try await connection.query("SELECT id, total::text FROM legacy.invoices ORDER BY id").rows
            let lines = try await connection.query("SELECT invoice_id, amount::text FROM legacy.invoice_line_items").rows
            var sums: [Int64: Int64] = [:]
            for line in lines {
                sums[try line.decode(at: 0, as: Int64.self), default: 0] += try minorUnits(line.values[1])
            }
            #expect(invoices.count == 146)
            for invoice in invoices {
                let id = try invoice.decode(at: 0, as: Int64.self)
                #expect(sums[id] != nil, "invoice \(id) has no lines")
                #expect(try minorUnits(invoice.values[1]) == sums[id], "invoice \(id): total \(invoice.values[1] ?? "NULL")")
            }
        }
    }

    /// README rule C07/C08: balance = Σ amount_due of open (1) and uncollectible (4) invoices −
    /// unapplied credit, where unapplied credit = −Σ of all the customer's balance transactions;
    /// credit_balance is that credit as a float8, bit for bit.
    @Test func eachCustomerBalanceIsOpenInvoicesMinusUnappliedCredit() async throws {
        let loader = FixtureLoader(fixtures: try repositoryFixtures())
        try await TestDatabase.withConnection { connection, _ in
            _ = try await loader.load(.reference, into: connection)
            let customers = try await connection.query(
                "SELECT id, balance::text, credit_balance::text FROM legacy.customers ORDER BY id").rows
            let invoices = try await connection.query(
                "SELECT customer_id, status, amount_due::text FROM legacy.invoices").rows
            let transactions = try await connection.query(
                "SELECT customer_id, amount::text FROM legacy.customer_balance_transactions").rows
            var owed: [Int64: Int64] = [:]
            for invoice in invoices where [1, 4].contains(try invoice.decode(at: 1, as: Int.self)) {
                owed[try invoice.decode(at: 0, as: Int64.self), default: 0] += try minorUnits(invoice.values[2])
            }
            var ledger: [Int64: Int64] = [:]
            for transaction in transactions {
                ledger[try transaction.decode(at: 0, as: Int64.self), default: 0] += try minorUnits(transaction.values[1])
            }
            #expect(customers.count == 45)
            var customersWithCredit = 0
            for customer in customers {
                let id = try customer.decode(at: 0, as: Int64.self)
                let credit = -(ledger[id] ?? 0)
                #expect(credit >= 0, "customer \(id) has negative unapplied credit")
                #expect(try minorUnits(customer.values[1]) == (owed[id] ?? 0) - credit, "customer \(id) balance")
                // The one float column: compare as float8, never after rounding.
                let expectedFloat = Double(PostgresNumeric(units: credit, scale: 3).description)
                #expect(Double(customer.values[2] ?? "") == expectedFloat, "customer \(id) credit_balance")
                if credit > 0 { customersWithCredit += 1 }
            }
            #expect(customersWithCredit >= 2, "stories 17 and 19 hold credit")
        }
    }
}

/// A numeric's text as thousandths (every currency's minor unit divides a thousandth exactly).
func minorUnits(_ text: String?) throws -> Int64 {
    guard let text, let numeric = PostgresNumeric(text) else { throw DumpFailed(description: "not a numeric: \(text ?? "NULL")") }
    return try numeric.scaledInteger(exponent: 3)
}
