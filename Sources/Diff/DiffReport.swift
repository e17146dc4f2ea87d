import TextFormats
import Billing

/// What `ledgerlift diff` found: per entity, the row-by-row comparison of the legacy mapping
/// query with the ledger's canonical read model; beside it, the ledger's invariants.
///
/// Values in differences are in canonical text form (amounts in minor units, timestamps in UTC
/// as PostgreSQL prints them, attributes as JSON), exactly what was hashed; `nil` is SQL NULL.
public struct DiffReport: Sendable, Hashable {
    /// The legacy database, password masked.
    public var legacy: String
    /// The event store database, password masked.
    public var store: String
    /// The mapping file's path as given.
    public var mapping: String
    /// The read-model schema compared (`ledgerlift_read`).
    public var readSchema: String
    /// At most this many differences (and quarantined rows) are listed per entity, and at most
    /// this many offending keys per invariant; the counts are always complete.
    public var maxRows: Int
    /// Per entity, in canonical order.
    public var entities: [EntityDiff]
    /// Per invariant, in ``Invariant/all`` order.
    public var invariants: [InvariantResult]
    /// Wall time of the whole check.
    public var duration: Duration
    /// Run-level remarks a reader needs to trust the result — a projection that had not caught
    /// up before the re-check, re-verification skipped, differences beyond what was kept to list
    /// and re-check — one plain sentence each, in the order they arose. Every format shows them;
    /// they never change ``isClean`` or ``exitCode``.
    public var notes: [String]

    public init(
        legacy: String, store: String, mapping: String, readSchema: String, maxRows: Int,
        entities: [EntityDiff], invariants: [InvariantResult], duration: Duration, notes: [String] = []
    ) {
        self.legacy = legacy
        self.store = store
        self.mapping = mapping
        self.readSchema = readSchema
        self.maxRows = maxRows
        self.entities = entities
        self.invariants = invariants
        self.duration = duration
        self.notes = notes
    }

    /// No row differences and every invariant holds. Notes play no part.
    public var isClean: Bool { entities.allSatisfy(\.isClean) && invariants.allSatisfy(\.holds) }

    /// The process exit code CI gates on: 0 clean, 1 differences or broken invariants. (2, could
    /// not run, never has a report.)
    public var exitCode: Int32 { isClean ? 0 : 1 }

    /// Row differences over all entities.
    public var differenceCount: Int64 { entities.reduce(0) { $0 + $1.differenceCount } }

    /// Broken invariants.
    public var brokenInvariantCount: Int { invariants.filter { !$0.holds }.count }
}

/// The comparison of one entity.
public struct EntityDiff: Sendable, Hashable {
    public var entity: Entity
    /// Rows of the mapping query compared (quarantined keys left out).
    public var legacyRows: Int64
    /// Rows of the canonical read-model table compared (quarantined keys left out).
    public var ledgerRows: Int64
    /// Distinct keys on either side.
    public var compared: Int64
    /// Keys whose rows are equal on both sides.
    public var matched: Int64
    /// Keys the legacy side has and the ledger lacks.
    public var missingInLedger: Int64
    /// Keys the ledger has and the legacy side lacks.
    public var extraInLedger: Int64
    /// Keys on both sides whose rows differ.
    public var mismatched: Int64
    /// The differences, key order, at most ``DiffReport/maxRows``.
    public var differences: [RowDifference]
    /// Differences seen in the first pass that were gone when re-checked after the projection
    /// caught up (a write racing the check); not counted above.
    public var resolvedByReverification: Int64
    /// Keys left out because the backfill quarantined them (see ``quarantine``).
    public var quarantined: Int64
    /// The quarantined rows, key order, at most ``DiffReport/maxRows``.
    public var quarantine: [QuarantinedRow]
    /// Key buckets whose count and hash sum were compared, over all bisection levels.
    public var bucketsCompared: Int64
    /// Rows brought to the client to find the differing keys (both sides).
    public var rowsFetched: Int64
    /// Wall time of this entity's comparison.
    public var duration: Duration

    public init(
        entity: Entity, legacyRows: Int64 = 0, ledgerRows: Int64 = 0, compared: Int64 = 0, matched: Int64 = 0,
        missingInLedger: Int64 = 0, extraInLedger: Int64 = 0, mismatched: Int64 = 0, differences: [RowDifference] = [],
        resolvedByReverification: Int64 = 0, quarantined: Int64 = 0, quarantine: [QuarantinedRow] = [],
        bucketsCompared: Int64 = 0, rowsFetched: Int64 = 0, duration: Duration = .zero
    ) {
        self.entity = entity
        self.legacyRows = legacyRows
        self.ledgerRows = ledgerRows
        self.compared = compared
        self.matched = matched
        self.missingInLedger = missingInLedger
        self.extraInLedger = extraInLedger
        self.mismatched = mismatched
        self.differences = differences
        self.resolvedByReverification = resolvedByReverification
        self.quarantined = quarantined
        self.quarantine = quarantine
        self.bucketsCompared = bucketsCompared
        self.rowsFetched = rowsFetched
        self.duration = duration
    }

    public var differenceCount: Int64 { missingInLedger + extraInLedger + mismatched }
    public var isClean: Bool { differenceCount == 0 }
    /// Whether ``differences`` lists fewer rows than there are.
    public var isTruncated: Bool { Int64(differences.count) < differenceCount }
}

/// One key whose rows differ.
public struct RowDifference: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        /// The legacy side has the key, the ledger does not.
        case missingInLedger = "missing_in_ledger"
        /// The ledger has the key, the legacy side does not.
        case extraInLedger = "extra_in_ledger"
        /// Both have the key; ``RowDifference/columns`` says where they differ.
        case mismatched

        public var description: String { rawValue }
    }

    public var key: String
    public var kind: Kind
    /// For ``Kind/mismatched``: the differing columns in canonical order (`attributes` last).
    /// For a missing or extra row: every column, with the absent side `nil`.
    public var columns: [ColumnDifference]

    public init(key: String, kind: Kind, columns: [ColumnDifference]) {
        self.key = key
        self.kind = kind
        self.columns = columns
    }
}

/// One column of a differing row, in canonical text form on both sides (`nil` is NULL; for a
/// missing or extra row, the side without the row).
public struct ColumnDifference: Sendable, Hashable {
    public var column: String
    public var legacy: String?
    public var ledger: String?

    public init(column: String, legacy: String?, ledger: String?) {
        self.column = column
        self.legacy = legacy
        self.ledger = ledger
    }
}

/// A row the backfill quarantined, so it is not compared.
public struct QuarantinedRow: Sendable, Hashable {
    public var key: String
    public var reason: String
    public var detail: String

    public init(key: String, reason: String, detail: String) {
        self.key = key
        self.reason = reason
        self.detail = detail
    }
}

/// The outcome of one invariant over the ledger's read models.
public struct InvariantResult: Sendable, Hashable {
    /// Stable snake_case name (`invoice_total`), the JUnit test case name.
    public var name: String
    /// The rule in one sentence.
    public var summary: String
    /// How many things (invoices, customers, payments, credit notes) were checked.
    public var checked: Int64
    /// How many broke the rule.
    public var violations: Int64
    /// The offending keys, key order, at most ``DiffReport/maxRows``.
    public var offending: [InvariantViolation]

    public init(name: String, summary: String, checked: Int64, violations: Int64, offending: [InvariantViolation]) {
        self.name = name
        self.summary = summary
        self.checked = checked
        self.violations = violations
        self.offending = offending
    }

    public var holds: Bool { violations == 0 }
}

/// One key that breaks an invariant, with the figures that show it.
public struct InvariantViolation: Sendable, Hashable {
    public var key: String
    public var detail: String

    public init(key: String, detail: String) {
        self.key = key
        self.detail = detail
    }
}
