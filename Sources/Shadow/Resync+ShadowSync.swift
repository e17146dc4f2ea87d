import Billing
import EventStore
import Postgres

extension Resync {
    /// Runs the resync through ``ShadowSync`` — the tailer's own path, with origin `resync` (event
    /// ids `resync/…`, `metadata.origin` "resync") — projecting after each round, so the diff
    /// that follows reads what was appended (when `project --follow` runs, it projects instead).
    public func run() async throws(ResyncError) -> ResyncReport {
        let options = options
        let legacy: Connection
        let store: Connection
        do {
            legacy = try await Connection.connect(options.legacyDSN, applicationName: "ledgerlift shadow resync")
        } catch { throw ResyncError.connect(side: "legacy", "\(error)") }
        defer { legacy.close() }
        do {
            store = try await Connection.connect(options.storeDSN, applicationName: "ledgerlift shadow resync")
        } catch { throw ResyncError.connect(side: "store", "\(error)") }
        defer { store.close() }
        let sync = ShadowSync(
            legacy: legacy, store: store, eventStore: EventStore(schema: options.storeSchema), mapping: options.mapping,
            origin: .resync, readSchema: options.readSchema)
        // `project` builds read models never built (blue/green) and catches up the others: the
        // first diff reads them.
        return try await run(prepare: { _ = try await sync.project() }) { keys in
            let outcome = try await sync.sync(keys, position: nil)
            _ = try await sync.project()
            return SyncCounts(
                keysRead: outcome.keysRead, eventsAppended: outcome.eventsAppended, quarantined: outcome.quarantined)
        }
    }
}
