import Billing
import EventStore
import Foundation
import Mapping
import Postgres
import Shadow
import TestSupport

/// Runs `ledgerlift` on a thread of its own and awaits it, so waiting for the process never
/// blocks one of Swift's few cooperative threads (other tests' tasks run meanwhile).
func ledgerlift(_ arguments: [String]) async throws -> LedgerliftBinary.Output {
    try await LedgerliftBinary.run(arguments)
}

/// A legacy database holding the reference fixture with capture installed, and a store holding
/// its finished backfill and built read models: where shadow mode starts.
struct ShadowScenario: Sendable {
    let legacy: String
    let store: String
    let mappingPath: String

    var mapping: MappingFile { get throws { try MappingFile.load(path: mappingPath) } }

    /// Sets it up: fixture, `shadow install` (before the backfill, the normal order),
    /// `store init`, `backfill`, `project`.
    static func withBackfilled<T>(
        _ label: String = #function, mappingPath: String = referenceMappingPath,
        beforeBackfill: ((_ legacy: String) async throws -> Void)? = nil,
        _ body: (ShadowScenario) async throws -> T
    ) async throws -> T {
        try await TestDatabase.withFresh(label + "_legacy") { legacy in
            try await TestDatabase.withFresh(label + "_store") { store in
                for arguments in [
                    ["fixture", "load", "--dsn", legacy], ["shadow", "install", "--legacy", legacy, "--mapping", mappingPath],
                ] {
                    let output = try await ledgerlift(arguments)
                    guard output.status == 0 else { throw ScenarioFailure(step: arguments[0], output: output) }
                }
                try await beforeBackfill?(legacy)
                for arguments in [
                    ["store", "init", "--store", store], ["backfill", "--legacy", legacy, "--store", store, "--mapping", mappingPath],
                    ["project", "--store", store],
                ] {
                    let output = try await ledgerlift(arguments)
                    guard output.status == 0 else { throw ScenarioFailure(step: arguments[0], output: output) }
                }
                return try await body(ShadowScenario(legacy: legacy, store: store, mappingPath: mappingPath))
            }
        }
    }

    /// The tailer, drained to the head (library call: the summary is returned).
    func tail(batchSize: Int = 5_000, name: String = "default") async throws -> ShadowTailer.Summary {
        try await ShadowTailer(
            .init(legacyDSN: legacy, storeDSN: store, mapping: try mapping, name: name, batchSize: batchSize)
        ).run()
    }

    /// `ledgerlift diff`: exit status and output.
    func diff() async throws -> LedgerliftBinary.Output {
        try await ledgerlift(["diff", "--legacy", legacy, "--store", store, "--mapping", mappingPath])
    }

    /// Runs `body` on a connection to the legacy database.
    func withLegacy<T: Sendable>(_ body: @escaping @Sendable (Session) throws -> T) async throws -> T {
        let connection = try await Connection.connect(legacy)
        defer { connection.close() }
        return try await connection.withSession(body)
    }

    /// Runs `body` on a connection to the store.
    func withStore<T: Sendable>(_ body: @escaping @Sendable (Session) throws -> T) async throws -> T {
        let connection = try await Connection.connect(store)
        defer { connection.close() }
        return try await connection.withSession(body)
    }

    /// Every event in the store: id, stream, version, type, business time, payload (what an
    /// identical history must repeat), in stream order.
    func events() async throws -> [[String?]] {
        try await withStore { session in
            try session.query(
                """
                SELECT event_id::text, stream_id, stream_version::text, event_type, occurred_at::text, payload::text
                FROM ledgerlift.events ORDER BY stream_id, stream_version
                """
            ).rows.map(\.values)
        }
    }

    /// Streams whose versions are not exactly 1…n.
    func streamsWithGaps() async throws -> [String] {
        try await withStore { session in
            try session.query(
                """
                SELECT stream_id FROM ledgerlift.events GROUP BY stream_id
                HAVING count(*) <> max(stream_version) OR count(DISTINCT event_id) <> count(*)
                """
            ).rows.map { try $0.decode(at: 0, as: String.self) }
        }
    }
}

struct ScenarioFailure: Error, CustomStringConvertible {
    let step: String
    let output: LedgerliftBinary.Output
    var description: String { "\(step) exited \(output.status): \(output.stdout)\(output.stderr)" }
}

/// A journal file path in a directory of its own.
func journalPath() -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerlift-tailer-\(UUID())")
    try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory.appendingPathComponent("journal.jsonl").path
}
