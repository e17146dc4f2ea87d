import ArgumentParser

/// `ledgerlift simulate …`: the legacy billing application as a load generator, and the proof
/// that no acknowledged write was lost.
struct SimulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Run the legacy billing application against the reference schema, and verify its journal.",
        discussion: """
            `ledgerlift simulate --legacy DSN …` runs business operations (sign-ups, invoices, payments, refunds, \
            credit, profile edits, deletes) as the legacy application writes them, at a fixed rate or as fast as \
            it can, and reports latency per operation. With --journal it records every acknowledged operation; \
            `ledgerlift simulate verify` then checks that each one's effect is present in the legacy tables or in \
            the ledger's read models.
            """,
        subcommands: [SimulateRunCommand.self, SimulateVerifyCommand.self],
        defaultSubcommand: SimulateRunCommand.self
    )
}
