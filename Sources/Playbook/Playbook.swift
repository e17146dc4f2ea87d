import Foundation
import Yams

/// An executable playbook: a migration written down as the steps an operator would take, each
/// one a `ledgerlift` command, a gate waited for, a service started, or a pause for a person.
///
/// ```yaml
/// name: zero-downtime
/// description: capture to completed under live traffic
/// state: store                       # the variable whose database holds the run's position
/// variables:
///   legacy: { env: LEDGERLIFT_LEGACY_DSN, secret: true }
///   store: { env: LEDGERLIFT_STORE_DSN, secret: true }
///   mapping: { default: fixtures/reference/mapping.yaml }
/// steps:
///   - id: capture
///     run: shadow install --legacy ${legacy} --mapping ${mapping}
///   - id: verified
///     gate: cutover advance --to verified --legacy ${legacy} --store ${store}
///     timeout: 10m
///   - id: dashboards
///     pause: check the dashboards
/// ```
public struct Playbook: Sendable, Hashable {
    public var name: String
    public var description: String?
    public var variables: [Variable]
    /// The variable naming the database where runs are recorded (``PlaybookState``).
    public var state: String
    public var steps: [Step]
    /// The file's text: a run resumes only under the text it was begun with.
    public var text: String
    /// Whether a finished run may be followed by a new one (`ci-verify`); a migration's
    /// playbook is not: running it again after it finished is refused (`--from` overrides).
    public var repeatable = false

    public struct Variable: Sendable, Hashable {
        public var name: String
        /// Read from this environment variable when `--var` does not give it.
        public var env: String?
        public var defaultValue: String?
        /// Never printed: shown masked (a DSN without its password, anything else as `•••`).
        public var secret: Bool
        public var description: String?
    }

    public struct Step: Sendable, Hashable {
        /// Stable name (`--from ID`, the recorded position).
        public var id: String
        public var title: String
        public var kind: Kind
        /// A `ledgerlift` command that exits 0 when the step is already done: it is skipped.
        public var unless: [String]?
        /// What to do when the step fails, printed with the failure.
        public var remedy: String?
        /// A read-only command `--dry-run` evaluates instead of a gate that acts once it passes
        /// (`cutover advance --dry-run` for `cutover advance`).
        public var check: [String]? = nil
        /// A `ledgerlift` command that must exit 0 for the step to apply; otherwise it is
        /// skipped (`rollback.yaml`: roll writes back only from `writes_switched`).
        public var onlyIf: [String]? = nil
    }

    public enum Kind: Sendable, Hashable {
        /// `ledgerlift ARGS`; exit 0 is done, anything else stops the run.
        case run([String])
        /// `ledgerlift ARGS` again every `every` until it exits 0, at most `timeout` (durations,
        /// `${variable}` allowed). Exit 1 is "not yet"; exit 2 (could not run) stops the run at once.
        case gate([String], timeout: String, every: String)
        /// Waits this long (a soak: the ledger takes the writes for a while).
        case wait(String)
        /// `ledgerlift ARGS` started in the background (its own process group, output in a log
        /// file), left running when the playbook ends; not started again while it runs.
        case start([String])
        /// Waits for the operator (`--yes` answers for them).
        case pause(String)
    }

    /// The variables a template names: `${name}`.
    static func references(_ text: String) -> [String] {
        var names = [String]()
        var rest = Substring(text)
        while let open = rest.range(of: "${") {
            guard let close = rest[open.upperBound...].firstIndex(of: "}") else { break }
            names.append(String(rest[open.upperBound..<close]))
            rest = rest[rest.index(after: close)...]
        }
        return names
    }
}

/// A playbook file that cannot be run as written.
public struct PlaybookError: Error, Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var message: String

    public init(file: String, _ message: String) {
        self.file = file
        self.message = message
    }

    public var description: String { "\(file): \(message)" }
}

extension Playbook {
    /// Reads and checks a playbook file: every step of one kind, ids unique, every `${name}`
    /// declared, durations readable, the state variable declared.
    public static func load(path: String) throws -> Playbook {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw PlaybookError(file: path, "cannot read the playbook: \(error.localizedDescription)")
        }
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String) throws -> Playbook {
        func fail(_ message: String) -> PlaybookError { PlaybookError(file: file, message) }
        let loaded: Any?
        do {
            loaded = try Yams.load(yaml: text)
        } catch {
            throw fail("not YAML: \(error)")
        }
        guard let root = loaded as? [String: Any] else { throw fail("the top level must be a mapping (name, steps, …)") }
        let known: Set = ["name", "description", "state", "variables", "steps", "repeatable"]
        if let unknown = root.keys.sorted().first(where: { !known.contains($0) }) {
            throw fail("unknown key \"\(unknown)\" at the top level (known: \(known.sorted().joined(separator: ", ")))")
        }
        guard let name = root["name"] as? String, !name.isEmpty,
            name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || "0123456789_.-".unicodeScalars.contains($0)) })
        else { throw fail("name: letters, digits, '_', '.' and '-'") }

        var variables = [Variable]()
        if let raw = root["variables"] {
            guard let map = raw as? [String: Any] else { throw fail("variables: a mapping of name → { env, default, secret }") }
            for key in map.keys.sorted() {
                var variable = Variable(name: key, env: nil, defaultValue: nil, secret: false, description: nil)
                switch map[key] {
                case let value as String: variable.defaultValue = value
                case let spec as [String: Any]:
                    for field in spec.keys where !["env", "default", "secret", "description"].contains(field) {
                        throw fail("variable \(key): unknown key \"\(field)\" (env, default, secret, description)")
                    }
                    variable.env = spec["env"] as? String
                    variable.defaultValue = spec["default"].map { "\($0)" }
                    variable.secret = spec["secret"] as? Bool ?? false
                    variable.description = spec["description"] as? String
                case nil: break
                default: throw fail("variable \(key): a value or { env, default, secret, description }")
                }
                variables.append(variable)
            }
        }
        let declared = Set(variables.map(\.name))
        guard let state = root["state"] as? String, declared.contains(state) else {
            throw fail("state: the name of a declared variable holding the DSN where runs are recorded (usually store)")
        }
        guard let rawSteps = root["steps"] as? [Any], !rawSteps.isEmpty else { throw fail("steps: a list of steps") }
        var steps = [Step]()
        var ids = Set<String>()
        for (index, raw) in rawSteps.enumerated() {
            let position = "step \(index + 1)"
            guard let map = raw as? [String: Any] else { throw fail("\(position): a mapping (id, run|gate|start|pause, …)") }
            guard let id = map["id"] as? String, !id.isEmpty else { throw fail("\(position): id is required") }
            guard ids.insert(id).inserted else { throw fail("\(position): id \"\(id)\" is used twice") }
            let knownKeys: Set = [
                "id", "title", "run", "gate", "start", "pause", "wait", "unless", "timeout", "every", "remedy", "check",
                "only_if",
            ]
            if let unknown = map.keys.sorted().first(where: { !knownKeys.contains($0) }) {
                throw fail("step \(id): unknown key \"\(unknown)\"")
            }
            let kinds = ["run", "gate", "start", "pause", "wait"].filter { map[$0] != nil }
            guard kinds.count == 1 else { throw fail("step \(id): exactly one of run, gate, start, pause, wait") }
            func command(_ key: String) throws -> [String] {
                let words: [String]
                switch map[key] {
                case let text as String:
                    do {
                        words = try Self.split(text)
                    } catch let error as PlaybookError {
                        throw fail("step \(id): \(error.message)")
                    }
                case let list as [Any]: words = list.map { "\($0)" }
                default: throw fail("step \(id): \(key) is a command (a string or a list of arguments)")
                }
                guard !words.isEmpty else { throw fail("step \(id): \(key) is empty") }
                for word in words {
                    for reference in references(word) where !declared.contains(reference) {
                        throw fail("step \(id): ${\(reference)} is not a declared variable")
                    }
                }
                if words.first == "ledgerlift" { return Array(words.dropFirst()) }
                return words
            }
            func duration(_ key: String, _ fallback: String) throws -> String {
                guard let raw = map[key] else { return fallback }
                let text = "\(raw)"
                let names = references(text)
                if names.isEmpty {
                    guard Self.duration(text) != nil else {
                        throw fail("step \(id): \(key) \"\(raw)\" is not a duration (90s, 10m, 1h)")
                    }
                } else if let unknown = names.first(where: { !declared.contains($0) }) {
                    throw fail("step \(id): ${\(unknown)} is not a declared variable")
                }
                return text
            }
            let kind: Kind
            switch kinds[0] {
            case "run": kind = .run(try command("run"))
            case "gate":
                kind = .gate(try command("gate"), timeout: try duration("timeout", "10m"), every: try duration("every", "2s"))
            case "wait": kind = .wait(try duration("wait", ""))
            case "start": kind = .start(try command("start"))
            default:
                guard let message = map["pause"] as? String, !message.isEmpty else {
                    throw fail("step \(id): pause is the message shown to the operator")
                }
                kind = .pause(message)
            }
            let title = map["title"] as? String ?? id
            steps.append(
                Step(
                    id: id, title: title, kind: kind, unless: map["unless"] == nil ? nil : try command("unless"),
                    remedy: map["remedy"] as? String, check: map["check"] == nil ? nil : try command("check"),
                    onlyIf: map["only_if"] == nil ? nil : try command("only_if")))
        }
        return Playbook(
            name: name, description: root["description"] as? String, variables: variables, state: state, steps: steps,
            text: text, repeatable: root["repeatable"] as? Bool ?? false)
    }

    /// `90s`, `10m`, `1h`, `500ms`, or seconds as a bare number.
    static func duration(_ text: String) -> Duration? {
        let t = text.trimmingCharacters(in: .whitespaces)
        for (suffix, scale) in [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)] where t.hasSuffix(suffix) {
            guard let value = Double(t.dropLast(suffix.count)), value > 0 else { return nil }
            return .milliseconds(Int64((value * scale * 1000).rounded()))
        }
        guard let value = Double(t), value > 0 else { return nil }
        return .milliseconds(Int64((value * 1000).rounded()))
    }

    /// Words of a command line: split on blanks, `'…'` and `"…"` keep blanks (no shell: no
    /// globbing, no expansion but `${variable}`).
    static func split(_ text: String) throws -> [String] {
        var words = [String]()
        var current = ""
        var inWord = false
        var quote: Character?
        for character in text {
            if let q = quote {
                if character == q { quote = nil } else { current.append(character) }
            } else if character == "'" || character == "\"" {
                quote = character
                inWord = true
            } else if character.isWhitespace {
                if inWord { words.append(current) }
                current = ""
                inWord = false
            } else {
                current.append(character)
                inWord = true
            }
        }
        if quote != nil { throw PlaybookError(file: "", "an unterminated quote in: \(text)") }
        if inWord { words.append(current) }
        return words
    }
}
