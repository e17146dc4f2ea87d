import Postgres
import TextFormats

/// One value of a canonical column, typed by the column's definition.
///
/// Amounts are integer minor units (the row's `currency` column gives the exponent);
/// `decimal` keeps exact decimal text for the few non-money quantities that need it (unit
/// amounts with four decimals); timestamps are exact microseconds in UTC.
public enum CanonicalValue: Sendable, Hashable, CustomStringConvertible {
    case null
    case text(String)
    case integer(Int64)
    case boolean(Bool)
    /// Minor units of the row's currency.
    case amount(Int64)
    /// Exact decimal text, canonical form (no exponent, trailing zeros kept as the source has them).
    case decimal(String)
    case timestamp(PostgresTimestamp)
    case date(PostgresDate)

    public var isNull: Bool { self == .null }

    public var description: String {
        switch self {
        case .null: "NULL"
        case .text(let s): s
        case .integer(let i): String(i)
        case .boolean(let b): b ? "true" : "false"
        case .amount(let a): String(a)
        case .decimal(let d): d
        case .timestamp(let t): t.iso8601
        case .date(let d): d.description
        }
    }

    /// The timestamp, for timestamp values.
    public var timestampValue: PostgresTimestamp? {
        if case .timestamp(let t) = self { return t }
        if case .date(let d) = self { return d.startOfDayUTC }
        return nil
    }

    public var textValue: String? {
        if case .text(let s) = self { return s }
        return nil
    }

    public var amountValue: Int64? {
        if case .amount(let a) = self { return a }
        return nil
    }

    public var integerValue: Int64? {
        if case .integer(let i) = self { return i }
        return nil
    }

    public var booleanValue: Bool? {
        if case .boolean(let b) = self { return b }
        return nil
    }

    /// The value as a JSON fragment for event payloads.
    var json: JSONValue {
        switch self {
        case .null: .null
        case .text(let s): .string(s)
        case .integer(let i), .amount(let i): .integer(i)
        case .boolean(let b): .bool(b)
        case .decimal(let d): .string(d)
        case .timestamp(let t): .string(t.iso8601)
        case .date(let d): .string(d.description)
        }
    }

    /// Reads a JSON fragment back as a value of `type`.
    static func from(_ json: JSONValue, as type: ColumnType) -> CanonicalValue? {
        switch (json, type) {
        case (.null, _): return .null
        case (.string(let s), .text), (.string(let s), .status), (.string(let s), .currency): return .text(s)
        case (.integer(let i), .integer): return .integer(i)
        case (.integer(let i), .amount): return .amount(i)
        case (.bool(let b), .boolean): return .boolean(b)
        case (.string(let s), .decimal): return PostgresNumeric(s) == nil ? nil : .decimal(s)
        // An invoice line's quantity was an integer before it became a decimal (schema version 1).
        case (.integer(let i), .decimal): return .decimal(String(i))
        case (.string(let s), .timestamp): return PostgresTimestamp(s).map { .timestamp($0) }
        case (.string(let s), .date): return PostgresDate(s).map { .date($0) }
        default: return nil
        }
    }
}
