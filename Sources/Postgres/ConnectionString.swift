import CLibPQ

/// Helpers for connection strings in both forms libpq accepts: URLs
/// (`postgres://user:secret@host:5432/db?sslmode=require`) and `key=value` conninfo
/// (`host=db user=app password=secret`).
public enum ConnectionString {
    /// The string with any password replaced by `****`, safe to print or log.
    ///
    /// Works on text libpq would reject too, so error paths can always mask what they print.
    public static func masked(_ dsn: String) -> String {
        if dsn.hasPrefix("postgres://") || dsn.hasPrefix("postgresql://") {
            return maskURL(dsn)
        }
        return maskKeywordValue(dsn)
    }

    /// The same connection string pointed at another database.
    ///
    /// URLs get their path replaced; `key=value` strings get a `dbname` appended, which libpq
    /// lets override an earlier one.
    public static func withDatabase(_ dsn: String, _ database: String) -> String {
        guard dsn.hasPrefix("postgres://") || dsn.hasPrefix("postgresql://"),
            let schemeEnd = dsn.firstRange(of: "://")
        else {
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

    /// The password the string carries, if any (used to scrub it from libpq's messages).
    public static func password(in dsn: String) -> String? {
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(dsn, &errorMessage) else {
            if let errorMessage { PQfreemem(errorMessage) }
            return nil
        }
        defer { PQconninfoFree(options) }
        var option = options
        while let keyword = option.pointee.keyword {
            if String(cString: keyword) == "password", let value = option.pointee.val {
                return String(cString: value)
            }
            option += 1
        }
        return nil
    }

    /// Removes `secret` (and its URL-encoded form) from `text`.
    static func scrub(_ text: String, secrets: [String]) -> String {
        var result = text
        for secret in secrets where secret.count >= 3 {
            result = result.replacing(secret, with: "****")
            if let encoded = secret.addingPercentEncodingForUserInfo(), encoded != secret {
                result = result.replacing(encoded, with: "****")
            }
        }
        return result
    }

    private static func maskURL(_ url: String) -> String {
        var text = Substring(url)
        guard let schemeEnd = text.firstRange(of: "://") else { return url }
        var out = String(text[..<schemeEnd.upperBound])
        text = text[schemeEnd.upperBound...]
        let authorityEnd = text.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? text.endIndex
        let authority = text[..<authorityEnd]
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            if let colon = userInfo.firstIndex(of: ":") {
                out += userInfo[..<colon] + ":****"
            } else {
                out += userInfo
            }
            out += authority[at...]
        } else {
            out += authority
        }
        var rest = String(text[authorityEnd...])
        if let q = rest.firstIndex(of: "?") {
            let query = rest[rest.index(after: q)...].split(separator: "&", omittingEmptySubsequences: false).map {
                pair -> String in
                pair.lowercased().hasPrefix("password=") ? "password=****" : String(pair)
            }
            rest = String(rest[...q]) + query.joined(separator: "&")
        }
        return out + rest
    }

    private static func maskKeywordValue(_ text: String) -> String {
        var out = ""
        let chars = Array(text)
        var i = 0
        while i < chars.count {
            // Find the next keyword=value pair, copying it with the value masked when needed.
            if chars[i].isWhitespace {
                out.append(chars[i])
                i += 1
                continue
            }
            var keyword = ""
            while i < chars.count, chars[i] != "=", !chars[i].isWhitespace {
                keyword.append(chars[i])
                i += 1
            }
            while i < chars.count, chars[i].isWhitespace, chars[i] != "=" { i += 1 }
            guard i < chars.count, chars[i] == "=" else {
                out += keyword
                continue
            }
            i += 1
            while i < chars.count, chars[i].isWhitespace { i += 1 }
            var value = ""
            if i < chars.count, chars[i] == "'" {
                value.append("'")
                i += 1
                while i < chars.count, chars[i] != "'" {
                    if chars[i] == "\\", i + 1 < chars.count {
                        value.append(chars[i])
                        i += 1
                    }
                    value.append(chars[i])
                    i += 1
                }
                if i < chars.count {
                    value.append("'")
                    i += 1
                }
            } else {
                while i < chars.count, !chars[i].isWhitespace {
                    value.append(chars[i])
                    i += 1
                }
            }
            out += keyword + "=" + (keyword == "password" ? "****" : value)
        }
        return out
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
