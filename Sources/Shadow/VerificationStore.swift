import Billing
import Diff
import EventStore
import Postgres

/// The store-side record of shadow mode's checks, in the event store's schema beside the events
/// (as the backfill keeps its runs there): each verification (`shadow_verifications`), read by
/// the cutover's gates ("N clean verifications in a row over T minutes"), and each resync
/// (`shadow_resyncs`), which the handover check reads to know a gap was closed.
///
/// Created with `CREATE TABLE IF NOT EXISTS` by whoever writes first, like the backfill's tables:
/// a store that never ran a verification simply has none, and readers treat that as "no history".
public struct ShadowRecords: Sendable, Hashable {
    /// The event store's schema.
    public let schema: String

    public init(schema: String = EventStore().schema) {
        self.schema = schema
    }

    var s: String { quoteIdentifier(schema) }
    var verifications: String { s + ".shadow_verifications" }
    var resyncs: String { s + ".shadow_resyncs" }

    /// Creates both tables if missing (idempotent).
    public func create(_ session: Session) throws {
        try session.executeScript(
            """
            CREATE TABLE IF NOT EXISTS \(verifications) (
                id                      bigserial PRIMARY KEY,
                origin                  text NOT NULL,
                started_at              timestamptz NOT NULL,
                finished_at             timestamptz NOT NULL DEFAULT clock_timestamp(),
                -- The newest committed capture position when the check started (NULL: nothing
                -- captured, or capture not installed).
                legacy_xid              xid8,
                legacy_id               bigint,
                entities                text[] NOT NULL,
                verdict                 text NOT NULL CHECK (verdict IN ('clean', 'different', 'error')),
                rows_compared           bigint NOT NULL DEFAULT 0,
                -- Differences of the first pass, before re-verification.
                differences             bigint NOT NULL DEFAULT 0,
                -- Differences still there when re-checked after the tailer passed the legacy
                -- position: what the verdict is about.
                persistent_differences  bigint NOT NULL DEFAULT 0,
                broken_invariants       integer NOT NULL DEFAULT 0,
                error                   text,
                report                  jsonb
            );
            CREATE TABLE IF NOT EXISTS \(resyncs) (
                id                  bigserial PRIMARY KEY,
                started_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
                finished_at         timestamptz,
                -- pg_current_snapshot() of the legacy database before the resync's diff read it:
                -- every transaction this snapshot saw is in what the resync compared.
                legacy_snapshot     text NOT NULL,
                entities            text[] NOT NULL,
                differences_before  bigint,
                keys_synced         bigint,
                events_appended     bigint,
                differences_after   bigint,
                -- Why a recorded resync stopped (it has no finished_at then).
                error               text
            );
            ALTER TABLE \(resyncs) ADD COLUMN IF NOT EXISTS error text;
            """)
    }

    /// Whether `table` (`shadow_verifications`, `shadow_resyncs`) exists.
    func exists(_ table: String, _ session: Session) throws -> Bool {
        try session.query("SELECT to_regclass($1) IS NOT NULL", [s + "." + table]).rows[0].decode(at: 0, as: Bool.self)
    }

    /// Stores a finished verification.
    ///
    /// - Returns: the record with its `id` and `finishedAt` as stored.
    public func insert(_ record: VerificationRecord, in session: Session) throws -> VerificationRecord {
        try create(session)
        let row = try session.query(
            """
            INSERT INTO \(verifications) (origin, started_at, legacy_xid, legacy_id, entities, verdict, rows_compared,
                differences, persistent_differences, broken_invariants, error, report)
            VALUES ($1, $2, $3::xid8, $4, $5::text[], $6, $7, $8, $9, $10, $11, $12::jsonb)
            RETURNING id, finished_at
            """,
            [
                record.origin, record.startedAt, record.legacyPosition?.xid, record.legacyPosition?.id,
                PostgresArray(record.entities.map(\.rawValue)), record.verdict.rawValue, record.rowsCompared,
                record.differences, record.persistentDifferences, Int32(record.brokenInvariants), record.error,
                record.reportJSON,
            ]
        ).rows[0]
        var stored = record
        stored.id = try row.decode(at: 0, as: Int64.self)
        stored.finishedAt = try row.decode(at: 1, as: PostgresTimestamp.self)
        return stored
    }
}

/// One verification: a diff of the read models against legacy, under traffic, whose
/// differences were re-checked after the tailer had passed the legacy position.
public struct VerificationRecord: Sendable, Hashable {
    public enum Verdict: String, Sendable, Hashable, CaseIterable {
        /// No persistent difference, every invariant holds.
        case clean
        /// Persistent differences or broken invariants.
        case different
        /// The check could not run (``VerificationRecord/error`` says why).
        case error
    }

    /// The row id in `shadow_verifications` (0 before it is stored).
    public var id: Int64
    /// Who ran it: `shadow run`, `diff`, a test.
    public var origin: String
    public var startedAt: PostgresTimestamp
    public var finishedAt: PostgresTimestamp?
    /// The newest committed capture position when the check started.
    public var legacyPosition: CapturePosition?
    /// The entities compared.
    public var entities: [Entity]
    public var verdict: Verdict
    /// Distinct keys compared over all entities.
    public var rowsCompared: Int64
    /// Differences of the first pass (before re-verification).
    public var differences: Int64
    /// Differences that persisted once re-checked.
    public var persistentDifferences: Int64
    public var brokenInvariants: Int
    /// Why the check could not run (verdict `error`).
    public var error: String?
    /// The diff report in its `json` format (at most its `max_rows` differences listed per entity).
    public var reportJSON: String?

    public init(
        id: Int64 = 0, origin: String, startedAt: PostgresTimestamp, finishedAt: PostgresTimestamp? = nil,
        legacyPosition: CapturePosition?, entities: [Entity], verdict: Verdict, rowsCompared: Int64 = 0,
        differences: Int64 = 0, persistentDifferences: Int64 = 0, brokenInvariants: Int = 0, error: String? = nil,
        reportJSON: String? = nil
    ) {
        self.id = id
        self.origin = origin
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.legacyPosition = legacyPosition
        self.entities = entities
        self.verdict = verdict
        self.rowsCompared = rowsCompared
        self.differences = differences
        self.persistentDifferences = persistentDifferences
        self.brokenInvariants = brokenInvariants
        self.error = error
        self.reportJSON = reportJSON
    }
}

extension VerificationRecord {
    /// Takes the verdict and counts of `report`: `different` when anything persisted (or an
    /// invariant broke), the first pass's differences counted with those re-checked away.
    public mutating func record(_ report: DiffReport) {
        verdict = report.isClean ? .clean : .different
        entities = report.entities.map(\.entity)
        rowsCompared = report.entities.reduce(0) { $0 + $1.compared }
        persistentDifferences = report.differenceCount
        differences = report.entities.reduce(0) { $0 + $1.differenceCount + $1.resolvedByReverification }
        brokenInvariants = report.brokenInvariantCount
        error = nil
        reportJSON = report.rendered(.json)
    }
}

/// Reads the verifications shadow mode stored: the cutover's gates and `shadow status`.
public struct VerificationHistory: Sendable, Hashable {
    public let records: ShadowRecords

    public init(schema: String = EventStore().schema) {
        records = ShadowRecords(schema: schema)
    }

    /// The newest run of clean verifications: how many in a row up to the latest, and when the
    /// first of them started.
    public struct CleanStreak: Sendable, Hashable {
        /// Clean verifications since the last one that was not clean (or since the first).
        public var count: Int
        /// When the oldest verification of the streak started; `nil` when `count` is 0.
        public var since: PostgresTimestamp?
        /// When the newest one finished; `nil` when `count` is 0.
        public var lastAt: PostgresTimestamp?

        public init(count: Int, since: PostgresTimestamp?, lastAt: PostgresTimestamp?) {
            self.count = count
            self.since = since
            self.lastAt = lastAt
        }

        /// Whether the streak holds at least `minimum` verifications spanning at least `span`
        /// (from the first one's start to the last one's finish): the cutover's gate.
        public func satisfies(minimum: Int, over span: Duration) -> Bool {
            guard count >= minimum, let since, let lastAt else { return false }
            return lastAt.microsecondsSinceEpoch - since.microsecondsSinceEpoch >= Self.microseconds(span)
        }

        static func microseconds(_ d: Duration) -> Int64 {
            d.components.seconds * 1_000_000 + d.components.attoseconds / 1_000_000_000_000
        }
    }

    /// The current clean streak, in the order verifications finished (stored).
    ///
    /// A verification that is `different` or `error` ends a streak: an error proves nothing, and
    /// a gate must not pass over it. With `covering`, only clean verifications that compared
    /// every one of these entities count (a check of one entity says nothing of the others),
    /// while any verification that was not clean still ends the streak, whatever it compared.
    public func cleanStreak(covering entities: [Entity] = [], in session: Session) throws -> CleanStreak {
        guard try records.exists("shadow_verifications", session) else {
            return CleanStreak(count: 0, since: nil, lastAt: nil)
        }
        let table = records.verifications
        let row = try session.query(
            """
            WITH tail AS (
                SELECT * FROM \(table)
                 WHERE id > coalesce((SELECT max(id) FROM \(table) WHERE verdict <> 'clean'), 0)
                   AND entities @> $1::text[]
            )
            SELECT count(*)::int8, min(started_at), max(finished_at) FROM tail
            """, [PostgresArray(entities.map(\.rawValue))]
        ).rows[0]
        return CleanStreak(
            count: Int(try row.decode(at: 0, as: Int64.self)),
            since: try row.decode(at: 1, as: PostgresTimestamp?.self),
            lastAt: try row.decode(at: 2, as: PostgresTimestamp?.self))
    }

    /// The newest verifications, newest first.
    public func recent(limit: Int = 1, in session: Session) throws -> [VerificationRecord] {
        guard try records.exists("shadow_verifications", session) else { return [] }
        return try session.query(
            """
            SELECT id, origin, started_at, finished_at, legacy_xid::text, legacy_id, array_to_string(entities, ','), verdict, rows_compared,
                   differences, persistent_differences, broken_invariants, error, report::text
              FROM \(records.verifications) ORDER BY id DESC LIMIT $1
            """, [Int64(limit)]
        ).rows.map { row in
            let xid = try row.decode(at: 4, as: String?.self)
            let id = try row.decode(at: 5, as: Int64?.self)
            return VerificationRecord(
                id: try row.decode(at: 0, as: Int64.self), origin: try row.decode(at: 1, as: String.self),
                startedAt: try row.decode(at: 2, as: PostgresTimestamp.self),
                finishedAt: try row.decode(at: 3, as: PostgresTimestamp.self),
                legacyPosition: xid.flatMap { xid in id.map { CapturePosition(xid: xid, id: $0) } },
                entities: try row.decode(at: 6, as: String.self).split(separator: ",").compactMap {
                    Entity(rawValue: String($0))
                },
                verdict: VerificationRecord.Verdict(rawValue: try row.decode(at: 7, as: String.self)) ?? .error,
                rowsCompared: try row.decode(at: 8, as: Int64.self), differences: try row.decode(at: 9, as: Int64.self),
                persistentDifferences: try row.decode(at: 10, as: Int64.self),
                brokenInvariants: Int(try row.decode(at: 11, as: Int32.self)),
                error: try row.decode(at: 12, as: String?.self),
                reportJSON: try row.decode(at: 13, as: String?.self))
        }
    }
}
