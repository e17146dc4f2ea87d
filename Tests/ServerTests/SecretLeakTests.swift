import Foundation
import Logging
import Postgres
import Server
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `serve` never prints the store's password: not in its log at `--log-level trace` (where
/// swift-service-lifecycle logs every service's description), not through `String(describing:)`,
/// `debugDescription` or `dump()` of any type holding the DSN, whichever form the DSN takes.
@Suite("serve: the store's password is never printed")
struct SecretLeakTests {
    static let password = "Hunter2Pw"

    /// The fresh database's DSN rewritten with ``password`` in each form libpq accepts: in the
    /// URL's userinfo, as `?password=`, and as `key=value` conninfo. The test server trusts
    /// local connections, so the password is sent nowhere and the connection still works.
    static func dsnForms(_ dsn: String) throws -> [String] {
        guard let url = URLComponents(string: dsn), let host = url.host, let port = url.port else {
            throw TestFailure("LEDGERLIFT_TEST_DSN must be a postgresql:// URL with host and port for this test")
        }
        let user = url.user ?? "postgres"
        let database = String(url.path.dropFirst())
        return [
            "postgresql://\(user):\(password)@\(host):\(port)/\(database)",
            "postgresql://\(user)@\(host):\(port)/\(database)?password=\(password)",
            "host=\(host) port=\(port) dbname=\(database) user=\(user) password=\(password)",
        ]
    }

    @Test func theDescriptionsMirrorsAndDumpsOfEveryTypeHoldingTheDSNMaskThePassword() throws {
        for dsn in try Self.dsnForms("postgresql://u@127.0.0.1:5432/db") {
            let configuration = ServeConfiguration(storeDSN: dsn)
            let server = LedgerliftServer(configuration, commandHandler: nil)
            let projector = ServeProjector(
                dsn: dsn, store: configuration.store, readSchema: "r", logger: Logger(label: "test"))
            let values: [Any] = [configuration, server, server.pool, projector]
            for value in values {
                var dumped = ""
                dump(value, to: &dumped)
                for text in [
                    String(describing: value), String(reflecting: value), dumped, "\(Mirror(reflecting: value).children.map { "\($0.value)" })",
                ] {
                    #expect(!text.contains(Self.password), "\(type(of: value)) printed the password: \(text)")
                }
            }
            #expect(String(describing: projector).contains(ConnectionString.masked(dsn)))
        }
    }

    // The limit catches a hang; it also counts the wait for a test database slot, which on a
    // loaded 2-core machine running the whole suite can take minutes.
    @Test(.timeLimit(.minutes(30)))
    func serveAtLogLevelTraceNeverPrintsThePasswordOfAnyDSNForm() async throws {
        try await withEmptyStore { store in
            for dsn in try Self.dsnForms(store) {
                let port = try GracefulShutdownTests.freePort()
                let server = try BackgroundProcess([
                    "serve", "--store", dsn, "--listen", "127.0.0.1:\(port)", "--log-level", "trace",
                ])
                let client = HTTPClient(port: port)
                let deadline = ContinuousClock.now + .seconds(120)
                var up = false
                while !up, ContinuousClock.now < deadline, server.isRunning {
                    up = (try? await client.get("/health").status) == 200
                    if !up { try await Task.sleep(for: .milliseconds(100)) }
                }
                if up {
                    _ = try await client.get("/metrics")
                    _ = try await client.get("/invoices/nope")
                    _ = try await client.send(
                        "POST", "/commands/create_customer", body: "{\"nonsense\":1}",
                        headers: ["Idempotency-Key": "k1"])
                }
                server.signal(SIGTERM)
                let output = try await server.wait(timeout: 60)
                #expect(up, "serve did not come up with \(ConnectionString.masked(dsn)): \(output.stderr)")
                #expect(!output.stdout.contains(Self.password), "stdout: \(output.stdout)")
                #expect(!output.stderr.contains(Self.password), "stderr: \(output.stderr)")
                // The log is there (trace level), so the assertion above looked at something.
                #expect(output.stderr.contains("Starting service"), "stderr: \(output.stderr)")
            }
        }
    }
}
