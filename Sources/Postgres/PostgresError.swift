/// An error from the database or from talking to it.
///
/// Server errors carry every diagnostic field libpq hands us (SQLSTATE, message, detail, hint,
/// constraint, schema, table, column). Neither description ever contains a password or a bound
/// parameter value; ``description`` is safe to log (no detail, hint or SQL text), and
/// ``debugDescription`` adds them for a person debugging.
public struct PostgresError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What kind of failure this is.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        fileprivate enum Base: String, Sendable, Hashable {
            case connectionFailed, invalidConnectionString, connectionLost, server, protocolViolation, misuse, copyAborted
            case cancelled
        }
        fileprivate let base: Base

        /// The connection could not be opened.
        public static let connectionFailed = Code(base: .connectionFailed)
        /// The connection string is not one Ledgerlift hands to libpq (see
        /// ``ConnectionString/validate(_:)``): nothing was attempted, and retrying cannot help.
        public static let invalidConnectionString = Code(base: .invalidConnectionString)
        /// An open connection broke (server gone, socket closed).
        public static let connectionLost = Code(base: .connectionLost)
        /// The server rejected a statement; `sqlState` says why.
        public static let server = Code(base: .server)
        /// libpq or the server answered something we did not expect.
        public static let protocolViolation = Code(base: .protocolViolation)
        /// The API was used in a way it does not allow (e.g. a closed connection).
        public static let misuse = Code(base: .misuse)
        /// A `COPY FROM STDIN` was aborted because the writer threw.
        public static let copyAborted = Code(base: .copyAborted)
        /// The task waiting for the statement was cancelled.
        public static let cancelled = Code(base: .cancelled)

        public var description: String { base.rawValue }
    }

    public var code: Code
    /// SQLSTATE for server errors (and `08xxx` for broken connections).
    public var sqlState: SQLState?
    /// The primary message.
    public var message: String
    public var severity: String?
    public var detail: String?
    public var hint: String?
    public var context: String?
    public var schema: String?
    public var table: String?
    public var column: String?
    public var dataType: String?
    public var constraint: String?
    /// Character position of the error in `query` (1-based), when the server reports one.
    public var position: Int?
    /// The SQL text of the statement that failed (parameters are never included).
    public var query: String?
    /// For `.invalidConnectionString`: why the string was refused, so a caller can name the
    /// option it came from (``ConnectionStringError/naming(_:)``).
    public var connectionString: ConnectionStringError?

    public init(
        code: Code, message: String, sqlState: SQLState? = nil, detail: String? = nil, hint: String? = nil,
        query: String? = nil, connectionString: ConnectionStringError? = nil
    ) {
        self.code = code
        self.connectionString = connectionString
        self.message = message
        self.sqlState = sqlState
        self.detail = detail
        self.hint = hint
        self.query = query
    }

    /// `23505`: a unique constraint (see `constraint`) refused a duplicate.
    public var isUniqueViolation: Bool { sqlState == .uniqueViolation }
    /// `40001`: retry the transaction.
    public var isSerializationFailure: Bool { sqlState == .serializationFailure }
    /// `40P01`: retry the transaction.
    public var isDeadlock: Bool { sqlState == .deadlockDetected }
    /// `55P03`: `NOWAIT` or `lock_timeout` refused a lock.
    public var isLockNotAvailable: Bool { sqlState == .lockNotAvailable }
    /// `57014`: a statement timeout or an explicit cancel stopped the statement.
    public var isQueryCanceled: Bool { sqlState == .queryCanceled }
    /// The connection is gone: class `08`, an admin shutdown, or libpq reporting a broken socket.
    public var isConnectionLost: Bool {
        code == .connectionLost || code == .connectionFailed || sqlState?.errorClass == "08"
            || sqlState == .adminShutdown
    }

    /// One line that is safe to log: the SQLSTATE, the primary message and the names of what
    /// it concerns (schema, table, column, constraint). Never the detail, hint or query: the
    /// detail quotes row values (`Key (email)=(…) already exists`) and a log line outlives the
    /// data's access rules. ``debugDescription`` has everything, for `--verbose`.
    public var description: String {
        var text = "PostgreSQL"
        if let sqlState { text += " \(sqlState)" }
        text += ": " + Self.oneLine(message)
        var names = [String]()
        if let table { names.append("table " + (schema.map { "\($0).\(table)" } ?? table)) }
        if let column { names.append("column \(column)") }
        if let constraint { names.append("constraint \(constraint)") }
        if !names.isEmpty { text += " (" + names.joined(separator: ", ") + ")" }
        return text
    }

    /// ``description`` plus the detail, hint, context and the failing statement's SQL text,
    /// one per indented line: for a person debugging (`ledgerlift --verbose`), not for logs —
    /// the detail can hold row values. Bound parameter values are never included.
    public var debugDescription: String {
        var text = description
        if let detail, !detail.isEmpty { text += "\n  detail: \(detail)" }
        if let hint, !hint.isEmpty { text += "\n  hint: \(hint)" }
        if let context, !context.isEmpty { text += "\n  context: " + Self.oneLine(context) }
        if let query {
            let oneLine = Self.oneLine(query)
            text += "\n  query: " + (oneLine.count > 300 ? String(oneLine.prefix(300)) + "…" : oneLine)
        }
        return text
    }

    /// `text`'s lines, trimmed and joined by single spaces.
    private static func oneLine(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).map { $0.trimmingSpaces() }.filter { !$0.isEmpty }.joined(separator: " ")
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> Substring {
        var s = self
        while s.first == " " || s.first == "\t" { s.removeFirst() }
        while s.last == " " || s.last == "\t" { s.removeLast() }
        return s
    }
}

/// A value in a result could not be turned into the Swift type asked for.
public struct PostgresDecodingError: Error, Sendable, CustomStringConvertible {
    /// The result column's name.
    public var column: String
    /// The column's PostgreSQL type.
    public var postgresType: PostgresType
    /// The Swift type the caller asked for.
    public var swiftType: String
    /// Why it failed (NULL into a non-optional, malformed text, out of range, ...).
    public var reason: String

    public var description: String {
        "cannot decode column \"\(column)\" of PostgreSQL type \(postgresType) as Swift \(swiftType): \(reason)"
    }
}
