import Billing
import Postgres

/// Where an effect stands in the fold's order: business time first, then op id, then its place
/// among its entry's effects.
///
/// `at` decides because within one row it always increases with commit order (an operation
/// takes its time from ``BusinessClock`` once it holds the row's locks), while journal lines of
/// concurrent connections may be written out of commit order. The op id breaks ties between
/// rows' unrelated operations at one instant, which never touch the same row.
public struct JournalStamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Business time, microseconds since the epoch.
    public let at: Int64
    public let op: UInt64
    /// The effect's position in its entry (a later effect on the same row in one entry wins).
    public let effect: UInt32
    public let kind: OperationKind

    public static func < (a: JournalStamp, b: JournalStamp) -> Bool {
        (a.at, a.op, a.effect) < (b.at, b.op, b.effect)
    }

    /// `op 17 (payment_succeeded)`.
    public var description: String { "op \(op) (\(kind.rawValue))" }

    /// The business time as ``PostgresTimestamp/iso8601``.
    public var time: String { PostgresTimestamp(microsecondsSinceEpoch: at).iso8601 }
}

/// What the journal says one row must hold, folded over every operation that touched it.
///
/// Memory is per distinct row (one slot per field the journal sets on it), never per journal
/// line.
struct RowExpectation: Sendable {
    /// A field's expected value and the effect that set it last.
    struct Slot: Sendable {
        /// The field's position in ``JournalFields/fields(_:)``.
        var field: UInt8
        var value: String?
        var stamp: JournalStamp
    }

    /// Only the fields the journal set, in the order first set: most operations set a few of
    /// an invoice's fourteen, and a row per key adds up over a long journal.
    var slots: [Slot] = []
    /// The latest effect that said the row exists (set fields, or named it without deleting).
    var presence: JournalStamp?
    /// The earliest such effect, and its operation's summary: who created the row, as far as
    /// the journal knows.
    var firstPresence: JournalStamp?
    var firstSummary: String?
    /// The latest effect that deleted the row.
    var deletion: JournalStamp?

    /// Values of in-doubt effects (prepared, never acknowledged): allowed, never required.
    var allowed: [Slot] = []
    /// The latest in-doubt effect that said the row exists, and the latest that deleted it.
    var doubtfulPresence: JournalStamp?
    var doubtfulDeletion: JournalStamp?

    init() {}

    /// Whether an acknowledged operation states anything about the row (a row only in-doubt
    /// operations touched is not checked: nothing about it is required).
    var isRequired: Bool { presence != nil || deletion != nil || !slots.isEmpty }

    /// Whether an in-doubt effect after the required state explains an absent row (an
    /// in-doubt delete after the last acknowledged effect stating the row exists).
    var absenceExplained: Bool {
        guard let doubtfulDeletion, let presence else { return false }
        return doubtfulDeletion > presence
    }

    /// Whether an in-doubt effect explains a present row that must be absent (an in-doubt
    /// re-creation after its acknowledged delete).
    var presenceExplained: Bool {
        guard let doubtfulPresence, let deletion else { return false }
        return doubtfulPresence > deletion
    }

    /// Whether `actual` is allowed for the field of `slot` (which it does not equal): an
    /// in-doubt effect ordered after the required value's wrote it.
    func allows(_ actual: String?, for slot: Slot) -> Bool {
        allowed.contains { $0.field == slot.field && $0.stamp > slot.stamp && $0.value == actual }
    }

    /// Folds an in-doubt effect in: its values become allowed.
    mutating func allow(_ effect: Effect, stamp: JournalStamp, entity: Entity) {
        if effect.deleted {
            if doubtfulDeletion.map({ stamp > $0 }) ?? true { doubtfulDeletion = stamp }
            return
        }
        if doubtfulPresence.map({ stamp > $0 }) ?? true { doubtfulPresence = stamp }
        for (name, value) in effect.fields {
            let index = JournalFields.index(of: name, in: entity)!
            allowed.append(Slot(field: UInt8(index), value: value, stamp: stamp))
        }
    }

    /// Whether the row must be absent: its latest existence-stating effect is a delete. An
    /// effect after a delete re-creates the row (and only fields set after the delete count).
    var mustBeAbsent: Bool {
        guard let deletion else { return false }
        guard let presence else { return true }
        return deletion > presence
    }

    /// The fields the row must hold: those set after its latest delete.
    var expectedFields: [(index: Int, slot: Slot)] {
        slots.filter { slot in deletion.map { slot.stamp > $0 } ?? true }
            .sorted { $0.field < $1.field }
            .map { (Int($0.field), $0) }
    }

    /// The operation that created the row as far as the journal knows: the first effect
    /// stating it, unless a later delete voided that; then the earliest field set since.
    var creator: JournalStamp? {
        if let firstPresence, deletion.map({ firstPresence > $0 }) ?? true { return firstPresence }
        return expectedFields.map(\.slot.stamp).min()
    }

    /// The operations a lost row's expectations come from: its creator and every op that set
    /// a field it must hold, earliest first, each once.
    var writers: [JournalStamp] {
        var seen = Set<UInt64>()
        var stamps = [JournalStamp]()
        for stamp in ([creator].compactMap { $0 } + expectedFields.map(\.slot.stamp).sorted())
        where seen.insert(stamp.op).inserted {
            stamps.append(stamp)
        }
        return stamps
    }

    mutating func apply(_ effect: Effect, stamp: JournalStamp, summary: String, entity: Entity) {
        if effect.deleted {
            if deletion.map({ stamp > $0 }) ?? true { deletion = stamp }
            return
        }
        if presence.map({ stamp > $0 }) ?? true { presence = stamp }
        if firstPresence.map({ stamp < $0 }) ?? true {
            firstPresence = stamp
            firstSummary = summary
        }
        for (name, value) in effect.fields {
            // Validated by the caller.
            let index = JournalFields.index(of: name, in: entity)!
            let slot = Slot(field: UInt8(index), value: value, stamp: stamp)
            if let existing = slots.firstIndex(where: { $0.field == slot.field }) {
                if stamp > slots[existing].stamp { slots[existing] = slot }
            } else {
                slots.append(slot)
            }
        }
    }
}

/// The journal folded: per (entity, key), what must hold now, and what may.
///
/// The fold is order-independent: each field keeps the value of the acknowledged effect with
/// the greatest ``JournalStamp``, so lines may come in any order (concurrent connections
/// acknowledge out of commit order).
///
/// Journal records (``read(_:line:)``): an acknowledged operation's effects are required
/// (``apply(_:line:)``); an operation prepared but never acknowledged is *in doubt* — it may
/// have committed (a crash between its COMMIT and its acknowledgement) or not — and its
/// effects are allowed, never required (``finish()``).
public struct JournalExpectations: Sendable {
    var rows: [Entity: [String: RowExpectation]] = [:]
    /// Acknowledged entries folded.
    public private(set) var operations = 0
    /// Acknowledged effects folded.
    public private(set) var effects = 0
    /// Operations prepared and never acknowledged (counted by ``finish()``).
    public private(set) var inDoubt = 0

    /// Prepared attempts of operations not (yet) acknowledged, with their lines.
    private var prepared: [UInt64: [(attempt: Int, entry: JournalEntry, line: Int)]] = [:]
    /// Acknowledged operations: one acknowledgement each.
    private var acknowledged: Set<UInt64> = []

    public init() {}

    /// Distinct rows the journal states something about.
    public var rowCount: Int { rows.values.reduce(0) { $0 + $1.count } }

    /// Reads one journal record: a prepared attempt waits for its acknowledgement; an
    /// acknowledgement folds the attempt it names in (the op's other attempts are dropped); an
    /// entry without a phase is acknowledged. Call ``finish()`` after the last line.
    ///
    /// - Throws: ``JournalError/malformedLine(line:reason:)`` for an operation acknowledged
    ///   twice, an acknowledgement without its prepared line, or an entry ``apply(_:line:)``
    ///   refuses.
    public mutating func read(_ record: JournalRecord, line: Int) throws(JournalError) {
        switch record {
        case .prepared(let entry, let attempt):
            guard !acknowledged.contains(entry.op) else {
                throw .malformedLine(line: line, reason: "op \(entry.op) is prepared after its acknowledgement")
            }
            prepared[entry.op, default: []].append((attempt, entry, line))
        case .acknowledged(let op, let attempt):
            guard acknowledged.insert(op).inserted else {
                throw .malformedLine(
                    line: line, reason: "op \(op) is acknowledged twice (two runs wrote one journal?)")
            }
            guard let candidate = prepared.removeValue(forKey: op)?.last(where: { $0.attempt == attempt }) else {
                throw .malformedLine(
                    line: line, reason: "op \(op) is acknowledged (attempt \(attempt)) without a prepared line before it")
            }
            try apply(candidate.entry, line: candidate.line)
        case .entry(let entry):
            guard acknowledged.insert(entry.op).inserted else {
                throw .malformedLine(
                    line: line, reason: "op \(entry.op) is acknowledged twice (two runs wrote one journal?)")
            }
            try apply(entry, line: line)
        }
    }

    /// Folds in the operations still prepared and never acknowledged, as in doubt: each of
    /// their attempts' values is allowed, none required.
    ///
    /// - Throws: ``JournalError/malformedLine(line:reason:)`` for an effect verify cannot check.
    public mutating func finish() throws(JournalError) {
        let pending = prepared.sorted { $0.key < $1.key }
        prepared = [:]
        for (_, attempts) in pending {
            inDoubt += 1
            for attempt in attempts {
                for (_, (entity, effect), stamp) in try Self.canonical(attempt.entry, line: attempt.line) {
                    rows[entity, default: [:]][effect.key, default: RowExpectation()]
                        .allow(effect, stamp: stamp, entity: entity)
                }
            }
        }
    }

    /// Folds one acknowledged journal entry in: its effects are required.
    ///
    /// - Throws: ``JournalError/malformedLine(line:reason:)`` when the entry's time is not a
    ///   timestamp, or an effect names an entity or field verify cannot check, or a value does
    ///   not fit its field (named by its place in the line, never quoted).
    public mutating func apply(_ entry: JournalEntry, line: Int) throws(JournalError) {
        for (_, (entity, effect), stamp) in try Self.canonical(entry, line: line) {
            rows[entity, default: [:]][effect.key, default: RowExpectation()]
                .apply(effect, stamp: stamp, summary: entry.summary, entity: entity)
        }
        operations += 1
        effects += entry.effects.count
    }

    /// The entry's effects validated (all of them before any is folded, so a refused line
    /// leaves no trace), with values in canonical form and their stamps.
    private static func canonical(_ entry: JournalEntry, line: Int) throws(JournalError)
        -> [(Int, (Entity, Effect), JournalStamp)]
    {
        guard let at = PostgresTimestamp(entry.at), at != .infinity, at != .negativeInfinity else {
            throw .malformedLine(line: line, reason: "`at` is not a timestamp like 2025-11-02T10:00:00.000000Z")
        }
        var checked = [(Entity, Effect)]()
        for (position, effect) in entry.effects.enumerated() {
            checked.append((try Self.validated(effect, position: position, line: line), effect))
        }
        return checked.enumerated().map { position, pair in
            let (entity, effect) = pair
            let stamp = JournalStamp(
                at: at.microsecondsSinceEpoch, op: entry.op, effect: UInt32(position), kind: entry.kind)
            var canonical = effect
            for (name, value) in effect.fields {
                let kind = JournalFields.fields(entity)[JournalFields.index(of: name, in: entity)!].kind
                // Validated above. Written with updateValue: assigning a nil `String?` through
                // the subscript would remove the field, and a JSON null means "must be NULL".
                let text: String? = value.map { try! JournalFields.canonical($0, kind: kind).get() }
                canonical.fields.updateValue(text, forKey: name)
            }
            return (position, (entity, canonical), stamp)
        }
    }

    private static func validated(_ effect: Effect, position: Int, line: Int) throws(JournalError) -> Entity {
        let place = "`effects[\(position)]`"
        guard let entity = Entity(rawValue: effect.entity), JournalFields.entities.contains(entity) else {
            throw .malformedLine(
                line: line,
                reason: "\(place) names an entity verify does not check (it checks "
                    + JournalFields.entities.map(\.rawValue).joined(separator: ", ") + ")")
        }
        guard !effect.key.isEmpty else { throw .malformedLine(line: line, reason: "\(place) has an empty `key`") }
        if effect.deleted && !effect.fields.isEmpty {
            throw .malformedLine(line: line, reason: "\(place) both deletes its row and sets fields of it")
        }
        for (name, value) in effect.fields.sorted(by: { $0.key < $1.key }) {
            guard let index = JournalFields.index(of: name, in: entity) else {
                throw .malformedLine(
                    line: line,
                    reason: "\(place) sets \(Self.shown(name)), which verify does not check on \(entity) (it checks "
                        + JournalFields.fields(entity).map(\.name).joined(separator: ", ") + ")")
            }
            guard let value else { continue }
            if case .failure(let error) = JournalFields.canonical(value, kind: JournalFields.fields(entity)[index].kind)
            {
                throw .malformedLine(line: line, reason: "\(place) `\(name)` is not \(error.expected)")
            }
        }
        return entity
    }

    /// A field name from the file, named only when it looks like one.
    private static func shown(_ name: String) -> String {
        let identifier =
            name.utf8.count <= 40 && !name.isEmpty
            && name.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
        return identifier ? "`\(name)`" : "a field"
    }
}
