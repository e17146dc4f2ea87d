import Commands
import EventStore
import Foundation
import Logging
import Postgres
import Server
import TestSupport
import Testing

/// `serve --mode candidate` records every command it receives with an `Idempotency-Key` (the
/// operation id), the legacy transaction of `Ledgerlift-Legacy-Xid` and its answer, once per
/// key — the input of the comparison with legacy (issue 16 point 4).
@Suite("serve: candidate mode records the commands it receives")
struct CandidateRecordingTests {
    static func entries(_ store: String) async throws -> [CandidateCommandLog.Entry] {
        let connection = try await Connection.connect(store)
        defer { connection.close() }
        return try await CandidateCommandLog().entries(on: connection)
    }

    static func createCustomer(_ id: String, currency: String = "USD") -> String {
        #"{"customer_id":"\#(id)","email":"\#(id)@example.com","name":"Cand","currency":"\#(currency)","at":"2025-01-02T03:04:05Z"}"#
    }

    static func canonical(_ body: String, name: String) throws -> BillingCommand {
        var object = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        object["command"] = name
        return try JSONDecoder().decode(BillingCommand.self, from: JSONSerialization.data(withJSONObject: object))
    }

    @Test func aKeyedCommandIsRecordedOnceWithItsLegacyTransactionAndAnswer() async throws {
        try await withEmptyStore { store in
            try await CommandRouteTests.server(store, mode: .candidate) { server, client in
                let headers = ["Idempotency-Key": "op-7/1", "Ledgerlift-Legacy-Xid": "123456"]
                let first = try await client.send(
                    "POST", "/commands/create_customer", body: Self.createCustomer("cand-1"), headers: headers)
                #expect(first.status == 202, "\(first.body)")
                #expect(try first.json["recorded"] as? Bool == true)
                #expect(try first.json["comparison"] as? String == "pending")
                #expect(try first.json["op_id"] as? String == "op-7/1")
                // Pending until the shadow tailer compares it: a gauge by verdict at each scrape.
                let scraped = try PrometheusText.parse(try await client.send("GET", "/metrics").body)
                let comparisons = Dictionary(
                    scraped.filter { $0.name == "ledgerlift_candidate_comparisons" }.map {
                        ($0.labels["verdict"] ?? "", $0.value)
                    },
                    uniquingKeysWith: { a, _ in a })
                #expect(comparisons == ["match": 0, "mismatch": 0, "unverifiable": 0, "pending": 1])
                let replay = try await client.send(
                    "POST", "/commands/create_customer", body: Self.createCustomer("cand-1"), headers: headers)
                #expect(replay.header("Idempotent-Replayed") == "true")

                let entries = try await Self.entries(store)
                #expect(entries.count == 1)
                let entry = try #require(entries.first)
                #expect(entry.opID == "op-7/1")
                #expect(entry.command == "create_customer")
                #expect(entry.legacyXid == 123_456)
                #expect(entry.answerStatus == 202)
                let recorded = try JSONDecoder().decode(BillingCommand.self, from: Data(entry.commandJSON.utf8))
                #expect(recorded == (try Self.canonical(Self.createCustomer("cand-1"), name: "create_customer")))
                // Recorded is not appended.
                let events = try await withSession(store) {
                    try $0.query("SELECT count(*)::int8 FROM ledgerlift.events").rows[0].decode(at: 0, as: Int64.self)
                }
                #expect(events == 0)
                let metrics = try PrometheusText.parse(server.metrics.exposition())
                #expect(
                    metrics.first {
                        $0.name == "ledgerlift_candidate_commands_total" && $0.labels["recorded"] == "true"
                    }?
                    .value == 1)
            }
        }
    }

    @Test func aRejectionIsRecordedWithItsStatusAndNoLegacyTransaction() async throws {
        try await withEmptyStore { store in
            try await CommandRouteTests.server(store, mode: .candidate) { _, client in
                let answer = try await client.send(
                    "POST", "/commands/create_customer", body: Self.createCustomer("cand-2", currency: "ZZZ"),
                    headers: ["Idempotency-Key": "op-8/1"])
                #expect(answer.status == 422)
                let entries = try await Self.entries(store)
                #expect(entries.map(\.opID) == ["op-8/1"])
                #expect(entries.map(\.answerStatus) == [422])
                #expect(entries.map(\.legacyXid) == [nil])
            }
        }
    }

    @Test func aCommandWithoutAKeyIsAnsweredNotRecordedAndCounted() async throws {
        try await withEmptyStore { store in
            try await CommandRouteTests.server(store, mode: .candidate) { server, client in
                let answer = try await client.send(
                    "POST", "/commands/create_customer", body: Self.createCustomer("cand-3"))
                #expect(answer.status == 202, "\(answer.body)")
                #expect(try answer.json["recorded"] as? Bool == false)
                #expect(try await Self.entries(store).isEmpty)
                let metrics = try PrometheusText.parse(server.metrics.exposition())
                #expect(
                    metrics.first {
                        $0.name == "ledgerlift_candidate_commands_total" && $0.labels["recorded"] == "false"
                    }?.value == 1)
            }
        }
    }

    @Test(arguments: ["abc", "-1", "1.5", "99999999999999999999999"])
    func aMalformedLegacyTransactionIdIs400AndNothingIsRecorded(xid: String) async throws {
        try await withEmptyStore { store in
            try await CommandRouteTests.server(store, mode: .candidate) { _, client in
                let answer = try await client.send(
                    "POST", "/commands/create_customer", body: Self.createCustomer("cand-4"),
                    headers: ["Idempotency-Key": "op-9/1", "Ledgerlift-Legacy-Xid": xid])
                #expect(answer.status == 400, "\(answer.body)")
                #expect(try answer.json["code"] as? String == "invalid_legacy_xid")
                #expect(try await Self.entries(store).isEmpty)
            }
        }
    }

    /// The legacy transaction is part of the request: the same key for another transaction (a
    /// legacy retry under the same operation id) is a reused key, never the first one's answer.
    @Test func theSameKeyForAnotherLegacyTransactionIs422AndANULCharacterIs400() async throws {
        try await withEmptyStore { store in
            try await CommandRouteTests.server(store, mode: .candidate) { _, client in
                let body = Self.createCustomer("cand-5")
                func send(_ xid: String?) async throws -> (status: Int, body: String, replayed: Bool) {
                    var headers = ["Idempotency-Key": "op-10/1"]
                    if let xid { headers["Ledgerlift-Legacy-Xid"] = xid }
                    let answer = try await client.send(
                        "POST", "/commands/create_customer", body: body, headers: headers)
                    return (answer.status, answer.body, answer.header("Idempotent-Replayed") == "true")
                }
                let first = try await send("200")
                #expect(first.status == 202 && !first.replayed, "\(first.body)")
                let again = try await send("200")
                #expect(again.status == 202 && again.replayed)
                for other in ["201", nil] {
                    let reused = try await send(other)
                    #expect(reused.status == 422, "\(reused.body)")
                    #expect(reused.body.contains("idempotency_key_reused"))
                }
                #expect(try await Self.entries(store).map(\.legacyXid) == [200])

                let nul = try await client.send(
                    "POST", "/commands/update_customer",
                    body: #"{"customer_id":"7","name":"a\u0000b","at":"2026-12-06T18:00:00Z"}"#,
                    headers: ["Idempotency-Key": "op-11/1", "Ledgerlift-Legacy-Xid": "300"])
                #expect(nul.status == 400, "\(nul.body)")
                #expect(try nul.json["code"] as? String == "invalid_body")
                #expect(try await Self.entries(store).count == 1)
            }
        }
    }

    @Test func anOperationIdIsRecordedOnceAndKeepsItsFirstRecord() async throws {
        try await withEmptyStore { store in
            let connection = try await Connection.connect(store)
            defer { connection.close() }
            let log = CandidateCommandLog()
            #expect(
                try await log.record(
                    .init(opID: "k", command: "void_invoice", commandJSON: "{}", legacyXid: 5, answerStatus: 202),
                    on: connection))
            #expect(
                !(try await log.record(
                    .init(opID: "k", command: "void_invoice", commandJSON: "{}", legacyXid: 6, answerStatus: 404),
                    on: connection)))
            #expect(try await log.entries(on: connection).map(\.legacyXid) == [5])
        }
    }

    @Test func candidateModeRefusesAStoreWithoutTheCandidateTableAndPrimaryModeServesIt() async throws {
        try await TestDatabase.withFresh { dsn in
            // A store as schema version 3 left it.
            try await withSession(dsn) { session in
                try EventStore().migrate(session)
                try session.execute("DROP TABLE ledgerlift.candidate_commands")
                try session.execute("DELETE FROM ledgerlift.schema_migrations WHERE version >= 4")
            }
            let candidate = LedgerliftServer(
                ServeConfiguration(storeDSN: dsn, port: 0, mode: .candidate, projects: false), commandHandler: nil,
                logger: Logger(label: "test.serve"))
            await #expect(throws: EventStoreError.schemaTooOld(found: 3, required: 4)) {
                try await candidate.run(gracefulShutdownSignals: []) { _ in Issue.record("listened on an old store") }
            }
            let started = try await withServer(ServeConfiguration(storeDSN: dsn, projects: false)) { _, _ in true }
            #expect(started)
        }
    }
}
