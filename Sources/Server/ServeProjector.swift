import Billing
import EventStore
import Logging
import Postgres
import ServiceLifecycle

/// How far the read models are behind the event store.
public struct ProjectorLag: Sendable, Hashable {
    /// Events in the store the read models have not taken in (counted up to ``countLimit``).
    public var events: Int64
    /// Age of the oldest of them (by `recorded_at`); 0 when none.
    public var seconds: Double
    /// The read models' checkpoint (global position); `nil` when they are not built.
    public var checkpoint: Int64?
    /// Whether the read models are built and live.
    public var readModelsLive: Bool

    /// The most unprojected events counted: a bound on what `/health` costs when far behind.
    public static let countLimit: Int64 = 1_000_000

    /// Reads the lag of the read models of `readSchema` fed by `store`.
    public static func read(store: EventStore, readSchema: String, in session: Session) throws -> ProjectorLag {
        let projector = Projector(store: store, readSchema: readSchema)
        guard let state = try projector.state(in: session), state.isLive else {
            return ProjectorLag(events: 0, seconds: 0, checkpoint: nil, readModelsLive: false)
        }
        let cursor = try store.checkpoint(state.consumer, in: session)
        let s = quoteIdentifier(store.schema)
        let row = try session.query(
            """
            SELECT (SELECT count(*) FROM (SELECT 1 FROM \(s).events
                     WHERE (transaction_id, global_position) > ($1::text::xid8, $2::int8) LIMIT $3) AS behind)::int8,
                   coalesce(extract(epoch FROM now() - (SELECT min(recorded_at) FROM (
                       SELECT recorded_at FROM \(s).events WHERE (transaction_id, global_position) > ($1::text::xid8, $2::int8)
                       ORDER BY transaction_id, global_position LIMIT 1) AS first)), 0)::float8::text
            """, [String(cursor.transactionID), cursor.position, countLimit]
        ).rows[0]
        return ProjectorLag(
            events: try row.decode(at: 0), seconds: Double(try row.decode(at: 1, as: String.self)) ?? 0,
            checkpoint: cursor.position, readModelsLive: true)
    }
}

/// The serve projector: keeps the read models following the event store inside `serve`, so a
/// read after a command sees it (the command waits, bounded, for the projection of its own
/// events before answering).
///
/// It catches up (building the read models blue/green when they have never been built) and
/// then follows the store (LISTEN/NOTIFY) until graceful shutdown. When another process
/// projects with the same consumer (`ledgerlift project --follow`), this one stands by and
/// retries every ``retryInterval``: that process keeps the read models current.
public struct ServeProjector: Service {
    public let dsn: String
    public let store: EventStore
    public let readSchema: String
    public var retryInterval: Duration = .seconds(2)
    public var logger: Logger

    public init(dsn: String, store: EventStore, readSchema: String, logger: Logger) {
        self.dsn = dsn
        self.store = store
        self.readSchema = readSchema
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await follow()
                } catch is CancellationError {
                    return
                } catch let error as PostgresError where error.code == .cancelled {
                    return
                } catch ProjectionError.consumerBusy(let consumer) {
                    logger.debug("another process projects \(consumer); standing by")
                } catch {
                    if Task.isCancelled { return }
                    logger.warning("serve projector: \(error); retrying")
                }
                try? await Task.sleep(for: retryInterval)
            }
        }
    }

    private func follow() async throws {
        let connection = try await Connection.connect(dsn, applicationName: "ledgerlift-serve-projector")
        defer { connection.close() }
        let reader = try await Connection.connect(dsn, applicationName: "ledgerlift-serve-projector")
        defer { reader.close() }
        let listener = try await Connection.connect(dsn, applicationName: "ledgerlift-serve-projector")
        defer { listener.close() }
        var projector = Projector(store: store, readSchema: readSchema)
        projector.logger = logger
        _ = try await projector.catchUp(on: connection, reader: reader)
        try await projector.follow(on: connection, listener: listener, reader: reader)
    }
}
