import Cutover
import EventStore
import Mapping
import Shadow

extension CutoverCommand {
    /// The rollback's drain: reverse sync (the `--follow` run when one holds the cutover's
    /// scope, else this process) applies the ledger's writes to legacy up to the position.
    static func reverseSyncDrain(
        legacy: String, store: String, schema: String, scope: String, mapping: MappingFile
    ) -> ReverseSyncDrain {
        { position, within in
            let sync = ReverseSync(
                .init(legacyDSN: legacy, storeDSN: store, mapping: mapping, store: EventStore(schema: schema), scope: scope))
            do {
                _ = try await sync.drain(until: position, timeout: within)
                return true
            } catch ReverseSyncError.drainTimedOut {
                return false
            }
        }
    }
}
