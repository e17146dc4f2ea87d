import Foundation

/// A Swift value that can be bound as a statement parameter.
///
/// Parameters travel in PostgreSQL's text format, always bound (`$1…$n`), never interpolated
/// into the SQL text.
public protocol PostgresEncodable: Sendable {
    /// The parameter's type; ``PostgresType/unknown`` lets the server infer it from context.
    static var postgresType: PostgresType { get }
    /// The type this particular value binds as; defaults to ``postgresType``.
    var postgresParameterType: PostgresType { get }
    /// The value in PostgreSQL's text input format.
    var postgresText: String { get }
}

extension PostgresEncodable {
    public var postgresParameterType: PostgresType { Self.postgresType }
}

/// A Swift type a result value can be decoded into.
public protocol PostgresDecodable: Sendable {
    /// Decodes the text-format value of a column whose type is `type`.
    ///
    /// Return `nil` when the text or the type does not fit; the caller turns that into a
    /// ``PostgresDecodingError`` naming the column.
    static func decode(postgresText text: String, type: PostgresType) -> Self?
}

/// Both directions.
public typealias PostgresCodable = PostgresEncodable & PostgresDecodable

private let integerTypes: Set<UInt32> = [PostgresType.int2.oid, PostgresType.int4.oid, PostgresType.int8.oid, 26, 5069]

extension Int64: PostgresCodable {
    public static var postgresType: PostgresType { .int8 }
    public var postgresText: String { String(self) }
    public static func decode(postgresText text: String, type: PostgresType) -> Int64? {
        integerTypes.contains(type.oid) || type == .unknown ? Int64(text) : nil
    }
}

extension Int32: PostgresCodable {
    public static var postgresType: PostgresType { .int4 }
    public var postgresText: String { String(self) }
    public static func decode(postgresText text: String, type: PostgresType) -> Int32? {
        integerTypes.contains(type.oid) || type == .unknown ? Int32(text) : nil
    }
}

extension Int16: PostgresCodable {
    public static var postgresType: PostgresType { .int2 }
    public var postgresText: String { String(self) }
    public static func decode(postgresText text: String, type: PostgresType) -> Int16? {
        integerTypes.contains(type.oid) || type == .unknown ? Int16(text) : nil
    }
}

extension Int: PostgresCodable {
    public static var postgresType: PostgresType { .int8 }
    public var postgresText: String { String(self) }
    public static func decode(postgresText text: String, type: PostgresType) -> Int? {
        integerTypes.contains(type.oid) || type == .unknown ? Int(text) : nil
    }
}

extension Bool: PostgresCodable {
    public static var postgresType: PostgresType { .bool }
    public var postgresText: String { self ? "t" : "f" }
    public static func decode(postgresText text: String, type: PostgresType) -> Bool? {
        guard type == .bool || type == .unknown else { return nil }
        switch text {
        case "t": return true
        case "f": return false
        default: return nil
        }
    }
}

extension String: PostgresCodable {
    /// Unknown, so a `String` binds to text, varchar, char, enums and domains alike.
    public static var postgresType: PostgresType { .unknown }
    public var postgresText: String { self }
    /// Any column decodes as `String`: its text-format value, verbatim.
    public static func decode(postgresText text: String, type: PostgresType) -> String? { text }
}

extension PostgresNumeric: PostgresCodable {
    public static var postgresType: PostgresType { .numeric }
    public var postgresText: String { description }
    public static func decode(postgresText text: String, type: PostgresType) -> PostgresNumeric? {
        guard type == .numeric || integerTypes.contains(type.oid) || type == .unknown else { return nil }
        return PostgresNumeric(text)
    }
}

extension PostgresTimestamp: PostgresCodable {
    public static var postgresType: PostgresType { .timestamptz }
    /// ISO 8601 in UTC with six fraction digits, which PostgreSQL reads exactly.
    public var postgresText: String { iso8601 }
    /// Decodes `timestamptz` (the session runs in UTC) and `timestamp` (read as UTC).
    public static func decode(postgresText text: String, type: PostgresType) -> PostgresTimestamp? {
        guard type == .timestamptz || type == .timestamp || type == .unknown else { return nil }
        return PostgresTimestamp(text)
    }
}

extension PostgresDate: PostgresCodable {
    public static var postgresType: PostgresType { .date }
    public var postgresText: String { description }
    public static func decode(postgresText text: String, type: PostgresType) -> PostgresDate? {
        guard type == .date || type == .unknown else { return nil }
        return PostgresDate(text)
    }
}

extension UUID: PostgresCodable {
    public static var postgresType: PostgresType { .uuid }
    public var postgresText: String { uuidString.lowercased() }
    public static func decode(postgresText text: String, type: PostgresType) -> UUID? {
        guard type == .uuid || type.isCharacterString else { return nil }
        return UUID(uuidString: text)
    }
}

/// A `json` or `jsonb` document, kept as its text so nothing is reordered or reformatted on
/// the way through.
public struct PostgresJSON: PostgresCodable, Hashable {
    /// The JSON text.
    public var text: String
    /// Whether to bind it as `jsonb` (the default) or `json`.
    public var isBinary: Bool

    public init(_ text: String, binary: Bool = true) {
        self.text = text
        self.isBinary = binary
    }

    /// Encodes a value with sorted keys, so equal values give equal text.
    public init<T: Encodable>(encoding value: T, binary: Bool = true) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        self.init(String(decoding: try encoder.encode(value), as: UTF8.self), binary: binary)
    }

    /// Decodes the document into `type`.
    public func decode<T: Decodable>(as type: T.Type = T.self) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(text.utf8))
    }

    public static var postgresType: PostgresType { .jsonb }
    /// `json` keeps the text verbatim; `jsonb` normalizes it. Bind as what the value says.
    public var postgresParameterType: PostgresType { isBinary ? .jsonb : .json }
    public var postgresText: String { text }
    public static func decode(postgresText text: String, type: PostgresType) -> PostgresJSON? {
        guard type == .json || type == .jsonb || type == .unknown else { return nil }
        return PostgresJSON(text, binary: type == .jsonb)
    }
}

extension Array: PostgresEncodable where Element == UInt8 {
    /// Binds as `bytea`, in hex form.
    public static var postgresType: PostgresType { .bytea }
    public var postgresText: String {
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(2 + count * 2)
        out.append(UInt8(ascii: "\\"))
        out.append(UInt8(ascii: "x"))
        for byte in self {
            out.append(hex[Int(byte >> 4)])
            out.append(hex[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension Array: PostgresDecodable where Element == UInt8 {
    /// Decodes `bytea` in hex output form (the server default since 9.0).
    public static func decode(postgresText text: String, type: PostgresType) -> [UInt8]? {
        guard type == .bytea || type == .unknown else { return nil }
        let utf8 = Array(text.utf8)
        guard utf8.count >= 2, utf8[0] == UInt8(ascii: "\\"), utf8[1] == UInt8(ascii: "x"), utf8.count % 2 == 0 else {
            return nil
        }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: c - 48
            case 97...102: c - 87
            case 65...70: c - 55
            default: nil
            }
        }
        var out = [UInt8]()
        out.reserveCapacity((utf8.count - 2) / 2)
        var i = 2
        while i < utf8.count {
            guard let hi = nibble(utf8[i]), let lo = nibble(utf8[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}

/// A one-dimensional array parameter in PostgreSQL's array literal form (`{"a","b",NULL}`).
///
/// Binds as `unknown`: write the cast in SQL (`$1::text[]`, `$2::jsonb[]`) so the element type
/// is explicit where it is used.
public struct PostgresArray: PostgresEncodable {
    public var elements: [(any PostgresEncodable)?]

    public init(_ elements: [(any PostgresEncodable)?]) { self.elements = elements }

    public static var postgresType: PostgresType { .unknown }

    public var postgresText: String {
        var out = [UInt8]()
        out.reserveCapacity(elements.count * 16 + 2)
        out.append(UInt8(ascii: "{"))
        for (i, element) in elements.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            guard let element else {
                out += Array("NULL".utf8)
                continue
            }
            out.append(UInt8(ascii: "\""))
            var text = element.postgresText
            text.withUTF8 { bytes in
                for byte in bytes {
                    if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { out.append(UInt8(ascii: "\\")) }
                    out.append(byte)
                }
            }
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }
}
