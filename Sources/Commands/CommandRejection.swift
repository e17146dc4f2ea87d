import Billing

/// A command the business rules refuse: nothing is appended.
///
/// `code` is stable (the HTTP problem document's `code`, metrics labels, candidate
/// comparisons); `detail` names the row and the rule, never SQL.
public struct CommandRejection: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable, CaseIterable, Codable {
        /// A row the command acts on does not exist (or has ended).
        case notFound = "not_found"
        /// A row the command would create exists already.
        case alreadyExists = "already_exists"
        /// The row is not in a state the command applies to (finalize a paid invoice).
        case invalidState = "invalid_state"
        /// Two currencies would mix (a payment in EUR on a USD invoice).
        case currencyMismatch = "currency_mismatch"
        /// An amount that is not a positive whole number of minor units, or not exact.
        case invalidAmount = "invalid_amount"
        /// More than what is left (a refund beyond its payment, a payment beyond what is due).
        case exceedsLimit = "exceeds_limit"
        /// A field the command needs is missing or malformed.
        case invalidInput = "invalid_input"
    }

    public var code: Code
    public var entity: Entity?
    public var key: String?
    public var detail: String

    public init(_ code: Code, _ entity: Entity? = nil, _ key: String? = nil, _ detail: String) {
        self.code = code
        self.entity = entity
        self.key = key
        self.detail = detail
    }

    public var description: String {
        let row = entity.map { " (\($0) \(key ?? "?"))" } ?? ""
        return "\(code.rawValue)\(row): \(detail)"
    }
}
