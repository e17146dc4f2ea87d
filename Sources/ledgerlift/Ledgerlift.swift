import ArgumentParser

/// The `ledgerlift` command: a table of contents of the library, one subcommand per job.
@main
struct Ledgerlift: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledgerlift",
        abstract: "Move a mutable PostgreSQL billing database onto an event-sourced ledger, without downtime.",
        discussion: """
            Ledgerlift reads your legacy billing schema over libpq, synthesizes the history its rows imply \\
            into an append-only PostgreSQL event store, rebuilds read models from the events, proves they \\
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
        ]
    )
}

enum LedgerliftVersion {
    static let current = "0.1.0"
}
