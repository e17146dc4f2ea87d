import ArgumentParser
import Dispatch
import Foundation
import Logging
import Mapping
import Postgres
import Shadow
import Simulator
import Synchronization

/// `ledgerlift simulate [run]`: the legacy billing application as a load generator (see
/// docs/simulator.md). Only options and printing live here; the run is ``Simulation``.
struct SimulateRunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run business operations against the legacy database, and report their latency.",
        discussion: """
            Each operation is one transaction written the way the legacy application writes it. With --rate, \
            operations follow a fixed schedule (open loop) and latency is measured from each one's scheduled \
            start, so a stalled database shows as latency; without it, each connection runs its next operation \
            as soon as the previous one ends (closed loop, for capacity). An operation that fails on a lock \
            timeout, a serialization failure or a deadlock is retried with backoff; one refused because writes \
            have moved to the ledger (SQLSTATE LL001) is counted as rerouted. With --journal every operation is \
            written to FILE for `ledgerlift simulate verify`: a prepared line with its effects, on disk before its \
            COMMIT, and an acknowledged line, on disk after the COMMIT and before the operation counts; FILE must \
            be new or empty, and belongs to one run.

            With --candidate URL (candidate mode, docs/simulator.md) each operation is also stated as billing \
            commands and POSTed to the candidate write path (`ledgerlift serve --mode candidate`) from inside its \
            transaction, before the COMMIT, keyed `<run token>:<op id>/<n>` and naming the legacy transaction \
            (Ledgerlift-Legacy-Xid); the touched rows are found through --mapping's sources, so shadow capture must \
            be installed with that mapping. A candidate that is down, slow (2 s per request) or answering errors \
            never fails or rolls back an operation: the report counts and samples it, and the exit status ignores it.

            With --reroute URL --store DSN (the cutover, docs/simulator.md) the application follows the store's \
            write routing: each operation goes where the routing (read at most every 250 ms) sends writes — legacy, \
            or the ledger's write path (`ledgerlift serve`, primary mode) at URL as billing commands keyed \
            `<run token>:<op id>/<n>`, decided by the legacy application's own code in a transaction that is rolled \
            back, its new keys taken from the legacy sequences. An operation legacy refuses with the write guard \
            (LL001) goes to the ledger, one the ledger refuses because writes went back to legacy goes to legacy: \
            both are counted rerouted, never failed. Needs --mapping.

            One connection, --operations N and --seed S perform the same operations in the same order on every \
            run. Ctrl-C (or SIGTERM) stops starting operations, lets the running ones finish (press it again to \
            cancel them) and prints the report.

            Exit status: 0 every operation succeeded (or was skipped, retried to success, or rerouted); 1 some \
            operation failed (the report lists errors by SQLSTATE); 2 could not run (bad arguments, the database \
            unreachable or without the reference schema, the journal file not new, the journal could not be \
            written); 130 / 143 stopped by SIGINT / SIGTERM (the report is still printed).
            """)

    @Option(help: "DSN of the legacy database (the reference schema, loaded or generated).")
    var legacy: String

    // The numbers are parsed unconditionally: `--operations -5` is then a number to refuse in
    // a sentence, where ArgumentParser would take `-5` for a flag and say the value is missing.
    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "Operations per second on a fixed schedule (open loop), 0.001 to 1000000. Default: as fast as the connections go.",
            valueName: "ops/s"), transform: decimalNumber)
    var rate: Double?

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "Run for this many seconds, at most a year (31536000). No default: give this or --operations.",
            valueName: "seconds"),
        transform: decimalNumber)
    var duration: Double?

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp("Run exactly this many operations. No default: give this or --duration.", valueName: "count")
    )
    var operations: UInt64?

    @Option(parsing: .unconditional, help: "Seed of the operations' choices.")
    var seed: UInt64 = 1

    @Option(parsing: .unconditional, help: "Concurrent connections (one operation at a time each), 1 to 256.")
    var connections: Int = 4

    @Option(
        help: ArgumentHelp(
            "YAML file of operation kind to weight, each 0 to 1000000, at most 64 KiB, no anchors or aliases (default: the standard mix; see docs/simulator.md).",
            valueName: "file"))
    var mix: String?

    @Option(
        help: ArgumentHelp(
            "Journal every operation to this file (JSON lines: prepared before COMMIT, acknowledged after); it must be new or empty. Default: no journal.",
            valueName: "file"))
    var journal: String?

    @Option(help: "Report format: text or json.")
    var report: SimulateReportFormat = .text

    @Option(help: "Business time written: data (continue the data's own timeline; deterministic) or wall (now).")
    var clock: SimulateClockMode = .data

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "How long an operation waits for a row lock before it fails (55P03) and is retried, 0.001 to 86400. Default: 1.",
            valueName: "seconds"), transform: decimalNumber)
    var lockTimeout: Double = 1

    @Option(
        parsing: .unconditional,
        help: "Attempts per operation in all, for lock timeouts, serialization failures and deadlocks.")
    var maxAttempts: Int = RetryPolicy.standard.maxAttempts

    @Option(
        help: ArgumentHelp(
            "Candidate mode: also send each operation as commands to the candidate write path at this http:// URL (serve --mode candidate), before its COMMIT. Needs --mapping. Default: none.",
            valueName: "url"))
    var candidate: String?

    @Option(
        help: ArgumentHelp(
            "With --candidate: the mapping file shadow capture was installed with (its sources name the rows each operation touched); with --reroute: the mapping the ledger was backfilled with (it reads the rows an operation touched). No default.",
            valueName: "file"))
    var mapping: String?

    @Option(
        help: ArgumentHelp(
            "The cutover: send writes the store's routing gives the ledger (and writes legacy refuses with LL001) as commands to the ledger's write path at this http:// URL (serve, primary mode). Needs --store and --mapping. Default: none.",
            valueName: "url"))
    var reroute: String?

    @Option(
        help: ArgumentHelp(
            "With --reroute: DSN of the event store whose routing (schema ledgerlift) says where writes go. No default.",
            valueName: "dsn"))
    var store: String?

    @Option(
        help: ArgumentHelp(
            "With --candidate: the capture schema in the legacy database. Default: \(CaptureSchema.defaultSchema).",
            valueName: "schema"))
    var captureSchema: String?

    func validate() throws {
        try DSNArguments.validate(legacy, option: "--legacy")
        switch (duration, operations) {
        case (nil, nil): throw ValidationError("say how long to run: --duration SECONDS or --operations COUNT")
        case (_?, _?): throw ValidationError("--duration and --operations cannot be combined: give one")
        case (let duration?, nil):
            guard duration.isFinite, duration > 0, duration <= 31_536_000 else {
                throw ValidationError("--duration must be a positive number of seconds, at most a year (31536000)")
            }
        case (nil, let operations?):
            guard operations >= 1 else { throw ValidationError("--operations must be at least 1") }
        }
        if let rate {
            guard rate.isFinite, rate >= 0.001, rate <= 1_000_000 else {
                throw ValidationError("--rate must be between 0.001 and 1000000 operations per second")
            }
        }
        guard (1...256).contains(connections) else { throw ValidationError("--connections must be between 1 and 256") }
        // PostgreSQL's lock_timeout is whole milliseconds up to INT_MAX; a day is longer than
        // any row lock an operation should wait for.
        guard lockTimeout.isFinite, lockTimeout >= 0.001, lockTimeout <= 86_400 else {
            throw ValidationError("--lock-timeout must be between 0.001 and 86400 seconds (a day)")
        }
        guard maxAttempts >= 1 else { throw ValidationError("--max-attempts must be at least 1") }
        if let reroute {
            if candidate != nil {
                throw ValidationError(
                    "--candidate and --reroute cannot be combined: candidate mode runs before the cutover's write switch, --reroute during it"
                )
            }
            do {
                _ = try CandidateEndpoint(url: reroute)
            } catch {
                throw ValidationError("--reroute: \(error)")
            }
            guard let store else {
                throw ValidationError("--reroute needs --store DSN: the event store whose routing says where writes go")
            }
            try DSNArguments.validate(store, option: "--store")
            guard mapping != nil else {
                throw ValidationError(
                    "--reroute needs --mapping FILE: the mapping the ledger was backfilled with (the reference fixture's is fixtures/reference/mapping.yaml)"
                )
            }
            if captureSchema != nil { throw ValidationError("--capture-schema is used only with --candidate") }
            return
        }
        if store != nil { throw ValidationError("--store is used only with --reroute") }
        if let candidate {
            do {
                _ = try CandidateEndpoint(url: candidate)
            } catch {
                throw ValidationError("--candidate: \(error)")
            }
            // The reference mapping is a file of the repository, not part of the binary: say which.
            guard mapping != nil else {
                throw ValidationError(
                    "--candidate needs --mapping FILE: the mapping shadow capture was installed with (the reference fixture's is fixtures/reference/mapping.yaml)"
                )
            }
            if let captureSchema, captureSchema.isEmpty { throw ValidationError("--capture-schema cannot be empty") }
        } else {
            if mapping != nil { throw ValidationError("--mapping is used only with --candidate or --reroute") }
            if captureSchema != nil { throw ValidationError("--capture-schema is used only with --candidate") }
        }
    }

    func run() async throws {
        let operationMix = try mix.map { try OperationMix.load(path: $0) } ?? .standard
        let masked = ConnectionString.masked(legacy)
        // Held on its own connection until the run ends (closing the connection releases it,
        // also when the process dies): two runs would each continue the data's timeline from
        // the same moment, and their interleaved business times would break C17.
        let lockConnection = try await takeRunLock()
        defer { lockConnection.close() }
        let businessClock: BusinessClock
        do {
            businessClock = try await makeClock()
        } catch {
            throw ExitCodeMessage.couldNotRun("\(error)", legacy: legacy)
        }
        let journalWriter = try journal.map { try JournalWriter(path: $0) }
        defer { journalWriter?.close() }
        let feed = try await makeCandidateFeed()
        let app = LegacySQLApp(
            dsn: legacy, lockTimeout: .milliseconds(Int64((lockTimeout * 1000).rounded())), candidate: feed)
        var retry = RetryPolicy.standard
        retry.maxAttempts = maxAttempts
        let (ledgerApp, routing) = try makeReroute()
        defer { routing?.close() }
        let simulation = try Simulation(
            .init(
                app: app, connections: connections, rate: rate,
                stop: operations.map { .operations($0) } ?? .duration(.milliseconds(Int64((duration ?? 0) * 1000))),
                seed: seed, mix: operationMix, journal: journalWriter, clock: businessClock, retry: retry,
                reroute: ledgerApp, routing: routing))

        let signals = SignalStop(simulation)
        defer { signals.cancel() }
        let progress = SimulateProgressPrinter(
            terminal: CommandLineSettings.drawsProgress, logger: CommandLineSettings.logger("simulate"))
        let result: SimulationReport
        do {
            result = try await simulation.run { progress.show($0) }
        } catch {
            progress.finish()
            throw ExitCodeMessage.couldNotRun("\(error)", legacy: legacy)
        }
        progress.finish()
        switch report {
        case .text: print("legacy: \(masked)\n" + result.text)
        case .json: print(result.json)
        }
        if let failure = result.failure {
            FileHandle.standardError.write(Data((Ledgerlift.prefix + "simulate stopped: \(failure)\n").utf8))
            throw ExitCode(2)
        }
        switch result.stoppedBy {
        case Simulation.StopReason.interrupt.rawValue?: throw ExitCode(130)
        case Simulation.StopReason.terminate.rawValue?: throw ExitCode(143)
        default: break
        }
        if result.hasErrors { throw ExitCode(1) }
    }

    /// The ledger application and the store's routing of `--reroute`, or `nil`s.
    private func makeReroute() throws -> (LedgerApp?, WriteRouting?) {
        guard let reroute, let store, let mapping else { return (nil, nil) }
        do {
            let app = try LedgerApp(
                .init(
                    endpoint: try CandidateEndpoint(url: reroute), legacyDSN: legacy,
                    mapping: try MappingFile.load(path: mapping),
                    lockTimeout: .milliseconds(Int64((lockTimeout * 1000).rounded())), storeDSN: store))
            return (app, WriteRouting(storeDSN: store))
        } catch {
            throw ExitCodeMessage.couldNotRun("\(error)", legacy: legacy)
        }
    }

    /// The candidate feed of `--candidate`, prepared (capture installed for the mapping), or `nil`.
    private func makeCandidateFeed() async throws -> CandidateFeed? {
        guard let candidate, let mapping else { return nil }
        let endpoint: CandidateEndpoint
        let file: MappingFile
        do {
            endpoint = try CandidateEndpoint(url: candidate)
            file = try MappingFile.load(path: mapping)
        } catch {
            throw ExitCodeMessage.couldNotRun("\(error)", legacy: legacy)
        }
        let configuration = CandidateFeed.Configuration(
            endpoint: endpoint, mapping: file,
            capture: CaptureSchema(schema: captureSchema ?? CaptureSchema.defaultSchema),
            legacyDSN: legacy)
        // Connects and reads the capture tables: blocking, so off the cooperative pool.
        let result = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(
                    returning: Result { () throws(CandidateFeedError) in try CandidateFeed(configuration) })
            }
        }
        do {
            return try result.get()
        } catch {
            throw ExitCodeMessage.couldNotRun("\(error)", legacy: legacy)
        }
    }

    /// One run at a time per legacy database: its business clock starts from the data's latest
    /// moment, which a second run would read too.
    static let runLock = AdvisoryLock("ledgerlift.simulate/legacy")

    /// Connects and takes ``runLock``, or refuses the run naming who holds it.
    private func takeRunLock() async throws -> Connection {
        let connection: Connection
        do {
            connection = try await Connection.connect(legacy, applicationName: "ledgerlift-simulate")
        } catch {
            throw ExitCodeMessage.couldNotRun("\(error)", legacy: legacy)
        }
        let holder: String?
        do {
            holder = try await connection.withSession { session -> String? in
                if try session.tryLock(Self.runLock) { return nil }
                return try session.holder(of: Self.runLock) ?? "a session that has just ended"
            }
        } catch {
            connection.close()
            throw ExitCodeMessage.couldNotRun("\(error)", legacy: legacy)
        }
        guard let holder else { return connection }
        connection.close()
        throw ExitCodeMessage.couldNotRun(
            "another ledgerlift simulate is running on this database (\(holder)); two runs would write "
                + "interleaved business times from the same clock, so wait for it to end (the lock is "
                + "\(Self.runLock.name))",
            legacy: legacy)
    }

    /// The business clock: the data's own timeline from its latest recorded moment, or the wall clock.
    private func makeClock() async throws -> BusinessClock {
        switch clock {
        case .wall: return BusinessClock(.wall)
        case .data:
            let connection = try await Connection.connect(legacy)
            defer { connection.close() }
            return BusinessClock(.data(start: try await LegacySQLApp.latestRecordedMoment(on: connection)))
        }
    }
}

/// A plain decimal number for a numeric option: `Double(_:)` alone would also take `0x10`,
/// `inf` or `nan`, which no one means as a rate or a number of seconds.
func decimalNumber(_ text: String) throws -> Double {
    var digits = 0
    var points = 0
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digits += 1
        case UInt8(ascii: "."): points += 1
        default: throw ValidationError("not a decimal number like 2 or 0.5")
        }
    }
    guard digits > 0, points <= 1, let value = Double(text) else {
        throw ValidationError("not a decimal number like 2 or 0.5")
    }
    return value
}

/// `--report`'s values.
enum SimulateReportFormat: String, CaseIterable, ExpressibleByArgument {
    case text, json
}

/// `--clock`'s values.
enum SimulateClockMode: String, CaseIterable, ExpressibleByArgument {
    case data, wall
}

/// "could not run" failures, printed with the DSN's password scrubbed (exit 2 through main).
private enum ExitCodeMessage {
    static func couldNotRun(_ reason: String, legacy: String) -> any Error {
        SimulateCouldNotRun(reason: DSNArguments.scrub(reason, arguments: ["--legacy", legacy]))
    }
}

private struct SimulateCouldNotRun: Error, CustomStringConvertible {
    let reason: String
    var description: String { "simulate could not run: \(reason)" }
}

/// SIGINT and SIGTERM stop the simulation instead of the process: the first lets running
/// operations finish, the second cancels them; the report is printed either way.
private final class SignalStop {
    private let sources: [any DispatchSourceSignal]

    init(_ simulation: Simulation) {
        sources = [(SIGINT, Simulation.StopReason.interrupt), (SIGTERM, .terminate)].map { number, reason in
            // The default action would kill the process before the report is printed.
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            let count = Mutex(0)
            source.setEventHandler {
                let seen = count.withLock { count in
                    count += 1
                    return count
                }
                // Over the progress line on a terminal; a plain line elsewhere.
                let clear = CommandLineSettings.drawsProgress ? "\r\u{1B}[K" : ""
                FileHandle.standardError.write(
                    Data(
                        (clear
                            + (seen == 1
                                ? "\(reason.rawValue): no new operations; waiting for the running ones (again to cancel them)\n"
                                : "\(reason.rawValue): cancelling the running operations\n"))
                            .utf8))
                simulation.stop(reason)
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

/// Progress on standard error: on a terminal one line rewritten in place about once a second;
/// elsewhere a log line every 10 s at `info` (shown with `--log-level info`).
private final class SimulateProgressPrinter: Sendable {
    let terminal: Bool
    let logger: Logger
    private let lastLogged = Mutex(Duration.zero)

    init(terminal: Bool, logger: Logger) {
        self.terminal = terminal
        self.logger = logger
    }

    func show(_ progress: Simulation.Progress) {
        let seconds = Int(progress.elapsed.components.seconds)
        let p99 = Double(progress.p99.components.seconds) * 1000 + Double(progress.p99.components.attoseconds) / 1e15
        let line =
            "\(seconds)s: \(progress.operations) operations, \(Int(progress.recentRate.rounded())) ops/s, "
            + "p99 \(String(format: "%.1f", p99)) ms, \(progress.failed) failed"
        if terminal {
            FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
            return
        }
        let due = lastLogged.withLock { last in
            guard progress.elapsed - last >= .seconds(10) else { return false }
            last = progress.elapsed
            return true
        }
        if due { logger.info("\(line)") }
    }

    /// Clears the line rewritten in place, so the report starts on a clean one.
    func finish() {
        if terminal { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}
