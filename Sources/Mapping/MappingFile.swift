import Billing
import TextFormats
import Foundation
import Postgres

/// The mapping file: the user's legacy schema in, canonical rows out (ARCHITECTURE §3).
///
/// For each canonical entity it holds one SQL query over the legacy database that returns the
/// entity's canonical columns (extra columns become attributes), the legacy tables whose
/// changes touch the entity, and optionally a history query returning past versions with a
/// `valid_from`; or, instead of the query, a YAML file of rows (`file:`, for data kept outside
/// the database, such as a plan catalog), turned into a `VALUES` query. File-level `amounts`,
/// `default_currency` and `currency_exponents` can be overridden per entity; `receivables`
/// states the legacy system's receivable semantics.
///
/// ```yaml
/// version: 1
/// amounts: major
/// entities:
///   invoice:
///     key: invoice_id
///     query: SELECT i.id::text AS invoice_id, ... FROM invoices i
///     sources:
///       - { table: invoices, key: id }
/// ```
///
/// Load it with ``load(path:)`` or ``init(yaml:file:)``; check it against a live database with
/// ``MappingChecker``; convert rows with ``converter(for:)``.
public struct MappingFile: Sendable, Hashable {
    /// The mapping format this Ledgerlift reads.
    public static let supportedVersion = 1

    /// How legacy amount columns are written.
    public enum AmountUnit: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        /// Decimals in the currency's major unit (`12.30` USD): converted exactly to minor units
        /// with the row currency's exponent.
        case major
        /// Integers already in minor units (`1230` for 12.30 USD).
        case minor

        public var description: String { rawValue }
    }

    /// A per-entity `default_currency`: inherit the file's, none at all (`null`), or a currency.
    public enum CurrencyDefault: Sendable, Hashable {
        case inherited
        case none
        case currency(Currency)
    }

    /// The legacy system's receivable semantics (`receivables:`): whether a refund or a lost
    /// chargeback reopens the invoice it took money from. The diff's receivable invariant
    /// follows them; they are part of the mapping's fingerprint.
    public struct ReceivableRules: Sendable, Hashable, CustomStringConvertible {
        /// What taking money back does to the invoice it paid.
        public enum Effect: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
            /// The invoice stays paid: the money returned is a cost, not a debt (Stripe's rule
            /// for refunds).
            case keepPaid = "keep_paid"
            /// The invoice is owed again (a chargeback lost: the customer has not paid after all).
            case reopen

            public var description: String { rawValue }
        }

        /// What a refund does to the invoice of the refunded payment; `keep_paid` by default.
        public var refunds: Effect
        /// What a lost chargeback does to the invoice of the disputed payment; `keep_paid` by
        /// default (Stripe's rule, like refunds: the loss is a cost, the invoice stays paid).
        public var chargebacks: Effect

        public init(refunds: Effect = .keepPaid, chargebacks: Effect = .keepPaid) {
            self.refunds = refunds
            self.chargebacks = chargebacks
        }

        /// The rules when the file says nothing (Stripe's, which the canonical model's receivable
        /// rule is): neither a refund nor a lost chargeback reopens the invoice.
        public static let standard = ReceivableRules()

        /// `refunds: keep_paid, chargebacks: keep_paid`
        public var description: String { "refunds: \(refunds), chargebacks: \(chargebacks)" }
    }

    /// The exponents `currency_exponents` may declare: ISO 4217 uses 0 to 4.
    public static let declarableExponents = 0...4

    /// A legacy table whose changes touch an entity (for shadow mode), and how a changed row of
    /// it names the entity's keys it touches: either a column of the table holding the key
    /// (`{ table: legacy.invoices, key: id }`), or SQL over the changed rows
    /// (`{ table: legacy.customers, columns: [id], keys: "SELECT i.id::text FROM legacy.invoices i
    /// JOIN changed c ON i.customer_id = c.id" }`) — a join, a small query, a filter — for a key
    /// that is not a column of the changed row (an invoice's currency borrowed from its customer,
    /// a polymorphic audit table).
    public struct Source: Sendable, Hashable, CustomStringConvertible {
        /// The table, optionally schema-qualified (`legacy.invoices`).
        public var table: String
        /// The column of `table` that holds the entity's key (`id`, `invoice_id`); `nil` for a
        /// source whose keys come from ``keys``.
        public var key: String?
        /// The columns of `table` that ``keys`` reads from the relation `changed`: capture
        /// records them (with the table's primary key) for every changed row. Empty for a
        /// ``key`` source.
        public var columns: [String]
        /// SQL returning the touched keys (text, first column) from the relation `changed`:
        /// the changed rows of `table` (each old and each new image), typed as `table`'s rows,
        /// with only ``columns`` (and the primary key) set. See ``touchedKeysSQL``.
        public var keys: String?

        /// A source whose key is a column of the table.
        public init(table: String, key: String) {
            self.table = table
            self.key = key
            self.columns = []
            self.keys = nil
        }

        /// A source whose keys come from SQL over the changed rows.
        public init(table: String, columns: [String], keys: String) {
            self.table = table
            self.key = nil
            self.columns = columns
            self.keys = MappingFile.normalizedQuery(keys)
        }

        public var description: String { key.map { "\(table).\($0)" } ?? "\(table) (keys by SQL)" }

        /// ``table`` as SQL: each dot-separated part quoted unless the mapping quoted it
        /// (`legacy.invoices` → `"legacy"."invoices"`), as `mapping check` and capture read it.
        public var sqlTable: String { Self.sqlName(table) }

        /// The columns of ``table`` this source needs in each captured row image, besides the
        /// table's primary key: the ``key`` column, or the SQL form's ``columns``, unquoted (as
        /// capture names them in `old_row` and `new_row`).
        public var neededColumns: [String] {
            if let key { return [Self.unquoted(key)] }
            return columns.map(Self.unquoted)
        }

        /// The columns capture records for this source on a table whose primary key is
        /// `primaryKey`: the primary key, then ``neededColumns`` not already in it. The tailer
        /// may pass any superset (what `captured_tables.columns` lists for the table) to
        /// ``touchedKeysSQL(recordedColumns:)``; `mapping check` proves the SQL works with exactly
        /// these.
        public func recordedColumns(primaryKey: [String]) -> [String] {
            primaryKey + neededColumns.filter { !primaryKey.contains($0) }
        }

        /// The statement that returns the keys this source touches, for one parameter: `$1`, a
        /// JSON array of row images of `table` (objects of column → value, as capture records
        /// them: each change's `old_row` and `new_row` that is not NULL). Only the recorded
        /// columns are in `changed`, so a `keys` query that reads another column fails (which
        /// `mapping check` reports) instead of silently seeing NULL. For a ``key`` source it
        /// reads that column of each image. One text column, `key`, distinct, never NULL.
        public func touchedKeysSQL(recordedColumns: [String]) -> String {
            if let key {
                let field = Postgres.quoteLiteral(Self.unquoted(key))
                return "SELECT DISTINCT r ->> \(field) AS key FROM jsonb_array_elements($1::jsonb) AS r "
                    + "WHERE r ->> \(field) IS NOT NULL"
            }
            let list = recordedColumns.map { Postgres.quoteIdentifier(Self.unquoted($0)) }.joined(separator: ", ")
            return """
                WITH changed AS MATERIALIZED (
                    SELECT \(list) FROM jsonb_populate_recordset(NULL::\(sqlTable), $1::jsonb)
                )
                SELECT DISTINCT key::text FROM (
                \(keys ?? "")) AS touched(key)
                WHERE key IS NOT NULL
                """
        }

        /// A table name as SQL: each dot-separated part quoted unless it already is.
        public static func sqlName(_ table: String) -> String {
            table.split(separator: ".", omittingEmptySubsequences: false)
                .map { $0.hasPrefix("\"") ? String($0) : Postgres.quoteIdentifier(String($0)) }.joined(separator: ".")
        }

        /// A column name as the mapping wrote it, without the quotes of a quoted one.
        public static func unquoted(_ column: String) -> String {
            guard column.count >= 2, column.hasPrefix("\""), column.hasSuffix("\"") else { return column }
            return String(column.dropFirst().dropLast()).replacing("\"\"", with: "\"")
        }
    }

    /// How one canonical entity is read from the legacy database.
    public struct EntityMapping: Sendable, Hashable {
        public var entity: Entity
        /// The canonical key column the query returns (always ``Entity/keyColumn``).
        public var key: String
        /// SQL over the legacy database returning the canonical columns (and attributes).
        /// Trailing semicolons are removed and the text ends with a newline, so it can be
        /// wrapped as a subquery even when its last line ends in a `--` comment.
        public var query: String
        /// Legacy tables whose changes touch this entity.
        public var sources: [Source]
        /// `by_key`: the same columns as ``query`` for the keys in `$1` (a `text[]`), written so
        /// it costs index lookups — the query with a predicate on the indexed column
        /// (`WHERE c.id = ANY($1::bigint[])`), where wrapping ``query`` in a filter on its
        /// `…_id::text` output cannot use an index. Shadow mode reads changed keys with it
        /// (``byKeySQL``); `mapping check` proves it returns what ``query`` does.
        public var byKey: String?
        /// Past versions: the canonical columns plus `valid_from`; `nil` when there are none.
        public var historyQuery: String?
        /// The entity's own `amounts`, or `nil` to use the file's.
        public var amounts: AmountUnit?
        /// The entity's own `default_currency`.
        public var defaultCurrency: CurrencyDefault
        /// Rules of the legacy schema that rows must satisfy (`checks:`): each query returns
        /// `(key, detail)` for the rows to quarantine with its `reason`.
        public var checks: [SourceCheck]
        /// The entity's own `currency_exponents`: per currency, the exponent the legacy system
        /// wrote it with. Each entry overrides the file's for that currency.
        public var currencyExponents: [Currency: Int]
        /// The rows file (`file:`) as the mapping names it, when the entity is read from one;
        /// ``query`` is then the `VALUES` query built from its rows, and there are no
        /// ``sources`` (no legacy table changes it) and no history.
        public var file: String?
        /// `write_back`: how reverse sync writes this entity's canonical rows back into legacy
        /// (``WriteBack``); `nil` when the mapping says nothing (reverse sync cannot write it).
        /// Not part of the ``MappingFile/fingerprint``: it does not change how legacy is read, so
        /// adding it to a mapping already backfilled keeps that backfill (and the tailer) valid.
        public var writeBack: WriteBack?

        public init(
            entity: Entity, query: String, sources: [Source] = [], historyQuery: String? = nil,
            amounts: AmountUnit? = nil, defaultCurrency: CurrencyDefault = .inherited, checks: [SourceCheck] = [],
            currencyExponents: [Currency: Int] = [:], file: String? = nil, byKey: String? = nil,
            writeBack: WriteBack? = nil
        ) {
            self.entity = entity
            self.key = entity.keyColumn
            self.query = MappingFile.normalizedQuery(query)
            self.sources = sources
            self.byKey = byKey.map(MappingFile.normalizedQuery)
            self.historyQuery = historyQuery.map(MappingFile.normalizedQuery)
            self.amounts = amounts
            self.defaultCurrency = defaultCurrency
            self.checks = checks.map { SourceCheck(reason: $0.reason, query: MappingFile.normalizedQuery($0.query)) }
            self.currencyExponents = currencyExponents
            self.file = file
            self.writeBack = writeBack
        }

        /// The statement that reads the current rows of the keys in `$1` (a `text[]`): ``byKey``
        /// when the mapping gives one, else ``query`` filtered on its key column — correct, but
        /// a scan of the query for each call on most schemas.
        public var byKeySQL: String {
            if let byKey { return byKey }
            return "SELECT * FROM (\n\(query)) AS q WHERE q.\(Postgres.quoteIdentifier(key)) = ANY($1::text[])"
        }
    }

    /// The file's `version`.
    public var version: Int
    /// The file-level `amounts`; `nil` when every entity with amounts sets its own.
    public var amounts: AmountUnit?
    /// The file-level `default_currency`, if any.
    public var defaultCurrency: Currency?
    /// The file-level `currency_exponents`: per currency, the exponent the legacy system wrote
    /// it with where that differs from ISO 4217 (an entry equal to ISO's is allowed and changes
    /// nothing). Only `amounts: minor` reads it.
    public var currencyExponents: [Currency: Int]
    /// The legacy system's receivable semantics (`receivables:`).
    public var receivables: ReceivableRules
    /// The mapped entities, in canonical order (``Entity/allCases``). Entities may be omitted.
    public private(set) var entities: [EntityMapping]
    /// Where the mapping came from (a path, or a label for text loaded directly).
    public var file: String

    /// A mapping built in code (tests, generated mappings).
    ///
    /// - Important: Unlike ``init(yaml:file:)``, this does not validate; an entity with amount
    ///   columns and no `amounts` anywhere converts as `major`.
    public init(
        version: Int = MappingFile.supportedVersion, amounts: AmountUnit?, defaultCurrency: Currency? = nil,
        currencyExponents: [Currency: Int] = [:], receivables: ReceivableRules = .standard,
        entities: [EntityMapping], file: String = "<mapping>"
    ) {
        self.version = version
        self.amounts = amounts
        self.defaultCurrency = defaultCurrency
        self.currencyExponents = currencyExponents
        self.receivables = receivables
        self.entities = entities.sorted { Self.order($0.entity) < Self.order($1.entity) }
        self.file = file
    }

    /// Reads and validates a mapping file.
    ///
    /// - Throws: ``MappingError`` listing every problem, each with the file, entity, field and
    ///   line.
    public static func load(path: String) throws(MappingError) -> MappingFile {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            let reason =
                (error as? CocoaError)?.code == .fileReadNoSuchFile ? "no such file" : "\(error.localizedDescription)"
            throw MappingError(
                file: path, issues: [.init(.unreadableFile, "cannot read the mapping file: \(reason)")])
        }
        return try MappingFile(yaml: text, file: path)
    }

    /// Parses and validates mapping YAML.
    ///
    /// An entity's `file:` (rows kept in a YAML file) is read now, relative to the directory of
    /// `file` (for a label without one, the working directory).
    ///
    /// - Parameters:
    ///   - yaml: The file's text.
    ///   - file: The path or label used in error messages.
    /// - Throws: ``MappingError`` listing every problem found.
    public init(yaml: String, file: String = "<mapping>") throws(MappingError) {
        var parser = MappingFileParser(file: file)
        self = try parser.parse(yaml)
    }

    /// The mapping of `entity`, if the file maps it.
    public subscript(entity entity: Entity) -> EntityMapping? {
        entities.first { $0.entity == entity }
    }

    /// The mapping of `entity`, if the file maps it (same as ``subscript(entity:)``).
    public subscript(_ entity: Entity) -> EntityMapping? {
        self[entity: entity]
    }

    /// Mapped entities without `write_back`: reverse sync cannot write their rows back, so a
    /// cutover cannot pass its write switch with this mapping (the cutover's "reverse sync
    /// ready" gate reads it). Empty when every mapped entity has one.
    public var entitiesWithoutWriteBack: [Entity] {
        entities.filter { $0.writeBack == nil }.map(\.entity)
    }

    /// Canonical entities the file does not map.
    public var unmappedEntities: [Entity] {
        Entity.allCases.filter { self[entity: $0] == nil }
    }

    /// The `amounts` that apply to `entity`: its own, else the file's, else `major`.
    public func amounts(for entity: Entity) -> AmountUnit {
        self[entity: entity]?.amounts ?? amounts ?? .major
    }

    /// The `default_currency` that applies to `entity`: its own (possibly none), else the file's.
    public func defaultCurrency(for entity: Entity) -> Currency? {
        switch self[entity: entity]?.defaultCurrency ?? .inherited {
        case .inherited: defaultCurrency
        case .none: nil
        case .currency(let currency): currency
        }
    }

    /// The `currency_exponents` that apply to `entity`: the file's, each overridden by the
    /// entity's own entry for the same currency. Empty when neither declares any.
    ///
    /// Only meaningful under `amounts: minor`; under `major` the converter ignores them.
    public func currencyExponents(for entity: Entity) -> [Currency: Int] {
        currencyExponents.merging(self[entity: entity]?.currencyExponents ?? [:]) { _, own in own }
    }

    /// The converter for `entity`'s rows with the settings that apply to it; `nil` when the
    /// entity is not mapped.
    public func converter(for entity: Entity) -> RowConverter? {
        guard self[entity: entity] != nil else { return nil }
        return RowConverter(
            entity: entity, amounts: amounts(for: entity), defaultCurrency: defaultCurrency(for: entity),
            currencyExponents: currencyExponents(for: entity))
    }

    /// A stable identity of what the mapping means (not how it is formatted): the same
    /// settings and queries give the same fingerprint, whatever the comments and layout.
    /// 32 lowercase hex digits.
    ///
    /// An entity read from a file is identified by its rows (its `VALUES` query), not by the
    /// file's path or layout. `currency_exponents` and `receivables` are included only when
    /// they say something (declared exponents; rules other than the defaults), so a mapping
    /// that does not use them keeps the fingerprint it had before they existed, and its stored
    /// backfill stays resumable.
    public var fingerprint: String {
        var pairs: [(String, JSONValue)] = [
            ("version", .integer(Int64(version))),
            ("amounts", amounts.map { .string($0.rawValue) } ?? .null),
            ("default_currency", defaultCurrency.map { .string($0.code) } ?? .null),
        ]
        if !currencyExponents.isEmpty {
            pairs.append(("currency_exponents", Self.fingerprintValue(currencyExponents)))
        }
        if receivables != .standard {
            pairs.append(
                (
                    "receivables",
                    .object([
                        ("refunds", .string(receivables.refunds.rawValue)),
                        ("chargebacks", .string(receivables.chargebacks.rawValue)),
                    ])
                ))
        }
        pairs.append(
            (
                "entities",
                .array(
                    entities.map { mapping in
                        let currency: JSONValue =
                            switch mapping.defaultCurrency {
                            case .inherited: .string("inherited")
                            case .none: .null
                            case .currency(let c): .string(c.code)
                            }
                        var fields: [(String, JSONValue)] = [
                            ("entity", .string(mapping.entity.rawValue)),
                            ("key", .string(mapping.key)),
                            ("query", .string(mapping.query)),
                            ("history", mapping.historyQuery.map(JSONValue.string) ?? .null),
                            ("amounts", mapping.amounts.map { .string($0.rawValue) } ?? .null),
                            ("default_currency", currency),
                            (
                                "sources",
                                .array(
                                    mapping.sources.map { source in
                                        if let key = source.key {
                                            return .object([("table", .string(source.table)), ("key", .string(key))])
                                        }
                                        return .object([
                                            ("table", .string(source.table)),
                                            ("columns", .array(source.columns.map(JSONValue.string))),
                                            ("keys", .string(source.keys ?? "")),
                                        ])
                                    })
                            ),
                            (
                                "checks",
                                .array(
                                    mapping.checks.map {
                                        .object([("reason", .string($0.reason)), ("query", .string($0.query))])
                                    })
                            ),
                        ]
                        // Fields added after the first fingerprints appear only when set, so a
                        // mapping that does not use them keeps its fingerprint.
                        if let byKey = mapping.byKey { fields.append(("by_key", .string(byKey))) }
                        if !mapping.currencyExponents.isEmpty {
                            fields.append(("currency_exponents", Self.fingerprintValue(mapping.currencyExponents)))
                        }
                        return .object(fields)
                    })
            ))
        let uuid = DeterministicID.uuid5(namespace: Self.fingerprintNamespace, name: JSONValue.object(pairs).rendered)
        return uuid.uuidString.lowercased().replacing("-", with: "")
    }

    /// `{"HUF": 0, "ISK": 2}`, sorted by code.
    static func fingerprintValue(_ exponents: [Currency: Int]) -> JSONValue {
        .object(exponents.sorted { $0.key < $1.key }.map { ($0.key.code, .integer(Int64($0.value))) })
    }

    static let fingerprintNamespace = UUID(uuidString: "3f0c9a52-6d1e-5b7a-8c44-2a9e7d5b1f60")!

    static func order(_ entity: Entity) -> Int { Entity.allCases.firstIndex(of: entity)! }

    /// Trims surrounding whitespace and trailing semicolons, and ends the text with a newline.
    static func normalizedQuery(_ query: String) -> String {
        var text = Substring(query)
        func trim() {
            while let c = text.last, c.isWhitespace { text.removeLast() }
            while let c = text.first, c.isWhitespace { text.removeFirst() }
        }
        trim()
        while text.last == ";" {
            text.removeLast()
            trim()
        }
        return text.isEmpty ? "" : String(text) + "\n"
    }
}
