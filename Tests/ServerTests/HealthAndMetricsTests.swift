import Billing
import EventStore
import Foundation
import Postgres
import Server
import TestSupport
import Testing

@Suite("serve: /health and /metrics")
struct HealthAndMetricsTests {
    /// Appends `count` events of a type that is no billing event (the projector passes over them).
    static func appendNoise(_ store: String, count: Int) async throws {
        try await withSession(store) { session in
            for i in 0..<count {
                _ = try EventStore().append(
                    [
                        NewEvent(
                            eventID: UUID(), eventType: "test.noise",
                            occurredAt: PostgresTimestamp(microsecondsSinceEpoch: 0),
                            payload: PostgresJSON("{\"n\":\(i)}"))
                    ], to: "noise-\(i)", in: session)
            }
        }
    }

    @Test func healthReportsTheProjectorsLagAndTheServeProjectorCatchesUp() async throws {
        try await withEmptyStore { store in
            try await Self.appendNoise(store, count: 3)
            try await withServer(ServeConfiguration(storeDSN: store, projects: false)) { _, client in
                let answer = try await client.get("/health")
                #expect(answer.status == 200)
                let health = try answer.json
                #expect(health["status"] as? String == "ok")
                #expect(health["store"] as? String == "reachable")
                #expect(health["read_models"] as? String == "live")
                #expect(health["mode"] as? String == "primary")
                let projector = try #require(health["projector"] as? [String: Any])
                #expect(projector["lag_events"] as? Int == 3)
                #expect((projector["lag_seconds"] as? Double).map { $0 >= 0 } == true)
            }
            // With its projector, serve takes the events in.
            try await withServer(ServeConfiguration(storeDSN: store, mode: .candidate)) { _, client in
                var lag: Int? = nil
                let deadline = ContinuousClock.now + .seconds(180)
                while ContinuousClock.now < deadline {
                    let health = try await client.get("/health").json
                    lag = (health["projector"] as? [String: Any])?["lag_events"] as? Int
                    if lag == 0 { break }
                    try await Task.sleep(for: .milliseconds(100))
                }
                #expect(lag == 0)
                #expect(try await client.get("/health").json["mode"] as? String == "candidate")
            }
        }
    }

    @Test func theServeProjectorStandsByWhileAnotherProcessProjectsAndTakesOverAfterIt() async throws {
        try await withEmptyStore { store in
            // Another projector of the same consumer (as `project --follow` holds it).
            let other = try await Connection.connect(store)
            defer { other.close() }
            let lock = Projector(store: EventStore(), readSchema: "ledgerlift_read").consumerLock
            try await other.withSession { try $0.lock(lock) }
            try await Self.appendNoise(store, count: 2)
            try await withServer(ServeConfiguration(storeDSN: store)) { _, client in
                try await Task.sleep(for: .milliseconds(500))
                let standingBy = try await client.get("/health")
                #expect(standingBy.status == 200)
                #expect((try standingBy.json["projector"] as? [String: Any])?["lag_events"] as? Int == 2)
                _ = try await other.withSession { try $0.unlock(lock) }
                // Taking over builds the read models blue/green from nothing: generous, for a
                // CI machine whose two cores the other suites keep busy.
                let caughtUp = try await GracefulShutdownTests.waitUntil(seconds: 180) {
                    let health = try await client.get("/health").json
                    return (health["projector"] as? [String: Any])?["lag_events"] as? Int == 0
                }
                #expect(caughtUp)
            }
        }
    }

    @Test func healthAnswers503WhenTheStoreIsDown() async throws {
        try await withEmptyStore { store in
            let database = try await withSession(store) {
                try $0.query("SELECT current_database()").rows[0].decode(at: 0, as: String.self)
            }
            let admin = try await Connection.connect(try TestDatabase.adminDSN())
            defer { admin.close() }
            try await withServer(ServeConfiguration(storeDSN: store, projects: false)) { _, client in
                #expect(try await client.get("/health").status == 200)
                try await admin.withSession { session in
                    _ = try session.execute("ALTER DATABASE \(quoteIdentifier(database)) WITH ALLOW_CONNECTIONS false")
                    _ = try session.query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                        [database])
                }
                let down = try await client.get("/health")
                let read = try await client.get("/reports/aging")
                try await admin.withSession {
                    _ = try $0.execute("ALTER DATABASE \(quoteIdentifier(database)) WITH ALLOW_CONNECTIONS true")
                }
                #expect(down.status == 503)
                #expect(try down.json["status"] as? String == "unavailable")
                #expect(try down.json["store"] as? String == "unreachable")
                #expect(read.status == 503)
                #expect(try read.json["code"] as? String == "store_unavailable")
                ReadRouteTests.expectNoLeak(read.body, path: "/reports/aging with the store down")
                // Reachable again: the pool reconnects.
                #expect(try await client.get("/health").status == 200)
            }
        }
    }

    @Test func metricsParseAsPrometheusTextAndCountRequestsByRouteAndStatus() async throws {
        try await withEmptyStore { store in
            try await withServer(ServeConfiguration(storeDSN: store, projects: false)) { _, client in
                _ = try await client.get("/health")
                _ = try await client.get("/reports/aging")
                _ = try await client.get("/reports/aging")
                _ = try await client.get("/invoices/nope")
                _ = try await client.get("/invoices/bad%20id")
                _ = try await client.get("/nowhere")
                let answer = try await client.get("/metrics")
                #expect(answer.status == 200)
                #expect(answer.header("Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
                let samples = try PrometheusText.parse(answer.body)
                func value(_ name: String, _ labels: [String: String]) -> Double? {
                    samples.first { $0.name == name && $0.labels == labels }?.value
                }
                #expect(
                    value(
                        "ledgerlift_http_requests_total", ["route": "/reports/aging", "method": "GET", "status": "200"])
                        == 2)
                #expect(
                    value(
                        "ledgerlift_http_requests_total", ["route": "/invoices/{id}", "method": "GET", "status": "404"])
                        == 1)
                #expect(
                    value(
                        "ledgerlift_http_requests_total", ["route": "/invoices/{id}", "method": "GET", "status": "400"])
                        == 1)
                #expect(
                    value("ledgerlift_http_requests_total", ["route": "unmatched", "method": "GET", "status": "404"])
                        == 1)
                #expect(
                    value(
                        "ledgerlift_http_request_duration_seconds_count", ["route": "/reports/aging", "method": "GET"])
                        == 2)
                #expect(
                    samples.contains {
                        $0.name == "ledgerlift_http_request_duration_seconds_bucket" && $0.labels["le"] == "+Inf"
                    })
                #expect(value("ledgerlift_projector_lag_events", [:]) == 0)
                #expect(value("ledgerlift_projector_lag_seconds", [:]) == 0)
                #expect(value("ledgerlift_idempotent_replays_total", [:]) == 0)
                // prometheus_client's own parser agrees, when it is installed.
                // (python3 runs on a thread of its own, not on a cooperative thread.)
                let body = answer.body
                if try await onThread({ PrometheusText.pythonParserAvailable }) {
                    let families = try await onThread { try PrometheusText.pythonFamilies(body) }
                    #expect(families.contains("ledgerlift_http_requests"))
                    #expect(families.contains("ledgerlift_http_request_duration_seconds"))
                }
            }
        }
    }
}

/// A strict reader of the Prometheus text format 0.0.4: every line a `# HELP`/`# TYPE`
/// comment or a sample `name{label="value",…} value`, names and labels well formed, every
/// sample's family declared by a `# TYPE` line before it, values numbers.
enum PrometheusText {
    struct Sample: Sendable, Hashable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    static func parse(_ text: String) throws -> [Sample] {
        var samples = [Sample]()
        var typed = [String: String]()
        guard text.isEmpty || text.hasSuffix("\n") else {
            throw TestFailure("the exposition does not end with a newline")
        }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3).map(String.init)
                guard parts.count >= 3, parts[0] == "#", ["HELP", "TYPE"].contains(parts[1]), isName(parts[2]) else {
                    throw TestFailure("bad comment line: \(line)")
                }
                if parts[1] == "TYPE" {
                    guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3])
                    else {
                        throw TestFailure("bad TYPE line: \(line)")
                    }
                    guard typed[parts[2]] == nil else { throw TestFailure("family typed twice: \(line)") }
                    typed[parts[2]] = parts[3]
                }
                continue
            }
            guard !line.isEmpty else { throw TestFailure("empty line in the exposition") }
            var rest = Substring(line)
            let name = String(rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" })
            guard isName(name) else { throw TestFailure("bad metric name: \(line)") }
            rest = rest.dropFirst(name.count)
            var labels = [String: String]()
            if rest.first == "{" {
                rest = rest.dropFirst()
                while rest.first != "}" {
                    let label = String(rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" })
                    guard !label.isEmpty, rest.dropFirst(label.count).hasPrefix("=\"") else {
                        throw TestFailure("bad label: \(line)")
                    }
                    rest = rest.dropFirst(label.count + 2)
                    var value = ""
                    while let c = rest.first, c != "\"" {
                        if c == "\\" {
                            rest = rest.dropFirst()
                            guard let escaped = rest.first, ["\\", "\"", "n"].contains(escaped) else {
                                throw TestFailure("bad escape: \(line)")
                            }
                            value.append(escaped == "n" ? "\n" : escaped)
                        } else {
                            value.append(c)
                        }
                        rest = rest.dropFirst()
                    }
                    guard rest.first == "\"" else { throw TestFailure("unterminated label value: \(line)") }
                    rest = rest.dropFirst()
                    guard labels.updateValue(value, forKey: label) == nil else {
                        throw TestFailure("label twice: \(line)")
                    }
                    if rest.first == "," {
                        rest = rest.dropFirst()
                    } else if rest.first != "}" {
                        throw TestFailure("bad labels: \(line)")
                    }
                }
                rest = rest.dropFirst()
            }
            guard rest.first == " " else { throw TestFailure("no value: \(line)") }
            let fields = rest.dropFirst().split(separator: " ")
            guard (1...2).contains(fields.count),
                let value = Double(fields[0])
                    ?? ["+Inf": .infinity, "-Inf": -.infinity, "NaN": .nan][String(fields[0])]
            else { throw TestFailure("bad value: \(line)") }
            let family =
                ["_bucket", "_sum", "_count"].first {
                    name.hasSuffix($0) && typed[String(name.dropLast($0.count))] != nil
                }
                .map { String(name.dropLast($0.count)) } ?? name
            guard typed[family] != nil else { throw TestFailure("sample before its # TYPE: \(line)") }
            samples.append(Sample(name: name, labels: labels, value: value))
        }
        return samples
    }

    static func isName(_ name: String) -> Bool {
        guard let first = name.first, first.isASCII, first.isLetter || first == "_" || first == ":" else {
            return false
        }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ":") }
    }

    static var pythonParserAvailable: Bool {
        (try? python(["-c", "import prometheus_client.parser"], input: "").status) == 0
    }

    /// The family names prometheus_client's parser reads from `text`.
    static func pythonFamilies(_ text: String) throws -> Set<String> {
        let out = try python(
            [
                "-c",
                "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as f\n"
                    + "print('\\n'.join(m.name for m in f(sys.stdin.read())))",
            ], input: text)
        guard out.status == 0 else { throw TestFailure("prometheus_client refused the exposition: \(out.stderr)") }
        return Set(out.stdout.split(separator: "\n").map(String.init))
    }

    static func python(_ arguments: [String], input: String) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + arguments
        let (stdin, stdout, stderr) = (Pipe(), Pipe(), Pipe())
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        let errors = Locked<Data?>(nil)
        let reader = Thread { errors.set(stderr.fileHandleForReading.readDataToEndOfFile()) }
        reader.start()
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        while errors.value == nil { usleep(1000) }
        return (
            process.terminationStatus, String(decoding: out, as: UTF8.self),
            String(decoding: errors.value!, as: UTF8.self)
        )
    }
}
