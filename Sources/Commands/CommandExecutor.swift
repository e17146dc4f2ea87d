import Billing
import EventStore
import Foundation
import Postgres
import TextFormats

/// One event a command appended, as the response names it.
public struct AppendedEvent: Sendable, Hashable, Codable {
    public var streamID: String
    public var streamVersion: Int64
    public var type: String
    /// Lowercase UUID.
    public var eventID: String

    public init(streamID: String, streamVersion: Int64, type: String, eventID: String) {
        self.streamID = streamID
        self.streamVersion = streamVersion
        self.type = type
        self.eventID = eventID
    }

    enum CodingKeys: String, CodingKey {
        case streamID = "stream_id"
        case streamVersion = "stream_version"
        case type
        case eventID = "event_id"
    }
}

/// What an executed command did: the response body of the write path.
public struct CommandOutcome: Sendable, Hashable, Codable {
    /// The command's name (`record_payment`).
    public var command: String
    public var summary: String
    /// Appended now — or, for a request id executed before, the events it appended then.
    public var events: [AppendedEvent]
    /// Stream id → the row's canonical columns as text (`nil`: NULL), for every row the
    /// command created or changed (rows it ended are not listed).
    public var rows: [String: [String: String?]]
    /// Whether this request id had been executed already (nothing was appended now).
    public var replayed: Bool

    public init(
        command: String, summary: String, events: [AppendedEvent], rows: [String: [String: String?]],
        replayed: Bool = false
    ) {
        self.command = command
        self.summary = summary
        self.events = events
        self.rows = rows
        self.replayed = replayed
    }
}

/// Carries commands out on the event store: loads what they require, decides, appends.
///
/// Every attempt is one store transaction:
/// 1. the command's state is loaded (``CommandStateLoader``) and the customer it concerns found
///    (a `customer` stream it reads, else the `customer_id` of the rows it reads);
/// 2. the transaction-level advisory lock `ledgerlift.command.customer/<customer id>` is taken —
///    as the legacy application locks the customer row first — so commands of one customer run
///    one at a time, and the state is read again under it;
/// 3. the command decides (pure), its rows become events with ``Billing/Transitions`` (origin
///    ``Billing/SyncOrigin/command``: ids `command/<entity>/<key>/v<n>/…`), its ended rows
///    `…Deleted` as shadow mode writes them;
/// 4. every stream is appended with the exact version it was read at.
///
/// A writer that does not take the lock (shadow mode's tailer, a command of another customer
/// touching the same stream) can still move a stream in between: the append then fails with
/// `EventStoreError.wrongExpectedVersion` (or, when another command decided on the very same
/// version, `idempotencyConflict`: ids name the version read), the transaction rolls back, and
/// the command is decided again on the new state, at most ``maximumAttempts`` times.
///
/// A request id makes a command safe to send again: events carry it in their metadata
/// (`request_id`), and a command whose streams already hold events of its request id appends
/// nothing and answers with those events (``CommandOutcome/replayed``).
public struct CommandExecutor: Sendable {
    public let store: EventStore
    public let readSchema: String
    /// Attempts before a conflict is given up (``CommandError/conflict(command:attempts:stream:)``).
    public var maximumAttempts = 5
    /// How long a command that looks rows up in the read models waits for them to reach the
    /// store's head (``CommandError/projectionBehind(readSchema:waited:)`` after it).
    public var projectionTimeout: Duration = .seconds(10)
    /// Called (tests only) in each attempt's transaction just before the append, with the
    /// attempt number from 1.
    var beforeAppend: (@Sendable (Int) throws -> Void)?
    /// The rules a command is decided by: its own (``BillingCommand/decidable``). Replaced only
    /// to test what checks the rules — a candidate build with a deliberately wrong rule must be
    /// caught by candidate mode's comparison.
    public var rules: @Sendable (BillingCommand) -> any Decidable = { $0.decidable }

    public init(store: EventStore = EventStore(), readSchema: String = "ledgerlift_read") {
        self.store = store
        self.readSchema = readSchema
    }

    var loader: CommandStateLoader {
        CommandStateLoader(store: store, readSchema: readSchema, projectionTimeout: projectionTimeout)
    }

    /// The advisory lock commands of one customer take.
    public static func customerLock(_ customerID: String) -> AdvisoryLock {
        AdvisoryLock("ledgerlift.command.customer/" + customerID)
    }

    /// Loads, decides, appends (one transaction, exact expected versions, customer lock),
    /// retrying a bounded number of times on a concurrent writer.
    ///
    /// - Throws: ``CommandRejection`` (the rules refused: nothing appended), ``CommandError``
    ///   (conflict after retries, projection not caught up, …), or database errors.
    public func execute(_ command: BillingCommand, requestID: String?, on connection: Connection) async throws
        -> CommandOutcome
    {
        try command.validateInput()
        return try await execute(
            rules(command), name: command.name, at: command.at, requestID: requestID,
            fingerprint: requestID == nil ? nil : command.fingerprint, checksTime: true, on: connection,
            prepare: { decidable, state, session in
                try Self.checkTimeZone(command, session)
                return try self.fillIDs(command, state: state, session)
            })
    }

    /// Decides without appending (candidate mode, dry runs): the decision and the events an
    /// execution would append now.
    public func decide(_ command: BillingCommand, on connection: Connection) async throws -> (
        decision: Decision, events: [BillingEvent]
    ) {
        let name = command.name
        let at = command.at
        let loader = self.loader
        return try await connection.withSession { session in
            try session.transaction { tx in
                try command.validateInput()
                let (decidable, state) = try self.load(
                    self.rules(command), name: name, requestID: nil, tx,
                    prepare: { _, state, session in
                        try Self.checkTimeZone(command, session)
                        return try self.fillIDs(command, state: state, session)
                    })
                let decision = try Self.decide(decidable, in: state.state)
                try Self.checkTime(decision, decidable, state: state.state, name: name, at: at)
                let appends = try Self.appends(decision, state: state.state, name: name, at: at, loader: loader, tx)
                return (decision, appends.flatMap(\.events))
            }
        }
    }

    // MARK: - The generic path (any Decidable: tests decide their own rules through it)

    func execute(
        _ command: any Decidable, name: String, at: PostgresTimestamp?, requestID: String?, fingerprint: String? = nil,
        checksTime: Bool = false, on connection: Connection,
        prepare: (@Sendable (any Decidable, CommandState, Session) throws -> any Decidable)? = nil
    ) async throws -> CommandOutcome {
        var lastStream = ""
        for attempt in 1...max(1, maximumAttempts) {
            do {
                return try await connection.withSession { session in
                    try session.transaction { tx in
                        try self.attempt(
                            command, name: name, at: at, requestID: requestID, fingerprint: fingerprint,
                            checksTime: checksTime, attempt: attempt,
                            prepare: prepare, tx)
                    }
                }
            } catch EventStoreError.wrongExpectedVersion(let stream, _, _) {
                lastStream = stream
                // A short, growing pause: the other writer's transaction is committing.
                try await Task.sleep(for: .milliseconds(5 * attempt))
            } catch EventStoreError.idempotencyConflict(_, let stream, _) {
                // Another command decided differently on the same stream version (ids name the
                // version read): the store checks ids before versions. Decided again, it reads
                // the version the other one left.
                lastStream = stream
                // A short, growing pause: the other writer's transaction is committing.
                try await Task.sleep(for: .milliseconds(5 * attempt))
            }
        }
        throw CommandError.conflict(command: name, attempts: max(1, maximumAttempts), stream: lastStream)
    }

    private func attempt(
        _ command: any Decidable, name: String, at: PostgresTimestamp?, requestID: String?, fingerprint: String?,
        checksTime: Bool, attempt: Int,
        prepare: (@Sendable (any Decidable, CommandState, Session) throws -> any Decidable)?, _ tx: Session
    ) throws -> CommandOutcome {
        // The routing lock first, before the customer's (see RoutingTable.shareRoutingLock): a
        // Stripe delivery takes them in this order too.
        let routingTable = RoutingTable(store: store)
        try routingTable.shareRoutingLock(in: tx)
        // Read once to find the customer, lock, then read again: what was read before the lock
        // may have moved while waiting for it.
        let (_, unlocked) = try load(command, name: name, requestID: nil, tx, prepare: nil)
        if let customer = Self.customerID(command.requirements(given: unlocked.state), unlocked.state) {
            try tx.lock(Self.customerLock(customer), scope: .transaction)
        }
        let (decidable, loaded) = try load(command, name: name, requestID: requestID, tx, prepare: prepare)
        if let requestID, !loaded.requestEvents.isEmpty {
            // A request id sent again with another command is not a retry: its events are not
            // this command's answer, and this command is not to be dropped silently.
            if let fingerprint, loaded.requestFingerprints.contains(where: { $0 != fingerprint }) {
                throw CommandRequestReused(requestID: requestID)
            }
            var rows = [String: [String: String?]]()
            for streamID in Set(loaded.requestEvents.map(\.streamID)) {
                if let row = loaded.state.streams[streamID]?.row { rows[streamID] = Self.text(row) }
            }
            return CommandOutcome(
                command: name, summary: "request \(requestID) was executed already: nothing appended",
                events: loaded.requestEvents, rows: rows, replayed: true)
        }
        // Read under the routing lock (shared) in this transaction: a routing change waits for
        // it to commit, and no command appends once writes belong to legacy again (the
        // rollback's freeze).
        if let routing = try routingTable.readForWrite(in: tx, lockShared: true), routing.writes != .ledger {
            throw WritesRoutedElsewhere(cutover: routing.cutover, writes: routing.writes)
        }
        let decision = try Self.decide(decidable, in: loaded.state)
        if checksTime {
            try Self.checkTime(decision, decidable, state: loaded.state, name: name, at: at)
        }
        let appends = try Self.appends(decision, state: loaded.state, name: name, at: at, loader: loader, tx)
        try beforeAppend?(attempt)
        var appended = [AppendedEvent]()
        for append in appends where !append.events.isEmpty {
            let stored = append.events.map {
                Self.newEvent($0, command: name, requestID: requestID, fingerprint: fingerprint)
            }
            try store.append(stored, to: append.streamID, expectedVersion: .exact(append.version), in: tx)
            for (index, event) in append.events.enumerated() {
                appended.append(
                    AppendedEvent(
                        streamID: append.streamID, streamVersion: append.version + 1 + Int64(index),
                        type: event.type.rawValue,
                        eventID: event.eventID.uuidString.lowercased()))
            }
        }
        var rows = [String: [String: String?]]()
        for row in decision.rows { rows[row.streamID] = Self.text(row) }
        return CommandOutcome(command: name, summary: decision.summary, events: appended, rows: rows)
    }

    /// Loads `command`'s state, lets `prepare` complete the command from it (ids to allocate),
    /// and loads what the completed command adds.
    private func load(
        _ command: any Decidable, name: String, requestID: String?, _ tx: Session,
        prepare: (@Sendable (any Decidable, CommandState, Session) throws -> any Decidable)?
    ) throws -> (any Decidable, CommandStateLoader.Loaded) {
        var loaded = try loader.load(command, name: name, requestID: requestID, in: tx)
        guard let prepare else { return (command, loaded) }
        let prepared = try prepare(command, loaded.state, tx)
        let more = try loader.load(prepared, name: name, into: loaded.state, requestID: requestID, in: tx)
        loaded.state = more.state
        loaded.requestEvents += more.requestEvents
        loaded.requestFingerprints.formUnion(more.requestFingerprints)
        return (prepared, loaded)
    }

    static func decide(_ command: any Decidable, in state: CommandState) throws(CommandRejection) -> Decision {
        try command.decide(in: state)
    }

    /// The customer a command concerns: the key of a `customer` stream it reads, else the
    /// `customer_id` of the rows it reads (the lowest, when several name one).
    static func customerID(_ requirements: Set<Requirement>, _ state: CommandState) -> String? {
        let customers = requirements.compactMap { requirement -> String? in
            if case .stream(.customer, let key) = requirement { return key }
            return nil
        }
        if let first = CommandStateLoader.keyOrder(customers).first { return first }
        let named = state.streams.values.compactMap { stream -> String? in
            guard let row = stream.row, row.entity.column("customer_id") != nil, !row["customer_id"].isNull else {
                return nil
            }
            return row["customer_id"].description
        }
        return CommandStateLoader.keyOrder(Array(Set(named))).first
    }

    /// The events of one stream and the version they continue.
    struct StreamAppend {
        var streamID: String
        var version: Int64
        var events: [BillingEvent]
    }

    /// Every stream's events for `decision`, from the rows the command read (a stream it did
    /// not read is read now, and must not exist: only a new row may go unread).
    static func appends(
        _ decision: Decision, state: CommandState, name: String, at: PostgresTimestamp?, loader: CommandStateLoader,
        _ tx: Session
    ) throws -> [StreamAppend] {
        var seen = Set<String>()
        var result = [StreamAppend]()
        func stream(_ entity: Entity, _ key: String) throws -> StreamState {
            let id = entity.streamID(key: key)
            guard seen.insert(id).inserted else {
                throw CommandError.invalidDecision(command: name, reason: "it names \(id) twice")
            }
            if let read = state.streams[id] { return read }
            // A row the command did not read may only be a new one: its stream must not exist.
            let unread = try loader.stream(entity, key, in: tx)
            guard unread.version == 0 else {
                throw CommandError.invalidDecision(
                    command: name,
                    reason: "it writes \(id), which it did not read and which exists (version \(unread.version))")
            }
            return unread
        }
        for row in decision.rows {
            let current = try stream(row.entity, row.key)
            let events = Transitions.transitions(
                before: current.row, after: row, notBefore: current.lastOccurredAt, syncedFromVersion: current.version,
                origin: .command)
            result.append(StreamAppend(streamID: row.streamID, version: current.version, events: events))
        }
        for deleted in decision.deleted {
            let current = try stream(deleted.entity, deleted.key)
            guard let row = current.row else {
                throw CommandError.invalidDecision(
                    command: name, reason: "it ends \(deleted.entity) \(deleted.key), which has no row")
            }
            // The `…Deleted` shadow mode appends when legacy deletes the row, dated by the command.
            let event = Transitions.deletion(
                before: row, at: at, notBefore: current.lastOccurredAt, syncedFromVersion: current.version,
                origin: .command)
            result.append(StreamAppend(streamID: row.streamID, version: current.version, events: [event]))
        }
        return result
    }

    /// The event as stored: metadata `origin` `command`, `command`, `request_id` and `request_sha1`
    /// (the command's ``BillingCommand/fingerprint``), `evidence`, `source`.
    static func newEvent(_ event: BillingEvent, command: String, requestID: String?, fingerprint: String? = nil)
        -> NewEvent
    {
        var stored = event.newEvent(origin: SyncOrigin.command.metadataOrigin)
        var meta: [(String, JSONValue)] = [
            ("origin", .string(SyncOrigin.command.metadataOrigin)), ("command", .string(command)),
            ("evidence", .string(event.evidence.rawValue)),
            ("source", .string("\(event.entity.rawValue)/\(event.key)")),
        ]
        if let requestID { meta.append(("request_id", .string(requestID))) }
        if requestID != nil, let fingerprint { meta.append(("request_sha1", .string(fingerprint))) }
        stored.metadata = PostgresJSON(JSONValue.object(meta).rendered)
        return stored
    }

    /// Business time runs forward on every stream: a command is not dated before the last event
    /// of a stream it changes or ends, nor before the creation of a row it names (the customer
    /// of a subscription, the invoice of a payment).
    ///
    /// - Throws: ``CommandRejection`` `invalid_state` naming both times.
    static func checkTime(
        _ decision: Decision, _ command: any Decidable, state: CommandState, name: String, at: PostgresTimestamp?
    ) throws(CommandRejection) {
        guard let at else { return }
        let changed = decision.rows.map { ($0.entity, $0.key) } + decision.deleted.map { ($0.entity, $0.key) }
        for (entity, key) in changed {
            if let last = state.streams[entity.streamID(key: key)]?.lastOccurredAt, at < last {
                throw CommandRejection(
                    .invalidState, entity, key,
                    "\(name) at \(at) is dated before the last change of \(entity) \(key) at \(last); "
                        + "business time runs forward: date the command at or after \(last)")
            }
        }
        let named = command.requirements(given: state).compactMap { requirement -> (Entity, String)? in
            if case .stream(let entity, let key) = requirement { return (entity, key) }
            return nil
        }
        for (entity, key) in named.sorted(by: { "\($0.0)/\($0.1)" < "\($1.0)/\($1.1)" }) {
            guard let row = state.streams[entity.streamID(key: key)]?.row, entity.column("created_at") != nil,
                let created = row["created_at"].timestampValue, at < created
            else { continue }
            throw CommandRejection(
                .invalidState, entity, key,
                "\(name) at \(at) is dated before \(entity) \(key) was created at \(created); "
                    + "a command cannot depend on a row that does not exist yet")
        }
    }

    /// A `time_zone` the command sets must be one PostgreSQL knows (`pg_timezone_names`), or
    /// every report in the customer's zone would fail.
    static func checkTimeZone(_ command: BillingCommand, _ session: Session) throws {
        guard case .createCustomer(let create) = command, let zone = create.timeZone else { return }
        let known = try session.query(
            "SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE lower(name) = lower($1))", [zone]
        )
        .rows[0].decode(at: 0, as: Bool.self)
        guard known else {
            throw CommandRejection(
                .invalidInput, .customer, nil,
                "\(command.name): time_zone \(zone.debugDescription) is not a time zone PostgreSQL knows (pg_timezone_names); "
                    + "use an IANA name such as Europe/Paris")
        }
    }

    /// A row's canonical columns as text, `nil` for NULL.
    static func text(_ row: CanonicalRow) -> [String: String?] {
        var columns = [String: String?]()
        for column in row.entity.columns {
            let value = row[column.name]
            columns[column.name] = value.isNull ? String?.none : value.description
        }
        return columns
    }

    // MARK: - Ids

    /// The command with the ids it leaves out allocated: today a finalization's credit
    /// applications (one per credit note with credit left, plus one for goodwill credit).
    func fillIDs(_ command: BillingCommand, state: CommandState, _ session: Session) throws -> any Decidable {
        rules(try filled(command, state: state, session))
    }

    /// `command` with the keys it leaves to the executor allocated.
    func filled(_ command: BillingCommand, state: CommandState, _ session: Session) throws -> BillingCommand {
        guard case .finalizeInvoice(var finalize) = command else { return command }
        let notes = state.streams.values.filter { $0.row?.entity == .creditNote }.count
        let needed = notes + 1
        var ids = finalize.creditApplicationIDs ?? []
        while ids.count < needed { ids.append(try allocate(.balanceTransaction, in: session)) }
        finalize.creditApplicationIDs = ids
        return .finalizeInvoice(finalize)
    }

    /// A new key for `entity`: from the store's sequence `command_ids_<entity>` (schema
    /// version 3 creates them, so the store's writer role may use them without owning them),
    /// moved above the largest numeric key of the entity's streams when the key it gives is
    /// taken — on first use, and whenever a legacy writer took keys meanwhile — so never a key
    /// a stream already uses.
    ///
    /// - Throws: ``CommandError/noIDSequence(entity:)`` on a store without the sequence,
    ///   ``CommandError/allocationExhausted(entity:)``.
    public func allocate(_ entity: Entity, on connection: Connection) async throws -> String {
        try await connection.withSession { session in try self.allocate(entity, in: session) }
    }

    /// See ``allocate(_:on:)``; in `session`'s transaction if one is open.
    public func allocate(_ entity: Entity, in session: Session) throws -> String {
        let sequence = quoteIdentifier(store.schema) + "." + quoteIdentifier("command_ids_" + entity.rawValue)
        // Checked first: in a transaction, a failed nextval would abort it.
        let known = try session.query("SELECT to_regclass($1) IS NOT NULL", [sequence]).rows[0].decode(
            at: 0, as: Bool.self)
        guard known else { throw CommandError.noIDSequence(entity: entity.rawValue) }
        // A sequence never used yet starts above the largest numeric key. Serialized, so two
        // first uses cannot both seed it, one moving it back under the other's key; `setval`
        // marks it used, so the second one finds nothing to do.
        let seedFirst = { (tx: Session) throws in
            try tx.lock(AdvisoryLock("ledgerlift.command.allocate/" + store.schema), scope: .transaction)
            if try !tx.query("SELECT is_called FROM \(sequence)").rows[0].decode(at: 0, as: Bool.self) {
                try seed(sequence, entity, tx)
            }
        }
        if try !session.query("SELECT is_called FROM \(sequence)").rows[0].decode(at: 0, as: Bool.self) {
            if session.isInTransaction { try seedFirst(session) } else { try session.transaction { try seedFirst($0) } }
        }
        for _ in 0..<8 {
            let id = String(
                try session.query("SELECT nextval($1::regclass)", [sequence]).rows[0].decode(at: 0, as: Int64.self))
            if try store.streamVersion(entity.streamID(key: id), in: session) == 0 { return id }
            try seed(sequence, entity, session)
        }
        throw CommandError.allocationExhausted(entity: entity.rawValue)
    }

    /// Moves the sequence past the largest numeric key of `entity`'s streams.
    private func seed(_ sequence: String, _ entity: Entity, _ session: Session) throws {
        let prefix = entity.streamID(key: "")
        try session.execute(
            """
            SELECT setval($1::regclass, seed) FROM (SELECT greatest(
                (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM \(sequence)),
                (SELECT coalesce(max(substr(stream_id, $3)::bigint), 0) FROM \(quoteIdentifier(store.schema)).streams
                 WHERE stream_id >= $2 AND stream_id < $4 AND substr(stream_id, $3) ~ '^[0-9]{1,18}$')) AS seed) AS s
            WHERE seed > 0
            """, [sequence, prefix, Int32(prefix.count + 1), String(prefix.dropLast()) + "."])
    }
}
