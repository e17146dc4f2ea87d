import Billing
import Foundation
import Testing

/// The docs are the contract users write mapping files against: they must name every column and
/// every event the code knows.
@Suite("docs/ match the code")
struct DocumentationTests {
    static func read(_ name: String) throws -> String {
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while dir.path != "/" {
            let candidate = dir.appendingPathComponent("docs").appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: candidate.path) { return try String(contentsOf: candidate, encoding: .utf8) }
            dir = dir.deletingLastPathComponent()
        }
        throw CocoaError(.fileNoSuchFile)
    }

    @Test func canonicalModelDocumentsEveryColumnOfEveryEntity() throws {
        let doc = try Self.read("canonical-model.md")
        for entity in Entity.allCases {
            let section = try #require(doc.components(separatedBy: "## `\(entity.rawValue)`").dropFirst().first)
            let body = section.components(separatedBy: "\n## ").first!
            for column in entity.columns {
                #expect(body.contains("| `\(column.name)` |"), "\(entity).\(column.name) is not documented")
            }
            #expect(body.contains("ledgerlift_read.\(entity.tableName)"))
        }
    }

    @Test func eventCatalogDocumentsEveryEventType() throws {
        let doc = try Self.read("events.md")
        for type in BillingEventType.allCases {
            #expect(doc.contains("`\(type.rawValue)`"), "\(type.rawValue) is not documented")
        }
    }
}
