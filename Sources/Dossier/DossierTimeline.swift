import Billing
import Cutover
import EventStore
import Foundation
import Postgres
import Shadow
import TextFormats

/// One line of the cutover's audit trail as the dossier shows it: what happened, who did it and
/// what was measured — the same fields `cutover log --format json` prints.
public struct DossierTimelineEntry: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        case initialized, advanced
        case rolledBack = "rolled_back"
        case aborted
        case switchBegun = "switch_begun"
        case switchUndone = "switch_undone"
    }

    /// The stored event type (`CutoverAdvanced`…).
    public var type: String
    public var kind: Kind
    public var from: CutoverState?
    public var to: CutoverState?
    /// The state after this event (the fold's).
    public var state: CutoverState
    public var actor: CutoverActor
    /// When the store recorded the event (`events.recorded_at`).
    public var recordedAt: PostgresTimestamp?
    public var reason: String?
    /// Why a switch was undone.
    public var failure: String?
    public var acceptedQuarantine: String?
    public var maxFreezeMilliseconds: Int64?
    public var measurements: [String: String]?
    public var gates: [CutoverGate]

    /// `advanced`, `rolled back`…, for text.
    public var verb: String {
        switch kind {
        case .initialized: "initialized"
        case .advanced: "advanced"
        case .rolledBack: "rolled back"
        case .aborted: "aborted"
        case .switchBegun: "switch begun"
        case .switchUndone: "switch undone"
        }
    }

    /// `shadowing → verified`, or the state for the initialization.
    public var step: String {
        guard let from, let to else { return state.rawValue }
        return "\(from.rawValue) → \(to.rawValue)"
    }
}

extension MigrationDossier {
    /// The cutover's stream, oldest first, the initialization included; empty without a cutover.
    public var timeline: [DossierTimelineEntry] {
        guard let record = cutover else { return [] }
        var entries = [
            DossierTimelineEntry(
                type: "CutoverInitialized", kind: .initialized, state: .planned, actor: record.initialized.actor,
                recordedAt: cutoverRecordedAt.first, gates: [])
        ]
        var state = CutoverState.planned
        for (index, event) in record.history.enumerated() {
            let recordedAt = index + 1 < cutoverRecordedAt.count ? cutoverRecordedAt[index + 1] : nil
            switch event {
            case .initialized: continue
            case .advanced(let t), .rolledBack(let t), .aborted(let t):
                let kind: DossierTimelineEntry.Kind =
                    switch event {
                    case .rolledBack: .rolledBack
                    case .aborted: .aborted
                    default: .advanced
                    }
                state = t.to
                entries.append(
                    DossierTimelineEntry(
                        type: event.type, kind: kind, from: t.from, to: t.to, state: state, actor: t.actor,
                        recordedAt: recordedAt, reason: t.reason, acceptedQuarantine: t.acceptedQuarantine,
                        measurements: t.measurements, gates: t.gates))
            case .switchIntended(let i):
                entries.append(
                    DossierTimelineEntry(
                        type: event.type, kind: .switchBegun, from: i.from, to: i.to, state: state, actor: i.actor,
                        recordedAt: recordedAt, reason: i.reason, maxFreezeMilliseconds: i.maxFreezeMilliseconds,
                        gates: i.gates))
            case .switchUndone(let u):
                entries.append(
                    DossierTimelineEntry(
                        type: event.type, kind: .switchUndone, from: u.from, to: u.to, state: state, actor: u.actor,
                        recordedAt: recordedAt, failure: u.failure, measurements: u.measurements, gates: []))
            }
        }
        return entries
    }
}
