import Mapping
import Billing
import Diff
import EventStore
import Foundation
import FoundationXML
import Migration
import Postgres
import TestSupport
import Testing

/// The diff where the data or the setting is unusual: other encodings, duplicate column names,
/// stale quarantine entries, a projection that lags, usage errors in CI.
@Suite("Diff: unusual legacy databases and racing projections")
struct DiffRobustnessTests {
    /// A mapping of plans only, over a table of the test's own.
    static let plansMapping = """
        version: 1
        amounts: major
        entities:
          plan:
            key: plan_id
            query: |
              SELECT p.id AS plan_id, p.code, p.name AS name, p.price AS amount, p.currency, p."interval",
                     p.trial_days, p.archived, p.created_at, p.updated_at, p.note AS label, p.code AS label
              FROM plans p
            sources:
              - { table: plans, key: id }
        """

    static let plansTable = """
        CREATE TABLE plans (id text PRIMARY KEY, code text, name text, price numeric, currency char(3),
                            "interval" text, trial_days int, archived boolean, created_at timestamp,
                            updated_at timestamp, note text);
        INSERT INTO plans
        SELECT CASE WHEN g = 7 THEN 'clé-7' ELSE 'p-' || g END, 'code-' || g, 'Müller Straße Nº ' || g,
               (g * 3)::numeric / 4, 'EUR', 'month', g % 30, g % 5 = 0, '2025-01-01'::timestamp + g * interval '1 hour',
               NULL, CASE WHEN g % 2 = 0 THEN 'Ünïcödé' WHEN g = 9 THEN E'ta\\tb\\bc\\fd"e\\\\f\\x01' END
        FROM generate_series(1, 300) g;
        """

    /// A legacy database in `encoding`, holding `plans`, migrated with ``plansMapping``.
    func withPlans(
        encoding: String, mapping yaml: String = Self.plansMapping, _ label: String = #function,
        _ body: (_ legacy: Connection, _ legacyDSN: String, _ store: Connection, _ storeDSN: String, _ mapping: MappingFile) async throws -> Void
    ) async throws {
        let admin = try await Connection.connect(try TestDatabase.adminDSN())
        defer { admin.close() }
        // Unique per run: two suites on one server must not drop each other's database.
        let name = "ll_" + encoding.lowercased() + "_" + String(label.filter { $0.isLetter }.lowercased().prefix(40)) + "_"
            + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        try await admin.execute(
            "CREATE DATABASE \(quoteIdentifier(name)) ENCODING '\(encoding)' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
        let legacyDSN = ConnectionString.withDatabase(try TestDatabase.adminDSN(), name)
        do {
            let legacy = try await Connection.connect(legacyDSN)
            defer { legacy.close() }
            try await legacy.executeScript(Self.plansTable)
            let mapping = try MappingFile(yaml: yaml)
            try await TestDatabase.withConnection(label + encoding + "_store") { store, storeDSN in
                try await store.withSession { try EventStore().migrate($0) }
                _ = try await Backfill(
                    .init(
                        legacyDSN: legacyDSN, storeDSN: storeDSN, sources: mapping.entitySources(),
                        mappingFingerprint: mapping.fingerprint)
                ).run()
                _ = try await Projector().catchUp(on: store)
                try await body(legacy, legacyDSN, store, storeDSN, mapping)
            }
            try await admin.execute("DROP DATABASE IF EXISTS \(quoteIdentifier(name)) WITH (FORCE)")
        } catch {
            _ = try? await admin.execute("DROP DATABASE IF EXISTS \(quoteIdentifier(name)) WITH (FORCE)")
            throw error
        }
    }

    func diffPlans(_ legacyDSN: String, _ storeDSN: String, _ mapping: MappingFile) async throws -> DiffReport {
        try await DiffChecker(.init(legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: mapping, catchUpTimeout: .seconds(60))).run()
    }

    @Test(arguments: ["LATIN1", "UTF8"])
    func nonASCIITextAndKeysCompareEqualWhateverTheLegacyEncoding(_ encoding: String) async throws {
        try await withPlans(encoding: encoding) { legacy, legacyDSN, store, storeDSN, mapping in
            let clean = try await diffPlans(legacyDSN, storeDSN, mapping)
            #expect(clean.isClean, "\(clean.rendered(.text))")
            #expect(clean.entities.first?.matched == 300)
            #expect(clean.entities.first?.rowsFetched == 0)
            #expect(
                clean.notes
                    == (encoding == "UTF8"
                        ? [] : ["the two databases store text in different encodings: both sides hashed the UTF-8 bytes of their text"]))

            try await legacy.execute("UPDATE plans SET name = 'Müller Strasse' WHERE id = 'clé-7'")
            let changed = try await diffPlans(legacyDSN, storeDSN, mapping)
            #expect(
                changed.entities.first?.differences
                    == [
                        RowDifference(
                            key: "clé-7", kind: .mismatched,
                            columns: [ColumnDifference(column: "name", legacy: "Müller Strasse", ledger: "Müller Straße Nº 7")])
                    ])
        }
    }

    @Test func aQueryReturningTwoColumnsOfOneNameIsComparedByTheFirstAsTheBackfillReadsIt() async throws {
        try await withPlans(encoding: "UTF8") { legacy, legacyDSN, _, storeDSN, mapping in
            // `label` is returned twice: the note (NULL for odd ids), then the code.
            let clean = try await diffPlans(legacyDSN, storeDSN, mapping)
            #expect(clean.isClean, "\(clean.rendered(.text))")
            try await legacy.execute("UPDATE plans SET note = 'changed' WHERE id = 'p-3'")
            let changed = try await diffPlans(legacyDSN, storeDSN, mapping)
            #expect(changed.entities.first?.differences.map(\.key) == ["p-3"])
            #expect(changed.entities.first?.differences.first?.columns.map(\.column) == ["attributes"])
        }
    }

    @Test func timestampsHeldAsTextCompareInEveryShapeTheBackfillReads() async throws {
        let yaml = Self.plansMapping.replacing(
            "p.created_at, p.updated_at,",
            with: "CASE WHEN p.id = 'p-11' THEN '10000-01-01 00:00:00' WHEN p.id = 'p-12' THEN '2025-03-01T10:00:00.5Z' "
                + "WHEN p.id = 'p-13' THEN '2025-03-01 12:00:00+02:00' ELSE p.created_at::text END AS created_at, p.updated_at,")
        try await withPlans(encoding: "UTF8", mapping: yaml) { _, legacyDSN, _, storeDSN, mapping in
            let clean = try await diffPlans(legacyDSN, storeDSN, mapping)
            #expect(clean.isClean, "\(clean.rendered(.text))")
            #expect(clean.entities.first?.matched == 300)
            // A shape the backfill would not read prints as it is: a difference, not a failed run.
            let yamlBad = yaml.replacing("ELSE p.created_at::text END", with: "WHEN p.id = 'p-5' THEN 'yesterday' ELSE p.created_at::text END")
            let changed = try await diffPlans(legacyDSN, storeDSN, try MappingFile(yaml: yamlBad))
            #expect(
                changed.entities.first?.differences.first?.columns
                    == [ColumnDifference(column: "created_at", legacy: "yesterday", ledger: "2025-01-01 05:00:00+00")])
        }
    }

    @Test func amountsWithNoCurrencyAnywhereAreQuarantinedAndTheDiffStillRuns() async throws {
        let yaml = Self.plansMapping.replacing(" p.currency,", with: "")
        try await withPlans(encoding: "UTF8", mapping: yaml) { _, legacyDSN, _, storeDSN, mapping in
            let report = try await diffPlans(legacyDSN, storeDSN, mapping)
            #expect(report.exitCode == 0)
            #expect(report.entities.first?.quarantined == 300)
            #expect(report.entities.first?.compared == 0)
            #expect(report.entities.first?.quarantine.first?.reason == "currency_missing")
        }
    }

    @Test func aStaleQuarantineEntryDoesNotHideAKeyTheLedgerHolds() async throws {
        try await withMigrated { _, legacyDSN, store, storeDSN in
            // As if an earlier run had quarantined plan 2 and a later one migrated it.
            try await store.executeScript(
                """
                INSERT INTO ledgerlift.quarantine (entity, entity_key, reason, detail, raw, run_id)
                VALUES ('plan', '2', 'currency_missing', 'an earlier run', '{}', 'backfill-earlier'),
                       ('plan', '77', 'currency_missing', 'never migrated', '{}', 'backfill-earlier');
                UPDATE ledgerlift_read.plans SET amount = 999999 WHERE plan_id = '2';
                """)
            let report = try await diff(legacyDSN, storeDSN)
            let plan = try #require(report.entities.first { $0.entity == .plan })
            #expect(plan.differences.map(\.key) == ["2"])
            #expect(plan.differences.first?.columns == [ColumnDifference(column: "amount", legacy: "4900", ledger: "999999")])
            #expect(plan.quarantine.map(\.key) == ["77"])
            #expect(report.exitCode == 1)
        }
    }

    @Test func reVerificationWaitsForTheProjectionToCatchUp() async throws {
        try await withMigrated { legacy, legacyDSN, store, storeDSN in
            try await store.execute("UPDATE ledgerlift_read.plans SET name = 'stale' WHERE plan_id = '3'")
            // The projection falls behind by one event; a projector catches up once the diff says
            // it is waiting for it, after the read model has been put right. A re-check that did
            // not wait would still see 'stale'.
            let (waiting, signal) = AsyncStream.makeStream(of: Void.self)
            let projector = Task {
                _ = await waiting.first { _ in true }
                try await store.execute("UPDATE ledgerlift_read.plans p SET name = 'Business' WHERE plan_id = '3'")
                _ = try await Projector().catchUp(on: store)
            }
            let report = try await DiffChecker(
                .init(
                    legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: try MappingTestSupport.referenceMapping(),
                    rowsPerBucket: 64,
                    // Generous: the projector's catch-up waits for any older transaction in the
                    // cluster, which a loaded machine running other tests can keep open for minutes.
                    catchUpTimeout: .seconds(600),
                    progress: { if case .waitingForProjection = $0 { signal.yield() } },
                    beforeReverification: {
                        try await store.withSession { session in
                            _ = try EventStore().append(
                                [NewEvent(eventID: UUID(), eventType: "TestMarker", occurredAt: PostgresTimestamp(microsecondsSinceEpoch: 0), payload: PostgresJSON("{}"))],
                                to: "test-1", in: session)
                        }
                    })
            ).run()
            signal.finish()
            try await projector.value
            let plan = try #require(report.entities.first { $0.entity == .plan })
            #expect(plan.resolvedByReverification == 1)
            #expect(report.isClean, "\(report.rendered(.text))")
        }
    }

    @Test func aProjectionThatDoesNotCatchUpIsSaidInTheReport() async throws {
        try await withMigrated { _, legacyDSN, store, storeDSN in
            try await store.execute("UPDATE ledgerlift_read.plans SET name = 'stale' WHERE plan_id = '3'")
            let report = try await diff(legacyDSN, storeDSN, catchUpTimeout: .milliseconds(300)) {
                try await store.withSession { session in
                    _ = try EventStore().append(
                        [NewEvent(eventID: UUID(), eventType: "TestMarker", occurredAt: PostgresTimestamp(microsecondsSinceEpoch: 0), payload: PostgresJSON("{}"))],
                        to: "test-1", in: session)
                }
            }
            #expect(report.entities.first { $0.entity == .plan }?.differences.map(\.key) == ["3"])
            #expect(
                report.notes
                    == [
                        "the projection had not caught up with the event store after 0.3 seconds; differences were re-checked "
                            + "anyway and may include events not yet projected"
                    ])
            #expect(report.rendered(.json).contains("\"notes\":[\"the projection had not caught up"))
        }
    }

    @Test func aUsageErrorStillWritesTheJUnitReportCIPublishes() async throws {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("diff-\(UUID()).xml").path
        try "<old/>".write(toFile: output, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: output) }
        let result = try await LedgerliftBinary.run([
            "diff", "--legacy", "postgresql://nobody@127.0.0.1:1/x", "--store", "postgresql://nobody@127.0.0.1:1/y",
            "--mapping", "mapping.yaml", "--format", "junit", "--output", output, "--entity", "nope",
        ])
        #expect(result.status == 2)
        let document = try XMLDocument(xmlString: try String(contentsOfFile: output, encoding: .utf8))
        let errors = try document.nodes(forXPath: "//testcase/error")
        #expect(errors.count == 1)
        #expect((errors.first as? XMLElement)?.attribute(forName: "message")?.stringValue?.contains("unknown entity 'nope'") == true)
    }
}
