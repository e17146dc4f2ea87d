import CLibPQ

/// Helpers for connection strings in both forms libpq accepts: URLs
/// (`postgres://user:secret@host:5432/db?sslmode=require`) and `key=value` conninfo
/// (`host=db user=app password=secret`).
///
/// The rule for printing one: a well-formed string (see ``validate(_:)``) is printed masked,
/// anything else is never printed at all — not even masked, since the password of a malformed
/// string is not where a parser looks for it. The masking and scrubbing below read the raw
/// text rather than relying on libpq's parser, so that even the error paths of strings libpq
/// rejects never repeat a password.
public enum ConnectionString {
    /// What ``masked(_:)`` prints for a string that is not well formed.
    public static let unprintable = "(a connection string that is not well formed, not shown)"

    /// The string with any password replaced by `****`, safe to print or log; for a string
    /// ``validate(_:)`` refuses, ``unprintable`` instead (call ``validate(_:)`` to say why).
    public static func masked(_ dsn: String) -> String {
        isWellFormed(dsn) ? maskedText(dsn) : unprintable
    }

    /// The raw masking: every password replaced by `****`, on any text, well formed or not.
    ///
    /// Works on text libpq would reject too, so error paths can mask what a message repeats:
    /// invalid `%` escapes, `@`, `/` or `?` inside a URL password, unterminated IPv6 hosts,
    /// unterminated quotes and unquoted spaces in `key=value` passwords. When in doubt it masks
    /// more than the password rather than less. Only for scrubbing: printing goes through
    /// ``masked(_:)``.
    static func maskedText(_ dsn: String) -> String {
        isURL(dsn) ? maskURL(dsn) : maskKeywordValue(dsn)
    }

    /// The same connection string pointed at another database.
    ///
    /// URLs get their path replaced; `key=value` strings get a `dbname` appended, which libpq
    /// lets override an earlier one.
    public static func withDatabase(_ dsn: String, _ database: String) -> String {
        guard isURL(dsn), let schemeEnd = dsn.firstRange(of: "://") else {
            let quoted = database.replacing("\\", with: "\\\\").replacing("'", with: "\\'")
            return dsn + (dsn.isEmpty ? "" : " ") + "dbname='\(quoted)'"
        }
        let afterScheme = dsn[schemeEnd.upperBound...]
        let authorityEnd = afterScheme.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? afterScheme.endIndex
        let rest = afterScheme[authorityEnd...]
        let query = rest.firstIndex(of: "?").map { String(rest[$0...]) } ?? ""
        let encoded = database.addingPercentEncodingForUserInfo() ?? database
        return String(dsn[..<authorityEnd]) + "/" + encoded + query
    }

    /// The password the string carries, if any.
    ///
    /// libpq's reading when it can parse the string; otherwise the password read from the raw
    /// text (percent-decoded when that is possible), so malformed strings still give one.
    public static func password(in dsn: String) -> String? {
        if let parsed = parsedOptions(dsn) { return parsed["password"] }
        guard let raw = rawPasswords(in: dsn).first else { return nil }
        return isURL(dsn) ? percentDecoded(raw) ?? raw : raw
    }

    /// Every text a password in `dsn` may show up as in libpq's messages, for ``scrub(_:secrets:)``.
    ///
    /// libpq's own reading of the password and `sslpassword` when the string parses, plus what
    /// the raw text holds even when it does not: the password as written, its unescaped or
    /// percent-decoded form, and the pieces libpq would misread as a host, port or keyword
    /// (a URL password with a raw `@` or `/`, a `key=value` password with an unquoted space).
    static func secrets(in dsn: String) -> [String] {
        var secrets = [String]()
        func add(_ secret: String) {
            if !secret.isEmpty, !secrets.contains(secret) { secrets.append(secret) }
        }
        if let parsed = parsedOptions(dsn) {
            for keyword in secretKeywords { parsed[keyword].map(add) }
        }
        for raw in rawPasswords(in: dsn) + rawPasswordPieces(in: dsn) {
            add(raw)
            percentDecoded(raw).map(add)
        }
        return secrets
    }

    /// Removes every secret from `text`: each one as it stands (when at least 3 characters
    /// long, so trivial ones do not mangle the message), quoted the way libpq quotes values
    /// (`"pw"`, or `"pw@` where libpq misread the rest of a URL as a host), and percent-encoded.
    static func scrub(_ text: String, secrets: [String]) -> String {
        var replacements = [(needle: String, replacement: String)]()
        func add(_ needle: String, _ replacement: String) {
            if !replacements.contains(where: { $0.needle == needle }) { replacements.append((needle, replacement)) }
        }
        for secret in secrets where !secret.isEmpty {
            var forms = [secret]
            if let encoded = secret.addingPercentEncodingForUserInfo(), encoded != secret { forms.append(encoded) }
            for form in forms {
                add("\"" + form + "\"", "\"****\"")
                add("\"" + form + "@", "\"****@")
                if form.count >= 3 { add(form, "****") }
            }
        }
        // Longest first, so a password is replaced whole before any piece of it is.
        replacements.sort { $0.needle.count > $1.needle.count }
        var result = text
        for (needle, replacement) in replacements { result = result.replacing(needle, with: replacement) }
        return result
    }

    /// `text` with every form of the passwords `dsn` may hold removed (as ``scrub(_:secrets:)``
    /// does for connection errors), for messages built elsewhere that might repeat a piece of
    /// `dsn` — e.g. a command-line parser quoting a stray argument.
    public static func removingPasswords(of dsn: String, from text: String) -> String {
        scrub(text, dsn: dsn, secrets: secrets(in: dsn))
    }

    /// ``scrub(_:secrets:)``, after replacing any copy of the whole `dsn` in `text` by its
    /// masked form (a last resort for messages that repeat the input).
    static func scrub(_ text: String, dsn: String, secrets: [String]) -> String {
        var result = text
        if !dsn.isEmpty { result = result.replacing(dsn, with: maskedText(dsn)) }
        return scrub(result, secrets: secrets)
    }

    // MARK: - Reading the raw text

    /// The conninfo keywords whose values are secret.
    private static let secretKeywords = ["password", "sslpassword"]

    private static func isSecretKeyword(_ keyword: some StringProtocol) -> Bool {
        secretKeywords.contains(keyword.lowercased())
    }

    /// Every keyword libpq knows (`host`, `port`, …).
    static let knownKeywords: Set<String> = {
        guard let options = PQconndefaults() else { return [] }
        defer { PQconninfoFree(options) }
        var keywords = Set<String>()
        var option = options
        while let keyword = option.pointee.keyword {
            keywords.insert(String(cString: keyword))
            option += 1
        }
        return keywords
    }()

    static func isURL(_ dsn: String) -> Bool {
        dsn.hasPrefix("postgres://") || dsn.hasPrefix("postgresql://")
    }

    /// libpq's reading of the string, or nil when it cannot parse it.
    private static func parsedOptions(_ dsn: String) -> [String: String]? {
        try? parse(dsn).get()
    }

    /// Passwords (and `sslpassword`s) as written in the text: the URL's userinfo password and
    /// `password=` query values, or the `key=value` values (without their quotes, and also with
    /// their backslash escapes undone).
    private static func rawPasswords(in dsn: String) -> [String] {
        var passwords = [String]()
        if isURL(dsn) {
            guard let layout = URLLayout(dsn) else { return [] }
            if let password = layout.password { passwords.append(String(dsn[password])) }
            for parameter in layout.queryParameters(dsn) where parameter.isSecret {
                passwords.append(parameter.value)
                if !parameter.continuation.isEmpty {
                    passwords.append(([parameter.value] + parameter.continuation).joined(separator: "&"))
                }
            }
        } else {
            for token in KeywordValueToken.tokens(dsn) {
                guard case .pair(let keyword, _, let written, let value, let continuation) = token,
                    isSecretKeyword(keyword)
                else { continue }
                passwords.append(value)
                if written != value { passwords.append(written) }
                if !continuation.isEmpty { passwords.append(written + continuation.map(\.text).joined()) }
            }
        }
        return passwords
    }

    /// The parts of a password that libpq misreads as something else and may then print on
    /// their own: the pieces of a URL password around a raw `@` or `/` (read as host, port or
    /// database), the `&`-separated words after a `password=` query value, and the words after
    /// an unquoted `key=value` password that contains a space.
    private static func rawPasswordPieces(in dsn: String) -> [String] {
        var pieces = [String]()
        if isURL(dsn) {
            guard let layout = URLLayout(dsn) else { return [] }
            if let password = layout.password {
                pieces += dsn[password].split(whereSeparator: { $0 == "@" || $0 == "/" }).map(String.init)
            }
            for parameter in layout.queryParameters(dsn) where parameter.isSecret {
                pieces += parameter.continuation
            }
        } else {
            for token in KeywordValueToken.tokens(dsn) {
                guard case .pair(let keyword, _, _, _, let continuation) = token, isSecretKeyword(keyword) else {
                    continue
                }
                pieces += continuation.map(\.word)
            }
        }
        return pieces
    }

    /// `text` with its `%XX` escapes decoded, or nil when an escape is invalid, encodes NUL
    /// (libpq rejects both) or the result is not UTF-8.
    static func percentDecoded(_ text: some StringProtocol) -> String? {
        func hex(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        let input = Array(text.utf8)
        var bytes = [UInt8]()
        var i = 0
        while i < input.count {
            guard input[i] == UInt8(ascii: "%") else {
                bytes.append(input[i])
                i += 1
                continue
            }
            guard i + 2 < input.count, let high = hex(input[i + 1]), let low = hex(input[i + 2]) else { return nil }
            let byte = high << 4 | low
            guard byte != 0 else { return nil }
            bytes.append(byte)
            i += 3
        }
        return String(validating: bytes, as: UTF8.self)
    }

    // MARK: - URLs

    /// Where a URL's parts are, read so that a password holding a raw `@`, `/`, `?` or `%`
    /// still lands in the userinfo.
    ///
    /// The userinfo ends at the last `@` before the first `/` that follows the first `@`; libpq
    /// itself stops at the first `@` or `/`, which for such passwords leaves part of them in the
    /// host, port or database (``rawPasswordPieces(in:)`` covers those). A database or query
    /// value with an `@` can make this mask more than the password, never less.
    private struct URLLayout {
        /// Just after `://`.
        var authorityStart: String.Index
        /// The `@` that ends the userinfo, if there is one.
        var at: String.Index?
        /// After the first `:` of the userinfo, up to `at`.
        var password: Range<String.Index>?
        /// Where the host list starts: after `at`, or after `://`.
        var hostStart: String.Index

        init?(_ url: String) {
            guard let schemeEnd = url.firstRange(of: "://") else { return nil }
            authorityStart = schemeEnd.upperBound
            let rest = url[authorityStart...]
            if let firstAt = rest.firstIndex(of: "@") {
                let limit = rest[firstAt...].firstIndex(of: "/") ?? rest.endIndex
                at = rest[..<limit].lastIndex(of: "@")
            }
            if let at {
                hostStart = url.index(after: at)
                if let colon = url[authorityStart..<at].firstIndex(of: ":") {
                    password = url.index(after: colon)..<at
                }
            } else {
                hostStart = authorityStart
            }
        }

        /// The `?` that starts the query, if there is one.
        func queryStart(_ url: String) -> String.Index? {
            url[hostStart...].firstIndex(of: "?")
        }

        struct Parameter {
            var text: Substring
            var value: String
            var isSecret: Bool
            /// For a secret: the `&`-separated words without `=` right after it, which are most
            /// likely the rest of a password holding a raw `&`.
            var continuation: [String] = []
            /// Whether this is the continuation of the secret before it.
            var isContinuation = false
        }

        func queryParameters(_ url: String) -> [Parameter] {
            guard let q = queryStart(url) else { return [] }
            var parameters = [Parameter]()
            var secretIndex: Int?
            for text in url[url.index(after: q)...].split(separator: "&", omittingEmptySubsequences: false) {
                let equals = text.firstIndex(of: "=")
                if let secret = secretIndex, equals == nil, !text.isEmpty, !knownKeywords.contains(String(text)) {
                    parameters[secret].continuation.append(String(text))
                    parameters.append(Parameter(text: text, value: "", isSecret: false, isContinuation: true))
                    continue
                }
                let key = equals.map { text[..<$0] } ?? text
                let isSecret = equals != nil && isSecretKeyword(percentDecoded(key) ?? String(key))
                let value = equals.map { String(text[text.index(after: $0)...]) } ?? ""
                parameters.append(Parameter(text: text, value: value, isSecret: isSecret))
                secretIndex = isSecret ? parameters.count - 1 : nil
            }
            return parameters
        }
    }

    private static func maskURL(_ url: String) -> String {
        guard let layout = URLLayout(url) else { return url }
        var out = String(url[..<layout.authorityStart])
        if let at = layout.at {
            let userInfo = url[layout.authorityStart..<at]
            if let colon = userInfo.firstIndex(of: ":") {
                out += userInfo[..<colon] + ":****"
            } else {
                out += userInfo
            }
            out += "@"
        }
        guard let q = layout.queryStart(url) else { return out + url[layout.hostStart...] }
        out += url[layout.hostStart...q]
        let parameters = layout.queryParameters(url).filter { !$0.isContinuation }.map { parameter -> String in
            guard parameter.isSecret, let equals = parameter.text.firstIndex(of: "=") else {
                return String(parameter.text)
            }
            return String(parameter.text[...equals]) + "****"
        }
        return out + parameters.joined(separator: "&")
    }

    // MARK: - key=value conninfo

    /// One piece of a `key=value` string, split the way libpq splits it.
    private enum KeywordValueToken {
        case whitespace(String)
        /// `keyword=value`: its text as written, the value as written (without surrounding
        /// quotes) and the value libpq reads (escapes undone).
        ///
        /// For secrets, `continuation` holds the words without `=` that follow and are not libpq
        /// keywords (most likely the rest of a password with an unquoted space), each with the
        /// whitespace before it; they are not tokens of their own.
        case pair(keyword: String, text: String, written: String, value: String, continuation: [Continuation])
        /// A word without `=` (libpq rejects it).
        case word(String)

        struct Continuation {
            var text: String
            var word: String
        }

        static func tokens(_ text: String) -> [KeywordValueToken] {
            var tokens = [KeywordValueToken]()
            let chars = Array(text)
            var i = 0
            func skipWhitespace() {
                while i < chars.count, chars[i].isWhitespace { i += 1 }
            }
            /// Reads a value up to `end` (whitespace or the closing quote), undoing `\` escapes.
            func readValue(until end: (Character) -> Bool) -> (written: String, value: String) {
                var written = ""
                var value = ""
                while i < chars.count, !end(chars[i]) {
                    if chars[i] == "\\", i + 1 < chars.count {
                        written.append(chars[i])
                        i += 1
                    }
                    written.append(chars[i])
                    value.append(chars[i])
                    i += 1
                }
                return (written, value)
            }
            while i < chars.count {
                let start = i
                if chars[i].isWhitespace {
                    skipWhitespace()
                    tokens.append(.whitespace(String(chars[start..<i])))
                    continue
                }
                while i < chars.count, chars[i] != "=", !chars[i].isWhitespace { i += 1 }
                let keyword = String(chars[start..<i])
                let keywordEnd = i
                skipWhitespace()
                guard i < chars.count, chars[i] == "=" else {
                    i = keywordEnd
                    appendWord(keyword, to: &tokens)
                    continue
                }
                i += 1
                skipWhitespace()
                let read: (written: String, value: String)
                if i < chars.count, chars[i] == "'" {
                    i += 1
                    read = readValue(until: { $0 == "'" })
                    if i < chars.count { i += 1 }  // the closing quote, missing when unterminated
                } else {
                    read = readValue(until: { $0.isWhitespace })
                }
                tokens.append(
                    .pair(
                        keyword: keyword, text: String(chars[start..<i]), written: read.written, value: read.value,
                        continuation: []))
            }
            return tokens
        }

        /// Appends a word without `=`, to the password before it when it looks like its rest.
        private static func appendWord(_ word: String, to tokens: inout [KeywordValueToken]) {
            var space = ""
            var pairIndex = tokens.count - 1
            if case .whitespace(let whitespace)? = tokens.last {
                space = whitespace
                pairIndex -= 1
            }
            guard pairIndex >= 0, !knownKeywords.contains(word),
                case .pair(let keyword, let text, let written, let value, var continuation) = tokens[pairIndex],
                isSecretKeyword(keyword)
            else {
                tokens.append(.word(word))
                return
            }
            continuation.append(Continuation(text: space + word, word: word))
            tokens.removeSubrange(pairIndex...)
            tokens.append(
                .pair(keyword: keyword, text: text, written: written, value: value, continuation: continuation))
        }
    }

    private static func maskKeywordValue(_ text: String) -> String {
        KeywordValueToken.tokens(text).map { token -> String in
            switch token {
            case .whitespace(let text), .word(let text): text
            case .pair(let keyword, let text, _, _, _): isSecretKeyword(keyword) ? keyword + "=****" : text
            }
        }.joined()
    }
}

extension String {
    func addingPercentEncodingForUserInfo() -> String? {
        var out = ""
        for byte in utf8 {
            let c = Character(Unicode.Scalar(byte))
            if byte < 128, c.isLetter || c.isNumber || "-._~".contains(c) {
                out.append(c)
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }
}

/// SQL identifier quoting that needs no connection: `"name"` with inner quotes doubled.
///
/// Correct for UTF-8 databases (the only encoding Ledgerlift connects with); prefer
/// ``Session/escapeIdentifier(_:)`` where a session is at hand.
public func quoteIdentifier(_ identifier: String) -> String {
    "\"" + identifier.replacing("\"", with: "\"\"") + "\""
}

extension ConnectionString {
    /// A connection string that names its password, split into the same string without it and
    /// the password file lines (libpq's `PGPASSFILE` format) that give it back.
    public struct PasswordFileEntry: Sendable, Hashable {
        /// The string without its password, as `key='value'` pairs (keys sorted): safe on a
        /// command line, which every user of the machine can read.
        public var withoutPassword: String
        /// `host:port:database:user:password`, one per host the string names (a socket
        /// directory also as `localhost`, which libpq looks up for its default one), with what
        /// the string leaves out resolved as libpq resolves it (`PGHOST`, `PGPORT`, `PGUSER`,
        /// `PGDATABASE`, then `localhost`, 5432, the OS user, the user): exact lines, which
        /// never answer for another connection. `*` only for what a `service` may set.
        public var lines: [String]
    }

    /// `dsn` split into a string without its password and password file lines; `nil` for a
    /// string libpq cannot parse, that carries no password (nothing to move), or whose password
    /// holds a line break (a password file cannot). An `sslpassword` stays in the string.
    ///
    /// - Parameters:
    ///   - environment: the environment the connecting process will have (libpq's defaults).
    ///   - osUser: the user libpq defaults to (the effective user's name).
    public static func passwordFileEntry(_ dsn: String, environment: [String: String], osUser: String)
        -> PasswordFileEntry?
    {
        guard let options = parsedOptions(dsn), let password = options["password"], !password.contains(where: \.isNewline)
        else { return nil }
        func escaped(_ value: String) -> String { value.replacing("\\", with: "\\\\").replacing(":", with: "\\:") }
        func quoted(_ value: String) -> String {
            "'" + value.replacing("\\", with: "\\\\").replacing("'", with: "\\'") + "'"
        }
        // A service file may set anything the string does not: matched by `*`.
        let service = options["service"] != nil || environment["PGSERVICE"] != nil
        func given(_ keyword: String, _ variable: String) -> String? {
            if let value = options[keyword], !value.isEmpty { return value }
            if service { return nil }
            if let value = environment[variable], !value.isEmpty { return value }
            return nil
        }
        let user = given("user", "PGUSER") ?? (service ? nil : osUser)
        let database = given("dbname", "PGDATABASE") ?? (service ? nil : user)
        let hosts = given("host", "PGHOST").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let addresses = given("hostaddr", "PGHOSTADDR").map {
            $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        }
        let ports = given("port", "PGPORT").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let count = max(hosts?.count ?? 0, addresses?.count ?? 0, 1)
        var lines = [String]()
        for index in 0..<count {
            // libpq looks up the host name, else the address, else `localhost`.
            var names: [String]
            if let host = hosts?[safe: index], !host.isEmpty {
                names = host.hasPrefix("/") || host.hasPrefix("@") ? [host, "localhost"] : [host]
            } else if let address = addresses?[safe: index], !address.isEmpty {
                names = [address]
            } else {
                names = [service ? "*" : "localhost"]
            }
            let port = ports.map { $0.count == 1 ? $0[0] : $0[safe: index] ?? "" }.flatMap { $0.isEmpty ? nil : $0 }
                ?? (service ? "*" : "5432")
            for name in names {
                let line = [
                    name == "*" ? "*" : escaped(name), port == "*" ? "*" : escaped(port),
                    database.map(escaped) ?? "*", user.map(escaped) ?? "*", escaped(password),
                ].joined(separator: ":")
                if !lines.contains(line) { lines.append(line) }
            }
        }
        let kept = options.filter { $0.key != "password" }.sorted { $0.key < $1.key }
        return PasswordFileEntry(
            withoutPassword: kept.map { "\($0.key)=\(quoted($0.value))" }.joined(separator: " "), lines: lines)
    }
}

extension Array {
    fileprivate subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
