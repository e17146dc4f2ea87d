import Postgres

/// The legacy billing application: every ``OperationKind`` written to the reference schema
/// (`fixtures/reference/schema.sql`) the way the application does it, one transaction each.
///
/// Each worker is one PostgreSQL connection (`application_name` `ledgerlift-simulate`) with a
/// `lock_timeout`, so an operation blocked by another connection's locks fails with SQLSTATE
/// `55P03` instead of waiting, and the runner retries it.
public struct LegacySQLApp: BillingApp {
    public let dsn: String
    /// How long an operation waits for a row lock before failing with `55P03`.
    public let lockTimeout: Duration
    /// Candidate mode: each operation is also sent to the candidate write path as commands,
    /// from inside its transaction before the COMMIT (``CandidateFeed``); `nil`: not.
    public let candidate: CandidateFeed?
    public var name: String { "legacy-sql" }

    public init(dsn: String, lockTimeout: Duration = .seconds(1), candidate: CandidateFeed? = nil) {
        self.dsn = dsn
        self.lockTimeout = lockTimeout
        self.candidate = candidate
    }

    /// Opens a connection for one worker.
    ///
    /// - Throws: ``SimulatorError/database(_:)`` when the connection or its settings fail.
    public func makeWorker() async throws -> any BillingAppWorker {
        do {
            let connection = try await Connection.connect(dsn, applicationName: "ledgerlift-simulate")
            do {
                let timeout = lockTimeout
                try await connection.withSession { session in
                    try session.setLockTimeout(timeout)
                    try session.setting("search_path", to: "legacy, pg_catalog")
                }
            } catch {
                connection.close()
                throw error
            }
            return LegacySQLWorker(connection: connection, candidate: candidate?.makeWorker())
        } catch let error as PostgresError {
            throw SimulatorError.database(error)
        }
    }
}

/// One connection of the legacy application, running one operation at a time.
final class LegacySQLWorker: BillingAppWorker {
    let connection: Connection
    let candidate: CandidateFeed.Worker?

    init(connection: Connection, candidate: CandidateFeed.Worker? = nil) {
        self.connection = connection
        self.candidate = candidate
    }

    func perform(
        _ operation: BillingOperation, clock: BusinessClock, prepared: @escaping @Sendable (JournalEntry) throws -> Void
    ) async throws -> JournalEntry? {
        do {
            return try await connection.withSession { session in
                // Session.transaction rolls back on any error, so a failed operation leaves the
                // connection idle and usable, and has written nothing.
                try session.transaction { tx in
                    var run = LegacyOperationRun(session: tx, operation: operation, clock: clock)
                    let entry = try run.perform()
                    // Before the COMMIT, on the connection's dispatch queue (a blocking journal
                    // flush is fine here): a journal that cannot record the writes rolls them back.
                    if let entry { try prepared(entry) }
                    // Candidate mode, after the prepared line (a journal failure rolls back and
                    // nothing is sent) and before the COMMIT (the candidate holds the commands
                    // before the tailer can see the transaction). It never throws and never
                    // leaves the transaction unusable: its problems are counted, not raised.
                    if let entry, let candidate = self.candidate { candidate.feed(entry, in: tx) }
                    return entry
                }
            }
        } catch let error as JournalWriter.Failure {
            throw error
        } catch let error as PostgresError {
            throw SimulatorError.database(error)
        } catch let error as SimulatorError {
            throw error
        } catch {
            throw SimulatorError.unusableData(
                "\(operation.kind.rawValue) (op \(operation.id)) could not read the data: \(error)")
        }
    }

    func close() {
        candidate?.close()
        connection.close()
    }
}

extension LegacySQLApp {
    /// The latest moment the legacy data records (the greatest creation, change, payment, void,
    /// deletion or audit time in the reference schema): where the data clock starts, so the
    /// simulated application continues the data's own timeline.
    ///
    /// - Throws: ``SimulatorError/unusableData(_:)`` when the database has no `legacy` schema
    ///   or no rows to continue from.
    public static func latestRecordedMoment(on connection: Connection) async throws -> PostgresTimestamp {
        let exists = try await connection.withSession { session in
            try session.query(
                "SELECT to_regclass('legacy.customers') IS NOT NULL AND to_regclass('legacy.invoices') IS NOT NULL"
            )
            .rows[0].decode(at: 0, as: Bool.self)
        }
        guard exists else {
            throw SimulatorError.unusableData(
                "it has no reference schema (legacy.customers, legacy.invoices): load one with `ledgerlift fixture load` or `fixture generate`"
            )
        }
        let latest = try await connection.withSession { session in
            try session.query(
                """
                SELECT greatest(
                    (SELECT max(updated_at) FROM legacy.customers), (SELECT max(deleted_at) FROM legacy.customers),
                    (SELECT max(updated_at) FROM legacy.subscriptions), (SELECT max(updated_at) FROM legacy.invoices),
                    (SELECT max(updated_at) FROM legacy.payments), (SELECT max(created_at) FROM legacy.refunds),
                    (SELECT max(greatest(created_at, voided_at)) FROM legacy.credit_notes),
                    (SELECT max(created_at) FROM legacy.customer_balance_transactions),
                    (SELECT max(changed_at) FROM legacy.subscription_history))::timestamptz
                """
            ).rows[0].decode(at: 0, as: PostgresTimestamp?.self)
        }
        guard let latest else { throw SimulatorError.unusableData("its legacy tables hold no rows to continue from") }
        return latest
    }
}
