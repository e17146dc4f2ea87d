import CLibPQ
import Foundation
import Testing

@testable import Postgres

/// A connection string's password moved to a password file: the string left is safe on a
/// command line, and libpq finds the password again in the file.
@Suite("Connection strings split into a string without the password and a password file line")
struct PasswordFileEntryTests {
    static func entry(_ dsn: String, _ environment: [String: String] = [:]) -> ConnectionString.PasswordFileEntry? {
        ConnectionString.passwordFileEntry(dsn, environment: environment, osUser: "os")
    }

    @Test func aURLBecomesKeyValuesWithoutThePasswordAndALineWithIt() throws {
        let entry = try #require(Self.entry("postgresql://app:s%3Ac%5Cret@db.example:5433/billing?sslmode=prefer"))
        #expect(entry.withoutPassword == "dbname='billing' host='db.example' port='5433' sslmode='prefer' user='app'")
        #expect(entry.lines == [#"db.example:5433:billing:app:s\:c\\ret"#])
    }

    /// Exact lines, resolved as libpq resolves what the string leaves out: a wildcard would also
    /// answer for another connection, ahead of the operator's own password file.
    @Test func whatTheStringLeavesOutIsResolvedAsLibpqDoes() throws {
        let bare = try #require(Self.entry(#"password='it\'s'"#))
        #expect(bare.withoutPassword == "")
        #expect(bare.lines == ["localhost:5432:os:os:it's"])
        let environment = try #require(Self.entry("password=p", ["PGHOST": "h", "PGPORT": "6000", "PGUSER": "u", "PGDATABASE": "d"]))
        #expect(environment.lines == ["h:6000:d:u:p"])
        let address = try #require(Self.entry("hostaddr=10.0.0.1 user=u password=p"))
        #expect(address.lines == ["10.0.0.1:5432:u:u:p"])
        let service = try #require(Self.entry("service=billing password=p"))
        #expect(service.lines == ["*:*:*:*:p"])
    }

    /// libpq looks a socket directory up by its path, or as `localhost` for its compiled-in one;
    /// a host list is looked up host by host, with its port.
    @Test func socketDirectoriesAndHostListsGetALineEach() throws {
        let socket = try #require(Self.entry("host=/var/run/postgresql user=u password=p"))
        #expect(socket.lines == ["/var/run/postgresql:5432:u:u:p", "localhost:5432:u:u:p"])
        let list = try #require(Self.entry("postgresql://u:p@a:1,b:2/d"))
        #expect(list.lines == ["a:1:d:u:p", "b:2:d:u:p"])
        let onePort = try #require(Self.entry("host=/tmp/s,db port=7 dbname=d user=u password=p"))
        #expect(onePort.lines == ["/tmp/s:7:d:u:p", "localhost:7:d:u:p", "db:7:d:u:p"])
    }

    @Test func nothingToMoveWithoutAPasswordOrWithALineBreakInIt() {
        #expect(Self.entry("postgresql://app@db/billing") == nil)
        #expect(Self.entry("host=db password='a\nb'") == nil)
        #expect(Self.entry("postgresql://app:pw@[db") == nil)
    }

    /// libpq's own reading: connected with the string without its password and the file, the
    /// connection holds the password (`PQpass`), though trust authentication never asks for it.
    @Test func libpqReadsThePasswordBackFromTheFile() throws {
        let dsn = try #require(ProcessInfo.processInfo.environment["LEDGERLIFT_TEST_DSN"])
        let password = #"Pw:with\odd 'chars'"#
        var withPassword = dsn.replacingOccurrences(of: "://postgres@", with: "://postgres:\(password.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)@")
        if !withPassword.contains(":Pw") { withPassword = dsn + " password='\(password.replacing("\\", with: "\\\\").replacing("'", with: "\\'"))'" }
        let entry = try #require(Self.entry(withPassword))
        #expect(!entry.withoutPassword.contains("Pw"))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ll-pgpass-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(FileManager.default.createFile(atPath: path, contents: Data((entry.lines.joined(separator: "\n") + "\n").utf8), attributes: [.posixPermissions: 0o600]))
        let connection = PQconnectdb(entry.withoutPassword + " passfile='\(path)'")
        defer { PQfinish(connection) }
        #expect(PQstatus(connection) == CONNECTION_OK)
        #expect(PQpass(connection).map { String(cString: $0) } == password)
    }
}
