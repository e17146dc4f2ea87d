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
        /// Why ``ConnectionString/validate(_:)`` refuses it; nil for a well-formed string that
        /// libpq or the server then refuses.
        var refusal: String?
        /// What the error must still say.
        var diagnostic: String?
        var testDescription: String { dsn }
    }

    static let malformed: [Case] = [
        // libpq would say: invalid percent-encoded token: "s3cr%zzet"
        Case(
            dsn: "postgresql://postgres:s3cr%zzet@127.0.0.1:54329/x", secrets: ["s3cr%zzet", "s3cr", "zzet"],
            refusal: "an invalid percent escape ('%' must be followed by two hexadecimal digits; write '%' itself as %25)"),
        // libpq would repeat the whole URI.
        Case(
            dsn: "postgresql://postgres:s3cret@[127.0.0.1:54329/x", secrets: ["s3cret"],
            refusal: "an IPv6 host address has no closing ']'"),
        Case(
            dsn: "postgresql://postgres:s3%41cret@[127.0.0.1:54329/x", secrets: ["s3%41cret", "s3Acret", "41cret"],
            refusal: "an IPv6 host address has no closing ']'"),
        Case(
            dsn: "postgresql://postgres:s3cret@[]/x", secrets: ["s3cret"], refusal: "an empty IPv6 host address '[]'"),
        Case(
            dsn: "postgresql://postgres:s3cret@[::1]x/db", secrets: ["s3cret"],
            refusal: "an unexpected character after the host (expected ':' and a port, or '/')"),
        Case(
            dsn: "postgresql://postgres:s3%00cret@127.0.0.1:54329/x", secrets: ["s3%00cret", "00cret"],
            refusal: "a %00 escape (a NUL character)"),
        Case(
            dsn: "postgresql://postgres:s3cret@127.0.0.1:54329/x?password=p4ss%zz", secrets: ["s3cret", "p4ss"],
            refusal: "an invalid percent escape ('%' must be followed by two hexadecimal digits; write '%' itself as %25)"),
        // libpq would stop the user info at the first `@` and read "w0rd@127.0.0.1" as the host.
        Case(
            dsn: "postgresql://postgres:p4ss@w0rd@127.0.0.1:54329/x", secrets: ["p4ss", "w0rd"],
            refusal: "more than one '@' before the host (write '@' in a user name or password as %40)"),
        // libpq would stop the authority at the first `/` and read "pa55" as the port.
        Case(
            dsn: "postgresql://postgres:pa55/w0rd@127.0.0.1:54329/x", secrets: ["pa55", "w0rd"],
            refusal: "the database name holds '@' (write '@' as %40, and '/' in a password as %2F)"),
        Case(
            dsn: "host=127.0.0.1 port=54329 password='s3cret", secrets: ["s3cret"],
            refusal: "a quoted value has no closing quote"),
        Case(
            dsn: #"host=127.0.0.1 port=54329 password='s3\'cr et"#, secrets: ["s3", "cr et", "cr"],
            refusal: "a quoted value has no closing quote"),
        Case(
            dsn: "host=127.0.0.1 password=s3cret port", secrets: ["s3cret"],
            refusal: "'port' is not followed by '=' (write keyword=value)"),
        // An unquoted space: libpq would complain about the rest of the password.
        Case(
            dsn: "host=127.0.0.1 port=54329 password=s3cret hunter2", secrets: ["s3cret", "hunter2"],
            refusal: "the value of 'password' is followed by a word without '=' (quote a value that holds spaces: key='a b')"),
        // Well formed: libpq refuses the value when connecting, and says so.
        Case(
            dsn: "host=127.0.0.1 port=54329 password=s3cret sslmode=bogus", secrets: ["s3cret"],
            diagnostic: "invalid sslmode value"),
        // Well formed, then fails to connect (nothing listens on the default port here).
        Case(dsn: "host=localhost password=s3cret port=", secrets: ["s3cret"]),
    ]

    @Test(arguments: malformed)
    func connectingFailsWithoutThePassword(_ example: Case) async throws {
        let error = try await #require(throws: PostgresError.self) {
            _ = try await Connection.connect(example.dsn)
        }
        let texts = [error.description, error.message, "\(error)", ConnectionString.masked(example.dsn)]
        for text in texts {
            for secret in example.secrets {
                #expect(!text.contains(secret), "\(secret) leaks in: \(text)")
            }
        }
        if let refusal = example.refusal {
            #expect(error.code == .invalidConnectionString)
            #expect(error.connectionString == ConnectionStringError(reason: refusal))
            #expect(error.description == "PostgreSQL: could not connect: not a PostgreSQL connection string: \(refusal)")
            #expect(ConnectionString.masked(example.dsn) == ConnectionString.unprintable)
        } else {
            #expect(error.code == .connectionFailed)
            #expect(error.description.contains("could not connect to \(ConnectionString.masked(example.dsn))"))
            #expect(ConnectionString.masked(example.dsn).contains("password=****"))
        }
        if let diagnostic = example.diagnostic {
            #expect(error.description.contains(diagnostic), "\(error.description)")
        }
    }

    @Test func connectBlockingRefusesToo() throws {
        let error = try #require(throws: PostgresError.self) {
            _ = try Connection.connectBlocking("postgresql://postgres:s3cr%zzet@127.0.0.1:54329/x")
        }
        #expect(!error.description.contains("s3cr"))
        #expect(!error.description.contains("zzet"))
        #expect(error.code == .invalidConnectionString)
    }

    /// The raw masking scrubbing falls back on, for text libpq rejects.
    @Test func rawMaskingHandlesMalformedURLs() {
        let masked = ConnectionString.maskedText
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

    @Test func rawMaskingHandlesMalformedKeywordValueStrings() {
        let masked = ConnectionString.maskedText
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

/// Issue 11 §3: a connection string that is not a well-formed libpq URL or conninfo is never
/// printed, not even masked — the refusal says why without quoting it; a well-formed one is
/// printed masked.
@Suite("Validating connection strings before libpq or a message sees them")
struct ConnectionStringValidationTests {
    static let password = "Sup3rS3cretPw"

    struct Form: CustomTestStringConvertible, Sendable {
        var dsn: String
        var reason: String
        var testDescription: String { dsn }
    }

    static let malformed: [Form] = {
        let pw = password
        let host = "127.0.0.1:54329/postgres"
        let pair = "holds another key=value pair after ',' or ';' (separate pairs with spaces; quote a value that holds one)"
        return [
            Form(dsn: "host=h passwd=\(pw)", reason: "unknown keyword 'passwd' (did you mean 'password'?)"),
            Form(dsn: "host=h pasword=\(pw)", reason: "unknown keyword 'pasword' (did you mean 'password'?)"),
            Form(dsn: "host=h pass=\(pw)", reason: "unknown keyword 'pass' (did you mean 'password'?)"),
            Form(dsn: "host=h pwd=\(pw)", reason: "unknown keyword 'pwd' (did you mean 'password'?)"),
            Form(dsn: "host=h PASSWORD=\(pw)", reason: "unknown keyword 'PASSWORD' (did you mean 'password'?)"),
            Form(dsn: "host=h username=u password=\(pw)", reason: "unknown keyword 'username' (did you mean 'user'?)"),
            Form(dsn: "host=h \(pw)=x", reason: "the 2nd key=value pair has an unknown keyword"),
            Form(dsn: "host=h password:\(pw)", reason: "'password' is followed by ':' instead of '=' (write keyword=value)"),
            Form(dsn: "host=h password \(pw)", reason: "'password' is not followed by '=' (write keyword=value)"),
            Form(dsn: "host=h user=u \(pw)", reason: "the value of 'user' is followed by a word without '=' (quote a value that holds spaces: key='a b')"),
            Form(dsn: "host='h' \(pw)", reason: "the 2nd item is not a key=value pair"),
            Form(dsn: "host=h, password=\(pw)", reason: "the value of 'host' ends with ',' (separate key=value pairs with spaces, not commas)"),
            Form(dsn: "host=h; password=\(pw)", reason: "the value of 'host' ends with ';' (separate key=value pairs with spaces, not semicolons)"),
            Form(dsn: "password=\(pw), host=h", reason: "the value of 'password' ends with ',' (separate key=value pairs with spaces, not commas)"),
            Form(dsn: "host=h,password=\(pw)", reason: "the value of 'host' " + pair),
            Form(dsn: "host=h;password=\(pw)", reason: "the value of 'host' " + pair),
            Form(dsn: "Host=h;Password=\(pw)", reason: "unknown keyword 'Host' (did you mean 'host'?)"),
            Form(dsn: "host=h password='\(pw)", reason: "a quoted value has no closing quote"),
            Form(dsn: "host=h dbname=postgresql://u:\(pw)@h/db", reason: "the database name is itself a connection string (pass the URL or key=value pairs alone)"),
            Form(dsn: "host=h port=5o password=\(pw)", reason: "the port is not a number"),
            Form(dsn: "postgress://u:\(pw)@\(host)", reason: "unknown scheme 'postgress' (expected postgresql:// or postgres://, or key=value pairs)"),
            Form(dsn: "Postgres://u:\(pw)@\(host)", reason: "the scheme must be written in lower case: postgresql:// or postgres://"),
            Form(dsn: "POSTGRESQL://u:\(pw)@\(host)", reason: "the scheme must be written in lower case: postgresql:// or postgres://"),
            Form(dsn: "pgsql://u:\(pw)@\(host)", reason: "unknown scheme 'pgsql' (expected postgresql:// or postgres://, or key=value pairs)"),
            Form(dsn: "mysql://u:\(pw)@\(host)", reason: "unknown scheme 'mysql' (expected postgresql:// or postgres://, or key=value pairs)"),
            Form(dsn: "pg sql://u:\(pw)@\(host)", reason: "it has no scheme: a URL starts with postgresql:// or postgres://"),
            Form(dsn: "jdbc:postgresql://\(host)?user=u&password=\(pw)", reason: "a JDBC URL: remove the 'jdbc:' prefix (libpq reads postgresql://user:password@host:port/database)"),
            Form(dsn: "JDBC:postgresql://\(host)?password=\(pw)", reason: "a JDBC URL: remove the 'jdbc:' prefix (libpq reads postgresql://user:password@host:port/database)"),
            Form(dsn: " postgresql://u:\(pw)@\(host)", reason: "it starts with whitespace"),
            Form(dsn: "\thost=h password=\(pw)", reason: "it starts with whitespace"),
            Form(dsn: "postgresql://u:\(pw)@\(host) ", reason: "it ends with whitespace"),
            Form(dsn: "postgresql://u:\(pw)@\(host)\n", reason: "it holds a line break or another control character"),
            Form(dsn: "host=h\0password=\(pw)", reason: "it holds a line break or another control character"),
            Form(dsn: "", reason: "it is empty"),
            Form(dsn: "u:\(pw)@\(host)", reason: "it has no scheme: a URL starts with postgresql:// or postgres://"),
            Form(dsn: "//u:\(pw)@\(host)", reason: "it has no scheme: a URL starts with postgresql:// or postgres://"),
            Form(dsn: "u:\(pw)@\(host)?sslmode=require", reason: "it has no scheme: a URL starts with postgresql:// or postgres://"),
            Form(dsn: pw, reason: "neither a URL (postgresql://…) nor key=value pairs (for a database name alone, write dbname=NAME)"),
            Form(dsn: "postgresql://u:\(pw)%zz@\(host)", reason: "an invalid percent escape ('%' must be followed by two hexadecimal digits; write '%' itself as %25)"),
            Form(dsn: "postgresql://u:\(pw)@[127.0.0.1:54329/postgres", reason: "an IPv6 host address has no closing ']'"),
            Form(dsn: "postgresql://u:\(pw)@my@\(host)", reason: "more than one '@' before the host (write '@' in a user name or password as %40)"),
            Form(dsn: "postgresql://u:\(pw)/x@\(host)", reason: "the database name holds '@' (write '@' as %40, and '/' in a password as %2F)"),
            Form(dsn: "postgresql://127.0.0.1:54329?password=a@\(pw)", reason: "an '@' in a URL parameter before any '/' (write '@' as %40)"),
            Form(dsn: "postgresql://\(host)?passwd=\(pw)", reason: "unknown URL parameter 'passwd' (did you mean 'password'?)"),
            Form(dsn: "postgresql://\(host)?\(pw)x=1", reason: "an unknown URL parameter"),
            Form(dsn: "postgresql://\(host)?password=\(pw)=x", reason: "a URL parameter holds more than one '=' (write '=' in a value as %3D)"),
            Form(dsn: "postgresql://\(host)?sslmode=require&\(pw)", reason: "a URL parameter has no '=' (write key=value)"),
            Form(dsn: "postgresql://u:\(pw)@127.0.0.1:5o/postgres", reason: "the port is not a number"),
            Form(dsn: "postgresql://u:\(pw)@h/host%3Dx", reason: "the database name is itself a connection string (pass the URL or key=value pairs alone)"),
        ]
    }()

    @Test(arguments: malformed)
    func aMalformedStringIsRefusedWithAReasonThatQuotesNothing(_ form: Form) {
        #expect(throws: ConnectionStringError(reason: form.reason)) { try ConnectionString.validate(form.dsn) }
        #expect(!form.reason.contains(Self.password))
        #expect(!ConnectionString.isWellFormed(form.dsn))
        #expect(ConnectionString.masked(form.dsn) == ConnectionString.unprintable)
    }

    @Test(arguments: malformed)
    func connectingToAMalformedStringSendsNothingAndSaysWhy(_ form: Form) async throws {
        let error = try await #require(throws: PostgresError.self) { _ = try await Connection.connect(form.dsn) }
        #expect(error.code == .invalidConnectionString)
        #expect(!error.isConnectionLost)
        #expect(error.connectionString?.naming("the --store DSN") == "the --store DSN is not a PostgreSQL connection string: \(form.reason)")
        #expect(!error.description.contains(Self.password))
    }

    /// Every shape libpq documents stays accepted, and prints with its passwords masked.
    @Test func wellFormedStringsAreAcceptedAndPrintedMasked() throws {
        let pw = Self.password
        let cases: [(dsn: String, masked: String)] = [
            ("postgresql://u:\(pw)@h:5432/db", "postgresql://u:****@h:5432/db"),
            ("postgres://u:\(pw)@h/db?sslmode=require", "postgres://u:****@h/db?sslmode=require"),
            ("postgresql://u:p%40ss%2Fw0rd@h/db", "postgresql://u:****@h/db"),
            ("postgresql://h/db?user=u&password=\(pw)&ssl=true", "postgresql://h/db?user=u&password=****&ssl=true"),
            ("postgresql://u@[::1]:5432,h2:5433/db?target_session_attrs=read-write", "postgresql://u@[::1]:5432,h2:5433/db?target_session_attrs=read-write"),
            ("postgresql:///db?host=/var/run/postgresql", "postgresql:///db?host=/var/run/postgresql"),
            ("postgresql://", "postgresql://"),
            ("postgresql://h/db%40x", "postgresql://h/db%40x"),
            ("postgresql://h/db?", "postgresql://h/db?"),
            ("host=h port=5432 user=u password=\(pw) dbname=db", "host=h port=5432 user=u password=**** dbname=db"),
            ("host = h password = \(pw)", "host = h password=****"),
            ("host=h password='a b,c;d=e' dbname=d", "host=h password=**** dbname=d"),
            (#"host=h password=a\ b"#, "host=h password=****"),
            ("host=h password=YWJj== sslmode=require", "host=h password=**** sslmode=require"),
            ("host=a,b port=5432,5433 dbname=d", "host=a,b port=5432,5433 dbname=d"),
            ("host=/var/run/postgresql dbname=d", "host=/var/run/postgresql dbname=d"),
            ("dbname=billing", "dbname=billing"),
            ("host=h dbname=a dbname='b'", "host=h dbname=a dbname='b'"),
            ("host=h options='-c search_path=x'", "host=h options='-c search_path=x'"),
            ("host=h port=", "host=h port="),
            ("host=h\tport=5432", "host=h\tport=5432"),
        ]
        for (dsn, masked) in cases {
            #expect(throws: Never.self, "\(dsn)") { try ConnectionString.validate(dsn) }
            #expect(ConnectionString.masked(dsn) == masked)
        }
        // What TestDatabase and `withDatabase` build is well formed.
        #expect(ConnectionString.isWellFormed(ConnectionString.withDatabase("postgresql://u:\(pw)@h:5/a?sslmode=disable", "b c")))
        #expect(ConnectionString.isWellFormed(ConnectionString.withDatabase("host=h password=\(pw)", "it's")))
    }

    /// libpq's own parse errors quote the text; what replaces them does not.
    @Test func libpqParseErrorsAreReplacedByWordsOfOurOwn() {
        let messages = [
            #"missing "=" after "Sup3rS3cretPw" in connection info string"#,
            #"invalid connection option "Sup3rS3cretPw""#,
            #"invalid URI query parameter: "Sup3rS3cretPw""#,
            #"extra key/value separator "=" in URI query parameter: "password=Sup3rS3cretPw=x""#,
            #"something libpq says one day: "Sup3rS3cretPw""#,
        ]
        for message in messages {
            let reason = ConnectionString.libpqParseFailure(message)
            #expect(!reason.contains(Self.password), "\(reason)")
        }
        #expect(ConnectionString.libpqParseFailure("anything new") == "libpq cannot parse it")
    }

    @Test func onlyWordsCloseToAKeywordAreEverNamed() {
        #expect(ConnectionString.suggestion(for: "passwd") == "password")
        #expect(ConnectionString.suggestion(for: "pasword") == "password")
        #expect(ConnectionString.suggestion(for: "sslmdoe") == "sslmode")
        #expect(ConnectionString.suggestion(for: "Host") == "host")
        #expect(ConnectionString.suggestion(for: "Sup3rS3cretPw") == nil)
        #expect(ConnectionString.suggestion(for: "hunter") == nil)
        #expect(ConnectionString.suggestion(for: "xyz") == nil)
    }
}
