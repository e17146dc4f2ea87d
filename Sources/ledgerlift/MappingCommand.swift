import Billing
import Mapping
import TextFormats
import ArgumentParser
import Foundation
import Migration
import Postgres

/// `ledgerlift mapping …`: the mapping file that turns the legacy schema into canonical rows.
struct MappingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mapping",
        abstract: "Work with the mapping file that turns your legacy schema into canonical rows.",
        discussion: "How to write one: docs/mapping.md. The reference fixture's: fixtures/reference/mapping.yaml.",
        subcommands: [Check.self, Currencies.self]
    )

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a mapping file against the live legacy database.",
            discussion: """
                Runs every query and history query (reading no data: LIMIT 0), checks that each returns the \
                canonical columns with usable types, that keys are unique (and history versions unique per key \
                and valid_from), and that every source table exists. Everything runs in a read-only transaction.

                Then runs what the backfill runs before it converts a row: the mapping's own checks: queries \
                and Ledgerlift's cross-row rules. One that fails is an error naming the entity and the check; \
                rows they reject are listed as notes (the backfill will quarantine them).

                Prints a report per entity: columns, rows, history rows and the extra columns carried as \
                attributes, then every error, warning and note with its entity and column. An extra column \
                close to a missing canonical one gets a suggestion (did you mean `archived_at`?).

                Exit status: 0 when the mapping has no errors (warnings allowed; with --strict, none either), \
                1 when the mapping file or a query has errors (or, with --strict, warnings), 2 when the \
                database cannot be reached.
                """)

        @Option(help: "DSN of the legacy database (read only).")
        var legacy: String

        @Option(help: "The mapping file (YAML).")
        var mapping: String

        @Flag(help: "Fail (exit 1) on warnings too: for CI, where a warning nobody reads is a mistake that ships.")
        var strict = false

        func validate() throws {
            try DSNArguments.validate(legacy, option: "--legacy")
        }

        func run() async throws {
            let file: MappingFile
            do {
                file = try MappingFile.load(path: mapping)
            } catch {
                Self.printError("mapping file has errors:\n\(error)")
                throw ExitCode(1)
            }
            let masked = ConnectionString.masked(legacy)
            let connection: Connection
            do {
                connection = try await Connection.connect(legacy, applicationName: "ledgerlift-mapping-check")
            } catch {
                // PostgresError descriptions carry the masked DSN, never the password.
                Self.printError("cannot check the mapping: \(error)")
                throw ExitCode(2)
            }
            defer { connection.close() }
            let report: MappingReport
            do {
                report = try await MappingChecker(file, validatesWriteBack: true).check(connection)
            } catch {
                Self.printError("cannot check the mapping against \(masked): \(error)")
                throw ExitCode(2)
            }
            print(report.rendered(database: masked, strict: strict))
            if !report.passes(strict: strict) { throw ExitCode(1) }
        }

        static func printError(_ text: String) {
            FileHandle.standardError.write(Data((text + "\n").utf8))
        }
    }

    struct Currencies: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the ISO 4217 exponent table, for mappings that convert cents to major units or back.",
            discussion: """
                One row per currency Ledgerlift accepts: code, exponent (decimal places of the minor unit) and \
                minor_per_major (10^exponent, exact). Join it in a mapping query instead of writing \
                CASE currency WHEN 'JPY' THEN … END: `p.amount_cents / x.minor_per_major` is the major amount.

                --format table   the table, for reading
                --format cte     `currency_exponents (code, exponent, minor_per_major) AS (VALUES …)`: paste it \
                                 after WITH at the top of a mapping query (nothing to install)
                --format sql     CREATE OR REPLACE VIEW (named by --view): install it once, with a role that \
                                 owns the schema, e.g. `ledgerlift mapping currencies --format sql | psql "$OWNER_DSN"`, \
                                 and grant SELECT on it to the role mapping check and backfill connect as

                Worked example: docs/mapping.md, "Converting cents and major units".
                """)

        enum Format: String, ExpressibleByArgument, CaseIterable, Sendable {
            case table, cte, sql
        }

        @Option(help: "table, cte or sql.")
        var format: Format = .table

        @Option(help: "With --format sql: the view's name, optionally schema-qualified (billing_ref.currencies).")
        var view: String = CurrencyExponentsSQL.defaultName

        func validate() throws {
            let parts = view.split(separator: ".", omittingEmptySubsequences: false)
            guard (1...2).contains(parts.count), parts.allSatisfy({ !$0.isEmpty }) else {
                throw ValidationError("--view must be a name or schema.name, got \"\(view)\"")
            }
        }

        func run() throws {
            switch format {
            case .table:
                var rows = [[String]]()
                for currency in Currency.all {
                    rows.append([
                        currency.code, String(currency.minorUnitExponent),
                        "1" + String(repeating: "0", count: currency.minorUnitExponent), currency.name,
                    ])
                }
                print(TextTable(["code", "exponent", "minor_per_major", "name"], rows, rightAligned: [1, 2]).rendered)
            case .cte:
                print(CurrencyExponentsSQL.commonTableExpression)
            case .sql:
                print(CurrencyExponentsSQL.createView(named: view))
            }
        }
    }
}
