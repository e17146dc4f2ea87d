import ArgumentParser
import Foundation
import Postgres
import Shadow

extension ShadowCommand {
    /// `ledgerlift shadow status`: where shadow mode stands, from both databases, read only.
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show what is captured, the backlog, the tailer's position and lag, verifications and the handover.",
            discussion: """
                Reads both databases (nothing is written): the captured tables, the capture backlog (rows not yet \
                applied, age of the oldest), the tailer's checkpoint, whether it runs and its last error, the lag \
                from legacy capture to read model (p50/p99 over --lag-window seconds), events appended in the last \
                minute, quarantined keys, the last verification and the clean streak, and the handover verdict.

                Exit status: 0 healthy; 1 unhealthy — capture not installed, a handover gap, a tailer error since \
                its last progress, or a last verification that was not clean (each listed under problems); 2 could \
                not run (a database unreachable). docs/shadow.md.
                """)

        @Option(help: "DSN of the legacy database.")
        var legacy: String

        @Option(help: "DSN of the database holding the event store and read models.")
        var store: String

        @Option(help: "PostgreSQL schema of the event store.")
        var schema: String = "ledgerlift"

        @Option(help: "The tailer's name (shadow run --name).")
        var name: String = "default"

        @Option(help: "Lag percentiles over the samples of the last this many seconds.")
        var lagWindow: Int = 300

        @Option(help: "PostgreSQL schema of the read models the tailer follows.")
        var readSchema: String = "ledgerlift_read"

        @Option(help: "Output format: text or json.")
        var format: StatusFormat = .text

        enum StatusFormat: String, ExpressibleByArgument, CaseIterable { case text, json }

        func validate() throws {
            try DSNArguments.validate(legacy, option: "--legacy")
            try DSNArguments.validate(store, option: "--store")
            guard lagWindow > 0 else { throw ValidationError("--lag-window must be more than 0") }
        }

        func run() async throws {
            let legacyConnection = try await Connection.connect(legacy, applicationName: "ledgerlift-shadow-status")
            defer { legacyConnection.close() }
            let storeConnection = try await Connection.connect(store, applicationName: "ledgerlift-shadow-status")
            defer { storeConnection.close() }
            let status = try await ShadowStatus.read(
                legacy: legacyConnection, store: storeConnection, storeSchema: schema, tailerName: name,
                lagWindow: .seconds(lagWindow), readSchema: readSchema)
            print(format == .json ? status.json : status.text, terminator: "")
            if status.exitCode != 0 { throw ExitCode(status.exitCode) }
        }
    }
}
