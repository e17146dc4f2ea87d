import Foundation
import Postgres
import Server
import TestSupport
import Testing

/// The read routes answer exactly what `ledgerlift query` and `ledgerlift report` print with
/// `--format json`, on the reference fixture after a backfill; their errors are problem
/// documents that say what was wrong with the request and quote no SQL and no row.
@Suite("serve: read routes")
struct ReadRouteTests {
    struct Picks: Sendable {
        var customers: [String]
        var invoices: [String]
        /// The day of the last invoice (every picked row exists then) and a day halfway through.
        var asOf: String
        var midway: String
        var months: (String, String)
    }

    @Test func readRoutesAnswerTheCLIsJSONFiguresAndRefuseBadRequestsWithProblemDocuments() async throws {
        try await withBackfilledStore { store in
            let picks = try await withSession(store) { session -> Picks in
                let customers = try session.query(
                    "SELECT customer_id FROM ledgerlift_read.customers ORDER BY customer_id LIMIT 3"
                ).rows.map { try $0.decode(at: 0, as: String.self) }
                let invoices = try session.query(
                    "SELECT invoice_id FROM ledgerlift_read.invoices ORDER BY invoice_id LIMIT 3"
                ).rows.map { try $0.decode(at: 0, as: String.self) }
                let row = try session.query(
                    """
                    SELECT to_char(max(created_at), 'YYYY-MM-DD'),
                           to_char(min(created_at) + (max(created_at) - min(created_at)) / 2, 'YYYY-MM-DD'),
                           to_char(min(created_at), 'YYYY-MM'), to_char(max(created_at), 'YYYY-MM')
                    FROM ledgerlift_read.invoices
                    """
                ).rows[0]
                return Picks(
                    customers: customers, invoices: invoices, asOf: try row.decode(at: 0),
                    midway: try row.decode(at: 1),
                    months: (try row.decode(at: 2), try row.decode(at: 3)))
            }
            #expect(picks.customers.count == 3)
            #expect(picks.invoices.count == 3)
            try await withServer(ServeConfiguration(storeDSN: store, projects: false)) { _, client in
                // Path and query of each route, and the CLI command printing the same figures.
                var cases: [(path: String, cli: [String])] = []
                for customer in picks.customers {
                    cases.append(("/customers/\(customer)/balance", ["query", "balance", "--customer", customer]))
                    cases.append(
                        (
                            "/customers/\(customer)/balance?as_of=\(picks.asOf)",
                            ["query", "balance", "--customer", customer, "--as-of", picks.asOf]
                        ))
                }
                for invoice in picks.invoices {
                    cases.append(("/invoices/\(invoice)", ["query", "invoice", invoice]))
                    cases.append(
                        (
                            "/invoices/\(invoice)?as_of=\(picks.asOf)",
                            ["query", "invoice", invoice, "--as-of", picks.asOf]
                        ))
                    cases.append(
                        (
                            "/invoices/\(invoice)?as_of=\(picks.midway)",
                            ["query", "invoice", invoice, "--as-of", picks.midway]
                        ))
                }
                for customer in picks.customers {
                    cases.append(
                        (
                            "/customers/\(customer)/balance?as_of=\(picks.midway)",
                            ["query", "balance", "--customer", customer, "--as-of", picks.midway]
                        ))
                }
                cases.append(
                    (
                        "/reports/revenue?from=\(picks.months.0)&to=\(picks.months.1)",
                        ["report", "revenue", "--from", picks.months.0, "--to", picks.months.1]
                    ))
                cases.append(("/reports/aging", ["report", "aging"]))
                cases.append(("/reports/aging?as_of=\(picks.midway)", ["report", "aging", "--as-of", picks.midway]))
                var found = 0
                for (path, cli) in cases {
                    let answer = try await client.get(path)
                    let printed = try await ledgerlift(cli + ["--store", store, "--format", "json"])
                    // Unknown then (the CLI's status 1): 404 with the entity's code.
                    if printed.status == 1 {
                        #expect(answer.status == 404, "\(path): \(answer.body)")
                        #expect(
                            try answer.json["code"] as? String
                                == (cli[1] == "invoice" ? "invoice_not_found" : "customer_not_found"))
                        continue
                    }
                    found += 1
                    #expect(printed.status == 0, "\(cli): \(printed.stderr)")
                    #expect(answer.status == 200, "\(path): \(answer.body)")
                    #expect(answer.header("Content-Type") == "application/json", "\(path)")
                    #expect(answer.body + "\n" == printed.stdout, "\(path)")
                }
                // Every route answered with figures: at least the rows as of the last invoice's day.
                #expect(found >= cases.count - picks.customers.count - picks.invoices.count)
                // Not empty answers: the fixture has balances and revenue.
                let revenue = try await client.get("/reports/revenue?from=\(picks.months.0)&to=\(picks.months.1)")
                #expect(revenue.body.contains("\"invoiced\""))

                // Errors: a problem document with its code, nothing of SQL or rows in it.
                let bad: [(path: String, status: Int, code: String)] = [
                    ("/invoices/bad%27%3B%20DROP%20TABLE%20x", 400, "invalid_id"),
                    ("/customers/%00/balance", 400, "invalid_id"),
                    ("/invoices/\(picks.invoices[0])?as_of=yesterday", 400, "invalid_as_of"),
                    ("/invoices/\(picks.invoices[0])?as_of=2024-13-45", 400, "invalid_as_of"),
                    ("/customers/\(picks.customers[0])/balance?as_of=0000-01-01", 400, "invalid_as_of"),
                    ("/invoices/no-such-invoice", 404, "invoice_not_found"),
                    ("/customers/no-such-customer/balance", 404, "customer_not_found"),
                    ("/customers/\(picks.customers[0])/balance?billing_entity=nobody", 404, "billing_entity_not_found"),
                    ("/reports/revenue?from=2024-03", 400, "invalid_to"),
                    ("/reports/revenue?from=2024-3&to=2024-04", 400, "invalid_from"),
                    ("/reports/revenue?from=2024-05&to=2024-04", 400, "invalid_range"),
                    ("/reports/aging?time_zone=Mars/Olympus", 400, "invalid_time_zone"),
                    ("/reports/aging?time_zone=%27%3B", 400, "invalid_time_zone"),
                    ("/no/such/route", 404, "route_not_found"),
                    ("/invoices", 404, "route_not_found"),
                ]
                for (path, status, code) in bad {
                    let answer = try await client.get(path)
                    #expect(answer.status == status, "\(path): \(answer.body)")
                    #expect(answer.header("Content-Type") == "application/problem+json", "\(path)")
                    let problem = try answer.json
                    #expect(problem["code"] as? String == code, "\(path): \(answer.body)")
                    #expect(problem["status"] as? Int == status, "\(path)")
                    #expect(
                        problem["type"] as? String == "https://ledgerlift.dev/problems/"
                            + code.replacing("_", with: "-"))
                    #expect((problem["title"] as? String)?.isEmpty == false)
                    #expect((problem["detail"] as? String)?.isEmpty == false)
                    Self.expectNoLeak(answer.body, path: path)
                }
                // A known path with a method it does not take: 405 naming the allowed ones.
                let delete = try await client.send("DELETE", "/invoices/\(picks.invoices[0])")
                #expect(delete.status == 405)
                #expect(delete.header("Allow") == "GET")
                #expect(try delete.json["code"] as? String == "method_not_allowed")
                let getCommand = try await client.get("/commands/record_payment")
                #expect(getCommand.status == 405)
                #expect(getCommand.header("Allow") == "POST")
                // A body that is not JSON, on a command route.
                let notJSON = try await client.send("POST", "/commands/record_payment", body: "{not json")
                #expect(notJSON.status == 400)
                #expect(try notJSON.json["code"] as? String == "invalid_body")
                Self.expectNoLeak(notJSON.body, path: "POST not JSON")
                let wrongType = try await client.send(
                    "POST", "/commands/record_payment", body: "a=1",
                    headers: ["Content-Type": "application/x-www-form-urlencoded"])
                #expect(wrongType.status == 415)
                #expect(try wrongType.json["code"] as? String == "unsupported_media_type")
                let unknownCommand = try await client.send("POST", "/commands/drop_tables", body: "{}")
                #expect(unknownCommand.status == 404)
                #expect(try unknownCommand.json["code"] as? String == "unknown_command")
            }
        }
    }

    /// No SQL keyword, schema or table name, PostgreSQL message or DSN in a problem's title
    /// or detail.
    static func expectNoLeak(_ body: String, path: String) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else {
            Issue.record("\(path): not a JSON object: \(body)")
            return
        }
        let text = [object["title"], object["detail"]].compactMap { $0 as? String }.joined(separator: "\n")
        for marker in [
            "SELECT", "FROM ", "WHERE", "ledgerlift_read", "ledgerlift.", "customer_balances", "ar_aging", "postgres",
            "ERROR:",
            "FATAL", "SQLSTATE", "relation", "syntax", "54355", "127.0.0.1",
        ] {
            #expect(!text.contains(marker), "\(path) leaks \(marker): \(body)")
        }
    }
}
