import Billing
import Commands
import EventStore
import Foundation
import Postgres
import TextFormats

/// What a delivery did. Every case is acknowledged (HTTP 200): Stripe must not deliver it again.
public enum WebhookOutcome: Sendable, Hashable, CustomStringConvertible {
    /// The event's rows were appended: `events` events in all (0 when the rows already were
    /// what the event says, e.g. `customer.subscription.trial_will_end`).
    case applied(events: Int)
    /// This event id was recorded before (a retried delivery): nothing done, counted.
    case duplicate
    /// An older state than the ledger holds for the object (delivered out of order): recorded,
    /// nothing appended.
    case stale
    /// An event type the webhook does not map: recorded and counted, nothing appended.
    case ignored(type: String)

    public var description: String {
        switch self {
        case .applied(let n): "applied (\(n) event\(n == 1 ? "" : "s"))"
        case .duplicate: "duplicate"
        case .stale: "stale"
        case .ignored(let type): "ignored (\(type))"
        }
    }

    /// `applied`, `duplicate`, `stale` or `ignored`: the `stripe_events.outcome` it is recorded
    /// as (a duplicate is counted on the first delivery's row), and a label for metrics.
    public var kind: String {
        switch self {
        case .applied: "applied"
        case .duplicate: "duplicate"
        case .stale: "stale"
        case .ignored: "ignored"
        }
    }
}

/// Errors of the handler other than a refused signature or an unreadable event.
public enum StripeWebhookError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Another writer kept moving a stream the event writes: given up after `attempts` (the
    /// route answers 5xx; Stripe delivers again).
    case conflict(eventID: String, attempts: Int, stream: String)

    public var description: String {
        switch self {
        case .conflict(let id, let attempts, let stream):
            "Stripe event \(id): stream \(stream) kept moving; gave up after \(attempts) attempts"
        }
    }
}

/// `POST /webhooks/stripe`, as a library: verify, deduplicate, order, map, append.
///
/// The route passes the raw body and the `Stripe-Signature` header and turns the result into a
/// status: an outcome → 200; ``StripeSignatureError`` or ``StripeEventError`` → 400 (nothing is
/// stored); ``StripeUnresolvedReference``, ``StripeWebhookError`` or a database error → 5xx, so
/// Stripe delivers the event again later (nothing is stored either: it is one transaction).
///
/// A verified event is applied in one store transaction:
/// 1. its id is inserted into ``StripeWebhookStore`` (`stripe_events`); an id already there is a
///    retried delivery: counted, ``WebhookOutcome/duplicate``. Of two concurrent deliveries the
///    second waits on the first's key, so exactly one applies;
/// 2. an unmapped type is recorded as ``WebhookOutcome/ignored(type:)``;
/// 3. under the object's advisory lock (`ledgerlift.stripe.object/<id>`), an event created before
///    the last one applied to the same object is ``WebhookOutcome/stale``;
/// 4. its object becomes canonical rows (``StripeMapping``); under the customer's command lock
///    (the one ``CommandExecutor`` takes, so webhooks and commands of one customer take turns),
///    each row is laid over the ledger's current row and becomes the events of
///    ``Billing/Transitions`` from it (origin ``Billing/SyncOrigin/stripe``: ids
///    `stripe/<entity>/<key>/v<n>/…`), appended with the exact version read. A row whose state
///    is behind the ledger's (an invoice `open` after it was `paid`) is left out; an event all of
///    whose rows are left out is stale.
///
/// Events carry metadata `{origin: stripe, evidence, source, stripe_event_id, stripe_event_type}`.
/// Their evidence is what the transitions give — `observed` where Stripe's object dates the step
/// (and for the catch-all of a first row, which Stripe observed rather than a backfill imported),
/// `inferred` where no field of the object dates it or a step is moved to keep the stream in order.
public struct StripeWebhookHandler: Sendable {
    public let store: EventStore
    /// The endpoint's signing secrets (`whsec_…`): more than one while a secret is rolled.
    public let secrets: [String]
    public var tolerance: TimeInterval = StripeSignature.defaultTolerance
    /// Attempts when another writer moves a stream between read and append.
    public var maximumAttempts = 5

    public init(store: EventStore = EventStore(), secrets: [String]) {
        self.store = store
        self.secrets = secrets
    }

    var deliveries: StripeWebhookStore { StripeWebhookStore(store: store) }
    var loader: CommandStateLoader { CommandStateLoader(store: store) }

    /// Verifies and applies one delivery.
    ///
    /// - Throws: ``StripeSignatureError`` (bad or stale signature: nothing stored),
    ///   ``StripeEventError`` (not a readable Stripe event), ``StripeUnresolvedReference``,
    ///   ``StripeWebhookError``, database errors.
    public func handle(payload: [UInt8], signatureHeader: String, now: Date = Date(), on connection: Connection) async throws -> WebhookOutcome {
        try StripeSignature.verify(payload: payload, header: signatureHeader, secrets: secrets, now: now, tolerance: tolerance)
        return try await apply(try StripeEvent(payload: payload), on: connection)
    }

    /// ``handle(payload:signatureHeader:now:on:)`` for a body held as `Data`.
    public func handle(payload: Data, signatureHeader: String, now: Date = Date(), on connection: Connection) async throws -> WebhookOutcome {
        try await handle(payload: Array(payload), signatureHeader: signatureHeader, now: now, on: connection)
    }

    /// Applies an event whose signature was verified (or that comes from Stripe's API, e.g. a
    /// replay of `GET /v1/events`).
    public func apply(_ event: StripeEvent, on connection: Connection) async throws -> WebhookOutcome {
        var lastStream = ""
        for attempt in 1...max(1, maximumAttempts) {
            do {
                return try await connection.withSession { session in
                    try session.transaction { tx in try self.apply(event, tx) }
                }
            } catch EventStoreError.wrongExpectedVersion(let stream, _, _) {
                lastStream = stream
                try await Task.sleep(for: .milliseconds(5 * attempt))
            }
        }
        throw StripeWebhookError.conflict(eventID: event.id, attempts: max(1, maximumAttempts), stream: lastStream)
    }

    /// One attempt, in `tx`.
    func apply(_ event: StripeEvent, _ tx: Session) throws -> WebhookOutcome {
        // As for commands: nothing is stored (not even the delivery) while writes are not the
        // ledger's; Stripe delivers the event again.
        if let routing = try RoutingTable(store: store).readForWrite(in: tx), routing.writes != .ledger {
            throw WritesRoutedElsewhere(cutover: routing.cutover, writes: routing.writes)
        }
        let table = deliveries.table
        let inserted = try tx.query(
            """
            INSERT INTO \(table) (event_id, type, object_id, event_created, livemode, api_version, outcome)
            VALUES ($1, $2, $3, $4, $5, $6, 'pending')
            ON CONFLICT (event_id) DO UPDATE SET deliveries = \(table).deliveries + 1, last_received_at = now()
            RETURNING xmax = 0
            """,
            [event.id, event.type, event.objectID, ObjectReader.timestamp(event.created).timestampValue!, event.livemode, event.apiVersion]
        ).rows[0].decode(at: 0, as: Bool.self)
        guard inserted else { return .duplicate }
        let outcome = try decide(event, tx)
        try tx.execute(
            "UPDATE \(table) SET outcome = $2, events = $3, streams = $4::text[], detail = $5 WHERE event_id = $1",
            [event.id, outcome.outcome.kind, Int32(outcome.events), PostgresArray(outcome.streams), outcome.detail])
        return outcome.outcome
    }

    struct Applied {
        var outcome: WebhookOutcome
        var events = 0
        var streams = [String]()
        var detail: String?
    }

    private func decide(_ event: StripeEvent, _ tx: Session) throws -> Applied {
        guard StripeMapping.kind(of: event.type) != nil, let objectID = event.objectID else {
            return Applied(outcome: .ignored(type: event.type))
        }
        try tx.lock(AdvisoryLock("ledgerlift.stripe.object/" + objectID), scope: .transaction)
        let last = try tx.query(
            "SELECT max(event_created) FROM \(deliveries.table) WHERE object_id = $1 AND outcome = 'applied' AND event_id <> $2",
            [objectID, event.id]
        ).rows[0].decode(at: 0, as: PostgresTimestamp?.self)
        let created = ObjectReader.timestamp(event.created).timestampValue!
        if let last, created < last {
            return Applied(outcome: .stale, detail: "created \(created.iso8601) before the last applied event of \(objectID) (\(last.iso8601))")
        }
        let loader = self.loader
        let mapped: [StripeRow]?
        do {
            mapped = try StripeMapping.rows(for: event, current: { entity, key in try loader.stream(entity, key, in: tx).row })
        } catch let notApplicable as StripeNotApplicable {
            return Applied(outcome: .ignored(type: event.type), detail: notApplicable.reason)
        } catch let unresolved as StripeUnresolvedReference {
            // The refund of a guest charge: the charge was acknowledged as not for the ledger.
            let ignored = try tx.query(
                "SELECT detail FROM \(deliveries.table) WHERE object_id = $1 AND outcome = 'ignored' LIMIT 1", [unresolved.missingObjectID]
            ).rows.first
            guard let ignored else { throw unresolved }
            let reason = try ignored.decode(at: 0, as: String?.self) ?? "ignored"
            return Applied(outcome: .ignored(type: event.type), detail: "\(unresolved.missingObjectID): \(reason)")
        }
        guard let rows = mapped else { return Applied(outcome: .ignored(type: event.type)) }
        // The customers' command locks, in key order (every writer takes them in that order).
        let customers = Set(rows.compactMap { $0.entity == .customer ? $0.key : $0.values["customer_id"]?.textValue })
        for customer in customers.sorted() { try tx.lock(CommandExecutor.customerLock(customer), scope: .transaction) }
        var result = Applied(outcome: .applied(events: 0))
        var skipped = [String]()
        for mapped in rows {
            let current = try loader.stream(mapped.entity, mapped.key, in: tx)
            if let row = current.row, StripeMapping.rank(of: row) > mapped.rank {
                skipped.append(mapped.streamID)
                continue
            }
            var after = Self.laid(mapped, over: current.row)
            // An event that changes nothing but the time of the last change (a
            // `trial_will_end`, an `invoice.updated` of a field the model does not hold) leaves
            // the row as it is: `updated_at` only moves with a change.
            if let row = current.row, row.entity.column("updated_at") != nil {
                var unchanged = after
                unchanged.values["updated_at"] = row["updated_at"]
                if unchanged == row { after = row }
            }
            // A refund has neither an `updated_at` nor a column dating its outcome: the event's
            // time is when Stripe recorded the change (for a first row it dates only what the
            // creation does not explain).
            let changedAt = mapped.entity == .refund && current.row != nil ? ObjectReader.timestamp(event.created).timestampValue : nil
            let events = Transitions.transitions(
                before: current.row, after: after, notBefore: current.lastOccurredAt, changedAt: changedAt,
                syncedFromVersion: current.version, origin: .stripe
            ).map(Self.observedWhenImported)
            guard !events.isEmpty else { continue }
            try store.append(
                events.map { Self.newEvent($0, event: event) }, to: mapped.streamID, expectedVersion: .exact(current.version), in: tx)
            result.events += events.count
            result.streams.append(mapped.streamID)
        }
        if skipped.count == rows.count {
            return Applied(outcome: .stale, detail: "the ledger holds a later state of \(skipped.joined(separator: ", "))")
        }
        result.outcome = .applied(events: result.events)
        if !skipped.isEmpty { result.detail = "left out (later state in the ledger): " + skipped.joined(separator: ", ") }
        return result
    }

    /// Stripe's columns over the ledger's row (columns Stripe does not know are kept), and the
    /// attributes merged.
    static func laid(_ mapped: StripeRow, over current: CanonicalRow?) -> CanonicalRow {
        var values = current?.values ?? [:]
        for (column, value) in mapped.values { values[column] = value }
        var attributes = current?.attributes ?? [:]
        for (name, value) in mapped.attributes { attributes[name] = value }
        return CanonicalRow(entity: mapped.entity, values: values, attributes: attributes)
    }

    /// A first row's catch-all is `imported` in a backfill; Stripe observed this one.
    static func observedWhenImported(_ event: BillingEvent) -> BillingEvent {
        guard event.evidence == .imported else { return event }
        return BillingEvent(
            eventID: event.eventID, entity: event.entity, key: event.key, type: event.type, occurredAt: event.occurredAt,
            evidence: .observed, changes: event.changes, attributes: event.attributes)
    }

    /// The event as stored: metadata `origin` `stripe`, `evidence`, `source`, `stripe_event_id`,
    /// `stripe_event_type`.
    static func newEvent(_ billing: BillingEvent, event: StripeEvent) -> NewEvent {
        var stored = billing.newEvent(origin: SyncOrigin.stripe.metadataOrigin)
        let meta: [(String, JSONValue)] = [
            ("origin", .string(SyncOrigin.stripe.metadataOrigin)), ("evidence", .string(billing.evidence.rawValue)),
            ("source", .string("\(billing.entity.rawValue)/\(billing.key)")), ("stripe_event_id", .string(event.id)),
            ("stripe_event_type", .string(event.type)),
        ]
        stored.metadata = PostgresJSON(JSONValue.object(meta).rendered)
        return stored
    }
}

extension StripeMapping {
    /// The state rank of a ledger row, on the scale of ``StripeRow/rank`` (whoever wrote it).
    public static func rank(of row: CanonicalRow) -> Int {
        let status = row["status"].textValue ?? ""
        switch row.entity {
        case .customer: return row["archived_at"].isNull ? 0 : 1
        case .subscription:
            switch status {
            case "incomplete": return 0
            case "trialing": return 1
            case "canceled": return 3
            default: return 2
            }
        case .invoice:
            switch status {
            case "draft": return 0
            case "open": return 1
            case "uncollectible": return 2
            default: return 3
            }
        case .payment, .refund: return status == "pending" ? 0 : 1
        case .creditNote: return status == "void" ? 1 : 0
        default: return 0
        }
    }
}
