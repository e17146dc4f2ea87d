import Billing
import EventStore
import Foundation
import Mapping
import Postgres
import Shadow

/// Applies the ledger's write-path events back to legacy up to a store position (reverse
/// sync): `true` once legacy holds everything up to it, `false` when `within` ran out first.
public typealias ReverseSyncDrain = @Sendable (_ position: GlobalCursor, _ within: Duration) async throws -> Bool

extension CutoverRunner {
    /// The write-path origins whose events reverse sync carries to legacy.
    static let writePathOrigins = [SyncOrigin.command.metadataOrigin, SyncOrigin.stripe.metadataOrigin]

    /// The store position the write switch recorded (where the ledger began taking writes).
    static func switchPosition(_ record: CutoverRecord) -> Int64? {
        for event in record.history.reversed() {
            if case .advanced(let t) = event, t.to == .writesSwitched,
                let position = t.measurements?["store_position"].flatMap({ Int64($0) })
            {
                return position
            }
        }
        return nil
    }

    /// The write switch's rollback (`writes_switched → reads_switched`), bounded by
    /// `options.maxFreeze`: intent recorded; write routing `frozen` (serve refuses writes with
    /// "writes have moved back"; the update waits for the commands that read the routing);
    /// reverse sync drained to the store's head; the keys the write path changed compared in
    /// legacy and the ledger; the legacy guard removed (legacy writable again); routing gives
    /// writes to legacy and the transition is recorded. A failure before the guard is removed
    /// gives writes back to the ledger and records the rollback undone.
    func rollbackWrites(
        _ record: CutoverRecord, reason: String?, legacy: Connection, store: Connection, mapping: MappingFile,
        options: CutoverSwitchOptions, drain: ReverseSyncDrain
    ) async throws -> CutoverEvent.Transition {
        let step = CutoverStep(from: .writesSwitched, to: .readsSwitched)
        let log = self.log
        let eventStore = log.store
        let routing = RoutingTable(store: eventStore)
        let budget = options.maxFreeze
        let budgetMs = Self.milliseconds(budget)
        let writeGuard = LegacyWriteGuard(mapping: mapping)
        let intent = CutoverEvent.SwitchIntent(
            from: step.from, to: step.to, actor: .current(), reason: reason, maxFreezeMilliseconds: budgetMs, gates: [])
        try await store.withSession { try log.append(.switchIntended(intent), expectedVersion: record.version, in: $0) }
        let version = record.version + 1
        await Self.pause(after: "intent", options)

        let clock = ContinuousClock()
        let start = clock.now
        var measured = ["max_freeze_ms": String(budgetMs)]
        func remaining() -> Duration { budget - (clock.now - start) }
        do {
            do {
                try await store.withSession { session in
                    try session.transaction { tx in
                        try tx.execute("SET LOCAL lock_timeout = '\(max(1, budgetMs))ms'")
                        // Operations of several commands in flight finish first (they hold the lock shared).
                        try tx.lock(routing.operationLock, scope: .transaction)
                        let left = max(1, budgetMs - Self.milliseconds(clock.now - start))
                        try tx.execute("SET LOCAL lock_timeout = '\(left)ms'")
                        try routing.set(cutover: log.name, reads: .ledger, writes: .frozen, in: tx)
                    }
                }
            } catch let error as PostgresError where error.sqlState?.rawValue == "55P03" {
                throw CutoverSwitchFailure(
                    step: step,
                    failure: "writes could not be frozen within --max-freeze \(budgetMs) ms: operations in flight or a "
                        + "transaction holding the store's routing row (pg_stat_activity shows which); writes stay with the ledger",
                    measurements: [:])
            }
            // After the freeze committed: every command that read `ledger` has committed, so
            // the safe head covers all of them.
            let (head, position) = try await store.withSession {
                // Frozen, and every command that read `ledger` has committed: the head is final.
                (try ReverseSync.head(eventStore, in: $0), try Self.storeHead(eventStore, in: $0))
            }
            measured["freeze_wait_ms"] = String(Self.milliseconds(clock.now - start))
            measured["store_position"] = String(position)
            // What reverse sync has applied before the drain. Each of its batches read the keys it
            // wrote back from legacy and compared them with the ledger (round trip), and legacy's
            // guard lets nothing else write: only what the drain applies is left to verify, unless
            // a round trip found a difference. A row legacy refused is missing there: no rollback.
            let applied = try await store.withSession {
                try ReverseSync.status(scope: log.name, store: eventStore, in: $0)
            }
            if let applied, applied.quarantined > 0 {
                throw CutoverSwitchFailure(
                    step: step,
                    failure: "legacy lacks \(applied.quarantined) row(s) of the ledger that reverse sync could not write "
                        + "(first: \(applied.quarantineExamples.first?.description ?? "?")): fix the write_back SQL or legacy's "
                        + "constraint so reverse sync writes them (ledgerlift shadow reverse-sync --status lists them), "
                        + "then roll back; writes stay with the ledger",
                    measurements: [:])
            }
            await Self.pause(after: "frozen", options)

            let drainStart = clock.now
            guard try await drain(head, remaining()) else {
                throw CutoverSwitchFailure(
                    step: step,
                    failure: "reverse sync had not applied the ledger's writes up to position \(head) within "
                        + "--max-freeze \(budgetMs) ms: is `ledgerlift shadow reverse-sync --follow` running?",
                    measurements: [:])
            }
            measured["drain_ms"] = String(Self.milliseconds(clock.now - drainStart))
            await Self.pause(after: "drained", options)

            let verifyStart = clock.now
            let since = Self.switchPosition(record) ?? 0
            let roundTripped = applied.flatMap { $0.roundTripDifferences == 0 ? $0.checkpoint : nil }
            measured["verified_from"] = roundTripped.map { "reverse sync checkpoint \($0)" } ?? "the write switch"
            let keys = try await store.withSession { session in
                try Self.changedKeys(
                    since: nil, after: since, afterCursor: roundTripped, origins: Self.writePathOrigins,
                    store: eventStore, in: session)
            }
            let differences = try await verify(
                keys, legacy: legacy, store: store, mapping: mapping, since: verifyStart, into: &measured)
            if !differences.isEmpty {
                throw CutoverSwitchFailure(
                    step: step,
                    failure: "\(differences.count) key(s) the ledger's write path changed differ in legacy after reverse "
                        + "sync (first: \(differences[0])); writes stay with the ledger",
                    measurements: [:])
            }
            await Self.pause(after: "verified", options)
            guard remaining() > .zero else {
                throw CutoverSwitchFailure(
                    step: step, failure: "the rollback took longer than --max-freeze \(budgetMs) ms", measurements: [:])
            }
            let lockTimeout = max(1, Self.milliseconds(remaining()))
            try await legacy.withSession { session in
                try session.transaction { tx in
                    try tx.execute("SET LOCAL lock_timeout = '\(lockTimeout)ms'")
                    try writeGuard.remove(in: tx)
                }
            }
        } catch {
            measured["undone_after_ms"] = String(Self.milliseconds(clock.now - start))
            let failure = (error as? CutoverSwitchFailure)?.failure ?? "\(error)"
            let undone = CutoverEvent.SwitchUndone(
                from: step.from, to: step.to, actor: .current(), failure: failure, measurements: measured)
            try await store.withSession { session in
                try session.transaction { tx in
                    // Bounded too: a routing row held by someone else must not hold this command.
                    try tx.execute("SET LOCAL lock_timeout = '\(max(1, budgetMs))ms'")
                    try routing.set(cutover: log.name, reads: .ledger, writes: .ledger, in: tx)
                    try log.append(.switchUndone(undone), expectedVersion: version, in: tx)
                }
            }
            throw CutoverSwitchFailure(step: step, failure: failure, measurements: measured)
        }
        await Self.pause(after: "unguarded", options)
        return try await completeRollback(
            intent: intent, version: version, measured: measured, store: store, freezeStart: (clock, start))
    }

    func completeRollback(
        intent: CutoverEvent.SwitchIntent, version: Int64, measured: [String: String], store: Connection,
        freezeStart: (ContinuousClock, ContinuousClock.Instant)?
    ) async throws -> CutoverEvent.Transition {
        let log = self.log
        let routing = RoutingTable(store: log.store)
        return try await store.withSession { session in
            try session.transaction { tx in
                var measured = measured
                try routing.set(cutover: log.name, reads: .ledger, writes: .legacy, in: tx)
                if let (clock, start) = freezeStart {
                    measured["freeze_ms"] = String(Self.milliseconds(clock.now - start))
                }
                let transition = CutoverEvent.Transition(
                    from: intent.from, to: intent.to, actor: .current(), reason: intent.reason, gates: [],
                    measurements: measured)
                try log.append(.rolledBack(transition), expectedVersion: version, in: tx)
                return transition
            }
        }
    }

    /// A rollback its command did not finish: the guard gone means legacy took writes back
    /// (complete it); still there, writes stay with the ledger (undo).
    func recoverRollback(
        _ record: CutoverRecord, _ pending: CutoverEvent.SwitchIntent, guarded: [String], complete: Bool,
        legacy: Connection, store: Connection, mapping: MappingFile
    ) async throws {
        let log = self.log
        if guarded.isEmpty {
            _ = try await completeRollback(
                intent: pending, version: record.version,
                measured: ["recovered": "the command that ran the rollback stopped after the guard was removed; completed by the next command"],
                store: store, freezeStart: nil)
            return
        }
        if !complete {
            // Impossible through the rollback (one transaction removes every trigger), but a
            // half-guarded legacy must never stay: guard it whole again.
            let writeGuard = LegacyWriteGuard(mapping: mapping)
            try await legacy.withSession { try writeGuard.install(cutover: log.name, in: $0) }
        }
        let routing = RoutingTable(store: log.store)
        let undone = CutoverEvent.SwitchUndone(
            from: pending.from, to: pending.to, actor: .current(),
            failure: "the command that ran the rollback stopped before the guard was removed: writes stay with the "
                + "ledger (recovered by the next command)",
            measurements: [:])
        try await store.withSession { session in
            try session.transaction { tx in
                try routing.set(cutover: log.name, reads: .ledger, writes: .ledger, in: tx)
                try log.append(.switchUndone(undone), expectedVersion: record.version, in: tx)
            }
        }
    }
}
