import Billing
import Commands
import EventStore
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Postgres
import ServiceLifecycle
import TextFormats
import UnixSignals
import Webhooks

/// One route of the API: what the router registers and `docs/openapi.yaml` must describe.
public struct ServeRoute: Sendable, Hashable, CustomStringConvertible {
    public var method: String
    /// The template, OpenAPI-style (`/invoices/{id}`).
    public var path: String
    public init(_ method: String, _ path: String) {
        self.method = method
        self.path = path
    }
    public var description: String { "\(method) \(path)" }

    /// Whether a request path fits the template (`{…}` matches one non-empty segment).
    public func matches(_ requestPath: String) -> Bool {
        let template = path.split(separator: "/", omittingEmptySubsequences: false)
        let given = requestPath.split(separator: "/", omittingEmptySubsequences: false)
        guard template.count == given.count else { return false }
        return zip(template, given).allSatisfy { t, g in t.hasPrefix("{") ? !g.isEmpty : t == g }
    }
}

/// `ledgerlift serve`: the HTTP JSON API over the ledger — commands (with `Idempotency-Key`),
/// Stripe webhooks, the read models' figures, health and Prometheus metrics — on Hummingbird 2.
///
/// Requests borrow store connections from a ``ConnectionPool``; every failure is answered as a
/// ``Problem`` document; the read models are kept following in-process by a
/// ``ServeProjector``; SIGTERM and SIGINT shut down gracefully (no new connections, requests
/// in flight finish, then the process exits).
public final class LedgerliftServer: Sendable {
    public let configuration: ServeConfiguration
    public let pool: ConnectionPool
    public let metrics: ServerMetrics
    public let idempotency: IdempotencyStore
    /// What runs `POST /commands/{name}` (``ExecutorCommands`` in `ledgerlift serve`); `nil`
    /// answers 501.
    public let commandHandler: (any CommandHandling)?
    /// What runs `POST /webhooks/stripe`: `nil` when the configuration has no signing secret
    /// (the route answers 503 `webhooks_not_configured`).
    public let webhookHandler: StripeWebhookHandler?
    let answers: ReadAnswers
    let logger: Logger
    /// Duplicates of a request still running here wait for it (see ``InFlightRequests``).
    let inFlight = InFlightRequests()

    public init(
        _ configuration: ServeConfiguration, commandHandler: (any CommandHandling)?,
        metrics: ServerMetrics = ServerMetrics(),
        logger: Logger = Logger(label: "ledgerlift.serve")
    ) {
        self.configuration = configuration
        self.commandHandler = commandHandler
        self.pool = ConnectionPool(dsn: configuration.storeDSN, capacity: configuration.poolSize)
        self.metrics = metrics
        self.idempotency = IdempotencyStore(
            store: configuration.store, retention: configuration.idempotencyRetention,
            lockWait: configuration.idempotencyWait)
        self.answers = ReadAnswers(readSchema: configuration.readSchema)
        self.webhookHandler =
            configuration.stripeWebhookSecrets.isEmpty
            ? nil : StripeWebhookHandler(store: configuration.store, secrets: configuration.stripeWebhookSecrets)
        self.logger = logger
    }

    /// Every route the router registers, in the order of docs/openapi.yaml.
    public static let routes: [ServeRoute] = [
        ServeRoute("GET", "/health"),
        ServeRoute("GET", "/metrics"),
        ServeRoute("GET", "/routing"),
        ServeRoute("GET", "/customers/{id}/balance"),
        ServeRoute("GET", "/invoices/{id}"),
        ServeRoute("GET", "/reports/revenue"),
        ServeRoute("GET", "/reports/aging"),
        ServeRoute("POST", "/commands/{name}"),
        ServeRoute("POST", "/webhooks/stripe"),
    ]

    public typealias Context = BasicRequestContext

    /// The router with every route of ``routes`` and the middleware that answers problems and
    /// counts requests.
    /// - Returns: the router, and the routes it registered (held equal to ``routes`` and to the
    ///   OpenAPI document by tests).
    public func makeRouter() -> (router: Router<Context>, registered: [ServeRoute]) {
        let router = Router(context: Context.self)
        router.add(
            middleware: ServeMiddleware(
                metrics: metrics, logger: logger, maximumBodyBytes: configuration.maximumBodyBytes))
        var registered = [ServeRoute]()
        func on(
            _ method: HTTPRequest.Method, _ path: String,
            _ handler: @escaping @Sendable (Request, Context) async throws -> Response
        ) {
            router.on(RouterPath(path), method: method) { request, context in try await handler(request, context) }
            registered.append(ServeRoute(method.rawValue, path))
        }
        on(.get, "/health") { _, _ in await self.health() }
        on(.get, "/metrics") { _, _ in await self.metricsResponse() }
        on(.get, "/routing") { _, _ in
            let table = RoutingTable(store: self.configuration.store)
            let routing = try await self.read { try table.read(in: $0) }
            return Self.json(.ok, Self.routingJSON(routing))
        }
        on(.get, "/customers/{id}/balance") { request, context in
            let id = try Self.key(context.parameters.get("id"), parameter: "id")
            let query = request.uri.queryParameters
            let asOf = try Self.asOf(query["as_of"].map(String.init))
            let entity = try Self.billingEntity(query["billing_entity"].map(String.init))
            let answers = self.answers
            guard
                let json = try await self.read({
                    try answers.balance(customer: id, asOf: asOf, billingEntity: entity, in: $0)
                })
            else { throw Problem.notFound("customer", id, asOf: asOf?.iso8601) }
            return Self.json(.ok, json)
        }
        on(.get, "/invoices/{id}") { request, context in
            let id = try Self.key(context.parameters.get("id"), parameter: "id")
            let asOf = try Self.asOf(request.uri.queryParameters["as_of"].map(String.init))
            let answers = self.answers
            guard let json = try await self.read({ try answers.invoice(id, asOf: asOf, in: $0) }) else {
                throw Problem.notFound("invoice", id, asOf: asOf?.iso8601)
            }
            return Self.json(.ok, json)
        }
        on(.get, "/reports/revenue") { request, _ in
            let query = request.uri.queryParameters
            let from = try Self.month(query["from"].map(String.init), parameter: "from")
            let to = try Self.month(query["to"].map(String.init), parameter: "to")
            guard from <= to else {
                throw Problem.invalidParameter(
                    "range", "from \(ReadAnswers.monthLabel(from)) is after to \(ReadAnswers.monthLabel(to))")
            }
            let zone = try Self.timeZone(query["time_zone"].map(String.init))
            let entity = try Self.billingEntity(query["billing_entity"].map(String.init))
            let answers = self.answers
            return Self.json(
                .ok,
                try await self.read {
                    try answers.revenue(from: from, to: to, timeZone: zone, billingEntity: entity, in: $0)
                })
        }
        on(.get, "/reports/aging") { request, _ in
            let query = request.uri.queryParameters
            let asOf = try Self.asOf(query["as_of"].map(String.init))
            let zone = try Self.timeZone(query["time_zone"].map(String.init))
            let entity = try Self.billingEntity(query["billing_entity"].map(String.init))
            let answers = self.answers
            return Self.json(
                .ok,
                try await self.read { try answers.aging(asOf: asOf, timeZone: zone, billingEntity: entity, in: $0) })
        }
        on(.post, "/commands/{name}") { request, context in
            try await self.command(request, name: context.parameters.get("name") ?? "")
        }
        on(.post, "/webhooks/stripe") { request, _ in try await self.stripeWebhook(request) }
        return (router, registered)
    }

    // MARK: - Running

    /// Checks the store's schema version, then serves until SIGTERM/SIGINT (or
    /// the task's cancellation): requests in flight finish before it returns.
    ///
    /// - Parameter onListening: called with the bound port once the server accepts connections.
    /// - Throws: when the store cannot be reached or is not initialized (before listening), or
    ///   the address cannot be bound.
    /// - Parameter shutdown: a handle whose ``ServeShutdown/trigger()`` shuts down gracefully
    ///   as a signal would (for a server embedded in another program, and the tests).
    public func run(
        gracefulShutdownSignals: [UnixSignal] = [.sigterm, .sigint], shutdown: ServeShutdown? = nil,
        onListening: @escaping @Sendable (_ port: Int) async -> Void = { _ in }
    ) async throws {
        try await prepare()
        let (router, _) = makeRouter()
        var app = Application(
            router: router,
            server: .http1(configuration: .init(additionalChannelHandlers: [MalformedRequestHandler()])),
            configuration: .init(
                address: .hostname(configuration.host, port: configuration.port), serverName: "ledgerlift"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) }, logger: logger)
        if configuration.projects {
            app.addServices(
                ServeProjector(
                    dsn: configuration.storeDSN, store: configuration.store, readSchema: configuration.readSchema,
                    logger: logger))
        }
        app.addServices(IdempotencyPurge(idempotency: idempotency, pool: pool, logger: logger))
        let group = ServiceGroup(
            configuration: .init(services: [app], gracefulShutdownSignals: gracefulShutdownSignals, logger: logger))
        await shutdown?.attach(group)
        do {
            try await group.run()
        } catch {
            await pool.close()
            throw error
        }
        await pool.close()
    }

    /// The store must be at schema version 3 at least (``EventStore/serveSchemaVersion``):
    /// the idempotency keys, the Stripe deliveries and the command key sequences are the
    /// store's, created and granted by `store init`, never by `serve` (a table `serve` created
    /// would belong to whichever role ran it first).
    /// In candidate mode, version 4 (``EventStore/candidateSchemaVersion``), which holds
    /// `candidate_commands`.
    func prepare() async throws {
        let (store, mode) = (configuration.store, configuration.mode)
        try await pool.withConnection { connection in
            let required = mode == .candidate ? EventStore.candidateSchemaVersion : EventStore.serveSchemaVersion
            try await connection.withSession { try store.requireSchema(atLeast: required, $0) }
        }
    }

    // MARK: - Reads

    /// Runs a read on a pooled connection.
    func read<T: Sendable>(_ body: @escaping @Sendable (Session) throws -> T) async throws -> T {
        try await pool.withConnection { try await $0.withSession(body) }
    }

    /// `GET /routing`'s answer. No routing row: no cutover routes this store, and serve is a
    /// ledger of its own (reads and writes `ledger`, `cutover` null).
    static func routingJSON(_ routing: Routing?) -> JSONValue {
        guard let routing else {
            return .object([
                ("cutover", .null), ("reads", .string("ledger")), ("writes", .string("ledger")), ("version", .integer(0)),
                ("changed_at", .null),
            ])
        }
        return .object([
            ("cutover", .string(routing.cutover)), ("reads", .string(routing.reads.rawValue)),
            ("writes", .string(routing.writes.rawValue)), ("version", .integer(routing.version)),
            ("changed_at", .string(routing.changedAt.iso8601)),
        ])
    }

    static func json(_ status: HTTPResponse.Status, _ value: JSONValue, headers extra: HTTPFields = [:]) -> Response {
        json(status, value.rendered, headers: extra)
    }

    static func json(_ status: HTTPResponse.Status, _ text: String, headers extra: HTTPFields = [:]) -> Response {
        var headers = extra
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// A row key from the path: percent-decoded, 1 to 200 characters of letters, digits and
    /// `-_.:@~+`.
    static func key(_ raw: String?, parameter: String) throws(Problem) -> String {
        guard let raw, let decoded = raw.removingPercentEncoding, !decoded.isEmpty, decoded.count <= 200,
            decoded.unicodeScalars.allSatisfy({
                $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "-_.:@~+".unicodeScalars.contains($0))
            })
        else {
            throw Problem.invalidParameter(
                parameter, "a key is 1 to 200 characters of ASCII letters, digits and -_.:@~+")
        }
        return decoded
    }

    static func asOf(_ text: String?) throws(Problem) -> PostgresTimestamp? {
        guard let text else { return nil }
        do {
            return try BusinessTime.parse(text)
        } catch {
            throw Problem.invalidParameter("as_of", Problem.printable(error.description))
        }
    }

    static func month(_ text: String?, parameter: String) throws(Problem) -> PostgresDate {
        guard let text else { throw Problem.invalidParameter(parameter, "required: a month like 2024-03") }
        guard let month = ReadAnswers.month(text) else {
            throw Problem.invalidParameter(
                parameter, "\(Problem.printable(text)) is not a month like 2024-03 (years 0001 to 9999)")
        }
        return month
    }

    static func timeZone(_ text: String?) throws(Problem) -> ReportTimeZone {
        guard let text else { return .utc }
        guard !text.isEmpty, text.count <= 64,
            text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "/_+-".contains($0)) })
        else {
            throw Problem.invalidParameter(
                "time_zone", "utc, customer, billing-entity or an IANA name such as Europe/Paris")
        }
        return ReportTimeZone(text)
    }

    static func billingEntity(_ text: String?) throws(Problem) -> String? {
        guard let text else { return nil }
        return try key(
            text.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? text, parameter: "billing_entity")
    }

    // MARK: - Health and metrics

    func health() async -> Response {
        let (store, readSchema, mode) = (configuration.store, configuration.readSchema, configuration.mode.rawValue)
        do {
            let lag = try await read { session in
                _ = try session.query("SELECT 1")
                return try ProjectorLag.read(store: store, readSchema: readSchema, in: session)
            }
            if lag.readModelsLive {
                metrics.projectorLag(events: lag.events, seconds: lag.seconds)
            } else {
                metrics.projectorLagUnknown()
            }
            let body =
                "{\"status\":\"ok\",\"mode\":\(JSONValue.quoted(mode)),\"store\":\"reachable\","
                + "\"read_models\":\(lag.readModelsLive ? "\"live\"" : "\"not_built\""),"
                + "\"projector\":{\"lag_events\":\(lag.events),\"lag_seconds\":\(String(format: "%.3f", lag.seconds)),"
                + "\"checkpoint\":\(lag.checkpoint.map(String.init) ?? "null")}}"
            return Self.json(.ok, body)
        } catch {
            metrics.projectorLagUnknown()
            logger.warning("health: the store is not reachable: \(Self.loggable(error))")
            return Self.json(
                .serviceUnavailable,
                "{\"status\":\"unavailable\",\"mode\":\(JSONValue.quoted(mode)),\"store\":\"unreachable\",\"read_models\":null,\"projector\":null}"
            )
        }
    }

    func metricsResponse() async -> Response {
        let (store, readSchema) = (configuration.store, configuration.readSchema)
        if let lag = try? await read({ try ProjectorLag.read(store: store, readSchema: readSchema, in: $0) }),
            lag.readModelsLive
        {
            metrics.projectorLag(events: lag.events, seconds: lag.seconds)
        } else {
            // Unknown is absent, not 0: a stale or zero lag would hide a dead store.
            metrics.projectorLagUnknown()
        }
        if configuration.mode == .candidate,
            let summary = try? await read({ session -> CandidateCommandLog.Summary? in
                let log = CandidateCommandLog(store: store)
                return try log.exists(in: session) ? try log.summary(limit: 0, in: session) : nil
            }) ?? nil
        {
            metrics.candidateComparisons(summary)
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        return Response(
            status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: metrics.exposition())))
    }

    /// An error as the log may show it: a database error's message is masked of its DSN by
    /// the Postgres layer already.
    static func loggable(_ error: any Error) -> String { String(describing: error) }

    // MARK: - Errors

    /// The problem document answering `error`. Only ``Problem``s and the library's typed
    /// findings carry their own words; anything else becomes a generic 5xx (logged in full).
    static func problem(for error: any Error) -> Problem? {
        switch error {
        case let problem as Problem: return problem
        case let error as ReportError:
            switch error {
            case .unknownBillingEntity(let id): return Problem.notFound("billing_entity", id, asOf: nil)
            case .unknownCustomer(let id): return Problem.notFound("customer", id, asOf: nil)
            case .unknownTimeZone:
                return Problem.invalidParameter(
                    "time_zone", "not utc, customer, billing-entity or a time zone PostgreSQL knows")
            case .unknownTimeZoneInData:
                return Problem(
                    .unprocessableContent, code: "time_zone_in_data", title: "A time zone in the data is unknown",
                    detail:
                        "a customer's or billing entity's time_zone is not a zone PostgreSQL knows; report with time_zone=utc or an IANA name"
                )
            }
        case is ProjectionError: return Problem.readModelsNotBuilt
        case let error as PostgresError where ConnectionPool.isConnectionLevel(error): return Problem.storeUnavailable
        default: return nil
        }
    }
}

/// Answers every error as a problem document and counts every request by route and status.
struct ServeMiddleware: RouterMiddleware {
    typealias Context = LedgerliftServer.Context
    let metrics: ServerMetrics
    let logger: Logger
    let maximumBodyBytes: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let started = ContinuousClock.now
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            let problem = Self.problem(for: error, request, maximumBodyBytes: maximumBodyBytes)
            response = problem.response
            if problem.status == .methodNotAllowed {
                let allowed = LedgerliftServer.routes.filter { $0.matches(request.uri.path) }.map(\.method)
                response.headers[.allow] = allowed.joined(separator: ", ")
            }
        } catch {
            if let problem = LedgerliftServer.problem(for: error) {
                if problem.status.code >= 500 {
                    logger.error("\(request.method) \(request.uri.path): \(LedgerliftServer.loggable(error))")
                }
                response = problem.response
            } else {
                logger.error("\(request.method) \(request.uri.path) failed: \(LedgerliftServer.loggable(error))")
                response = Problem.internalError.response
            }
        }
        let route = context.endpointPath.flatMap { $0 == "NotFound" ? nil : $0 } ?? "unmatched"
        metrics.request(
            route: route, method: request.method.rawValue, status: response.status.code,
            duration: ContinuousClock.now - started)
        return response
    }

    static func problem(for error: any HTTPResponseError, _ request: Request, maximumBodyBytes: Int) -> Problem {
        switch error.status {
        case .notFound, .methodNotAllowed:
            // The router answers 404 for a known path with another method: that is a 405.
            LedgerliftServer.routes.contains { $0.matches(request.uri.path) }
                ? Problem.methodNotAllowed(request.method, request.uri.path)
                : Problem.notFoundRoute(request.method, request.uri.path)
        case .contentTooLarge: Problem.payloadTooLarge(limit: maximumBodyBytes)
        default:
            Problem(
                error.status, code: "http_\(error.status.code)", title: error.status.reasonPhrase,
                detail: "the request could not be answered (\(error.status.code) \(error.status.reasonPhrase))")
        }
    }
}

/// Shuts a running server down gracefully, as SIGTERM does.
public actor ServeShutdown {
    private var group: ServiceGroup?
    private var requested = false

    public init() {}

    func attach(_ group: ServiceGroup) async {
        self.group = group
        if requested { await group.triggerGracefulShutdown() }
    }

    /// Stops accepting connections; requests in flight finish, then `run` returns.
    public func trigger() async {
        requested = true
        await group?.triggerGracefulShutdown()
    }
}

/// Deletes expired `Idempotency-Key` rows every ``interval`` until shutdown.
struct IdempotencyPurge: Service {
    let idempotency: IdempotencyStore
    let pool: ConnectionPool
    let logger: Logger
    var interval: Duration = .seconds(600)

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let idempotency = self.idempotency
                    let purged = try await pool.withConnection { try await idempotency.purgeExpired(on: $0) }
                    if purged > 0 { logger.info("purged \(purged) expired idempotency keys") }
                } catch {
                    logger.warning("idempotency purge: \(LedgerliftServer.loggable(error))")
                }
                try? await Task.sleep(for: interval)
            }
        }
    }
}
