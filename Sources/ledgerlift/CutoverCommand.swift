import ArgumentParser
import Cutover
import EventStore
import Foundation
import Mapping
import Postgres
import TextFormats

/// `ledgerlift cutover …`: the operator's command, one gated and recorded step at a time.
struct CutoverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cutover",
        abstract: "Move from legacy to the ledger in gated, recorded steps (init, status, advance, rollback, abort, log).",
        discussion: """
            States: planned → capturing → backfilled → shadowing → verified → reads_switched → writes_switched → \
            completed; abort from any state before writes_switched. Every transition is an event of the stream \
            cutover-<name> in the event store, with who, where, when, why and the gates' evidence. Rollback: \
            reads_switched → shadowing, writes_switched → reads_switched. The write switch and its rollback are \
            bounded by --max-freeze and recorded as intended before they start, so a command killed midway is \
            completed or undone by the next one. One operator at a time: a second command while one runs is \
            refused, naming the holder (--wait queues). Exit status: 0 done; 1 a gate failed, a switch was undone \
            or the command was refused; 2 could not run. docs/cutover.md.
            """,
        subcommands: [Init.self, Status.self, Advance.self, Rollback.self, Abort.self, Log.self]
    )

    enum Format: String, ExpressibleByArgument, CaseIterable { case text, json }

    /// The options every cutover command takes: where the store is and which cutover.
    struct StoreOptions: ParsableArguments {
        @Option(help: "DSN of the database holding the event store.")
        var store: String

        @Option(help: "PostgreSQL schema of the event store.")
        var schema: String = "ledgerlift"

        @Option(help: "The cutover's name: its stream is cutover-<name>.")
        var name: String = "default"

        @Option(help: "Output format: text or json.")
        var format: Format = .text

        func validate() throws { try DSNArguments.validate(store, option: "--store") }

        func runner(tailer: String = "default", readSchema: String = "ledgerlift_read") throws -> CutoverRunner {
            try CutoverRunner(store: EventStore(schema: schema), name: name, tailerName: tailer, readSchema: readSchema)
        }
    }

    /// What the gates read from legacy and how strict they are.
    struct GateOptions: ParsableArguments {
        @Option(help: "DSN of the legacy database.")
        var legacy: String

        @Option(help: "The mapping file (default: the path recorded by cutover init; its fingerprint must match).")
        var mapping: String?

        @Option(help: "The shadow tailer's name (shadow run --name).")
        var tailer: String = "default"

        @Option(help: "PostgreSQL schema of the read models the tailer follows.")
        var readSchema: String = "ledgerlift_read"

        @Option(help: "Lag gate: the tailer's p99 lag must be below this many seconds.")
        var maxLag: Double = 5

        @Option(help: "Verified gate: this many clean verifications in a row…")
        var cleanVerifications: Int = 3

        @Option(help: "…spanning at least this many minutes.")
        var cleanMinutes: Int = 60

        @Option(help: "Verified gate: candidate mismatches are counted over the last this many commands.")
        var candidateCommands: Int = 1000

        func validate() throws {
            try DSNArguments.validate(legacy, option: "--legacy")
            guard maxLag > 0 else { throw ValidationError("--max-lag must be more than 0") }
            guard cleanVerifications > 0 else { throw ValidationError("--clean-verifications must be at least 1") }
            guard cleanMinutes >= 0 else { throw ValidationError("--clean-minutes must not be negative") }
            guard candidateCommands > 0 else { throw ValidationError("--candidate-commands must be at least 1") }
        }

        func options(acceptQuarantine: String? = nil) -> CutoverGateOptions {
            var options = CutoverGateOptions()
            options.maxLag = .milliseconds(Int64((maxLag * 1000).rounded()))
            options.cleanVerifications = cleanVerifications
            options.cleanSpan = .seconds(cleanMinutes * 60)
            options.candidateCommands = candidateCommands
            options.acceptQuarantine = acceptQuarantine
            return options
        }

        func loadMapping(recorded: CutoverRecord) throws -> MappingFile {
            try MappingFile.load(path: mapping ?? recorded.initialized.mappingPath)
        }
    }

    /// The freeze budget of the switches that hold the application's writes.
    struct FreezeOptions: ParsableArguments {
        @Option(help: "The write switch and its rollback hold the application's writes at most this many seconds.")
        var maxFreeze: Double = 2

        func validate() throws {
            guard maxFreeze > 0, maxFreeze <= 600 else {
                throw ValidationError("--max-freeze must be more than 0 and at most 600 seconds")
            }
        }

        var options: CutoverSwitchOptions {
            CutoverSwitchOptions(
                maxFreeze: .milliseconds(Int64((maxFreeze * 1000).rounded())),
                pauseAt: ProcessInfo.processInfo.environment["LEDGERLIFT_CUTOVER_PAUSE_AT"])
        }
    }

    /// A switch that was undone exits 1 after saying why; with `--format json` its outcome is
    /// also on stdout (a script reads the undone step, the failure and what was measured there).
    static func switchFailuresExitOne(format: CutoverCommand.Format, _ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let failure as CutoverSwitchFailure {
            if format == .json { print(CutoverRendering.json(failure), terminator: "") }
            FileHandle.standardError.write(Data((Ledgerlift.prefix + failure.description + "\n").utf8))
            throw ExitCode(1)
        }
    }

    /// A reason is recorded in the audit trail and printed by `cutover log` and the dossier:
    /// printable text only (an escape sequence would rewrite the operator's terminal).
    static func validate(reason: String?) throws {
        guard let reason, let unsafe = PrintableText.firstUnsafe(reason) else { return }
        throw ValidationError("--reason must be printable text on one line: it contains the control character \(unsafe)")
    }

    /// Connects to the store, takes the operator lock and runs `body`; a ``CutoverError`` that
    /// means "refused" (gate, machine, lock) exits 1 after its `Error: ` line, any other error 2.
    ///
    /// `status` and `log` only read, so they run without the lock (`locking: false`): an operator
    /// can watch while another advances.
    static func run(
        _ options: StoreOptions, application: String, locking: Bool = true, wait: Bool = false,
        _ body: @escaping (Connection, CutoverRunner) async throws -> Void
    ) async throws {
        let runner = try options.runner()
        let store = try await Connection.connect(options.store, applicationName: application)
        defer { store.close() }
        // Before the operator lock: a store `store init` never ran (or has not upgraded to the
        // routing table) is said plainly, not as a missing relation.
        let eventStore = runner.log.store
        try await store.withSession {
            try eventStore.requireSchema(atLeast: EventStore.routingSchemaVersion, $0)
        }
        try await refusalsExitOne {
            guard locking else { return try await body(store, runner) }
            try await runner.withOperatorLock(on: store, wait: wait) { try await body(store, runner) }
        }
    }

    static func refusalsExitOne(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as CutoverError where error.exitCode == 1 {
            FileHandle.standardError.write(Data((Ledgerlift.prefix + error.description + "\n").utf8))
            throw ExitCode(1)
        }
    }

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start a cutover at planned, recording the masked DSNs and the mapping's path and fingerprint.",
            discussion: """
                Appends CutoverInitialized to the stream cutover-<name>. No password is stored: later commands take \
                the DSNs as options again. Refused (exit 2) when a cutover of that name exists.
                """)

        @OptionGroup var common: StoreOptions

        @Flag(help: "Wait for another cutover command to finish instead of refusing.")
        var wait = false

        @Option(help: "DSN of the legacy database.")
        var legacy: String

        @Option(help: "The mapping file (YAML).")
        var mapping: String

        func validate() throws { try DSNArguments.validate(legacy, option: "--legacy") }

        func run() async throws {
            let file = try MappingFile.load(path: mapping)
            let path = URL(fileURLWithPath: mapping).standardizedFileURL.path
            let legacy = self.legacy
            let format = common.format
            try await CutoverCommand.run(common, application: "ledgerlift-cutover-init", wait: wait) { store, runner in
                let record = try await runner.initialize(legacy: legacy, store: store, mappingPath: path, mapping: file)
                print(format == .json ? CutoverRendering.json(record) : CutoverRendering.text(record), terminator: "")
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the cutover's state and the next step's gates, measured now.",
            discussion: "Read only. Exit status: 0 when the next step's gates pass (or it has none), 1 when one fails.")

        @OptionGroup var common: StoreOptions
        @OptionGroup var gates: GateOptions

        func run() async throws {
            let (gates, format) = (self.gates, common.format)
            try await CutoverCommand.run(common, application: "ledgerlift-cutover-status", locking: false) {
                store, runner in
                let runner = try CutoverRunner(
                    store: runner.log.store, name: runner.log.name, tailerName: gates.tailer,
                    readSchema: gates.readSchema)
                let record = try await runner.record(store: store)
                let legacy = try await Connection.connect(gates.legacy, applicationName: "ledgerlift-cutover-status")
                defer { legacy.close() }
                let status = try await runner.status(
                    legacy: legacy, store: store, mapping: try gates.loadMapping(recorded: record),
                    options: gates.options())
                print(format == .json ? CutoverRendering.json(status) : CutoverRendering.text(status), terminator: "")
                if let failing = status.gates?.filter({ !$0.passed }), !failing.isEmpty, let step = status.next {
                    throw CutoverError.gatesFailed(step: step, failing: failing.map(\.name))
                }
            }
        }
    }

    struct Advance: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take the next step if its gates pass, recording it with the gates' evidence.",
            discussion: """
                Evaluates the gates of the next step and appends CutoverAdvanced when every one passes. With \
                --dry-run nothing is recorded. Exit status 1 when a gate fails or the step is refused; 2 for a \
                step this build does not implement (past verified).
                """)

        @OptionGroup var common: StoreOptions
        @OptionGroup var gates: GateOptions

        @Flag(help: "Wait for another cutover command to finish instead of refusing.")
        var wait = false

        @Option(help: "The state to advance to; must be the next one.")
        var to: CutoverState?

        @Flag(help: "Evaluate and show the gates; record nothing.")
        var dryRun = false

        @Option(help: "Why (recorded in the event).")
        var reason: String?

        @Flag(help: "Accept quarantined keys: the backfill's at capturing → backfilled, changes quarantined since then at the write switch, reverse sync's at writes_switched → completed (requires --reason; recorded).")
        var acceptQuarantine = false

        @OptionGroup var freeze: FreezeOptions

        func validate() throws {
            try CutoverCommand.validate(reason: reason)
            if acceptQuarantine, (reason ?? "").trimmingCharacters(in: .whitespaces).isEmpty {
                throw ValidationError(
                    "--accept-quarantine needs --reason TEXT saying why the quarantined keys are accepted")
            }
        }

        func run() async throws {
            let (gates, format, to, dryRun, reason) = (self.gates, common.format, self.to, self.dryRun, self.reason)
            let options = gates.options(acceptQuarantine: acceptQuarantine ? reason : nil)
            let switchOptions = freeze.options
            try await CutoverCommand.switchFailuresExitOne(format: format) {
            try await CutoverCommand.run(common, application: "ledgerlift-cutover-advance", wait: wait) {
                store, runner in
                let runner = try CutoverRunner(
                    store: runner.log.store, name: runner.log.name, tailerName: gates.tailer,
                    readSchema: gates.readSchema)
                let record = try await runner.record(store: store)
                let legacy = try await Connection.connect(gates.legacy, applicationName: "ledgerlift-cutover-advance")
                defer { legacy.close() }
                let outcome = try await runner.advance(
                    to: to, dryRun: dryRun, reason: reason, legacy: legacy, store: store,
                    mapping: try gates.loadMapping(recorded: record), options: options, switchOptions: switchOptions)
                print(format == .json ? CutoverRendering.json(outcome) : CutoverRendering.text(outcome), terminator: "")
                if !outcome.passed {
                    throw CutoverError.gatesFailed(
                        step: outcome.step, failing: outcome.gates.filter { !$0.passed }.map(\.name))
                }
            }
            }
        }
    }

    struct Rollback: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One step back: reads_switched → shadowing, or writes_switched → reads_switched.",
            discussion: """
                From reads_switched: reads are routed to legacy again. From writes_switched, bounded by \
                --max-freeze: serve's writes are frozen ("writes have moved back"), reverse sync drained, the keys the \
                ledger wrote re-verified in legacy, the legacy write guard removed, writes routed to legacy. On a \
                failure every step is undone and writes stay with the ledger (exit 1, with the reason).
                """)

        @OptionGroup var common: StoreOptions
        @OptionGroup var gates: GateOptions
        @OptionGroup var freeze: FreezeOptions

        @Flag(help: "Wait for another cutover command to finish instead of refusing.")
        var wait = false

        @Option(help: "Why (recorded in the event).")
        var reason: String?

        func validate() throws { try CutoverCommand.validate(reason: reason) }

        func run() async throws {
            let (gates, format, reason) = (self.gates, common.format, self.reason)
            let switchOptions = freeze.options
            try await CutoverCommand.switchFailuresExitOne(format: format) {
                try await CutoverCommand.run(common, application: "ledgerlift-cutover-rollback", wait: wait) {
                    store, runner in
                    let runner = try CutoverRunner(
                        store: runner.log.store, name: runner.log.name, tailerName: gates.tailer,
                        readSchema: gates.readSchema)
                    let record = try await runner.record(store: store)
                    let legacy = try await Connection.connect(
                        gates.legacy, applicationName: "ledgerlift-cutover-rollback")
                    defer { legacy.close() }
                    let mapping = try gates.loadMapping(recorded: record)
                    let transition = try await runner.rollback(
                        reason: reason, legacy: legacy, store: store, mapping: mapping, switchOptions: switchOptions,
                        drain: CutoverCommand.reverseSyncDrain(
                            legacy: gates.legacy, store: common.store, schema: common.schema, scope: common.name,
                            mapping: mapping))
                    print(
                        format == .json
                            ? CutoverRendering.transitionJSON(.rolledBack(transition)).rendered + "\n"
                            : CutoverRendering.logLine(.rolledBack(transition)),
                        terminator: "")
                }
            }
        }
    }

    struct Abort: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "End the cutover at aborted (allowed before writes_switched), with the reason.",
            discussion:
                "Appends CutoverAborted. Legacy stays authoritative; shadow mode keeps running until you stop it.")

        @OptionGroup var common: StoreOptions

        @Flag(help: "Wait for another cutover command to finish instead of refusing.")
        var wait = false

        @Option(help: "Why (recorded in the event).")
        var reason: String

        func validate() throws {
            try CutoverCommand.validate(reason: reason)
            guard !reason.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw ValidationError("--reason must say why the cutover is aborted")
            }
        }

        func run() async throws {
            let (reason, format) = (self.reason, common.format)
            try await CutoverCommand.run(common, application: "ledgerlift-cutover-abort", wait: wait) { store, runner in
                let record = try await runner.abort(reason: reason, store: store)
                print(format == .json ? CutoverRendering.json(record) : CutoverRendering.text(record), terminator: "")
            }
        }
    }

    struct Log: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the cutover's audit trail: every transition with who, where, when, why and the gates.")

        @OptionGroup var common: StoreOptions

        @Option(
            name: .customLong("expect-state"),
            help: "Exit 1 unless the cutover is in one of these states (repeatable): a check for scripts and playbooks.")
        var expectStates: [CutoverState] = []

        func run() async throws {
            let (format, expected) = (common.format, expectStates)
            try await CutoverCommand.run(common, application: "ledgerlift-cutover-log", locking: false) {
                store, runner in
                let record = try await runner.record(store: store)
                print(
                    format == .json ? CutoverRendering.logJSON(record) : CutoverRendering.logText(record),
                    terminator: "")
                if !expected.isEmpty, !expected.contains(record.state) {
                    FileHandle.standardError.write(
                        Data(
                            (Ledgerlift.prefix + "the cutover is \(record.state.rawValue), not "
                                + expected.map(\.rawValue).joined(separator: " or ") + "\n").utf8))
                    throw ExitCode(1)
                }
            }
        }
    }
}

extension CutoverState: ExpressibleByArgument {
    public static var allValueStrings: [String] { allCases.map(\.rawValue) }
}
