import Cutover
import EventStore
import Foundation
import Postgres
import TestSupport
import Testing

/// The cutover's stream: appended with exact expected versions, folded back into the state, and
/// refused when it does not follow from the machine.
@Suite("Cutover: the stream and its fold")
struct CutoverLogTests {
    static let actor = CutoverActor(who: "ops", host: "bastion", at: "2026-12-06T17:00:00.000000Z")

    static func initialized(_ name: String) -> CutoverEvent {
        .initialized(
            .init(
                name: name, legacy: "postgresql://app:********@legacy/billing", store: "postgresql://store/ledger",
                mappingPath: "/etc/ledgerlift/mapping.yaml", mappingFingerprint: "abc123", actor: actor))
    }

    static func advanced(_ from: CutoverState, _ to: CutoverState) -> CutoverEvent {
        .advanced(
            .init(
                from: from, to: to, actor: actor, reason: "window 3",
                gates: [CutoverGate(name: "capture_installed", passed: true, evidence: ["missing": ""], remedy: "x")]))
    }

    @Test func everyTransitionIsAnEventAndTheStateIsTheirFold() async throws {
        try await TestDatabase.withFresh { dsn in
            try await ledgerliftOK(["store", "init", "--store", dsn])
            let log = CutoverLog(name: "q4")
            let record = try await withSession(dsn) { session -> CutoverRecord? in
                #expect(try log.read(in: session) == nil)
                try log.append(Self.initialized("q4"), expectedVersion: 0, in: session)
                try log.append(Self.advanced(.planned, .capturing), expectedVersion: 1, in: session)
                try log.append(Self.advanced(.capturing, .backfilled), expectedVersion: 2, in: session)
                try log.append(
                    .aborted(
                        .init(from: .backfilled, to: .aborted, actor: Self.actor, reason: "vendor freeze", gates: [])),
                    expectedVersion: 3, in: session)
                return try log.read(in: session)
            }
            #expect(record?.state == .aborted && record?.version == 4 && record?.history.count == 3)
            #expect(record?.initialized.legacy == "postgresql://app:********@legacy/billing")
            #expect(record?.history.first == Self.advanced(.planned, .capturing))

            let stored = try await withSession(dsn) { session in
                try session.query(
                    "SELECT event_type, payload->>'from', payload->>'to', payload->'actor'->>'who', payload->'gates'->0->>'name' FROM ledgerlift.events WHERE stream_id = 'cutover-q4' ORDER BY stream_version"
                ).rows.map { row in try (0..<5).map { try row.decode(at: $0, as: String?.self) } }
            }
            #expect(
                stored == [
                    ["CutoverInitialized", nil, nil, "ops", nil],
                    ["CutoverAdvanced", "planned", "capturing", "ops", "capture_installed"],
                    ["CutoverAdvanced", "capturing", "backfilled", "ops", "capture_installed"],
                    ["CutoverAborted", "backfilled", "aborted", "ops", nil],
                ])
        }
    }

    @Test func aStaleVersionIsRefusedSoTwoWritersNeverMoveOneState() async throws {
        try await TestDatabase.withFresh { dsn in
            try await ledgerliftOK(["store", "init", "--store", dsn])
            let log = CutoverLog(name: "q4")
            try await withSession(dsn) { session in
                try log.append(Self.initialized("q4"), expectedVersion: 0, in: session)
                try log.append(Self.advanced(.planned, .capturing), expectedVersion: 1, in: session)
                #expect(throws: CutoverError.concurrentChange(stream: "cutover-q4")) {
                    try log.append(Self.advanced(.planned, .capturing), expectedVersion: 1, in: session)
                }
                #expect(throws: CutoverError.concurrentChange(stream: "cutover-q4")) {
                    try log.append(Self.initialized("q4"), expectedVersion: 0, in: session)
                }
            }
        }
    }

    @Test func aStreamThatDoesNotFollowFromTheMachineIsRefused() async throws {
        try await TestDatabase.withFresh { dsn in
            try await ledgerliftOK(["store", "init", "--store", dsn])
            let log = CutoverLog(name: "bad")
            try await withSession(dsn) { session in
                try log.append(Self.initialized("bad"), expectedVersion: 0, in: session)
                // Written past the machine: planned → backfilled skips a gate.
                try log.append(Self.advanced(.planned, .backfilled), expectedVersion: 1, in: session)
                #expect(
                    throws: CutoverError.inconsistentStream(
                        stream: "cutover-bad", version: 2,
                        reason: "CutoverAdvanced planned → backfilled does not follow from planned")
                ) { try log.read(in: session) }
            }
            let other = CutoverLog(name: "odd")
            try await withSession(dsn) { session in
                try EventStore().append(
                    [
                        NewEvent(
                            eventID: UUID(), eventType: "CutoverPaused", occurredAt: .init(microsecondsSinceEpoch: 0),
                            payload: .init("{}"))
                    ],
                    to: other.streamID, in: session)
                #expect(
                    throws: CutoverError.undecodableEvent(
                        stream: "cutover-odd", version: 1, type: "CutoverPaused", reason: "not a cutover event type")
                ) { try other.read(in: session) }
            }
        }
    }
}
