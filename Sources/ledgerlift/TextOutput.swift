import TextFormats
import Billing

/// A JSON value rendered with keys in the order given (stable output for scripts and tests).
indirect enum JSONText {
    case string(String)
    case int(Int64)
    case bool(Bool)
    case null
    /// Already-encoded JSON, inserted verbatim.
    case raw(String)
    case array([JSONText])
    case object([(String, JSONText)])

    var rendered: String {
        switch self {
        case .string(let s): return Self.quote(s)
        case .int(let i): return String(i)
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .raw(let r): return r
        case .array(let items): return "[" + items.map(\.rendered).joined(separator: ",") + "]"
        case .object(let pairs): return "{" + pairs.map { Self.quote($0.0) + ":" + $0.1.rendered }.joined(separator: ",") + "}"
        }
    }

    static func quote(_ s: String) -> String { JSONValue.quoted(s) }
}
