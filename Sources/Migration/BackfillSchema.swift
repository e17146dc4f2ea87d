import Mapping
import TextFormats
import EventStore
import Mapping
import Postgres

/// The backfill's own bookkeeping, in the event store's schema beside the events it writes, so
/// a batch of events and the record that its key range is done commit together.
enum BackfillSchema {
    static func create(_ store: EventStore, _ session: Session) throws {
        try QuarantineStore(schema: store.schema).create(session)
        let s = quoteIdentifier(store.schema)
        try session.executeScript(
            """
            CREATE TABLE IF NOT EXISTS \(s).backfill_runs (
                run_id          text PRIMARY KEY,
                mapping_sha1    text NOT NULL,
                started_at      timestamptz NOT NULL DEFAULT now(),
                finished_at     timestamptz,
                -- pg_current_snapshot() of the legacy database for each attempt, in order: the
                -- shadow tailer applies exactly the changes these snapshots did not see.
                legacy_snapshots text[] NOT NULL DEFAULT '{}',
                attempts        integer NOT NULL DEFAULT 0
            );
            CREATE TABLE IF NOT EXISTS \(s).backfill_ranges (
                run_id        text NOT NULL REFERENCES \(s).backfill_runs,
                entity        text NOT NULL,
                ordinal       integer NOT NULL,
                lower_key     text COLLATE "C",
                upper_key     text COLLATE "C",
                done          boolean NOT NULL DEFAULT false,
                rows_read     bigint NOT NULL DEFAULT 0,
                rows_migrated bigint NOT NULL DEFAULT 0,
                rows_quarantined bigint NOT NULL DEFAULT 0,
                events        bigint NOT NULL DEFAULT 0,
                finished_at   timestamptz,
                PRIMARY KEY (run_id, entity, ordinal)
            );
            -- Which legacy database the run read (system_identifier/oid/name): a store holds the
            -- history of one database.
            ALTER TABLE \(s).backfill_runs ADD COLUMN IF NOT EXISTS legacy_identity text;
            -- pg_current_snapshot() of the attempt that read the range.
            ALTER TABLE \(s).backfill_ranges ADD COLUMN IF NOT EXISTS legacy_snapshot text;
            ALTER TABLE \(s).backfill_ranges ADD COLUMN IF NOT EXISTS rows_resynced bigint NOT NULL DEFAULT 0;
            -- count(*) of each mapping query in the snapshot of the latest attempt that counted
            -- it: conservation is checked against the source, not against the ranges.
            CREATE TABLE IF NOT EXISTS \(s).backfill_entities (
                run_id       text NOT NULL REFERENCES \(s).backfill_runs,
                entity       text NOT NULL,
                legacy_rows  bigint NOT NULL,
                attempt      integer NOT NULL,
                PRIMARY KEY (run_id, entity)
            );
            """)
    }
}
