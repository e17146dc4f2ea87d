import Foundation
import Postgres
import TestSupport
import Testing

/// `ledgerlift simulate`, `simulate verify` and `fixture check` refuse what they cannot do with
/// one sentence and status 2 — never a trap, a runaway parse, a Foundation error code or a raw
/// PostgreSQL error — and two simulations never run on one database at once.
@Suite("simulate and fixture check: refusals in a sentence, run as a binary")
struct SimulateErrorTests {
    static let nowhere = "postgresql://nobody@127.0.0.1:1/nothing"

    /// A new directory for the test's files.
    static func directory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerlift-simulate-errors-\(UUID())")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Runs `arguments`, expects status 2, and returns the first stderr line.
    static func refusal(
        _ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> String {
        let result = try await LedgerliftBinary.run(arguments)
        #expect(result.status == 2, "status \(result.status), stderr: \(result.stderr)", sourceLocation: sourceLocation)
        return String(result.stderr.split(separator: "\n").first ?? "")
    }

    static func simulate(mix: String) -> [String] {
        ["simulate", "--legacy", nowhere, "--operations", "1", "--mix", mix]
    }

    @Test func aMixFileWithNestedAliasesIsRefusedBeforeItIsExpanded() async throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var yaml = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        for level in 1...9 {
            yaml += "a\(level): &a\(level) [\(Array(repeating: "*a\(level - 1)", count: 9).joined(separator: ", "))]\n"
        }
        let bomb = directory.appendingPathComponent("bomb.yaml")
        try Data(yaml.utf8).write(to: bomb)
        #expect(
            try await Self.refusal(Self.simulate(mix: bomb.path))
                == "Error: mix file \(bomb.path): anchors and aliases (&a0, *a0) (line 1) are not allowed in a mix file; write each weight out"
        )
        let large = directory.appendingPathComponent("large.yaml")
        try Data(String(repeating: "edit_name: 1\n", count: 6000).utf8).write(to: large)
        #expect(
            try await Self.refusal(Self.simulate(mix: large.path))
                == "Error: mix file \(large.path) is 78000 bytes, over the 64 KiB limit for a mix file (one line per operation kind is under 1 KiB)"
        )
    }

    @Test func mixWeightsAreBoundedInsteadOfOverflowingTheirSum() async throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let mix = directory.appendingPathComponent("huge.yaml")
        try Data("edit_email: 9223372036854775807\nedit_name: 9223372036854775807\n".utf8).write(to: mix)
        #expect(
            try await Self.refusal(Self.simulate(mix: mix.path))
                == #"Error: mix file \#(mix.path): the weight of edit_email must be a whole number between 0 and 1000000, got "9223372036854775807""#
        )
    }

    @Test func unreadableMixAndJournalFilesSaySo() async throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(
            try await Self.refusal(Self.simulate(mix: directory.path))
                == "Error: mix file \(directory.path) cannot be read: it is a directory")
        let latin1 = directory.appendingPathComponent("latin1.yaml")
        try Data([0x65, 0x64, 0x69, 0x74, 0x5F, 0x6E, 0x61, 0x6D, 0x65, 0x3A, 0x20, 0x31, 0x20, 0x23, 0xE9, 0x0A]).write(to: latin1)
        #expect(
            try await Self.refusal(Self.simulate(mix: latin1.path))
                == "Error: mix file \(latin1.path) is not UTF-8 text")
        #expect(
            try await Self.refusal(["simulate", "verify", "--journal", directory.path, "--legacy", Self.nowhere])
                == "Error: simulate verify could not run: journal \(directory.path) cannot be read: it is a directory")
        let missing = directory.appendingPathComponent("missing.jsonl").path
        #expect(
            try await Self.refusal(["simulate", "verify", "--journal", missing, "--legacy", Self.nowhere])
                == "Error: simulate verify could not run: journal \(missing) cannot be read: No such file or directory")
    }

    @Test func numericOptionsAreDecimalAndBounded() async throws {
        let base = ["simulate", "--legacy", Self.nowhere, "--operations", "1"]
        #expect(
            try await Self.refusal(base + ["--lock-timeout", "3000000"])
                == "Error: --lock-timeout must be between 0.001 and 86400 seconds (a day)")
        for spelled in ["0x10", "inf", "nan", "1e3"] {
            #expect(
                try await Self.refusal(base + ["--rate", spelled])
                    == "Error: The value '\(spelled)' is invalid for '--rate <ops/s>': not a decimal number like 2 or 0.5",
                "\(spelled)")
        }
        // Parsed unconditionally, a negative number is a value to refuse, not a missing one.
        #expect(
            try await Self.refusal(base.dropLast(2) + ["--operations", "-5"])
                == "Error: The value '-5' is invalid for '--operations <count>'")
        #expect(
            try await Self.refusal(base + ["--connections", "-1"]) == "Error: --connections must be between 1 and 256")
        #expect(
            try await Self.refusal(["simulate", "verify", "--journal", "j", "--legacy", Self.nowhere, "--catch-up-timeout", "100000"])
                == "Error: --catch-up-timeout must be between 0 and 86400 seconds (a day)")
    }

    @Test func fixtureCheckRefusesAnInfiniteUntilAndReadsTimestampsWithoutSeconds() async throws {
        for value in ["infinity", "-infinity"] {
            #expect(
                try await Self.refusal(["fixture", "check", "--dsn", Self.nowhere, "--until", value])
                    == "Error: --until must be a finite moment (a timestamp like 2025-11-03T12:00:00Z or 2025-11-03 12:00, or a date like 2025-11-03), got '\(value)': C18 checks that every event lies inside the window, which an infinite end would not"
            )
        }
        #expect(
            try await Self.refusal(["fixture", "check", "--dsn", Self.nowhere, "--until", "2025-11-03T12"])
                == "Error: --until must be a timestamp like 2025-11-03T12:00:00Z or 2025-11-03 12:00, or a date like 2025-11-03, got '2025-11-03T12'"
        )
        try await TestDatabase.withFresh("check_no_legacy") { dsn in
            // Each accepted form gets as far as the database, which has no legacy schema.
            for value in ["2025-11-03T12:00", "2025-11-03 12:00", "2025-11-03T12:00Z", "2025-11-03 12:00:00+01", "2025-11-03"] {
                let result = try await LedgerliftBinary.run(["fixture", "check", "--dsn", dsn, "--until", value])
                #expect(result.status == 2, "\(value): \(result.stderr)")
                #expect(
                    result.stderr
                        == "Error: the database has no `legacy` schema to check: load the reference fixture (`ledgerlift fixture load`) or generate one (`ledgerlift fixture generate`) first\n",
                    "\(value)")
            }
        }
    }

    /// The lock is held here, as a running simulation holds it; the second run is refused and
    /// names the holder. A run that ends releases it.
    @Test func aSecondSimulationOnTheSameDatabaseIsRefused() async throws {
        try await TestDatabase.withFresh("sim_twice") { legacy in
            #expect(try await LedgerliftBinary.run(["fixture", "load", "--dsn", legacy]).status == 0)
            let holder = try await Connection.connect(legacy, applicationName: "first-simulate")
            let pid = try await holder.withSession { session -> Int32 in
                #expect(try session.tryLock(AdvisoryLock("ledgerlift.simulate/legacy")))
                return try session.query("SELECT pg_backend_pid()").rows[0].decode(at: 0, as: Int32.self)
            }
            let refused = try await Self.refusal(
                ["simulate", "--legacy", legacy, "--operations", "3", "--connections", "1"])
            #expect(
                refused.hasPrefix(
                    "Error: simulate could not run: another ledgerlift simulate is running on this database (pid \(pid), first-simulate, since "
                ), "\(refused)")
            #expect(refused.hasSuffix("so wait for it to end (the lock is ledgerlift.simulate/legacy)"))
            holder.close()

            let run = try await LedgerliftBinary.run(["simulate", "--legacy", legacy, "--operations", "3", "--connections", "1"])
            #expect(run.status == 0, "\(run.stderr)")
            let after = try await Connection.connect(legacy)
            defer { after.close() }
            #expect(try await after.withSession { try $0.tryLock(AdvisoryLock("ledgerlift.simulate/legacy")) })
        }
    }
}
