import Billing
import EventStore
import Foundation
import Mapping
import Postgres
import Shadow
import TestSupport
import Testing

/// Shadow mode's tailer on the reference fixture, with `ledgerlift simulate` as the legacy
/// application: after install → backfill → live writes → `shadow run`, the read models equal
/// legacy (`diff` exits 0) and hold every acknowledged write (`simulate verify --store`).
@Suite("Shadow: the tailer (shadow run)")
struct TailerTests {
    @Test func simulatedTrafficEndsWithACleanDiffAndEveryAcknowledgedWriteInTheReadModels() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            let journal = journalPath()
            let simulation = try await ledgerlift([
                "simulate", "--legacy", scenario.legacy, "--operations", "300", "--rate", "200", "--connections", "3",
                "--journal", journal, "--seed", "15",
            ])
            #expect(simulation.status == 0, "\(simulation.stderr)")
            let backlog = try await scenario.withLegacy {
                try $0.query("SELECT count(*) FROM ledgerlift_capture.changes").rows[0].decode(at: 0, as: Int64.self)
            }
            #expect(backlog > 100)

            let summary = try await scenario.tail(batchSize: 97)
            #expect(summary.caughtUp)
            #expect(summary.changesRead == Int(backlog))
            #expect(summary.batches > 1, "several batches, each with its checkpoint")
            #expect(summary.sync.eventsAppended > 0 && summary.sync.quarantined == 0)
            #expect(summary.projected)
            // Applied changes are pruned: the outbox stays bounded.
            let left = try await scenario.withLegacy {
                try $0.query("SELECT count(*) FROM ledgerlift_capture.changes").rows[0].decode(at: 0, as: Int64.self)
            }
            #expect(left == 0)

            let diff = try await scenario.diff()
            #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")
            let verify = try await ledgerlift(["simulate", "verify", "--journal", journal, "--store", scenario.store])
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")

            // Shadow's events name their origin, the stream version they follow, and the
            // capture position; business time never goes back within a stream.
            let (origins, backwards) = try await scenario.withStore { session in
                let origins = try session.query(
                    """
                    SELECT DISTINCT metadata->>'origin' FROM ledgerlift.events
                    WHERE metadata ? 'capture_xid' AND metadata ? 'capture_id'
                    """
                ).rows.map { try $0.decode(at: 0, as: String.self) }
                let backwards = try session.query(
                    """
                    SELECT count(*) FROM (SELECT occurred_at < lag(occurred_at) OVER (PARTITION BY stream_id ORDER BY stream_version)
                                          AS back FROM ledgerlift.events) e WHERE back
                    """
                ).rows[0].decode(at: 0, as: Int64.self)
                return (origins, backwards)
            }
            #expect(origins == ["shadow"])
            #expect(backwards == 0)
            #expect(try await scenario.streamsWithGaps().isEmpty)

            // Nothing left: a second run reads nothing; syncing every key again appends nothing.
            let again = try await scenario.tail()
            #expect(again.changesRead == 0 && again.sync.eventsAppended == 0)
            let before = try await scenario.events()
            let resynced = try await syncEveryKey(scenario)
            #expect(resynced.keysRead > 500)
            #expect(resynced.eventsAppended == 0, "re-applying is harmless: no difference, no event")
            #expect(try await scenario.events() == before)
        }
    }

    @Test func aRolledBackWriteLeavesNothingAndAnUnchangedRowAppendsNothing() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            let before = try await scenario.events()
            try await scenario.withLegacy { session in
                try session.execute("BEGIN")
                try session.execute("UPDATE legacy.customers SET name = 'rolled back' WHERE id = (SELECT min(id) FROM legacy.customers)")
                try session.execute("DELETE FROM legacy.refunds")
                try session.execute("ROLLBACK")
                // Committed, but changes no value: captured, and syncing it finds nothing to do.
                try session.execute("UPDATE legacy.plans SET name = name")
            }
            let summary = try await scenario.tail()
            #expect(summary.changesRead > 0, "only the no-op update")
            #expect(summary.sync.eventsAppended == 0)
            #expect(try await scenario.events() == before)
        }
    }

    @Test func aTransactionHeldOpenTenSecondsIsAppliedWhenItCommitsNotSkipped() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            let (early, late) = try await scenario.withLegacy { session in
                let ids = try session.query("SELECT id FROM legacy.customers ORDER BY id LIMIT 2").rows.map {
                    try $0.decode(at: 0, as: Int64.self)
                }
                return (ids[0], ids[1])
            }
            // The long transaction takes its xid first (its write), then stays open 10 s while
            // another transaction — with a larger xid — commits. Reading in (xid, id) order
            // without the horizon would pass the long one's position and never see its row.
            let state = Locked<(written: Bool, committed: Bool, error: String?)>((false, false, nil))
            let legacy = scenario.legacy
            let holder = Thread {
                do {
                    let connection = try Connection.connectBlocking(legacy)
                    defer { connection.close() }
                    try connection.withSessionBlocking { session in
                        try session.transaction { tx in
                            try tx.execute("UPDATE legacy.customers SET name = 'written early, committed late' WHERE id = $1", [early])
                            state.set((true, false, nil))
                            _ = try tx.query("SELECT pg_sleep(10)")
                        }
                    }
                    state.set((true, true, nil))
                } catch {
                    state.set((true, true, String(describing: error)))
                }
            }
            holder.start()
            while !state.value.written { try await Task.sleep(for: .milliseconds(10)) }
            try await scenario.withLegacy { session in
                _ = try session.execute("UPDATE legacy.customers SET name = 'written late, committed early' WHERE id = $1", [late])
            }
            let stop = ShadowTailer.Stop()
            var configuration = ShadowTailer.Configuration(
                legacyDSN: scenario.legacy, storeDSN: scenario.store, mapping: try scenario.mapping, follow: true)
            configuration.pollInterval = .milliseconds(50)
            let tailer = Task { try await ShadowTailer(configuration).run(stop: stop) }
            let names = { @Sendable () async throws -> [String?] in
                try await scenario.withStore { session in
                    try session.query(
                        "SELECT name FROM ledgerlift_read.customers WHERE customer_id = ANY($1::text[]) ORDER BY customer_id::int8",
                        [PostgresArray([String(early), String(late)])]
                    ).rows.map { $0.values[0] }
                }
            }
            // While the long transaction runs, the horizon holds: the late-xid change that
            // committed is not applied yet either (nothing is read past the open transaction).
            try await Task.sleep(for: .seconds(1))
            if !state.value.committed {
                #expect(try await names()[1] != "written late, committed early")
            }
            var seen = try await names()
            for _ in 0..<600 where seen != ["written early, committed late", "written late, committed early"] {
                try await Task.sleep(for: .milliseconds(100))
                seen = try await names()
            }
            stop.stop()
            let summary = try await tailer.value
            #expect(state.value.error == nil, "\(state.value.error ?? "")")
            #expect(seen == ["written early, committed late", "written late, committed early"])
            #expect(summary.sync.eventsAppended >= 2)
            let diff = try await scenario.diff()
            #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")
        }
    }

    @Test func hardDeletedDraftsEndDeletedAsLegacyShows() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            let mix = FileManager.default.temporaryDirectory.appendingPathComponent("tailer-mix-\(UUID()).yaml")
            try "draft_invoice: 1\ndiscard_draft: 3\n".write(to: mix, atomically: true, encoding: .utf8)
            let journal = journalPath()
            let simulation = try await ledgerlift([
                "simulate", "--legacy", scenario.legacy, "--operations", "60", "--rate", "200", "--connections", "1",
                "--journal", journal, "--mix", mix.path,
            ])
            #expect(simulation.status == 0, "\(simulation.stderr)")
            let summary = try await scenario.tail()
            #expect(summary.sync.deleted > 0, "drafts the backfill migrated were discarded")
            let deleted = try await scenario.withStore { session in
                try session.query(
                    """
                    SELECT count(*) FROM ledgerlift.events e
                    WHERE event_type = 'InvoiceDeleted' AND NOT EXISTS (SELECT 1 FROM ledgerlift_read.invoices i WHERE 'invoice-' || i.invoice_id = e.stream_id)
                    """
                ).rows[0].decode(at: 0, as: Int64.self)
            }
            #expect(deleted == Int64(summary.sync.deleted) || deleted > 0)
            let diff = try await scenario.diff()
            #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")
            let verify = try await ledgerlift(["simulate", "verify", "--journal", journal, "--store", scenario.store])
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        }
    }

    @Test func aSoftDeleteTheMappingFiltersOutEndsTheStream() async throws {
        // The reference mapping keeps soft-deleted customers (deleted_at is archived_at); this
        // one filters out those that never billed anything (the others' invoices need them).
        let text = try String(contentsOfFile: referenceMappingPath, encoding: .utf8)
        let filtered = text.replacing(
            "      ) inv ON true\n",
            with: "      ) inv ON true\n      WHERE c.deleted_at IS NULL OR EXISTS (SELECT 1 FROM legacy.invoices i WHERE i.customer_id = c.id)\n")
        #expect(filtered != text)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("soft-delete-\(UUID()).yaml").path
        try filtered.write(toFile: path, atomically: true, encoding: .utf8)
        try await ShadowScenario.withBackfilled(mappingPath: path) { scenario in
            let customer = try await scenario.withLegacy { session in
                try session.query(
                    "INSERT INTO legacy.customers (email, name, currency) VALUES ('soft@example.com', 'Soft', 'USD') RETURNING id"
                ).rows[0].decode(at: 0, as: Int64.self)
            }
            #expect(try await scenario.tail().sync.eventsAppended > 0)
            try await scenario.withLegacy { session in
                _ = try session.execute("UPDATE legacy.customers SET deleted_at = now(), updated_at = now() WHERE id = $1", [customer])
            }
            let summary = try await scenario.tail()
            #expect(summary.sync.deleted == 1)
            let (types, present) = try await scenario.withStore { session in
                let types = try session.query(
                    "SELECT event_type FROM ledgerlift.events WHERE stream_id = $1 ORDER BY stream_version", ["customer-\(customer)"]
                ).rows.map { try $0.decode(at: 0, as: String.self) }
                let present = try session.query(
                    "SELECT count(*) FROM ledgerlift_read.customers WHERE customer_id = $1", [String(customer)]
                ).rows[0].decode(at: 0, as: Int64.self)
                return (types, present)
            }
            #expect(types == ["CustomerCreated", "CustomerDeleted"])
            #expect(present == 0)
            let diff = try await scenario.diff()
            #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")
        }
    }

    @Test func anUnmigratableUpdateIsQuarantinedAndAFixingWriteReleasesIt() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            let (invoice, discount) = try await scenario.withLegacy { session in
                let row = try session.query(
                    "SELECT id, discount::text FROM legacy.invoices WHERE status = 2 AND currency = 'USD' ORDER BY id LIMIT 1"
                ).rows[0]
                return (try row.decode(at: 0, as: Int64.self), try row.decode(at: 1, as: String.self))
            }
            let stream = "invoice-\(invoice)"
            let versionBefore = try await scenario.withStore { try EventStore().streamVersion(stream, in: $0) }
            try await scenario.withLegacy { session in
                _ = try session.execute("UPDATE legacy.invoices SET discount = 0.005, updated_at = now() WHERE id = $1", [invoice])
            }
            let first = try await scenario.tail()
            #expect(first.sync.quarantined == 1)
            let entry = try await scenario.withStore { session in
                try session.query(
                    "SELECT reason, detail, run_id FROM ledgerlift.quarantine WHERE entity = 'invoice' AND entity_key = $1",
                    [String(invoice)]
                ).first.map { ($0.values[0], $0.values[1], $0.values[2]) }
            }
            #expect(entry?.0 == "amount_not_minor_unit")
            #expect(entry?.1?.contains("discount") == true)
            #expect(entry?.2 == "shadow")
            #expect(try await scenario.withStore { try EventStore().streamVersion(stream, in: $0) } == versionBefore,
                "the stream stays at its last good state")

            try await scenario.withLegacy { session in
                _ = try session.execute(
                    "UPDATE legacy.invoices SET discount = $2::numeric, updated_at = now() WHERE id = $1", [invoice, discount])
            }
            let second = try await scenario.tail()
            #expect(second.sync.released == 1)
            let (left, released) = try await scenario.withStore { session in
                let left = try session.query(
                    "SELECT count(*) FROM ledgerlift.quarantine WHERE entity = 'invoice' AND entity_key = $1", [String(invoice)]
                ).rows[0].decode(at: 0, as: Int64.self)
                let released = try session.query(
                    """
                    SELECT reason, released_by FROM ledgerlift.quarantine_released
                    WHERE entity = 'invoice' AND entity_key = $1 AND released_at IS NOT NULL
                    """, [String(invoice)]
                ).first.map { ($0.values[0], $0.values[1]) }
                return (left, released)
            }
            #expect(left == 0)
            #expect(released?.0 == "amount_not_minor_unit" && released?.1 == "shadow")
            #expect(try await scenario.withStore { try EventStore().streamVersion(stream, in: $0) } > versionBefore,
                "the fixed row's updated_at moved: the stream follows it")
            let diff = try await scenario.diff()
            #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")
        }
    }

    @Test func aTruncateResyncsEveryKeyOfItsEntities() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            let refunds = try await scenario.withLegacy { session in
                let count = try session.query("SELECT count(*) FROM legacy.refunds").rows[0].decode(at: 0, as: Int64.self)
                try session.execute("TRUNCATE legacy.refunds")
                return count
            }
            #expect(refunds > 0)
            let summary = try await scenario.tail()
            #expect(summary.sync.deleted == Int(refunds))
            let diff = try await scenario.diff()
            #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")
        }
    }

    @Test func refusesWithoutAFinishedBackfillNamingTheFix() async throws {
        try await TestDatabase.withFresh("tailer_nobackfill_legacy") { legacy in
            try await TestDatabase.withFresh("tailer_nobackfill_store") { store in
                for arguments in [
                    ["fixture", "load", "--dsn", legacy], ["shadow", "install", "--legacy", legacy, "--mapping", referenceMappingPath],
                    ["store", "init", "--store", store],
                ] {
                    #expect(try await ledgerlift(arguments).status == 0)
                }
                let run = try await ledgerlift([
                    "shadow", "run", "--legacy", legacy, "--store", store, "--mapping", referenceMappingPath,
                ])
                #expect(run.status == 2)
                #expect(run.stderr.hasPrefix("Error: no backfill of this mapping has finished"), "\(run.stderr)")
                #expect(run.stderr.contains("ledgerlift backfill"))
            }
        }
    }

    @Test func oneTailerOfANameAtATime() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            let stop = ShadowTailer.Stop()
            let configuration = ShadowTailer.Configuration(
                legacyDSN: scenario.legacy, storeDSN: scenario.store, mapping: try scenario.mapping, follow: true)
            let first = Task { try await ShadowTailer(configuration).run(stop: stop) }
            // Once the first holds the lock (its row exists), a second of the same name refuses.
            while try await scenario.withStore({ session in
                try session.query("SELECT to_regclass('ledgerlift.shadow_tailers') IS NULL").rows[0].decode(at: 0, as: Bool.self)
                    || session.query("SELECT count(*) FROM ledgerlift.shadow_tailers").rows[0].decode(at: 0, as: Int64.self) == 0
            }) {
                try await Task.sleep(for: .milliseconds(20))
            }
            await #expect(throws: TailerError.self) { _ = try await scenario.tail() }
            let other = try await scenario.tail(name: "second")
            #expect(other.caughtUp)
            stop.stop()
            _ = try await first.value
        }
    }
}

/// Syncs every key of every mapped entity that legacy or the ledger holds, as `shadow resync`
/// would: on a ledger in step with legacy, it must append nothing.
func syncEveryKey(_ scenario: ShadowScenario) async throws -> SyncOutcome {
    let mapping = try scenario.mapping
    let legacy = try await Connection.connect(scenario.legacy)
    defer { legacy.close() }
    let store = try await Connection.connect(scenario.store)
    defer { store.close() }
    var keys = [Entity: Set<String>]()
    for entityMapping in mapping.entities {
        let key = quoteIdentifier(entityMapping.entity.keyColumn)
        let legacyKeys = try await legacy.query("SELECT q.\(key)::text FROM (\n\(entityMapping.query)) q").rows.compactMap { $0.values[0] }
        let prefix = entityMapping.entity.streamID(key: "")
        let ledgerKeys = try await store.query(
            "SELECT substr(stream_id, $2) FROM ledgerlift.streams WHERE category = $1",
            [entityMapping.entity.rawValue, Int32(prefix.count + 1)]
        ).rows.compactMap { $0.values[0] }
        keys[entityMapping.entity] = Set(legacyKeys + ledgerKeys)
    }
    let sync = ShadowSync(legacy: legacy, store: store, eventStore: EventStore(), mapping: mapping, origin: .resync)
    return try await sync.sync(keys, position: nil)
}
