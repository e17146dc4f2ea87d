import Crypto
import Foundation
import Testing

@testable import Webhooks

/// Golden values computed outside Swift, with Python's `hmac`:
/// `hmac.new(b"whsec_test_6Yg2pX0dVn4Qb8Lr", b"<t>." + payload, hashlib.sha256).hexdigest()`.
let goldenSecret = "whsec_test_6Yg2pX0dVn4Qb8Lr"
let goldenPayload = Array(#"{"id":"evt_test","object":"event"}"#.utf8)
let goldenTimestamp: Int64 = 1_733_486_400
let goldenSignature = "ffe35e36f567408e424aec82496d66b451f8bc6719212f5ff607324d369d87d3"
/// The same for the bytes of `Fixtures/invoice.paid.json` (4,770 bytes) at t = 1733490005.
let goldenFixtureSignature = "10b58797aa3a08818cc5b156fb05bffe4129674b1416578ab6e7a8cd7ed39b56"

func date(_ seconds: Int64) -> Date { Date(timeIntervalSince1970: TimeInterval(seconds)) }

@Suite struct StripeSignatureTests {
    @Test func theHMACIsRFC4231s() {
        // RFC 4231, test case 2: the primitive the signature is built on, with text keys as bytes.
        let code = HMAC<SHA256>.authenticationCode(
            for: Array("what do ya want for nothing?".utf8), using: SymmetricKey(data: Array("Jefe".utf8)))
        #expect(Data(code).map { String(format: "%02x", $0) }.joined() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func theSignatureIsTheHMACOfTimestampDotPayload() {
        #expect(StripeSignature.signature(payload: goldenPayload, secret: goldenSecret, timestamp: goldenTimestamp) == goldenSignature)
        #expect(
            StripeSignature.header(payload: goldenPayload, secret: goldenSecret, timestamp: goldenTimestamp)
                == "t=1733486400,v1=" + goldenSignature)
    }

    @Test func aGoldenHeaderVerifiesAndReturnsItsTimestamp() throws {
        let header = "t=1733486400,v1=\(goldenSignature)"
        #expect(try StripeSignature.verify(payload: goldenPayload, header: header, secrets: [goldenSecret], now: date(goldenTimestamp + 10)) == goldenTimestamp)
        // Upper-case hex and spaces after commas are the same signature.
        let spaced = "t=1733486400, v1=\(goldenSignature.uppercased())"
        #expect(try StripeSignature.verify(payload: Data(goldenPayload), header: spaced, secrets: [goldenSecret], now: date(goldenTimestamp)) == goldenTimestamp)
    }

    @Test func aFixtureSignedByPythonVerifies() throws {
        let payload = try fixture("invoice.paid")
        #expect(payload.count == 4_770)
        let header = "t=1733490005,v1=\(goldenFixtureSignature)"
        #expect(try StripeSignature.verify(payload: payload, header: header, secrets: [goldenSecret], now: date(1_733_490_005 + 299)) == 1_733_490_005)
    }

    @Test func anyV1UnderAnySecretMatches() throws {
        // A secret being rolled: Stripe signs with both; the endpoint knows the new one and an old one.
        let wrong = String(repeating: "0", count: 64)
        let header = "t=1733486400,v1=\(wrong),v1=\(goldenSignature),v0=\(wrong)"
        #expect(
            try StripeSignature.verify(payload: goldenPayload, header: header, secrets: ["whsec_old", goldenSecret], now: date(goldenTimestamp))
                == goldenTimestamp)
    }

    @Test(arguments: [
        ("", "no timestamp (t=)"),
        ("v1=\(goldenSignature)", "no timestamp (t=)"),
        ("t=abc,v1=\(goldenSignature)", "the timestamp \"abc\" is not unix seconds"),
        ("t=-5,v1=\(goldenSignature)", "the timestamp \"-5\" is not unix seconds"),
        ("t=1733486400,garbage", "the part \"garbage\" has no '='"),
        ("t=1733486400,t=1733486401,v1=\(goldenSignature)", "two timestamps"),
    ])
    func malformedHeadersAreRefusedWithTheirReason(header: String, reason: String) {
        #expect(throws: StripeSignatureError.malformedHeader(reason: reason)) {
            try StripeSignature.verify(payload: goldenPayload, header: header, secrets: [goldenSecret], now: date(goldenTimestamp))
        }
    }

    @Test func aHeaderWithoutV1IsRefused() {
        #expect(throws: StripeSignatureError.noV1Signature) {
            try StripeSignature.verify(
                payload: goldenPayload, header: "t=1733486400,v0=\(goldenSignature)", secrets: [goldenSecret], now: date(goldenTimestamp))
        }
    }

    @Test func aTamperedPayloadAWrongSecretOrANonDigestDoNotMatch() {
        var tampered = goldenPayload
        tampered[tampered.count - 2] = UInt8(ascii: "E")
        let header = "t=1733486400,v1=\(goldenSignature)"
        #expect(throws: StripeSignatureError.noMatch) {
            try StripeSignature.verify(payload: tampered, header: header, secrets: [goldenSecret], now: date(goldenTimestamp))
        }
        #expect(throws: StripeSignatureError.noMatch) {
            try StripeSignature.verify(payload: goldenPayload, header: header, secrets: ["whsec_other"], now: date(goldenTimestamp))
        }
        // The timestamp is signed: moving it breaks the signature.
        #expect(throws: StripeSignatureError.noMatch) {
            try StripeSignature.verify(
                payload: goldenPayload, header: "t=1733486401,v1=\(goldenSignature)", secrets: [goldenSecret], now: date(goldenTimestamp))
        }
        for bad in ["zz" + goldenSignature.dropFirst(2), String(goldenSignature.dropLast(2)), goldenSignature + "00"] {
            #expect(throws: StripeSignatureError.noMatch) {
                try StripeSignature.verify(payload: goldenPayload, header: "t=1733486400,v1=\(bad)", secrets: [goldenSecret], now: date(goldenTimestamp))
            }
        }
    }

    @Test func theTimestampMustBeWithinFiveMinutesEitherSide() throws {
        let header = "t=1733486400,v1=\(goldenSignature)"
        #expect(try StripeSignature.verify(payload: goldenPayload, header: header, secrets: [goldenSecret], now: date(goldenTimestamp + 300)) == goldenTimestamp)
        #expect(try StripeSignature.verify(payload: goldenPayload, header: header, secrets: [goldenSecret], now: date(goldenTimestamp - 300)) == goldenTimestamp)
        #expect(throws: StripeSignatureError.timestampOutsideTolerance(timestamp: goldenTimestamp, now: goldenTimestamp + 301, toleranceSeconds: 300)) {
            try StripeSignature.verify(payload: goldenPayload, header: header, secrets: [goldenSecret], now: date(goldenTimestamp + 301))
        }
        #expect(throws: StripeSignatureError.timestampOutsideTolerance(timestamp: goldenTimestamp, now: goldenTimestamp - 301, toleranceSeconds: 300)) {
            try StripeSignature.verify(payload: goldenPayload, header: header, secrets: [goldenSecret], now: date(goldenTimestamp - 301))
        }
        // A forged signature on a stale timestamp is reported as not matching (checked first).
        #expect(throws: StripeSignatureError.noMatch) {
            try StripeSignature.verify(
                payload: goldenPayload, header: "t=1733486400,v1=\(String(repeating: "a", count: 64))", secrets: [goldenSecret],
                now: date(goldenTimestamp + 10_000))
        }
    }

    @Test func withoutASecretNothingVerifies() {
        #expect(throws: StripeSignatureError.noSecrets) {
            try StripeSignature.verify(payload: goldenPayload, header: "t=1733486400,v1=\(goldenSignature)", secrets: [""], now: date(goldenTimestamp))
        }
    }
}
