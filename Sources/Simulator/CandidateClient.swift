#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where the candidate write path (`ledgerlift serve --mode candidate`) listens: an `http://`
/// URL with a host, an optional port (80) and an optional base path (`/` when none).
///
/// Plain HTTP only: the client is a blocking socket made to run inside a legacy transaction's
/// thread, without an event loop or TLS; the candidate runs next to the simulator. User info,
/// queries and fragments are refused (a password in the URL would end up in the report).
public struct CandidateEndpoint: Sendable, Hashable, CustomStringConvertible {
    public let host: String
    public let port: UInt16
    /// The path commands go under, without a trailing slash (`""` for the root).
    public let basePath: String

    /// - Throws: ``CandidateError/invalidURL(_:)`` naming what is wrong.
    public init(url: String) throws(CandidateError) {
        guard url.hasPrefix("http://") else {
            throw .invalidURL("the candidate URL must start with http:// (TLS is not supported): \(Self.visible(url))")
        }
        var rest = Substring(url.dropFirst("http://".count))
        guard !rest.contains("?"), !rest.contains("#") else {
            throw .invalidURL("the candidate URL cannot have a query or a fragment: \(Self.visible(url))")
        }
        let authority = rest.prefix { $0 != "/" }
        rest = rest.dropFirst(authority.count)
        guard !authority.contains("@") else {
            throw .invalidURL("the candidate URL cannot carry user information (credentials would be printed)")
        }
        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                throw .invalidURL("unclosed IPv6 address in the candidate URL: \(Self.visible(url))")
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else {
                    throw .invalidURL("unexpected text after the IPv6 address: \(Self.visible(url))")
                }
                portText = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty else { throw .invalidURL("the candidate URL has no host: \(Self.visible(url))") }
        var port: UInt16 = 80
        if let portText {
            guard let value = UInt16(portText), value > 0 else {
                throw .invalidURL("the candidate URL's port must be 1 to 65535: \(Self.visible(url))")
            }
            port = value
        }
        var path = String(rest)
        while path.hasSuffix("/") { path.removeLast() }
        guard path.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw .invalidURL("the candidate URL's path must be printable ASCII without spaces: \(Self.visible(url))")
        }
        self.host = String(host)
        self.port = port
        self.basePath = path
    }

    /// The URL, normalised (what the report prints).
    public var description: String {
        let shown = host.contains(":") ? "[\(host)]" : host
        return "http://\(shown):\(port)\(basePath)"
    }

    /// The `Host` header's value.
    var hostHeader: String { (host.contains(":") ? "[\(host)]" : host) + ":\(port)" }

    /// A URL as an error may show it: cut short, and its user info (if any) hidden.
    private static func visible(_ url: String) -> String {
        var text = url
        if let at = text.firstIndex(of: "@"), let scheme = text.firstRange(of: "://"), scheme.upperBound <= at {
            text = String(text[..<scheme.upperBound]) + "***" + String(text[at...])
        }
        return text.count > 200 ? String(text.prefix(200)) + "…" : text
    }
}

/// What went wrong talking to the candidate. Never fatal to the legacy operation: counted and
/// sampled by ``CandidateFeed``.
public enum CandidateError: Error, Sendable, Hashable, CustomStringConvertible {
    case invalidURL(String)
    /// The host name could not be resolved or no address accepted the connection.
    case connect(String)
    /// No complete answer within the request's time.
    case timeout(String)
    /// Reading or writing the socket failed, or the candidate closed it early.
    case io(String)
    /// The answer is not HTTP/1.1 the client understands.
    case malformedResponse(String)

    public var description: String {
        switch self {
        case .invalidURL(let why): why
        case .connect(let why): "could not connect to the candidate: \(why)"
        case .timeout(let why): "the candidate did not answer in time: \(why)"
        case .io(let why): "talking to the candidate failed: \(why)"
        case .malformedResponse(let why): "the candidate's answer is not understood: \(why)"
        }
    }
}

/// A blocking HTTP/1.1 client for one simulator worker: `POST`s a JSON body and reads the
/// answer's status (and the start of its body, for the report's samples).
///
/// Blocking on purpose: it runs on the legacy connection's thread, inside the legacy
/// transaction before its COMMIT (as the journal's blocking flush does), so the command reaches
/// the candidate before the transaction can be seen by the shadow tailer. One keep-alive
/// connection, opened on first use and again after a failure or a `Connection: close`; a
/// request that finds a kept connection closed by the server (it timed it out) is sent once
/// more on a new one before any answer was read — safe because every request carries an
/// `Idempotency-Key`. Every request, connecting included, ends within `timeout`.
///
/// Not thread-safe: one worker owns it (``CandidateFeed/Worker`` keeps it under a lock).
public final class CandidateClient {
    public let endpoint: CandidateEndpoint
    public let timeout: Duration
    private var socket: Int32 = -1
    /// Bytes of the body kept in a ``Response`` by default (the rest is read and dropped).
    public static let defaultKeptBody = 512
    /// Bytes of the body this client keeps.
    public let keptBody: Int
    /// The most header bytes accepted.
    static let maxHeader = 64 * 1024

    /// An answer.
    public struct Response: Sendable, Hashable {
        public var status: Int
        /// The body's first ``CandidateClient/keptBody`` bytes, as text.
        public var bodyPrefix: String
    }

    /// - Parameter keptBody: bytes of each answer's body kept in ``Response/bodyPrefix``
    ///   (the candidate feed needs a problem's code; the ledger application the whole answer).
    public init(endpoint: CandidateEndpoint, timeout: Duration = .seconds(2), keptBody: Int = CandidateClient.defaultKeptBody) {
        self.endpoint = endpoint
        self.timeout = timeout
        self.keptBody = max(0, keptBody)
    }

    deinit { close() }

    /// Closes the kept connection (the next request opens another).
    public func close() {
        if socket >= 0 {
            _ = systemClose(socket)
            socket = -1
        }
    }

    /// `POST <base path><path>` with `body` (`application/json`) and `headers`, and its answer.
    ///
    /// - Throws: ``CandidateError`` when no complete answer came within ``timeout``; the
    ///   connection is closed then.
    public func post(_ path: String, body: [UInt8], headers: [(String, String)]) throws(CandidateError) -> Response {
        let deadline = ContinuousClock.now + timeout
        var head = "POST \(endpoint.basePath)\(path) HTTP/1.1\r\nHost: \(endpoint.hostHeader)\r\n"
        head += "User-Agent: ledgerlift-simulate\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "\r\n"
        let request = Array(head.utf8) + body
        let reused = socket >= 0
        do {
            return try exchange(request, deadline: deadline)
        } catch .staleConnection where reused {
            close()
            do {
                return try exchange(request, deadline: deadline)
            } catch {
                close()
                throw error.public
            }
        } catch {
            close()
            throw error.public
        }
    }

    /// Internal failures: ``stale`` tells a kept connection the server had closed (nothing
    /// read) from other failures.
    fileprivate enum Failure: Error {
        case staleConnection(String)
        case other(CandidateError)

        var `public`: CandidateError {
            switch self {
            case .staleConnection(let why): .io(why)
            case .other(let error): error
            }
        }
    }

    private func exchange(_ request: [UInt8], deadline: ContinuousClock.Instant) throws(Failure) -> Response {
        if socket < 0 {
            do { socket = try Self.connect(endpoint, deadline: deadline) } catch { throw .other(error) }
        }
        try write(request, deadline: deadline)
        var reader = Reader(socket: socket, deadline: deadline)
        while true {
            let (status, headers) = try readHead(&reader)
            let bodyPrefix = try readBody(&reader, status: status, headers: headers)
            // 1xx answers come before the real one (100 Continue, 103 Early Hints).
            if (100..<200).contains(status) && status != 101 { continue }
            let closes = headers["connection"]?.lowercased().contains("close") ?? false
            if closes || reader.readToEnd { close() }
            return Response(status: status, bodyPrefix: bodyPrefix)
        }
    }

    private func write(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws(Failure) {
        var offset = 0
        while offset < bytes.count {
            try Self.wait(socket, for: Int16(POLLOUT), deadline: deadline)
            let sent = bytes.withUnsafeBytes { buffer in
                systemSend(socket, buffer.baseAddress! + offset, bytes.count - offset)
            }
            if sent < 0 {
                let code = errno
                if code == EINTR || code == EAGAIN || code == EWOULDBLOCK { continue }
                // The server closed a kept connection: nothing of this request was answered.
                if code == EPIPE || code == ECONNRESET { throw .staleConnection(Self.errorText(code)) }
                throw .other(.io("sending: \(Self.errorText(code))"))
            }
            offset += sent
        }
    }

    /// Reads up to `\r\n\r\n`: the status and the headers (names lowercased).
    private func readHead(_ reader: inout Reader) throws(Failure) -> (Int, [String: String]) {
        var head = [UInt8]()
        while true {
            if let end = reader.buffer.firstRange(of: [13, 10, 13, 10]) {
                head = Array(reader.buffer[..<end.lowerBound])
                reader.buffer.removeSubrange(..<end.upperBound)
                break
            }
            guard reader.buffer.count <= Self.maxHeader else { throw .other(.malformedResponse("headers over 64 KiB")) }
            guard try reader.fill() else {
                // Closed before a single byte: a kept connection the server had closed.
                if reader.received == 0 { throw .staleConnection("the candidate closed the connection") }
                throw .other(.io("the candidate closed the connection in the middle of its answer"))
            }
        }
        let text = String(decoding: head, as: UTF8.self)
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1].count == 3, let status = Int(parts[1]) else {
            throw .other(.malformedResponse("status line \(statusLine.prefix(100))"))
        }
        var headers = [String: String]()
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingWhitespace()
            headers[name] = headers[name].map { $0 + ", " + value } ?? value
        }
        return (status, headers)
    }

    /// Reads the body (Content-Length, chunked, or to the end of the connection) and returns
    /// its first ``keptBody`` bytes as text.
    private func readBody(_ reader: inout Reader, status: Int, headers: [String: String]) throws(Failure) -> String {
        var kept = [UInt8]()
        func keep(_ bytes: ArraySlice<UInt8>) {
            if kept.count < keptBody { kept += bytes.prefix(keptBody - kept.count) }
        }
        if status == 204 || status == 304 || (100..<200).contains(status) { return "" }
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            while true {
                let line = try reader.line()
                let sizeText = line.prefix { $0 != ";" }.trimmingWhitespace()
                guard let size = Int(sizeText, radix: 16), size >= 0 else {
                    throw .other(.malformedResponse("chunk size \(line.prefix(40))"))
                }
                if size == 0 {
                    // Trailers, up to an empty line.
                    while try !reader.line().isEmpty {}
                    break
                }
                keep(try reader.take(size, keeping: keptBody))
                guard try reader.line().isEmpty else { throw .other(.malformedResponse("no CRLF after a chunk")) }
            }
        } else if let lengthText = headers["content-length"] {
            guard let length = Int(lengthText.trimmingWhitespace()), length >= 0 else {
                throw .other(.malformedResponse("Content-Length \(lengthText.prefix(40))"))
            }
            keep(try reader.take(length, keeping: keptBody))
        } else {
            while try reader.fill() {}
            keep(reader.buffer[...])
            reader.buffer.removeAll()
            reader.readToEnd = true
        }
        return String(decoding: kept, as: UTF8.self)
    }

    /// Buffered reads from the socket, bounded by the request's deadline.
    private struct Reader {
        let socket: Int32
        let deadline: ContinuousClock.Instant
        var buffer = [UInt8]()
        var received = 0
        /// The server closed the connection (a body read to its end).
        var readToEnd = false

        /// Reads more; `false` at the end of the connection.
        mutating func fill() throws(Failure) -> Bool {
            var chunk = [UInt8](repeating: 0, count: 16 * 1024)
            while true {
                try CandidateClient.wait(socket, for: Int16(POLLIN), deadline: deadline)
                let count = chunk.withUnsafeMutableBytes { systemRecv(socket, $0.baseAddress!, $0.count) }
                if count < 0 {
                    let code = errno
                    if code == EINTR || code == EAGAIN || code == EWOULDBLOCK { continue }
                    if code == ECONNRESET, received == 0 { throw .staleConnection(CandidateClient.errorText(code)) }
                    throw .other(.io("receiving: \(CandidateClient.errorText(code))"))
                }
                if count == 0 { return false }
                buffer += chunk[..<count]
                received += count
                return true
            }
        }

        /// A line without its CRLF.
        mutating func line() throws(Failure) -> String {
            while true {
                if let end = buffer.firstRange(of: [13, 10]) {
                    let line = String(decoding: buffer[..<end.lowerBound], as: UTF8.self)
                    buffer.removeSubrange(..<end.upperBound)
                    return line
                }
                guard buffer.count <= CandidateClient.maxHeader else {
                    throw .other(.malformedResponse("a line over 64 KiB"))
                }
                guard try fill() else {
                    throw .other(.io("the candidate closed the connection in the middle of its answer"))
                }
            }
        }

        /// Exactly `count` bytes.
        mutating func take(_ count: Int, keeping limit: Int = .max) throws(Failure) -> ArraySlice<UInt8> {
            var taken = [UInt8]()
            var remaining = count
            while remaining > 0 {
                if buffer.isEmpty {
                    guard try fill() else {
                        throw .other(.io("the candidate closed the connection in the middle of its answer"))
                    }
                }
                let part = min(remaining, buffer.count)
                // Only the start is kept by the caller; a long body is not accumulated.
                if taken.count < limit { taken += buffer[..<part] }
                buffer.removeSubrange(..<part)
                remaining -= part
            }
            return taken[...]
        }
    }

    /// Waits until `socket` is ready for `events`, or throws at `deadline`.
    fileprivate static func wait(_ socket: Int32, for events: Int16, deadline: ContinuousClock.Instant) throws(Failure)
    {
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw .other(.timeout("no answer within the request's time")) }
            let milliseconds = Int32(
                clamping: max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            var descriptor = pollfd(fd: socket, events: events, revents: 0)
            let ready = poll(&descriptor, 1, milliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                throw .other(.io("poll: \(errorText(errno))"))
            }
            if ready > 0 { return }
        }
    }

    /// Resolves the host and connects (non-blocking, bounded by `deadline`) to the first
    /// address that accepts; the socket stays non-blocking.
    private static func connect(_ endpoint: CandidateEndpoint, deadline: ContinuousClock.Instant) throws(CandidateError)
        -> Int32
    {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
            hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        let resolved = getaddrinfo(endpoint.host, String(endpoint.port), &hints, &list)
        guard resolved == 0, let first = list else {
            throw .connect("cannot resolve \(endpoint.host): \(String(cString: gai_strerror(resolved)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let info = next {
            next = info.pointee.ai_next
            let fd = systemSocket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            guard fd >= 0 else {
                lastError = errorText(errno)
                continue
            }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            #if canImport(Darwin)
                var one: Int32 = 1
                _ = setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
            #endif
            var noDelay: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
            var result = systemConnect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen)
            if result < 0 && errno == EINPROGRESS {
                do {
                    try wait(fd, for: Int16(POLLOUT), deadline: deadline)
                    var error: Int32 = 0
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
                    if error == 0 {
                        result = 0
                    } else {
                        errno = error
                    }
                } catch {
                    _ = systemClose(fd)
                    throw .timeout("connecting to \(endpoint)")
                }
            }
            if result == 0 { return fd }
            lastError = errorText(errno)
            _ = systemClose(fd)
        }
        throw .connect("\(endpoint): \(lastError)")
    }

    fileprivate static func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }
}

// The C functions under names that do not collide with the client's members.
private func systemSocket(_ family: Int32, _ type: Int32, _ proto: Int32) -> Int32 {
    #if canImport(Glibc)
        Glibc.socket(family, type, proto)
    #else
        Darwin.socket(family, type, proto)
    #endif
}

private func systemClose(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
        Glibc.close(fd)
    #else
        Darwin.close(fd)
    #endif
}

private func systemConnect(_ fd: Int32, _ address: UnsafePointer<sockaddr>?, _ length: socklen_t) -> Int32 {
    #if canImport(Glibc)
        Glibc.connect(fd, address, length)
    #else
        Darwin.connect(fd, address, length)
    #endif
}

/// `send` without SIGPIPE: a server that closed the connection must not kill the simulator.
private func systemSend(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
        Glibc.send(fd, bytes, count, Int32(MSG_NOSIGNAL))
    #else
        Darwin.send(fd, bytes, count, 0)
    #endif
}

private func systemRecv(_ fd: Int32, _ bytes: UnsafeMutableRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
        Glibc.recv(fd, bytes, count, 0)
    #else
        Darwin.recv(fd, bytes, count, 0)
    #endif
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs.
    fileprivate func trimmingWhitespace() -> String {
        var text = Substring(self)
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return String(text)
    }
}
