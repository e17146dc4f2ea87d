import Postgres
import TestSupport
import Testing

@Suite("LISTEN / NOTIFY")
struct NotificationTests {
    @Test func aListenerReceivesANotifyFromAnotherConnectionWithPayloadIntact() async throws {
        try await TestDatabase.withConnection { listener, dsn in
            let sender = try await Connection.connect(dsn)
            let channel = "ledger events"  // a space: quoted as an identifier
            let payload = #"{"note": "it's \"quoted\"", "city": "Zürich 東京 🧾"}"#
            try await listener.withSession { try $0.listen(channel) }
            try await sender.withSession { try $0.notify(channel, payload: payload) }
            // The notification is committed before the wait starts, and the wait returns as soon as it
            // arrives; the timeout only bounds how long a lost one takes to fail the test, and is
            // generous because a loaded machine can delay delivery by seconds.
            let notification = try await listener.withSession { try $0.waitForNotification(timeout: .seconds(300)) }
            let received = try #require(notification)
            #expect(received.channel == channel)
            #expect(received.payload == payload)
            #expect(received.senderPID == sender.backendPID)
        }
    }

    @Test func aWaitWithNothingSentReturnsNilAfterItsTimeout() async throws {
        try await TestDatabase.withConnection { listener, _ in
            try await listener.withSession { try $0.listen("quiet") }
            let clock = ContinuousClock()
            let start = clock.now
            let notification = try await listener.withSession { try $0.waitForNotification(timeout: .milliseconds(500)) }
            let waited = clock.now - start
            #expect(notification == nil)
            // It waited out its timeout rather than giving up at once. Only a lower bound: load
            // can lengthen the wait by seconds, so how much longer it took says nothing.
            #expect(waited >= .milliseconds(500), "returned after \(waited)")
        }
    }

    @Test func aNotificationSentInsideARolledBackTransactionIsNeverDelivered() async throws {
        try await TestDatabase.withConnection { listener, dsn in
            let sender = try await Connection.connect(dsn)
            try await listener.withSession { try $0.listen("tx") }
            struct Abort: Error {}
            _ = try? await sender.transaction { tx in
                try tx.notify("tx", payload: "never")
                throw Abort()
            }
            try await sender.withSession { try $0.notify("tx", payload: "kept") }
            // Generous for a loaded machine: the wait returns as soon as "kept" arrives.
            let received = try await listener.withSession { try $0.waitForNotification(timeout: .seconds(300)) }
            #expect(received?.payload == "kept")
        }
    }
}
