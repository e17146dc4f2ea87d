import ArgumentParser
import Foundation
import Postgres
import Simulator

/// `ledgerlift simulate verify`: the proof that no acknowledged write was lost.
struct SimulateVerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check that every write a simulate journal acknowledged is in the final system.",
        discussion: """
            Reads the journal written by `ledgerlift simulate --journal FILE` (JSON lines: each operation prepared, \
            then acknowledged; one prepared but never acknowledged is in doubt, its effects allowed, not required), folds later operations on the same row in (business time, op id) order, and checks every \
            expected row and field, a few thousand keys per query, against the legacy tables (--legacy) or the \
            ledger's read models (--store, after waiting for the projection to catch up). A last line without a \
            newline (an acknowledgement cut off by a crash) is ignored with a note. docs/journal.md describes the \
            format and the report.

            Exit status: 0 every acknowledged effect is present; 1 some write was lost, altered or resurrected \
            (listed by op id); 2 could not run (unreadable or malformed journal, unreachable database, usage).
            """)

    @Option(help: ArgumentHelp("The journal written by `ledgerlift simulate --journal`.", valueName: "file"))
    var journal: String

    @Option(help: "DSN of the legacy database to check (read only).")
    var legacy: String?

    @Option(help: "DSN of the database holding the event store and read models to check (read only).")
    var store: String?

    @Option(help: "PostgreSQL schema of the legacy tables (with --legacy).")
    var legacySchema: String = "legacy"

    @Option(help: "PostgreSQL schema of the event store (with --store).")
    var schema: String = "ledgerlift"

    @Option(help: "PostgreSQL schema of the read models (with --store).")
    var readSchema: String = "ledgerlift_read"

    @Option(help: "Seconds to wait for the projection to catch up before checking (with --store), 0 to 86400.")
    var catchUpTimeout: Int = 30

    @Option(help: "Report format: text or json.")
    var report: VerifyReportFormat = .text

    @Option(help: "List at most this many failures (all are counted).")
    var maxRows: Int = 100

    func validate() throws {
        switch (legacy, store) {
        case (nil, nil): throw ValidationError("give the system to check: --legacy DSN or --store DSN")
        case (.some, .some): throw ValidationError("give one of --legacy and --store, not both")
        case (let dsn?, nil): try DSNArguments.validate(dsn, option: "--legacy")
        case (nil, let dsn?): try DSNArguments.validate(dsn, option: "--store")
        }
        guard maxRows >= 0 else { throw ValidationError("--max-rows must be 0 or more") }
        guard (0...86_400).contains(catchUpTimeout) else {
            throw ValidationError("--catch-up-timeout must be between 0 and 86400 seconds (a day)")
        }
    }

    func run() async throws {
        // Said here in a sentence: Foundation's own message for a directory or an unreadable
        // file is "NSCocoaErrorDomain error 256".
        if let problem = Self.unreadableReason(journal) {
            standardError(
                Ledgerlift.prefix + "simulate verify could not run: journal \(journal) cannot be read: \(problem)\n")
            throw ExitCode(2)
        }
        let target: JournalVerifier.Target =
            if let legacy {
                .legacy(dsn: legacy, schema: legacySchema)
            } else {
                .store(
                    dsn: store ?? "", storeSchema: schema, readSchema: readSchema,
                    catchUpTimeout: .seconds(catchUpTimeout))
            }
        let terminal = CommandLineSettings.drawsProgress
        let verifier = JournalVerifier(
            journal: journal, target: target, maxRows: maxRows,
            progress: { event in
                guard terminal else { return }
                switch event {
                case .journalRead(let lines, let rows):
                    standardError("\r\u{1B}[Kjournal read: \(lines) lines, \(rows) rows to check")
                case .waitingForProjection:
                    standardError("\r\u{1B}[Kwaiting for the projection to catch up…")
                case .entityChecked(let entity, let rows):
                    standardError("\r\u{1B}[K\(entity): \(rows) rows checked")
                }
            })
        let verification: JournalVerification
        do {
            verification = try await verifier.run()
            if terminal { standardError("\r\u{1B}[K") }
        } catch {
            if terminal { standardError("\r\u{1B}[K") }
            let arguments = ["--legacy", legacy ?? "", "--store", store ?? ""]
            let reason = DSNArguments.scrub("\(error)", arguments: arguments)
            standardError(Ledgerlift.prefix + "simulate verify could not run: \(reason)\n")
            throw ExitCode(2)
        }
        switch report {
        case .text:
            print(verification.text, terminator: "")
        case .json:
            print(verification.json, terminator: "")
            // The verdict, once more, where a log shows it.
            standardError(
                verification.isClean
                    ? "simulate verify: clean\n"
                    : "simulate verify: \(verification.lost) lost, \(verification.alteredFields) altered, "
                        + "\(verification.resurrected) resurrected\n")
        }
        if verification.exitCode != 0 { throw ExitCode(verification.exitCode) }
    }
}

extension SimulateVerifyCommand {
    /// Why the file at `path` cannot be read (`it is a directory`, `No such file or
    /// directory`, `Permission denied`), or `nil` when it can be opened for reading.
    static func unreadableReason(_ path: String) -> String? {
        // FileManager, not stat(2): the C struct's members resolve to another module in release
        // builds (MemberImportVisibility).
        let attributes: [FileAttributeKey: Any]
        do {
            // Followed to what a link names, as stat(2) follows it.
            attributes = try FileManager.default.attributesOfItem(
                atPath: URL(fileURLWithPath: path).resolvingSymlinksInPath().path)
        } catch {
            return FileManager.default.fileExists(atPath: path)
                ? String(cString: strerror(EACCES)) : String(cString: strerror(ENOENT))
        }
        switch attributes[.type] as? FileAttributeType {
        case .typeDirectory?: return "it is a directory"
        case .typeRegular?: break
        default: return "it is not a regular file"
        }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return String(cString: strerror(errno)) }
        close(descriptor)
        return nil
    }
}

/// The formats of `ledgerlift simulate verify --report`.
enum VerifyReportFormat: String, ExpressibleByArgument, CaseIterable {
    case text
    case json
}

private func standardError(_ text: String) {
    FileHandle.standardError.write(Data(text.utf8))
}
