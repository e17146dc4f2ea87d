import EventStore
import Foundation
import Postgres
import TestSupport
import Testing

@Suite("ledgerlift store / events, run as a binary")
struct StoreCommandTests {
    @Test func versionAndHelpDescribeTheTool() async throws {
        let version = try await LedgerliftBinary.run(["--version"])
        #expect(version.status == 0)
        #expect(version.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0.1.0")
        let help = try await LedgerliftBinary.run(["--help"])
        #expect(help.status == 0)
        for command in ["fixture", "store", "events"] { #expect(help.stdout.contains(command), "\(command)") }
    }

    @Test func storeInitCreatesThenReportsUpToDate() async throws {
        try await TestDatabase.withFresh { dsn in
            let first = try await LedgerliftBinary.run(["store", "init", "--store", dsn])
            #expect(first.status == 0, "\(first.stderr)")
            #expect(first.stdout.contains("schema version 0 → \(EventStore.currentSchemaVersion)"))
            let second = try await LedgerliftBinary.run(["store", "init", "--store", dsn])
            #expect(second.status == 0)
            #expect(second.stdout.contains("is up to date (schema version \(EventStore.currentSchemaVersion))"))
        }
    }

    @Test func eventsAndStatsPrintWhatWasAppended() async throws {
        try await TestDatabase.withConnection { connection, dsn in
            let store = EventStore()
            try await connection.withSession { session in
                try store.migrate(session)
                for (i, type) in ["InvoiceDrafted", "InvoiceFinalized", "InvoicePaid"].enumerated() {
                    try store.append(
                        [NewEvent(
                            eventID: UUID(uuidString: "00000000-0000-4000-8000-00000000000\(i)")!, eventType: type,
                            occurredAt: PostgresTimestamp(year: 2024, month: 3, day: i + 1)!,
                            payload: PostgresJSON(#"{"n": \#(i)}"#))],
                        to: "invoice-7", in: session)
                }
                try store.append(
                    [NewEvent(
                        eventID: UUID(uuidString: "00000000-0000-4000-8000-000000000009")!, eventType: "CustomerCreated",
                        occurredAt: PostgresTimestamp(year: 2024, month: 1, day: 1)!, payload: PostgresJSON("{}"))],
                    to: "customer-1", in: session)
            }
            let events = try await LedgerliftBinary.run(["events", "--store", dsn, "--stream", "invoice-7"])
            #expect(events.status == 0, "\(events.stderr)")
            let lines = events.stdout.split(separator: "\n").map(String.init)
            #expect(lines.count == 5)
            #expect(lines[2].hasPrefix("      1  2024-03-01T00:00:00.000000Z  InvoiceDrafted"))
            #expect(lines[4].contains("InvoicePaid"))
            let asOf = try await LedgerliftBinary.run(["events", "--store", dsn, "--stream", "invoice-7", "--as-of", "2024-03-02"])
            #expect(asOf.stdout.split(separator: "\n").count == 4)
            let stats = try await LedgerliftBinary.run(["store", "stats", "--store", dsn, "--format", "json"])
            #expect(stats.status == 0)
            #expect(
                stats.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                    == #"{"events":4,"streams":2,"head_position":4,"by_type":[{"type":"CustomerCreated","events":1,"streams":1},{"type":"InvoiceDrafted","events":1,"streams":1},{"type":"InvoiceFinalized","events":1,"streams":1},{"type":"InvoicePaid","events":1,"streams":1}],"by_category":[{"category":"customer","events":1,"streams":1},{"category":"invoice","events":3,"streams":1}]}"#
            )
        }
    }

    @Test func aStoreThatWasNeverInitializedIsAClearError() async throws {
        try await TestDatabase.withFresh { dsn in
            let result = try await LedgerliftBinary.run(["store", "stats", "--store", dsn])
            #expect(result.status != 0)
            #expect(result.stderr.contains("run `ledgerlift store init --store DSN`"))
        }
    }

    @Test func aFailedConnectionNeverPrintsThePassword() async throws {
        let result = try await LedgerliftBinary.run(["store", "init", "--store", "postgres://u:hunter2@127.0.0.1:1/x"])
        #expect(result.status != 0)
        #expect(!result.stderr.contains("hunter2") && !result.stdout.contains("hunter2"))
        #expect(result.stderr.contains("postgres://u:****@127.0.0.1:1/x"))
    }
}
