import Postgres
import TextFormats

/// Canonical rows to and from the text form of the read-model tables.
enum ReadModelRows {
    /// The entity's columns other than the key, in column order.
    static func valueColumns(_ entity: Entity) -> [ColumnDefinition] {
        entity.columns.filter { $0.name != entity.keyColumn }
    }

    /// `"col1", "col2", …, attributes` — the entity's canonical columns in order (the key
    /// first), then `attributes`, for a SELECT list.
    static func selectList(_ entity: Entity, alias: String? = nil) -> String {
        let prefix = alias.map { $0 + "." } ?? ""
        return (entity.columns.map { prefix + quoteIdentifier($0.name) } + [prefix + "attributes::text"])
            .joined(separator: ", ")
    }

    /// Reads a canonical row from `row`, whose columns from `offset` on are the entity's
    /// columns in order followed by the attributes as text (``selectList(_:alias:)``).
    static func canonicalRow(_ entity: Entity, from row: Row, offset: Int = 0, table: String) throws -> CanonicalRow {
        var values = [String: CanonicalValue](minimumCapacity: entity.columns.count)
        for (i, column) in entity.columns.enumerated() {
            values[column.name] = try decodeValue(row.values[offset + i], column.type, table: table, column: column.name)
        }
        let attributes = try decodeAttributes(row.values[offset + entity.columns.count], table: table)
        return CanonicalRow(entity: entity, values: values, attributes: attributes)
    }

    /// A column's text (PostgreSQL's output form) as a canonical value of `type`.
    static func decodeValue(_ text: String?, _ type: ColumnType, table: String, column: String) throws -> CanonicalValue {
        guard let text else { return .null }
        let value: CanonicalValue?
        switch type {
        case .text, .status, .currency: value = .text(text)
        case .integer: value = Int64(text).map { .integer($0) }
        case .amount: value = Int64(text).map { .amount($0) }
        case .boolean: value = text == "t" ? .boolean(true) : text == "f" ? .boolean(false) : nil
        case .decimal: value = PostgresNumeric(text) == nil ? nil : .decimal(text)
        case .timestamp: value = PostgresTimestamp(text).map { .timestamp($0) }
        case .date: value = PostgresDate(text).map { .date($0) }
        }
        guard let value else { throw ProjectionError.undecodableColumn(table: table, column: column, value: text) }
        return value
    }

    /// The `attributes` jsonb (as text) as a map of text or NULL values.
    static func decodeAttributes(_ text: String?, table: String) throws -> [String: String?] {
        guard let text, text != "{}" else { return [:] }
        guard case .object(let pairs)? = try? JSONValue.parse(text) else {
            throw ProjectionError.undecodableColumn(table: table, column: "attributes", value: text)
        }
        var map = [String: String?](minimumCapacity: pairs.count)
        for (name, value) in pairs {
            switch value {
            case .string(let s): map[name] = .some(s)
            case .null: map[name] = .some(nil)
            default: throw ProjectionError.undecodableColumn(table: table, column: "attributes", value: text)
            }
        }
        return map
    }

    /// The attributes as a JSON object with sorted keys.
    static func attributesJSON(_ attributes: [String: String?]) -> String {
        guard !attributes.isEmpty else { return "{}" }
        return JSONValue.object(attributes.keys.sorted().map { ($0, attributes[$0]!.map(JSONValue.string) ?? .null) })
            .rendered
    }

    /// Appends one value to a COPY row in PostgreSQL's text input form.
    static func append(_ value: CanonicalValue, to writer: CopyInWriter) {
        switch value {
        case .null: writer.append(nil as String?)
        case .text(let s): writer.append(s)
        case .integer(let i), .amount(let i): writer.append(i)
        case .boolean(let b): writer.append(b ? "t" : "f")
        case .decimal(let d): writer.append(d)
        case .timestamp(let t): writer.append(TimestampText.render(t))
        case .date(let d): writer.append(d.description)
        }
    }
}

/// Fast ISO 8601 rendering for COPY (PostgreSQL reads `2024-01-31 23:59:59.123456+00`).
enum TimestampText {
    static func render(_ t: PostgresTimestamp) -> String {
        if t == .infinity { return "infinity" }
        if t == .negativeInfinity { return "-infinity" }
        let c = t.components
        guard c.year >= 0, c.year <= 9999 else { return t.iso8601 }
        var bytes = [UInt8](repeating: 0, count: 29)
        func put(_ value: Int, _ at: Int, _ width: Int) {
            var v = value
            for i in stride(from: at + width - 1, through: at, by: -1) {
                bytes[i] = UInt8(48 + v % 10)
                v /= 10
            }
        }
        put(c.year, 0, 4)
        bytes[4] = 45
        put(c.month, 5, 2)
        bytes[7] = 45
        put(c.day, 8, 2)
        bytes[10] = 32
        put(c.hour, 11, 2)
        bytes[13] = 58
        put(c.minute, 14, 2)
        bytes[16] = 58
        put(c.second, 17, 2)
        bytes[19] = 46
        put(c.microsecond, 20, 6)
        bytes[26] = 43
        bytes[27] = 48
        bytes[28] = 48
        return String(decoding: bytes, as: UTF8.self)
    }
}
