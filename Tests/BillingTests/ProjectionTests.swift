import Billing
import EventStore
import Foundation
import Postgres
import TestSupport
import Testing

/// Random rows with awkward values (quotes, newlines, non-ASCII, empty text, NULLs, decimals
/// with trailing zeros, attributes), for the exact round trip through the read models.
struct AwkwardRows {
    var rng: FixtureRandom

    mutating func value(_ column: ColumnDefinition) -> CanonicalValue {
        if column.nullable, rng.below(4) == 0 { return .null }
        switch column.type {
        case .text: return .text(["a", "b", "O'Brien", "é東", "", "x\ny", "tab\there", #"back\slash"#][rng.below(8)])
        case .integer: return .integer(Int64(rng.below(7)) - 1)
        case .boolean: return .boolean(rng.below(2) == 0)
        case .amount: return .amount(Int64(rng.below(2_000_000)) - 1_000_000)
        case .decimal: return .decimal(["0.0100", "12.5", "-3", "1234.5678", "0"][rng.below(5)])
        case .timestamp:
            return .timestamp(
                PostgresTimestamp(microsecondsSinceEpoch: 1_600_000_000_000_000 + Int64(rng.below(1 << 40)) * 97))
        case .date: return .date(PostgresDate(daysSinceEpoch: 18_000 + Int64(rng.below(2000))))
        case .currency: return .text(["USD", "EUR", "JPY", "KWD"][rng.below(4)])
        case .status(let vocabulary): return .text(vocabulary[rng.below(vocabulary.count)])
        }
    }

    mutating func history(_ entity: Entity, key: String, length: Int) -> RowHistory {
        var rows = RowHistory()
        for _ in 0..<length {
            var values = [String: CanonicalValue]()
            for column in entity.columns {
                if column.name == entity.keyColumn {
                    values[column.name] = .text(key)
                } else if let previous = rows.last, rng.below(2) == 0 {
                    values[column.name] = previous[column.name]
                } else {
                    values[column.name] = value(column)
                }
            }
            var attributes = rows.last?.attributes ?? [:]
            if rng.below(3) == 0 { attributes["legacy_flag"] = rng.below(2) == 0 ? "yes" : .some(nil) }
            if rng.below(5) == 0 { attributes["note"] = "line1\nline2 \"quoted\"" }
            rows.append(CanonicalRow(entity: entity, values: values, attributes: attributes))
        }
        return rows
    }
}

@Suite("Projections: read models from the global order")
struct ProjectionTests {
    static func fixture(customers: Int = 40, seed: UInt64 = 7) -> ProjectionEvents {
        ProjectionEvents(BillingHistories.generate(customers: customers, seed: seed))
    }

    @Test func rebuildingTwiceFromTheSameEventsProducesIdenticalTables() async throws {
        try await withProjectionStore { connection, dsn, store in
            let events = Self.fixture()
            try await events.append(to: store, on: connection)
            let projector = Projector(store: store, batchSize: 500)

            let first = try await projector.catchUp(on: connection)
            #expect(first.rebuilt && first.swapped)
            #expect(first.progress.events == events.events.count)
            let once = try await tableHashes(connection, schema: "ledgerlift_read")

            // The second build reads ahead on a second connection (pipelined); same tables.
            let reader = try await Connection.connect(dsn)
            defer { reader.close() }
            let second = try await projector.rebuild(on: connection, reader: reader)
            #expect(second.swapped)
            #expect(second.progress.events == events.events.count)
            let twice = try await tableHashes(connection, schema: "ledgerlift_read")
            #expect(once == twice)

            // Every read model has rows (the fixture exercises them all).
            for table in ReadModelSchema.allTables {
                #expect(try await rowCount(connection, "ledgerlift_read", table) > 0, "\(table) is empty")
            }
            // The copy and the replaced schema are gone; the checkpoint moved to the live consumer.
            let schemas = try await connection.query(
                "SELECT count(*) FROM pg_namespace WHERE nspname IN ('ledgerlift_read_next', 'ledgerlift_read_old')"
            ).rows[0].decode(at: 0, as: Int64.self)
            #expect(schemas == 0)
            let checkpoints = try await connection.query("SELECT consumer FROM ledgerlift.checkpoints ORDER BY consumer")
                .rows.map { try $0.decode(at: 0, as: String.self) }
            #expect(checkpoints == ["ledgerlift_read"])
        }
    }

    @Test func incrementalProjectionInSmallBatchesEqualsTheBlueGreenBuild() async throws {
        try await withProjectionStore { connection, _, store in
            let events = Self.fixture(customers: 30, seed: 11)
            try await events.append(to: store, on: connection)

            let incremental = Projector(store: store, readSchema: "read_incremental", batchSize: 37)
            try await connection.withSession { try incremental.install(in: $0) }
            let ran = try await incremental.run(on: connection)
            #expect(ran.progress.events == events.events.count)
            #expect(ran.progress.batches == (events.events.count + 36) / 37)

            let blueGreen = Projector(store: store, readSchema: "read_bluegreen", batchSize: 1000)
            _ = try await blueGreen.rebuild(on: connection)

            let a = try await tableHashes(connection, schema: "read_incremental")
            let b = try await tableHashes(connection, schema: "read_bluegreen")
            for table in a.keys.sorted() { #expect(a[table] == b[table], "\(table) differs") }
        }
    }

    @Test func killingProjectBetweenBatchesAndRunningItAgainYieldsTheSameTables() async throws {
        let events = Self.fixture(customers: 25, seed: 23)
        // One uninterrupted run, in its own database.
        let uninterrupted = try await TestDatabase.withConnection { connection, _ in
            let store = EventStore()
            try await connection.withSession { try store.migrate($0) }
            try await events.append(to: store, on: connection)
            let projector = Projector(store: store, batchSize: 50)
            try await connection.withSession { try projector.install(in: $0) }
            _ = try await projector.run(on: connection)
            return try await tableHashes(connection, schema: "ledgerlift_read")
        }
        // Batches one at a time, with a crash in the middle of a batch (after its writes,
        // before its commit), then resumed.
        let interrupted = try await TestDatabase.withConnection { connection, _ in
            let store = EventStore()
            try await connection.withSession { try store.migrate($0) }
            try await events.append(to: store, on: connection)
            let projector = Projector(store: store, batchSize: 50)
            try await connection.withSession { try projector.install(in: $0) }

            for _ in 0..<3 { _ = try await projector.run(on: connection, until: .batches(1)) }
            struct Crash: Error {}
            let subscription = CatchUpSubscription(store: store, consumer: projector.consumer, batchSize: 50)
            await #expect(throws: Crash.self) {
                _ = try await subscription.run(on: connection, until: .batches(1)) { tx, batch in
                    try projector.project(batch, in: tx)
                    throw Crash()
                }
            }
            var runs = 0
            while true {
                let run = try await projector.run(on: connection, until: .batches(1))
                runs += 1
                if run.progress.events == 0 { break }
            }
            #expect(runs == (events.events.count + 49) / 50 - 3 + 1)
            return try await tableHashes(connection, schema: "ledgerlift_read")
        }
        for table in uninterrupted.keys.sorted() {
            #expect(uninterrupted[table] == interrupted[table], "\(table) differs")
        }
    }

    @Test(arguments: [false, true])
    func anInterruptedBlueGreenBuildContinuesToTheSameTables(pipelined: Bool) async throws {
        try await withProjectionStore { connection, dsn, store in
            let reader = pipelined ? try await Connection.connect(dsn) : nil
            defer { reader?.close() }
            let events = Self.fixture(customers: 20, seed: 5)
            try await events.append(to: store, on: connection)

            let whole = Projector(store: store, readSchema: "read_whole", batchSize: 60)
            _ = try await whole.rebuild(on: connection)

            let pieces = Projector(store: store, readSchema: "read_pieces", batchSize: 60)
            let partial = try await pieces.rebuild(on: connection, reader: reader, until: .batches(2))
            #expect(!partial.swapped)
            #expect(try await connection.withSession { try pieces.state(in: $0) } == nil)
            let more = try await pieces.rebuild(on: connection, reader: reader, until: .batches(3))
            #expect(!more.swapped)
            // The continued build started where the first stopped.
            #expect(more.progress.events == 3 * 60)
            let rest = try await pieces.rebuild(on: connection, reader: reader)
            #expect(rest.swapped)
            #expect(rest.progress.events == events.events.count - 5 * 60)

            let a = try await tableHashes(connection, schema: "read_whole")
            let b = try await tableHashes(connection, schema: "read_pieces")
            for table in a.keys.sorted() { #expect(a[table] == b[table], "\(table) differs") }
        }
    }

    @Test func canonicalTablesEqualExactlyTheCanonicalRowsTheEventsCameFrom() async throws {
        try await withProjectionStore { connection, _, store in
            var histories = BillingHistories.generate(customers: 15, seed: 3)
            var awkward = AwkwardRows(rng: FixtureRandom(state: 99))
            for entity in Entity.allCases {
                for k in 0..<6 { histories.append(awkward.history(entity, key: "odd \(k) 'é'", length: 1 + k % 4)) }
            }
            let events = ProjectionEvents(histories)
            try await events.append(to: store, on: connection)
            _ = try await Projector(store: store, batchSize: 97).catchUp(on: connection)
            let reader = ReadModelReader()

            var expectedCount = [Entity: Int]()
            for (h, history) in histories.enumerated() {
                let last = history.last!
                expectedCount[last.entity, default: 0] += 1
                let stored = try await connection.withSession { try reader.row(last.entity, key: last.key, in: $0) }
                #expect(stored == last, "\(last.entity) \(last.key)")

                // As of each version's last event, the history holds exactly that version
                // (when the next version's events come strictly later).
                let times = events.versionTimes[h]
                let firsts = events.firstTimes[h]
                for (k, time) in times.enumerated() {
                    guard let time else { continue }
                    let next = firsts[(k + 1)...].lazy.compactMap { $0 }.first
                    if let next, next <= time { continue }
                    let asOf = try await connection.withSession {
                        try reader.row(last.entity, key: last.key, asOf: time, in: $0)
                    }
                    #expect(asOf == history[k], "\(last.entity) \(last.key) as of version \(k)")
                }
            }
            for entity in Entity.allCases {
                #expect(
                    try await rowCount(connection, "ledgerlift_read", entity.tableName) == Int64(expectedCount[entity] ?? 0))
            }
            // Exactly one current version per key in every history table, equal to the canonical row.
            for entity in Entity.allCases {
                let key = quoteIdentifier(entity.keyColumn)
                let mismatches = try await connection.query(
                    """
                    SELECT count(*) FROM ledgerlift_read.\(quoteIdentifier(entity.tableName)) AS c
                    FULL JOIN (SELECT * FROM ledgerlift_read.\(quoteIdentifier(entity.tableName + "_history"))
                               WHERE valid_to IS NULL) AS h USING (\(key))
                    WHERE h.attributes IS DISTINCT FROM c.attributes
                       OR (SELECT array_agg(x) FROM json_each_text(to_json(c)) AS x) IS DISTINCT FROM
                          (SELECT array_agg(x) FROM json_each_text(to_json(h)) AS x
                           WHERE x.key NOT IN ('valid_from', 'valid_to'))
                    """
                ).rows[0].decode(at: 0, as: Int64.self)
                #expect(mismatches == 0, "\(entity)")
            }
        }
    }

    @Test func blueGreenRebuildSwapsAtomicallyReadersSeeTheOldTablesUntilTheSwap() async throws {
        try await withProjectionStore { connection, dsn, store in
            let all = Self.fixture(customers: 30, seed: 13).events
            let half = all.count / 2
            var firstHalf = ProjectionEvents([])
            firstHalf.events = Array(all[..<half])
            var secondHalf = ProjectionEvents([])
            secondHalf.events = Array(all[half...])
            // Streams continue across the halves only if each half is appended whole, in order.
            try await firstHalf.append(to: store, on: connection)
            let projector = Projector(store: store, batchSize: 200)
            _ = try await projector.catchUp(on: connection)
            let before = try await tableHashes(connection, schema: "ledgerlift_read")
            try await secondHalf.append(to: store, on: connection)

            // A build that has not caught up leaves the live tables alone.
            let partial = try await projector.rebuild(on: connection, until: .batches(2))
            #expect(!partial.swapped)
            #expect(try await tableHashes(connection, schema: "ledgerlift_read") == before)
            #expect(try await rowCount(connection, "ledgerlift_read_next", "invoices_history") > 0)
            #expect(try await rowCount(connection, "ledgerlift_read_next", "invoices") == 0)  // filled at the end

            // A reader polls the live model during the swap: each statement sees all-old or all-new.
            let probe = """
                SELECT (SELECT count(*) FROM ledgerlift_read.invoices) || '/' ||
                       (SELECT count(*) FROM ledgerlift_read.invoices_history) || '/' ||
                       (SELECT coalesce(sum(balance), 0) FROM ledgerlift_read.customer_balances) || '/' ||
                       (SELECT count(*) FROM ledgerlift_read.mrr_by_month)
                """
            let reader = try await Connection.connect(dsn)
            defer { reader.close() }
            let old = try await reader.query(probe).rows[0].decode(at: 0, as: String.self)
            let stop = SharedValue(false)
            let poller = Task { () -> (seen: Set<String>, errors: [String]) in
                var seen = Set<String>()
                var errors = [String]()
                while true {
                    let last = stop.value
                    do {
                        seen.insert(try await reader.query(probe).rows[0].decode(at: 0, as: String.self))
                    } catch {
                        errors.append("\(error)")
                    }
                    if last { return (seen, errors) }
                }
            }
            let ahead = try await Connection.connect(dsn)
            defer { ahead.close() }
            let done = try await projector.rebuild(on: connection, reader: ahead)
            #expect(done.swapped)
            stop.value = true
            let observed = await poller.value
            let new = try await reader.query(probe).rows[0].decode(at: 0, as: String.self)
            #expect(old != new)
            #expect(observed.errors.isEmpty, "\(observed.errors)")
            #expect(observed.seen.isSubset(of: [old, new]), "\(observed.seen) ⊄ {\(old), \(new)}")
            #expect(observed.seen.contains(new))

            // The swapped-in model equals one built from scratch in another schema.
            _ = try await Projector(store: store, readSchema: "fresh", batchSize: 999).rebuild(on: connection)
            #expect(try await tableHashes(connection, schema: "ledgerlift_read") == tableHashes(connection, schema: "fresh"))
        }
    }

    @Test func incrementalRunsContinueAfterABlueGreenSwap() async throws {
        try await withProjectionStore { connection, _, store in
            let all = Self.fixture(customers: 20, seed: 17).events
            var first = ProjectionEvents([])
            first.events = Array(all[..<(all.count / 2)])
            var second = ProjectionEvents([])
            second.events = Array(all[(all.count / 2)...])
            try await first.append(to: store, on: connection)
            let projector = Projector(store: store, batchSize: 100)
            _ = try await projector.catchUp(on: connection)
            _ = try await projector.rebuild(on: connection)
            try await second.append(to: store, on: connection)
            let continued = try await projector.catchUp(on: connection)
            #expect(!continued.rebuilt)
            #expect(continued.progress.events == second.events.count)

            _ = try await Projector(store: store, readSchema: "fresh", batchSize: 999).rebuild(on: connection)
            #expect(try await tableHashes(connection, schema: "ledgerlift_read") == tableHashes(connection, schema: "fresh"))
        }
    }

    @Test func theProjectorsDecoderEqualsBillingEventInitRecordedOnEveryStoredEvent() async throws {
        try await withProjectionStore { connection, _, store in
            var histories = BillingHistories.generate(customers: 10, seed: 8)
            var awkward = AwkwardRows(rng: FixtureRandom(state: 4))
            for entity in Entity.allCases {
                for k in 0..<8 { histories.append(awkward.history(entity, key: "k\(k) \"q\" \\ é東\n", length: 1 + k % 5)) }
            }
            let events = ProjectionEvents(histories)
            try await events.append(to: store, on: connection)
            // Payloads as jsonb returns them, plus shapes the fast path leaves to the reference.
            var extra = [
                #"{"entity": "customer", "key": "x", "set": {"name": "a\u00e9b"}}"#,
                #"{"entity": "customer", "key": "x", "set": {"name": "tab\there", "created_at": "2024-01-01 00:00:00+00"}}"#,
                #"{"entity": "plan", "key": "p", "set": {"amount": 12, "archived": true, "trial_days": -0}, "attributes": null}"#,
                #"{"entity": "plan", "key": "p", "set": {"amount": 1.5}}"#,
                #"{"entity": "plan", "key": "p", "set": {"nope": 1}}"#,
                #"{"entity": "nope", "key": "p", "set": {}}"#,
                #"{"key": "p", "set": {}, "entity": "plan", "attributes": {"a": null, "b": "c"}, "other": [1, {"x": "}"}]}"#,
            ].enumerated().map { n, payload in
                RecordedEvent(
                    globalPosition: Int64(n), eventID: UUID(), streamID: "x-\(n)", streamVersion: 1,
                    eventType: "PlanObserved", schemaVersion: 1, occurredAt: ts("2024-01-01"), recordedAt: ts("2024-01-01"),
                    payload: PostgresJSON(payload), metadata: PostgresJSON(#"{"evidence": "inferred", "origin": "t"}"#),
                    transactionID: 1)
            }
            extra[0].metadata = PostgresJSON("[]")
            extra[1].metadata = PostgresJSON(#"{"evidence": 3}"#)
            let stored = try await readAllEventually(store, connection, expected: events.events.count)
            #expect(stored.count == events.events.count)
            for recorded in stored + extra {
                let reference = Result { try BillingEvent(recorded: recorded) }
                let fast = Result { try Projector.decode(recorded) }
                switch (reference, fast) {
                case (.success(let a), .success(let b)): #expect(a == b, "\(recorded.payload.text)")
                case (.failure, .failure(let error)): #expect(error is ProjectionError)
                default: Issue.record("decoders disagree on \(recorded.payload.text): \(reference) vs \(fast)")
                }
            }
        }
    }

    @Test func eventsThatAreNotBillingEventsArePassedOverAndCounted() async throws {
        try await withProjectionStore { connection, _, store in
            let events = Self.fixture(customers: 3, seed: 1)
            try await events.append(to: store, on: connection)
            let other = NewEvent(
                eventID: UUID(uuidString: "00000000-0000-4000-8000-000000000001")!, eventType: "MigrationStarted",
                occurredAt: ts("2024-01-01"), payload: PostgresJSON(#"{"run": 1}"#))
            try await connection.withSession { try store.append([other], to: "migration-1", in: $0) }
            let summary = try await Projector(store: store).catchUp(on: connection)
            #expect(summary.progress.events == events.events.count + 1)
            #expect(summary.progress.skipped == 1)
        }
    }

    @Test func aBillingEventThatDoesNotDecodeStopsTheProjectionWithoutCommittingItsBatch() async throws {
        try await withProjectionStore { connection, _, store in
            let bad = NewEvent(
                eventID: UUID(uuidString: "00000000-0000-4000-8000-000000000002")!, eventType: "InvoiceFinalized",
                occurredAt: ts("2024-01-01"), payload: PostgresJSON(#"{"entity": "invoice"}"#))
            try await connection.withSession { try store.append([bad], to: "invoice-x", in: $0) }
            let projector = Projector(store: store)
            try await connection.withSession { try projector.install(in: $0) }
            await #expect(throws: ProjectionError.self) { _ = try await projector.run(on: connection) }
            let cursor = try await connection.withSession { try store.checkpoint("ledgerlift_read", in: $0) }
            #expect(cursor == .start)
        }
    }

    @Test func aSchemaThatIsNotAReadModelIsNeverReplacedOrDropped() async throws {
        try await withProjectionStore { connection, _, store in
            try await Self.fixture(customers: 2, seed: 3).append(to: store, on: connection)
            try await connection.executeScript(
                "CREATE SCHEMA ledgerlift_read; CREATE TABLE ledgerlift_read.mine (x int); INSERT INTO ledgerlift_read.mine VALUES (1)")
            await #expect(throws: ProjectionError.foreignSchema(schema: "ledgerlift_read")) {
                _ = try await Projector(store: store).catchUp(on: connection)
            }
            #expect(try await rowCount(connection, "ledgerlift_read", "mine") == 1)

            try await connection.executeScript("CREATE SCHEMA other_next; CREATE TABLE other_next.mine (x int)")
            await #expect(throws: ProjectionError.foreignSchema(schema: "other_next")) {
                _ = try await Projector(store: store, readSchema: "other").rebuild(on: connection)
            }
            #expect(try await rowCount(connection, "other_next", "mine") == 0)
        }
    }

    @Test func twoProjectorsWithOneConsumerAtOnceAreRefused() async throws {
        try await withProjectionStore { connection, dsn, store in
            let projector = Projector(store: store)
            try await connection.withSession { try projector.install(in: $0) }
            let other = try await Connection.connect(dsn)
            defer { other.close() }
            // Taken as an operator would from psql.
            #expect(projector.consumerLock.psql == "SELECT pg_advisory_lock(hashtextextended('ledgerlift.project.consumer/ledgerlift.ledgerlift_read', 0));")
            _ = try await other.query(projector.consumerLock.psql)
            await #expect(throws: ProjectionError.consumerBusy(consumer: "ledgerlift_read")) {
                _ = try await projector.run(on: connection)
            }
        }
    }

    @Test func followingProjectsNewEventsAsTheyArrive() async throws {
        try await withProjectionStore { connection, dsn, store in
            let events = Self.fixture(customers: 4, seed: 2)
            let projector = Projector(store: store)
            try await connection.withSession { try projector.install(in: $0) }
            let follower = try await Connection.connect(dsn)
            let listener = try await Connection.connect(dsn)
            defer {
                follower.close()
                listener.close()
            }
            let projected = SharedValue(0)
            let task = Task {
                try await projector.follow(on: follower, listener: listener) { progress in
                    projected.value = progress.events
                }
            }
            try await events.append(to: store, on: connection)
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(180)
            // Progress is reported inside each batch's transaction, before its commit: wait for
            // the committed checkpoint to reach the head too, or cancelling could roll the last
            // batch back.
            func committedHead() async throws -> Bool {
                let checkpoint = try await connection.withSession { try store.checkpoint(projector.consumer, in: $0) }
                return try await connection.withSession { try store.readAll(after: checkpoint, limit: 1, in: $0).isEmpty }
            }
            while clock.now < deadline {
                if projected.value >= events.events.count, try await committedHead() { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            task.cancel()
            _ = await task.result
            #expect(projected.value == events.events.count)
            let invoices = try await rowCount(connection, "ledgerlift_read", "invoices")
            #expect(invoices > 0)
        }
    }
}
