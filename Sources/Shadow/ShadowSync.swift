import Billing
import EventStore
import Foundation
import Mapping
import Postgres
import TextFormats

/// Syncs exactly the given keys from legacy to the ledger through the mapping (state-based):
/// for each key, the row legacy holds now, read with the entity's `by_key` statement and
/// converted as the backfill converts it, against the row the key's stream replays to.
///
/// - a difference becomes `Transitions.transitions(before: ledger row, after: legacy row)`,
///   appended with the stream's exact expected version; no difference, no event — so syncing
///   a key again, or after a crash, is harmless;
/// - a key legacy no longer returns (a hard delete, or a soft delete the mapping's query
///   filters out) ends its stream with `<Entity>Deleted`;
/// - a row that cannot be converted, or that one of the mapping's `checks` rejects, is
///   quarantined with its reason and its stream stays at its last good state; a later sync
///   that converts it releases the entry (kept, with when and by whom, in `quarantine_released`).
///
/// Shadow mode's tailer calls it for the keys a batch of captured changes touched; `shadow
/// resync` for the keys the diff found different. Events, quarantine entries and whatever the
/// caller adds (the tailer's checkpoint) commit in one store transaction.
public struct ShadowSync: Sendable {
    public let legacy: Connection
    public let store: Connection
    public let eventStore: EventStore
    public let mapping: MappingFile
    /// Names the events' ids (`shadow/…`, `resync/…`) and their `metadata.origin`.
    public let origin: SyncOrigin
    /// The read models' schema, for ``project()``.
    public let readSchema: String
    let sources: [Entity: EntitySource]

    /// Keys read in one statement (a chunk of a larger set: a TRUNCATE's every key).
    static let keysPerStatement = 5_000

    public init(
        legacy: Connection, store: Connection, eventStore: EventStore, mapping: MappingFile, origin: SyncOrigin,
        readSchema: String = "ledgerlift_read"
    ) {
        self.legacy = legacy
        self.store = store
        self.eventStore = eventStore
        self.mapping = mapping
        self.origin = origin
        self.readSchema = readSchema
        self.sources = Dictionary(uniqueKeysWithValues: mapping.entitySources().map { ($0.entity, $0) })
    }

    /// What a sync did.
    public struct Outcome: Sendable, Hashable {
        /// Keys looked up (in legacy and in the ledger).
        public var keysRead = 0
        /// Events appended (deletions included).
        public var eventsAppended = 0
        /// Keys whose stream ended with `<Entity>Deleted`.
        public var deleted = 0
        /// Keys quarantined (or kept in the quarantine) because their legacy row cannot migrate.
        public var quarantined = 0
        /// Quarantine entries released: the key migrated now, or its row is gone.
        public var released = 0
        /// Keys whose stream changed (events appended).
        public var keysChanged = 0
        /// Time spent reading legacy (by_key reads, conversion, checks).
        public var legacyTime = Duration.zero
        /// Time spent reading and replaying the keys' streams.
        public var ledgerTime = Duration.zero
        /// Time spent appending (events, quarantine, the caller's record: one transaction).
        public var appendTime = Duration.zero

        public init() {}

        public mutating func add(_ other: Outcome) {
            keysRead += other.keysRead
            eventsAppended += other.eventsAppended
            deleted += other.deleted
            quarantined += other.quarantined
            released += other.released
            keysChanged += other.keysChanged
            legacyTime += other.legacyTime
            ledgerTime += other.ledgerTime
            appendTime += other.appendTime
        }
    }

    /// Syncs `keys` of each entity, in canonical entity order, in one store transaction (one
    /// per chunk of ``keysPerStatement`` keys of an entity when there are more).
    ///
    /// - Parameters:
    ///   - position: the capture position that made the keys touched, recorded in each
    ///     event's metadata (`capture_xid`, `capture_id`); `nil` for a resync.
    ///   - alsoInTransaction: runs in the (last) store transaction before it commits, with the
    ///     outcome so far: the tailer's checkpoint commits with the batch's events.
    /// - Throws: `EventStoreError` when another writer moved a stream meanwhile (syncing again
    ///   re-reads it); connection and SQL errors. Nothing is written then.
    public func sync(
        _ keys: [Entity: Set<String>], position: CapturePosition?,
        alsoInTransaction: (@Sendable (Session, Outcome) throws -> Void)? = nil
    ) async throws -> Outcome {
        try await sync(keys, position: position, inspect: nil, alsoInTransaction: alsoInTransaction)
    }

    /// Called once per sync, after every key has been read (legacy and ledger) and before the
    /// last append: what it returns runs in that append's transaction. Candidate mode's
    /// comparison sees there exactly the rows the sync compares.
    typealias Inspect =
        @Sendable (_ legacy: [Entity: [String: LegacyState]], _ ledger: [Entity: [String: StreamState]]) async throws ->
        (@Sendable (Session) throws -> Void)?

    func sync(
        _ keys: [Entity: Set<String>], position: CapturePosition?, inspect: Inspect?,
        alsoInTransaction: (@Sendable (Session, Outcome) throws -> Void)?
    ) async throws -> Outcome {
        var chunks = [(Entity, [String])]()
        for entity in Entity.allCases {
            guard let set = keys[entity], !set.isEmpty else { continue }
            guard sources[entity] != nil else { continue }
            // Bytewise order: deterministic statements and stream order.
            let sorted = set.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            for start in stride(from: 0, to: sorted.count, by: Self.keysPerStatement) {
                chunks.append((entity, Array(sorted[start..<min(start + Self.keysPerStatement, sorted.count)])))
            }
        }
        // Small sets (a tailer's batch) go in one transaction; large ones in several, the
        // caller's record with the last.
        var groups = [[(Entity, [String])]]()
        var current = [(Entity, [String])]()
        var count = 0
        for chunk in chunks {
            if count + chunk.1.count > Self.keysPerStatement, !current.isEmpty {
                groups.append(current)
                current = []
                count = 0
            }
            current.append(chunk)
            count += chunk.1.count
        }
        groups.append(current)
        var total = Outcome()
        var read = (legacy: [Entity: [String: LegacyState]](), ledger: [Entity: [String: StreamState]]())
        for (index, group) in groups.enumerated() {
            let last = index == groups.count - 1
            let (outcome, legacyStates, streams) = try await syncGroup(
                group, position: position, carried: read, inspect: last ? inspect : nil,
                alsoInTransaction: last ? alsoInTransaction : nil)
            if inspect != nil, !last {
                read.legacy.merge(legacyStates) { $0.merging($1) { _, new in new } }
                read.ledger.merge(streams) { $0.merging($1) { _, new in new } }
            }
            total.add(outcome)
        }
        return total
    }

    /// What the legacy side says about one key.
    enum LegacyState {
        /// Legacy does not return the key (deleted, or filtered out by the mapping's query).
        case absent
        case row(CanonicalRow)
        case quarantined(reason: String, detail: String, raw: String)
    }

    /// A stream as the ledger holds it.
    struct StreamState {
        var version: Int64 = 0
        var row: CanonicalRow?
        var lastOccurredAt: PostgresTimestamp?
    }

    private func syncGroup(
        _ group: [(Entity, [String])], position: CapturePosition?,
        carried: (legacy: [Entity: [String: LegacyState]], ledger: [Entity: [String: StreamState]]), inspect: Inspect?,
        alsoInTransaction: (@Sendable (Session, Outcome) throws -> Void)?
    ) async throws -> (Outcome, [Entity: [String: LegacyState]], [Entity: [String: StreamState]]) {
        let clock = ContinuousClock()
        var outcome = Outcome()
        // Legacy and ledger are read at once, each on its own connection.
        async let legacyRead = { [self] in
            let started = clock.now
            return (try await readLegacy(group), clock.now - started)
        }()
        async let ledgerRead = { [self] in
            let started = clock.now
            return (try await readLedger(group), clock.now - started)
        }()
        let (legacyStates, legacyTime) = try await legacyRead
        let ((streams, quarantined), ledgerTime) = try await ledgerRead
        outcome.legacyTime = legacyTime
        outcome.ledgerTime = ledgerTime
        var events = [StreamEvent]()
        var entries = [QuarantineStore.Entry]()
        var releases = [(Entity, [String])]()
        let runID = origin.metadataOrigin
        for (entity, keys) in group {
            var released = [String]()
            for key in keys {
                outcome.keysRead += 1
                let stream = streams[entity]?[key] ?? StreamState()
                let wasQuarantined = quarantined[entity]?.contains(key) ?? false
                var synthesized = [BillingEvent]()
                switch legacyStates[entity]?[key] ?? .absent {
                case .quarantined(let reason, let detail, let raw):
                    entries.append(
                        QuarantineStore.Entry(
                            entity: entity, key: key, reason: QuarantineReason(reason), detail: detail, raw: raw,
                            runID: runID))
                    outcome.quarantined += 1
                    continue
                case .absent:
                    if let row = stream.row {
                        synthesized = [
                            Transitions.deletion(
                                before: row, notBefore: stream.lastOccurredAt, syncedFromVersion: stream.version,
                                origin: origin)
                        ]
                        outcome.deleted += 1
                    }
                case .row(let row):
                    // A key the ledger has never seen (created after the backfill's snapshot)
                    // continues "version 0": its ids are a sync's, never a backfill's history step.
                    synthesized = Transitions.transitions(
                        before: stream.row, after: row, notBefore: stream.lastOccurredAt,
                        syncedFromVersion: stream.version, origin: origin)
                }
                if wasQuarantined { released.append(key) }
                guard !synthesized.isEmpty else { continue }
                outcome.keysChanged += 1
                for (index, event) in synthesized.enumerated() {
                    events.append(
                        StreamEvent(
                            streamID: event.streamID, streamVersion: stream.version + 1 + Int64(index),
                            event: newEvent(event, position: position)))
                }
            }
            if !released.isEmpty {
                releases.append((entity, released))
                outcome.released += released.count
            }
        }
        outcome.eventsAppended = events.count
        var inspected: (@Sendable (Session) throws -> Void)?
        if let inspect {
            inspected = try await inspect(
                carried.legacy.merging(legacyStates) { $0.merging($1) { _, new in new } },
                carried.ledger.merging(streams) { $0.merging($1) { _, new in new } })
        }
        let alsoInspected = inspected
        let batch = events
        let records = entries
        let freed = releases
        let finalOutcome = outcome
        let quarantine = QuarantineStore(schema: eventStore.schema)
        let store = eventStore
        let releasedBy = origin.metadataOrigin
        let appendStarted = clock.now
        try await self.store.withSession { session in
            try store.appendBulk(batch, in: session) { tx in
                try quarantine.write(records, tx)
                for (entity, keys) in freed {
                    try QuarantineRelease.release(
                        entity, keys: keys, by: releasedBy, position: position, schema: store.schema, tx)
                }
                try alsoInspected?(tx)
                try alsoInTransaction?(tx, finalOutcome)
            }
        }
        outcome.appendTime = clock.now - appendStarted
        return (outcome, legacyStates, streams)
    }

    /// The event as stored: its origin, evidence and key, and the capture position that caused it.
    func newEvent(_ event: BillingEvent, position: CapturePosition?) -> NewEvent {
        var stored = event.newEvent(origin: origin.metadataOrigin, source: "\(event.entity.rawValue)/\(event.key)")
        var meta: [(String, JSONValue)] = [
            ("origin", .string(origin.metadataOrigin)), ("evidence", .string(event.evidence.rawValue)),
            ("source", .string("\(event.entity.rawValue)/\(event.key)")),
        ]
        if let position {
            meta.append(("capture_xid", .string(position.xid)))
            meta.append(("capture_id", .integer(position.id)))
        }
        stored.metadata = PostgresJSON(JSONValue.object(meta).rendered)
        return stored
    }

    // MARK: - Legacy

    /// Reads every key of the group from legacy in one read-only snapshot: the entity's
    /// `by_key` statement (index lookups), converted, then its checks restricted to the keys.
    func readLegacy(_ group: [(Entity, [String])]) async throws -> [Entity: [String: LegacyState]] {
        let sources = self.sources
        let mapping = self.mapping
        return try await legacy.withSession { session in
            try session.transaction(.init(isolation: .repeatableRead, readOnly: true)) { tx in
                try Self.readLegacy(group, sources: sources, mapping: mapping, in: tx)
            }
        }
    }

    /// The legacy state of every key of `group`, read in `tx` (whatever its snapshot: the
    /// sync's read-only one, or a legacy application's own transaction before its COMMIT).
    static func readLegacy(
        _ group: [(Entity, [String])], sources: [Entity: EntitySource], mapping: MappingFile, in tx: Session
    ) throws -> [Entity: [String: LegacyState]] {
        var result = [Entity: [String: LegacyState]]()
        for (entity, keys) in group {
            guard let source = sources[entity], let entityMapping = mapping[entity] else { continue }
            var states = [String: LegacyState]()
            var rows = [String: [Row]]()
            let byKeyRows: [Row]
            do {
                byKeyRows = try tx.query(entityMapping.byKeySQL, [PostgresArray(keys)]).rows
            } catch let error as PostgresError {
                throw TailerError.mappingStatementFailed(
                    entity: entity.rawValue, table: entityMapping.sources.map(\.table).joined(separator: ", "),
                    statement: entityMapping.byKey == nil ? "query" : "by_key", error: error.description)
            }
            for row in byKeyRows {
                guard let key = row[entity.keyColumn] else { continue }
                rows[key, default: []].append(row)
            }
            var rejected = [String: (String, String)]()
            for check in source.checks {
                let sql =
                    "SELECT * FROM (\n\(check.query)) AS ledgerlift_check(ledgerlift_key) "
                    + "WHERE ledgerlift_check.ledgerlift_key::text = ANY($1::text[])"
                for row in try tx.query(sql, [PostgresArray(keys)]).rows {
                    guard let key = row.values[0], rejected[key] == nil else { continue }
                    let detail = row.values.count > 1 ? row.values[1] ?? check.reason : check.reason
                    rejected[key] = (check.reason, detail)
                }
            }
            for (key, keyRows) in rows {
                let raw =
                    keyRows.count == 1
                    ? Self.rawJSON(keyRows[0]) : "[" + keyRows.map(Self.rawJSON).joined(separator: ",") + "]"
                if keyRows.count > 1 {
                    states[key] = .quarantined(
                        reason: QuarantineReason.duplicateKey.code,
                        detail:
                            "\(keyRows.count) rows of the mapping query share \(entity.keyColumn) \(key); raw holds them all",
                        raw: raw)
                    continue
                }
                if let (reason, detail) = rejected[key] {
                    states[key] = .quarantined(reason: reason, detail: detail, raw: raw)
                    continue
                }
                switch source.convert(keyRows[0]) {
                case .canonical(let row, _, _, _):
                    states[key] = .row(row)
                case .quarantined(_, let reason, let detail):
                    states[key] = .quarantined(reason: reason, detail: detail, raw: raw)
                }
            }
            result[entity] = states
        }
        return result
    }

    /// The legacy row as a JSON object of text values, for the quarantine table (as the backfill writes it).
    static func rawJSON(_ row: Row) -> String {
        JSONValue.object(
            zip(row.columns.columns, row.values).map { column, value in
                (column.name, value.map(JSONValue.string) ?? .null)
            }
        ).rendered
    }

    // MARK: - Ledger

    /// Each key's stream replayed (one query per entity, served by the events' stream index),
    /// and which keys are quarantined.
    func readLedger(_ group: [(Entity, [String])]) async throws -> (
        [Entity: [String: StreamState]], [Entity: Set<String>]
    ) {
        let schema = quoteIdentifier(eventStore.schema)
        return try await store.withSession { session in
            let quarantineTable = try QuarantineStore(schema: self.eventStore.schema).exists(session)
            var streams = [Entity: [String: StreamState]]()
            var quarantined = [Entity: Set<String>]()
            for (entity, keys) in group {
                let prefix = entity.streamID(key: "")
                var events = [String: [BillingEvent]]()
                var states = [String: StreamState]()
                // Only what a replay needs: the rest of an event (its id, metadata, positions) would
                // cost transfer and decoding on every key of every batch.
                for row in try session.query(
                    """
                    SELECT stream_id, stream_version, event_type, schema_version, occurred_at, payload
                    FROM \(schema).events WHERE stream_id = ANY($1::text[]) ORDER BY stream_id, stream_version
                    """, [PostgresArray(keys.map { prefix + $0 })]
                ).rows {
                    let occurredAt = try row.decode(at: 4, as: PostgresTimestamp.self)
                    let recorded = RecordedEvent(
                        globalPosition: 0, eventID: Self.unusedID, streamID: try row.decode(at: 0),
                        streamVersion: try row.decode(at: 1), eventType: try row.decode(at: 2),
                        schemaVersion: try row.decode(at: 3), occurredAt: occurredAt, recordedAt: occurredAt,
                        payload: try row.decode(at: 5), metadata: PostgresJSON("{}"), transactionID: 0)
                    let key = String(recorded.streamID.dropFirst(prefix.count))
                    events[key, default: []].append(try BillingEvent(recorded: recorded))
                    states[key] = StreamState(
                        version: recorded.streamVersion, row: nil, lastOccurredAt: recorded.occurredAt)
                }
                for (key, stream) in events { states[key]?.row = Transitions.replay(stream) }
                streams[entity] = states
                if quarantineTable {
                    quarantined[entity] = Set(
                        try session.query(
                            "SELECT entity_key FROM \(schema).quarantine WHERE entity = $1 AND entity_key = ANY($2::text[])",
                            [entity.rawValue, PostgresArray(keys)]
                        ).rows.map { try $0.decode(at: 0, as: String.self) })
                }
            }
            return (streams, quarantined)
        }
    }

    /// Stands for the ids of events read only to be replayed.
    static let unusedID = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))

    /// Brings the read models up to date with what was appended, in-process, as `ledgerlift
    /// project` does: incrementally, or — when they were never built — built blue/green from
    /// the first event and put in place whole.
    ///
    /// - Returns: `true` when this call projected to the head; `false` when another process
    ///   (`project --follow`) holds the projector's lock and projects instead.
    public func project() async throws -> Bool {
        let projector = Projector(store: eventStore, readSchema: readSchema)
        // Busy is usually a killed tailer's backend still finishing its last projection
        // statement (the server notices the dead client only then): wait it out, bounded, so
        // a drain does not exit with stale read models. A projector that stays (`project
        // --follow`) keeps them current itself.
        let deadline = ContinuousClock.now + .seconds(15)
        while true {
            do {
                _ = try await projector.catchUp(on: store)
                return true
            } catch ProjectionError.consumerBusy {
                // Only a tailer's backend is waited for; a projector that stays (serve's, or
                // `project --follow`) keeps the read models current itself — waiting for it
                // would stall this tailer for the whole deadline at every catch-up.
                let holder = try await store.withSession { try $0.holder(of: projector.consumerLock) }
                guard ContinuousClock.now < deadline else { return false }
                if let holder, !holder.contains("ledgerlift-shadow-run") { return false }
                // Released meanwhile (nil), or a tailer's backend finishing: try again.
                try await Task.sleep(for: .milliseconds(holder == nil ? 20 : 200))
            }
        }
    }
}

/// What the tailer's callers and H3's resync name the outcome.
public typealias SyncOutcome = ShadowSync.Outcome
