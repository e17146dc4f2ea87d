import ArgumentParser

/// `ledgerlift simulate [run]` (owned by the runner's author; placeholder until it lands).
struct SimulateRunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run business operations against the legacy database.")
    func run() async throws { throw ValidationError("not built yet") }
}
