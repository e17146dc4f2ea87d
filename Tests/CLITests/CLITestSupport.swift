import ArgumentParser
import Testing

@testable import ledgerlift

/// Parses `arguments` as `ledgerlift` does (subcommand, options, `validate()`), in process, and
/// returns the subcommand, which must be a `T`.
func parse<T: ParsableCommand>(_ arguments: [String], as type: T.Type = T.self) throws -> T {
    let command = try Ledgerlift.parseAsRoot(arguments)
    return try #require(command as? T, "parsed as \(Swift.type(of: command))")
}

/// What `ledgerlift` prints after `Error: ` and the status it exits with, when it refuses
/// `arguments`; `nil` when they parse.
func refusal(_ arguments: [String]) -> Refusal? {
    do {
        _ = try Ledgerlift.parseAsRoot(arguments)
        return nil
    } catch {
        return Refusal(message: Ledgerlift.message(for: error), exitCode: Ledgerlift.exitCode(for: error).rawValue)
    }
}

struct Refusal: Equatable, CustomStringConvertible {
    let message: String
    let exitCode: Int32

    /// A usage error: missing or invalid arguments, a failed `validate()`.
    static func usage(_ message: String) -> Refusal { Refusal(message: message, exitCode: ExitCode.validationFailure.rawValue) }

    var description: String { "exit \(exitCode): \(message)" }
}

/// Every leaf subcommand reachable from `command`, with its path (`["store", "init"]`).
func leafCommands(of command: any ParsableCommand.Type, path: [String] = []) -> [(path: [String], type: any ParsableCommand.Type)] {
    let subcommands = command.configuration.subcommands
    guard !subcommands.isEmpty else { return [(path, command)] }
    return subcommands.flatMap { leafCommands(of: $0, path: path + [$0._commandName]) }
}
