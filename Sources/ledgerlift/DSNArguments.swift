import TextFormats
import ArgumentParser
import Postgres

/// Connection strings on the command line: refused early when malformed, and never repeated by
/// an error message.
enum DSNArguments {
    /// The options whose value is a connection string.
    static let options: Set<String> = ["--legacy", "--store", "--dsn"]

    /// Refuses a malformed connection string before anything connects, naming the option it
    /// came from and saying why without quoting it (see ``ConnectionString/validate(_:)``).
    static func validate(_ dsn: String, option: String) throws {
        do {
            try ConnectionString.validate(dsn)
        } catch {
            throw ValidationError(error.naming("the \(option) DSN"))
        }
    }

    /// What stands in a message for an argument that may hold a password.
    static let redacted = "(not shown: it may hold a password)"

    /// `message` (an error about `arguments`, the command line without the program name) with
    /// every piece of a connection string removed.
    ///
    /// A DSN written without quotes splits into several arguments, and the parser's usage
    /// error then quotes the stray ones — `Unexpected argument 'password=…'`, or `'password',
    /// '…'`. Suspect are: the values of the DSN options, every argument that follows one
    /// before the next option (the rest of an unquoted DSN), and every argument holding `=`,
    /// `@` or `://`. Each is replaced where the message quotes it, or wherever it appears
    /// when it looks like connection material, and the passwords it holds are scrubbed too.
    static func scrub(_ message: String, arguments: [String]) -> String {
        var suspects = [String]()
        var valueIsDSN = false
        var afterDSN = false
        for argument in arguments {
            if argument.hasPrefix("-"), argument.count > 1 {
                let name = String(argument.prefix { $0 != "=" })
                afterDSN = false
                valueIsDSN = false
                if options.contains(name) {
                    if name.count < argument.count {
                        suspects.append(String(argument.dropFirst(name.count + 1)))
                        afterDSN = true
                    } else {
                        valueIsDSN = true
                    }
                }
                continue
            }
            if valueIsDSN || afterDSN || looksLikeConnectionMaterial(argument) { suspects.append(argument) }
            afterDSN = afterDSN || valueIsDSN
            valueIsDSN = false
        }
        var result = message
        // Whole arguments first (longest first, so none is cut by a shorter one), then what is
        // left of their passwords.
        for suspect in suspects.sorted(by: { $0.count > $1.count }) where !suspect.isEmpty {
            // A well-formed DSN has a safe printed form: its masked one (which says which
            // database could not be reached); only what cannot be parsed is hidden whole.
            if (try? ConnectionString.validate(suspect)) != nil {
                result = result.replacing(suspect, with: ConnectionString.masked(suspect))
                continue
            }
            result = result.replacing("'\(suspect)'", with: "'\(redacted)'")
            if looksLikeConnectionMaterial(suspect) { result = result.replacing(suspect, with: redacted) }
        }
        for suspect in suspects { result = ConnectionString.removingPasswords(of: suspect, from: result) }
        return result
    }

    private static func looksLikeConnectionMaterial(_ argument: String) -> Bool {
        argument.contains("=") || argument.contains("@") || argument.contains("://")
    }
}
