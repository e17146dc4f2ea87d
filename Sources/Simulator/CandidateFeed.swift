import Billing
import Commands
import Foundation
import Mapping
import Postgres
import Shadow
import Synchronization

/// Candidate mode's feed (`ledgerlift simulate --candidate URL`): every operation the legacy
/// application performs is also sent, as billing commands, to the candidate write path
/// (`ledgerlift serve --mode candidate`), which records them for the shadow tailer to decide
/// and compare with what legacy wrote (docs/simulator.md, "Candidate mode").
///
/// For each operation, INSIDE its legacy transaction, after its writes and after the journal's
/// `prepared` line, BEFORE its COMMIT (``LegacySQLApp`` calls ``Worker/feed(_:in:)`` there):
/// 1. the rows the transaction touched, before and after, and its xid (``LegacyTouchedRows``);
/// 2. the commands that state the operation (``CommandTranslation/commands(for:legacy:)``);
/// 3. each command `n` (from 1) `POST`ed to `<URL>/commands/<name>`, synchronously, with
///    `Idempotency-Key: <run token>:<op id>/<n>` and `Ledgerlift-Legacy-Xid: <xid>`.
///
/// Sending before the COMMIT is what lets the candidate hold the commands before the tailer can
/// see the transaction. The run token (8 random hex digits, in the report) keeps two runs'
/// keys apart: the ledger's idempotency keys outlive a run.
///
/// **The candidate never fails a legacy operation.** Every problem — rows that cannot be read,
/// an operation that does not translate, a candidate down, slow (``Configuration/timeout`` per
/// request) or answering an error — is counted and sampled in ``CandidateFigures``, and the
/// legacy transaction commits as it would have. After a request gets no answer, the operation's
/// later commands are not sent (each is decided on the state the previous left; without it
/// they would be compared wrongly) and, for ``Configuration/pauseAfterFailure``, no operation
/// is fed (counted `skipped`): a dead candidate then costs the legacy application one timeout
/// per pause, not one per operation.
public final class CandidateFeed: Sendable {
    /// What to feed and where.
    public struct Configuration: Sendable {
        public var endpoint: CandidateEndpoint
        /// The mapping the shadow tailer runs with (its `sources` name the touched keys).
        public var mapping: MappingFile
        public var capture: CaptureSchema
        /// The legacy database: each worker opens a second connection there for the before rows.
        public var legacyDSN: String
        /// The longest a request (connecting included) may take.
        public var timeout: Duration
        /// How long no operation is fed after a request got no answer.
        public var pauseAfterFailure: Duration
        /// Distinguishes this run's idempotency keys: 8 hex digits, random by default.
        public var runToken: String
        /// Examples of problems kept for the report.
        public var samples: Int

        public init(
            endpoint: CandidateEndpoint, mapping: MappingFile, capture: CaptureSchema = CaptureSchema(),
            legacyDSN: String,
            timeout: Duration = .seconds(2), pauseAfterFailure: Duration = .seconds(1),
            runToken: String = CandidateFeed.randomRunToken(), samples: Int = 10
        ) {
            self.endpoint = endpoint
            self.mapping = mapping
            self.capture = capture
            self.legacyDSN = legacyDSN
            self.timeout = timeout
            self.pauseAfterFailure = pauseAfterFailure
            self.runToken = runToken
            self.samples = samples
        }
    }

    public let configuration: Configuration
    let touched: LegacyTouchedRows
    private let state: Mutex<State>
    private let clock = ContinuousClock()

    private struct State: Sendable {
        var figures: CandidateFigures
        var pausedUntil: ContinuousClock.Instant?
    }

    /// 8 random hex digits.
    public static func randomRunToken() -> String {
        let value = UInt32.random(in: .min ... .max)
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }

    /// Prepares the feed: reads which tables the legacy database captures and builds the
    /// statements that turn a transaction's outbox rows into keys.
    ///
    /// - Throws: ``CandidateFeedError`` when the legacy database cannot be reached or its
    ///   capture is not installed for the mapping (`ledgerlift shadow install`); the run should
    ///   not start then — it could compare nothing.
    public init(_ configuration: Configuration) throws(CandidateFeedError) {
        guard configuration.runToken.utf8.count == 8,
            configuration.runToken.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
        else {
            throw .invalidConfiguration("the run token must be 8 lowercase hex digits (got \(configuration.runToken))")
        }
        guard configuration.timeout > .zero else {
            throw .invalidConfiguration("the candidate timeout must be positive")
        }
        self.configuration = configuration
        state = Mutex(
            State(figures: CandidateFigures(url: configuration.endpoint.description, runToken: configuration.runToken)))
        do {
            let connection = try Connection.connectBlocking(
                configuration.legacyDSN, applicationName: "ledgerlift-simulate-candidate")
            defer { connection.close() }
            touched = try connection.withSessionBlocking { session in
                try LegacyTouchedRows(
                    mapping: configuration.mapping, capture: configuration.capture, preparedOn: session)
            }
        } catch let error as LegacyTouchedRowsError {
            throw .unusableLegacy(error.description)
        } catch {
            throw .unusableLegacy("\(error)")
        }
    }

    /// The figures so far (the report's `candidate`).
    public func figures() -> CandidateFigures { state.withLock { $0.figures } }

    /// A worker's share of the feed: its second legacy connection and its keep-alive candidate
    /// connection, both opened on first use (and again after they fail), so opening one never
    /// fails a legacy worker.
    public func makeWorker() -> Worker { Worker(feed: self) }

    private func count(_ change: (inout CandidateFigures) -> Void) { state.withLock { change(&$0.figures) } }

    private func sample(_ text: String) {
        let limit = configuration.samples
        state.withLock { state in
            if state.figures.samples.count < limit { state.figures.samples.append(text) }
        }
    }

    /// Whether operations are not fed now (a recent request got no answer); counts it `skipped`.
    private func skipIfPaused() -> Bool {
        let now = clock.now
        return state.withLock { state in
            guard let until = state.pausedUntil, now < until else { return false }
            state.figures.operations += 1
            state.figures.skipped += 1
            return true
        }
    }

    private func pause() {
        let until = clock.now + configuration.pauseAfterFailure
        state.withLock { $0.pausedUntil = max($0.pausedUntil ?? until, until) }
    }

    /// One simulator worker's feed: used by one legacy connection, one operation at a time.
    public final class Worker: Sendable {
        let feed: CandidateFeed
        private let connections: Mutex<Connections>

        private struct Connections: ~Copyable {
            var committed: Connection?
            var client: CandidateClient
        }

        init(feed: CandidateFeed) {
            self.feed = feed
            connections = Mutex(
                Connections(
                    committed: nil,
                    client: CandidateClient(endpoint: feed.configuration.endpoint, timeout: feed.configuration.timeout))
            )
        }

        /// Closes the worker's connections.
        public func close() {
            connections.withLock { connections in
                connections.committed?.close()
                connections.committed = nil
                connections.client.close()
            }
        }

        /// Feeds the operation `entry` to the candidate, from inside its legacy transaction `tx`
        /// (after its writes, before COMMIT). Never throws and never leaves `tx` unusable: every
        /// problem is counted in the feed's figures.
        public func feed(_ entry: JournalEntry, in tx: Session) {
            guard !feed.skipIfPaused() else { return }
            let configuration = feed.configuration
            let label = "op \(entry.op) (\(entry.kind.rawValue))"
            connections.withLock { connections in
                let rows: LegacyTouchedRows.Rows
                do {
                    let committed: Connection
                    if let open = connections.committed {
                        committed = open
                    } else {
                        committed = try Connection.connectBlocking(
                            configuration.legacyDSN, applicationName: "ledgerlift-simulate-candidate")
                        connections.committed = committed
                    }
                    rows = try feed.touched.read(in: tx, committed: committed)
                } catch {
                    if let error = error as? PostgresError, error.isConnectionLost || error.code == .connectionFailed {
                        connections.committed?.close()
                        connections.committed = nil
                    }
                    if let error = error as? LegacyTouchedRowsError, error.step == .before {
                        // The second connection may be what failed: open a new one next time.
                        connections.committed?.close()
                        connections.committed = nil
                    }
                    feed.count {
                        $0.operations += 1
                        $0.unreadable += 1
                    }
                    feed.sample("\(label): \(error)")
                    return
                }
                let commands: [BillingCommand]
                do {
                    commands = try CommandTranslation.commands(for: entry, legacy: Self.legacyRows(rows))
                } catch {
                    feed.count {
                        $0.operations += 1
                        $0.untranslatable += 1
                    }
                    feed.sample("\(label): untranslatable: \(error)")
                    return
                }
                feed.count {
                    $0.operations += 1
                    $0.commands += commands.count
                }
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                for (index, command) in commands.enumerated() {
                    let n = index + 1
                    let body: [UInt8]
                    do {
                        body = Array(try encoder.encode(command))
                    } catch {
                        // Every command encodes; should one not, it is the translation's fault.
                        feed.count { $0.untranslatable += 1 }
                        feed.sample("\(label): command \(n) \(command.name) does not encode: \(error)")
                        feed.count { $0.notSent += commands.count - index }
                        return
                    }
                    feed.count { $0.sent += 1 }
                    do {
                        let response = try connections.client.post(
                            "/commands/\(command.name)", body: body,
                            headers: [
                                ("Idempotency-Key", "\(configuration.runToken):\(entry.op)/\(n)"),
                                ("Ledgerlift-Legacy-Xid", String(rows.xid)),
                            ])
                        feed.count { $0.answered[String(response.status), default: 0] += 1 }
                        if !(200..<300).contains(response.status) {
                            feed.sample(
                                "\(label): command \(n) \(command.name) answered \(response.status): "
                                    + Simulation.oneLine(String(response.bodyPrefix.prefix(300))))
                        }
                    } catch {
                        feed.count {
                            $0.failed += 1
                            $0.notSent += commands.count - n
                        }
                        feed.sample("\(label): command \(n) \(command.name): \(error)")
                        feed.pause()
                        return
                    }
                }
            }
        }

        /// The touched rows as the translation reads them.
        static func legacyRows(_ rows: LegacyTouchedRows.Rows) -> LegacyRows {
            func flatten(_ rows: [Entity: [String: CanonicalRow]]) -> [LegacyRows.Key: CanonicalRow] {
                var flat = [LegacyRows.Key: CanonicalRow]()
                for (entity, keyed) in rows {
                    for (key, row) in keyed { flat[LegacyRows.Key(entity, key)] = row }
                }
                return flat
            }
            return LegacyRows(before: flatten(rows.before), after: flatten(rows.after))
        }
    }
}

/// Why candidate mode cannot start.
public enum CandidateFeedError: Error, Sendable, Hashable, CustomStringConvertible {
    case invalidConfiguration(String)
    /// The legacy database cannot serve the feed (unreachable, capture not installed).
    case unusableLegacy(String)

    public var description: String {
        switch self {
        case .invalidConfiguration(let why): why
        case .unusableLegacy(let why): "the candidate feed cannot read the legacy database: \(why)"
        }
    }
}

/// What the candidate feed did in a run (the report's `candidate`).
///
/// Every legacy operation the application committed with something to act on is counted once
/// in ``operations``: as ``skipped`` (a recent request got no answer), ``unreadable`` (its rows
/// could not be read), ``untranslatable`` (its rows do not show what it did) or translated into
/// ``commands``. Of the commands, ``sent`` went out, each either ``answered`` (by HTTP status) or
/// ``failed`` (no answer in time); the ones after a failed one in the same operation are
/// ``notSent``. Operations whose COMMIT then failed are counted too (the feed runs before it).
public struct CandidateFigures: Sendable, Hashable, Codable {
    /// The candidate's URL.
    public var url: String
    /// The run's prefix of every `Idempotency-Key` (`<run token>:<op id>/<n>`).
    public var runToken: String
    public var operations = 0
    public var skipped = 0
    public var unreadable = 0
    public var untranslatable = 0
    public var commands = 0
    public var sent = 0
    /// Answers by HTTP status (`"202"`: recorded; 4xx: refused or rejected, see ``samples``).
    public var answered = [String: Int]()
    public var failed = 0
    public var notSent = 0
    /// The first problems, one line each.
    public var samples = [String]()

    public init(url: String, runToken: String) {
        self.url = url
        self.runToken = runToken
    }

    /// Answers with a 2xx status.
    public var accepted: Int { answered.filter { (200..<300).contains(Int($0.key) ?? 0) }.values.reduce(0, +) }

    /// Whether anything went wrong on the candidate's side (the legacy run is not affected).
    public var hasProblems: Bool { skipped + unreadable + untranslatable + failed + notSent > 0 || accepted != sent }

    /// Lines for the text report.
    public var textLines: [String] {
        var lines = [
            "candidate: \(url) (run token \(runToken))",
            "  operations: \(operations) fed (\(skipped) skipped after a failure, \(unreadable) unreadable, \(untranslatable) untranslatable)",
            "  commands: \(commands) translated, \(sent) sent, \(failed) without an answer, \(notSent) not sent",
            "  answers: "
                + (answered.isEmpty
                    ? "none"
                    : answered.sorted { $0.key < $1.key }.map { "\($0.value) × \($0.key)" }.joined(separator: ", ")),
        ]
        if !samples.isEmpty {
            lines.append("  samples:")
            lines += samples.map { "    " + $0 }
        }
        return lines
    }
}
