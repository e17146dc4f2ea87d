import Foundation
import Postgres
import TestSupport
import Testing

/// What a new user sees from the binary: unknown commands, unknown customers, log lines and
/// progress in a pipe, and the demo.
@Suite("ledgerlift as a new user meets it, run as a binary")
struct CLIOutputTests {
    static var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    static var mapping: String { repository.appendingPathComponent("fixtures/reference/mapping.yaml").path }

    @Test func anUnknownCommandExitsTwoNamingItAndTheNearestCommand() async throws {
        let typo = try await LedgerliftBinary.run(["stor", "init", "--store", "dbname=x"])
        #expect(typo.status == 2)
        #expect(typo.stdout.isEmpty)
        #expect(typo.stderr == "Error: unknown command 'stor' (did you mean 'store'?)\nSee 'ledgerlift --help'.\n")

        // Not the top-level help and exit 0, as when `--help` followed an unknown word.
        let unknown = try await LedgerliftBinary.run(["rollout", "--help"])
        #expect(unknown.status == 2)
        #expect(unknown.stdout.isEmpty)
        #expect(unknown.stderr.hasPrefix("Error: unknown command 'rollout'; the commands are: fixture, store, "))
    }

    /// Backfill, project and diff on the reference fixture with stderr piped: no escape codes
    /// and no per-range lines by default; `--log-level debug` asks for them, with metadata.
    @Test func aPipedLogGetsNoEscapeCodesAndOnlyTheLinesItAskedFor() async throws {
        try await TestDatabase.withFresh("log_legacy") { legacy in
            try await TestDatabase.withFresh("log_store") { store in
                #expect(try await LedgerliftBinary.run(["fixture", "load", "--dsn", legacy]).status == 0)
                #expect(try await LedgerliftBinary.run(["store", "init", "--store", store]).status == 0)
                let dry = try await LedgerliftBinary.run(
                    ["backfill", "--legacy", legacy, "--store", store, "--mapping", Self.mapping, "--dry-run"])
                #expect(dry.status == 0, "\(dry.stderr)")
                #expect(dry.stderr.isEmpty, "\(dry.stderr)")

                let backfill = try await LedgerliftBinary.run(
                    [
                        "--log-level", "debug", "backfill", "--legacy", legacy, "--store", store, "--mapping",
                        Self.mapping,
                    ])
                #expect(backfill.status == 0, "\(backfill.stderr)")
                #expect(!backfill.stderr.contains("\u{1B}"))
                let ranges = backfill.stderr.split(separator: "\n").filter { $0.contains("range done") }
                #expect(!ranges.isEmpty)
                #expect(
                    ranges.allSatisfy {
                        $0.contains("run_id=backfill-") && $0.contains("entity=") && $0.contains("range=")
                    })
                #expect(backfill.stderr.contains("entity done"))

                let project = try await LedgerliftBinary.run(["project", "--store", store, "--log-level", "debug"])
                #expect(project.status == 0, "\(project.stderr)")
                #expect(project.stdout.hasPrefix("read models ledgerlift_read: built from 1,080 events"))
                #expect(project.stderr.contains("batch projected"))
                #expect(
                    project.stderr.contains("consumer=ledgerlift_read_next") && project.stderr.contains("position="))

                let diff = try await LedgerliftBinary.run(
                    ["diff", "--legacy", legacy, "--store", store, "--mapping", Self.mapping])
                #expect(diff.status == 0, "\(diff.stderr)")
                // The text report on stdout says the verdict; nothing else repeats it.
                #expect(diff.stderr.isEmpty, "\(diff.stderr)")
                #expect(diff.stdout.hasSuffix(")\n") && diff.stdout.contains("\nCLEAN: 0 differences"))

                let logged = try await LedgerliftBinary.run(
                    [
                        "diff", "--legacy", legacy, "--store", store, "--mapping", Self.mapping, "--log-level", "info",
                        "--entity", "plan",
                    ])
                #expect(logged.status == 0)
                #expect(logged.stderr.contains("entity compared"))
                #expect(logged.stderr.contains("entity=plan"))
                #expect(!logged.stderr.contains("\u{1B}"))
            }
        }
    }

    /// An unknown customer is "not found", status 1, as an unknown invoice is; a known one
    /// with nothing owed is an answer, status 0.
    @Test func anUnknownCustomersBalanceIsNotFound() async throws {
        try await TestDatabase.withFresh("balance_legacy") { legacy in
            try await TestDatabase.withFresh("balance_store") { store in
                #expect(try await LedgerliftBinary.run(["fixture", "load", "--dsn", legacy]).status == 0)
                #expect(try await LedgerliftBinary.run(["store", "init", "--store", store]).status == 0)
                #expect(
                    try await LedgerliftBinary.run([
                        "backfill", "--legacy", legacy, "--store", store, "--mapping", Self.mapping,
                    ])
                    .status == 0)
                #expect(try await LedgerliftBinary.run(["project", "--store", store]).status == 0)

                let unknown = try await LedgerliftBinary.run(
                    ["query", "balance", "--store", store, "--customer", "no-such"])
                #expect(unknown.status == 1)
                #expect(unknown.stdout.isEmpty)
                #expect(unknown.stderr == "customer no-such: not found as of now\n")

                let json = try await LedgerliftBinary.run(
                    ["query", "balance", "--store", store, "--customer", "no-such", "--format", "json"])
                #expect(json.status == 1)
                #expect(json.stdout == #"{"customer_id":"no-such","as_of":null,"balances":null}"# + "\n")

                // Customer 22 exists from its creation on: before that, not found either.
                let before = try await LedgerliftBinary.run(
                    ["query", "balance", "--store", store, "--customer", "22", "--as-of", "2000-01-01"])
                #expect(before.status == 1)
                #expect(before.stderr == "customer 22: not found as of 2000-01-01T23:59:59.999999Z\n")

                let known = try await LedgerliftBinary.run(["query", "balance", "--store", store, "--customer", "22"])
                #expect(known.status == 0, "\(known.stderr)")
                #expect(known.stdout.hasPrefix("customer 22, as of now\ncurrency"))
            }
        }
    }

    /// `--verbose` prints what the database said in full; without it, the error is one line
    /// with no detail (which can quote row values), hint or SQL.
    @Test func verbosePrintsTheDatabasesDetailAndHint() async throws {
        try await TestDatabase.withFresh("verbose_store") { store in
            let connection = try await Connection.connect(store)
            defer { connection.close() }
            // A "read model" whose state table fails to read, as a constraint would, quoting a row.
            try await connection.executeScript(
                """
                CREATE SCHEMA rm;
                CREATE FUNCTION rm.boom() RETURNS int LANGUAGE plpgsql AS $$
                BEGIN
                    RAISE EXCEPTION 'duplicate customer' USING
                        DETAIL = 'Key (email)=(ann@example.com) already exists.', HINT = 'merge the two customers';
                END $$;
                CREATE VIEW rm.projection_state AS
                    SELECT rm.boom() AS model_version, 'c'::text AS consumer, 'live'::text AS state, now() AS swapped_at;
                """)
            let arguments = ["query", "balance", "--store", store, "--read-schema", "rm", "--customer", "1"]
            let plain = try await LedgerliftBinary.run(arguments)
            #expect(plain.status == 2)
            #expect(plain.stderr == "Error: PostgreSQL P0001: duplicate customer\n")

            let verbose = try await LedgerliftBinary.run(["--verbose"] + arguments)
            #expect(verbose.status == 2)
            #expect(verbose.stderr.hasPrefix("Error: PostgreSQL P0001: duplicate customer\n"))
            #expect(verbose.stderr.contains("\n  detail: Key (email)=(ann@example.com) already exists.\n"))
            #expect(verbose.stderr.contains("\n  hint: merge the two customers\n"))
            #expect(verbose.stderr.contains("\n  query: SELECT model_version, consumer, state, swapped_at FROM "))
        }
    }

    /// `make demo`'s script, its stdout piped as `make demo > file` does: a screen or two, no
    /// escape codes, numbered steps, and what to do next.
    @Test func theDemoFitsTwoScreensWithoutEscapeCodesAndSaysWhatNext() async throws {
        let dsn = try TestDatabase.adminDSN()
        let prefix = "ledgerlift_demo_test_\(UInt32.random(in: 0...UInt32.max))"
        let script = Self.repository.appendingPathComponent("scripts/demo").path
        // On a thread of its own: the script runs `ledgerlift project` & co., which may wait for
        // another test's transaction — and that test for a free cooperative thread.
        let (data, status) = try await onThread { () throws -> (Data, Int32) in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["bash", script]
            var environment = ProcessInfo.processInfo.environment
            environment["LEDGERLIFT_DSN"] = dsn
            environment["LEDGERLIFT_BIN"] = LedgerliftBinary.path
            environment["LEDGERLIFT_DEMO_PREFIX"] = prefix
            process.environment = environment
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            process.standardInput = FileHandle.nullDevice
            try process.run()
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (data, process.terminationStatus)
        }
        defer {
            try? FileManager.default.removeItem(at: Self.repository.appendingPathComponent(".build/\(prefix)"))
        }
        let admin = try await Connection.connect(dsn)
        defer { admin.close() }
        for database in [prefix + "_legacy", prefix + "_store"] {
            _ = try await admin.execute("DROP DATABASE IF EXISTS \(database) WITH (FORCE)")
        }

        let text = String(decoding: data, as: UTF8.self)
        #expect(status == 0, "\(text)")
        #expect(!data.contains(0x1B), "escape codes in a pipe")
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count <= 100, "\(lines.count) lines")
        // The migration under traffic: its four parts, every playbook step with its time, the
        // journal clean on both sides, the summary and the dossier.
        for step in 1...4 { #expect(text.contains("\n\(step). "), "part \(step)") }
        #expect(text.contains("20/20 dossier"), "\(text)")
        #expect(text.contains("stopped before step 19 (completed)"))
        #expect(text.components(separatedBy: "clean: every acknowledged effect of").count == 5, "\(text)")
        #expect(text.contains("\nSummary\n") && text.contains("cutover state      completed"))
        #expect(text.contains("write freeze") && text.contains(" 0 failed,"))
        #expect(text.contains("migration-dossier.html"))
        #expect(!text.contains("ranges_done") && !text.contains("level 0"))
        #expect(text.contains("\nWhat next\n"))
        #expect(text.contains("make pg-stop"))
        #expect(text.contains("docs/operator-runbook.md"))
        #expect(text.contains("  psql $LEGACY ") && text.contains("  export LEGACY=postgresql://"))
    }
}
