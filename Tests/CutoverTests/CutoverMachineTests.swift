import Cutover
import Testing

/// The pure machine, every state × every input, against a table written out by hand (not
/// derived from the machine's own helpers, so a wrong `next` or `mayAbort` shows).
@Suite("Cutover: the state machine, exhaustively")
struct CutoverMachineTests {
    typealias S = CutoverState

    /// `advance` without a target: the expected next state and actions, `nil` for refusal (terminal).
    static let advance: [S: (S, [CutoverAction])?] = [
        .planned: (
            .capturing,
            [.checkGates(.init(from: .planned, to: .capturing)), .record(.init(from: .planned, to: .capturing))]
        ),
        .capturing: (
            .backfilled,
            [.checkGates(.init(from: .capturing, to: .backfilled)), .record(.init(from: .capturing, to: .backfilled))]
        ),
        .backfilled: (
            .shadowing,
            [.checkGates(.init(from: .backfilled, to: .shadowing)), .record(.init(from: .backfilled, to: .shadowing))]
        ),
        .shadowing: (
            .verified,
            [.checkGates(.init(from: .shadowing, to: .verified)), .record(.init(from: .shadowing, to: .verified))]
        ),
        .verified: (
            .readsSwitched,
            [
                .checkGates(.init(from: .verified, to: .readsSwitched)), .routeReads(.ledger),
                .record(.init(from: .verified, to: .readsSwitched)),
            ]
        ),
        .readsSwitched: (
            .writesSwitched,
            [
                .checkGates(.init(from: .readsSwitched, to: .writesSwitched)), .switchWrites,
                .record(.init(from: .readsSwitched, to: .writesSwitched)),
            ]
        ),
        .writesSwitched: (
            .completed,
            [
                .checkGates(.init(from: .writesSwitched, to: .completed)), .finish,
                .record(.init(from: .writesSwitched, to: .completed)),
            ]
        ),
        .completed: nil,
        .aborted: nil,
    ]

    static let rollback: [S: (S, [CutoverAction])] = [
        .readsSwitched: (.shadowing, [.routeReads(.legacy), .record(.init(from: .readsSwitched, to: .shadowing))]),
        .writesSwitched: (
            .readsSwitched, [.switchWritesBack, .record(.init(from: .writesSwitched, to: .readsSwitched))]
        ),
    ]

    static let abort: [S: [CutoverAction]] = [
        .planned: [.record(.init(from: .planned, to: .aborted))],
        .capturing: [.record(.init(from: .capturing, to: .aborted))],
        .backfilled: [.record(.init(from: .backfilled, to: .aborted))],
        .shadowing: [.record(.init(from: .shadowing, to: .aborted))],
        .verified: [.record(.init(from: .verified, to: .aborted))],
        .readsSwitched: [.routeReads(.legacy), .record(.init(from: .readsSwitched, to: .aborted))],
    ]

    static func unwrap(
        _ result: Result<(state: S, actions: [CutoverAction]), CutoverRefusal>
    ) -> (S, [CutoverAction])? {
        if case .success(let value) = result { return (value.state, value.actions) }
        return nil
    }

    static func refusal(_ result: Result<(state: S, actions: [CutoverAction]), CutoverRefusal>) -> CutoverRefusal? {
        if case .failure(let refusal) = result { return refusal }
        return nil
    }

    @Test(arguments: S.allCases)
    func advanceWithoutTarget(_ state: S) {
        let result = CutoverMachine.transition(state, .advance(to: nil))
        if let expected = Self.advance[state]! {
            let got = Self.unwrap(result)
            #expect(got?.0 == expected.0 && got?.1 == expected.1, "\(state): \(result)")
        } else {
            #expect(Self.refusal(result) == .terminal(state))
        }
    }

    /// Every target from every state: only the next state is accepted, with the same outcome as
    /// no target; any other is refused naming the next one.
    @Test(arguments: S.allCases)
    func advanceToEachState(_ state: S) {
        for target in S.allCases {
            let result = CutoverMachine.transition(state, .advance(to: target))
            guard let expected = Self.advance[state]! else {
                #expect(Self.refusal(result) == .terminal(state), "\(state) → \(target)")
                continue
            }
            if target == expected.0 {
                let got = Self.unwrap(result)
                #expect(got?.0 == expected.0 && got?.1 == expected.1, "\(state) → \(target)")
            } else {
                #expect(
                    Self.refusal(result) == .notNext(from: state, asked: target, next: expected.0),
                    "\(state) → \(target)")
            }
        }
    }

    @Test(arguments: S.allCases)
    func rollbackFromEachState(_ state: S) {
        let result = CutoverMachine.transition(state, .rollback)
        if let expected = Self.rollback[state] {
            let got = Self.unwrap(result)
            #expect(got?.0 == expected.0 && got?.1 == expected.1, "\(state)")
        } else {
            #expect(Self.refusal(result) == .rollbackNotAllowed(from: state))
        }
    }

    @Test(arguments: S.allCases)
    func abortFromEachState(_ state: S) {
        let result = CutoverMachine.transition(state, .abort)
        if let expected = Self.abort[state] {
            let got = Self.unwrap(result)
            #expect(got?.0 == .aborted && got?.1 == expected, "\(state)")
        } else {
            #expect(Self.refusal(result) == .abortNotAllowed(from: state))
        }
    }

    @Test func refusalsSayWhatIsAllowed() {
        #expect(
            CutoverRefusal.notNext(from: .planned, asked: .verified, next: .capturing).description
                == "cannot advance from planned to verified: a cutover goes one gated step at a time, and the next state is capturing"
        )
        #expect(
            CutoverRefusal.notNext(from: .shadowing, asked: .shadowing, next: .verified).description
                == "the cutover is already shadowing; the next state is verified")
        #expect(
            CutoverRefusal.abortNotAllowed(from: .writesSwitched).description
                == "cannot abort after the write switch: the ledger has taken writes; roll back to reads_switched first"
        )
    }

    /// The stored names never change: they are in every cutover stream ever written.
    @Test func stateNamesAreStable() {
        #expect(
            S.allCases.map(\.rawValue) == [
                "planned", "capturing", "backfilled", "shadowing", "verified", "reads_switched", "writes_switched",
                "completed", "aborted",
            ])
    }
}
