import Billing
import Commands
import Postgres

extension ShadowSync {
    /// A key whose stream in the ledger does not hold its legacy row.
    public struct KeyDifference: Sendable, Hashable, CustomStringConvertible {
        public var entity: Entity
        public var key: String
        /// The first differing column (`(row)` when one side has no row) and both values.
        public var column: String
        public var legacy: String?
        public var ledger: String?

        public var description: String {
            "\(entity.streamID(key: key)) \(column): legacy \(legacy ?? "(none)"), ledger \(ledger ?? "(none)")"
        }
    }

    /// Compares `keys` in legacy (read on ``legacy`` in whatever transaction it has open — the
    /// write switch's, holding the source tables locked) with their streams in the ledger, by
    /// the parity rule: every canonical column exactly (`attributes` excluded, as the diff
    /// does). A key quarantined in legacy and in the ledger is not a difference (its quarantine
    /// was accepted by the gates); quarantined on one side only, it is.
    ///
    /// Streams, not read models: the streams are what the write path decides on. It is the
    /// check the cutover's write switch runs on the keys changed since the last clean
    /// verification, once the tailer has applied everything legacy committed.
    public func verify(_ keys: [Entity: Set<String>]) async throws -> [KeyDifference] {
        let group = keys.filter { !$0.value.isEmpty }.sorted { $0.key.rawValue < $1.key.rawValue }
            .map { ($0.key, $0.value.sorted()) }
        guard !group.isEmpty else { return [] }
        let (sources, mapping) = (self.sources, self.mapping)
        let legacyStates = try await legacy.withSession { session in
            try Self.readLegacy(group, sources: sources, mapping: mapping, in: session)
        }
        let (streams, quarantined) = try await readLedger(group)
        var differences = [KeyDifference]()
        for (entity, entityKeys) in group {
            for key in entityKeys {
                let ledgerRow = streams[entity]?[key]?.row
                let inQuarantine = quarantined[entity]?.contains(key) ?? false
                switch legacyStates[entity]?[key] ?? .absent {
                case .quarantined(let reason, _, _):
                    if !inQuarantine {
                        differences.append(
                            .init(entity: entity, key: key, column: "(quarantine)", legacy: reason, ledger: "not quarantined"))
                    }
                case .absent:
                    if ledgerRow != nil {
                        differences.append(
                            .init(entity: entity, key: key, column: "(row)", legacy: nil, ledger: "a row (deleted in legacy)"))
                    }
                case .row(let row):
                    let found = CandidateComparison.compare(
                        stream: entity.streamID(key: key), predicted: ledgerRow, before: nil, legacy: row)
                    if let first = found.differences.first {
                        differences.append(
                            .init(entity: entity, key: key, column: first.column, legacy: first.legacy, ledger: first.candidate))
                    }
                }
            }
        }
        return differences
    }
}
