import TextFormats
import ArgumentParser
import Foundation
import Logging
import Synchronization

/// Options every command takes, anywhere on the command line (`ledgerlift --verbose query …`
/// or `ledgerlift query … --verbose`): the root command parses them from the whole line.
struct GlobalOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Log messages at this level and above to standard error.",
            discussion: "info logs one line per entity (backfill, diff); debug one per key range or projection batch.",
            valueName: "level"))
    var logLevel: LogLevel = .warning

    @Flag(
        help:
            "On an error, also print what the database said in full: detail, hint and the failing SQL (may quote row values)."
    )
    var verbose = false
}

/// `--log-level`'s values: swift-log's levels, by the same names.
enum LogLevel: String, CaseIterable, ExpressibleByArgument {
    case trace, debug, info, notice, warning, error, critical

    var level: Logger.Level {
        switch self {
        case .trace: .trace
        case .debug: .debug
        case .info: .info
        case .notice: .notice
        case .warning: .warning
        case .error: .error
        case .critical: .critical
        }
    }
}

/// What the global options asked for, set once the command line is parsed (``Ledgerlift/validate()``)
/// and read by the commands and by `main`'s error path.
enum CommandLineSettings {
    private static let current = Mutex((logLevel: Logger.Level.warning, verbose: false))

    static var logLevel: Logger.Level { current.withLock { $0.logLevel } }
    static var verbose: Bool { current.withLock { $0.verbose } }

    static func set(_ options: GlobalOptions) {
        current.withLock { $0 = (options.logLevel.level, options.verbose) }
    }

    /// Log lines go to standard error through swift-log's stream handler (plain text, no
    /// colours), at `--log-level` and above. Called once, before a command runs.
    static func bootstrapLogging() {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }

    /// A logger for one library component (`ledgerlift.backfill`, …).
    static func logger(_ label: String) -> Logger { Logger(label: "ledgerlift." + label) }

    /// Whether a progress line redrawn in place belongs on standard error: only on a terminal
    /// (a pipe or a CI log would get its escape codes and one line per update), and not when
    /// log lines at the same granularity are asked for, which it would overwrite.
    static var drawsProgress: Bool { isatty(STDERR_FILENO) == 1 && logLevel > .info }
}

extension Ledgerlift {
    /// `arguments` (without the program name) start with a word that is no command at its
    /// level: the message saying so, with the closest command when one is near
    /// (`unknown command 'stor' (did you mean 'store'?)`) and where the help is; `nil`
    /// otherwise.
    ///
    /// ArgumentParser would otherwise take the word for a stray argument and complain about a
    /// later option it does not know (`stor init --store x` → "Unknown option '--store'"), or,
    /// given `--help`, print the top-level help and exit 0.
    static func unknownCommand(in arguments: [String]) -> String? {
        var subcommands = configuration.subcommands
        var path = [String]()
        var index = 0
        while index < arguments.count, !subcommands.isEmpty {
            let argument = arguments[index]
            if path.isEmpty, let skip = globalOptionLength(arguments, at: index) {
                index += skip
                continue
            }
            // Options before a subcommand (`--help`, `--version`), and `help <command>`, are
            // ArgumentParser's to judge.
            if argument.hasPrefix("-") || (path.isEmpty && argument == "help") { return nil }
            let names = subcommands.map { commandName(of: $0) }
            guard let found = names.firstIndex(of: argument) else {
                let prefix = path.map { $0 + " " }.joined()
                let help = "\nSee 'ledgerlift \(prefix)--help'."
                guard let closest = closest(to: argument, in: names) else {
                    return "unknown command '\(prefix)\(argument)'; the commands are: "
                        + names.map { prefix + $0 }.joined(separator: ", ") + help
                }
                return "unknown command '\(prefix)\(argument)' (did you mean '\(prefix)\(closest)'?)" + help
            }
            subcommands = subcommands[found].configuration.subcommands
            path.append(argument)
            index += 1
        }
        return nil
    }

    /// The name a subcommand is typed as.
    private static func commandName(of command: any ParsableCommand.Type) -> String {
        command.configuration.commandName ?? command._commandName
    }

    /// How many arguments a global option takes up at `index` (1 for `--verbose` or
    /// `--log-level=info`, 2 for `--log-level info`), or `nil` when it is not one.
    private static func globalOptionLength(_ arguments: [String], at index: Int) -> Int? {
        let argument = arguments[index]
        if argument == "--verbose" || argument.hasPrefix("--log-level=") { return 1 }
        if argument == "--log-level" { return min(2, arguments.count - index) }
        return nil
    }

    /// The name nearest `word` by edit distance, when near enough to be a typo: at most two
    /// edits, and fewer than half the word's letters.
    static func closest(to word: String, in names: [String]) -> String? {
        let scored = names.map { (name: $0, distance: EditDistance.levenshtein(word, $0)) }
        guard let best = scored.min(by: { $0.distance < $1.distance }) else { return nil }
        return best.distance <= 2 && best.distance * 2 < max(word.count, 2) ? best.name : nil
    }

}
