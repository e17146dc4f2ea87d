import TextFormats
import ArgumentParser
import Billing
import Foundation
import Postgres

/// Options of commands that read the read models.
struct ReadModelOptions: ParsableArguments {
    @OptionGroup var store: StoreOptions

    @Option(help: "PostgreSQL schema of the read models.")
    var readSchema: String = "ledgerlift_read"

    @Option(help: "Output format: table or json.")
    var format: OutputFormat = .table

    var reader: ReadModelReader { ReadModelReader(readSchema: readSchema) }
}

extension BusinessTime {
    /// Checks an `--as-of` value before anything connects: a value the ledger cannot hold is
    /// a usage error in one sentence (`--as-of "0000-01-01" is before 0001-01-01, …`), never
    /// a trap or a PostgreSQL error quoting SQL.
    static func validate(_ text: String?, option: String = "--as-of") throws {
        guard let text else { return }
        do {
            _ = try parse(text)
        } catch {
            throw ValidationError("\(option) \(error)")
        }
    }

    /// The instant of a validated option (`nil` when absent).
    static func validated(_ text: String?) throws -> PostgresTimestamp? {
        try text.map { text throws(PostgresTimeError) in try parse(text) }
    }
}

/// `ledgerlift query …`: one customer's balance or one invoice, now or as of a business time.
struct QueryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Query the read models, now or as of a business time.",
        discussion: """
            Answers come from the read models `ledgerlift project` maintains: the current tables, or — with \
            --as-of — the history tables, which hold every version of every row over business time \
            (the events' occurred_at). Amounts print in the currency's decimals.
            """,
        subcommands: [Balance.self, Invoice.self]
    )

    struct Balance: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A customer's balance per currency: receivables, unapplied credit, balance, prepaid credit.",
            discussion: """
                receivables = amount due of the customer's open and uncollectible invoices; unapplied credit = \
                minus the sum of its balance transactions, minus its credit applications that name neither a \
                credit note nor a wallet transaction (balance credit applied to an invoice); balance = \
                receivables − unapplied credit (positive: the customer owes; negative: it holds credit); \
                prepaid credit = the balance of its active wallets, not netted into the balance.

                As of a business time, a wallet with wallet transactions counts its settled transactions up \
                to then (its own version may carry a later balance).

                Exits with status 1 when the customer is unknown (or did not exist yet at --as-of), or the \
                billing entity is unknown.
                """)

        @OptionGroup var options: ReadModelOptions

        @Option(help: "The customer's key (customer_id).")
        var customer: String

        @Option(
            help: ArgumentHelp(
                "Only the rows of this billing entity (tenant): the row's own billing_entity_id, else the customer's. "
                    + "One the read models do not know exits with status 1.",
                valueName: "id"))
        var billingEntity: String?

        @Option(help: "Business time: a date (its end, UTC) or a timestamp. Default: now.")
        var asOf: String?

        func validate() throws {
            try BusinessTime.validate(asOf)
            try ReportCommand.validateBillingEntity(billingEntity)
        }

        func run() async throws {
            let asOf = try BusinessTime.validated(self.asOf)
            let (customer, entity) = (customer, billingEntity)
            let (found, _) = try await ReportCommand.findingUnknownNames { try await options.answer { reader, session in
                let balances = try reader.balances(customer: customer, asOf: asOf, billingEntity: entity, in: session)
                // A customer quarantined by the backfill can still have migrated invoices.
                let known = try !balances.isEmpty || reader.row(.customer, key: customer, asOf: asOf, in: session) != nil
                return (known, balances)
            } json: { found, balances in
                // The billing entity only when one was asked for: the answer's shape stays as it was.
                JSONText.object(
                    [("customer_id", .string(customer)), ("as_of", asOf.map { .string($0.iso8601) } ?? .null)]
                        + (entity.map { [("billing_entity", .string($0))] } ?? [])
                        + [("balances", found ? .array(balances.map(Self.json)) : .null)])
            } table: { found, balances in
                guard found else { return nil }
                let heading =
                    "customer \(customer), as of \(BusinessTime.label(asOf))"
                    + (entity.map { ", billing entity \($0)" } ?? "")
                guard !balances.isEmpty else {
                    return heading + "\nno invoices, balance transactions, balance credit applications, wallets or currency for this customer"
                        + (entity == nil ? "" : " in this billing entity") + " at that time"
                }
                return heading + "\n"
                    + TextTable(
                        ["currency", "receivables", "unapplied credit", "balance", "prepaid credit"],
                        balances.map { b in
                            [
                                b.currency, ReportAmount.decimal(b.receivables, currency: b.currency),
                                ReportAmount.decimal(b.unappliedCredit, currency: b.currency),
                                ReportAmount.decimal(b.balance, currency: b.currency),
                                ReportAmount.decimal(b.prepaidCredit, currency: b.currency),
                            ]
                        }, rightAligned: [1, 2, 3, 4]
                    ).rendered
            } }
            if !found {
                printToStandardError("customer \(customer): not found as of \(BusinessTime.label(asOf))")
                throw ExitCode(1)
            }
        }

        static func json(_ b: CustomerBalance) -> JSONText {
            .object([
                ("currency", .string(b.currency)),
                ("receivables", .string(ReportAmount.decimal(b.receivables, currency: b.currency))),
                ("unapplied_credit", .string(ReportAmount.decimal(b.unappliedCredit, currency: b.currency))),
                ("balance", .string(ReportAmount.decimal(b.balance, currency: b.currency))),
                ("prepaid_credit", .string(ReportAmount.decimal(b.prepaidCredit, currency: b.currency))),
            ])
        }
    }

    struct Invoice: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One invoice's canonical row, now or as of a business time.",
            discussion: "Exits with status 1 when the invoice is unknown (or did not exist yet at --as-of).")

        @OptionGroup var options: ReadModelOptions

        @Argument(help: "The invoice's key (invoice_id).")
        var invoiceID: String

        @Option(help: "Business time: a date (its end, UTC) or a timestamp. Default: now.")
        var asOf: String?

        func validate() throws { try BusinessTime.validate(asOf) }

        func run() async throws {
            let asOf = try BusinessTime.validated(self.asOf)
            let invoiceID = invoiceID
            let row = try await options.answer { reader, session in
                try reader.invoice(invoiceID, asOf: asOf, in: session)
            } json: { row in
                JSONText.object([
                    ("invoice_id", .string(invoiceID)), ("as_of", asOf.map { .string($0.iso8601) } ?? .null),
                    ("invoice", row.map { Self.json($0, currency: $0["currency"].textValue ?? "") } ?? .null),
                ])
            } table: { row in
                guard let row else { return nil }
                let currency = row["currency"].textValue ?? ""
                var lines = row.entity.columns.map { column in
                    [column.name, Self.text(row[column.name], column.type, currency: currency)]
                }
                for name in row.attributes.keys.sorted() {
                    lines.append(["attributes." + name, row.attributes[name]!.map { $0 } ?? "NULL"])
                }
                return "invoice \(invoiceID), as of \(BusinessTime.label(asOf))\n"
                    + TextTable(["column", "value"], lines).rendered
            }
            if row == nil {
                printToStandardError("invoice \(invoiceID): not found as of \(BusinessTime.label(asOf))")
                throw ExitCode(1)
            }
        }

        static func text(_ value: CanonicalValue, _ type: ColumnType, currency: String) -> String {
            if case .amount(let minor) = value { return ReportAmount.decimal(minor, currency: currency) }
            if type == .timestamp, case .timestamp(let t) = value { return t.iso8601 }
            return value.description
        }

        static func json(_ row: CanonicalRow, currency: String) -> JSONText {
            var pairs = [(String, JSONText)]()
            for column in row.entity.columns {
                let value = row[column.name]
                let json: JSONText
                switch value {
                case .null: json = .null
                case .boolean(let b): json = .bool(b)
                case .integer(let i): json = .int(i)
                case .amount(let minor): json = .string(ReportAmount.decimal(minor, currency: currency))
                default: json = .string(text(value, column.type, currency: currency))
                }
                pairs.append((column.name, json))
            }
            pairs.append(
                (
                    "attributes",
                    .object(row.attributes.keys.sorted().map { ($0, row.attributes[$0]!.map { .string($0) } ?? .null) })
                ))
            return .object(pairs)
        }
    }
}
