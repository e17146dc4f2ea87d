import Postgres
import Mapping
import TextFormats
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
        /// `count(*)` of the mapping query in the latest attempt's snapshot (NULL and empty keys
        /// included); `nil` when not counted.
        public var legacyRows: Int64?
        /// Keys an interrupted attempt had migrated whose legacy row changed before the run
        /// resumed: brought up to date by a state-based sync.
        public var rowsResynced: Int64 = 0

        public init(entity: Entity, rowsRead: Int64 = 0, rowsMigrated: Int64 = 0, rowsQuarantined: Int64 = 0, events: Int64 = 0,
            legacyRows: Int64? = nil, rowsResynced: Int64 = 0
        ) {
            self.entity = entity
            self.rowsRead = rowsRead
            self.rowsMigrated = rowsMigrated
            self.rowsQuarantined = rowsQuarantined
            self.events = events
            self.legacyRows = legacyRows
            self.rowsResynced = rowsResynced
        }

        /// Conservation from the source: every row the mapping query returns was read, and every
        /// row read was migrated or quarantined.
        public var isBalanced: Bool {
            rowsRead == rowsMigrated + rowsQuarantined && (legacyRows.map { $0 == rowsRead } ?? true)
        }
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
    /// When this run had already finished, before this call: the figures are that run's, from
    /// its snapshot, and nothing was read now (`nil` for a run that did its work now).
    public var finishedEarlier: PostgresTimestamp?

    public var totalQuarantined: Int64 { entities.reduce(0) { $0 + $1.rowsQuarantined } }

    /// Quarantine entries of any reason, including keys whose rows vanished between attempts.
    public var totalQuarantineEntries: Int64 { quarantineReasons.reduce(0) { $0 + $1.count } }

    /// Whether every entity balances against its source.
    public var isBalanced: Bool { entities.allSatisfy(\.isBalanced) }

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
