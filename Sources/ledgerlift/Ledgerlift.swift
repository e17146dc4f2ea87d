import TextFormats
import ArgumentParser
import Foundation
import Postgres

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
            SimulateCommand.self,
            ShadowCommand.self,
            ServeCommand.self,
            CutoverCommand.self,
            PlaybookCommand.self,
        ]
    )

    @OptionGroup(title: "Global options (anywhere on the command line)") var global: GlobalOptions

    /// Runs once the whole command line is parsed, before the subcommand's own validation:
    /// the global options then apply to whichever command runs.
    func validate() throws { CommandLineSettings.set(global) }

    /// As ArgumentParser's, with one exit-status scheme for every command, the one CI scripts
    /// gate on: 0 done, 1 a data finding (the command throws `ExitCode(1)`: quarantined rows,
    /// differences), 2 could not run — a usage error, an unreachable database, a refusal, any
    /// error. (ArgumentParser alone would exit 64 for usage and 1 for errors, and 1 must keep
    /// meaning "the data has findings".) No error message repeats a piece of a connection
    /// string (a DSN written without quotes splits into arguments the usage error quotes).
    /// `ledgerlift diff` also writes its JUnit report for a usage error, so a CI artifact says
    /// why the gate could not run.
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if let unknown = unknownCommand(in: arguments) {
            fail(DSNArguments.scrub(unknown, arguments: arguments), arguments: arguments)
        }
        do {
            var command = try parseAsRoot()
            CommandLineSettings.bootstrapLogging()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            // Help and --version are printed to standard output as ArgumentParser does; a
            // command's own ExitCode (1: findings) stands.
            if error is ExitCode || exitCode(for: error) == .success { exit(withError: error) }
            fail(DSNArguments.scrub(errorMessage(for: error), arguments: arguments), arguments: arguments)
        }
    }

    /// Every error is printed the same way, whichever command and whoever threw it: one
    /// `Error: ` line (ArgumentParser's usage errors add the usage after it); with
    /// `--verbose`, a database error adds its detail, hint and SQL.
    static func errorMessage(for error: any Error) -> String {
        if exitCode(for: error) == .validationFailure { return fullMessage(for: error) }
        if CommandLineSettings.verbose, let error = error as? PostgresError { return prefix + error.debugDescription }
        return prefix + String(describing: error)
    }

    /// The one prefix of every error message `ledgerlift` prints (ArgumentParser's own).
    static let prefix = "Error: "

    /// Prints `message` (already scrubbed of connection strings) as an error and exits 2.
    /// `ledgerlift diff` also writes its JUnit report for a usage error, so a CI artifact says
    /// why the gate could not run.
    private static func fail(_ message: String, arguments: [String]) -> Never {
        let line = message.hasPrefix(prefix) ? message : prefix + message
        FileHandle.standardError.write(Data((line + "\n").utf8))
        if arguments.first == "diff" {
            DiffCommand.writeUsageError(message, arguments: Array(arguments.dropFirst()))
        }
        Foundation.exit(2)
    }
}

enum LedgerliftVersion {
    static let current = "0.1.0"
}
