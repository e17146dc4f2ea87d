import Commands
import Foundation
import HTTPTypes
import Hummingbird
import Postgres
import TextFormats

/// Runs one command request once its body is known to be a JSON object: decides (and, in
/// primary mode, appends) and returns the response to send — rejections included, as
/// problem documents, so `Idempotency-Key` replays them too. Throws only for failures that
/// are not the command's answer (the store is down): those are not stored under the key.
///
/// `legacyXid` is the `Ledgerlift-Legacy-Xid` header, already validated: the legacy
/// transaction that made the same change (candidate mode records it for the comparison).
public protocol CommandHandling: Sendable {
    func handle(name: String, body: String, idempotencyKey: String?, legacyXid: UInt64?, on connection: Connection)
        async throws -> IdempotencyStore.StoredResponse
}

extension LedgerliftServer {
    /// `POST /commands/{name}`: checks the name, the media type and that the body is a JSON
    /// object, then runs the command through the ``IdempotencyStore`` when the request has an
    /// `Idempotency-Key`.
    func command(_ request: Request, name: String) async throws -> Response {
        guard BillingCommand.names.contains(name) else {
            throw Problem(
                .notFound, code: "unknown_command", title: "Unknown command",
                detail:
                    "\(Problem.printable(name)) is not a command; the commands are \(BillingCommand.names.joined(separator: ", "))"
            )
        }
        if let type = request.headers[.contentType] {
            let mediaType =
                type.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
            guard mediaType == "application/json" else { throw Problem.unsupportedMediaType(type) }
        }
        var request = request
        let limit = configuration.maximumBodyBytes
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: limit)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw Problem.payloadTooLarge(limit: limit)
        }
        guard let body = String(validating: buffer.readableBytesView, as: UTF8.self) else {
            throw Problem.invalidBody("the body is not UTF-8 text")
        }
        do {
            let parsed = try JSONValue.parse(body)
            guard case .object = parsed else {
                throw Problem.invalidBody("the body must be a JSON object")
            }
            // PostgreSQL's text and jsonb cannot hold U+0000: refused here, not a 500 when the
            // request is stored.
            if Self.containsNUL(parsed) {
                throw Problem.invalidBody(
                    "a string of the body holds the NUL character (\\u0000), which no field accepts")
            }
        } catch let error as JSONParseError {
            throw Problem.invalidBody("the body is not JSON: \(Problem.printable(error.description, limit: 500))")
        }
        guard let handler = commandHandler else {
            throw Problem(
                .notImplemented, code: "commands_unavailable", title: "Commands unavailable",
                detail: "this server was started without a command executor")
        }
        let key = request.headers[.idempotencyKey]
        let legacyXid = try CandidateCommandLog.legacyXid(request.headers[.ledgerliftLegacyXid])
        let path = "/commands/" + name
        // The legacy transaction is part of the request: the same key sent again for another
        // transaction (a legacy retry) is another request, refused as a reused key — never
        // answered with the first one's record, which would tie the command to a dead xid.
        let requestPath = legacyXid.map { path + "?legacy_xid=\($0)" } ?? path
        let outcome: IdempotencyStore.Outcome
        if let key {
            outcome = try await inFlight.run(key: "POST " + path + "\n" + key, body: requestPath + "\n" + body) {
                [pool, idempotency, legacyXid] in
                try await pool.withConnection { connection in
                    try await idempotency.perform(
                        key: key, method: "POST", path: requestPath, body: body, on: connection
                    ) {
                        try await handler.handle(
                            name: name, body: body, idempotencyKey: key, legacyXid: legacyXid, on: connection)
                    }
                }
            }
        } else {
            outcome = try await pool.withConnection { connection in
                let response = try await handler.handle(
                    name: name, body: body, idempotencyKey: nil, legacyXid: legacyXid, on: connection)
                return IdempotencyStore.Outcome(response: response, replayed: response.replayed)
            }
        }
        var headers = HTTPFields()
        headers[.contentType] = outcome.response.contentType
        if outcome.replayed {
            headers[.idempotentReplayed] = "true"
            metrics.idempotentReplay()
        }
        return Response(
            status: HTTPResponse.Status(code: outcome.response.status), headers: headers,
            body: .init(byteBuffer: ByteBuffer(string: outcome.response.body)))
    }
}

extension LedgerliftServer {
    /// Whether any string (or object key) of `value` holds U+0000.
    static func containsNUL(_ value: JSONValue) -> Bool {
        switch value {
        case .string(let text): text.utf8.contains(0)
        case .array(let items): items.contains(where: containsNUL)
        case .object(let pairs): pairs.contains { $0.0.utf8.contains(0) || containsNUL($0.1) }
        default: false
        }
    }
}

extension HTTPField.Name {
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
    static let idempotentReplayed = HTTPField.Name("Idempotent-Replayed")!
    static let ledgerliftProjection = HTTPField.Name("Ledgerlift-Projection")!
    /// The legacy transaction id a candidate command was sent from (`pg_current_xact_id()`).
    static let ledgerliftLegacyXid = HTTPField.Name("Ledgerlift-Legacy-Xid")!
}
