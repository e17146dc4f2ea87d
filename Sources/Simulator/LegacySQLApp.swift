import Postgres

/// The legacy billing application: every ``OperationKind`` written to the reference schema
/// (`fixtures/reference/schema.sql`) the way the application does it (placeholder until the
/// operations land).
public struct LegacySQLApp: BillingApp {
    public let dsn: String
    public var name: String { "legacy-sql" }

    public init(dsn: String) { self.dsn = dsn }

    public func makeWorker() async throws -> any BillingAppWorker {
        throw SimulatorError.invalidConfiguration("not built yet")
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
            try session.query("SELECT to_regclass('legacy.customers') IS NOT NULL AND to_regclass('legacy.invoices') IS NOT NULL")
                .rows[0].decode(at: 0, as: Bool.self)
        }
        guard exists else {
            throw SimulatorError.unusableData(
                "it has no reference schema (legacy.customers, legacy.invoices): load one with `ledgerlift fixture load` or `fixture generate`")
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
