import Mapping
import TextFormats
import Billing

/// Why a backfill refused to run or could not account for the legacy rows.
///
/// Each case says what differs and what to do; none carries a connection string.
public enum BackfillError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The store holds a run made from another legacy database.
    case anotherLegacyDatabase(runID: String, stored: LegacyIdentity, given: LegacyIdentity)
    /// The store holds a run made with another mapping file.
    case anotherMapping(runID: String, storedFingerprint: String, givenFingerprint: String)
    /// Another backfill (or a reset) holds the store's backfill lock.
    case busy(holder: String)
    /// Rows of the mapping query that the run neither migrated nor quarantined.
    case unaccounted(entity: Entity, legacyRows: Int64, accounted: Int64)
    /// The mapping has errors `ledgerlift mapping check` reports (``Backfill/refusals(in:)``):
    /// nothing was migrated or written. The report is the check's, whole.
    case mappingRejected(MappingReport)

    public var description: String {
        switch self {
        case .anotherLegacyDatabase(let runID, let stored, let given):
            "this store holds backfill \(runID) of \(stored), but --legacy points at \(given). "
                + "Point --legacy at the database the store was filled from, use another store for another database, "
                + "or start over with `ledgerlift store reset --store … --yes`."
        case .anotherMapping(let runID, let stored, let given):
            "this store holds backfill \(runID), made with another mapping (fingerprint \(stored.prefix(16)); "
                + "this mapping is \(given.prefix(16))). Events already stored would contradict the new mapping's. "
                + "To iterate on a mapping: `ledgerlift backfill --dry-run …`, then `ledgerlift store reset --store … --yes`, "
                + "then backfill again (docs/mapping.md)."
        case .busy(let holder):
            "another backfill or reset is running on this store (\(holder)); wait for it, or rerun with --wait"
        case .unaccounted(let entity, let legacyRows, let accounted):
            "\(entity): the mapping query returns \(legacyRows) rows but the run accounted for \(accounted) "
                + "(migrated + quarantined): rows were lost; please report this as a bug"
        case .mappingRejected(let report):
            "the mapping \(report.mappingFile) has errors, so nothing was migrated or appended: "
                + Backfill.refusals(in: report).map(\.description).joined(separator: "; ")
                + ". Fix them and run `ledgerlift mapping check` (docs/mapping.md), then the backfill again."
        }
    }
}

/// Which legacy database a run read: the cluster's `system_identifier` (from
/// `pg_control_system()`), the database's name and oid. Two databases with the same name on two
/// servers, or a database dropped and re-created, differ.
public struct LegacyIdentity: Sendable, Hashable, CustomStringConvertible {
    public let systemIdentifier: String
    public let databaseName: String
    public let databaseOID: String

    public init(systemIdentifier: String, databaseName: String, databaseOID: String) {
        self.systemIdentifier = systemIdentifier
        self.databaseName = databaseName
        self.databaseOID = databaseOID
    }

    /// The stored form: `system_identifier/oid/name`.
    public var text: String { "\(systemIdentifier)/\(databaseOID)/\(databaseName)" }

    /// Reads back ``text``.
    public init?(text: String) {
        let parts = text.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3 else { return nil }
        self.init(systemIdentifier: String(parts[0]), databaseName: String(parts[2]), databaseOID: String(parts[1]))
    }

    public var description: String {
        "legacy database \"\(databaseName)\" (oid \(databaseOID) on cluster \(systemIdentifier))"
    }

    /// The SQL that reads the identity of the database a session is connected to.
    static let query = """
        SELECT (SELECT system_identifier::text FROM pg_control_system()), current_database(),
               (SELECT oid::text FROM pg_database WHERE datname = current_database())
        """
}
