import TextFormats
import ArgumentParser
import Billing
import EventStore
import Foundation
import Postgres

/// Options shared by commands that talk to the event store.
struct StoreOptions: ParsableArguments {
    @Option(name: .customLong("store"), help: "DSN of the PostgreSQL database holding the event store.")
    var dsn: String

    @Option(help: "PostgreSQL schema of the event store.")
    var schema: String = "ledgerlift"

    var store: EventStore { EventStore(schema: schema) }

    func validate() throws {
        try DSNArguments.validate(dsn, option: "--store")
    }

    func connect() async throws -> Connection {
        try await Connection.connect(dsn, applicationName: "ledgerlift")
    }
}

/// `ledgerlift store …`: create and inspect the event store.
struct StoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Create, upgrade and inspect the event store.",
        subcommands: [Init.self, Stats.self, Reset.self]
    )

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the event store schema, or upgrade it to this version (idempotent).",
            discussion: """
                Run it as the role that is to own the store. With --grant-to, it also grants another role \
                exactly what every other command needs (append and read events, checkpoints, snapshots, the \
                backfill's bookkeeping, the read models) and nothing that could alter the event log: the \
                writer cannot update, delete or truncate events, alter the table or disable its append-only \
                trigger. Run everything but store init as that role. docs/security.md lists the grants.
                """)

        @OptionGroup var options: StoreOptions

        @Option(
            help: ArgumentHelp(
                "Grant this role the privileges of a writer that cannot alter the event log (rerun after upgrades).",
                valueName: "role"))
        var grantTo: String?

        func run() async throws {
            let connection = try await options.connect()
            defer { connection.close() }
            let store = options.store
            let (from, to) = try await connection.withSession { try store.migrate($0) }
            let masked = ConnectionString.masked(options.dsn)
            if from == to {
                print("event store \(store.schema) at \(masked) is up to date (schema version \(to))")
            } else {
                print("event store \(store.schema) at \(masked): schema version \(from) → \(to)")
            }
            guard let role = grantTo else { return }
            // A WriterRoleError says which role and why, e.g. "role app is a superuser: …".
            let statements = try await connection.withSession { try store.grantWriter(role, in: $0) }
            print("\(role) may now append and read, but not alter the event log; granted:")
            for statement in statements { print("  " + statement + ";") }
        }
    }

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Count events per type and per stream category.")

        @OptionGroup var options: StoreOptions

        @Option(help: "Output format: table or json.")
        var format: OutputFormat = .table

        func run() async throws {
            let store = options.store
            let stats = try await options.read { session in
                try store.requireInitialized(session)
                return try store.stats(in: session)
            }
            format.print {
                JSONText.object([
                    ("events", .int(stats.totalEvents)), ("streams", .int(stats.totalStreams)),
                    ("head_position", .int(stats.headPosition)),
                    ("by_type", .array(stats.byType.map { .object([("type", .string($0.name)), ("events", .int($0.events)), ("streams", .int($0.streams))]) })),
                    ("by_category", .array(stats.byCategory.map { .object([("category", .string($0.name)), ("events", .int($0.events)), ("streams", .int($0.streams))]) })),
                ])
            } table: {
                [
                    "\(stats.totalEvents) events in \(stats.totalStreams) streams (head position \(stats.headPosition))\n",
                    TextTable(["event type", "events", "streams"], stats.byType.map { [$0.name, "\($0.events)", "\($0.streams)"] }, rightAligned: [1, 2]).rendered,
                    "",
                    TextTable(["category", "events", "streams"], stats.byCategory.map { [$0.name, "\($0.events)", "\($0.streams)"] }, rightAligned: [1, 2]).rendered,
                ].joined(separator: "\n")
            }
        }
    }
}

/// `ledgerlift events --stream ID`: print one stream.
struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Print the events of one stream, in stream order.")

    @OptionGroup var options: StoreOptions

    @Option(help: "The stream id, e.g. invoice-1042.")
    var stream: String

    @Option(help: "Only events whose business time is at or before this instant: a date (its end, UTC) or a timestamp.")
    var asOf: String?

    @Option(help: "Output format: table or json.")
    var format: OutputFormat = .table

    func validate() throws { try BusinessTime.validate(asOf) }

    func run() async throws {
        let store = options.store
        let cutoff = try BusinessTime.validated(asOf)
        let stream = stream
        let events = try await options.read { session in
            try store.requireInitialized(session)
            return try store.readStream(stream, asOf: cutoff.map { .occurredAt($0) }, in: session)
        }
        // An unknown stream is not found (exit 1), as `query invoice` says of an unknown invoice.
        if events.isEmpty {
            FileHandle.standardError.write(
                Data("stream \(stream): not found\(cutoff == nil ? "" : " as of \(asOf ?? "")")\n".utf8))
            throw ExitCode(1)
        }
        switch format {
        case .json:
            // One JSON object per line (JSON Lines): a long stream prints as it goes.
            for e in events {
                print(
                    JSONText.object([
                        ("global_position", .int(e.globalPosition)), ("event_id", .string(e.eventID.uuidString.lowercased())),
                        ("stream_id", .string(e.streamID)), ("stream_version", .int(e.streamVersion)),
                        ("event_type", .string(e.eventType)), ("schema_version", .int(Int64(e.schemaVersion))),
                        ("occurred_at", .string(e.occurredAt.iso8601)), ("recorded_at", .string(e.recordedAt.iso8601)),
                        ("payload", .raw(e.payload.text)), ("metadata", .raw(e.metadata.text)),
                    ]).rendered)
            }
        case .table:
            print(
                TextTable(
                    ["version", "occurred at", "type", "payload"],
                    events.map { ["\($0.streamVersion)", $0.occurredAt.iso8601, $0.eventType, $0.payload.text] },
                    rightAligned: [0]
                ).rendered)
        }
    }
}

/// How a command prints its result.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case table, json
}
