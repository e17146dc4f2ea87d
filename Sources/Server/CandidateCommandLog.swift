import EventStore
import HTTPTypes
import Postgres

/// The commands `serve --mode candidate` received, kept in the store
/// (`<store schema>.candidate_commands`) so they can be compared with what the legacy
/// application did to the same rows once shadow mode has synced them (issue 16 point 4).
///
/// Why record at all, rather than compare in the request: when the application sends a
/// command, its own legacy transaction has not committed yet, and the ledger has not seen that
/// change (nor, under concurrent traffic, necessarily every earlier one). The comparison can only
/// be exact later, where the before and after states are both known; the request's job is to
/// keep the command, under its operation id and with the legacy transaction that made the same
/// change, until then.
///
/// One row per operation id (the request's `Idempotency-Key`): a replayed request records
/// nothing new (the ``IdempotencyStore`` answers it before the handler runs), and a key used
/// again after its idempotency retention keeps the first record (`ON CONFLICT DO NOTHING`).
///
/// The table is the store's (schema version 4, ``EventStore/EventStore/candidateSchemaVersion``),
/// created and granted by `store init` like `idempotency_keys`, never by `serve`.
public struct CandidateCommandLog: Sendable {
    public let store: EventStore

    public init(store: EventStore = EventStore()) { self.store = store }

    public var table: String { quoteIdentifier(store.schema) + ".candidate_commands" }

    /// One received command.
    public struct Entry: Sendable, Hashable {
        /// The operation id: the request's `Idempotency-Key` (`<op id>/<n>` from the simulator).
        public var opID: String
        /// The command's name (`record_payment`).
        public var command: String
        /// The command as decoded, re-encoded canonically (sorted keys): what the comparison decides.
        public var commandJSON: String
        /// The legacy transaction (`pg_current_xact_id()`) that made the same change, from the
        /// `Ledgerlift-Legacy-Xid` header; nil when the client did not say.
        public var legacyXid: UInt64?
        /// The HTTP status of the candidate's answer: 202 decided, 4xx a rejection on the
        /// ledger's state at receipt (which may lag legacy; not yet a comparison).
        public var answerStatus: Int

        public init(opID: String, command: String, commandJSON: String, legacyXid: UInt64?, answerStatus: Int) {
            self.opID = opID
            self.command = command
            self.commandJSON = commandJSON
            self.legacyXid = legacyXid
            self.answerStatus = answerStatus
        }
    }

    /// Records `entry` unless its operation id is already recorded.
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

    /// Every recorded command, oldest first (tests, `shadow status`).
    public func entries(on connection: Connection) async throws -> [Entry] {
        let table = self.table
        return try await connection.withSession { session in
            try session.query(
                """
                SELECT op_id, command, command_json::text, legacy_xid::text, answer_status
                FROM \(table) ORDER BY received_at, op_id
                """
            ).rows.map { row in
                Entry(
                    opID: try row.decode(at: 0), command: try row.decode(at: 1), commandJSON: try row.decode(at: 2),
                    legacyXid: try row.decode(at: 3, as: String?.self).flatMap { UInt64($0) },
                    answerStatus: Int(try row.decode(at: 4, as: Int32.self)))
            }
        }
    }

    /// Parses the `Ledgerlift-Legacy-Xid` header: a full transaction id (`xid8`) in decimal.
    public static func legacyXid(_ header: String?) throws(Problem) -> UInt64? {
        guard let header else { return nil }
        guard !header.isEmpty, header.utf8.count <= 20, header.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let xid = UInt64(header)
        else {
            throw Problem(
                .badRequest, code: "invalid_legacy_xid", title: "Invalid Ledgerlift-Legacy-Xid",
                detail: "Ledgerlift-Legacy-Xid must be a legacy transaction id (pg_current_xact_id()) in decimal")
        }
        return xid
    }
}
