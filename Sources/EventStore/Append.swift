import Foundation
import Postgres

extension EventStore {
    /// Appends `events` to one stream, checking the writer's expected version under the
    /// stream's row lock.
    ///
    /// Idempotent by event id: events already stored with the same id and the same content
    /// (stream, type, schema version, business time, payload) are skipped and counted as
    /// duplicates — so a retry after a lost commit acknowledgement is a no-op, whatever the
    /// stream's version is by then. Runs in its own transaction unless `session` has one open.
    ///
    /// - Throws: ``EventStoreError/wrongExpectedVersion(stream:expected:actual:)`` when another
    ///   writer moved the stream; ``EventStoreError/idempotencyConflict(eventID:stream:reason:)``
    ///   when an id is stored with different content.
    @discardableResult
    public func append(
        _ events: [NewEvent], to streamID: String, expectedVersion: ExpectedVersion = .any, in session: Session
    ) throws -> AppendResult {
        guard Set(events.map(\.eventID)).count == events.count else {
            throw EventStoreError.invalidBatch(reason: "two events of the batch share an event id")
        }
        return try inTransaction(session) { tx in
            try lockStreams([streamID], tx)
            try tx.execute(
                "INSERT INTO \(s).streams (stream_id, category, version) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
                [streamID, String(Self.category(of: streamID))])
            let current = try tx.query("SELECT version FROM \(s).streams WHERE stream_id = $1 FOR UPDATE", [streamID])
                .rows[0].decode(at: 0, as: Int64.self)

            let stored = try storedDuplicates(of: events.map { StreamEvent(streamID: streamID, streamVersion: 0, event: $0) }, tx)
            let fresh = events.filter { !stored.contains($0.eventID) }
            if fresh.isEmpty {
                return AppendResult(appended: 0, duplicates: events.count, streamVersion: current)
            }
            guard expectedVersion.admits(current) else {
                throw EventStoreError.wrongExpectedVersion(stream: streamID, expected: expectedVersion, actual: current)
            }
            let placed = fresh.enumerated().map {
                StreamEvent(streamID: streamID, streamVersion: current + 1 + Int64($0.offset), event: $0.element)
            }
            try insertRows(placed, tx)
            let version = current + Int64(fresh.count)
            try tx.execute(
                "UPDATE \(s).streams SET version = $2, updated_at = now() WHERE stream_id = $1", [streamID, version])
            return AppendResult(appended: fresh.count, duplicates: events.count - fresh.count, streamVersion: version)
        }
    }

    /// Serializes writers of the given streams with transaction-scope advisory locks, taken
    /// in a stable order (no deadlocks).
    ///
    /// Why not the stream's row lock alone: locking a row gives the transaction its id
    /// *before* it waits, so a writer that queued behind another could carry the smaller
    /// transaction id, and the global order — by transaction id first — would list its events
    /// before the earlier writer's, out of stream version order. Advisory locks take no
    /// transaction id; the id is assigned by the first write, after the lock is held, so a
    /// stream's later writer always has the larger id.
    ///
    /// - Important: take it before anything else in the transaction writes.
    func lockStreams(_ streamIDs: [String], _ tx: Session) throws {
        try tx.execute(
            """
            SELECT count(pg_advisory_xact_lock(k)) FROM (
                SELECT DISTINCT hashtextextended($1 || id, 0) AS k FROM unnest($2::text[]) AS id ORDER BY k
            ) AS keys
            """, [schema + ".", PostgresArray(streamIDs)])
    }

    /// The ids of `events` that are already stored with the same content.
    ///
    /// - Throws: ``EventStoreError/idempotencyConflict(eventID:stream:reason:)`` for an id stored
    ///   with different content. A `streamVersion` of 0 means "any position" (single-stream
    ///   appends place events at the stream's end, so only the stream is compared).
    func storedDuplicates(of events: [StreamEvent], _ session: Session) throws -> Set<UUID> {
        let rows = try session.query(
            """
            SELECT i.event_id, e.stream_id, e.stream_version,
                   e.stream_id = i.stream_id AS same_stream,
                   (i.stream_version = 0 OR e.stream_version = i.stream_version) AS same_version,
                   e.event_type = i.event_type AND e.schema_version = i.schema_version AS same_type,
                   e.occurred_at = i.occurred_at AS same_time,
                   e.payload = i.payload AS same_payload
            FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::int4[], $6::timestamptz[], $7::jsonb[])
                 AS i(event_id, stream_id, stream_version, event_type, schema_version, occurred_at, payload)
            JOIN \(s).events e ON e.event_id = i.event_id
            """,
            [
                PostgresArray(events.map(\.event.eventID)), PostgresArray(events.map(\.streamID)),
                PostgresArray(events.map(\.streamVersion)), PostgresArray(events.map(\.event.eventType)),
                PostgresArray(events.map(\.event.schemaVersion)), PostgresArray(events.map(\.event.occurredAt)),
                PostgresArray(events.map(\.event.payload)),
            ])
        var ids = Set<UUID>()
        for row in rows.rows {
            let id = try row.decode("event_id", as: UUID.self)
            let checks = ["same_stream": "stream", "same_version": "stream version", "same_type": "type",
                "same_time": "occurred_at", "same_payload": "payload"]
            let differing = try checks.keys.sorted().filter { try !row.decode($0, as: Bool.self) }.map { checks[$0]! }
            guard differing.isEmpty else {
                throw EventStoreError.idempotencyConflict(
                    eventID: id, stream: try row.decode("stream_id", as: String.self),
                    reason: differing.joined(separator: ", ") + " differ")
            }
            ids.insert(id)
        }
        return ids
    }

    /// Inserts placed events in one statement.
    func insertRows(_ events: [StreamEvent], _ session: Session) throws {
        try session.execute(
            """
            INSERT INTO \(s).events
                (event_id, stream_id, stream_version, event_type, schema_version, occurred_at, payload, metadata)
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::int4[], $6::timestamptz[],
                                 $7::jsonb[], $8::jsonb[])
            """,
            [
                PostgresArray(events.map(\.event.eventID)), PostgresArray(events.map(\.streamID)),
                PostgresArray(events.map(\.streamVersion)), PostgresArray(events.map(\.event.eventType)),
                PostgresArray(events.map(\.event.schemaVersion)), PostgresArray(events.map(\.event.occurredAt)),
                PostgresArray(events.map(\.event.payload)), PostgresArray(events.map(\.event.metadata)),
            ])
    }
}
