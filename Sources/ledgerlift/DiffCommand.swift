import Mapping
import TextFormats
import ArgumentParser
import Billing
import Diff
import Foundation
import Logging
import Migration
import Postgres
import Shadow

/// `ledgerlift diff`: prove the read models equal the legacy data, with a report CI can gate on.
struct DiffCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Compare the ledger's read models with the legacy database, row by row and column by column.",
        discussion: """
            Each side hashes its rows' canonical text form in SQL; only bucket counts and hash sums travel, and \
            differing buckets are bisected until their rows are few enough to compare key by key. Rows the \
            backfill quarantined are listed apart. Differences are re-checked once after the projection has \
            caught up, so a write racing the check is not reported. Ledger invariants are checked beside it.

            Exit status: 0 clean; 1 differences or broken invariants; 2 could not run (the reason is printed, \
            and with --format junit written to the report as an error). docs/ci.md shows a CI job gating on it.
            """)

    @Option(help: "DSN of the legacy database (read only).")
    var legacy: String

    @Option(name: .customLong("store"), help: "DSN of the database holding the event store and read models.")
    var store: String

    @Option(help: "The mapping file (YAML).")
    var mapping: String

    @Option(
        name: .customLong("entity"),
        help: ArgumentHelp(
            "Compare only this entity (repeatable, or comma-separated); default: every mapped entity.",
            valueName: "entity"))
    var entityNames: [String] = []

    @Option(help: "Report format: text, json, markdown or junit.")
    var format: DiffFormat = .text

    @Option(help: "Write the report to this file instead of standard output (the text report then goes to standard output unless --format text).")
    var output: String?

    @Option(
        help: ArgumentHelp(
            "Also append the Markdown report to this file, e.g. $GITHUB_STEP_SUMMARY: one run, both reports.",
            valueName: "file"))
    var summary: String?

    @Option(help: "List at most this many differing rows (and quarantined rows, offending keys) per entity.")
    var maxRows: Int = 100

    @Option(help: "PostgreSQL schema of the event store.")
    var schema: String = "ledgerlift"

    @Option(help: "PostgreSQL schema of the read models.")
    var readSchema: String = "ledgerlift_read"

    @Option(help: "Seconds to wait for the projection to catch up before re-checking differences.")
    var catchUpTimeout: Int = 30

    @Flag(help: "Report first-pass differences without re-checking them.")
    var noReverify = false

    @Flag(help: "Compare rows only, without checking the ledger invariants.")
    var skipInvariants = false

    @Option(
        help: ArgumentHelp(
            "Shadow mode: re-check differences only once this tailer has applied what legacy had committed "
                + "(up to 3 rounds), so legacy writes racing the check are not reported.",
            valueName: "name"))
    var tailer: String?

    @Flag(help: "Store the result in the store's shadow_verifications, as shadow run --verify-every does (docs/shadow.md).")
    var record = false

    func validate() throws {
        try DSNArguments.validate(legacy, option: "--legacy")
        try DSNArguments.validate(store, option: "--store")
        guard maxRows >= 0 else { throw ValidationError("--max-rows must be 0 or more") }
        guard catchUpTimeout >= 0 else { throw ValidationError("--catch-up-timeout must be 0 or more") }
        _ = try entities()
    }

    /// `--entity invoice --entity payment,refund` → [.invoice, .payment, .refund].
    func entities() throws -> [Entity]? { try EntityArguments.parse(entityNames) }

    func run() async throws {
        let report: DiffReport
        do {
            let file = try MappingFile.load(path: mapping)
            let progress = DiffProgressPrinter(terminal: CommandLineSettings.drawsProgress)
            var options = DiffChecker.Options(
                legacyDSN: legacy, storeDSN: store, mapping: file, entities: try entities(), maxRows: maxRows,
                storeSchema: schema, readSchema: readSchema, reverify: !noReverify, checkInvariants: !skipInvariants,
                catchUpTimeout: .seconds(catchUpTimeout), progress: { progress.show($0) })
            options.logger = CommandLineSettings.logger("diff")
            if tailer != nil || record {
                report = try await shadowCheck(options)
            } else {
                report = try await DiffChecker(options).run()
            }
            progress.finish()
        } catch {
            if record { await recordFailure(error) }
            // Connection errors never carry a password; scrubbing the command line's DSNs out
            // of the text anyway keeps the JUnit artifact safe should any other error repeat one.
            let reason = DSNArguments.scrub("\(error)", arguments: ["--legacy", legacy, "--store", store])
            standardError(Ledgerlift.prefix + "diff could not run: \(reason)\n")
            if format == .junit, let output { try? Self.write(DiffReportRendering.junitError(reason), to: output) }
            throw ExitCode(2)
        }
        let rendered = report.rendered(format)
        do {
            if let output {
                try Self.write(rendered, to: output)
                // The CI log still shows what differs.
                if format != .text { print(report.rendered(.text), terminator: "") }
            } else {
                print(rendered, terminator: "")
            }
            if let summary { try append(report.rendered(.markdown), to: summary) }
        } catch {
            standardError(Ledgerlift.prefix + "diff could not write the report: \(error)\n")
            throw ExitCode(2)
        }
        // The text report ends with the verdict; when standard output holds another format,
        // or the report went to a file, the verdict is said once more on standard error.
        if output != nil || format != .text {
            let verdict =
                report.isClean
                ? "diff: clean"
                : "diff: \(report.differenceCount) difference\(report.differenceCount == 1 ? "" : "s"), "
                    + "\(report.brokenInvariantCount) broken invariant\(report.brokenInvariantCount == 1 ? "" : "s")"
            standardError(verdict + (output.map { " (report: \($0))" } ?? "") + "\n")
        }
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }

    /// The check in shadow mode (``ContinuousVerifier/check(_:capture:tailerTimeout:tailerPosition:)``),
    /// with `--record` stored in `shadow_verifications`.
    private func shadowCheck(_ options: DiffChecker.Options) async throws -> DiffReport {
        var options = options
        let connection = try await Connection.connect(store, applicationName: "ledgerlift diff")
        defer { connection.close() }
        let startedAt = try await connection.query("SELECT clock_timestamp()").rows[0].decode(at: 0, as: PostgresTimestamp.self)
        if tailer != nil { options.reverificationRounds = 3 }
        let (report, position) = try await ContinuousVerifier.check(
            options, tailerPosition: tailer.map { ContinuousVerifier.checkpoint(of: $0, store: connection, storeSchema: schema) },
            tailerRunning: tailer.map { ContinuousVerifier.TailerLiveness.of($0, store: connection) })
        if record {
            var verification = VerificationRecord(
                origin: "diff", startedAt: startedAt, legacyPosition: position, entities: [], verdict: .error)
            verification.record(report)
            _ = try await connection.withSession { [verification, schema] in
                try ShadowRecords(schema: schema).insert(verification, in: $0)
            }
        }
        return report
    }

    /// With `--record`, a check that could not run is stored too (verdict `error`): a gate must
    /// not count past it. Best effort: the store may be what failed.
    private func recordFailure(_ error: any Error) async {
        guard let connection = try? await Connection.connect(store, applicationName: "ledgerlift diff") else { return }
        defer { connection.close() }
        let reason = DSNArguments.scrub("\(error)", arguments: ["--legacy", legacy, "--store", store])
        let entities = (try? entities()) ?? nil
        _ = try? await connection.withSession { [schema] session in
            let now = try session.query("SELECT clock_timestamp()").rows[0].decode(at: 0, as: PostgresTimestamp.self)
            return try ShadowRecords(schema: schema).insert(
                VerificationRecord(
                    origin: "diff", startedAt: now, legacyPosition: nil, entities: entities ?? [], verdict: .error,
                    error: reason), in: session)
        }
    }

    private func append(_ text: String, to path: String) throws {
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(text.utf8))
    }

    /// Writes through a temporary file renamed over the target (rename(2) replaces it
    /// atomically), so CI never reads half a report, nor finds none.
    static func write(_ text: String, to path: String) throws {
        let temporary = path + ".tmp-\(ProcessInfo.processInfo.processIdentifier)"
        try Data((text.hasSuffix("\n") ? text : text + "\n").utf8).write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: temporary)
            throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "cannot write \(path): \(reason)"])
        }
    }

    /// For a usage error (exit 2 before any report): with `--format junit --output FILE` on
    /// the command line, FILE still gets a JUnit error saying why, as for any other exit 2.
    /// The message is scrubbed of every piece of a connection string on the command line
    /// (``DSNArguments/scrub(_:arguments:)``): a JUnit report is a CI artifact.
    static func writeUsageError(_ message: String, arguments: [String]) {
        func value(of flag: String) -> String? {
            for (index, argument) in arguments.enumerated() {
                if argument == flag, index + 1 < arguments.count { return arguments[index + 1] }
                if argument.hasPrefix(flag + "=") { return String(argument.dropFirst(flag.count + 1)) }
            }
            return nil
        }
        guard value(of: "--format") == DiffFormat.junit.rawValue, let output = value(of: "--output") else { return }
        try? write(DiffReportRendering.junitError(DSNArguments.scrub(message, arguments: arguments)), to: output)
    }
}

extension DiffFormat: ExpressibleByArgument {}

private func standardError(_ text: String) {
    FileHandle.standardError.write(Data(text.utf8))
}

/// Progress on standard error, only on a terminal: one line rewritten in place, and a line
/// per compared entity. A CI log gets the same through the logger (`--log-level info`).
private struct DiffProgressPrinter: Sendable {
    let terminal: Bool

    /// Clears the line rewritten in place, so the report starts on a clean one.
    func finish() {
        if terminal { standardError("\r\u{1B}[K") }
    }

    func show(_ event: DiffProgress) {
        guard terminal else { return }
        switch event {
        case .entityStarted(let entity):
            standardError("\r\u{1B}[K\(entity): hashing both sides…")
        case .level(let entity, let level, let buckets, let differing, let elapsed):
            let seconds = Self.seconds(elapsed)
            let rate = seconds > 0 ? Int(Double(buckets) / seconds) : 0
            standardError("\r\u{1B}[K\(entity): level \(level), \(buckets) buckets (\(rate) buckets/s), \(differing) differing")
        case .entityCompared(let diff):
            let seconds = Self.seconds(diff.duration)
            let rows = diff.legacyRows + diff.ledgerRows
            let rate = seconds > 0 ? Int(Double(rows) / seconds) : 0
            standardError(
                "\r\u{1B}[K\(diff.entity): \(diff.compared) keys compared, \(diff.differenceCount) differing, "
                    + "\(diff.quarantined) quarantined, \(diff.bucketsCompared) buckets, \(rows) rows in "
                    + String(format: "%.2f", seconds) + " s (\(rate) rows/s)\n")
        case .invariant(let name):
            standardError("\r\u{1B}[Kinvariant \(name)…")
        case .waitingForProjection:
            standardError("\r\u{1B}[Kwaiting for the projection to catch up before re-checking…")
        case .projectionBehind(let waited):
            standardError("\r\u{1B}[Kdiff: the projection did not catch up within \(waited); re-checking anyway\n")
        case .reverifying(let entity, let keys):
            standardError("\r\u{1B}[K\(entity): re-checking \(keys) differing keys\n")
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
