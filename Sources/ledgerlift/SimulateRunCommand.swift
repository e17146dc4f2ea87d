import ArgumentParser
import Dispatch
import Foundation
import Logging
import Postgres
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
            have moved to the ledger (SQLSTATE LL001) is counted as rerouted. With --journal every acknowledged \
            operation is written to FILE (one JSON line, on disk before the operation counts) for `ledgerlift \
            simulate verify`; FILE must be new or empty.

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

    @Option(
        help: ArgumentHelp(
            "Operations per second on a fixed schedule (open loop). Default: as fast as the connections go.",
            valueName: "ops/s"))
    var rate: Double?

    @Option(help: ArgumentHelp("Run for this many seconds.", valueName: "seconds"))
    var duration: Double?

    @Option(help: ArgumentHelp("Run exactly this many operations.", valueName: "count"))
    var operations: UInt64?

    @Option(help: "Seed of the operations' choices.")
    var seed: UInt64 = 1

    @Option(help: "Concurrent connections (one operation at a time each).")
    var connections: Int = 4

    @Option(
        help: ArgumentHelp(
            "YAML file of operation kind to weight (default: the standard mix; see docs/simulator.md).",
            valueName: "file"))
    var mix: String?

    @Option(
        help: ArgumentHelp(
            "Write each acknowledged operation to this file (JSON lines); it must be new or empty.", valueName: "file"))
    var journal: String?

    @Option(help: "Report format: text or json.")
    var report: SimulateReportFormat = .text

    @Option(help: "Business time written: data (continue the data's own timeline; deterministic) or wall (now).")
    var clock: SimulateClockMode = .data

    @Option(
        help: ArgumentHelp(
            "How long an operation waits for a row lock before it fails (55P03) and is retried.", valueName: "seconds"))
    var lockTimeout: Double = 1

    @Option(help: "Attempts per operation in all, for lock timeouts, serialization failures and deadlocks.")
    var maxAttempts: Int = RetryPolicy.standard.maxAttempts

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
        guard lockTimeout.isFinite, lockTimeout > 0 else {
            throw ValidationError("--lock-timeout must be a positive number of seconds")
        }
        guard maxAttempts >= 1 else { throw ValidationError("--max-attempts must be at least 1") }
    }

    func run() async throws {
        let operationMix = try mix.map { try OperationMix.load(path: $0) } ?? .standard
        let masked = ConnectionString.masked(legacy)
        let businessClock: BusinessClock
        do {
            businessClock = try await makeClock()
        } catch {
            throw ExitCodeMessage.couldNotRun("\(error)", legacy: legacy)
        }
        let journalWriter = try journal.map { try JournalWriter(path: $0) }
        defer { journalWriter?.close() }
        let app = LegacySQLApp(dsn: legacy, lockTimeout: .milliseconds(Int64((lockTimeout * 1000).rounded())))
        var retry = RetryPolicy.standard
        retry.maxAttempts = maxAttempts
        let simulation = try Simulation(
            .init(
                app: app, connections: connections, rate: rate,
                stop: operations.map { .operations($0) } ?? .duration(.milliseconds(Int64((duration ?? 0) * 1000))),
                seed: seed, mix: operationMix, journal: journalWriter, clock: businessClock, retry: retry))

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
