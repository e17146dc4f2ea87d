import Foundation
import Postgres

/// Where playbook runs are recorded: schema `ledgerlift_playbook` of the state database (the
/// playbook's `state` variable, usually the event store). A schema of its own, created on first
/// use, so a playbook can record its position before its own `store init` step has run.
///
/// `runs` holds one row per run — the step it is at (the next to run, or the one running when
/// it was killed), its status (`running`, `waiting` for the operator, `failed`, `finished`) and
/// the last failure; `steps` one row per step attempt, with its outcome.
public struct PlaybookState: Sendable {
    public static let schema = "ledgerlift_playbook"
    var s: String { quoteIdentifier(Self.schema) }

    public init() {}

    /// One run as recorded.
    public struct Run: Sendable, Hashable {
        public var id: Int64
        public var playbook: String
        public var file: String
        public var fingerprint: String
        public var status: String
        public var stepIndex: Int
        public var stepID: String?
        public var startedAt: PostgresTimestamp
        public var updatedAt: PostgresTimestamp
        public var finishedAt: PostgresTimestamp?
        public var who: String
        public var lastError: String?
    }

    /// One step attempt as recorded.
    public struct StepRecord: Sendable, Hashable {
        public var stepIndex: Int
        public var stepID: String
        public var startedAt: PostgresTimestamp
        public var finishedAt: PostgresTimestamp?
        /// `done`, `skipped`, `failed`, `waiting`, or `nil` while running (or killed).
        public var outcome: String?
        public var detail: String?
    }

    /// The advisory lock a run holds on the state database: one run of a playbook at a time.
    public static func lock(playbook: String) -> AdvisoryLock { AdvisoryLock("ledgerlift.playbook/" + playbook) }

    public func createSchema(in session: Session) throws {
        try session.executeScript(
            """
            CREATE SCHEMA IF NOT EXISTS \(s);
            CREATE TABLE IF NOT EXISTS \(s).runs (
                run_id       bigserial PRIMARY KEY,
                playbook     text NOT NULL,
                file         text NOT NULL,
                fingerprint  text NOT NULL,
                status       text NOT NULL CHECK (status IN ('running', 'waiting', 'failed', 'finished')),
                step_index   int NOT NULL,
                step_id      text,
                started_at   timestamptz NOT NULL DEFAULT now(),
                updated_at   timestamptz NOT NULL DEFAULT now(),
                finished_at  timestamptz,
                who          text NOT NULL,
                last_error   text
            );
            CREATE INDEX IF NOT EXISTS runs_by_playbook ON \(s).runs (playbook, run_id);
            CREATE TABLE IF NOT EXISTS \(s).steps (
                run_id       bigint NOT NULL REFERENCES \(s).runs (run_id),
                attempt      bigserial,
                step_index   int NOT NULL,
                step_id      text NOT NULL,
                started_at   timestamptz NOT NULL DEFAULT now(),
                finished_at  timestamptz,
                outcome      text,
                detail       text,
                PRIMARY KEY (run_id, attempt)
            );
            -- The step's ledgerlift child (a run killed leaves it running: the next run waits for it).
            ALTER TABLE \(s).steps ADD COLUMN IF NOT EXISTS pid int;
            ALTER TABLE \(s).steps ADD COLUMN IF NOT EXISTS host text;
            CREATE TABLE IF NOT EXISTS \(s).services (
                playbook     text NOT NULL,
                step_id      text NOT NULL,
                pid          int NOT NULL,
                host         text NOT NULL,
                command      text NOT NULL,
                log          text NOT NULL,
                started_at   timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (playbook, step_id)
            );
            """)
    }

    /// Whether the schema exists (`playbook status` on a database no run has used).
    public func exists(in session: Session) throws -> Bool {
        try session.query("SELECT to_regclass($1) IS NOT NULL", [s + ".runs"]).rows[0].decode(at: 0, as: Bool.self)
    }

    static let runColumns = """
        run_id, playbook, file, fingerprint, status, step_index, step_id, started_at, updated_at, finished_at, who,
        last_error
        """

    func run(_ row: Row) throws -> Run {
        Run(
            id: try row.decode(at: 0), playbook: try row.decode(at: 1), file: try row.decode(at: 2),
            fingerprint: try row.decode(at: 3), status: try row.decode(at: 4),
            stepIndex: Int(try row.decode(at: 5, as: Int32.self)), stepID: try row.decode(at: 6, as: String?.self),
            startedAt: try row.decode(at: 7), updatedAt: try row.decode(at: 8),
            finishedAt: try row.decode(at: 9, as: PostgresTimestamp?.self), who: try row.decode(at: 10),
            lastError: try row.decode(at: 11, as: String?.self))
    }

    /// The latest run of `playbook`, finished or not.
    public func latest(playbook: String, in session: Session) throws -> Run? {
        try session.query(
            "SELECT \(Self.runColumns) FROM \(s).runs WHERE playbook = $1 ORDER BY run_id DESC LIMIT 1", [playbook]
        ).first.map(run)
    }

    /// Every run, newest first (of `playbook` when given), at most `limit`.
    public func runs(playbook: String?, limit: Int, in session: Session) throws -> [Run] {
        try session.query(
            """
            SELECT \(Self.runColumns) FROM \(s).runs WHERE $1::text IS NULL OR playbook = $1
            ORDER BY run_id DESC LIMIT $2
            """, [playbook, Int64(limit)]
        ).rows.map(run)
    }

    public func steps(run id: Int64, in session: Session) throws -> [StepRecord] {
        try session.query(
            """
            SELECT step_index, step_id, started_at, finished_at, outcome, detail FROM \(s).steps
            WHERE run_id = $1 ORDER BY attempt
            """, [id]
        ).rows.map { row in
            StepRecord(
                stepIndex: Int(try row.decode(at: 0, as: Int32.self)), stepID: try row.decode(at: 1),
                startedAt: try row.decode(at: 2), finishedAt: try row.decode(at: 3, as: PostgresTimestamp?.self),
                outcome: try row.decode(at: 4, as: String?.self), detail: try row.decode(at: 5, as: String?.self))
        }
    }

    public func begin(playbook: Playbook, file: String, who: String, at index: Int, in session: Session) throws -> Run {
        try session.query(
            """
            INSERT INTO \(s).runs (playbook, file, fingerprint, status, step_index, step_id, who)
            VALUES ($1, $2, md5($3), 'running', $4, $5, $6) RETURNING \(Self.runColumns)
            """,
            [playbook.name, file, playbook.text, Int32(index), playbook.steps[index].id, who]
        ).first.map(run)!
    }

    public func fingerprint(of playbook: Playbook, in session: Session) throws -> String {
        try session.query("SELECT md5($1)", [playbook.text]).rows[0].decode(at: 0)
    }

    /// The run is at `index` (about to run it, or running it): a run killed now resumes there.
    public func enter(run id: Int64, index: Int, stepID: String, in session: Session) throws -> Int64 {
        try session.transaction { tx in
            try tx.execute(
                """
                UPDATE \(s).runs SET status = 'running', step_index = $2, step_id = $3, updated_at = now(),
                    finished_at = NULL
                WHERE run_id = $1
                """, [id, Int32(index), stepID])
            return try tx.query(
                "INSERT INTO \(s).steps (run_id, step_index, step_id) VALUES ($1, $2, $3) RETURNING attempt",
                [id, Int32(index), stepID]
            ).rows[0].decode(at: 0, as: Int64.self)
        }
    }

    /// A step attempt ended with `outcome`; `done`/`skipped` move the run past it.
    public func leave(
        run id: Int64, attempt: Int64, index: Int, outcome: String, detail: String?, nextStepID: String?,
        in session: Session
    ) throws {
        try session.transaction { tx in
            try tx.execute(
                "UPDATE \(s).steps SET finished_at = now(), outcome = $3, detail = $4 WHERE run_id = $1 AND attempt = $2",
                [id, attempt, outcome, detail])
            switch outcome {
            case "done", "skipped":
                try tx.execute(
                    """
                    UPDATE \(s).runs SET step_index = $2, step_id = $3, updated_at = now(), last_error = NULL,
                        status = CASE WHEN $3::text IS NULL THEN 'finished' ELSE 'running' END,
                        finished_at = CASE WHEN $3::text IS NULL THEN now() END
                    WHERE run_id = $1
                    """, [id, Int32(index + 1), nextStepID])
            default:
                try tx.execute(
                    "UPDATE \(s).runs SET status = $2, last_error = $3, updated_at = now() WHERE run_id = $1",
                    [id, outcome == "waiting" ? "waiting" : "failed", detail])
            }
        }
    }

    /// The child a step attempt runs now.
    public func recordChild(run id: Int64, attempt: Int64, pid: Int32, host: String, in session: Session) throws {
        try session.execute(
            "UPDATE \(s).steps SET pid = $3, host = $4 WHERE run_id = $1 AND attempt = $2", [id, attempt, pid, host])
    }

    /// The child of the run's last unfinished step attempt: (pid, host).
    public func unfinishedChild(run id: Int64, in session: Session) throws -> (pid: Int32, host: String)? {
        try session.query(
            """
            SELECT pid, host FROM \(s).steps WHERE run_id = $1 AND finished_at IS NULL AND pid IS NOT NULL
            ORDER BY attempt DESC LIMIT 1
            """, [id]
        ).first.map { (try $0.decode(at: 0, as: Int32.self), try $0.decode(at: 1)) }
    }

    /// Moves a run to `index` (`--from`).
    public func move(run id: Int64, to index: Int, stepID: String, in session: Session) throws {
        try session.execute(
            "UPDATE \(s).runs SET step_index = $2, step_id = $3, updated_at = now() WHERE run_id = $1",
            [id, Int32(index), stepID])
    }

    /// The service a `start` step started, if recorded.
    public func service(playbook: String, stepID: String, in session: Session) throws -> (pid: Int32, host: String, log: String)? {
        try session.query(
            "SELECT pid, host, log FROM \(s).services WHERE playbook = $1 AND step_id = $2", [playbook, stepID]
        ).first.map { (try $0.decode(at: 0, as: Int32.self), try $0.decode(at: 1), try $0.decode(at: 2)) }
    }

    /// Whether a service recorded with `pid` on `host` runs now: `nil` when it ran on another host.
    public static func isRunning(pid: Int32, host: String) -> Bool? {
        host == ProcessInfo.processInfo.hostName ? ChildProcess.isAlive(pid) : nil
    }

    /// The services `start` steps started, of `playbook` (or all): step, pid, host, command (masked), log.
    public func services(playbook: String?, in session: Session) throws -> [(
        playbook: String, stepID: String, pid: Int32, host: String, command: String, log: String, startedAt: PostgresTimestamp
    )] {
        try session.query(
            """
            SELECT playbook, step_id, pid, host, command, log, started_at FROM \(s).services
            WHERE $1::text IS NULL OR playbook = $1 ORDER BY playbook, started_at
            """, [playbook]
        ).rows.map {
            (
                try $0.decode(at: 0), try $0.decode(at: 1), try $0.decode(at: 2, as: Int32.self), try $0.decode(at: 3),
                try $0.decode(at: 4), try $0.decode(at: 5), try $0.decode(at: 6)
            )
        }
    }

    public func recordService(
        playbook: String, stepID: String, pid: Int32, host: String, command: String, log: String, in session: Session
    ) throws {
        try session.execute(
            """
            INSERT INTO \(s).services (playbook, step_id, pid, host, command, log) VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (playbook, step_id) DO UPDATE SET pid = excluded.pid, host = excluded.host,
                command = excluded.command, log = excluded.log, started_at = now()
            """, [playbook, stepID, pid, host, command, log])
    }
}
