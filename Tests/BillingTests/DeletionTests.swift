import Billing
import EventStore
import Foundation
import Postgres
import Testing

/// `<Entity>Deleted`: a key that no longer exists in legacy. The transition (ids, dating) and
/// its projection (the row leaves the canonical table, its history version closes, the derived
/// models drop what it contributed, "as of" before the deletion still sees it).
@Suite("Deletion: …Deleted events and their projection")
struct DeletionTests {
    static let invoice = TemporalQueryTests.finalized(
        TemporalQueryTests.draft("17", "cust-1", "USD", total: 1000, created: "2024-01-05T10:00:00Z"), number: "N-17",
        at: "2024-01-10T10:00:00Z", due: "2024-01-24")

    // MARK: - Transitions

    @Test func everyEntityHasItsOwnDeletionTypeAndOnlyThoseAreDeletions() {
        let deletions = Set(Entity.allCases.map(BillingEventType.deleted))
        #expect(deletions.count == Entity.allCases.count)
        for type in BillingEventType.allCases {
            #expect(type.isDeletion == deletions.contains(type), "\(type)")
        }
        for entity in Entity.allCases {
            #expect(BillingEventType.deleted(entity).rawValue.hasSuffix("Deleted"))
            #expect(BillingEventType.deleted(entity).schemaVersion == 1)
        }
        #expect(BillingEventType.deleted(.invoiceLine) == .invoiceLineDeleted)
        #expect(BillingEventType.deleted(.creditNote).rawValue == "CreditNoteDeleted")
    }

    @Test func deletionIdsFollowTheIdScheme() {
        let sync = Transitions.deletion(before: Self.invoice, notBefore: ts("2024-01-10T10:00:00Z"), syncedFromVersion: 3)
        #expect(
            sync.eventID
                == DeterministicID.uuid5(namespace: DeterministicID.eventNamespace, name: "sync/invoice/17/v3/0/InvoiceDeleted"))
        let history = Transitions.deletion(before: Self.invoice, notBefore: ts("2024-01-10T10:00:00Z"), step: 2)
        #expect(
            history.eventID == DeterministicID.uuid5(namespace: DeterministicID.eventNamespace, name: "invoice/17/2/0/InvoiceDeleted"))
        // Pinned, so a change of scheme cannot pass unnoticed.
        #expect(sync.eventID.uuidString.lowercased() == "53e7316c-1b55-58fb-9f29-b1a06bccbf20")
        #expect(history.eventID.uuidString.lowercased() == "c41d611d-b845-5f80-b9e1-63ef219bdac5")
        // Deterministic; and the same deletion continuing another version is another event.
        #expect(Transitions.deletion(before: Self.invoice, notBefore: nil, syncedFromVersion: 3).eventID == sync.eventID)
        #expect(Transitions.deletion(before: Self.invoice, notBefore: nil, syncedFromVersion: 4).eventID != sync.eventID)
        #expect(sync.type == .invoiceDeleted && sync.entity == .invoice && sync.key == "17" && sync.streamID == "invoice-17")
        #expect(sync.changes.isEmpty && sync.attributes == nil)
        #expect(sync.payload.text == #"{"entity":"invoice","key":"17","set":{}}"#)
    }

    @Test func aDeletionIsObservedOnlyAtAProvenMomentAndNeverBeforeTheStreamsLastEvent() {
        let last = ts("2024-02-01T00:00:00Z")
        // Proven (a deleted_at, an audit table's delete record): observed at that moment.
        let proven = Transitions.deletion(before: Self.invoice, at: ts("2024-03-01T00:00:00Z"), notBefore: last)
        #expect(proven.occurredAt == ts("2024-03-01T00:00:00Z") && proven.evidence == .observed)
        // Proven but earlier than the stream's last event: moved up to it, inferred.
        let early = Transitions.deletion(before: Self.invoice, at: ts("2024-01-01T00:00:00Z"), notBefore: last)
        #expect(early.occurredAt == last && early.evidence == .inferred)
        // Unproven (a hard delete seen by state): the earliest instant that keeps the order, inferred.
        let unproven = Transitions.deletion(before: Self.invoice, notBefore: last)
        #expect(unproven.occurredAt == last && unproven.evidence == .inferred)
        // Without a stream time either: the row's own updated_at, inferred.
        let bare = Transitions.deletion(before: Self.invoice, notBefore: nil)
        #expect(bare.occurredAt == ts("2024-01-10T10:00:00Z") && bare.evidence == .inferred)
    }

    @Test func replayingADeletionLeavesNoRowAndALaterCreationStartsAfresh() {
        let first = Transitions.transitions(before: nil, after: Self.invoice)
        let deleted = Transitions.deletion(
            before: Self.invoice, notBefore: first.last!.occurredAt, syncedFromVersion: Int64(first.count))
        #expect(Transitions.replay(first) == Self.invoice)
        #expect(Transitions.replay(first + [deleted]) == nil)
        #expect(Transitions.applying(deleted, to: Self.invoice) == nil)
        // Re-created later with other values: the replay is the new row only, nothing of the old.
        let again = TemporalQueryTests.draft("17", "cust-2", "EUR", total: 500, created: "2024-05-01T00:00:00Z")
        let recreated = Transitions.transitions(
            before: nil, after: again, notBefore: deleted.occurredAt, syncedFromVersion: Int64(first.count + 1))
        #expect(Transitions.replay(first + [deleted] + recreated) == again)
        #expect(Set((first + [deleted] + recreated).map(\.eventID)).count == first.count + 1 + recreated.count)
    }

    // MARK: - Projection

    /// Continues each stream of `base` with more events (deletions, re-creations).
    struct Continuation {
        var versions = [String: Int64]()
        var lastTimes = [String: PostgresTimestamp]()
        var extra = [StreamEvent]()

        init(_ base: ProjectionEvents) {
            for event in base.events {
                versions[event.streamID] = event.streamVersion
                lastTimes[event.streamID] = event.event.occurredAt
            }
        }

        mutating func add(_ events: [BillingEvent]) {
            for event in events {
                let version = (versions[event.streamID] ?? 0) + 1
                versions[event.streamID] = version
                lastTimes[event.streamID] = event.occurredAt
                extra.append(StreamEvent(streamID: event.streamID, streamVersion: version, event: event.newEvent(origin: "test")))
            }
        }

        mutating func delete(_ row: CanonicalRow, at: String?) {
            let stream = row.entity.streamID(key: row.key)
            add([
                Transitions.deletion(
                    before: row, at: at.map(ts), notBefore: lastTimes[stream], syncedFromVersion: versions[stream] ?? 0)
            ])
        }

        mutating func recreate(_ row: CanonicalRow) {
            let stream = row.entity.streamID(key: row.key)
            add(Transitions.transitions(
                before: nil, after: row, notBefore: lastTimes[stream], syncedFromVersion: versions[stream] ?? 0))
        }
    }

    static let draftD = TemporalQueryTests.draft("inv-d", "cust-a", "USD", total: 777, created: "2024-03-20T00:00:00Z")
    static let recreatedC2 = TemporalQueryTests.finalized(
        TemporalQueryTests.draft("inv-c2", "cust-c", "JPY", total: 5000, created: "2024-04-01T00:00:00Z"), number: "C-2b",
        at: "2024-04-02T00:00:00Z", due: "2024-05-02")

    /// The temporal stories, then: a draft invoice (D) created and deleted; A's open invoice
    /// and its payment deleted on Jun 1; customer N and its subscription deleted on Sep 15
    /// (the subscription with no proven moment); C's void invoice deleted on Mar 20 and
    /// re-created open (¥5,000, finalized Apr 2).
    static func events() -> (base: ProjectionEvents, extra: [StreamEvent]) {
        let stories = TemporalQueryTests.storyA + TemporalQueryTests.storyB + TemporalQueryTests.storyC
            + TemporalQueryTests.mrrStory + [[draftD]]
        let base = ProjectionEvents(stories)
        var more = Continuation(base)
        func last(_ key: String) -> CanonicalRow { stories.first { $0.last!.key == key }!.last! }
        more.delete(draftD, at: "2024-03-25T00:00:00Z")
        more.delete(last("inv-a1"), at: "2024-06-01T00:00:00Z")
        more.delete(last("pay-a1"), at: "2024-06-01T00:00:00Z")
        more.delete(last("cust-n"), at: "2024-09-15T00:00:00Z")
        more.delete(last("sub-n"), at: "2024-09-15T00:00:00Z")
        more.delete(last("inv-c2"), at: "2024-03-20T00:00:00Z")
        more.recreate(recreatedC2)
        // A second deletion of a key already gone changes nothing.
        more.add([Transitions.deletion(before: draftD, at: ts("2024-03-26T00:00:00Z"), notBefore: nil, syncedFromVersion: 99)])
        return (base, more.extra)
    }

    static func withDeletions(batchSize: Int, _ body: (Connection, EventStore, ReadModelReader) async throws -> Void)
        async throws
    {
        try await withProjectionStore { connection, _, store in
            let (base, extra) = events()
            try await base.append(to: store, on: connection, chunk: 7)
            for start in stride(from: 0, to: extra.count, by: 3) {
                let slice = Array(extra[start..<min(extra.count, start + 3)])
                try await connection.withSession { try store.appendBulk(slice, in: $0) }
            }
            let projector = Projector(store: store, batchSize: batchSize)
            try await connection.withSession { try projector.install(in: $0) }
            _ = try await readAllEventually(store, connection, expected: base.events.count + extra.count)
            _ = try await projector.run(on: connection)
            try await body(connection, store, ReadModelReader())
        }
    }

    @Test(arguments: [5, 1000])
    func deletedRowsLeaveTheCanonicalTablesAndCloseTheirHistory(batchSize: Int) async throws {
        try await Self.withDeletions(batchSize: batchSize) { connection, _, reader in
            func row(_ entity: Entity, _ key: String, _ asOf: String? = nil) async throws -> CanonicalRow? {
                try await connection.withSession { try reader.row(entity, key: key, asOf: asOf.map(ts), in: $0) }
            }
            // Gone now.
            #expect(try await row(.invoice, "inv-d") == nil)
            #expect(try await row(.invoice, "inv-a1") == nil)
            #expect(try await row(.payment, "pay-a1") == nil)
            #expect(try await row(.customer, "cust-n") == nil)
            #expect(try await row(.subscription, "sub-n") == nil)
            // As of before the deletion, still there.
            #expect(try await row(.invoice, "inv-d", "2024-03-24T23:59:59Z")?["status"] == .text("draft"))
            #expect(try await row(.invoice, "inv-d", "2024-03-25T00:00:00Z") == nil)
            #expect(try await row(.invoice, "inv-a1", "2024-05-31")?["amount_due"] == .amount(6000))
            #expect(try await row(.invoice, "inv-a1", "2024-06-01") == nil)
            #expect(try await row(.payment, "pay-a1", "2024-03-01")?["status"] == .text("succeeded"))
            #expect(try await row(.customer, "cust-n", "2024-09-14")?["email"] == .text("cust-n@example.com"))
            // The history keeps every version; the last one closes at the deletion.
            let history = try await connection.withSession { try reader.history(.invoice, key: "inv-a1", in: $0) }
            #expect(history.map(\.row) == TemporalQueryTests.storyA[1])
            #expect(history.last?.validTo == ts("2024-06-01T00:00:00Z"))
            #expect(history.allSatisfy { $0.validTo != nil })
            // Re-created after its deletion: the old versions end at the deletion, the new one is current.
            #expect(try await row(.invoice, "inv-c2") == Self.recreatedC2)
            #expect(try await row(.invoice, "inv-c2", "2024-03-10")?["status"] == .text("void"))
            #expect(try await row(.invoice, "inv-c2", "2024-03-25") == nil)
            #expect(try await row(.invoice, "inv-c2", "2024-04-01T12:00:00Z")?["status"] == .text("draft"))
            let c2 = try await connection.withSession { try reader.history(.invoice, key: "inv-c2", in: $0) }
            #expect(c2.map(\.validFrom) == [
                ts("2024-02-29T00:00:00Z"), ts("2024-03-01T00:00:00Z"), ts("2024-03-03T00:00:00Z"),
                ts("2024-04-01T00:00:00Z"), ts("2024-04-02T00:00:00Z"),
            ])
            #expect(c2.map(\.validTo) == [
                ts("2024-03-01T00:00:00Z"), ts("2024-03-03T00:00:00Z"), ts("2024-03-20T00:00:00Z"), ts("2024-04-02T00:00:00Z"), nil,
            ])
            // The canonical tables are still exactly the current versions.
            for entity in Entity.allCases {
                let mismatched = try await connection.query(
                    """
                    SELECT count(*) FROM (
                        (SELECT \(quoteIdentifier(entity.keyColumn)) FROM ledgerlift_read.\(quoteIdentifier(entity.tableName + "_history")) WHERE valid_to IS NULL
                         EXCEPT SELECT \(quoteIdentifier(entity.keyColumn)) FROM ledgerlift_read.\(quoteIdentifier(entity.tableName)))
                        UNION ALL
                        (SELECT \(quoteIdentifier(entity.keyColumn)) FROM ledgerlift_read.\(quoteIdentifier(entity.tableName))
                         EXCEPT SELECT \(quoteIdentifier(entity.keyColumn)) FROM ledgerlift_read.\(quoteIdentifier(entity.tableName + "_history")) WHERE valid_to IS NULL)
                    ) AS d
                    """
                ).rows[0].decode(at: 0, as: Int64.self)
                #expect(mismatched == 0, "\(entity)")
            }
        }
    }

    @Test func theDerivedModelsDropWhatADeletedRowContributed() async throws {
        try await Self.withDeletions(batchSize: 5) { connection, _, reader in
            func balances(_ customer: String, _ asOf: String? = nil) async throws -> [CustomerBalance] {
                try await connection.withSession { try reader.balances(customer: customer, asOf: asOf.map(ts), in: $0) }
            }
            // A: the open invoice (60.00 still owed) is gone; the credit note's 25.00 credit stays.
            #expect(try await balances("cust-a") == [TemporalQueryTests.balance("USD", 0, 2500, -2500, of: "cust-a")])
            // As of before the deletion, the balance was what it was.
            #expect(try await balances("cust-a", "2024-05-31") == [TemporalQueryTests.balance("USD", 6000, 2500, 3500, of: "cust-a")])
            // The deleted draft never owed anything, before or after.
            #expect(try await balances("cust-a", "2024-03-24") == [TemporalQueryTests.balance("USD", 6000, 2500, 3500, of: "cust-a")])
            // C: the re-created invoice owes ¥5,000 beside the ¥9,000.
            #expect(try await balances("cust-c") == [TemporalQueryTests.balance("JPY", 14000, 0, 14000, of: "cust-c")])
            // N: deleted, with nothing of its own left.
            #expect(try await balances("cust-n") == [])

            // Revenue: A's invoice and payment no longer count; C's re-created invoice counts in April.
            let revenue = try await connection.withSession {
                try reader.revenue(from: date("2024-01-01"), to: date("2024-12-01"), in: $0)
            }
            #expect(revenue.filter { $0.currency == "USD" }.map(\.month) == [date("2024-03-01")])
            #expect(revenue.filter { $0.currency == "USD" }.map(\.credited) == [2500])
            #expect(revenue.filter { $0.currency == "USD" }.allSatisfy { $0.invoiced == 0 && $0.collected == 0 })
            #expect(revenue.first { $0.currency == "JPY" && $0.month == date("2024-04-01") }?.invoiced == 5000)

            // MRR: N's subscription counts until its deletion in September, then churns.
            let mrr = try await connection.withSession {
                try reader.mrr(from: date("2024-07-01"), to: date("2024-10-01"), in: $0)
            }
            #expect(mrr.map(\.mrr) == [833, 833, 0, 0])
            #expect(mrr.map(\.churn) == [-2500, 0, -833, 0])
        }
    }

    @Test func incrementalProjectionWithDeletionsEqualsTheBlueGreenBuildAndTheReplays() async throws {
        try await Self.withDeletions(batchSize: 3) { connection, store, _ in
            let rebuilt = Projector(store: store, readSchema: "deletions_rebuilt")
            _ = try await rebuilt.catchUp(on: connection)
            let incremental = try await tableHashes(connection, schema: "ledgerlift_read")
            #expect(incremental == (try await tableHashes(connection, schema: "deletions_rebuilt")))
            // Each stream replays to its canonical row, or to nothing when deleted.
            let (base, extra) = Self.events()
            let streams = Set((base.events + extra).map(\.streamID))
            let reader = ReadModelReader()
            for stream in streams.sorted() {
                let recorded = try await connection.withSession { try store.readStream(stream, in: $0) }
                let replayed = Transitions.replay(try recorded.map { try BillingEvent(recorded: $0) })
                let entity = Entity.allCases.first { stream.hasPrefix($0.rawValue + "-") }!
                let key = String(stream.dropFirst(entity.rawValue.count + 1))
                let row = try await connection.withSession { try reader.row(entity, key: key, in: $0) }
                #expect(row == replayed, "\(stream)")
            }
        }
    }

    @Test(arguments: [1, 100])
    func aDeletionAtTheInstantOfTheCurrentVersionMakesItGiveWayAndAReCreationThenStartsAfresh(batchSize: Int) async throws {
        try await withProjectionStore { connection, _, store in
            let created = TemporalQueryTests.customer("cust-x", "USD", created: "2024-01-01T00:00:00Z")[0]
            var renamed = created
            renamed.values["name"] = .text("X2")
            renamed.values["updated_at"] = .timestamp(ts("2024-02-01T00:00:00Z"))
            let base = ProjectionEvents([[created, renamed]])
            var more = Continuation(base)
            // Deleted at the very instant of the rename (no proven moment: the stream's last event).
            more.delete(renamed, at: nil)
            var back = TemporalQueryTests.customer("cust-x", "EUR", created: "2024-03-01T00:00:00Z")[0]
            back.values["name"] = .text("X3")
            more.recreate(back)
            let extra = more.extra
            try await base.append(to: store, on: connection)
            try await connection.withSession { try store.appendBulk(extra, in: $0) }
            _ = try await readAllEventually(store, connection, expected: base.events.count + extra.count)
            let projector = Projector(store: store, batchSize: batchSize)
            try await connection.withSession { try projector.install(in: $0) }
            _ = try await projector.run(on: connection)
            let reader = ReadModelReader()
            let history = try await connection.withSession { try reader.history(.customer, key: "cust-x", in: $0) }
            // The rename's version gave way to the deletion at its instant; the first version ends there.
            #expect(history.map(\.validFrom) == [ts("2024-01-01T00:00:00Z"), ts("2024-03-01T00:00:00Z")])
            #expect(history.map(\.validTo) == [ts("2024-02-01T00:00:00Z"), nil])
            #expect(history.map(\.row) == [created, back])
            #expect(try await connection.withSession { try reader.row(.customer, key: "cust-x", in: $0) } == back)
            #expect(try await connection.withSession {
                try reader.row(.customer, key: "cust-x", asOf: ts("2024-02-15T00:00:00Z"), in: $0)
            } == nil)
            #expect(try await connection.withSession {
                try reader.balances(customer: "cust-x", in: $0)
            } == [TemporalQueryTests.balance("EUR", 0, 0, 0, of: "cust-x")])
        }
    }
}
