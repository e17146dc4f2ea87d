import Billing
import TextFormats

/// A legacy row that cannot be migrated as it is: which row, why (a stable code), a sentence
/// naming the column and value, and the raw row so nothing is lost.
///
/// The backfill writes these to `ledgerlift.quarantine` and carries on; the summary counts them
/// per ``Reason``.
public struct Quarantine: Sendable, Hashable, CustomStringConvertible {
    /// Why a row was quarantined (``QuarantineReason``: an open set of stable codes).
    public typealias Reason = QuarantineReason

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

    /// The prefix of the quarantine key of a row whose key is too long to be a stream id.
    public static let longKey = "<long>"

    /// The longest legacy key, in UTF-8 bytes, that migrates: a stream id (`invoice-<key>`) is
    /// indexed, and a btree entry holds at most about 2.7 kB.
    public static let maximumKeyBytes = 1_024

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
