import Billing
import Commands
import EventStore
import Foundation
import Postgres
import TestSupport
import Testing
import TextFormats

@testable import Webhooks

let endpointSecret = "whsec_test_6Yg2pX0dVn4Qb8Lr"

/// A fresh database with an empty event store.
func withStore<T>(_ label: String = #function, _ body: (Connection, String) async throws -> T) async throws -> T {
    try await TestDatabase.withConnection(label) { connection, dsn in
        _ = try await connection.withSession { try EventStore().migrate($0) }
        return try await body(connection, dsn)
    }
}

/// Delivers `payload` as Stripe does: signed now with the endpoint's secret.
func deliver(_ payload: [UInt8], _ connection: Connection, handler: StripeWebhookHandler = StripeWebhookHandler(secrets: [endpointSecret]))
    async throws -> WebhookOutcome
{
    let now = Date()
    let header = StripeSignature.header(payload: payload, secret: endpointSecret, timestamp: Int64(now.timeIntervalSince1970))
    return try await handler.handle(payload: payload, signatureHeader: header, now: now, on: connection)
}

func deliver(_ name: String, _ connection: Connection) async throws -> WebhookOutcome { try await deliver(try fixture(name), connection) }

/// The ledger's row: the stream replayed.
func ledgerRow(_ entity: Entity, _ key: String, _ connection: Connection) async throws -> CanonicalRow? {
    try await connection.withSession { try CommandStateLoader().stream(entity, key, in: $0).row }
}

func storedEvents(_ stream: String, _ connection: Connection) async throws -> [RecordedEvent] {
    try await connection.withSession { try EventStore().readStream(stream, in: $0) }
}

/// Every event in the store, and every recorded delivery.
func storedTotals(_ connection: Connection) async throws -> (events: Int64, deliveries: Int64) {
    try await connection.withSession { session in
        let events = try session.query("SELECT count(*) FROM ledgerlift.events").rows[0].decode(at: 0, as: Int64.self)
        let exists = try session.query("SELECT to_regclass('ledgerlift.stripe_events') IS NOT NULL").rows[0].decode(at: 0, as: Bool.self)
        let deliveries = exists ? try session.query("SELECT count(*) FROM ledgerlift.stripe_events").rows[0].decode(at: 0, as: Int64.self) : 0
        return (events, deliveries)
    }
}

func counts(_ connection: Connection) async throws -> StripeWebhookStore.Counts {
    try await connection.withSession { try StripeWebhookStore().counts(in: $0) }
}

/// An event fixture with fields of its object replaced (and its id, so it is another event).
func variant(_ name: String, id: String, created: Int64? = nil, _ fields: [String: StripeJSON]) throws -> [UInt8] {
    var json = try JSONSerialization.jsonObject(with: Data(try fixture(name))) as! [String: Any]
    json["id"] = id
    if let created { json["created"] = Int(created) }
    var data = json["data"] as! [String: Any]
    var object = data["object"] as! [String: Any]
    for (key, value) in fields {
        switch value {
        case .string(let s): object[key] = s
        case .integer(let i): object[key] = Int(i)
        case .null: object[key] = NSNull()
        default: Issue.record("unsupported variant value")
        }
    }
    data["object"] = object
    json["data"] = data
    return Array(try JSONSerialization.data(withJSONObject: json))
}

extension WebhookOutcome {
    var isApplied: Bool {
        if case .applied = self { return true }
        return false
    }
}

@Suite struct StripeWebhookHandlerTests {
    @Test func aBadSignatureIsRefusedAndNothingIsStored() async throws {
        try await withStore { connection, _ in
            let payload = try fixture("customer.created")
            let now = Date()
            let forged = StripeSignature.header(payload: payload, secret: "whsec_attacker", timestamp: Int64(now.timeIntervalSince1970))
            await #expect(throws: StripeSignatureError.noMatch) {
                try await StripeWebhookHandler(secrets: [endpointSecret]).handle(payload: payload, signatureHeader: forged, now: now, on: connection)
            }
            await #expect(throws: StripeSignatureError.malformedHeader(reason: "no timestamp (t=)")) {
                try await StripeWebhookHandler(secrets: [endpointSecret]).handle(payload: payload, signatureHeader: "", now: now, on: connection)
            }
            let totals = try await storedTotals(connection)
            #expect(totals.events == 0)
            #expect(totals.deliveries == 0)
            #expect(try await ledgerRow(.customer, "cus_RKs8vYb0Qm4Lzn", connection) == nil)
        }
    }

    @Test func aStaleTimestampIsRefusedAndNothingIsStored() async throws {
        try await withStore { connection, _ in
            let payload = try fixture("customer.created")
            let now = Date()
            let signedAt = Int64(now.timeIntervalSince1970) - 301
            let header = StripeSignature.header(payload: payload, secret: endpointSecret, timestamp: signedAt)
            await #expect(
                throws: StripeSignatureError.timestampOutsideTolerance(timestamp: signedAt, now: signedAt + 301, toleranceSeconds: 300)
            ) {
                try await StripeWebhookHandler(secrets: [endpointSecret]).handle(payload: payload, signatureHeader: header, now: now, on: connection)
            }
            let totals = try await storedTotals(connection)
            #expect(totals.events == 0)
            #expect(totals.deliveries == 0)
        }
    }

    @Test func theSameEventFiveTimesAfterALaterOneHasOneEffectAndTheLaterStateWins() async throws {
        try await withStore { connection, _ in
            #expect(try await deliver("invoice.created", connection) == .applied(events: 1))
            // The later event arrives first…
            guard case .applied = try await deliver("invoice.paid", connection) else { Issue.record("paid not applied"); return }
            let afterPaid = try await storedEvents("invoice-in_1QSrF6Ks8vYb0Qm4InvA", connection)
            // …then the earlier one, five times.
            var outcomes = [WebhookOutcome]()
            for _ in 0..<5 { outcomes.append(try await deliver("invoice.finalized", connection)) }
            #expect(outcomes == [.stale, .duplicate, .duplicate, .duplicate, .duplicate])
            #expect(try await storedEvents("invoice-in_1QSrF6Ks8vYb0Qm4InvA", connection) == afterPaid)
            let row = try #require(try await ledgerRow(.invoice, "in_1QSrF6Ks8vYb0Qm4InvA", connection))
            #expect(row["status"] == .text("paid"))
            #expect(row["amount_paid"] == .amount(8_100))
            #expect(row["amount_due"] == .amount(0))
            #expect(row["paid_at"] == ts(paid))
            #expect(row["finalized_at"] == ts(finalized))
            let counted = try await counts(connection)
            #expect(counted.applied == 2)
            #expect(counted.stale == 1)
            #expect(counted.duplicates == 4)
            let recorded = try await connection.withSession { try StripeWebhookStore().delivery("evt_1QSrH8Ks8vYb0Qm4i1finalized", in: $0) }
            #expect(recorded?.outcome == "stale")
            #expect(recorded?.deliveries == 5)
            #expect(recorded?.events == 0)
        }
    }

    @Test func theSameEventFiveTimesAroundALaterOneHasOneEffectAndTheLaterStateWins() async throws {
        try await withStore { connection, _ in
            var outcomes = [WebhookOutcome]()
            for name in ["invoice.finalized", "invoice.finalized", "invoice.paid", "invoice.finalized", "invoice.finalized", "invoice.finalized"] {
                outcomes.append(try await deliver(name, connection))
            }
            #expect(outcomes.filter(\.isApplied).count == 2)
            #expect(outcomes[1] == .duplicate)
            #expect(Array(outcomes[3...]) == [.duplicate, .duplicate, .duplicate])
            let stream = try await storedEvents("invoice-in_1QSrF6Ks8vYb0Qm4InvA", connection)
            // Drafted and finalized once (from the first delivery), paid once.
            #expect(stream.map(\.eventType) == ["InvoiceDrafted", "InvoiceFinalized", "InvoicePaid"])
            let row = try #require(try await ledgerRow(.invoice, "in_1QSrF6Ks8vYb0Qm4InvA", connection))
            #expect(row["status"] == .text("paid"))
            #expect(row["updated_at"] == ts(paid))
            #expect(try await counts(connection).duplicates == 4)
        }
    }

    @Test func fiveConcurrentDeliveriesOfAnEventAndALaterOneHaveOneEffectEach() async throws {
        try await withStore { _, dsn in
            let finalizedPayload = try fixture("invoice.finalized")
            let paidPayload = try fixture("invoice.paid")
            let payloads = [finalizedPayload, finalizedPayload, paidPayload, finalizedPayload, finalizedPayload, finalizedPayload]
            let outcomes = try await withThrowingTaskGroup(of: (Bool, WebhookOutcome).self) { group in
                for payload in payloads {
                    group.addTask {
                        let connection = try await Connection.connect(dsn)
                        defer { connection.close() }
                        return (payload == paidPayload, try await deliver(payload, connection))
                    }
                }
                var all = [(Bool, WebhookOutcome)]()
                for try await outcome in group { all.append(outcome) }
                return all
            }
            let finalizedOutcomes = outcomes.filter { !$0.0 }.map(\.1)
            #expect(finalizedOutcomes.filter { $0 == .duplicate }.count == 4)
            // The earlier event applies if it came first, else it is stale: never both, never twice.
            #expect(finalizedOutcomes.filter { $0 == .stale || $0.isApplied }.count == 1)
            let paidOutcomes = outcomes.filter(\.0).map(\.1)
            #expect(paidOutcomes.count == 1 && paidOutcomes[0].isApplied)
            let connection = try await Connection.connect(dsn)
            defer { connection.close() }
            #expect(
                try await storedEvents("invoice-in_1QSrF6Ks8vYb0Qm4InvA", connection).map(\.eventType)
                    == ["InvoiceDrafted", "InvoiceFinalized", "InvoicePaid"])
            let row = try #require(try await ledgerRow(.invoice, "in_1QSrF6Ks8vYb0Qm4InvA", connection))
            #expect(row["status"] == .text("paid"))
            #expect(row["paid_at"] == ts(paid))
            #expect(try await counts(connection).duplicates == 4)
        }
    }

    @Test func concurrentDeliveriesOfOneEventApplyExactlyOnce() async throws {
        try await withStore { _, dsn in
            let payload = try fixture("customer.subscription.created")
            let outcomes = try await withThrowingTaskGroup(of: WebhookOutcome.self) { group in
                for _ in 0..<5 {
                    group.addTask {
                        let connection = try await Connection.connect(dsn)
                        defer { connection.close() }
                        return try await deliver(payload, connection)
                    }
                }
                var all = [WebhookOutcome]()
                for try await outcome in group { all.append(outcome) }
                return all
            }
            #expect(outcomes.filter { $0 == .duplicate }.count == 4)
            #expect(outcomes.filter(\.isApplied).count == 1)
            let connection = try await Connection.connect(dsn)
            defer { connection.close() }
            let stream = try await storedEvents("subscription-sub_1QSrD3Ks8vYb0Qm4SubA", connection)
            #expect(stream.map(\.eventType) == ["SubscriptionStarted"])
            #expect(try await counts(connection).duplicates == 4)
        }
    }

    @Test func eventsCarryStripeIDsOriginAndTheStripeEventInTheirMetadata() async throws {
        try await withStore { connection, _ in
            #expect(try await deliver("customer.created", connection) == .applied(events: 1))
            let stored = try await storedEvents("customer-cus_RKs8vYb0Qm4Lzn", connection)
            #expect(stored.map(\.eventType) == ["CustomerCreated"])
            #expect(
                stored[0].eventID
                    == DeterministicID.uuid5(namespace: DeterministicID.eventNamespace, name: "stripe/customer/cus_RKs8vYb0Qm4Lzn/v0/0/CustomerCreated"))
            let metadata = try JSONValue.parse(stored[0].metadata.text)
            #expect(metadata["origin"] == .string("stripe"))
            #expect(metadata["evidence"] == .string("observed"))
            #expect(metadata["stripe_event_id"] == .string("evt_1QSrA0Ks8vYb0Qm4c0created"))
            #expect(metadata["stripe_event_type"] == .string("customer.created"))
            #expect(stored[0].occurredAt == PostgresTimestamp(microsecondsSinceEpoch: customerCreated * 1_000_000))
            #expect(SyncOrigin.stripe.rawValue == "stripe")
            #expect(SyncOrigin.stripe.metadataOrigin == "stripe")
            let row = try #require(try await ledgerRow(.customer, "cus_RKs8vYb0Qm4Lzn", connection))
            #expect(row["email"] == .text("ada@example.com"))
            #expect(row.attributes["stripe_id"] == "cus_RKs8vYb0Qm4Lzn")
        }
    }

    @Test func aCustomersLifeAppliesInOrderAndItsDeletionArchivesIt() async throws {
        try await withStore { connection, _ in
            for name in ["customer.created", "customer.updated", "customer.deleted"] { _ = try await deliver(name, connection) }
            let stored = try await storedEvents("customer-cus_RKs8vYb0Qm4Lzn", connection)
            #expect(stored.map(\.eventType) == ["CustomerCreated", "CustomerUpdated", "CustomerArchived"])
            let row = try #require(try await ledgerRow(.customer, "cus_RKs8vYb0Qm4Lzn", connection))
            #expect(row["email"] == .text("ada.lovelace@example.com"))
            #expect(row["currency"] == .text("USD"))
            #expect(row["archived_at"] == ts(customerCreated + 90 * 86_400))
            // An update delivered after the deletion (older) changes nothing.
            #expect(try await deliver(try variant("customer.updated", id: "evt_late_update", ["name": .string("A. L.")]), connection) == .stale)
        }
    }

    @Test func aSameSecondEventWithAnEarlierStateIsStale() async throws {
        try await withStore { connection, _ in
            guard case .applied = try await deliver("invoice.paid", connection) else { Issue.record("paid not applied"); return }
            // invoice.updated in the same second as invoice.paid, still saying open.
            let open = try variant(
                "invoice.finalized", id: "evt_same_second_open", created: paid, ["amount_remaining": .integer(8_100)])
            #expect(try await deliver(open, connection) == .stale)
            #expect(try await ledgerRow(.invoice, "in_1QSrF6Ks8vYb0Qm4InvA", connection)?["status"] == .text("paid"))
        }
    }

    @Test func subscriptionsInvoicesPaymentsRefundsAndCreditNotesBecomeTheirRows() async throws {
        try await withStore { connection, _ in
            for name in [
                "customer.created", "customer.subscription.created", "customer.subscription.trial_will_end", "customer.subscription.updated",
                "invoice.created", "invoice.finalized", "invoice.paid", "charge.refunded", "refund.updated", "credit_note.created",
                "credit_note.voided", "customer.subscription.deleted",
            ] {
                let outcome = try await deliver(name, connection)
                guard case .applied(let events) = outcome else { Issue.record("\(name): \(outcome)"); return }
                // Only the time of the last change would move: the row is left as it is.
                if name == "customer.subscription.trial_will_end" { #expect(events == 0) }
            }
            let subscription = try #require(try await ledgerRow(.subscription, "sub_1QSrD3Ks8vYb0Qm4SubA", connection))
            #expect(subscription["status"] == .text("canceled"))
            #expect(subscription["ended_at"] == ts(trialEnd + 20 * 86_400))
            let subscriptionEvents = try await storedEvents("subscription-sub_1QSrD3Ks8vYb0Qm4SubA", connection).map(\.eventType)
            #expect(subscriptionEvents == ["SubscriptionStarted", "SubscriptionTrialEnded", "SubscriptionUpdated", "SubscriptionCanceled", "SubscriptionEnded"])
            let payment = try #require(try await ledgerRow(.payment, "ch_3QSrH8Ks8vYb0Qm40ChgA", connection))
            #expect(payment["status"] == .text("succeeded"))
            #expect(payment["provider_payment_id"] == .text("pi_3QSrH8Ks8vYb0Qm40PayA"))
            let refund = try #require(try await ledgerRow(.refund, "re_3QSrH8Ks8vYb0Qm40RefA", connection))
            #expect(refund["status"] == .text("succeeded"))
            #expect(refund["customer_id"] == .text("cus_RKs8vYb0Qm4Lzn"))
            // Its success is dated when Stripe reported it (refund.updated), observed.
            let refundEvents = try await storedEvents("refund-re_3QSrH8Ks8vYb0Qm40RefA", connection)
            #expect(refundEvents.map(\.eventType) == ["RefundIssued", "RefundUpdated"])
            #expect(refundEvents.map(\.occurredAt.microsecondsSinceEpoch) == [refunded * 1_000_000, (refunded + 86_400) * 1_000_000])
            let note = try #require(try await ledgerRow(.creditNote, "cn_1QSrN6Ks8vYb0Qm4CredA", connection))
            #expect(note["status"] == .text("void"))
            #expect(note["balance_remaining"] == .amount(0))
            #expect(
                try await storedEvents("credit_note-cn_1QSrN6Ks8vYb0Qm4CredA", connection).map(\.eventType)
                    == ["CreditNoteIssued", "CreditNoteVoided"])
            let evidence = try await connection.withSession { session in
                try session.query(
                    "SELECT stream_id || ' ' || event_type || ' ' || (metadata->>'evidence') FROM ledgerlift.events WHERE metadata->>'evidence' <> 'observed' ORDER BY global_position"
                ).rows.map { try $0.decode(at: 0, as: String.self) }
            }
            #expect(evidence == [])
            let counted = try await StripeWebhookStore().counts(on: connection)
            #expect(counted.applied == 12)
            #expect(counted.duplicates == 0)
            // The read models take the events as they take any other writer's.
            _ = try await Projector().catchUp(on: connection)
            let projected = try await connection.withSession { session in
                try session.query(
                    """
                    SELECT i.status, i.total::text, i.amount_paid::text, i.currency::text, c.email, n.status, r.status
                    FROM ledgerlift_read.invoices i JOIN ledgerlift_read.customers c USING (customer_id),
                         ledgerlift_read.credit_notes n, ledgerlift_read.refunds r
                    WHERE i.invoice_id = 'in_1QSrF6Ks8vYb0Qm4InvA'
                    """
                ).rows.map { row in try (0..<7).map { try row.decode(at: $0, as: String.self) } }
            }
            #expect(projected == [["paid", "8100", "8100", "EUR", "ada@example.com", "void", "succeeded"]])
        }
    }

    @Test func aRefundBeforeItsChargeIsNotStoredUntilTheChargeIsKnown() async throws {
        try await withStore { connection, _ in
            await #expect(throws: StripeUnresolvedReference.self) { try await deliver("refund.updated", connection) }
            #expect(try await storedTotals(connection).deliveries == 0)
            guard case .applied = try await deliver("charge.refunded", connection) else { Issue.record("charge not applied"); return }
            guard case .applied = try await deliver("refund.updated", connection) else { Issue.record("refund not applied"); return }
            #expect(try await ledgerRow(.refund, "re_3QSrH8Ks8vYb0Qm40RefA", connection)?["status"] == .text("succeeded"))
            // refund.created (pending, older) after the refund succeeded: stale.
            #expect(try await deliver("refund.created", connection) == .stale)
        }
    }

    @Test func aGuestChargeAndItsRefundsAreAcknowledgedAsNotForTheLedger() async throws {
        try await withStore { connection, _ in
            // A refund whose charge is unknown waits for it (Stripe retries)…
            await #expect(throws: StripeUnresolvedReference.self) { try await deliver("refund.updated", connection) }
            // …the charge has no customer: acknowledged, ignored…
            let guest = try variant("charge.refunded", id: "evt_guest_charge", ["customer": .null])
            #expect(try await deliver(guest, connection) == .ignored(type: "charge.refunded"))
            // …and so is its refund when Stripe delivers it again.
            #expect(try await deliver("refund.updated", connection) == .ignored(type: "refund.updated"))
            let recorded = try await connection.withSession { try StripeWebhookStore().delivery("evt_guest_charge", in: $0) }
            #expect(recorded?.outcome == "ignored")
            #expect(recorded?.objectID == "ch_3QSrH8Ks8vYb0Qm40ChgA")
            let counted = try await counts(connection)
            #expect(counted.ignoredTypes == ["charge.refunded": 1, "refund.updated": 1])
            #expect(try await storedTotals(connection).events == 0)
        }
    }

    @Test func unknownEventTypesAreAcknowledgedAndCounted() async throws {
        try await withStore { connection, _ in
            #expect(try await deliver("payment_intent.created", connection) == .ignored(type: "payment_intent.created"))
            #expect(try await deliver("payment_intent.created", connection) == .duplicate)
            let counted = try await counts(connection)
            #expect(counted.ignored == 1)
            #expect(counted.ignoredTypes == ["payment_intent.created": 1])
            #expect(counted.duplicates == 1)
            #expect(try await storedTotals(connection).events == 0)
        }
    }

    @Test func columnsAndAttributesStripeDoesNotKnowAreKept() async throws {
        try await withStore { connection, _ in
            let legacy = CanonicalRow(
                entity: .customer,
                values: [
                    "customer_id": .text("cus_RKs8vYb0Qm4Lzn"), "email": .text("ada@example.com"), "created_at": ts(customerCreated),
                    "billing_entity_id": .text("be_eu"), "time_zone": .text("Europe/Paris"),
                ],
                attributes: ["balance": "0"])
            let events = Transitions.transitions(before: nil, after: legacy)
            try await connection.withSession { session in
                _ = try EventStore().append(events.map { $0.newEvent(origin: "backfill") }, to: legacy.streamID, expectedVersion: .noStream, in: session)
            }
            guard case .applied = try await deliver("customer.updated", connection) else { Issue.record("not applied"); return }
            let row = try #require(try await ledgerRow(.customer, "cus_RKs8vYb0Qm4Lzn", connection))
            #expect(row["billing_entity_id"] == .text("be_eu"))
            #expect(row["time_zone"] == .text("Europe/Paris"))
            #expect(row["currency"] == .text("USD"))
            #expect(row.attributes["balance"] == "0")
            #expect(row.attributes["stripe_id"] == "cus_RKs8vYb0Qm4Lzn")
        }
    }
}
