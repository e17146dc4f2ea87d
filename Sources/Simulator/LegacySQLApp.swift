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
