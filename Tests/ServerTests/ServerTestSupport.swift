import Foundation
import Logging
import Postgres
import Server
import TestSupport
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// An HTTP answer as a client sees it.
struct HTTPAnswer: Sendable {
    let status: Int
    let headers: [String: String]
    let body: String

    func header(_ name: String) -> String? {
        headers.first { $0.key.lowercased() == name.lowercased() }?.value
    }

    /// The body parsed as a JSON object (a test failure names the body otherwise).
    var json: [String: Any] {
        get throws {
            guard let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else {
                throw TestFailure("not a JSON object: \(body)")
            }
            return object
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A tiny HTTP client over URLSession (no extra package).
struct HTTPClient: Sendable {
    let base: String
    let session: URLSession

    init(port: Int) {
        base = "http://127.0.0.1:\(port)"
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = 128
        // No timing assertion: a request is waited for as long as a machine the whole suite
        // loads needs (100 concurrent requests queued on one key timed out at 60 s in CI).
        configuration.timeoutIntervalForRequest = 600
        session = URLSession(configuration: configuration)
    }

    func send(
        _ method: String, _ path: String, body: String? = nil, headers: [String: String] = [:]
    ) async throws -> HTTPAnswer {
        guard let url = URL(string: base + path) else { throw TestFailure("bad URL \(path)") }
        var request = URLRequest(url: url)
        request.httpMethod = method
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        if let body {
            request.httpBody = Data(body.utf8)
            if headers["Content-Type"] == nil {
                request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            }
        }
        let (data, response) = try await session.data(for: request)
        guard let http = response as? HTTPURLResponse else { throw TestFailure("not an HTTP response") }
        var fields = [String: String]()
        for (name, value) in http.allHeaderFields {
            if let name = name as? String, let value = value as? String { fields[name] = value }
        }
        return HTTPAnswer(status: http.statusCode, headers: fields, body: String(decoding: data, as: UTF8.self))
    }

    func get(_ path: String) async throws -> HTTPAnswer { try await send("GET", path) }
}

/// A server running in-process on a free port for the duration of `body`.
func withServer<T: Sendable>(
    _ configuration: ServeConfiguration, commandHandler: (any CommandHandling)? = nil,
    metrics: ServerMetrics = ServerMetrics(),
    _ body: @Sendable (LedgerliftServer, HTTPClient) async throws -> T
) async throws -> T {
    var configuration = configuration
    configuration.port = 0
    let server = LedgerliftServer(
        configuration, commandHandler: commandHandler, metrics: metrics, logger: Logger(label: "test.serve"))
    let port = Locked<Int?>(nil)
    let failure = Locked<String?>(nil)
    let shutdown = ServeShutdown()
    let running = Task {
        do {
            try await server.run(gracefulShutdownSignals: [], shutdown: shutdown) { port.set($0) }
        } catch {
            failure.set("\(error)")
        }
    }
    let deadline = ContinuousClock.now + .seconds(60)
    while port.value == nil {
        if let message = failure.value { throw TestFailure("the server did not start: \(message)") }
        guard ContinuousClock.now < deadline else {
            running.cancel()
            throw TestFailure("the server did not start within 60 s")
        }
        try await Task.sleep(for: .milliseconds(20))
    }
    let client = HTTPClient(port: port.value!)
    do {
        let value = try await body(server, client)
        await shutdown.trigger()
        _ = await running.result
        #expect(failure.value == nil, "the server failed: \(failure.value ?? "")")
        return value
    } catch {
        await shutdown.trigger()
        _ = await running.result
        throw error
    }
}

/// The package's root directory (for fixtures/ and docs/).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

let referenceMappingPath = packageRoot.appendingPathComponent("fixtures/reference/mapping.yaml").path

/// Runs `ledgerlift` on a thread of its own (never blocking a cooperative thread).
func ledgerlift(_ arguments: [String]) async throws -> LedgerliftBinary.Output {
    try await LedgerliftBinary.run(arguments)
}

/// A store holding the reference fixture's backfill with its read models built (`fixture
/// load`, `store init`, `backfill`, `project`): what `serve` answers from.
func withBackfilledStore<T>(_ label: String = #function, _ body: (_ store: String) async throws -> T) async throws -> T
{
    try await TestDatabase.withFresh(label + "_legacy") { legacy in
        try await TestDatabase.withFresh(label + "_store") { store in
            for arguments in [
                ["fixture", "load", "--dsn", legacy], ["store", "init", "--store", store],
                ["backfill", "--legacy", legacy, "--store", store, "--mapping", referenceMappingPath],
                ["project", "--store", store],
            ] {
                let output = try await ledgerlift(arguments)
                guard output.status == 0 else { throw TestFailure("\(arguments[0]) failed: \(output.stderr)") }
            }
            return try await body(store)
        }
    }
}

/// A store initialized with empty read models (`store init`, `project`).
func withEmptyStore<T>(_ label: String = #function, _ body: (_ store: String) async throws -> T) async throws -> T {
    try await TestDatabase.withFresh(label) { store in
        for arguments in [["store", "init", "--store", store], ["project", "--store", store]] {
            let output = try await ledgerlift(arguments)
            guard output.status == 0 else { throw TestFailure("\(arguments[0]) failed: \(output.stderr)") }
        }
        return try await body(store)
    }
}

/// Runs `body` on a new connection to `dsn`.
func withSession<T: Sendable>(_ dsn: String, _ body: @escaping @Sendable (Session) throws -> T) async throws -> T {
    let connection = try await Connection.connect(dsn)
    defer { connection.close() }
    return try await connection.withSession(body)
}
