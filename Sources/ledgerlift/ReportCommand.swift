import TextFormats
import ArgumentParser
import Billing
import Foundation
import Postgres

/// `ledgerlift report …`: revenue and MRR by month, receivables aging.
struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Reports from the read models: revenue, MRR, receivables aging.",
        discussion: "Amounts print in the currency's decimals; definitions are in docs/read-models.md.",
        subcommands: [Revenue.self, MRR.self, Aging.self]
    )

    /// `YYYY-MM` (ASCII digits only, years 0001 to 9999) as the first day of the month.
    static func month(_ text: String) -> PostgresDate? {
        let bytes = Array(text.utf8)
        guard bytes.count == 7, bytes[4] == UInt8(ascii: "-") else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for byte in bytes[range] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7) else { return nil }
        return PostgresDate(year: year, month: month, day: 1)
    }

    static func validateMonths(_ from: String, _ to: String) throws {
        func month(_ option: String, _ text: String) throws -> PostgresDate {
            guard let month = ReportCommand.month(text) else {
                throw ValidationError("\(option) \(text) is not a month like 2024-03 (years 0001 to 9999)")
            }
            return month
        }
        let (first, last) = (try month("--from", from), try month("--to", to))
        guard first <= last else { throw ValidationError("--from \(from) is after --to \(to)") }
    }

    static func monthLabel(_ date: PostgresDate) -> String { String(date.description.prefix(7)) }

    struct Revenue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Invoiced, collected, refunded and credited per month and currency.",
            discussion: """
                invoiced: totals of invoices finalized in the month (void ones excluded); collected: payments \
                that succeeded in the month; refunded: refunds that succeeded in the month; credited: credit \
                notes issued in the month (void ones excluded).
                """)

        @OptionGroup var options: ReadModelOptions

        @Option(help: "First month, YYYY-MM.")
        var from: String

        @Option(help: "Last month, YYYY-MM (inclusive).")
        var to: String

        func validate() throws { try ReportCommand.validateMonths(from, to) }

        func run() async throws {
            let connection = try await options.store.connect()
            defer { connection.close() }
            let reader = options.reader
            let (first, last) = (ReportCommand.month(from)!, ReportCommand.month(to)!)
            let months = try await connection.withSession { try reader.revenue(from: first, to: last, in: $0) }
            func amount(_ minor: Int64, _ currency: String) -> String { ReportAmount.decimal(minor, currency: currency) }
            switch options.format {
            case .json:
                print(
                    JSONText.array(
                        months.map { m in
                            .object([
                                ("month", .string(ReportCommand.monthLabel(m.month))), ("currency", .string(m.currency)),
                                ("invoiced", .string(amount(m.invoiced, m.currency))),
                                ("collected", .string(amount(m.collected, m.currency))),
                                ("refunded", .string(amount(m.refunded, m.currency))),
                                ("credited", .string(amount(m.credited, m.currency))),
                            ])
                        }
                    ).rendered)
            case .table:
                if months.isEmpty {
                    print("no revenue from \(from) to \(to)")
                    return
                }
                print(
                    TextTable(
                        ["month", "currency", "invoiced", "collected", "refunded", "credited"],
                        months.map { m in
                            [
                                ReportCommand.monthLabel(m.month), m.currency, amount(m.invoiced, m.currency),
                                amount(m.collected, m.currency), amount(m.refunded, m.currency),
                                amount(m.credited, m.currency),
                            ]
                        }, rightAligned: [2, 3, 4, 5]
                    ).rendered)
            }
        }
    }

    struct MRR: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "mrr",
            abstract: "Monthly recurring revenue and its movements per month and currency.",
            discussion: """
                Per customer, MRR at each month's close (active and past_due subscriptions × plan amount, \
                normalized to a month); new, expansion, contraction (≤ 0) and churn (≤ 0) sum the customers' \
                changes, and mrr = previous month's mrr + the four movements.
                """)

        @OptionGroup var options: ReadModelOptions

        @Option(help: "First month, YYYY-MM.")
        var from: String

        @Option(help: "Last month, YYYY-MM (inclusive).")
        var to: String

        func validate() throws { try ReportCommand.validateMonths(from, to) }

        func run() async throws {
            let connection = try await options.store.connect()
            defer { connection.close() }
            let reader = options.reader
            let (first, last) = (ReportCommand.month(from)!, ReportCommand.month(to)!)
            let months = try await connection.withSession { try reader.mrr(from: first, to: last, in: $0) }
            func amount(_ minor: Int64, _ currency: String) -> String { ReportAmount.decimal(minor, currency: currency) }
            switch options.format {
            case .json:
                print(
                    JSONText.array(
                        months.map { m in
                            .object([
                                ("month", .string(ReportCommand.monthLabel(m.month))), ("currency", .string(m.currency)),
                                ("new", .string(amount(m.new, m.currency))),
                                ("expansion", .string(amount(m.expansion, m.currency))),
                                ("contraction", .string(amount(m.contraction, m.currency))),
                                ("churn", .string(amount(m.churn, m.currency))), ("mrr", .string(amount(m.mrr, m.currency))),
                            ])
                        }
                    ).rendered)
            case .table:
                if months.isEmpty {
                    print("no MRR movements from \(from) to \(to)")
                    return
                }
                print(
                    TextTable(
                        ["month", "currency", "new", "expansion", "contraction", "churn", "mrr"],
                        months.map { m in
                            [
                                ReportCommand.monthLabel(m.month), m.currency, amount(m.new, m.currency),
                                amount(m.expansion, m.currency), amount(m.contraction, m.currency),
                                amount(m.churn, m.currency), amount(m.mrr, m.currency),
                            ]
                        }, rightAligned: [2, 3, 4, 5, 6]
                    ).rendered)
            }
        }
    }

    struct Aging: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Receivables (open and uncollectible invoices) by days past due, per customer and currency.",
            discussion: """
                Days past due = the as-of date (UTC) − due_on; current covers invoices not yet due or without \
                a due date. With --as-of, the invoices are taken as they were at that business time.
                """)

        @OptionGroup var options: ReadModelOptions

        @Option(help: "Business time: a date (its end, UTC) or a timestamp. Default: now.")
        var asOf: String?

        func validate() throws { try BusinessTime.validate(asOf) }

        func run() async throws {
            let connection = try await options.store.connect()
            defer { connection.close() }
            let reader = options.reader
            let asOf = try BusinessTime.validated(self.asOf)
            let rows = try await connection.withSession { try reader.aging(asOf: asOf, in: $0) }
            func amount(_ minor: Int64, _ currency: String) -> String { ReportAmount.decimal(minor, currency: currency) }
            switch options.format {
            case .json:
                print(
                    JSONText.object([
                        ("as_of", asOf.map { .string($0.iso8601) } ?? .null),
                        (
                            "customers",
                            .array(
                                rows.map { r in
                                    .object([
                                        ("customer_id", .string(r.customerID)), ("currency", .string(r.currency)),
                                        ("current", .string(amount(r.current, r.currency))),
                                        ("d1_30", .string(amount(r.days1to30, r.currency))),
                                        ("d31_60", .string(amount(r.days31to60, r.currency))),
                                        ("d61_90", .string(amount(r.days61to90, r.currency))),
                                        ("d90_plus", .string(amount(r.over90, r.currency))),
                                        ("total", .string(ReportAmount.decimal(r.total, currency: r.currency))),
                                    ])
                                })
                        ),
                    ]).rendered)
            case .table:
                print("receivables aging as of \(BusinessTime.label(asOf))")
                if rows.isEmpty {
                    print("no open or uncollectible invoices")
                    return
                }
                var lines = rows.map { r in
                    [
                        r.customerID, r.currency, amount(r.current, r.currency), amount(r.days1to30, r.currency),
                        amount(r.days31to60, r.currency), amount(r.days61to90, r.currency), amount(r.over90, r.currency),
                        ReportAmount.decimal(r.total, currency: r.currency),
                    ]
                }
                // One total line per currency.
                for currency in Set(rows.map(\.currency)).sorted() {
                    let group = rows.filter { $0.currency == currency }
                    // Exact in 128 bits: a sum of Int64 amounts can pass Int64 (it used to wrap,
                    // `&+`), and Int128 cannot overflow for fewer than 2^63 rows.
                    func sum(_ part: (AgingRow) -> Int128) -> String {
                        ReportAmount.decimal(group.reduce(Int128(0)) { $0 + part($1) }, currency: currency)
                    }
                    lines.append([
                        "total", currency, sum { Int128($0.current) }, sum { Int128($0.days1to30) },
                        sum { Int128($0.days31to60) }, sum { Int128($0.days61to90) }, sum { Int128($0.over90) },
                        sum(\.total),
                    ])
                }
                print(
                    TextTable(
                        ["customer", "currency", "current", "1-30", "31-60", "61-90", "90+", "total"], lines,
                        rightAligned: [2, 3, 4, 5, 6, 7]
                    ).rendered)
            }
        }
    }
}
