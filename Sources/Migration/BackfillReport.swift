import Billing

/// What a backfill did, entity by entity: every legacy row is accounted for as migrated or
/// quarantined.
public struct BackfillReport: Sendable, Hashable {
    public struct EntityCounts: Sendable, Hashable {
        public var entity: Entity
        public var rowsRead: Int64 = 0
        public var rowsMigrated: Int64 = 0
        public var rowsQuarantined: Int64 = 0
        public var events: Int64 = 0

        /// Conservation: read = migrated + quarantined.
        public var isBalanced: Bool { rowsRead == rowsMigrated + rowsQuarantined }
    }

    public var runID: String
    public var entities: [EntityCounts]
    /// Quarantined rows per reason code.
    public var quarantineReasons: [(reason: String, count: Int64)]
    /// Events appended now, and events that were already stored (a resumed run).
    public var eventsAppended: Int64
    public var eventsAlreadyStored: Int64
    /// Events per type (dry runs and real runs alike).
    public var eventsByType: [(type: String, count: Int64)]
    public var dryRun: Bool

    public var totalQuarantined: Int64 { entities.reduce(0) { $0 + $1.rowsQuarantined } }

    public static func == (a: BackfillReport, b: BackfillReport) -> Bool {
        a.runID == b.runID && a.entities == b.entities && a.eventsAppended == b.eventsAppended
            && a.eventsAlreadyStored == b.eventsAlreadyStored && a.dryRun == b.dryRun
            && a.quarantineReasons.map(\.reason) == b.quarantineReasons.map(\.reason)
            && a.quarantineReasons.map(\.count) == b.quarantineReasons.map(\.count)
            && a.eventsByType.map(\.type) == b.eventsByType.map(\.type) && a.eventsByType.map(\.count) == b.eventsByType.map(\.count)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(runID)
        hasher.combine(entities)
    }
}
