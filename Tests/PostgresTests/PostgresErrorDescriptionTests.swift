import Postgres
import TestSupport
import Testing

/// A `PostgresError`'s description goes into logs and error lines: it must not carry the row
/// values PostgreSQL's detail quotes; the debug description has everything.
@Suite("PostgresError: a description safe to log, a debug description with everything")
struct PostgresErrorDescriptionTests {
    @Test func aUniqueViolationsDescriptionNamesTheConstraintButNotTheRow() async throws {
        try await TestDatabase.withConnection { connection, _ in
            try await connection.executeScript(
                "CREATE TABLE people (email text CONSTRAINT people_email_key UNIQUE); INSERT INTO people VALUES ('ann@example.com')"
            )
            let error = try await #require(throws: PostgresError.self) {
                _ = try await connection.execute("INSERT INTO people VALUES ($1)", ["ann@example.com"])
            }
            #expect(
                error.description
                    == #"PostgreSQL 23505: duplicate key value violates unique constraint "people_email_key" (table public.people, constraint people_email_key)"#
            )
            #expect(!error.description.contains("ann@example.com"))
            #expect(!"\(error)".contains("\n"))
            #expect(
                error.debugDescription
                    == error.description + "\n  detail: Key (email)=(ann@example.com) already exists.\n"
                    + "  query: INSERT INTO people VALUES ($1)")
        }
    }

    @Test func aMultiLineMessageIsOneLine() {
        let error = PostgresError(
            code: .connectionFailed, message: "could not connect\n  server closed the connection\n")
        #expect(error.description == "PostgreSQL: could not connect server closed the connection")
        #expect(error.debugDescription == error.description)
    }
}
