import ArgumentParser
import Testing

@testable import ledgerlift

/// A mistyped or unknown command is named as such, with the nearest command when there is one,
/// before ArgumentParser mistakes it for a stray argument (`stor init --store x` used to say
/// "Unknown option '--store'", and `shadow --help` printed the top-level help and exited 0).
@Suite("CLI: an unknown command is named, with a suggestion")
struct UnknownCommandTests {
    static let cases: [([String], String?)] = [
        (["stor", "init", "--store", "x"], "unknown command 'stor' (did you mean 'store'?)\nSee 'ledgerlift --help'."),
        (
            ["rollout", "--help"],
            "unknown command 'rollout'; the commands are: fixture, store, events, mapping, backfill, project, query, "
                + "report, diff, simulate, shadow, serve, cutover, playbook\nSee 'ledgerlift --help'."
        ),
        (
            ["store", "int", "--store", "x"],
            "unknown command 'store int' (did you mean 'store init'?)\nSee 'ledgerlift store --help'."
        ),
        (
            ["query", "balanse"],
            "unknown command 'query balanse' (did you mean 'query balance'?)\nSee 'ledgerlift query --help'."
        ),
        (
            ["--log-level", "info", "repot"],
            "unknown command 'repot' (did you mean 'report'?)\nSee 'ledgerlift --help'."
        ),
        (["--verbose", "dif"], "unknown command 'dif' (did you mean 'diff'?)\nSee 'ledgerlift --help'."),
        // Known commands, options and help are ArgumentParser's to judge.
        (["store", "init", "--store", "x"], nil),
        (["query", "invoice", "in-1", "--store", "x"], nil),
        (["--log-level", "debug", "backfill", "--legacy", "x"], nil),
        (["--help"], nil),
        (["help", "store"], nil),
        (["store", "--help"], nil),
        (["shadow", "install", "--legacy", "x", "--mapping", "m"], nil),
        (
            ["shadow", "instal", "--legacy", "x"],
            "unknown command 'shadow instal' (did you mean 'shadow install'?)\nSee 'ledgerlift shadow --help'."
        ),
        ([], nil),
    ]

    @Test(arguments: cases)
    func unknownCommandsAreNamed(_ arguments: [String], _ expected: String?) {
        #expect(Ledgerlift.unknownCommand(in: arguments) == expected)
    }

    @Test func suggestionsAreForTyposOnly() {
        #expect(Ledgerlift.closest(to: "stor", in: ["store", "events"]) == "store")
        #expect(Ledgerlift.closest(to: "evnets", in: ["store", "events"]) == "events")
        #expect(Ledgerlift.closest(to: "shadow", in: ["store", "events", "diff"]) == nil)
        #expect(Ledgerlift.closest(to: "x", in: ["diff"]) == nil)
    }

    /// `--log-level` and `--verbose` parse anywhere on the line; a level that is none is a
    /// usage error naming the levels.
    @Test func globalOptionsParseAnywhere() throws {
        for arguments in [
            ["--verbose", "--log-level", "debug", "store", "stats", "--store", "dbname=s"],
            ["store", "stats", "--store", "dbname=s", "--log-level=info", "--verbose"],
        ] {
            let command = try parse(arguments, as: StoreCommand.Stats.self)
            #expect(command.options.dsn == "dbname=s")
        }
        let refused = try #require(refusal(["--log-level", "loud", "store", "stats", "--store", "dbname=s"]))
        #expect(refused.exitCode == ExitCode.validationFailure.rawValue)
        #expect(refused.message.hasPrefix("The value 'loud' is invalid for '--log-level <level>'"))
    }
}
