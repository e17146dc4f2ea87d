import Foundation
import TestSupport
import Testing

@testable import Server

/// A problem document never echoes kilobytes of the request: what it quotes is clipped to 200
/// characters, a `detail` to 1,000; and a request the HTTP parser refuses (a 100,000-character
/// path) is a problem document too, not an empty 400.
@Suite("serve: problem documents are bounded")
struct ProblemBoundsTests {
    @Test func anUnknownFieldNamedWithAHundredThousandCharactersIsClippedAndTheRealFieldsStillListed() throws {
        let name = String(repeating: "x", count: 100_000)
        do {
            _ = try ExecutorCommands.decode(
                name: "create_customer", body: #"{"customer_id":"c","at":"2025-01-02T00:00:00Z","\#(name)":1}"#)
            Issue.record("a body with an unknown field decoded")
        } catch {
            #expect(error.code == "invalid_body")
            #expect(error.detail.count <= Problem.maximumDetailLength, "\(error.detail.count) characters")
            #expect(error.detail.contains(String(repeating: "x", count: 200) + "…"))
            #expect(!error.detail.contains(String(repeating: "x", count: 201)))
            #expect(error.detail.contains("its fields are at, currency, customer_id"), "\(error.detail)")
        }
    }

    @Test func aDetailIsAtMostAThousandCharactersAndQuotedInputTwoHundred() {
        let long = Problem.invalidBody(String(repeating: "d", count: 5000))
        #expect(long.detail == String(repeating: "d", count: 1000) + "…")
        #expect(Problem.printable(String(repeating: "p", count: 300)) == String(repeating: "p", count: 200) + "…")
        #expect(Problem.printable("short") == "short")
    }

    @Test func aLongPathIsQuotedClippedInItsProblemDocument() async throws {
        try await withEmptyStore { store in
            try await withServer(ServeConfiguration(storeDSN: store, projects: false)) { _, client in
                // Under the parser's limit: routed, 404, the path quoted clipped.
                let long = try await client.get("/" + String(repeating: "a", count: 5000))
                #expect(long.status == 404)
                #expect(long.header("Content-Type") == "application/problem+json")
                #expect(try long.json["code"] as? String == "route_not_found")
                let detail = try #require(try long.json["detail"] as? String)
                #expect(detail.contains(String(repeating: "a", count: 199) + "…"), "\(detail)")
                #expect(detail.count <= Problem.maximumDetailLength)
                // Over the parser's limit (80 KiB): no request to route, and still a problem document.
                let huge = try await client.get("/" + String(repeating: "a", count: 100_000))
                #expect(huge.status == 400)
                #expect(huge.header("Content-Type") == "application/problem+json")
                #expect(try huge.json["code"] as? String == "request_head_too_large", "\(huge.body)")
                #expect(try huge.json["status"] as? Int == 400)
                // The server still answers afterwards.
                #expect(try await client.get("/health").status == 200)
            }
        }
    }
}
