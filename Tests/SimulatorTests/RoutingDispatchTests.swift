import EventStore
import Postgres
import Synchronization
import TestSupport
import Testing

@testable import Simulator

/// The runner's routing-aware dispatch (issue 17 point 4), with two fake applications: where
/// the store's routing sends each operation first, and what a refusal by either side does.
@Suite("Simulation: routing-aware dispatch between the legacy and the ledger application")
struct RoutingDispatchTests {
    /// An application that records the operations it performed and refuses the ones `refuse`
    /// names, with the error it gives.
    final class FakeApp: BillingApp {
        let name: String
        let refuse: @Sendable (BillingOperation) -> (any Error)?
        private let performed = Mutex<[UInt64]>([])

        init(_ name: String, refuse: @escaping @Sendable (BillingOperation) -> (any Error)? = { _ in nil }) {
            self.name = name
            self.refuse = refuse
        }

        var ops: [UInt64] { performed.withLock { $0.sorted() } }

        func makeWorker() async throws -> any BillingAppWorker { Worker(app: self) }

        struct Worker: BillingAppWorker {
            let app: FakeApp
            func perform(
                _ operation: BillingOperation, clock: BusinessClock,
                prepared: @escaping @Sendable (JournalEntry) throws -> Void
            ) async throws -> JournalEntry? {
                if let error = app.refuse(operation) { throw error }
                let entry = JournalEntry(
                    op: operation.id, kind: operation.kind, at: clock.current.iso8601, keys: [:], effects: [],
                    summary: "\(app.name) did op \(operation.id)")
                try prepared(entry)
                app.performed.withLock { $0.append(operation.id) }
                return entry
            }
            func close() {}
        }
    }

    static let guardRefusal = SimulatorError.database(
        PostgresError(code: .server, message: WriteGuard.message, sqlState: SQLState(WriteGuard.sqlState)))
    static let oneKind = try! OperationMix([.editName: 1])

    /// The store's `routing` table (the lead's schema version 5, created here as its migration does).
    static func createRouting(_ connection: Connection) async throws {
        try await connection.execute("CREATE SCHEMA IF NOT EXISTS ledgerlift")
        try await connection.execute(
            """
            CREATE TABLE IF NOT EXISTS ledgerlift.routing (
                singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), cutover text NOT NULL,
                reads text NOT NULL CHECK (reads IN ('legacy', 'ledger')),
                writes text NOT NULL CHECK (writes IN ('legacy', 'ledger', 'frozen')),
                version bigint NOT NULL CHECK (version >= 1), changed_at timestamptz NOT NULL DEFAULT clock_timestamp())
            """)
    }

    static func route(_ connection: Connection, reads: RouteTarget, writes: RouteTarget) async throws {
        _ = try await connection.withSession { session in
            try RoutingTable().set(cutover: "test", reads: reads, writes: writes, in: session)
        }
    }

    @Test func withoutARoutingRowOperationsGoToLegacyAndAGuardRefusalGoesToTheLedger() async throws {
        try await TestDatabase.withConnection { admin, dsn in
            try await Self.createRouting(admin)
            let legacy = FakeApp("legacy") { $0.id == 3 ? Self.guardRefusal : nil }
            let ledger = FakeApp("ledger")
            let routing = WriteRouting(storeDSN: dsn)
            defer { routing.close() }
            let report = try await Simulation(
                .init(
                    app: legacy, stop: .operations(5), mix: Self.oneKind, clock: BusinessClock(.wall), reroute: ledger,
                    routing: routing)
            ).run()
            #expect(legacy.ops == [1, 2, 4, 5])
            #expect(ledger.ops == [3])
            #expect(report.total.rerouted == 1)
            #expect(report.total.acknowledged == 5)
            #expect(report.total.failed == 0)
            #expect(report.total.reroutedBlockedMaxMs >= 0)
        }
    }

    @Test func writesRoutedToTheLedgerGoThereFirstAndABackRefusalGoesToLegacy() async throws {
        try await TestDatabase.withConnection { admin, dsn in
            try await Self.createRouting(admin)
            try await Self.route(admin, reads: .ledger, writes: .ledger)
            let legacy = FakeApp("legacy") { _ in Self.guardRefusal }
            let ledger = FakeApp("ledger") {
                $0.id == 2 ? LedgerAppError.writesOnLegacy(op: $0.id, command: "update_customer") : nil
            }
            // Op 2: the ledger sends it back, legacy refuses it too (its guard), and so on until
            // the hops run out: it fails, under the ledger's code.
            let routing = WriteRouting(storeDSN: dsn)
            defer { routing.close() }
            let report = try await Simulation(
                .init(
                    app: legacy, stop: .operations(3), mix: Self.oneKind, clock: BusinessClock(.wall), reroute: ledger,
                    routing: routing)
            ).run()
            #expect(ledger.ops == [1, 3])
            #expect(legacy.ops == [])
            #expect(report.total.rerouted == 1)
            // ledger → legacy → ledger → legacy: after `maxHops` the last refusal counts.
            #expect(Simulation.maxHops == 3)
            #expect(report.total.errors == [WriteGuard.sqlState: 1])
        }
        try await TestDatabase.withConnection { admin, dsn in
            try await Self.createRouting(admin)
            try await Self.route(admin, reads: .ledger, writes: .ledger)
            // The routing went back to legacy while op 2 was under way: legacy takes it.
            let legacy = FakeApp("legacy")
            let ledger = FakeApp("ledger") {
                $0.id == 2 ? LedgerAppError.writesOnLegacy(op: $0.id, command: "update_customer") : nil
            }
            let routing = WriteRouting(storeDSN: dsn)
            defer { routing.close() }
            let report = try await Simulation(
                .init(
                    app: legacy, stop: .operations(3), mix: Self.oneKind, clock: BusinessClock(.wall), reroute: ledger,
                    routing: routing)
            ).run()
            #expect(ledger.ops == [1, 3])
            #expect(legacy.ops == [2])
            #expect(report.total.rerouted == 1)
            #expect(report.total.acknowledged == 3)
            #expect(report.total.failed == 0)
        }
    }

    @Test func frozenWritesGoToTheLedgerFirstAndLegacyRoutingToLegacy() async throws {
        try await TestDatabase.withConnection { admin, dsn in
            try await Self.createRouting(admin)
            try await Self.route(admin, reads: .ledger, writes: .frozen)
            let legacy = FakeApp("legacy")
            let ledger = FakeApp("ledger")
            let routing = WriteRouting(storeDSN: dsn, maxAge: .zero)
            defer { routing.close() }
            _ = try await Simulation(
                .init(
                    app: legacy, stop: .operations(2), mix: Self.oneKind, clock: BusinessClock(.wall), reroute: ledger,
                    routing: routing)
            ).run()
            #expect(ledger.ops == [1, 2])
            try await Self.route(admin, reads: .legacy, writes: .legacy)
            _ = try await Simulation(
                .init(
                    app: legacy, stop: .operations(2), mix: Self.oneKind, clock: BusinessClock(.wall), reroute: ledger,
                    routing: routing)
            ).run()
            #expect(legacy.ops == [1, 2])
        }
    }

    @Test func theRoutingIsReadAtMostOncePerMaxAge() async throws {
        try await TestDatabase.withConnection { admin, dsn in
            try await Self.createRouting(admin)
            try await Self.route(admin, reads: .legacy, writes: .legacy)
            let routing = WriteRouting(storeDSN: dsn, maxAge: .seconds(3600))
            defer { routing.close() }
            #expect(await routing.writes() == .legacy)
            try await Self.route(admin, reads: .ledger, writes: .ledger)
            #expect(await routing.writes() == .legacy, "cached")
            routing.invalidate()
            #expect(await routing.writes() == .ledger)
        }
    }
}
