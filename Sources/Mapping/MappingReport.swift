import Billing
import TextFormats

/// One thing ``MappingChecker`` found about an entity's mapping.
public struct MappingFinding: Sendable, Hashable, CustomStringConvertible {
    public enum Severity: String, Sendable, Hashable, Comparable {
        /// The mapping cannot be used until it is fixed.
        case error
        /// The mapping works, but probably not as meant.
        case warning
        /// Worth knowing, nothing to fix (which events will be dated by inference).
        case note

        private var rank: Int {
            switch self {
            case .error: 0
            case .warning: 1
            case .note: 2
            }
        }

        public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
    }

    /// What was found. Stable codes, for tests and scripts.
    public enum Code: String, Sendable, Hashable, CaseIterable {
        /// The query (or history query) does not run; the message carries PostgreSQL's.
        case queryFailed = "query_failed"
        /// A required canonical column is not returned.
        case columnMissing = "column_missing"
        /// A nullable canonical column is not returned: every row reads it as NULL (warning).
        case nullableColumnMissing = "nullable_column_missing"
        /// A canonical column's PostgreSQL type cannot hold the canonical type.
        case columnType = "column_type"
        /// Two result columns share a name.
        case columnDuplicated = "column_duplicated"
        /// The current-state query returns `valid_from`, which only history queries may.
        case columnReserved = "column_reserved"
        /// The key is not unique: the listed keys appear on several rows.
        case keyNotUnique = "key_not_unique"
        /// Rows with a NULL key, which will be quarantined (warning).
        case keyNull = "key_null"
        /// Two history rows share a key and `valid_from`.
        case historyVersionNotUnique = "history_version_not_unique"
        /// History rows whose key the current query does not return; they are ignored (warning).
        case historyWithoutCurrentRow = "history_without_current_row"
        /// History rows carry other attributes than current rows (warning).
        case historyAttributesDiffer = "history_attributes_differ"
        /// A `sources` entry names a table or column that does not exist.
        case sourceInvalid = "source_invalid"
        /// The legacy role can write a `sources` table: a mapping query (through `dblink_exec` or
        /// a writing function) could change legacy data. Use a read-only role (warning).
        case sourceWritable = "source_writable"
        /// The legacy database is `SQL_ASCII`: text is unchecked, and bytes that are not UTF-8
        /// stop the queries that return them (warning).
        case uncheckedEncoding = "unchecked_encoding"
        /// An event of the entity will be dated by inference, because the column that proves its
        /// moment is not returned (note).
        case datedByInference = "dated_by_inference"
        /// A result column that is not canonical is close to a canonical column the query does
        /// not return (`deleted_at` for `archived_at`, `due_at` for `due_on`): it would become
        /// an attribute and the canonical column NULL (warning, with the suggested name).
        case columnMisnamed = "column_misnamed"
        /// One of the mapping's `checks:` queries fails: the backfill, which runs it before
        /// converting anything, would stop.
        case checkFailed = "check_failed"
        /// A built-in cross-row rule fails over the mapping's queries (a column it compares is
        /// not returned): the backfill, which runs it too, would stop.
        case ruleFailed = "rule_failed"
        /// A `checks:` query or a built-in rule rejects rows: the backfill will quarantine them
        /// with that reason (note, with the first keys).
        case willQuarantine = "will_quarantine"
        /// `currency_exponents` is declared where it changes nothing: for an entity under
        /// `amounts: major` (a major amount is the same whatever exponent the legacy system
        /// used) or without amounts (warning).
        case currencyExponentsIgnored = "currency_exponents_ignored"
        /// Under `amounts: minor`, every non-zero amount of a currency with fewer than 2 decimal
        /// places is a multiple of 100: the legacy system may write it in hundredths, and the
        /// amounts would migrate 100 times too large (warning; declaring the currency's exponent
        /// says which it is).
        case amountsOffByPowerOfTen = "amounts_off_by_power_of_ten"
        /// An SQL source's `keys` fails over the changed rows as capture records them (it reads a
        /// column that is not recorded, or does not run).
        case sourceKeysFailed = "source_keys_failed"
        /// A table the entity's SQL reads (query, history, checks or `by_key`, views followed)
        /// is not in its `sources`: shadow mode would miss its changes. The message names the
        /// source line to add.
        case sourceMissing = "source_missing"
        /// The entity's SQL reads a materialized view or a foreign table, whose changes no
        /// trigger can capture: shadow mode cannot follow it.
        case sourceUnfollowable = "source_unfollowable"
        /// The entity's SQL calls user functions: the tables they read cannot be seen from the
        /// catalog, so `sources` may miss them (warning).
        case sourceFunctionsUnfollowed = "source_functions_unfollowed"
        /// Which tables the SQL reads could not be determined (the role lacks `TEMP`, or the
        /// database is read-only): coverage is unchecked (warning).
        case coverageUnchecked = "coverage_unchecked"
        /// The mapping has no `sources` at all: fine for backfill and diff, but shadow mode
        /// cannot follow it (note).
        case noSources = "no_sources"
        /// `by_key` does not return what the query returns for the same keys (other columns,
        /// types or rows).
        case byKeyMismatch = "by_key_mismatch"
        /// Reading one key through `by_key` (or the query filtered on its key, without it) scans
        /// a large table: each change shadow mode applies would cost a scan (warning, with the
        /// plan).
        case byKeyScans = "by_key_scans"
        /// A `write_back` statement fails when `mapping check` runs it (in a transaction it rolls
        /// back) for a real row, or a plausibly-typed one when the table is empty: reverse sync
        /// would stop on it. The message names the statement, the row and the SQLSTATE.
        case writeBackFailed = "write_back_failed"
        /// Some entities have `write_back` and this one has none: reverse sync cannot write its
        /// rows back, so a cutover cannot pass its write switch (note; a mapping without any
        /// `write_back` is one that never cuts over, and gets no such note).
        case writeBackMissing = "write_back_missing"
        /// The `write_back` statements could not be run (the role may not write legacy): they
        /// are unchecked (warning).
        case writeBackUnchecked = "write_back_unchecked"

        /// Whether the finding concerns only shadow mode (coverage of the sources, `by_key`):
        /// backfill and diff read neither, so a backfill need not refuse a mapping for it.
        public var concernsShadowModeOnly: Bool {
            switch self {
            case .sourceKeysFailed, .sourceMissing, .sourceUnfollowable, .sourceFunctionsUnfollowed, .coverageUnchecked, .noSources,
                .byKeyMismatch, .byKeyScans, .writeBackFailed, .writeBackMissing, .writeBackUnchecked:
                // write_back concerns the cutover, later still: a backfill need not refuse either.
                true
            default:
                false
            }
        }
    }

    /// Which part of the entity's mapping the finding is about.
    public enum Part: String, Sendable, Hashable {
        case query
        case history
        case sources
        /// The mapping's own `checks:` (the finding's column is the check's reason).
        case checks
        /// Ledgerlift's cross-row rules (the finding's column is the rule's reason).
        case rules
        /// `by_key`, or the query filtered on its key when there is none.
        case byKey = "by_key"
        /// `write_back` (the finding's column is the statement: `upsert[0]`, `delete`).
        case writeBack = "write_back"
    }

    public let severity: Severity
    public let code: Code
    public let entity: Entity
    public let part: Part
    /// The canonical column (or `sources[i]`) at fault, when there is one.
    public let column: String?
    public let message: String

    public init(_ severity: Severity, _ code: Code, entity: Entity, part: Part, column: String?, _ message: String) {
        self.severity = severity
        self.code = code
        self.entity = entity
        self.part = part
        self.column = column
        self.message = message
    }

    /// Where: `invoice.currency`, `subscription.history.valid_from`, `invoice.sources[1]`,
    /// `customer.checks.balance_mismatch`, `refund.rules.refund_exceeds_payment`.
    public var location: String {
        var text = entity.rawValue
        if part == .history || part == .checks || part == .rules || part == .byKey || part == .writeBack {
            text += "." + part.rawValue
        }
        if let column { text += "." + column } else if part == .sources { text += ".sources" }
        return text
    }

    /// `error: invoice.currency: …`
    public var description: String { "\(severity.rawValue): \(location): \(message)" }
}

/// What ``MappingChecker`` found for one mapped entity.
public struct EntityCheck: Sendable, Hashable {
    public let entity: Entity
    /// Whether the query ran (its columns are known).
    public var queryRuns = false
    /// Canonical columns the query returns.
    public var columnsReturned: [String] = []

    /// `returned/expected`: the columns returned out of the entity's columns that are not
    /// optional plus the optional ones returned, so a mapping that leaves out only optional
    /// columns (a wider billing system's tenants or phases) reads as complete.
    public var columnsFigure: String {
        let returned = Set(columnsReturned)
        let expected = entity.columns.filter { !$0.isOptional || returned.contains($0.name) }.count
        return "\(columnsReturned.count)/\(expected)"
    }
    /// Attributes the query carries (result columns beyond the canonical set), in query order.
    public var attributes: [String] = []
    /// Rows the query returns; `nil` when it could not be counted.
    public var rowCount: Int64?
    /// Whether the mapping has a history query.
    public var hasHistory = false
    /// Rows the history query returns; `nil` without a history query or when it fails.
    public var historyRowCount: Int64?
    /// Everything found, errors first.
    public var findings: [MappingFinding] = []

    public init(entity: Entity) { self.entity = entity }

    public var errors: [MappingFinding] { findings.filter { $0.severity == .error } }
    public var warnings: [MappingFinding] { findings.filter { $0.severity == .warning } }
    public var notes: [MappingFinding] { findings.filter { $0.severity == .note } }
    public var isClean: Bool { errors.isEmpty }
}

/// The result of checking a mapping file against a live legacy database.
public struct MappingReport: Sendable, Hashable {
    /// The mapping file checked.
    public let mappingFile: String
    /// One check per mapped entity, in canonical order.
    public let entities: [EntityCheck]
    /// Canonical entities the file does not map (nothing of theirs is migrated).
    public let unmapped: [Entity]

    public init(mappingFile: String, entities: [EntityCheck], unmapped: [Entity]) {
        self.mappingFile = mappingFile
        self.entities = entities
        self.unmapped = unmapped
    }

    public var findings: [MappingFinding] { entities.flatMap(\.findings) }
    public var errors: [MappingFinding] { findings.filter { $0.severity == .error } }
    public var warnings: [MappingFinding] { findings.filter { $0.severity == .warning } }
    public var notes: [MappingFinding] { findings.filter { $0.severity == .note } }
    /// No errors (warnings allowed).
    public var isClean: Bool { errors.isEmpty }

    /// Whether the mapping passes: no errors, and under `strict` (CI) no warnings either.
    public func passes(strict: Bool) -> Bool { isClean && (!strict || warnings.isEmpty) }

    /// The check of `entity`, if it is mapped.
    public subscript(entity entity: Entity) -> EntityCheck? { entities.first { $0.entity == entity } }

    /// The report for a terminal: a table per entity (status, columns, attributes, rows,
    /// history rows), then every finding under its entity, then a verdict.
    ///
    /// - Parameters:
    ///   - database: the legacy DSN, already masked.
    ///   - strict: warnings fail the mapping too (`mapping check --strict`), and the verdict
    ///     says so.
    public func rendered(database: String, strict: Bool = false) -> String {
        var out = ["mapping \(mappingFile) against \(database)", ""]
        var table = [["entity", "status", "columns", "rows", "history", "attributes"]]
        for check in entities {
            let status = !check.isClean ? "ERROR" : check.warnings.isEmpty ? "ok" : "warning"
            table.append([
                check.entity.rawValue, status,
                check.queryRuns ? check.columnsFigure : "-",
                check.rowCount.map(String.init) ?? "-",
                check.hasHistory ? check.historyRowCount.map(String.init) ?? "-" : "",
                check.attributes.isEmpty ? "" : check.attributes.joined(separator: ", "),
            ])
        }
        out += Self.align(table, rightAligned: [2, 3, 4])
        if !unmapped.isEmpty {
            out.append("")
            out.append(
                "not mapped (nothing of theirs is migrated): \(unmapped.map(\.rawValue).joined(separator: ", "))")
        }
        for check in entities where !check.findings.isEmpty {
            out.append("")
            out.append("\(check.entity):")
            for finding in check.findings {
                let lines = finding.message.split(separator: "\n", omittingEmptySubsequences: false)
                let severity = finding.severity.rawValue
                let head = "  " + severity + String(repeating: " ", count: max(1, 8 - severity.count))
                out.append(head + "\(finding.location): " + lines[0])
                for line in lines.dropFirst() { out.append(String(repeating: " ", count: head.count + 2) + line) }
            }
        }
        out.append("")
        let errorCount = errors.count
        let warningCount = warnings.count
        let noteCount = notes.count
        var counts =
            "\(errorCount) error\(errorCount == 1 ? "" : "s"), \(warningCount) warning\(warningCount == 1 ? "" : "s")"
        if noteCount > 0 { counts += ", \(noteCount) note\(noteCount == 1 ? "" : "s")" }
        if isClean && !passes(strict: strict) {
            let warned = entities.filter { !$0.warnings.isEmpty }.map(\.entity.rawValue).joined(separator: ", ")
            out.append(
                "mapping has warnings (\(counts)) in: \(warned), and --strict fails on warnings. "
                    + "Fix them and run `ledgerlift mapping check` again.")
        } else if isClean {
            out.append("mapping ok: \(entities.count) entit\(entities.count == 1 ? "y" : "ies") checked, \(counts)")
        } else {
            let failing = entities.filter { !$0.isClean }.map(\.entity.rawValue).joined(separator: ", ")
            out.append(
                "mapping has errors (\(counts)) in: \(failing). Fix them and run `ledgerlift mapping check` again.")
        }
        return out.joined(separator: "\n")
    }

    static func align(_ rows: [[String]], rightAligned: Set<Int>) -> [String] {
        guard let header = rows.first else { return [] }
        var widths = header.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            var text = cells.enumerated().map { i, cell in
                let pad = String(repeating: " ", count: max(0, widths[i] - cell.count))
                return rightAligned.contains(i) ? pad + cell : cell + pad
            }.joined(separator: "  ")
            while text.last == " " { text.removeLast() }
            return text
        }
        return [line(header), line(widths.map { String(repeating: "-", count: $0) })] + rows.dropFirst().map(line)
    }
}
