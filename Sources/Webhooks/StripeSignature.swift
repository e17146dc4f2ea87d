import Crypto
import Foundation

/// Why a `Stripe-Signature` header was refused. The route answers 400 for every case and
/// stores nothing: the payload cannot be trusted to come from Stripe (or to be fresh).
public enum StripeSignatureError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The header is not `t=<unix seconds>,v1=<hex>[,…]` (no timestamp, a part without `=`, a
    /// timestamp that is not an integer).
    case malformedHeader(reason: String)
    /// The header carries no `v1` signature (only `v0`, the test-mode scheme Stripe no longer
    /// signs with, or none at all).
    case noV1Signature
    /// No `v1` signature is the HMAC of the payload under any of the endpoint's secrets.
    case noMatch
    /// The signed timestamp is further from now than the tolerance: a replay of an old
    /// delivery (or a clock far off).
    case timestampOutsideTolerance(timestamp: Int64, now: Int64, toleranceSeconds: Int64)
    /// The handler was configured without any secret: nothing can be verified.
    case noSecrets

    public var description: String {
        switch self {
        case .malformedHeader(let reason): "malformed Stripe-Signature header: \(reason)"
        case .noV1Signature: "the Stripe-Signature header has no v1 signature"
        case .noMatch: "no v1 signature of the Stripe-Signature header matches the payload"
        case .timestampOutsideTolerance(let t, let now, let tolerance):
            "the Stripe-Signature timestamp \(t) is \(abs(now - t)) s from now (\(now)); at most \(tolerance) s are accepted"
        case .noSecrets: "no webhook signing secret is configured"
        }
    }
}

/// Verifies Stripe's webhook signatures (`Stripe-Signature: t=<unix>,v1=<hex>[,v1=…][,v0=…]`).
///
/// Stripe signs `"<t>.<payload>"` (the timestamp, a dot, the raw request body byte for byte)
/// with HMAC-SHA256 under the endpoint's signing secret and sends the hex digest as `v1`. While
/// a secret is being rolled, Stripe signs with the old and the new one (two `v1`), and the
/// endpoint may know both: any `v1` matching under any secret is accepted. The comparison is
/// constant-time (swift-crypto's `isValidAuthenticationCode`), so the response time tells an
/// attacker nothing about how much of a forged signature was right. The timestamp is signed
/// too, so checking it against `now` stops replays of captured deliveries.
public enum StripeSignature {
    /// Stripe's own libraries' default: five minutes.
    public static let defaultTolerance: TimeInterval = 300

    /// The parts of a `Stripe-Signature` header.
    public struct Header: Sendable, Hashable {
        public var timestamp: Int64
        /// The `v1` signatures, as sent (hex text).
        public var v1: [String]
    }

    /// Parses a header: `t` once (an integer), any number of `v1`, other schemes ignored.
    public static func parse(header: String) throws(StripeSignatureError) -> Header {
        var timestamp: Int64?
        var signatures = [String]()
        for part in header.split(separator: ",", omittingEmptySubsequences: true) {
            let item = part.trimmingCharacters(in: .whitespaces)
            if item.isEmpty { continue }
            guard let equals = item.firstIndex(of: "=") else {
                throw .malformedHeader(reason: "the part \"\(item.prefix(40))\" has no '='")
            }
            let name = item[..<equals]
            let value = String(item[item.index(after: equals)...])
            switch name {
            case "t":
                guard timestamp == nil else { throw .malformedHeader(reason: "two timestamps") }
                guard let t = Int64(value), t >= 0 else { throw .malformedHeader(reason: "the timestamp \"\(value.prefix(20))\" is not unix seconds") }
                timestamp = t
            case "v1": signatures.append(value)
            default: continue
            }
        }
        guard let timestamp else { throw .malformedHeader(reason: "no timestamp (t=)") }
        return Header(timestamp: timestamp, v1: signatures)
    }

    /// Verifies `header` for `payload`: returns the signed timestamp, or throws why not.
    ///
    /// Checked in this order: the header's form, a `v1` present, a `v1` matching, the
    /// timestamp within `tolerance` of `now` (either side). A stale delivery that is correctly
    /// signed is therefore reported as stale, not as forged.
    @discardableResult
    public static func verify(
        payload: [UInt8], header: String, secrets: [String], now: Date, tolerance: TimeInterval = defaultTolerance
    ) throws(StripeSignatureError) -> Int64 {
        guard secrets.contains(where: { !$0.isEmpty }) else { throw .noSecrets }
        let parsed = try parse(header: header)
        guard !parsed.v1.isEmpty else { throw .noV1Signature }
        var message = Array(String(parsed.timestamp).utf8)
        message.append(UInt8(ascii: "."))
        message.append(contentsOf: payload)
        var matched = false
        for signature in parsed.v1 {
            // A v1 that is not 64 hex digits cannot match: it is not a SHA-256 digest.
            guard let code = hexBytes(signature), code.count == SHA256.byteCount else { continue }
            for secret in secrets where !secret.isEmpty {
                let key = SymmetricKey(data: Array(secret.utf8))
                if HMAC<SHA256>.isValidAuthenticationCode(code, authenticating: message, using: key) { matched = true }
            }
        }
        guard matched else { throw .noMatch }
        let nowSeconds = Int64(now.timeIntervalSince1970.rounded(.down))
        let toleranceSeconds = Int64(tolerance.rounded(.down))
        guard abs(nowSeconds - parsed.timestamp) <= toleranceSeconds else {
            throw .timestampOutsideTolerance(timestamp: parsed.timestamp, now: nowSeconds, toleranceSeconds: toleranceSeconds)
        }
        return parsed.timestamp
    }

    /// ``verify(payload:header:secrets:now:tolerance:)`` for a body held as `Data`.
    @discardableResult
    public static func verify(
        payload: Data, header: String, secrets: [String], now: Date, tolerance: TimeInterval = defaultTolerance
    ) throws(StripeSignatureError) -> Int64 {
        try verify(payload: Array(payload), header: header, secrets: secrets, now: now, tolerance: tolerance)
    }

    /// The `v1` signature Stripe would send: lowercase hex HMAC-SHA256 of `"<timestamp>.<payload>"`.
    /// For tests and for tools that replay deliveries (`stripe trigger` signs the same way).
    public static func signature(payload: [UInt8], secret: String, timestamp: Int64) -> String {
        var message = Array(String(timestamp).utf8)
        message.append(UInt8(ascii: "."))
        message.append(contentsOf: payload)
        let code = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: Array(secret.utf8)))
        return code.map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// A whole header value for one secret: `t=<timestamp>,v1=<signature>`.
    public static func header(payload: [UInt8], secret: String, timestamp: Int64) -> String {
        "t=\(timestamp),v1=\(signature(payload: payload, secret: secret, timestamp: timestamp))"
    }

    /// Bytes of even-length hex text (either case); `nil` for anything else.
    static func hexBytes(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes = [UInt8]()
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = nibble(digits[index]), let low = nibble(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: c - 48
        case 97...102: c - 87
        case 65...70: c - 55
        default: nil
        }
    }
}
