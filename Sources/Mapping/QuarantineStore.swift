import Billing
import Postgres

/// Why a row is quarantined: a stable snake_case code that scripts, the quarantine table and the
/// docs rely on. An open set — the converter, the cross-row rules, the mapping's own `checks:`
/// and the backfill each add codes — so it is a struct of static codes rather than an enum.
public struct QuarantineReason: RawRepresentable, Sendable, Hashable, Comparable, CustomStringConvertible,
    ExpressibleByStringLiteral
{
    public let rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ code: String) { self.rawValue = code }
    public init(stringLiteral value: String) { self.rawValue = value }

    /// The code, e.g. `amount_not_minor_unit`.
    public var code: String { rawValue }
    public var description: String { rawValue }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    // The row converter's reasons (one row on its own).
    /// The key column is NULL, empty, or not returned.
    public static let keyMissing: Self = "key_missing"
    /// A column the canonical model requires is NULL (or the query does not return it).
    public static let requiredValueMissing: Self = "required_value_missing"
    /// The row has no currency and the mapping sets no `default_currency`.
    public static let currencyMissing: Self = "currency_missing"
    /// The currency is not a usable ISO 4217 code (`XXY`, `usd`, `XAU`).
    public static let currencyUnknown: Self = "currency_unknown"
    /// An amount is not a whole number of minor units (12.345 USD). Never rounded.
    public static let amountNotMinorUnit: Self = "amount_not_minor_unit"
    /// An amount does not fit in a signed 64-bit count of minor units.
    public static let amountOverflow: Self = "amount_overflow"
    /// An amount is not a number (`NaN`, or text that is not a decimal).
    public static let amountNotANumber: Self = "amount_not_a_number"
    /// A status-like column holds a value outside its canonical vocabulary.
    public static let statusUnknown: Self = "status_unknown"
    /// Any other value that does not fit its column (a malformed or infinite timestamp, …).
    public static let valueInvalid: Self = "value_invalid"

    // The backfill's own reasons (the run, not one row).
    /// The key is longer than ``Quarantine/maximumKeyBytes``: no stream id can hold it.
    public static let keyTooLong: Self = "key_too_long"
    /// Several rows of the mapping query share one key: none is migrated, the entry holds them all.
    public static let duplicateKey: Self = "duplicate_key"
    /// A parent row (the customer of an invoice, …) is quarantined, so its children are too.
    public static let parentQuarantined: Self = "parent_quarantined"
    /// An interrupted run migrated the row, then it was deleted from legacy before the resume.
    public static let rowVanished: Self = "row_vanished"
    /// The history query returns versions of a key the current query does not (a hard-deleted
    /// row): kept in the entry's raw, nothing migrated.
    public static let historyWithoutCurrentRow: Self = "history_without_current_row"

    /// Every reason the row converter gives, in the order it checks them.
    public static var allCases: [Self] { converterReasons }

    /// Every reason the row converter gives, in the order it checks them.
    public static let converterReasons: [Self] = [
        .keyMissing, .requiredValueMissing, .currencyMissing, .currencyUnknown, .amountNotMinorUnit, .amountOverflow,
        .amountNotANumber, .statusUnknown, .valueInvalid,
    ]

    /// What a known code means, in one line (for docs and summaries); `nil` for a code only the
    /// mapping's own `checks:` define.
    public var summary: String? { Self.summaries[self] }

    static let summaries: [Self: String] = [
        .keyMissing: "the key column is NULL or not returned",
        .requiredValueMissing: "a required canonical column is NULL or not returned",
        .currencyMissing: "no currency, and no default_currency applies",
        .currencyUnknown: "the currency is not a usable ISO 4217 code",
        .amountNotMinorUnit: "an amount is not a whole number of minor units (never rounded)",
        .amountOverflow: "an amount does not fit in 64-bit minor units",
        .amountNotANumber: "an amount is not a number",
        .statusUnknown: "a status, kind or interval outside the canonical vocabulary",
        .valueInvalid: "a value that does not fit its column's type",
        .duplicateKey: "several legacy rows share one key; the entry holds them all",
        .keyTooLong: "the key is longer than 1,024 bytes, more than a stream id can hold",
        .parentQuarantined: "the row's parent is quarantined",
        .rowVanished: "deleted from legacy after an interrupted run had migrated it",
        .historyWithoutCurrentRow: "history rows whose key has no current row (kept in raw)",
    ]
}

/// The quarantine table of a store (`<schema>.quarantine`): one entry per entity and key, with
/// the reason, a sentence naming column and value, and the raw legacy row (or rows), so nothing
/// that could not be migrated is lost. The one place that reads and writes it: the backfill
/// writes and releases entries, the diff lists them, the summary counts them.
public struct QuarantineStore: Sendable {
    /// The event store's schema, which holds the table.
    public let schema: String

    public init(schema: String = "ledgerlift") { self.schema = schema }

    /// One entry: a legacy row (or the rows of a duplicated key) kept aside.
    public struct Entry: Sendable, Hashable {
        public var entity: Entity
        /// The legacy key, or `<null>#…` (a digest of the row) for a row without one.
        public var key: String
        public var reason: QuarantineReason
        public var detail: String
        /// The raw legacy row as a JSON object of text values (an array of them for a duplicated key).
        public var raw: String
        /// The backfill run that wrote it.
        public var runID: String

        public init(entity: Entity, key: String, reason: QuarantineReason, detail: String, raw: String, runID: String) {
            self.entity = entity
            self.key = key
            self.reason = reason
            self.detail = detail
            self.raw = raw
            self.runID = runID
        }
    }

    var table: String { quoteIdentifier(schema) + ".quarantine" }

    /// Creates the table if it does not exist (idempotent).
    public func create(_ session: Session) throws {
        try session.execute(
            """
            CREATE TABLE IF NOT EXISTS \(table) (
                entity       text NOT NULL,
                entity_key   text NOT NULL,
                reason       text NOT NULL,
                detail       text NOT NULL,
                raw          jsonb NOT NULL,
                run_id       text NOT NULL,
                recorded_at  timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (entity, entity_key)
            )
            """)
    }

    /// Whether the table exists (a store nothing was ever backfilled into has none).
    public func exists(_ session: Session) throws -> Bool {
        try session.query("SELECT to_regclass($1) IS NOT NULL", [table]).rows[0].decode(at: 0, as: Bool.self)
    }

    /// Writes entries; an entry for a key already quarantined replaces it (a rerun's verdict wins).
    public func write(_ entries: [Entry], _ tx: Session) throws {
        guard !entries.isEmpty else { return }
        try tx.execute(
            """
            INSERT INTO \(table) (entity, entity_key, reason, detail, raw, run_id)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[])
            ON CONFLICT (entity, entity_key) DO UPDATE
                SET reason = EXCLUDED.reason, detail = EXCLUDED.detail, raw = EXCLUDED.raw, run_id = EXCLUDED.run_id,
                    recorded_at = now()
            """,
            [
                PostgresArray(entries.map(\.entity.rawValue)), PostgresArray(entries.map(\.key)),
                PostgresArray(entries.map(\.reason.rawValue)), PostgresArray(entries.map(\.detail)),
                PostgresArray(entries.map { PostgresJSON($0.raw) }), PostgresArray(entries.map(\.runID)),
            ])
    }

    /// Removes the entries of keys that migrated after all (fixed in legacy between attempts).
    public func release(_ entity: Entity, keys: [String], _ tx: Session) throws {
        guard !keys.isEmpty else { return }
        try tx.execute(
            "DELETE FROM \(table) WHERE entity = $1 AND entity_key = ANY($2::text[])",
            [entity.rawValue, PostgresArray(keys)])
    }

    /// Removes `runID`'s entries of `entity` whose keys lie in `(after, through]` (bytewise;
    /// `nil` bounds are open) — and, with `keyless`, its entries of rows without a key — before
    /// a key range is read again and its verdicts written anew.
    public func clear(
        _ entity: Entity, runID: String, after lower: String?, through upper: String?, keyless: Bool, in session: Session
    ) throws {
        var sql = "DELETE FROM \(table) WHERE entity = $1 AND run_id = $2 AND ((TRUE"
        var parameters: [(any PostgresEncodable)?] = [entity.rawValue, runID]
        if let lower {
            parameters.append(lower)
            sql += " AND entity_key COLLATE \"C\" > $\(parameters.count)"
        }
        if let upper {
            parameters.append(upper)
            sql += " AND entity_key COLLATE \"C\" <= $\(parameters.count)"
        }
        if keyless {
            parameters.append(Quarantine.nullKey + "#")
            sql += ") OR starts_with(entity_key, $\(parameters.count)))"
        } else {
            sql += "))"
        }
        try session.execute(sql, parameters)
    }

    /// The quarantined keys of `entity`, bytewise ordered (an array, not a `Set`: Swift's string
    /// equality would merge canonically equivalent keys that PostgreSQL keeps apart).
    public func keys(of entity: Entity, in session: Session) throws -> [String] {
        try session.query(
            "SELECT entity_key FROM \(table) WHERE entity = $1 ORDER BY entity_key COLLATE \"C\"", [entity.rawValue]
        ).rows.map { try $0.decode(at: 0, as: String.self) }
    }

    /// The entries of `entity`, by key (bytewise). With `unlessIn`, those whose key the given
    /// table's `keyColumn` does not hold: a key the read model holds is compared, whatever the
    /// quarantine says (a stale entry, or one of two legacy rows of a key).
    public func entries(
        of entity: Entity, unlessIn readModel: (table: String, keyColumn: String)? = nil, in session: Session
    ) throws -> [Entry] {
        var sql = "SELECT q.entity_key, q.reason, q.detail, q.raw::text, q.run_id FROM \(table) AS q WHERE q.entity = $1"
        if let readModel {
            sql += " AND NOT EXISTS (SELECT 1 FROM \(readModel.table) AS t WHERE t.\(quoteIdentifier(readModel.keyColumn)) = q.entity_key)"
        }
        sql += " ORDER BY q.entity_key COLLATE \"C\""
        return try session.query(sql, [entity.rawValue]).rows.map { row in
            Entry(
                entity: entity, key: try row.decode(at: 0), reason: QuarantineReason(try row.decode(at: 1, as: String.self)),
                detail: try row.decode(at: 2), raw: try row.decode(at: 3), runID: try row.decode(at: 4))
        }
    }

    /// Quarantined legacy rows per reason for a run (a duplicated key's entry counts each of its rows).
    public func rowsByReason(runID: String, in session: Session) throws -> [(reason: QuarantineReason, rows: Int64)] {
        try session.query(
            """
            SELECT reason, sum(CASE WHEN reason = 'duplicate_key' AND jsonb_typeof(raw) = 'array' THEN jsonb_array_length(raw)
                                    ELSE 1 END)::int8
            FROM \(table) WHERE run_id = $1 GROUP BY reason ORDER BY reason
            """, [runID]
        ).rows.map { (QuarantineReason(try $0.decode(at: 0, as: String.self)), try $0.decode(at: 1, as: Int64.self)) }
    }
}
