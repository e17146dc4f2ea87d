import Mapping
import TextFormats
import Billing
import Postgres

/// Why `ledgerlift diff` could not run (exit code 2): which side, which entity, and the
/// database's own words, with its SQLSTATE.
public struct DiffError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The database a problem comes from.
    public enum Side: String, Sendable, Hashable {
        case legacy
        case ledger
    }

    public let side: Side?
    public let entity: Entity?
    public let message: String
    /// The SQLSTATE, when the database refused something.
    public let sqlState: String?

    public init(side: Side? = nil, entity: Entity? = nil, _ message: String, sqlState: String? = nil) {
        self.side = side
        self.entity = entity
        self.message = message
        self.sqlState = sqlState
    }

    /// Wraps an error thrown while working on `side`/`entity` (doing `what`, when the error
    /// does not say it itself), keeping a `DiffError` as is.
    static func wrap(_ error: any Error, side: Side?, entity: Entity?, doing what: String?) -> DiffError {
        if let error = error as? DiffError { return error }
        let prefix = what.map { $0 + ": " } ?? ""
        if let error = error as? PostgresError {
            // The message only: PostgreSQL's detail can quote row values (`Key (email)=(…)`),
            // and this text reaches CI artifacts (JUnit, Markdown).
            return DiffError(side: side, entity: entity, prefix + error.message, sqlState: error.sqlState?.rawValue)
        }
        return DiffError(side: side, entity: entity, prefix + "\(error)")
    }

    public var description: String {
        var prefix = [String]()
        if let side { prefix.append(side == .legacy ? "legacy database" : "ledger") }
        if let entity { prefix.append(entity.rawValue) }
        let head = prefix.isEmpty ? "" : prefix.joined(separator: ", ") + ": "
        return head + message + (sqlState.map { " (SQLSTATE \($0))" } ?? "")
    }
}
