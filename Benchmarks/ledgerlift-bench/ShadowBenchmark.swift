import Billing
import Diff
import EventStore
import Fixtures
import Foundation
import Mapping
import Migration
import Postgres
import Shadow
import Simulator
import Synchronization

/// Issue 15's benchmark, shadow mode's tailer and resync (the capture triggers' cost on the
/// legacy application is `--only simulate`), on generated customers in the normal order —
/// capture installed, backfill, read models built — all through the library, in-process:
///
/// 1. **Lag** legacy commit → read model: the simulated application open loop at 200 ops/s on
///    4 connections while ``ShadowTailer`` follows; p50/p99 of the tailer's own `shadow_lag`
///    samples (`projected_at − captured_at`, and `applied_at − captured_at`), beside the
///    application's own latency in the same run (goal p99 < 500 ms).
/// 2. **Catch-up**: a backlog of captured changes written by SQL updates (1,000 rows per
///    transaction, rotating over customers, invoices, payments and invoice lines), then drained
///    by the tailer; changes/s against the rate legacy wrote them at (goal ≥ 5,000 changes/s);
///    `diff` (every entity, invariants) must be clean after.
/// 3. **Resync** of differences planted in legacy behind capture's back
///    (`session_replication_role = replica`: no ordinary trigger fires), against a clean diff of
///    the same data (the comparison resync runs, rows only) measured just before; `diff` clean
///    after.
///
/// Knobs (environment, like `--only simulate`'s): `LEDGERLIFT_BENCH_SHADOW_CUSTOMERS` (10000),
/// `LEDGERLIFT_BENCH_SHADOW_SECONDS` (lag run, 120), `LEDGERLIFT_BENCH_SHADOW_RATE` (200),
/// `LEDGERLIFT_BENCH_SHADOW_BACKLOG` (100000 changes), `LEDGERLIFT_BENCH_SHADOW_RESYNC_CUSTOMERS`
/// (100000; the resync reuses the first database when it equals the customers),
/// `LEDGERLIFT_BENCH_SHADOW_PLANTED` (1000).
enum ShadowBenchmark {
    struct Knobs {
        var customers = 10_000
        var seconds = 120
        var rate = 200.0
        var backlog = 100_000
        var resyncCustomers = 100_000
        var planted = 1_000

        init(_ environment: [String: String]) {
            func int(_ name: String) -> Int? { environment["LEDGERLIFT_BENCH_SHADOW_" + name].flatMap(Int.init) }
            customers = int("CUSTOMERS") ?? customers
            seconds = int("SECONDS") ?? seconds
            rate = environment["LEDGERLIFT_BENCH_SHADOW_RATE"].flatMap(Double.init) ?? rate
            backlog = int("BACKLOG") ?? backlog
            resyncCustomers = int("RESYNC_CUSTOMERS") ?? resyncCustomers
            planted = int("PLANTED") ?? planted
        }
    }

    /// A legacy database with capture installed and a store holding its backfill and read models.
    struct Pair {
        let legacy: String
        let store: String
    }

    static func run(_ bench: BenchContext) async throws {
        let knobs = Knobs(ProcessInfo.processInfo.environment)
        let fixtures = try FixtureDirectory.locate()
        let mapping = try MappingFile.load(path: fixtures.url.appendingPathComponent("reference/mapping.yaml").path)

        let pair = try await setUp(bench, "ledgerlift_bench_shadow", customers: knobs.customers, mapping, fixtures)
        try await lag(pair, mapping, knobs)
        try await catchUp(pair, mapping, knobs)
        let resyncPair =
            knobs.resyncCustomers == knobs.customers
            ? pair
            : try await setUp(bench, "ledgerlift_bench_shadow_resync", customers: knobs.resyncCustomers, mapping, fixtures)
        try await resync(resyncPair, mapping, knobs)
    }

    // MARK: - Setup

    /// Generates `customers`, installs capture (before the backfill: the normal order, so the
    /// tailer's handover check passes), initializes the store, backfills with 2 workers and
    /// builds the read models.
    static func setUp(
        _ bench: BenchContext, _ name: String, customers: Int, _ mapping: MappingFile, _ fixtures: FixtureDirectory
    ) async throws -> Pair {
        let clock = ContinuousClock()
        let pair = Pair(
            legacy: try await bench.scratchDatabase(name + "_legacy"), store: try await bench.scratchDatabase(name + "_store"))
        var start = clock.now
        _ = try await FixtureGenerator(configuration: .init(customers: customers, seed: 1), fixtures: fixtures)
            .generate(dsn: pair.legacy)
        let generated = clock.now - start
        start = clock.now
        let legacy = try await Connection.connect(pair.legacy)
        let store = try await Connection.connect(pair.store)
        let reader = try await Connection.connect(pair.store)
        defer {
            legacy.close()
            store.close()
            reader.close()
        }
        _ = try await legacy.withSession { try CaptureInstaller().install(mapping, in: $0) }
        _ = try await store.withSession { try EventStore().migrate($0) }
        let backfill = try await Backfill(
            .init(legacyDSN: pair.legacy, storeDSN: pair.store, mapping: mapping, workers: 2)
        ).run()
        guard backfill.isBalanced, backfill.totalQuarantineEntries == 0 else {
            throw BenchFailure("the backfill of \(customers) generated customers is unbalanced or quarantined rows")
        }
        _ = try await Projector().catchUp(on: store, reader: reader)
        // Untimed: statistics and hint bits on both sides, so no measurement pays for the first
        // read of freshly written tables.
        try await legacy.execute("VACUUM ANALYZE")
        try await store.execute("VACUUM ANALYZE")
        say(
            "  \(customers) customers generated in \(String(format: "%.0f", generated.seconds)) s; capture installed, "
                + "backfilled (2 workers) and projected in \(String(format: "%.0f", (clock.now - start).seconds)) s")
        return pair
    }

    // MARK: - 1. Lag

    static func lag(_ pair: Pair, _ mapping: MappingFile, _ knobs: Knobs) async throws {
        let legacy = try await Connection.connect(pair.legacy)
        let store = try await Connection.connect(pair.store)
        defer {
            legacy.close()
            store.close()
        }
        let stop = ShadowTailer.Stop()
        let tailer = ShadowTailer(.init(legacyDSN: pair.legacy, storeDSN: pair.store, mapping: mapping, follow: true))
        let running = Task { try await tailer.run(stop: stop) }
        // On any way out: a failed run must not leave the tailer following.
        defer { stop.stop() }
        // Samples from here on only (the table keeps an hour of them).
        let since = try await store.query("SELECT now()::text").rows[0].decode(at: 0, as: String.self)
        let moment = try await LegacySQLApp.latestRecordedMoment(on: legacy)
        let report = try await Simulation(
            .init(
                app: LegacySQLApp(dsn: pair.legacy), connections: 4, rate: knobs.rate,
                stop: .duration(.seconds(knobs.seconds)), seed: 2, clock: BusinessClock(.data(start: moment)))
        ).run()
        // Let the tailer finish what the last seconds wrote (an empty outbox means applied; the
        // tailer marks the read models' progress on its next empty poll), then stop it.
        try await waitUntil("the tailer drains the outbox after the run", running) {
            let outbox = try await legacy.query("SELECT count(*) FROM ledgerlift_capture.changes").rows[0]
                .decode(at: 0, as: Int64.self)
            let unprojected = try await store.query(
                "SELECT count(*) FROM ledgerlift.shadow_lag WHERE projected_at IS NULL AND captured_at >= $1::timestamptz",
                [since]
            ).rows[0].decode(at: 0, as: Int64.self)
            return outbox == 0 && unprojected == 0
        }
        stop.stop()
        let summary = try await running.value
        let row = try await store.query(
            """
            SELECT count(*), count(projected_at),
                   round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM projected_at - captured_at)) * 1000)::bigint,
                   round(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM projected_at - captured_at)) * 1000)::bigint,
                   round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM applied_at - captured_at)) * 1000)::bigint,
                   round(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM applied_at - captured_at)) * 1000)::bigint,
                   round(extract(epoch FROM max(projected_at - captured_at)) * 1000)::bigint
            FROM ledgerlift.shadow_lag WHERE tailer = 'default' AND captured_at >= $1::timestamptz
            """, [since]
        ).rows[0]
        let samples = try row.decode(at: 0, as: Int64.self)
        guard samples > 0 else { throw BenchFailure("the tailer recorded no lag sample during the run") }
        // Milliseconds, rounded in SQL.
        func ms(_ column: Int) throws -> String { "\(try row.decode(at: column, as: Int64.self)) ms" }
        let p99 = try row.decode(at: 3, as: Int64.self)
        let latency = report.total.latencyMs
        say(
            "  lag at \(Int(knobs.rate)) ops/s (open loop, 4 connections, \(knobs.seconds) s: \(report.total.operations) operations, "
                + "achieved \(Int(report.achievedRate.rounded())) ops/s, \(report.total.failed) failed), tailer following in-process:")
        say(
            "    legacy commit → read model: p50 \(try ms(2)), p99 \(try ms(3)), max \(try ms(6))   "
                + "(goal p99 < 500 ms: \(p99 < 500 ? "met" : "NOT met"))")
        say("    legacy commit → events appended: p50 \(try ms(4)), p99 \(try ms(5))")
        say(
            "    beside it, the application's own operation latency: p50 "
                + (latency.map { String(format: "%.1f ms, p99 %.1f ms", $0.p50, $0.p99) } ?? "-")
                + "; \(samples) lag samples; tailer: \(summary.changesRead) changes in \(summary.batches) batches, "
                + "\(summary.sync.eventsAppended) events appended")
    }

    // MARK: - 2. Catch-up

    /// The backlog's statements: one table each, `$1` the offset of the 1,000-row window, `$2`
    /// the transaction's number; each changes a column the entity's mapping reads, so the
    /// drain re-reads real differences and appends events.
    static let backlogStatements: [(table: String, set: String)] = [
        ("legacy.customers", "email = 'backlog-' || $2::int || '-' || id || '@example.com'"),
        ("legacy.invoices", "number = 'BL-' || id || '-' || $2::int"),
        ("legacy.payments", "provider_payment_id = 'bl_' || id || '_' || $2::int"),
        ("legacy.invoice_line_items", "description = 'backlog ' || $2::int"),
    ]

    static func catchUp(_ pair: Pair, _ mapping: MappingFile, _ knobs: Knobs) async throws {
        let legacy = try await Connection.connect(pair.legacy)
        defer { legacy.close() }
        let clock = ContinuousClock()
        var sizes = [String: Int64]()
        for (table, _) in backlogStatements {
            sizes[table] = try await legacy.query("SELECT count(*) FROM \(table)").rows[0].decode(at: 0, as: Int64.self)
        }
        // SQL rather than the simulator's closed loop: the backlog's size is exact and it takes
        // seconds to write (the closed loop writes ~2 changes per operation at a few hundred
        // operations/s: minutes), and many-row transactions are what a backlog after a pause or
        // a batch job looks like.
        let perTransaction = 1_000
        var written = 0
        var transactions = 0
        let start = clock.now
        while written < knobs.backlog {
            let (table, set) = backlogStatements[transactions % backlogStatements.count]
            let rows = min(perTransaction, knobs.backlog - written)
            let windows = max(1, sizes[table]! / Int64(perTransaction))
            let offset = Int64(transactions / backlogStatements.count) % windows * Int64(perTransaction)
            let changed = try await legacy.execute(
                "UPDATE \(table) SET \(set) WHERE id IN (SELECT id FROM \(table) ORDER BY id OFFSET $1 LIMIT $3)",
                [offset, Int32(transactions), Int64(rows)])
            written += changed
            transactions += 1
        }
        let writing = clock.now - start
        let backlog = try await legacy.query("SELECT count(*) FROM ledgerlift_capture.changes").rows[0]
            .decode(at: 0, as: Int64.self)
        guard backlog == written else {
            throw BenchFailure("\(written) rows updated but \(backlog) changes captured")
        }

        let drainStart = clock.now
        let summary = try await ShadowTailer(.init(legacyDSN: pair.legacy, storeDSN: pair.store, mapping: mapping)).run()
        let drain = clock.now - drainStart
        guard summary.changesRead == backlog, summary.caughtUp else {
            throw BenchFailure("the drain read \(summary.changesRead) of \(backlog) changes (caught up: \(summary.caughtUp))")
        }
        let diff = try await DiffChecker(.init(legacyDSN: pair.legacy, storeDSN: pair.store, mapping: mapping)).run()
        guard diff.isClean else {
            throw BenchFailure("diff after the drain is not clean:\n" + DiffBenchmark.describe(diff, limit: 10))
        }
        let perSecond = Double(backlog) / drain.seconds
        say(
            "  catch-up: \(backlog) captured changes written by SQL updates in \(transactions) transactions of ≤ \(perTransaction) rows "
                + "(customers, invoices, payments, invoice lines) in \(String(format: "%.1f", writing.seconds)) s "
                + "(\(rate(Int(backlog), writing)) changes: the baseline)")
        say(
            "    drained by the tailer in \(String(format: "%.1f", drain.seconds)) s: \(Int(perSecond)) changes/s   "
                + "(goal ≥ 5,000/s: \(perSecond >= 5_000 ? "met" : "NOT met")); "
                + "\(String(format: "%.2f", writing.seconds / drain.seconds)) × the rate legacy wrote them")
        say(
            "    \(summary.batches) batches, \(summary.sync.keysRead) keys synced, \(summary.sync.eventsAppended) events; "
                + "time in outbox read \(String(format: "%.1f", summary.readTime.seconds)) s, keys \(String(format: "%.1f", summary.keysTime.seconds)) s, "
                + "legacy reads \(String(format: "%.1f", summary.sync.legacyTime.seconds)) s, stream reads \(String(format: "%.1f", summary.sync.ledgerTime.seconds)) s, "
                + "append \(String(format: "%.1f", summary.sync.appendTime.seconds)) s, prune \(String(format: "%.1f", summary.pruneTime.seconds)) s, "
                + "projection \(String(format: "%.1f", summary.projectTime.seconds)) s")
        say(
            "    diff after (every entity, invariants): clean, \(diff.entities.reduce(Int64(0)) { $0 + $1.compared }) keys compared "
                + "in \(String(format: "%.1f", diff.duration.seconds)) s")
    }

    // MARK: - 3. Resync

    /// What is planted, a quarter of the differences each: one column the entity's mapping
    /// reads and no other entity's does (no key, currency, amount or time a child inherits), so
    /// each plant is exactly one differing key.
    static let plants: [(entity: Entity, table: String, set: String)] = [
        (.customer, "legacy.customers", "email = 'planted.' || email"),
        (.invoice, "legacy.invoices", "number = coalesce(number, '') || '-planted'"),
        (.payment, "legacy.payments", "provider_payment_id = coalesce(provider_payment_id, '') || '-planted'"),
        (.invoiceLine, "legacy.invoice_line_items", "description = coalesce(description, '') || ' (planted)'"),
    ]

    static func resync(_ pair: Pair, _ mapping: MappingFile, _ knobs: Knobs) async throws {
        let legacy = try await Connection.connect(pair.legacy)
        let store = try await Connection.connect(pair.store)
        defer {
            legacy.close()
            store.close()
        }
        let customers = try await legacy.query("SELECT count(*) FROM legacy.customers").rows[0].decode(at: 0, as: Int64.self)
        // The baseline: a clean diff of the same data, the comparison a resync runs (rows, no
        // invariants), and the default `diff` (with the invariants).
        var rowsOnly = DiffChecker.Options(legacyDSN: pair.legacy, storeDSN: pair.store, mapping: mapping)
        rowsOnly.checkInvariants = false
        let clean = try await DiffChecker(rowsOnly).run()
        guard clean.isClean else { throw BenchFailure("the diff before planting is not clean:\n" + DiffBenchmark.describe(clean, limit: 10)) }
        let full = try await DiffChecker(.init(legacyDSN: pair.legacy, storeDSN: pair.store, mapping: mapping)).run()
        guard full.isClean else { throw BenchFailure("the diff before planting is not clean:\n" + DiffBenchmark.describe(full, limit: 10)) }

        // Planted behind capture's back: `session_replication_role = replica` for the planting
        // transaction only (a superuser setting; PostgreSQL fires no ordinary trigger then), so
        // the outbox holds nothing and only a resync can find them. Keys are picked among the
        // read models' rows, spread by a hash, so each is one the ledger holds.
        var planted = 0
        let share = knobs.planted / plants.count
        for (index, plant) in plants.enumerated() {
            let count = index == plants.count - 1 ? knobs.planted - share * (plants.count - 1) : share
            let keys = try await store.query(
                """
                SELECT \(quoteIdentifier(plant.entity.keyColumn)) FROM \(DiffBenchmark.table(plant.entity))
                ORDER BY md5(\(quoteIdentifier(plant.entity.keyColumn))) LIMIT $1
                """, [Int64(count)]
            ).rows.map { try $0.decode(at: 0, as: String.self) }
            planted += try await legacy.withSession { session in
                try session.transaction { tx in
                    try tx.execute("SET LOCAL session_replication_role = replica")
                    return try tx.execute(
                        "UPDATE \(plant.table) SET \(plant.set) WHERE id = ANY($1::text[]::bigint[])", [PostgresArray(keys)])
                }
            }
        }
        let captured = try await legacy.query("SELECT count(*) FROM ledgerlift_capture.changes").rows[0].decode(at: 0, as: Int64.self)
        guard captured == 0 else { throw BenchFailure("planting left \(captured) captured changes: capture was not bypassed") }

        let clock = ContinuousClock()
        let start = clock.now
        let report = try await Resync(.init(legacyDSN: pair.legacy, storeDSN: pair.store, mapping: mapping)).run()
        let elapsed = clock.now - start
        guard report.before.differenceCount == Int64(planted) else {
            throw BenchFailure(
                "resync found \(report.before.differenceCount) differences, \(planted) planted:\n"
                    + DiffBenchmark.describe(report.before, limit: 5))
        }
        let after = try await DiffChecker(.init(legacyDSN: pair.legacy, storeDSN: pair.store, mapping: mapping)).run()
        guard report.after.isClean, after.isClean else {
            throw BenchFailure("diff after the resync is not clean:\n" + DiffBenchmark.describe(after, limit: 10))
        }
        let syncTime = report.rounds.isEmpty ? Duration.zero : elapsed - report.before.duration - report.after.duration
        say(
            "  resync of \(planted) planted differences (legacy, capture bypassed by session_replication_role = replica) "
                + "among \(customers) customers (\(clean.entities.reduce(Int64(0)) { $0 + $1.compared }) keys):")
        say(
            "    clean diff of the same data: \(String(format: "%.1f", clean.duration.seconds)) s rows only (the baseline), "
                + "\(String(format: "%.1f", full.duration.seconds)) s with the invariants")
        say(
            "    shadow resync: \(String(format: "%.1f", elapsed.seconds)) s → ratio \(String(format: "%.2f", elapsed.seconds / clean.duration.seconds)) × the clean diff "
                + "(its diffs \(String(format: "%.1f", report.before.duration.seconds)) s + \(String(format: "%.1f", report.after.duration.seconds)) s, "
                + "sync and projection of \(report.keysSynced) keys \(String(format: "%.1f", syncTime.seconds)) s, "
                + "\(report.eventsAppended) events, \(report.rounds.count) round(s))")
        say("    diff after (every entity, invariants): clean")
    }

    // MARK: - Helpers

    /// Polls `condition` every 100 ms for up to two minutes, failing early when `task` (the
    /// tailer) has ended, with its error.
    static func waitUntil<T: Sendable>(
        _ what: String, _ task: Task<T, any Error>, _ condition: () async throws -> Bool
    ) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(120)
        let ended = Flag()
        let watcher = Task {
            _ = try? await task.value
            ended.set()
        }
        defer { watcher.cancel() }
        while clock.now < deadline {
            if ended.isSet {
                _ = try await task.value
                throw BenchFailure("the tailer stopped before \(what)")
            }
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw BenchFailure("timed out waiting until \(what)")
    }
}

/// A flag one task sets and another reads.
private final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}
