import Foundation
import Postgres

/// Runs a playbook step by step, recording its position in the state database before each
/// step, so a run killed anywhere is resumed at the step it was in by running it again (steps
/// are idempotent: `unless`, and commands that are no-ops once done).
public struct PlaybookRunner: Sendable {
    public struct Options: Sendable {
        public var dryRun = false
        /// Answers the pauses ("the operator has looked").
        public var yes = false
        /// Start (or resume) at this step id, or 1-based number.
        public var from: String?
        /// Stop before this step (id or number): the run is left there, and the next resumes at it.
        public var until: String?
        /// Where `start` steps write their services' logs.
        public var logDirectory: String
        /// The `ledgerlift` every step runs.
        public var executable: String
        /// Whether the operator can be asked (stdin is a terminal).
        public var interactive: Bool

        public init(logDirectory: String, executable: String? = nil, interactive: Bool = false) {
            self.logDirectory = logDirectory
            self.executable = executable ?? ChildProcess.currentExecutable()
            self.interactive = interactive
        }
    }

    /// How a run ended.
    public enum Outcome: Sendable, Hashable {
        case finished(steps: Int)
        /// `--dry-run`: the plan was shown, nothing run or recorded.
        case planned
        /// A step failed: the run stops there; running again resumes at it.
        case failed(step: String, reason: String)
        /// A pause without `--yes` and no terminal to ask on.
        case waiting(step: String, message: String)
        /// Stopped before the step `--until` named.
        case stopped(before: String)
    }

    public let playbook: Playbook
    public let file: String
    public let variables: PlaybookVariables
    public let options: Options
    let state = PlaybookState()
    let say: @Sendable (String) -> Void
    /// A dry run's private directory for its password file (an unguessable name, created 0700).
    let dryRunDirectory = FileManager.default.temporaryDirectory
        .appendingPathComponent("ledgerlift-playbook-\(UUID().uuidString)").path

    public init(
        playbook: Playbook, file: String, variables: PlaybookVariables, options: Options,
        say: @escaping @Sendable (String) -> Void
    ) {
        self.playbook = playbook
        self.file = file
        self.variables = variables
        self.options = options
        self.say = say
    }

    func describe(_ step: Playbook.Step) -> String {
        switch step.kind {
        case .run(let words): "run    " + variables.display(command: words)
        case .gate(let words, let timeout, let every):
            "gate   " + variables.display(command: words)
                + "  (until it exits 0: every \(variables.display(variables.substitute(every))), at most \(variables.display(variables.substitute(timeout))))"
        case .start(let words): "start  " + variables.display(command: words) + "  (in the background)"
        case .pause(let message): "pause  \(message)"
        case .wait(let duration): "wait   \(variables.display(variables.substitute(duration)))"
        }
    }

    /// A step's duration with its variables substituted.
    func duration(_ text: String, of step: Playbook.Step) throws -> Duration {
        let resolved = variables.substitute(text)
        guard let value = Playbook.duration(resolved) else {
            throw PlaybookError(file: file, "step \(step.id): \"\(variables.display(resolved))\" is not a duration (90s, 10m, 1h)")
        }
        return value
    }

    static func text(_ d: Duration) -> String {
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        if ms % 3_600_000 == 0 { return "\(ms / 3_600_000)h" }
        if ms % 60_000 == 0 { return "\(ms / 60_000)m" }
        if ms % 1000 == 0 { return "\(ms / 1000)s" }
        return "\(ms)ms"
    }

    /// The plan, as printed first by every run.
    public func plan(from start: Int = 0) -> String {
        var lines = ["playbook \(playbook.name): \(playbook.steps.count) step(s)" + (playbook.description.map { " — \($0)" } ?? "")]
        let stateDSN = variables.values[playbook.state] ?? ""
        lines.append("  position recorded in \(variables.display(stateDSN)) (schema \(PlaybookState.schema))")
        for (index, step) in playbook.steps.enumerated() {
            let marker = index < start ? "done" : index == start ? "next" : "    "
            let number = index + 1 < 10 ? " \(index + 1)" : "\(index + 1)"
            lines.append("  \(marker) \(number). \(step.id)" + (step.title == step.id ? "" : ": \(step.title)"))
            lines.append("            " + describe(step))
            if let unless = step.unless { lines.append("            unless " + variables.display(command: unless)) }
            if let onlyIf = step.onlyIf { lines.append("            only if " + variables.display(command: onlyIf)) }
        }
        return lines.joined(separator: "\n")
    }

    func index(of step: String, option: String = "--from") throws -> Int {
        if let number = Int(step), (1...playbook.steps.count).contains(number) { return number - 1 }
        guard let index = playbook.steps.firstIndex(where: { $0.id == step }) else {
            throw PlaybookError(
                file: file, "\(option) \(step): no such step (ids: \(playbook.steps.map(\.id).joined(separator: ", ")))")
        }
        return index
    }

    /// Everything that can be checked before anything runs or is recorded: `--from` and
    /// `--until` name steps in that order, every duration reads once its variables are in.
    func preflight() throws -> (from: Int?, until: Int?) {
        let from = try options.from.map { try index(of: $0) }
        let until = try options.until.map { try index(of: $0, option: "--until") }
        if let from, let until, until <= from {
            throw PlaybookError(
                file: file, "--until \(options.until!) is not after --from \(options.from!): nothing would run")
        }
        for step in playbook.steps {
            switch step.kind {
            case .gate(_, let timeout, let every):
                _ = try duration(timeout, of: step)
                _ = try duration(every, of: step)
            case .wait(let text): _ = try duration(text, of: step)
            default: break
            }
        }
        return (from, until)
    }

    /// Runs a `ledgerlift` command to its end with its output in a temporary file: (status, output).
    func quietly(_ words: [String], spawned: (Int32) -> Void = { _ in }) throws -> (Int32, String) {
        let (status, output) = try quietly(words, until: nil, spawned: spawned)
        return (status ?? 128 + SIGKILL, output)
    }

    /// The same, bounded: a command still running at `deadline` (a gate's timeout) is stopped
    /// (SIGTERM, then SIGKILL after 10 s) and its status is `nil`.
    func quietly(
        _ words: [String], until deadline: ContinuousClock.Instant?, spawned: (Int32) -> Void = { _ in }
    ) throws -> (Int32?, String) {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerlift-playbook-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let child = try ChildProcess(
            executable: options.executable, arguments: variables.arguments(words), output: .file(path),
            environment: childEnvironment)
        spawned(child.pid)
        var status: Int32?
        if let deadline {
            status = child.wait(until: deadline)
            if status == nil { child.stop() }
        } else {
            status = child.wait()
        }
        return (status, (try? String(contentsOfFile: path, encoding: .utf8)) ?? "")
    }

    /// The last lines of a command's output, secrets masked, indented.
    func tail(_ output: String, lines: Int = 12) -> String {
        output.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines)
            .map { "      " + variables.display(String($0)) }.joined(separator: "\n")
    }

    // MARK: - The password file

    /// The run's password file: `<log directory>/<playbook>.pgpass`, beside the logs of the
    /// services that keep reading it (a service reconnecting needs its password long after the
    /// run ended); a dry run's is in a private directory of its own (``dryRunDirectory``).
    /// `nil` when no secret connection string carries a password.
    var passwordFile: String? {
        guard !variables.passwordFileLines.isEmpty else { return nil }
        if options.dryRun {
            return URL(fileURLWithPath: dryRunDirectory).appendingPathComponent("\(playbook.name).pgpass").path
        }
        return runPasswordFile
    }

    /// Where a (non-dry) run keeps its password file, whether or not it needs one now.
    var runPasswordFile: String {
        URL(fileURLWithPath: options.logDirectory).standardizedFileURL.appendingPathComponent("\(playbook.name).pgpass").path
    }

    /// The steps' environment: this process's without the variables secrets came from (a
    /// service would keep them for its lifetime), with `PGPASSFILE` naming ``passwordFile``.
    var childEnvironment: [String] {
        var environment = ProcessInfo.processInfo.environment
        for name in variables.secretEnvironment { environment[name] = nil }
        if let passwordFile { environment["PGPASSFILE"] = passwordFile }
        return environment.map { "\($0.key)=\($0.value)" }.sorted()
    }

    /// Checks, before anything is recorded, that the log directory can be used (created 0700
    /// when missing): start steps write their services' logs there, and the password file.
    func prepareLogDirectory() throws {
        let needed = passwordFile != nil || playbook.steps.contains { if case .start = $0.kind { true } else { false } }
        guard needed else { return }
        let path = options.logDirectory
        // Component by component, for the system's reason (Foundation's is "error 512" on Linux).
        var made = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            made += "/" + component
            if mkdir(made, 0o700) != 0 && errno != EEXIST {
                throw PlaybookError(file: file, "--log-dir \(path): cannot create it (\(made): \(String(cString: strerror(errno))))")
            }
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue,
            access(path, W_OK | X_OK) == 0
        else {
            throw PlaybookError(file: file, "--log-dir \(path): not a directory this user can write to")
        }
    }

    /// The operator's own password file (`PGPASSFILE`, else `~/.pgpass`) as libpq would read
    /// it: only a regular file that neither group nor others can read (libpq ignores any other),
    /// and never ``passwordFile`` itself by another name.
    func operatorPasswordFile() -> String? {
        let environment = ProcessInfo.processInfo.environment
        guard let own = environment["PGPASSFILE"] ?? environment["HOME"].map({ $0 + "/.pgpass" }) else { return nil }
        var info = stat()
        guard stat(own, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_mode & 0o077 == 0 else { return nil }
        if let path = passwordFile, let mine = realpath(path, nil) {
            defer { free(mine) }
            if let theirs = realpath(own, nil) {
                defer { free(theirs) }
                if strcmp(mine, theirs) == 0 { return nil }
            }
        }
        return try? String(contentsOfFile: own, encoding: .utf8)
    }

    /// Writes ``passwordFile`` (mode 0600, replaced whole through a file of an unguessable name
    /// created exclusively, never through a link): the secret connection strings' lines, then
    /// the operator's own password file, so the connection strings that name no password still
    /// find theirs.
    func writePasswordFile() throws {
        guard let path = passwordFile else { return }
        let directory = (path as NSString).deletingLastPathComponent
        if options.dryRun {
            guard mkdir(directory, 0o700) == 0 else {
                throw PlaybookError(file: file, "cannot create \(directory): \(String(cString: strerror(errno)))")
            }
        }
        var text = variables.passwordFileLines.joined(separator: "\n") + "\n"
        if let contents = operatorPasswordFile() {
            text += contents.hasSuffix("\n") || contents.isEmpty ? contents : contents + "\n"
        }
        let temporary = path + ".\(UUID().uuidString).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw PlaybookError(file: file, "cannot write the password file \(path): \(String(cString: strerror(errno)))")
        }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw PlaybookError(file: file, "cannot write the password file \(path): \(reason)")
        }
    }

    /// A run whose secrets carry no password (any more) leaves no password file behind.
    func removeStalePasswordFile() {
        guard passwordFile == nil, !options.dryRun else { return }
        unlink(runPasswordFile)
    }

    // MARK: - Running

    /// Runs (or, with `--dry-run`, shows) the playbook. Blocking: call it off the cooperative pool.
    public func run() throws -> Outcome {
        let (explicit, stopBefore) = try preflight()
        if options.dryRun { return try dryRun() }
        try prepareLogDirectory()
        guard let stateDSN = variables.values[playbook.state] else {
            throw PlaybookError(file: file, "the state variable \(playbook.state) has no value")
        }
        let connection = try Connection.connectBlocking(stateDSN, applicationName: "ledgerlift-playbook")
        defer { connection.close() }
        let lock = PlaybookState.lock(playbook: playbook.name)
        let (run, start, resumed) = try connection.withSessionBlocking { session -> (PlaybookState.Run, Int, Bool) in
            try state.createSchema(in: session)
            guard try session.tryLock(lock) else {
                throw PlaybookError(
                    file: file,
                    "playbook \(playbook.name) is already running (held by \(try session.holder(of: lock) ?? "a session that has just ended")): one run at a time")
            }
            let fingerprint = try state.fingerprint(of: playbook, in: session)
            let latest = try state.latest(playbook: playbook.name, in: session)
            if let latest, latest.status == "finished", !playbook.repeatable, explicit == nil {
                throw PlaybookError(
                    file: file,
                    "run #\(latest.id) of \(playbook.name) finished \(latest.finishedAt?.iso8601 ?? "") (begun by \(latest.who)): "
                        + "this playbook is not run twice; give --from STEP to run steps of it again")
            }
            if let latest, latest.status != "finished" {
                guard latest.fingerprint == fingerprint || explicit != nil else {
                    throw PlaybookError(
                        file: file,
                        "run #\(latest.id) of \(playbook.name) stopped at step \(latest.stepIndex + 1) (\(latest.stepID ?? "?")) "
                            + "with another version of this file: restore it to resume, or give --from STEP to go on with this one")
                }
                let start = explicit ?? latest.stepIndex
                if start != latest.stepIndex {
                    try state.move(run: latest.id, to: start, stepID: playbook.steps[start].id, in: session)
                }
                return (latest, start, true)
            }
            let start = explicit ?? 0
            return (try state.begin(playbook: playbook, file: file, who: Self.who(), at: start, in: session), start, false)
        }
        defer { _ = try? connection.withSessionBlocking { try $0.unlock(lock) } }
        // Under the lock: the run's services read this file, and only this run rewrites it.
        try writePasswordFile()
        removeStalePasswordFile()
        say(plan(from: start))
        // A run killed with its step's child still running (kill -9 reaches the playbook, not the
        // child): the step is run again only once that child has ended, never two at once.
        if let orphan = try connection.withSessionBlocking({ try state.unfinishedChild(run: run.id, in: $0) }),
            orphan.host == ProcessInfo.processInfo.hostName, ChildProcess.isAlive(orphan.pid)
        {
            say("the killed run's step is still running (pid \(orphan.pid)): waiting for it to end")
            while ChildProcess.isAlive(orphan.pid) { Thread.sleep(forTimeInterval: 0.2) }
        }
        if resumed {
            say("resuming run #\(run.id) at step \(start + 1) (\(playbook.steps[start].id)), begun \(run.startedAt.iso8601) by \(run.who)")
        } else {
            say("run #\(run.id) begun")
        }
        let clock = ContinuousClock()
        let began = clock.now
        for index in start..<playbook.steps.count {
            let step = playbook.steps[index]
            if index == stopBefore {
                try connection.withSessionBlocking {
                    try state.move(run: run.id, to: index, stepID: step.id, in: $0)
                }
                say("\nstopped before step \(index + 1) (\(step.id)) as asked (--until): run the playbook again to go on from there")
                return .stopped(before: step.id)
            }
            let attempt = try connection.withSessionBlocking {
                try state.enter(run: run.id, index: index, stepID: step.id, in: $0)
            }
            say("\n== \(index + 1)/\(playbook.steps.count) \(step.id)" + (step.title == step.id ? "" : ": \(step.title)"))
            let stepStart = clock.now
            let host = ProcessInfo.processInfo.hostName
            let (outcome, detail) = try perform(step) { pid in
                _ = try? connection.withSessionBlocking {
                    try state.recordChild(run: run.id, attempt: attempt, pid: pid, host: host, in: $0)
                }
            }
            let next = index + 1 < playbook.steps.count ? playbook.steps[index + 1].id : nil
            try connection.withSessionBlocking {
                try state.leave(
                    run: run.id, attempt: attempt, index: index, outcome: outcome, detail: detail.map(variables.display),
                    nextStepID: next, in: $0)
            }
            switch outcome {
            case "done", "skipped":
                say("   \(outcome) in \(Self.seconds(clock.now - stepStart))")
            case "waiting":
                say(
                    "   waiting for the operator: \(detail ?? "")\n   run the playbook again with --yes once done: it resumes here")
                return .waiting(step: step.id, message: detail ?? "")
            default:
                say("   FAILED: \(variables.display(detail ?? ""))")
                if let remedy = step.remedy { say("   to do: \(remedy)") }
                say("   run the playbook again to resume at this step (steps are idempotent), or --from STEP to go on elsewhere")
                return .failed(step: step.id, reason: variables.display(detail ?? ""))
            }
        }
        say("\nplaybook \(playbook.name): finished, \(playbook.steps.count - start) step(s) in \(Self.seconds(clock.now - began)) (run #\(run.id))")
        return .finished(steps: playbook.steps.count - start)
    }

    static func seconds(_ d: Duration) -> String {
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        return String(format: "%.1f s", Double(ms) / 1000)
    }

    static func who() -> String {
        let user = ProcessInfo.processInfo.userName
        return (user.isEmpty ? ProcessInfo.processInfo.environment["USER"] ?? "unknown" : user) + "@"
            + ProcessInfo.processInfo.hostName
    }

    /// One step: (`done`|`skipped`|`failed`|`waiting`, detail).
    func perform(_ step: Playbook.Step, spawned: (Int32) -> Void = { _ in }) throws -> (String, String?) {
        if let onlyIf = step.onlyIf {
            let (status, _) = try quietly(onlyIf)
            if status != 0 { return ("skipped", "does not apply: \(variables.display(command: onlyIf)) exits \(status)") }
        }
        if let unless = step.unless {
            let (status, _) = try quietly(unless)
            if status == 0 { return ("skipped", "already done: \(variables.display(command: unless)) exits 0") }
        }
        switch step.kind {
        case .run(let words):
            say("$ " + variables.display(command: words))
            let child = try ChildProcess(
                executable: options.executable, arguments: variables.arguments(words), output: .inherit,
                environment: childEnvironment)
            spawned(child.pid)
            let status = child.wait()
            return status == 0 ? ("done", nil) : ("failed", "\(variables.display(command: words)) exited \(status)")
        case .wait(let text):
            let pause = try duration(text, of: step)
            say("waiting \(Self.text(pause))")
            Thread.sleep(forTimeInterval: Double(pause.components.seconds) + Double(pause.components.attoseconds) / 1e18)
            return ("done", nil)
        case .gate(let words, let timeoutText, let everyText):
            let timeout = try duration(timeoutText, of: step)
            let every = try duration(everyText, of: step)
            say("$ " + variables.display(command: words) + "   (until it exits 0, at most \(Self.text(timeout)))")
            let clock = ContinuousClock()
            let deadline = clock.now + timeout
            var attempts = 0
            var lastReport = clock.now
            while true {
                attempts += 1
                let (finished, output) = try quietly(words, until: deadline, spawned: spawned)
                guard let status = finished else {
                    say(tail(output, lines: 20))
                    return (
                        "failed",
                        "not passed within \(Self.text(timeout)): attempt \(attempts) was still running then and was stopped "
                            + "(its last output is above)"
                    )
                }
                if status == 0 {
                    say(tail(output, lines: 20))
                    return ("done", "passed at attempt \(attempts)")
                }
                if status != 1 {
                    say(tail(output))
                    return ("failed", "\(variables.display(command: words)) could not run (exit \(status))")
                }
                if clock.now >= deadline {
                    say(tail(output, lines: 20))
                    return ("failed", "not passed within \(Self.text(timeout)) (\(attempts) attempts; the last output is above)")
                }
                if attempts == 1 || clock.now - lastReport >= .seconds(30) {
                    lastReport = clock.now
                    let why = output.split(separator: "\n").first(where: { $0.contains("FAIL") || $0.hasPrefix("Error") })
                        .map { variables.display(String($0).trimmingCharacters(in: .whitespaces)) } ?? "exit 1"
                    say("   not yet (attempt \(attempts)): \(why)")
                }
                Thread.sleep(forTimeInterval: Double(every.components.seconds) + Double(every.components.attoseconds) / 1e18)
            }
        case .start(let words):
            let command = variables.display(command: words)
            let stateDSN = variables.values[playbook.state] ?? ""
            let connection = try Connection.connectBlocking(stateDSN, applicationName: "ledgerlift-playbook")
            defer { connection.close() }
            let host = ProcessInfo.processInfo.hostName
            if let running = try connection.withSessionBlocking({
                try state.service(playbook: playbook.name, stepID: step.id, in: $0)
            }), running.host == host, ChildProcess.isAlive(running.pid) {
                return ("skipped", "already running: pid \(running.pid), log \(running.log)")
            }
            try FileManager.default.createDirectory(atPath: options.logDirectory, withIntermediateDirectories: true)
            let log = URL(fileURLWithPath: options.logDirectory).appendingPathComponent("\(playbook.name)-\(step.id).log").path
            say("$ \(command) >> \(log) &")
            let child = try ChildProcess(
                executable: options.executable, arguments: variables.arguments(words), output: .file(log), ownGroup: true,
                environment: childEnvironment)
            try connection.withSessionBlocking {
                try state.recordService(
                    playbook: playbook.name, stepID: step.id, pid: child.pid, host: host, command: command, log: log, in: $0)
            }
            // A service that dies at once (a refused option, a database not reachable) is a failure now.
            Thread.sleep(forTimeInterval: 1)
            var status: Int32 = 0
            if waitpid(child.pid, &status, WNOHANG) == child.pid {
                let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                say(tail(output))
                return ("failed", "\(command) ended at once (its log: \(log))")
            }
            return ("done", "pid \(child.pid), log \(log)")
        case .pause(let message):
            say("pause: \(message)")
            if options.yes { return ("done", "--yes") }
            guard options.interactive else { return ("waiting", message) }
            FileHandle.standardOutput.write(Data("   type yes to go on (anything else stops here): ".utf8))
            let answer = readLine()?.trimmingCharacters(in: .whitespaces).lowercased()
            return answer == "yes" ? ("done", "answered yes") : ("waiting", message)
        }
    }

    /// `--dry-run`: the plan, each `unless` and gate evaluated once now (read-only commands),
    /// nothing run and nothing recorded.
    func dryRun() throws -> Outcome {
        let start = try options.from.map { try index(of: $0) } ?? 0
        try writePasswordFile()
        let cleanup = DryRunCleanup(file: passwordFile, directory: dryRunDirectory)
        defer { cleanup.remove() }
        say(plan(from: start))
        say(
            "\ndry run: nothing is run or recorded; read-only checks (a gate's check, unless, only_if) are evaluated once, now")
        for index in start..<playbook.steps.count {
            let step = playbook.steps[index]
            var verdict: String
            switch step.kind {
            case .run: verdict = "would run"
            case .start: verdict = "would start in the background (unless recorded and alive)"
            case .pause: verdict = options.yes ? "would go on (--yes)" : "would wait for the operator"
            case .wait(let text): verdict = "would wait \(Self.text(try duration(text, of: step)))"
            case .gate:
                // A gate may act once it passes (`cutover advance`, `cutover rollback`): only its
                // read-only `check` is run here, never the gate itself.
                guard let check = step.check else {
                    verdict = "would run until it exits 0 (not evaluated: the step has no read-only check)"
                    break
                }
                let (status, output) = try quietly(check)
                let why = output.split(separator: "\n").first(where: { $0.contains("FAIL") || $0.hasPrefix("Error") })
                    .map { variables.display(String($0).trimmingCharacters(in: .whitespaces)) }
                verdict = status == 0 ? "passes now" : "would wait: not passing now" + (why.map { " (\($0))" } ?? " (exit \(status))")
            }
            if let unless = step.unless {
                let (status, _) = try quietly(unless)
                if status == 0 { verdict = "already done (unless exits 0): would skip" }
            }
            if let onlyIf = step.onlyIf {
                let (status, _) = try quietly(onlyIf)
                if status != 0 { verdict = "does not apply now (only_if exits \(status)): would skip" }
            }
            say("  \(index + 1 < 10 ? " " : "")\(index + 1). \(step.id): \(verdict)")
        }
        return .planned
    }
}
