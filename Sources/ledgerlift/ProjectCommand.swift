import TextFormats
import ArgumentParser
import Billing
import EventStore
import Foundation
import Logging
import Postgres
import Synchronization

/// `ledgerlift project`: brings the read models up to date with the event store.
struct ProjectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "project",
        abstract: "Project the event store into the read models (canonical tables, history, balances, revenue, MRR, aging).",
        discussion: """
            Runs to the head of the global order and stops, or keeps following it with --follow. Each batch's \
            writes and the checkpoint commit in one transaction, so a killed run is simply run again.

            The first run — and every run with --rebuild — builds blue/green: into a fresh schema \
            (<read-schema>_next, with its own checkpoint), swapped in with schema renames in one transaction \
            once it has caught up. Readers see the old read models until that commit, never a half-built one. \
            An interrupted rebuild continues where it stopped.
            """)

    @OptionGroup var store: StoreOptions

    @Option(help: "PostgreSQL schema of the read models.")
    var readSchema: String = "ledgerlift_read"

    @Option(help: "Events per batch (one transaction each).")
    var batchSize: Int = 10_000

    @Flag(help: "Rebuild from the first event into fresh tables and swap them in when caught up.")
    var rebuild = false

    @Flag(help: "After catching up, keep following new events (LISTEN/NOTIFY) until interrupted.")
    var follow = false

    func validate() throws {
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
    }

    func run() async throws {
        let connection = try await store.connect()
        let reader = try await store.connect()
        defer {
            connection.close()
            reader.close()
        }
        let eventStore = store.store
        try await connection.withSession { try eventStore.requireInitialized($0) }
        var projector = Projector(store: eventStore, readSchema: readSchema, batchSize: batchSize)
        let logger = CommandLineSettings.logger("projection")
        projector.logger = logger
        let indicator = ProjectionIndicator()

        let summary =
            rebuild
            ? try await projector.rebuild(on: connection, reader: reader, progress: indicator.show)
            : try await projector.catchUp(on: connection, reader: reader, progress: indicator.show)
        indicator.clear()
        print(Self.describe(summary))
        logger.info(
            "projection stopped",
            metadata: ["consumer": "\(summary.consumer)", "position": "\(summary.progress.cursor.position)"])

        guard follow else { return }
        let listener = try await store.connect()
        defer { listener.close() }
        FileHandle.standardError.write(Data("following \(eventStore.schema) into \(readSchema) (Ctrl-C to stop)\n".utf8))
        // The reader connection pipelines each backlog: the next batches are read and decoded
        // while the current one is written.
        try await projector.follow(on: connection, listener: listener, reader: reader, progress: indicator.show)
    }

    /// What the run did, in words a newcomer reads without knowing how a rebuild works; the
    /// checkpoint's position goes to the log (`--log-level info`).
    static func describe(_ summary: ProjectionSummary) -> String {
        let p = summary.progress
        let events = "\(ProjectCommand.grouped(p.events)) event\(p.events == 1 ? "" : "s")"
        let timing =
            p.events > 0
            ? " in \(ProjectCommand.seconds(p.elapsed)) (\(ProjectCommand.grouped(p.eventsPerSecond)) events/s)" : ""
        var line = "read models \(summary.schema): "
        if summary.rebuilt {
            line +=
                summary.swapped
                ? "built from \(events)\(timing), and put in place whole (readers never see a half-built one)"
                : "a fresh build is not finished yet (\(events) so far); run `ledgerlift project` again to continue it"
        } else {
            line += p.events == 0 ? "already up to date" : "brought up to date with \(events)\(timing)"
        }
        if p.skipped > 0 { line += "; \(ProjectCommand.grouped(p.skipped)) events that are not billing events passed over" }
        return line
    }

    /// `1234567` as `1,234,567`.
    static func grouped(_ n: Int) -> String {
        var digits = Array(String(n.magnitude))
        var i = digits.count - 3
        while i > 0 {
            digits.insert(",", at: i)
            i -= 3
        }
        return (n < 0 ? "-" : "") + String(digits)
    }

    /// `12.3s`.
    static func seconds(_ d: Duration) -> String {
        let tenths = d.components.seconds * 10 + d.components.attoseconds / 100_000_000_000_000_000
        return "\(tenths / 10).\(tenths % 10)s"
    }
}

/// A one-line progress indicator on stderr (events, events/s), drawn only on a terminal.
private final class ProjectionIndicator: Sendable {
    private let enabled = CommandLineSettings.drawsProgress
    private let lastDrawn = Mutex<ContinuousClock.Instant?>(nil)

    func show(_ progress: ProjectionProgress) {
        guard enabled else { return }
        let now = ContinuousClock.now
        let due = lastDrawn.withLock { last -> Bool in
            guard last.map({ now - $0 >= .milliseconds(200) }) ?? true else { return false }
            last = now
            return true
        }
        guard due else { return }
        let line =
            "projected \(ProjectCommand.grouped(progress.events)) events in \(ProjectCommand.grouped(progress.batches)) "
            + "batches (\(ProjectCommand.grouped(progress.eventsPerSecond)) events/s)"
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
