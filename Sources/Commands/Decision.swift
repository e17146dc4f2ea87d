import Billing

/// What a command decided: the rows it leaves behind.
///
/// The events follow from it with ``Billing/Transitions/transitions(before:after:step:notBefore:changedAt:syncedFromVersion:origin:)``
/// against the rows the command read — exactly what shadow mode appends when the legacy
/// application writes the same rows.
public struct Decision: Sendable, Hashable {
    /// The rows created or changed, in the order their events are appended.
    public var rows: [CanonicalRow]
    /// The rows it ends (a discarded draft and its lines): `…Deleted`.
    public var deleted: [DeletedRow]
    /// One sentence for the response and the log ("payment 4501 of 162.00 USD on invoice 4489 succeeded").
    public var summary: String

    public init(rows: [CanonicalRow], deleted: [DeletedRow] = [], summary: String) {
        self.rows = rows
        self.deleted = deleted
        self.summary = summary
    }

    public struct DeletedRow: Sendable, Hashable {
        public var entity: Entity
        public var key: String
        public init(entity: Entity, key: String) {
            self.entity = entity
            self.key = key
        }
    }
}
