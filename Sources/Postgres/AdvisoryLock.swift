/// A named advisory lock: one key derivation for every lock Ledgerlift takes, computed by the
/// server (`hashtextextended(name, 0)`), so an operator's runbook can take, test or wait for the
/// same lock from psql:
///
/// ```sql
/// SELECT pg_advisory_lock(hashtextextended('ledgerlift.backfill/ledgerlift', 0));
/// ```
///
/// Names are `ledgerlift.<purpose>/<scope>`: `ledgerlift.backfill/<store schema>`,
/// `ledgerlift.migrate/<store schema>`, `ledgerlift.fixture.generate/<database>`,
/// `ledgerlift.project.consumer/<schema>.<consumer>`, `ledgerlift.project.batch/<read schema>`,
/// `ledgerlift.capture/<capture schema>` (shadow install and uninstall, in the legacy database).
public struct AdvisoryLock: Sendable, Hashable, CustomStringConvertible {
    public let name: String

    public init(_ name: String) { self.name = name }

    /// The SQL expression of the key, with the name as parameter `$n`.
    public static func keySQL(parameter n: Int = 1) -> String { "hashtextextended($\(n)::text, 0)" }

    public var description: String { name }

    /// The statement that takes this lock from psql, for messages and docs.
    public var psql: String {
        "SELECT pg_advisory_lock(hashtextextended('\(name.replacing("'", with: "''"))', 0));"
    }
}

extension Session {
    /// Takes `lock` if it is free (`pg_try_advisory_lock`, or the transaction-scoped form).
    /// - Returns: `true` when this session now holds it.
    public func tryLock(_ lock: AdvisoryLock, scope: AdvisoryLockScope = .session) throws -> Bool {
        let function = scope == .session ? "pg_try_advisory_lock" : "pg_try_advisory_xact_lock"
        return try query("SELECT \(function)(\(AdvisoryLock.keySQL()))", [lock.name]).rows[0].decode(at: 0, as: Bool.self)
    }

    /// Waits for `lock` (bounded by the session's `lock_timeout` or `statement_timeout`, if set).
    public func lock(_ lock: AdvisoryLock, scope: AdvisoryLockScope = .session) throws {
        let function = scope == .session ? "pg_advisory_lock" : "pg_advisory_xact_lock"
        try execute("SELECT \(function)(\(AdvisoryLock.keySQL()))", [lock.name])
    }

    /// Releases a session-scope `lock`; `false` (and no server warning) when this session did
    /// not hold it.
    @discardableResult
    public func unlock(_ lock: AdvisoryLock) throws -> Bool {
        try query(
            """
            SELECT CASE WHEN EXISTS (
                SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted AND objsubid = 1
                  AND ((classid::int8 << 32) | objid::int8) = \(AdvisoryLock.keySQL()))
              THEN pg_advisory_unlock(\(AdvisoryLock.keySQL())) ELSE false END
            """, [lock.name]
        ).rows[0].decode(at: 0, as: Bool.self)
    }

    /// Who holds `lock` in this database, for a refusal that names them: `pid 4711,
    /// ledgerlift-backfill, since 2026-12-06 01:14:00 UTC`; `nil` when nobody does.
    public func holder(of lock: AdvisoryLock) throws -> String? {
        try query(
            """
            SELECT format('pid %s, %s, since %s', a.pid, coalesce(nullif(a.application_name, ''), 'unnamed client'),
                          to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'))
            FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND ((l.classid::int8 << 32) | l.objid::int8) = \(AdvisoryLock.keySQL())
            LIMIT 1
            """, [lock.name]
        ).first?.decode(at: 0, as: String.self)
    }
}
