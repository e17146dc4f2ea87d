import CLibPQ

/// Why a text is not a connection string Ledgerlift will hand to libpq.
///
/// The reason never quotes the text: a string that is not well formed cannot be masked
/// reliably (its password is not where a parser looks for one), so it is described — the scheme
/// when it is a plain word, the keyword when it is close to a real one — and never printed.
public struct ConnectionStringError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What is wrong, e.g. `unknown scheme 'pgsql' (expected postgresql:// or postgres://, or key=value pairs)`.
    public let reason: String

    public init(reason: String) { self.reason = reason }

    /// `not a PostgreSQL connection string: <reason>`.
    public var description: String { "not a PostgreSQL connection string: \(reason)" }

    /// The refusal naming where the string came from, e.g. `the --legacy DSN` →
    /// `the --legacy DSN is not a PostgreSQL connection string: <reason>`.
    public func naming(_ source: String) -> String { "\(source) is \(description)" }
}

extension ConnectionString {
    /// Refuses anything that is not a well-formed libpq URL or `key=value` conninfo.
    ///
    /// libpq is lenient in ways that leak: a string it does not recognise as a URL and that has
    /// no `=` is taken as a database name and sent to the server (which repeats it in its
    /// error), and its parse errors quote the text they choke on. So everything that would
    /// reach libpq is checked first, and the rules are strict: lower-case `postgresql://` or
    /// `postgres://`, or `keyword=value` pairs with known keywords separated by spaces; no
    /// surrounding whitespace or control characters; at most one raw `@` in a URL, ending the
    /// user info; a numeric port; a database name that is not itself a connection string. What
    /// passes is parsed by libpq as well, and only then is it printed, masked.
    ///
    /// - Throws: ``ConnectionStringError``, whose reason never contains the text.
    public static func validate(_ dsn: String) throws(ConnectionStringError) {
        func refuse(_ reason: String) -> ConnectionStringError { ConnectionStringError(reason: reason) }
        guard let first = dsn.first, let last = dsn.last else { throw refuse("it is empty") }
        if dsn.unicodeScalars.contains(where: { $0.properties.generalCategory == .control && $0 != "\t" }) {
            throw refuse("it holds a line break or another control character")
        }
        if first.isWhitespace { throw refuse("it starts with whitespace") }
        if last.isWhitespace { throw refuse("it ends with whitespace") }
        if isURL(dsn) {
            try validateURL(dsn)
        } else {
            try validateScheme(dsn)
            try validateKeywordValue(dsn)
        }
        let options: [String: String]
        switch parse(dsn) {
        case .success(let parsed): options = parsed
        case .failure(let error): throw error
        }
        if let ports = options["port"],
            ports.split(separator: ",", omittingEmptySubsequences: false).contains(where: {
                !$0.allSatisfy { $0.isASCII && $0.isNumber }
            })
        {
            throw refuse("the port is not a number")
        }
        if let database = options["dbname"], database.contains("=") || database.contains("://") {
            throw refuse("the database name is itself a connection string (pass the URL or key=value pairs alone)")
        }
    }

    /// Whether ``validate(_:)`` accepts `dsn`.
    public static func isWellFormed(_ dsn: String) -> Bool {
        (try? validate(dsn)) != nil
    }

    // MARK: - Schemes

    /// For a string that is not a URL: refuses one that looks like a URL anyway (another or a
    /// mistyped scheme, no scheme) or that has no `=` at all (libpq would take it for a
    /// database name).
    private static func validateScheme(_ dsn: String) throws(ConnectionStringError) {
        func refuse(_ reason: String) -> ConnectionStringError { ConnectionStringError(reason: reason) }
        let noScheme = "it has no scheme: a URL starts with postgresql:// or postgres://"
        if let separator = dsn.firstRange(of: "://") {
            let scheme = dsn[..<separator.lowerBound]
            if !scheme.contains("="), !scheme.contains(where: \.isWhitespace) {
                let lower = scheme.lowercased()
                if lower == "postgresql" || lower == "postgres" {
                    throw refuse("the scheme must be written in lower case: postgresql:// or postgres://")
                }
                if lower.hasPrefix("jdbc:") {
                    throw refuse(
                        "a JDBC URL: remove the 'jdbc:' prefix (libpq reads postgresql://user:password@host:port/database)"
                    )
                }
                if scheme.isEmpty { throw refuse(noScheme) }
                let expected = "(expected postgresql:// or postgres://, or key=value pairs)"
                if isPlainScheme(scheme) { throw refuse("unknown scheme '\(scheme)' \(expected)") }
                throw refuse("unknown scheme \(expected)")
            }
        }
        guard dsn.contains("=") else {
            if dsn.contains("@") || dsn.contains("/") { throw refuse(noScheme) }
            throw refuse(
                "neither a URL (postgresql://…) nor key=value pairs (for a database name alone, write dbname=NAME)")
        }
    }

    /// A short RFC 3986 scheme: safe to name in a message.
    private static func isPlainScheme(_ scheme: Substring) -> Bool {
        guard let first = scheme.first, first.isASCII, first.isLetter, scheme.count <= 20 else { return false }
        return scheme.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "+.-".contains($0)) }
    }

    // MARK: - URLs

    /// Checks a `postgresql://` URL where libpq's reading differs from what the writer meant:
    /// a raw `@` anywhere but at the end of the user info (libpq ends the user info at the first
    /// `@` or `/`, so a password holding one spills into the host, port or database), and query
    /// parameters without exactly one `=` or with an unknown keyword.
    private static func validateURL(_ url: String) throws(ConnectionStringError) {
        func refuse(_ reason: String) -> ConnectionStringError { ConnectionStringError(reason: reason) }
        guard let schemeEnd = url.firstRange(of: "://")?.upperBound else { return }
        let rest = url[schemeEnd...]
        // libpq's user info: up to the first '@' that comes before any '/'.
        let userInfoEnd = rest.firstIndex { $0 == "@" || $0 == "/" }
        var hostStart = rest.startIndex
        if let end = userInfoEnd, rest[end] == "@" {
            if rest[..<end].contains("?") {
                throw refuse("an '@' in a URL parameter before any '/' (write '@' as %40)")
            }
            hostStart = rest.index(after: end)
        }
        let afterUserInfo = rest[hostStart...]
        let queryStart = afterUserInfo.firstIndex(of: "?")
        let beforeQuery = afterUserInfo[..<(queryStart ?? afterUserInfo.endIndex)]
        let pathStart = beforeQuery.firstIndex(of: "/") ?? beforeQuery.endIndex
        if beforeQuery[..<pathStart].contains("@") {
            throw refuse("more than one '@' before the host (write '@' in a user name or password as %40)")
        }
        if beforeQuery[pathStart...].contains("@") {
            throw refuse("the database name holds '@' (write '@' as %40, and '/' in a password as %2F)")
        }
        guard let queryStart else { return }
        let query = afterUserInfo[afterUserInfo.index(after: queryStart)...]
        guard !query.isEmpty else { return }
        for parameter in query.split(separator: "&", omittingEmptySubsequences: false) {
            let separators = parameter.filter { $0 == "=" }.count
            if separators == 0 { throw refuse("a URL parameter has no '=' (write key=value)") }
            if separators > 1 { throw refuse("a URL parameter holds more than one '=' (write '=' in a value as %3D)") }
            let key = String(parameter.prefix { $0 != "=" })
            let decoded = percentDecoded(key) ?? key
            // libpq also takes JDBC's ssl=true in a URL.
            guard !knownKeywords.contains(decoded), decoded != "ssl" else { continue }
            if let suggestion = suggestion(for: decoded) {
                throw refuse("unknown URL parameter '\(decoded)' (did you mean '\(suggestion)'?)")
            }
            throw refuse("an unknown URL parameter")
        }
    }

    // MARK: - key=value

    /// One `keyword=value` item as libpq's conninfo parser splits it.
    private enum Item {
        case pair(keyword: String, value: String, quoted: Bool)
        /// A word not followed by `=` (libpq refuses it).
        case missingEquals(word: String)
        /// A quoted value that runs to the end of the string.
        case unterminatedQuote
    }

    /// Splits `text` the way libpq's `conninfo_parse` does: a keyword ends at `=` or
    /// whitespace; a value is a single-quoted string or runs to the next whitespace; `\`
    /// escapes the next character in both.
    private static func items(_ text: String) -> [Item] {
        var items = [Item]()
        let chars = Array(text)
        var i = 0
        func skipWhitespace() { while i < chars.count, chars[i].isWhitespace { i += 1 } }
        while true {
            skipWhitespace()
            guard i < chars.count else { break }
            let start = i
            while i < chars.count, chars[i] != "=", !chars[i].isWhitespace { i += 1 }
            let keyword = String(chars[start..<i])
            skipWhitespace()
            guard i < chars.count, chars[i] == "=" else {
                items.append(.missingEquals(word: keyword))
                return items
            }
            i += 1
            skipWhitespace()
            var value = ""
            if i < chars.count, chars[i] == "'" {
                i += 1
                var closed = false
                while i < chars.count {
                    if chars[i] == "\\" {
                        i += 1
                        if i < chars.count {
                            value.append(chars[i])
                            i += 1
                        }
                    } else if chars[i] == "'" {
                        i += 1
                        closed = true
                        break
                    } else {
                        value.append(chars[i])
                        i += 1
                    }
                }
                guard closed else {
                    items.append(.unterminatedQuote)
                    return items
                }
                items.append(.pair(keyword: keyword, value: value, quoted: true))
            } else {
                while i < chars.count, !chars[i].isWhitespace {
                    if chars[i] == "\\" {
                        i += 1
                        if i < chars.count {
                            value.append(chars[i])
                            i += 1
                        }
                    } else {
                        value.append(chars[i])
                        i += 1
                    }
                }
                items.append(.pair(keyword: keyword, value: value, quoted: false))
            }
        }
        return items
    }

    /// Checks `key=value` conninfo item by item, naming only keywords libpq knows (or close
    /// misspellings of them) and never a value.
    private static func validateKeywordValue(_ text: String) throws(ConnectionStringError) {
        func refuse(_ reason: String) -> ConnectionStringError { ConnectionStringError(reason: reason) }
        var previous: (keyword: String, quoted: Bool)?
        for (index, item) in items(text).enumerated() {
            let ordinal = ordinal(index + 1)
            switch item {
            case .unterminatedQuote:
                throw refuse("a quoted value has no closing quote")
            case .missingEquals(let word):
                if let colon = word.firstIndex(of: ":"), knownKeywords.contains(String(word[..<colon])) {
                    throw refuse("'\(word[..<colon])' is followed by ':' instead of '=' (write keyword=value)")
                }
                if knownKeywords.contains(word) {
                    throw refuse("'\(word)' is not followed by '=' (write keyword=value)")
                }
                if let previous, !previous.quoted {
                    throw refuse(
                        "the value of '\(previous.keyword)' is followed by a word without '=' "
                            + "(quote a value that holds spaces: key='a b')")
                }
                if index == 0, word.contains("@") || word.contains("/") {
                    throw refuse("it has no scheme: a URL starts with postgresql:// or postgres://")
                }
                throw refuse("the \(ordinal) item is not a key=value pair")
            case .pair(let keyword, let value, let quoted):
                if !knownKeywords.contains(keyword) {
                    if let suggestion = suggestion(for: keyword) {
                        throw refuse("unknown keyword '\(keyword)' (did you mean '\(suggestion)'?)")
                    }
                    if index == 0, keyword.contains("@") || keyword.contains("/") || keyword.contains(":") {
                        throw refuse("it has no scheme: a URL starts with postgresql:// or postgres://")
                    }
                    throw refuse("the \(ordinal) key=value pair has an unknown keyword")
                }
                if !quoted {
                    if let end = value.last, end == "," || end == ";" {
                        throw refuse(
                            "the value of '\(keyword)' ends with '\(end)' "
                                + "(separate key=value pairs with spaces, not \(end == "," ? "commas" : "semicolons"))")
                    }
                    if holdsAnotherPair(value) {
                        throw refuse(
                            "the value of '\(keyword)' holds another key=value pair after ',' or ';' "
                                + "(separate pairs with spaces; quote a value that holds one)")
                    }
                }
                previous = (keyword, quoted)
            }
        }
    }

    /// Whether an unquoted value reads `…,word=…` or `…;word=…`: pairs glued with a comma or
    /// a semicolon (as other drivers write them), which libpq takes as one value.
    private static func holdsAnotherPair(_ value: String) -> Bool {
        let chars = Array(value)
        for (i, c) in chars.enumerated() where c == "," || c == ";" {
            var j = i + 1
            while j < chars.count, chars[j].isASCII, chars[j].isLetter || chars[j].isNumber || chars[j] == "_" {
                j += 1
            }
            if j > i + 1, j < chars.count, chars[j] == "=" { return true }
        }
        return false
    }

    private static func ordinal(_ n: Int) -> String {
        let suffix =
            switch (n % 10, n % 100) {
            case (1, let h) where h != 11: "st"
            case (2, let h) where h != 12: "nd"
            case (3, let h) where h != 13: "rd"
            default: "th"
            }
        return "\(n)\(suffix)"
    }

    // MARK: - Suggestions

    /// Names other drivers and habits use for libpq keywords.
    private static let aliases: [String: String] = [
        "passwd": "password", "pass": "password", "pwd": "password", "pw": "password", "pword": "password",
        "passphrase": "password", "username": "user", "usr": "user", "login": "user", "uid": "user",
        "database": "dbname", "db": "dbname", "server": "host", "hostname": "host", "ssl": "sslmode",
    ]

    /// The libpq keyword `word` most likely misspells, if it is close to one: an alias, the
    /// same word in another case, or within two edits of a keyword of four letters or more.
    /// Only such words are ever quoted in a message (a word close to no keyword could be a
    /// piece of a password).
    static func suggestion(for word: String) -> String? {
        let lower = word.lowercased()
        if let alias = aliases[lower] { return alias }
        if knownKeywords.contains(lower) { return lower }
        guard lower.count >= 4, lower.count <= 40, lower.allSatisfy({ $0.isASCII && ($0.isLetter || $0 == "_") }) else {
            return nil
        }
        let candidates = knownKeywords.map { ($0, editDistance(lower, $0)) }.filter { $0.1 <= 2 }
        return candidates.min { ($0.1, $0.0) < ($1.1, $1.0) }?.0
    }

    private static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }

    // MARK: - libpq's parser

    /// libpq's reading of `dsn`, or why it refuses it — in words of our own: its messages
    /// quote the text they choke on.
    static func parse(_ dsn: String) -> Result<[String: String], ConnectionStringError> {
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(dsn, &errorMessage) else {
            let message = errorMessage.map { String(cString: $0) } ?? ""
            if let errorMessage { PQfreemem(errorMessage) }
            return .failure(ConnectionStringError(reason: libpqParseFailure(message)))
        }
        defer { PQconninfoFree(options) }
        var values = [String: String]()
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val { values[String(cString: keyword)] = String(cString: value) }
            option += 1
        }
        return .success(values)
    }

    /// A reason for libpq's parse error `message` that says what it says without its quotes.
    static func libpqParseFailure(_ message: String) -> String {
        let known: [(prefix: String, reason: String)] = [
            (
                "invalid percent-encoded token",
                "an invalid percent escape ('%' must be followed by two hexadecimal digits; write '%' itself as %25)"
            ),
            ("forbidden value %00", "a %00 escape (a NUL character)"),
            ("end of string reached when looking for matching \"]\"", "an IPv6 host address has no closing ']'"),
            ("IPv6 host address may not be empty", "an empty IPv6 host address '[]'"),
            ("unexpected character", "an unexpected character after the host (expected ':' and a port, or '/')"),
            ("extra key/value separator", "a URL parameter holds more than one '=' (write '=' in a value as %3D)"),
            ("missing key/value separator", "a URL parameter has no '=' (write key=value)"),
            ("invalid URI query parameter", "an unknown URL parameter"),
            ("unterminated quoted string", "a quoted value has no closing quote"),
            ("missing \"=\" after", "an item is not a key=value pair"),
            ("invalid connection option", "an unknown keyword"),
        ]
        return known.first { message.hasPrefix($0.prefix) }?.reason ?? "libpq cannot parse it"
    }
}
