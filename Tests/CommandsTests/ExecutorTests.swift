import Billing
import EventStore
import Foundation
import Postgres
import Synchronization
import TestSupport
import Testing
import TextFormats

@testable import Commands

/// A customer created with an email: rules of the tests' own (the group rules live elsewhere),
/// so the executor is tested alone.
struct CreateTestCustomer: Decidable {
    var id: String
    var email: String
    var parent: String? = nil
    var at: PostgresTimestamp

    func requirements(given state: CommandState) -> Set<Requirement> { [.stream(.customer, key: id)] }

    func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        guard state.row(.customer, id) == nil else { throw CommandRejection(.alreadyExists, .customer, id, "customer \(id) exists") }
        var values: [String: CanonicalValue] = [
            "customer_id": .text(id), "email": .text(email), "created_at": .timestamp(at), "updated_at": .timestamp(at),
            "payment_delegated": .boolean(false),
        ]
        if let parent { values["parent_customer_id"] = .text(parent) }
        return Decision(rows: [CanonicalRow(entity: .customer, values: values)], summary: "customer \(id) created")
    }
}

/// A customer's email changed (nothing when it is the same).
struct SetTestEmail: Decidable {
    var id: String
    var email: String
    var at: PostgresTimestamp

    func requirements(given state: CommandState) -> Set<Requirement> { [.stream(.customer, key: id)] }

    func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        guard var row = state.row(.customer, id) else { throw CommandRejection(.notFound, .customer, id, "no customer \(id)") }
        if row["email"] != .text(email) {
            row.values["email"] = .text(email)
            row.values["updated_at"] = .timestamp(at)
        }
        return Decision(rows: [row], summary: "customer \(id) email \(email)")
    }
}

/// Reads a customer's child accounts (through the read models) and changes nothing.
struct ReadChildren: Decidable {
    var parent: String

    var requirement: Requirement { .children(.customer, column: "parent_customer_id", value: parent) }
    func requirements(given state: CommandState) -> Set<Requirement> { [.stream(.customer, key: parent), requirement] }
    func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        Decision(rows: [], summary: state.rows(requirement).map(\.key).joined(separator: ","))
    }
}

/// Ends a customer's stream.
struct DeleteTestCustomer: Decidable {
    var id: String
    func requirements(given state: CommandState) -> Set<Requirement> { [.stream(.customer, key: id)] }
    func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        guard state.row(.customer, id) != nil else { throw CommandRejection(.notFound, .customer, id, "no customer \(id)") }
        return Decision(rows: [], deleted: [.init(entity: .customer, key: id)], summary: "customer \(id) deleted")
    }
}

let t0 = PostgresTimestamp(microsecondsSinceEpoch: 1_780_000_000_000_000)
func at(_ seconds: Int64) -> PostgresTimestamp { PostgresTimestamp(microsecondsSinceEpoch: t0.microsecondsSinceEpoch + seconds * 1_000_000) }

/// A fresh database with an empty event store.
func withStore<T>(_ label: String = #function, _ body: (Connection, String) async throws -> T) async throws -> T {
    try await TestDatabase.withConnection(label) { connection, dsn in
        _ = try await connection.withSession { try EventStore().migrate($0) }
        return try await body(connection, dsn)
    }
}

/// Every event of `stream`: version, type, event id, metadata.
func storedEvents(_ stream: String, _ connection: Connection) async throws -> [RecordedEvent] {
    try await connection.withSession { try EventStore().readStream(stream, in: $0) }
}

/// Writes a customer row it never read (a faulty rule).
struct BlindWrite: Decidable {
    var id: String
    var at: PostgresTimestamp
    func requirements(given state: CommandState) -> Set<Requirement> { [] }
    func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        Decision(
            rows: [CanonicalRow(entity: .customer, values: ["customer_id": .text(id), "created_at": .timestamp(at), "payment_delegated": .boolean(false)])],
            summary: "blind")
    }
}

@Suite struct ExecutorTests {
    @Test func commandEventIDsNameTheCommandOriginAndTheVersionRead() {
        let before = CanonicalRow(
            entity: .customer,
            values: ["customer_id": .text("42"), "email": .text("a@example.com"), "created_at": .timestamp(t0), "updated_at": .timestamp(t0)])
        var after = before
        after.values["email"] = .text("b@example.com")
        after.values["updated_at"] = .timestamp(at(60))
        let events = Transitions.transitions(before: before, after: after, syncedFromVersion: 3, origin: .command)
        #expect(events.map(\.type) == [.customerUpdated])
        #expect(events[0].eventID == DeterministicID.uuid5(namespace: DeterministicID.eventNamespace, name: "command/customer/42/v3/0/CustomerUpdated"))
        // Golden: the id must never change (a second execution of a decided command relies on it).
        #expect(events[0].eventID.uuidString.lowercased() == "a590b4dc-9f6f-5a5f-bbce-93cf89f4149d")
        #expect(SyncOrigin.command.metadataOrigin == "command")
        #expect(SyncOrigin.command.rawValue == "command")
    }

    @Test func anExecutedCommandAppendsItsTransitionsWithCommandMetadata() async throws {
        try await withStore { connection, _ in
            let executor = CommandExecutor()
            let outcome = try await executor.execute(
                CreateTestCustomer(id: "42", email: "a@example.com", at: t0), name: "create_customer", at: t0, requestID: "req-1",
                on: connection)
            #expect(outcome.command == "create_customer")
            #expect(outcome.summary == "customer 42 created")
            #expect(outcome.replayed == false)
            #expect(outcome.rows["customer-42"]?["email"] == "a@example.com")
            #expect(outcome.rows["customer-42"]?["archived_at"] == .some(nil))
            let stored = try await storedEvents("customer-42", connection)
            #expect(stored.map(\.eventType) == ["CustomerCreated"])
            #expect(outcome.events == [AppendedEvent(streamID: "customer-42", streamVersion: 1, type: "CustomerCreated", eventID: stored[0].eventID.uuidString.lowercased())])
            #expect(
                stored[0].eventID
                    == DeterministicID.uuid5(namespace: DeterministicID.eventNamespace, name: "command/customer/42/v0/0/CustomerCreated"))
            let metadata = try JSONValue.parse(stored[0].metadata.text)
            #expect(metadata["origin"] == .string("command"))
            #expect(metadata["command"] == .string("create_customer"))
            #expect(metadata["request_id"] == .string("req-1"))
            #expect(metadata["source"] == .string("customer/42"))
            let row = try #require(Transitions.replay(try stored.map(BillingEvent.init(recorded:))))
            #expect(row["email"] == .text("a@example.com"))
        }
    }

    @Test func aRejectionAppendsNothing() async throws {
        try await withStore { connection, _ in
            let executor = CommandExecutor()
            _ = try await executor.execute(CreateTestCustomer(id: "42", email: "a@example.com", at: t0), name: "create_customer", at: t0, requestID: nil, on: connection)
            await #expect(throws: CommandRejection(.alreadyExists, .customer, "42", "customer 42 exists")) {
                _ = try await executor.execute(
                    CreateTestCustomer(id: "42", email: "b@example.com", at: at(1)), name: "create_customer", at: at(1), requestID: nil,
                    on: connection)
            }
            await #expect(throws: CommandRejection(.notFound, .customer, "7", "no customer 7")) {
                _ = try await executor.execute(SetTestEmail(id: "7", email: "x@example.com", at: at(2)), name: "update_customer", at: at(2), requestID: nil, on: connection)
            }
            #expect(try await storedEvents("customer-42", connection).count == 1)
            #expect(try await storedEvents("customer-7", connection).isEmpty)
        }
    }

    @Test func aRowTheCommandDidNotReadMayOnlyBeANewOne() async throws {
        try await withStore { connection, _ in
            let executor = CommandExecutor()
            let created = try await executor.execute(BlindWrite(id: "5", at: t0), name: "blind", at: t0, requestID: nil, on: connection)
            #expect(created.events.map(\.streamVersion) == [1])
            await #expect(throws: CommandError.invalidDecision(command: "blind", reason: "it writes customer-5, which it did not read and which exists (version 1)")) {
                _ = try await executor.execute(BlindWrite(id: "5", at: at(1)), name: "blind", at: at(1), requestID: nil, on: connection)
            }
            #expect(try await storedEvents("customer-5", connection).count == 1)
        }
    }

    @Test func deletionsEndTheStreamAsShadowModeDoes() async throws {
        try await withStore { connection, _ in
            let executor = CommandExecutor()
            _ = try await executor.execute(CreateTestCustomer(id: "42", email: "a@example.com", at: t0), name: "create_customer", at: t0, requestID: nil, on: connection)
            let outcome = try await executor.execute(DeleteTestCustomer(id: "42"), name: "archive_customer", at: at(5), requestID: nil, on: connection)
            let stored = try await storedEvents("customer-42", connection)
            #expect(stored.map(\.eventType) == ["CustomerCreated", "CustomerDeleted"])
            #expect(stored[1].occurredAt == at(5))
            #expect(stored[1].eventID == DeterministicID.uuid5(namespace: DeterministicID.eventNamespace, name: "command/customer/42/v1/0/CustomerDeleted"))
            #expect(outcome.rows.isEmpty)
            #expect(outcome.events.map(\.streamVersion) == [2])
            await #expect(throws: CommandRejection(.notFound, .customer, "42", "no customer 42")) {
                _ = try await executor.execute(DeleteTestCustomer(id: "42"), name: "archive_customer", at: at(6), requestID: nil, on: connection)
            }
        }
    }

    @Test func aConcurrentWriterMakesTheAppendFailAndTheCommandIsDecidedAgain() async throws {
        try await withStore { connection, dsn in
            _ = try await CommandExecutor().execute(
                CreateTestCustomer(id: "42", email: "a@example.com", at: t0), name: "create_customer", at: t0, requestID: nil, on: connection)
            let other = try await Connection.connect(dsn)
            defer { other.close() }
            let attempts = Locked<[Int]>([])
            var executor = CommandExecutor()
            executor.beforeAppend = { attempt in
                attempts.set(attempts.value + [attempt])
                guard attempt == 1 else { return }
                // Another writer (no customer lock: shadow mode's tailer) moves the stream now.
                // On this thread, on the other connection: the executor's transaction waits for
                // nothing but that writer (a task would need a free cooperative thread first).
                do {
                    try other.withSessionBlocking { session in
                        let store = EventStore()
                        let before = try #require(Transitions.replay(try store.readStream("customer-42", in: session).map(BillingEvent.init(recorded:))))
                        var after = before
                        after.values["name"] = .text("Renamed")
                        after.values["updated_at"] = .timestamp(at(1))
                        let events = Transitions.transitions(before: before, after: after, syncedFromVersion: 1, origin: .shadow)
                        try store.append(events.map { $0.newEvent(origin: "shadow") }, to: "customer-42", expectedVersion: .exact(1), in: session)
                    }
                } catch { throw CommandError.invalidDecision(command: "test", reason: "\(error)") }
            }
            let outcome = try await executor.execute(
                SetTestEmail(id: "42", email: "b@example.com", at: at(2)), name: "update_customer", at: at(2), requestID: nil, on: connection)
            #expect(attempts.value == [1, 2])
            #expect(outcome.events.map(\.streamVersion) == [3])
            let stored = try await storedEvents("customer-42", connection)
            #expect(stored.map(\.streamVersion) == [1, 2, 3])
            let row = try #require(Transitions.replay(try stored.map(BillingEvent.init(recorded:))))
            #expect(row["name"] == .text("Renamed"))
            #expect(row["email"] == .text("b@example.com"))
        }
    }

    @Test func anotherDecisionOnTheSameVersionIsAnIDConflictAndTheCommandIsDecidedAgain() async throws {
        try await withStore { connection, dsn in
            _ = try await CommandExecutor().execute(
                CreateTestCustomer(id: "42", email: "a@example.com", at: t0), name: "create_customer", at: t0, requestID: nil, on: connection)
            let other = try await Connection.connect(dsn)
            defer { other.close() }
            let attempts = Locked<[Int]>([])
            var executor = CommandExecutor()
            executor.beforeAppend = { attempt in
                attempts.set(attempts.value + [attempt])
                guard attempt == 1 else { return }
                // Another decision on version 1 commits first: the same event id (ids name the
                // version read), other content. The store checks ids before versions.
                // On this thread, on the other connection: the executor's transaction waits for
                // nothing but that writer (a task would need a free cooperative thread first).
                do {
                    try other.withSessionBlocking { session in
                        let store = EventStore()
                        let before = try #require(
                            Transitions.replay(try store.readStream("customer-42", in: session).map(BillingEvent.init(recorded:))))
                        var after = before
                        after.values["email"] = .text("other@example.com")
                        after.values["updated_at"] = .timestamp(at(2))
                        let events = Transitions.transitions(before: before, after: after, syncedFromVersion: 1, origin: .command)
                        try store.append(events.map { $0.newEvent(origin: "command") }, to: "customer-42", expectedVersion: .exact(1), in: session)
                    }
                } catch { throw CommandError.invalidDecision(command: "test", reason: "\(error)") }
            }
            let outcome = try await executor.execute(
                SetTestEmail(id: "42", email: "b@example.com", at: at(2)), name: "update_customer", at: at(2), requestID: nil, on: connection)
            #expect(attempts.value == [1, 2])
            #expect(outcome.events.map(\.streamVersion) == [3])
            let stored = try await storedEvents("customer-42", connection)
            #expect(stored.map(\.streamVersion) == [1, 2, 3])
            #expect(try #require(Transitions.replay(try stored.map(BillingEvent.init(recorded:))))["email"] == .text("b@example.com"))
            // What attempt 1 met: its decision on version 1, whose id is taken by other content.
            let first = try stored.prefix(1).map(BillingEvent.init(recorded:))
            var mine = try #require(Transitions.replay(first))
            mine.values["email"] = .text("b@example.com")
            mine.values["updated_at"] = .timestamp(at(2))
            let attempt1 = Transitions.transitions(before: Transitions.replay(first), after: mine, syncedFromVersion: 1, origin: .command)
            #expect(attempt1.map(\.eventID) == [stored[1].eventID])
            await #expect {
                try await connection.withSession {
                    try EventStore().append(attempt1.map { $0.newEvent(origin: "command") }, to: "customer-42", expectedVersion: .exact(1), in: $0)
                }
            } throws: { error in
                if case EventStoreError.idempotencyConflict = error { return true }
                return false
            }
        }
    }

    @Test func aConflictThatOutlastsTheRetriesIsACommandError() async throws {
        try await withStore { connection, _ in
            _ = try await CommandExecutor().execute(
                CreateTestCustomer(id: "42", email: "a@example.com", at: t0), name: "create_customer", at: t0, requestID: nil, on: connection)
            var executor = CommandExecutor()
            executor.maximumAttempts = 2
            executor.beforeAppend = { _ in
                throw EventStoreError.wrongExpectedVersion(stream: "customer-42", expected: .exact(1), actual: 2)
            }
            await #expect(throws: CommandError.conflict(command: "update_customer", attempts: 2, stream: "customer-42")) {
                _ = try await executor.execute(SetTestEmail(id: "42", email: "b@example.com", at: at(2)), name: "update_customer", at: at(2), requestID: nil, on: connection)
            }
            #expect(try await storedEvents("customer-42", connection).count == 1)
        }
    }

    @Test func twoExecutorsOnOneStreamBothSucceedInTurnWithoutGaps() async throws {
        try await withStore { connection, dsn in
            _ = try await CommandExecutor().execute(
                CreateTestCustomer(id: "42", email: "a@example.com", at: t0), name: "create_customer", at: t0, requestID: nil, on: connection)
            let perWriter = 10
            let outcomes = try await withThrowingTaskGroup(of: [CommandOutcome].self) { group in
                for writer in 0..<2 {
                    group.addTask {
                        let own = try await Connection.connect(dsn)
                        defer { own.close() }
                        var outcomes = [CommandOutcome]()
                        for i in 0..<perWriter {
                            let second = Int64(1 + writer * perWriter + i)
                            outcomes.append(
                                try await CommandExecutor().execute(
                                    SetTestEmail(id: "42", email: "w\(writer)-\(i)@example.com", at: at(second)), name: "update_customer",
                                    at: at(second), requestID: nil, on: own))
                        }
                        return outcomes
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(outcomes.count == 2 * perWriter)
            #expect(outcomes.allSatisfy { $0.events.count == 1 })
            let versions = try await storedEvents("customer-42", connection).map(\.streamVersion)
            #expect(versions == Array(1...Int64(1 + 2 * perWriter)))
            #expect(Set(outcomes.flatMap(\.events).map(\.streamVersion)) == Set(2...Int64(1 + 2 * perWriter)))
        }
    }

    @Test func theSameRequestSentTwiceAppendsOnce() async throws {
        try await withStore { connection, _ in
            let executor = CommandExecutor()
            let create = CreateTestCustomer(id: "42", email: "a@example.com", at: t0)
            let first = try await executor.execute(create, name: "create_customer", at: t0, requestID: "req-1", on: connection)
            // Sent again (its acknowledgement lost): the stream holds the request's events, so
            // nothing is decided or appended and the first outcome's events are returned.
            let again = try await executor.execute(create, name: "create_customer", at: t0, requestID: "req-1", on: connection)
            #expect(again.replayed)
            #expect(again.events == first.events)
            #expect(again.rows == first.rows)
            // Without a request id the command is decided again: a creation is refused…
            await #expect(throws: CommandRejection(.alreadyExists, .customer, "42", "customer 42 exists")) {
                _ = try await executor.execute(create, name: "create_customer", at: t0, requestID: nil, on: connection)
            }
            // …and a change already made appends nothing.
            let update = SetTestEmail(id: "42", email: "b@example.com", at: at(1))
            #expect(try await executor.execute(update, name: "update_customer", at: at(1), requestID: nil, on: connection).events.count == 1)
            let same = try await executor.execute(update, name: "update_customer", at: at(1), requestID: nil, on: connection)
            #expect(same.events.isEmpty)
            #expect(same.replayed == false)
            #expect(try await storedEvents("customer-42", connection).count == 2)
        }
    }

    @Test func commandsOfOneCustomerWaitForTheCustomerLock() async throws {
        try await withStore { connection, dsn in
            _ = try await CommandExecutor().execute(
                CreateTestCustomer(id: "42", email: "a@example.com", at: t0), name: "create_customer", at: t0, requestID: nil, on: connection)
            let holder = try await Connection.connect(dsn)
            defer { holder.close() }
            try await holder.withSession { try $0.lock(CommandExecutor.customerLock("42")) }
            let worker = try await Connection.connect(dsn)
            defer { worker.close() }
            let task = Task {
                try await CommandExecutor().execute(
                    SetTestEmail(id: "42", email: "b@example.com", at: at(1)), name: "update_customer", at: at(1), requestID: nil, on: worker)
            }
            try await Task.sleep(for: .milliseconds(400))
            #expect(try await storedEvents("customer-42", connection).count == 1)
            // Another customer is not held up.
            _ = try await CommandExecutor().execute(
                CreateTestCustomer(id: "43", email: "c@example.com", at: at(2)), name: "create_customer", at: at(2), requestID: nil, on: connection)
            try await holder.withSession { _ = try $0.unlock(CommandExecutor.customerLock("42")) }
            let outcome = try await task.value
            #expect(outcome.events.map(\.streamVersion) == [2])
            #expect(try await storedEvents("customer-42", connection).count == 2)
        }
    }

    @Test func childrenAreFoundInTheReadModelsOnceTheyAreCaughtUpAndReadFromTheirStreams() async throws {
        try await withStore { connection, _ in
            let executor = CommandExecutor()
            for (id, parent) in [("1", nil), ("2", "1"), ("10", "1"), ("3", "9")] as [(String, String?)] {
                _ = try await executor.execute(
                    CreateTestCustomer(id: id, email: "\(id)@example.com", parent: parent, at: t0), name: "create_customer", at: t0, requestID: nil,
                    on: connection)
            }
            _ = try await Projector().catchUp(on: connection)
            // Child 10 ends after the projection: its stream, not the read model, has the last word.
            _ = try await executor.execute(DeleteTestCustomer(id: "10"), name: "archive_customer", at: at(1), requestID: nil, on: connection)
            var impatient = CommandStateLoader()
            impatient.projectionTimeout = .milliseconds(200)
            let loader = impatient
            await #expect(throws: CommandError.self) {
                _ = try await connection.withSession { try loader.load(ReadChildren(parent: "1"), name: "read", in: $0) }
            }
            _ = try await Projector().catchUp(on: connection)
            let loaded = try await connection.withSession { try loader.load(ReadChildren(parent: "1"), name: "read", in: $0) }
            let requirement = ReadChildren(parent: "1").requirement
            #expect(loaded.state.children[requirement] == ["2"])
            #expect(loaded.state.rows(requirement).map(\.key) == ["2"])
            #expect(loaded.state.stream(.customer, "2").version == 1)
        }
    }

    @Test func allocatedKeysStartAboveTheLargestNumericKeyAndSkipKeysInUse() async throws {
        try await withStore { connection, _ in
            let executor = CommandExecutor()
            for id in ["7", "120", "abc"] {
                _ = try await executor.execute(CreateTestCustomer(id: id, email: "\(id)@example.com", at: t0), name: "create_customer", at: t0, requestID: nil, on: connection)
            }
            #expect(try await executor.allocate(.customer, on: connection) == "121")
            #expect(try await executor.allocate(.customer, on: connection) == "122")
            _ = try await executor.execute(CreateTestCustomer(id: "123", email: "x@example.com", at: t0), name: "create_customer", at: t0, requestID: nil, on: connection)
            #expect(try await executor.allocate(.customer, on: connection) == "124")
            #expect(try await executor.allocate(.balanceTransaction, on: connection) == "1")
        }
    }
}
