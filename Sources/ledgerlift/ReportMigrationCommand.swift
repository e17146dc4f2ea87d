import ArgumentParser
import Dossier
import Foundation
import Postgres

extension ReportCommand {
    /// `ledgerlift report migration`: the migration dossier, read from the databases.
    struct Migration: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The migration dossier: the cutover's timeline and gates, verifications, lag, write rate, "
                + "quarantine and events, as one HTML page, Markdown or JSON.",
            discussion: """
                Read only. Reads the cutover's stream (cutover-<name>), shadow mode's verifications and lag samples, \
                the quarantine and the event store, and renders: a summary (state, events, verifications, lag p99, \
                the write switch's freeze), the state timeline with who took each step (switches undone and \
                rollbacks included), the gates' evidence per transition, the verification history, lag p50/p99 and \
                events written over time with the freeze marked, quarantine by entity and reason with example keys, \
                and events by type, evidence (observed, inferred, imported) and origin. The HTML page is \
                self-contained (inline CSS and SVG, no script, nothing fetched). With --legacy the summary's lag and \
                the shadow section are shadow status's own reading. A store without a cutover or without shadow \
                mode still gets a dossier, saying so. Connection strings are printed masked. Exit status: 0 written; \
                2 could not run. docs/dossier.md.
                """)

        enum Format: String, ExpressibleByArgument, CaseIterable { case html, markdown, json }

        @Option(help: "DSN of the database holding the event store.")
        var store: String

        @Option(help: "PostgreSQL schema of the event store.")
        var schema: String = "ledgerlift"

        @Option(help: "The cutover's name: its stream is cutover-<name>.")
        var name: String = "default"

        @Option(help: "DSN of the legacy database (optional: adds shadow status's reading).")
        var legacy: String?

        @Option(help: "The shadow tailer's name (shadow run --name).")
        var tailer: String = "default"

        @Option(help: "PostgreSQL schema of the read models the tailer follows.")
        var readSchema: String = "ledgerlift_read"

        @Option(
            help: "The summary's lag percentiles over the samples of the last this many seconds (as shadow status).")
        var lagWindow: Int = 300

        @Option(help: "Output format: html, markdown or json.")
        var format: Format = .html

        @Option(help: "Write the dossier to this file (written whole, atomically) instead of standard output.")
        var output: String?

        func validate() throws {
            try DSNArguments.validate(store, option: "--store")
            if let legacy { try DSNArguments.validate(legacy, option: "--legacy") }
            guard lagWindow > 0 else { throw ValidationError("--lag-window must be more than 0") }
        }

        func run() async throws {
            var options = MigrationDossier.Options()
            options.storeSchema = schema
            options.cutoverName = name
            options.tailerName = tailer
            options.readSchema = readSchema
            options.lagWindow = .seconds(lagWindow)
            let application = "ledgerlift-report-migration"
            let storeConnection = try await Connection.connect(store, applicationName: application)
            defer { storeConnection.close() }
            var legacyConnection: Connection?
            if let legacy { legacyConnection = try await Connection.connect(legacy, applicationName: application) }
            defer { legacyConnection?.close() }
            let dossier = try await MigrationDossier.read(
                store: storeConnection, legacy: legacyConnection, options: options)
            let rendered =
                switch format {
                case .html: dossier.html
                case .markdown: dossier.markdown
                case .json: dossier.json
                }
            if let output {
                try DiffCommand.write(rendered, to: output)
                print("migration dossier (\(format.rawValue)): \(output)")
            } else {
                print(rendered, terminator: rendered.hasSuffix("\n") ? "" : "\n")
            }
        }
    }
}
