import ArgumentParser
import Foundation
import Mapping
import Postgres
import Shadow

/// `ledgerlift shadow …`: shadow mode, where the legacy application stays authoritative and the
/// database captures each of its writes for the ledger.
struct ShadowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shadow",
        abstract: "Capture every legacy write for the ledger while the legacy application stays authoritative.",
        discussion: "How it works, what is recorded and the privileges it needs: docs/shadow.md.",
        subcommands: [Install.self, Uninstall.self, Run.self, Resync.self, Status.self, ReverseSyncRun.self]
    )

    /// Loads the mapping file; its errors (each with file, entity, field and line) fail the
    /// command with exit status 2 before anything connects.
    static func loadMapping(_ path: String) throws -> MappingFile {
        try MappingFile.load(path: path)
    }

    struct Install: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Install capture triggers on every table the mapping's sources name (idempotent).",
            discussion: """
                Creates (or upgrades) the ledgerlift_capture schema in the legacy database and, on every table \
                named in the mapping's sources, statement-level AFTER INSERT, UPDATE, DELETE and TRUNCATE triggers \
                that record each changed row's key columns (old and new), the operation, the writing \
                transaction's xid8 and the time, in the same transaction as the write. One transaction; run it \
                again with the same mapping and nothing changes, with a mapping naming more tables and their \
                triggers are added. Creating a trigger briefly locks its table against writes.

                Run it as a role that owns the source tables (or has TRIGGER on them) and may create a schema \
                in the database; the application's role needs no new grant. docs/shadow.md.
                """)

        @Option(help: "DSN of the legacy database.")
        var legacy: String

        @Option(help: "The mapping file (YAML): its sources name the tables to capture.")
        var mapping: String

        func validate() throws {
            try DSNArguments.validate(legacy, option: "--legacy")
        }

        func run() async throws {
            let file = try ShadowCommand.loadMapping(mapping)
            let connection = try await Connection.connect(legacy, applicationName: "ledgerlift-shadow-install")
            defer { connection.close() }
            let installer = CaptureInstaller()
            let report = try await connection.withSession { try installer.install(file, in: $0) }
            let masked = ConnectionString.masked(legacy)
            let schema = installer.capture.schema
            if report.schemaFrom == 0 {
                print("capture schema \(schema) created at \(masked) (schema version \(report.schemaTo))")
            } else if report.schemaFrom != report.schemaTo {
                print("capture schema \(schema) at \(masked): schema version \(report.schemaFrom) → \(report.schemaTo)")
            }
            for table in report.added { print("  capturing \(table)") }
            for table in report.changed { print("  capturing \(table) (triggers regenerated)") }
            for table in report.unchanged { print("  capturing \(table) (unchanged)") }
            for table in report.notInMapping { print("  capturing \(table) (installed earlier, not in this mapping)") }
            if let xid = report.recordedXid {
                print("install recorded: transaction \(xid)")
            } else {
                print("capture at \(masked) is up to date: nothing changed")
            }
        }
    }

    struct Uninstall: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove every capture trigger and the ledgerlift_capture schema from the legacy database.",
            discussion: """
                Drops every trigger that executes a function of the ledgerlift_capture schema (found in the \
                catalog, so no mapping is needed), then the schema with the changes not yet applied. With \
                --mapping, triggers of the capture's names on the mapping's tables are dropped too. One \
                transaction; the legacy schema is then as it was before install. Uninstalling what is not \
                installed does nothing.
                """)

        @Option(help: "DSN of the legacy database.")
        var legacy: String

        @Option(help: "The mapping file (YAML), optional: its source tables are checked for leftover triggers too.")
        var mapping: String?

        func validate() throws {
            try DSNArguments.validate(legacy, option: "--legacy")
        }

        func run() async throws {
            let file = try mapping.map(ShadowCommand.loadMapping)
            let connection = try await Connection.connect(legacy, applicationName: "ledgerlift-shadow-uninstall")
            defer { connection.close() }
            let installer = CaptureInstaller()
            let report = try await connection.withSession { try installer.uninstall(mapping: file, in: $0) }
            let masked = ConnectionString.masked(legacy)
            guard report.schemaExisted || !report.tables.isEmpty else {
                print("capture is not installed at \(masked): nothing to remove")
                return
            }
            for table in report.tables { print("  capture triggers dropped from \(table)") }
            if report.pendingChanges > 0 {
                print("  \(report.pendingChanges) captured change(s) not yet applied were discarded")
            }
            print("capture removed from \(masked) (schema \(installer.capture.schema) dropped)")
        }
    }
}
