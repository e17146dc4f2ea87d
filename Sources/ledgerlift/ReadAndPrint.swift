import ArgumentParser
import Billing
import Foundation
import Postgres

/// The shape of every command that answers a question from the store: connect, read in one
/// session, print the answer as a table or JSON. One place, so each command is only its
/// question and its two renderings, and every one closes its connection the same way.
extension StoreOptions {
    /// Connects, runs `body` in one session and closes the connection.
    func read<T: Sendable>(_ body: @escaping @Sendable (Session) throws -> T) async throws -> T {
        let connection = try await connect()
        defer { connection.close() }
        return try await connection.withSession(body)
    }
}

extension ReadModelOptions {
    /// Reads with the read-model reader of `--read-schema`, and prints the answer in
    /// `--format` (no table at all when `table` returns `nil`: nothing was found).
    ///
    /// - Returns: the answer, for a command whose exit status depends on it (not found: 1).
    @discardableResult
    func answer<T: Sendable>(
        _ query: @escaping @Sendable (ReadModelReader, Session) throws -> T, json: (T) -> JSONText,
        table: (T) -> String?
    ) async throws -> T {
        let reader = self.reader
        let result = try await store.read { try query(reader, $0) }
        format.print(json: { json(result) }, table: { table(result) })
        return result
    }
}

extension OutputFormat {
    /// Prints the one rendering this format asks for (a `nil` table prints nothing).
    func print(json: () -> JSONText, table: () -> String?) {
        switch self {
        case .json: Swift.print(json().rendered)
        case .table: if let text = table() { Swift.print(text) }
        }
    }
}

/// A line on standard error: what the user should read when standard output is the answer.
func printToStandardError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
