import Commands
import Fixtures
import Foundation
import Histogram
import Postgres

/// Issue 16's benchmark: commands per second and latency of `ledgerlift serve` over real HTTP,
/// with N concurrent clients (default 16), each its own keep-alive connection:
///
/// - **own streams**: each client runs billing flows on customers of its own — create the
///   customer, start a subscription (plan 3, USD monthly), draft its invoice (a subscription
///   line and a 20 % tax line), finalize it, record its payment, update the customer's email:
///   six commands per flow;
/// - the same **with `Idempotency-Key`** (a fresh key per request), to price the key's store
///   round trips (lookup, advisory lock, stored response);
/// - **one hot customer**: every client drafts, finalizes and pays one-off invoices of the
///   same customer and updates its email; the customer's advisory lock makes them take turns;
/// - **baseline**, same run, same store: the own-streams flows through `CommandExecutor`
///   in-process (one connection per client, no HTTP, no wait for the read models), while the
///   server's projector keeps the read models following.
///
/// Ratios are printed against the baseline and between runs, so the figures mean something on
/// any machine. The server is the release `ledgerlift` (`make bench` builds it) started as
/// `serve` on a fresh store holding the reference fixture's backfill.
///
/// Environment: `LEDGERLIFT_BENCH_SERVE_SECONDS` (each run's length, default 10),
/// `LEDGERLIFT_BENCH_SERVE_CLIENTS` (default 16), `LEDGERLIFT_BENCH_SERVE_BINARY` (the
/// `ledgerlift` to start; default: beside this executable, else on PATH).
enum ServeBenchmark {
    static func run(_ bench: BenchContext) async throws {
        let environment = ProcessInfo.processInfo.environment
        let seconds = environment["LEDGERLIFT_BENCH_SERVE_SECONDS"].flatMap(Int.init) ?? 10
        let clients = environment["LEDGERLIFT_BENCH_SERVE_CLIENTS"].flatMap(Int.init) ?? 16
        let binary = try environment["LEDGERLIFT_BENCH_SERVE_BINARY"] ?? Self.ledgerliftBinary()
        say("  machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, load \(Self.loadAverage())")

        let legacy = try await bench.scratchDatabase("ledgerlift_bench_serve_legacy")
        let store = try await bench.scratchDatabase("ledgerlift_bench_serve_store")
        let mapping = try FixtureDirectory.locate().url.appendingPathComponent("reference/mapping.yaml").path
        let clock = ContinuousClock()
        let setup = clock.now
        for arguments in [
            ["fixture", "load", "--dsn", legacy], ["store", "init", "--store", store],
            ["backfill", "--legacy", legacy, "--store", store, "--mapping", mapping], ["project", "--store", store],
        ] {
            try runProcess(binary, arguments)
        }
        say("  store: reference fixture backfilled and projected in \(String(format: "%.1f", (clock.now - setup).seconds)) s")

        let port = try RawHTTPClient.freePort()
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerlift-bench-serve-\(getpid()).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: binary)
        server.arguments = ["serve", "--store", store, "--listen", "127.0.0.1:\(port)"]
        let logHandle = try FileHandle(forWritingTo: log)
        server.standardOutput = logHandle
        server.standardError = logHandle
        try server.run()
        defer {
            server.terminate()
            server.waitUntilExit()
            try? logHandle.close()
            try? FileManager.default.removeItem(at: log)
        }
        try await Self.waitForHealth(port: port, server: server, log: log)

        // The hot customer, created once.
        let hot = "90000000"
        let created = try RawHTTPClient(port: port).send(
            "POST", "/commands/create_customer",
            body: #"{"customer_id":"\#(hot)","email":"hot@example.com","name":"Hot","currency":"USD","at":"2026-03-01T00:00:00Z"}"#)
        guard created.status == 200 else { throw RawHTTPClient.Failure(description: "hot customer: \(created.body)") }

        let duration = Duration.seconds(seconds)
        say("  \(clients) clients, \(seconds) s per run; own streams: 6-command flows (customer, subscription, invoice, finalize, payment, update)")
        let baseline = try await Self.direct(store: store, clients: clients, duration: duration, phase: 1)
        say(baseline.line("baseline: CommandExecutor in-process, own streams", against: nil))
        let own = try Self.http(port: port, clients: clients, duration: duration, phase: 2, flow: .own, key: false)
        say(own.line("serve, own streams, no Idempotency-Key", against: baseline))
        let keyed = try Self.http(port: port, clients: clients, duration: duration, phase: 3, flow: .own, key: true)
        say(keyed.line("serve, own streams, Idempotency-Key", against: baseline))
        let hotRun = try Self.http(port: port, clients: clients, duration: duration, phase: 4, flow: .hot(hot), key: false)
        say(hotRun.line("serve, one hot customer, no Idempotency-Key", against: baseline))
        let single = try Self.http(port: port, clients: 1, duration: .seconds(max(2, seconds / 2)), phase: 5, flow: .own, key: false)
        say(single.line("serve, own streams, 1 client (no contention)", against: baseline))
        say(
            String(
                format: "  ratios: with-key/without-key %.2f (commands/s), p99 %.2f×; hot/own-streams %.2f (commands/s), p99 %.2f×; "
                    + "serve/CommandExecutor %.2f; 16 clients/1 client %.2f",
                keyed.rate / own.rate, keyed.p99Ms / own.p99Ms, hotRun.rate / own.rate, hotRun.p99Ms / own.p99Ms,
                own.rate / baseline.rate, own.rate / single.rate))
        say("  append conflicts that outlasted the executor's retries (server metric): \(try Self.appendConflicts(port: port))")
        say("  machine load after: \(Self.loadAverage())")
    }

    // MARK: - Runs

    enum Flow {
        case own
        case hot(String)
    }

    /// What one run measured.
    struct Figures: Sendable {
        var commands = 0
        var flows = 0
        var retries = 0
        var errors: [String: Int] = [:]
        var elapsed: Duration = .zero
        var latency = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000)
        var maxMicroseconds: UInt64 = 0

        mutating func record(_ latency: Duration) {
            let micros = UInt64(max(1, (latency.seconds * 1_000_000).rounded()))
            _ = self.latency.record(min(micros, 3_600_000_000))
            maxMicroseconds = max(maxMicroseconds, micros)
        }

        mutating func merge(_ other: Figures) {
            commands += other.commands
            flows += other.flows
            retries += other.retries
            for (code, count) in other.errors { errors[code, default: 0] += count }
            latency.add(other.latency)
            maxMicroseconds = max(maxMicroseconds, other.maxMicroseconds)
            elapsed = max(elapsed, other.elapsed)
        }

        var rate: Double { Double(commands) / elapsed.seconds }
        func ms(_ percentile: Double) -> Double { Double(latency.valueAtPercentile(percentile)) / 1000 }
        var p99Ms: Double { ms(99) }

        func line(_ label: String, against baseline: Figures?) -> String {
            let errorText =
                errors.isEmpty
                ? "0 errors" : errors.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
            let ratio = baseline.map { String(format: ", %.2f of baseline", rate / $0.rate) } ?? ""
            return String(
                format: "  %@: %.0f commands/s (%d commands, %d flows, %.1f s), p50 %.1f ms, p99 %.1f ms, max %.1f ms, "
                    + "%d retries (409), %@%@",
                label, rate, commands, flows, elapsed.seconds, ms(50), ms(99), Double(maxMicroseconds) / 1000, retries,
                errorText, ratio)
        }
    }

    /// One command of a flow: its route name and JSON body.
    typealias Step = (name: String, body: String)

    /// The commands of flow `n` of a client; ids are numeric, unique per phase, client and flow.
    static func steps(_ flow: Flow, phase: Int, client: Int, n: Int) -> [Step] {
        let id = String(phase * 10_000_000 + client * 100_000 + n)
        let base = 1_772_359_200 + n * 10  // 2026-03-01T10:00:00Z
        func at(_ offset: Int) -> String {
            var time = time_t(base + offset)
            var parts = tm()
            gmtime_r(&time, &parts)
            return String(
                format: "%04d-%02d-%02dT%02d:%02d:%02dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
        }
        switch flow {
        case .own:
            return [
                (
                    "create_customer",
                    #"{"customer_id":"\#(id)","email":"c\#(id)@example.com","name":"Bench \#(id)","currency":"USD","at":"\#(at(0))"}"#
                ),
                (
                    "start_subscription",
                    #"{"subscription_id":"\#(id)","customer_id":"\#(id)","plan_id":"3","quantity":1,"at":"\#(at(1))"}"#
                ),
                (
                    "draft_invoice",
                    #"{"invoice_id":"\#(id)","customer_id":"\#(id)","subscription_id":"\#(id)","period_start":"\#(at(1))","#
                        + #""period_end":"\#(at(2_678_400))","lines":[{"invoice_line_id":"\#(id)1","kind":"subscription","#
                        + #""description":"Business","quantity":"1","unit_amount":"99.00","period_start":"\#(at(1))","#
                        + #""period_end":"\#(at(2_678_400))"}],"tax_line_id":"\#(id)2","tax_rate":"0.2","at":"\#(at(2))"}"#
                ),
                ("finalize_invoice", #"{"invoice_id":"\#(id)","at":"\#(at(3))"}"#),
                ("record_payment", #"{"payment_id":"\#(id)","invoice_id":"\#(id)","status":"succeeded","at":"\#(at(4))"}"#),
                ("update_customer", #"{"customer_id":"\#(id)","email":"d\#(id)@example.com","at":"\#(at(5))"}"#),
            ]
        case .hot(let customer):
            return [
                (
                    "draft_invoice",
                    #"{"invoice_id":"\#(id)","customer_id":"\#(customer)","lines":[{"invoice_line_id":"\#(id)1","#
                        + #""kind":"one_off","description":"Usage","quantity":"3","unit_amount":"12.50"}],"#
                        + #""tax_line_id":"\#(id)2","tax_rate":"0.2","at":"\#(at(0))"}"#
                ),
                ("finalize_invoice", #"{"invoice_id":"\#(id)","at":"\#(at(1))"}"#),
                ("record_payment", #"{"payment_id":"\#(id)","invoice_id":"\#(id)","status":"succeeded","at":"\#(at(2))"}"#),
                ("update_customer", #"{"customer_id":"\#(customer)","email":"hot\#(id)@example.com","at":"\#(at(3))"}"#),
            ]
        }
    }

    /// `clients` threads, each on its own keep-alive connection, sending flows until the time is
    /// up (a flow in progress is finished). A 409 (append conflict, key in use) is retried, up
    /// to 10 times; any other failure ends the flow and is counted by its problem code.
    static func http(port: UInt16, clients: Int, duration: Duration, phase: Int, flow: Flow, key: Bool) throws -> Figures {
        let results = BenchLocked<[Figures]>([])
        let start = ContinuousClock.now
        let deadline = start + duration
        let group = DispatchGroup()
        for client in 0..<clients {
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                var figures = Figures()
                let connection = RawHTTPClient(port: port)
                var n = 0
                flows: while ContinuousClock.now < deadline {
                    n += 1
                    for (index, step) in Self.steps(flow, phase: phase, client: client, n: n).enumerated() {
                        let headers = key ? [("Idempotency-Key", "bench-\(phase)-\(client)-\(n)-\(index)")] : []
                        var attempts = 0
                        while true {
                            attempts += 1
                            let sent = ContinuousClock.now
                            let answer: RawHTTPClient.Answer
                            do {
                                answer = try connection.send("POST", "/commands/\(step.name)", body: step.body, headers: headers)
                            } catch {
                                figures.errors["transport", default: 0] += 1
                                connection.close()
                                continue flows
                            }
                            if answer.status == 200 {
                                figures.record(ContinuousClock.now - sent)
                                figures.commands += 1
                                break
                            }
                            if answer.status == 409 && attempts <= 10 && !answer.body.contains("\"already_exists\"") {
                                figures.retries += 1
                                continue
                            }
                            figures.errors["\(answer.status) \(Self.code(answer.body)) (\(step.name))", default: 0] += 1
                            continue flows
                        }
                    }
                    figures.flows += 1
                }
                figures.elapsed = ContinuousClock.now - start
                results.withLock { $0.append(figures) }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        group.wait()
        var total = Figures()
        for figures in results.value { total.merge(figures) }
        return total
    }

    /// The baseline: the own-streams flows through `CommandExecutor` in this process, one
    /// connection per client, no HTTP and no wait for the read models after each command.
    static func direct(store: String, clients: Int, duration: Duration, phase: Int) async throws -> Figures {
        let executor = CommandExecutor()
        let start = ContinuousClock.now
        let deadline = start + duration
        return try await withThrowingTaskGroup(of: Figures.self) { group in
            for client in 0..<clients {
                group.addTask {
                    var figures = Figures()
                    let decoder = JSONDecoder()
                    let connection = try await Connection.connect(store)
                    defer { connection.close() }
                    var n = 0
                    flows: while ContinuousClock.now < deadline {
                        n += 1
                        for step in Self.steps(.own, phase: phase, client: client, n: n) {
                            let json = #"{"command":"\#(step.name)","# + step.body.dropFirst()
                            let command = try decoder.decode(BillingCommand.self, from: Data(json.utf8))
                            var attempts = 0
                            while true {
                                attempts += 1
                                let sent = ContinuousClock.now
                                do {
                                    _ = try await executor.execute(command, requestID: nil, on: connection)
                                    figures.record(ContinuousClock.now - sent)
                                    figures.commands += 1
                                    break
                                } catch let error as CommandError {
                                    if case .conflict = error, attempts <= 10 {
                                        figures.retries += 1
                                        continue
                                    }
                                    figures.errors["\(error) (\(step.name))", default: 0] += 1
                                    continue flows
                                } catch {
                                    figures.errors["\(String(describing: error).prefix(160)) (\(step.name))", default: 0] += 1
                                    continue flows
                                }
                            }
                        }
                        figures.flows += 1
                    }
                    figures.elapsed = ContinuousClock.now - start
                    return figures
                }
            }
            var total = Figures()
            for try await figures in group { total.merge(figures) }
            return total
        }
    }

    // MARK: - Plumbing

    /// The problem document's `code` (or a short excerpt of a body that is not one).
    static func code(_ body: String) -> String {
        if let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
            let code = object["code"] as? String
        {
            return code
        }
        return String(body.prefix(60))
    }

    static func waitForHealth(port: UInt16, server: Process, log: URL) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            guard server.isRunning else {
                let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
                throw RawHTTPClient.Failure(description: "ledgerlift serve exited: \(output.suffix(2000))")
            }
            if let answer = try? RawHTTPClient(port: port).send("GET", "/health"), answer.status == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw RawHTTPClient.Failure(description: "ledgerlift serve did not answer /health within 60 s")
    }

    /// `ledgerlift_append_conflicts_total`, summed over commands, from `/metrics`.
    static func appendConflicts(port: UInt16) throws -> Int {
        let metrics = try RawHTTPClient(port: port).send("GET", "/metrics").body
        var total = 0.0
        for line in metrics.split(separator: "\n") where line.hasPrefix("ledgerlift_append_conflicts_total") {
            total += line.split(separator: " ").last.flatMap { Double($0) } ?? 0
        }
        return Int(total)
    }

    static func loadAverage() -> String {
        let text = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?"
        return text.split(separator: " ").prefix(3).joined(separator: " ")
    }

    /// The release `ledgerlift` beside this executable (`make bench` builds it), else on PATH.
    static func ledgerliftBinary() throws -> String {
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        let sibling = here.appendingPathComponent("ledgerlift").path
        if FileManager.default.isExecutableFile(atPath: sibling) { return sibling }
        return try findExecutable("ledgerlift")
    }
}

/// A value behind a lock, for the client threads' results.
final class BenchLocked<Value>: @unchecked Sendable {
    private var value_: Value
    private let lock = NSLock()
    init(_ value: Value) { value_ = value }
    var value: Value { lock.withLock { value_ } }
    func withLock<T>(_ body: (inout Value) -> T) -> T { lock.withLock { body(&value_) } }
}
