import Billing
import EventStore
import Postgres

/// The decisions of one legacy operation's commands, decided in order on the ledger's state,
/// nothing appended (``CommandExecutor/decideChain(_:on:)``).
public struct ChainDecision: Sendable {
    /// Each command's decision, in order; shorter than the commands when one was rejected.
    public var decisions: [Decision]
    /// The command that was rejected (its index) and why; `nil` when all were decided.
    public var rejection: (index: Int, rejection: CommandRejection)?
    /// Every stream the commands read or wrote, with its row before the first command (`nil`:
    /// no row), in the state the decisions were made on.
    public var before: [String: CanonicalRow?]
    /// Set when the chain's decisions are not an exact prediction: a later command looked
    /// children up in the read models, which do not hold what an earlier command decided.
    public var inexact: String?

    /// The predicted row of every stream the chain decided, the last decision winning
    /// (`nil`: ended), with the index of the command that decided it last.
    public var decided: [String: (row: CanonicalRow?, command: Int)] {
        var result = [String: (row: CanonicalRow?, command: Int)]()
        for (index, decision) in decisions.enumerated() {
            for row in decision.rows { result[row.streamID] = (row, index) }
            for gone in decision.deleted { result[gone.entity.streamID(key: gone.key)] = (nil, index) }
        }
        return result
    }
}

extension CommandExecutor {
    /// Decides `commands` in order — each on the state the previous ones decided — without
    /// appending: what candidate mode compares with the legacy operation they restate.
    ///
    /// One transaction reads the ledger (streams replayed, children from the read models once
    /// they reach the store's head — read committed, as an execution reads: waiting for the
    /// projection inside one snapshot would never see it arrive); a decided row stands in for its stream's state for the
    /// commands after it. Keys the executor allocates (a finalization's credit applications,
    /// when the command names none) come from the store's sequences, as in an execution.
    ///
    /// - Throws: ``CommandError``, input errors (``CommandRejection`` `invalid_input` is returned
    ///   as the rejection, not thrown), database errors.
    public func decideChain(_ commands: [BillingCommand], on connection: Connection) async throws -> ChainDecision {
        let loader = self.loader
        return try await connection.withSession { session in
            try session.transaction { tx in
                var chain = ChainDecision(decisions: [], rejection: nil, before: [:], inexact: nil)
                var state = CommandState()
                // Entities of rows an earlier command created: a children lookup of them in the
                // read models would miss those rows.
                var created = Set<Entity>()
                for (index, command) in commands.enumerated() {
                    do {
                        try command.validateInput()
                        var loaded = try loader.load(self.rules(command), name: command.name, into: state, in: tx)
                        try Self.checkTimeZone(command, tx)
                        let decidable = try self.fillIDs(command, state: loaded.state, tx)
                        loaded = try loader.load(decidable, name: command.name, into: loaded.state, in: tx)
                        for requirement in decidable.requirements(given: loaded.state) {
                            if case .children(let entity, _, _) = requirement, created.contains(entity),
                                chain.inexact == nil
                            {
                                chain.inexact =
                                    "\(command.name) looks \(entity) rows up in the read models, which do not hold the \(entity) "
                                    + "an earlier command of the operation created"
                            }
                        }
                        for (id, stream) in loaded.state.streams where chain.before[id] == nil {
                            chain.before[id] = .some(stream.row)
                        }
                        let decision = try Self.decide(decidable, in: loaded.state)
                        try Self.checkTime(decision, decidable, state: loaded.state, name: command.name, at: command.at)
                        let appends = try Self.appends(
                            decision, state: loaded.state, name: command.name, at: command.at, loader: loader, tx)
                        state = loaded.state
                        for append in appends {
                            let current = state.streams[append.streamID]
                            if current == nil {
                                chain.before[append.streamID] = .some(nil)
                            }
                            if current?.row == nil, let entity = append.events.first?.entity {
                                created.insert(entity)
                            }
                            guard !append.events.isEmpty else { continue }
                            let row = decision.rows.first { $0.streamID == append.streamID }
                            state.streams[append.streamID] = StreamState(
                                row: row, version: append.version + Int64(append.events.count),
                                lastOccurredAt: append.events.last?.occurredAt ?? current?.lastOccurredAt)
                        }
                        chain.decisions.append(decision)
                    } catch let rejection as CommandRejection {
                        chain.rejection = (index, rejection)
                        break
                    }
                }
                return chain
            }
        }
    }
}
