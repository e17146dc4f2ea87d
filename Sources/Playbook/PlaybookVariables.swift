import Foundation
import Postgres

/// The values of a playbook's variables for one run: `--var name=value`, else the variable's
/// environment variable, else its default. Secrets are substituted into the commands run and
/// nowhere else — a connection string's password not even there: the steps read it from a
/// password file (``passwordFileLines``). What is printed or recorded goes through
/// ``display(_:)``.
public struct PlaybookVariables: Sendable {
    public private(set) var values: [String: String]
    let secrets: [String]
    /// ``values`` as the steps' commands receive them: secret connection strings without their
    /// passwords.
    let argumentValues: [String: String]
    /// The password file lines of the secret connection strings that carry a password: what
    /// the steps' `PGPASSFILE` holds (``PlaybookRunner``).
    public let passwordFileLines: [String]
    /// The environment variables secrets are read from: left out of the steps' environment.
    public let secretEnvironment: Set<String>

    /// The user libpq connects as by default: the effective user's name.
    static func effectiveUser(_ environment: [String: String]) -> String {
        if let entry = getpwuid(geteuid()), let name = entry.pointee.pw_name { return String(cString: name) }
        return environment["USER"] ?? ""
    }

    /// - Throws: ``PlaybookError`` naming a variable without a value (and how to give it one),
    ///   or a `--var` the playbook does not declare.
    public init(
        _ playbook: Playbook, file: String, assignments: [String: String], environment: [String: String]
    ) throws {
        let declared = Set(playbook.variables.map(\.name))
        if let unknown = assignments.keys.sorted().first(where: { !declared.contains($0) }) {
            throw PlaybookError(
                file: file,
                "--var \(unknown): the playbook declares no such variable (it has \(declared.sorted().joined(separator: ", ")))")
        }
        var values = [String: String]()
        for variable in playbook.variables {
            if let value = assignments[variable.name] ?? variable.env.flatMap({ environment[$0] }) ?? variable.defaultValue {
                values[variable.name] = value
            } else {
                throw PlaybookError(
                    file: file,
                    "variable \(variable.name) has no value: "
                        + (variable.env.map { "set \($0) in the environment, or " } ?? "") + "give --var \(variable.name)=…")
            }
        }
        self.values = values
        // A secret connection string reaches the steps without its password (a command line is
        // readable by every user of the machine): the password goes to the run's password file.
        var arguments = values
        var lines = [String]()
        let osUser = Self.effectiveUser(environment)
        for variable in playbook.variables where variable.secret {
            guard let value = values[variable.name],
                let entry = ConnectionString.passwordFileEntry(value, environment: environment, osUser: osUser)
            else { continue }
            arguments[variable.name] = entry.withoutPassword
            for line in entry.lines where !lines.contains(line) { lines.append(line) }
        }
        self.argumentValues = arguments
        self.passwordFileLines = lines
        // The steps get the secrets through their arguments and the password file: not through
        // the environment they came in, which a service would keep for its lifetime.
        self.secretEnvironment = Set(playbook.variables.filter(\.secret).compactMap(\.env))
        // Longest first: a secret containing another is masked whole.
        self.secrets = playbook.variables.filter(\.secret).compactMap { values[$0.name] }.filter { !$0.isEmpty }
            .sorted { $0.count > $1.count }
    }

    /// `word` with every `${name}` replaced by its value.
    public func substitute(_ word: String) -> String {
        var out = word
        for (name, value) in values { out = out.replacingOccurrences(of: "${\(name)}", with: value) }
        return out
    }

    public func substitute(_ words: [String]) -> [String] { words.map(substitute) }

    /// A step's command words as its child process receives them: every `${name}` replaced,
    /// secret connection strings without their passwords (in ``passwordFileLines``).
    public func arguments(_ words: [String]) -> [String] {
        words.map { word in
            var out = word
            for (name, value) in argumentValues { out = out.replacingOccurrences(of: "${\(name)}", with: value) }
            return out
        }
    }

    /// `text` with every secret's value masked: a connection string without its password (or
    /// `(unprintable connection string)`), anything else `•••`.
    public func display(_ text: String) -> String {
        var out = text
        for secret in secrets {
            let looksLikeDSN = secret.contains("://") || secret.contains("=")
            out = out.replacingOccurrences(of: secret, with: looksLikeDSN ? ConnectionString.masked(secret) : "•••")
        }
        return out
    }

    /// A command as printed: `ledgerlift` and its arguments, secrets masked, words with blanks quoted.
    public func display(command words: [String]) -> String {
        display(
            (["ledgerlift"] + arguments(words)).map { word in
                guard word.isEmpty || word.contains(where: \.isWhitespace) else { return word }
                // A connection string without its password is `key='value'` pairs.
                return word.contains("'") ? "\"\(word)\"" : "'\(word)'"
            }.joined(separator: " "))
    }
}
