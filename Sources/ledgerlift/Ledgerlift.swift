import ArgumentParser
import Foundation

/// The `ledgerlift` command: a table of contents of the library, one subcommand per job.
@main
struct Ledgerlift: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledgerlift",
        abstract: "Move a mutable PostgreSQL billing database onto an event-sourced ledger, without downtime.",
        discussion: """
            Ledgerlift reads your legacy billing schema over libpq, synthesizes the history its rows imply \
            into an append-only PostgreSQL event store, rebuilds read models from the events, proves they \
            equal the legacy data, and drives a staged cutover.
            """,
        version: LedgerliftVersion.current,
        subcommands: [
            FixtureCommand.self,
            StoreCommand.self,
            EventsCommand.self,
            MappingCommand.self,
            BackfillCommand.self,
            ProjectCommand.self,
            QueryCommand.self,
            ReportCommand.self,
            DiffCommand.self,
        ]
    )

    /// As ArgumentParser's, except that `ledgerlift diff` exits 2 for a usage error too: CI
    /// scripts rely on 1 meaning "differences" and 2 "could not run", whatever the reason; and
    /// that no error message repeats a piece of a connection string (a DSN written without
    /// quotes splits into arguments the usage error quotes).
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            // Help and --version are printed to standard output as ArgumentParser does.
            guard code != .success else { exit(withError: error) }
            let arguments = Array(CommandLine.arguments.dropFirst())
            let message = DSNArguments.scrub(fullMessage(for: error), arguments: arguments)
            if !message.isEmpty { FileHandle.standardError.write(Data((message + "\n").utf8)) }
            if code == .validationFailure, arguments.first == "diff" {
                DiffCommand.writeUsageError(message, arguments: Array(arguments.dropFirst()))
                Foundation.exit(2)
            }
            Foundation.exit(code.rawValue)
        }
    }
}

enum LedgerliftVersion {
    static let current = "0.1.0"
}
