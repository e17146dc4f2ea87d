/// A mapping file that cannot be used: every problem found while loading it, each pointing at
/// the file, the entity and the field (and the line, when the YAML says).
///
/// ```text
/// mapping.yaml:14:14: entities.invoice.amounts: expected major or minor, got "cents"
/// mapping.yaml:20:3: entities.invoices: unknown entity "invoices"; did you mean invoice?
/// ```
public struct MappingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// One problem in the file.
    public struct Issue: Sendable, Hashable, CustomStringConvertible {
        /// What kind of problem it is.
        public enum Code: String, Sendable, Hashable, CaseIterable {
            /// The file cannot be read.
            case unreadableFile = "unreadable_file"
            /// The text is not valid YAML (or repeats a key).
            case invalidYAML = "invalid_yaml"
            /// `version` is missing or not one this Ledgerlift reads.
            case unsupportedVersion = "unsupported_version"
            /// An `entities` key that is not a canonical entity.
            case unknownEntity = "unknown_entity"
            /// A key the mapping format does not have (often a typo).
            case unknownField = "unknown_field"
            /// A required field is absent or empty.
            case missingField = "missing_field"
            /// A field has the wrong shape or an impossible value.
            case invalidValue = "invalid_value"
            /// `default_currency` is not a usable ISO 4217 code.
            case unknownCurrency = "unknown_currency"
        }

        public let code: Code
        /// The entity, as written in the file (it may be an unknown one); `nil` for file-level fields.
        public let entity: String?
        /// The field inside the entity (or at the top of the file): `amounts`, `history.query`,
        /// `sources[1].table`.
        public let field: String?
        /// 1-based position in the file, when known.
        public let line: Int?
        public let column: Int?
        /// What is wrong and what to write instead.
        public let message: String

        public init(
            _ code: Code, entity: String? = nil, field: String? = nil, line: Int? = nil, column: Int? = nil,
            _ message: String
        ) {
            self.code = code
            self.entity = entity
            self.field = field
            self.line = line
            self.column = column
            self.message = message
        }

        /// The dotted path of the field in the file: `entities.invoice.amounts`, `version`.
        public var path: String? {
            guard let entity else { return field }
            return "entities." + entity + (field.map { "." + $0 } ?? "")
        }

        public var description: String {
            (path.map { $0 + ": " } ?? "") + message
        }
    }

    /// The file as given (path or label).
    public let file: String
    /// Every problem found, in file order.
    public let issues: [Issue]

    public init(file: String, issues: [Issue]) {
        self.file = file
        self.issues = issues
    }

    /// The codes of the issues, in order (convenient in tests and scripts).
    public var codes: [Issue.Code] { issues.map(\.code) }

    /// One line per issue: `file:line:column: path: message`.
    public var description: String {
        issues.map { issue in
            var location = file
            if let line = issue.line {
                location += ":\(line)"
                if let column = issue.column { location += ":\(column)" }
            }
            return location + ": " + issue.description
        }.joined(separator: "\n")
    }
}
