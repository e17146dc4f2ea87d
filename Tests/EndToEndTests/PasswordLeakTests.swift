import Foundation
import Postgres
import TestSupport
import Testing

/// Issue 11 §3: no output of any command — standard output, standard error, the diff's JSON,
/// Markdown and JUnit reports, the `--summary` file — ever holds a password, whatever shape the
/// connection string has. A DSN that is not a well-formed libpq URL or conninfo is not echoed
/// at all (not even masked): the error says why it is refused without quoting it.
@Suite("No password in any output of the binary, whatever the DSN looks like")
struct PasswordLeakTests {
    /// Distinctive, so a hit can only be a leak.
    static let password = "Sup3rS3cretPw"

    /// One malformed connection string and the reason the refusal must give.
    struct Form: CustomTestStringConvertible, Sendable {
        var dsn: String
        var reason: String
        var testDescription: String { dsn }
    }

    /// Every malformed shape issue 11 lists, and their neighbours. Each points at the test
    /// server, so a form libpq would misread as something else really reaches it.
    static var malformed: [Form] {
        let pw = password
        return [
            Form(
                dsn: "host=127.0.0.1 port=54329 passwd=\(pw)",
                reason: "unknown keyword 'passwd' (did you mean 'password'?)"),
            Form(
                dsn: "host=127.0.0.1 port=54329 pasword=\(pw)",
                reason: "unknown keyword 'pasword' (did you mean 'password'?)"),
            Form(
                dsn: "host=127.0.0.1 port=54329 pass=\(pw)", reason: "unknown keyword 'pass' (did you mean 'password'?)"
            ),
            Form(
                dsn: "host=127.0.0.1 port=54329 pwd=\(pw)", reason: "unknown keyword 'pwd' (did you mean 'password'?)"),
            Form(
                dsn: "host=127.0.0.1 port=54329 password:\(pw)",
                reason: "'password' is followed by ':' instead of '=' (write keyword=value)"),
            Form(
                dsn: "host=127.0.0.1 port=54329 password \(pw)",
                reason: "'password' is not followed by '=' (write keyword=value)"),
            Form(
                dsn: "host=127.0.0.1, port=54329, password=\(pw)",
                reason: "the value of 'host' ends with ',' (separate key=value pairs with spaces, not commas)"),
            Form(
                dsn: "host=127.0.0.1,port=54329,password=\(pw)",
                reason:
                    "the value of 'host' holds another key=value pair after ',' or ';' (separate pairs with spaces; quote a value that holds one)"
            ),
            Form(
                dsn: "host=127.0.0.1;port=54329;password=\(pw)",
                reason:
                    "the value of 'host' holds another key=value pair after ',' or ';' (separate pairs with spaces; quote a value that holds one)"
            ),
            Form(
                dsn: "Host=127.0.0.1;Port=54329;Password=\(pw)", reason: "unknown keyword 'Host' (did you mean 'host'?)"
            ),
            Form(
                dsn: "host=127.0.0.1 port=54329 password=\(pw) hunter2",
                reason:
                    "the value of 'password' is followed by a word without '=' (quote a value that holds spaces: key='a b')"
            ),
            Form(
                dsn: "host=127.0.0.1 port=54329 password='\(pw)",
                reason: "a quoted value has no closing quote"),
            Form(
                dsn: "postgress://postgres:\(pw)@127.0.0.1:54329/postgres",
                reason: "unknown scheme 'postgress' (expected postgresql:// or postgres://, or key=value pairs)"),
            Form(
                dsn: "Postgres://postgres:\(pw)@127.0.0.1:54329/postgres",
                reason: "the scheme must be written in lower case: postgresql:// or postgres://"),
            Form(
                dsn: "POSTGRESQL://postgres:\(pw)@127.0.0.1:54329/postgres",
                reason: "the scheme must be written in lower case: postgresql:// or postgres://"),
            Form(
                dsn: "pgsql://postgres:\(pw)@127.0.0.1:54329/postgres",
                reason: "unknown scheme 'pgsql' (expected postgresql:// or postgres://, or key=value pairs)"),
            Form(
                dsn: "jdbc:postgresql://127.0.0.1:54329/postgres?user=postgres&password=\(pw)",
                reason:
                    "a JDBC URL: remove the 'jdbc:' prefix (libpq reads postgresql://user:password@host:port/database)"),
            Form(
                dsn: " postgresql://postgres:\(pw)@127.0.0.1:54329/postgres",
                reason: "it starts with whitespace"),
            Form(
                dsn: "postgresql://postgres:\(pw)@127.0.0.1:54329/postgres ",
                reason: "it ends with whitespace"),
            Form(
                dsn: "postgres:\(pw)@127.0.0.1:54329/postgres",
                reason: "it has no scheme: a URL starts with postgresql:// or postgres://"),
            Form(
                dsn: "//postgres:\(pw)@127.0.0.1:54329/postgres",
                reason: "it has no scheme: a URL starts with postgresql:// or postgres://"),
            Form(
                dsn: pw,
                reason:
                    "neither a URL (postgresql://…) nor key=value pairs (for a database name alone, write dbname=NAME)"),
            Form(
                dsn: "postgresql://postgres:\(pw)%zz@127.0.0.1:54329/postgres",
                reason:
                    "an invalid percent escape ('%' must be followed by two hexadecimal digits; write '%' itself as %25)"
            ),
            Form(
                dsn: "postgresql://postgres:\(pw)@[127.0.0.1:54329/postgres",
                reason: "an IPv6 host address has no closing ']'"),
            Form(
                dsn: "postgresql://postgres:\(pw)@my@127.0.0.1:54329/postgres",
                reason: "more than one '@' before the host (write '@' in a user name or password as %40)"),
            Form(
                dsn: "postgresql://postgres:\(pw)/x@127.0.0.1:54329/postgres",
                reason: "the database name holds '@' (write '@' as %40, and '/' in a password as %2F)"),
            Form(
                dsn: "postgresql://127.0.0.1:54329/postgres?user=postgres&passwd=\(pw)",
                reason: "unknown URL parameter 'passwd' (did you mean 'password'?)"),
            Form(
                dsn: "postgresql://127.0.0.1:54329/postgres?user=postgres&password=\(pw)=x",
                reason: "a URL parameter holds more than one '=' (write '=' in a value as %3D)"),
            Form(
                dsn: "postgresql://127.0.0.1:54329/postgres?user=postgres&password",
                reason: "a URL parameter has no '=' (write key=value)"),
            Form(
                dsn: "postgresql://postgres:\(pw)@127.0.0.1:5o/postgres",
                reason: "the port is not a number"),
            Form(
                dsn: "postgresql://postgres:\(pw)@127.0.0.1:54329/postgres\npassword=\(pw)",
                reason: "it holds a line break or another control character"),
        ]
    }

    static var mapping: String {
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
            dir = dir.deletingLastPathComponent()
        }
        return dir.appendingPathComponent("fixtures/reference/mapping.yaml").path
    }

    /// A command line with the malformed DSN `bad` in one place; `good` is a working database.
    struct Invocation: CustomTestStringConvertible, Sendable {
        var name: String
        /// Which option holds the malformed DSN, as the refusal must name it.
        var option: String
        var arguments: @Sendable (_ bad: String, _ good: String, _ directory: String) -> [String]
        /// The files the command may write (reports), all of which must be free of the password.
        var files: [String] = []
        var testDescription: String { name }
    }

    static let invocations: [Invocation] = [
        Invocation(name: "diff --legacy, text", option: "--legacy") { bad, good, _ in
            ["diff", "--legacy", bad, "--store", good, "--mapping", mapping]
        },
        Invocation(
            name: "diff --legacy, json", option: "--legacy",
            arguments: { bad, good, dir in
                [
                    "diff", "--legacy", bad, "--store", good, "--mapping", mapping, "--format", "json", "--output",
                    dir + "/report.json",
                    "--summary", dir + "/summary.md",
                ]
            }, files: ["report.json", "summary.md"]),
        Invocation(
            name: "diff --legacy, markdown", option: "--legacy",
            arguments: { bad, good, dir in
                [
                    "diff", "--legacy", bad, "--store", good, "--mapping", mapping, "--format", "markdown", "--output",
                    dir + "/report.md",
                ]
            }, files: ["report.md"]),
        Invocation(
            name: "diff --legacy, junit", option: "--legacy",
            arguments: { bad, good, dir in
                [
                    "diff", "--legacy", bad, "--store", good, "--mapping", mapping, "--format", "junit", "--output",
                    dir + "/report.xml",
                    "--summary", dir + "/summary.md",
                ]
            }, files: ["report.xml", "summary.md"]),
        Invocation(
            name: "diff --store, junit", option: "--store",
            arguments: { bad, good, dir in
                [
                    "diff", "--legacy", good, "--store", bad, "--mapping", mapping, "--format", "junit",
                    "--output=" + dir + "/report.xml",
                ]
            }, files: ["report.xml"]),
        Invocation(name: "backfill --legacy", option: "--legacy") { bad, good, _ in
            ["backfill", "--legacy", bad, "--store", good, "--mapping", mapping]
        },
        Invocation(name: "backfill --store", option: "--store") { bad, good, _ in
            ["backfill", "--legacy", good, "--store", bad, "--mapping", mapping]
        },
        Invocation(name: "mapping check", option: "--legacy") { bad, _, _ in
            ["mapping", "check", "--legacy", bad, "--mapping", mapping]
        },
        Invocation(name: "store init", option: "--store") { bad, _, _ in ["store", "init", "--store", bad] },
        Invocation(name: "store stats", option: "--store") { bad, _, _ in ["store", "stats", "--store", bad] },
        Invocation(name: "events", option: "--store") { bad, _, _ in
            ["events", "--store", bad, "--stream", "invoice-1"]
        },
        Invocation(name: "project", option: "--store") { bad, _, _ in ["project", "--store", bad] },
        Invocation(name: "query balance", option: "--store") { bad, _, _ in
            ["query", "balance", "--store", bad, "--customer", "1"]
        },
        Invocation(name: "query invoice, json", option: "--store") { bad, _, _ in
            ["query", "invoice", "--store", bad, "1", "--format", "json"]
        },
        Invocation(name: "fixture load", option: "--dsn") { bad, _, _ in ["fixture", "load", "--dsn", bad] },
    ]

    /// Every malformed form in every command: the password appears nowhere, the DSN is not
    /// echoed, the command fails saying why, and writes no report but a JUnit error.
    @Test(arguments: invocations)
    func aMalformedDSNIsRefusedWithoutBeingEchoed(_ invocation: Invocation) async throws {
        try await TestDatabase.withFresh("leak_" + invocation.name) { good in
            #expect(try await LedgerliftBinary.run(["store", "init", "--store", good]).status == 0)
            for form in Self.malformed {
                let directory = try Self.temporaryDirectory()
                defer { try? FileManager.default.removeItem(atPath: directory) }
                let result = try await LedgerliftBinary.run(invocation.arguments(form.dsn, good, directory))
                let outputs =
                    [("stdout", result.stdout), ("stderr", result.stderr)]
                    + invocation.files.compactMap { file in
                        (try? String(contentsOfFile: directory + "/" + file, encoding: .utf8)).map { (file, $0) }
                    }
                #expect(result.status != 0, "\(form.dsn): exit \(result.status)")
                for (name, text) in outputs {
                    #expect(!text.contains(Self.password), "\(form.dsn): the password is in \(name):\n\(text)")
                    #expect(!text.contains(form.dsn), "\(form.dsn): the DSN is echoed in \(name):\n\(text)")
                }
                let refusal = "the \(invocation.option) DSN is not a PostgreSQL connection string: \(form.reason)"
                #expect(result.stderr.contains(refusal), "\(form.dsn): stderr lacks «\(refusal)»:\n\(result.stderr)")
                if invocation.files.contains("report.xml") {
                    let junit = (try? String(contentsOfFile: directory + "/report.xml", encoding: .utf8)) ?? ""
                    #expect(junit.contains("errors=\"1\""), "\(form.dsn): no JUnit error:\n\(junit)")
                    #expect(junit.contains(Self.xmlEscaped(refusal)), "\(form.dsn): JUnit lacks the reason:\n\(junit)")
                }
                if invocation.name.hasPrefix("diff") { #expect(result.status == 2, "\(form.dsn)") }
            }
        }
    }

    /// A DSN written without quotes in a shell splits into several arguments; the usage error
    /// that follows names the stray one, which holds the password.
    @Test func aUsageErrorNeverRepeatsAStrayPieceOfADSN() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let report = directory + "/report.xml"
        let commands: [[String]] = [
            [
                "diff", "--legacy", "host=127.0.0.1", "password=\(Self.password)", "--store", "host=x", "--mapping",
                Self.mapping,
                "--format", "junit", "--output", report,
            ],
            [
                "diff", "--legacy", "host=127.0.0.1", "password", "\(Self.password)", "--store", "host=x", "--mapping",
                Self.mapping, "--format", "junit", "--output", report,
            ],
            [
                "backfill", "--legacy", "host=127.0.0.1", "password=\(Self.password)", "--store", "host=x", "--mapping",
                Self.mapping,
            ],
            ["store", "init", "--store", "host=127.0.0.1", "password=\(Self.password)"],
            [
                "mapping", "check", "--legacy", "postgresql://u:\(Self.password)@h/db", "extra", "--mapping",
                Self.mapping,
            ],
        ]
        for arguments in commands {
            try? FileManager.default.removeItem(atPath: report)
            let result = try await LedgerliftBinary.run(arguments)
            #expect(result.status != 0)
            let junit = (try? String(contentsOfFile: report, encoding: .utf8)) ?? ""
            for (name, text) in [("stdout", result.stdout), ("stderr", result.stderr), ("junit", junit)] {
                #expect(!text.contains(Self.password), "\(arguments): the password is in \(name):\n\(text)")
            }
            #expect(result.stderr.contains("nexpected argument"), "\(result.stderr)")
            if arguments[0] == "diff" {
                #expect(result.status == 2)
                #expect(junit.contains("nexpected argument"), "\(junit)")
            }
        }
    }

    /// A well-formed DSN that carries a password (the test server trusts every connection, so
    /// it is accepted and ignored) through a whole migration: every output shows it masked.
    @Test func aWellFormedDSNIsPrintedMaskedThroughAWholeRun() async throws {
        try await TestDatabase.withFresh { plain in
            let dsn = try Self.withPassword(plain)
            let masked = ConnectionString.masked(dsn)
            #expect(masked.contains("****") && !masked.contains(Self.password))
            let directory = try Self.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            var outputs = [(String, String)]()
            func run(_ arguments: [String]) async throws {
                let result = try await LedgerliftBinary.run(arguments)
                #expect(result.status == 0, "\(arguments[0]): \(result.stderr)")
                outputs += [(arguments[0] + " stdout", result.stdout), (arguments[0] + " stderr", result.stderr)]
            }
            try await run(["fixture", "load", "--dsn", dsn])
            try await run(["store", "init", "--store", dsn])
            try await run(["mapping", "check", "--legacy", dsn, "--mapping", Self.mapping])
            try await run(
                ["backfill", "--legacy", dsn, "--store", dsn, "--mapping", Self.mapping, "--allow-quarantine"])
            try await run(["project", "--store", dsn])
            for format in ["text", "json", "markdown", "junit"] {
                let file = directory + "/report." + format
                try await run(
                    [
                        "diff", "--legacy", dsn, "--store", dsn, "--mapping", Self.mapping, "--format", format,
                        "--output", file,
                        "--summary", directory + "/summary.md",
                    ])
                let report = try String(contentsOfFile: file, encoding: .utf8)
                outputs.append((format + " report", report))
                #expect(report.contains(format == "junit" ? Self.xmlEscaped(masked) : masked), "\(format): \(report)")
            }
            outputs.append(("summary", try String(contentsOfFile: directory + "/summary.md", encoding: .utf8)))
            #expect(outputs.contains { $0.0 == "backfill stdout" && $0.1.contains(masked) })
            #expect(outputs.contains { $0.0 == "mapping stdout" && $0.1.contains(masked) })
            #expect(outputs.contains { $0.0 == "store stdout" && $0.1.contains(masked) })
            for (name, text) in outputs {
                #expect(!text.contains(Self.password), "the password is in \(name):\n\(text)")
            }
        }
    }

    // MARK: - Helpers

    /// `dsn` with the test password added (URL userinfo or a `password=` pair).
    static func withPassword(_ dsn: String) throws -> String {
        guard dsn.hasPrefix("postgresql://") || dsn.hasPrefix("postgres://") else {
            return dsn + " password=" + password
        }
        let schemeEnd = try #require(dsn.firstRange(of: "://")).upperBound
        let rest = dsn[schemeEnd...]
        let authority = rest.prefix { $0 != "/" && $0 != "?" }
        if let at = authority.firstIndex(of: "@") {
            let user = authority[..<at].prefix { $0 != ":" }
            return String(dsn[..<schemeEnd]) + user + ":" + password + String(dsn[at...])
        }
        return String(dsn[..<schemeEnd]) + ":" + password + "@" + String(rest)
    }

    static func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ll-leak-" + UUID().uuidString).path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func xmlEscaped(_ text: String) -> String {
        text.replacing("&", with: "&amp;").replacing("<", with: "&lt;").replacing(">", with: "&gt;")
            .replacing("\"", with: "&quot;").replacing("'", with: "&apos;")
    }
}
