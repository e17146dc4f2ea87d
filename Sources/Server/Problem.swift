import Commands
import EventStore
import Foundation
import HTTPTypes
import Hummingbird
import TextFormats

/// An error answered as an RFC 9457 problem document (`application/problem+json`).
///
/// Every failure `serve` answers goes through this type, so clients parse one shape: `type` (a
/// URI naming the problem class), `title` (the same for every occurrence of a code), `status`,
/// `detail` (this occurrence) and `code`, a stable machine name (`invalid_as_of`,
/// `idempotency_key_reused`, the command layer's rejection codes). A 4xx `detail` says what
/// was wrong with the request in words written here — never an SQL statement, a database
/// message or a row's values other than the key the client sent.
public struct Problem: Error, Sendable, Hashable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    /// Stable machine-readable name (snake_case); also the last segment of ``type``.
    public var code: String
    public var title: String
    public var detail: String
    /// Sent as `Retry-After` (seconds) when set: the request may succeed unchanged later.
    public var retryAfterSeconds: Int?

    public init(_ status: HTTPResponse.Status, code: String, title: String, detail: String) {
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail.count > Self.maximumDetailLength ? Self.printable(detail, limit: Self.maximumDetailLength) : detail
    }

    /// The longest `detail` answered: the last bound on a document that quotes what a client
    /// sent (each quote is clipped to ``printable(_:limit:)``'s 200 characters already), so no
    /// request can make the server answer — and log — kilobytes of its own input.
    public static let maximumDetailLength = 1000

    /// Where the problem classes are described (docs/serve.md lists every code).
    public static let typeBase = "https://ledgerlift.dev/problems/"

    /// The status as a number (`404`), for callers without HTTPTypes.
    public var statusCode: Int { Int(status.code) }

    public var type: String { Self.typeBase + code.replacing("_", with: "-") }

    public var description: String { "\(status.code) \(code): \(detail)" }

    /// The document, keys in RFC 9457's order, then the extension member `code`.
    public var json: JSONValue {
        .object([
            ("type", .string(type)), ("title", .string(title)), ("status", .integer(Int64(status.code))),
            ("detail", .string(detail)), ("code", .string(code)),
        ])
    }

    public static let contentType = "application/problem+json"

    /// The HTTP response carrying the document.
    public var response: Response {
        var headers = HTTPFields()
        headers[.contentType] = Self.contentType
        if let retryAfterSeconds { headers[.retryAfter] = String(retryAfterSeconds) }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: json.rendered)))
    }

    // MARK: - The codes serve answers itself

    public static func notFoundRoute(_ method: HTTPRequest.Method, _ path: String) -> Problem {
        Problem(
            .notFound, code: "route_not_found", title: "No such route",
            detail:
                "there is no route \(method.rawValue) \(Self.printable(path)); the routes are listed in docs/openapi.yaml"
        )
    }

    public static func methodNotAllowed(_ method: HTTPRequest.Method, _ path: String) -> Problem {
        Problem(
            .methodNotAllowed, code: "method_not_allowed", title: "Method not allowed",
            detail: "\(method.rawValue) is not allowed on \(Self.printable(path))")
    }

    public static func invalidParameter(_ name: String, _ reason: String) -> Problem {
        Problem(
            .badRequest, code: "invalid_\(name)", title: "Invalid \(name) parameter", detail: "\(name): \(reason)")
    }

    public static func invalidBody(_ reason: String) -> Problem {
        Problem(.badRequest, code: "invalid_body", title: "The request body is not valid", detail: reason)
    }

    public static func unsupportedMediaType(_ found: String?) -> Problem {
        Problem(
            .unsupportedMediaType, code: "unsupported_media_type", title: "Unsupported media type",
            detail: "the body must be application/json" + (found.map { ", not \(Self.printable($0))" } ?? ""))
    }

    public static func payloadTooLarge(limit: Int) -> Problem {
        Problem(
            .contentTooLarge, code: "payload_too_large", title: "Request body too large",
            detail: "the body is larger than \(limit) bytes")
    }

    public static func notFound(_ what: String, _ key: String, asOf: String?) -> Problem {
        Problem(
            .notFound, code: "\(what)_not_found", title: "Unknown \(what)",
            detail: "\(what) \(Self.printable(key)) is not in the read models" + (asOf.map { " as of \($0)" } ?? ""))
    }

    /// The store could not be reached or failed: never its message (it can quote SQL).
    public static let storeUnavailable = Problem(
        .serviceUnavailable, code: "store_unavailable", title: "Store unavailable",
        detail: "the event store could not be reached or did not answer; retry later")

    public static let readModelsNotBuilt = Problem(
        .serviceUnavailable, code: "read_models_not_built", title: "Read models not built",
        detail: "the read models are not built yet (or are of another model version); run `ledgerlift project`")

    /// A write refused because the store's routing does not give writes to the ledger now:
    /// 409 `writes_on_legacy` before the cutover's write switch (send it to the legacy
    /// application), 503 `writes_frozen` while a rollback moves writes back (retry shortly: it
    /// goes to legacy once the rollback ends). Never stored under an `Idempotency-Key`: the same
    /// request may succeed later.
    public static func writesRouted(_ routed: WritesRoutedElsewhere) -> Problem {
        var problem =
            routed.writes == .frozen
            ? Problem(
                .serviceUnavailable, code: "writes_frozen", title: "Writes have moved back",
                detail:
                    "writes have moved back: cutover \(Problem.printable(routed.cutover)) is rolling the write switch back; retry shortly, then send writes to the legacy application")
            : Problem(
                .conflict, code: "writes_on_legacy", title: "Writes go to legacy",
                detail:
                    "the legacy application takes the writes: cutover \(Problem.printable(routed.cutover)) has not switched them to the ledger")
        if routed.writes == .frozen { problem.retryAfterSeconds = 1 }
        return problem
    }

    public static let internalError = Problem(
        .internalServerError, code: "internal_error", title: "Internal error",
        detail: "the server failed to answer; the error is in its log")

    /// A client-sent text made safe to quote: at most `limit` characters (then "…"), controls
    /// escaped. 200 keeps any key or name a client may legitimately send whole.
    static func printable(_ text: String, limit: Int = 200) -> String {
        let clipped = text.count > limit ? String(text.prefix(limit)) + "…" : text
        return String(
            clipped.unicodeScalars.map { scalar -> String in
                scalar.value < 0x20 || scalar.value == 0x7F ? "\\u{\(String(scalar.value, radix: 16))}" : String(scalar)
            }.joined())
    }
}
