import Billing
import Postgres

/// How an entity's canonical row is written back into the legacy tables (`write_back:`), for
/// reverse sync: once the ledger takes the writes (the cutover's write switch), the rows its
/// write path changes are applied back so legacy readers (reports, BI, support tools) stay
/// current and a rollback finds legacy complete.
///
/// ```yaml
/// write_back:
///   attributes: [tax_rate]        # attributes the SQL reads, besides the canonical columns
///   upsert:                       # one statement, or a list run in order
///     - INSERT INTO legacy.invoices (id, …) VALUES (:invoice_id::bigint, …) ON CONFLICT (id) DO UPDATE …
///     - UPDATE legacy.customers c SET balance = … WHERE c.id = :customer_id::bigint
///   delete: DELETE FROM legacy.invoices WHERE id = :invoice_id::bigint
/// ```
///
/// Parameters are named (`:amount_due`): the entity's canonical columns and the declared
/// ``attributes``; each name is bound to a `$n` (the same `$n` every time the name appears),
/// typed as the canonical column is (see ``parameterType(_:entity:amounts:)``). The SQL is the
/// user's, like the mapping's queries: caches the legacy schema keeps (a customer's balance)
/// are recomputed in it, and a key created by the ledger advances the legacy id sequence there.
public struct WriteBack: Sendable, Hashable {
    /// One statement with named parameters.
    public struct Statement: Sendable, Hashable {
        /// The SQL as the mapping wrote it (normalized: trimmed, no trailing semicolon).
        public let text: String
        /// The parameter names in order of first appearance: `$1` is `parameters[0]`.
        public let parameters: [String]
        /// The line of the mapping file the statement starts on, when known.
        public let line: Int?

        /// Parses `text`'s named parameters. A `:name` inside a string literal, a quoted
        /// identifier, a comment or a dollar-quoted body is not a parameter, nor is a `::` cast.
        public init(_ text: String, line: Int? = nil) throws(WriteBackSQLError) {
            self.text = MappingFile.normalizedQuery(text)
            self.line = line
            // Write-back is data: one DML statement that the reverse sync's (or `mapping check`'s)
            // transaction commits or rolls back. Transaction control would commit the check's
            // scratch transaction; DDL and COPY have no place in writing a row back.
            let verb = Self.firstKeyword(self.text)
            guard Self.allowedVerbs.contains(verb) else {
                throw WriteBackSQLError(
                    line: line ?? 1,
                    "a write_back statement must be INSERT, UPDATE, DELETE, MERGE, SELECT or WITH (got \(verb.isEmpty ? "nothing" : verb)): "
                        + "no transaction control, DDL or COPY")
            }
            var names = [String]()
            for token in try Self.tokens(self.text) {
                if case .parameter(let name, _) = token, !names.contains(name) { names.append(name) }
            }
            self.parameters = names
        }

        /// The SQL to send: each `:name` replaced by `($n::type)`, `type` from `typeOf`.
        public func sql(typeOf: (String) -> String) -> String {
            // `tokens` succeeded in init: the same text tokenizes again.
            let tokens = (try? Self.tokens(text)) ?? [.text(text)]
            var out = ""
            for token in tokens {
                switch token {
                case .text(let piece): out += piece
                case .parameter(let name, _):
                    let index = parameters.firstIndex(of: name)! + 1
                    out += "($\(index)::\(typeOf(name)))"
                }
            }
            return out
        }

        static let allowedVerbs: Set<String> = ["INSERT", "UPDATE", "DELETE", "MERGE", "SELECT", "WITH"]

        /// The statement's first keyword, upper-cased, after leading comments and parentheses.
        static func firstKeyword(_ sql: String) -> String {
            var rest = Substring(sql)
            while true {
                rest = rest.drop { $0.isWhitespace || $0 == "(" }
                if rest.hasPrefix("--") {
                    rest = rest.drop { $0 != "\n" }
                } else if rest.hasPrefix("/*") {
                    rest = rest.dropFirst(2)
                    while !rest.isEmpty, !rest.hasPrefix("*/") { rest = rest.dropFirst() }
                    rest = rest.dropFirst(2)
                } else {
                    break
                }
            }
            return String(rest.prefix { $0.isLetter || $0 == "_" }).uppercased()
        }

        enum Token: Equatable {
            case text(String)
            /// A named parameter and the 1-based line of the statement it is on.
            case parameter(String, line: Int)
        }

        /// Splits SQL into text and named parameters, skipping what PostgreSQL does not read as
        /// code: `'…'` (with `''`), `E'…'` (with backslash escapes), `"…"`, `-- …`, `/* … */`
        /// (nested) and `$tag$ … $tag$`. A positional `$1` is refused: the names are the contract.
        static func tokens(_ sql: String) throws(WriteBackSQLError) -> [Token] {
            let chars = Array(sql.unicodeScalars)
            var tokens = [Token]()
            var current = String.UnicodeScalarView()
            var i = 0
            var line = 1
            func isIdentStart(_ c: Unicode.Scalar) -> Bool { c == "_" || c.properties.isAlphabetic }
            func isIdent(_ c: Unicode.Scalar) -> Bool { isIdentStart(c) || ("0"..."9").contains(c) }
            func take(_ n: Int) {
                for k in 0..<n where i + k < chars.count {
                    if chars[i + k] == "\n" { line += 1 }
                    current.append(chars[i + k])
                }
                i += n
            }
            while i < chars.count {
                let c = chars[i]
                let next: Unicode.Scalar? = i + 1 < chars.count ? chars[i + 1] : nil
                if c == "'" {
                    // E'…' allows backslash escapes.
                    let escapes =
                        i > 0 && (chars[i - 1] == "E" || chars[i - 1] == "e")
                        && (i < 2 || !isIdent(chars[i - 2]))
                    take(1)
                    while i < chars.count {
                        if escapes, chars[i] == "\\" {
                            take(2)
                            continue
                        }
                        if chars[i] == "'" {
                            if i + 1 < chars.count, chars[i + 1] == "'" {
                                take(2)
                                continue
                            }
                            take(1)
                            break
                        }
                        take(1)
                    }
                } else if c == "\"" {
                    take(1)
                    while i < chars.count, chars[i] != "\"" { take(1) }
                    take(1)
                } else if c == "-", next == "-" {
                    while i < chars.count, chars[i] != "\n" { take(1) }
                } else if c == "/", next == "*" {
                    var depth = 0
                    repeat {
                        if chars[i] == "/", i + 1 < chars.count, chars[i + 1] == "*" {
                            depth += 1
                            take(2)
                        } else if chars[i] == "*", i + 1 < chars.count, chars[i + 1] == "/" {
                            depth -= 1
                            take(2)
                        } else {
                            take(1)
                        }
                    } while i < chars.count && depth > 0
                } else if c == "$" {
                    if let next, ("0"..."9").contains(next) {
                        throw WriteBackSQLError(
                            line: line,
                            "positional parameter $\(next) — name the canonical column instead (:customer_id)")
                    }
                    // $tag$ … $tag$ (tag empty or an identifier).
                    var j = i + 1
                    while j < chars.count, isIdent(chars[j]) { j += 1 }
                    if j < chars.count, chars[j] == "$", i == 0 || !isIdent(chars[i - 1]) {
                        let tag = Array(chars[i...j])
                        take(tag.count)
                        while i < chars.count {
                            if chars[i] == "$", i + tag.count <= chars.count, Array(chars[i..<(i + tag.count)]) == tag {
                                take(tag.count)
                                break
                            }
                            take(1)
                        }
                    } else {
                        take(1)
                    }
                } else if c == ":", next == ":" {
                    take(2)
                } else if c == ":", let next, isIdentStart(next) {
                    var j = i + 1
                    while j < chars.count, isIdent(chars[j]) { j += 1 }
                    if !current.isEmpty { tokens.append(.text(String(current))) }
                    current = String.UnicodeScalarView()
                    tokens.append(.parameter(String(String.UnicodeScalarView(chars[(i + 1)..<j])), line: line))
                    i = j
                } else {
                    take(1)
                }
            }
            if !current.isEmpty { tokens.append(.text(String(current))) }
            return tokens
        }

        /// The parameters with the statement line each first appears on.
        func parameterLines() -> [(name: String, line: Int)] {
            var seen = Set<String>()
            var result = [(String, Int)]()
            for token in (try? Self.tokens(text)) ?? [] {
                if case .parameter(let name, let line) = token, seen.insert(name).inserted {
                    result.append((name, line))
                }
            }
            return result
        }
    }

    /// Writes the row the ledger holds now (insert or update), in order.
    public var upsert: [Statement]
    /// Removes a row the ledger no longer has (its stream ended with `…Deleted`), in order. Its
    /// parameters are the row as it was before the deletion, so caches can be recomputed.
    public var delete: [Statement]
    /// Attributes (legacy-only columns the mapping query carries) the statements read, passed
    /// as text (NULL when the row has none).
    public var attributes: [String]

    public init(upsert: [Statement], delete: [Statement], attributes: [String] = []) {
        self.upsert = upsert
        self.delete = delete
        self.attributes = attributes
    }

    /// Every statement, upserts first, each with its kind and index (`upsert[0]`).
    public var statements: [(name: String, statement: Statement)] {
        upsert.enumerated().map { ("upsert[\($0.offset)]", $0.element) }
            + delete.enumerated().map { ("delete[\($0.offset)]", $0.element) }
    }

    /// The PostgreSQL type a parameter named `name` is bound as: text for keys, text and
    /// vocabulary values (and attributes), `bigint` for integers, `numeric` for exact decimals,
    /// `boolean`, `timestamptz` (the reverse sync's transaction runs with `TimeZone` UTC, so a
    /// `timestamp` column receives UTC as the mapping reads it), `date`; amounts in the unit the
    /// mapping reads them: `numeric` major units under `amounts: major` (`12.30`), `bigint`
    /// legacy minor units under `amounts: minor` (with `currency_exponents`).
    public static func parameterType(_ name: String, entity: Entity, amounts: MappingFile.AmountUnit) -> String {
        guard let column = entity.column(name) else { return "text" }
        switch column.type {
        case .text, .status, .currency: return "text"
        case .integer: return "bigint"
        case .amount: return amounts == .major ? "numeric" : "bigint"
        case .decimal: return "numeric"
        case .boolean: return "boolean"
        case .timestamp: return "timestamptz"
        case .date: return "date"
        }
    }
}

/// A statement of `write_back` that cannot be parsed (a positional parameter).
public struct WriteBackSQLError: Error, Sendable, Hashable {
    /// 1-based line of the statement.
    public let line: Int
    public let message: String
    init(line: Int, _ message: String) {
        self.line = line
        self.message = message
    }
}

// MARK: - Binding a canonical row

extension WriteBack {
    /// Why a row's values cannot be bound (an amount without a currency, an amount the legacy
    /// unit cannot hold exactly).
    public struct BindingError: Error, Sendable, Hashable, CustomStringConvertible {
        public let entity: Entity
        public let key: String
        public let column: String
        public let reason: String
        public var description: String { "\(entity) \(key): \(column): \(reason)" }
    }

    /// The values of `statement`'s parameters for `row`, as text in the order of `$1…$n` (`nil`:
    /// NULL), each in the form its ``parameterType(_:entity:amounts:)`` reads: amounts converted
    /// back into the unit the mapping reads them in (the converter's inverse, exact or refused),
    /// timestamps in ISO 8601 with their offset, attributes verbatim.
    public static func values(
        of statement: Statement, row: CanonicalRow, amounts: MappingFile.AmountUnit,
        currencyExponents: [Currency: Int] = [:]
    ) throws(BindingError) -> [String?] {
        var result = [String?]()
        for name in statement.parameters {
            guard let column = row.entity.column(name) else {
                result.append(row.attributes[name] ?? nil)
                continue
            }
            let value = row[name]
            switch value {
            case .null: result.append(nil)
            case .amount(let minor):
                let code = row[column.currencyColumn ?? "currency"].textValue
                guard let code, let currency = try? Currency(code: code) else {
                    throw BindingError(
                        entity: row.entity, key: row.key, column: name,
                        reason: "an amount without a currency cannot be written in legacy units")
                }
                switch amounts {
                case .major:
                    result.append(Decimal10.shift(String(minor), by: -currency.minorUnitExponent))
                case .minor:
                    let written = currencyExponents[currency] ?? currency.minorUnitExponent
                    let shifted = Decimal10.shift(String(minor), by: written - currency.minorUnitExponent)
                    guard !shifted.contains(".") else {
                        throw BindingError(
                            entity: row.entity, key: row.key, column: name,
                            reason: "\(minor) minor units of \(code) are \(shifted) in the legacy unit "
                                + "(currency_exponents: {\(code): \(written)}), not a whole number")
                    }
                    result.append(shifted)
                }
            case .decimal(let text):
                if column.isUnitPrice, amounts == .minor, let code = row["currency"].textValue,
                    let currency = try? Currency(code: code)
                {
                    // A unit price under `minor` is written in the legacy minor unit.
                    result.append(Decimal10.shift(text, by: currencyExponents[currency] ?? currency.minorUnitExponent))
                } else {
                    result.append(text)
                }
            case .timestamp(let t): result.append(t.iso8601)
            default: result.append(value.description)
            }
        }
        return result
    }
}

/// Exact decimal text arithmetic: moving the point.
enum Decimal10 {
    /// `text` × 10^`k`, exact, in plain notation without superfluous zeros before the point
    /// (`shift("1230", -2)` is `12.30`, `shift("-5", -2)` is `-0.05`, `shift("12.5", 1)` is `125`).
    static func shift(_ text: String, by k: Int) -> String {
        var digits = Substring(text)
        var negative = false
        if digits.first == "-" {
            negative = true
            digits = digits.dropFirst()
        } else if digits.first == "+" {
            digits = digits.dropFirst()
        }
        let parts = digits.split(separator: ".", omittingEmptySubsequences: false)
        var integer = String(parts[0])
        var fraction = parts.count > 1 ? String(parts[1]) : ""
        if k > 0 {
            let moved = String(fraction.prefix(k))
            fraction = String(fraction.dropFirst(moved.count))
            integer += moved + String(repeating: "0", count: k - moved.count)
        } else if k < 0 {
            let n = -k
            if integer.count < n { integer = String(repeating: "0", count: n - integer.count) + integer }
            fraction = String(integer.suffix(n)) + fraction
            integer = String(integer.dropLast(n))
        }
        while integer.count > 1, integer.first == "0" { integer.removeFirst() }
        if integer.isEmpty { integer = "0" }
        let body = fraction.isEmpty ? integer : integer + "." + fraction
        return (negative && body.contains(where: { $0 != "0" && $0 != "." }) ? "-" : "") + body
    }
}
