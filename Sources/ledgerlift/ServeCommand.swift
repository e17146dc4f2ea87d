import ArgumentParser
import Commands
import Foundation
import Postgres
import Server

/// `ledgerlift serve`: the HTTP JSON API (module `Server`); this file only parses options.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract:
            "Serve the HTTP JSON API: billing commands (with Idempotency-Key), balances, invoices, reports, health, metrics.",
        discussion: """
            Routes are described in docs/openapi.yaml and docs/serve.md. Errors are RFC 9457 problem documents \
            with a stable code. The read models are kept following the store in-process, so a read after a \
            command sees it. With --mode candidate, commands are decided against the ledger and not appended \
            (202 with the decision), and recorded under their Idempotency-Key with the Ledgerlift-Legacy-Xid \
            header for the comparison with legacy. POST /webhooks/stripe takes Stripe's webhooks; its signing \
            secrets are \
            read from the environment variable LEDGERLIFT_STRIPE_WEBHOOK_SECRETS (comma-separated, so a rolled \
            secret and its successor both verify), never from an option, which other users could read with ps. \
            SIGTERM or SIGINT stops accepting connections, lets requests in flight finish, then exits 0.
            """)

    @OptionGroup var store: StoreOptions

    @Option(help: ArgumentHelp("Address to listen on, host:port.", valueName: "host:port"))
    var listen: String = "127.0.0.1:8080"

    @Option(help: "primary: decide and append commands; candidate: decide only, append nothing.")
    var mode: String = "primary"

    @Option(help: "PostgreSQL schema of the read models.")
    var readSchema: String = "ledgerlift_read"

    func validate() throws {
        guard ServeConfiguration.listenAddress(listen) != nil else {
            throw ValidationError("--listen \(listen) is not host:port (such as 127.0.0.1:8080)")
        }
        guard ServeMode(rawValue: mode) != nil else {
            throw ValidationError("--mode \(mode) is not primary or candidate")
        }
    }

    func run() async throws {
        let address = ServeConfiguration.listenAddress(listen)!
        var configuration = ServeConfiguration(
            storeDSN: store.dsn, host: address.host, port: address.port, mode: ServeMode(rawValue: mode)!,
            store: store.store,
            readSchema: readSchema,
            stripeWebhookSecrets: ServeConfiguration.stripeWebhookSecrets(
                fromEnvironmentValue: ProcessInfo.processInfo.environment[
                    ServeConfiguration.stripeWebhookSecretsVariable]))
        // A candidate appends nothing; shadow mode's tailer keeps the read models following, and
        // a second projector would only contend for their lock (the tailer's waits on it).
        configuration.projects = configuration.mode == .primary
        let logger = CommandLineSettings.logger("serve")
        let metrics = ServerMetrics()
        let commands = ExecutorCommands(
            executor: CommandExecutor(store: store.store, readSchema: readSchema), mode: configuration.mode,
            metrics: metrics,
            projectionWait: configuration.projectionWait)
        let server = LedgerliftServer(configuration, commandHandler: commands, metrics: metrics, logger: logger)
        let mode = configuration.mode
        try await server.run { port in
            printToStandardError("listening on http://\(address.host):\(port) (mode \(mode.rawValue))")
        }
    }
}
