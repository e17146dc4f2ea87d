import Postgres

/// Why loading or generating the legacy fixture failed.
///
/// Descriptions name what was being done, where (files, the table being written, the masked
/// DSN) and, for database failures, carry the server's SQLSTATE through ``underlying``. They
/// never contain a password.
public struct FixtureError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        fileprivate enum Base: String, Sendable, Hashable {
            case fixturesNotFound, unreadableFile, invalidConfiguration, generation, database, cancelled, busy
        }
        fileprivate let base: Base

        /// No directory holding `reference/schema.sql` was found; see ``FixtureError/searchedLocations``.
        public static let fixturesNotFound = Code(base: .fixturesNotFound)
        /// A fixture file exists but could not be read as UTF-8 text.
        public static let unreadableFile = Code(base: .unreadableFile)
        /// A generator setting is out of range.
        public static let invalidConfiguration = Code(base: .invalidConfiguration)
        /// The generator could not build a customer's story: a defect of the generator, never of
        /// the input. The message names the seed and the customer, which reproduce it.
        public static let generation = Code(base: .generation)
        /// PostgreSQL refused a statement or the connection broke; see ``FixtureError/underlying``.
        public static let database = Code(base: .database)
        /// The task was cancelled.
        public static let cancelled = Code(base: .cancelled)
        /// Another `fixture generate` is writing to the same database.
        public static let busy = Code(base: .busy)

        public var description: String { base.rawValue }
    }

    public var code: Code
    /// What went wrong, in one sentence.
    public var message: String
    /// For ``Code/fixturesNotFound``: every directory looked in, in search order.
    public var searchedLocations: [String]
    /// The table being written when a database error happened, if known.
    public var table: LegacyTable?
    /// The database error underneath (SQLSTATE, detail, hint), for ``Code/database``.
    public var underlying: PostgresError?

    public init(
        code: Code, message: String, searchedLocations: [String] = [], table: LegacyTable? = nil,
        underlying: PostgresError? = nil
    ) {
        self.code = code
        self.message = message
        self.searchedLocations = searchedLocations
        self.table = table
        self.underlying = underlying
    }

    public var description: String {
        var text = message
        if !searchedLocations.isEmpty {
            text += "\n  looked in:" + searchedLocations.map { "\n    " + $0 }.joined()
        }
        if let underlying {
            text += "\n  " + underlying.description.split(separator: "\n", omittingEmptySubsequences: false)
                .joined(separator: "\n  ")
        }
        return text
    }

    static func database(_ message: String, _ error: any Error, table: LegacyTable? = nil) -> any Error {
        if error is FixtureError { return error }
        guard let postgres = error as? PostgresError else { return error }
        if postgres.code == .cancelled || postgres.isQueryCanceled {
            return FixtureError(code: .cancelled, message: message + ": cancelled", table: table, underlying: postgres)
        }
        return FixtureError(code: .database, message: message, table: table, underlying: postgres)
    }
}
