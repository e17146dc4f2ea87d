import ArgumentParser
import Dispatch
import EventStore
import Foundation
import Logging
import Mapping
import Postgres
import Shadow

extension ShadowCommand {
    /// `ledgerlift shadow run`: the tailer, applying captured legacy changes to the ledger.
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply captured legacy changes to the ledger and its read models (the shadow tailer).",
            discussion: """
                Reads ledgerlift_capture.changes in the legacy database in (xid, id) order — only transactions \
                older than every running one, so a long transaction that commits late is never skipped — finds \
                the keys each change touches through the mapping's sources, re-reads those keys through the \
                mapping and appends the difference to each stream (state-based: applying a change twice appends \
                nothing). The checkpoint commits with the events; applied changes are then deleted from the \
                outbox, and the read models projected. Changes every backfill snapshot saw are skipped (the \
                handover); a backfill of this mapping must have finished.

                Without --follow it drains the outbox and exits; with --follow it keeps polling until SIGINT or \
                SIGTERM, which stop it after the current batch. Either way it prints a summary. One tailer per \
                --name at a time (advisory lock ledgerlift.shadow/<name>).

                It refuses to start when capture was installed after the backfill read the legacy database \
                (changes in between are in neither): `ledgerlift shadow resync` closes that gap.

                With --follow --verify-every DURATION it also compares the read models with legacy every \
                DURATION (as `ledgerlift diff`), re-checking a difference only after the tailer has passed \
                the legacy position seen at check time, and stores each verdict in the store \
                (shadow_verifications: `shadow status` and the cutover's gates read them). docs/shadow.md.
                """)

        @Option(help: "DSN of the legacy database (capture installed).")
        var legacy: String

        @OptionGroup var store: StoreOptions

        @Option(help: "The mapping file (YAML) the backfill ran with.")
        var mapping: String

        @Flag(help: "Keep following new changes after catching up, until SIGINT or SIGTERM.")
        var follow = false

        @Option(help: "Captured changes per batch (one store transaction each).")
        var batch: Int = 5_000

        @Option(help: "How long to wait when nothing is left to read, e.g. 100ms, 1s.")
        var pollInterval: String = "100ms"

        @Option(help: "The tailer's name: its checkpoint and its lock.")
        var name: String = "default"

        @Option(help: "PostgreSQL schema of the read models kept following.")
        var readSchema: String = "ledgerlift_read"

        @Option(help: "With --follow: verify the read models against legacy this often, e.g. 30s, 5m.")
        var verifyEvery: String?

        func validate() throws {
            try DSNArguments.validate(legacy, option: "--legacy")
            guard batch > 0 else { throw ValidationError("--batch must be positive") }
            // Below 10ms an idle tailer busy-loops, each poll a legacy transaction (thousands a
            // second with `0`) for no gain in lag.
            guard let poll = Self.duration(pollInterval), poll >= .milliseconds(10) else {
                throw ValidationError("--poll-interval must be a duration of at least 10ms, such as 100ms, 2s or 1.5s")
            }
            guard !name.isEmpty else { throw ValidationError("--name must not be empty") }
            if let verifyEvery {
                guard follow else { throw ValidationError("--verify-every needs --follow (without it the tailer stops when caught up: run `ledgerlift diff` then)") }
                guard let every = Self.duration(verifyEvery), every >= .seconds(1) else {
                    throw ValidationError("--verify-every must be a duration of at least 1s, such as 30s, 5m or 1h")
                }
                _ = every
            }
        }

        /// `100ms`, `2s`, `1.5s`, `5m`, `1h`, `250` (milliseconds).
        static func duration(_ text: String) -> Duration? {
            let (number, unit): (Substring, Double) =
                text.hasSuffix("ms") ? (text.dropLast(2), 0.001) : text.hasSuffix("s") ? (text.dropLast(), 1)
                : text.hasSuffix("m") ? (text.dropLast(), 60) : text.hasSuffix("h") ? (text.dropLast(), 3600) : (text[...], 0.001)
            guard let value = Double(number), value >= 0, value.isFinite else { return nil }
            return .milliseconds(Int64((value * unit * 1000).rounded()))
        }

        func run() async throws {
            let file = try ShadowCommand.loadMapping(mapping)
            var configuration = ShadowTailer.Configuration(
                legacyDSN: legacy, storeDSN: store.dsn, mapping: file, store: store.store, readSchema: readSchema,
                name: name, batchSize: batch, pollInterval: Self.duration(pollInterval)!, follow: follow)
            configuration.logger = CommandLineSettings.logger("shadow")
            configuration.onStall = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
            let stop = ShadowTailer.Stop()
            let signals = TailerSignals(stop)
            defer { signals.cancel() }
            let verification = verifyEvery.flatMap(Self.duration).map { every in
                Task { await Self.verify(every: every, legacy: legacy, store: store, mapping: file, readSchema: readSchema, tailer: name) }
            }
            defer { verification?.cancel() }
            // Said once the tailer holds its locks and passed its checks: a refusal (same --name,
            // outbox held, gap) is then the only thing printed.
            let follow = follow
            let summary = try await ShadowTailer(configuration).run(
                stop: stop,
                started: {
                    guard follow else { return }
                    FileHandle.standardError.write(
                        Data("following \(ConnectionString.masked(legacy)) into \(store.store.schema) (Ctrl-C to stop)\n".utf8))
                })
            verification?.cancel()
            print(Self.describe(summary, name: name))
            let s = summary.sync
            CommandLineSettings.logger("shadow").info(
                "time by phase",
                metadata: [
                    "read": "\(summary.readTime)", "keys": "\(summary.keysTime)", "legacy": "\(s.legacyTime)",
                    "ledger": "\(s.ledgerTime)", "append": "\(s.appendTime)", "prune": "\(summary.pruneTime)",
                    "project": "\(summary.projectTime)",
                ])
        }

        /// Verifies every `every` until cancelled, one line per verdict on standard error. A
        /// verification that cannot run is recorded as an error and the next one still runs:
        /// the tailer is not stopped by its checker.
        static func verify(every: Duration, legacy: String, store: StoreOptions, mapping: MappingFile, readSchema: String, tailer: String) async {
            let verifier = ContinuousVerifier(
                .init(legacyDSN: legacy, storeDSN: store.dsn, mapping: mapping, storeSchema: store.store.schema, readSchema: readSchema))
            let clock = ContinuousClock()
            while !Task.isCancelled {
                let next = clock.now + every
                do { try await clock.sleep(until: next) } catch { return }
                do {
                    guard try await verifier.readModelsExist() else {
                        FileHandle.standardError.write(Data("verification waits: the tailer is building the read models\n".utf8))
                        continue
                    }
                    let record = try await verifier.runOnce(tailer: tailer)
                    FileHandle.standardError.write(Data((Self.describe(record) + "\n").utf8))
                } catch is CancellationError {
                    return
                } catch {
                    FileHandle.standardError.write(Data("verification could not run: \(DSNArguments.scrub(String(describing: error), arguments: Array(CommandLine.arguments.dropFirst())))\n".utf8))
                }
            }
        }

        static func describe(_ record: VerificationRecord) -> String {
            "verification \(record.id): \(record.verdict.rawValue), \(record.rowsCompared) rows compared, "
                + "\(record.persistentDifferences) persistent difference(s)"
                + (record.differences > record.persistentDifferences ? " (\(record.differences - record.persistentDifferences) resolved on re-check)" : "")
                + (record.error.map { ", error: \($0)" } ?? "")
        }

        static func describe(_ summary: ShadowTailer.Summary, name: String) -> String {
            let sync = summary.sync
            var lines = [
                "shadow tailer \(name): \(summary.changesRead) captured change(s) read in \(summary.batches) batch(es)"
                    + (summary.changesSkipped > 0 ? " (\(summary.changesSkipped) already in the backfill, skipped)" : "")
                    + ", \(ProjectCommand.seconds(summary.elapsed)) (\(summary.changesPerSecond) changes/s)",
                "  keys synced \(sync.keysRead), changed \(sync.keysChanged), events appended \(sync.eventsAppended), "
                    + "deleted \(sync.deleted), quarantined \(sync.quarantined), released \(sync.released)",
                "  position \(summary.position)"
                    + (summary.captureUninstalled
                        ? ", capture uninstalled: nothing left to follow (the cutover completed, or shadow uninstall ran)"
                        : summary.caughtUp ? ", caught up" : ", stopped before catching up"),
            ]
            if sync.eventsAppended > 0 && !summary.projected {
                lines.append("  read models not projected here: `ledgerlift project --follow` projects them")
            }
            return lines.joined(separator: "\n")
        }
    }
}

/// SIGINT and SIGTERM stop the tailer after its current batch instead of killing the process,
/// so its summary is printed and nothing is left half-done (a batch commits whole either way).
final class TailerSignals {
    private let sources: [any DispatchSourceSignal]

    init(_ stop: ShadowTailer.Stop) {
        sources = [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")].map { number, label in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                FileHandle.standardError.write(Data("\(label): stopping after the current batch\n".utf8))
                stop.stop()
            }
            source.resume()
            return source
        }
    }

    func cancel() {
        for source in sources { source.cancel() }
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }
}
