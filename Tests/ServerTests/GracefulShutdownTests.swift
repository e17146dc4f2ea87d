import Foundation
import Postgres
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `ledgerlift serve` as a process: SIGTERM lets the request in flight finish (200), then the
/// process exits 0.
@Suite("serve: graceful shutdown")
struct GracefulShutdownTests {
    /// A port nothing listens on now.
    static func freePort() throws -> Int { try freeLocalPort() }

    @Test func sigtermLetsTheRequestInFlightFinishThenExitsZero() async throws {
        try await withEmptyStore { store in
            let port = try Self.freePort()
            let server = try BackgroundProcess(["serve", "--store", store, "--listen", "127.0.0.1:\(port)"])
            let client = HTTPClient(port: port)
            // Up: /health answers.
            let deadline = ContinuousClock.now + .seconds(60)
            var up = false
            while !up, ContinuousClock.now < deadline, server.isRunning {
                up = (try? await client.get("/health").status) == 200
                if !up { try await Task.sleep(for: .milliseconds(100)) }
            }
            guard up else {
                let output = try await server.wait(timeout: 5)
                throw TestFailure("serve did not come up: \(output.stderr)")
            }
            // A slow request: the aging report waits behind a lock this test holds.
            let holder = try await Connection.connect(store)
            defer { holder.close() }
            try await holder.withSession { session in
                try session.execute("BEGIN")
                try session.execute("LOCK TABLE ledgerlift_read.ar_aging IN ACCESS EXCLUSIVE MODE")
            }
            let inFlight = Task { try await client.get("/reports/aging") }
            let waiting = try await Self.waitUntil(seconds: 30) {
                try await withSession(store) { session in
                    try session.query(
                        "SELECT count(*)::int8 FROM pg_locks WHERE NOT granted AND relation = 'ledgerlift_read.ar_aging'::regclass"
                    ).rows[0].decode(at: 0, as: Int64.self) > 0
                }
            }
            #expect(waiting, "the request never reached the lock")
            server.signal(SIGTERM)
            try await Task.sleep(for: .milliseconds(500))
            #expect(server.isRunning, "serve exited with a request in flight")
            try await holder.withSession { try $0.execute("COMMIT") }
            let answer = try await inFlight.value
            #expect(answer.status == 200)
            #expect(try answer.json["customers"] as? [Any] != nil)
            let output = try await server.wait(timeout: 30)
            #expect(output.status == 0, "\(output.stderr)")
        }
    }

    static func waitUntil(seconds: Int, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }
}

@Suite("serve: the command line")
struct ServeCommandLineTests {
    @Test func aBadListenAddressOrModeIsAUsageErrorAndAStoreNotInitializedIsRefusedBeforeListening() async throws {
        let badListen = try await ledgerlift([
            "serve", "--store", "postgresql://u:secret@127.0.0.1:1/x", "--listen", "localhost",
        ])
        #expect(badListen.status == 2)
        #expect(badListen.stderr.contains("--listen localhost is not host:port"), "\(badListen.stderr)")
        let badMode = try await ledgerlift([
            "serve", "--store", "postgresql://u:secret@127.0.0.1:1/x", "--mode", "shadow",
        ])
        #expect(badMode.status == 2)
        #expect(badMode.stderr.contains("--mode shadow is not primary or candidate"), "\(badMode.stderr)")
        try await TestDatabase.withFresh { store in
            let refused = try await ledgerlift(["serve", "--store", store, "--listen", "127.0.0.1:0"])
            #expect(refused.status == 2)
            #expect(refused.stderr.hasPrefix("Error: "), "\(refused.stderr)")
            #expect(refused.stderr.contains("store init"), "\(refused.stderr)")
        }
        let unreachable = try await ledgerlift([
            "serve", "--store", "postgresql://u:secret@127.0.0.1:1/x", "--listen", "127.0.0.1:0",
        ])
        #expect(unreachable.status == 2)
        #expect(!unreachable.stderr.contains("secret"), "\(unreachable.stderr)")
    }
}
