import TextFormats
import ArgumentParser
import Billing
import Fixtures
import Foundation
import Postgres
import Synchronization

/// `ledgerlift fixture …`: put the legacy billing database Ledgerlift migrates into PostgreSQL.
struct FixtureCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fixture",
        abstract: "Load the reference legacy billing database, generate one at scale, or check its arithmetic rules.",
        discussion: """
            `load` and `generate` replace the `legacy` schema of the target database, all or nothing: when they \
            fail, the `legacy` schema the database had (if any) is left exactly as it was. `check` only reads.
            """,
        subcommands: [Load.self, Generate.self, Check.self]
    )

    /// Options both subcommands take.
    struct Target: ParsableArguments {
        @Option(help: "DSN of the PostgreSQL database to put the `legacy` schema in.")
        var dsn: String

        @Option(
            help: ArgumentHelp(
                "The fixtures directory (holding reference/schema.sql).",
                discussion: "Default: $LEDGERLIFT_FIXTURES, else fixtures/ in the current directory or a parent, else next to the executable.",
                valueName: "dir"))
        var fixtures: String?

        func validate() throws {
            try DSNArguments.validate(dsn, option: "--dsn")
        }

        func locate() throws -> FixtureDirectory {
            try FixtureDirectory.locate(explicitPath: fixtures)
        }
    }

    struct Load: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the legacy schema and load the hand-written seed, in one transaction.")

        @OptionGroup var target: Target

        @Flag(help: "Load the dirty seed (defect cases for the quarantine) instead of the clean reference seed.")
        var dirty = false

        func run() async throws {
            let seed: FixtureLoader.Seed = dirty ? .dirty : .reference
            let loader = FixtureLoader(fixtures: try target.locate())
            let counts = try await loader.load(seed, dsn: target.dsn)
            print("loaded the \(seed) from \(loader.fixtures.url(of: seed.file).path) into \(ConnectionString.masked(target.dsn))\n")
            print(FixtureCommand.table(counts))
        }
    }

    struct Generate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the legacy schema and fill it with synthetic customers (deterministic for a seed).",
            discussion: """
                The generated data obeys the same arithmetic rules as the reference seed: \
                fixtures/reference/checks.sql returns no rows on it (with the default window). \
                The data is built in the schema ledgerlift_fixture_staging and replaces `legacy` in one \
                transaction at the end; one generation at a time per database.
                """)

        @OptionGroup var target: Target

        @Option(help: "Number of customers to generate.")
        var customers: Int

        @Option(help: "Seed of the generator; the same seed gives byte-identical data.")
        var seed: UInt64

        @Option(help: "First day of the generated history (YYYY-MM-DD).")
        var start: String = FixtureGenerator.Configuration.defaultStart.description

        @Option(help: "Length of the history in months; the generator's clock is start + months.")
        var months: Int = FixtureGenerator.Configuration.defaultMonths

        func validate() throws {
            guard let date = PostgresDate(start) else { throw ValidationError("--start must be a date like 2023-01-01, got '\(start)'") }
            do {
                try FixtureGenerator.Configuration(customers: customers, seed: seed, start: date, months: months).validate()
            } catch {
                throw ValidationError(error.message)
            }
        }

        func run() async throws {
            let configuration = FixtureGenerator.Configuration(
                customers: customers, seed: seed, start: PostgresDate(start)!, months: months)
            let generator = FixtureGenerator(configuration: configuration, fixtures: try target.locate())
            let indicator = ProgressIndicator()
            defer { indicator.clear() }
            let summary = try await generator.generate(dsn: target.dsn) { indicator.show($0) }
            indicator.clear()
            print(
                "generated \(customers) customers (seed \(seed), \(configuration.start) to \(configuration.end)) "
                    + "into \(ConnectionString.masked(target.dsn))\n")
            print(FixtureCommand.table(summary.rowCounts))
            let phases = summary.phases.map { "\($0.phase.rawValue) \(FixtureCommand.seconds($0.elapsed))" }
            print("\nelapsed \(FixtureCommand.seconds(summary.elapsed)) (\(phases.joined(separator: ", ")))")
        }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run fixtures/reference/checks.sql (the rules C01–C19) on a legacy database and print what breaks them.",
            discussion: """
                Read-only, in one transaction. Exit status: 0 every rule holds, 1 some rows break a rule (listed one a \
                line: check, table, key, detail), 2 the checks could not run. C18 wants every event timestamp within \
                the fixture window, which ends with 2025-10-31 unless --until says otherwise (for data `ledgerlift \
                simulate` continued past it: pass the business_time_to its report gives).
                """)

        @OptionGroup var target: Target

        // Unconditional: `-infinity` is a value to refuse in a sentence, not an unknown flag.
        @Option(
            parsing: .unconditional,
            help: ArgumentHelp(
                "The last moment event timestamps may have (C18), inclusive.",
                discussion: "A timestamp like 2025-11-03T12:00:00Z, 2025-11-03T12:00 or 2025-11-03 12:00 (without a zone: UTC), or a date like 2025-11-03 (the whole day, UTC). Default: 2025-10-31 (the reference fixture's last day).",
                valueName: "timestamp"))
        var until: String?

        func validate() throws {
            if let until {
                do {
                    _ = try Self.windowEnd(until)
                } catch {
                    throw ValidationError(error.message)
                }
            }
        }

        /// Why `--until` is refused, in a sentence.
        struct UntilError: Error, CustomStringConvertible {
            let message: String
            var description: String { message }
        }

        /// The window's exclusive end (what checks.sql takes) for `--until`, which is inclusive: a
        /// moment after the timestamp, or the midnight after the date (UTC). A timestamp may leave
        /// out its seconds (`2025-11-03T12:00` is 12:00:00) and its zone (UTC).
        static func windowEnd(_ text: String) throws(UntilError) -> PostgresTimestamp {
            let example = "a timestamp like 2025-11-03T12:00:00Z or 2025-11-03 12:00, or a date like 2025-11-03"
            if ["infinity", "-infinity", "+infinity"].contains(text.lowercased()) {
                throw UntilError(
                    message: "--until must be a finite moment (\(example)), got '\(text)': C18 checks that every "
                        + "event lies inside the window, which an infinite end would not")
            }
            if let moment = PostgresTimestamp(withSeconds(text)) {
                // The exclusive end, a microsecond later, must still be a timestamp PostgreSQL holds.
                guard moment < .maximumFinite else {
                    throw UntilError(message: "--until must be before \(PostgresTimestamp.maximumFinite.iso8601), got '\(text)'")
                }
                return PostgresTimestamp(microsecondsSinceEpoch: moment.microsecondsSinceEpoch + 1)
            }
            guard let date = PostgresDate(text) else {
                throw UntilError(message: "--until must be \(example), got '\(text)'")
            }
            guard date < .maximum else {
                throw UntilError(message: "--until must be before \(PostgresTimestamp.maximumFinite.iso8601), got '\(text)'")
            }
            return PostgresDate(daysSinceEpoch: date.daysSinceEpoch + 1).startOfDayUTC
        }

        /// `text` with `:00` seconds added when it is a date, a `T` or space, and `HH:MM` (then
        /// optionally a zone), the form fixtures/README.md and people write.
        static func withSeconds(_ text: String) -> String {
            let bytes = Array(text.utf8)
            guard let separator = bytes.firstIndex(where: { $0 == UInt8(ascii: "T") || $0 == UInt8(ascii: " ") }) else {
                return text
            }
            let time = bytes[(separator + 1)...]
            let isDigit = { (byte: UInt8) in (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
            guard time.count >= 5, time.prefix(5).enumerated().allSatisfy({ $0.offset == 2 ? $0.element == UInt8(ascii: ":") : isDigit($0.element) })
            else { return text }
            let rest = time.dropFirst(5)
            guard rest.first.map({ $0 == UInt8(ascii: "Z") || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") }) ?? true
            else { return text }
            return String(decoding: bytes[...(separator + 5)], as: UTF8.self) + ":00" + String(decoding: rest, as: UTF8.self)
        }

        func run() async throws {
            let suite = try FixtureCheckSuite(fixtures: try target.locate())
            let windowEnd = try until.map { text throws(UntilError) in try Self.windowEnd(text) } ?? FixtureCheckSuite.defaultWindowEnd
            let connection = try await Connection.connect(target.dsn)
            defer { connection.close() }
            let results = try await connection.withSession { try suite.run(in: $0, windowEnd: windowEnd) }
            let violations = results.flatMap(\.violations)
            let broken = results.filter { !$0.violations.isEmpty }
            if violations.isEmpty {
                print("\(results.count) checks, every rule holds on \(ConnectionString.masked(target.dsn)) (window end \(windowEnd.iso8601))")
                return
            }
            for violation in violations { print(violation.description) }
            print(
                "\n\(violations.count) row(s) break \(broken.count) of \(results.count) checks: "
                    + broken.map { "\($0.check.code) (\($0.violations.count))" }.joined(separator: ", "))
            throw ExitCode(1)
        }
    }

    static func table(_ counts: LegacyRowCounts) -> String {
        var rows = counts.tables.map { [$0.table.name, grouped($0.rows)] }
        rows.append(["total", grouped(counts.total)])
        return TextTable(["table", "rows"], rows, rightAligned: [1]).rendered
    }

    static func grouped(_ n: Int) -> String { ProjectCommand.grouped(n) }

    static func seconds(_ d: Duration) -> String {
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        return "\(ms / 1000).\((ms % 1000) / 100)s"
    }
}

/// A one-line progress indicator on stderr, drawn only when stderr is a terminal.
private final class ProgressIndicator: Sendable {
    private let enabled = CommandLineSettings.drawsProgress
    private let lastDrawn = Mutex<ContinuousClock.Instant?>(nil)

    func show(_ progress: FixtureGenerator.Progress) {
        guard enabled else { return }
        let now = ContinuousClock.now
        let due = lastDrawn.withLock { last -> Bool in
            let finalUpdate = progress.phase != .generating || progress.customersGenerated == progress.customersTotal
            guard finalUpdate || last.map({ now - $0 >= .milliseconds(100) }) ?? true else { return false }
            last = now
            return true
        }
        guard due else { return }
        let line: String
        if progress.phase == .generating {
            let percent = Int(progress.fractionGenerated * 100)
            line = "generating: \(FixtureCommand.grouped(progress.customersGenerated))/\(FixtureCommand.grouped(progress.customersTotal)) customers (\(percent)%), \(FixtureCommand.grouped(progress.rowsWritten)) rows"
        } else {
            line = progress.phase.rawValue + "…"
        }
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
    }

    func clear() {
        guard enabled else { return }
        lastDrawn.withLock { last in
            if last != nil { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
            last = nil
        }
    }
}
