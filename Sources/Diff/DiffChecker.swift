import TextFormats
import Mapping
import Billing
import EventStore
import Logging
import Postgres

/// Proves, row by row and column by column, that the ledger's canonical read models equal
/// what the legacy database says (`ledgerlift diff`).
///
/// How, per entity:
/// 1. Each side computes its rows' canonical text form and 64-bit hashes in SQL
///    (``CanonicalQuery``): the legacy side over the mapping query, the ledger over its
///    canonical table. Only per-bucket counts and hash sums travel.
/// 2. Rows fall into buckets by the top bits of their key's hash. Buckets with equal count and
///    hash sum are done. A differing bucket small enough is fetched from both sides and
///    compared key by key; a larger one is split by 8 more bits and re-hashed, within the same
///    snapshot, until its parts are small (checksum bisection).
/// 3. Quarantined keys (by the backfill, the tailer or a resync) are left out on both sides and
///    listed apart.
/// 4. Every difference and every broken invariant is re-checked once, in fresh snapshots, after
///    the projection has caught up with the event store: a write racing the check (legacy row
///    written, its event not yet projected) is then resolved instead of reported.
///
/// Both sides are read in one `REPEATABLE READ READ ONLY` transaction each, concurrently, so
/// the legacy scan and the ledger scan take the time of the slower one; the legacy database
/// is never written.
public struct DiffChecker: Sendable {
    /// What to compare and how.
    public struct Options: Sendable {
        public var legacyDSN: String
        public var storeDSN: String
        public var mapping: MappingFile
        /// Entities to compare; `nil` for every entity the mapping maps.
        public var entities: [Entity]?
        /// Differences, quarantined rows and offending keys listed per entity or invariant.
        public var maxRows: Int
        /// The event store's schema (holds the backfill's quarantine table).
        public var storeSchema: String
        /// The read-model schema.
        public var readSchema: String
        /// Aim for this many rows per bucket at the first level (it sets the bucket count).
        public var rowsPerBucket: Int
        /// A differing bucket with at most this many rows on each side is fetched, not split.
        public var fetchBucketRows: Int
        /// Re-check differences after the projection has caught up.
        public var reverify: Bool
        /// Check the ledger invariants beside the rows.
        public var checkInvariants: Bool
        /// How long to wait for the projection to catch up before re-checking anyway.
        public var catchUpTimeout: Duration
        /// At most this many differing keys per entity are kept (to list and re-check); the
        /// rest are counted only.
        public var maxReverifiedKeys: Int
        /// Called as the check proceeds (from the checking task).
        public var progress: (@Sendable (DiffProgress) -> Void)?
        /// Runs after the first pass, before re-verification: where shadow mode (and the
        /// tests) let writes race the check.
        public var beforeReverification: (@Sendable () async throws -> Void)?
        /// How many times differences are re-checked: after each re-check, those still there
        /// are re-checked again (``beforeReverification`` runs before each), up to this many
        /// rounds. 1 for `ledgerlift diff`; shadow mode's continuous verification uses more,
        /// since under live traffic a key can be written again while its first re-check waits.
        public var reverificationRounds = 1
        /// Under live writes (shadow mode): each re-check reads the legacy rows first, then runs
        /// ``beforeReverification`` (which waits for the tailer to pass what legacy holds then),
        /// then reads the ledger, then the legacy rows again. A key whose legacy row changed
        /// between its two reads was being written while it was checked, so its difference
        /// proves nothing either way. When set, such keys are re-checked in the
        /// next round and, if still moving after the last one, left out of the differences and
        /// named in a note ("unsettled"), not reported as persistent. A key whose legacy row
        /// held still while the ledger disagreed is a difference. Off for `ledgerlift diff`.
        public var settleRacingWrites = false
        /// Where each compared entity is logged (`info`, with `entity` metadata): the caller's,
        /// since a library makes no logger of its own; by default nothing is logged.
        public var logger = Logger(label: "ledgerlift.diff", factory: { _ in SwiftLogNoOpLogHandler() })

        public init(
            legacyDSN: String, storeDSN: String, mapping: MappingFile, entities: [Entity]? = nil, maxRows: Int = 100,
            storeSchema: String = EventStore().schema, readSchema: String = "ledgerlift_read", rowsPerBucket: Int = 256,
            fetchBucketRows: Int = 1024, reverify: Bool = true, checkInvariants: Bool = true,
            catchUpTimeout: Duration = .seconds(30),
            maxReverifiedKeys: Int = 100_000, progress: (@Sendable (DiffProgress) -> Void)? = nil,
            beforeReverification: (@Sendable () async throws -> Void)? = nil
        ) {
            self.legacyDSN = legacyDSN
            self.storeDSN = storeDSN
            self.mapping = mapping
            self.entities = entities
            self.maxRows = maxRows
            self.storeSchema = storeSchema
            self.readSchema = readSchema
            self.rowsPerBucket = rowsPerBucket
            self.fetchBucketRows = fetchBucketRows
            self.reverify = reverify
            self.checkInvariants = checkInvariants
            self.catchUpTimeout = catchUpTimeout
            self.maxReverifiedKeys = maxReverifiedKeys
            self.progress = progress
            self.beforeReverification = beforeReverification
        }
    }

    public let options: Options

    public init(_ options: Options) {
        self.options = options
    }

    /// Runs the check.
    ///
    /// - Returns: the report; ``DiffReport/exitCode`` is 0 when clean, 1 otherwise.
    /// - Throws: ``DiffError`` when the check could not run (exit code 2).
    public func run() async throws(DiffError) -> DiffReport {
        let clock = ContinuousClock()
        let started = clock.now
        let entities = try selectedEntities()
        let legacy = try await connect(options.legacyDSN, side: .legacy)
        defer { legacy.close() }
        let ledger = try await connect(options.storeDSN, side: .ledger)
        defer { ledger.close() }
        let invariantsLedger = options.checkInvariants ? try await connect(options.storeDSN, side: .ledger) : nil
        defer { invariantsLedger?.close() }

        var results = [EntityDiff]()
        var portableHash = false
        var firstPass = [Entity: EntityPass]()
        var invariants = [InvariantResult]()
        do {
            try await begin(legacy, ledger)
            try await checkReadModels(ledger, entities)
            portableHash = try await encodingsDiffer(legacy, ledger)
            let quarantineTable = try await ledger.withSession { [options] session in
                try QuarantineStore(schema: options.storeSchema).exists(session)
            }
            // The invariants read the ledger's snapshot on a connection of their own, while the
            // rows are compared: the ledger side of a comparison often waits for the legacy
            // side, and the invariants fill that time.
            let snapshot = try await ledger.query("SELECT pg_export_snapshot()").first?.values[0] ?? ""
            async let invariantResults = checkInvariants(invariantsLedger, snapshot: snapshot)
            for entity in entities {
                let pass = try await firstPassOf(
                    entity, legacy, ledger, quarantineTable: quarantineTable, portableHash: portableHash)
                firstPass[entity] = pass
                let summary = pass.summary
                options.progress?(.entityCompared(summary))
                options.logger.info(
                    "entity compared",
                    metadata: [
                        "entity": "\(entity)", "keys": "\(summary.compared)", "differing": "\(summary.differenceCount)",
                        "quarantined": "\(summary.quarantined)", "buckets": "\(summary.bucketsCompared)",
                        "duration": "\(summary.duration)",
                    ])
            }
            invariants = try await invariantResults
            try await end(legacy, ledger)
        } catch {
            throw DiffError.wrap(error, side: nil, entity: nil, doing: "the comparison failed")
        }

        var notes = [String]()
        if portableHash {
            notes.append(
                "the two databases store text in different encodings: both sides hashed the UTF-8 bytes of their text")
        }
        if !options.checkInvariants { notes.append("the invariants were not checked (--skip-invariants)") }
        let differing = firstPass.values.contains { !$0.differingKeys.isEmpty }
        let broken = invariants.contains { !$0.holds }
        if (differing || broken) && !options.reverify {
            notes.append("differences were not re-checked (--no-reverify): some may be writes that raced the check")
        }
        if options.reverify && (differing || broken) {
            do {
                var projectionNoted = false
                for _ in 0..<max(1, options.reverificationRounds) {
                    let pending = entities.filter { !(firstPass[$0]?.differingKeys.isEmpty ?? true) }
                    let brokenNow = invariants.indices.filter { !invariants[$0].holds }
                    guard !pending.isEmpty || !brokenNow.isEmpty else { break }
                    // Under live writes the legacy rows are read first, then the hook waits for
                    // the tailer to pass what legacy holds now — which includes everything that
                    // read saw — and only then is the ledger read. Read the other way round, a
                    // write committed between the hook's look at legacy and the legacy re-read
                    // would be in the legacy rows and not yet in the ledger: a difference that
                    // is only the tailer's lag.
                    var legacyFirst = [Entity: [FetchedRow]]()
                    if options.settleRacingWrites {
                        for entity in pending {
                            guard let pass = firstPass[entity] else { continue }
                            legacyFirst[entity] = try await readLegacyRows(pass, legacy)
                        }
                    }
                    try await options.beforeReverification?()
                    if try await !waitForProjection(ledger), !projectionNoted {
                        projectionNoted = true
                        notes.append(
                            "the projection had not caught up with the event store after \(options.catchUpTimeout); "
                                + "differences were re-checked anyway and may include events not yet projected")
                    }
                    for entity in pending {
                        guard var pass = firstPass[entity] else { continue }
                        options.progress?(.reverifying(entity, keys: pass.differingKeys.count))
                        pass.apply(try await reverify(pass, legacy, ledger, legacyRows: legacyFirst[entity]))
                        firstPass[entity] = pass
                    }
                    // A broken invariant is re-checked too, in a fresh snapshot: under live
                    // writes the ledger is consistent per key at every moment but across keys
                    // only once it has caught up (a credit note synced with its legacy row of
                    // now, its balance transaction of a later legacy transaction not yet).
                    for index in brokenNow {
                        invariants[index] = try await recheck(invariants[index], ledger)
                    }
                }
            } catch {
                throw DiffError.wrap(error, side: nil, entity: nil, doing: "re-verification failed")
            }
        }
        for entity in entities {
            guard var pass = firstPass[entity] else { continue }
            if options.settleRacingWrites {
                let moving = pass.dropUnsettled()
                if !moving.isEmpty {
                    notes.append(
                        "\(entity): \(moving.count) differing key(s) were written again in legacy during every re-check ("
                            + moving.prefix(10).joined(separator: ", ") + (moving.count > 10 ? ", …" : "")
                            + "): not counted as differences; a later check sees them settled")
                }
            }
            let unkept = pass.unkept.values.reduce(0, +)
            if unkept > 0 {
                notes.append(
                    "\(entity): \(unkept) differences beyond the first \(pass.differences.count) were counted only, "
                        + "not listed or re-checked")
            }
            results.append(pass.report(maxRows: options.maxRows))
        }
        return DiffReport(
            legacy: ConnectionString.masked(options.legacyDSN), store: ConnectionString.masked(options.storeDSN),
            mapping: options.mapping.file, readSchema: options.readSchema, maxRows: options.maxRows,
            entities: results, invariants: invariants, duration: clock.now - started, notes: notes)
    }

    // MARK: - Setup

    private func selectedEntities() throws(DiffError) -> [Entity] {
        guard let requested = options.entities else {
            let mapped = Entity.allCases.filter { options.mapping[entity: $0] != nil }
            guard !mapped.isEmpty else { throw DiffError("the mapping \(options.mapping.file) maps no entity") }
            return mapped
        }
        for entity in requested where options.mapping[entity: entity] == nil {
            throw DiffError(entity: entity, "the mapping \(options.mapping.file) does not map \(entity)")
        }
        return Entity.allCases.filter(requested.contains)
    }

    private func connect(_ dsn: String, side: DiffError.Side) async throws(DiffError) -> Connection {
        do {
            let connection = try await Connection.connect(dsn, applicationName: "ledgerlift diff")
            do {
                // JIT would compile the hashing queries: seconds on a table of ten rows, and no
                // gain on large ones, whose time goes to reading and hashing text.
                _ = try await connection.execute("SET jit = off")
            } catch {
                connection.close()
                throw error
            }
            return connection
        } catch {
            // libpq's message already says "could not connect to <masked DSN>".
            throw DiffError.wrap(error, side: side, entity: nil, doing: nil)
        }
    }

    /// One snapshot per side for the whole first pass: every bisection level of every entity
    /// sees the same rows.
    ///
    /// `enable_sort` is off in them: the planner cannot know that a bucket expression has only
    /// a few thousand values and estimates one group per row, so it would sort every row
    /// (spilling to disk past `work_mem`) where hashing the few buckets needs almost no memory.
    private func begin(_ legacy: Connection, _ ledger: Connection) async throws {
        _ = try await onBothSides(nil, "cannot start a read-only transaction", legacy, ledger) { connection, _ in
            try await connection.executeScript("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL enable_sort = off")
        }
    }

    private func end(_ legacy: Connection, _ ledger: Connection) async throws {
        _ = try await onBothSides(nil, "cannot end the read-only transaction", legacy, ledger) { connection, _ in
            try await connection.executeScript("COMMIT")
        }
    }

    /// Checks the read models exist and holds a share lock on them until the first pass ends:
    /// a blue/green rebuild swapping tables mid-check would otherwise make later statements
    /// read the new tables (names resolve anew per statement) under the old snapshot, where
    /// they look empty. The swap takes its locks with NOWAIT, so it simply retries later.
    private func checkReadModels(_ ledger: Connection, _ entities: [Entity]) async throws {
        let tables = entities.map { quoteIdentifier(options.readSchema) + "." + quoteIdentifier($0.tableName) }
        let missing = try await ledger.withSession { session in
            try tables.filter { table in
                try session.query("SELECT to_regclass($1) IS NULL", [table]).first?.decode(at: 0, as: Bool.self) ?? true
            }
        }
        if !missing.isEmpty {
            throw DiffError(
                side: .ledger,
                "no read model \(missing.joined(separator: ", ")): build the read models with `ledgerlift project --store DSN` first")
        }
        _ = try await ledger.execute("LOCK TABLE \(tables.joined(separator: ", ")) IN ACCESS SHARE MODE")
    }

    /// Whether the two databases store text in different encodings (hashes must then be of
    /// UTF-8 bytes on both sides).
    private func encodingsDiffer(_ legacy: Connection, _ ledger: Connection) async throws -> Bool {
        let encodings = try await onBothSides(nil, "reading the server encoding", legacy, ledger) { connection, _ in
            try await connection.query("SHOW server_encoding").first?.values[0]
        }
        return encodings.legacy != encodings.ledger
    }

    /// Runs `body` on both databases at once, each on its own connection; what it throws
    /// becomes a ``DiffError`` naming the side and entity.
    private func onBothSides<T: Sendable>(
        _ entity: Entity?, _ what: String, _ legacy: Connection, _ ledger: Connection,
        _ body: @escaping @Sendable (Connection, DiffError.Side) async throws -> T
    ) async throws -> (legacy: T, ledger: T) {
        async let l = side(.legacy, entity, what) { try await body(legacy, .legacy) }
        async let r = side(.ledger, entity, what) { try await body(ledger, .ledger) }
        return try await (l, r)
    }

    /// Runs `body`, turning what it throws into a ``DiffError`` naming the side and entity.
    private func side<T: Sendable>(
        _ side: DiffError.Side, _ entity: Entity?, _ what: String, _ body: () async throws -> T
    ) async throws -> T {
        do { return try await body() } catch { throw DiffError.wrap(error, side: side, entity: entity, doing: what) }
    }

    // MARK: - First pass

    private func firstPassOf(
        _ entity: Entity, _ legacy: Connection, _ ledger: Connection, quarantineTable: Bool, portableHash: Bool
    ) async throws -> EntityPass {
        let clock = ContinuousClock()
        let started = clock.now
        options.progress?(.entityStarted(entity))
        let mapping = options.mapping[entity: entity]!
        let (quarantine, shape, estimate) = try await prepare(entity, mapping, legacy, ledger, quarantineTable: quarantineTable)
        let keys = PostgresArray(quarantine.map(\.key))
        var legacyQuery = CanonicalQuery.legacy(
            entity, query: mapping.query, resultColumns: shape, amounts: options.mapping.amounts(for: entity),
            defaultCurrency: options.mapping.defaultCurrency(for: entity),
            currencyExponents: options.mapping.currencyExponents(for: entity))
        var ledgerQuery = CanonicalQuery.ledger(entity, readSchema: options.readSchema)
        legacyQuery.portableHash = portableHash
        ledgerQuery.portableHash = portableHash
        var pass = EntityPass(entity: entity, legacyQuery: legacyQuery, ledgerQuery: ledgerQuery, quarantine: quarantine)
        let query = { @Sendable [legacyQuery, ledgerQuery] (side: DiffError.Side) in side == .legacy ? legacyQuery : ledgerQuery }

        let keep = max(options.maxRows, options.maxReverifiedKeys)
        var bits = Self.firstLevelBits(rows: estimate, rowsPerBucket: options.rowsPerBucket)
        var parent: (bits: Int, buckets: [Int64])? = nil
        var level = 0
        while true {
            let parameters: [(any PostgresEncodable)?] = parent.map { [keys, PostgresArray($0.buckets)] } ?? [keys]
            let (parentBits, levelBits) = (parent?.bits, bits)
            var (legacyBuckets, ledgerBuckets) = try await onBothSides(entity, "hashing the rows", legacy, ledger) {
                connection, side in
                try await Self.buckets(connection, query(side).bucketSQL(bits: levelBits, within: parentBits), parameters)
            }
            if level == 0 {
                pass.legacyRows = legacyBuckets.values.reduce(0) { $0 + $1.count }
                pass.ledgerRows = ledgerBuckets.values.reduce(0) { $0 + $1.count }
                if let keyless = legacyBuckets.removeValue(forKey: Self.keylessBucket) {
                    try await accountForKeylessRows(keyless.count, in: &pass, legacy, keys)
                }
            }
            let buckets = Int64(Set(legacyBuckets.keys).union(ledgerBuckets.keys).count)
            pass.bucketsCompared += buckets
            let (differing, matchedRows) = RowMatching.compare(legacyBuckets, ledgerBuckets)
            pass.matched += matchedRows
            options.progress?(
                .level(entity, level: level, buckets: buckets, differing: differing.count, elapsed: clock.now - started))
            var fetch = [(bucket: Int64, rows: Int64)]()
            var split = [Int64]()
            for bucket in differing {
                let size = max(legacyBuckets[bucket]?.count ?? 0, ledgerBuckets[bucket]?.count ?? 0)
                if size <= Int64(options.fetchBucketRows) || bits >= 56 {
                    fetch.append((bucket, size))
                } else {
                    split.append(bucket)
                }
            }
            // Fetched in batches of about `fetchBatchRows` rows a side, so a systematic
            // difference (every row of a large table) streams through bounded memory; once
            // `maxReverifiedKeys` differences are kept, only keys and hashes travel, to count.
            for batch in Self.batches(fetch, rows: Self.fetchBatchRows) {
                let (keysOnly, levelBits) = (pass.differences.count >= keep, bits)
                let fetchParameters: [(any PostgresEncodable)?] = [keys, PostgresArray(batch)]
                let (legacyRows, ledgerRows) = try await onBothSides(
                    entity, "reading the rows of differing buckets", legacy, ledger
                ) { connection, side in
                    try await Self.rows(
                        connection, query(side).rowsInBucketsSQL(bits: levelBits, keysOnly: keysOnly), fetchParameters)
                }
                pass.rowsFetched += Int64(legacyRows.count + ledgerRows.count)
                let (matched, differences) = RowMatching.compare(
                    legacy: legacyRows, ledger: ledgerRows, columns: legacyQuery.columns)
                pass.matched += matched
                pass.record(differences, keepingAtMost: keep)
            }
            guard !split.isEmpty else { break }
            parent = (bits, split)
            bits = min(bits + 8, 56)
            level += 1
        }
        pass.differences.sort { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
        pass.duration = clock.now - started
        return pass
    }

    /// Rows a side per fetch of differing buckets.
    static let fetchBatchRows: Int64 = 50_000

    /// `buckets` in consecutive groups of at most `rows` rows (a larger bucket alone).
    static func batches(_ buckets: [(bucket: Int64, rows: Int64)], rows limit: Int64) -> [[Int64]] {
        var out = [[Int64]]()
        var current = [Int64]()
        var size: Int64 = 0
        for (bucket, rows) in buckets {
            if !current.isEmpty && size + rows > limit {
                out.append(current)
                current = []
                size = 0
            }
            current.append(bucket)
            size += rows
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// Bits of the first level: about `rowsPerBucket` rows per bucket, between 2 and 4,096
    /// buckets. More buckets would spare little traffic (a differing bucket of up to
    /// `fetchBucketRows` rows is fetched at once, a larger one split) and cost time: measured
    /// on a million payments, hashing into 16,384 groups took longer than into 2,048.
    static func firstLevelBits(rows: Int64, rowsPerBucket: Int) -> Int {
        var bits = 1
        while bits < 12 && (Int64(1) << bits) * Int64(max(rowsPerBucket, 1)) < rows { bits += 1 }
        return bits
    }

    /// The `run_id` of quarantine entries written by shadow mode's syncs (``SyncOrigin``'s
    /// `metadataOrigin` of the tailer and of resync): they are released when the key migrates.
    static let shadowQuarantineOrigins: Set<String> = [SyncOrigin.shadow.metadataOrigin, SyncOrigin.resync.metadataOrigin]

    /// The quarantined rows (ledger), the mapping query's result columns (legacy) and an
    /// estimate of the rows to compare.
    private func prepare(
        _ entity: Entity, _ mapping: MappingFile.EntityMapping, _ legacy: Connection, _ ledger: Connection,
        quarantineTable: Bool
    ) async throws -> ([QuarantinedRow], Columns, Int64) {
        let query = mapping.query
        async let shape = side(.legacy, entity, "running the mapping query") {
            try await legacy.withSession { session in
                try session.query("SELECT * FROM (\n\(query)\n) AS m LIMIT 0").columns
            }
        }
        let storeSchema = options.storeSchema
        let table = quoteIdentifier(options.readSchema) + "." + quoteIdentifier(entity.tableName)
        async let ledgerSide = side(.ledger, entity, "reading the quarantine and the read model's size") {
            try await ledger.withSession { session -> ([QuarantinedRow], Int64) in
                var quarantine = [QuarantinedRow]()
                if quarantineTable {
                    // A backfill's entry of a key the read model holds is compared, whatever the
                    // quarantine says: it can be stale (a later run migrated the row) or cover
                    // one of two legacy rows of a key; leaving such keys out would hide their
                    // differences. An entry of shadow mode (tailer or resync) is current by
                    // construction — the sync that migrates the row releases it — and its key's
                    // stream stays at its last good state, which the read model holds: that key
                    // is left out whatever the read model holds, or it would read as an
                    // unexplained mismatch.
                    let entries = try QuarantineStore(schema: storeSchema).entries(of: entity, in: session)
                    let backfillKeys = entries.filter { !Self.shadowQuarantineOrigins.contains($0.runID) }.map(\.key)
                    var migrated = Set<String>()
                    if !backfillKeys.isEmpty {
                        let column = quoteIdentifier(entity.keyColumn)
                        migrated = Set(
                            try session.query(
                                "SELECT \(column)::text FROM \(table) WHERE \(column)::text = ANY($1::text[])",
                                [PostgresArray(backfillKeys)]
                            ).rows.map { try $0.decode(at: 0, as: String.self) })
                    }
                    quarantine = entries.filter { Self.shadowQuarantineOrigins.contains($0.runID) || !migrated.contains($0.key) }
                        .map { QuarantinedRow(key: $0.key, reason: $0.reason.rawValue, detail: $0.detail) }
                }
                var estimate = try session.query(
                    "SELECT reltuples::int8 FROM pg_class WHERE oid = $1::regclass", [table]
                ).first?.decode(at: 0, as: Int64.self) ?? -1
                if estimate < 0 {
                    estimate = try session.query("SELECT count(*)::int8 FROM \(table)").first?.decode(at: 0, as: Int64.self) ?? 0
                }
                return (quarantine, estimate)
            }
        }
        let (columns, (quarantine, estimate)) = try await (shape, ledgerSide)
        return (quarantine, columns, estimate)
    }

    /// Where ``buckets(_:_:_:)`` puts rows without a key (a bucket id no key hash can take:
    /// bucket ids have at most 56 bits).
    static let keylessBucket = Int64.min

    static func buckets(_ connection: Connection, _ sql: String, _ parameters: [(any PostgresEncodable)?])
        async throws -> [Int64: BucketSummary]
    {
        try await connection.withSession { session in
            var out = [Int64: BucketSummary]()
            for row in try session.query(sql, parameters).rows {
                let bucket = try row.decode(at: 0, as: Int64?.self) ?? keylessBucket
                out[bucket] = BucketSummary(count: try row.decode(at: 1, as: Int64.self), hashSum: row.values[2] ?? "")
            }
            return out
        }
    }

    /// Rows of a fetch query; with `ownTransaction`, in a read-only transaction of their own
    /// (re-verification runs outside the first pass's transactions).
    static func rows(
        _ connection: Connection, _ sql: String, _ parameters: [(any PostgresEncodable)?], ownTransaction: Bool = false
    ) async throws -> [FetchedRow] {
        try await connection.withSession { session in
            let read = { (session: Session) in
                try session.query(sql, parameters).rows.map { row in
                    FetchedRow(key: row.values[0] ?? "", hash: row.values[1] ?? "", values: Array(row.values.dropFirst(2)))
                }
            }
            return ownTransaction ? try session.transaction(.init(readOnly: true), read) : try read(session)
        }
    }

    // MARK: - Invariants

    /// Checks every invariant in the ledger snapshot `snapshot` (exported by the comparison's
    /// transaction, so both see the same ledger).
    /// `[]` without a connection (`--skip-invariants`).
    private func checkInvariants(_ ledger: Connection?, snapshot: String) async throws -> [InvariantResult] {
        guard let ledger else { return [] }
        let readSchema = options.readSchema
        let maxRows = options.maxRows
        let progress = options.progress
        let receivables = options.mapping.receivables
        return try await side(.ledger, nil, "checking the invariants") {
            try await ledger.withSession { session in
                try session.transaction(.init(isolation: .repeatableRead, readOnly: true, snapshot: snapshot)) { tx in
                    // Joins and aggregates over whole read models: our own database, our own memory.
                    try tx.execute("SET LOCAL work_mem = '64MB'")
                    return try Invariant.all.map { invariant in
                        progress?(.invariant(invariant.name))
                        return try invariant.check(
                            tx, readSchema: readSchema, maxRows: maxRows, refundsReopen: receivables.refunds == .reopen,
                            chargebacksReopen: receivables.chargebacks == .reopen)
                    }
                }
            }
        }
    }

    // MARK: - Re-verification

    /// `result`'s invariant checked again, in a snapshot of now (one statement).
    private func recheck(_ result: InvariantResult, _ ledger: Connection) async throws -> InvariantResult {
        guard let invariant = Invariant.all.first(where: { $0.name == result.name }) else { return result }
        let readSchema = options.readSchema
        let maxRows = options.maxRows
        let receivables = options.mapping.receivables
        options.progress?(.invariant(invariant.name))
        return try await ledger.withSession { session in
            try invariant.check(
                session, readSchema: readSchema, maxRows: maxRows, refundsReopen: receivables.refunds == .reopen,
                chargebacksReopen: receivables.chargebacks == .reopen)
        }
    }

    /// Waits until the read models' projector has applied every event the store holds now
    /// (or the timeout passes: the re-check then reports what persists, and says it waited).
    /// - Returns: whether it caught up.
    private func waitForProjection(_ ledger: Connection) async throws -> Bool {
        let store = EventStore(schema: options.storeSchema)
        let stateTable = quoteIdentifier(options.readSchema) + ".projection_state"
        let clock = ContinuousClock()
        let deadline = clock.now + options.catchUpTimeout
        while true {
            let caughtUp = try await ledger.withSession { session -> Bool in
                guard
                    let consumer = try session.query(
                        "SELECT consumer FROM \(stateTable) WHERE state = 'live' LIMIT 1"
                    ).first?.values[0]
                else { return true }
                return !(try store.hasEventsBeyond(try store.checkpoint(consumer, in: session), in: session))
            }
            if caughtUp { return true }
            guard clock.now < deadline else {
                options.progress?(.projectionBehind(waited: options.catchUpTimeout))
                return false
            }
            options.progress?(.waitingForProjection)
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// Legacy rows without a usable key (none, or too long) are counted in the legacy rows; the
    /// backfill quarantines each under a key of its own (`<null>#…`, `<long>#…`). Rows beyond those entries were never
    /// migrated nor quarantined: each is a row missing in the ledger, listed with its values.
    private func accountForKeylessRows(
        _ count: Int64, in pass: inout EntityPass, _ legacy: Connection, _ quarantineKeys: PostgresArray
    ) async throws {
        let quarantined = Int64(
            pass.quarantine.filter { $0.key.hasPrefix(Quarantine.nullKey + "#") || $0.key.hasPrefix(Quarantine.longKey + "#") }.count)
        let unaccounted = count - quarantined
        guard unaccounted > 0 else { return }
        let rows = try await Self.rows(legacy, pass.legacyQuery.keylessRowsSQL, [quarantineKeys])
        let columns = pass.legacyQuery.columns
        for row in rows.prefix(Int(unaccounted)) {
            pass.keyless.append(
                RowDifference(
                    key: "<null>", kind: .missingInLedger,
                    columns: zip(columns.dropFirst(), row.values).map {
                        ColumnDifference(column: $0, legacy: $1, ledger: nil)
                    }))
        }
    }

    /// Re-reads the differing keys on both sides, in fresh snapshots.
    /// The legacy rows of `pass`'s differing keys, read now (the first half of a re-check under
    /// live writes).
    private func readLegacyRows(_ pass: EntityPass, _ legacy: Connection) async throws -> [FetchedRow] {
        let keys = Array(pass.differingKeys.prefix(options.maxReverifiedKeys))
        let parameters: [(any PostgresEncodable)?] = [PostgresArray(pass.quarantine.map(\.key)), PostgresArray(keys)]
        let sql = pass.legacyQuery.rowsOfKeysSQL
        return try await side(.legacy, pass.entity, "re-reading differing rows") {
            try await Self.rows(legacy, sql, parameters, ownTransaction: true)
        }
    }

    /// Re-reads the differing keys of `pass` and compares them again; with `legacyRows`, those
    /// stand for the legacy side (read before waiting for the tailer) and only the ledger is read.
    private func reverify(
        _ pass: EntityPass, _ legacy: Connection, _ ledger: Connection, legacyRows given: [FetchedRow]? = nil
    ) async throws -> ReverifiedKeys {
        let entity = pass.entity
        let keys = Array(pass.differingKeys.prefix(options.maxReverifiedKeys))
        let parameters: [(any PostgresEncodable)?] = [PostgresArray(pass.quarantine.map(\.key)), PostgresArray(keys)]
        let sql = (legacy: pass.legacyQuery.rowsOfKeysSQL, ledger: pass.ledgerQuery.rowsOfKeysSQL)
        let legacyRows: [FetchedRow]
        let ledgerRows: [FetchedRow]
        if let given {
            legacyRows = given
            ledgerRows = try await side(.ledger, entity, "re-reading differing rows") {
                try await Self.rows(ledger, sql.ledger, parameters, ownTransaction: true)
            }
        } else {
            (legacyRows, ledgerRows) = try await onBothSides(entity, "re-reading differing rows", legacy, ledger) {
                connection, side in
                try await Self.rows(connection, side == .legacy ? sql.legacy : sql.ledger, parameters, ownTransaction: true)
            }
        }
        var (matched, differences) = RowMatching.compare(legacy: legacyRows, ledger: ledgerRows, columns: pass.legacyQuery.columns)
        var unsettled = Set<String>()
        if options.settleRacingWrites, !differences.isEmpty {
            // Read the still-differing legacy rows once more: one that moved was being written.
            let differing = Array(Set(differences.map(\.key)))
            let quarantined = pass.quarantine.map(\.key)
            let again = try await side(.legacy, entity, "re-reading moving rows") {
                try await Self.rows(legacy, sql.legacy, [PostgresArray(quarantined), PostgresArray(differing)], ownTransaction: true)
            }
            let before = Dictionary(legacyRows.map { ($0.key, $0.hash) }, uniquingKeysWith: { a, _ in a })
            let after = Dictionary(again.map { ($0.key, $0.hash) }, uniquingKeysWith: { a, _ in a })
            unsettled = Set(differing.filter { before[$0] != after[$0] })
            // A moving key the ledger already holds as legacy holds it now (or that is gone on
            // both sides): the tailer caught up with the newer write; that is a match.
            let stillDiffering = RowMatching.compare(
                legacy: again.filter { unsettled.contains($0.key) }, ledger: ledgerRows.filter { unsettled.contains($0.key) },
                columns: pass.legacyQuery.columns
            ).differences.map(\.key)
            let caughtUp = unsettled.subtracting(stillDiffering)
            if !caughtUp.isEmpty {
                unsettled.subtract(caughtUp)
                differences.removeAll { caughtUp.contains($0.key) }
                matched += Int64(caughtUp.count)
            }
        }
        return ReverifiedKeys(keys: Set(keys), matched: matched, differences: differences, unsettled: unsettled)
    }
}

/// The outcome of re-reading some differing keys.
struct ReverifiedKeys: Sendable {
    var keys: Set<String>
    var matched: Int64
    var differences: [RowDifference]
    /// Still-differing keys whose legacy row changed while they were re-checked.
    var unsettled = Set<String>()
}

/// One entity's comparison while it runs.
struct EntityPass: Sendable {
    let entity: Entity
    let legacyQuery: CanonicalQuery
    let ledgerQuery: CanonicalQuery
    let quarantine: [QuarantinedRow]
    var legacyRows: Int64 = 0
    var ledgerRows: Int64 = 0
    var matched: Int64 = 0
    var differences = [RowDifference]()
    /// Differences counted but not kept: beyond what can be listed and re-checked, a badly
    /// broken entity (nothing projected yet) would otherwise hold every row in memory.
    var unkept = [RowDifference.Kind: Int64]()
    var resolved: Int64 = 0
    /// Differing keys whose legacy row was moving at the last re-check (see
    /// ``DiffChecker/Options/settleRacingWrites``).
    var unsettled = Set<String>()
    var bucketsCompared: Int64 = 0
    var rowsFetched: Int64 = 0
    var duration: Duration = .zero
    /// Legacy rows without a key that the quarantine does not account for: never re-read
    /// (there is no key to read them by), always reported.
    var keyless = [RowDifference]()

    init(entity: Entity, legacyQuery: CanonicalQuery, ledgerQuery: CanonicalQuery, quarantine: [QuarantinedRow]) {
        self.entity = entity
        self.legacyQuery = legacyQuery
        self.ledgerQuery = ledgerQuery
        self.quarantine = quarantine
    }

    var differingKeys: [String] { differences.map(\.key) }

    mutating func record(_ found: [RowDifference], keepingAtMost limit: Int) {
        for difference in found {
            if differences.count < limit {
                differences.append(difference)
            } else {
                unkept[difference.kind, default: 0] += 1
            }
        }
    }

    /// Replaces the differences of the re-read keys by what the re-read found.
    mutating func apply(_ again: ReverifiedKeys) {
        let before = differences.count
        differences = differences.filter { !again.keys.contains($0.key) } + again.differences
        differences.sort { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
        resolved += Int64(max(0, before - differences.count))
        matched += again.matched
        unsettled = unsettled.subtracting(again.keys).union(again.unsettled)
    }

    /// Leaves the unsettled keys out of the differences; returns them, sorted.
    mutating func dropUnsettled() -> [String] {
        let moving = Set(differences.map(\.key)).intersection(unsettled)
        differences.removeAll { moving.contains($0.key) }
        return moving.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// The first pass's figures, before re-verification (for progress).
    var summary: EntityDiff { report(maxRows: 0) }

    func report(maxRows: Int) -> EntityDiff {
        let differences = keyless + differences
        let count = { (kind: RowDifference.Kind) in
            Int64(differences.lazy.filter { $0.kind == kind }.count) + unkept[kind, default: 0]
        }
        let missing = count(.missingInLedger)
        let extra = count(.extraInLedger)
        let mismatched = count(.mismatched)
        return EntityDiff(
            entity: entity, legacyRows: legacyRows, ledgerRows: ledgerRows,
            compared: matched + missing + extra + mismatched, matched: matched, missingInLedger: missing,
            extraInLedger: extra, mismatched: mismatched, differences: Array(differences.prefix(maxRows)),
            resolvedByReverification: resolved, quarantined: Int64(quarantine.count),
            quarantine: Array(quarantine.prefix(maxRows)), bucketsCompared: bucketsCompared, rowsFetched: rowsFetched,
            duration: duration)
    }
}

/// What ``DiffChecker`` is doing, for a progress display.
public enum DiffProgress: Sendable {
    case entityStarted(Entity)
    /// A bisection level of `entity` compared `buckets` buckets; `differing` need a closer look.
    case level(Entity, level: Int, buckets: Int64, differing: Int, elapsed: Duration)
    /// The first pass over `entity` is done (figures before re-verification).
    case entityCompared(EntityDiff)
    case invariant(String)
    case waitingForProjection
    /// The projection did not catch up within the timeout; re-checking anyway.
    case projectionBehind(waited: Duration)
    case reverifying(Entity, keys: Int)
}
