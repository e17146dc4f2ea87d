import Mapping
import Billing
import Diff
import EventStore
import Fixtures
import Foundation
import Migration
import Postgres
import TestSupport
import Testing

/// The reference mapping with `replace` applied to its YAML text.
private func editedReferenceMapping(_ edits: [(String, String)]) throws -> MappingFile {
    var yaml = try String(contentsOfFile: try MappingTestSupport.referenceMappingPath(), encoding: .utf8)
    for (old, new) in edits {
        #expect(yaml.contains(old), "the reference mapping no longer contains \(old)")
        yaml = yaml.replacingOccurrences(of: old, with: new)
    }
    return try MappingFile(yaml: yaml, file: "edited.yaml")
}

private func run(
    _ mapping: MappingFile, _ legacyDSN: String, _ storeDSN: String, workers: Int = 2, wait: Bool = false,
    dryRun: Bool = false
) async throws -> BackfillReport {
    try await Backfill(
        .init(
            legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: mapping, workers: workers, batchEvents: 97,
            dryRun: dryRun, wait: wait)
    ).run()
}

private func int(_ connection: Connection, _ sql: String, _ parameters: [(any PostgresEncodable)?] = []) async throws
    -> Int64
{
    try await connection.query(sql, parameters).rows[0].decode(at: 0, as: Int64?.self) ?? 0
}

/// The quarantine as `entity key reason`, sorted.
private func quarantine(_ store: Connection) async throws -> [String] {
    try await store.query("SELECT entity || ' ' || entity_key || ' ' || reason FROM ledgerlift.quarantine ORDER BY 1")
        .rows.map { try $0.decode(at: 0, as: String.self) }
}

/// The refund mapping query of the reference mapping, whose key is edited by these tests.
private let refundKey = "SELECT r.id::text          AS refund_id,"

@Suite("Backfill integrity: no row dropped, no wedged resume, the right database")
struct BackfillIntegrityTests {
    // MARK: - Keys

    @Test func rowsWhoseKeyIsNullOrEmptyAreQuarantinedAsKeyMissingAndCounted() async throws {
        // Refunds 1401 and 1501 lose their key, 2101's is empty: 5 legacy rows, 2 migrated, 3 quarantined.
        let mapping = try editedReferenceMapping([
            (
                refundKey,
                "SELECT CASE WHEN r.id IN (1401, 1501) THEN NULL WHEN r.id = 2101 THEN '' ELSE r.id::text END AS refund_id,"
            )
        ])
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            let report = try await run(mapping, legacy, storeDSN)
            let refunds = try #require(report.entities.first { $0.entity == .refund })
            #expect(refunds.legacyRows == 5)
            #expect(refunds.rowsRead == 5)
            #expect(refunds.rowsMigrated == 2)
            #expect(refunds.rowsQuarantined == 3)
            #expect(refunds.isBalanced)
            #expect(report.quarantineReasons.map(\.reason) == ["key_missing"])
            #expect(report.quarantineReasons.map(\.count) == [3])
            let keys = try await store.query(
                "SELECT entity_key, reason, raw->>'amount' FROM ledgerlift.quarantine WHERE entity = 'refund' ORDER BY 3"
            ).rows.map { [try $0.decode(at: 0, as: String.self), try $0.decode(at: 1, as: String.self)] }
            #expect(keys.count == 3)
            #expect(keys.allSatisfy { $0[0].hasPrefix("<null>#") && $0[1] == "key_missing" })
            #expect(Set(keys.map { $0[0] }).count == 3)

            // The diff counts them: 2 compared + 3 keyless legacy rows, all accounted for.
            _ = try await Projector().catchUp(on: store)
            let diff = try await compare(mapping, [.refund], legacy, storeDSN)
            let entity = try #require(diff.entities.first)
            #expect(entity.legacyRows == 5)
            #expect(entity.quarantined == 3)
            #expect(entity.missingInLedger == 0)
            #expect(diff.isClean)

            // A keyless row the quarantine does not know (a store filled by an older backfill
            // that dropped it) is a row missing in the ledger.
            _ = try await store.execute(
                "DELETE FROM ledgerlift.quarantine WHERE entity_key = (SELECT min(entity_key) FROM ledgerlift.quarantine)")
            let again = try await compare(mapping, [.refund], legacy, storeDSN)
            #expect(again.entities.first?.missingInLedger == 1)
            #expect(again.entities.first?.differences.map(\.key) == ["<null>"])
            #expect(!again.isClean)
        }
    }

    @Test func identicalKeylessRowsAreEachQuarantinedUnderTheirOwnKey() async throws {
        // Every refund returns the same NULL key and the same columns: 5 identical rows.
        let mapping = try editedReferenceMapping([
            (refundKey, "SELECT NULL::text AS refund_id,"),
            ("coalesce(i.customer_id, p.customer_id)::text AS customer_id,\n             r.amount", "'1'::text AS customer_id,\n             r.amount"),
            ("r.amount,\n", "0::numeric AS amount,\n"),
            ("r.reason,\n", "NULL::text AS reason,\n"),
            ("r.status,\n", "'succeeded'::text AS status,\n"),
            ("r.created_at\n      FROM legacy.refunds", "'2025-01-01'::timestamp AS created_at\n      FROM legacy.refunds"),
            ("r.payment_id::text  AS payment_id,", "'1'::text AS payment_id,"),
        ])
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            let report = try await run(mapping, legacy, storeDSN)
            let refunds = try #require(report.entities.first { $0.entity == .refund })
            #expect(refunds.rowsQuarantined == 5)
            #expect(try await int(store, "SELECT count(DISTINCT entity_key) FROM ledgerlift.quarantine WHERE entity = 'refund'") == 5)
        }
    }

    @Test func twoLegacyRowsWithOneKeyAreBothQuarantinedAsDuplicateKey() async throws {
        // Refund 4001 takes 2101's key.
        let mapping = try editedReferenceMapping([
            (refundKey, "SELECT CASE WHEN r.id = 4001 THEN '2101' ELSE r.id::text END AS refund_id,")
        ])
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            let report = try await run(mapping, legacy, storeDSN)
            let refunds = try #require(report.entities.first { $0.entity == .refund })
            #expect(refunds.rowsRead == 5)
            #expect(refunds.rowsMigrated == 3)
            #expect(refunds.rowsQuarantined == 2)
            #expect(refunds.isBalanced)
            #expect(try await quarantine(store) == ["refund 2101 duplicate_key"])
            // Both rows are kept, verbatim.
            #expect(try await int(store, "SELECT jsonb_array_length(raw) FROM ledgerlift.quarantine") == 2)
            #expect(try await int(store, "SELECT count(*) FROM ledgerlift.streams WHERE stream_id = 'refund-2101'") == 0)
            #expect(report.quarantineReasons.map(\.count) == [2])
        }
    }

    // MARK: - Resume

    @Test func aResumedRunBringsStreamsUpToDateWithLegacyRowsChangedSinceTheCrash() async throws {
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            let mapping = try MappingTestSupport.referenceMapping()
            _ = try await run(mapping, legacy, storeDSN)
            // The state a kill -9 leaves: invoices' events committed, their ranges not marked done,
            // the run not finished.
            _ = try await store.execute("UPDATE ledgerlift.backfill_ranges SET done = false WHERE entity = 'invoice'")
            _ = try await store.execute("UPDATE ledgerlift.backfill_runs SET finished_at = NULL")
            // Then the legacy application writes.
            let legacyConnection = try await Connection.connect(legacy)
            defer { legacyConnection.close() }
            let changed = try await int(
                legacyConnection, "SELECT min(id) FROM legacy.invoices WHERE status = 2 AND due_on IS NOT NULL")
            _ = try await legacyConnection.execute(
                "UPDATE legacy.invoices SET due_on = due_on + 1, updated_at = updated_at + interval '1 hour' WHERE id = $1",
                [changed])
            // …and in ranges the interrupted attempt had finished (customers, payments).
            _ = try await legacyConnection.execute("UPDATE legacy.customers SET name = 'Renamed After Crash' WHERE id = 22")
            _ = try await legacyConnection.execute("UPDATE legacy.payments SET method = 'wire' WHERE id = 101")
            let before = try await int(store, "SELECT count(*) FROM ledgerlift.events")

            let report = try await run(mapping, legacy, storeDSN)
            #expect(report.entities.first { $0.entity == .invoice }?.rowsResynced == 1)
            #expect(report.entities.first { $0.entity == .customer }?.rowsResynced == 1)
            #expect(report.entities.first { $0.entity == .payment }?.rowsResynced == 1)
            #expect(report.isBalanced)
            #expect(try await int(store, "SELECT count(*) FROM ledgerlift.events") == before + 3)
            // The summary's events are the store's, across attempts.
            #expect(report.entities.reduce(0) { $0 + $1.events } == before + 3)
            let synced = try await store.query(
                """
                SELECT event_type, payload->'set'->>'due_on', metadata->>'evidence', event_id::text FROM ledgerlift.events
                WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1
                """, ["invoice-\(changed)"]
            ).rows[0]
            #expect(try synced.decode(at: 0, as: String.self) == "InvoiceUpdated")
            #expect(try synced.decode(at: 2, as: String.self) == "observed")
            // Its id names the sync and the version it continued.
            let version = try await int(store, "SELECT version - 1 FROM ledgerlift.streams WHERE stream_id = $1", ["invoice-\(changed)"])
            let expectedID = DeterministicID.uuid5(
                namespace: DeterministicID.eventNamespace, name: "sync/invoice/\(changed)/v\(version)/0/InvoiceUpdated")
            #expect(try synced.decode(at: 3, as: String.self) == expectedID.uuidString.lowercased())

            // Every stream replays to the current legacy row: the diff is clean.
            _ = try await Projector().catchUp(on: store)
            let diff = try await compare(mapping, referenceEntities, legacy, storeDSN)
            #expect(diff.isClean)
            #expect(diff.entities.first { $0.entity == .invoice }?.matched == 146)

            // Once more: nothing changed, nothing appended.
            _ = try await store.execute("UPDATE ledgerlift.backfill_ranges SET done = false WHERE entity = 'invoice'")
            _ = try await store.execute("UPDATE ledgerlift.backfill_runs SET finished_at = NULL")
            let again = try await run(mapping, legacy, storeDSN)
            #expect(again.entities.allSatisfy { $0.rowsResynced == 0 })
            #expect(try await int(store, "SELECT count(*) FROM ledgerlift.events") == before + 3)
        }
    }

    @Test func aRowDeletedBetweenAttemptsIsListedAsVanished() async throws {
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            let mapping = try MappingTestSupport.referenceMapping()
            _ = try await run(mapping, legacy, storeDSN)
            _ = try await store.execute("UPDATE ledgerlift.backfill_ranges SET done = false WHERE entity = 'refund'")
            _ = try await store.execute("UPDATE ledgerlift.backfill_runs SET finished_at = NULL")
            let legacyConnection = try await Connection.connect(legacy)
            defer { legacyConnection.close() }
            _ = try await legacyConnection.execute("DELETE FROM legacy.refunds WHERE id = 1401")
            let report = try await run(mapping, legacy, storeDSN)
            #expect(try await quarantine(store) == ["refund 1401 row_vanished"])
            #expect(report.quarantineReasons.map(\.reason) == ["row_vanished"])
            // Every range is read again on a resume, so the counts balance against the source.
            #expect(report.entities.first { $0.entity == .refund }?.legacyRows == 4)
        }
    }

    // MARK: - Business time

    @Test func editingASucceededPaymentsUpdatedAtMovesNoRevenueBetweenMonths() async throws {
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            let legacyConnection = try await Connection.connect(legacy)
            defer { legacyConnection.close() }
            // Payment 101 succeeded on 2025-06-16; a later edit touches the row in July.
            _ = try await legacyConnection.execute("UPDATE legacy.payments SET updated_at = '2025-07-20 09:00' WHERE id = 101")
            _ = try await run(try MappingTestSupport.referenceMapping(), legacy, storeDSN)
            _ = try await Projector().catchUp(on: store)
            let months = try await store.withSession { session in
                try ReadModelReader().revenue(
                    from: PostgresDate(year: 2025, month: 6, day: 1)!, to: PostgresDate(year: 2025, month: 7, day: 1)!,
                    in: session)
            }.filter { $0.currency == "USD" }
            #expect(months.map(\.collected) == [36_400, 50_000])
            let success = try await store.query(
                """
                SELECT occurred_at::text, metadata->>'evidence' FROM ledgerlift.events
                WHERE stream_id = 'payment-101' AND event_type = 'PaymentSucceeded'
                """
            ).rows[0]
            #expect(try success.decode(at: 0, as: String.self).hasPrefix("2025-06-16"))
            #expect(try success.decode(at: 1, as: String.self) == "inferred")
        }
    }

    @Test func aSucceededAtColumnDatesTheSuccessAsObserved() async throws {
        let mapping = try editedReferenceMapping([
            ("p.failure_code,\n", "p.failure_code,\n             CASE WHEN p.status = 'succeeded' THEN p.created_at + interval '5 minutes' END AS succeeded_at,\n")
        ])
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            _ = try await run(mapping, legacy, storeDSN)
            let rows = try await store.query(
                """
                SELECT DISTINCT metadata->>'evidence' FROM ledgerlift.events WHERE event_type = 'PaymentSucceeded'
                """
            ).rows.map { try $0.decode(at: 0, as: String.self) }
            #expect(rows == ["observed"])
            let gap = try await store.query(
                """
                SELECT DISTINCT s.occurred_at - c.occurred_at FROM ledgerlift.events s
                JOIN ledgerlift.events c ON c.stream_id = s.stream_id AND c.event_type = 'PaymentCreated'
                WHERE s.event_type = 'PaymentSucceeded'
                """
            ).rows.map { try $0.decode(at: 0, as: String.self) }
            #expect(gap == ["00:05:00"])
        }
    }

    // MARK: - What `mapping check` rejects

    /// Issue 13: refunds in minor units whose history query returns the legacy `numeric` amount,
    /// which `mapping check` rejects (an error) — and the backfill ran, appending events.
    static let minorRefundsWithNumericHistory: [(String, String)] = [
        ("             r.amount,\n", "             (r.amount * 100)::int8 AS amount,\n"),
        (
            "      - { table: legacy.refunds, key: id }\n",
            """
                  - { table: legacy.refunds, key: id }
                amounts: minor
                history:
                  query: |
                    SELECT r.id::text AS refund_id, r.payment_id::text AS payment_id, p.customer_id::text AS customer_id,
                           r.amount, coalesce(p.currency, c.currency) AS currency, 'pending'::text AS status, r.reason,
                           r.created_at, r.created_at AS valid_from
                    FROM legacy.refunds r
                    LEFT JOIN legacy.payments p ON p.id = r.payment_id
                    LEFT JOIN legacy.customers c ON c.id = p.customer_id

            """
        ),
    ]

    @Test func aMappingThatMappingCheckRejectsIsRefusedWithTheChecksReportBeforeAnythingIsWritten() async throws {
        let mapping = try editedReferenceMapping(Self.minorRefundsWithNumericHistory)
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            let legacyConnection = try await Connection.connect(legacy)
            defer { legacyConnection.close() }
            let check = try await MappingChecker(mapping).check(legacyConnection)
            #expect(
                check.errors.map(\.description) == [
                    "error: refund.history.amount: is numeric; amounts: minor needs an integer column (int2, int4, int8)"
                        + " holding minor units; for decimals of the major unit (12.30) set amounts: major on this entity"
                ])
            // Dry runs too: what a dry run shows must be what a run would do.
            for dryRun in [false, true] {
                await #expect(throws: BackfillError.mappingRejected(check)) {
                    _ = try await run(mapping, legacy, storeDSN, dryRun: dryRun)
                }
            }
            #expect(
                BackfillError.mappingRejected(check).description
                    == "the mapping edited.yaml has errors, so nothing was migrated or appended: "
                    + "error: refund.history.amount: is numeric; amounts: minor needs an integer column (int2, int4, int8)"
                    + " holding minor units; for decimals of the major unit (12.30) set amounts: major on this entity."
                    + " Fix them and run `ledgerlift mapping check` (docs/mapping.md), then the backfill again.")
            // Nothing appended, not even the run's record.
            #expect(try await int(store, "SELECT count(*) FROM ledgerlift.events") == 0)
            #expect(
                try await store.query("SELECT to_regclass('ledgerlift.backfill_runs') IS NULL").rows[0]
                    .decode(at: 0, as: Bool.self))
        }
    }

    /// Only errors stop a backfill, and not the one about keys on several rows, which the
    /// backfill quarantines as `duplicate_key` (the runs of these mappings are tested above).
    @Test func warningsNotesAndKeysOnSeveralRowsDoNotStopTheBackfill() async throws {
        let duplicated = try editedReferenceMapping([
            (refundKey, "SELECT CASE WHEN r.id = 4001 THEN '2101' ELSE r.id::text END AS refund_id,")
        ])
        try await MappingTestSupport.withLegacy(.reference) { connection, _ in
            // The tests connect as a superuser, which the check warns about.
            let reference = try await MappingChecker(try MappingTestSupport.referenceMapping()).check(connection)
            #expect(reference.errors.isEmpty && !reference.warnings.isEmpty && !reference.notes.isEmpty)
            #expect(Backfill.refusals(in: reference).isEmpty)
            let check = try await MappingChecker(duplicated).check(connection)
            #expect(check.errors.map(\.code) == [.keyNotUnique])
            #expect(Backfill.refusals(in: check).isEmpty)
        }
        // And a history version error is refused like any other error.
        try await MappingTestSupport.withLegacy(.reference, "refused_versions") { connection, _ in
            let twice = try editedReferenceMapping([
                ("coalesce(lag(h.changed_at) OVER w, s.created_at) AS valid_from", "s.created_at AS valid_from")
            ])
            let check = try await MappingChecker(twice).check(connection)
            #expect(Backfill.refusals(in: check).map(\.code) == [.historyVersionNotUnique])
        }
    }

    // MARK: - Which database, which mapping, who else

    @Test func aStoreRefusesAnotherLegacyDatabaseAndAnotherMapping() async throws {
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            let mapping = try MappingTestSupport.referenceMapping()
            _ = try await run(mapping, legacy, storeDSN)
            _ = try await MappingTestSupport.withLegacy(.reference, "other_legacy") { _, otherLegacy in
                await #expect {
                    _ = try await run(mapping, otherLegacy, storeDSN)
                } throws: { error in
                    guard case BackfillError.anotherLegacyDatabase(_, let stored, let given)? = error as? BackfillError else {
                        return false
                    }
                    return stored != given && "\(error)".contains("store reset")
                }
            }
            let edited = try editedReferenceMapping([("p.method\n", "p.method, 1 AS extra\n")])
            await #expect {
                _ = try await run(edited, legacy, storeDSN)
            } throws: { error in
                guard case BackfillError.anotherMapping? = error as? BackfillError else { return false }
                return "\(error)".contains("store reset") && "\(error)".contains("docs/mapping.md")
            }
            // The same database and mapping: finished, nothing appended.
            let events = try await int(store, "SELECT count(*) FROM ledgerlift.events")
            _ = try await run(mapping, legacy, storeDSN)
            #expect(try await int(store, "SELECT count(*) FROM ledgerlift.events") == events)

            // Reset, then the edited mapping backfills.
            try await store.withSession { try StoreReset().reset($0) }
            #expect(try await int(store, "SELECT count(*) FROM ledgerlift.events") == 0)
            let report = try await run(edited, legacy, storeDSN)
            #expect(report.isBalanced)
            #expect(try await int(store, "SELECT count(*) FROM ledgerlift.events WHERE payload->'attributes' ? 'extra'") == 151)
        }
    }

    @Test func anUnreachableLegacyDatabaseNeverReportsTheFinishedRun() async throws {
        try await withLegacyAndStore(.reference) { legacy, _, storeDSN in
            let mapping = try MappingTestSupport.referenceMapping()
            _ = try await run(mapping, legacy, storeDSN)
            await #expect(throws: PostgresError.self) {
                _ = try await run(mapping, "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=5", storeDSN)
            }
        }
    }

    @Test func aSecondRunIsRefusedNamingTheFirstOrWaitsForIt() async throws {
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            let mapping = try MappingTestSupport.referenceMapping()
            // An operator (or a first run) holds the lock, taken as docs/mapping.md shows from psql.
            let holder = try await Connection.connect(storeDSN, applicationName: "the-first-run")
            #expect(Backfill.lock(for: EventStore()).psql == "SELECT pg_advisory_lock(hashtextextended('ledgerlift.backfill/ledgerlift', 0));")
            _ = try await holder.query("SELECT pg_advisory_lock(hashtextextended('ledgerlift.backfill/ledgerlift', 0))")
            await #expect {
                _ = try await run(mapping, legacy, storeDSN)
            } throws: { error in
                guard case BackfillError.busy(let who)? = error as? BackfillError else { return false }
                return who.contains("the-first-run")
            }
            #expect(try await int(store, "SELECT count(*) FROM ledgerlift.events") == 0)
            // With --wait it runs once the first lets go.
            let waiting = Task { try await run(mapping, legacy, storeDSN, wait: true) }
            try await waitUntil("the second run waits for the lock") {
                try await int(
                    store,
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%pg_advisory_lock%'"
                ) == 1
            }
            #expect(try await int(store, "SELECT count(*) FROM ledgerlift.events") == 0)
            holder.close()
            let report = try await waiting.value
            #expect(report.isBalanced)
            #expect(report.totalQuarantined == 0)
        }
    }
}

/// The diff of `entities`, rows only.
private func compare(_ mapping: MappingFile, _ entities: [Entity], _ legacy: String, _ store: String) async throws
    -> DiffReport
{
    try await DiffChecker(
        .init(legacyDSN: legacy, storeDSN: store, mapping: mapping, entities: entities, checkInvariants: false)
    ).run()
}

/// Polls `condition` until it holds; fails the test after ten minutes (a bound for a hang, not a speed).
func waitUntil(_ what: String, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(600)
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("timed out: \(what)")
            return
        }
        try await Task.sleep(for: .milliseconds(50))
    }
}

@Suite("Backfill: keys are compared by their bytes")
struct ExactKeyTests {
    @Test func canonicallyEquivalentKeysAreTwoKeysNotADuplicate() async throws {
        // café with é (U+00E9) and with e + U+0301: equal to Swift's String ==, distinct to PostgreSQL.
        let mapping = try editedReferenceMapping([
            (
                refundKey,
                "SELECT CASE WHEN r.id = 4001 THEN U&'caf\\00E9' WHEN r.id = 4002 THEN U&'cafe\\0301' ELSE r.id::text END AS refund_id,"
            )
        ])
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            let report = try await run(mapping, legacy, storeDSN)
            let refunds = try #require(report.entities.first { $0.entity == .refund })
            #expect(refunds.rowsMigrated == 5)
            #expect(refunds.rowsQuarantined == 0)
            #expect(try await int(store, "SELECT count(*) FROM ledgerlift.streams WHERE stream_id LIKE 'refund-caf%'") == 2)
            #expect(try await int(store, "SELECT count(*) FROM ledgerlift.quarantine") == 0)
        }
    }
}

@Suite("Backfill: a key too long for a stream id")
struct LongKeyTests {
    @Test func aKeyLongerThanAStreamIdCanHoldIsQuarantinedAndCounted() async throws {
        let mapping = try editedReferenceMapping([
            (refundKey, "SELECT CASE WHEN r.id = 4001 THEN repeat('k', 100000) ELSE r.id::text END AS refund_id,")
        ])
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            let report = try await run(mapping, legacy, storeDSN)
            let refunds = try #require(report.entities.first { $0.entity == .refund })
            #expect(refunds.rowsMigrated == 4)
            #expect(refunds.rowsQuarantined == 1)
            #expect(report.quarantineReasons.map(\.reason) == ["key_too_long"])
            let entry = try await store.query(
                "SELECT entity_key, detail, length(raw->>'refund_id') FROM ledgerlift.quarantine"
            ).rows[0]
            #expect(try entry.decode(at: 0, as: String.self).hasPrefix("<long>#"))
            #expect(
                try entry.decode(at: 1, as: String.self)
                    == "refund_id is 100000 bytes long; at most 1024 fit a stream id (the raw row holds the whole key)")
            #expect(try entry.decode(at: 2, as: Int32.self) == 100_000)
            _ = try await Projector().catchUp(on: store)
            let diff = try await compare(mapping, [.refund], legacy, storeDSN)
            #expect(diff.entities.first?.legacyRows == 5)
            #expect(diff.isClean)
        }
    }
}

@Suite("Read models: sums beyond 64-bit minor units")
struct LargeSumTests {
    @Test func aMonthlySumBeyondInt64IsHeldExactlyAndNeverStopsTheProjection() async throws {
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            let legacyConnection = try await Connection.connect(legacy)
            defer { legacyConnection.close() }
            // Two payments that each fit in 64-bit minor units; their month's sum does not.
            _ = try await legacyConnection.execute(
                """
                INSERT INTO legacy.payments (id, customer_id, status, amount, currency, created_at, updated_at)
                VALUES (90001, 1, 'succeeded', 92233720368547758.07, 'USD', '2025-05-10', '2025-05-10'),
                       (90002, 1, 'succeeded', 92233720368547758.07, 'USD', '2025-05-11', '2025-05-11')
                """)
            _ = try await run(try MappingTestSupport.referenceMapping(), legacy, storeDSN)
            _ = try await Projector().catchUp(on: store)
            // Exact: the month's collected equals the sum of its entries, and exceeds Int64.
            let exact = try await store.query(
                """
                SELECT m.collected > 9223372036854775807
                   AND m.collected = (SELECT sum(amount) FROM ledgerlift_read.revenue_entries
                                      WHERE kind = 'payment' AND month = m.month AND currency = m.currency)
                FROM ledgerlift_read.revenue_by_month m WHERE m.month = '2025-05-01' AND m.currency = 'USD'
                """
            ).rows[0].decode(at: 0, as: Bool.self)
            #expect(exact)
            // The Int64 report API says it cannot hold the figure instead of wrapping it.
            await #expect(throws: PostgresError.self) {
                _ = try await store.withSession { session in
                    try ReadModelReader().revenue(
                        from: PostgresDate(year: 2025, month: 5, day: 1)!, to: PostgresDate(year: 2025, month: 5, day: 1)!,
                        in: session)
                }
            }
        }
    }
}

@Suite("Backfill: history without a current row")
struct OrphanHistoryTests {
    @Test func historyOfAKeyTheCurrentQueryNoLongerReturnsIsMigratedEndingInItsDeletion() async throws {
        // Subscription 11 has history rows; the current query stops returning it (a hard delete).
        let mapping = try editedReferenceMapping([
            ("      FROM legacy.subscriptions s\n", "      FROM legacy.subscriptions s WHERE s.id <> 11\n")
        ])
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            let report = try await run(mapping, legacy, storeDSN)
            #expect(report.isBalanced)
            #expect(report.quarantineReasons.isEmpty)
            #expect(report.eventsByType.first { $0.type == "SubscriptionDeleted" }?.count == 1)
            #expect(try await int(store, "SELECT count(*) FROM ledgerlift.quarantine") == 0)
            // The stream holds the history, then the deletion (inferred, never before the last step).
            let events = try await store.query(
                """
                SELECT event_type, occurred_at::text, metadata->>'evidence' FROM ledgerlift.events
                WHERE stream_id = 'subscription-11' ORDER BY stream_version
                """
            ).rows.map { (try $0.decode(at: 0, as: String.self), try $0.decode(at: 1, as: String.self), try $0.decode(at: 2, as: String.self)) }
            #expect(events.count >= 2)
            #expect(events.last?.0 == "SubscriptionDeleted")
            #expect(events.last?.2 == "inferred")
            #expect(events.dropLast().allSatisfy { $0.0 != "SubscriptionDeleted" })
            let legacyConnection = try await Connection.connect(legacy)
            defer { legacyConnection.close() }
            // Dated where the last history version stopped being current.
            let lastChange = try await legacyConnection.query(
                "SELECT (extract(epoch FROM max(changed_at) AT TIME ZONE 'UTC') * 1000000)::int8 FROM legacy.subscription_history WHERE subscription_id = 11"
            ).rows[0].decode(at: 0, as: Int64.self)
            let deletedAt = try await store.query(
                "SELECT (extract(epoch FROM occurred_at) * 1000000)::int8 FROM ledgerlift.events WHERE stream_id = 'subscription-11' AND event_type = 'SubscriptionDeleted'"
            ).rows[0].decode(at: 0, as: Int64.self)
            #expect(deletedAt == lastChange)
            // Projected: no current row, every version closed; the diff is clean.
            _ = try await Projector().catchUp(on: store)
            #expect(try await int(store, "SELECT count(*) FROM ledgerlift_read.subscriptions WHERE subscription_id = '11'") == 0)
            #expect(try await int(store, "SELECT count(*) FROM ledgerlift_read.subscriptions_history WHERE subscription_id = '11'") > 0)
            #expect(
                try await int(
                    store, "SELECT count(*) FROM ledgerlift_read.subscriptions_history WHERE subscription_id = '11' AND valid_to IS NULL")
                    == 0)
            let diff = try await DiffChecker(.init(legacyDSN: legacy, storeDSN: storeDSN, mapping: mapping)).run()
            #expect(diff.isClean)
            // A second run appends nothing and quarantines nothing.
            let again = try await run(mapping, legacy, storeDSN)
            #expect(again.quarantineReasons.isEmpty)
            #expect(try await int(store, "SELECT count(*) FROM ledgerlift.events WHERE stream_id = 'subscription-11'") == Int64(events.count))
        }
    }

    @Test func anOrphanHistoryThatCannotBeMigratedIsKeptWithItsKey() async throws {
        // As above, but one of subscription 11's history rows does not convert.
        let mapping = try editedReferenceMapping([
            ("      FROM legacy.subscriptions s\n", "      FROM legacy.subscriptions s WHERE s.id <> 11\n")
        ])
        try await withLegacyAndStore(.reference) { legacy, store, storeDSN in
            let legacyConnection = try await Connection.connect(legacy)
            defer { legacyConnection.close() }
            _ = try await legacyConnection.execute(
                "UPDATE legacy.subscription_history SET status = 'bogus' WHERE subscription_id = 11")
            let report = try await run(mapping, legacy, storeDSN)
            #expect(report.isBalanced)
            #expect(report.quarantineReasons.map(\.reason) == ["history_without_current_row"])
            #expect(report.quarantineReasons.map(\.count) == [1])
            let entry = try await store.query(
                "SELECT entity, entity_key, jsonb_array_length(raw), detail FROM ledgerlift.quarantine"
            ).rows[0]
            #expect(try entry.decode(at: 0, as: String.self) == "subscription")
            #expect(try entry.decode(at: 1, as: String.self) == "11")
            let historyRows = try await int(
                legacyConnection, "SELECT count(*) FROM legacy.subscription_history WHERE subscription_id = 11")
            #expect(Int64(try entry.decode(at: 2, as: Int32.self)) == historyRows)
            let detail = try entry.decode(at: 3, as: String.self)
            #expect(detail.contains("but no current row (deleted from legacy?), not migrated: history row: "), "\(detail)")
            #expect(try await int(store, "SELECT count(*) FROM ledgerlift.streams WHERE stream_id = 'subscription-11'") == 0)
        }
    }
}
