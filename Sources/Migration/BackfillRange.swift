import Mapping
import TextFormats
import Billing
import EventStore
import Foundation
import Postgres

/// What one key range produced.
struct RangeOutcome: Sendable {
    var entity: Entity
    var rowsRead: Int64 = 0
    var rowsMigrated: Int64 = 0
    var rowsQuarantined: Int64 = 0
    var events: Int64 = 0
    /// Keys an earlier attempt had migrated, brought up to date with the legacy row now.
    var rowsResynced: Int64 = 0
    var eventsByType: [String: Int64] = [:]
    var reasons: [String: Int64] = [:]
}

/// A row that cannot be migrated, as stored in the quarantine table.
struct QuarantineRecord: Sendable {
    var entity: Entity
    var key: String
    var reason: String
    var detail: String
    var raw: String
}

extension Backfill {
    /// Reads one key range in the shared snapshot, synthesizes its events and appends them;
    /// the range's last batch commits with the record that the range is done.
    ///
    /// - Parameter resumed: an earlier attempt may have started this range, so streams of its
    ///   keys may exist already; each such key is brought up to date from its stream's row
    ///   (state-based sync) instead of being derived from nothing again.
    func processRange(
        _ range: KeyRange, source: EntitySource, snapshotID: String, snapshotText: String,
        rejected: [ExactKey: (String, String)], parents: [Entity: Set<ExactKey>], resumed: Bool, legacy: Connection,
        store: Connection?
    ) async throws -> RangeOutcome {
        let runID = runID
        var existing = [ExactKey: StoredStream]()
        if resumed, let store {
            existing = try await store.withSession { session in
                // The range is read again in full: its quarantine entries of this run are
                // written anew (a row fixed in legacy meanwhile leaves none behind).
                try QuarantineStore(schema: self.configuration.store.schema).clear(
                    source.entity, runID: runID, after: range.lower, through: range.upper, keyless: range.lower == nil,
                    in: session)
                return try self.storedStreams(of: source.entity, in: range, session)
            }
        }
        return try await legacy.withSession { [existing] session in
            try session.transaction(.init(isolation: .repeatableRead, readOnly: true, snapshot: snapshotID)) { tx in
                try self.readRange(
                    range, source: source, tx, rejected: rejected, parents: parents, runID: runID, snapshotText: snapshotText,
                    resumed: resumed, existing: existing, storeConnection: store)
            }
        }
    }

    /// A stream an earlier attempt wrote: its version, the row its events replay to, and the
    /// business time of its last event.
    struct StoredStream: Sendable {
        var version: Int64
        var row: CanonicalRow?
        var lastOccurredAt: PostgresTimestamp?
    }

    /// The streams of `entity` whose keys fall in `range`, replayed.
    func storedStreams(of entity: Entity, in range: KeyRange, _ session: Session) throws -> [ExactKey: StoredStream] {
        let prefix = entity.streamID(key: "")
        var streams = [ExactKey: StoredStream]()
        var events = [ExactKey: [BillingEvent]]()
        for recorded in try configuration.store.readStreams(
            prefix: prefix, after: range.lower.map { prefix + $0 }, through: range.upper.map { prefix + $0 }, in: session)
        {
            let key = ExactKey(String(recorded.streamID.utf8.dropFirst(prefix.utf8.count))!)
            events[key, default: []].append(try BillingEvent(recorded: recorded))
            streams[key] = StoredStream(version: recorded.streamVersion, row: nil, lastOccurredAt: recorded.occurredAt)
        }
        for (key, stream) in events { streams[key]?.row = Transitions.replay(stream) }
        return streams
    }

    /// The range's filter on the mapping query's key. The first range also takes rows whose key
    /// is NULL (no comparison matches NULL), so they are read — and quarantined — not lost.
    private func rangeFilter(_ range: KeyRange, key: String, firstParameter: Int) -> (String, [(any PostgresEncodable)?]) {
        var clauses = [String]()
        var parameters = [(any PostgresEncodable)?]()
        if let lower = range.lower {
            parameters.append(lower)
            clauses.append("\(key)::text COLLATE \"C\" > $\(firstParameter + parameters.count - 1)")
        }
        if let upper = range.upper {
            parameters.append(upper)
            clauses.append("\(key)::text COLLATE \"C\" <= $\(firstParameter + parameters.count - 1)")
        }
        if clauses.isEmpty { return ("TRUE", parameters) }
        let filter = clauses.joined(separator: " AND ")
        return (range.lower == nil ? "(\(filter) OR \(key) IS NULL)" : filter, parameters)
    }

    /// What one legacy key produced, held until the next key shows it was the only row of its key.
    private struct KeyResult {
        var key: String
        var rows: [Row]
        var events: [StreamEvent] = []
        var eventTypes: [String] = []
        var quarantine: QuarantineRecord?
        var resynced = false
    }

    private func readRange(
        _ range: KeyRange, source: EntitySource, _ tx: Session, rejected: [ExactKey: (String, String)],
        parents: [Entity: Set<ExactKey>], runID: String, snapshotText: String, resumed: Bool, existing: [ExactKey: StoredStream],
        storeConnection: Connection?
    ) throws -> RangeOutcome {
        let config = configuration
        let entity = source.entity
        let key = "q." + quoteIdentifier(entity.keyColumn)
        let (filter, parameters) = rangeFilter(range, key: key, firstParameter: 1)
        var outcome = RangeOutcome(entity: entity)

        // Past versions of the range's keys (bounded by the range), by key, oldest first.
        var history = [ExactKey: [Row]]()
        if let historyQuery = source.historyQuery {
            try tx.stream(
                "SELECT * FROM (\(historyQuery)) q WHERE \(filter) ORDER BY \(key)::text COLLATE \"C\", q.valid_from",
                parameters
            ) { row in
                guard let rowKey = row[entity.keyColumn] else { return }
                history[ExactKey(rowKey), default: []].append(row)
            }
        }

        var events = [StreamEvent]()
        var quarantined = [QuarantineRecord]()
        var migratedKeys = [String]()
        var seenStreams = Set<ExactKey>()
        // Rows without a key get a quarantine key of their own: the row's digest, numbered when
        // identical rows repeat, so each is listed and none overwrites another.
        var keylessSeen = [String: Int]()
        // Batches are appended in the background while the next one is read; the range's last
        // batch (with the record that the range is done) is awaited before the range returns.
        let appender = BackfillAppender()
        // Should reading fail, the range returns only once the batch in flight has committed or
        // failed, as it did when batches were appended in turn.
        defer { try? appender.finish() }
        func flush(final: Bool) throws {
            guard let storeConnection else {
                events.removeAll(keepingCapacity: true)
                quarantined.removeAll()
                migratedKeys.removeAll()
                return
            }
            let batch = events
            let records = quarantined
            let released = migratedKeys
            let counts = outcome
            let store = self
            try appender.submit {
                try storeConnection.withSessionBlocking { session -> Void in
                    try config.store.appendBulk(batch, in: session) { tx in
                        try store.writeQuarantine(records, runID: runID, tx)
                        if !released.isEmpty { try store.releaseQuarantine(entity, keys: released, tx) }
                        if final {
                            try store.markDone(range, entity: entity, counts: counts, runID: runID, snapshot: snapshotText, tx)
                        }
                    }
                }
            }
            if final { try appender.finish() }
            // Fresh arrays: the batch just handed over keeps its storage, so nothing is copied.
            events = []
            events.reserveCapacity(batch.count)
            quarantined = []
            migratedKeys = []
        }

        func quarantineRecord(_ rowKey: String, _ reason: String, _ detail: String, _ row: Row) -> QuarantineRecord {
            QuarantineRecord(entity: entity, key: rowKey, reason: reason, detail: detail, raw: Self.rawJSON(row))
        }

        /// Converts the rows of one key (history, then the current row) into events or a reason.
        func process(_ row: Row, rowKey: String) -> KeyResult {
            var result = KeyResult(key: rowKey, rows: [row])
            if let (reason, detail) = rejected[ExactKey(rowKey)] {
                result.quarantine = quarantineRecord(rowKey, reason, detail, row)
                return result
            }
            var versions = [(row: CanonicalRow, validFrom: PostgresTimestamp?, validTo: PostgresTimestamp?, inferred: Bool)]()
            for versionRow in history[ExactKey(rowKey)] ?? [] {
                switch source.convert(versionRow) {
                case .canonical(let canonical, let validFrom, let validTo, let inferred):
                    versions.append((canonical, validFrom, validTo, inferred))
                case .quarantined(_, let reason, let detail):
                    result.quarantine = quarantineRecord(rowKey, reason, "history row: " + detail, row)
                    return result
                }
            }
            switch source.convert(row) {
            case .canonical(let canonical, let validFrom, let validTo, let inferred):
                versions.append((canonical, validFrom, validTo, inferred))
            case .quarantined(_, let reason, let detail):
                result.quarantine = quarantineRecord(rowKey, reason, detail, row)
                return result
            }
            let current = versions.last!
            for link in CrossRowCheck.parents[entity] ?? [] {
                if let parentKey = current.row[link.column].textValue, parents[link.parent]?.contains(ExactKey(parentKey)) == true {
                    result.quarantine = quarantineRecord(
                        rowKey, "parent_quarantined", "\(link.parent.rawValue) \(parentKey) is quarantined", row)
                    return result
                }
            }
            var synthesized = [BillingEvent]()
            var firstVersion: Int64 = 1
            if let stored = existing[ExactKey(rowKey)] {
                // An earlier attempt wrote this stream; legacy may have changed the row since.
                // Append only the difference, exactly as shadow mode would (no change, no event).
                var events = Transitions.transitions(
                    before: stored.row, after: current.row, notBefore: stored.lastOccurredAt, syncedFromVersion: stored.version)
                if current.inferred { events = events.map { $0.withEvidence(.inferred) } }
                synthesized = events
                firstVersion = stored.version + 1
                result.resynced = !events.isEmpty
            } else {
                var previous: CanonicalRow?
                for (step, version) in versions.enumerated() {
                    // When the audit table recorded the change into this version: the previous
                    // version's valid_to, else this version's valid_from.
                    let changedAt = step == 0 ? nil : versions[step - 1].validTo ?? version.validFrom
                    var events = Transitions.transitions(
                        before: previous, after: version.row, step: step, notBefore: synthesized.last?.occurredAt,
                        changedAt: changedAt)
                    if version.inferred { events = events.map { $0.withEvidence(.inferred) } }
                    synthesized += events
                    previous = version.row
                }
            }
            for (index, event) in synthesized.enumerated() {
                result.events.append(
                    StreamEvent(
                        streamID: event.streamID, streamVersion: firstVersion + Int64(index),
                        event: event.newEvent(origin: "backfill", runID: runID, source: "\(entity.rawValue)/\(rowKey)")))
                result.eventTypes.append(event.type.rawValue)
            }
            return result
        }

        /// Counts a key's result and queues its events or its quarantine record.
        func commit(_ result: KeyResult) throws {
            outcome.rowsRead += Int64(result.rows.count)
            seenStreams.insert(ExactKey(result.key))
            if var record = result.quarantine {
                outcome.rowsQuarantined += Int64(result.rows.count)
                outcome.reasons[record.reason, default: 0] += Int64(result.rows.count)
                if result.rows.count > 1 {
                    record.raw = "[" + result.rows.map { Self.rawJSON($0) }.joined(separator: ",") + "]"
                }
                quarantined.append(record)
            } else {
                events += result.events
                for type in result.eventTypes { outcome.eventsByType[type, default: 0] += 1 }
                outcome.events += Int64(result.events.count)
                outcome.rowsMigrated += 1
                if result.resynced { outcome.rowsResynced += 1 }
                if resumed { migratedKeys.append(result.key) }
            }
            if events.count + quarantined.count >= config.batchEvents { try flush(final: false) }
        }

        var held: KeyResult?
        try tx.stream("SELECT * FROM (\(source.query)) q WHERE \(filter) ORDER BY \(key)::text COLLATE \"C\"", parameters) { row in
            let keyText = row[entity.keyColumn]
            let tooLong = (keyText?.utf8.count ?? 0) > Quarantine.maximumKeyBytes
            guard let legacyKey = keyText, !legacyKey.isEmpty, !tooLong else {
                // No usable key (none, or longer than a stream id can hold): quarantined under
                // a key of its own, the row's digest, so each such row is kept and counted.
                let digest = DeterministicID.uuid5(namespace: DeterministicID.eventNamespace, name: Self.rawJSON(row))
                    .uuidString.lowercased().filter { $0 != "-" }.prefix(12)
                let base = (tooLong ? Quarantine.longKey : Quarantine.nullKey) + "#" + digest
                let seen = keylessSeen[base, default: 0] + 1
                keylessSeen[base] = seen
                let ownKey = seen == 1 ? base : "\(base)#\(seen)"
                var result = KeyResult(key: ownKey, rows: [row])
                result.quarantine =
                    tooLong
                    ? quarantineRecord(
                        ownKey, QuarantineReason.keyTooLong.code,
                        "\(entity.keyColumn) is \(keyText!.utf8.count) bytes long; at most \(Quarantine.maximumKeyBytes) fit a "
                            + "stream id (the raw row holds the whole key)", row)
                    : quarantineRecord(ownKey, "key_missing", "\(entity.keyColumn) (the key) is NULL or empty", row)
                try commit(result)
                return
            }
            if var previous = held, previous.key.utf8.elementsEqual(legacyKey.utf8) {
                // A second legacy row with the same key: neither can be migrated.
                previous.rows.append(row)
                previous.events = []
                previous.eventTypes = []
                previous.resynced = false
                previous.quarantine = quarantineRecord(
                    legacyKey, "duplicate_key",
                    "\(previous.rows.count) rows of the mapping query share \(entity.keyColumn) \(legacyKey); raw holds them all",
                    row)
                held = previous
                return
            }
            if let previous = held { try commit(previous) }
            held = process(row, rowKey: legacyKey)
        }
        if let previous = held { try commit(previous) }
        // Keys an earlier attempt migrated whose rows are gone from legacy now: their streams
        // stay (the event log is append-only) and the quarantine lists them for the operator.
        // A stream that already ends in its deletion (an orphan history below, migrated by the
        // earlier attempt) is done.
        for (vanished, stream) in existing where !seenStreams.contains(vanished) && stream.row != nil {
            quarantined.append(
                QuarantineRecord(
                    entity: entity, key: vanished.text, reason: "row_vanished",
                    detail: "an interrupted attempt migrated \(entity.rawValue) \(vanished.text); the legacy row was deleted "
                        + "before the run resumed, so its stream holds a row legacy no longer has",
                    raw: "{}"))
        }
        // Past versions of keys the current query no longer returns (a hard-deleted draft): the
        // history is migrated as it is, ending in `…Deleted`. Only a history that cannot be
        // migrated (a version that does not convert, a parent in quarantine, a cross-row
        // rejection) is kept, with the key, in the quarantine.
        for (key, rows) in history.sorted(by: { $0.key.text.utf8.lexicographicallyPrecedes($1.key.text.utf8) }) where !seenStreams.contains(key) {
            if existing[key] != nil { continue }
            switch orphanHistory(key: key, rows: rows, source: source, rejected: rejected, parents: parents) {
            case .success(let synthesized):
                let streamEvents = synthesized.enumerated().map { index, event in
                    StreamEvent(
                        streamID: event.streamID, streamVersion: Int64(index) + 1,
                        event: event.newEvent(origin: "backfill", runID: runID, source: "\(entity.rawValue)/\(key.text)"))
                }
                events += streamEvents
                for event in synthesized { outcome.eventsByType[event.type.rawValue, default: 0] += 1 }
                outcome.events += Int64(streamEvents.count)
            case .failure(let problem):
                quarantined.append(
                    QuarantineRecord(
                        entity: entity, key: key.text, reason: QuarantineReason.historyWithoutCurrentRow.code,
                        detail: "\(rows.count) history row\(rows.count == 1 ? "" : "s") of \(entity.rawValue) \(key.text) but no "
                            + "current row (deleted from legacy?), not migrated: \(problem.reason); raw holds them",
                        raw: "[" + rows.map { Self.rawJSON($0) }.joined(separator: ",") + "]"))
            }
        }
        try flush(final: true)
        return outcome
    }

    /// Why an orphan history stays in the quarantine.
    struct OrphanProblem: Error {
        let reason: String
    }

    /// The events of a key whose history rows remain but whose current row is gone (deleted
    /// from legacy): the transitions through its versions, as for a key with a current row,
    /// then its deletion, inferred at the last version's `valid_to` when the history records one
    /// (the moment it stopped being current), otherwise at its last event.
    func orphanHistory(
        key: ExactKey, rows: [Row], source: EntitySource, rejected: [ExactKey: (String, String)],
        parents: [Entity: Set<ExactKey>]
    ) -> Result<[BillingEvent], OrphanProblem> {
        if let (reason, detail) = rejected[key] { return .failure(OrphanProblem(reason: "\(reason): \(detail)")) }
        var versions = [(row: CanonicalRow, validFrom: PostgresTimestamp?, validTo: PostgresTimestamp?, inferred: Bool)]()
        for row in rows {
            switch source.convert(row) {
            case .canonical(let canonical, let validFrom, let validTo, let inferred):
                versions.append((canonical, validFrom, validTo, inferred))
            case .quarantined(_, let reason, let detail):
                return .failure(OrphanProblem(reason: "history row: \(reason): \(detail)"))
            }
        }
        guard let last = versions.last else { return .failure(OrphanProblem(reason: "no history row")) }
        for link in CrossRowCheck.parents[source.entity] ?? [] {
            if let parentKey = last.row[link.column].textValue, parents[link.parent]?.contains(ExactKey(parentKey)) == true {
                return .failure(OrphanProblem(reason: "parent_quarantined: \(link.parent.rawValue) \(parentKey) is quarantined"))
            }
        }
        var synthesized = [BillingEvent]()
        var previous: CanonicalRow?
        for (step, version) in versions.enumerated() {
            let changedAt = step == 0 ? nil : versions[step - 1].validTo ?? version.validFrom
            var events = Transitions.transitions(
                before: previous, after: version.row, step: step, notBefore: synthesized.last?.occurredAt, changedAt: changedAt)
            if version.inferred { events = events.map { $0.withEvidence(.inferred) } }
            synthesized += events
            previous = version.row
        }
        // The last version's valid_to is when it stopped being current: the change into a version
        // the history does not hold (the deleted current row), or the deletion itself. Either
        // way the row as the ledger knows it ends there; the moment of the deletion is not
        // proven, so it is inferred.
        let end = [synthesized.last?.occurredAt, last.validTo].compactMap { $0 }.max()
        synthesized.append(Transitions.deletion(before: last.row, at: nil, notBefore: end, step: versions.count))
        return .success(synthesized)
    }

    func writeQuarantine(_ records: [QuarantineRecord], runID: String, _ tx: Session) throws {
        try QuarantineStore(schema: configuration.store.schema).write(
            records.map {
                QuarantineStore.Entry(
                    entity: $0.entity, key: $0.key, reason: QuarantineReason($0.reason), detail: $0.detail, raw: $0.raw,
                    runID: runID)
            }, tx)
    }

    func markDone(_ range: KeyRange, entity: Entity, counts: RangeOutcome, runID: String, snapshot: String, _ tx: Session) throws {
        try tx.execute(
            """
            UPDATE \(quoteIdentifier(configuration.store.schema)).backfill_ranges
            SET done = true, rows_read = $4, rows_migrated = $5, rows_quarantined = $6, events = $7, finished_at = now(),
                legacy_snapshot = $8, rows_resynced = $9
            WHERE run_id = $1 AND entity = $2 AND ordinal = $3
            """,
            [
                runID, entity.rawValue, Int32(range.ordinal), counts.rowsRead, counts.rowsMigrated, counts.rowsQuarantined,
                counts.events, snapshot, counts.rowsResynced,
            ])
    }

    /// Removes quarantine entries of keys that migrated now (a row fixed in legacy between attempts).
    func releaseQuarantine(_ entity: Entity, keys: [String], _ tx: Session) throws {
        try QuarantineStore(schema: configuration.store.schema).release(entity, keys: keys, tx)
    }

    /// The legacy row as a JSON object of text values, for the quarantine table.
    static func rawJSON(_ row: Row) -> String {
        JSONValue.object(
            zip(row.columns.columns, row.values).map { column, value in (column.name, value.map(JSONValue.string) ?? .null) }
        ).rendered
    }

    /// The run's counts, read back from its ranges and the quarantine table.
    func report(_ storeConnection: Connection, dryRun: Bool, extra: RangeOutcome?) async throws -> BackfillReport {
        let s = quoteIdentifier(configuration.store.schema)
        let runID = runID
        let rows = try await storeConnection.query(
            """
            SELECT r.entity, sum(r.rows_read)::int8, sum(r.rows_migrated)::int8, sum(r.rows_quarantined)::int8,
                   sum(r.events)::int8, max(e.legacy_rows), sum(r.rows_resynced)::int8
            FROM \(s).backfill_ranges r
            LEFT JOIN \(s).backfill_entities e ON e.run_id = r.run_id AND e.entity = r.entity
            WHERE r.run_id = $1 GROUP BY r.entity
            """, [runID]
        ).rows
        var byEntity = [Entity: BackfillReport.EntityCounts]()
        for row in rows {
            guard let entity = Entity(rawValue: try row.decode(at: 0, as: String.self)) else { continue }
            byEntity[entity] = BackfillReport.EntityCounts(
                entity: entity, rowsRead: try row.decode(at: 1), rowsMigrated: try row.decode(at: 2),
                rowsQuarantined: try row.decode(at: 3), events: 0, legacyRows: try row.decode(at: 5),
                rowsResynced: try row.decode(at: 6))
        }
        let quarantine = QuarantineStore(schema: configuration.store.schema)
        let reasons = try await storeConnection.withSession { try quarantine.rowsByReason(runID: runID, in: $0) }
            .map { (reason: $0.reason.rawValue, count: $0.rows) }
        // Events are counted in the store, not in the ranges: an interrupted attempt commits
        // batches of a range it never marks done, and a resumed one re-reads finished ranges.
        var typeCounts = [String: Int64]()
        for row in try await storeConnection.query(
            """
            SELECT split_part(stream_id, '-', 1), event_type, count(*)::int8 FROM \(s).events
            WHERE metadata->>'run_id' = $1 GROUP BY 1, 2
            """, [runID]
        ).rows {
            let count = try row.decode(at: 2, as: Int64.self)
            typeCounts[try row.decode(at: 1, as: String.self), default: 0] += count
            if let entity = Entity(rawValue: try row.decode(at: 0, as: String.self)) { byEntity[entity]?.events += count }
        }
        let types = typeCounts.keys.sorted().map { (type: $0, count: typeCounts[$0]!) }
        let total = types.reduce(0) { $0 + $1.count }
        return BackfillReport(
            runID: runID,
            entities: Entity.allCases.compactMap { byEntity[$0] },
            quarantineReasons: reasons, eventsAppended: total, eventsAlreadyStored: 0, eventsByType: types, dryRun: dryRun)
    }
}

/// Totals of a dry run, kept in memory since nothing is written.
struct DryRunCounts: Sendable {
    var entities = [Entity: BackfillReport.EntityCounts]()
    var legacyRows = [Entity: Int64]()
    var types = [String: Int64]()
    var reasons = [String: Int64]()

    mutating func merge(_ other: DryRunCounts) {
        for (entity, counts) in other.entities {
            var mine = entities[entity] ?? BackfillReport.EntityCounts(entity: entity)
            mine.rowsRead += counts.rowsRead
            mine.rowsMigrated += counts.rowsMigrated
            mine.rowsQuarantined += counts.rowsQuarantined
            mine.events += counts.events
            mine.rowsResynced += counts.rowsResynced
            entities[entity] = mine
        }
        for (k, v) in other.types { types[k, default: 0] += v }
        for (k, v) in other.reasons { reasons[k, default: 0] += v }
    }

    mutating func add(_ outcome: RangeOutcome) {
        var counts = entities[outcome.entity] ?? BackfillReport.EntityCounts(entity: outcome.entity)
        counts.rowsRead += outcome.rowsRead
        counts.rowsMigrated += outcome.rowsMigrated
        counts.rowsQuarantined += outcome.rowsQuarantined
        counts.events += outcome.events
        counts.rowsResynced += outcome.rowsResynced
        entities[outcome.entity] = counts
        for (k, v) in outcome.eventsByType { types[k, default: 0] += v }
        for (k, v) in outcome.reasons { reasons[k, default: 0] += v }
    }

    func report(runID: String) -> BackfillReport {
        BackfillReport(
            runID: runID,
            entities: Entity.allCases.compactMap { entity in
                entities[entity].map { counts in
                    var counts = counts
                    counts.legacyRows = legacyRows[entity]
                    return counts
                }
            },
            quarantineReasons: reasons.keys.sorted().map { ($0, reasons[$0]!) },
            eventsAppended: 0, eventsAlreadyStored: 0, eventsByType: types.keys.sorted().map { ($0, types[$0]!) }, dryRun: true)
    }
}
