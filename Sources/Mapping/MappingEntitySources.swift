import Billing
import TextFormats
import Postgres

extension MappingFile {
    /// The backfill's view of the mapping: one ``EntitySource`` per mapped entity, in canonical
    /// order, each converting rows with ``RowConverter`` and the settings that apply to it.
    ///
    /// A row that carries a `valid_from` column is converted as a history row; its
    /// `valid_to` and whether a value was filled in (a default currency) travel with it.
    public func entitySources() -> [EntitySource] {
        entities.compactMap { mapping in
            guard let converter = converter(for: mapping.entity) else { return nil }
            return EntitySource(
                entity: mapping.entity, query: mapping.query, historyQuery: mapping.historyQuery,
                checks: mapping.checks, amounts: converter.amounts, defaultCurrency: converter.defaultCurrency,
                currencyExponents: converter.currencyExponents, byKeyQuery: mapping.byKeySQL, sources: mapping.sources
            ) { row in
                let isHistory = row.columns.index(of: RowConverter.validFromColumn) != nil
                switch isHistory ? converter.convertHistory(row) : converter.convert(row) {
                case .migrated(let migrated):
                    return .canonical(
                        migrated.row, validFrom: migrated.validFrom, validTo: migrated.validTo,
                        inferred: migrated.isInferred)
                case .quarantined(let quarantine):
                    return .quarantined(
                        key: quarantine.key, reason: quarantine.reason.rawValue, detail: quarantine.detail)
                }
            }
        }
    }
}
