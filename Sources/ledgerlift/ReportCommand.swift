import TextFormats
import ArgumentParser
import Billing
import Foundation
import Postgres

/// `ledgerlift report …`: revenue and MRR by month, receivables aging.
struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Reports: revenue, MRR and receivables aging from the read models; the migration dossier.",
        discussion: "Amounts print in the currency's decimals; definitions are in docs/read-models.md.",
        subcommands: [Revenue.self, MRR.self, Aging.self, Migration.self]
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

    /// `--billing-entity ''` names nothing: a usage error (status 2), not an empty report.
    static func validateBillingEntity(_ id: String?) throws {
        if id == "" { throw ValidationError("--billing-entity is empty: give a billing entity's key (billing_entity_id)") }
    }

    /// Runs `body`; an unknown billing entity or customer (``ReportError/isUnknownName``) is a
    /// finding: its one sentence on standard error and status 1, as for an unknown customer
    /// or invoice, rather than an empty answer indistinguishable from one that owes nothing.
    @discardableResult
    static func findingUnknownNames<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as ReportError where error.isUnknownName {
            printToStandardError(error.description)
            throw ExitCode(1)
        }
    }

    /// `--time-zone` and `--billing-entity`, shared by the three reports.
    struct Scope: ParsableArguments {
        @Option(
            help: ArgumentHelp(
                "Time zone of the months (and of the day receivables are aged on): utc; customer (the customer's "
                    + "time_zone, else its billing entity's, else UTC); billing-entity (the time_zone of the row's "
                    + "billing entity: its own billing_entity_id, else its customer's; else UTC); or an IANA name "
                    + "such as Europe/Paris. Other than utc, the report is computed when read.",
                valueName: "zone"))
        var timeZone: String = "utc"

        @Option(
            help: ArgumentHelp(
                "Only the rows of this billing entity (tenant): the row's own billing_entity_id, else its customer's. "
                    + "One the read models do not know exits with status 1.",
                valueName: "id"))
        var billingEntity: String?

        var zone: ReportTimeZone { ReportTimeZone(timeZone) }

        func validate() throws { try ReportCommand.validateBillingEntity(billingEntity) }

        /// ` (in Europe/Paris, billing entity be-eu)` for a heading; empty for UTC and every entity.
        var label: String {
            var parts = [String]()
            switch zone {
            case .utc: break
            case .customer: parts.append("in each customer's time zone")
            case .billingEntity: parts.append("in each billing entity's time zone")
            case .named(let name): parts.append("in \(name)")
            }
            if let billingEntity { parts.append("billing entity \(billingEntity)") }
            return parts.isEmpty ? "" : " (" + parts.joined(separator: ", ") + ")"
        }
    }

    struct Revenue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Invoiced, collected, prepaid collected, refunded and credited per month and currency.",
            discussion: """
                invoiced: totals of invoices finalized in the month (void ones and credit invoices — prepaid \
                top-ups, not revenue — excluded); collected: payments that succeeded in the month, except what \
                they paid towards credit invoices; prepaid_collected: that part (by allocation, else the whole \
                payment when the invoice it names is a credit invoice), cash for credit not yet used; refunded: \
                refunds that succeeded in the month; credited: credit notes issued in the month (void ones \
                excluded). Months are UTC unless --time-zone says otherwise.
                """)

        @OptionGroup var options: ReadModelOptions

        @OptionGroup var scope: Scope

        @Option(help: "First month, YYYY-MM.")
        var from: String

        @Option(help: "Last month, YYYY-MM (inclusive).")
        var to: String

        func validate() throws { try ReportCommand.validateMonths(from, to) }

        func run() async throws {
            let (first, last) = (ReportCommand.month(from)!, ReportCommand.month(to)!)
            let report = MonthlyAmounts<RevenueMonth>(
                month: \.month, currency: \.currency,
                amounts: [
                    ("invoiced", \.invoiced), ("collected", \.collected), ("prepaid_collected", \.prepaidCollected),
                    ("refunded", \.refunded), ("credited", \.credited),
                ])
            let (zone, entity, label) = (scope.zone, scope.billingEntity, scope.label)
            try await ReportCommand.findingUnknownNames { try await options.answer { reader, session in
                try reader.revenue(from: first, to: last, timeZone: zone, billingEntity: entity, in: session)
            } json: {
                report.json($0)
            } table: { [from, to] months in
                months.isEmpty
                    ? "no revenue from \(from) to \(to)\(label)"
                    : "revenue by month, \(from) to \(to)\(label)\n" + report.table(months)
            } }
        }
    }

    struct MRR: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "mrr",
            abstract: "Monthly recurring revenue and its movements per month and currency, or one customer's.",
            discussion: """
                Per customer, MRR at each month's close (active and past_due subscriptions — not pending ones, \
                which are scheduled — × plan amount per billing period of interval_count intervals, normalized \
                to a month, rounded once per customer); new, expansion, contraction (≤ 0) and churn (≤ 0) sum \
                the customers' changes, and mrr = previous month's mrr + the four movements. Every month from \
                --from to --to has a row per currency (from the currency's first movement on): a month without \
                movements carries the previous month's MRR. With --customer, the same for that one customer (an unknown customer exits with status 1). \
                With --time-zone, each customer's months close in its zone (billing-entity: its billing \
                entity's); with --billing-entity, only that entity's subscriptions count.
                """)

        @OptionGroup var options: ReadModelOptions

        @OptionGroup var scope: Scope

        @Option(help: "First month, YYYY-MM.")
        var from: String

        @Option(help: "Last month, YYYY-MM (inclusive).")
        var to: String

        @Option(help: ArgumentHelp("Only this customer's MRR (its key, customer_id).", valueName: "id"))
        var customer: String?

        func validate() throws { try ReportCommand.validateMonths(from, to) }

        func run() async throws {
            let (first, last) = (ReportCommand.month(from)!, ReportCommand.month(to)!)
            let customer = customer
            let whose = customer.map { "customer \($0)" } ?? "all customers"
            let (zone, entity, label) = (scope.zone, scope.billingEntity, scope.label)
            let report = MonthlyAmounts<MRRMonth>(
                month: \.month, currency: \.currency,
                amounts: [
                    ("new", \.new), ("expansion", \.expansion), ("contraction", \.contraction), ("churn", \.churn),
                    ("mrr", \.mrr),
                ])
            try await ReportCommand.findingUnknownNames { try await options.answer { reader, session in
                try reader.mrr(from: first, to: last, customer: customer, timeZone: zone, billingEntity: entity, in: session)
            } json: {
                report.json($0)
            } table: { [from, to] months in
                months.isEmpty
                    ? "no MRR for \(whose) from \(from) to \(to)\(label)"
                    : "MRR by month, \(whose), \(from) to \(to)\(label)\n" + report.table(months)
            } }
        }
    }

    struct Aging: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Receivables (open and uncollectible invoices) by days past due, per customer and currency.",
            discussion: """
                Days past due = the as-of date (UTC, or in --time-zone) − due_on; current covers invoices not \
                yet due or without a due date. With --as-of, the invoices are taken as they were at that \
                business time; with --billing-entity, only that entity's invoices count.
                """)

        @OptionGroup var options: ReadModelOptions

        @OptionGroup var scope: Scope

        @Option(help: "Business time: a date (its end, UTC) or a timestamp. Default: now.")
        var asOf: String?

        func validate() throws { try BusinessTime.validate(asOf) }

        func run() async throws {
            let asOf = try BusinessTime.validated(self.asOf)
            func amount(_ minor: Int64, _ currency: String) -> String { ReportAmount.decimal(minor, currency: currency) }
            let (zone, entity, label) = (scope.zone, scope.billingEntity, scope.label)
            try await ReportCommand.findingUnknownNames { try await options.answer { reader, session in
                try reader.aging(asOf: asOf, timeZone: zone, billingEntity: entity, in: session)
            } json: { rows in
                JSONText.object([
                    ("as_of", asOf.map { .string($0.iso8601) } ?? .null),
                    ("time_zone", .string(zone.description)), ("billing_entity", entity.map { .string($0) } ?? .null),
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
                ])
            } table: { rows in
                let heading = "receivables aging as of \(BusinessTime.label(asOf))\(label)"
                guard !rows.isEmpty else { return heading + "\nno open or uncollectible invoices" }
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
                return heading + "\n"
                    + TextTable(
                        ["customer", "currency", "current", "1-30", "31-60", "61-90", "90+", "total"], lines,
                        rightAligned: [2, 3, 4, 5, 6, 7]
                    ).rendered
            } }
        }
    }
}

/// A report of amounts per month and currency, the same columns in JSON (amounts as decimal
/// strings) and in the table (right-aligned): one place, so the two never drift apart.
struct MonthlyAmounts<Row> {
    let month: KeyPath<Row, PostgresDate>
    let currency: KeyPath<Row, String>
    /// Each amount's name (its JSON key and column heading) and where it is, in minor units.
    let amounts: [(name: String, value: KeyPath<Row, Int64>)]

    private func cells(_ row: Row) -> (month: String, currency: String, amounts: [String]) {
        let currency = row[keyPath: currency]
        return (
            ReportCommand.monthLabel(row[keyPath: month]), currency,
            amounts.map { ReportAmount.decimal(row[keyPath: $0.value], currency: currency) }
        )
    }

    func json(_ rows: [Row]) -> JSONText {
        .array(
            rows.map { row in
                let cells = cells(row)
                return .object(
                    [("month", .string(cells.month)), ("currency", .string(cells.currency))]
                        + zip(amounts, cells.amounts).map { ($0.name, .string($1)) })
            })
    }

    func table(_ rows: [Row]) -> String {
        TextTable(
            ["month", "currency"] + amounts.map(\.name),
            rows.map { row in
                let cells = cells(row)
                return [cells.month, cells.currency] + cells.amounts
            }, rightAligned: Set(2..<(2 + amounts.count))
        ).rendered
    }
}
