import Postgres

/// Counts that describe a store.
public struct StoreStats: Sendable, Hashable {
    public struct Count: Sendable, Hashable {
        public var name: String
        public var events: Int64
        public var streams: Int64
    }

    public var totalEvents: Int64
    public var totalStreams: Int64
    /// Per event type, by name.
    public var byType: [Count]
    /// Per stream category, by name.
    public var byCategory: [Count]
    /// The global position of the newest event (0 when empty).
    public var headPosition: Int64
}

extension EventStore {
    /// Counts events per type and per category.
    public func stats(in session: Session) throws -> StoreStats {
        let types = try session.query(
            """
            SELECT event_type, count(*) AS events, count(DISTINCT stream_id) AS streams
            FROM \(s).events GROUP BY event_type ORDER BY event_type
            """
        ).rows.map { StoreStats.Count(name: try $0.decode(at: 0), events: try $0.decode(at: 1), streams: try $0.decode(at: 2)) }
        let categories = try session.query(
            """
            SELECT st.category, coalesce(sum(st.version), 0)::int8 AS events, count(*) AS streams
            FROM \(s).streams st GROUP BY st.category ORDER BY st.category
            """
        ).rows.map { StoreStats.Count(name: try $0.decode(at: 0), events: try $0.decode(at: 1), streams: try $0.decode(at: 2)) }
        let head = try session.query("SELECT coalesce(max(global_position), 0) AS h FROM \(s).events").rows[0]
            .decode(at: 0, as: Int64.self)
        return StoreStats(
            totalEvents: types.reduce(0) { $0 + $1.events }, totalStreams: categories.reduce(0) { $0 + $1.streams },
            byType: types, byCategory: categories, headPosition: head)
    }
}
