import Postgres

/// Which prefix of a stream to read, by business time or by system time.
public enum AsOf: Sendable, Hashable {
    /// Events whose business time `occurred_at` is at or before the instant.
    case occurredAt(PostgresTimestamp)
    /// Events the store had recorded at or before the instant ("what did we know then").
    case recordedAt(PostgresTimestamp)
}

extension EventStore {
    /// Reads one stream forward from `version` (1 = the start), optionally only the events
    /// known or effective as of an instant.
    public func readStream(
        _ streamID: String, from version: Int64 = 1, asOf: AsOf? = nil, limit: Int? = nil, in session: Session
    ) throws -> [RecordedEvent] {
        var sql = "SELECT \(RecordedEvent.columns) FROM \(s).events WHERE stream_id = $1 AND stream_version >= $2"
        var parameters: [(any PostgresEncodable)?] = [streamID, version]
        switch asOf {
        case .occurredAt(let t):
            sql += " AND occurred_at <= $3"
            parameters.append(t)
        case .recordedAt(let t):
            sql += " AND recorded_at <= $3"
            parameters.append(t)
        case nil: break
        }
        sql += " ORDER BY stream_version"
        if let limit {
            parameters.append(Int64(max(0, limit)))
            sql += " LIMIT $\(parameters.count)"
        }
        return try session.query(sql, parameters).rows.map(RecordedEvent.init(row:))
    }

    /// Reads the global order after `cursor`: at most `limit` events, ordered by
    /// `(transaction id, global position)`.
    ///
    /// Only events written by transactions older than the oldest transaction still running
    /// are returned (`transaction_id < pg_snapshot_xmin(pg_current_snapshot())`). An event
    /// that takes a lower position but commits late is therefore never skipped: nothing is
    /// read past it until its transaction has finished.
    /// - Parameter category: only streams of this category (`invoice` for `invoice-*`).
    public func readAll(
        after cursor: GlobalCursor, limit: Int, category: String? = nil, in session: Session
    ) throws -> [RecordedEvent] {
        var sql = """
            SELECT \(RecordedEvent.columns) FROM \(s).events
            WHERE (transaction_id, global_position) > ($1::xid8, $2::int8)
              AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
            """
        var parameters: [(any PostgresEncodable)?] = [String(cursor.transactionID), cursor.position]
        if let category {
            // The stream id column sorts bytewise (COLLATE "C"), and '.' follows '-'.
            sql += " AND stream_id >= $3 AND stream_id < $4"
            parameters += [category + "-", category + "."]
        }
        parameters.append(Int64(max(0, limit)))
        sql += " ORDER BY transaction_id, global_position LIMIT $\(parameters.count)"
        return try session.query(sql, parameters).rows.map(RecordedEvent.init(row:))
    }

    /// Whether committed events exist after `cursor` that ``readAll(after:limit:category:in:)``
    /// may not return yet, because an older transaction — in any database of the cluster,
    /// since transaction ids are cluster-wide — is still running.
    ///
    /// A consumer that wants to be "caught up" with everything committed so far waits while
    /// this is true instead of stopping early.
    public func hasEventsBeyond(_ cursor: GlobalCursor, in session: Session) throws -> Bool {
        try session.query(
            """
            SELECT EXISTS (SELECT 1 FROM \(s).events WHERE (transaction_id, global_position) > ($1::xid8, $2::int8))
            """, [String(cursor.transactionID), cursor.position]
        ).rows[0].decode(at: 0, as: Bool.self)
    }

    /// Reads every event of a category in the global order, `limit` at a time from `cursor`.
    public func readCategory(
        _ category: String, after cursor: GlobalCursor = .start, limit: Int, in session: Session
    ) throws -> [RecordedEvent] {
        try readAll(after: cursor, limit: limit, category: category, in: session)
    }

    /// Every event of the streams whose ids start with `prefix` and lie in `(after, through]`
    /// (bytewise; `nil` bounds are open), ordered by stream id and version: the streams of one
    /// key range of an entity, read back in one query.
    public func readStreams(
        prefix: String, after lower: String?, through upper: String?, in session: Session
    ) throws -> [RecordedEvent] {
        // A bytewise range the (stream_id, stream_version) index serves, plus the exact prefix test.
        var sql = "SELECT \(RecordedEvent.columns) FROM \(s).events WHERE starts_with(stream_id, $1) AND stream_id >= $1"
        var parameters: [(any PostgresEncodable)?] = [prefix]
        if let last = prefix.unicodeScalars.last, last.value < 0x7F, let next = Unicode.Scalar(last.value + 1) {
            parameters.append(String(prefix.unicodeScalars.dropLast()) + String(next))
            sql += " AND stream_id < $\(parameters.count)"
        }
        if let lower {
            parameters.append(lower)
            sql += " AND stream_id > $\(parameters.count)"
        }
        if let upper {
            parameters.append(upper)
            sql += " AND stream_id <= $\(parameters.count)"
        }
        sql += " ORDER BY stream_id, stream_version"
        return try session.query(sql, parameters).rows.map(RecordedEvent.init(row:))
    }

    /// A stream's current version (0 when it does not exist).
    public func streamVersion(_ streamID: String, in session: Session) throws -> Int64 {
        try session.query("SELECT version FROM \(s).streams WHERE stream_id = $1", [streamID]).first?
            .decode(at: 0, as: Int64.self) ?? 0
    }
}
