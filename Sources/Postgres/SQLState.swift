/// A five-character SQLSTATE code as PostgreSQL reports it (`23505`, `40001`, ...).
///
/// Callers branch on a few classes of failure; the named constants cover those, and any other
/// code is still carried verbatim.
public struct SQLState: Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The five-character code.
    public let rawValue: String

    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }

    /// The two-character class (`23` for integrity constraint violations).
    public var errorClass: Substring { rawValue.prefix(2) }

    public var description: String { rawValue }

    public static let uniqueViolation: SQLState = "23505"
    public static let foreignKeyViolation: SQLState = "23503"
    public static let notNullViolation: SQLState = "23502"
    public static let checkViolation: SQLState = "23514"
    public static let serializationFailure: SQLState = "40001"
    public static let deadlockDetected: SQLState = "40P01"
    public static let lockNotAvailable: SQLState = "55P03"
    public static let queryCanceled: SQLState = "57014"
    public static let adminShutdown: SQLState = "57P01"
    public static let undefinedTable: SQLState = "42P01"
    public static let duplicateDatabase: SQLState = "42P04"
    public static let raiseException: SQLState = "P0001"
    public static let insufficientPrivilege: SQLState = "42501"
    public static let objectInUse: SQLState = "55006"
}
