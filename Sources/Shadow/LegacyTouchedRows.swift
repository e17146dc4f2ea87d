import Billing
import Mapping
import Postgres

/// The canonical rows one legacy transaction touched, before and after it, read from INSIDE
/// that transaction before its COMMIT: what candidate mode (`ledgerlift simulate --candidate`)
/// translates into the commands it sends the candidate write path.
///
/// Why from inside: the candidate must hold the commands before the shadow tailer can see the
/// transaction (the tailer reads only committed outbox rows), so they are made and sent before
/// COMMIT — when the transaction's own writes are visible only to itself. The rows are found
/// the way the tailer finds them, so both sides name the same keys:
/// - the transaction's outbox rows (`<capture>.changes` where `xid = pg_current_xact_id()`,
///   the columns ``ChangeReader`` reads), turned into keys through the mapping's `sources`
///   (the statements ``KeyResolver`` prepares), in the transaction (a source's `keys:` may join
///   rows the transaction itself inserted);
/// - the after rows: each key's `by_key` read, converted and checked (``ShadowSync``'s legacy
///   read), in the transaction;
/// - the before rows: the same read on a SECOND legacy connection, in a read-only snapshot of
///   the committed state — which excludes this transaction's uncommitted writes, and, for the
///   rows it changed (which it holds locked), is what it started from.
///
/// Everything read in the legacy transaction runs under a savepoint rolled back on any error,
/// so a failed read (a mapping statement that fails, a missing capture schema) never aborts the
/// legacy transaction: the caller counts the error and the legacy operation commits as usual.
///
/// A key the mapping quarantines (on either side) or that a TRUNCATE touched is left out of
/// ``Rows/before`` and ``Rows/after`` and listed in ``Rows/quarantined`` / ``Rows/truncated``.
public struct LegacyTouchedRows: Sendable {
    /// The rows of one transaction.
    public struct Rows: Sendable, Hashable {
        /// The legacy transaction (`pg_current_xact_id()`): what the candidate is told
        /// (`Ledgerlift-Legacy-Xid`) and the tailer later matches. `0` when the transaction has
        /// no transaction id (it wrote nothing), and then every other field is empty.
        public var xid: UInt64
        /// Each touched key's canonical row before the transaction; a key absent did not exist
        /// (or is quarantined: see ``quarantined``).
        public var before: [Entity: [String: CanonicalRow]]
        /// Each touched key's canonical row as the transaction leaves it; a key absent no
        /// longer exists (or is quarantined).
        public var after: [Entity: [String: CanonicalRow]]
        /// Touched keys whose legacy row the mapping quarantines before or after.
        public var quarantined: [Entity: Set<String>]
        /// Entities a TRUNCATE in the transaction touched (every key: none is read).
        public var truncated: Set<Entity>

        public init(
            xid: UInt64, before: [Entity: [String: CanonicalRow]] = [:], after: [Entity: [String: CanonicalRow]] = [:],
            quarantined: [Entity: Set<String>] = [:], truncated: Set<Entity> = []
        ) {
            self.xid = xid
            self.before = before
            self.after = after
            self.quarantined = quarantined
            self.truncated = truncated
        }

        /// Every touched key (quarantined ones included), per entity.
        public var keys: [Entity: Set<String>] {
            var keys = quarantined
            for (entity, rows) in before { keys[entity, default: []].formUnion(rows.keys) }
            for (entity, rows) in after { keys[entity, default: []].formUnion(rows.keys) }
            return keys
        }
    }

    public let mapping: MappingFile
    public let capture: CaptureSchema
    let resolver: KeyResolver
    let sources: [Entity: EntitySource]

    /// The savepoint the reads in the legacy transaction run under.
    static let savepoint = "ledgerlift_candidate_read"

    /// Prepares the key statements once (resolving each source's table to the name the capture
    /// triggers record), on any legacy session outside a transaction.
    ///
    /// - Throws: ``LegacyTouchedRowsError`` at step `prepare` when capture is not installed, a
    ///   source table is missing or not captured (the tailer would refuse the same mapping).
    public init(mapping: MappingFile, capture: CaptureSchema = CaptureSchema(), preparedOn session: Session)
        throws(LegacyTouchedRowsError)
    {
        self.mapping = mapping
        self.capture = capture
        self.sources = Dictionary(uniqueKeysWithValues: mapping.entitySources().map { ($0.entity, $0) })
        do {
            guard try capture.version(session) != nil else {
                throw LegacyTouchedRowsError(
                    .prepare,
                    "the legacy database has no capture schema \(capture.schema): install it with `ledgerlift shadow install`"
                )
            }
            self.resolver = try KeyResolver.prepare(mapping, capture: capture, in: session)
        } catch let error as LegacyTouchedRowsError {
            throw error
        } catch {
            throw LegacyTouchedRowsError(.prepare, "\(error)")
        }
    }

    /// The rows the open transaction `tx` touched, before and after it.
    ///
    /// - Parameters:
    ///   - tx: the legacy application's transaction, after its writes and before its COMMIT.
    ///   - committed: another connection to the legacy database, idle (not in a transaction):
    ///     the before rows are read there.
    /// - Throws: ``LegacyTouchedRowsError`` naming the step that failed; `tx` is left as it was
    ///   (the failed reads rolled back to their savepoint) and can still commit.
    public func read(in tx: Session, committed: Connection) throws(LegacyTouchedRowsError) -> Rows {
        let (xid, group, quarantinedAfter, truncated, after) = try readInTransaction(tx)
        guard xid != 0 else { return Rows(xid: 0) }
        var rows = Rows(xid: xid, truncated: truncated)
        rows.quarantined = quarantinedAfter
        rows.after = after
        guard !group.isEmpty else { return rows }
        let sources = self.sources
        let mapping = self.mapping
        let before: [Entity: [String: ShadowSync.LegacyState]]
        do {
            before = try committed.withSessionBlocking { session in
                try session.transaction(.init(isolation: .repeatableRead, readOnly: true)) { snapshot in
                    try ShadowSync.readLegacy(group, sources: sources, mapping: mapping, in: snapshot)
                }
            }
        } catch {
            throw LegacyTouchedRowsError(.before, "\(error)")
        }
        for (entity, states) in before {
            for (key, state) in states {
                switch state {
                case .row(let row): rows.before[entity, default: [:]][key] = row
                case .quarantined: rows.quarantined[entity, default: []].insert(key)
                case .absent: break
                }
            }
        }
        // A key quarantined on one side is left out of both: half a pair would read as a
        // creation or a deletion.
        for (entity, keys) in rows.quarantined {
            for key in keys {
                rows.before[entity]?[key] = nil
                rows.after[entity]?[key] = nil
            }
        }
        rows.before = rows.before.filter { !$0.value.isEmpty }
        rows.after = rows.after.filter { !$0.value.isEmpty }
        return rows
    }

    /// Everything read in the legacy transaction, under ``savepoint``: the xid, the touched
    /// keys (as a read group), the quarantined and truncated ones, the after rows.
    private func readInTransaction(_ tx: Session) throws(LegacyTouchedRowsError) -> (
        UInt64, [(Entity, [String])], [Entity: Set<String>], Set<Entity>, [Entity: [String: CanonicalRow]]
    ) {
        do {
            try tx.execute("SAVEPOINT \(Self.savepoint)")
        } catch {
            throw LegacyTouchedRowsError(.xid, "could not open a savepoint in the legacy transaction: \(error)")
        }
        var step = LegacyTouchedRowsError.Step.xid
        do {
            // `_if_assigned`: a transaction that wrote nothing is not given an xid by asking.
            let xidText = try tx.query("SELECT pg_current_xact_id_if_assigned()::text").rows[0].decode(
                at: 0, as: String?.self)
            guard let xidText else {
                try tx.execute("RELEASE SAVEPOINT \(Self.savepoint)")
                return (0, [], [:], [], [:])
            }
            guard let xid = UInt64(xidText) else {
                throw LegacyTouchedRowsError(.xid, "pg_current_xact_id() gave \(xidText)")
            }
            step = .changes
            let changes = try self.changes(in: tx)
            step = .keys
            let (keys, truncated) = try resolver.touchedKeys(changes, in: tx)
            var group = [(Entity, [String])]()
            for entity in Entity.allCases {
                guard let set = keys[entity], !set.isEmpty, sources[entity] != nil else { continue }
                group.append((entity, set.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }))
            }
            step = .after
            var after = [Entity: [String: CanonicalRow]]()
            var quarantined = [Entity: Set<String>]()
            if !group.isEmpty {
                for (entity, states) in try ShadowSync.readLegacy(group, sources: sources, mapping: mapping, in: tx) {
                    for (key, state) in states {
                        switch state {
                        case .row(let row): after[entity, default: [:]][key] = row
                        case .quarantined: quarantined[entity, default: []].insert(key)
                        case .absent: break
                        }
                    }
                }
            }
            try tx.execute("RELEASE SAVEPOINT \(Self.savepoint)")
            return (xid, group, quarantined, truncated, after)
        } catch {
            // Back to before the reads: the legacy transaction is usable again and commits its
            // own writes. (When even this fails, the connection is gone, and so is the commit.)
            _ = try? tx.execute("ROLLBACK TO SAVEPOINT \(Self.savepoint)")
            _ = try? tx.execute("RELEASE SAVEPOINT \(Self.savepoint)")
            if let error = error as? LegacyTouchedRowsError { throw error }
            throw LegacyTouchedRowsError(step, "\(error)")
        }
    }

    /// The outbox rows the current transaction wrote, in their order (as ``ChangeReader`` reads them).
    func changes(in tx: Session) throws -> [CapturedChange] {
        try tx.query(
            """
            SELECT \(ChangeReader.columns)
            FROM \(capture.s).changes c
            WHERE c.xid = pg_current_xact_id()
            ORDER BY c.id
            """
        ).rows.map { try ChangeReader.change($0, seenByBackfill: false) }
    }
}

/// Why the rows of a legacy transaction could not be read for the candidate.
public struct LegacyTouchedRowsError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Where it failed.
    public enum Step: String, Sendable, Hashable {
        /// Preparing the key statements (capture not installed, a source not captured).
        case prepare
        /// Reading the transaction id (or opening the savepoint).
        case xid
        /// Reading the transaction's outbox rows.
        case changes
        /// A source's `keys:` statement.
        case keys
        /// The after rows (`by_key`, checks) in the legacy transaction.
        case after
        /// The before rows on the second connection.
        case before
    }

    public var step: Step
    public var detail: String

    public init(_ step: Step, _ detail: String) {
        self.step = step
        self.detail = detail
    }

    public var description: String { "reading the legacy rows failed (\(step.rawValue)): \(detail)" }
}
