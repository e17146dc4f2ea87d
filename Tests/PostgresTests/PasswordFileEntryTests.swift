import CLibPQ
import Foundation
import Testing

@testable import Postgres

/// A connection string's password moved to a password file: the string left is safe on a
/// command line, and libpq finds the password again in the file.
@Suite("Connection strings split into a string without the password and a password file line")
struct PasswordFileEntryTests {
    @Test func aURLBecomesKeyValuesWithoutThePasswordAndALineWithIt() throws {
        let entry = try #require(ConnectionString.passwordFileEntry("postgresql://app:s%3Ac%5Cret@db.example:5433/billing?sslmode=prefer"))
        #expect(entry.withoutPassword == "dbname='billing' host='db.example' port='5433' sslmode='prefer' user='app'")
        #expect(entry.line == #"db.example:5433:billing:app:s\:c\\ret"#)
    }

    @Test func whatTheStringLeavesToDefaultsMatchesAnything() throws {
        let entry = try #require(ConnectionString.passwordFileEntry(#"password='it\'s' host=a,b"#))
        #expect(entry.withoutPassword == "host='a,b'")
        #expect(entry.line == "*:*:*:*:it's")
        let socket = try #require(ConnectionString.passwordFileEntry("host=/var/run/postgresql user=u password=p"))
        #expect(socket.line == "localhost:*:*:u:p")
    }

    @Test func nothingToMoveWithoutAPasswordOrWithALineBreakInIt() {
        #expect(ConnectionString.passwordFileEntry("postgresql://app@db/billing") == nil)
        #expect(ConnectionString.passwordFileEntry("host=db password='a\nb'") == nil)
        #expect(ConnectionString.passwordFileEntry("postgresql://app:pw@[db") == nil)
    }

    /// libpq's own reading: connected with the string without its password and the file, the
    /// connection holds the password (`PQpass`), though trust authentication never asks for it.
    @Test func libpqReadsThePasswordBackFromTheFile() throws {
        let dsn = try #require(ProcessInfo.processInfo.environment["LEDGERLIFT_TEST_DSN"])
        let password = #"Pw:with\odd 'chars'"#
        var withPassword = dsn.replacingOccurrences(of: "://postgres@", with: "://postgres:\(password.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)@")
        if !withPassword.contains(":Pw") { withPassword = dsn + " password='\(password.replacing("\\", with: "\\\\").replacing("'", with: "\\'"))'" }
        let entry = try #require(ConnectionString.passwordFileEntry(withPassword))
        #expect(!entry.withoutPassword.contains("Pw"))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ll-pgpass-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(FileManager.default.createFile(atPath: path, contents: Data((entry.line + "\n").utf8), attributes: [.posixPermissions: 0o600]))
        let connection = PQconnectdb(entry.withoutPassword + " passfile='\(path)'")
        defer { PQfinish(connection) }
        #expect(PQstatus(connection) == CONNECTION_OK)
        #expect(PQpass(connection).map { String(cString: $0) } == password)
    }
}
