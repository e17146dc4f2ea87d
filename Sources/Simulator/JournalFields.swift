import Billing
import Postgres

/// What `ledgerlift simulate verify` can check: per canonical entity, the fields an effect may
/// state, each with the canonical text form its values take (docs/journal.md).
///
/// Both state readers (``LegacyStateReader``, ``StoreStateReader``) return exactly these
/// fields, in this order, so a journal checks the same way against the legacy tables and the
/// ledger's read models.
public enum JournalFields {
    /// How a field's value is written in the journal and compared.
    public enum Kind: Sendable, Hashable {
        /// Text as it is (email, name, number, failure code, line kind).
        case text
        /// The key of another row, as text.
        case key
        /// A canonical status (`paid`, not the legacy `2`).
        case status
        /// An ISO 4217 code.
        case currency
        /// Integer minor units of the row's currency (`"4900"`).
        case amount
        /// A decimal integer (a quantity).
        case integer
        /// `true` or `false`.
        case boolean
        /// ``PostgresTimestamp/iso8601``: UTC, six fraction digits, `Z`.
        case timestamp
    }

    /// One checkable field.
    public struct Field: Sendable, Hashable {
        public let name: String
        public let kind: Kind
    }

    /// The entities an effect may name, in the order they are checked and reported.
    public static let entities: [Entity] = [
        .customer, .subscription, .invoice, .invoiceLine, .payment, .refund, .creditNote, .balanceTransaction,
    ]

    /// The fields of `entity`, in the order the readers return them (empty for an entity
    /// verify does not check).
    ///
    /// `currency` is accepted on every entity that has an amount, even where the journal
    /// usually leaves it out (a refund's currency is its payment's): the convention is to write
    /// amounts with their currency beside them, and either way it is compared with the
    /// currency the row resolves to.
    public static func fields(_ entity: Entity) -> [Field] { table[entity] ?? [] }

    /// The position of `name` among ``fields(_:)`` of `entity`.
    public static func index(of name: String, in entity: Entity) -> Int? {
        indexes[entity]?[name]
    }

    private static let table: [Entity: [Field]] = [
        .customer: [
            .init(name: "email", kind: .text), .init(name: "name", kind: .text),
            .init(name: "currency", kind: .currency), .init(name: "archived_at", kind: .timestamp),
        ],
        .subscription: [
            .init(name: "customer_id", kind: .key), .init(name: "plan_id", kind: .key),
            .init(name: "status", kind: .status), .init(name: "quantity", kind: .integer),
            .init(name: "cancel_at_period_end", kind: .boolean), .init(name: "canceled_at", kind: .timestamp),
            .init(name: "ended_at", kind: .timestamp),
        ],
        .invoice: [
            .init(name: "customer_id", kind: .key), .init(name: "subscription_id", kind: .key),
            .init(name: "status", kind: .status), .init(name: "number", kind: .text),
            .init(name: "currency", kind: .currency), .init(name: "subtotal", kind: .amount),
            .init(name: "discount", kind: .amount), .init(name: "tax", kind: .amount),
            .init(name: "total", kind: .amount), .init(name: "amount_paid", kind: .amount),
            .init(name: "amount_due", kind: .amount), .init(name: "finalized_at", kind: .timestamp),
            .init(name: "paid_at", kind: .timestamp), .init(name: "voided_at", kind: .timestamp),
        ],
        .invoiceLine: [
            .init(name: "invoice_id", kind: .key), .init(name: "kind", kind: .text),
            .init(name: "quantity", kind: .integer), .init(name: "amount", kind: .amount),
            .init(name: "currency", kind: .currency),
        ],
        .payment: [
            .init(name: "customer_id", kind: .key), .init(name: "invoice_id", kind: .key),
            .init(name: "status", kind: .status), .init(name: "amount", kind: .amount),
            .init(name: "currency", kind: .currency), .init(name: "failure_code", kind: .text),
        ],
        .refund: [
            .init(name: "payment_id", kind: .key), .init(name: "amount", kind: .amount),
            .init(name: "status", kind: .status), .init(name: "currency", kind: .currency),
        ],
        .creditNote: [
            .init(name: "customer_id", kind: .key), .init(name: "invoice_id", kind: .key),
            .init(name: "status", kind: .status), .init(name: "total", kind: .amount),
            .init(name: "balance_remaining", kind: .amount), .init(name: "currency", kind: .currency),
        ],
        .balanceTransaction: [
            .init(name: "customer_id", kind: .key), .init(name: "type", kind: .text),
            .init(name: "amount", kind: .amount), .init(name: "currency", kind: .currency),
            .init(name: "invoice_id", kind: .key), .init(name: "credit_note_id", kind: .key),
        ],
    ]

    private static let indexes: [Entity: [String: Int]] = table.mapValues { fields in
        Dictionary(uniqueKeysWithValues: fields.enumerated().map { ($1.name, $0) })
    }

    /// A journal value in its canonical form, so that equal values compare equal however the
    /// writer spelled them within the format (`"0042"` is 42; a timestamp with a `+00:00`
    /// offset is the same instant).
    ///
    /// - Returns: the canonical text, or why the value is not of the field's kind.
    static func canonical(_ value: String, kind: Kind) -> Result<String, FieldValueError> {
        switch kind {
        case .text, .key, .status, .currency:
            return .success(value)
        case .amount, .integer:
            guard let number = Int64(value) else {
                return .failure(.init(expected: "an integer (minor units for an amount)"))
            }
            return .success(String(number))
        case .boolean:
            guard value == "true" || value == "false" else { return .failure(.init(expected: "true or false")) }
            return .success(value)
        case .timestamp:
            guard let instant = PostgresTimestamp(value) else {
                return .failure(.init(expected: "a timestamp like 2025-11-02T10:00:00.000000Z"))
            }
            return .success(instant.iso8601)
        }
    }

    /// Why a journal value does not fit its field (the value itself is not repeated).
    struct FieldValueError: Error {
        let expected: String
    }
}
