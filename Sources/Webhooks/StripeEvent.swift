import Foundation

/// A JSON value as Stripe sends it. Unlike the store's payload JSON (integers only), Stripe's
/// objects hold fractions in places this module never reads (a coupon's `percent_off`, a tax
/// rate's `percentage`), so they must parse; the amounts it reads are integers and are read as
/// `Int64`, never through a floating-point value.
public indirect enum StripeJSON: Sendable, Hashable, Decodable {
    case null
    case bool(Bool)
    case integer(Int64)
    /// A number with a fraction or an exponent (never an amount).
    case number(Double)
    case string(String)
    case array([StripeJSON])
    case object([String: StripeJSON])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? container.decode(Int64.self) {
            self = .integer(i)
        } else if let d = try? container.decode(Double.self) {
            self = .number(d)
        } else if let s = try? container.decode(String.self) {
            self = .string(s)
        } else if let a = try? container.decode([StripeJSON].self) {
            self = .array(a)
        } else {
            self = .object(try container.decode([String: StripeJSON].self))
        }
    }

    /// Parses a request body.
    public static func parse(_ bytes: [UInt8]) throws -> StripeJSON {
        try JSONDecoder().decode(StripeJSON.self, from: Data(bytes))
    }

    public subscript(_ key: String) -> StripeJSON? {
        guard case .object(let members) = self else { return nil }
        return members[key]
    }

    /// The text, for strings.
    public var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The integer, for integers.
    public var integer: Int64? {
        if case .integer(let i) = self { return i }
        return nil
    }

    public var bool: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var array: [StripeJSON]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The id of an expandable field: the string itself, or the `id` of the expanded object
    /// (`"customer": "cus_1"` or `"customer": {"id": "cus_1", …}`).
    public var expandableID: String? {
        switch self {
        case .string(let s): s
        case .object: self["id"]?.string
        default: nil
        }
    }
}

/// Why a signed body is not a Stripe event this module can read. The route answers 400:
/// Stripe's signature was valid, so this is a delivery the code cannot understand (and a
/// retry of the same bytes would fail the same way).
public enum StripeEventError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The body is not JSON, or not an object.
    case notJSON(reason: String)
    /// The event lacks a field every Stripe event has (`id`, `type`, `created`, `data.object`).
    case missingField(eventID: String?, field: String)
    /// The object of a known event type lacks a field the mapping needs, or holds a value it
    /// cannot map (an unknown currency).
    case invalidObject(eventID: String, type: String, reason: String)

    public var description: String {
        switch self {
        case .notJSON(let reason): "the webhook body is not a JSON object: \(reason)"
        case .missingField(let id, let field): "Stripe event \(id ?? "(no id)") has no \(field)"
        case .invalidObject(let id, let type, let reason): "Stripe event \(id) (\(type)): \(reason)"
        }
    }
}

/// A Stripe event in its documented shape: `{"id": "evt_…", "object": "event", "type": …,
/// "created": <unix>, "livemode": …, "api_version": …, "data": {"object": {…},
/// "previous_attributes": {…}}}`.
public struct StripeEvent: Sendable, Hashable {
    /// `evt_…`: Stripe's id of the event, the same on every delivery of it (the dedup key).
    public var id: String
    /// `invoice.paid`, `customer.subscription.updated`, …
    public var type: String
    /// When Stripe created the event (unix seconds): the moment of the change it reports.
    public var created: Int64
    public var livemode: Bool
    public var apiVersion: String?
    /// `data.object`: the object as it was when the event was created.
    public var object: StripeJSON

    public init(id: String, type: String, created: Int64, livemode: Bool, apiVersion: String?, object: StripeJSON) {
        self.id = id
        self.type = type
        self.created = created
        self.livemode = livemode
        self.apiVersion = apiVersion
        self.object = object
    }

    /// Parses a webhook body.
    public init(payload: [UInt8]) throws(StripeEventError) {
        let json: StripeJSON
        do { json = try StripeJSON.parse(payload) } catch { throw .notJSON(reason: "\(error)") }
        guard case .object = json else { throw .notJSON(reason: "the top level is not an object") }
        guard let id = json["id"]?.string, !id.isEmpty else { throw .missingField(eventID: nil, field: "id") }
        guard let type = json["type"]?.string, !type.isEmpty else { throw .missingField(eventID: id, field: "type") }
        guard let created = json["created"]?.integer else { throw .missingField(eventID: id, field: "created") }
        guard let object = json["data"]?["object"], case .object = object else { throw .missingField(eventID: id, field: "data.object") }
        self.init(
            id: id, type: type, created: created, livemode: json["livemode"]?.bool ?? false, apiVersion: json["api_version"]?.string,
            object: object)
    }

    /// `data.object.id`: the Stripe object the event is about.
    public var objectID: String? { object["id"]?.string }
}
