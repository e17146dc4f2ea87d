import CLibPQ
import Dispatch
import Foundation
import Synchronization

/// One connection to PostgreSQL, safe to share between tasks and threads.
///
/// A `PGconn` must never be used by two threads at once, so every use goes through a lock, and
/// the async API runs each piece of work on the connection's own serial queue: tasks sharing a
/// connection are served one after the other, their results never interleave, and blocking
/// libpq calls never occupy Swift's cooperative thread pool.
///
/// ```swift
/// let connection = try await Connection.connect("postgres://app@localhost/billing")
/// let rows = try await connection.query("SELECT id FROM invoices WHERE customer_id = $1", [customerID])
/// try await connection.withSession { session in
///     try session.transaction { tx in try tx.execute("UPDATE …", [...]) }
/// }
/// ```
public final class Connection: Sendable, CustomStringConvertible {
    /// Guards `session`: held for the whole of each piece of work.
    private let lock = Mutex<Bool>(false)
    /// Only touched while `lock` is held.
    nonisolated(unsafe) private let session: Session
    private let queue: DispatchQueue
    private let canceller: Canceller
    private let interrupt: InterruptFlag

    /// The connection string with its password masked.
    public let maskedDSN: String
    /// The server's process id for this connection.
    public let backendPID: Int32

    public var description: String { "Connection(\(maskedDSN), pid \(backendPID))" }

    private init(session: Session, conn: OpaquePointer) {
        self.session = session
        self.maskedDSN = session.maskedDSN
        self.backendPID = PQbackendPID(conn)
        self.canceller = Canceller(PQgetCancel(conn))
        self.interrupt = session.interrupt
        self.queue = DispatchQueue(label: "ledgerlift.postgres.connection")
    }

    /// Opens a connection without blocking the caller's thread.
    ///
    /// - Parameters:
    ///   - dsn: a URL (`postgres://user:pw@host:port/db?sslmode=require`) or `key=value`
    ///     conninfo; libpq's `PG*` environment variables fill in what it leaves out, and every
    ///     libpq option (`sslmode`, `connect_timeout`, `application_name`, …) is honoured.
    ///   - applicationName: used when the DSN does not set `application_name`.
    /// - Throws: ``PostgresError`` with code `.invalidConnectionString` for a `dsn` that
    ///   ``ConnectionString/validate(_:)`` refuses (nothing is sent anywhere, and the text says
    ///   why without quoting it), `.connectionFailed` when libpq or the server refuses; its text
    ///   carries the masked DSN and never the password.
    public static func connect(_ dsn: String, applicationName: String = "ledgerlift") async throws -> Connection {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try connectBlocking(dsn, applicationName: applicationName) })
            }
        }
    }

    /// Opens a connection on the calling thread.
    public static func connectBlocking(_ dsn: String, applicationName: String = "ledgerlift") throws -> Connection {
        // libpq takes a string it does not recognise for a database name and sends it to the
        // server, and its parse errors quote the text: a malformed string never reaches it.
        do {
            try ConnectionString.validate(dsn)
        } catch {
            throw PostgresError(
                code: .invalidConnectionString, message: "could not connect: \(error)", connectionString: error)
        }
        let masked = ConnectionString.masked(dsn)
        // Read from the raw text too: the malformed strings libpq cannot parse are the ones
        // whose error messages repeat the input.
        var secrets = ConnectionString.secrets(in: dsn)
        if let password = getenv("PGPASSWORD").map({ String(cString: $0) }), !password.isEmpty {
            secrets.append(password)
        }
        /// Every message built here goes through this, masked DSN included, as a second line of
        /// defence should masking miss a form of password.
        func failure(_ message: String, sqlState: SQLState? = nil) -> PostgresError {
            PostgresError(
                code: .connectionFailed, message: ConnectionString.scrub(message, dsn: dsn, secrets: secrets),
                sqlState: sqlState)
        }

        let keywords = ["dbname", "fallback_application_name"]
        let values = [dsn, applicationName]
        let conn = withCStrings(keywords) { k in withCStrings(values) { v in PQconnectdbParams(k, v, 1) } }
        guard let conn else { throw failure("could not connect to \(masked): out of memory") }
        guard PQstatus(conn) == CONNECTION_OK else {
            let reason = String(cString: PQerrorMessage(conn)).trimmingTrailingNewlines()
            PQfinish(conn)
            throw failure("could not connect to \(masked): " + reason, sqlState: "08001")
        }
        // Server notices (e.g. "relation already exists, skipping") are informational; libpq's
        // default prints them to stderr, which would litter every command's output.
        PQsetNoticeProcessor(conn, { _, _ in }, nil)
        let session = Session(handle: conn, maskedDSN: masked, secrets: secrets)
        // Our decoders read timestamps as UTC and ISO dates; pin the settings they rely on.
        guard PQsetClientEncoding(conn, "UTF8") == 0 else {
            throw failure("could not set client_encoding UTF8 on \(masked)")
        }
        try session.executeScript(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres';"
                + " SET extra_float_digits = 3; SET bytea_output = 'hex'")
        return Connection(session: session, conn: conn)
    }

    /// Runs `body` with exclusive use of the connection, on the connection's queue.
    ///
    /// Cancelling the calling task sends a cancel request for the statement `body` is running
    /// (if it has started) or skips `body` (if it has not).
    @discardableResult
    public func withSession<T: Sendable>(_ body: @escaping @Sendable (Session) throws -> T) async throws -> T {
        let job = Job()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                queue.async {
                    guard job.start() else {
                        continuation.resume(throwing: PostgresError(code: .cancelled, message: "the task was cancelled"))
                        return
                    }
                    let result = Result { try self.withSessionBlocking(body) }
                    job.finish()
                    continuation.resume(with: result)
                }
            }
        } onCancel: {
            job.cancel {
                self.interrupt.set(true)
                self.canceller.cancel()
            }
        }
    }

    /// Runs `body` with exclusive use of the connection on the calling thread, waiting for
    /// other users to finish first. For worker threads; async code uses ``withSession(_:)``.
    @discardableResult
    public func withSessionBlocking<T>(_ body: (Session) throws -> T) throws -> T {
        try lock.withLock { closed throws -> T in
            guard !closed else { throw PostgresError(code: .misuse, message: "the connection is closed") }
            interrupt.set(false)
            return try body(session)
        }
    }

    /// Asks the server to cancel the statement running on this connection, from any thread.
    /// The statement then fails with SQLSTATE `57014`.
    public func cancel() {
        interrupt.set(true)
        canceller.cancel()
    }

    /// Closes the connection (also done when the last reference goes away).
    public func close() {
        lock.withLock { closed in
            if !closed { session.close() }
            closed = true
        }
    }

    // MARK: - Conveniences

    /// Runs one statement with bound parameters and returns its rows.
    @discardableResult
    public func query(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) async throws -> QueryResult {
        try await withSession { try $0.query(sql, parameters) }
    }

    /// Runs one statement and returns the number of rows it affected.
    @discardableResult
    public func execute(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) async throws -> Int {
        try await withSession { try $0.execute(sql, parameters) }
    }

    /// Runs a multi-statement SQL script the program owns (no parameters).
    public func executeScript(_ sql: String) async throws {
        try await withSession { try $0.executeScript(sql) }
    }

    /// Runs `body` in a transaction on this connection.
    @discardableResult
    public func transaction<T: Sendable>(
        _ options: TransactionOptions = .init(), _ body: @escaping @Sendable (Session) throws -> T
    ) async throws -> T {
        try await withSession { try $0.transaction(options, body) }
    }
}

/// A `PGcancel` object: libpq documents `PQcancel` as safe from any thread.
private final class Canceller: Sendable {
    nonisolated(unsafe) private let handle: OpaquePointer?

    init(_ handle: OpaquePointer?) { self.handle = handle }

    deinit { if let handle { PQfreeCancel(handle) } }

    func cancel() {
        guard let handle else { return }
        var buffer = [CChar](repeating: 0, count: 256)
        _ = PQcancel(handle, &buffer, Int32(buffer.count))
    }
}

/// One queued piece of work, so a task's cancellation reaches only its own statement.
private final class Job: Sendable {
    private enum State { case queued, running, cancelled, finished }
    private let state = Mutex<State>(.queued)

    func start() -> Bool {
        state.withLock { s in
            guard s == .queued else { return false }
            s = .running
            return true
        }
    }

    /// Held under the lock so the job cannot finish — and the next one start — mid-cancel.
    func finish() { state.withLock { $0 = .finished } }

    func cancel(_ sendCancel: () -> Void) {
        state.withLock { s in
            switch s {
            case .queued: s = .cancelled
            case .running: sendCancel()
            case .cancelled, .finished: break
            }
        }
    }
}

private func withCStrings<T>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> T) -> T {
    var storage = [[CChar]]()
    for s in strings { storage.append(Array(s.utf8CString)) }
    func recurse(_ index: Int, _ pointers: [UnsafePointer<CChar>?]) -> T {
        if index == storage.count {
            return (pointers + [nil]).withUnsafeBufferPointer { body($0.baseAddress!) }
        }
        return storage[index].withUnsafeBufferPointer { recurse(index + 1, pointers + [$0.baseAddress]) }
    }
    return recurse(0, [])
}

extension String {
    func trimmingTrailingNewlines() -> String {
        var s = Substring(self)
        while s.last == "\n" || s.last == " " { s.removeLast() }
        return String(s)
    }
}
