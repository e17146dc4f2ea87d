import EventStore
import Postgres

/// The deliveries the webhook has seen: `<store schema>.stripe_events`, one row per Stripe
/// event id. The table is the store's (schema version 3, granted to the writer role by `store
/// init --grant-to`), never created here: a table created on first use would belong to the
/// role that happened to deliver first and refuse every other.
///
/// The primary key is the dedup: a delivery's row is inserted in the same transaction that
/// appends its events, so of two concurrent deliveries of one event the second waits on the
/// first's key and then finds it (a retried delivery is counted in `deliveries`, nothing else
/// happens). The rows of applied events also order each Stripe object's events: an event older
/// than the last one applied to its object is stale.
public struct StripeWebhookStore: Sendable {
    public let store: EventStore

    public init(store: EventStore = EventStore()) { self.store = store }

    /// `"<schema>"."stripe_events"`.
    public var table: String { quoteIdentifier(store.schema) + "." + quoteIdentifier("stripe_events") }

    /// Deliveries by outcome, and the retried deliveries acknowledged as duplicates.
    public struct Counts: Sendable, Hashable {
        public var applied = 0
        public var stale = 0
        public var ignored = 0
        /// Deliveries of an event already recorded (every delivery after the first).
        public var duplicates = 0
        /// Ignored deliveries by event type.
        public var ignoredTypes: [String: Int] = [:]

        public init() {}
    }

    /// The counts (all zero when no delivery was ever received).
    public func counts(in session: Session) throws -> Counts {
        var counts = Counts()
        let exists = try session.query("SELECT to_regclass($1) IS NOT NULL", [table]).rows[0].decode(at: 0, as: Bool.self)
        guard exists else { return counts }
        for row in try session.query("SELECT outcome, type, count(*)::int8, sum(deliveries - 1)::int8 FROM \(table) GROUP BY outcome, type").rows {
            let outcome = try row.decode(at: 0, as: String.self)
            let n = Int(try row.decode(at: 2, as: Int64.self))
            counts.duplicates += Int(try row.decode(at: 3, as: Int64.self))
            switch outcome {
            case "applied": counts.applied += n
            case "stale": counts.stale += n
            case "ignored":
                counts.ignored += n
                counts.ignoredTypes[try row.decode(at: 1, as: String.self), default: 0] += n
            default: break
            }
        }
        return counts
    }

    /// ``counts(in:)`` on a connection (for `/metrics`).
    public func counts(on connection: Connection) async throws -> Counts {
        try await connection.withSession { try self.counts(in: $0) }
    }

    /// One recorded delivery (for tests and `shadow status`-like reports).
    public struct Delivery: Sendable, Hashable {
        public var eventID: String
        public var type: String
        public var objectID: String?
        public var outcome: String
        public var deliveries: Int
        public var events: Int
        public var streams: [String]
    }

    /// The recorded delivery of `eventID`, if any.
    public func delivery(_ eventID: String, in session: Session) throws -> Delivery? {
        let exists = try session.query("SELECT to_regclass($1) IS NOT NULL", [table]).rows[0].decode(at: 0, as: Bool.self)
        guard exists else { return nil }
        guard
            let row = try session.query(
                "SELECT event_id, type, object_id, outcome, deliveries, events, array_to_string(streams, ' ') FROM \(table) WHERE event_id = $1",
                [eventID]
            ).rows.first
        else { return nil }
        let streams = try row.decode(at: 6, as: String.self)
        return Delivery(
            eventID: try row.decode(at: 0, as: String.self), type: try row.decode(at: 1, as: String.self),
            objectID: try row.decode(at: 2, as: String?.self), outcome: try row.decode(at: 3, as: String.self),
            deliveries: Int(try row.decode(at: 4, as: Int32.self)), events: Int(try row.decode(at: 5, as: Int32.self)),
            streams: streams.isEmpty ? [] : streams.split(separator: " ").map(String.init))
    }
}
