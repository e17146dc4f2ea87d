@testable import Billing
import EventStore
import Foundation
import Postgres
import Testing

/// Values fixed forever: event ids are stored, and a rerun of the backfill (or shadow mode)
/// must compute the very same ids, types, times and payloads for the same legacy rows. Any change
/// to the id scheme, SHA-1, the rules or the payload shape fails here, however consistent it is
/// with itself. The expected values come from outside this code: RFC 9562, FIPS 180, Python's
/// `uuid.uuid5` and `hashlib.sha1` (event ids included), and payloads written out by hand from the rules.
@Suite("Golden values: UUIDv5, SHA-1 and the events of fixed rows never change")
struct GoldenTests {
    /// RFC 9562 §6.6 (and RFC 4122 Appendix C): the DNS namespace.
    static let namespaceDNS = UUID(uuidString: "6ba7b810-9dad-11d1-80b4-00c04fd430c8")!
    static let namespaceURL = UUID(uuidString: "6ba7b811-9dad-11d1-80b4-00c04fd430c8")!

    // MARK: - UUIDv5

    @Test func uuid5OfWwwExampleComInTheDNSNamespaceIsRFC9562sExample() {
        // RFC 9562 Appendix A.4; Python: uuid.uuid5(uuid.NAMESPACE_DNS, 'www.example.com').
        #expect(
            DeterministicID.uuid5(namespace: Self.namespaceDNS, name: "www.example.com").uuidString.lowercased()
                == "2ed6657d-e927-568b-95e1-2665a8aea6a2")
    }

    @Test func uuid5OfOtherKnownNamesMatchesPython() {
        // Python's documentation example, and a URL name: uuid.uuid5(uuid.NAMESPACE_…, name).
        #expect(
            DeterministicID.uuid5(namespace: Self.namespaceDNS, name: "python.org").uuidString.lowercased()
                == "886313e1-3b8a-5372-9b90-0c9aee199e5d")
        #expect(
            DeterministicID.uuid5(namespace: Self.namespaceURL, name: "https://www.rfc-editor.org/rfc/rfc9562")
                .uuidString.lowercased() == "3349c653-56d8-5f05-8876-e348e193dc56")
    }

    @Test func theEventNamespaceIsFixed() {
        #expect(DeterministicID.eventNamespace.uuidString.lowercased() == "6c3b1f0e-8a41-5d2e-9a7c-4e6f1b2d3c4a")
        // uuid.uuid5(UUID('6c3b1f0e-8a41-5d2e-9a7c-4e6f1b2d3c4a'), 'invoice/1042/0/0/InvoiceDrafted')
        #expect(
            DeterministicID.uuid5(namespace: DeterministicID.eventNamespace, name: "invoice/1042/0/0/InvoiceDrafted")
                .uuidString.lowercased() == "5e8f5394-1a90-52b1-95be-f36463bc95c3")
    }

    // MARK: - SHA-1

    static func sha1(_ message: [UInt8]) -> String {
        SHA1.hash(message).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    @Test func sha1MatchesTheFIPS180TestVectors() {
        #expect(Self.sha1(Array("abc".utf8)) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(Self.sha1([]) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        // The 448-bit message.
        #expect(
            Self.sha1(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        // The 896-bit message.
        #expect(
            Self.sha1(
                Array(
                    "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
                        .utf8)) == "a49b2446a02c645bf419f995b67091253a04a259")
        // One million repetitions of 'a'.
        #expect(Self.sha1([UInt8](repeating: 0x61, count: 1_000_000)) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
    }

    @Test(arguments: [
        (55, "c1c8bbdc22796e28c0e15163d20899b65621d65a"), (56, "c2db330f6083854c99d4b5bfb6e8f29f201be699"),
        (63, "03f09f5b158a7a8cdad920bddc29b81c18a551f5"), (64, "0098ba824b5c16427bd7a1122a5a442a25ec644d"),
        (65, "11655326c708d70319be2610e8a57d9a5b959d3b"), (119, "ee971065aaa017e0632a8ca6c77bb3bf8b1dfc56"),
        (120, "f34c1488385346a55709ba056ddd08280dd4c6d6"),
    ])
    func sha1OfMessagesAroundThePaddingBoundariesMatchesPython(length: Int, digest: String) {
        // hashlib.sha1(b'a' * length): where the length field does or does not fit the last block.
        #expect(Self.sha1([UInt8](repeating: 0x61, count: length)) == digest)
    }

    // MARK: - The events of fixed canonical rows

    /// What is stored of one event, as text.
    struct Stored: Equatable, CustomStringConvertible {
        let id: String
        let type: String
        let occurredAt: String
        let evidence: String
        let payload: String

        init(_ id: String, _ type: String, _ occurredAt: String, _ evidence: String, _ payload: String) {
            (self.id, self.type, self.occurredAt, self.evidence, self.payload) = (id, type, occurredAt, evidence, payload)
        }

        init(_ event: BillingEvent) {
            self.init(
                event.eventID.uuidString.lowercased(), event.type.rawValue, event.occurredAt.iso8601,
                event.evidence.rawValue, event.payload.text)
        }

        var description: String { "\(id) \(type) \(occurredAt) \(evidence) \(payload)" }
    }

    static func ts(_ text: String) -> CanonicalValue { .timestamp(PostgresTimestamp(text)!) }
    static func date(_ text: String) -> CanonicalValue { .date(PostgresDate(text)!) }

    /// A paid invoice with a discount, tax, a service period and two extra legacy columns.
    static let paidInvoice = CanonicalRow(
        entity: .invoice,
        values: [
            "invoice_id": .text("1042"), "customer_id": .text("7"), "subscription_id": .text("55"),
            "number": .text("INV-1042"), "status": .text("paid"), "currency": .text("USD"),
            "subtotal": .amount(10_000), "discount": .amount(500), "tax": .amount(760), "total": .amount(10_260),
            "amount_paid": .amount(10_260), "amount_due": .amount(0),
            "period_start": ts("2024-02-01 00:00:00"), "period_end": ts("2024-03-01 00:00:00"),
            "issued_on": date("2024-03-01"), "due_on": date("2024-03-15"),
            "finalized_at": ts("2024-03-01 08:00:00"), "paid_at": ts("2024-03-04 09:30:00.25"),
            "created_at": ts("2024-02-28 10:00:00"), "updated_at": ts("2024-03-04 09:30:01"),
        ],
        attributes: ["po_number": "PO-77", "legacy_note": nil])

    @Test func aPaidInvoiceFromNothingIsTheseThreeEventsExactly() {
        let events = Transitions.transitions(before: nil, after: Self.paidInvoice)
        #expect(
            events.map(Stored.init) == [
                Stored(
                    "5e8f5394-1a90-52b1-95be-f36463bc95c3", "InvoiceDrafted", "2024-02-28T10:00:00.000000Z", "observed",
                    #"{"entity":"invoice","key":"1042","set":{"invoice_id":"1042","customer_id":"7","subscription_id":"55","#
                        + #""status":"draft","currency":"USD","subtotal":10000,"discount":500,"tax":760,"total":10260,"#
                        + #""amount_paid":0,"amount_due":10260,"period_start":"2024-02-01T00:00:00.000000Z","#
                        + #""period_end":"2024-03-01T00:00:00.000000Z","created_at":"2024-02-28T10:00:00.000000Z"}}"#),
                Stored(
                    "50aac01c-e64e-51d0-adac-b2d19b84b403", "InvoiceFinalized", "2024-03-01T08:00:00.000000Z", "observed",
                    #"{"entity":"invoice","key":"1042","set":{"number":"INV-1042","status":"open","issued_on":"2024-03-01","#
                        + #""due_on":"2024-03-15","finalized_at":"2024-03-01T08:00:00.000000Z"}}"#),
                Stored(
                    "810e1d42-adc5-5806-a8e2-db8a43f503e1", "InvoicePaid", "2024-03-04T09:30:00.250000Z", "observed",
                    #"{"entity":"invoice","key":"1042","set":{"status":"paid","amount_paid":10260,"amount_due":0,"#
                        + #""paid_at":"2024-03-04T09:30:00.250000Z","updated_at":"2024-03-04T09:30:01.000000Z"},"#
                        + #""attributes":{"legacy_note":null,"po_number":"PO-77"}}"#),
            ])
        #expect(Transitions.replay(events) == Self.paidInvoice)
    }

    @Test func anOpenInvoiceThenPaidIsOneEventWithTheStepInItsId() {
        var open = Self.paidInvoice
        open.values["status"] = .text("open")
        open.values["amount_paid"] = .amount(0)
        open.values["amount_due"] = .amount(10_260)
        open.values["paid_at"] = .null
        open.values["updated_at"] = Self.ts("2024-03-01 08:00:00")
        let events = Transitions.transitions(before: open, after: Self.paidInvoice, step: 1)
        #expect(
            events.map(Stored.init) == [
                Stored(
                    "867fcb66-93f9-59a0-82f9-ffd0afce4d8f", "InvoicePaid", "2024-03-04T09:30:00.250000Z", "observed",
                    #"{"entity":"invoice","key":"1042","set":{"status":"paid","amount_paid":10260,"amount_due":0,"#
                        + #""paid_at":"2024-03-04T09:30:00.250000Z","updated_at":"2024-03-04T09:30:01.000000Z"}}"#)
            ])
    }

    @Test func theStoredFormOfAnEventCarriesItsProvenance() {
        let drafted = Transitions.transitions(before: nil, after: Self.paidInvoice)[0]
        let stored = drafted.newEvent(origin: "backfill", runID: "run-1", source: "legacy.invoices")
        #expect(stored.eventID.uuidString.lowercased() == "5e8f5394-1a90-52b1-95be-f36463bc95c3")
        #expect(stored.eventType == "InvoiceDrafted")
        #expect(stored.schemaVersion == 1)
        #expect(stored.occurredAt.iso8601 == "2024-02-28T10:00:00.000000Z")
        #expect(stored.payload.text == drafted.payload.text)
        #expect(
            stored.metadata.text
                == #"{"origin":"backfill","evidence":"observed","source":"legacy.invoices","run_id":"run-1"}"#)
    }

    /// A subscription with a trial, canceled at the end of a later period.
    static let canceledSubscription = CanonicalRow(
        entity: .subscription,
        values: [
            "subscription_id": .text("55"), "customer_id": .text("7"), "plan_id": .text("pro"),
            "status": .text("canceled"), "quantity": .integer(3), "started_at": ts("2024-01-05 00:00:00"),
            "trial_ends_at": ts("2024-01-19 00:00:00"), "current_period_start": ts("2024-03-19 00:00:00"),
            "current_period_end": ts("2024-04-19 00:00:00"), "cancel_at_period_end": .boolean(true),
            "canceled_at": ts("2024-03-20 12:00:00"), "ended_at": ts("2024-04-19 00:00:00"),
            "created_at": ts("2024-01-05 00:00:00"), "updated_at": ts("2024-04-19 00:00:05"),
        ])

    @Test func aCanceledSubscriptionWithATrialFromNothingIsTheseFiveEventsExactly() {
        let events = Transitions.transitions(before: nil, after: Self.canceledSubscription)
        #expect(
            events.map(Stored.init) == [
                Stored(
                    "cb2d21bb-5e3c-5d04-95a6-e712969614df", "SubscriptionStarted", "2024-01-05T00:00:00.000000Z", "observed",
                    #"{"entity":"subscription","key":"55","set":{"subscription_id":"55","customer_id":"7","plan_id":"pro","#
                        + #""status":"trialing","quantity":3,"started_at":"2024-01-05T00:00:00.000000Z","#
                        + #""trial_ends_at":"2024-01-19T00:00:00.000000Z","current_period_start":"2024-03-19T00:00:00.000000Z","#
                        + #""current_period_end":"2024-04-19T00:00:00.000000Z","cancel_at_period_end":false,"#
                        + #""created_at":"2024-01-05T00:00:00.000000Z"}}"#),
                Stored(
                    "4edb3846-ccd6-5cf6-9a06-800bde7d503d", "SubscriptionTrialEnded", "2024-01-19T00:00:00.000000Z",
                    "observed", #"{"entity":"subscription","key":"55","set":{"status":"active"}}"#),
                Stored(
                    "45922f4e-0ad4-5917-9cf3-ad3c5170879f", "SubscriptionCancellationScheduled",
                    "2024-03-20T12:00:00.000000Z", "observed",
                    #"{"entity":"subscription","key":"55","set":{"cancel_at_period_end":true,"#
                        + #""canceled_at":"2024-03-20T12:00:00.000000Z"}}"#),
                Stored(
                    "946bf391-5552-5120-ae01-c9078cd1518b", "SubscriptionCanceled", "2024-03-20T12:00:00.000000Z",
                    "observed", #"{"entity":"subscription","key":"55","set":{"status":"canceled"}}"#),
                Stored(
                    "9746c8c0-adaa-546b-b941-a8446ceb678c", "SubscriptionEnded", "2024-04-19T00:00:00.000000Z", "observed",
                    #"{"entity":"subscription","key":"55","set":{"ended_at":"2024-04-19T00:00:00.000000Z","#
                        + #""updated_at":"2024-04-19T00:00:05.000000Z"}}"#),
            ])
        #expect(Transitions.replay(events) == Self.canceledSubscription)
    }

    /// An archived customer whose name needs JSON escaping.
    static let archivedCustomer = CanonicalRow(
        entity: .customer,
        values: [
            "customer_id": .text("7"), "email": .text("zoe@example.com"), "name": .text(#"Zoë "Z" O'Brien"#),
            "currency": .text("EUR"), "created_at": ts("2023-11-02 08:15:00"), "updated_at": ts("2024-05-01 10:00:00"),
            "archived_at": ts("2024-05-01 09:59:59"),
        ])

    @Test func anArchivedCustomerFromNothingIsTheseTwoEventsExactly() {
        let events = Transitions.transitions(before: nil, after: Self.archivedCustomer)
        #expect(
            events.map(Stored.init) == [
                Stored(
                    "2d573e2c-482f-522b-a2ce-dda0f553617e", "CustomerCreated", "2023-11-02T08:15:00.000000Z", "observed",
                    #"{"entity":"customer","key":"7","set":{"customer_id":"7","email":"zoe@example.com","#
                        + #""name":"Zoë \"Z\" O'Brien","currency":"EUR","created_at":"2023-11-02T08:15:00.000000Z"}}"#),
                Stored(
                    "c8a72d4f-287c-5e40-aacc-1fdc6c2e0b65", "CustomerArchived", "2024-05-01T09:59:59.000000Z", "observed",
                    #"{"entity":"customer","key":"7","set":{"updated_at":"2024-05-01T10:00:00.000000Z","#
                        + #""archived_at":"2024-05-01T09:59:59.000000Z"}}"#),
            ])
        #expect(Transitions.replay(events) == Self.archivedCustomer)
    }
}
