import Postgres

/// One operation of the legacy application being performed inside its transaction: the shared
/// machinery (picking rows, locking them, the one business time, journal effects) that the
/// operations in `LegacyOperations.swift` are written with.
///
/// The protocol every operation follows (so concurrent connections neither deadlock nor break
/// a rule):
/// 1. pick the rows from the operation's own random stream and the data, never by counting or
///    scanning a big table (``pick(_:where:)``);
/// 2. lock what it changes with `FOR UPDATE`, always in one global order — customer,
///    subscription, invoice, payment, credit note — and re-check the condition it picked by
///    (another connection may have changed the rows in between): when it no longer holds, the
///    operation does nothing;
/// 3. only then take its time from the ``BusinessClock`` (``now()``), and write every timestamp
///    of the operation with that one time.
struct LegacyOperationRun {
    let session: Session
    let operation: BillingOperation
    let clock: BusinessClock
    var random: SimulationRandom
    /// How far the data clock moves for this operation, drawn first from its stream.
    let step: Duration
    private(set) var time: PostgresTimestamp?

    /// Rows of id range a pick looks at, from a random point and at the newest rows: enough to
    /// find common rows at once, few enough that a pick costs milliseconds on millions of rows.
    static let pickWindow: Int64 = 4000

    init(session: Session, operation: BillingOperation, clock: BusinessClock) {
        self.session = session
        self.operation = operation
        self.clock = clock
        var random = operation.random
        step = .seconds(random.int(1...120))
        self.random = random
    }

    /// The operation's business time: asked of the clock once, after the locks are held.
    mutating func now() -> PostgresTimestamp {
        if let time { return time }
        let t = clock.next(step: step)
        time = t
        return t
    }

    // MARK: - Statements

    @discardableResult
    func rows(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) throws -> [Row] {
        try session.query(sql, parameters).rows
    }

    func one(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) throws -> Row? {
        try session.query(sql, parameters).rows.first
    }

    @discardableResult
    func execute(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) throws -> Int {
        try session.execute(sql, parameters)
    }

    /// Inserts and returns the new row's id (`sql` ends with `RETURNING id`).
    func insert(_ sql: String, _ parameters: [(any PostgresEncodable)?]) throws -> Int64 {
        guard let row = try one(sql, parameters) else { throw SimulatorError.unusableData("an INSERT returned no id") }
        return try row.decode(at: 0, as: Int64.self)
    }

    // MARK: - Picking

    /// The SQL condition "the row's customer exists and is not soft-deleted" (the application
    /// never acts on a deleted customer's behalf).
    ///
    /// Every correlated subquery of a pick's condition ends with `OFFSET 0`: it keeps PostgreSQL
    /// from turning it into a (merge) semi or anti join, which reads the other table from its
    /// start rather than probing it for the few rows of the pick's id window.
    static func live(_ customerColumn: String) -> String {
        "EXISTS (SELECT 1 FROM customers c WHERE c.id = \(customerColumn) AND c.deleted_at IS NULL OFFSET 0)"
    }

    /// A row of `table` (aliased `x`) that satisfies `condition`, chosen from the operation's
    /// random stream: the first such id at or after a random id between the table's smallest
    /// and largest, within ``pickWindow`` ids (wrapping around to the smallest), else the newest
    /// such row among the last ``pickWindow`` ids (where the application's own recent rows
    /// are). Bounded index range scans only: never a count or a full scan.
    mutating func pick(_ table: String, where condition: String) throws -> Int64? {
        guard let bounds = try one("SELECT min(id), max(id) FROM \(table)"),
            let low = try bounds.decode(at: 0, as: Int64?.self), let high = try bounds.decode(at: 1, as: Int64?.self)
        else { return nil }
        let window = Self.pickWindow
        let start = random.int(low...high)
        // The window's rows stream in id order and the condition is evaluated row by row until
        // one holds (the fence keeps the planner from filtering the whole window first, through
        // a bitmap scan and a sort, which evaluates every subquery for every candidate).
        let forward = """
            SELECT s.id FROM (SELECT x.id, (\(condition)) AS ok FROM \(table) x WHERE x.id >= $1 AND x.id < $2
                              ORDER BY x.id OFFSET 0) s
            WHERE s.ok LIMIT 1
            """
        if let row = try one(forward, [start, start + window]) { return try row.decode(at: 0, as: Int64.self) }
        if start + window > high + 1, high - low + 1 > window {
            let wrapped = start + window - (high + 1)
            if let row = try one(forward, [low, low + wrapped]) { return try row.decode(at: 0, as: Int64.self) }
        }
        let newest = """
            SELECT s.id FROM (SELECT x.id, (\(condition)) AS ok FROM \(table) x WHERE x.id > $1
                              ORDER BY x.id DESC OFFSET 0) s
            WHERE s.ok LIMIT 1
            """
        if let row = try one(newest, [high - window]) { return try row.decode(at: 0, as: Int64.self) }
        return nil
    }

    /// Whether row `id` of `table` still satisfies `condition` (after its locks are held).
    func holds(_ table: String, _ id: Int64, _ condition: String) throws -> Bool {
        try one("SELECT 1 FROM \(table) x WHERE x.id = $1 AND (\(condition))", [id]) != nil
    }

    // MARK: - Locking

    /// Locks customer `id` and returns it with its money currency, or `nil` when it is gone or
    /// soft-deleted.
    func lockCustomer(_ id: Int64) throws -> LockedCustomer? {
        guard let row = try one("SELECT id, deleted_at IS NOT NULL, email, name FROM customers WHERE id = $1 FOR UPDATE", [id]),
            try !row.decode(at: 1, as: Bool.self)
        else { return nil }
        // customers.currency is NULL for some early customers: their invoices carry it (C12).
        let code = try one(
            """
            SELECT COALESCE(c.currency, (SELECT min(i.currency) FROM invoices i WHERE i.customer_id = c.id))
            FROM customers c WHERE c.id = $1
            """, [id]
        )?.decode(at: 0, as: String?.self)
        let currency = try code.map { code throws(SimulatorError) in try LegacyCurrency(code, context: "customer \(id)") }
        return LockedCustomer(
            id: id, currency: currency, email: try row.decode(at: 2, as: String.self), name: try row.decode(at: 3, as: String?.self))
    }

    /// Locks subscription `id` (after its customer).
    func lockSubscription(_ id: Int64) throws {
        _ = try rows("SELECT id FROM subscriptions WHERE id = $1 FOR UPDATE", [id])
    }

    /// Locks invoice `id` (after its customer and subscription).
    func lockInvoice(_ id: Int64) throws {
        _ = try rows("SELECT id FROM invoices WHERE id = $1 FOR UPDATE", [id])
    }

    /// Locks payment `id` (after its customer and invoice).
    func lockPayment(_ id: Int64) throws {
        _ = try rows("SELECT id FROM payments WHERE id = $1 FOR UPDATE", [id])
    }

    // MARK: - Writes shared by operations

    /// Records the subscription's current version as replaced at `t` (the ORM callback's
    /// `subscription_history` row: the EARLIER version), before the caller overwrites it.
    func recordHistory(_ subscriptionID: Int64, at t: PostgresTimestamp) throws {
        try execute(
            """
            INSERT INTO subscription_history (subscription_id, plan_id, status, quantity, cancel_at_period_end,
                current_period_start, current_period_end, canceled_at, ended_at, changed_at)
            SELECT id, plan_id, status, quantity, cancel_at_period_end, current_period_start, current_period_end,
                   canceled_at, ended_at, $2::timestamptz::timestamp
            FROM subscriptions WHERE id = $1
            """, [subscriptionID, t])
    }

    /// Adds `delta` minor units to the customer's `balance` cache (positive: it owes more).
    func addToBalance(_ customer: LockedCustomer, _ currency: LegacyCurrency, _ delta: Int64, at t: PostgresTimestamp) throws {
        try execute(
            "UPDATE customers SET balance = balance + $2::numeric, updated_at = $3::timestamptz::timestamp WHERE id = $1",
            [customer.id, currency.text(delta), t])
    }

    /// Recomputes the customer's `credit_balance` float from its balance transactions, the way
    /// C08 compares it (the unapplied credit as numeric, then cast to float8), so it stays
    /// bit-exact whatever the history of additions.
    func refreshCreditBalance(_ customerID: Int64) throws {
        try execute(
            """
            UPDATE customers SET credit_balance =
                (-(SELECT COALESCE(sum(amount), 0) FROM customer_balance_transactions WHERE customer_id = $1))::float8
            WHERE id = $1
            """, [customerID])
    }

    /// A provider payment id like the generator's: `pi_3`, 19 random characters, and the
    /// payment id in base 62, so it is unique (C15).
    mutating func providerPaymentID(_ paymentID: Int64) -> String {
        var bytes = Array("pi_3".utf8)
        for _ in 0..<19 { bytes.append(LegacyVocabulary.base62[Int(random.int(0...61))]) }
        var id = UInt64(paymentID)
        var tail = [UInt8](repeating: 0, count: 6)
        for k in stride(from: 5, through: 0, by: -1) {
            tail[k] = LegacyVocabulary.base62[Int(id % 62)]
            id /= 62
        }
        return String(decoding: bytes + tail, as: UTF8.self)
    }

    /// A new payment id from the table's sequence (needed before the insert, for the provider id).
    func nextPaymentID() throws -> Int64 {
        try one("SELECT nextval(pg_get_serial_sequence('legacy.payments', 'id'))")!.decode(at: 0, as: Int64.self)
    }

    // MARK: - Journal

    /// The journal entry of the finished operation (its time is the one it wrote).
    mutating func entry(keys: [String: Int64], effects: [Effect], summary: String) -> JournalEntry {
        JournalEntry(
            op: operation.id, kind: operation.kind, at: now().iso8601, keys: keys.mapValues { String($0) },
            effects: effects, summary: summary)
    }
}

/// A customer row the operation holds locked.
struct LockedCustomer {
    let id: Int64
    /// `customers.currency`, else its invoices' (`nil`: no money yet, stories 29 and 31).
    let currency: LegacyCurrency?
    let email: String
    let name: String?
}

/// Values of journal effects (Effect.swift): amounts are minor units in decimal, statuses by
/// their canonical names, timestamps ISO 8601.
enum LegacyEffects {
    /// A field that must be NULL.
    static let null: String? = nil
}
