import Foundation
import EventStore

/// Whether `serve` applies commands or only decides them.
public enum ServeMode: String, Sendable, Hashable, CaseIterable {
    /// Commands are decided and appended: the ledger's write path.
    case primary
    /// Commands are decided against the ledger and not appended (202 with the decision): the
    /// new write path exercised beside the legacy application without being trusted.
    case candidate
}

/// Everything `ledgerlift serve` is started with.
public struct ServeConfiguration: Sendable {
    /// The store's connection string (never logged or answered: ``Postgres/ConnectionString/masked(_:)``).
    public var storeDSN: String
    public var host: String
    /// 0 picks a free port (tests); the bound one is passed to `onListening`.
    public var port: Int
    public var mode: ServeMode
    public var store: EventStore
    public var readSchema: String
    /// Store connections for requests (each request in flight borrows one).
    public var poolSize: Int
    /// Largest request body accepted (413 beyond it).
    public var maximumBodyBytes: Int
    /// How long a request waits for another one holding its `Idempotency-Key` (then 409).
    public var idempotencyWait: Duration
    /// How long `Idempotency-Key` responses are kept.
    public var idempotencyRetention: Duration
    /// Whether serve keeps the read models following the store itself (``ServeProjector``).
    public var projects: Bool
    /// How long a command's response waits for the read models to take its events in, so a
    /// read after it sees it (then it answers anyway, with `Ledgerlift-Projection: behind`).
    public var projectionWait: Duration
    /// The Stripe endpoint's signing secrets (`whsec_…`; two while one is rolled). Empty: `POST
    /// /webhooks/stripe` answers 503 `webhooks_not_configured`. `ledgerlift serve` reads them
    /// from ``stripeWebhookSecretsVariable`` only — an option's value is visible to every user
    /// of the machine (`ps`, `/proc/<pid>/cmdline`).
    public var stripeWebhookSecrets: [String]

    public init(
        storeDSN: String, host: String = "127.0.0.1", port: Int = 8080, mode: ServeMode = .primary,
        store: EventStore = EventStore(), readSchema: String = "ledgerlift_read", poolSize: Int = 10,
        maximumBodyBytes: Int = 1 << 20, idempotencyWait: Duration = .seconds(10),
        idempotencyRetention: Duration = .seconds(24 * 3600), projects: Bool = true,
        projectionWait: Duration = .seconds(5), stripeWebhookSecrets: [String] = []
    ) {
        self.storeDSN = storeDSN
        self.host = host
        self.port = port
        self.mode = mode
        self.store = store
        self.readSchema = readSchema
        self.poolSize = poolSize
        self.maximumBodyBytes = maximumBodyBytes
        self.idempotencyWait = idempotencyWait
        self.idempotencyRetention = idempotencyRetention
        self.projects = projects
        self.projectionWait = projectionWait
        self.stripeWebhookSecrets = stripeWebhookSecrets
    }

    /// The environment variable holding the Stripe signing secrets, comma-separated.
    public static let stripeWebhookSecretsVariable = "LEDGERLIFT_STRIPE_WEBHOOK_SECRETS"

    /// The secrets of a ``stripeWebhookSecretsVariable`` value: split at commas, blanks around
    /// each trimmed, empty items dropped (`nil` or blank: none).
    public static func stripeWebhookSecrets(fromEnvironmentValue value: String?) -> [String] {
        (value ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            .filter { !$0.isEmpty }
    }

    /// Parses `--listen host:port` (`127.0.0.1:8080`, `[::1]:8080`, `:8080` for every address).
    public static func listenAddress(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        var host = String(text[..<colon])
        let portText = text[text.index(after: colon)...]
        guard let port = Int(portText), (0...65535).contains(port), portText.allSatisfy(\.isASCII) else { return nil }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty { host = "0.0.0.0" }
        guard !host.contains(where: { $0 == " " || $0 == "/" }) else { return nil }
        return (host, port)
    }
}
