import Billing
import EventStore
import Mapping
import Postgres

/// The tailer's bookkeeping in the store, beside the events it appends, so a batch's events and
/// the checkpoint that says its changes are applied commit together.
///
/// - `shadow_tailers`: one row per tailer name: its checkpoint in the capture outbox
///   (`checkpoint_xid`, `checkpoint_id`), counters, the last error and when it was caught up.
/// - `shadow_lag`: samples of captured changes (their `captured_at` in legacy) with when their
///   batch was applied (committed in the store) and projected (in the read models), for `shadow
///   status` and the benchmark; kept for ``TailerSchema/lagWindow``.
/// - `quarantine_released`: quarantine entries a later write fixed, with when and by whom they
///   were released (``QuarantineRelease``).
public enum TailerSchema {
    /// How long lag samples are kept.
    public static let lagWindow = "1 hour"

    /// Creates the tables if they do not exist (idempotent).
    public static func create(_ store: EventStore, _ session: Session) throws {
        try QuarantineStore(schema: store.schema).create(session)
        let s = quoteIdentifier(store.schema)
        try session.executeScript(
            """
            CREATE TABLE IF NOT EXISTS \(s).shadow_tailers (
                name             text PRIMARY KEY,
                -- Every captured change at or before (checkpoint_xid, checkpoint_id) is applied.
                checkpoint_xid   xid8 NOT NULL DEFAULT '0',
                checkpoint_id    bigint NOT NULL DEFAULT 0,
                mapping_sha1     text NOT NULL,
                started_at       timestamptz NOT NULL DEFAULT now(),
                updated_at       timestamptz NOT NULL DEFAULT now(),
                caught_up_at     timestamptz,
                changes_applied  bigint NOT NULL DEFAULT 0,
                changes_skipped  bigint NOT NULL DEFAULT 0,
                keys_synced      bigint NOT NULL DEFAULT 0,
                events_appended  bigint NOT NULL DEFAULT 0,
                quarantined      bigint NOT NULL DEFAULT 0,
                released         bigint NOT NULL DEFAULT 0,
                last_error       text,
                last_error_at    timestamptz
            );
            CREATE TABLE IF NOT EXISTS \(s).shadow_lag (
                tailer        text NOT NULL,
                -- The store transaction that appended the batch: its events are projected once
                -- the read models' checkpoint has passed them.
                store_xid     xid8 NOT NULL,
                captured_at   timestamptz NOT NULL,
                applied_at    timestamptz NOT NULL,
                projected_at  timestamptz
            );
            CREATE INDEX IF NOT EXISTS shadow_lag_by_time ON \(s).shadow_lag (tailer, applied_at);
            """)
        try QuarantineRelease.create(store.schema, session)
    }
}

/// Quarantine entries released by a sync: moved from `quarantine` (which lists what is *still*
/// kept aside, as the diff and the backfill's report read it) into `quarantine_released`, with
/// when, by which writer (`shadow`, `resync`) and at which capture position.
public enum QuarantineRelease {
    static func create(_ schema: String, _ session: Session) throws {
        try session.execute(
            """
            CREATE TABLE IF NOT EXISTS \(quoteIdentifier(schema)).quarantine_released (
                entity            text NOT NULL,
                entity_key        text NOT NULL,
                reason            text NOT NULL,
                detail            text NOT NULL,
                raw               jsonb NOT NULL,
                run_id            text NOT NULL,
                recorded_at       timestamptz NOT NULL,
                released_at       timestamptz NOT NULL DEFAULT now(),
                released_by       text NOT NULL,
                released_at_position text
            )
            """)
    }

    /// Releases the entries of `keys` (no-op for keys without one).
    static func release(
        _ entity: Entity, keys: [String], by writer: String, position: CapturePosition?, schema: String, _ tx: Session
    ) throws {
        guard !keys.isEmpty else { return }
        try create(schema, tx)
        let s = quoteIdentifier(schema)
        try tx.execute(
            """
            WITH gone AS (
                DELETE FROM \(s).quarantine WHERE entity = $1 AND entity_key = ANY($2::text[])
                RETURNING entity, entity_key, reason, detail, raw, run_id, recorded_at)
            INSERT INTO \(s).quarantine_released
                (entity, entity_key, reason, detail, raw, run_id, recorded_at, released_by, released_at_position)
            SELECT entity, entity_key, reason, detail, raw, run_id, recorded_at, $3, $4 FROM gone
            """, [entity.rawValue, PostgresArray(keys), writer, position?.description])
    }
}
