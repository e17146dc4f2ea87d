import Billing
import Commands
import EventStore
import Fixtures
import Foundation
import Mapping
import Postgres
import Shadow
import Simulator
import TestSupport

/// The property "a command's events equal the transitions of the legacy write it replaces",
/// checked operation by operation against the legacy application itself.
///
/// A fresh legacy database holds the reference fixture; a fresh store holds its backfill and
/// built read models, so ledger and legacy agree. Then, for each operation:
/// 1. every legacy canonical row is read through the reference mapping (before);
/// 2. ``LegacySQLApp`` performs the operation (one worker, a fixed data clock, seeded);
/// 3. every legacy canonical row is read again (after): the rows that differ are what the
///    operation changed, created or deleted;
/// 4. ``CommandTranslation/commands(for:legacy:)`` states the operation as commands; each is
///    decided on the ledger's state (``CommandExecutor/decide(_:on:)``), then executed for real
///    so the next one decides on the state it left;
/// 5. the rows the commands decided are compared with legacy's after-rows under the rule below;
/// 6. shadow mode's sync (``ShadowSync``) of every key legacy changed must then append nothing
///    but what the exclusions explain — the ledger holds what legacy holds.
///
/// The comparison rule: every canonical column compared exactly, except (counted and named)
/// (1) `attributes` (legacy-only columns; commands carry them unchanged) and (2) `updated_at` of
/// a row whose other canonical columns the operation did not change (the reference application
/// bumps a customer's `updated_at` when it rewrites its cached balance).
struct LegacyParity: Sendable {
    let legacyDSN: String
    let storeDSN: String
    let mapping: MappingFile
    let sources: [EntitySource]

    static var repositoryRoot: URL {
        var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while directory.path != "/" {
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
                return directory
            }
            directory = directory.deletingLastPathComponent()
        }
        return directory
    }

    static var referenceMappingPath: String {
        repositoryRoot.appendingPathComponent("fixtures/reference/mapping.yaml").path
    }

    /// Sets the scenario up (fixture, store, backfill, read models) and runs `body` on it.
    /// - Parameter capture: install shadow mode's capture first (`shadow install`, before the
    ///   backfill: the order a tailer's handover requires).
    static func withFresh<T>(
        _ label: String = #function, capture: Bool = false, _ body: (LegacyParity) async throws -> T
    ) async throws -> T {
        try await TestDatabase.withFresh(label + "_legacy") { legacy in
            try await TestDatabase.withFresh(label + "_store") { store in
                let fixtures = try FixtureDirectory(
                    validating: repositoryRoot.appendingPathComponent("fixtures", isDirectory: true))
                _ = try await FixtureLoader(fixtures: fixtures).load(.reference, dsn: legacy)
                let mappingPath = referenceMappingPath
                for arguments in (capture ? [["shadow", "install", "--legacy", legacy, "--mapping", mappingPath]] : [])
                    + [
                        ["store", "init", "--store", store],
                        ["backfill", "--legacy", legacy, "--store", store, "--mapping", mappingPath],
                        ["project", "--store", store],
                    ]
                {
                    let output = try await LedgerliftBinary.run(arguments)
                    guard output.status == 0 else {
                        throw HarnessFailure(
                            "\(arguments[0]) exited \(output.status): \(output.stdout)\(output.stderr)")
                    }
                }
                let mapping = try MappingFile.load(path: mappingPath)
                return try await body(
                    LegacyParity(legacyDSN: legacy, storeDSN: store, mapping: mapping, sources: mapping.entitySources())
                )
            }
        }
    }

    /// Every legacy canonical row, by (entity, key), read through the mapping in one snapshot.
    /// Rows the mapping quarantines are left out (the reference fixture has none).
    func legacySnapshot(_ connection: Connection) async throws -> [LegacyRows.Key: CanonicalRow] {
        let sources = self.sources
        return try await connection.withSession { session in
            try session.transaction(.init(isolation: .repeatableRead, readOnly: true)) { tx in
                var rows = [LegacyRows.Key: CanonicalRow]()
                for source in sources {
                    for row in try tx.query(source.query).rows {
                        if case .canonical(let canonical, _, _, _) = source.convert(row) {
                            rows[LegacyRows.Key(source.entity, canonical.key)] = canonical
                        }
                    }
                }
                return rows
            }
        }
    }

    /// What one operation kind gave.
    struct KindReport: Sendable, CustomStringConvertible {
        var kind: OperationKind
        /// Operations the legacy application performed.
        var operations = 0
        /// Operations it had nothing to act on for (no journal entry).
        var nothingToDo = 0
        var commands = 0
        /// Rows compared and equal under the rule.
        var matches = 0
        /// Rows that differ: key and the differing columns (`(missing)`: legacy changed it and
        /// no command decided it; `(extra)`: a command decided a row legacy did not change the
        /// same way; `(deleted)`: one side deleted it).
        var mismatches: [(key: String, columns: [String])] = []
        /// Exclusions applied, by name.
        var exclusions: [String: Int] = [:]
        /// Keys the shadow sync after the commands appended events to, with whether an
        /// exclusion explains them.
        var syncExplained: [String] = []
        var syncUnexplained: [String] = []
        /// Commands the rules refused (each a parity failure: legacy did it).
        var rejections: [String] = []
        /// The translation is still a placeholder.

        var description: String {
            var lines = [
                "\(kind.rawValue): \(operations) operations (\(nothingToDo) with nothing to do), \(commands) commands, "
                    + "\(matches) rows matched, \(mismatches.count) mismatched"
            ]
            for (key, columns) in mismatches { lines.append("  mismatch \(key): \(columns.joined(separator: ", "))") }
            for (name, count) in exclusions.sorted(by: { $0.key < $1.key }) {
                lines.append("  excluded \(name): \(count)")
            }
            if !syncExplained.isEmpty { lines.append("  sync explained: \(syncExplained.joined(separator: ", "))") }
            if !syncUnexplained.isEmpty {
                lines.append("  sync UNEXPLAINED: \(syncUnexplained.joined(separator: ", "))")
            }
            for rejection in rejections { lines.append("  rejected: \(rejection)") }
            return lines.joined(separator: "\n")
        }

        var passed: Bool { mismatches.isEmpty && syncUnexplained.isEmpty && rejections.isEmpty && operations > 0 }
    }

    /// Performs `count` operations of `kind` (after `preparing` operations performed on legacy
    /// alone and synced, to make data they need: a failed payment before a retry), and
    /// checks each.
    ///
    /// - Parameter translate: the translation (the real one; a test of the harness passes another).
    func run(
        _ kind: OperationKind, count: Int, seed: UInt64 = 16, preparing: [OperationKind] = [],
        translate: @Sendable (JournalEntry, LegacyRows) throws -> [BillingCommand] = CommandTranslation.commands(
            for:legacy:)
    ) async throws -> KindReport {
        var report = KindReport(kind: kind)
        let legacy = try await Connection.connect(legacyDSN)
        defer { legacy.close() }
        let store = try await Connection.connect(storeDSN)
        defer { store.close() }
        let app = LegacySQLApp(dsn: legacyDSN)
        let worker = try await app.makeWorker()
        defer { worker.close() }
        let clock = BusinessClock(.data(start: try await LegacySQLApp.latestRecordedMoment(on: legacy)))
        let executor = CommandExecutor()
        var operationID: UInt64 = 0
        // Request ids unique to this run: a scenario may be run more than once, and a command
        // whose streams carry its request id already would be taken for a replay.
        let runToken = UUID().uuidString.prefix(8).lowercased()

        // Preparation: legacy only, the ledger brought along by shadow mode's sync.
        for preparation in preparing {
            operationID += 1
            let before = try await legacySnapshot(legacy)
            _ = try await worker.perform(
                BillingOperation(id: operationID, kind: preparation, seed: SimulationRandom.derive(seed, operationID)),
                clock: clock)
            let after = try await legacySnapshot(legacy)
            _ = try await sync(Self.changedKeys(before: before, after: after), legacy: legacy, store: store)
        }

        for _ in 0..<count {
            operationID += 1
            let before = try await legacySnapshot(legacy)
            let operation = BillingOperation(
                id: operationID, kind: kind, seed: SimulationRandom.derive(seed, operationID))
            guard let entry = try await worker.perform(operation, clock: clock) else {
                report.nothingToDo += 1
                continue
            }
            report.operations += 1
            let after = try await legacySnapshot(legacy)
            let changed = Self.changedKeys(before: before, after: after)
            let rows = LegacyRows(before: before, after: after)
            let commands = try translate(entry, rows)
            report.commands += commands.count

            // Decide each command on the state the previous one left, then execute it.
            var decided = [LegacyRows.Key: CanonicalRow?]()
            var rejected = false
            for (index, command) in commands.enumerated() {
                do {
                    let (decision, _) = try await executor.decide(command, on: store)
                    for row in decision.rows { decided[LegacyRows.Key(row.entity, row.key)] = row }
                    for gone in decision.deleted { decided[LegacyRows.Key(gone.entity, gone.key)] = .some(nil) }
                    _ = try await executor.execute(
                        command, requestID: "parity-\(runToken)-\(operationID)-\(index)", on: store)
                    _ = try await Projector().catchUp(on: store)
                } catch let rejection as CommandRejection {
                    report.rejections.append("op \(operationID) \(command.name): \(rejection)")
                    rejected = true
                    break
                }
            }
            if rejected {
                _ = try await sync(changed, legacy: legacy, store: store)
                continue
            }

            // Compare.
            var explained = Set<LegacyRows.Key>()
            for key in Set(changed).union(decided.keys).sorted() {
                let legacyAfter = after[key]
                let legacyBefore = before[key]
                let ledger: CanonicalRow?
                let commandDecided: Bool
                if let row = decided[key] {
                    ledger = row
                    commandDecided = true
                } else {
                    ledger = legacyBefore
                    commandDecided = false
                }
                switch (legacyAfter, ledger) {
                case (nil, nil):
                    report.matches += 1
                case (nil, .some), (.some, nil):
                    report.mismatches.append((key.description, [commandDecided ? "(deleted)" : "(missing)"]))
                case (let l?, let d?):
                    var differing = [String]()
                    for column in key.entity.columns where l[column.name] != d[column.name] {
                        if column.name == "updated_at", let legacyBefore, Self.onlyUpdatedAtChanged(legacyBefore, l) {
                            report.exclusions[
                                "updated_at of a row whose canonical columns did not change", default: 0] += 1
                            explained.insert(key)
                            continue
                        }
                        differing.append(column.name)
                    }
                    if l.attributes != d.attributes {
                        report.exclusions["attributes", default: 0] += 1
                        explained.insert(key)
                    }
                    if differing.isEmpty {
                        report.matches += 1
                    } else {
                        report.mismatches.append((key.description, (commandDecided ? [] : ["(missing)"]) + differing))
                    }
                }
            }

            // Shadow mode's sync must find nothing left but what the exclusions explain.
            let synced = try await sync(changed, legacy: legacy, store: store)
            for key in synced.sorted() {
                if explained.contains(key) {
                    report.syncExplained.append(key.description)
                } else {
                    report.syncUnexplained.append(key.description)
                }
            }
        }
        return report
    }

    /// Keys whose legacy canonical row differs before and after (created, changed, deleted).
    static func changedKeys(before: [LegacyRows.Key: CanonicalRow], after: [LegacyRows.Key: CanonicalRow])
        -> [LegacyRows.Key]
    {
        Set(before.keys).union(after.keys).filter { before[$0] != after[$0] }.sorted()
    }

    /// Whether `after` differs from `before` in `updated_at` only, among the canonical columns.
    static func onlyUpdatedAtChanged(_ before: CanonicalRow, _ after: CanonicalRow) -> Bool {
        before.entity.columns.allSatisfy { $0.name == "updated_at" || before[$0.name] == after[$0.name] }
    }

    /// Shadow mode's sync of `keys` (legacy → ledger), then the read models; the keys whose
    /// streams it appended to.
    func sync(_ keys: [LegacyRows.Key], legacy: Connection, store: Connection) async throws -> Set<LegacyRows.Key> {
        guard !keys.isEmpty else { return [] }
        let eventStore = EventStore()
        let versions = { @Sendable (session: Session) throws -> [LegacyRows.Key: Int64] in
            var result = [LegacyRows.Key: Int64]()
            for key in keys {
                result[key] = try eventStore.streamVersion(key.entity.streamID(key: key.key), in: session)
            }
            return result
        }
        let before = try await store.withSession(versions)
        var grouped = [Entity: Set<String>]()
        for key in keys { grouped[key.entity, default: []].insert(key.key) }
        let shadow = ShadowSync(legacy: legacy, store: store, eventStore: eventStore, mapping: mapping, origin: .shadow)
        _ = try await shadow.sync(grouped, position: nil)
        _ = try await Projector().catchUp(on: store)
        let after = try await store.withSession(versions)
        return Set(keys.filter { before[$0] != after[$0] })
    }
}

struct HarnessFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
