import Postgres

/// Loads the hand-written legacy fixture: `schema.sql`, then the clean or the dirty seed.
///
/// ```swift
/// let loader = FixtureLoader(fixtures: try FixtureDirectory.locate())
/// let counts = try await loader.load(.reference, dsn: dsn)
/// print(counts[.invoices])   // 146
/// ```
///
/// Loading is idempotent (`schema.sql` drops and recreates the `legacy` schema) and atomic: the
/// schema and the seed run in one transaction, so a failure leaves the database as it was.
public struct FixtureLoader: Sendable {
    /// Which data set to load.
    public enum Seed: String, Sendable, CaseIterable, CustomStringConvertible {
        /// `reference/seed.sql`: 45 clean customer stories; `checks.sql` finds nothing.
        case reference
        /// `dirty/seed.sql`: 25 defect cases and 5 clean controls.
        case dirty

        /// The file holding the seed.
        public var file: FixtureDirectory.File { self == .reference ? .referenceSeed : .dirtySeed }

        public var description: String { self == .reference ? "reference seed" : "dirty seed" }
    }

    /// Where the SQL files are read from.
    public let fixtures: FixtureDirectory

    public init(fixtures: FixtureDirectory) {
        self.fixtures = fixtures
    }

    /// Connects to `dsn`, loads the schema and `seed` in one transaction, and disconnects.
    ///
    /// - Returns: the row count of every legacy table after the load.
    /// - Throws: ``FixtureError``: ``FixtureError/Code/unreadableFile`` before anything is sent,
    ///   ``FixtureError/Code/database`` (with the masked DSN and the server's SQLSTATE) when
    ///   PostgreSQL refuses the SQL; nothing is left half-loaded.
    public func load(_ seed: Seed, dsn: String) async throws -> LegacyRowCounts {
        let connection: Connection
        do {
            connection = try await Connection.connect(dsn, applicationName: "ledgerlift-fixture-load")
        } catch {
            throw FixtureError.database("cannot load the \(seed): connecting failed", error)
        }
        defer { connection.close() }
        return try await load(seed, into: connection)
    }

    /// Loads the schema and `seed` on an open connection, in one transaction.
    public func load(_ seed: Seed, into connection: Connection) async throws -> LegacyRowCounts {
        let schema = try fixtures.contents(of: .schema)
        let data = try fixtures.contents(of: seed.file)
        return try await connection.withSession { session in
            try Self.load(seed, schema: schema, data: data, in: session)
        }
    }

    /// Loads the schema and `seed` in `session`, in one transaction.
    ///
    /// - Important: `session` must not be inside a transaction. Its `search_path` (which the
    ///   SQL files set) is restored afterwards.
    public func load(_ seed: Seed, in session: Session) throws -> LegacyRowCounts {
        let schema = try fixtures.contents(of: .schema)
        let data = try fixtures.contents(of: seed.file)
        return try Self.load(seed, schema: schema, data: data, in: session)
    }

    private static func load(_ seed: Seed, schema: String, data: String, in session: Session) throws -> LegacyRowCounts {
        do {
            let savedPath = try session.query("SELECT current_setting('search_path')").rows[0].decode(
                at: 0, as: String.self)
            defer { _ = try? session.execute("SELECT set_config('search_path', $1, false)", [savedPath]) }
            return try session.transaction { tx in
                try tx.executeScript(schema)
                try tx.executeScript(data)
                return try LegacyRowCounts.count(in: tx)
            }
        } catch {
            throw FixtureError.database(
                "loading the \(seed) (\(FixtureDirectory.File.schema.rawValue) + \(seed.file.rawValue)) into "
                    + "\(session.maskedDSN) failed; nothing was changed", error)
        }
    }
}
