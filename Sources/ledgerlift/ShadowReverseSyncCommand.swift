import ArgumentParser
import EventStore
import Foundation
import Mapping
import Postgres
import Shadow
import TextFormats

extension ShadowCommand {
    /// `ledgerlift shadow reverse-sync`: the ledger's write path applied back to legacy.
    struct ReverseSyncRun: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reverse-sync",
            abstract: "Apply what the ledger's write path appended back to the legacy tables (reverse sync).",
            discussion: """
                After the cutover's write switch the ledger takes the writes. Reverse sync reads the events \
                appended after its checkpoint, keeps those of the write path (metadata.origin command or \
                stripe: ledgerlift serve), folds each affected stream to the row the ledger holds now and runs \
                the mapping's write_back SQL (upsert, or delete for an ended stream) in one legacy transaction \
                per batch with SET LOCAL ledgerlift.origin = 'reverse_sync' (capture skips those writes, the \
                write guard lets them through), then moves its checkpoint in the store. Applying a batch twice \
                gives the same legacy rows, so a run killed at any point is simply run again.

                The cutover's write switch creates its checkpoint; --start-at-head creates it at the store's \
                head when it does not exist (by hand, or in tests). Without --follow it applies what is there \
                and exits; with --follow it keeps polling until SIGINT or SIGTERM, which stop it after the \
                current batch. One run per --scope at a time (advisory lock ledgerlift.reverse_sync/<scope>). \
                --status prints where it is (checkpoint, pending events and their age, heartbeat, last error) \
                without running. Exit status: 0 done; 1 (--status) failing or not started; 2 could not run. \
                docs/reverse-sync.md.
                """)

        @Option(help: "DSN of the legacy database written back to.")
        var legacy: String

        @OptionGroup var store: StoreOptions

        @Option(help: "The mapping file (YAML) with write_back for every entity the ledger writes.")
        var mapping: String

        @Flag(help: "Keep following new events after catching up, until SIGINT or SIGTERM.")
        var follow = false

        @Option(help: "Output format: text or json.")
        var format: ShadowCommand.Status.StatusFormat = .text

        @Option(help: "The reverse sync's scope: its checkpoint row and its lock (a cutover's name).")
        var scope: String = "default"

        @Option(help: "Events read per batch (one legacy and one store transaction each).")
        var batch: Int = 1_000

        @Option(help: "How long to wait when nothing is left to read, e.g. 100ms, 1s.")
        var pollInterval: String = "100ms"

        @Flag(help: "Create the checkpoint at the store's head when the scope was never started.")
        var startAtHead = false

        @Flag(help: "Print the reverse sync's status and exit without running.")
        var status = false

        func validate() throws {
            try DSNArguments.validate(legacy, option: "--legacy")
            guard batch > 0 else { throw ValidationError("--batch must be positive") }
            guard let poll = Run.duration(pollInterval), poll >= .milliseconds(10) else {
                throw ValidationError("--poll-interval must be a duration of at least 10ms, such as 100ms, 2s or 1.5s")
            }
            guard !scope.isEmpty else { throw ValidationError("--scope must not be empty") }
            if status, follow || startAtHead {
                throw ValidationError("--status only reads: it takes neither --follow nor --start-at-head")
            }
        }

        func run() async throws {
            let file = try ShadowCommand.loadMapping(mapping)
            let eventStore = store.store
            let scope = scope
            let connection = try await store.connect()
            defer { connection.close() }
            if status {
                let current = try await connection.withSession {
                    try ReverseSync.status(scope: scope, store: eventStore, in: $0)
                }
                print(format == .json ? Self.json(current, scope: scope).rendered : Self.text(current, scope: scope))
                if current == nil || current!.failing { throw ExitCode(1) }
                return
            }
            if startAtHead {
                try await connection.withSession { session in
                    guard try ReverseSync.status(scope: scope, store: eventStore, in: session) == nil else { return }
                    try session.transaction { tx in
                        try ReverseSync.start(
                            at: try ReverseSync.safeHead(eventStore, in: tx), scope: scope, mapping: file,
                            store: eventStore, in: tx)
                    }
                }
            }
            var configuration = ReverseSync.Configuration(
                legacyDSN: legacy, storeDSN: store.dsn, mapping: file, store: eventStore, scope: scope,
                batchSize: batch, pollInterval: Run.duration(pollInterval)!, follow: follow)
            configuration.logger = CommandLineSettings.logger("reverse-sync")
            let stop = ShadowTailer.Stop()
            let signals = TailerSignals(stop)
            defer { signals.cancel() }
            let follow = follow
            let legacy = legacy
            let summary = try await ReverseSync(configuration).run(
                stop: stop,
                started: {
                    guard follow else { return }
                    FileHandle.standardError.write(
                        Data(
                            "reverse sync \(scope) following \(eventStore.schema) into \(ConnectionString.masked(legacy)) (Ctrl-C to stop)\n"
                                .utf8))
                })
            let current = try await connection.withSession {
                try ReverseSync.status(scope: scope, store: eventStore, in: $0)
            }
            if format == .json {
                print(
                    JSONValue.object([("summary", Self.json(summary)), ("status", Self.json(current, scope: scope))])
                        .rendered)
            } else {
                print(Self.text(summary, scope: scope))
            }
        }

        static func text(_ summary: ReverseSync.Summary, scope: String) -> String {
            [
                "reverse sync \(scope): \(summary.eventsRead) event(s) read in \(summary.batches) batch(es), "
                    + "\(summary.eventsApplied) of the write path applied, \(ProjectCommand.seconds(summary.elapsed))",
                "  keys upserted \(summary.keysUpserted), deleted \(summary.keysDeleted), "
                    + "attribute refreshes \(summary.attributeRefreshes), round-trip differences \(summary.roundTripDifferences)"
                    + (summary.keysQuarantined > 0 ? ", QUARANTINED \(summary.keysQuarantined) (legacy refused them)" : ""),
                "  checkpoint \(summary.checkpoint)"
                    + (summary.caughtUp ? ", caught up" : ", stopped before catching up"),
            ].joined(separator: "\n")
        }

        static func text(_ status: ReverseSync.Status?, scope: String) -> String {
            guard let status else {
                return "reverse sync \(scope): not started (the cutover's write switch starts it; or --start-at-head)"
            }
            var lines = [
                "reverse sync \(scope): checkpoint \(status.checkpoint) (started at \(status.startedAt)), "
                    + (status.running ? "running (\(status.holder ?? "?"))" : "not running"),
                "  pending \(status.pendingEvents) write-path event(s)"
                    + (status.lagMilliseconds.map { ", oldest \($0) ms old" } ?? ""),
                "  heartbeat \(status.heartbeatAt?.iso8601 ?? "never"), caught up \(status.caughtUpAt?.iso8601 ?? "never")",
                "  batches \(status.batches), events applied \(status.eventsApplied), keys upserted \(status.keysUpserted), "
                    + "deleted \(status.keysDeleted), round-trip differences \(status.roundTripDifferences)",
            ]
            if let difference = status.lastDifference { lines.append("  last difference: \(difference)") }
            if status.quarantined > 0 {
                lines.append(
                    "  QUARANTINED \(status.quarantined) row(s) legacy refused (not in legacy; the cutover cannot "
                        + "complete nor roll back cleanly until they are written or accepted):")
                lines += status.quarantineExamples.map { "    \($0)" }
                if status.quarantined > Int64(status.quarantineExamples.count) {
                    lines.append("    … and \(status.quarantined - Int64(status.quarantineExamples.count)) more")
                }
            }
            if let error = status.lastError {
                lines.append(
                    "  last error (\(status.lastErrorAt?.iso8601 ?? "?"))\(status.failing ? "" : ", since recovered"): \(error)"
                )
            }
            return lines.joined(separator: "\n")
        }

        static func cursor(_ cursor: GlobalCursor) -> JSONValue {
            .object([("transaction_id", .integer(cursor.transactionID)), ("position", .integer(cursor.position))])
        }

        static func json(_ summary: ReverseSync.Summary) -> JSONValue {
            .object([
                ("batches", .integer(Int64(summary.batches))), ("events_read", .integer(Int64(summary.eventsRead))),
                ("events_applied", .integer(Int64(summary.eventsApplied))),
                ("keys_upserted", .integer(Int64(summary.keysUpserted))),
                ("keys_deleted", .integer(Int64(summary.keysDeleted))),
                ("attribute_refreshes", .integer(Int64(summary.attributeRefreshes))),
                ("round_trip_differences", .integer(Int64(summary.roundTripDifferences))),
                ("keys_quarantined", .integer(Int64(summary.keysQuarantined))),
                ("checkpoint", cursor(summary.checkpoint)), ("caught_up", .bool(summary.caughtUp)),
            ])
        }

        static func json(_ status: ReverseSync.Status?, scope: String) -> JSONValue {
            guard let status else { return .object([("scope", .string(scope)), ("started", .bool(false))]) }
            func time(_ t: PostgresTimestamp?) -> JSONValue { t.map { .string($0.iso8601) } ?? .null }
            return .object([
                ("scope", .string(status.scope)), ("started", .bool(true)), ("checkpoint", cursor(status.checkpoint)),
                ("started_at", cursor(status.startedAt)), ("running", .bool(status.running)),
                ("holder", status.holder.map(JSONValue.string) ?? .null), ("heartbeat_at", time(status.heartbeatAt)),
                ("caught_up_at", time(status.caughtUpAt)), ("pending_events", .integer(status.pendingEvents)),
                ("oldest_pending_at", time(status.oldestPendingAt)),
                ("lag_ms", status.lagMilliseconds.map(JSONValue.integer) ?? .null),
                ("batches", .integer(status.batches)), ("events_applied", .integer(status.eventsApplied)),
                ("keys_upserted", .integer(status.keysUpserted)), ("keys_deleted", .integer(status.keysDeleted)),
                ("round_trip_differences", .integer(status.roundTripDifferences)),
                ("last_difference", status.lastDifference.map(JSONValue.string) ?? .null),
                ("last_error", status.lastError.map(JSONValue.string) ?? .null),
                ("last_error_at", time(status.lastErrorAt)), ("failing", .bool(status.failing)),
                ("quarantined", .integer(status.quarantined)),
                (
                    "quarantine_examples",
                    .array(
                        status.quarantineExamples.map { entry in
                            .object([
                                ("entity", .string(entry.entity)), ("key", .string(entry.key)),
                                ("statement", .string(entry.statement)),
                                ("sqlstate", entry.sqlState.map(JSONValue.string) ?? .null),
                                ("reason", .string(entry.reason)), ("position", cursor(entry.position)),
                                ("attempts", .integer(entry.attempts)),
                            ])
                        })
                ),
            ])
        }
    }
}
