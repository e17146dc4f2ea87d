/// What an acknowledged operation changed, stated so that it can be checked afterwards in the
/// legacy tables or in the ledger's read models (`ledgerlift simulate verify`).
///
/// Effects speak the canonical model (docs/canonical-model.md), not the legacy schema, so one
/// journal can be verified on either side:
/// - `entity` is a canonical entity name (`customer`, `subscription`, `invoice`,
///   `invoice_line`, `payment`, `refund`, `credit_note`, `balance_transaction`) and `key` its
///   legacy key as text;
/// - `fields` maps canonical column names to the value the row must hold afterwards, in
///   canonical text form: text and statuses as they are (`paid`, not the legacy `2`), amounts as
///   integer minor units (`"4900"` with the row's `currency` field beside it), booleans `true` /
///   `false`, integers in decimal, timestamps as ``PostgresTimestamp/iso8601`` (UTC, six fraction
///   digits), keys of other rows as text; JSON `null` means the column must be NULL;
/// - `deleted` says the row must no longer exist (a hard delete).
///
/// Only the fields an operation set are listed; a later operation on the same row overrides
/// the fields it sets again (``JournalVerifier`` folds the journal in order).
public struct Effect: Sendable, Hashable, Codable {
    public var entity: String
    public var key: String
    public var fields: [String: String?]
    public var deleted: Bool

    public init(entity: String, key: String, fields: [String: String?] = [:], deleted: Bool = false) {
        self.entity = entity
        self.key = key
        self.fields = fields
        self.deleted = deleted
    }

    enum CodingKeys: String, CodingKey { case entity, key, fields, deleted }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        entity = try c.decode(String.self, forKey: .entity)
        key = try c.decode(String.self, forKey: .key)
        fields = try c.decodeIfPresent([String: String?].self, forKey: .fields) ?? [:]
        deleted = try c.decodeIfPresent(Bool.self, forKey: .deleted) ?? false
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(entity, forKey: .entity)
        try c.encode(key, forKey: .key)
        if !fields.isEmpty { try c.encode(fields, forKey: .fields) }
        if deleted { try c.encode(true, forKey: .deleted) }
    }
}

/// One line of the journal: an operation the application acknowledged (its commit confirmed).
public struct JournalEntry: Sendable, Hashable, Codable {
    /// The operation's id (its position in the run's schedule).
    public var op: UInt64
    public var kind: OperationKind
    /// The business time the operation wrote (``BusinessClock``): within one row, a later
    /// operation always has a later time, so the journal folds in (`at`, `op`) order even when
    /// concurrent connections acknowledged out of order.
    public var at: String
    /// The entities the operation acted on, by role (`customer`, `invoice`, `payment`…).
    public var keys: [String: String]
    /// What must be visible afterwards.
    public var effects: [Effect]
    /// One human sentence: "payment 15201 of 49.00 USD on invoice 1203 succeeded".
    public var summary: String

    public init(op: UInt64, kind: OperationKind, at: String, keys: [String: String], effects: [Effect], summary: String) {
        self.op = op
        self.kind = kind
        self.at = at
        self.keys = keys
        self.effects = effects
        self.summary = summary
    }
}
