import Commands
import Foundation
import Server
import TestSupport
import Testing

/// docs/openapi.yaml describes exactly the routes the router registers, and validates.
@Suite("serve: the OpenAPI document")
struct OpenAPIDocumentTests {
    static let documentPath = packageRoot.appendingPathComponent("docs/openapi.yaml").path

    /// `METHOD /path` of every operation under `paths:` (two-space path keys, four-space
    /// method keys: the document's layout, which this reading holds it to).
    static func documentedRoutes() throws -> [ServeRoute] {
        let text = try String(contentsOfFile: documentPath, encoding: .utf8)
        var routes = [ServeRoute]()
        var inPaths = false
        var path: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if !line.hasPrefix(" ") && !line.isEmpty { inPaths = line == "paths:" }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), !line.hasPrefix("   "), line.hasSuffix(":") {
                path = String(line.dropFirst(2).dropLast())
            } else if line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":"), let path {
                let key = String(line.dropFirst(4).dropLast())
                if ["get", "put", "post", "delete", "patch", "head", "options"].contains(key) {
                    routes.append(ServeRoute(key.uppercased(), path))
                }
            }
        }
        return routes
    }

    @Test func everyRegisteredRouteIsDocumentedAndEveryDocumentedRouteIsRegistered() throws {
        let server = LedgerliftServer(ServeConfiguration(storeDSN: "postgresql://127.0.0.1/none"), commandHandler: nil)
        let registered = server.makeRouter().registered
        let documented = try Self.documentedRoutes()
        #expect(registered == LedgerliftServer.routes)
        #expect(Set(documented) == Set(registered), "documented \(documented), registered \(registered)")
        #expect(documented.count == registered.count)
    }

    @Test func theCommandRoutesNameEnumIsBillingCommandsNames() throws {
        let text = try String(contentsOfFile: Self.documentPath, encoding: .utf8)
        let start = try #require(text.range(of: "            enum:\n"))
        let names = text[start.upperBound...].split(separator: "\n").prefix { $0.hasPrefix("              - ") }
            .map { String($0.dropFirst("              - ".count)) }
        #expect(names == BillingCommand.names)
    }

    static var validator: [String]? {
        for candidate in [["openapi-spec-validator"], ["python3", "-m", "openapi_spec_validator"]] {
            if (try? run(candidate + ["--help"]).status) == 0 { return candidate }
        }
        return nil
    }

    @Test(.enabled(if: validator != nil, "openapi-spec-validator is not installed (make openapi-tools installs it)"))
    func theDocumentValidatesWithOpenAPISpecValidator() async throws {
        // The validator (python) runs on a thread of its own, not on a cooperative thread.
        let result = try await onThread { try Self.run(Self.validator! + [Self.documentPath]) }
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("OK"), "\(result.output)")
    }

    static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
