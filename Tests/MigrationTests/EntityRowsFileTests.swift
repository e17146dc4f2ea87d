import Billing
import Diff
import EventStore
import Fixtures
import Foundation
import Migration
import Postgres
import TestSupport
import Testing
import TextFormats

@testable import Mapping

/// A fresh directory holding `files` (name → text); removed after `body`.
private func withFiles<T>(_ files: [String: String], _ body: (URL) async throws -> T) async throws -> T {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerlift-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    for (name, text) in files {
        try text.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8)
    }
    return try await body(directory)
}

private func mapping(plan: String, amounts: String = "major") -> String {
    """
    version: 1
    amounts: \(amounts)
    entities:
      plan:
    \(plan.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
    """
}

/// Two plans the way a catalog export writes them: canonical columns, one left out of a row,
/// a YAML null, an offset timestamp, and two columns that are not canonical (attributes).
private let catalog = """
    # plans exported from the catalog
    - plan_id: gold-monthly
      code: gold-monthly
      amount: 30.00
      currency: USD
      interval: month
      archived: false
      created_at: "2024-12-01T00:00:00Z"
      category: BASE
    - plan_id: gold-trial
      amount: 0
      currency: USD
      interval: month
      trial_days: 30
      archived: False
      created_at: 2024-12-01 00:00:00+01
      category: null
      fixed_price: "0.00"
    """

/// The error loading the mapping `yaml` (beside `files`, and whatever `prepare` adds to their
/// directory) throws.
private func loadError(
    _ yaml: String, _ files: [String: String], prepare: (URL) throws -> Void = { _ in }
) async throws -> MappingError {
    try await withFiles(files.merging(["mapping.yaml": yaml]) { a, _ in a }) { directory in
        try prepare(directory)
        do throws(MappingError) {
            _ = try MappingFile.load(path: directory.appendingPathComponent("mapping.yaml").path)
        } catch {
            return error
        }
        Issue.record("the mapping loaded, but an error was expected")
        throw CancellationError()
    }
}

@Suite("Entities read from a YAML file of rows (file:) instead of a query")
struct EntityRowsFileTests {
    @Test func aFileOfRowsBecomesAValuesQueryWithEachCanonicalColumnInItsType() async throws {
        try await withFiles(["mapping.yaml": mapping(plan: "file: catalog.yaml"), "catalog.yaml": catalog]) {
            directory in
            let mapping = try MappingFile.load(path: directory.appendingPathComponent("mapping.yaml").path)
            let plan = try #require(mapping[entity: .plan])
            #expect(plan.file == "catalog.yaml")
            #expect(plan.sources.isEmpty)
            #expect(plan.historyQuery == nil)
            #expect(
                plan.query == """
                    SELECT * FROM (VALUES
                        ('gold-monthly'::text, 'gold-monthly'::text, '30.00'::numeric, 'USD'::text, 'month'::text, \
                    NULL::int8, false, '2024-12-01T00:00:00.000000Z'::timestamptz, 'BASE'::text, NULL::text),
                        ('gold-trial'::text, NULL::text, '0'::numeric, 'USD'::text, 'month'::text, 30::int8, false, \
                    '2024-11-30T23:00:00.000000Z'::timestamptz, NULL::text, '0.00'::text)
                    ) AS file_rows ("plan_id", "code", "amount", "currency", "interval", "trial_days", "archived", \
                    "created_at", "category", "fixed_price")

                    """)
        }
    }

    /// The query runs and converts like a legacy query: exact money, the default interval_count,
    /// attributes as text (a YAML null stays NULL), and `mapping check` accepts every type.
    @Test func theFilesRowsConvertAndPassMappingCheck() async throws {
        try await withFiles(["mapping.yaml": mapping(plan: "file: catalog.yaml"), "catalog.yaml": catalog]) {
            directory in
            let mapping = try MappingFile.load(path: directory.appendingPathComponent("mapping.yaml").path)
            try await TestDatabase.withConnection { connection, _ in
                let rows = try await MappingTestSupport.convertAll(
                    mapping[.plan]!.query, with: mapping.converter(for: .plan)!, on: connection
                ).map { try #require($0.migrated).row }
                #expect(rows.map(\.key) == ["gold-monthly", "gold-trial"])
                #expect(rows.map { $0["amount"] } == [.amount(3000), .amount(0)])
                #expect(rows.map { $0["trial_days"] } == [.null, .integer(30)])
                #expect(rows.map { $0["archived"] } == [.boolean(false), .boolean(false)])
                #expect(rows.map { $0["interval_count"] } == [.integer(1), .integer(1)])
                #expect(rows.map { $0["code"] } == [.text("gold-monthly"), .null])
                #expect(
                    rows.map { $0["created_at"] } == [
                        .timestamp(PostgresTimestamp(year: 2024, month: 12, day: 1)!),
                        .timestamp(PostgresTimestamp(year: 2024, month: 11, day: 30, hour: 23)!),
                    ])
                let none: String? = nil
                #expect(
                    rows.map(\.attributes) == [
                        ["category": "BASE", "fixed_price": none], ["category": none, "fixed_price": "0.00"],
                    ])
                let report = try await MappingChecker(mapping).check(connection)
                #expect(report.errors.isEmpty)
                #expect(report[entity: .plan]?.rowCount == 2)
                #expect(report[entity: .plan]?.attributes == ["category", "fixed_price"])
            }
        }
    }

    /// Under `amounts: minor` an amount is an integer column, as mapping check requires.
    @Test func underMinorAmountsAreIntegers() async throws {
        let cents = catalog.replacing("amount: 30.00", with: "amount: 3000")
        try await withFiles([
            "mapping.yaml": mapping(plan: "file: catalog.yaml", amounts: "minor"), "catalog.yaml": cents,
        ]) {
            directory in
            let mapping = try MappingFile.load(path: directory.appendingPathComponent("mapping.yaml").path)
            #expect(mapping[.plan]!.query.contains("'gold-monthly'::text, '3000'::int8") == false)
            #expect(mapping[.plan]!.query.contains("'gold-monthly'::text, 3000::int8"))
        }
        let error = try await loadError(
            mapping(plan: "file: catalog.yaml", amounts: "minor"), ["catalog.yaml": catalog])
        #expect(error.codes == [.invalidValue])
        #expect(error.issues[0].path == "entities.plan.file")
        #expect(error.issues[0].line == 5)
        #expect(
            error.issues[0].message
                == "values that do not fit their column:\ncatalog.yaml:4:11: row 1 (plan_id gold-monthly), amount "
                + "is not a whole number: under amounts: minor an amount is an integer of minor units")
    }

    @Test func anEmptyListIsAnEntityWithoutRows() async throws {
        try await withFiles(["mapping.yaml": mapping(plan: "file: catalog.yaml"), "catalog.yaml": "[]\n"]) {
            directory in
            let mapping = try MappingFile.load(path: directory.appendingPathComponent("mapping.yaml").path)
            try await TestDatabase.withConnection { connection, _ in
                let report = try await MappingChecker(mapping).check(connection)
                #expect(report.errors.isEmpty)
                #expect(report[entity: .plan]?.rowCount == 0)
                #expect(report[entity: .plan]?.columnsReturned == Entity.plan.columns.map(\.name))
            }
        }
    }

    // MARK: Errors

    @Test func aFileThatIsMissingOrNotAListOfMapsIsRefusedNamingIt() async throws {
        let yaml = mapping(plan: "file: catalog.yaml")
        let missing = try await loadError(yaml, [:])
        #expect(missing.codes == [.unreadableFile])
        #expect(missing.issues[0].path == "entities.plan.file")
        #expect(missing.issues[0].line == 5)
        #expect(missing.issues[0].message == "cannot read catalog.yaml: no such file")

        let map = try await loadError(yaml, ["catalog.yaml": "plan_id: gold\namount: 30\n"])
        #expect(map.codes == [.invalidValue])
        #expect(
            map.issues[0].message
                == "catalog.yaml must be a YAML list of rows, each a map of column to value "
                + "(`- { plan_id: gold, amount: 30.00 }`), not a map")
        let empty = try await loadError(yaml, ["catalog.yaml": "# nothing yet\n"])
        #expect(empty.issues[0].message.hasPrefix("catalog.yaml is empty: expected a YAML list of rows"))
        let invalid = try await loadError(yaml, ["catalog.yaml": "- plan_id: [gold\n"])
        #expect(invalid.codes == [.invalidValue])
        #expect(
            invalid.issues[0].message
                == "catalog.yaml:2:1: not valid YAML: did not find expected ',' or ']' "
                + "(while parsing a flow sequence at line 1)")

        let rows = try await loadError(
            yaml,
            [
                "catalog.yaml": """
                - plan_id: gold
                  prices: [30.00, 300.00]
                - just a string
                - plan_id: silver
                  valid_from: 2024-01-01
                  usage: { unit: call }
                """
            ])
        #expect(rows.codes == [.invalidValue])
        #expect(
            rows.issues[0].message == """
                catalog.yaml:2:11: row 1, column prices: a list is not a value: write one scalar (text, number, timestamp, true/false) or null
                catalog.yaml:3:3: row 2 is not a map of column to value
                catalog.yaml:5:3: row 3, column valid_from: valid_from is reserved for history queries, and a file has no history: rename it
                catalog.yaml:6:10: row 3, column usage: a map is not a value: write one scalar (text, number, timestamp, true/false) or null
                """)
    }

    /// A value of the wrong shape for its column is a load error with the file, line, row and
    /// key: no cast can then fail while the backfill runs.
    @Test func valuesThatDoNotFitTheirColumnAreRefusedWithTheirRowAndLine() async throws {
        let error = try await loadError(
            mapping(plan: "file: catalog.yaml"),
            [
                "catalog.yaml": """
                - { plan_id: a, amount: "12,30", currency: USD, interval: month, archived: yes, created_at: 2024-12-01 }
                - { plan_id: b, amount: 1e3, currency: USD, interval: month, archived: true, created_at: "yesterday",
                    trial_days: 7.5 }
                - plan_id: "secret key\\u0001"
                  created_at: 2024-12-01 25:00:00
                """
            ])
        #expect(error.codes == [.invalidValue])
        let lines = error.issues[0].message.split(separator: "\n").map(String.init)
        #expect(lines.first == "values that do not fit their column:")
        // Row by row, in canonical column order.
        #expect(
            Array(lines.dropFirst()) == [
                "catalog.yaml:1:25: row 1 (plan_id a), amount is not an exact decimal number "
                    + "(digits, an optional point and sign)",
                "catalog.yaml:1:76: row 1 (plan_id a), archived is not a boolean: write true or false",
                "catalog.yaml:1:93: row 1 (plan_id a), created_at is a date without a time of day: write a "
                    + "timestamp such as 2024-12-01T00:00:00Z (without an offset it is read as UTC)",
                "catalog.yaml:2:25: row 2 (plan_id b), amount is not an exact decimal number "
                    + "(digits, an optional point and sign)",
                "catalog.yaml:3:17: row 2 (plan_id b), trial_days is not a 64-bit integer",
                "catalog.yaml:2:90: row 2 (plan_id b), created_at is not a timestamp: write one such as "
                    + "2024-12-01T00:00:00Z (without an offset it is read as UTC)",
                "catalog.yaml:5:15: row 3, created_at is not a valid timestamp: hour 25 is not 00–23",
            ])
    }

    @Test func queryHistoryOrSourcesBesideAFileAreRefused() async throws {
        let error = try await loadError(
            mapping(
                plan: """
                    file: catalog.yaml
                    query: SELECT 1
                    history: { query: SELECT 1 }
                    sources:
                      - { table: plans, key: id }
                    """), ["catalog.yaml": catalog])
        #expect(error.codes == [.invalidValue, .invalidValue, .invalidValue])
        #expect(error.issues.map(\.path) == ["entities.plan.query", "entities.plan.history", "entities.plan.sources"])
        #expect(error.issues.map(\.line) == [6, 7, 8])
        #expect(
            error.issues[1].message
                == "not supported with file: a file holds current rows only; map past versions with a query and history instead"
        )
        let neither = try await loadError(mapping(plan: "amounts: major"), [:])
        #expect(neither.codes == [.missingField])
        #expect(neither.issues[0].message.hasSuffix("or `file:` naming a YAML list of its rows"))
    }

    /// No message quotes the file: bytes YAML refuses (a control character, a NUL as in
    /// /proc/self/environ), bytes that are not UTF-8, a key or column name that is not plain
    /// text, and a value that does not fit are told by line, column and row only.
    @Test func errorsNeverQuoteTheFilesContent() async throws {
        let yaml = mapping(plan: "file: catalog.yaml")
        func error(_ bytes: [UInt8]) async throws -> MappingError {
            try await loadError(yaml, [:]) { directory in
                try Data(bytes).write(to: directory.appendingPathComponent("catalog.yaml"))
            }
        }
        let control = try await error(Array("- plan_id: gold\n  password: \"SECRETFILE\u{1}\"\n".utf8))
        #expect(control.codes == [.invalidValue])
        #expect(control.issues[0].message == "catalog.yaml:2:24: not valid YAML: control characters are not allowed")
        let environ = try await error(Array("PGPASSWORD=SECRETFILE\0HOME=/root\0".utf8))
        #expect(environ.issues[0].message == "catalog.yaml:1:22: not valid YAML: control characters are not allowed")
        let latin1 = try await error(Array("- plan_id: gold\n  name: Caf".utf8) + [0xE9, 0x0A])
        #expect(latin1.codes == [.unreadableFile])
        #expect(
            latin1.issues[0].message
                == "cannot read catalog.yaml: it is not UTF-8 text (first invalid byte at line 2, column 12)")
        let names = try await error(
            Array(
                """
                - { plan_id: "SECRETFILE\\u0001", amount: SECRETVALUE, "SECRET NAME": [1] }

                """.utf8))
        #expect(
            names.issues[0].message
                == "catalog.yaml:1:70: row 1, the column named at line 1, column 55: a list is not a value: "
                + "write one scalar (text, number, timestamp, true/false) or null")
        let duplicate = try await error(Array("- { plan_id: a, plan_id: SECRETFILE }\n".utf8))
        #expect(duplicate.issues[0].message == "catalog.yaml:1:5: a column appears twice in one row: plan_id")
        let value = try await error(
            Array("- { plan_id: \"SECRETFILE\\u0001\", amount: SECRETVALUE, currency: USD }\n".utf8))
        #expect(
            value.issues[0].message
                == "values that do not fit their column:\ncatalog.yaml:1:42: row 1, amount is not an exact "
                + "decimal number (digits, an optional point and sign)")
        for found in [control, environ, latin1, names, duplicate, value] {
            #expect(!found.description.contains("SECRET"))
        }
    }

    /// `file:` names a regular file of at most 16 MiB inside the mapping file's directory:
    /// not an absolute path, not `..` or a symbolic link leading out, not a directory or a
    /// pipe (which would block a read); a symbolic link within the directory is followed.
    @Test func theFileMustBeASmallRegularFileInsideTheMappingsDirectory() async throws {
        func message(_ path: String, prepare: (URL) throws -> Void = { _ in }) async throws -> String {
            let error = try await loadError(mapping(plan: "file: \(path)"), ["catalog.yaml": catalog], prepare: prepare)
            #expect(error.issues.count == 1)
            #expect(error.issues[0].path == "entities.plan.file")
            return "\(error.codes[0].rawValue): \(error.issues[0].message)"
        }
        let outside =
            "invalid_value: ../catalog.yaml leads outside the mapping file's directory (symbolic links followed): "
            + "keep the rows file in that directory or below it"
        #expect(
            try await message("/etc/passwd")
                == "invalid_value: /etc/passwd is an absolute path: `file:` takes a path relative to the mapping "
                + "file's directory, inside it (catalog.yaml, exports/plans.yaml)")
        #expect(try await message("../catalog.yaml") == outside)
        #expect(
            try await message("sub/../../etc/passwd")
                == outside.replacing("../catalog.yaml", with: "sub/../../etc/passwd"))
        let link = try await message("passwd") { directory in
            try FileManager.default.createSymbolicLink(
                atPath: directory.appendingPathComponent("passwd").path, withDestinationPath: "/etc/passwd")
        }
        #expect(link == outside.replacing("../catalog.yaml", with: "passwd"))
        let device = try await message("zero") { directory in
            try FileManager.default.createSymbolicLink(
                atPath: directory.appendingPathComponent("zero").path, withDestinationPath: "/dev/zero")
        }
        #expect(device == outside.replacing("../catalog.yaml", with: "zero"))
        let folder = try await message("plans") { directory in
            try FileManager.default.createDirectory(
                at: directory.appendingPathComponent("plans"), withIntermediateDirectories: false)
        }
        #expect(folder == "unreadable_file: cannot read plans: it is a directory, not a regular file")
        var made: Int32 = -1
        let pipe = try await message("pipe.yaml") { directory in
            made = mkfifo(directory.appendingPathComponent("pipe.yaml").path, 0o600)
        }
        #expect(made == 0)
        #expect(pipe == "unreadable_file: cannot read pipe.yaml: it is a named pipe, not a regular file")
        let big = try await message("big.yaml") { directory in
            let url = directory.appendingPathComponent("big.yaml")
            try Data().write(to: url)
            let handle = try FileHandle(forWritingTo: url)
            try handle.truncate(atOffset: UInt64(EntityRowsFile.maximumBytes + 1))
            try handle.close()
        }
        #expect(
            big == "unreadable_file: cannot read big.yaml: it is 16.1 MiB, over the 16 MiB limit for a rows file "
                + "(a catalog export is far smaller)")
        if getuid() != 0 {  // root reads a file whatever its mode
            let denied = try await message("catalog.yaml") { directory in
                try FileManager.default.setAttributes(
                    [.posixPermissions: 0o000], ofItemAtPath: directory.appendingPathComponent("catalog.yaml").path)
            }
            #expect(denied == "unreadable_file: cannot read catalog.yaml: permission denied")
        }

        // A link within the directory, and a path through a subdirectory, are fine.
        try await withFiles(["mapping.yaml": mapping(plan: "file: ./sub/../plans.yaml"), "catalog.yaml": catalog]) {
            directory in
            try FileManager.default.createDirectory(
                at: directory.appendingPathComponent("sub"), withIntermediateDirectories: false)
            try FileManager.default.createSymbolicLink(
                atPath: directory.appendingPathComponent("plans.yaml").path, withDestinationPath: "catalog.yaml")
            let loaded = try MappingFile.load(path: directory.appendingPathComponent("mapping.yaml").path)
            #expect(loaded[entity: .plan]?.file == "./sub/../plans.yaml")
        }
    }

    // MARK: Identity

    /// The rows are the entity's identity: another price is another mapping; comments, layout
    /// and the file's name are not.
    @Test func theFingerprintFollowsTheRowsNotTheFilesLayoutOrName() async throws {
        let reformatted =
            "# the same plans, written otherwise\n"
            + catalog.replacing("# plans exported from the catalog\n", with: "").replacing(
                "amount: 30.00", with: "amount: '30.00'")
        try await withFiles([
            "a.yaml": mapping(plan: "file: catalog.yaml"), "b.yaml": mapping(plan: "file: plans/other.yaml"),
            "c.yaml": mapping(plan: "file: repriced.yaml"), "catalog.yaml": catalog,
            "repriced.yaml": catalog.replacing("amount: 30.00", with: "amount: 30.01"),
        ]) { directory in
            try FileManager.default.createDirectory(
                at: directory.appendingPathComponent("plans"), withIntermediateDirectories: true)
            try reformatted.write(
                to: directory.appendingPathComponent("plans/other.yaml"), atomically: true, encoding: .utf8)
            func fingerprint(_ name: String) throws -> String {
                try MappingFile.load(path: directory.appendingPathComponent(name).path).fingerprint
            }
            #expect(try fingerprint("a.yaml") == fingerprint("b.yaml"))
            #expect(try fingerprint("a.yaml") != fingerprint("c.yaml"))
        }
    }

    // MARK: Backfill and diff

    /// The reference fixture with its plans exported to a file, as a catalog kept outside the
    /// database would be: the backfill migrates them (subscriptions find their plans), the diff
    /// compares the ledger with the file and is clean, and a price changed in the file since
    /// is the one difference it finds.
    @Test func plansReadFromAFileAreBackfilledAndDiffedLikeAQuery() async throws {
        try await withLegacyAndStore(.reference) { legacyDSN, store, storeDSN in
            let legacy = try await Connection.connect(legacyDSN)
            defer { legacy.close() }
            let reference = try MappingTestSupport.referenceMapping()
            let exported = try await Self.export(reference[.plan]!.query, on: legacy)
            let text = try String(contentsOfFile: try MappingTestSupport.referenceMappingPath(), encoding: .utf8)
            let start = try #require(text.range(of: "\n  plan:\n"))
            let end = try #require(text.range(of: "\n  subscription:\n"))
            let yaml = text[..<start.lowerBound] + "\n  plan:\n    file: plans.yaml\n" + text[end.lowerBound...]
            try await withFiles(["mapping.yaml": String(yaml), "plans.yaml": exported.text]) { directory in
                let path = directory.appendingPathComponent("mapping.yaml").path
                let mapping = try MappingFile.load(path: path)
                #expect(mapping[.plan]?.file == "plans.yaml")
                let backfill = try await MappingTestSupport.backfill(mapping, legacyDSN: legacyDSN, storeDSN: storeDSN)
                #expect(backfill.totalQuarantined == 0)
                #expect(backfill.entities.first { $0.entity == .plan }?.rowsMigrated == 11)
                _ = try await Projector().catchUp(on: store)
                let attributes = try await store.query(
                    "SELECT attributes->>'exported_from' FROM ledgerlift_read.plans WHERE plan_id = '2'"
                ).rows.map { try $0.decode(at: 0, as: String?.self) }
                #expect(attributes == ["legacy.plans"])
                let clean = try await DiffChecker(.init(legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: mapping))
                    .run()
                #expect(clean.isClean)
                let plans = try #require(clean.entities.first { $0.entity == .plan })
                #expect(plans.legacyRows == 11 && plans.matched == 11)

                let repriced = exported.text.replacing(exported.planTwoAmount, with: "amount: 49.01\n")
                #expect(repriced != exported.text)
                try repriced.write(
                    to: directory.appendingPathComponent("plans.yaml"), atomically: true, encoding: .utf8)
                let edited = try MappingFile.load(path: path)
                #expect(edited.fingerprint != mapping.fingerprint)
                let report = try await DiffChecker(.init(legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: edited))
                    .run()
                #expect(found(report) == ["plan/2": ["mismatched:amount"]])
            }
        }
    }

    /// `query`'s rows as a YAML list, every value a JSON string (YAML reads those as they are)
    /// or null, plus an attribute naming where they came from; and the text of plan 2's amount.
    static func export(_ query: String, on connection: Connection) async throws -> (text: String, planTwoAmount: String)
    {
        let result = try await connection.query("SELECT * FROM (\(query)) q ORDER BY plan_id")
        var text = "# legacy.plans, exported\n"
        var planTwoAmount = ""
        for row in result.rows {
            for (index, column) in result.columns.columns.enumerated() {
                let value = row.values[index].map(JSONValue.quoted) ?? "null"
                let line = "\(index == 0 ? "- " : "  ")\(column.name): \(value)\n"
                if column.name == "amount", row.values[0] == "2" { planTwoAmount = String(line.dropFirst(2)) }
                text += line
            }
            text += "  exported_from: legacy.plans\n"
        }
        return (text, planTwoAmount)
    }
}
