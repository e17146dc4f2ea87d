/// A SQL statement whose interpolations cannot inject: a value becomes a bound parameter
/// (`$n`), an identifier is quoted, and text that is meant to be SQL — a mapping file's own
/// query — must say so with `unsafeSQL:`.
///
/// ```swift
/// let sql: SQL = "SELECT * FROM \(identifier: schema, "events") WHERE stream_id = \(streamID) LIMIT \(limit)"
/// // sql.text == #"SELECT * FROM "ledgerlift"."events" WHERE stream_id = $1 LIMIT $2"#
/// try session.query(sql: sql)
/// ```
///
/// The `sql:` label keeps the two APIs apart: a plain string literal still means the
/// `query(_:_:)` of text plus explicit parameters, so no existing call changes meaning.
///
/// Identifiers are quoted by doubling `"` inside `"…"`, which is what `PQescapeIdentifier`
/// produces for a UTF-8 session (every Ledgerlift session is pinned to UTF-8), without needing a
/// connection to build the text.
public struct SQL: Sendable, ExpressibleByStringInterpolation, CustomStringConvertible {
    /// The statement, with `$1…$n` for the bound values.
    public private(set) var text: String
    /// The values bound to `$1…$n`, in order.
    public private(set) var bindings: [(any PostgresEncodable)?]

    public init(stringLiteral value: String) {
        text = value
        bindings = []
    }

    public init(stringInterpolation: StringInterpolation) {
        text = stringInterpolation.text
        bindings = stringInterpolation.bindings
    }

    /// SQL from a source the caller vouches for (a mapping file's query, a fragment built from
    /// quoted identifiers). The label is the point: it is greppable and reviewable.
    public init(unsafeSQL text: String) {
        self.text = text
        bindings = []
    }

    /// The statement text; never the bound values (they may be row data or secrets).
    public var description: String { text }

    public struct StringInterpolation: StringInterpolationProtocol {
        var text = ""
        var bindings = [(any PostgresEncodable)?]()

        public init(literalCapacity: Int, interpolationCount: Int) {
            text.reserveCapacity(literalCapacity + 4 * interpolationCount)
        }

        public mutating func appendLiteral(_ literal: String) { text += literal }

        /// A value: bound as the next parameter.
        public mutating func appendInterpolation(_ value: (any PostgresEncodable)?) {
            bindings.append(value)
            text += "$\(bindings.count)"
        }

        /// An identifier (schema, table, column), quoted.
        public mutating func appendInterpolation(identifier: String) { text += quoteIdentifier(identifier) }

        /// A qualified name, each part quoted: `"schema"."table"`.
        public mutating func appendInterpolation(identifier schema: String, _ name: String) {
            text += quoteIdentifier(schema) + "." + quoteIdentifier(name)
        }

        /// SQL text the caller vouches for: see ``SQL/init(unsafeSQL:)``.
        public mutating func appendInterpolation(unsafeSQL fragment: String) { text += fragment }
    }
}

extension Session {
    /// Runs `sql` with its bound values.
    public func query(sql: SQL) throws -> QueryResult { try query(sql.text, sql.bindings) }

    /// Runs `sql` with its bound values; the number of rows affected.
    @discardableResult
    public func execute(sql: SQL) throws -> Int { try execute(sql.text, sql.bindings) }
}

extension Connection {
    /// Runs `sql` with its bound values.
    public func query(sql: SQL) async throws -> QueryResult { try await query(sql.text, sql.bindings) }

    /// Runs `sql` with its bound values; the number of rows affected.
    @discardableResult
    public func execute(sql: SQL) async throws -> Int { try await execute(sql.text, sql.bindings) }
}

/// A SQL string literal: `'` doubled inside `'…'`. For the few places where PostgreSQL takes no
/// parameter (DDL, a function body); everywhere else, bind the value.
public func quoteLiteral(_ text: String) -> String {
    "'" + text.replacing("'", with: "''") + "'"
}
