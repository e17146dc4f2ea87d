import Foundation
import Postgres
import TestSupport

/// The repository's root, from this file's path.
func repositoryRoot(_ file: String = #filePath) -> URL {
    URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

var referenceMappingPath: String { repositoryRoot().appendingPathComponent("fixtures/reference/mapping.yaml").path }

/// Runs `ledgerlift` (on a thread of its own) and awaits it.
func ledgerlift(_ arguments: [String]) async throws -> LedgerliftBinary.Output {
    try await LedgerliftBinary.run(arguments)
}

struct StepFailed: Error, CustomStringConvertible {
    let arguments: [String]
    let output: LedgerliftBinary.Output
    var description: String { "\(arguments.prefix(2)) exited \(output.status): \(output.stderr)\(output.stdout)" }
}

/// Runs `ledgerlift` and requires exit status 0.
@discardableResult
func ledgerliftOK(_ arguments: [String]) async throws -> LedgerliftBinary.Output {
    let output = try await ledgerlift(arguments)
    guard output.status == 0 else { throw StepFailed(arguments: arguments, output: output) }
    return output
}

/// A legacy database with the reference fixture loaded and an initialized store.
func withLegacyAndStore<T>(
    _ label: String = #function, _ body: (_ legacy: String, _ store: String) async throws -> T
) async throws -> T {
    try await TestDatabase.withFresh(label + "_legacy") { legacy in
        try await TestDatabase.withFresh(label + "_store") { store in
            try await ledgerliftOK(["fixture", "load", "--dsn", legacy])
            try await ledgerliftOK(["store", "init", "--store", store])
            return try await body(legacy, store)
        }
    }
}

/// Runs `body` on a fresh connection to `dsn`.
@discardableResult
func withSession<T: Sendable>(_ dsn: String, _ body: @escaping @Sendable (Session) throws -> T) async throws -> T {
    let connection = try await Connection.connect(dsn)
    defer { connection.close() }
    return try await connection.withSession(body)
}

func jsonObject(_ text: String) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
}

func temporaryPath(_ suffix: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("dossier-\(UUID()).\(suffix)").path
}
