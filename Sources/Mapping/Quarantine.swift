import Billing
import TextFormats

/// A legacy row that cannot be migrated as it is: which row, why (a stable code), a sentence
/// naming the column and value, and the raw row so nothing is lost.
///
/// The backfill writes these to `ledgerlift.quarantine` and carries on; the summary counts them
/// per ``Reason``.
public struct Quarantine: Sendable, Hashable, CustomStringConvertible {
    /// Why a row was quarantined. The raw values are stable snake_case codes: scripts, the
    /// quarantine table and the docs rely on them.
    public enum Reason: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        /// The key column is NULL (or the query does not return it).
        case keyMissing = "key_missing"
        /// A column the canonical model requires is NULL (or the query does not return it).
        case requiredValueMissing = "required_value_missing"
        /// The row has no currency and the mapping sets no `default_currency`.
        case currencyMissing = "currency_missing"
        /// The currency is not a usable ISO 4217 code (`XXY`, `usd`, `XAU`).
        case currencyUnknown = "currency_unknown"
        /// An amount is not a whole number of minor units (12.345 USD, 1500.5 JPY, or a
        /// fraction under `amounts: minor`). Never rounded.
        case amountNotMinorUnit = "amount_not_minor_unit"
        /// An amount does not fit in a signed 64-bit count of minor units.
        case amountOverflow = "amount_overflow"
        /// An amount is not a number (`NaN`, or text that is not a decimal).
        case amountNotANumber = "amount_not_a_number"
        /// A status-like column (`status`, line `kind`, plan `interval`) holds a value outside
        /// its canonical vocabulary.
        case statusUnknown = "status_unknown"
        /// Any other value that does not fit its column: a malformed or infinite timestamp, a
        /// non-integer quantity, a boolean that is neither true nor false.
        case valueInvalid = "value_invalid"

        /// The code, e.g. `amount_not_minor_unit`.
        public var code: String { rawValue }

        public var description: String { rawValue }

        /// What the code means, in one line (for docs and summaries).
        public var summary: String {
            switch self {
            case .keyMissing: "the key column is NULL or not returned"
            case .requiredValueMissing: "a required canonical column is NULL or not returned"
            case .currencyMissing: "no currency, and no default_currency applies"
            case .currencyUnknown: "the currency is not a usable ISO 4217 code"
            case .amountNotMinorUnit: "an amount is not a whole number of minor units (never rounded)"
            case .amountOverflow: "an amount does not fit in 64-bit minor units"
            case .amountNotANumber: "an amount is not a number"
            case .statusUnknown: "a status, kind or interval outside the canonical vocabulary"
            case .valueInvalid: "a value that does not fit its column's type"
            }
        }
    }

    public let entity: Entity
    /// The row's key as text, or `"<null>"` when it has none.
    public let key: String
    public let reason: Reason
    /// A sentence naming the column and the value: `total 12.345 is not a whole number of USD
    /// minor units (USD has 2 decimal places); it is never rounded`.
    public let detail: String
    /// The column at fault, when there is one.
    public let column: String?
    /// The legacy row as the query returned it: every column's text (`nil` for NULL).
    public let raw: [String: String?]

    /// The key text used for rows without a key.
    public static let nullKey = "<null>"

    public init(entity: Entity, key: String, reason: Reason, detail: String, column: String?, raw: [String: String?]) {
        self.entity = entity
        self.key = key
        self.reason = reason
        self.detail = detail
        self.column = column
        self.raw = raw
    }

    /// `raw` as a JSON object of text values (keys sorted), for the quarantine table.
    public var rawJSON: String {
        JSONValue.object(raw.keys.sorted().map { ($0, raw[$0]!.map(JSONValue.string) ?? .null) }).rendered
    }

    /// `invoice 900102: amount_not_minor_unit: total 12.345 is not …`
    public var description: String { "\(entity) \(key): \(reason.rawValue): \(detail)" }
}
