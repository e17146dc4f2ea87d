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
        subcommands: [Check.self]
    )

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a mapping file against the live legacy database.",
            discussion: """
                Runs every query and history query (reading no data: LIMIT 0), checks that each returns the \
                canonical columns with usable types, that keys are unique (and history versions unique per key \
                and valid_from), and that every source table exists. Everything runs in a read-only transaction.

                Prints a report per entity: columns, rows, history rows and the extra columns carried as \
                attributes, then every error and warning with its entity and column.

                Exit status: 0 when the mapping has no errors (warnings allowed), 1 when the mapping file or \
                a query has errors, 2 when the database cannot be reached.
                """)

        @Option(help: "DSN of the legacy database (read only).")
        var legacy: String

        @Option(help: "The mapping file (YAML).")
        var mapping: String

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
                report = try await MappingChecker(file).check(connection)
            } catch {
                Self.printError("cannot check the mapping against \(masked): \(error)")
                throw ExitCode(2)
            }
            print(report.rendered(database: masked))
            if !report.isClean { throw ExitCode(1) }
        }

        static func printError(_ text: String) {
            FileHandle.standardError.write(Data((text + "\n").utf8))
        }
    }
}
