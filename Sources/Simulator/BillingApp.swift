import Postgres

/// The billing application the simulator drives: the code that writes billing data.
///
/// Today's implementation is ``LegacySQLApp``, the legacy application writing the reference
/// schema. After the cutover's write switch a second implementation sends the same operations
/// to the event-sourced write path (`ledgerlift serve`); the simulator re-routes an operation
/// to it when the legacy database refuses with ``WriteGuard``'s error.
public protocol BillingApp: Sendable {
    /// A name for reports (`legacy-sql`).
    var name: String { get }
    /// Opens one worker: one connection's worth of the application. Each simulator connection
    /// owns one worker and runs one operation at a time on it.
    func makeWorker() async throws -> any BillingAppWorker
    /// The candidate feed the application's transactions feed, if any: the run's report
    /// carries its figures (``SimulationReport/candidate``).
    var candidate: CandidateFeed? { get }
}

extension BillingApp {
    /// No candidate feed: an application that is not the legacy one has no legacy transaction
    /// to feed from.
    public var candidate: CandidateFeed? { nil }
}

/// One connection of a ``BillingApp``.
public protocol BillingAppWorker: Sendable {
    /// Performs `operation` as one transaction at the time `clock` gives once the rows it
    /// changes are locked, and returns what it changed once the commit is confirmed.
    ///
    /// - Parameter prepared: called with the operation's ``JournalEntry`` after its writes and
    ///   BEFORE its COMMIT, synchronously (it may block: the runner makes the journal's
    ///   `prepared` line durable there). When it throws, the application rolls back (nothing
    ///   is committed) and rethrows its error. Not called when the operation has nothing to
    ///   act on.
    /// - Returns: `nil` when the data holds nothing the operation can act on (no draft invoice
    ///   to finalize); nothing was written.
    /// - Throws: ``SimulatorError/database(_:)`` for a failure the caller classifies by
    ///   SQLSTATE (lock timeout and serialization failures are retried, ``WriteGuard`` refusals
    ///   re-routed, the rest counted as errors), or what `prepared` threw. A failed operation
    ///   wrote nothing — unless its COMMIT's outcome is unknown (the connection broke during
    ///   it), which is why `prepared` comes first.
    func perform(
        _ operation: BillingOperation, clock: BusinessClock, prepared: @escaping @Sendable (JournalEntry) throws -> Void
    ) async throws -> JournalEntry?

    /// Closes the connection.
    func close()

    /// The time the last ``perform(_:clock:prepared:)`` spent waiting because the write path
    /// refused it for routing (the ledger's `writes_frozen` / `writes_on_legacy` while a switch
    /// or a rollback is under way), and resets it: the runner adds it to the operation's
    /// re-routing blocked time. Zero for an application that never waits so.
    func takeRoutedWait() -> Duration
}

extension BillingAppWorker {
    public func takeRoutedWait() -> Duration { .zero }

    /// Performs `operation` without a journal (nothing to do before the COMMIT).
    public func perform(_ operation: BillingOperation, clock: BusinessClock) async throws -> JournalEntry? {
        try await perform(operation, clock: clock, prepared: { _ in })
    }
}

/// The legacy database's refusal once writes have moved to the ledger.
///
/// The cutover's write switch installs a guard on the legacy tables that fails every write
/// with this SQLSTATE and message; an application (the simulator included) that sees it sends
/// the write to the ledger's write path instead. It is documented so a real application can do
/// the same.
public enum WriteGuard {
    /// SQLSTATE of the refusal: class `LL` (Ledgerlift), not used by PostgreSQL.
    public static let sqlState = "LL001"
    /// The refusal's message.
    public static let message = "writes have moved to the ledger"
}

/// Why an operation or a run failed.
public enum SimulatorError: Error, Sendable, CustomStringConvertible {
    /// The database refused (carries the SQLSTATE).
    case database(PostgresError)
    /// The legacy database does not hold what the simulator needs (no `legacy` schema, no plans).
    case unusableData(String)
    /// A mix file or option the simulator cannot use.
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case .database(let error): String(describing: error)
        case .unusableData(let why): "the legacy database cannot be simulated on: \(why)"
        case .invalidConfiguration(let why): why
        }
    }

    /// The SQLSTATE of a database error, if any.
    public var sqlState: String? {
        if case .database(let error) = self { return error.sqlState?.rawValue }
        return nil
    }
}
