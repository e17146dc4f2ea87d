import Foundation
import Synchronization
import Testing

@testable import Simulator

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A tiny HTTP/1.1 server on 127.0.0.1 for the candidate client's tests: it records each
/// request (method, path, headers, body, which connection) and answers as told — or never.
/// Not the candidate: `serve --mode candidate` itself is tested by the server's tests.
final class TestHTTPServer: Sendable {
    struct Request: Sendable, Hashable {
        var method: String
        var path: String
        /// Names lowercased.
        var headers: [String: String]
        var body: String
        /// 1 for the first connection accepted, 2 for the next…
        var connection: Int
    }

    enum Answer: Sendable {
        /// A response with Content-Length (or chunked), optionally closing the connection.
        case status(Int, body: String = "", chunked: Bool = false, close: Bool = false)
        /// Reads the request and never answers (a hung candidate).
        case silence
    }

    let port: UInt16
    private let listener: Int32
    private let answer: @Sendable (Request) -> Answer
    private let state = Mutex(State())

    private struct State {
        var requests: [Request] = []
        var connections = 0
        var sockets: [Int32] = []
        var stopped = false
    }

    init(answer: @escaping @Sendable (Request) -> Answer = { _ in .status(202, body: "{\"recorded\":true}") }) throws {
        self.answer = answer
        #if canImport(Glibc)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
            let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(fd, 16) == 0 else { throw TestServerFailure("bind/listen: \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = UInt16(bigEndian: address.sin_port)
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    var url: String { "http://127.0.0.1:\(port)" }

    var requests: [Request] { state.withLock { $0.requests } }
    var connections: Int { state.withLock { $0.connections } }

    /// Stops listening and closes every connection.
    func stop() {
        let sockets = state.withLock { state in
            state.stopped = true
            return state.sockets
        }
        shutdown(listener, Int32(SHUT_RDWR))
        for socket in sockets { shutdown(socket, Int32(SHUT_RDWR)) }
    }

    /// Closes the accepted connections, and keeps listening.
    func dropConnections() {
        for socket in state.withLock({ $0.sockets }) { shutdown(socket, Int32(SHUT_RDWR)) }
    }

    deinit {
        stop()
        close(listener)
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            let number: Int? = state.withLock { state in
                guard !state.stopped else { return nil }
                state.connections += 1
                state.sockets.append(client)
                return state.connections
            }
            guard let number else {
                close(client)
                return
            }
            let thread = Thread { [self] in serve(client, connection: number) }
            thread.start()
        }
    }

    private func serve(_ socket: Int32, connection: Int) {
        defer {
            state.withLock { $0.sockets.removeAll { $0 == socket } }
            close(socket)
        }
        var buffer = [UInt8]()
        func fill() -> Bool {
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = recv(socket, &chunk, chunk.count, 0)
            guard count > 0 else { return false }
            buffer += chunk[..<count]
            return true
        }
        while true {
            var headEnd: Range<Int>?
            while true {
                headEnd = buffer.firstRange(of: [13, 10, 13, 10])
                if headEnd != nil { break }
                guard fill() else { return }
            }
            let head = String(decoding: buffer[..<headEnd!.lowerBound], as: UTF8.self)
            buffer.removeSubrange(..<headEnd!.upperBound)
            var lines = head.split(separator: "\r\n")
            let requestLine = lines.removeFirst().split(separator: " ")
            var headers = [String: String]()
            for line in lines {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                    in: .whitespaces)
            }
            let length = Int(headers["content-length"] ?? "0") ?? 0
            while buffer.count < length { guard fill() else { return } }
            let body = String(decoding: buffer[..<length], as: UTF8.self)
            buffer.removeSubrange(..<length)
            let request = Request(
                method: String(requestLine[0]), path: String(requestLine[1]), headers: headers, body: body,
                connection: connection)
            state.withLock { $0.requests.append(request) }
            switch answer(request) {
            case .silence:
                // Until the client gives up and closes.
                while fill() {}
                return
            case .status(let status, let body, let chunked, let close):
                var response = "HTTP/1.1 \(status) Answer\r\nContent-Type: application/json\r\n"
                if close { response += "Connection: close\r\n" }
                if chunked {
                    response += "Transfer-Encoding: chunked\r\n\r\n"
                    let bytes = Array(body.utf8)
                    let middle = bytes.count / 2
                    for part in [bytes[..<middle], bytes[middle...]] where !part.isEmpty {
                        response +=
                            String(part.count, radix: 16) + ";ext=1\r\n" + String(decoding: part, as: UTF8.self)
                            + "\r\n"
                    }
                    response += "0\r\nTrailer-Field: x\r\n\r\n"
                } else {
                    response += "Content-Length: \(body.utf8.count)\r\n\r\n" + body
                }
                let bytes = Array(response.utf8)
                var sent = 0
                while sent < bytes.count {
                    let count = bytes[sent...].withUnsafeBytes { send(socket, $0.baseAddress!, $0.count, 0) }
                    guard count > 0 else { return }
                    sent += count
                }
                if close { return }
            }
        }
    }
}

struct TestServerFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A port nothing listens on: bound, then closed.
func deadPort() throws -> UInt16 {
    let server = try TestHTTPServer()
    let port = server.port
    server.stop()
    return port
}

@Suite struct CandidateEndpointTests {
    @Test func parsesHostPortAndBasePath() throws {
        let plain = try CandidateEndpoint(url: "http://127.0.0.1:8080")
        #expect(plain.host == "127.0.0.1")
        #expect(plain.port == 8080)
        #expect(plain.basePath == "")
        #expect(plain.description == "http://127.0.0.1:8080")
        let named = try CandidateEndpoint(url: "http://candidate.internal/ledger/")
        #expect(named.host == "candidate.internal")
        #expect(named.port == 80)
        #expect(named.basePath == "/ledger")
        let six = try CandidateEndpoint(url: "http://[::1]:9000/x")
        #expect(six.host == "::1")
        #expect(six.port == 9000)
        #expect(six.description == "http://[::1]:9000/x")
    }

    @Test func refusesWhatItCannotServe() {
        let cases: [(String, String)] = [
            ("https://example.com", "must start with http://"),
            ("http://user:secret@example.com", "cannot carry user information"),
            ("http://example.com?x=1", "query or a fragment"),
            ("http://:8080", "has no host"),
            ("http://example.com:0", "port must be 1 to 65535"),
            ("http://example.com:70000", "port must be 1 to 65535"),
            ("http://example.com/a b", "printable ASCII"),
        ]
        for (url, expected) in cases {
            do {
                _ = try CandidateEndpoint(url: url)
                Issue.record("\(url) was accepted")
            } catch {
                #expect(error.description.contains(expected), "\(url): \(error)")
                #expect(!error.description.contains("secret"), "\(url): \(error)")
            }
        }
    }
}

@Suite struct CandidateClientTests {
    @Test func sendsTheHeadersAndBodyAndKeepsTheConnection() throws {
        let server = try TestHTTPServer()
        defer { server.stop() }
        let client = CandidateClient(endpoint: try CandidateEndpoint(url: server.url + "/base"))
        defer { client.close() }
        let first = try client.post(
            "/commands/record_payment", body: Array("{\"a\":1}".utf8),
            headers: [("Idempotency-Key", "0a1b2c3d:7/1"), ("Ledgerlift-Legacy-Xid", "123456")])
        let second = try client.post("/commands/void_invoice", body: Array("{}".utf8), headers: [])
        #expect(first == CandidateClient.Response(status: 202, bodyPrefix: "{\"recorded\":true}"))
        #expect(second.status == 202)
        let requests = server.requests
        #expect(requests.count == 2)
        #expect(requests[0].method == "POST")
        #expect(requests[0].path == "/base/commands/record_payment")
        #expect(requests[0].body == "{\"a\":1}")
        #expect(requests[0].headers["idempotency-key"] == "0a1b2c3d:7/1")
        #expect(requests[0].headers["ledgerlift-legacy-xid"] == "123456")
        #expect(requests[0].headers["content-type"] == "application/json")
        #expect(requests[0].headers["content-length"] == "7")
        #expect(requests[0].headers["host"] == "127.0.0.1:\(server.port)")
        #expect(requests[1].path == "/base/commands/void_invoice")
        // One keep-alive connection for both.
        #expect(requests.map(\.connection) == [1, 1])
    }

    @Test func readsChunkedAnswersAndReconnectsAfterConnectionClose() throws {
        let counter = Mutex(0)
        let server = try TestHTTPServer { _ in
            let n = counter.withLock {
                $0 += 1
                return $0
            }
            return n == 1
                ? .status(422, body: "{\"code\":\"invalid_state\"}", chunked: true)
                : .status(202, body: "ok", close: true)
        }
        defer { server.stop() }
        let client = CandidateClient(endpoint: try CandidateEndpoint(url: server.url))
        defer { client.close() }
        #expect(
            try client.post("/a", body: [], headers: [])
                == .init(status: 422, bodyPrefix: "{\"code\":\"invalid_state\"}"))
        #expect(try client.post("/b", body: [], headers: []) == .init(status: 202, bodyPrefix: "ok"))
        #expect(try client.post("/c", body: [], headers: []) == .init(status: 202, bodyPrefix: "ok"))
        // The chunked answer kept the connection; `Connection: close` did not.
        #expect(server.requests.map(\.connection) == [1, 1, 2])
    }

    @Test func aKeptConnectionTheServerClosedIsReplacedOnce() throws {
        let server = try TestHTTPServer()
        defer { server.stop() }
        let client = CandidateClient(endpoint: try CandidateEndpoint(url: server.url))
        defer { client.close() }
        #expect(try client.post("/1", body: [], headers: []).status == 202)
        // The server closes the kept connection (as an idle timeout would).
        server.dropConnections()
        Thread.sleep(forTimeInterval: 0.05)
        #expect(try client.post("/2", body: [], headers: []).status == 202)
        #expect(server.requests.map(\.connection) == [1, 2])
    }

    @Test func aDeadCandidateFailsFastWithConnect() throws {
        let client = CandidateClient(endpoint: try CandidateEndpoint(url: "http://127.0.0.1:\(try deadPort())"))
        #expect {
            _ = try client.post("/a", body: [], headers: [])
        } throws: { error in
            guard case .connect(let why) = error as? CandidateError else { return false }
            return why.contains("refused")
        }
    }

    @Test func aSilentCandidateTimesOutWithinTheTimeout() throws {
        let server = try TestHTTPServer { _ in .silence }
        defer { server.stop() }
        let client = CandidateClient(endpoint: try CandidateEndpoint(url: server.url), timeout: .milliseconds(300))
        let started = ContinuousClock.now
        #expect {
            _ = try client.post("/a", body: [], headers: [])
        } throws: { error in
            guard case .timeout = error as? CandidateError else { return false }
            return true
        }
        // At least the timeout (an upper bound would be a wall-clock test: speed is make bench's).
        #expect(ContinuousClock.now - started >= .milliseconds(300))
        #expect(server.requests.count == 1)
    }
}
