/// The stages of a cutover, in the order they are reached (ARCHITECTURE §7).
///
/// Raw values are the names operators type (`--to reads_switched`) and the names stored in the
/// `cutover-<name>` stream's events, so they never change.
public enum CutoverState: String, Sendable, Hashable, CaseIterable, Codable, CustomStringConvertible {
    case planned, capturing, backfilled, shadowing, verified
    case readsSwitched = "reads_switched"
    case writesSwitched = "writes_switched"
    case completed, aborted

    /// The state `advance` leads to; `nil` for the terminal states.
    public var next: CutoverState? {
        switch self {
        case .planned: .capturing
        case .capturing: .backfilled
        case .backfilled: .shadowing
        case .shadowing: .verified
        case .verified: .readsSwitched
        case .readsSwitched: .writesSwitched
        case .writesSwitched: .completed
        case .completed, .aborted: nil
        }
    }

    /// Whether an abort is allowed: only while legacy still takes the writes (before the write
    /// switch), since after it aborting would strand writes the ledger accepted.
    public var mayAbort: Bool {
        switch self {
        case .planned, .capturing, .backfilled, .shadowing, .verified, .readsSwitched: true
        case .writesSwitched, .completed, .aborted: false
        }
    }

    /// Where `rollback` returns to: one step back, and only from the switched states.
    public var rollbackTarget: CutoverState? {
        switch self {
        case .readsSwitched: .shadowing
        case .writesSwitched: .readsSwitched
        default: nil
        }
    }

    public var description: String { rawValue }
}

/// One move of the machine: from a state to the next.
public struct CutoverStep: Sendable, Hashable, CustomStringConvertible {
    public var from: CutoverState
    public var to: CutoverState

    public init(from: CutoverState, to: CutoverState) {
        self.from = from
        self.to = to
    }

    public var description: String { "\(from.rawValue) → \(to.rawValue)" }
}

/// What an operator asks of the machine.
public enum CutoverInput: Sendable, Hashable {
    /// One step forward; with a target, only if it is the next state (a cutover never skips a
    /// gate).
    case advance(to: CutoverState?)
    case rollback
    case abort
}

/// Who is authoritative for reads or for writes.
public enum Authority: String, Sendable, Hashable, Codable {
    case legacy, ledger
}

/// What the runner must do, in order, to carry out a transition the machine accepted. The
/// machine only decides; the runner performs these against the databases.
public enum CutoverAction: Sendable, Hashable {
    /// Evaluate the gates of `step`; any failing gate refuses the transition.
    case checkGates(CutoverStep)
    /// Point reads at an authority.
    case routeReads(Authority)
    /// The write switch: legacy locked, drained, guarded; writes routed to the ledger.
    case switchWrites
    /// The write switch undone: guard removed, writes routed back to legacy.
    case switchWritesBack
    /// The end: reverse sync stopped, capture removed, legacy left read-only.
    case finish
    /// Append the transition's event to the cutover's stream (always the last action: the
    /// state changes only once everything before it succeeded).
    case record(CutoverStep)
}

/// Why the machine refused an input.
public enum CutoverRefusal: Error, Sendable, Hashable, CustomStringConvertible {
    /// `advance --to` named a state that is not the next one.
    case notNext(from: CutoverState, asked: CutoverState, next: CutoverState)
    /// Nothing follows a terminal state.
    case terminal(CutoverState)
    case rollbackNotAllowed(from: CutoverState)
    case abortNotAllowed(from: CutoverState)

    public var description: String {
        switch self {
        case .notNext(let from, let asked, let next):
            asked == from
                ? "the cutover is already \(from.rawValue); the next state is \(next.rawValue)"
                : "cannot advance from \(from.rawValue) to \(asked.rawValue): a cutover goes one gated step at a time, "
                    + "and the next state is \(next.rawValue)"
        case .terminal(let state):
            "the cutover is \(state.rawValue): nothing follows (start a new one with `cutover init --name …`)"
        case .rollbackNotAllowed(let from):
            "cannot roll back from \(from.rawValue): rollback is only from reads_switched (to shadowing) "
                + "and from writes_switched (to reads_switched)"
        case .abortNotAllowed(let from):
            from == .writesSwitched
                ? "cannot abort after the write switch: the ledger has taken writes; roll back to reads_switched first"
                : "cannot abort: the cutover is already \(from.rawValue)"
        }
    }
}

/// The cutover's state machine, pure: a state and an input give the next state and the actions
/// that carry the transition out, or a refusal. No I/O, so every state × input is tested, and
/// the runner (which talks to the databases) cannot invent a transition of its own.
public enum CutoverMachine {
    /// The outcome of `input` in `state`.
    public static func transition(
        _ state: CutoverState, _ input: CutoverInput
    ) -> Result<(state: CutoverState, actions: [CutoverAction]), CutoverRefusal> {
        switch input {
        case .advance(let asked):
            guard let next = state.next else { return .failure(.terminal(state)) }
            if let asked, asked != next { return .failure(.notNext(from: state, asked: asked, next: next)) }
            let step = CutoverStep(from: state, to: next)
            var actions: [CutoverAction] = [.checkGates(step)]
            switch next {
            case .readsSwitched: actions.append(.routeReads(.ledger))
            case .writesSwitched: actions.append(.switchWrites)
            case .completed: actions.append(.finish)
            default: break
            }
            return .success((next, actions + [.record(step)]))
        case .rollback:
            guard let target = state.rollbackTarget else { return .failure(.rollbackNotAllowed(from: state)) }
            let step = CutoverStep(from: state, to: target)
            let undo: CutoverAction = state == .readsSwitched ? .routeReads(.legacy) : .switchWritesBack
            return .success((target, [undo, .record(step)]))
        case .abort:
            guard state.mayAbort else { return .failure(.abortNotAllowed(from: state)) }
            let step = CutoverStep(from: state, to: .aborted)
            // Reads go back to legacy first when they had moved; before that, nothing to undo.
            let undo: [CutoverAction] = state == .readsSwitched ? [.routeReads(.legacy)] : []
            return .success((.aborted, undo + [.record(step)]))
        }
    }
}
