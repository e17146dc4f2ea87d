import Billing
import EventStore
import Foundation
import Postgres
import Shadow
import TestSupport
import Testing

/// "Kill at any point, run again → the same result" for the read models: whatever a killed run
/// left of them (events committed but not projected, a first blue/green build cut short), the
/// next run brings them up to the event store even when it appends nothing itself.
@Suite("Shadow: the tailer's read models after a crash")
struct TailerCrashSafetyTests {
    @Test func eventsCommittedButNeverProjectedAreProjectedByTheNextRunThatAppendsNothing() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            let key = try await scenario.withLegacy { session in
                try session.query(
                    "UPDATE legacy.customers SET name = name || ' (renamed)' WHERE id = (SELECT min(id) FROM legacy.customers) RETURNING id::text"
                ).rows[0].decode(at: 0, as: String.self)
            }
            // What a run killed between its store commit and its projection leaves: the change's
            // events in the store, the read models without them.
            let legacy = try await Connection.connect(scenario.legacy)
            defer { legacy.close() }
            let store = try await Connection.connect(scenario.store)
            defer { store.close() }
            let sync = ShadowSync(
                legacy: legacy, store: store, eventStore: EventStore(), mapping: try scenario.mapping, origin: .shadow)
            let appended = try await sync.sync([.customer: [key]], position: nil)
            #expect(appended.eventsAppended > 0)
            #expect(try await scenario.diff().status == 1, "the read models are behind the store")

            // The rerun reads the change, finds its key current (appends nothing) — and still
            // projects, since the read models are behind the store.
            let summary = try await scenario.tail()
            #expect(summary.caughtUp)
            #expect(summary.sync.eventsAppended == 0)
            #expect(summary.projected)
            let diff = try await scenario.diff()
            #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")
        }
    }

    @Test func aFirstBlueGreenBuildCutShortIsFinishedByTheNextRun() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            // What a first build killed midway leaves: only ledgerlift_read_next, half-built.
            let store = try await Connection.connect(scenario.store)
            defer { store.close() }
            try await store.execute("DROP SCHEMA ledgerlift_read CASCADE")
            let partial = try await Projector(batchSize: 50).rebuild(on: store, until: .batches(1))
            #expect(!partial.swapped)
            let schemas = { @Sendable () async throws -> [String] in
                try await scenario.withStore { session in
                    try session.query(
                        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'ledgerlift_read%' ORDER BY nspname"
                    ).rows.map { try $0.decode(at: 0, as: String.self) }
                }
            }
            #expect(try await schemas() == ["ledgerlift_read_next"])

            // Nothing captured: the run appends nothing, and still finishes the build.
            let summary = try await scenario.tail()
            #expect(summary.caughtUp && summary.changesRead == 0)
            #expect(summary.projected)
            #expect(try await schemas() == ["ledgerlift_read"])
            let diff = try await scenario.diff()
            #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")
        }
    }
}
