import Billing
import Commands
import Postgres

/// The legacy canonical rows around one legacy operation: each touched row before and after
/// it, read through the reference mapping by (entity, key).
///
/// The parity test (and, later, candidate mode) builds it from the legacy database; a
/// translation reads it to find what the legacy application decided (the new row's keys, the
/// amount it paid, the plan it moved to) and states it as commands.
public struct LegacyRows: Sendable, Hashable {
    /// One row's identity.
    public struct Key: Sendable, Hashable, Comparable, CustomStringConvertible {
        public var entity: Entity
        public var key: String
        public init(_ entity: Entity, _ key: String) {
            self.entity = entity
            self.key = key
        }
        public var description: String { entity.streamID(key: key) }
        /// By entity, then numeric keys by number (`9` before `10`), then other keys bytewise.
        public static func < (a: Key, b: Key) -> Bool {
            guard a.entity == b.entity else { return a.entity.rawValue < b.entity.rawValue }
            switch (Int64(a.key), Int64(b.key)) {
            case (let x?, let y?): return x < y
            case (.some, nil): return true
            case (nil, .some): return false
            case (nil, nil): return a.key.utf8.lexicographicallyPrecedes(b.key.utf8)
            }
        }
    }

    /// Rows before the operation; a key absent here (or mapped to `nil`) did not exist.
    public var before: [Key: CanonicalRow]
    /// Rows after the operation; a key absent here (or mapped to `nil`) does not exist (a
    /// hard delete, or a row the operation never touched and nobody read).
    public var after: [Key: CanonicalRow]

    public init(before: [Key: CanonicalRow] = [:], after: [Key: CanonicalRow] = [:]) {
        self.before = before
        self.after = after
    }

    /// The row of `entity` `key` before the operation.
    public func before(_ entity: Entity, _ key: String) -> CanonicalRow? { before[Key(entity, key)] }
    /// The row of `entity` `key` after the operation.
    public func after(_ entity: Entity, _ key: String) -> CanonicalRow? { after[Key(entity, key)] }

    /// Every key known on either side.
    public var keys: Set<Key> { Set(before.keys).union(after.keys) }

    /// Rows of `entity` that exist after and did not before: what the operation created, in key order.
    public func created(_ entity: Entity) -> [CanonicalRow] {
        after.filter { $0.key.entity == entity && before[$0.key] == nil }.sorted { $0.key < $1.key }.map(\.value)
    }

    /// Rows of `entity` whose canonical values or attributes differ before and after (created
    /// rows included), in key order.
    public func changed(_ entity: Entity) -> [CanonicalRow] {
        after.filter { $0.key.entity == entity && before[$0.key] != $0.value }.sorted { $0.key < $1.key }.map(\.value)
    }

    /// Keys of `entity` that existed before and not after (hard deletes), in key order.
    public func deleted(_ entity: Entity) -> [String] {
        before.keys.filter { $0.entity == entity && after[$0] == nil }.sorted().map(\.key)
    }
}

/// Why a legacy operation could not be stated as commands.
public struct CommandTranslationError: Error, Sendable, Hashable, CustomStringConvertible {
    public var kind: OperationKind
    public var detail: String
    public init(_ kind: OperationKind, _ detail: String) {
        self.kind = kind
        self.detail = detail
    }
    public var description: String { "\(kind.rawValue): \(detail)" }
}

/// Legacy operations stated as billing commands: what the legacy application did, as the
/// commands that make the ledger do the same.
///
/// This is the bridge of the parity test (every command's events must equal the transitions
/// of the legacy write it replaces) and of candidate mode (the ledger decides the legacy
/// application's writes in parallel, and the decisions are compared). One operation may become
/// several commands (a sign-up creates a customer, then starts its subscription); they are
/// decided in order, each on the state the previous one left.
public enum CommandTranslation {
    /// The commands that replace `entry`'s legacy operation, given the legacy canonical rows
    /// around it.
    ///
    /// - Throws: ``CommandTranslationError`` when the rows do not show what the operation did.
    public static func commands(for entry: JournalEntry, legacy: LegacyRows) throws -> [BillingCommand] {
        switch entry.kind {
        case .signUp, .activateTrial, .upgrade, .downgrade, .cancelAtPeriodEnd, .markUnpaid, .editEmail, .editName,
            .softDelete:
            return try subscriptionCommands(for: entry, legacy: legacy)
        case .draftInvoice, .finalizeInvoice, .voidInvoice, .markUncollectible, .discardDraft:
            return try invoiceCommands(for: entry, legacy: legacy)
        case .paymentSucceeded, .paymentFailed, .paymentRetried, .partialPayment, .refundFull, .refundPartial,
            .creditNote, .customerCredit:
            return try paymentCommands(for: entry, legacy: legacy)
        }
    }

    // MARK: Shared helpers for the group translations

    /// The business time of the entry (its `at`), parsed.
    public static func at(_ entry: JournalEntry) throws -> PostgresTimestamp {
        do {
            return try PostgresTimestamp.parse(entry.at)
        } catch {
            throw CommandTranslationError(entry.kind, "journal time \(entry.at) is not a timestamp: \(error)")
        }
    }

    /// The key `entry` names for `role` (`customer`, `invoice`, …).
    public static func key(_ entry: JournalEntry, _ role: String) throws -> String {
        guard let key = entry.keys[role] else {
            throw CommandTranslationError(entry.kind, "the journal entry names no \(role) (keys: \(entry.keys.keys.sorted()))")
        }
        return key
    }

    /// The row of `entity` `key` after the operation, or a translation error naming it.
    public static func after(_ legacy: LegacyRows, _ kind: OperationKind, _ entity: Entity, _ key: String) throws -> CanonicalRow {
        guard let row = legacy.after(entity, key) else {
            throw CommandTranslationError(kind, "legacy has no \(entity) \(key) after the operation")
        }
        return row
    }

    /// The row of `entity` `key` before the operation, or a translation error naming it.
    public static func before(_ legacy: LegacyRows, _ kind: OperationKind, _ entity: Entity, _ key: String) throws -> CanonicalRow {
        guard let row = legacy.before(entity, key) else {
            throw CommandTranslationError(kind, "legacy has no \(entity) \(key) before the operation")
        }
        return row
    }
}
