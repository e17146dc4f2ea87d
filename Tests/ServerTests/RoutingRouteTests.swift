import Commands
import EventStore
import Foundation
import Postgres
import Server
import TestSupport
import Testing

/// The store's routing decides whether serve takes writes: `GET /routing` answers it, and a
/// command or Stripe delivery is refused (nothing appended, nothing stored under its key) while
/// writes belong to legacy or are frozen by a rollback.
@Suite("serve: routing decides whether writes are taken")
struct RoutingRouteTests {
    static func setRouting(_ store: String, reads: RouteTarget, writes: RouteTarget) async throws {
        try await withSession(store) { session in
            _ = try RoutingTable().set(cutover: "prod", reads: reads, writes: writes, in: session)
        }
    }

    @Test func commandsAreRefusedUntilTheWriteSwitchAndTakenAfterIt() async throws {
        try await withEmptyStore { store in
            try await CommandRouteTests.server(store, mode: .primary) { _, client in
                // No cutover: a ledger of its own.
                let none = try await client.get("/routing")
                #expect(none.status == 200)
                #expect(try none.json["cutover"] is NSNull)
                #expect(try none.json["writes"] as? String == "ledger")
                let first = try await client.send(
                    "POST", "/commands/create_customer", body: CommandRouteTests.createCustomer("r-1"))
                #expect(first.status == 200, "\(first.body)")

                try await Self.setRouting(store, reads: .legacy, writes: .legacy)
                let routing = try await client.get("/routing")
                #expect(try routing.json["cutover"] as? String == "prod")
                #expect(try routing.json["reads"] as? String == "legacy")
                #expect(try routing.json["writes"] as? String == "legacy")
                #expect(try routing.json["version"] as? Int == 1)
                let onLegacy = try await client.send(
                    "POST", "/commands/create_customer", body: CommandRouteTests.createCustomer("r-2"),
                    headers: ["Idempotency-Key": "k-r-2"])
                #expect(onLegacy.status == 409, "\(onLegacy.body)")
                #expect(try onLegacy.json["code"] as? String == "writes_on_legacy")
                #expect(try await CommandRouteTests.events(store, stream: "customer-r-2") == [])

                try await Self.setRouting(store, reads: .ledger, writes: .frozen)
                let frozen = try await client.send(
                    "POST", "/commands/create_customer", body: CommandRouteTests.createCustomer("r-2"),
                    headers: ["Idempotency-Key": "k-r-2"])
                #expect(frozen.status == 503, "\(frozen.body)")
                #expect(try frozen.json["code"] as? String == "writes_frozen")
                #expect(frozen.header("Retry-After") == "1")
                #expect(try await CommandRouteTests.events(store, stream: "customer-r-2") == [])

                // The refusals were not stored under the key: the same request succeeds once
                // writes are the ledger's.
                try await Self.setRouting(store, reads: .ledger, writes: .ledger)
                let taken = try await client.send(
                    "POST", "/commands/create_customer", body: CommandRouteTests.createCustomer("r-2"),
                    headers: ["Idempotency-Key": "k-r-2"])
                #expect(taken.status == 200, "\(taken.body)")
                #expect(taken.header("Idempotent-Replayed") == nil)
                #expect(try await CommandRouteTests.events(store, stream: "customer-r-2") == ["CustomerCreated"])
                #expect(try await client.get("/routing").json["version"] as? Int == 3)
            }
        }
    }

    @Test func aRoutingChangeWaitsForTheCommandsThatReadIt() async throws {
        try await withEmptyStore { store in
            let executor = CommandExecutor()
            let routing = RoutingTable()
            try await withSession(store) { session in
                _ = try routing.set(cutover: "prod", reads: .ledger, writes: .ledger, in: session)
            }
            // A command's transaction holds the row FOR SHARE until it commits: the freeze's
            // UPDATE cannot slip between its routing check and its append.
            let holder = try await Connection.connect(store)
            let changer = try await Connection.connect(store)
            try await holder.withSession { session in
                try session.execute("BEGIN")
                let read = try routing.readForWrite(in: session)
                #expect(read?.writes == .ledger)
            }
            try await changer.withSession { session in
                try session.execute("SET lock_timeout = '200ms'")
                #expect(throws: PostgresError.self) {
                    _ = try routing.set(cutover: "prod", reads: .ledger, writes: .frozen, in: session)
                }
            }
            try await holder.withSession { try $0.execute("COMMIT") }
            defer {
                holder.close()
                changer.close()
            }
            try await changer.withSession { session in
                let changed = try routing.set(cutover: "prod", reads: .ledger, writes: .frozen, in: session)
                #expect(changed.writes == .frozen && changed.version == 2)
            }
            let command = BillingCommand.createCustomer(
                CreateCustomer(
                    customerID: "f-1", email: "f@example.com", name: nil, currency: "USD", timeZone: nil,
                    at: try PostgresTimestamp.parse("2025-01-02T00:00:00Z")))
            await #expect(throws: WritesRoutedElsewhere(cutover: "prod", writes: .frozen)) {
                _ = try await executor.execute(command, requestID: nil, on: holder)
            }
        }
    }
}
