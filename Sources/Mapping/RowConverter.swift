import Billing
import TextFormats
import Postgres

/// Turns one row of an entity's mapping query into a ``CanonicalRow``, or into a
/// ``Quarantine`` record saying exactly why it cannot be migrated.
///
/// Pure: no database, no clock, no state. The same row always gives the same answer, so the
/// backfill and shadow mode can never disagree about a row.
///
/// Rules, column by column (types from ``Entity/columns``):
/// - **key**: must be present and not empty (`key_missing`).
/// - **currency**: an ISO 4217 code (`currency_unknown`); NULL takes `default_currency` when one
///   applies (recorded as an ``InferredValue``), else `currency_missing` when the column is required.
/// - **amount**: `amounts: major` converts the decimal exactly with the currency's exponent
///   (JPY 0, USD 2, KWD 3); `amounts: minor` requires an integer, in units of `10^-e` of the
///   currency where `e` is the exponent the legacy system wrote it with (`currency_exponents`,
///   else ISO 4217's), converted exactly to ISO minor units (HUF written whole, `e` 0: `1000` is
///   `100000`). Inexact values are `amount_not_minor_unit` (never rounded), values beyond
///   `Int64` `amount_overflow`, `NaN` or non-numbers `amount_not_a_number`. An amount in another
///   currency than the row's (``ColumnDefinition/currencyColumn``) follows that currency.
/// - **status** (and line `kind`, plan `interval`): must be in the vocabulary (`status_unknown`).
/// - **timestamp**: `timestamptz` as is; `timestamp without time zone` read as UTC; infinite or
///   malformed values are `value_invalid`. **date**, **integer**, **boolean** likewise.
/// - **decimal** (`invoice_line.unit_amount`, a price in the major unit): kept as exact decimal
///   text; under `amounts: minor` it is read in minor units like the amounts and converted
///   exactly with the exponent the legacy system wrote the currency with (`1200` USD is
///   `12.00`), so a cents column can never pass as a price a hundred times too high.
/// - A NULL (or absent) required column is `required_value_missing`; an absent nullable column
///   reads as NULL.
/// - Every other column is an attribute, verbatim text.
///
/// The first problem found decides the reason (key, then currency, then columns in canonical
/// order).
public struct RowConverter: Sendable {
    /// The column a history query returns the version's start time in (required).
    public static let validFromColumn = "valid_from"
    /// The column a history query may return the version's end time in: when it was replaced
    /// by the next version (optional).
    public static let validToColumn = "valid_to"

    public let entity: Entity
    public let amounts: MappingFile.AmountUnit
    public let defaultCurrency: Currency?
    /// Per currency, the exponent the legacy system wrote its minor amounts with, where that is
    /// not ISO 4217's (`currency_exponents`); read only under `amounts: minor`.
    public let currencyExponents: [Currency: Int]
    /// ``currencyExponents`` without the entries that equal ISO's: the ones that convert.
    private let legacyExponents: [Currency: Int]
    /// Computed once: the converter runs for every legacy row.
    private let columns: [ColumnDefinition]
    private let keyColumn: String
    private let canonicalNames: Set<String>
    private let currencyColumn: ColumnDefinition?
    /// The currency column's canonical position (-1 when the entity has none).
    private let currencyIndex: Int

    /// - Parameters:
    ///   - entity: The canonical entity the rows belong to.
    ///   - amounts: How the query writes amounts.
    ///   - defaultCurrency: The currency for rows whose `currency` is NULL, if any.
    ///   - currencyExponents: Per currency, the exponent the legacy system wrote minor amounts
    ///     with where it differs from ISO 4217 (`currency_exponents`); ignored under `major`.
    public init(
        entity: Entity, amounts: MappingFile.AmountUnit = .major, defaultCurrency: Currency? = nil,
        currencyExponents: [Currency: Int] = [:]
    ) {
        self.entity = entity
        self.amounts = amounts
        self.defaultCurrency = defaultCurrency
        self.currencyExponents = currencyExponents
        self.legacyExponents = currencyExponents.filter { $0.key.minorUnitExponent != $0.value }
        self.columns = entity.columns
        self.keyColumn = entity.keyColumn
        self.canonicalNames = Set(entity.columns.map(\.name))
        self.currencyColumn = entity.column("currency")
        self.currencyIndex = entity.columns.firstIndex { $0.name == "currency" } ?? -1
    }

    /// Converts a row of the entity's current-state query.
    public func convert(_ row: Row) -> RowConversion {
        convert(row, history: false)
    }

    /// Converts a row of the entity's history query: the same rules, plus its `valid_from`
    /// (a required timestamp) and `valid_to` (an optional one); neither is an attribute.
    public func convertHistory(_ row: Row) -> RowConversion {
        convert(row, history: true)
    }

    private func convert(_ row: Row, history: Bool) -> RowConversion {
        let keyColumn = self.keyColumn
        let keyPosition = Self.position(of: keyColumn, hint: 0, in: row)
        let keyText = keyPosition.flatMap { row.values[$0] }
        do throws(Failure) {
            guard let key = keyText, !key.isEmpty else {
                throw Failure(
                    .keyMissing, keyColumn,
                    keyPosition == nil
                        ? "the query returns no \(keyColumn) column (the key of \(entity))"
                        : keyText == nil ? "\(keyColumn) (the key) is NULL" : "\(keyColumn) (the key) is empty")
            }
            var values = [String: CanonicalValue](minimumCapacity: columns.count)
            values[keyColumn] = .text(key)
            var inferences = [InferredValue]()
            let currency = try resolveCurrency(row, into: &values, inferences: &inferences)
            for (index, column) in columns.enumerated() where index != 0 && index != currencyIndex {
                let position = Self.position(of: column.name, hint: index, in: row)
                values[column.name] = try value(of: column, at: position, in: row, currency: currency)
            }
            var validFrom: PostgresTimestamp?
            var validTo: PostgresTimestamp?
            if history {
                let position = row.columns.index(of: Self.validFromColumn)
                guard let position, let text = row.values[position] else {
                    throw Failure(
                        .requiredValueMissing, Self.validFromColumn,
                        position != nil
                            ? "valid_from is NULL: a history row needs the time its version became valid"
                            : "the history query returns no valid_from column")
                }
                validFrom = try timestamp(text, column: Self.validFromColumn)
                if let position = row.columns.index(of: Self.validToColumn), let text = row.values[position] {
                    validTo = try timestamp(text, column: Self.validToColumn)
                }
            }
            var attributes = [String: String?]()
            let resultColumns = row.columns.columns
            for index in resultColumns.indices {
                let name = resultColumns[index].name
                // Fast path: a query returning the canonical columns first, in canonical order.
                if index < columns.count && columns[index].name == name { continue }
                guard !canonicalNames.contains(name), !(history && Self.isVersionColumn(name)), attributes[name] == nil
                else { continue }
                attributes[name] = .some(row.values[index])
            }
            return .migrated(
                MigratedRow(
                    row: CanonicalRow(entity: entity, values: values, attributes: attributes), validFrom: validFrom,
                    validTo: validTo, inferences: inferences))
        } catch {
            return .quarantined(
                Quarantine(
                    entity: entity, key: keyText.flatMap { $0.isEmpty ? nil : $0 } ?? Quarantine.nullKey,
                    reason: error.reason, detail: error.detail, column: error.column, raw: Self.raw(row)))
        }
    }

    /// `valid_from` or `valid_to`: the columns that place a history row in time.
    static func isVersionColumn(_ name: String) -> Bool {
        name == validFromColumn || name == validToColumn
    }

    /// Where `name` is in the row: checked first at `hint` (its canonical position, where a
    /// query that lists the canonical columns in order has it), else looked up by name.
    @inline(__always)
    private static func position(of name: String, hint: Int, in row: Row) -> Int? {
        let resultColumns = row.columns.columns
        if hint < resultColumns.count && resultColumns[hint].name == name { return hint }
        return row.columns.index(of: name)
    }

    // MARK: - Columns

    private func resolveCurrency(
        _ row: Row, into values: inout [String: CanonicalValue], inferences: inout [InferredValue]
    ) throws(Failure) -> Currency? {
        guard let definition = currencyColumn else { return nil }
        let position = Self.position(of: "currency", hint: currencyIndex, in: row)
        if let position, let code = row.values[position] {
            do {
                let currency = try Currency(code: code)
                values["currency"] = .text(currency.code)
                return currency
            } catch {
                throw Failure(
                    .currencyUnknown, "currency",
                    "currency \(Self.quoted(code)) is not a usable ISO 4217 code: \(error)")
            }
        }
        if let defaultCurrency {
            values["currency"] = .text(defaultCurrency.code)
            inferences.append(
                InferredValue(
                    column: "currency", value: defaultCurrency.code,
                    detail: "currency is NULL in the legacy row; default_currency \(defaultCurrency.code) applied"))
            return defaultCurrency
        }
        guard definition.nullable else {
            let present = position != nil
            throw Failure(
                .currencyMissing, "currency",
                (present ? "currency is NULL" : "the query returns no currency column")
                    + " and no default_currency applies to \(entity)")
        }
        values["currency"] = .null
        return nil
    }

    private func value(
        of column: ColumnDefinition, at position: Int?, in row: Row, currency: Currency?
    ) throws(Failure) -> CanonicalValue {
        guard let position, let text = row.values[position] else {
            if let defaultValue = column.defaultValue { return defaultValue }
            guard column.nullable else {
                let present = position != nil
                throw Failure(
                    .requiredValueMissing, column.name,
                    present
                        ? "\(column.name) is NULL, but every \(entity) needs one"
                        : "the query returns no \(column.name) column, which every \(entity) needs")
            }
            return .null
        }
        switch column.type {
        case .text:
            return .text(text)
        case .currency:
            // The row's own `currency` is resolved before the columns; another currency column
            // (`processed_currency`) must be as usable.
            do { return .text(try Currency(code: text).code) } catch {
                throw Failure(
                    .currencyUnknown, column.name,
                    "\(column.name) \(Self.quoted(text)) is not a usable ISO 4217 code: \(error)")
            }
        case .status(let vocabulary):
            guard vocabulary.contains(text) else {
                throw Failure(
                    .statusUnknown, column.name,
                    "\(column.name) \(Self.quoted(text)) is not one of \(vocabulary.joined(separator: ", "))")
            }
            return .text(text)
        case .integer:
            if let integer = Int64(text) { return .integer(integer) }
            if let numeric = PostgresNumeric(text), !numeric.isNaN,
                let integer = try? numeric.scaledInteger(exponent: 0)
            {
                return .integer(integer)
            }
            throw Failure(.valueInvalid, column.name, "\(column.name) \(Self.quoted(text)) is not a 64-bit integer")
        case .boolean:
            switch text {
            case "t", "true": return .boolean(true)
            case "f", "false": return .boolean(false)
            default: throw Failure(.valueInvalid, column.name, "\(column.name) \(Self.quoted(text)) is not a boolean")
            }
        case .amount:
            if let other = column.currencyColumn {
                return .amount(try amount(text, column: column.name, currency: try ownCurrency(of: column, other, in: row)))
            }
            return .amount(try amount(text, column: column.name, currency: currency))
        case .decimal:
            guard let numeric = PostgresNumeric(text), !numeric.isNaN else {
                throw Failure(.valueInvalid, column.name, "\(column.name) \(Self.quoted(text)) is not an exact decimal")
            }
            // A price in the major unit: under `amounts: minor` the query gives it in minor
            // units, as it gives the amounts. Other decimals (a quantity) are what they are.
            guard amounts == .minor, column.isUnitPrice else { return .decimal(numeric.description) }
            guard let currency else {
                throw Failure(
                    .currencyMissing, "currency",
                    "\(column.name) \(text) is in minor units (amounts: minor) and has no currency to convert them")
            }
            return .decimal(Self.majorUnits(numeric, exponent: legacyExponent(of: currency)).description)
        case .timestamp:
            return .timestamp(try timestamp(text, column: column.name))
        case .date:
            guard text != "infinity", text != "-infinity" else {
                throw Failure(.valueInvalid, column.name, "\(column.name) \(text) is not a calendar date")
            }
            guard let date = PostgresDate(text) else {
                throw Failure(
                    .valueInvalid, column.name, "\(column.name) \(Self.quoted(text)) is not a date (YYYY-MM-DD)")
            }
            return .date(date)
        }
    }

    /// The currency of an amount kept in another currency than the row's (a payment's
    /// `processed_amount` in `processed_currency`).
    private func ownCurrency(of column: ColumnDefinition, _ currencyColumn: String, in row: Row) throws(Failure) -> Currency {
        guard let position = row.columns.index(of: currencyColumn), let code = row.values[position] else {
            throw Failure(
                .currencyMissing, currencyColumn, "\(column.name) is set but \(currencyColumn), its currency, is not")
        }
        do {
            return try Currency(code: code)
        } catch {
            throw Failure(
                .currencyUnknown, currencyColumn,
                "\(currencyColumn) \(Self.quoted(code)) is not a usable ISO 4217 code: \(error)")
        }
    }

    private func amount(_ text: String, column: String, currency: Currency?) throws(Failure) -> Int64 {
        guard let numeric = PostgresNumeric(text), !numeric.isNaN else {
            throw Failure(.amountNotANumber, column, "\(column) \(Self.quoted(text)) is not a number")
        }
        switch amounts {
        case .major:
            guard let currency else {
                throw Failure(
                    .currencyMissing, "currency", "\(column) \(text) has no currency to give its decimal places")
            }
            do throws(MoneyError) {
                return try Money(numeric, currency: currency).minorUnits
            } catch {
                switch error {
                case .inexact:
                    let places = currency.minorUnitExponent
                    throw Failure(
                        .amountNotMinorUnit, column,
                        "\(column) \(Self.abbreviated(text)) is not a whole number of \(currency.code) minor units "
                            + "(\(currency.code) has \(places) decimal place\(places == 1 ? "" : "s")); "
                            + "it is never rounded"
                    )
                case .outOfRange:
                    throw Failure(
                        .amountOverflow, column,
                        "\(column) \(Self.abbreviated(text)) \(currency.code) does not fit in 64-bit minor units "
                            + "(at most \(Money(minorUnits: .max, currency: currency).decimalString) \(currency.code))")
                default:
                    throw Failure(.amountNotANumber, column, "\(column) \(Self.quoted(text)) is not a number")
                }
            }
        case .minor:
            let units: Int64
            do throws(PostgresNumeric.ScalingError) {
                units = try numeric.scaledInteger(exponent: 0)
            } catch {
                switch error {
                case .inexact:
                    throw Failure(
                        .amountNotMinorUnit, column,
                        "\(column) \(Self.abbreviated(text)) is not a whole number of minor units (amounts: minor); "
                            + "it is never rounded")
                case .overflow:
                    throw Failure(
                        .amountOverflow, column,
                        "\(column) \(Self.abbreviated(text)) does not fit in 64-bit minor units")
                case .notANumber:
                    throw Failure(.amountNotANumber, column, "\(column) \(Self.quoted(text)) is not a number")
                }
            }
            guard let currency, let written = legacyExponents[currency] else { return units }
            return try rescaled(units, writtenWith: written, currency: currency, column: column)
        }
    }

    /// The exponent the legacy system wrote `currency`'s minor amounts with: the declared one,
    /// else ISO 4217's.
    private func legacyExponent(of currency: Currency) -> Int {
        legacyExponents[currency] ?? currency.minorUnitExponent
    }

    /// `units` of `10^-written` of `currency` in ISO 4217 minor units, exactly: the point moves
    /// to the major unit, then to ISO's exponent (HUF written whole, `1000` → `100000`; a
    /// currency written with 3 decimals where ISO has 2, `1230` → `123`, and `1235` refused).
    private func rescaled(
        _ units: Int64, writtenWith written: Int, currency: Currency, column: String
    ) throws(Failure) -> Int64 {
        let major = Self.majorUnits(PostgresNumeric(units: units, scale: 0), exponent: written)
        do throws(PostgresNumeric.ScalingError) {
            return try major.scaledInteger(exponent: currency.minorUnitExponent)
        } catch {
            let iso = currency.minorUnitExponent
            let declared =
                "\(column) \(units) is written with \(written) decimal place\(written == 1 ? "" : "s") "
                + "(currency_exponents: {\(currency.code): \(written)}), so it is \(major) \(currency.code)"
            switch error {
            case .inexact:
                throw Failure(
                    .amountNotMinorUnit, column,
                    declared + ", which is not a whole number of \(currency.code) minor units "
                        + "(ISO 4217: \(iso) decimal place\(iso == 1 ? "" : "s")); it is never rounded")
            case .overflow, .notANumber:
                throw Failure(
                    .amountOverflow, column,
                    declared + ", which does not fit in 64-bit minor units (ISO 4217: \(iso) decimal places)")
            }
        }
    }

    /// `minor` minor units as an exact decimal of the major unit: the point moves `exponent`
    /// places left and every digit is kept (`1200` USD is `12.00`, `1200.5` is `12.005`, `5`
    /// is `0.05`; JPY's `1200` stays `1200`). Division by a power of ten is always exact, so
    /// nothing is rounded; the scale grows by `exponent`, as PostgreSQL's
    /// `round(x / 10^e, scale(x) + e)` prints it (the diff's legacy side).
    static func majorUnits(_ minor: PostgresNumeric, exponent: Int) -> PostgresNumeric {
        guard exponent > 0 else { return minor }
        let digits = minor.integerDigits + minor.fractionDigits
        let scale = minor.fractionDigits.count + exponent
        let padded = String(repeating: "0", count: max(0, scale + 1 - digits.count)) + digits
        let cut = padded.index(padded.endIndex, offsetBy: -scale)
        // Zero keeps no sign (PostgresNumeric never marks zero negative).
        return PostgresNumeric((minor.isNegative ? "-" : "") + padded[..<cut] + "." + padded[cut...])!
    }

    private func timestamp(_ text: String, column: String) throws(Failure) -> PostgresTimestamp {
        guard let timestamp = PostgresTimestamp(text) else {
            throw Failure(.valueInvalid, column, "\(column) \(Self.quoted(text)) is not a timestamp")
        }
        guard timestamp != .infinity, timestamp != .negativeInfinity else {
            throw Failure(.valueInvalid, column, "\(column) \(text) is not a point in time")
        }
        return timestamp
    }

    // MARK: - Helpers

    private struct Failure: Error {
        let reason: Quarantine.Reason
        let column: String?
        let detail: String

        init(_ reason: Quarantine.Reason, _ column: String?, _ detail: String) {
            self.reason = reason
            self.column = column
            self.detail = detail
        }
    }

    /// Every column's text; the first of two same-named columns wins, as in ``Row``.
    static func raw(_ row: Row) -> [String: String?] {
        var raw = [String: String?](minimumCapacity: row.values.count)
        for (index, column) in row.columns.columns.enumerated() where raw[column.name] == nil {
            raw[column.name] = .some(row.values[index])
        }
        return raw
    }

    /// `text` in double quotes, cut to 40 characters so one bad value cannot flood a log.
    static func quoted(_ text: String) -> String {
        "\"" + abbreviated(text) + "\""
    }

    static func abbreviated(_ text: String) -> String {
        text.count <= 40 ? text : "\(text.prefix(40))… (\(text.utf8.count) bytes)"
    }
}

/// The outcome of converting one legacy row.
public enum RowConversion: Sendable, Hashable {
    /// The row is valid: its canonical form (and, for history rows, when it became valid).
    case migrated(MigratedRow)
    /// The row cannot be migrated.
    case quarantined(Quarantine)

    /// The migrated row, if the row converted.
    public var migrated: MigratedRow? {
        if case .migrated(let row) = self { return row }
        return nil
    }

    /// The quarantine record, if the row did not convert.
    public var quarantine: Quarantine? {
        if case .quarantined(let quarantine) = self { return quarantine }
        return nil
    }
}

/// A legacy row in canonical form.
public struct MigratedRow: Sendable, Hashable {
    public let row: CanonicalRow
    /// For history rows: when this version became valid.
    public let validFrom: PostgresTimestamp?
    /// For history rows whose query returns `valid_to`: when this version was replaced, which is
    /// when the change to the next version (a later history row, or the current row) happened.
    public let validTo: PostgresTimestamp?
    /// Values the converter supplied because the legacy row had none (e.g. a default currency);
    /// the backfill marks the evidence of such rows `inferred`.
    public let inferences: [InferredValue]

    public init(
        row: CanonicalRow, validFrom: PostgresTimestamp? = nil, validTo: PostgresTimestamp? = nil,
        inferences: [InferredValue] = []
    ) {
        self.row = row
        self.validFrom = validFrom
        self.validTo = validTo
        self.inferences = inferences
    }

    /// Whether any value was inferred rather than read.
    public var isInferred: Bool { !inferences.isEmpty }
}

/// A value the legacy row did not hold and the mapping supplied.
public struct InferredValue: Sendable, Hashable, CustomStringConvertible {
    /// The canonical column, e.g. `currency`.
    public let column: String
    /// The value supplied, as text (`USD`).
    public let value: String
    /// Why: `currency is NULL in the legacy row; default_currency USD applied`.
    public let detail: String

    public init(column: String, value: String, detail: String) {
        self.column = column
        self.value = value
        self.detail = detail
    }

    public var description: String { detail }
}
