import Foundation
import Testing

@testable import Commands

/// docs/openapi.yaml has a request schema for every command, whose properties are exactly the
/// fields its decoder accepts (the Codable fields, snake_case, plus the optional `command`).
@Suite("serve: the OpenAPI command schemas")
struct OpenAPICommandSchemaTests {
    /// `create_customer` → `CreateCustomerCommand`, the schema's name in `components.schemas`.
    static func schemaName(_ command: String) -> String {
        command.split(separator: "_").map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined() + "Command"
    }

    /// The property names of `components.schemas.<name>` (four-space schema keys, eight-space
    /// property keys: the document's layout, which this reading holds it to).
    static func properties(of name: String, in text: String) -> [String]? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let start = lines.firstIndex(of: "    \(name):") else { return nil }
        var inProperties = false
        var found = [String]()
        for line in lines[(start + 1)...] {
            if line.hasPrefix("    "), !line.hasPrefix("     ") { break }  // the next schema
            if line == "      properties:" {
                inProperties = true
            } else if line.hasPrefix("      "), !line.hasPrefix("       ") {
                inProperties = false
            } else if inProperties, line.hasPrefix("        "), !line.hasPrefix("         "),
                let colon = line.firstIndex(of: ":")
            {
                found.append(String(line[line.index(line.startIndex, offsetBy: 8)..<colon]))
            }
        }
        return found
    }

    @Test func everyCommandHasASchemaWhosePropertiesAreItsCodableFields() throws {
        let text = try String(contentsOfFile: OpenAPIDocumentTests.documentPath, encoding: .utf8)
        for name in BillingCommand.names {
            let fields = try #require(BillingCommand.payloadTypes[name]?.fieldNames, "\(name) has no payload type")
            let documented = try #require(
                Self.properties(of: Self.schemaName(name), in: text), "no schema \(Self.schemaName(name))")
            #expect(Set(documented) == Set(fields + ["command"]), "\(name)")
            #expect(documented.count == fields.count + 1, "\(name): a property listed twice")
            #expect(text.contains("- $ref: \"#/components/schemas/\(Self.schemaName(name))\""), "\(name) not in anyOf")
        }
    }
}
