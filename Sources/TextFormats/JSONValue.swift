/// A small JSON tree with exact integers and ordered object keys, so payloads are written and
/// read without floating point and with stable bytes.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case integer(Int64)
    case string(String)
    case array([JSONValue])
    /// Keys in the order written.
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case (.bool(let x), .bool(let y)): x == y
        case (.integer(let x), .integer(let y)): x == y
        case (.string(let x), .string(let y)): x == y
        case (.array(let x), .array(let y)): x == y
        case (.object(let x), .object(let y)): x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(rendered)
    }

    public subscript(_ key: String) -> JSONValue? {
        guard case .object(let pairs) = self else { return nil }
        return pairs.first { $0.0 == key }?.1
    }

    /// Compact JSON text.
    public var rendered: String {
        var out = ""
        render(into: &out)
        return out
    }

    func render(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .integer(let i): out += String(i)
        case .string(let s): Self.quote(s, into: &out)
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.render(into: &out)
            }
            out += "]"
        case .object(let pairs):
            out += "{"
            for (i, pair) in pairs.enumerated() {
                if i > 0 { out += "," }
                Self.quote(pair.0, into: &out)
                out += ":"
                pair.1.render(into: &out)
            }
            out += "}"
        }
    }

    /// `s` as a JSON string literal, escaped as PostgreSQL's `escape_json` escapes it (`"`,
    /// `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other controls as `\u00XX`, everything else as is): the
    /// diff relies on it to print attributes exactly as `jsonb` does.
    public static func quoted(_ s: String) -> String {
        var out = ""
        quote(s, into: &out)
        return out
    }

    static func quote(_ s: String, into out: inout String) {
        out += "\""
        // Most text needs no escape: append it whole (a scalar at a time was a third of the
        // backfill's client CPU, measured with perf). The bytes are the same either way.
        if s.utf8.allSatisfy({ $0 >= 0x20 && $0 != 0x22 && $0 != 0x5C }) {
            out += s
            out += "\""
            return
        }
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\u{8}": out += "\\b"
            case "\u{C}": out += "\\f"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }

    /// Parses JSON text. Numbers must be integers (payloads never hold fractions: amounts are
    /// minor units and decimals travel as strings); anything else is refused.
    ///
    /// As strict as PostgreSQL's `json` input, so text that `jsonb` would refuse is refused
    /// here too: no raw control characters in strings, only the JSON escapes, surrogate
    /// escapes only as a high-low pair, no leading zeros. Nesting deeper than
    /// ``maximumDepth`` is refused rather than recursed into, so no input can overflow the
    /// stack.
    ///
    /// - Throws: ``JSONParseError`` with the byte offset and the reason; never traps.
    public static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        var parser = Parser(bytes: Array(text.utf8))
        parser.skipSpace()
        let value = try parser.value(depth: 1)
        parser.skipSpace()
        guard parser.index == parser.bytes.count else { throw JSONParseError(offset: parser.index, reason: "trailing text") }
        return value
    }

    /// The deepest nesting of arrays and objects ``parse(_:)`` reads. Payloads and metadata
    /// are two or three levels deep; the bound keeps a hostile or corrupted document (100,000
    /// `[`) from exhausting the stack of the thread that parses it.
    public static let maximumDepth = 256

    struct Parser {
        let bytes: [UInt8]
        var index = 0

        mutating func skipSpace() {
            while index < bytes.count, [32, 9, 10, 13].contains(bytes[index]) { index += 1 }
        }

        func fail(_ reason: String) -> JSONParseError { JSONParseError(offset: index, reason: reason) }

        mutating func expect(_ literal: String) throws(JSONParseError) {
            for b in literal.utf8 {
                guard index < bytes.count, bytes[index] == b else { throw fail("expected \(literal)") }
                index += 1
            }
        }

        /// One value; `depth` counts the arrays and objects it would be inside of, itself included.
        mutating func value(depth: Int) throws(JSONParseError) -> JSONValue {
            guard index < bytes.count else { throw fail("unexpected end") }
            switch bytes[index] {
            case UInt8(ascii: "n"): try expect("null"); return .null
            case UInt8(ascii: "t"): try expect("true"); return .bool(true)
            case UInt8(ascii: "f"): try expect("false"); return .bool(false)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "["):
                guard depth <= JSONValue.maximumDepth else {
                    throw fail("nested deeper than \(JSONValue.maximumDepth) levels")
                }
                index += 1
                var items = [JSONValue]()
                skipSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return .array(items) }
                while true {
                    skipSpace()
                    items.append(try value(depth: depth + 1))
                    skipSpace()
                    guard index < bytes.count else { throw fail("unterminated array") }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(items) }
                    throw fail("expected , or ]")
                }
            case UInt8(ascii: "{"):
                guard depth <= JSONValue.maximumDepth else {
                    throw fail("nested deeper than \(JSONValue.maximumDepth) levels")
                }
                index += 1
                var pairs = [(String, JSONValue)]()
                skipSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return .object(pairs) }
                while true {
                    skipSpace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                    let key = try string()
                    skipSpace()
                    try expect(":")
                    skipSpace()
                    pairs.append((key, try value(depth: depth + 1)))
                    skipSpace()
                    guard index < bytes.count else { throw fail("unterminated object") }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(pairs) }
                    throw fail("expected , or }")
                }
            default:
                let start = index
                if bytes[index] == UInt8(ascii: "-") { index += 1 }
                let digits = index
                while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 { index += 1 }
                guard index > digits else { throw fail("expected a value") }
                if index - digits > 1, bytes[digits] == UInt8(ascii: "0") {
                    throw fail("a number with a leading zero")
                }
                if index < bytes.count, [UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(bytes[index]) {
                    throw fail("non-integer numbers are not allowed in payloads")
                }
                guard let n = Int64(String(decoding: bytes[start..<index], as: UTF8.self)) else {
                    throw fail("not an integer in range")
                }
                return .integer(n)
            }
        }

        mutating func string() throws(JSONParseError) -> String {
            index += 1
            var out = [UInt8]()
            while index < bytes.count {
                let b = bytes[index]
                if b < 0x20 { throw fail("a control character must be escaped in a string") }
                index += 1
                if b == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
                guard b == UInt8(ascii: "\\") else { out.append(b); continue }
                guard index < bytes.count else { break }
                let e = bytes[index]
                index += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "n"): out.append(10)
                case UInt8(ascii: "r"): out.append(13)
                case UInt8(ascii: "t"): out.append(9)
                case UInt8(ascii: "b"): out.append(8)
                case UInt8(ascii: "f"): out.append(12)
                case UInt8(ascii: "u"):
                    let escape = index - 2
                    var code = try hex4()
                    if (0xDC00...0xDFFF).contains(code) {
                        index = escape
                        throw fail("a low surrogate escape without a high surrogate before it")
                    }
                    if (0xD800...0xDBFF).contains(code) {
                        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
                        else {
                            index = escape
                            throw fail("a high surrogate escape without a low surrogate after it")
                        }
                        index += 2
                        let low = try hex4()
                        guard (0xDC00...0xDFFF).contains(low) else {
                            index = escape
                            throw fail("a high surrogate escape without a low surrogate after it")
                        }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw fail("bad \\u escape") }
                    out += Array(String(Character(scalar)).utf8)
                default:
                    index -= 2
                    throw fail("an invalid escape: JSON has only \\\" \\\\ \\/ \\b \\f \\n \\r \\t and \\uXXXX")
                }
            }
            throw fail("unterminated string")
        }

        /// Four hexadecimal digits, nothing else (`UInt32(_:radix:)` alone would take a sign).
        mutating func hex4() throws(JSONParseError) -> UInt32 {
            guard index + 4 <= bytes.count else { throw fail("bad \\u escape") }
            var value: UInt32 = 0
            for b in bytes[index..<index + 4] {
                let digit: UInt8
                switch b {
                case 48...57: digit = b - 48
                case 97...102: digit = b - 87
                case 65...70: digit = b - 55
                default: throw fail("bad \\u escape")
                }
                value = value << 4 | UInt32(digit)
            }
            index += 4
            return value
        }
    }
}

/// JSON that could not be read.
public struct JSONParseError: Error, Sendable, Hashable, CustomStringConvertible {
    public let offset: Int
    public let reason: String
    public var description: String { "invalid JSON at byte \(offset): \(reason)" }
}
