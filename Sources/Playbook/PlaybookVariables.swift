import Foundation
import Postgres

/// The values of a playbook's variables for one run: `--var name=value`, else the variable's
/// environment variable, else its default. Secrets are substituted into the commands run and
/// nowhere else: what is printed or recorded goes through ``display(_:)``.
public struct PlaybookVariables: Sendable {
    public private(set) var values: [String: String]
    let secrets: [String]

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
            (["ledgerlift"] + substitute(words)).map { word in
                word.isEmpty || word.contains(where: \.isWhitespace) ? "'\(word)'" : word
            }.joined(separator: " "))
    }
}
