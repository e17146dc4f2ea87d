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
    func processRange(
        _ range: KeyRange, source: EntitySource, snapshotID: String, rejected: [String: (String, String)],
        parents: [Entity: Set<String>], legacy: Connection, store: Connection?
    ) async throws -> RangeOutcome {
        let runID = runID
        return try await legacy.withSession { session in
            try session.transaction(.init(isolation: .repeatableRead, readOnly: true, snapshot: snapshotID)) { tx in
                try self.readRange(range, source: source, tx, rejected: rejected, parents: parents, runID: runID, storeConnection: store)
            }
        }
    }

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
        return (clauses.isEmpty ? "TRUE" : clauses.joined(separator: " AND "), parameters)
    }

    private func readRange(
        _ range: KeyRange, source: EntitySource, _ tx: Session, rejected: [String: (String, String)],
        parents: [Entity: Set<String>], runID: String, storeConnection: Connection?
    ) throws -> RangeOutcome {
        let config = configuration
        let entity = source.entity
        let key = "q." + quoteIdentifier(entity.keyColumn)
        let (filter, parameters) = rangeFilter(range, key: key, firstParameter: 1)
        var outcome = RangeOutcome(entity: entity)

        // Past versions of the range's keys (bounded by the range), by key, oldest first.
        var history = [String: [Row]]()
        if let historyQuery = source.historyQuery {
            try tx.stream(
                "SELECT * FROM (\(historyQuery)) q WHERE \(filter) ORDER BY \(key)::text COLLATE \"C\", q.valid_from",
                parameters
            ) { row in history[row[entity.keyColumn] ?? "", default: []].append(row) }
        }

        var events = [StreamEvent]()
        var quarantined = [QuarantineRecord]()
        func flush(final: Bool) throws {
            guard let storeConnection else {
                events.removeAll(keepingCapacity: true)
                quarantined.removeAll()
                return
            }
            let batch = events
            let records = quarantined
            let counts = outcome
            try storeConnection.withSessionBlocking { store in
                try config.store.appendBulk(batch, in: store) { tx in
                    try self.writeQuarantine(records, runID: runID, tx)
                    if final { try self.markDone(range, entity: entity, counts: counts, runID: runID, tx) }
                }
            }
            events.removeAll(keepingCapacity: true)
            quarantined.removeAll()
        }

        try tx.stream("SELECT * FROM (\(source.query)) q WHERE \(filter) ORDER BY \(key)::text COLLATE \"C\"", parameters) { row in
            outcome.rowsRead += 1
            let rowKey = row[entity.keyColumn] ?? "<null>"
            func reject(_ reason: String, _ detail: String) {
                outcome.rowsQuarantined += 1
                outcome.reasons[reason, default: 0] += 1
                quarantined.append(QuarantineRecord(entity: entity, key: rowKey, reason: reason, detail: detail, raw: Self.rawJSON(row)))
            }
            if let (reason, detail) = rejected[rowKey] {
                reject(reason, detail)
                return
            }
            var versions = [(row: CanonicalRow, validFrom: PostgresTimestamp?, validTo: PostgresTimestamp?, inferred: Bool)]()
            for versionRow in history[rowKey] ?? [] {
                switch source.convert(versionRow) {
                case .canonical(let canonical, let validFrom, let validTo, let inferred):
                    versions.append((canonical, validFrom, validTo, inferred))
                case .quarantined(_, let reason, let detail):
                    reject(reason, "history row: " + detail)
                    return
                }
            }
            switch source.convert(row) {
            case .canonical(let canonical, let validFrom, let validTo, let inferred):
                versions.append((canonical, validFrom, validTo, inferred))
            case .quarantined(_, let reason, let detail):
                reject(reason, detail)
                return
            }
            let current = versions.last!.row
            for link in CrossRowCheck.parents[entity] ?? [] {
                if let parentKey = current[link.column].textValue, parents[link.parent]?.contains(parentKey) == true {
                    reject("parent_quarantined", "\(link.parent.rawValue) \(parentKey) is quarantined")
                    return
                }
            }
            var previous: CanonicalRow?
            var synthesized = [BillingEvent]()
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
            for (index, event) in synthesized.enumerated() {
                events.append(
                    StreamEvent(
                        streamID: event.streamID, streamVersion: Int64(index + 1),
                        event: event.newEvent(origin: "backfill", runID: runID, source: "\(entity.rawValue)/\(rowKey)")))
                outcome.eventsByType[event.type.rawValue, default: 0] += 1
            }
            outcome.events += Int64(synthesized.count)
            outcome.rowsMigrated += 1
            if events.count >= config.batchEvents { try flush(final: false) }
        }
        try flush(final: true)
        return outcome
    }

    func writeQuarantine(_ records: [QuarantineRecord], runID: String, _ tx: Session) throws {
        guard !records.isEmpty else { return }
        try tx.execute(
            """
            INSERT INTO \(quoteIdentifier(configuration.store.schema)).quarantine (entity, entity_key, reason, detail, raw, run_id)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[])
            ON CONFLICT (entity, entity_key) DO UPDATE
                SET reason = EXCLUDED.reason, detail = EXCLUDED.detail, raw = EXCLUDED.raw, run_id = EXCLUDED.run_id
            """,
            [
                PostgresArray(records.map(\.entity.rawValue)), PostgresArray(records.map(\.key)),
                PostgresArray(records.map(\.reason)), PostgresArray(records.map(\.detail)),
                PostgresArray(records.map { PostgresJSON($0.raw) }), PostgresArray(records.map { _ in runID }),
            ])
    }

    func markDone(_ range: KeyRange, entity: Entity, counts: RangeOutcome, runID: String, _ tx: Session) throws {
        try tx.execute(
            """
            UPDATE \(quoteIdentifier(configuration.store.schema)).backfill_ranges
            SET done = true, rows_read = $4, rows_migrated = $5, rows_quarantined = $6, events = $7, finished_at = now()
            WHERE run_id = $1 AND entity = $2 AND ordinal = $3
            """,
            [runID, entity.rawValue, Int32(range.ordinal), counts.rowsRead, counts.rowsMigrated, counts.rowsQuarantined, counts.events])
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
            SELECT entity, sum(rows_read)::int8, sum(rows_migrated)::int8, sum(rows_quarantined)::int8, sum(events)::int8
            FROM \(s).backfill_ranges WHERE run_id = $1 GROUP BY entity
            """, [runID]
        ).rows
        var byEntity = [Entity: BackfillReport.EntityCounts]()
        for row in rows {
            guard let entity = Entity(rawValue: try row.decode(at: 0, as: String.self)) else { continue }
            byEntity[entity] = BackfillReport.EntityCounts(
                entity: entity, rowsRead: try row.decode(at: 1), rowsMigrated: try row.decode(at: 2),
                rowsQuarantined: try row.decode(at: 3), events: try row.decode(at: 4))
        }
        let reasons = try await storeConnection.query(
            "SELECT reason, count(*)::int8 FROM \(s).quarantine WHERE run_id = $1 GROUP BY reason ORDER BY reason", [runID]
        ).rows.map { (reason: try $0.decode(at: 0, as: String.self), count: try $0.decode(at: 1, as: Int64.self)) }
        let types = try await storeConnection.query(
            """
            SELECT event_type, count(*)::int8 FROM \(s).events WHERE metadata->>'run_id' = $1 GROUP BY 1 ORDER BY 1
            """, [runID]
        ).rows.map { (type: try $0.decode(at: 0, as: String.self), count: try $0.decode(at: 1, as: Int64.self)) }
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
    var types = [String: Int64]()
    var reasons = [String: Int64]()

    mutating func merge(_ other: DryRunCounts) {
        for (entity, counts) in other.entities {
            var mine = entities[entity] ?? BackfillReport.EntityCounts(entity: entity)
            mine.rowsRead += counts.rowsRead
            mine.rowsMigrated += counts.rowsMigrated
            mine.rowsQuarantined += counts.rowsQuarantined
            mine.events += counts.events
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
        entities[outcome.entity] = counts
        for (k, v) in outcome.eventsByType { types[k, default: 0] += v }
        for (k, v) in outcome.reasons { reasons[k, default: 0] += v }
    }

    func report(runID: String) -> BackfillReport {
        BackfillReport(
            runID: runID, entities: Entity.allCases.compactMap { entities[$0] },
            quarantineReasons: reasons.keys.sorted().map { ($0, reasons[$0]!) },
            eventsAppended: 0, eventsAlreadyStored: 0, eventsByType: types.keys.sorted().map { ($0, types[$0]!) }, dryRun: true)
    }
}
