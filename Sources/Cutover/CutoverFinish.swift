import Billing
import EventStore
import Mapping
import Postgres
import Shadow

extension CutoverRunner {
    /// `writes_switched → completed`: capture uninstalled from legacy (nothing writes legacy but
    /// reverse sync, which capture skipped; the gates proved reverse sync drained), the write
    /// guard kept so legacy stays read-only for its readers, and the final figures recorded.
    /// Reverse sync is stopped for good in the same store transaction (a following run ends
    /// within a second).
    /// - Returns: the final report's figures, recorded in the transition.
    func finish(
        _ record: CutoverRecord, gates: [CutoverGate], reason: String?, legacy: Connection, store: Connection,
        mapping: MappingFile, acceptQuarantine: String? = nil
    ) async throws -> [String: String] {
        let log = self.log
        let eventStore = log.store
        let installer = CaptureInstaller(capture: capture)
        let writeGuard = LegacyWriteGuard(mapping: mapping)
        let (uninstalled, guarded) = try await legacy.withSession { session in
            (try installer.uninstall(mapping: mapping, in: session), try writeGuard.guardedTables(in: session))
        }
        guard guarded.count == writeGuard.tables.count else {
            throw CutoverError.inconsistentStream(
                stream: log.streamID, version: record.version,
                reason: "writes_switched, but the write guard is missing on "
                    + writeGuard.tables.filter { !guarded.contains($0) }.joined(separator: ", "))
        }
        return try await store.withSession { session in
            try session.transaction { tx in
                var figures = [
                    "capture_uninstalled_tables": uninstalled.tables.joined(separator: ", "),
                    "capture_pending_dropped": String(uninstalled.pendingChanges),
                    "guarded_tables": guarded.joined(separator: ", "),
                    "store_position": String(try Self.storeHead(eventStore, in: tx)),
                ]
                try ReverseSync.stop(scope: log.name, store: eventStore, in: tx)
                var accepted: String?
                if let reverse = try ReverseSync.status(scope: log.name, store: eventStore, in: tx) {
                    figures["reverse_sync_events_applied"] = String(reverse.eventsApplied)
                    figures["reverse_sync_pending_at_stop"] = String(reverse.pendingEvents)
                    figures["reverse_sync_quarantined"] = String(reverse.quarantined)
                    if reverse.quarantined > 0 { accepted = acceptQuarantine }
                }
                for row in try tx.query(
                    """
                    SELECT coalesce(metadata->>'origin', '(none)'), count(*) FROM \(quoteIdentifier(eventStore.schema)).events
                    WHERE stream_id NOT LIKE 'cutover-%' GROUP BY 1 ORDER BY 1
                    """
                ).rows {
                    figures["events_" + (try row.decode(at: 0, as: String.self))] = String(
                        try row.decode(at: 1, as: Int64.self))
                }
                let transition = CutoverEvent.Transition(
                    from: .writesSwitched, to: .completed, actor: .current(), reason: reason, gates: gates,
                    acceptedQuarantine: accepted, measurements: figures)
                try log.append(.advanced(transition), expectedVersion: record.version, in: tx)
                return figures
            }
        }
    }
}
