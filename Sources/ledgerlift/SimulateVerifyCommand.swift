import ArgumentParser

/// `ledgerlift simulate verify` (placeholder until it lands).
struct SimulateVerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verify", abstract: "Check a journal against the final system.")
    func run() async throws { throw ValidationError("not built yet") }
}
