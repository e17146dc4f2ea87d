import TextFormats
import ArgumentParser
import Foundation
import Migration
import Postgres

extension StoreCommand {
    /// `ledgerlift store reset`: start over with an empty store.
    struct Reset: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drop the event store and its read models, and create an empty store (to start over).",
            discussion: """
                Drops every event, stream, snapshot, checkpoint, the backfill's bookkeeping and quarantine, and the \
                read models (the --read-schema and its _next/_old copies), then creates an empty store at the current \
                schema version. The legacy database is not touched.

                For iterating on a mapping before going live: edit the mapping, `backfill --dry-run`, `store reset`, \
                `backfill`, `diff` (docs/mapping.md). Asks you to type the store's database name to confirm, unless \
                --yes; refuses while a backfill runs on the store (or waits, with --wait).

                Exit status: 0 reset; 2 not done (not confirmed, store busy, unreachable).
                """)

        @OptionGroup var options: StoreOptions

        @Option(help: "PostgreSQL schema of the read models.")
        var readSchema: String = "ledgerlift_read"

        @Flag(help: "Do not ask for confirmation.")
        var yes = false

        @Flag(help: "Wait for a running backfill of this store instead of refusing.")
        var wait = false

        func run() async throws {
            let connection = try await options.connect()
            defer { connection.close() }
            let reset = StoreReset(store: options.store, readSchema: readSchema)
            let (database, contents) = try await connection.withSession { session in
                (
                    try session.query("SELECT current_database()").rows[0].decode(at: 0, as: String.self),
                    try reset.contents(session)
                )
            }
            let target = "database \"\(database)\" at \(ConnectionString.masked(options.dsn))"
            if !yes {
                let what = contents.schemas.isEmpty
                    ? "nothing exists yet (an empty store will be created)"
                    : "schemas \(contents.schemas.joined(separator: ", ")) with \(contents.events) events"
                FileHandle.standardError.write(
                    Data("This drops \(what) in \(target).\nType the database name (\(database)) to confirm: ".utf8))
                guard let answer = readLine(strippingNewline: true) else {
                    throw NotConfirmed(reason: "no answer on standard input (pass --yes in scripts)")
                }
                guard answer.trimmingCharacters(in: .whitespaces) == database else {
                    throw NotConfirmed(reason: "'\(answer)' is not \(database)")
                }
            }
            let dropped = try await connection.withSession { try reset.reset($0, wait: wait) }
            print(
                dropped.schemas.isEmpty
                    ? "created an empty event store \(options.schema) in \(target)"
                    : "dropped \(dropped.schemas.joined(separator: ", ")) (\(dropped.events) events) and created an empty "
                        + "event store \(options.schema) in \(target)")
        }
    }
}

/// The operator did not confirm a destructive command: nothing was changed.
struct NotConfirmed: Error, CustomStringConvertible {
    let reason: String
    var description: String { "not confirmed: \(reason); nothing was dropped" }
}
