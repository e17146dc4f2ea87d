import Postgres

/// The append-only ledger in PostgreSQL: where migrated history lives and what every read
/// model is rebuilt from.
///
/// `EventStore` is a small value naming the schema; its operations run on a ``Session`` the
/// caller provides, so an append, a checkpoint and a consumer's own writes can share one
/// transaction.
public struct EventStore: Sendable {
    /// The PostgreSQL schema holding the store (default `ledgerlift`).
    public let schema: String
    /// `schema`, quoted for SQL.
    let s: String

    public init(schema: String = "ledgerlift") {
        self.schema = schema
        self.s = quoteIdentifier(schema)
    }

    /// The LISTEN/NOTIFY channel on which the store announces committed appends.
    public var notificationChannel: String { schema + "_events" }

    /// The SQLSTATE the append-only trigger raises for `UPDATE`, `DELETE` or `TRUNCATE` of events.
    public static let appendOnlyViolation: SQLState = "LL001"

    /// A stream's category: the part of its id before the first `-` (`invoice` for `invoice-1042`).
    public static func category(of streamID: String) -> Substring {
        streamID.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)[0]
    }
}
