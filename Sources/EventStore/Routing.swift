import Postgres

/// Where reads or writes go while a cutover moves them.
public enum RouteTarget: String, Sendable, Hashable, Codable, CustomStringConvertible {
    /// The legacy application's database.
    case legacy
    /// The ledger (`ledgerlift serve`).
    case ledger
    /// Nowhere for now: writes are frozen while a rollback moves them back (serve refuses
    /// them with "writes have moved back"; the legacy database still refuses them until the
    /// rollback removes its write guard).
    case frozen

    public var description: String { rawValue }
}

/// Who is authoritative for reads and for writes, as the cutover last set it.
///
/// Applications consult it (one query, or `GET /routing` on serve) to know where to send a
/// write; `serve` reads it inside every command's transaction, so a command never appends
/// while writes belong to legacy.
public struct Routing: Sendable, Hashable, Codable {
    /// The cutover that set it (`cutover init --name`).
    public var cutover: String
    public var reads: RouteTarget
    public var writes: RouteTarget
    /// Increases by one with every change: a reader can tell two states apart.
    public var version: Int64
    public var changedAt: PostgresTimestamp

    public init(cutover: String, reads: RouteTarget, writes: RouteTarget, version: Int64, changedAt: PostgresTimestamp) {
        self.cutover = cutover
        self.reads = reads
        self.writes = writes
        self.version = version
        self.changedAt = changedAt
    }
}

/// The store's routing row (table `routing`, schema version 5).
///
/// No row means no cutover routes this store: `serve` then takes writes as a ledger of its own.
public struct RoutingTable: Sendable {
    public let store: EventStore

    public init(store: EventStore = EventStore()) {
        self.store = store
    }

    /// The lock an application holds SHARED on the store for the whole of an operation that
    /// spans several commands (`pg_advisory_lock_shared`), and the rollback's freeze takes
    /// exclusively before it freezes writes: an operation the ledger began is finished there,
    /// never cut in two by writes moving back to legacy.
    public var operationLock: AdvisoryLock { AdvisoryLock("ledgerlift.writes/" + store.schema) }

    /// The routing, or `nil` when no cutover has set one (or the store predates schema 5).
    public func read(in session: Session) throws -> Routing? {
        try read(lock: "", in: session)
    }

    /// The lock every writer's transaction holds SHARED while it reads the routing and acts on
    /// it (``readForWrite(in:)``), and ``set(cutover:reads:writes:in:)`` takes EXCLUSIVE: a
    /// change of routing waits until every command that read it has committed, and every
    /// command after the change sees it. That is what makes the write switch and the rollback's
    /// freeze exact.
    ///
    /// An advisory lock rather than the row's `FOR SHARE` alone: the lock manager queues a new
    /// shared request behind a waiting exclusive one, while a row's share lockers keep joining
    /// ahead of a waiting `UPDATE`. Under a storm of refused commands (an application retrying
    /// `writes_on_legacy` during the switch) the row lock left the routing update waiting for
    /// a second at 200 operations/s; the advisory lock bounds its wait by the commands already
    /// in flight.
    public var routingLock: AdvisoryLock { AdvisoryLock("ledgerlift.routing/" + store.schema) }

    /// Takes ``routingLock`` shared for the rest of the writer's transaction. A writer takes it
    /// **first**, before any other lock (a customer's, a stream's): a routing change waiting for
    /// it makes later shared requests queue, so a writer holding another lock while asking for
    /// this one could close a cycle with a writer that holds this one and asks for the other.
    public func shareRoutingLock(in session: Session) throws {
        try session.execute("SELECT pg_advisory_xact_lock_shared(\(AdvisoryLock.keySQL()))", [routingLock.name])
    }

    /// The routing, read inside a writer's transaction under ``routingLock`` (shared: taken here
    /// unless `lockShared` says ``shareRoutingLock(in:)`` was called first) and with `FOR SHARE`
    /// (which also holds off an `UPDATE` made by hand in psql).
    public func readForWrite(in session: Session, lockShared: Bool = false) throws -> Routing? {
        if !lockShared { try shareRoutingLock(in: session) }
        return try read(lock: " FOR SHARE", in: session)
    }

    /// Sets both routes (creating the row), bumping the version; returns the new routing.
    /// Call it in a transaction: it waits (bounded by `lock_timeout`) for ``routingLock``, held
    /// until the transaction ends.
    @discardableResult
    public func set(cutover: String, reads: RouteTarget, writes: RouteTarget, in session: Session) throws -> Routing {
        precondition(reads != .frozen, "reads are never frozen")
        try session.lock(routingLock, scope: .transaction)
        let row = try session.query(
            """
            INSERT INTO \(store.s).routing AS r (cutover, reads, writes, version) VALUES ($1, $2, $3, 1)
            ON CONFLICT (singleton) DO UPDATE
                SET cutover = EXCLUDED.cutover, reads = EXCLUDED.reads, writes = EXCLUDED.writes,
                    version = r.version + 1, changed_at = clock_timestamp()
            RETURNING cutover, reads, writes, version, changed_at
            """, [cutover, reads.rawValue, writes.rawValue]
        ).rows[0]
        return try Self.decode(row)
    }

    /// Removes the row (a cutover aborted before its read switch leaves nothing routed).
    public func clear(in session: Session) throws {
        guard try exists(in: session) else { return }
        try session.execute("DELETE FROM \(store.s).routing")
    }

    private func exists(in session: Session) throws -> Bool {
        try session.query("SELECT to_regclass($1) IS NOT NULL", ["\(store.s).routing"]).rows[0].decode(at: 0)
    }

    private func read(lock: String, in session: Session) throws -> Routing? {
        guard try exists(in: session) else { return nil }
        return try session.query(
            "SELECT cutover, reads, writes, version, changed_at FROM \(store.s).routing\(lock)"
        ).first.map(Self.decode)
    }

    private static func decode(_ row: Row) throws -> Routing {
        func target(_ index: Int) throws -> RouteTarget {
            let raw: String = try row.decode(at: index)
            guard let target = RouteTarget(rawValue: raw) else {
                throw PostgresError(code: .protocolViolation, message: "routing holds an unknown target \"\(raw)\"")
            }
            return target
        }
        return Routing(
            cutover: try row.decode(at: 0), reads: try target(1), writes: try target(2), version: try row.decode(at: 3),
            changedAt: try row.decode(at: 4))
    }
}
