import Billing
import Foundation
import Postgres
import TestSupport
import Testing

/// `ledgerlift report` and `query balance` with `--time-zone` and `--billing-entity`, run as
/// a binary against the hand-written stories of ``WiderReadModelTests`` (projected in-process:
/// the end-to-end test target cannot build billing events). The figures are those worked out
/// there; here the binary must print them, exactly, and refuse a zone PostgreSQL does not know.
@Suite("report and query balance in a time zone and for one billing entity, run as a binary")
struct ReportCommandOutputTests {
    @Test func revenueInEachBillingEntitysZoneAndForOneEntityPrintsPrepaidCollected() async throws {
        try await WiderReadModelTests.withStories { (_: Connection, dsn: String, _: ReadModelReader) async throws in
            let zoned = try await LedgerliftBinary.run(
                ["report", "revenue", "--store", dsn, "--from", "2024-01", "--to", "2024-04", "--time-zone", "billing-entity"])
            #expect(zoned.status == 0, "\(zoned.stderr)")
            #expect(
                zoned.stdout == """
                    revenue by month, 2024-01 to 2024-04 (in each billing entity's time zone)
                    month    currency  invoiced  collected  prepaid_collected  refunded  credited
                    -------  --------  --------  ---------  -----------------  --------  --------
                    2024-01  EUR           0.00       0.00              50.00      0.00      0.00
                    2024-02  EUR          35.00       0.00               0.00      0.00      0.00
                    2024-02  USD          37.00      30.00              20.00      0.00      0.00
                    2024-03  USD           4.00       0.00               0.00      0.00      0.00

                    """)
            let tenant = try await LedgerliftBinary.run(
                [
                    "report", "revenue", "--store", dsn, "--from", "2024-01", "--to", "2024-04", "--billing-entity", "be-eu",
                    "--format", "json",
                ])
            #expect(tenant.status == 0, "\(tenant.stderr)")
            #expect(
                tenant.stdout
                    == #"[{"month":"2024-01","currency":"EUR","invoiced":"15.00","collected":"0.00","prepaid_collected":"50.00","refunded":"0.00","credited":"0.00"},"#
                    + #"{"month":"2024-02","currency":"EUR","invoiced":"20.00","collected":"0.00","prepaid_collected":"0.00","refunded":"0.00","credited":"0.00"},"#
                    + #"{"month":"2024-03","currency":"USD","invoiced":"4.00","collected":"0.00","prepaid_collected":"0.00","refunded":"0.00","credited":"0.00"}]"#
                    + "\n")
        }
    }

    @Test func mrrAndAgingInATimeZoneSayWhichInTheirHeading() async throws {
        try await WiderReadModelTests.withStories { (_: Connection, dsn: String, _: ReadModelReader) async throws in
            let mrr = try await LedgerliftBinary.run(
                ["report", "mrr", "--store", dsn, "--from", "2024-01", "--to", "2024-03", "--time-zone", "customer"])
            #expect(mrr.status == 0, "\(mrr.stderr)")
            #expect(
                mrr.stdout == """
                    MRR by month, all customers, 2024-01 to 2024-03 (in each customer's time zone)
                    month    currency    new  expansion  contraction  churn    mrr
                    -------  --------  -----  ---------  -----------  -----  -----
                    2024-02  USD       30.00       0.00         0.00   0.00  30.00
                    2024-03  USD        0.00       0.00         0.00   0.00  30.00

                    """)
            let aging = try await LedgerliftBinary.run(
                ["report", "aging", "--store", dsn, "--as-of", "2024-04-15T23:30:00Z", "--time-zone", "Europe/Paris"])
            #expect(aging.status == 0, "\(aging.stderr)")
            #expect(
                aging.stdout == """
                    receivables aging as of 2024-04-15T23:30:00.000000Z (in Europe/Paris)
                    customer  currency  current  1-30  31-60  61-90   90+  total
                    --------  --------  -------  ----  -----  -----  ----  -----
                    cust-w    EUR          0.00  0.00   0.00  20.00  0.00  20.00
                    cust-x    USD          0.00  4.00   0.00   0.00  0.00   4.00
                    total     EUR          0.00  0.00   0.00  20.00  0.00  20.00
                    total     USD          0.00  4.00   0.00   0.00  0.00   4.00

                    """)
            let none = try await LedgerliftBinary.run(
                [
                    "report", "aging", "--store", dsn, "--as-of", "2024-04-15T23:30:00Z", "--billing-entity", "be-us", "--format",
                    "json",
                ])
            #expect(none.status == 0, "\(none.stderr)")
            #expect(
                none.stdout
                    == #"{"as_of":"2024-04-15T23:30:00.000000Z","time_zone":"utc","billing_entity":"be-us","customers":[]}"# + "\n")
        }
    }

    @Test func balanceShowsPrepaidCreditAndOneBillingEntitysRows() async throws {
        try await WiderReadModelTests.withStories { (_: Connection, dsn: String, _: ReadModelReader) async throws in
            let tenant = try await LedgerliftBinary.run(["query", "balance", "--store", dsn, "--customer", "cust-x", "--billing-entity", "be-eu"])
            #expect(tenant.status == 0, "\(tenant.stderr)")
            #expect(
                tenant.stdout == """
                    customer cust-x, as of now, billing entity be-eu
                    currency  receivables  unapplied credit  balance  prepaid credit
                    --------  -----------  ----------------  -------  --------------
                    USD              4.00              0.00     4.00            0.00

                    """)
            // A known customer with nothing in that billing entity: an answer (status 0), not "not found".
            let elsewhere = try await LedgerliftBinary.run(
                ["query", "balance", "--store", dsn, "--customer", "cust-w", "--billing-entity", "be-us"])
            #expect(elsewhere.status == 0, "\(elsewhere.stderr)")
            #expect(
                elsewhere.stdout == """
                    customer cust-w, as of now, billing entity be-us
                    no invoices, balance transactions, balance credit applications, wallets or currency for this customer in this billing entity at that time

                    """)
            let json = try await LedgerliftBinary.run(["query", "balance", "--store", dsn, "--customer", "cust-w", "--format", "json"])
            #expect(json.status == 0, "\(json.stderr)")
            #expect(
                json.stdout
                    == #"{"customer_id":"cust-w","as_of":null,"balances":[{"currency":"EUR","receivables":"20.00","unapplied_credit":"0.00","balance":"20.00","prepaid_credit":"35.00"}]}"#
                    + "\n")
        }
    }

    @Test func anUnknownBillingEntityOrMRRCustomerIsAFindingStatusOneAndAnEmptyOneAUsageError() async throws {
        try await WiderReadModelTests.withStories { (_: Connection, dsn: String, _: ReadModelReader) async throws in
            let months = ["--from", "2024-01", "--to", "2024-04"]
            for command in [
                ["report", "revenue"] + months, ["report", "mrr"] + months, ["report", "aging"],
                ["report", "aging", "--as-of", "2024-03-01"], ["query", "balance", "--customer", "cust-x"],
                ["query", "balance", "--customer", "cust-x", "--as-of", "2024-03-01", "--format", "json"],
            ] {
                let unknown = try await LedgerliftBinary.run(command + ["--store", dsn, "--billing-entity", "nope"])
                #expect(unknown.status == 1, "\(command)")
                #expect(unknown.stdout == "", "\(command)")
                #expect(unknown.stderr == "unknown billing entity 'nope'\n", "\(command)")
                let empty = try await LedgerliftBinary.run(command + ["--store", dsn, "--billing-entity", ""])
                #expect(empty.status == 2, "\(command)")
                #expect(empty.stdout == "", "\(command)")
                #expect(
                    empty.stderr.hasPrefix("Error: --billing-entity is empty: give a billing entity's key (billing_entity_id)\n"),
                    "\(command): \(empty.stderr)")
            }
            let customer = try await LedgerliftBinary.run(
                ["report", "mrr", "--store", dsn, "--customer", "nope"] + months)
            #expect(customer.status == 1)
            #expect(customer.stdout == "")
            #expect(customer.stderr == "unknown customer 'nope'\n")
            // A known customer without MRR is still an answer.
            let none = try await LedgerliftBinary.run(
                ["report", "mrr", "--store", dsn, "--customer", "cust-w"] + months)
            #expect(none.status == 0, "\(none.stderr)")
            #expect(none.stdout == "no MRR for customer cust-w from 2024-01 to 2024-04\n")
        }
    }

    @Test func aTimeZoneUnknownToPostgreSQLCouldNotRunStatusTwo() async throws {
        try await WiderReadModelTests.withStories { (_: Connection, dsn: String, _: ReadModelReader) async throws in
            for command in [
                ["report", "revenue", "--from", "2024-01", "--to", "2024-04"], ["report", "mrr", "--from", "2024-01", "--to", "2024-04"],
                ["report", "aging"],
            ] {
                let refused = try await LedgerliftBinary.run(
                    command + ["--store", dsn, "--time-zone", "Mars/Olympus_Mons"])
                #expect(refused.status == 2)
                #expect(refused.stdout.isEmpty)
                #expect(
                    refused.stderr
                        == "Error: --time-zone Mars/Olympus_Mons is not utc, customer, billing-entity or a time zone PostgreSQL knows "
                        + "(an IANA name such as Europe/Paris; see pg_timezone_names)\n")
            }
        }
    }
}
