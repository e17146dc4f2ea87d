import Foundation
import Postgres
import TestSupport
import Testing

@Suite("ledgerlift backfill, killed with SIGKILL and run again")
struct BackfillResumeTests {
    static var mapping: String {
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
            dir = dir.deletingLastPathComponent()
        }
        return dir.appendingPathComponent("fixtures/reference/mapping.yaml").path
    }

    /// Every event's identity and content, in a stable order, as one digest.
    static func eventDigest(_ dsn: String) async throws -> (count: Int64, digest: String) {
        let connection = try await Connection.connect(dsn)
        defer { connection.close() }
        let row = try await connection.query(
            """
            SELECT count(*), md5(string_agg(event_id::text || stream_id || stream_version || event_type
                                           || occurred_at::text || payload::text, ',' ORDER BY event_id))
            FROM ledgerlift.events
            """
        ).rows[0]
        return (try row.decode(at: 0), try row.decode(at: 1, as: String?.self) ?? "")
    }

    /// Starts the binary and kills it with SIGKILL once `store` holds at least `events` events —
    /// a point in the work, where a delay would be a point in time that a loaded machine reaches
    /// before the run has written anything. Returns false when the run finished first.
    ///
    /// The watching happens on a thread of its own with a blocking connection, not in a task: on
    /// a loaded machine a task sleeping 2 ms could wake only after the whole run had finished.
    static func killed(atEvents events: Int64, in store: String, _ arguments: [String]) async throws -> Bool {
        let outcome = Locked<Result<Bool, any Error>?>(nil)
        let watcher = Thread {
            outcome.set(
                Result {
                    let observer = try Connection.connectBlocking(store)
                    defer { observer.close() }
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: LedgerliftBinary.path)
                    process.arguments = arguments
                    process.standardOutput = FileHandle.nullDevice
                    process.standardError = FileHandle.nullDevice
                    try process.run()
                    while process.isRunning,
                        try observer.withSessionBlocking({ session in
                            try session.query("SELECT count(*) FROM ledgerlift.events").rows[0].decode(at: 0, as: Int64.self)
                        }) < events
                    {
                        usleep(2_000)
                    }
                    guard process.isRunning else { return false }
                    kill(process.processIdentifier, SIGKILL)
                    process.waitUntilExit()
                    return true
                })
        }
        watcher.start()
        while outcome.value == nil { try await Task.sleep(for: .milliseconds(20)) }
        return try outcome.value!.get()
    }

    @Test func aRunKilledAtSeveralPointsFinishesWithTheSameEventsAsAnUninterruptedRun() async throws {
        try await TestDatabase.withFresh { legacy in
            let generated = try await LedgerliftBinary.run(["fixture", "generate", "--dsn", legacy, "--customers", "400", "--seed", "11"])
            #expect(generated.status == 0, "\(generated.stderr)")
            try await TestDatabase.withFresh("reference_store") { reference in
                try await TestDatabase.withFresh("resumed_store") { resumed in
                    for store in [reference, resumed] {
                        #expect(try await LedgerliftBinary.run(["store", "init", "--store", store]).status == 0)
                    }
                    let base = ["backfill", "--legacy", legacy, "--mapping", Self.mapping, "--batch-events", "200", "--allow-quarantine",
                        // A killed run's lock goes with its connection, which the server may
                        // notice a moment after the kill: the next run waits for it.
                        "--wait"]
                    let uninterrupted = try await LedgerliftBinary.run(base + ["--store", reference, "--workers", "2"])
                    #expect(uninterrupted.status == 0, "\(uninterrupted.stderr)")

                    let expected = try await Self.eventDigest(reference)
                    var kills = 0
                    for percent: Int64 in [5, 25, 45, 65, 85] {
                        let events = expected.count * percent / 100
                        if try await Self.killed(atEvents: events, in: resumed, base + ["--store", resumed, "--workers", "2"]) {
                            kills += 1
                        }
                    }
                    let finish = try await LedgerliftBinary.run(base + ["--store", resumed, "--workers", "2"])
                    #expect(finish.status == 0, "\(finish.stderr)")
                    #expect(kills >= 2, "the run finished between two looks at the store; use more data")

                    let actual = try await Self.eventDigest(resumed)
                    #expect(expected.count > 10_000)
                    #expect(actual.count == expected.count)
                    #expect(actual.digest == expected.digest)
                    // And a further run appends nothing.
                    _ = try await LedgerliftBinary.run(base + ["--store", resumed])
                    #expect(try await Self.eventDigest(resumed).count == expected.count)
                }
            }
        }
    }
}
