import Postgres

/// A stored state of a stream at a version.
public struct StoredSnapshot: Sendable, Hashable {
    public var streamID: String
    public var streamVersion: Int64
    public var snapshotType: String
    public var schemaVersion: Int32
    public var state: PostgresJSON
}

extension EventStore {
    /// Saves the state of `streamID` as of `version` (replacing a snapshot of the same type
    /// at the same version).
    public func saveSnapshot(
        _ streamID: String, version: Int64, type: String, schemaVersion: Int32 = 1, state: PostgresJSON,
        in session: Session
    ) throws {
        try session.execute(
            """
            INSERT INTO \(s).snapshots (stream_id, stream_version, snapshot_type, schema_version, state)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (stream_id, snapshot_type, stream_version)
            DO UPDATE SET schema_version = EXCLUDED.schema_version, state = EXCLUDED.state, created_at = now()
            """, [streamID, version, type, schemaVersion, state])
    }

    /// The latest snapshot of a type, at or below `atOrBefore` when given.
    public func latestSnapshot(
        _ streamID: String, type: String, atOrBefore: Int64? = nil, in session: Session
    ) throws -> StoredSnapshot? {
        let row = try session.query(
            """
            SELECT stream_version, schema_version, state FROM \(s).snapshots
            WHERE stream_id = $1 AND snapshot_type = $2 AND stream_version <= $3
            ORDER BY stream_version DESC LIMIT 1
            """, [streamID, type, atOrBefore ?? Int64.max]
        ).first
        guard let row else { return nil }
        return StoredSnapshot(
            streamID: streamID, streamVersion: try row.decode(at: 0), snapshotType: type,
            schemaVersion: try row.decode(at: 1), state: try row.decode(at: 2))
    }

    /// Loads a stream's state: the latest snapshot (if any, and if `restore` accepts it) plus
    /// the events after it, folded with `apply`.
    ///
    /// - Parameters:
    ///   - restore: turns a snapshot into state; return `nil` to ignore a snapshot (e.g. an
    ///     older schema version) and replay from the start.
    /// - Returns: the state and the stream version it reflects.
    public func loadState<State>(
        _ streamID: String, snapshotType: String, initial: State,
        restore: (StoredSnapshot) throws -> State?, apply: (State, RecordedEvent) throws -> State, in session: Session
    ) throws -> (state: State, version: Int64) {
        var state = initial
        var version: Int64 = 0
        if let snapshot = try latestSnapshot(streamID, type: snapshotType, in: session),
            let restored = try restore(snapshot)
        {
            state = restored
            version = snapshot.streamVersion
        }
        for event in try readStream(streamID, from: version + 1, in: session) {
            state = try apply(state, event)
            version = event.streamVersion
        }
        return (state, version)
    }
}
