import Testing

@testable import Postgres

/// Passwords in malformed connection strings: libpq cannot parse them, so it cannot say where
/// the password is, and its error often repeats the input.
@Suite("Masking passwords in malformed connection strings")
struct ConnectionStringMaskingTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var dsn: String
        /// Texts that must appear nowhere: the password and the pieces libpq may print alone.
        var secrets: [String]
        /// What the error must still say.
        var diagnostic: String?
        var testDescription: String { dsn }
    }

    static let malformed: [Case] = [
        // libpq: invalid percent-encoded token: "s3cr%zzet"
        Case(
            dsn: "postgresql://postgres:s3cr%zzet@127.0.0.1:54329/x", secrets: ["s3cr%zzet", "s3cr", "zzet"],
            diagnostic: "invalid percent-encoded token"),
        // libpq repeats the whole URI.
        Case(
            dsn: "postgresql://postgres:s3cret@[127.0.0.1:54329/x", secrets: ["s3cret"],
            diagnostic: #"end of string reached when looking for matching "]" in IPv6 host address"#),
        Case(
            dsn: "postgresql://postgres:s3%41cret@[127.0.0.1:54329/x", secrets: ["s3%41cret", "s3Acret", "41cret"],
            diagnostic: "IPv6 host address"),
        Case(
            dsn: "postgresql://postgres:s3cret@[]/x", secrets: ["s3cret"],
            diagnostic: "IPv6 host address may not be empty"),
        Case(
            dsn: "postgresql://postgres:s3cret@[::1]x/db", secrets: ["s3cret"], diagnostic: "unexpected character"),
        Case(
            dsn: "postgresql://postgres:s3%00cret@127.0.0.1:54329/x", secrets: ["s3%00cret", "00cret"],
            diagnostic: "forbidden value %00"),
        Case(
            dsn: "postgresql://postgres:s3cret@127.0.0.1:54329/x?password=p4ss%zz", secrets: ["s3cret", "p4ss"],
            diagnostic: "invalid percent-encoded token"),
        // libpq stops the userinfo at the first `@` and reads "w0rd@127.0.0.1" as the host.
        Case(
            dsn: "postgresql://postgres:p4ss@w0rd@127.0.0.1:54329/x", secrets: ["p4ss", "w0rd"],
            diagnostic: "could not translate host name"),
        // libpq stops the authority at the first `/` and reads "pa55" as the port.
        Case(
            dsn: "postgresql://postgres:pa55/w0rd@127.0.0.1:54329/x", secrets: ["pa55", "w0rd"],
            diagnostic: #"invalid integer value "****" for connection option "port""#),
        Case(
            dsn: "host=127.0.0.1 port=54329 password='s3cret", secrets: ["s3cret"],
            diagnostic: "unterminated quoted string"),
        Case(
            dsn: #"host=127.0.0.1 port=54329 password='s3\'cr et"#, secrets: ["s3", "cr et", "cr"],
            diagnostic: "unterminated quoted string"),
        Case(
            dsn: "host=127.0.0.1 password=s3cret port", secrets: ["s3cret"], diagnostic: #"missing "=" after "port""#),
        // An unquoted space: libpq complains about the rest of the password.
        Case(
            dsn: "host=127.0.0.1 port=54329 password=s3cret hunter2", secrets: ["s3cret", "hunter2"],
            diagnostic: #"missing "=" after "****""#),
        Case(
            dsn: "host=127.0.0.1 port=54329 password=s3cret sslmode=bogus", secrets: ["s3cret"],
            diagnostic: "invalid sslmode value"),
        // Parses, then fails to connect (nothing listens on the default port here).
        Case(dsn: "host=localhost password=s3cret port=", secrets: ["s3cret"], diagnostic: nil),
    ]

    @Test(arguments: malformed)
    func connectingFailsWithoutThePassword(_ example: Case) async throws {
        let error = try await #require(throws: PostgresError.self) {
            _ = try await Connection.connect(example.dsn)
        }
        #expect(error.code == .connectionFailed)
        let texts = [error.description, error.message, "\(error)", ConnectionString.masked(example.dsn)]
        for text in texts {
            for secret in example.secrets {
                #expect(!text.contains(secret), "\(secret) leaks in: \(text)")
            }
        }
        #expect(error.description.contains("could not connect to \(ConnectionString.masked(example.dsn))"))
        if let diagnostic = example.diagnostic {
            #expect(error.description.contains(diagnostic), "\(error.description)")
        }
    }

    @Test func connectBlockingScrubsToo() throws {
        let error = try #require(throws: PostgresError.self) {
            _ = try Connection.connectBlocking("postgresql://postgres:s3cr%zzet@127.0.0.1:54329/x")
        }
        #expect(!error.description.contains("s3cr"))
        #expect(!error.description.contains("zzet"))
        #expect(error.description.contains(#"invalid percent-encoded token: "****""#))
    }

    @Test func maskingHandlesMalformedURLs() {
        let masked = ConnectionString.masked
        #expect(
            masked("postgresql://postgres:s3cr%zzet@127.0.0.1:54329/x")
                == "postgresql://postgres:****@127.0.0.1:54329/x")
        #expect(
            masked("postgresql://postgres:s3cret@[127.0.0.1:54329/x") == "postgresql://postgres:****@[127.0.0.1:54329/x"
        )
        #expect(masked("postgresql://postgres:s3cret@[::1]:5/x") == "postgresql://postgres:****@[::1]:5/x")
        #expect(
            masked("postgresql://postgres:p4ss@w0rd@127.0.0.1:54329/x")
                == "postgresql://postgres:****@127.0.0.1:54329/x")
        #expect(masked("postgresql://us@er:p4ss@127.0.0.1/x") == "postgresql://us@er:****@127.0.0.1/x")
        #expect(
            masked("postgresql://postgres:pa55/w0rd@127.0.0.1:54329/x")
                == "postgresql://postgres:****@127.0.0.1:54329/x")
        #expect(
            masked("postgresql://postgres:pa55?w0rd@127.0.0.1:54329/x")
                == "postgresql://postgres:****@127.0.0.1:54329/x")
        #expect(masked("postgresql://postgres:s3cret@h") == "postgresql://postgres:****@h")
        #expect(
            masked("postgresql://postgres:s3cret@h?sslmode=require") == "postgresql://postgres:****@h?sslmode=require")
        #expect(
            masked("postgresql://postgres@h/x?password=p4ss%zz&sslmode=require")
                == "postgresql://postgres@h/x?password=****&sslmode=require")
        #expect(masked("postgresql://h/x?pass%77ord=s3cret") == "postgresql://h/x?pass%77ord=****")
        #expect(masked("postgresql://h/x?sslpassword=s3cret") == "postgresql://h/x?sslpassword=****")
        #expect(
            masked("postgresql://h/x?password=p4ss&w0rd&sslmode=require")
                == "postgresql://h/x?password=****&sslmode=require")
        #expect(masked("postgresql://u@h:5/d?application_name=x") == "postgresql://u@h:5/d?application_name=x")
    }

    @Test func maskingHandlesMalformedKeywordValueStrings() {
        let masked = ConnectionString.masked
        #expect(masked("host=localhost password=s3cret port=") == "host=localhost password=**** port=")
        #expect(masked("host=h password='s3cret") == "host=h password=****")
        #expect(masked(#"host=h password='s3\'cr et"#) == "host=h password=****")
        #expect(masked(#"host=h password='s3\'cr et' dbname=d"#) == "host=h password=**** dbname=d")
        #expect(masked("host=h password = s3cret dbname=d") == "host=h password=**** dbname=d")
        #expect(masked(#"host=h password=s3c\ ret port=5"#) == "host=h password=**** port=5")
        #expect(masked("host=h password=s3cret hunter2 port=5") == "host=h password=**** port=5")
        #expect(masked("host=h password=s3cret port") == "host=h password=**** port")
        #expect(masked("host=h password='s3cret'hunter2 port=5") == "host=h password=**** port=5")
        #expect(masked("host=h sslpassword=s3cret") == "host=h sslpassword=****")
        #expect(masked("host='a b'  dbname='unterminated") == "host='a b'  dbname='unterminated")
    }

    @Test func passwordIsReadFromTextLibpqRejects() {
        #expect(ConnectionString.password(in: "postgres://u:p%40ss@h/x") == "p@ss")
        #expect(ConnectionString.password(in: "postgresql://u:s3cr%zzet@h/x") == "s3cr%zzet")
        #expect(ConnectionString.password(in: "postgresql://u:s3%41cret@[h/x") == "s3Acret")
        #expect(ConnectionString.password(in: #"host=h password='s3\'cret"#) == "s3'cret")
        #expect(ConnectionString.password(in: "postgresql://u@[h/x") == nil)
    }

    @Test func scrubbingReplacesARepeatedDSNAsALastResort() {
        let dsn = "postgresql://u:s3cret@[h/x"
        let scrubbed = ConnectionString.scrub(#"bad URI: "\#(dsn)""#, dsn: dsn, secrets: [])
        #expect(scrubbed == #"bad URI: "postgresql://u:****@[h/x""#)
        // Short passwords are scrubbed where libpq quotes them, not everywhere.
        #expect(
            ConnectionString.scrub(#"invalid integer value "pw" for "port" of pwhost"#, secrets: ["pw"])
                == #"invalid integer value "****" for "port" of pwhost"#)
        #expect(ConnectionString.scrub(#"host name "rd@h""#, secrets: ["rd"]) == #"host name "****@h""#)
    }
}
