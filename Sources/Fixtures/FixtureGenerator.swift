import Foundation
import Postgres
import Synchronization

/// Generates a legacy billing database at scale: the `legacy` schema of `schema.sql`, filled
/// with synthetic customers whose histories obey the same arithmetic rules as the clean seed
/// (`checks.sql` finds nothing).
///
/// ```swift
/// let generator = FixtureGenerator(
///     configuration: .init(customers: 100_000, seed: 1), fixtures: try FixtureDirectory.locate())
/// let summary = try await generator.generate(dsn: dsn) { progress in … }
/// ```
///
/// The same configuration always produces the same rows, byte for byte: every random choice
/// comes from a xoshiro256** stream seeded from (seed, customer id), nothing reads the wall
/// clock, and each table is written by a single `COPY` in id order. Memory stays flat as the
/// customer count grows: one customer's rows are built, streamed into the `COPY`s (one
/// connection per table) and dropped before the next customer is generated.
///
/// - Important: Generating replaces the `legacy` schema of the target database, all or nothing:
///   the data is built in a staging schema and swapped in by one transaction at the end.
public struct FixtureGenerator: Sendable {
    /// What to generate.
    public struct Configuration: Sendable, Hashable {
        /// Number of customers (ids 1…N).
        public var customers: Int
        /// The seed; the same seed gives the same data.
        public var seed: UInt64
        /// First day of the generated history (00:00 UTC).
        public var start: PostgresDate
        /// Length of the history in months. The generator's clock — its "now" — is `start +
        /// months`: everything happens before it.
        public var months: Int

        /// 1 January 2023, the start of the reference fixture's window.
        public static let defaultStart = PostgresDate(year: 2023, month: 1, day: 1)!
        /// 34 months: with ``defaultStart``, January 2023 through October 2025, the window every
        /// event of the reference seed lies in and `checks.sql` (C18) enforces.
        public static let defaultMonths = 34
        /// The largest customer count accepted (ids and invoice numbers stay readable).
        public static let maximumCustomers = 50_000_000

        public init(customers: Int, seed: UInt64, start: PostgresDate = defaultStart, months: Int = defaultMonths) {
            self.customers = customers
            self.seed = seed
            self.start = start
            self.months = months
        }

        /// The generator's clock: the end of the window, exclusive.
        public var end: PostgresDate { PostgresDate(daysSinceEpoch: Clock.floorDiv(window.clock, Clock.day)) }

        /// Checks every setting is in range.
        ///
        /// - Throws: ``FixtureError`` with code ``FixtureError/Code/invalidConfiguration``.
        public func validate() throws(FixtureError) {
            func invalid(_ message: String) -> FixtureError { FixtureError(code: .invalidConfiguration, message: message) }
            guard (1...Self.maximumCustomers).contains(customers) else {
                throw invalid("customers must be between 1 and \(Self.maximumCustomers), got \(customers)")
            }
            guard (1...120).contains(months) else { throw invalid("months must be between 1 and 120, got \(months)") }
            let year = start.components.year
            guard (1990...2200).contains(year) else { throw invalid("start must lie between 1990 and 2200, got \(start)") }
        }

        var window: GenerationWindow {
            let (y, m, d) = start.components
            return GenerationWindow(start: Clock.instant(year: y, month: m, day: d), months: months)
        }
    }

    /// Where generation stands, reported through the `progress` callback.
    public struct Progress: Sendable {
        /// The step in progress.
        public enum Phase: String, Sendable {
            case creatingSchema = "creating schema"
            case generating = "generating"
            case buildingIndexes = "building indexes"
            case addingForeignKeys = "adding foreign keys"
            case analyzing = "analyzing"
            case replacingLegacySchema = "replacing the legacy schema"
            case finished = "finished"
        }

        public var phase: Phase
        public var customersGenerated: Int
        public var customersTotal: Int
        /// Rows handed to COPY so far, over all tables.
        public var rowsWritten: Int

        /// Customers generated as a fraction of the total (0…1).
        public var fractionGenerated: Double {
            customersTotal == 0 ? 0 : Double(customersGenerated) / Double(customersTotal)
        }
    }

    /// What was generated.
    public struct Summary: Sendable {
        /// The rows of every legacy table, as the server counted them in the COPYs.
        public var rowCounts: LegacyRowCounts
        /// Wall time from start to finish (measured, never used to make data).
        public var elapsed: Duration
        /// Wall time of each phase, in order.
        public var phases: [(phase: Progress.Phase, elapsed: Duration)]
    }

    public let configuration: Configuration
    /// Where `schema.sql` is read from.
    public let fixtures: FixtureDirectory

    public init(configuration: Configuration, fixtures: FixtureDirectory) {
        self.configuration = configuration
        self.fixtures = fixtures
    }

    /// The schema the data is generated in before it replaces `legacy`. It is ours alone: a
    /// generation drops any left behind by an earlier run that was killed.
    public static let stagingSchema = "ledgerlift_fixture_staging"
    /// Where an existing `legacy` schema is parked, inside the first transaction only, while
    /// `schema.sql` creates the new one (never committed under this name).
    static let parkedSchema = "ledgerlift_fixture_parked"

    /// Replaces the `legacy` schema in the database at `dsn` with generated data, all or nothing.
    ///
    /// Everything is built in the staging schema (``stagingSchema``), then swapped in:
    ///
    /// 1. One transaction runs `schema.sql` with the current `legacy` schema (if any) renamed out of
    ///    its way, renames the new schema to the staging name and puts the old one back; it also
    ///    takes off the secondary indexes and foreign keys and writes the plans.
    /// 2. Every other table is streamed with `COPY … FREEZE`, each on its own connection and in its
    ///    own transaction, which truncates the table first (that is what lets COPY write frozen
    ///    rows).
    /// 3. The indexes are rebuilt, the foreign keys re-added (which validates every reference),
    ///    each id sequence moved past its largest id, and the tables analyzed.
    /// 4. One transaction drops `legacy` and renames the staging schema to `legacy`.
    ///
    /// Until the last step commits, `legacy` is exactly as it was (or absent, if it was). A
    /// failure drops the staging schema; if the process dies or loses its connection, the
    /// staging schema stays behind and the next generation drops it. A session-level advisory
    /// lock keeps two generations out of the same database.
    ///
    /// - Parameters:
    ///   - dsn: where to generate; needs the right to create schemas.
    ///   - progress: called from a background thread at each phase and every few hundred
    ///     customers; keep it quick.
    /// - Throws: ``FixtureError``; in every case `legacy` is left as it was.
    ///   ``FixtureError/Code/busy`` when another generation holds the database.
    ///   Cancelling the task stops generation (``FixtureError/Code/cancelled``).
    public func generate(
        dsn: String, progress: @escaping @Sendable (Progress) -> Void = { _ in }
    ) async throws -> Summary {
        try configuration.validate()
        let schema = try fixtures.contents(of: .schema)
        let configuration = configuration
        let total = configuration.customers
        let staging = Self.stagingSchema
        let clock = ContinuousClock()
        let started = clock.now
        var phaseStarted = started
        var phases: [(phase: Progress.Phase, elapsed: Duration)] = []
        func finish(_ phase: Progress.Phase) {
            let now = clock.now
            phases.append((phase, now - phaseStarted))
            phaseStarted = now
        }
        func report(_ phase: Progress.Phase, _ rows: Int) {
            progress(Progress(phase: phase, customersGenerated: phase == .creatingSchema ? 0 : total, customersTotal: total, rowsWritten: rows))
        }

        let control = try await Self.connect(dsn)
        // Closing the control connection also releases the advisory lock.
        defer { control.close() }
        try await Self.lockDatabase(control)
        report(.creatingSchema, 0)
        let catalog = PlanCatalog(window: configuration.window)
        let deferred: DeferredDDL
        do {
            deferred = try await control.withSession { session in
                try session.transaction { tx in
                    try Self.createStagingSchema(schema, in: tx)
                    let deferred = try DeferredDDL.capture(in: tx, schema: staging)
                    try deferred.drop(in: tx)
                    try tx.copyIn(LegacyTable.plans.copyStatement(in: staging)) { try Self.writePlans(catalog, $0) }
                    return deferred
                }
            }
        } catch {
            throw Self.unchanged(FixtureError.database("creating the staging schema \(staging) in \(control.maskedDSN) failed", error))
        }
        finish(.creatingSchema)

        do {
            var streams: [Connection] = []
            defer { for connection in streams { connection.close() } }
            for _ in RowEmitter.tables { streams.append(try await Self.connect(dsn)) }

            let streamed = try await Self.stream(configuration, catalog: catalog, into: streams, progress: progress)
            var counts = LegacyRowCounts()
            counts[.plans] = catalog.plans.count
            for (table, rows) in zip(RowEmitter.tables, streamed) { counts[table] = rows }
            finish(.generating)

            report(.buildingIndexes, counts.total)
            try await Self.buildIndexes(deferred.indexes, on: [control, streams[0]])
            finish(.buildingIndexes)

            report(.addingForeignKeys, counts.total)
            try await control.withSession { try deferred.restoreForeignKeys(in: $0) }
            finish(.addingForeignKeys)

            report(.analyzing, counts.total)
            try await control.withSession { session in
                for table in LegacyTable.allCases {
                    let name = table.qualifiedName(in: staging)
                    try session.execute(
                        "SELECT setval(pg_get_serial_sequence($1, 'id'), (SELECT COALESCE(max(id), 0) + 1 FROM \(name)), false)",
                        [name])
                }
                try session.execute("ANALYZE " + LegacyTable.allCases.map { $0.qualifiedName(in: staging) }.joined(separator: ", "))
            }
            finish(.analyzing)

            report(.replacingLegacySchema, counts.total)
            try await control.withSession { session in
                try session.transaction { tx in
                    try tx.execute("DROP SCHEMA IF EXISTS \(quoteIdentifier(LegacyTable.schema)) CASCADE")
                    try tx.execute("ALTER SCHEMA \(quoteIdentifier(staging)) RENAME TO \(quoteIdentifier(LegacyTable.schema))")
                }
            }
            finish(.replacingLegacySchema)
            report(.finished, counts.total)
            return Summary(rowCounts: counts, elapsed: clock.now - started, phases: phases)
        } catch {
            // The legacy schema was never touched; the staging schema goes, in a task of its own so
            // that it runs even when this one was cancelled. (If the connection is gone, the next
            // generation drops it.)
            await Task { _ = try? await control.execute("DROP SCHEMA IF EXISTS \(quoteIdentifier(staging)) CASCADE") }.value
            throw Self.unchanged(FixtureError.database("generating the legacy fixture in \(control.maskedDSN) failed", error))
        }
    }

    /// Runs `schema.sql` in `tx` so that it creates the staging schema and leaves `legacy` alone.
    ///
    /// `schema.sql` drops and creates `legacy` itself; the current `legacy` is renamed out of its
    /// way first and back afterwards, all in one transaction, so no other session ever sees it
    /// missing and its tables keep their identity. A staging schema left by a killed run is dropped.
    private static func createStagingSchema(_ script: String, in tx: Session) throws {
        let legacy = quoteIdentifier(LegacyTable.schema)
        let staging = quoteIdentifier(stagingSchema)
        let parked = quoteIdentifier(parkedSchema)
        try tx.execute("SET LOCAL client_min_messages = warning")
        try tx.execute("DROP SCHEMA IF EXISTS \(staging) CASCADE")
        let existing = try tx.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [LegacyTable.schema]).rows
        if !existing.isEmpty { try tx.execute("ALTER SCHEMA \(legacy) RENAME TO \(parked)") }
        try tx.executeScript(script)
        try tx.execute("ALTER SCHEMA \(legacy) RENAME TO \(staging)")
        if !existing.isEmpty { try tx.execute("ALTER SCHEMA \(parked) RENAME TO \(legacy)") }
    }

    /// One generation per database at a time (`ledgerlift.fixture.generate`).
    public static let lock = AdvisoryLock("ledgerlift.fixture.generate")

    /// Takes the database's generation lock on `control` for as long as it stays open.
    ///
    /// - Throws: ``FixtureError/Code/busy``, naming the backend that holds it.
    private static func lockDatabase(_ control: Connection) async throws {
        let holder: String?
        do {
            holder = try await control.withSession { session -> String? in
                if try session.tryLock(Self.lock) { return nil }
                return try session.holder(of: Self.lock) ?? "a session that has just ended"
            }
        } catch {
            throw FixtureError.database(
                "cannot generate the legacy fixture: taking the generation lock in \(control.maskedDSN) failed", error)
        }
        if let holder {
            throw FixtureError(
                code: .busy,
                message: "another `fixture generate` is writing to \(control.maskedDSN)"
                    + " (\(holder))"
                    + "; nothing was changed. Wait for it to finish, then retry")
        }
    }

    /// `error` with a note that the legacy schema was left as it was.
    private static func unchanged(_ error: any Error) -> any Error {
        guard var fixture = error as? FixtureError else { return error }
        fixture.message += "; the legacy schema was left as it was"
        return fixture
    }

    private static func connect(_ dsn: String) async throws -> Connection {
        do {
            return try await Connection.connect(dsn, applicationName: "ledgerlift-fixture-generate")
        } catch {
            throw FixtureError.database("cannot generate the legacy fixture: connecting failed", error)
        }
    }

    private static func writePlans(_ catalog: PlanCatalog, _ w: CopyInWriter) throws {
        for plan in catalog.plans {
            w.append(plan.id)
            w.append(plan.code)
            w.append(plan.name)
            w.append(MinorUnits.text(plan.price, plan.currency))
            w.append(plan.interval)
            w.append(plan.currency.code)
            w.append(Int64(plan.trialDays))
            w.append(plan.archivedAt == nil ? "f" : "t")
            w.append(Clock.timestampText(plan.createdAt))
            w.append(Clock.timestampText(plan.updatedAt))
            try w.endRow()
        }
    }

    /// Generates every customer on a dedicated thread (libpq calls block) and streams the rows
    /// into one `COPY … FREEZE` per table of the staging schema, each on its own connection and
    /// in its own transaction (the table is truncated first, which lets COPY write frozen rows).
    /// - Returns: the rows the server loaded, per table of ``RowEmitter/tables``.
    private static func stream(
        _ configuration: Configuration, catalog: PlanCatalog, into connections: [Connection],
        progress: @escaping @Sendable (Progress) -> Void
    ) async throws -> [Int] {
        let stop = StopFlag()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[Int], any Error>) in
                let thread = Thread {
                    continuation.resume(
                        with: Result {
                            try streamBlocking(configuration, catalog: catalog, into: connections, stop: stop, progress: progress)
                        })
                }
                thread.name = "ledgerlift-fixture-generate"
                thread.start()
            }
        } onCancel: {
            stop.set()
        }
    }

    private static func streamBlocking(
        _ configuration: Configuration, catalog: PlanCatalog, into connections: [Connection], stop: StopFlag,
        progress: @Sendable (Progress) -> Void
    ) throws -> [Int] {
        let tables = RowEmitter.tables
        let total = configuration.customers
        var generator = StoryGenerator(
            catalog: catalog, window: configuration.window, seed: configuration.seed, customerCount: total)
        var writers: [CopyInWriter] = []
        var counts = [Int](repeating: 0, count: tables.count)
        let step = max(1, min(1_000, total / 200))

        func generateAll() throws {
            let emitter = RowEmitter(writers)
            progress(Progress(phase: .generating, customersGenerated: 0, customersTotal: total, rowsWritten: 0))
            for id in 1...total {
                if stop.isSet { throw FixtureError(code: .cancelled, message: "generation was cancelled after \(id - 1) customers") }
                try generator.generate(customer: Int64(id))
                do {
                    try emitter.emit(generator.rows)
                } catch {
                    throw FixtureError.database("streaming the rows of customer \(id) failed", error)
                }
                if id % step == 0 || id == total {
                    progress(Progress(phase: .generating, customersGenerated: id, customersTotal: total, rowsWritten: emitter.rowsWritten))
                }
            }
        }

        // One COPY per table, nested so that all of them are open while customers are generated.
        func open(_ level: Int) throws {
            guard level < tables.count else { return try generateAll() }
            let table = tables[level]
            do {
                try connections[level].withSessionBlocking { session in
                    try session.transaction { tx in
                        try tx.execute("TRUNCATE \(table.qualifiedName(in: stagingSchema))")
                        counts[level] = try tx.copyIn(table.copyStatement(in: stagingSchema) + " WITH (FREEZE)") { writer in
                            writers.append(writer)
                            try open(level + 1)
                        }
                    }
                }
            } catch {
                throw FixtureError.database("writing \(table.name) into \(stagingSchema) failed", error, table: table)
            }
        }
        try open(0)
        return counts
    }

    /// Builds the indexes, sharing them out over `connections` (several builds run at once).
    private static func buildIndexes(_ indexes: [DeferredDDL.Index], on connections: [Connection]) async throws {
        let queue = WorkQueue(indexes)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for connection in connections {
                group.addTask {
                    while let index = queue.next() {
                        do {
                            try await connection.execute(index.definition)
                        } catch {
                            throw FixtureError.database(
                                "building index \(index.name) failed", error, table: LegacyTable(rawValue: index.table))
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
    }
}

/// Set once by a cancellation handler, polled by the generating thread.
private final class StopFlag: Sendable {
    private let state = Mutex(false)
    var isSet: Bool { state.withLock { $0 } }
    func set() { state.withLock { $0 = true } }
}

/// Hands out items to several workers, each once, in order.
private final class WorkQueue<Item: Sendable>: Sendable {
    private let state: Mutex<(items: [Item], next: Int)>
    init(_ items: [Item]) { state = Mutex((items, 0)) }
    func next() -> Item? {
        state.withLock { s in
            guard s.next < s.items.count else { return nil }
            defer { s.next += 1 }
            return s.items[s.next]
        }
    }
}
