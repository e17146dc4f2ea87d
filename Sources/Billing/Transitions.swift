import Foundation
import Postgres

/// The events that take an entity from one canonical row to the next.
///
/// One pure function serves backfill (`before` is `nil`: the history from nothing to the row,
/// or through the rows of an audit table) and shadow mode (`before` is the last known row), so
/// the two can never disagree. Rules per entity turn column changes into named events whose
/// business time comes from the legacy timestamp that proves each step; whatever no rule
/// explains is carried by a final `…Updated` (or, from nothing, `…Imported`) event, so that
/// replaying the events always reproduces `after` exactly.
public enum Transitions {
    /// The events from `before` to `after`.
    ///
    /// - Parameters:
    ///   - step: the position of `after` in the entity's sequence of known rows (0 for the
    ///     first). It makes event ids unique when a row returns to an earlier state, and
    ///     deterministic: the same inputs always give the same ids.
    ///   - notBefore: business time of the stream's last event, if any. A stream's events stay
    ///     in business-time order (so "as of" reads are prefixes): a step the legacy data dates
    ///     earlier is placed at this time instead, and marked `inferred`.
    ///   - changedAt: when the legacy system recorded the change to `after`, if it did (an audit
    ///     table's timestamp). Every event of this transition then happens at that time, observed.
    ///   - syncedFromVersion: for a state-based sync (a resumed backfill, shadow mode), the
    ///     version of the stream `before` was replayed from. The events' ids then name the sync
    ///     and that version (`sync/invoice/17/v3/0/InvoiceUpdated`), so they can never collide
    ///     with the ids of a backfill's history steps (`invoice/17/0/0/InvoiceDrafted`).
    ///   - origin: who syncs (with `syncedFromVersion` only): the ids' first segment —
    ///     `sync/…` for a resumed backfill (the default, the ids backfill has always written),
    ///     `shadow/…` for shadow mode's tailer, `resync/…` for `shadow resync` — so two
    ///     writers that sync one stream version can never produce one id for different events.
    public static func transitions(
        before: CanonicalRow?, after: CanonicalRow, step: Int = 0, notBefore: PostgresTimestamp? = nil,
        changedAt: PostgresTimestamp? = nil, syncedFromVersion: Int64? = nil, origin: SyncOrigin = .backfill
    ) -> [BillingEvent] {
        precondition(before == nil || before!.entity == after.entity, "transitions between different entities")
        let rules = EntityRules.rules(for: after.entity)
        var drafts = [Draft]()
        var state: [String: CanonicalValue]
        if let before {
            state = before.values
        } else {
            let initial = rules.initialState(after)
            state = initial
            let time = after[rules.creationTimeColumn].timestampValue
            drafts.append(
                Draft(
                    type: rules.creationType, time: time ?? after["created_at"].timestampValue,
                    evidence: time == nil ? .inferred : .observed,
                    // A column at its default is, like NULL, not written: a row starts with its
                    // defaults (``CanonicalRow``), and the events of rows that never set the
                    // columns added to the model later stay exactly what they were.
                    changes: after.entity.columns.filter {
                        $0.name == after.entity.keyColumn || !(initial[$0.name]!.isNull || initial[$0.name] == $0.defaultValue)
                    }.map { ($0.name, initial[$0.name]!) }))
        }
        for rule in rules.changes {
            guard rule.applies(state, after) else { continue }
            let values = rule.sets(state, after).filter { state[$0.0] != $0.1 }
            guard !values.isEmpty else { continue }
            // A rule's own timestamp column proves its time. Failing that, between two known
            // rows whose `updated_at` moved (an audit table's versions, or shadow mode), the
            // legacy system recorded when the change happened: that is observed too.
            let proof = before == nil ? rule.time(after) : changedAt ?? rule.time(after)
            let recordedChange = before != nil && before!["updated_at"] != after["updated_at"]
            // Without proof: between two rows whose updated_at moved, that is when legacy made the
            // change; otherwise a time of the row that later edits cannot move, else (nil) the
            // time of the step before it — inferred, and never updated_at, which any later edit
            // of the row would move.
            let fallback = recordedChange ? after["updated_at"].timestampValue : rule.inferredTime(after)
            drafts.append(
                Draft(
                    type: rule.type, time: proof ?? fallback,
                    evidence: proof != nil || (recordedChange && !after["updated_at"].isNull) ? .observed : .inferred,
                    changes: values))
            for (column, value) in values { state[column] = value }
        }
        // What no rule explains.
        let bookkeeping: Set<String> = ["updated_at"]
        let leftovers = after.entity.columns.map(\.name).filter { !bookkeeping.contains($0) && state[$0] != after[$0] }
        let attributesChanged = before.map { $0.attributes != after.attributes } ?? !after.attributes.isEmpty
        if !leftovers.isEmpty {
            let updatedAt = changedAt ?? after["updated_at"].timestampValue
            let moved = changedAt != nil || (before.map { $0["updated_at"] != after["updated_at"] } ?? false)
            drafts.append(
                Draft(
                    type: before == nil ? rules.importedType : rules.updatedType,
                    time: updatedAt ?? after["created_at"].timestampValue,
                    evidence: before == nil ? .imported : (moved ? .observed : .inferred),
                    changes: leftovers.map { ($0, after[$0]) }))
            for column in leftovers { state[column] = after[column] }
        }
        let updatedAtDiffers = after.entity.column("updated_at") != nil && state["updated_at"] != after["updated_at"]
        if drafts.isEmpty && (attributesChanged || updatedAtDiffers) {
            drafts.append(
                Draft(
                    type: rules.updatedType,
                    time: changedAt ?? after["updated_at"].timestampValue ?? after["created_at"].timestampValue,
                    evidence: .observed, changes: []))
        }
        if updatedAtDiffers { drafts[drafts.count - 1].changes.append(("updated_at", after["updated_at"])) }
        let idScope = syncedFromVersion.map { "\(origin.rawValue)/\(after.entity.rawValue)/\(after.key)/v\($0)" }
            ?? "\(after.entity.rawValue)/\(after.key)/\(step)"
        return finish(
            drafts, after: after, idScope: idScope, notBefore: notBefore ?? .negativeInfinity,
            attributesChanged: attributesChanged)
    }

    /// How each named event of `entity` is dated: the columns that prove its moment (observed)
    /// and, without them, the columns it is inferred from. `mapping check` tells a user which
    /// events their mapping leaves to inference.
    public static func dating(of entity: Entity) -> [EventDating] {
        let rules = EntityRules.rules(for: entity)
        var result = [EventDating(type: rules.creationType, proof: [rules.creationTimeColumn], inferred: ["created_at"])]
        for change in rules.changes {
            result.append(EventDating(type: change.type, proof: change.proof, inferred: change.inferred))
        }
        return result
    }

    /// The event that ends `before`'s existence: its key no longer exists in legacy (a hard
    /// delete, or a soft delete the mapping filters out).
    ///
    /// The payload sets nothing (`set` is empty): the type says the row is gone, and the row it
    /// removes is the stream's replay up to it.
    ///
    /// - Parameters:
    ///   - before: the stream's row (what the ledger holds for the key).
    ///   - at: when legacy deleted the row, if its data proves it (an audit table's delete
    ///     record, a soft-delete column such as `deleted_at`): then `observed`. Without it the
    ///     deletion is certain but not its moment: it is dated at `notBefore`, `inferred`
    ///     (the earliest instant that keeps the stream in order; never a time the data does
    ///     not support).
    ///   - notBefore: business time of the stream's last event. The deletion is never earlier:
    ///     a proven time before it is moved to it and marked `inferred`.
    ///   - step: the position of the deletion in the entity's sequence of known states (a
    ///     backfill's history: the number of rows before it).
    ///   - syncedFromVersion: for a state-based sync (shadow mode, resync, a resumed backfill),
    ///     the stream version `before` was replayed from: the id is then
    ///     `sync/<entity>/<key>/v<version>/0/<Entity>Deleted`, else `<entity>/<key>/<step>/0/<Entity>Deleted`.
    ///   - origin: who syncs, the id's first segment (see ``transitions(before:after:step:notBefore:changedAt:syncedFromVersion:origin:)``).
    public static func deletion(
        before: CanonicalRow, at: PostgresTimestamp? = nil, notBefore: PostgresTimestamp?, step: Int = 0,
        syncedFromVersion: Int64? = nil, origin: SyncOrigin = .backfill
    ) -> BillingEvent {
        let idScope = syncedFromVersion.map { "\(origin.rawValue)/\(before.entity.rawValue)/\(before.key)/v\($0)" }
            ?? "\(before.entity.rawValue)/\(before.key)/\(step)"
        let type = BillingEventType.deleted(before.entity)
        var time = at ?? notBefore ?? before["updated_at"].timestampValue ?? before["created_at"].timestampValue
            ?? PostgresTimestamp(microsecondsSinceEpoch: 0)
        var evidence: Evidence = at == nil ? .inferred : .observed
        if let notBefore, time < notBefore {
            time = notBefore
            evidence = .inferred
        }
        if time == .negativeInfinity { time = PostgresTimestamp(microsecondsSinceEpoch: 0) }
        return BillingEvent(
            eventID: DeterministicID.uuid5(namespace: DeterministicID.eventNamespace, name: "\(idScope)/0/\(type.rawValue)"),
            entity: before.entity, key: before.key, type: type, occurredAt: time, evidence: evidence, changes: [],
            attributes: nil)
    }

    /// Folds events (in stream order) into the row they describe; `nil` for no events, or when
    /// the last deletion is not followed by a re-creation.
    public static func replay(_ events: [BillingEvent]) -> CanonicalRow? {
        var row: CanonicalRow?
        for event in events { row = applying(event, to: row) }
        return row
    }

    /// Applies one event to a known row (or starts one): `nil` after a deletion.
    public static func applying(_ event: BillingEvent, to row: CanonicalRow?) -> CanonicalRow? {
        event.type.isDeletion ? nil : apply(event, to: row)
    }

    /// Applies one event that is not a deletion to a known row (or starts one).
    public static func apply(_ event: BillingEvent, to row: CanonicalRow?) -> CanonicalRow {
        precondition(!event.type.isDeletion, "a deletion leaves no row: use applying(_:to:)")
        var row = row ?? CanonicalRow(entity: event.entity, values: [:])
        for change in event.changes { row.values[change.column] = change.value }
        if let attributes = event.attributes { row.attributes = attributes }
        return row
    }

    struct Draft {
        var type: BillingEventType
        var time: PostgresTimestamp?
        var evidence: Evidence
        var changes: [(String, CanonicalValue)]
    }

    /// Orders business time (never earlier than the event before: a clamped time is marked
    /// inferred), assigns deterministic ids, and attaches the attributes (when they changed) to
    /// the last event: the one that reaches `after`, the row they were read with.
    ///
    /// The events before it are steps legacy's timestamps date (a draft, a finalization) but
    /// whose extra columns legacy did not keep; carried on the first event, today's attributes
    /// would show in every earlier version ("as of" the day an invoice was still open, a
    /// `payment_status` attribute already saying paid). So those versions keep the attributes
    /// the row had before the transition (none, from nothing).
    static func finish(
        _ drafts: [Draft], after: CanonicalRow, idScope: String, notBefore: PostgresTimestamp, attributesChanged: Bool
    ) -> [BillingEvent] {
        var events = [BillingEvent]()
        var previous = notBefore
        let order = Dictionary(uniqueKeysWithValues: after.entity.columns.enumerated().map { ($1.name, $0) })
        for (index, draft) in drafts.enumerated() {
            var time = draft.time ?? previous
            var evidence = draft.evidence
            if time < previous {
                time = previous
                if evidence == .observed { evidence = .inferred }
            }
            if time == .negativeInfinity { time = PostgresTimestamp(microsecondsSinceEpoch: 0) }
            previous = time
            let name = "\(idScope)/\(index)/\(draft.type.rawValue)"
            events.append(
                BillingEvent(
                    eventID: DeterministicID.uuid5(namespace: DeterministicID.eventNamespace, name: name),
                    entity: after.entity, key: after.key, type: draft.type, occurredAt: time, evidence: evidence,
                    changes: draft.changes.sorted { order[$0.0]! < order[$1.0]! }.map {
                        BillingEvent.ColumnChange(column: $0.0, value: $0.1)
                    },
                    attributes: index == drafts.count - 1 && attributesChanged ? after.attributes : nil))
        }
        return events
    }
}

/// Who runs a state-based sync (the stream's replayed row → the legacy row now): the first
/// segment of its events' ids, so ids of different writers never collide.
public enum SyncOrigin: String, Sendable, Hashable, CaseIterable {
    /// A resumed backfill: `sync/<entity>/<key>/v<n>/…`, the ids backfill has always written.
    case backfill = "sync"
    /// Shadow mode's tailer (`ledgerlift shadow run`): `shadow/<entity>/<key>/v<n>/…`.
    case shadow
    /// `ledgerlift shadow resync`, the repair of keys found different: `resync/<entity>/<key>/v<n>/…`.
    case resync
    /// A billing command decided by the ledger itself (the `Commands` module's executor):
    /// `command/<entity>/<key>/v<n>/…`, `v<n>` the stream version the command read.
    case command
    /// A Stripe webhook event applied by the `Webhooks` module: `stripe/<entity>/<key>/v<n>/…`,
    /// `v<n>` the stream version the event's row was compared with.
    case stripe
    /// Reverse sync (after the cutover's write switch): an attributes-only update carrying the
    /// legacy-only columns (caches such as a customer's balance) as legacy holds them once the
    /// ledger's row was written back: `reverse_sync/<entity>/<key>/v<n>/…`.
    case reverseSync = "reverse_sync"

    /// The events' `metadata.origin`: `backfill`, `shadow`, `resync`, `command`, `stripe` or
    /// `reverse_sync`.
    public var metadataOrigin: String {
        switch self {
        case .backfill: "backfill"
        case .shadow: "shadow"
        case .resync: "resync"
        case .command: "command"
        case .stripe: "stripe"
        case .reverseSync: "reverse_sync"
        }
    }
}

/// How one event type is dated (see ``Transitions/dating(of:)``).
public struct EventDating: Sendable, Hashable {
    public let type: BillingEventType
    /// Columns whose value is the event's moment, first set wins: `observed`.
    public let proof: [String]
    /// Columns it is dated from without proof, first set wins: `inferred` (failing those, the
    /// time of the step before it).
    public let inferred: [String]
}
