import EventStore
import Postgres
import Synchronization

/// Where the store's routing sends writes now, as the simulated application reads it before
/// each operation (``Simulation/Configuration/routing``): the store's `routing` row through
/// ``RoutingTable``, on a connection of its own, read at most once per ``maxAge`` whatever
/// the number of simulator connections.
///
/// The cache only chooses where an operation goes FIRST: the hard signals are the refusals —
/// the legacy write guard (LL001) and serve's `writes_on_legacy` — which send an operation to
/// the other application at once, and make the next call read the row again
/// (``invalidate()``). A row that cannot be read (the store down) keeps the last one read,
/// or none.
public final class WriteRouting: Sendable {
    public let storeDSN: String
    public let table: RoutingTable
    /// The longest a routing read is used.
    public let maxAge: Duration

    private struct State: Sendable {
        var routing: Routing?
        var readAt: ContinuousClock.Instant?
        var connection: Connection?
        var refreshing = false
    }

    private let state = Mutex(State())
    private let clock = ContinuousClock()

    public init(storeDSN: String, store: EventStore = EventStore(), maxAge: Duration = .milliseconds(250)) {
        self.storeDSN = storeDSN
        table = RoutingTable(store: store)
        self.maxAge = maxAge
    }

    /// The routing's write target, `nil` when no cutover routes the store (no row, or none
    /// read yet because the store cannot be reached).
    public func writes() async -> RouteTarget? { await current()?.writes }

    /// The routing as last read, read again when older than ``maxAge``.
    public func current() async -> Routing? {
        let now = clock.now
        enum Step {
            case cached(Routing?)
            case refresh(Connection?)
        }
        let step: Step = state.withLock { state in
            if let readAt = state.readAt, now - readAt < maxAge { return .cached(state.routing) }
            // One refresh at a time: the others use what was read last (when anything was).
            if state.refreshing, state.readAt != nil { return .cached(state.routing) }
            state.refreshing = true
            return .refresh(state.connection)
        }
        switch step {
        case .cached(let routing): return routing
        case .refresh(let open):
            let table = self.table
            var connection = open
            do {
                if connection == nil {
                    connection = try await Connection.connect(storeDSN, applicationName: "ledgerlift-simulate-routing")
                }
                let routing = try await connection!.withSession { session in try table.read(in: session) }
                let readAt = clock.now
                return state.withLock { state in
                    state.connection = connection
                    state.routing = routing
                    state.readAt = readAt
                    state.refreshing = false
                    return routing
                }
            } catch {
                connection?.close()
                return state.withLock { state in
                    state.connection = nil
                    state.refreshing = false
                    return state.routing
                }
            }
        }
    }

    /// Forgets the routing read: the next call reads it again (after a refusal said it changed).
    public func invalidate() {
        state.withLock { $0.readAt = nil }
    }

    /// Closes the connection.
    public func close() {
        state.withLock { state in
            state.connection?.close()
            state.connection = nil
        }
    }
}
