/// Why shadow mode's tailer (`ledgerlift shadow run`) refused to run or stopped. Each case
/// names what to do about it.
public enum TailerError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No backfill of this mapping has finished in the store: the tailer applies changes on
    /// top of a backfill, never instead of one.
    case noFinishedBackfill(runID: String)
    /// The legacy database has no capture schema.
    case captureNotInstalled(schema: String)
    /// The capture schema is older than this Ledgerlift's: the outbox does not record what was
    /// pruned, so a consumer that missed pruned changes could not be told.
    case captureOutdated(schema: String, found: Int, current: Int)
    /// A `sources` table that does not exist in the legacy database.
    case sourceTableMissing(entity: String, table: String)
    /// A `sources` table without capture triggers: its changes would be missed.
    case sourceNotCaptured(entity: String, table: String)
    /// Another tailer of this name, or a resync, runs (it holds the lock).
    case busy(name: String, holder: String)
    /// Another tailer drains this legacy database's outbox (it holds the outbox's lock there):
    /// the outbox has one consumer, since each deletes what it applied.
    case outboxBusy(schema: String, holder: String)
    /// A mapping statement the tailer runs in legacy failed: an entity's `keys:` (of the
    /// source `table`) or its `by_key:` (`table`: its source tables). `error` is PostgreSQL's.
    case mappingStatementFailed(entity: String, table: String, statement: String, error: String)
    /// Another consumer of the outbox (another store, or another tailer name) deleted changes
    /// after this tailer's checkpoint that neither the backfill nor a finished resync saw.
    case outboxPrunedByAnother(
        name: String, checkpoint: CapturePosition, through: CapturePosition, by: String, at: String)
    /// The checkpoint moved under a batch: another tailer wrote it (the lock was bypassed).
    case checkpointMoved(name: String, expected: CapturePosition, actual: CapturePosition?)

    public var description: String {
        switch self {
        case .noFinishedBackfill(let runID):
            "no backfill of this mapping has finished in the store (run \(runID)): shadow mode applies legacy changes on "
                + "top of one; run `ledgerlift backfill --legacy … --store … --mapping …` with this mapping first (capture "
                + "installed before it), then `ledgerlift shadow run`"
        case .captureOutdated(let schema, let found, let current):
            "the capture schema \(schema) is at version \(found), this Ledgerlift needs \(current): run "
                + "`ledgerlift shadow install` again with the same mapping to upgrade it (one transaction, no trigger changes)"
        case .captureNotInstalled(let schema):
            "capture is not installed in the legacy database (no \(schema) schema): run `ledgerlift shadow install "
                + "--legacy … --mapping …` — before the backfill, so no change is missed"
        case .sourceTableMissing(let entity, let table):
            "\(entity): sources table \(table) does not exist in the legacy database"
        case .sourceNotCaptured(let entity, let table):
            "\(entity): sources table \(table) is not captured, so its changes would be missed: run `ledgerlift shadow "
                + "install` with this mapping (then `ledgerlift shadow resync` for what changed meanwhile)"
        case .busy(let name, let holder):
            "another shadow tailer named \(name), or a shadow resync, holds ledgerlift.shadow/\(name) (\(holder)); "
                + "wait for it or stop it (one writer per tailer name)"
        case .outboxBusy(let schema, let holder):
            "another shadow tailer drains \(schema).changes in this legacy database (\(holder)); the outbox has one "
                + "consumer — each tailer deletes the changes it applied, so a second one would miss them"
        case .mappingStatementFailed(let entity, let table, let statement, let error):
            "\(entity): the mapping's `\(statement)` statement (source table \(table)) failed in the legacy database: "
                + "\(error) — fix it in the mapping file (`ledgerlift mapping check` runs it), then run again"
        case .outboxPrunedByAnother(let name, let checkpoint, let through, let by, let at):
            "the capture outbox was pruned through \(through) by \(by) at \(at), but shadow tailer \(name) of this store "
                + "is at \(checkpoint): the changes in between are gone and neither the backfill nor a finished resync saw "
                + "them; run `ledgerlift shadow resync --legacy … --store … --mapping …` into this store, then `ledgerlift "
                + "shadow run`"
        case .checkpointMoved(let name, let expected, let actual):
            "the checkpoint of shadow tailer \(name) moved from \(expected) to \(actual.map(\.description) ?? "nothing") "
                + "under this run: another tailer wrote it; nothing of this batch was written"
        }
    }
}
