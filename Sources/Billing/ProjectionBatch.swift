import EventStore
import Postgres
import Synchronization

/// What one batch of the global order did to the read models.
public struct ProjectionBatchOutcome: Sendable, Hashable {
    /// Events in the batch.
    public var events: Int = 0
    /// Billing events folded into the canonical rows.
    public var applied: Int = 0
    /// Events of types that are not billing events (other writers' streams), passed over.
    public var skipped: Int = 0
    /// History versions written (a key's events at one business instant make one version).
    public var versions: Int = 0

    public init() {}
}

/// A batch decoded and grouped, ready to be written (no database work yet).
struct PreparedBatch: Sendable {
    var outcome = ProjectionBatchOutcome()
    var entities = [Entity: EntityBatch]()
    /// Where the batch ends in the global order.
    var cursor = GlobalCursor.start
}

/// One entity's share of a batch: its keys in order of first appearance, each with its events
/// in stream order.
struct EntityBatch: Sendable {
    var keys = [String]()
    var events = [String: [BillingEvent]]()

    mutating func add(_ event: BillingEvent) {
        if events[event.key]?.append(event) == nil {
            keys.append(event.key)
            events[event.key] = [event]
        }
    }
}

/// The keys a batch changed, for the derived read models.
struct TouchedKeys {
    /// Customers whose `customer_balances` rows may have changed.
    var balanceCustomers = Set<String>()
    /// Customers whose MRR movements may have changed (from subscription versions).
    var mrrCustomers = Set<String>()
    /// Plans with new versions: every customer ever subscribed to them is recomputed for MRR.
    var plans = Set<String>()
    /// Keys per revenue kind (`invoice`, `payment`, `refund`, `credit_note`).
    var revenue = [String: Set<String>]()
    /// Invoices that became credit invoices or stopped being one: the payments that pay them
    /// (directly or through an allocation) split into collected and prepaid anew.
    var creditKindInvoices = Set<String>()
    /// Invoices of credit applications that name no customer: such an application counts for
    /// its invoice's customer, whose balances are recomputed.
    var creditApplicationInvoices = Set<String>()

    var isEmpty: Bool {
        balanceCustomers.isEmpty && mrrCustomers.isEmpty && plans.isEmpty && revenue.isEmpty
            && creditKindInvoices.isEmpty && creditApplicationInvoices.isEmpty
    }
}

/// A row version to write: valid over `[from, to)`.
struct StagedVersion {
    let key: String
    let from: PostgresTimestamp
    var to: PostgresTimestamp?
    let row: CanonicalRow
}

/// During a blue/green build, the keys the build has already written (as 64-bit hashes), so a
/// batch loads current rows only for keys that may exist: a key not in the index is new for
/// certain; a hash collision merely costs a lookup that finds nothing.
final class KnownKeys: Sendable {
    private let hashes = Mutex([Entity: Set<Int>]())

    /// The keys with a current version in `schema`'s history tables (none for a build that
    /// starts from nothing).
    static func load(_ schema: ReadModelSchema, empty: Bool, in session: Session) throws -> KnownKeys {
        let known = KnownKeys()
        guard !empty else { return known }
        for entity in Entity.allCases {
            var set = Set<Int>()
            let sql = "SELECT \(quoteIdentifier(entity.keyColumn)) FROM \(schema.history(entity)) WHERE valid_to IS NULL"
            try session.stream(sql) { row in
                if let key = row.values[0] { set.insert(key.hashValue) }
            }
            known.hashes.withLock { $0[entity] = set }
        }
        return known
    }

    func mayExist(_ entity: Entity, _ key: String) -> Bool {
        hashes.withLock { $0[entity]?.contains(key.hashValue) ?? false }
    }

    func insert(_ keys: [Entity: [String]]) {
        hashes.withLock { all in
            for (entity, list) in keys {
                all[entity, default: []].formUnion(list.lazy.map(\.hashValue))
            }
        }
    }
}

extension Projector {
    /// Applies one batch of the global order to the read models, in the caller's transaction.
    ///
    /// Decodes the billing events (events of other types are passed over and counted), folds
    /// each key's events into its current row with ``Transitions/apply(_:to:)``, writes the
    /// canonical rows and their history in bulk, and — unless this projector builds in bulk —
    /// recomputes the derived read models for the keys the batch touched.
    ///
    /// ``run(on:listener:until:progress:)`` calls it inside each batch's transaction, together
    /// with the checkpoint; call it yourself only inside a transaction that also records how
    /// far you got.
    /// - Throws: ``ProjectionError/undecodableEvent(eventID:streamID:globalPosition:reason:)``
    ///   for a billing event that does not decode; `PostgresError` from the writes.
    @discardableResult
    public func project(_ events: [RecordedEvent], in session: Session) throws -> ProjectionBatchOutcome {
        try apply(try prepare(events), known: nil, in: session).outcome
    }

    /// Decodes and groups a batch.
    func prepare(_ events: [RecordedEvent]) throws -> PreparedBatch {
        var batch = PreparedBatch()
        batch.outcome.events = events.count
        batch.cursor = events.last?.cursor ?? .start
        for recorded in events {
            guard let event = try Self.decode(recorded) else {
                batch.outcome.skipped += 1
                continue
            }
            batch.entities[event.entity, default: EntityBatch()].add(event)
            batch.outcome.applied += 1
        }
        return batch
    }

    /// Writes a prepared batch in the caller's transaction.
    ///
    /// - Parameter known: during a blue/green build, the keys already written (else every
    ///   key's current row is looked up).
    /// - Returns: what the batch did, and the keys it created, per entity.
    func apply(_ batch: PreparedBatch, known: KnownKeys?, in tx: Session) throws
        -> (outcome: ProjectionBatchOutcome, created: [Entity: [String]])
    {
        var outcome = batch.outcome
        // Serializes batches with a blue/green swap of this schema: a batch that started before
        // the swap waits here, then fails on its checkpoint, which the swap moved.
        try tx.lock(Self.batchLock(schema.name), scope: .transaction)
        guard !batch.entities.isEmpty else { return (outcome, [:]) }
        // The lookups below touch a few keys of large tables whose statistics lag behind a
        // build (the planner could scan whole tables): each is a per-key index lookup by
        // construction (a LATERAL … LIMIT 1), and scans stay off while they run.
        try tx.execute("SET LOCAL enable_seqscan = off")
        var touched = TouchedKeys()
        var created = [Entity: [String]]()
        for entity in Entity.allCases {
            guard let entityBatch = batch.entities[entity] else { continue }
            let written = try write(entity, entityBatch, known: known, touched: &touched, in: tx)
            outcome.versions += written.versions
            if !written.created.isEmpty { created[entity] = written.created }
        }
        try tx.execute("SET LOCAL enable_seqscan = DEFAULT")
        if mode == .incremental, !touched.isEmpty {
            try DerivedModels(schema: schema).refresh(touched, in: tx)
        }
        return (outcome, created)
    }

    /// Folds and writes one entity's share of a batch.
    ///
    /// Each key's events are folded into its current row; every change makes a version valid
    /// from the event's business time (several at one instant make one version, the last
    /// wins). A key's version current before the batch is closed at its first new version —
    /// or deleted, when the new one starts at the same instant — and all new versions are
    /// appended with `COPY`. The canonical rows are replaced likewise, except in a blue/green
    /// build, which fills them once at the end from the current versions.
    /// - Returns: the number of versions written and the keys created.
    func write(
        _ entity: Entity, _ batch: EntityBatch, known: KnownKeys?, touched: inout TouchedKeys, in tx: Session
    ) throws -> (versions: Int, created: [String]) {
        let lookup = known.map { known in batch.keys.filter { known.mayExist(entity, $0) } } ?? batch.keys
        let current = lookup.isEmpty ? [:] : try loadCurrent(entity, keys: lookup, in: tx)
        var staged = [StagedVersion]()
        staged.reserveCapacity(batch.keys.count)
        var created = [String]()
        var replaced = [String]()
        var replacedFrom = [PostgresTimestamp]()
        var versions = [StagedVersion]()
        for key in batch.keys {
            let before = current[key]
            var row = before?.row
            var lastFrom = before?.from
            // When the version current before the batch ends: at the first new version, or at a
            // deletion that comes first.
            var closeBefore: PostgresTimestamp?
            var deleted = false
            versions.removeAll(keepingCapacity: true)
            for event in batch.events[key]! {
                // A stream's events are in business-time order; should one be dated earlier than
                // the version before it, it takes effect at that version's instant instead.
                var from = event.occurredAt
                if let lastFrom, from < lastFrom { from = lastFrom }
                if event.type.isDeletion {
                    // Deleting a key that does not exist changes nothing.
                    guard row != nil else { continue }
                    // The current version ends here; one that starts at this same instant gives
                    // way entirely (several events at one instant: the last wins).
                    if let last = versions.last, last.to == nil {
                        if last.from == from { versions.removeLast() } else { versions[versions.count - 1].to = from }
                    } else if before != nil, closeBefore == nil {
                        closeBefore = from
                    }
                    deleted = true
                    lastFrom = from
                    row = nil
                    continue
                }
                // `Transitions.apply` sets exactly the event's columns (and attributes, when it
                // carries them), so the row changes iff one of those differs.
                if let row, !Self.changes(row, event) { continue }
                let next = Transitions.apply(event, to: row)
                if let last = versions.last, last.to == nil, last.from == from {
                    versions[versions.count - 1] = StagedVersion(key: key, from: from, to: nil, row: next)
                } else {
                    if let last = versions.last, last.to == nil { versions[versions.count - 1].to = from }
                    versions.append(StagedVersion(key: key, from: from, to: nil, row: next))
                }
                if before != nil, closeBefore == nil { closeBefore = from }
                lastFrom = from
                row = next
            }
            guard !versions.isEmpty || deleted else { continue }
            if let closeBefore {
                replaced.append(key)
                replacedFrom.append(closeBefore)
            } else if !versions.isEmpty {
                created.append(key)
            }
            staged += versions
            collect(entity, key: key, before: before?.row, versions: versions, final: row, into: &touched)
        }
        guard !staged.isEmpty || !replaced.isEmpty else { return (0, created) }

        let key = quoteIdentifier(entity.keyColumn)
        let all = (ReadModelRows.valueColumns(entity).map { quoteIdentifier($0.name) } + ["attributes"])
            .joined(separator: ", ")
        if !replaced.isEmpty {
            let history = schema.history(entity)
            // The current version ends where the first new one starts, or gives way to it when
            // both start at the same instant.
            try tx.execute(
                """
                WITH current AS (
                    SELECT v.ctid AS id, v.valid_from, c.t
                    FROM unnest($1::text[], $2::timestamptz[]) AS c(k, t)
                    CROSS JOIN LATERAL (
                        SELECT h.ctid, h.valid_from FROM \(history) AS h WHERE h.\(key) = c.k AND h.valid_to IS NULL LIMIT 1
                    ) AS v
                ),
                closed AS (
                    UPDATE \(history) AS h SET valid_to = current.t FROM current
                    WHERE h.ctid = current.id AND current.valid_from < current.t
                )
                DELETE FROM \(history) AS h USING current WHERE h.ctid = current.id AND current.valid_from = current.t
                """, [PostgresArray(replaced), PostgresArray(replacedFrom)])
        }
        try copy(staged, into: "\(schema.history(entity)) (\(key), valid_from, valid_to, \(all))", validity: true, tx)
        if mode == .incremental {
            if !replaced.isEmpty {
                let table = schema.table(entity)
                try tx.execute(
                    """
                    WITH current AS (
                        SELECT v.ctid AS id FROM unnest($1::text[]) AS k(key)
                        CROSS JOIN LATERAL (SELECT c.ctid FROM \(table) AS c WHERE c.\(key) = k.key LIMIT 1) AS v
                    )
                    DELETE FROM \(table) AS c USING current WHERE c.ctid = current.id
                    """, [PostgresArray(replaced)])
            }
            try copy(staged.filter { $0.to == nil }, into: "\(schema.table(entity)) (\(key), \(all))", validity: false, tx)
        }
        return (staged.count, created)
    }

    /// Whether applying `event` changes `row`.
    static func changes(_ row: CanonicalRow, _ event: BillingEvent) -> Bool {
        if let attributes = event.attributes, attributes != row.attributes { return true }
        return event.changes.contains { row[$0.column] != $0.value }
    }

    /// `COPY`s versions into `target` (a table with its column list): the key, the validity
    /// (when `validity`), the value columns in order, the attributes.
    func copy(_ versions: [StagedVersion], into target: String, validity: Bool, _ tx: Session) throws {
        guard let entity = versions.first?.row.entity else { return }
        let columns = ReadModelRows.valueColumns(entity)
        try tx.copyIn("COPY \(target) FROM STDIN") { writer in
            for version in versions {
                writer.append(version.key)
                if validity {
                    writer.append(TimestampText.render(version.from))
                    writer.append(version.to.map(TimestampText.render))
                }
                for column in columns { ReadModelRows.append(version.row[column.name], to: writer) }
                writer.append(ReadModelRows.attributesJSON(version.row.attributes))
                try writer.endRow()
            }
        }
    }

    /// The current versions of `keys`, with the instant each became current.
    func loadCurrent(_ entity: Entity, keys: [String], in tx: Session) throws
        -> [String: (row: CanonicalRow, from: PostgresTimestamp)]
    {
        let result = try tx.query(
            """
            SELECT h.valid_from, \(ReadModelRows.selectList(entity, alias: "h"))
            FROM unnest($1::text[]) AS k(key)
            CROSS JOIN LATERAL (
                SELECT * FROM \(schema.history(entity)) AS v
                WHERE v.\(quoteIdentifier(entity.keyColumn)) = k.key AND v.valid_to IS NULL LIMIT 1
            ) AS h
            """, [PostgresArray(keys)])
        var current = [String: (row: CanonicalRow, from: PostgresTimestamp)](minimumCapacity: result.rows.count)
        let table = schema.name + "." + entity.tableName + "_history"
        for row in result.rows {
            let canonical = try ReadModelRows.canonicalRow(entity, from: row, offset: 1, table: table)
            guard let from = row.values[0].flatMap(PostgresTimestamp.init) else {
                throw ProjectionError.undecodableColumn(table: table, column: "valid_from", value: row.values[0] ?? "NULL")
            }
            current[canonical.key] = (canonical, from)
        }
        return current
    }

    /// Records which derived read models a key's change reaches.
    ///
    /// The derived tables depend on the current rows only, so a key's versions before and after
    /// the batch say everything: the customers it belonged to, the payments it names. Billing
    /// entities, and customers' billing entities and time zones, reach no materialized table:
    /// the tables are in UTC and keep each row's own billing entity, and reports resolve the
    /// rest when they read.
    ///
    /// `final` is the key's row after the batch: `nil` when the batch deleted it (its current
    /// row, and so its share of every derived model, is gone).
    func collect(
        _ entity: Entity, key: String, before: CanonicalRow?, versions: [StagedVersion], final: CanonicalRow?,
        into touched: inout TouchedKeys
    ) {
        guard mode == .incremental else { return }
        /// The non-NULL values of `column` in the row before the batch and in every new version.
        func values(_ column: String, _ insert: (String) -> Void) {
            if let id = before?[column].textValue { insert(id) }
            for version in versions { if let id = version.row[column].textValue { insert(id) } }
        }
        func customers(_ insert: (String) -> Void) { values("customer_id", insert) }
        switch entity {
        case .customer:
            touched.balanceCustomers.insert(key)
        case .invoice:
            customers { touched.balanceCustomers.insert($0) }
            touched.revenue["invoice", default: []].insert(key)
            let credit = CanonicalValue.text("credit")
            if (before?["kind"] == credit) != (final?["kind"] == credit) {
                touched.creditKindInvoices.insert(key)
            }
        case .balanceTransaction, .wallet:
            customers { touched.balanceCustomers.insert($0) }
        case .creditApplication:
            customers { touched.balanceCustomers.insert($0) }
            // Without a customer of its own, it counts for its invoice's.
            for row in [before].compactMap({ $0 }) + versions.map(\.row) where row["customer_id"].textValue == nil {
                if let invoice = row["invoice_id"].textValue { touched.creditApplicationInvoices.insert(invoice) }
            }
        case .subscription:
            customers { touched.mrrCustomers.insert($0) }
        case .plan:
            touched.plans.insert(key)
        case .payment:
            touched.revenue["payment", default: []].insert(key)
        case .paymentAllocation:
            // Its payment's prepaid part depends on it.
            values("payment_id") { touched.revenue["payment", default: []].insert($0) }
        case .refund:
            touched.revenue["refund", default: []].insert(key)
        case .creditNote:
            touched.revenue["credit_note", default: []].insert(key)
        case .invoiceLine, .billingEntity, .walletTransaction, .chargeback, .paymentTransaction:
            break
        }
    }
}
