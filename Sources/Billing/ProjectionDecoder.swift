import TextFormats
import EventStore
import Foundation
import Postgres

extension Projector {
    /// Decodes a stored event the way the projector does.
    ///
    /// The result is exactly ``BillingEvent/init(recorded:)``'s; a byte-level reader handles
    /// the common shape of the payload (plain strings, integers, `null`, booleans and ISO
    /// timestamps, which is what ``BillingEvent/payload`` writes and `jsonb` returns) about
    /// three times faster, and anything else — escapes it does not handle, other shapes,
    /// errors — goes to `BillingEvent(recorded:)` itself.
    ///
    /// - Returns: `nil` for an event whose type is not a billing event type.
    /// - Throws: ``ProjectionError/undecodableEvent(eventID:streamID:globalPosition:reason:)``.
    public static func decode(_ recorded: RecordedEvent) throws -> BillingEvent? {
        guard let type = BillingEventType(rawValue: recorded.eventType) else { return nil }
        if let event = FastPayload.decode(recorded, type: type) { return event }
        do {
            return try BillingEvent(recorded: recorded)
        } catch {
            throw ProjectionError.undecodableEvent(
                eventID: recorded.eventID, streamID: recorded.streamID, globalPosition: recorded.globalPosition,
                reason: "\(error)")
        }
    }
}

/// The fast path of ``Projector/decode(_:)``: `nil` whenever it is not sure.
enum FastPayload {
    /// Per entity, its columns by name.
    static let columns: [Entity: [String: ColumnDefinition]] = Dictionary(
        uniqueKeysWithValues: Entity.allCases.map { entity in
            (entity, Dictionary(entity.columns.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first }))
        })

    static let entities: [String: Entity] = Dictionary(uniqueKeysWithValues: Entity.allCases.map { ($0.rawValue, $0) })

    static func decode(_ recorded: RecordedEvent, type: BillingEventType) -> BillingEvent? {
        var payloadText = recorded.payload.text
        let parsed: (entity: Entity, key: String, changes: [BillingEvent.ColumnChange], attributes: [String: String?]?)? =
            payloadText.withUTF8 { bytes in
                var reader = Reader(bytes: bytes)
                return reader.payload()
            }
        guard let parsed else { return nil }
        var metadataText = recorded.metadata.text
        let evidence = metadataText.withUTF8 { bytes in
            var reader = Reader(bytes: bytes)
            return reader.evidence()
        }
        guard let evidence else { return nil }
        return BillingEvent(
            eventID: recorded.eventID, entity: parsed.entity, key: parsed.key, type: type, occurredAt: recorded.occurredAt,
            evidence: evidence, changes: parsed.changes, attributes: parsed.attributes)
    }

    /// A JSON scalar as read by the fast path.
    enum Scalar {
        case null
        case bool(Bool)
        case integer(Int64)
        case string(String)
    }

    struct Reader {
        let bytes: UnsafeBufferPointer<UInt8>
        var i = 0

        init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        mutating func space() {
            while i < bytes.count {
                let b = bytes[i]
                guard b == 32 || b == 9 || b == 10 || b == 13 else { return }
                i += 1
            }
        }

        mutating func take(_ byte: UInt8) -> Bool {
            space()
            guard i < bytes.count, bytes[i] == byte else { return false }
            i += 1
            return true
        }

        /// A string without `\u` escapes (those go to the reference decoder).
        mutating func string() -> String? {
            space()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { return nil }
            i += 1
            let start = i
            while i < bytes.count {
                let b = bytes[i]
                if b == UInt8(ascii: "\"") {
                    let s = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
                    i += 1
                    return s
                }
                if b == UInt8(ascii: "\\") { return escapedString(from: start) }
                // A raw control character: the reference decoder refuses it, and says why.
                if b < 0x20 { return nil }
                i += 1
            }
            return nil
        }

        mutating func escapedString(from start: Int) -> String? {
            var out = Array(bytes[start..<i])
            while i < bytes.count {
                let b = bytes[i]
                i += 1
                if b == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
                if b < 0x20 { return nil }
                guard b == UInt8(ascii: "\\") else {
                    out.append(b)
                    continue
                }
                guard i < bytes.count else { return nil }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "n"): out.append(10)
                case UInt8(ascii: "r"): out.append(13)
                case UInt8(ascii: "t"): out.append(9)
                case UInt8(ascii: "b"): out.append(8)
                case UInt8(ascii: "f"): out.append(12)
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                default: return nil
                }
            }
            return nil
        }

        mutating func scalar() -> Scalar? {
            space()
            guard i < bytes.count else { return nil }
            switch bytes[i] {
            case UInt8(ascii: "\""): return string().map { .string($0) }
            case UInt8(ascii: "n"): return literal("null") ? .null : nil
            case UInt8(ascii: "t"): return literal("true") ? .bool(true) : nil
            case UInt8(ascii: "f"): return literal("false") ? .bool(false) : nil
            case UInt8(ascii: "-"), 48...57:
                var negative = false
                if bytes[i] == UInt8(ascii: "-") {
                    negative = true
                    i += 1
                }
                var magnitude: UInt64 = 0
                var digits = 0
                while i < bytes.count, bytes[i] >= 48, bytes[i] <= 57 {
                    let (m, o1) = magnitude.multipliedReportingOverflow(by: 10)
                    let (a, o2) = m.addingReportingOverflow(UInt64(bytes[i] - 48))
                    guard !o1, !o2 else { return nil }
                    magnitude = a
                    digits += 1
                    i += 1
                }
                // At most 18 digits always fit; a leading zero is refused by the reference decoder.
                guard digits > 0, digits <= 18, digits == 1 || bytes[i - digits] != 48 else { return nil }
                if i < bytes.count, [UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(bytes[i]) {
                    return nil
                }
                let value = Int64(magnitude)
                return .integer(negative ? -value : value)
            default: return nil
            }
        }

        mutating func literal(_ text: StaticString) -> Bool {
            let count = text.utf8CodeUnitCount
            guard i + count <= bytes.count else { return false }
            let ok = text.withUTF8Buffer { expected in
                (0..<count).allSatisfy { bytes[i + $0] == expected[$0] }
            }
            if ok { i += count }
            return ok
        }

        /// Skips one JSON value of any shape (no validation beyond nesting and strings).
        mutating func skip() -> Bool {
            space()
            var depth = 0
            repeat {
                guard i < bytes.count else { return false }
                let b = bytes[i]
                if b == UInt8(ascii: "\"") {
                    i += 1
                    while i < bytes.count, bytes[i] != UInt8(ascii: "\"") {
                        if bytes[i] < 0x20 { return false }
                        i += bytes[i] == UInt8(ascii: "\\") ? 2 : 1
                    }
                    guard i < bytes.count else { return false }
                    i += 1
                } else if b == UInt8(ascii: "{") || b == UInt8(ascii: "[") {
                    depth += 1
                    i += 1
                } else if b == UInt8(ascii: "}") || b == UInt8(ascii: "]") {
                    depth -= 1
                    i += 1
                } else if depth == 0 {
                    while i < bytes.count, ![44, 125, 93, 32, 9, 10, 13].contains(bytes[i]) { i += 1 }
                    return true
                } else {
                    i += 1
                }
            } while depth > 0
            return true
        }

        /// `{"entity": …, "key": …, "set": {…}, "attributes": {…}?}` in any key order.
        mutating func payload() -> (Entity, String, [BillingEvent.ColumnChange], [String: String?]?)? {
            guard take(UInt8(ascii: "{")) else { return nil }
            var entityName: String?
            var key: String?
            var set: Range<Int>?
            var attributes: Range<Int>?
            if !take(UInt8(ascii: "}")) {
                repeat {
                    guard let name = string(), take(UInt8(ascii: ":")) else { return nil }
                    space()
                    let start = i
                    switch name {
                    case "entity" where entityName == nil:
                        guard let value = string() else { return nil }
                        entityName = value
                    case "key" where key == nil:
                        guard let value = string() else { return nil }
                        key = value
                    case "set" where set == nil:
                        guard skip() else { return nil }
                        set = start..<i
                    case "attributes" where attributes == nil:
                        guard skip() else { return nil }
                        attributes = start..<i
                    case "entity", "key", "set", "attributes":
                        return nil  // a repeated key: the reference decoder decides
                    default:
                        guard skip() else { return nil }
                    }
                } while take(UInt8(ascii: ","))
                guard take(UInt8(ascii: "}")) else { return nil }
            }
            space()
            guard i == bytes.count, let entityName, let entity = FastPayload.entities[entityName], let key, let set
            else { return nil }
            var changes = [BillingEvent.ColumnChange]()
            let definitions = FastPayload.columns[entity]!
            i = set.lowerBound
            guard take(UInt8(ascii: "{")) else { return nil }
            if !take(UInt8(ascii: "}")) {
                repeat {
                    guard let column = string(), take(UInt8(ascii: ":")), let definition = definitions[column],
                        let json = scalar(), let value = FastPayload.value(json, definition.type)
                    else { return nil }
                    changes.append(BillingEvent.ColumnChange(column: column, value: value))
                } while take(UInt8(ascii: ","))
                guard take(UInt8(ascii: "}")) else { return nil }
            }
            var map: [String: String?]?
            if let attributes {
                i = attributes.lowerBound
                guard take(UInt8(ascii: "{")) else { return nil }
                var values = [String: String?]()
                if !take(UInt8(ascii: "}")) {
                    repeat {
                        guard let name = string(), take(UInt8(ascii: ":")), let json = scalar() else { return nil }
                        switch json {
                        case .string(let s): values[name] = .some(s)
                        case .null: values[name] = .some(nil)
                        default: return nil
                        }
                    } while take(UInt8(ascii: ","))
                    guard take(UInt8(ascii: "}")) else { return nil }
                }
                map = values
            }
            return (entity, key, changes, map)
        }

        /// The metadata's `evidence` (`imported` when there is none, as the reference decoder
        /// has it); `nil` when the metadata is not a flat object the fast path reads.
        mutating func evidence() -> Evidence? {
            guard take(UInt8(ascii: "{")) else { return nil }
            var found: Evidence?
            var seen = false
            if !take(UInt8(ascii: "}")) {
                repeat {
                    guard let name = string(), take(UInt8(ascii: ":")) else { return nil }
                    if name == "evidence" {
                        guard !seen else { return nil }
                        seen = true
                        space()
                        if i < bytes.count, bytes[i] == UInt8(ascii: "\"") {
                            guard let value = string() else { return nil }
                            found = Evidence(rawValue: value)
                        } else {
                            guard skip() else { return nil }
                        }
                    } else {
                        guard skip() else { return nil }
                    }
                } while take(UInt8(ascii: ","))
                guard take(UInt8(ascii: "}")) else { return nil }
            }
            space()
            guard i == bytes.count else { return nil }
            return found ?? .imported
        }
    }

    /// The canonical value of a JSON scalar in a column of `type` — the same mapping as
    /// `CanonicalValue.from(_:as:)`, with a direct reader for ISO timestamps.
    static func value(_ json: Scalar, _ type: ColumnType) -> CanonicalValue? {
        switch json {
        case .null: return .null
        case .integer(let n):
            switch type {
            case .integer: return .integer(n)
            case .amount: return .amount(n)
            default: return nil
            }
        case .bool(let b):
            if case .boolean = type { return .boolean(b) }
            return nil
        case .string(let s):
            switch type {
            case .timestamp:
                if let t = isoTimestamp(s) { return .timestamp(t) }
                return CanonicalValue.from(.string(s), as: type)
            default:
                return CanonicalValue.from(.string(s), as: type)
            }
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ` exactly (how ``CanonicalValue`` writes timestamps); `nil`
    /// for any other spelling, which then goes through `PostgresTimestamp(_:)`.
    static func isoTimestamp(_ text: String) -> PostgresTimestamp? {
        var text = text
        return text.withUTF8 { b -> PostgresTimestamp? in
            guard b.count == 27, b[4] == 45, b[7] == 45, b[10] == 84, b[13] == 58, b[16] == 58, b[19] == 46, b[26] == 90
            else { return nil }
            func number(_ from: Int, _ count: Int) -> Int? {
                var value = 0
                for k in from..<from + count {
                    let d = b[k]
                    guard d >= 48, d <= 57 else { return nil }
                    value = value * 10 + Int(d - 48)
                }
                return value
            }
            guard let year = number(0, 4), let month = number(5, 2), let day = number(8, 2), let hour = number(11, 2),
                let minute = number(14, 2), let second = number(17, 2), let micros = number(20, 6)
            else { return nil }
            return PostgresTimestamp(
                year: year, month: month, day: day, hour: hour, minute: minute, second: second, microsecond: micros)
        }
    }
}
