import Billing
import EventStore
import Foundation
import Mapping
import Postgres
import Shadow

/// How the switches that span both databases run.
public struct CutoverSwitchOptions: Sendable, Hashable {
    /// The longest the application's writes may be held (`--max-freeze`): the source tables'
    /// lock is asked with this `lock_timeout`, and a switch still running when it is spent is
    /// undone.
    public var maxFreeze: Duration
    /// Stops the switch after the named step and waits to be killed (`LEDGERLIFT_CUTOVER_PAUSE_AT`):
    /// how the tests prove that a kill -9 between any two steps leaves no half-switched system.
    public var pauseAt: String?
    /// Before taking the lock, how long to wait for a moment when the tailer has applied
    /// everything legacy committed (the drain under the lock then waits only for what committed
    /// since).
    public var catchUpWait: Duration
    /// Legacy changes quarantined since the backfill (by the tailer or a resync: the ledger
    /// lacks them) accepted with this reason (`--accept-quarantine --reason`); without it they
    /// undo the switch.
    public var acceptQuarantine: String?

    public init(maxFreeze: Duration = .seconds(2), pauseAt: String? = nil, catchUpWait: Duration = .seconds(60)) {
        self.maxFreeze = maxFreeze
        self.pauseAt = pauseAt
        self.catchUpWait = catchUpWait
    }

    /// The steps of the write switch, in order, as `LEDGERLIFT_CUTOVER_PAUSE_AT` names them.
    public static let writeSwitchSteps = ["intent", "locked", "drained", "verified", "guarded", "committed"]
    /// The steps of the write switch's rollback.
    public static let rollbackSteps = ["intent", "frozen", "drained", "verified", "unguarded"]
}

/// Why a switch was undone (the state stayed where it was).
public struct CutoverSwitchFailure: Error, Sendable, Hashable, CustomStringConvertible {
    public var step: CutoverStep
    public var failure: String
    public var measurements: [String: String]

    public var description: String {
        "\(step) undone, the cutover stays \(step.from.rawValue): \(failure)"
    }
}

extension CutoverRunner {
    static func milliseconds(_ d: Duration) -> Int64 {
        d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }

    /// The test hook: after `step`, say so on stderr and wait to be killed.
    static func pause(after step: String, _ options: CutoverSwitchOptions) async {
        guard options.pauseAt == step else { return }
        FileHandle.standardError.write(Data("ledgerlift: paused after \(step) (LEDGERLIFT_CUTOVER_PAUSE_AT)\n".utf8))
        while true { try? await Task.sleep(for: .seconds(3600)) }
    }

    /// The ledger streams changed since `since` (recorded time), after `position` (global
    /// position) or after `cursor` (the global order readers follow), as (entity, key); streams
    /// of other kinds (the cutover's own) are left out.
    static func changedKeys(
        since: PostgresTimestamp?, after position: Int64?, afterCursor cursor: GlobalCursor? = nil,
        origins: [String]? = nil, store: EventStore, in session: Session
    ) throws -> [Entity: Set<String>] {
        var conditions = [String]()
        var parameters = [(any PostgresEncodable)?]()
        if let cursor {
            parameters.append(String(cursor.transactionID))
            parameters.append(cursor.position)
            conditions.append(
                "(transaction_id, global_position) > ($\(parameters.count - 1)::text::xid8, $\(parameters.count)::int8)")
        }
        if let since {
            parameters.append(since)
            conditions.append("recorded_at >= $\(parameters.count)")
        }
        if let position {
            parameters.append(position)
            conditions.append("global_position > $\(parameters.count)")
        }
        if let origins {
            parameters.append(PostgresArray(origins))
            conditions.append("metadata->>'origin' = ANY($\(parameters.count)::text[])")
        }
        let filter = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        var keys = [Entity: Set<String>]()
        // Longest entity name first: `invoice_line-7` is an invoice line, not an invoice.
        let entities = Entity.allCases.sorted { $0.rawValue.count > $1.rawValue.count }
        for row in try session.query(
            "SELECT DISTINCT stream_id FROM \(quoteIdentifier(store.schema)).events\(filter)", parameters
        ).rows {
            let stream: String = try row.decode(at: 0)
            guard let entity = entities.first(where: { stream.hasPrefix($0.rawValue + "-") }) else { continue }
            keys[entity, default: []].insert(String(stream.dropFirst(entity.rawValue.count + 1)))
        }
        return keys
    }

    /// The quarantine entries no backfill run made (`entity key`, at most 5): legacy changes the
    /// tailer or a resync could not migrate after the backfill (whose own were accepted at
    /// `backfilled`).
    static func quarantinedSinceBackfill(_ store: EventStore, in session: Session) throws -> (count: Int64, first: [String]) {
        let s = quoteIdentifier(store.schema)
        let tables = try session.query(
            "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL", ["\(s).quarantine", "\(s).backfill_runs"]
        ).rows[0].decode(at: 0, as: Bool.self)
        guard tables else { return (0, []) }
        let rows = try session.query(
            """
            SELECT q.entity || ' ' || q.entity_key, count(*) OVER ()::int8 FROM \(s).quarantine q
            WHERE NOT EXISTS (SELECT 1 FROM \(s).backfill_runs r WHERE r.run_id = q.run_id)
            ORDER BY q.recorded_at LIMIT 5
            """
        ).rows
        return (try rows.first?.decode(at: 1, as: Int64.self) ?? 0, try rows.map { try $0.decode(at: 0, as: String.self) })
    }

    static func storeHead(_ store: EventStore, in session: Session) throws -> Int64 {
        try session.query("SELECT coalesce(max(global_position), 0) FROM \(quoteIdentifier(store.schema)).events")
            .rows[0].decode(at: 0, as: Int64.self)
    }

    /// The write switch (`reads_switched → writes_switched`), bounded by `options.maxFreeze`.
    ///
    /// The intent is recorded first. Then ONE legacy transaction: `lock_timeout` = the budget;
    /// `LOCK TABLE <sources> IN EXCLUSIVE MODE` (reads go on; the application's writes queue —
    /// they do not fail); the newest committed change read and waited for until the tailer's
    /// checkpoint passes it (nothing else can commit now); the keys changed since the last
    /// clean verification compared with their streams; the write guard installed; COMMIT —
    /// legacy is then guarded, or (on any failure, or a kill) untouched. Then one store
    /// transaction flips the write routing and records the transition with what was measured.
    /// A kill between the two leaves the intent and a guarded legacy: ``recover(legacy:store:mapping:)``
    /// completes it.
    func switchWrites(
        _ record: CutoverRecord, gates: [CutoverGate], reason: String?, legacy: Connection, store: Connection,
        mapping: MappingFile, options: CutoverSwitchOptions
    ) async throws -> CutoverEvent.Transition {
        let step = CutoverStep(from: .readsSwitched, to: .writesSwitched)
        let log = self.log
        let eventStore = log.store
        let capture = self.capture
        let budget = options.maxFreeze
        let budgetMs = Self.milliseconds(budget)
        let writeGuard = LegacyWriteGuard(mapping: mapping)
        let history = VerificationHistory(schema: eventStore.schema)
        // Outside the freeze, first: wait (bounded) for a moment when the tailer has applied
        // everything legacy committed, so the drain under the lock has only the last
        // milliseconds to wait for. Under traffic the tailer is never idle for long; a tailer
        // that cannot keep up never gets here, and the drain's budget then undoes the switch.
        let caughtUpClock = ContinuousClock()
        let caughtUpDeadline = caughtUpClock.now + options.catchUpWait
        let tailerAt = ContinuousVerifier.checkpoint(of: tailerName, store: store, storeSchema: eventStore.schema)
        while caughtUpClock.now < caughtUpDeadline {
            guard let newest = try await legacy.withSession({ try ContinuousVerifier.newestCommitted(in: $0, capture: capture) })
            else { break }
            if let at = try await tailerAt(), at >= newest { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        // Outside the freeze: the keys the tailer changed since the last verification began,
        // compared now. Under the lock only what changed after this (and any key that differed
        // here, legacy moving under the comparison) is compared again: at 500 operations/s the
        // window since the last verification holds ~12,000 keys, 1.5 s of comparing.
        let (earlierKeys, headBefore) = try await store.withSession { session in
            let since = try history.recent(limit: 1, in: session).first?.startedAt
            let head = try Self.storeHead(eventStore, in: session)
            return (try Self.changedKeys(since: since, after: nil, store: eventStore, in: session), head)
        }
        var preverified = [String: String]()
        let preverifyStart = ContinuousClock.now
        let unsettled = try await verify(
            earlierKeys, legacy: legacy, store: store, mapping: mapping, since: preverifyStart, into: &preverified)
        var recheck = [Entity: Set<String>]()
        for difference in unsettled { recheck[difference.entity, default: []].insert(difference.key) }
        let intent = CutoverEvent.SwitchIntent(
            from: step.from, to: step.to, actor: .current(), reason: reason, maxFreezeMilliseconds: budgetMs, gates: gates)
        try await store.withSession { try log.append(.switchIntended(intent), expectedVersion: record.version, in: $0) }
        let version = record.version + 1
        await Self.pause(after: "intent", options)

        let clock = ContinuousClock()
        let start = clock.now
        var measured = ["max_freeze_ms": String(budgetMs)]
        func elapsed() -> Int64 { Self.milliseconds(clock.now - start) }
        do {
            let tables = writeGuard.tables.map(MappingFile.Source.sqlName).joined(separator: ", ")
            try await legacy.withSession { session in
                try session.execute("BEGIN")
                try session.execute("SET LOCAL lock_timeout = '\(max(1, budgetMs))ms'")
                do {
                    try session.execute("LOCK TABLE \(tables) IN EXCLUSIVE MODE")
                } catch let error as PostgresError where error.sqlState?.rawValue == "55P03" {
                    throw CutoverSwitchFailure(
                        step: step,
                        failure: "the write lock on \(tables) was not granted within --max-freeze \(budgetMs) ms "
                            + "(a long transaction holds it: pg_stat_activity shows which); legacy stays writable",
                        measurements: [:])
                } catch let error as PostgresError where error.sqlState?.rawValue == "40P01" {
                    // The tables are locked one after another: an application transaction that
                    // holds a later one and asks for an earlier one deadlocks with the switch,
                    // and PostgreSQL may fail the switch's side.
                    throw CutoverSwitchFailure(
                        step: step,
                        failure: "the write lock on \(tables) deadlocked with an application transaction (PostgreSQL "
                            + "failed the switch's side); legacy stays writable: advance again",
                        measurements: [:])
                }
            }
            measured["lock_wait_ms"] = String(elapsed())
            await Self.pause(after: "locked", options)

            // Drain: everything legacy committed is what it will ever have committed before the
            // guard; the tailer must have applied it.
            let target = try await legacy.withSession { try ContinuousVerifier.newestCommitted(in: $0, capture: capture) }
            let checkpoint = ContinuousVerifier.checkpoint(of: tailerName, store: store, storeSchema: eventStore.schema)
            let drainStart = clock.now
            if let target {
                while true {
                    if let at = try await checkpoint(), at >= target { break }
                    guard clock.now - start < budget else {
                        throw CutoverSwitchFailure(
                            step: step,
                            failure: "the tailer \(tailerName) had not applied legacy's last change (\(target)) within "
                                + "--max-freeze \(budgetMs) ms: is `ledgerlift shadow run --follow` running and caught up?",
                            measurements: [:])
                    }
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
            measured["drain_ms"] = String(Self.milliseconds(clock.now - drainStart))
            // Drained: every legacy change is in the ledger, or in the quarantine. A change the
            // tailer (or a resync) quarantined is missing from the ledger, and the clean
            // verifications do not see it (a row neither side can read compares equal): once the
            // ledger is the authority it would be lost.
            let missing = try await store.withSession { try Self.quarantinedSinceBackfill(eventStore, in: $0) }
            measured["quarantined_since_backfill"] = String(missing.count)
            if missing.count > 0, options.acceptQuarantine == nil {
                throw CutoverSwitchFailure(
                    step: step,
                    failure: "\(missing.count) legacy change(s) were quarantined since the backfill (first: \(missing.first[0])): "
                        + "the ledger lacks them. `ledgerlift shadow status` lists them; fix the data or the mapping and "
                        + "`ledgerlift shadow resync` them, or accept them with --accept-quarantine --reason",
                    measurements: [:])
            }
            if missing.count > 0, let reason = options.acceptQuarantine { measured["accepted_quarantine"] = reason }
            measured["legacy_position"] = target?.description ?? "(nothing captured)"
            await Self.pause(after: "drained", options)

            // Re-verify, legacy as locked now, what changed since the comparison above (and what
            // differed in it): the keys changed since the last clean verification, with that.
            let verifyStart = clock.now
            measured["preverified_keys"] = preverified["keys_verified"]
            measured["preverify_ms"] = preverified["verify_ms"]
            var keys = recheck
            let later = try await store.withSession { session in
                try Self.changedKeys(since: nil, after: headBefore, store: eventStore, in: session)
            }
            for (entity, more) in later { keys[entity, default: []].formUnion(more) }
            let differences = try await verify(
                keys, legacy: legacy, store: store, mapping: mapping, since: verifyStart, into: &measured)
            if !differences.isEmpty {
                throw CutoverSwitchFailure(
                    step: step,
                    failure: "\(differences.count) key(s) changed since the last clean verification differ between "
                        + "legacy and the ledger (first: \(differences[0])); run `ledgerlift diff`, repair with "
                        + "`ledgerlift shadow resync`, and verify again",
                    measurements: [:])
            }
            await Self.pause(after: "verified", options)

            try await legacy.withSession { try writeGuard.install(cutover: log.name, in: $0) }
            await Self.pause(after: "guarded", options)
            guard clock.now - start < budget else {
                throw CutoverSwitchFailure(
                    step: step, failure: "the switch took longer than --max-freeze \(budgetMs) ms before its commit",
                    measurements: [:])
            }
            try await legacy.withSession { try $0.execute("COMMIT") }
            measured["legacy_locked_ms"] = String(elapsed())
        } catch {
            _ = try? await legacy.withSession { try $0.execute("ROLLBACK") }
            measured["undone_after_ms"] = String(elapsed())
            let failure = (error as? CutoverSwitchFailure)?.failure ?? "\(error)"
            let undone = CutoverEvent.SwitchUndone(
                from: step.from, to: step.to, actor: .current(), failure: failure, measurements: measured)
            try await store.withSession { try log.append(.switchUndone(undone), expectedVersion: version, in: $0) }
            throw CutoverSwitchFailure(step: step, failure: failure, measurements: measured)
        }
        await Self.pause(after: "committed", options)
        do {
            return try await completeWriteSwitch(
                record: record, intent: intent, version: version, measured: measured, store: store, mapping: mapping,
                freezeStart: (clock, start), lockTimeout: max(budget - (clock.now - start), .milliseconds(100)))
        } catch let error as PostgresError where error.sqlState?.rawValue == "55P03" {
            // The routing row stayed locked past the budget (a transaction on the store holds
            // it): legacy is guarded and serve still refuses — give legacy its writes back.
            try await legacy.withSession { try writeGuard.remove(in: $0) }
            measured["undone_after_ms"] = String(elapsed())
            let failure =
                "the store's routing row could not be updated within --max-freeze \(budgetMs) ms (a transaction on the "
                + "store holds it: pg_stat_activity shows which); the guard was removed, legacy stays writable"
            let undone = CutoverEvent.SwitchUndone(
                from: step.from, to: step.to, actor: .current(), failure: failure, measurements: measured)
            try await store.withSession { try log.append(.switchUndone(undone), expectedVersion: version, in: $0) }
            throw CutoverSwitchFailure(step: step, failure: failure, measurements: measured)
        }
    }

    /// Compares `keys` in legacy (on `legacy`, in whatever transaction it has open) and their
    /// streams, recording how many and how long in `measured`: the re-verification of the write
    /// switch and of its rollback.
    func verify(
        _ keys: [Entity: Set<String>], legacy: Connection, store: Connection, mapping: MappingFile,
        since start: ContinuousClock.Instant, into measured: inout [String: String]
    ) async throws -> [ShadowSync.KeyDifference] {
        let sync = ShadowSync(
            legacy: legacy, store: store, eventStore: log.store, mapping: mapping, origin: .shadow,
            readSchema: readSchema)
        let differences = try await sync.verify(keys)
        measured["keys_verified"] = String(keys.values.reduce(0) { $0 + $1.count })
        measured["verify_ms"] = String(Self.milliseconds(ContinuousClock.now - start))
        return differences
    }

    /// The store's half of the write switch: routing flipped and the transition recorded in one
    /// transaction (legacy is guarded already).
    func completeWriteSwitch(
        record: CutoverRecord, intent: CutoverEvent.SwitchIntent, version: Int64, measured: [String: String],
        store: Connection, mapping: MappingFile, freezeStart: (ContinuousClock, ContinuousClock.Instant)?,
        lockTimeout: Duration? = nil
    ) async throws -> CutoverEvent.Transition {
        let log = self.log
        let eventStore = log.store
        let routing = RoutingTable(store: eventStore)
        return try await store.withSession { session in
            try session.transaction { tx in
                if let lockTimeout {
                    try tx.execute("SET LOCAL lock_timeout = '\(max(1, Self.milliseconds(lockTimeout)))ms'")
                }
                var measured = measured
                let routingStart = ContinuousClock.now
                measured["store_position"] = String(try Self.storeHead(eventStore, in: tx))
                // Reverse sync applies the ledger's writes from here (idempotent: a scope started
                // before keeps its checkpoint).
                try ReverseSync.start(
                    at: try ReverseSync.safeHead(eventStore, in: tx), scope: log.name, mapping: mapping,
                    store: eventStore, in: tx)
                try routing.set(cutover: log.name, reads: .ledger, writes: .ledger, in: tx)
                // The store's half: waiting for the commands that read the routing (the routing
                // lock) is most of it under traffic.
                measured["routing_ms"] = String(Self.milliseconds(ContinuousClock.now - routingStart))
                if let (clock, start) = freezeStart {
                    measured["freeze_ms"] = String(Self.milliseconds(clock.now - start))
                }
                let transition = CutoverEvent.Transition(
                    from: intent.from, to: intent.to, actor: .current(), reason: intent.reason, gates: intent.gates,
                    measurements: measured)
                try log.append(.advanced(transition), expectedVersion: version, in: tx)
                return transition
            }
        }
    }

    /// Finishes a switch its command did not (killed midway), from what legacy shows: the
    /// guard is committed in the same legacy transaction as everything the switch changed
    /// there, so its presence says which side of that commit the kill fell on.
    /// - Returns: the record after recovery (unchanged when nothing was pending).
    public func recover(legacy: Connection, store: Connection, mapping: MappingFile) async throws -> CutoverRecord {
        let record = try await self.record(store: store)
        guard let pending = record.pendingSwitch else { return record }
        let log = self.log
        let writeGuard = LegacyWriteGuard(mapping: mapping)
        let guarded = try await legacy.withSession { try writeGuard.guardedTables(in: $0) }
        let complete = guarded.count == writeGuard.tables.count
        switch (pending.from, pending.to) {
        case (.readsSwitched, .writesSwitched):
            if complete {
                _ = try await completeWriteSwitch(
                    record: record, intent: pending, version: record.version,
                    measured: ["recovered": "the command that ran the switch stopped after legacy's commit; completed by the next command"],
                    store: store, mapping: mapping, freezeStart: nil)
            } else {
                if !guarded.isEmpty { try await legacy.withSession { try writeGuard.remove(in: $0) } }
                let undone = CutoverEvent.SwitchUndone(
                    from: pending.from, to: pending.to, actor: .current(),
                    failure: "the command that ran the switch stopped before legacy's transaction committed: "
                        + "nothing changed in legacy (recovered by the next command)",
                    measurements: [:])
                try await store.withSession { try log.append(.switchUndone(undone), expectedVersion: record.version, in: $0) }
            }
        case (.writesSwitched, .readsSwitched):
            try await recoverRollback(record, pending, guarded: guarded, complete: complete, legacy: legacy, store: store,
                mapping: mapping)
        default:
            throw CutoverError.inconsistentStream(
                stream: log.streamID, version: record.version,
                reason: "a pending switch \(pending.from.rawValue) → \(pending.to.rawValue) no command runs")
        }
        return try await self.record(store: store)
    }
}
