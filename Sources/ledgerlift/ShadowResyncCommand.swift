import ArgumentParser
import Billing
import Foundation
import Mapping
import Postgres
import Shadow

extension ShadowCommand {
    /// `ledgerlift shadow resync`: sync every key whose read model differs from legacy.
    struct Resync: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Find every key whose read model differs from legacy and sync exactly those keys.",
            discussion: """
                Runs the diff (checksum bisection: only differing buckets are read row by row), collects every key \
                missing in the ledger, extra in it or mismatched, and syncs exactly those keys through the tailer's \
                path (state-based, events with origin resync), projects, and diffs again. Closes a handover gap \
                (capture installed after the backfill: shadow run refuses until a resync ran) and repairs the ledger \
                after any incident. Holds the tailer's lock (ledgerlift.shadow/<name>) throughout: stop shadow run \
                first.

                Exit status: 0 nothing differs afterwards; 1 differences remain (listed as notes); 2 could not run. \
                docs/shadow.md.
                """)

        @Option(help: "DSN of the legacy database.")
        var legacy: String

        @Option(help: "DSN of the database holding the event store and read models.")
        var store: String

        @Option(help: "The mapping file (YAML) the backfill ran with.")
        var mapping: String

        @Option(
            name: .customLong("entity"),
            help: ArgumentHelp(
                "Resync only this entity (repeatable, or comma-separated); default: every mapped entity.",
                valueName: "entity"))
        var entityNames: [String] = []

        @Option(help: "Output format: text or json.")
        var format: Status.StatusFormat = .text

        @Option(help: "PostgreSQL schema of the event store.")
        var schema: String = "ledgerlift"

        @Option(help: "PostgreSQL schema of the read models.")
        var readSchema: String = "ledgerlift_read"

        @Option(help: "The tailer whose lock is taken (shadow run --name).")
        var name: String = "default"

        @Option(help: "Differing keys synced per entity per round (more are left for the next round).")
        var keysPerRound: Int = 1_000_000

        func validate() throws {
            try DSNArguments.validate(legacy, option: "--legacy")
            try DSNArguments.validate(store, option: "--store")
            guard keysPerRound > 0 else { throw ValidationError("--keys-per-round must be positive") }
            _ = try entities()
        }

        func entities() throws -> [Entity]? { try EntityArguments.parse(entityNames) }

        func run() async throws {
            let file = try ShadowCommand.loadMapping(mapping)
            var options = Shadow.Resync.Options(
                legacyDSN: legacy, storeDSN: store, mapping: file, entities: try entities(), storeSchema: schema,
                readSchema: readSchema, tailerName: name, keysPerRound: keysPerRound)
            options.logger = CommandLineSettings.logger("shadow")
            let report = try await Shadow.Resync(options).run()
            print(format == .json ? report.json : report.text, terminator: "")
            if report.exitCode != 0 { throw ExitCode(report.exitCode) }
        }
    }
}
