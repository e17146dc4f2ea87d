import EventStore
import Foundation
import Postgres
import TextFormats

/// The commands `serve --mode candidate` received, kept in the store
/// (`<store schema>.candidate_commands`) until shadow mode's tailer compares each with what the
/// legacy application did, and the verdict it reached.
///
/// Why record at all, rather than compare in the request: when the application sends a
/// command, its own legacy transaction has not committed yet, and the ledger has not seen that
/// change (nor, under concurrent traffic, necessarily every earlier one). The comparison can only
/// be exact later, in the tailer, where the ledger's state before the legacy change and the
/// legacy rows after it are both known (``CandidateComparison``); the request's job is to keep
/// the command, under its operation id and with the legacy transaction that made the same change.
///
/// One row per operation id (the request's `Idempotency-Key`): a replayed request records
/// nothing new (the idempotency store answers it before the handler runs), and a key used again
/// after its idempotency retention keeps the first record (`ON CONFLICT DO NOTHING`).
///
/// The table is the store's (schema version 4, ``EventStore/EventStore/candidateSchemaVersion``),
/// created and granted by `store init` like `idempotency_keys`, never by `serve`.
public struct CandidateCommandLog: Sendable {
    public let store: EventStore

    public init(store: EventStore = EventStore()) { self.store = store }

    public var table: String { quoteIdentifier(store.schema) + ".candidate_commands" }

    /// What the comparison concluded for one command.
    public enum Verdict: String, Sendable, Hashable, Codable, CaseIterable {
        /// The candidate decided the rows legacy wrote (under the comparison rule).
        case match
        /// It did not: ``Entry/differences`` says where (a rejection is one, on `(command)`).
        case mismatch
        /// No exact comparison was possible (``Entry/reason`` says why): never counted as either.
        case unverifiable
    }

    /// One column where the candidate and legacy disagree.
    public struct Difference: Sendable, Hashable, Codable {
        /// The stream of the row (`invoice-in_42`).
        public var stream: String
        /// The canonical column, `(row)` when one side has the row and the other does not, or
        /// `(command)` when the candidate rejected what legacy did.
        public var column: String
        /// The candidate's value (its text form; `null` for SQL NULL or no row).
        public var candidate: String?
        /// Legacy's value.
        public var legacy: String?

        public init(stream: String, column: String, candidate: String?, legacy: String?) {
            self.stream = stream
            self.column = column
            self.candidate = candidate
            self.legacy = legacy
        }
    }

    /// One received command.
    public struct Entry: Sendable, Hashable {
        /// The operation id: the request's `Idempotency-Key` (`<run>:<op id>/<n>` from the simulator).
        public var opID: String
        /// The command's name (`record_payment`).
        public var command: String
        /// The command as decoded, re-encoded canonically (sorted keys): what the comparison decides.
        public var commandJSON: String
        /// The legacy transaction (`pg_current_xact_id()`) that made the same change, from the
        /// `Ledgerlift-Legacy-Xid` header; nil when the client did not say (never compared).
        public var legacyXid: UInt64?
        /// The HTTP status of the candidate's answer at receipt.
        public var answerStatus: Int
        /// `nil` while the comparison is pending.
        public var verdict: Verdict?
        /// Why a comparison was unverifiable (or what a rejection said).
        public var reason: String?
        /// Where a mismatch differs.
        public var differences: [Difference]

        public init(
            opID: String, command: String, commandJSON: String, legacyXid: UInt64?, answerStatus: Int,
            verdict: Verdict? = nil, reason: String? = nil, differences: [Difference] = []
        ) {
            self.opID = opID
            self.command = command
            self.commandJSON = commandJSON
            self.legacyXid = legacyXid
            self.answerStatus = answerStatus
            self.verdict = verdict
            self.reason = reason
            self.differences = differences
        }
    }

    /// Records `entry` (its verdict ignored: a new command is pending) unless its operation id is
    /// already recorded.
    /// - Returns: whether a row was inserted.
    @discardableResult
    public func record(_ entry: Entry, on connection: Connection) async throws -> Bool {
        let table = self.table
        return try await connection.withSession { session in
            try session.execute(
                """
                INSERT INTO \(table) (op_id, command, command_json, legacy_xid, answer_status)
                VALUES ($1, $2, $3::jsonb, $4::xid8, $5)
                ON CONFLICT (op_id) DO NOTHING
                """,
                [
                    entry.opID, entry.command, entry.commandJSON, entry.legacyXid.map { String($0) },
                    Int32(entry.answerStatus),
                ]) == 1
        }
    }

    static let columns =
        "op_id, command, command_json::text, legacy_xid::text, answer_status, verdict, reason, differences::text"

    static func entry(_ row: Row) throws -> Entry {
        var differences = [Difference]()
        if let json = try row.decode(at: 7, as: String?.self) {
            differences = try JSONDecoder().decode([Difference].self, from: Data(json.utf8))
        }
        return Entry(
            opID: try row.decode(at: 0), command: try row.decode(at: 1), commandJSON: try row.decode(at: 2),
            legacyXid: try row.decode(at: 3, as: String?.self).flatMap { UInt64($0) },
            answerStatus: Int(try row.decode(at: 4, as: Int32.self)),
            verdict: try row.decode(at: 5, as: String?.self).flatMap(Verdict.init(rawValue:)),
            reason: try row.decode(at: 6, as: String?.self), differences: differences)
    }

    /// Every recorded command, oldest first (tests, `shadow status`).
    public func entries(on connection: Connection) async throws -> [Entry] {
        let table = self.table
        return try await connection.withSession { session in
            try session.query("SELECT \(Self.columns) FROM \(table) ORDER BY received_at, op_id").rows.map(Self.entry)
        }
    }

    /// The pending commands of the legacy transactions `xids`, each transaction's in operation
    /// order (the `/<n>` suffix of their ids, numerically, then the id).
    public func pending(xids: Set<UInt64>, in session: Session) throws -> [UInt64: [Entry]] {
        guard !xids.isEmpty else { return [:] }
        var result = [UInt64: [Entry]]()
        for row in try session.query(
            """
            SELECT \(Self.columns) FROM \(table)
            WHERE verdict IS NULL AND legacy_xid = ANY($1::xid8[])
            """, [PostgresArray(xids.sorted().map { String($0) })]
        ).rows {
            let entry = try Self.entry(row)
            if let xid = entry.legacyXid { result[xid, default: []].append(entry) }
        }
        for (xid, entries) in result { result[xid] = entries.sorted(by: Self.operationOrder) }
        return result
    }

    /// Which of `xids` have pending commands.
    public func pendingXids(among xids: Set<UInt64>, in session: Session) throws -> Set<UInt64> {
        guard !xids.isEmpty else { return [] }
        return Set(
            try session.query(
                "SELECT DISTINCT legacy_xid::text FROM \(table) WHERE verdict IS NULL AND legacy_xid = ANY($1::xid8[])",
                [PostgresArray(xids.sorted().map { String($0) })]
            ).rows.compactMap { UInt64(try $0.decode(at: 0, as: String.self)) })
    }

    /// Marks every pending command of legacy transaction `xid` unverifiable with `reason`.
    public func setUnverifiable(xid: UInt64, reason: String, in session: Session) throws {
        try session.execute(
            """
            UPDATE \(table) SET verdict = 'unverifiable', reason = $2, compared_at = clock_timestamp()
            WHERE legacy_xid = $1::xid8 AND verdict IS NULL
            """, [String(xid), reason])
    }

    /// Commands of one operation in the order they were sent: by the number after the last `/`
    /// of their ids, then by id.
    static func operationOrder(_ a: Entry, _ b: Entry) -> Bool {
        func n(_ id: String) -> Int? { id.lastIndex(of: "/").flatMap { Int(id[id.index(after: $0)...]) } }
        switch (n(a.opID), n(b.opID)) {
        case (let x?, let y?) where x != y: return x < y
        default: return a.opID.utf8.lexicographicallyPrecedes(b.opID.utf8)
        }
    }

    /// Writes one command's verdict (only while it is pending: a verdict is never rewritten).
    public func setVerdict(
        opID: String, _ verdict: Verdict, reason: String?, differences: [Difference], in session: Session
    ) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        try session.execute(
            """
            UPDATE \(table) SET verdict = $2, reason = $3, differences = $4::jsonb, compared_at = clock_timestamp()
            WHERE op_id = $1 AND verdict IS NULL
            """,
            [
                opID, verdict.rawValue, reason,
                differences.isEmpty ? nil : String(decoding: try encoder.encode(differences), as: UTF8.self),
            ])
    }

    /// Commands still pending whose legacy transaction is below `xid` — a tailer whose checkpoint
    /// passed `xid` has synced every committed change of theirs, so they will never be compared:
    /// their transaction rolled back, changed nothing captured, or was synced before the command
    /// arrived. Marked unverifiable with that reason.
    /// - Returns: how many.
    @discardableResult
    public func expire(below xid: UInt64, in session: Session) throws -> Int {
        // A command whose transaction never appears (an xid no legacy transaction will reach,
        // or one that changed nothing captured while the tailer has not moved since) would stay
        // pending forever: after the retention below, it is said so.
        let stale = try session.execute(
            """
            UPDATE \(table)
            SET verdict = 'unverifiable', compared_at = clock_timestamp(),
                reason = 'no captured change of its legacy transaction reached the tailer within '
                    || $1::int8 || ' seconds of the command'
            WHERE verdict IS NULL AND received_at < clock_timestamp() - $1::int8 * interval '1 second'
            """, [Int64(Self.pendingRetention.components.seconds)])
        return stale
            + (try session.execute(
                """
                UPDATE \(table)
                SET verdict = 'unverifiable', compared_at = clock_timestamp(),
                    reason = 'the tailer synced past its legacy transaction without comparing it: the transaction rolled back '
                        || 'or changed nothing captured, or the command arrived after the tailer had synced it'
                WHERE verdict IS NULL AND legacy_xid < $1::xid8
                """, [String(xid)]))
    }

    /// How long a command may wait for its legacy transaction to reach the tailer (an hour: far
    /// beyond any legacy transaction and any tailer that follows).
    public static let pendingRetention = Duration.seconds(3600)

    /// The counts of `shadow status` and `/metrics`.
    public struct Summary: Sendable, Hashable {
        public var received = 0
        /// Commands sent without a legacy transaction id: never compared.
        public var withoutLegacyXid = 0
        public var pending = 0
        public var match = 0
        public var mismatch = 0
        public var unverifiable = 0
        /// The most recent mismatches (at most the limit asked for), newest first.
        public var mismatches: [Entry] = []
        /// The most frequent reasons for unverifiable comparisons (without their particulars),
        /// with their counts.
        public var unverifiableReasons: [Reason] = []

        public struct Reason: Sendable, Hashable {
            public var reason: String
            public var count: Int
        }

        public init() {}
    }

    /// Counts by verdict, the latest `limit` mismatches and the top unverifiable reasons.
    public func summary(limit: Int = 20, in session: Session) throws -> Summary {
        var summary = Summary()
        let counts = try session.query(
            """
            SELECT count(*), count(*) FILTER (WHERE legacy_xid IS NULL),
                   count(*) FILTER (WHERE verdict IS NULL AND legacy_xid IS NOT NULL),
                   count(*) FILTER (WHERE verdict = 'match'), count(*) FILTER (WHERE verdict = 'mismatch'),
                   count(*) FILTER (WHERE verdict = 'unverifiable')
            FROM \(table)
            """
        ).rows[0]
        summary.received = Int(try counts.decode(at: 0, as: Int64.self))
        summary.withoutLegacyXid = Int(try counts.decode(at: 1, as: Int64.self))
        summary.pending = Int(try counts.decode(at: 2, as: Int64.self))
        summary.match = Int(try counts.decode(at: 3, as: Int64.self))
        summary.mismatch = Int(try counts.decode(at: 4, as: Int64.self))
        summary.unverifiable = Int(try counts.decode(at: 5, as: Int64.self))
        summary.mismatches = try session.query(
            "SELECT \(Self.columns) FROM \(table) WHERE verdict = 'mismatch' ORDER BY compared_at DESC, op_id LIMIT $1",
            [Int64(max(0, limit))]
        ).rows.map(Self.entry)
        // Reasons end with their particulars in parentheses (the row, the xid): grouped without.
        summary.unverifiableReasons = try session.query(
            """
            SELECT split_part(reason, ' (', 1) AS r, count(*) FROM \(table) WHERE verdict = 'unverifiable'
            GROUP BY r ORDER BY count(*) DESC, r LIMIT 8
            """
        ).rows.map {
            Summary.Reason(
                reason: try $0.decode(at: 0, as: String?.self) ?? "", count: Int(try $0.decode(at: 1, as: Int64.self)))
        }
        return summary
    }

    /// The verdicts of the last `count` commands received (by `received_at`): the cutover's
    /// gate judges recent behaviour, so an early mismatch that was fixed does not block it for
    /// ever, while one among the latest commands does.
    public struct RecentVerdicts: Sendable, Hashable {
        public var commands = 0
        public var match = 0
        public var mismatch = 0
        public var unverifiable = 0
        /// Not compared yet (or never: sent without a legacy transaction id).
        public var pending = 0

        public init() {}
    }

    /// The verdicts of the last `count` commands received.
    public func recentVerdicts(lastCommands count: Int, in session: Session) throws -> RecentVerdicts {
        let row = try session.query(
            """
            SELECT count(*), count(*) FILTER (WHERE verdict = 'match'), count(*) FILTER (WHERE verdict = 'mismatch'),
                   count(*) FILTER (WHERE verdict = 'unverifiable'), count(*) FILTER (WHERE verdict IS NULL)
            FROM (SELECT verdict FROM \(table) ORDER BY received_at DESC, op_id DESC LIMIT $1) recent
            """, [Int64(max(0, count))]
        ).rows[0]
        var verdicts = RecentVerdicts()
        verdicts.commands = Int(try row.decode(at: 0, as: Int64.self))
        verdicts.match = Int(try row.decode(at: 1, as: Int64.self))
        verdicts.mismatch = Int(try row.decode(at: 2, as: Int64.self))
        verdicts.unverifiable = Int(try row.decode(at: 3, as: Int64.self))
        verdicts.pending = Int(try row.decode(at: 4, as: Int64.self))
        return verdicts
    }

    /// Whether the store has the table (schema version 4).
    public func exists(in session: Session) throws -> Bool {
        try session.query("SELECT to_regclass($1) IS NOT NULL", [table]).rows[0].decode(at: 0, as: Bool.self)
    }
}
