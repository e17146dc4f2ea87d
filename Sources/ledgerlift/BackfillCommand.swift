import Mapping
import TextFormats
import ArgumentParser
import Billing
import EventStore
import Foundation
import Logging
import Migration
import Postgres

/// `ledgerlift backfill`: synthesize the legacy database's history into the event store.
struct BackfillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backfill",
        abstract: "Read every mapped entity from one snapshot of the legacy database and append the history it implies.",
        discussion: """
            Resumable: killed at any point, the same command finishes the job with the same events; a key whose \
            legacy row changed meanwhile gets the events of that change, as shadow mode would append them. Rows \
            that cannot be migrated are quarantined (ledgerlift.quarantine) with their key and reason.

            A store holds the history of one legacy database made with one mapping: pointed at another database, \
            or with an edited mapping, the run is refused (start over with `ledgerlift store reset`). One run at a \
            time: a second one is refused, naming the first, or waits with --wait.

            Before it migrates a row, the backfill checks the mapping against the legacy database as `ledgerlift \
            mapping check` does, and refuses a mapping with errors: it prints the check's report and appends \
            nothing (dry runs too). Warnings do not stop it; neither do keys on several rows, which it quarantines \
            (duplicate_key).

            Exit status: 0 done; 1 done, but rows were quarantined (unless --allow-quarantine) or legacy changed \
            between attempts so the counts do not balance, or refused because the mapping has errors (nothing \
            appended); 2 could not run (bad arguments, a database unreachable, refused, another run holds the \
            store).
            """)

    @Option(help: "DSN of the legacy database (read only).")
    var legacy: String

    @Option(name: .customLong("store"), help: "DSN of the event store database.")
    var store: String

    @Option(help: "The mapping file (YAML).")
    var mapping: String

    @Option(help: "Parallel legacy connections.")
    var workers: Int = 1

    @Option(help: "PostgreSQL schema of the event store.")
    var schema: String = "ledgerlift"

    @Option(help: "Events per bulk batch (each batch is one transaction).")
    var batchEvents: Int = 5_000

    @Flag(help: "Read and synthesize without writing; print what would be appended.")
    var dryRun = false

    @Flag(help: "Exit 0 even when rows were quarantined.")
    var allowQuarantine = false

    @Flag(help: "Wait for another backfill of the same store to finish instead of refusing.")
    var wait = false

    func validate() throws {
        try DSNArguments.validate(legacy, option: "--legacy")
        try DSNArguments.validate(store, option: "--store")
        guard (1...64).contains(workers) else { throw ValidationError("--workers must be between 1 and 64") }
        guard batchEvents >= 1 else { throw ValidationError("--batch-events must be at least 1") }
    }

    func run() async throws {
        let file: MappingFile
        do {
            file = try MappingFile.load(path: mapping)
        } catch {
            // The same finding `mapping check` reports, and exits 1 for.
            FileHandle.standardError.write(
                Data(
                    ("mapping file has errors:\n\(error)\nbackfill refused: fix the mapping file "
                        + "(`ledgerlift mapping check` says the same); nothing was migrated or appended\n").utf8))
            throw ExitCode(1)
        }
        var configuration = Backfill.Configuration(
            legacyDSN: legacy, storeDSN: store, mapping: file, store: EventStore(schema: schema), workers: workers,
            batchEvents: batchEvents, dryRun: dryRun, wait: wait)
        // Per-range lines in a log come from the logger (--log-level debug); the line redrawn
        // in place is for a person at a terminal only.
        configuration.logger = CommandLineSettings.logger("backfill")
        let report: BackfillReport
        do {
            report = try await run(configuration)
        } catch BackfillError.mappingRejected(let check) {
            // A finding about the mapping, as `mapping check` reports it (and exits 1 for): the
            // same report on standard output, the refusal on standard error.
            print(check.rendered(database: ConnectionString.masked(legacy)))
            FileHandle.standardError.write(
                Data(
                    ("backfill refused: the mapping has errors `ledgerlift mapping check` reports (above); "
                        + "nothing was migrated or appended\n").utf8))
            throw ExitCode(1)
        }
        print(BackfillSummary(report: report, legacy: ConnectionString.masked(legacy), store: ConnectionString.masked(store)).text)
        if !report.isBalanced || (report.totalQuarantineEntries > 0 && !allowQuarantine && !dryRun) {
            throw ExitCode(1)
        }
    }

    /// Runs the backfill, drawing its progress on a terminal.
    private func run(_ configuration: Backfill.Configuration) async throws -> BackfillReport {
        let terminal = CommandLineSettings.drawsProgress
        let clock = ContinuousClock()
        let start = clock.now
        return try await Backfill(configuration).run { progress in
            guard terminal else { return }
            let elapsed = clock.now - start
            let seconds = max(0.001, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            let rowsPerSecond = Int(Double(progress.rowsRead) / seconds)
            let eventsPerSecond = Int(Double(progress.events) / seconds)
            let remaining = progress.rangesTotal - progress.rangesDone
            let eta = progress.rangesDone == 0 ? "?" : "\(Int(seconds / Double(progress.rangesDone) * Double(remaining)))s"
            FileHandle.standardError.write(
                Data("\r\u{1B}[K\(progress.entity): ranges \(progress.rangesDone)/\(progress.rangesTotal)  \(rowsPerSecond) rows/s  \(eventsPerSecond) events/s  ETA \(eta)".utf8))
            if progress.rangesDone == progress.rangesTotal { FileHandle.standardError.write(Data("\n".utf8)) }
        }
    }
}

/// The end-of-run summary: conservation per entity, quarantine reasons, events per type.
struct BackfillSummary {
    let report: BackfillReport
    let legacy: String
    let store: String

    var text: String {
        var out = [String]()
        out.append((report.dryRun ? "dry run (nothing written) " : "") + "backfill \(report.runID): \(legacy) → \(store)")
        if let finished = report.finishedEarlier {
            out.append(
                "this run finished at \(finished.iso8601) and has nothing left to do: the figures below are of that "
                    + "run's snapshot; legacy changes since then are not migrated by a backfill (shadow mode carries "
                    + "them; `ledgerlift diff` shows them)")
        }
        out.append("")
        out.append(
            TextTable(
                ["entity", "legacy rows", "read", "migrated", "quarantined", "events"],
                report.entities.map {
                    [
                        $0.entity.rawValue, $0.legacyRows.map { "\($0)" } ?? "-", "\($0.rowsRead)", "\($0.rowsMigrated)",
                        "\($0.rowsQuarantined)", "\($0.events)",
                    ]
                }, rightAligned: [1, 2, 3, 4, 5]
            ).rendered)
        let unbalanced = report.entities.filter { !$0.isBalanced }
        out.append("")
        if unbalanced.isEmpty {
            out.append("every legacy row is accounted for: legacy rows (count of the mapping query) = migrated + quarantined")
        } else {
            out.append("NOT BALANCED: " + unbalanced.map(\.entity.rawValue).joined(separator: ", "))
        }
        let resynced = report.entities.reduce(Int64(0)) { $0 + $1.rowsResynced }
        if resynced > 0 {
            out.append("\(resynced) keys changed in legacy after an interrupted attempt had migrated them: their streams got the events of the change")
        }
        // Keys that vanished from legacy are not legacy rows: listed apart from the quarantined rows.
        let notRows: Set = [QuarantineReason.rowVanished.code, QuarantineReason.historyWithoutCurrentRow.code]
        let rows = report.quarantineReasons.filter { !notRows.contains($0.reason) }
        let vanished = report.quarantineReasons.first { $0.reason == QuarantineReason.rowVanished.code }?.count ?? 0
        let orphans = report.quarantineReasons.first { $0.reason == QuarantineReason.historyWithoutCurrentRow.code }?.count ?? 0
        if !rows.isEmpty {
            out.append("")
            out.append("quarantined (see \(report.dryRun ? "the report" : "ledgerlift.quarantine") for keys and raw rows):")
            out.append(TextTable(["reason", "rows"], rows.map { [$0.reason, "\($0.count)"] }, rightAligned: [1]).rendered)
        }
        if orphans > 0 {
            out.append("")
            out.append(
                "\(orphans) keys have history rows but no current row (deleted from legacy?) and a history that cannot be "
                    + "migrated: it is kept in ledgerlift.quarantine as history_without_current_row (the others were migrated, "
                    + "ending in …Deleted)")
        }
        if vanished > 0 {
            out.append("")
            out.append(
                "\(vanished) keys were deleted from legacy after an interrupted attempt had migrated them: their streams "
                    + "remain (the log is append-only) and ledgerlift.quarantine lists them as row_vanished; "
                    + "`ledgerlift diff` shows them as extra in the ledger")
        }
        out.append("")
        out.append(report.dryRun ? "events it would append:" : "events of this run in the store:")
        out.append(TextTable(["event type", "events"], report.eventsByType.map { [$0.type, "\($0.count)"] }, rightAligned: [1]).rendered)
        return out.joined(separator: "\n")
    }
}
