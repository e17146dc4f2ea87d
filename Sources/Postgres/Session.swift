import CLibPQ
import Foundation
import Synchronization

/// Exclusive, synchronous access to one open libpq connection.
///
/// You get a `Session` inside ``Connection/withSession(_:)`` or
/// ``Connection/withSessionBlocking(_:)``; it is valid only inside that closure, on that thread.
/// Every call blocks the calling thread until the server answers, which is why the async API
/// runs sessions on the connection's own dispatch queue, never on the cooperative pool.
///
/// - Important: Do not store a `Session` or let it escape its closure.
public final class Session {
    /// The `PGconn *`; `nil` once closed.
    var handle: OpaquePointer?
    /// The masked connection string, for messages.
    public let maskedDSN: String
    let secrets: [String]
    /// Set when the work using this session is cancelled; waits that do not run a statement
    /// (``waitForNotification(timeout:)``) check it, since a server cancel cannot reach them.
    let interrupt = InterruptFlag()

    init(handle: OpaquePointer, maskedDSN: String, secrets: [String]) {
        self.handle = handle
        self.maskedDSN = maskedDSN
        self.secrets = secrets
    }

    deinit {
        if let handle { PQfinish(handle) }
    }

    func close() {
        if let handle { PQfinish(handle) }
        handle = nil
    }

    func liveHandle() throws -> OpaquePointer {
        guard let handle else { throw PostgresError(code: .misuse, message: "the connection is closed") }
        return handle
    }

    /// The server's process id for this connection.
    public var backendPID: Int32 { handle.map { PQbackendPID($0) } ?? 0 }

    /// Whether the session is inside a transaction block (idle in transaction, or failed).
    public var isInTransaction: Bool {
        guard let handle else { return false }
        let status = PQtransactionStatus(handle)
        return status == PQTRANS_INTRANS || status == PQTRANS_INERROR
    }

    // MARK: - Statements

    /// Runs one statement with bound parameters and returns all its rows.
    ///
    /// - Parameters:
    ///   - sql: SQL text with `$1…$n` placeholders; never build it from untrusted values.
    ///   - parameters: values for the placeholders, `nil` for NULL.
    /// - Throws: ``PostgresError`` with the server's SQLSTATE and fields.
    @discardableResult
    public func query(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) throws -> QueryResult {
        let conn = try liveHandle()
        let result = try Parameters(parameters).withPointers { count, types, values in
            PQexecParams(conn, sql, count, types, values, nil, nil, 0)
        }
        let res = try checked(result, sql: sql)
        defer { PQclear(res) }
        return makeResult(res)
    }

    /// Runs one statement and returns the number of rows it affected.
    @discardableResult
    public func execute(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) throws -> Int {
        try query(sql, parameters).affectedRows
    }

    /// Runs a script of several `;`-separated statements with no parameters (schema files).
    ///
    /// - Important: Use only for SQL the program owns; it takes no parameters by design.
    public func executeScript(_ sql: String) throws {
        let conn = try liveHandle()
        guard PQsendQuery(conn, sql) == 1 else { throw connectionError(sql: sql) }
        var firstError: PostgresError?
        while let res = PQgetResult(conn) {
            defer { PQclear(res) }
            let status = PQresultStatus(res)
            if status == PGRES_COPY_IN {
                PQputCopyEnd(conn, "COPY FROM STDIN is not allowed in a script")
            } else if status == PGRES_COPY_OUT {
                var buffer: UnsafeMutablePointer<CChar>?
                while PQgetCopyData(conn, &buffer, 0) > 0 { PQfreemem(buffer) }
            } else if status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE, firstError == nil {
                firstError = serverError(res, sql: sql)
            }
        }
        if let firstError { throw firstError }
    }

    /// Streams the rows of a query one at a time (libpq single-row mode), so results larger
    /// than memory can be read.
    ///
    /// If `body` throws, the query is cancelled, the connection drained, and the error rethrown.
    /// - Returns: the number of rows delivered.
    @discardableResult
    public func stream(
        _ sql: String, _ parameters: [(any PostgresEncodable)?] = [], _ body: (Row) throws -> Void
    ) throws -> Int {
        let conn = try liveHandle()
        let sent = try Parameters(parameters).withPointers { count, types, values in
            PQsendQueryParams(conn, sql, count, types, values, nil, nil, 0)
        }
        guard sent == 1 else { throw connectionError(sql: sql) }
        guard PQsetSingleRowMode(conn) == 1 else {
            drain()
            throw PostgresError(code: .protocolViolation, message: "could not enter single-row mode", query: sql)
        }
        var columns: Columns?
        var bodyError: (any Error)?
        var serverFailure: PostgresError?
        var delivered = 0
        while let res = PQgetResult(conn) {
            defer { PQclear(res) }
            switch PQresultStatus(res) {
            case PGRES_SINGLE_TUPLE:
                guard bodyError == nil else { continue }
                let cols = columns ?? makeColumns(res)
                columns = cols
                do {
                    try body(Row(columns: cols, values: rowValues(res, row: 0, columns: cols.count)))
                    delivered += 1
                } catch {
                    bodyError = error
                    requestCancel(conn)
                }
            case PGRES_TUPLES_OK, PGRES_COMMAND_OK:
                break
            default:
                if serverFailure == nil { serverFailure = serverError(res, sql: sql) }
            }
        }
        if let bodyError { throw bodyError }
        if let serverFailure { throw serverFailure }
        return delivered
    }

    // MARK: - COPY

    /// Runs `COPY … FROM STDIN` (text format) and lets `body` write the rows.
    ///
    /// Rows are buffered up to ``CopyInWriter/flushThreshold`` bytes and sent as they fill, so
    /// memory stays bounded whatever the row count. If `body` throws, the copy is aborted
    /// with `PQputCopyEnd` and an error message, the server rolls the statement back, and the
    /// error is rethrown: no row of an aborted copy is ever committed.
    /// - Returns: the number of rows the server loaded.
    @discardableResult
    public func copyIn(_ sql: String, _ body: (CopyInWriter) throws -> Void) throws -> Int {
        let conn = try liveHandle()
        let start = try checked(PQexec(conn, sql), sql: sql, expecting: PGRES_COPY_IN)
        PQclear(start)
        let writer = CopyInWriter(connection: conn)
        do {
            try body(writer)
            try writer.flush()
        } catch {
            PQputCopyEnd(conn, "aborted by the client")
            drain()
            throw error
        }
        guard PQputCopyEnd(conn, nil) == 1 else { throw connectionError(sql: sql) }
        var outcome: Result<Int, PostgresError> = .success(0)
        while let res = PQgetResult(conn) {
            defer { PQclear(res) }
            if PQresultStatus(res) == PGRES_COMMAND_OK {
                outcome = .success(Int(String(cString: PQcmdTuples(res))) ?? 0)
            } else if case .success = outcome {
                outcome = .failure(serverError(res, sql: sql))
            }
        }
        return try outcome.get()
    }

    /// Runs `COPY … TO STDOUT` (text format) and hands each row's fields to `body`, with
    /// text-format escapes decoded and `\N` as `nil`. Memory stays bounded by one row.
    /// - Returns: the number of rows read.
    @discardableResult
    public func copyOut(_ sql: String, _ body: ([String?]) throws -> Void) throws -> Int {
        try copyOutLines(sql) { line in try body(CopyText.decodeLine(line)) }
    }

    /// Runs `COPY … TO STDOUT` and hands each raw data line (without its newline) to `body`.
    @discardableResult
    public func copyOutLines(_ sql: String, _ body: (UnsafeBufferPointer<UInt8>) throws -> Void) throws -> Int {
        let conn = try liveHandle()
        let start = try checked(PQexec(conn, sql), sql: sql, expecting: PGRES_COPY_OUT)
        PQclear(start)
        var bodyError: (any Error)?
        var rows = 0
        while true {
            var buffer: UnsafeMutablePointer<CChar>?
            let length = PQgetCopyData(conn, &buffer, 0)
            if length > 0, let buffer {
                if bodyError == nil {
                    let count = Int(length) - (buffer[Int(length) - 1] == 10 ? 1 : 0)
                    buffer.withMemoryRebound(to: UInt8.self, capacity: Int(length)) { bytes in
                        do {
                            try body(UnsafeBufferPointer(start: bytes, count: count))
                            rows += 1
                        } catch {
                            bodyError = error
                            requestCancel(conn)
                        }
                    }
                }
                PQfreemem(buffer)
            } else if length == -1 {
                break
            } else {
                throw connectionError(sql: sql)
            }
        }
        var failure: PostgresError?
        while let res = PQgetResult(conn) {
            defer { PQclear(res) }
            if PQresultStatus(res) != PGRES_COMMAND_OK, failure == nil { failure = serverError(res, sql: sql) }
        }
        if let bodyError { throw bodyError }
        if let failure { throw failure }
        return rows
    }

    // MARK: - Transactions

    /// Runs `body` in a transaction: committed when it returns, rolled back when it throws.
    ///
    /// - Throws: whatever `body` throws (after the rollback), or ``PostgresError`` when `COMMIT`
    ///   fails — including a commit the server turned into a rollback because a statement in
    ///   the transaction had failed and `body` swallowed the error.
    @discardableResult
    public func transaction<T>(_ options: TransactionOptions = .init(), _ body: (Session) throws -> T) throws -> T {
        let conn = try liveHandle()
        guard PQtransactionStatus(conn) == PQTRANS_IDLE else {
            throw PostgresError(code: .misuse, message: "a transaction is already open on this connection")
        }
        try execute(options.beginStatement)
        do {
            if let snapshot = options.snapshot { try importSnapshot(snapshot) }
            let value = try body(self)
            let tag = try query("COMMIT").commandTag
            if tag == "ROLLBACK" {
                throw PostgresError(
                    code: .server, message: "the transaction was rolled back: a statement in it failed",
                    sqlState: "25P02")
            }
            return value
        } catch {
            if let handle, PQtransactionStatus(handle) != PQTRANS_IDLE {
                if let res = PQexec(handle, "ROLLBACK") { PQclear(res) }
            }
            throw error
        }
    }

    /// Exports the current transaction's snapshot (`pg_export_snapshot()`), so other sessions
    /// can see exactly the same data with ``importSnapshot(_:)``. Valid while this transaction
    /// stays open.
    public func exportSnapshot() throws -> String {
        try query("SELECT pg_export_snapshot()").rows[0].decode(at: 0, as: String.self)
    }

    /// `SET TRANSACTION SNAPSHOT`: must be the first statement of a `REPEATABLE READ` or
    /// `SERIALIZABLE` transaction.
    public func importSnapshot(_ snapshotID: String) throws {
        try execute("SET TRANSACTION SNAPSHOT " + escapeLiteral(snapshotID))
    }

    // MARK: - LISTEN / NOTIFY

    /// Starts listening on `channel` (quoted as an identifier, so any name is safe).
    public func listen(_ channel: String) throws {
        try execute("LISTEN " + escapeIdentifier(channel))
    }

    /// Stops listening on `channel`.
    public func unlisten(_ channel: String) throws {
        try execute("UNLISTEN " + escapeIdentifier(channel))
    }

    /// Sends a notification with `pg_notify($1, $2)` (delivered when the transaction commits).
    public func notify(_ channel: String, payload: String = "") throws {
        try execute("SELECT pg_notify($1, $2)", [channel, payload])
    }

    /// Waits on the socket for a notification, up to `timeout`.
    ///
    /// - Returns: the first pending or arriving notification, or `nil` after the timeout.
    public func waitForNotification(timeout: Duration) throws -> PostgresNotification? {
        let conn = try liveHandle()
        let deadline = ContinuousClock.now + timeout
        while true {
            guard PQconsumeInput(conn) == 1 else { throw connectionError(sql: nil) }
            if let notice = PQnotifies(conn) {
                defer { PQfreemem(notice) }
                return PostgresNotification(
                    channel: String(cString: notice.pointee.relname), payload: String(cString: notice.pointee.extra),
                    senderPID: notice.pointee.be_pid)
            }
            if interrupt.isSet {
                throw PostgresError(code: .cancelled, message: "the wait for a notification was cancelled")
            }
            let remaining = deadline - ContinuousClock.now
            if remaining <= .zero { return nil }
            // Wake at least every 100 ms to notice cancellation.
            let millis = min(100, remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000)
            var descriptor = pollfd(fd: PQsocket(conn), events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, Int32(clamping: max(1, millis)))
            if ready < 0, errno != EINTR {
                throw PostgresError(code: .connectionLost, message: "poll failed on the connection socket")
            }
        }
    }

    // MARK: - Advisory locks

    /// `pg_try_advisory_lock` / `pg_try_advisory_xact_lock`: takes the lock if free.
    /// - Returns: `true` when this session now holds it.
    public func tryAdvisoryLock(_ key: Int64, scope: AdvisoryLockScope = .session) throws -> Bool {
        let function = scope == .session ? "pg_try_advisory_lock" : "pg_try_advisory_xact_lock"
        return try query("SELECT \(function)($1)", [key]).rows[0].decode(at: 0, as: Bool.self)
    }

    /// `pg_advisory_lock` / `pg_advisory_xact_lock`: waits for the lock (bounded by the
    /// session's `lock_timeout` or `statement_timeout`, if set).
    public func advisoryLock(_ key: Int64, scope: AdvisoryLockScope = .session) throws {
        let function = scope == .session ? "pg_advisory_lock" : "pg_advisory_xact_lock"
        try execute("SELECT \(function)($1)", [key])
    }

    /// Releases a session-scope advisory lock. Returns `false` when it was not held.
    @discardableResult
    public func advisoryUnlock(_ key: Int64) throws -> Bool {
        try query("SELECT pg_advisory_unlock($1)", [key]).rows[0].decode(at: 0, as: Bool.self)
    }

    // MARK: - Settings

    /// Sets `statement_timeout` for this session; `nil` removes it.
    public func setStatementTimeout(_ timeout: Duration?) throws {
        try setting("statement_timeout", to: timeout.map { "\(Self.milliseconds($0))ms" } ?? "0")
    }

    /// Sets `lock_timeout` for this session; `nil` removes it.
    public func setLockTimeout(_ timeout: Duration?) throws {
        try setting("lock_timeout", to: timeout.map { "\(Self.milliseconds($0))ms" } ?? "0")
    }

    /// `set_config(name, value, false)`: a session-level setting, with both bound.
    public func setting(_ name: String, to value: String) throws {
        try execute("SELECT set_config($1, $2, false)", [name, value])
    }

    static func milliseconds(_ d: Duration) -> Int64 {
        max(1, d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000)
    }

    // MARK: - Quoting

    /// Quotes an identifier with `PQescapeIdentifier` (for names from mapping files).
    public func escapeIdentifier(_ identifier: String) throws -> String {
        let conn = try liveHandle()
        let bytes = Array(identifier.utf8)
        guard let escaped = PQescapeIdentifier(conn, identifier, bytes.count) else {
            throw PostgresError(code: .misuse, message: "cannot quote identifier: " + lastErrorMessage(conn))
        }
        defer { PQfreemem(escaped) }
        return String(cString: escaped)
    }

    /// Quotes a literal with `PQescapeLiteral`, for the few statements that cannot take
    /// parameters (`SET TRANSACTION SNAPSHOT`).
    public func escapeLiteral(_ literal: String) throws -> String {
        let conn = try liveHandle()
        guard let escaped = PQescapeLiteral(conn, literal, Array(literal.utf8).count) else {
            throw PostgresError(code: .misuse, message: "cannot quote literal: " + lastErrorMessage(conn))
        }
        defer { PQfreemem(escaped) }
        return String(cString: escaped)
    }

    // MARK: - Results and errors

    func checked(_ result: OpaquePointer?, sql: String?, expecting: ExecStatusType? = nil) throws -> OpaquePointer {
        guard let result else { throw connectionError(sql: sql) }
        let status = PQresultStatus(result)
        if let expecting {
            if status == expecting { return result }
        } else if status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY {
            return result
        }
        let error: PostgresError
        if status == PGRES_FATAL_ERROR || status == PGRES_NONFATAL_ERROR || status == PGRES_BAD_RESPONSE {
            error = serverError(result, sql: sql)
        } else {
            error = PostgresError(
                code: .protocolViolation, message: "unexpected result status \(String(cString: PQresStatus(status)))",
                query: sql)
        }
        PQclear(result)
        // A COPY the caller did not expect must be ended before the connection is usable again.
        if status == PGRES_COPY_IN, let handle { PQputCopyEnd(handle, "unexpected COPY") }
        drain()
        throw error
    }

    func serverError(_ result: OpaquePointer, sql: String?) -> PostgresError {
        func field(_ code: Int32) -> String? {
            guard let value = PQresultErrorField(result, code) else { return nil }
            return String(cString: value)
        }
        let state = field(LL_PG_DIAG_SQLSTATE).map { SQLState($0) }
        var message = field(LL_PG_DIAG_MESSAGE_PRIMARY)
        if message == nil, let handle { message = lastErrorMessage(handle) }
        let lost = handle.map { PQstatus($0) == CONNECTION_BAD } ?? true
        var error = PostgresError(
            code: lost && state == nil ? .connectionLost : .server,
            message: ConnectionString.scrub(message ?? "unknown error", secrets: secrets), sqlState: state,
            detail: field(LL_PG_DIAG_MESSAGE_DETAIL), hint: field(LL_PG_DIAG_MESSAGE_HINT), query: sql)
        error.severity = field(LL_PG_DIAG_SEVERITY)
        error.context = field(LL_PG_DIAG_CONTEXT)
        error.schema = field(LL_PG_DIAG_SCHEMA_NAME)
        error.table = field(LL_PG_DIAG_TABLE_NAME)
        error.column = field(LL_PG_DIAG_COLUMN_NAME)
        error.dataType = field(LL_PG_DIAG_DATATYPE_NAME)
        error.constraint = field(LL_PG_DIAG_CONSTRAINT_NAME)
        error.position = field(LL_PG_DIAG_STATEMENT_POSITION).flatMap { Int($0) }
        return error
    }

    func connectionError(sql: String?) -> PostgresError {
        guard let handle else { return PostgresError(code: .misuse, message: "the connection is closed", query: sql) }
        let lost = PQstatus(handle) == CONNECTION_BAD
        return PostgresError(
            code: lost ? .connectionLost : .protocolViolation,
            message: ConnectionString.scrub(lastErrorMessage(handle), secrets: secrets),
            sqlState: lost ? "08006" : nil, query: sql)
    }

    func lastErrorMessage(_ conn: OpaquePointer) -> String {
        String(cString: PQerrorMessage(conn)).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Reads and discards results until the connection is idle again.
    func drain() {
        guard let handle else { return }
        while let res = PQgetResult(handle) {
            let status = PQresultStatus(res)
            PQclear(res)
            if status == PGRES_COPY_IN {
                PQputCopyEnd(handle, "aborted")
            } else if status == PGRES_COPY_OUT {
                var buffer: UnsafeMutablePointer<CChar>?
                while PQgetCopyData(handle, &buffer, 0) > 0 { PQfreemem(buffer) }
            }
            if PQstatus(handle) == CONNECTION_BAD { return }
        }
    }

    func requestCancel(_ conn: OpaquePointer) {
        guard let cancel = PQgetCancel(conn) else { return }
        defer { PQfreeCancel(cancel) }
        var buffer = [CChar](repeating: 0, count: 256)
        _ = PQcancel(cancel, &buffer, Int32(buffer.count))
    }

    func makeColumns(_ res: OpaquePointer) -> Columns {
        let count = PQnfields(res)
        return Columns(
            (0..<count).map { i in
                Column(name: String(cString: PQfname(res, i)), type: PostgresType(oid: PQftype(res, i)))
            })
    }

    func rowValues(_ res: OpaquePointer, row: Int32, columns: Int) -> [String?] {
        var values = [String?]()
        values.reserveCapacity(columns)
        for c in 0..<Int32(columns) {
            if PQgetisnull(res, row, c) == 1 {
                values.append(nil)
            } else {
                let length = Int(PQgetlength(res, row, c))
                let pointer = UnsafeRawPointer(PQgetvalue(res, row, c)!).assumingMemoryBound(to: UInt8.self)
                values.append(String(decoding: UnsafeBufferPointer(start: pointer, count: length), as: UTF8.self))
            }
        }
        return values
    }

    func makeResult(_ res: OpaquePointer) -> QueryResult {
        let columns = makeColumns(res)
        let count = PQntuples(res)
        var rows = [Row]()
        rows.reserveCapacity(Int(count))
        for r in 0..<count {
            rows.append(Row(columns: columns, values: rowValues(res, row: r, columns: columns.count)))
        }
        return QueryResult(
            columns: columns, rows: rows, commandTag: String(cString: PQcmdStatus(res)),
            affectedRows: Int(String(cString: PQcmdTuples(res))) ?? Int(count))
    }
}

/// A notification received on a channel this session listens to.
public struct PostgresNotification: Sendable, Hashable {
    public let channel: String
    public let payload: String
    /// Process id of the sending backend.
    public let senderPID: Int32
}

/// Scope of an advisory lock.
public enum AdvisoryLockScope: Sendable {
    /// Held until unlocked or the session ends.
    case session
    /// Held until the current transaction ends.
    case transaction
}

/// Isolation level of a transaction.
public enum IsolationLevel: String, Sendable {
    case readCommitted = "READ COMMITTED"
    case repeatableRead = "REPEATABLE READ"
    case serializable = "SERIALIZABLE"
}

/// How to open a transaction.
public struct TransactionOptions: Sendable {
    public var isolation: IsolationLevel?
    public var readOnly: Bool
    public var deferrable: Bool
    /// A snapshot id from ``Session/exportSnapshot()`` to import first (needs REPEATABLE READ
    /// or SERIALIZABLE).
    public var snapshot: String?

    public init(
        isolation: IsolationLevel? = nil, readOnly: Bool = false, deferrable: Bool = false, snapshot: String? = nil
    ) {
        self.isolation = isolation
        self.readOnly = readOnly
        self.deferrable = deferrable
        self.snapshot = snapshot
    }

    var beginStatement: String {
        var sql = "BEGIN"
        if let isolation { sql += " ISOLATION LEVEL " + isolation.rawValue }
        if readOnly { sql += (isolation == nil ? "" : ",") + " READ ONLY" }
        if deferrable { sql += (isolation == nil && !readOnly ? "" : ",") + " DEFERRABLE" }
        return sql
    }
}

/// Text values for `PQexecParams`, laid out in one buffer so every pointer handed to libpq is
/// derived inside a single `withUnsafeBufferPointer` and cannot dangle.
struct Parameters {
    var bytes: [CChar] = []
    var offsets: [Int] = []
    var types: [Oid] = []

    init(_ values: [(any PostgresEncodable)?]) throws {
        for value in values {
            guard let value else {
                offsets.append(-1)
                types.append(0)
                continue
            }
            let type = value.postgresParameterType
            offsets.append(bytes.count)
            types.append(type.oid)
            for byte in value.postgresText.utf8 {
                guard byte != 0 else {
                    throw PostgresError(code: .misuse, message: "a \(type) parameter contains a NUL byte")
                }
                bytes.append(CChar(bitPattern: byte))
            }
            bytes.append(0)
        }
    }

    func withPointers<T>(
        _ body: (Int32, UnsafePointer<Oid>?, UnsafePointer<UnsafePointer<CChar>?>?) throws -> T
    ) rethrows -> T {
        try bytes.withUnsafeBufferPointer { buffer in
            let pointers: [UnsafePointer<CChar>?] = offsets.map { $0 < 0 ? nil : buffer.baseAddress! + $0 }
            return try pointers.withUnsafeBufferPointer { values in
                try types.withUnsafeBufferPointer { types in
                    try body(Int32(offsets.count), types.baseAddress, values.baseAddress)
                }
            }
        }
    }
}

/// A flag one thread sets and another polls.
final class InterruptFlag: Sendable {
    private let state = Mutex(false)
    var isSet: Bool { state.withLock { $0 } }
    func set(_ value: Bool) { state.withLock { $0 = value } }
}
