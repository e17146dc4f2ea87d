import EventStore
import HTTPTypes
import Postgres
import TextFormats

/// `Idempotency-Key` with Stripe's semantics, kept in the store (`<store schema>.idempotency_keys`,
/// which schema version 3 creates and `store init --grant-to` grants to the writer role).
///
/// A client that retries a command after a timeout must not pay twice. For a request with a key:
/// - the first one runs, and its response (status and body, byte for byte) is stored with a
///   fingerprint of the request (method, path and body, the body's JSON keys sorted so a
///   re-serialized body is the same request);
/// - a later one with the same key and the same fingerprint gets the stored response back
///   (``Outcome/replayed``), without running anything;
/// - one with the same key and another fingerprint is refused (422 `idempotency_key_reused`);
/// - concurrent ones are serialized by a session advisory lock on the key
///   (`ledgerlift.idempotency/<store schema>/<key>`): the first runs, the others wait for it —
///   at most ``lockWait``, then 409 `idempotency_key_in_use` — and replay its response.
///
/// Responses of 5xx are not stored (the request may be retried); keys are kept
/// ``retention`` (24 hours), after which they are ignored and ``purgeExpired(on:)`` deletes them.
public struct IdempotencyStore: Sendable {
    public let store: EventStore
    public var retention: Duration
    public var lockWait: Duration

    public init(
        store: EventStore = EventStore(), retention: Duration = .seconds(24 * 3600), lockWait: Duration = .seconds(10)
    ) {
        self.store = store
        self.retention = retention
        self.lockWait = lockWait
    }

    /// The longest key accepted (Stripe's limit).
    public static let maximumKeyLength = 255

    public var table: String { quoteIdentifier(store.schema) + ".idempotency_keys" }

    /// A response as stored and replayed.
    public struct StoredResponse: Sendable, Hashable {
        public var status: Int
        public var contentType: String
        public var body: String
        public init(status: Int, contentType: String, body: String) {
            self.status = status
            self.contentType = contentType
            self.body = body
        }
    }

    public struct Outcome: Sendable, Hashable {
        public var response: StoredResponse
        /// Whether it is the stored response of an earlier request with the key.
        public var replayed: Bool
    }

    /// Checks a key as the client sent it: 1 to 255 printable ASCII characters.
    public static func validate(_ key: String) throws(Problem) {
        guard !key.isEmpty, key.utf8.count <= maximumKeyLength, key.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
            throw Problem(
                .badRequest, code: "invalid_idempotency_key", title: "Invalid Idempotency-Key",
                detail: "Idempotency-Key must be 1 to \(maximumKeyLength) printable ASCII characters")
        }
    }

    /// The text whose hash identifies a request: method, path, and the body with its object
    /// keys sorted (bodies that are not JSON are taken as they are).
    public static func fingerprintText(method: String, path: String, body: String) -> String {
        let canonical = (try? JSONValue.parse(body)).map { sortedKeys($0).rendered } ?? body
        return method + " " + path + "\n" + canonical
    }

    static func sortedKeys(_ value: JSONValue) -> JSONValue {
        switch value {
        case .array(let items): .array(items.map(sortedKeys))
        case .object(let pairs): .object(pairs.sorted { $0.0 < $1.0 }.map { ($0.0, sortedKeys($0.1)) })
        default: value
        }
    }

    /// The lock serializing the requests of one key.
    public func lock(_ key: String) -> AdvisoryLock { AdvisoryLock("ledgerlift.idempotency/\(store.schema)/\(key)") }

    /// Runs `operation` once per key (see the type's documentation) on `connection`, which the
    /// caller borrows for the whole request and on which the operation runs too.
    ///
    /// - Throws: ``Problem`` 422 `idempotency_key_reused`, 409 `idempotency_key_in_use`, 400
    ///   `invalid_idempotency_key`; whatever `operation` throws (nothing is stored then).
    public func perform(
        key: String, method: String, path: String, body: String, on connection: Connection,
        _ operation: () async throws -> StoredResponse
    ) async throws -> Outcome {
        try Self.validate(key)
        let lock = self.lock(key)
        let waitMilliseconds = max(
            1, lockWait.components.seconds * 1000 + lockWait.components.attoseconds / 1_000_000_000_000_000)
        let acquired = try await connection.withSession { session -> Bool in
            try session.execute("SELECT set_config('lock_timeout', $1, false)", ["\(waitMilliseconds)ms"])
            defer { _ = try? session.execute("RESET lock_timeout") }
            do {
                try session.lock(lock)
                return true
            } catch let error as PostgresError where error.sqlState == "55P03" {  // lock_not_available
                return false
            }
        }
        guard acquired else {
            throw Problem(
                .conflict, code: "idempotency_key_in_use", title: "Idempotency-Key in use",
                detail: "another request with this Idempotency-Key is still running; retry later")
        }
        do {
            let outcome = try await performLocked(
                key: key, method: method, path: path, body: body, on: connection, operation)
            _ = try? await connection.withSession { try $0.unlock(lock) }
            return outcome
        } catch {
            _ = try? await connection.withSession { try $0.unlock(lock) }
            throw error
        }
    }

    private func performLocked(
        key: String, method: String, path: String, body: String, on connection: Connection,
        _ operation: () async throws -> StoredResponse
    ) async throws -> Outcome {
        let table = self.table
        let fingerprint = Self.fingerprintText(method: method, path: path, body: body)
        let stored = try await connection.withSession { session -> (same: Bool, StoredResponse)? in
            guard
                let row = try session.query(
                    """
                    SELECT request_fingerprint = encode(sha256(convert_to($2, 'UTF8')), 'hex'), status, content_type, response_body
                    FROM \(table) WHERE idempotency_key = $1 AND expires_at > now()
                    """, [key, fingerprint]
                ).first
            else { return nil }
            return (
                try row.decode(at: 0, as: Bool.self),
                StoredResponse(
                    status: Int(try row.decode(at: 1, as: Int32.self)), contentType: try row.decode(at: 2),
                    body: try row.decode(at: 3))
            )
        }
        if let stored {
            guard stored.same else {
                throw Problem(
                    .unprocessableContent, code: "idempotency_key_reused", title: "Idempotency-Key reused",
                    detail: "this Idempotency-Key was used with another request (method, path or body); use a new key")
            }
            return Outcome(response: stored.1, replayed: true)
        }
        let response = try await operation()
        if response.status < 500 {
            let seconds = retention.components.seconds
            try await connection.withSession { session in
                try session.execute(
                    """
                    INSERT INTO \(table) AS k
                        (idempotency_key, request_fingerprint, method, path, status, content_type, response_body, expires_at)
                    VALUES ($1, encode(sha256(convert_to($2, 'UTF8')), 'hex'), $3, $4, $5, $6, $7, now() + $8::int8 * interval '1 second')
                    ON CONFLICT (idempotency_key) DO UPDATE SET
                        request_fingerprint = EXCLUDED.request_fingerprint, method = EXCLUDED.method, path = EXCLUDED.path,
                        status = EXCLUDED.status, content_type = EXCLUDED.content_type,
                        response_body = EXCLUDED.response_body, created_at = now(), expires_at = EXCLUDED.expires_at
                    """,
                    [
                        key, fingerprint, method, path, Int32(response.status), response.contentType, response.body,
                        Int64(seconds),
                    ])
            }
        }
        return Outcome(response: response, replayed: false)
    }

    /// Deletes the keys past their retention.
    /// - Returns: how many were deleted.
    @discardableResult
    public func purgeExpired(on connection: Connection) async throws -> Int {
        let table = self.table
        return try await connection.withSession { try $0.execute("DELETE FROM \(table) WHERE expires_at <= now()") }
    }
}
