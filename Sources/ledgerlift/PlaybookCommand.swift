import ArgumentParser
import Foundation
import Playbook
import Postgres
import TextFormats

/// `ledgerlift playbook run|status`: a migration written down as a YAML playbook, run step by
/// step with its position recorded in the store.
struct PlaybookCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "playbook",
        abstract: "Run a migration written down as a playbook (playbooks/*.yaml), and see where runs stand.",
        subcommands: [Run.self, Status.self])

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a playbook step by step, resuming where a killed or stopped run was.",
            discussion: """
                Prints the plan, then runs each step: a ledgerlift command (run), a command repeated until it exits \
                0 (gate; exit 1 means not yet, 2 stops), a service started in the background (start), or a pause \
                for the operator (pause; --yes answers it). The position is recorded in the state database (the \
                playbook's `state` variable, usually the store; schema ledgerlift_playbook) before each step, so a \
                killed run is resumed at the step it was in by running the playbook again; steps are idempotent. \
                Variables come from --var, then the environment variable the playbook names, then its default; \
                secrets are printed masked. Exit status: 0 finished (or --dry-run); 1 a step failed, or a pause \
                waits for the operator, or another run of the playbook holds it; 2 could not run. \
                docs/playbooks.md.
                """)

        @Argument(help: "The playbook file (YAML).")
        var file: String

        @Option(name: .customLong("var"), parsing: .singleValue, help: "A variable, name=value (repeatable).")
        var variables: [String] = []

        @Flag(help: "Show the plan and what each step would do now (gates evaluated once); run and record nothing.")
        var dryRun = false

        @Flag(help: "Answer every pause: the operator has checked.")
        var yes = false

        @Option(help: "Start (or resume) at this step: its id or its number.")
        var from: String?

        @Option(help: "Stop before this step (its id or number); the next run resumes there.")
        var until: String?

        @Option(help: "Directory of the logs of services started by start steps.")
        var logDir: String = ".ledgerlift/playbook"

        func validate() throws {
            for assignment in variables where !assignment.contains("=") || assignment.hasPrefix("=") {
                throw ValidationError("--var takes name=value: \(assignment.split(separator: "=").first ?? "")")
            }
        }

        func run() async throws {
            let playbook: Playbook
            let values: PlaybookVariables
            do {
                playbook = try Playbook.load(path: file)
                var assignments = [String: String]()
                for assignment in variables {
                    let parts = assignment.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                    assignments[String(parts[0])] = String(parts[1])
                }
                values = try PlaybookVariables(
                    playbook, file: file, assignments: assignments, environment: ProcessInfo.processInfo.environment)
            }
            var options = PlaybookRunner.Options(logDirectory: logDir, interactive: isatty(0) == 1)
            options.dryRun = dryRun
            options.yes = yes
            options.from = from
            options.until = until
            let runner = PlaybookRunner(
                playbook: playbook, file: file, variables: values, options: options,
                // Unbuffered: the steps' own output (their children write to the same stdout) stays in order.
                // A playbook's titles, messages and values are the file's: printed with their control
                // characters escaped (a title cannot rewrite the operator's terminal).
                say: { text in
                    let line = text.split(separator: "\n", omittingEmptySubsequences: false)
                        .map { PrintableText.escaped(String($0)) }.joined(separator: "\n")
                    FileHandle.standardOutput.write(Data((line + "\n").utf8))
                })
            let outcome: PlaybookRunner.Outcome
            do {
                outcome = try await Self.onThread { try runner.run() }
            } catch let error as PlaybookError where error.message.contains("already running") {
                FileHandle.standardError.write(Data((Ledgerlift.prefix + values.display(error.message) + "\n").utf8))
                throw ExitCode(1)
            } catch let error as PlaybookError {
                throw PlaybookError(file: error.file, values.display(error.message))
            }
            switch outcome {
            case .finished, .planned, .stopped: return
            case .failed(let step, let reason):
                FileHandle.standardError.write(Data((Ledgerlift.prefix + "step \(step) failed: \(reason)\n").utf8))
                throw ExitCode(1)
            case .waiting(let step, _):
                FileHandle.standardError.write(
                    Data((Ledgerlift.prefix + "step \(step) waits for the operator: run again with --yes\n").utf8))
                throw ExitCode(1)
            }
        }

        /// The runner blocks (child processes, libpq): on a thread of its own, off the cooperative pool.
        static func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
            try await withCheckedThrowingContinuation { continuation in
                Thread { continuation.resume(with: Result { try body() }) }.start()
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the recorded playbook runs: where each stands, and its steps.",
            discussion: "Read only. Exit status: 0; 2 could not run.")

        @Option(help: "DSN of the state database (the playbook's state variable, usually the store).")
        var store: String

        @Option(help: "Only the runs of this playbook (its name).")
        var name: String?

        @Option(help: "At most this many runs, newest first.")
        var limit: Int = 5

        @Option(help: "Output format: text or json.")
        var format: Format = .text

        enum Format: String, ExpressibleByArgument, CaseIterable { case text, json }

        func validate() throws {
            try DSNArguments.validate(store, option: "--store")
            guard limit > 0 else { throw ValidationError("--limit must be at least 1") }
        }

        struct Service: Sendable {
            var playbook, step: String
            var pid: Int32
            var host, command, log, startedAt: String
            var running: Bool?
        }

        func run() async throws {
            let connection = try await Connection.connect(store, applicationName: "ledgerlift-playbook-status")
            defer { connection.close() }
            let (name, limit) = (self.name, self.limit)
            let state = PlaybookState()
            let (runs, services) = try await connection.withSession {
                session -> ([(PlaybookState.Run, [PlaybookState.StepRecord])], [Service]) in
                guard try state.exists(in: session) else { return ([], []) }
                return (
                    try state.runs(playbook: name, limit: limit, in: session).map {
                        ($0, try state.steps(run: $0.id, in: session))
                    },
                    try state.services(playbook: name, in: session).map {
                        Service(
                            playbook: $0.playbook, step: $0.stepID, pid: $0.pid, host: $0.host, command: $0.command,
                            log: $0.log, startedAt: $0.startedAt.iso8601,
                            running: PlaybookState.isRunning(pid: $0.pid, host: $0.host))
                    }
                )
            }
            if format == .json {
                print(
                    JSONText.object([
                        ("runs", .array(runs.map { run, steps in
                            .object([
                                ("run", .int(run.id)), ("playbook", .string(run.playbook)), ("file", .string(run.file)),
                                ("status", .string(run.status)), ("step", .int(Int64(run.stepIndex + 1))),
                                ("step_id", run.stepID.map(JSONText.string) ?? .null), ("who", .string(run.who)),
                                ("started_at", .string(run.startedAt.iso8601)),
                                ("updated_at", .string(run.updatedAt.iso8601)),
                                ("finished_at", run.finishedAt.map { .string($0.iso8601) } ?? .null),
                                ("last_error", run.lastError.map(JSONText.string) ?? .null),
                                (
                                    "steps",
                                    .array(
                                        steps.map { step in
                                            .object([
                                                ("step", .int(Int64(step.stepIndex + 1))), ("id", .string(step.stepID)),
                                                ("started_at", .string(step.startedAt.iso8601)),
                                                ("finished_at", step.finishedAt.map { .string($0.iso8601) } ?? .null),
                                                ("outcome", step.outcome.map(JSONText.string) ?? .null),
                                                ("detail", step.detail.map(JSONText.string) ?? .null),
                                            ])
                                        })
                                ),
                            ])
                        })),
                        (
                            "services",
                            .array(
                                services.map { service in
                                    .object([
                                        ("playbook", .string(service.playbook)), ("step_id", .string(service.step)),
                                        ("pid", .int(Int64(service.pid))), ("host", .string(service.host)),
                                        ("command", .string(service.command)), ("log", .string(service.log)),
                                        ("started_at", .string(service.startedAt)),
                                        ("running", service.running.map(JSONText.bool) ?? .null),
                                    ])
                                })
                        ),
                    ]).rendered)
                return
            }
            func print(_ text: String) { Swift.print(PrintableText.escaped(text)) }
            guard !runs.isEmpty else {
                print("no playbook run recorded in this database" + (name.map { " for \($0)" } ?? ""))
                return
            }
            for (run, steps) in runs {
                let position =
                    run.status == "finished"
                    ? "finished \(run.finishedAt?.iso8601 ?? "")"
                    : "\(run.status) at step \(run.stepIndex + 1) (\(run.stepID ?? "?"))"
                print("run #\(run.id) of \(run.playbook) (\(run.file)): \(position); begun \(run.startedAt.iso8601) by \(run.who)")
                if let error = run.lastError, run.status != "finished" { print("  last failure: \(error)") }
                for step in steps {
                    let outcome = step.outcome ?? (run.status == "running" ? "running, or killed" : "interrupted")
                    print(
                        "  \(step.startedAt.iso8601)  \(step.stepIndex + 1). \(step.stepID): \(outcome)"
                            + (step.detail.map { " — \($0)" } ?? ""))
                }
            }
            if !services.isEmpty { print("services started by start steps:") }
            for service in services {
                let state = service.running.map { $0 ? "running" : "not running" } ?? "on \(service.host)"
                print("  \(service.playbook)/\(service.step): pid \(service.pid) \(state), since \(service.startedAt), log \(service.log)")
                print("    \(service.command)")
            }
        }
    }
}
