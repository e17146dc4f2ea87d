import Billing
import TextFormats
import Postgres

/// Where one canonical entity's rows come from: the mapping's query (and history query) over
/// the legacy database, and how a result row becomes a canonical row.
public struct EntitySource: Sendable {
    public let entity: Entity
    /// Returns the canonical columns (and any extra columns, carried as attributes).
    public let query: String
    /// Past versions: the same columns plus `valid_from`.
    public let historyQuery: String?
    /// Turns one result row into a canonical row or a reason to quarantine it.
    public let convert: @Sendable (Row) -> ConvertedRow
    /// The mapping's own checks for this entity: rules only the user's schema can state (a
    /// cached balance that must equal its rows), each quarantining the keys its query returns.
    public let checks: [SourceCheck]
    /// How the query writes amounts: cross-row rules that compare amounts of two entities
    /// bring both to minor units with it.
    public let amounts: MappingFile.AmountUnit
    /// The currency of rows that have none, as the converter applies it.
    public let defaultCurrency: Currency?
    /// Per currency, the exponent the legacy system wrote minor amounts with
    /// (`currency_exponents`), as the converter applies it: cross-row rules bring amounts to
    /// the same minor units.
    public let currencyExponents: [Currency: Int]
    /// The current rows of the keys in `$1` (an array of key texts, bound as a text array
    /// literal): the mapping's `by_key`, else ``query`` filtered on its key column
    /// (``MappingFile/EntityMapping/byKeySQL``). Shadow mode reads each touched key with it.
    public let byKeyQuery: String
    /// The legacy tables whose changes touch the entity, and how a changed row of each names the
    /// keys it touches (``MappingFile/Source/touchedKeysSQL(recordedColumns:)``). Empty for an
    /// entity that shadow mode does not follow (read from a file, or mapped without sources).
    public let sources: [MappingFile.Source]

    /// - Parameters:
    ///   - byKeyQuery: the by-key statement; `nil` wraps `query` in a filter on its key column.
    ///   - sources: the mapping's `sources` of the entity (shadow mode).
    public init(
        entity: Entity, query: String, historyQuery: String?, checks: [SourceCheck] = [],
        amounts: MappingFile.AmountUnit = .major, defaultCurrency: Currency? = nil,
        currencyExponents: [Currency: Int] = [:], byKeyQuery: String? = nil, sources: [MappingFile.Source] = [],
        convert: @escaping @Sendable (Row) -> ConvertedRow
    ) {
        self.entity = entity
        self.query = query
        self.byKeyQuery = byKeyQuery ?? MappingFile.EntityMapping(entity: entity, query: query).byKeySQL
        self.sources = sources
        self.historyQuery = historyQuery
        self.checks = checks
        self.amounts = amounts
        self.defaultCurrency = defaultCurrency
        self.currencyExponents = currencyExponents
        self.convert = convert
    }
}

/// A check a mapping file declares: SQL over the legacy database returning `(key, detail)` for
/// each row to quarantine with `reason`.
public struct SourceCheck: Sendable, Hashable {
    public let reason: String
    public let query: String

    public init(reason: String, query: String) {
        self.reason = reason
        self.query = query
    }
}

/// One legacy row after conversion.
public enum ConvertedRow: Sendable {
    /// A valid canonical row. History rows carry when the version became valid and, when the
    /// audit table says so, when it was replaced; `inferred` when a value was filled in (a
    /// default currency) rather than read.
    case canonical(CanonicalRow, validFrom: PostgresTimestamp?, validTo: PostgresTimestamp?, inferred: Bool)
    /// The row cannot be migrated: a stable reason code and a sentence naming column and value.
    case quarantined(key: String, reason: String, detail: String)
}
