import Billing
import Commands
import EventStore
import Foundation
import Postgres
import Synchronization

/// Candidate mode's comparison, in the shadow tailer: the commands `serve --mode candidate`
/// recorded for a legacy transaction are decided on the ledger's state *before* the tailer's
/// batch that holds that transaction, and their predicted rows compared with the legacy rows the
/// batch's sync reads — the only place where both sides are known exactly.
///
/// Exactness is checked, never assumed. A comparison is **unverifiable** (counted with its
/// reason, never a mismatch) when:
/// - another legacy transaction in the same batch touched a row the commands read or legacy's
///   transaction changed (the ledger's "before" or legacy's "after" would include it);
/// - a change committed beyond the batch — read from the outbox *after* the sync read legacy, so
///   every change that read could have seen is among them — touches such a row, or the
///   transaction's own changes continue beyond the batch;
/// - a legacy row involved is quarantined, a TRUNCATE is involved, the candidate could not
///   decide (a stored command that no longer decodes, read models too far behind), or another
///   writer moved a stream during the batch.
///
/// Otherwise every row legacy's transaction changed and every row the commands decided is
/// compared under ``Commands/CandidateComparison`` (canonical columns exact, `attributes` and a
/// cache-only `updated_at` excluded): **match**, or **mismatch** with each differing column and
/// both values. A command the candidate rejects while legacy performed the operation is a
/// mismatch on `(command)`.
struct CandidateComparer: Sendable {
    let log: CandidateCommandLog
    let executor: CommandExecutor
    let reader: ChangeReader
    let resolver: KeyResolver
    /// Each transaction's resolved keys, while it is beyond the tailer (one cache per run).
    let cache = ResolvedCache()
    /// Changes read beyond a batch to prove nothing later touched its rows.
    static let beyondLimit = 10_000

    /// The streams one transaction's changes touch.
    struct Touched: Sendable {
        var streams: Set<String>
        var truncated: Set<Entity>
    }

    /// One legacy transaction's commands, decided before the batch is synced.
    struct Pending: Sendable {
        var xid: UInt64
        var entries: [CandidateCommandLog.Entry]
        /// The decisions, or why there are none.
        /// The commands, decoded, or why they are not.
        var commands: Result<[BillingCommand], Reason>
        /// Streams the transaction changed (as the mapping resolves its captured changes).
        var touched: Set<String>
        /// Entities one of its changes truncated.
        var truncated: Set<Entity>
    }

    struct Reason: Error, Sendable { var text: String }

    /// The batch's plan: every pending transaction, and the streams each other transaction touched.
    struct Plan: Sendable {
        var pending: [Pending]
        /// Per transaction of the batch (by xid), the streams it touched.
        var touchedBy: [UInt64: Set<String>]
        var truncatedBy: [UInt64: Set<Entity>]
        /// Set when the plan's decisions no longer describe the ledger before the batch.
        var invalidated: String?

    }

    /// Reads the batch's pending commands and decides them on the ledger as it is now (before
    /// the batch's sync). `nil` when none of the batch's transactions has a pending command.
    func plan(_ changes: [CapturedChange], legacy: Connection, store: Connection) async throws -> Plan? {
        var byXid = [UInt64: [CapturedChange]]()
        for change in changes {
            guard let xid = UInt64(change.position.xid) else { continue }
            byXid[xid, default: []].append(change)
        }
        let log = self.log
        let xids = Set(byXid.keys)
        let recorded = try await store.withSession { try log.pending(xids: xids, in: $0) }
        guard !recorded.isEmpty else { return nil }
        var touchedBy = [UInt64: Set<String>]()
        var truncatedBy = [UInt64: Set<Entity>]()
        for (xid, xidChanges) in byXid {
            let touched = try await self.touched(xid, xidChanges, legacy: legacy)
            touchedBy[xid] = touched.streams
            truncatedBy[xid] = touched.truncated
        }
        var pending = [Pending]()
        for (xid, entries) in recorded.sorted(by: { $0.key < $1.key }) {
            // Decided later, once the cheap checks have passed (``judge``): a tailer that falls
            // behind makes most comparisons unverifiable, and deciding them anyway would only
            // put it further behind.
            let commands: Result<[BillingCommand], Reason>
            do {
                commands = .success(
                    try entries.map { entry in
                        try JSONDecoder().decode(BillingCommand.self, from: Data(entry.commandJSON.utf8))
                    })
            } catch {
                commands = .failure(Reason(text: "a recorded command no longer decodes: \(error)"))
            }
            pending.append(
                Pending(
                    xid: xid, entries: entries, commands: commands, touched: touchedBy[xid] ?? [],
                    truncated: truncatedBy[xid] ?? []))
        }
        return Plan(pending: pending, touchedBy: touchedBy, truncatedBy: truncatedBy)
    }

    /// The entity whose stream `stream` is (`invoice-42` → invoice; `invoice_line-…` is not an invoice's).
    static func entity(ofStream stream: String) -> Entity? {
        Entity.allCases.first { stream.hasPrefix($0.streamID(key: "")) }
    }

    static func streams(_ keys: [Entity: Set<String>]) -> Set<String> {
        var result = Set<String>()
        for (entity, entityKeys) in keys { for key in entityKeys { result.insert(entity.streamID(key: key)) } }
        return result
    }

    /// One verdict to write.
    struct Verdict: Sendable {
        var opID: String
        var verdict: CandidateCommandLog.Verdict
        var reason: String?
        var differences: [CandidateCommandLog.Difference]
    }

    /// Judges every pending transaction of `plan` against what the sync read; the verdicts are
    /// written by the returned closure, in the batch's store transaction.
    /// What was committed beyond a batch, read after the batch's sync read legacy: every change
    /// that read could have seen is among these.
    struct Beyond: Sendable {
        var changeCount: Int
        var streams: Set<String>
        var truncated: Set<Entity>
        var xids: Set<UInt64>
        /// Per pending transaction beyond the batch: the streams it touched.
        var pendingTouched: [UInt64: (streams: Set<String>, truncated: Set<Entity>)]
    }

    /// Reads the outbox beyond `position` and resolves its keys; `pendingOnly`: only when some
    /// candidate command beyond is pending (otherwise nothing needs it; `nil`).
    ///
    /// The whole tail is read each time (a transaction with a smaller xid may commit later and
    /// land before what was read last), but each transaction's keys are resolved once
    /// (``ResolvedCache``): a batch cut in many segments would otherwise resolve the same tail
    /// again for every one of them.
    func beyond(_ position: CapturePosition, legacy: Connection, store: Connection, pendingOnly: Bool) async throws
        -> Beyond?
    {
        let reader = self.reader
        // How many changes each transaction beyond has (no row images: cheap however far behind
        // the tailer runs); the images only of the transactions not resolved yet.
        let counts = try await legacy.withSession { try reader.countsByXid(beyond: position, in: $0) }
        let changeCount = counts.values.reduce(0, +)
        let log = self.log
        let xids = Set(counts.keys)
        let pending = try await store.withSession { try log.pendingXids(among: xids, in: $0) }
        if pendingOnly, pending.isEmpty { return nil }
        cache.forget(below: UInt64(position.xid) ?? 0)
        let unresolved = counts.filter { cache.touched($0.key, changes: $0.value) == nil }.keys.sorted()
        var fetched = [UInt64: [CapturedChange]]()
        if !unresolved.isEmpty {
            for change in try await legacy.withSession({ try reader.read(xids: unresolved, in: $0) }) {
                if let xid = UInt64(change.position.xid) { fetched[xid, default: []].append(change) }
            }
        }
        var streams = Set<String>()
        var truncated = Set<Entity>()
        var pendingTouched = [UInt64: (streams: Set<String>, truncated: Set<Entity>)]()
        for (xid, count) in counts {
            let touched: Touched
            if let known = cache.touched(xid, changes: count) {
                touched = known
            } else {
                touched = try await self.touched(xid, fetched[xid] ?? [], legacy: legacy)
            }
            streams.formUnion(touched.streams)
            truncated.formUnion(touched.truncated)
            if pending.contains(xid) { pendingTouched[xid] = (touched.streams, touched.truncated) }
        }
        return Beyond(
            changeCount: changeCount, streams: streams, truncated: truncated, xids: xids, pendingTouched: pendingTouched
        )
    }

    /// The streams transaction `xid`'s `changes` touch (from the cache while they are the same).
    func touched(_ xid: UInt64, _ changes: [CapturedChange], legacy: Connection) async throws -> Touched {
        if let known = cache.touched(xid, changes: changes.count) { return known }
        let resolver = self.resolver
        let (keys, truncated) = try await legacy.withSession { try resolver.touchedKeys(changes, in: $0) }
        let touched = Touched(streams: Self.streams(keys), truncated: truncated)
        cache.store(xid, changes: changes.count, touched)
        return touched
    }

    /// The pending transactions beyond a batch whose rows the batch's sync wrote into the ledger:
    /// the sync read legacy's rows as they were, possibly with their change already in (a larger
    /// xid may commit first), so the ledger's state before their own batch may already hold their
    /// effect. Never compared, then: unverifiable, with the reason.
    func taint(_ beyond: Beyond, synced: Set<String>, syncedEntities: Set<Entity>, by position: CapturePosition)
        -> [UInt64: String]
    {
        var tainted = [UInt64: String]()
        for (xid, touched) in beyond.pendingTouched {
            if let stream = touched.streams.intersection(synced).sorted().first {
                tainted[xid] =
                    "its change may have reached the ledger early, with the sync of an earlier transaction that read legacy "
                    + "after it committed (\(stream), synced up to xid \(position.xid))"
            } else if let entity = touched.truncated.intersection(syncedEntities).first {
                tainted[xid] =
                    "its change may have reached the ledger early, with the sync of an earlier transaction that read legacy "
                    + "after it committed (truncated \(entity.rawValue))"
            }
        }
        return tainted
    }

    func judge(
        _ plan: Plan, beyond: Beyond, legacyStates: [Entity: [String: ShadowSync.LegacyState]],
        ledger: [Entity: [String: ShadowSync.StreamState]], store: Connection
    ) async throws -> [Verdict] {
        let beyondStreams = beyond.streams
        let beyondTruncated = beyond.truncated
        let beyondXids = beyond.xids
        var legacyRows = [String: ShadowSync.LegacyState]()
        for (entity, states) in legacyStates {
            for (key, state) in states { legacyRows[entity.streamID(key: key)] = state }
        }
        var ledgerRows = [String: CanonicalRow?]()
        for (entity, states) in ledger {
            for (key, state) in states { ledgerRows[entity.streamID(key: key)] = state.row }
        }

        var verdicts = [Verdict]()
        for pending in plan.pending {
            func unverifiable(_ reason: String) {
                for entry in pending.entries {
                    verdicts.append(Verdict(opID: entry.opID, verdict: .unverifiable, reason: reason, differences: []))
                }
            }
            if let invalidated = plan.invalidated {
                unverifiable(invalidated)
                continue
            }
            let commands: [BillingCommand]
            switch pending.commands {
            case .failure(let reason):
                unverifiable(reason.text)
                continue
            case .success(let decoded): commands = decoded
            }
            if !pending.truncated.isEmpty {
                unverifiable(
                    "the legacy transaction truncated \(pending.truncated.map(\.rawValue).sorted().joined(separator: ", "))"
                )
                continue
            }
            if beyondXids.contains(pending.xid) {
                unverifiable("the legacy transaction's changes continue beyond the tailer's batch")
                continue
            }
            if beyond.changeCount >= Self.beyondLimit {
                unverifiable(
                    "more than \(Self.beyondLimit) captured changes wait beyond the batch: the tailer is behind")
                continue
            }
            /// Why a row of `involved` may hold another transaction's change, if one may.
            func collision(_ involved: Set<String>) -> String? {
                let involvedEntities = Set(involved.compactMap(Self.entity(ofStream:)))
                for (xid, streams) in plan.touchedBy where xid != pending.xid {
                    if let stream = streams.intersection(involved).sorted().first {
                        return
                            "another legacy transaction of the same batch changed a row it involves (\(stream), xid \(xid))"
                    }
                    if let entity = plan.truncatedBy[xid]?.intersection(involvedEntities).first {
                        return
                            "another legacy transaction of the same batch changed a row it involves (truncated \(entity.rawValue), xid \(xid))"
                    }
                }
                if let stream = beyondStreams.intersection(involved).sorted().first {
                    return "a later legacy transaction had changed a row it involves before the comparison (\(stream))"
                }
                if let entity = beyondTruncated.intersection(involvedEntities).first {
                    return
                        "a later legacy transaction had changed a row it involves before the comparison (truncated \(entity.rawValue))"
                }
                return nil
            }
            // The rows legacy's transaction changed first (known without deciding) ...
            if let found = collision(pending.touched) {
                unverifiable(found)
                continue
            }
            // ... then decided — inside the sync, before its append: on the ledger before the batch.
            let chain: ChainDecision
            do {
                chain = try await executor.decideChain(commands, on: store)
            } catch let error as CommandError {
                unverifiable("the candidate could not decide (\(error))")
                continue
            }
            if let inexact = chain.inexact {
                unverifiable(inexact)
                continue
            }
            let decided = chain.decided
            // ... and the rows the commands read or wrote.
            if let found = collision(pending.touched.union(chain.before.keys).union(decided.keys)) {
                unverifiable(found)
                continue
            }
            var quarantined: String?
            for stream in pending.touched.union(decided.keys).sorted() {
                if case .quarantined(let reason, _, _) = legacyRows[stream] {
                    quarantined = "a legacy row it involves is quarantined (\(stream): \(reason))"
                    break
                }
            }
            if let quarantined {
                unverifiable(quarantined)
                continue
            }

            // Compare every row legacy changed and every row the candidate decided.
            var differences = [Int: [CandidateCommandLog.Difference]]()
            let last = max(0, chain.decisions.count - 1)
            for stream in pending.touched.union(decided.keys).sorted() {
                let before: CanonicalRow? = chain.before[stream] ?? ledgerRows[stream] ?? nil
                let predicted: CanonicalRow? = decided[stream].map(\.row) ?? before
                let legacyRow: CanonicalRow?
                switch legacyRows[stream] {
                case .row(let row): legacyRow = row
                case .absent: legacyRow = nil
                // A row legacy's transaction did not touch (the sync did not read it) is as it
                // was before: no other transaction changed it (the checks above).
                case .none: legacyRow = pending.touched.contains(stream) ? nil : before
                case .quarantined: continue
                }
                let result = CandidateComparison.compare(
                    stream: stream, predicted: predicted, before: before, legacy: legacyRow)
                if !result.differences.isEmpty {
                    differences[decided[stream]?.command ?? last, default: []] += result.differences
                }
            }
            for (index, entry) in pending.entries.enumerated() {
                if let (rejected, rejection) = chain.rejection {
                    if index == rejected {
                        verdicts.append(
                            Verdict(
                                opID: entry.opID, verdict: .mismatch, reason: "the candidate rejected what legacy did",
                                differences: [
                                    .init(
                                        stream: rejection.entity.map { $0.streamID(key: rejection.key ?? "") }
                                            ?? entry.command,
                                        column: "(command)", candidate: "rejected: \(rejection)", legacy: "performed")
                                ]))
                    } else {
                        verdicts.append(
                            Verdict(
                                opID: entry.opID, verdict: .unverifiable,
                                reason: "command \(rejected + 1) of the operation was rejected", differences: []))
                    }
                    continue
                }
                let found = differences[index] ?? []
                verdicts.append(
                    Verdict(
                        opID: entry.opID, verdict: found.isEmpty ? .match : .mismatch, reason: nil, differences: found))
            }
        }
        return verdicts
    }
}

/// The streams each transaction beyond the tailer touches, resolved once (again only when more
/// of its changes appear: it was still writing).
final class ResolvedCache: Sendable {
    private let entries = Mutex([UInt64: (changes: Int, touched: CandidateComparer.Touched)]())

    func touched(_ xid: UInt64, changes: Int) -> CandidateComparer.Touched? {
        entries.withLock { entries in entries[xid].flatMap { $0.changes == changes ? $0.touched : nil } }
    }

    func store(_ xid: UInt64, changes: Int, _ touched: CandidateComparer.Touched) {
        entries.withLock { $0[xid] = (changes, touched) }
    }

    /// Transactions the tailer has passed are never beyond it again.
    func forget(below xid: UInt64) {
        entries.withLock { entries in entries = entries.filter { $0.key >= xid } }
    }
}
