import Postgres

/// A bounded set of store connections shared by the requests `serve` answers.
///
/// `Connection` serializes its work, so one per request in flight: a request borrows one for
/// its whole duration (its idempotency lock is session-level and must stay on one backend),
/// and at most ``capacity`` are open at once; further requests wait their turn in order. A
/// connection whose use threw a connection-level error is closed instead of returned, so a
/// restarted server is reconnected to on the next borrow.
public actor ConnectionPool {
    public let dsn: String
    public let capacity: Int
    private let applicationName: String
    private var idle: [Connection] = []
    private var open = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var closed = false

    public init(dsn: String, capacity: Int = 10, applicationName: String = "ledgerlift-serve") {
        self.dsn = dsn
        self.capacity = max(1, capacity)
        self.applicationName = applicationName
    }

    /// Runs `body` with a connection of the pool.
    public func withConnection<T: Sendable>(_ body: @Sendable (Connection) async throws -> T) async throws -> T {
        let connection = try await borrow()
        do {
            let value = try await body(connection)
            giveBack(connection, broken: false)
            return value
        } catch {
            giveBack(connection, broken: Self.isConnectionLevel(error))
            throw error
        }
    }

    /// Closes every idle connection and refuses further borrows (shutdown).
    public func close() {
        closed = true
        for connection in idle { connection.close() }
        open -= idle.count
        idle.removeAll()
    }

    private func borrow() async throws -> Connection {
        while true {
            if closed { throw PostgresError(code: .connectionFailed, message: "the connection pool is closed") }
            if let connection = idle.popLast() { return connection }
            if open < capacity {
                open += 1
                do {
                    return try await Connection.connect(dsn, applicationName: applicationName)
                } catch {
                    open -= 1
                    wakeOne()
                    throw error
                }
            }
            await withCheckedContinuation { waiters.append($0) }
        }
    }

    private func giveBack(_ connection: Connection, broken: Bool) {
        if broken || closed {
            connection.close()
            open -= 1
        } else {
            idle.append(connection)
        }
        wakeOne()
    }

    private func wakeOne() {
        if !waiters.isEmpty { waiters.removeFirst().resume() }
    }

    /// Whether `error` means the connection itself is unusable (not a statement's failure).
    static func isConnectionLevel(_ error: any Error) -> Bool {
        guard let error = error as? PostgresError else { return false }
        if error.code == .connectionFailed || error.code == .connectionLost || error.code == .protocolViolation {
            return true
        }
        if let state = error.sqlState?.description {
            return state.hasPrefix("08") || state.hasPrefix("57P")  // 08: connection exception; 57P0x: shutdown
        }
        return false
    }
}
