import Billing
import Commands
import EventStore
import Foundation
import Mapping
import Postgres
import Synchronization

/// The legacy application's writes once they have moved to the ledger: the simulator's second
/// ``BillingApp`` (`ledger-http`), performing the same ``BillingOperation``s by sending billing
/// commands to `ledgerlift serve` (primary mode) over HTTP.
///
/// **How it decides.** Exactly as the legacy application would, because it runs the legacy
/// application's own code (``LegacyOperationRun``) on the legacy tables — which reverse sync
/// keeps current after the write switch — in a transaction that is always ROLLED BACK (a dry
/// run): the operation picks its rows from the same random stream, locks them, takes its
/// business time, and writes; the canonical rows it touched are read after its writes and, once
/// rolled back to a savepoint, before them; then the whole transaction is rolled back. Nothing
/// is ever committed to legacy. The dry run sets `ledgerlift.origin = 'reverse_sync'` locally,
/// the one origin the legacy write guard lets through (and that capture ignores): the guard
/// stops the legacy application's writes, not a transaction that will roll back.
///
/// **Keys.** The dry run's INSERTs take their ids from the legacy id sequences (`nextval` is not
/// transactional, and the guard does not block it), so a key the ledger receives is one the
/// legacy sequences have handed out and will never hand out again: after a rollback of the
/// cutover, the legacy application cannot re-allocate a key the ledger used.
///
/// **What it sends.** The dry run's ``JournalEntry`` is stated as commands by the translation
/// candidate mode uses (``CommandTranslation/commands(for:legacy:)``); ``BillingAppWorker``'s
/// `prepared` is called with the entry BEFORE the first request, and each command `n` (from 1)
/// is `POST`ed to `<URL>/commands/<name>` with `Idempotency-Key: <run token>:<op id>/<n>`, so a
/// request repeated after an unknown outcome (no answer, a lost connection) is answered from
/// the first execution, never applied twice. The operation is acknowledged (the entry returned)
/// only when every command answered 2xx. The entry is the legacy application's for the same
/// kind, so `simulate verify` checks rerouted operations too.
///
/// **Routing refusals.** serve refuses writes the store's routing does not give to the ledger:
/// 503 `writes_frozen` (a rollback moves writes back) and 409 `writes_on_legacy` (writes belong
/// to legacy). Both are retried, with backoff, for ``Configuration/routingBudget`` — the write
/// switch installs the legacy guard first and flips the store's routing a few milliseconds
/// later, so an operation refused by legacy can meet `writes_on_legacy` briefly. A
/// `writes_on_legacy` that outlasts the budget means the writes went back to legacy:
/// ``LedgerAppError/writesOnLegacy(op:command:)``, which ``Simulation`` answers by sending the
/// operation to the legacy application. The time spent waiting on these refusals is reported
/// through ``BillingAppWorker/takeRoutedWait()``.
///
/// **Rejections.** A command the ledger's rules reject (404, 409, 422 with the rule's code) as
/// the operation's FIRST command means the ledger holds nothing the operation can act on any
/// more — the legacy rows it decided on were behind the ledger (reverse sync had not applied a
/// recent write yet): the operation returns `nil` (skipped), as the legacy application does when
/// the condition it picked by no longer holds under its locks. Its `prepared` line stays in the
/// journal without acknowledgement (in doubt, which verify allows). A rejection of a later
/// command (part of the operation applied) is an error.
public struct LedgerApp: BillingApp {
    /// Where to send the commands and where to decide them.
    public struct Configuration: Sendable {
        /// `ledgerlift serve --mode primary`'s URL (plain `http://`).
        public var endpoint: CandidateEndpoint
        /// The legacy database the dry runs decide on.
        public var legacyDSN: String
        /// The mapping whose queries read the touched rows as canonical rows (the reference
        /// fixture's `fixtures/reference/mapping.yaml` for the reference schema).
        public var mapping: MappingFile
        /// Distinguishes this run's idempotency keys: 8 lowercase hex digits.
        public var runToken: String
        /// The longest one request may take (serve waits up to 5 s for its read models).
        public var requestTimeout: Duration
        /// How long one command is retried while serve refuses it for routing (`writes_frozen`,
        /// `writes_on_legacy`) or answers nothing / a transient failure.
        public var routingBudget: Duration
        /// The dry run's `lock_timeout` (a lock it cannot have fails with `55P03`, which the
        /// runner retries).
        public var lockTimeout: Duration
        /// The store whose read models the journal entry is completed from, once serve has
        /// answered, and whose locks keep an operation whole: one operation per customer, and
        /// the routing's operation lock held shared across an operation's commands, so a
        /// rollback's freeze never falls between them. `nil` journals the dry run's prediction
        /// as it is and takes neither lock: only for an app that never meets a rollback.
        public var storeDSN: String?
        /// The read models' schema in that store.
        public var readSchema = "ledgerlift_read"
        /// The event store's schema there (its routing's operation lock).
        public var storeSchema = "ledgerlift"

        public init(
            endpoint: CandidateEndpoint, legacyDSN: String, mapping: MappingFile,
            runToken: String = CandidateFeed.randomRunToken(), requestTimeout: Duration = .seconds(10),
            routingBudget: Duration = .seconds(3), lockTimeout: Duration = .seconds(1), storeDSN: String? = nil
        ) {
            self.storeDSN = storeDSN
            self.endpoint = endpoint
            self.legacyDSN = legacyDSN
            self.mapping = mapping
            self.runToken = runToken
            self.requestTimeout = requestTimeout
            self.routingBudget = routingBudget
            self.lockTimeout = lockTimeout
        }
    }

    public let configuration: Configuration
    let reader: CanonicalRowReader
    public var name: String { "ledger-http" }
    let log = RejectionLog()

    /// Operations the ledger's rules rejected at their first command (returned `nil`), one
    /// line each (op, command, status, code), the first 50: rejections the legacy application's
    /// own re-check would not have made point at legacy rows behind the ledger.
    public var rejections: [String] { log.lines }
    /// How many operations were rejected so.
    public var rejectionCount: Int { log.count }

    /// - Throws: ``SimulatorError/invalidConfiguration(_:)`` for a run token that is not 8
    ///   lowercase hex digits, or a budget or timeout that is not positive.
    public init(_ configuration: Configuration) throws(SimulatorError) {
        guard configuration.runToken.utf8.count == 8,
            configuration.runToken.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
        else {
            throw .invalidConfiguration("the run token must be 8 lowercase hex digits (got \(configuration.runToken))")
        }
        guard configuration.requestTimeout > .zero, configuration.routingBudget >= .zero else {
            throw .invalidConfiguration(
                "the ledger application's request timeout must be positive and its budget 0 or more")
        }
        self.configuration = configuration
        reader = CanonicalRowReader(mapping: configuration.mapping)
    }

    /// Opens the worker's legacy connection (for its dry runs); its HTTP connection opens on
    /// first use.
    ///
    /// - Throws: ``SimulatorError/database(_:)`` when the legacy connection or its settings fail.
    public func makeWorker() async throws -> any BillingAppWorker {
        do {
            let connection = try await Connection.connect(
                configuration.legacyDSN, applicationName: "ledgerlift-simulate-ledger")
            do {
                let timeout = configuration.lockTimeout
                try await connection.withSession { session in
                    try session.setLockTimeout(timeout)
                    try session.setting("search_path", to: "legacy, pg_catalog")
                }
            } catch {
                connection.close()
                throw error
            }
            return LedgerAppWorker(app: self, connection: connection)
        } catch let error as PostgresError {
            throw SimulatorError.database(error)
        }
    }
}

/// Why the ledger application could not perform an operation.
public enum LedgerAppError: Error, Sendable, Hashable, CustomStringConvertible {
    /// serve kept answering 409 `writes_on_legacy` for the whole routing budget and nothing of
    /// the operation was applied: writes belong to legacy (the runner sends it there).
    case writesOnLegacy(op: UInt64, command: String)
    /// serve kept answering 503 `writes_frozen` for the whole routing budget.
    case writesFrozen(op: UInt64, command: String)
    /// No answer within the budget (its outcome is unknown: the journal's `prepared` line
    /// stays in doubt).
    case noAnswer(op: UInt64, command: String, detail: String)
    /// serve answered an error that is not the ledger's "nothing to act on" (or a rejection of
    /// a command after the first: part of the operation was applied).
    case refused(op: UInt64, command: String, status: Int, code: String?, detail: String)
    /// The dry run's rows do not state the operation as commands.
    case untranslatable(op: UInt64, detail: String)
    /// The touched rows could not be read or converted through the mapping.
    case unreadable(op: UInt64, detail: String)

    /// ``code`` of ``writesOnLegacy(op:command:)``: the runner sends such an operation to legacy.
    public static let writesOnLegacyCode = "writes_on_legacy"

    /// The code the runner counts the failure under.
    public var code: String {
        switch self {
        case .writesOnLegacy: "writes_on_legacy"
        case .writesFrozen: "writes_frozen"
        case .noAnswer: "no_answer"
        case .refused(_, _, let status, let code, _): code ?? "http_\(status)"
        case .untranslatable: "untranslatable"
        case .unreadable: "unreadable"
        }
    }

    public var description: String {
        switch self {
        case .writesOnLegacy(let op, let command):
            "op \(op): \(command) refused: writes go to legacy (409 writes_on_legacy for the whole routing budget)"
        case .writesFrozen(let op, let command):
            "op \(op): \(command) refused: writes are frozen (503 writes_frozen for the whole routing budget)"
        case .noAnswer(let op, let command, let detail): "op \(op): \(command) got no answer: \(detail)"
        case .refused(let op, let command, let status, let code, let detail):
            "op \(op): \(command) answered \(status) \(code ?? "(no problem code)"): \(detail)"
        case .untranslatable(let op, let detail): "op \(op) does not translate into commands: \(detail)"
        case .unreadable(let op, let detail): "op \(op): its rows could not be read: \(detail)"
        }
    }
}

/// One worker of ``LedgerApp``: a legacy connection for the dry runs and a keep-alive HTTP
/// connection to serve.
final class LedgerAppWorker: BillingAppWorker {
    let app: LedgerApp
    let connection: Connection
    private let http: Mutex<HTTP>
    private let routedWait = Mutex<Duration>(.zero)
    private let store = Mutex<Connection?>(nil)

    private struct HTTP: ~Copyable {
        var client: CandidateClient
    }

    init(app: LedgerApp, connection: Connection) {
        self.app = app
        self.connection = connection
        http = Mutex(
            HTTP(
                client: CandidateClient(
                    endpoint: app.configuration.endpoint, timeout: app.configuration.requestTimeout,
                    keptBody: 1 << 20)))
    }

    /// `entry` with each effect's fields as the store's read models hold them now (serve
    /// answered only once they held the commands' events).
    ///
    /// Rows the commands changed that the prediction did not name (serve's answers list every
    /// row they wrote: a credit the ledger applied on its own) are added as effects, with the
    /// fields the journal checks: what the ledger did is what the journal says.
    /// - Returns: `nil` without a store to read.
    private func decided(_ entry: JournalEntry, answers: [String]) throws -> JournalEntry? {
        guard let connection = try storeConnection() else { return nil }
        let reader = StoreStateReader(readSchema: app.configuration.readSchema)
        var entry = entry
        let named = Set(entry.effects.map { "\($0.entity)-\($0.key)" })
        for stream in Self.writtenStreams(answers) where !named.contains(stream) {
            guard let entity = JournalFields.entities.first(where: { stream.hasPrefix($0.rawValue + "-") }) else { continue }
            let key = String(stream.dropFirst(entity.rawValue.count + 1))
            entry.effects.append(
                Effect(
                    entity: entity.rawValue, key: key,
                    fields: Dictionary(uniqueKeysWithValues: JournalFields.fields(entity).map { ($0.name, String?.none) })))
        }
        var unread = IndexSet()
        try connection.withSessionBlocking { session in
            for index in entry.effects.indices where !entry.effects[index].deleted {
                let effect = entry.effects[index]
                guard let entity = Entity(rawValue: effect.entity),
                    let values = try reader.read(entity, keys: [effect.key], in: session)[effect.key]
                else {
                    // A row the read models do not hold: the ledger did not make it (a predicted
                    // row) or it ended (one the answers named). Not journaled — the journal says
                    // what the ledger holds, and ``holds(_:in:besides:)`` sees the gap.
                    unread.insert(index)
                    continue
                }
                for (field, value) in zip(JournalFields.fields(entity), values) where effect.fields[field.name] != nil {
                    entry.effects[index].fields[field.name] = .some(value)
                }
            }
        }
        for index in unread.reversed() { entry.effects.remove(at: index) }
        return entry
    }

    /// Whether every predicted effect on a row the answered commands did not write holds in
    /// `decided` (what the read models show): the refused command's outcome is there already.
    static func holds(_ predicted: JournalEntry, in decided: JournalEntry, besides written: [String]) -> Bool {
        let written = Set(written)
        return predicted.effects.allSatisfy { effect in
            written.contains("\(effect.entity)-\(effect.key)")
                || decided.effects.contains { $0.entity == effect.entity && $0.key == effect.key && $0 == effect }
        }
    }

    /// Takes the store's operation lock shared (``EventStore/RoutingTable/operationLock``) on the
    /// worker's store connection; `nil` without a store.
    private func holdOperationLock() throws -> Connection? {
        guard let connection = try storeConnection() else { return nil }
        let lock = RoutingTable(store: EventStore(schema: app.configuration.storeSchema)).operationLock
        try connection.withSessionBlocking {
            try $0.execute("SELECT pg_advisory_lock_shared(\(AdvisoryLock.keySQL()))", [lock.name])
        }
        return connection
    }

    private func holdCustomerLock(_ key: String) throws -> (connection: Connection, key: String)? {
        guard let connection = try storeConnection() else { return nil }
        let lock = AdvisoryLock("ledgerlift.simulate.customer/" + key)
        try connection.withSessionBlocking { try $0.lock(lock) }
        return (connection, key)
    }

    private func releaseCustomerLock(_ connection: Connection, _ key: String) {
        _ = try? connection.withSessionBlocking { try $0.unlock(AdvisoryLock("ledgerlift.simulate.customer/" + key)) }
    }

    private func releaseOperationLock(_ connection: Connection) {
        let lock = RoutingTable(store: EventStore(schema: app.configuration.storeSchema)).operationLock
        _ = try? connection.withSessionBlocking {
            try $0.execute("SELECT pg_advisory_unlock_shared(\(AdvisoryLock.keySQL()))", [lock.name])
        }
    }

    private func storeConnection() throws -> Connection? {
        guard let dsn = app.configuration.storeDSN else { return nil }
        return try store.withLock { store -> Connection in
            if let store { return store }
            let opened = try Connection.connectBlocking(dsn, applicationName: "ledgerlift-simulate-ledger")
            store = opened
            return opened
        }
    }

    /// The streams serve's answers say the commands wrote (`rows` of each answer).
    static func writtenStreams(_ answers: [String]) -> [String] {
        var streams = [String]()
        for answer in answers {
            guard let object = try? JSONSerialization.jsonObject(with: Data(answer.utf8)) as? [String: Any],
                let rows = object["rows"] as? [String: Any]
            else { continue }
            for stream in rows.keys.sorted() where !streams.contains(stream) { streams.append(stream) }
        }
        return streams
    }

    func takeRoutedWait() -> Duration {
        routedWait.withLock { wait in
            defer { wait = .zero }
            return wait
        }
    }

    /// The dry run's outcome, thrown out of the transaction so it rolls back.
    private struct DryRun: Error {
        var entry: JournalEntry?
        var rows: LegacyRows
    }

    /// The savepoint the operation's writes run under (rolled back to read the before rows).
    static let savepoint = "ledgerlift_ledger_app"

    func perform(
        _ operation: BillingOperation, clock: BusinessClock, prepared: @escaping @Sendable (JournalEntry) throws -> Void
    ) async throws -> JournalEntry? {
        let reader = app.reader
        do {
            return try await connection.withSession { session in
                let dryRun: DryRun
                do {
                    try session.transaction { tx in
                        // The one origin the write guard lets through; nothing here commits.
                        try tx.execute("SELECT set_config('ledgerlift.origin', 'reverse_sync', true)")
                        try tx.execute("SAVEPOINT \(Self.savepoint)")
                        var run = LegacyOperationRun(session: tx, operation: operation, clock: clock)
                        guard let entry = try run.perform() else { throw DryRun(entry: nil, rows: LegacyRows()) }
                        let group = Self.touched(entry)
                        let after = try reader.read(group, in: tx)
                        try tx.execute("ROLLBACK TO SAVEPOINT \(Self.savepoint)")
                        let before = try reader.read(group, in: tx)
                        throw DryRun(entry: entry, rows: LegacyRows(before: before, after: after))
                    }
                    // The body always throws: the transaction is always rolled back.
                    return nil
                } catch let result as DryRun {
                    dryRun = result
                }
                guard let entry = dryRun.entry else { return nil }
                let commands: [BillingCommand]
                do {
                    commands = try CommandTranslation.commands(for: entry, legacy: dryRun.rows)
                } catch {
                    throw LedgerAppError.untranslatable(op: operation.id, detail: "\(error)")
                }
                var answers = [String]()
                // An operation of several commands holds the store's operation lock shared: a
                // rollback freezing writes waits for it instead of cutting it in two.
                // One operation on a customer at a time, as the legacy application's row locks
                // make it: another operation must not slip between this one's commands (a
                // soft delete between a sign-up's customer and its subscription). Taken before
                // the operation lock, always in that order, so the two never deadlock.
                let customer = try entry.keys["customer"].flatMap { try self.holdCustomerLock($0) }
                defer { if let customer { self.releaseCustomerLock(customer.connection, customer.key) } }
                let held = commands.count > 1 ? try self.holdOperationLock() : nil
                defer { if let held { self.releaseOperationLock(held) } }
                for (index, command) in commands.enumerated() {
                    let accepted = try self.send(command, n: index + 1, op: operation.id, answers: &answers)
                    if let rejection = accepted {
                        self.app.log.add("op \(operation.id) (\(operation.kind.rawValue)): \(rejection)")
                        // A follow-up refused because the ledger holds its outcome already (another
                        // operation marked the subscription past due first): the operation's
                        // effects hold, as the read models show.
                        if index > 0, let decided = try self.decided(entry, answers: answers),
                            Self.holds(entry, in: decided, besides: Self.writtenStreams(answers))
                        {
                            try prepared(decided)
                            return decided
                        }
                        guard index == 0 else {
                            throw LedgerAppError.refused(
                                op: operation.id, command: command.name, status: 0, code: "partially_applied",
                                detail: "rejected after \(index) of \(commands.count) commands were applied")
                        }
                        // The ledger holds nothing this operation can act on (see LedgerApp).
                        return nil
                    }
                }
                // What the ledger decided, not what the dry run predicted: serve decides on the
                // ledger, which legacy (read through reverse sync) may trail — a payment of the
                // whole amount due pays what is due in the ledger. The entry is made durable only
                // now: an operation whose commands committed and whose line never got written is
                // not in the journal (never acknowledged), as a legacy operation killed between
                // its COMMIT and its line would be in doubt.
                let decided = try self.decided(entry, answers: answers) ?? entry
                try prepared(decided)
                return decided
            }
        } catch let error as JournalWriter.Failure {
            throw error
        } catch let error as LedgerAppError {
            throw error
        } catch let error as PostgresError {
            throw SimulatorError.database(error)
        } catch let error as SimulatorError {
            throw error
        } catch let error as CanonicalRowReader.Failure {
            throw LedgerAppError.unreadable(op: operation.id, detail: error.detail)
        } catch {
            throw SimulatorError.unusableData(
                "\(operation.kind.rawValue) (op \(operation.id)) could not read the data: \(error)")
        }
    }

    /// Sends command `n` of operation `op` until it is answered for good.
    ///
    /// - Returns: `nil` on a 2xx; the rejection (command, status, code, detail) when the
    ///   ledger's rules rejected it (404, 409, 422 with a rule's code).
    /// - Throws: ``LedgerAppError`` for the rest.
    /// Sends command `n`; returns `nil` and keeps its answer in `answers` when it was taken,
    /// the rejection's words when a rule refused it.
    private func send(_ command: BillingCommand, n: Int, op: UInt64, answers: inout [String]) throws(LedgerAppError)
        -> String?
    {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let body: [UInt8]
        do {
            body = Array(try encoder.encode(command))
        } catch {
            throw .untranslatable(op: op, detail: "command \(n) \(command.name) does not encode: \(error)")
        }
        let headers = [("Idempotency-Key", "\(app.configuration.runToken):\(op)/\(n)")]
        let clock = ContinuousClock()
        let deadline = clock.now + app.configuration.routingBudget
        var pause = Duration.milliseconds(5)
        while true {
            let outcome: Result<CandidateClient.Response, CandidateError> = http.withLock { http in
                Result { () throws(CandidateError) in
                    try http.client.post("/commands/\(command.name)", body: body, headers: headers)
                }
            }
            let retry: LedgerAppError
            var routing = false
            switch outcome {
            case .failure(let error):
                retry = .noAnswer(op: op, command: command.name, detail: error.description)
            case .success(let response):
                if (200..<300).contains(response.status) {
                    answers.append(response.bodyPrefix)
                    return nil
                }
                let code = Self.problemCode(response.bodyPrefix)
                let detail = Simulation.oneLine(String(response.bodyPrefix.prefix(300)))
                switch (response.status, code) {
                case (409, "writes_on_legacy"):
                    routing = true
                    retry = .writesOnLegacy(op: op, command: command.name)
                case (503, "writes_frozen"):
                    routing = true
                    retry = .writesFrozen(op: op, command: command.name)
                case (409, "idempotency_key_in_use"), (409, "append_conflict"), (503, _), (502, _), (504, _):
                    retry = .refused(op: op, command: command.name, status: response.status, code: code, detail: detail)
                case (404, _), (409, _), (422, _):
                    // A rule's rejection; the request's own faults (400, 413, 415, 422
                    // idempotency_key_reused) are errors.
                    if code == "idempotency_key_reused" || code == nil || code == "route_not_found"
                        || code == "unknown_command"
                    {
                        throw .refused(
                            op: op, command: command.name, status: response.status, code: code, detail: detail)
                    }
                    return "\(command.name) answered \(response.status) \(code ?? ""): \(detail)"
                default:
                    throw .refused(op: op, command: command.name, status: response.status, code: code, detail: detail)
                }
            }
            let now = clock.now
            guard now < deadline else {
                if case .writesOnLegacy = retry, n > 1 {
                    throw .refused(
                        op: op, command: command.name, status: 409, code: "partially_applied",
                        detail: "writes went back to legacy after \(n - 1) command(s) of the operation were applied")
                }
                throw retry
            }
            let sleep = min(pause, deadline - now)
            Thread.sleep(forTimeInterval: sleep.seconds)
            if routing { routedWait.withLock { $0 += sleep } }
            pause = min(pause * 2, .milliseconds(100))
        }
    }

    /// The `code` of a problem document, if the body is one.
    static func problemCode(_ body: String) -> String? {
        guard let data = body.data(using: .utf8),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return nil }
        return object["code"] as? String
    }

    /// Every (entity, key) the entry names, by its keys and its effects, in entity order.
    static func touched(_ entry: JournalEntry) -> [(Entity, [String])] {
        var keys = [Entity: Set<String>]()
        for (role, key) in entry.keys {
            if let entity = Entity(rawValue: role) { keys[entity, default: []].insert(key) }
        }
        for effect in entry.effects {
            if let entity = Entity(rawValue: effect.entity) { keys[entity, default: []].insert(effect.key) }
        }
        return Entity.allCases.compactMap { entity in
            keys[entity].map { (entity, $0.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }) }
        }
    }

    func close() {
        http.withLock { $0.client.close() }
        connection.close()
        store.withLock { $0?.close() }
    }
}

/// The first rejections of a ``LedgerApp``, and their number.
final class RejectionLog: Sendable {
    private let state = Mutex<(lines: [String], count: Int)>(([], 0))
    func add(_ line: String) {
        state.withLock { state in
            state.count += 1
            if state.lines.count < 50 { state.lines.append(line) }
        }
    }
    var lines: [String] { state.withLock { $0.lines } }
    var count: Int { state.withLock { $0.count } }
}

/// Reads legacy rows as canonical rows, by key, through a mapping's by-key statements and
/// converters (what shadow mode reads a touched key with).
struct CanonicalRowReader: Sendable {
    struct Failure: Error {
        var detail: String
    }

    let sources: [Entity: EntitySource]

    init(mapping: MappingFile) {
        sources = Dictionary(mapping.entitySources().map { ($0.entity, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// The canonical rows of `group` that exist in `session`'s view (a row the mapping would
    /// quarantine is left out: the translation then names it missing).
    func read(_ group: [(Entity, [String])], in session: Session) throws -> [LegacyRows.Key: CanonicalRow] {
        var rows = [LegacyRows.Key: CanonicalRow]()
        for (entity, keys) in group {
            guard let source = sources[entity] else { continue }
            let result: [Row]
            do {
                result = try session.query(source.byKeyQuery, [PostgresArray(keys)]).rows
            } catch let error as PostgresError {
                throw Failure(detail: "the mapping's by-key statement of \(entity) failed: \(error)")
            }
            for row in result {
                if case .canonical(let canonical, _, _, _) = source.convert(row) {
                    rows[LegacyRows.Key(entity, canonical.key)] = canonical
                }
            }
        }
        return rows
    }
}
