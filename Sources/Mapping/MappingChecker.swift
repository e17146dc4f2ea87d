import Billing
import TextFormats
import Postgres

/// Validates a ``MappingFile`` against the live legacy database, before any row is migrated.
///
/// For each mapped entity it checks that:
/// - the query (and the history query) runs: `SELECT * FROM (<query>) q LIMIT 0` gives the
///   result columns and their types without reading data;
/// - every canonical column is returned (a missing required column is an error; a missing
///   nullable one a warning, and it reads as NULL) with a PostgreSQL type usable for its
///   canonical type (amounts `numeric`/`int2`/`int4`/`int8`, and integers only under
///   `amounts: minor`; timestamps `timestamptz`/`timestamp`; text `text`/`varchar`/`char`; …);
/// - the key is unique (`GROUP BY key HAVING count(*) > 1`), and history versions are unique per
///   `(key, valid_from)`;
/// - every `sources` table and key column exists; an SQL source's `keys` runs over an empty and
///   a sample `changed` holding only the columns capture records (the primary key and
///   `columns`);
/// - `by_key` returns the query's columns with the same types, and for a sample of keys the same
///   rows; reading one key (by `by_key`, or the query filtered on its key) does not scan a large
///   table;
/// - every table the entity's SQL reads — found in PostgreSQL's dependencies, views followed —
///   is in its `sources` (``MappingCoverage``).
///
/// Columns beyond the canonical set are listed as attributes. Everything runs in one
/// `REPEATABLE READ READ ONLY` transaction, each statement under a savepoint so one failing
/// query does not hide the others' findings, except the coverage analysis, which creates
/// temporary functions in a second transaction that is always rolled back.
public struct MappingChecker: Sendable {
    public let mapping: MappingFile
    /// A sequential scan of a relation with at least this many rows (the planner's estimate) in
    /// the plan of reading one key is reported (``MappingFinding/Code/byKeyScans``).
    public var scanWarningRows: Int

    /// How many keys `mapping check` reads through `by_key` and through the query, to compare.
    public static let byKeySampleSize = 50

    /// Whether to check `write_back`: run every statement (in a transaction always rolled back)
    /// and note entities without one (``writeBackFindings(_:_:)``). `ledgerlift mapping check`
    /// does; the backfill's own check does not (it must not write legacy, even in a transaction
    /// it rolls back).
    public var validatesWriteBack: Bool

    public init(_ mapping: MappingFile, scanWarningRows: Int = 10_000, validatesWriteBack: Bool = false) {
        self.mapping = mapping
        self.scanWarningRows = scanWarningRows
        self.validatesWriteBack = validatesWriteBack
    }

    /// Checks the mapping on `connection`.
    ///
    /// - Throws: ``PostgresError`` only when the database cannot be used at all (connection
    ///   lost, no permission to start a transaction). A query that fails is a finding, not an
    ///   error.
    public func check(_ connection: Connection) async throws -> MappingReport {
        let checker = self
        return try await connection.withSession { try checker.check(in: $0) }
    }

    /// Checks the mapping in `session` (which must not be inside a transaction).
    public func check(in session: Session) throws -> MappingReport {
        var report = try session.transaction(.init(isolation: .repeatableRead, readOnly: true)) { tx in
            var run = CheckRun(session: tx, mapping: mapping, scanWarningRows: scanWarningRows)
            var checks = [EntityCheck]()
            for entityMapping in mapping.entities {
                checks.append(try run.check(entityMapping))
            }
            // What the backfill runs before it converts a row: the mapping's own checks, then the
            // built-in cross-row rules over the queries. A typo in either would pass the shape
            // checks above and stop the backfill, naming neither entity nor check.
            for index in checks.indices {
                try run.checkSourceChecks(mapping.entities[index], &checks[index])
            }
            try run.checkRules(&checks)
            try run.checkCurrencyExponents(&checks)
            if let finding = try run.writableSources(), !checks.isEmpty {
                checks[0].findings.append(finding)
            }
            if let finding = try run.uncheckedEncoding(), !checks.isEmpty {
                checks[0].findings.append(finding)
            }
            return MappingReport(mappingFile: mapping.file, entities: checks, unmapped: mapping.unmappedEntities)
        }
        // Which tables each entity reads needs temporary functions, which a read-only
        // transaction cannot create: a second transaction, always rolled back.
        var entities = report.entities
        try coverageFindings(session, &entities)
        try writeBackFindings(session, &entities)
        for index in entities.indices { entities[index].findings = Self.ordered(entities[index].findings) }
        report = MappingReport(mappingFile: report.mappingFile, entities: entities, unmapped: report.unmapped)
        return report
    }
}

extension MappingChecker {
    /// Errors, then warnings, then notes; in the order found within each.
    static func ordered(_ findings: [MappingFinding]) -> [MappingFinding] {
        findings.enumerated().sorted { a, b in
            a.element.severity != b.element.severity ? a.element.severity < b.element.severity : a.offset < b.offset
        }.map(\.element)
    }
}

/// The state of one check: the session and the type names looked up so far.
struct CheckRun {
    let session: Session
    let mapping: MappingFile
    let scanWarningRows: Int
    var typeNames = [UInt32: String]()

    init(session: Session, mapping: MappingFile, scanWarningRows: Int) {
        self.session = session
        self.mapping = mapping
        self.scanWarningRows = scanWarningRows
    }

    /// `query` as a subquery named `alias`. The query ends with a newline, so a `--` comment on
    /// its last line cannot swallow the closing parenthesis.
    static func subquery(_ query: String, _ alias: String) -> String {
        "(\n" + query + ") " + alias
    }

    mutating func check(_ entityMapping: MappingFile.EntityMapping) throws -> EntityCheck {
        let entity = entityMapping.entity
        var check = EntityCheck(entity: entity)
        let amounts = mapping.amounts(for: entity)

        // Current rows.
        if let columns = try describe(entityMapping.query, part: .query, &check) {
            let shape = try analyze(columns, part: .query, amounts: amounts, &check)
            check.queryRuns = true
            check.columnsReturned = shape.canonical
            check.attributes = shape.attributes
            if shape.hasKey {
                try countAndCheckKeys(entityMapping.query, entity: entity, &check)
            }
        }

        // Past versions.
        if let history = entityMapping.historyQuery {
            check.hasHistory = true
            if let columns = try describe(history, part: .history, &check) {
                let shape = try analyze(columns, part: .history, amounts: amounts, &check)
                if shape.hasKey && shape.hasValidFrom {
                    try checkHistory(history, current: entityMapping.query, entity: entity, &check)
                }
                if shape.attributes.sorted() != check.attributes.sorted(), check.queryRuns {
                    let current = check.attributes.isEmpty ? "none" : check.attributes.joined(separator: ", ")
                    let past = shape.attributes.isEmpty ? "none" : shape.attributes.joined(separator: ", ")
                    check.findings.append(
                        MappingFinding(
                            .warning, .historyAttributesDiffer, entity: entity, part: .history, column: nil,
                            "history rows carry the attributes \(past) but current rows carry \(current): "
                                + "each difference is recorded as a change; "
                                + "return the same extra columns in both queries"
                        ))
                }
            }
        }

        // Tables whose changes touch the entity.
        for (index, source) in entityMapping.sources.enumerated() {
            try checkSource(source, index: index, entity: entity, &check)
        }

        // How shadow mode reads one key.
        if check.queryRuns, !check.errors.contains(where: { $0.part == .query }),
            entityMapping.byKey != nil || !entityMapping.sources.isEmpty
        {
            try checkByKey(entityMapping, &check)
        }
        return check
    }

    // MARK: - What the backfill runs besides the queries

    /// How many rejected keys a finding lists.
    static let exampleLimit = 5
    /// How many keys of history rows without a current row a finding lists.
    static let orphanKeyLimit = 10

    /// Runs each of the entity's `checks:` queries as the backfill does
    /// (`SELECT * FROM (<query>) c`): one that fails is an error naming the entity and the
    /// check, with PostgreSQL's message; one that rejects rows is a note with their keys.
    mutating func checkSourceChecks(_ entityMapping: MappingFile.EntityMapping, _ check: inout EntityCheck) throws {
        let entity = entityMapping.entity
        for source in entityMapping.checks {
            let wrapped = Self.subquery(source.query, "c")
            switch try attempt("SELECT * FROM \(wrapped) LIMIT 0") {
            case .failure(let error):
                check.findings.append(
                    MappingFinding(
                        .error, .checkFailed, entity: entity, part: .checks, column: source.reason,
                        "the check \(source.reason) fails: " + Self.explain(error, query: source.query)))
                continue
            case .success(let result) where result.columns.count == 0:
                check.findings.append(
                    MappingFinding(
                        .error, .checkFailed, entity: entity, part: .checks, column: source.reason,
                        "the check \(source.reason) returns no columns: it must return the \(entity.keyColumn) "
                            + "of each row to quarantine (as text), then a sentence saying why"))
                continue
            case .success:
                break
            }
            // The first column is the key, whatever its name; the second, if any, the detail.
            let rejected = """
                SELECT k::text, count(*) OVER () FROM (
                SELECT * FROM \(wrapped)) AS c (k) ORDER BY 1 LIMIT \(Self.exampleLimit)
                """
            switch try attempt(rejected) {
            case .failure(let error):
                check.findings.append(
                    MappingFinding(
                        .error, .checkFailed, entity: entity, part: .checks, column: source.reason,
                        "the check \(source.reason) fails when it reads rows: "
                            + Self.explain(error, query: source.query)))
            case .success(let result) where !result.rows.isEmpty:
                check.findings.append(
                    try Self.quarantineNote(
                        result, entity: entity, part: .checks, reason: source.reason, details: false))
            case .success:
                break
            }
        }
    }

    /// Runs every built-in cross-row rule (``CrossRowCheck/all``) the mapping's entities allow,
    /// rendered exactly as the backfill renders it. Rules over an entity whose own query has
    /// errors are skipped: those errors already say what to fix.
    mutating func checkRules(_ checks: inout [EntityCheck]) throws {
        let sources = mapping.crossRowSources
        let usable = Set(checks.filter { $0.queryRuns && $0.isClean }.map(\.entity))
        for rule in CrossRowCheck.all
        where rule.needs.allSatisfy(usable.contains) && rule.optional.allSatisfy({ usable.contains($0) || sources[$0] == nil })
        {
            guard let sql = rule.render(sources: sources),
                let index = checks.firstIndex(where: { $0.entity == rule.entity })
            else { continue }
            // Materialized: planned whole, as the backfill runs it. Under the LIMIT, the planner
            // chose nested-loop anti-joins that took minutes on 90 000 invoices (the backfill,
            // which runs this check first, with them).
            let rejected = """
                WITH r (k, d) AS MATERIALIZED (
                \(sql)
                )
                SELECT k, d, count(*) OVER () FROM r ORDER BY 1 LIMIT \(Self.exampleLimit)
                """
            switch try attempt(rejected) {
            case .failure(let error):
                var message =
                    "the rule \(rule.reason) (Ledgerlift's own, run by the backfill over "
                    + rule.needs.map(\.rawValue).joined(separator: " and ") + ") fails over this mapping: "
                    + Self.firstLine(error.message)
                if let sqlState = error.sqlState { message += " (SQLSTATE \(sqlState))" }
                if error.sqlState == "42703" {
                    message +=
                        "; return the column from the query, NULL if legacy has no such data "
                        + "(e.g. `NULL::text AS previous_subscription_id`)"
                }
                if let detail = error.detail, !detail.isEmpty { message += "\ndetail: " + detail }
                checks[index].findings.append(
                    MappingFinding(
                        .error, .ruleFailed, entity: rule.entity, part: .rules, column: rule.reason, message))
            case .success(let result) where !result.rows.isEmpty:
                checks[index].findings.append(
                    try Self.quarantineNote(
                        result, entity: rule.entity, part: .rules, reason: rule.reason, details: true))
            case .success:
                break
            }
        }
    }

    /// `will quarantine 2 invoices as invoice_total_mismatch, e.g. 901001 (total …)`.
    static func quarantineNote(
        _ result: QueryResult, entity: Entity, part: MappingFinding.Part, reason: String, details: Bool
    ) throws -> MappingFinding {
        let total = try result.rows[0].decode(at: details ? 2 : 1, as: Int64.self)
        var examples = [String]()
        for row in result.rows {
            let key = try row.decode(at: 0, as: String?.self) ?? "NULL"
            let detail = details ? try row.decode(at: 1, as: String?.self) : nil
            examples.append(detail.map { "\(key) (\($0))" } ?? key)
        }
        let rows = total == 1 ? "1 \(entity)" : "\(total) \(entity) rows"
        return MappingFinding(
            .note, .willQuarantine, entity: entity, part: part, column: reason,
            "the backfill will quarantine \(rows) as \(reason): "
                + examples.joined(separator: ", ") + (total > Int64(examples.count) ? ", …" : ""))
    }

    /// One warning when the legacy role can write any `sources` table: a mapping query runs in
    /// a read-only transaction, but `dblink_exec` or a function that writes escapes it. The
    /// migrator should connect with a role that can only SELECT.
    mutating func writableSources() throws -> MappingFinding? {
        let tables = Array(Set(mapping.entities.flatMap { $0.sources.map(\.table) })).sorted()
        // Without `sources`, the role's superuser bit is still worth a warning.
        guard let first = mapping.entities.first else { return nil }
        guard
            case .success(let result) = try attempt(
                """
                SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                       array_to_string(ARRAY(
                           SELECT t FROM unnest($1::text[]) AS t
                           WHERE to_regclass(t) IS NOT NULL AND (has_table_privilege(to_regclass(t), 'INSERT')
                              OR has_table_privilege(to_regclass(t), 'UPDATE') OR has_table_privilege(to_regclass(t), 'DELETE')
                              OR has_table_privilege(to_regclass(t), 'TRUNCATE'))
                           ORDER BY t), ', ')
                """, [PostgresArray(tables)]), let row = result.rows.first
        else { return nil }
        let superuser = try row.decode(at: 0, as: Bool?.self) ?? false
        let writable = try row.decode(at: 1, as: String?.self) ?? ""
        guard superuser || !writable.isEmpty else { return nil }
        let what = superuser ? "the legacy role is a superuser" : "the legacy role can write \(writable)"
        return MappingFinding(
            .warning, .sourceWritable, entity: first.entity, part: .sources, column: nil,
            "\(what): a mapping query runs read-only, but dblink_exec or a function that writes could still change "
                + "legacy data. Connect --legacy with a role that can only SELECT (docs/security.md).")
    }

    /// A warning when the legacy database is `SQL_ASCII`: PostgreSQL stores its text unchecked,
    /// and a value whose bytes are not UTF-8 stops any query that returns it (22021, no row
    /// named), so the backfill cannot quarantine it. The mapping must convert such text.
    mutating func uncheckedEncoding() throws -> MappingFinding? {
        guard let first = mapping.entities.first,
            case .success(let result) = try attempt("SELECT current_setting('server_encoding')"),
            try result.rows.first?.decode(at: 0, as: String.self) == "SQL_ASCII"
        else { return nil }
        return MappingFinding(
            .warning, .uncheckedEncoding, entity: first.entity, part: .query, column: nil,
            "the legacy database is SQL_ASCII: its text is stored unchecked, and a value that is not UTF-8 stops the "
                + "query that returns it (SQLSTATE 22021) instead of being quarantined. Convert text columns in the "
                + "mapping, e.g. convert_from(convert(convert_to(name, 'SQL_ASCII'), 'LATIN1', 'UTF8'), 'SQL_ASCII') AS name (docs/mapping.md)")
    }

    // MARK: - Shape

    struct Shape {
        var canonical = [String]()
        var attributes = [String]()
        var hasKey = false
        var hasValidFrom = false
    }

    /// The result columns of `query`, or `nil` (and a finding) when it does not run.
    mutating func describe(_ query: String, part: MappingFinding.Part, _ check: inout EntityCheck) throws -> Columns? {
        let sql = "SELECT * FROM " + Self.subquery(query, "q") + " LIMIT 0"
        switch try attempt(sql) {
        case .success(let result):
            return result.columns
        case .failure(let error):
            check.findings.append(
                MappingFinding(
                    .error, .queryFailed, entity: check.entity, part: part, column: nil,
                    "the \(part == .history ? "history query" : "query") fails: " + Self.explain(error, query: query)))
            return nil
        }
    }

    mutating func analyze(
        _ columns: Columns, part: MappingFinding.Part, amounts: MappingFile.AmountUnit, _ check: inout EntityCheck
    ) throws -> Shape {
        let entity = check.entity
        var shape = Shape()
        var seen = [String: Int]()
        for column in columns.columns { seen[column.name, default: 0] += 1 }
        for (name, count) in seen.sorted(by: { $0.key < $1.key }) where count > 1 {
            check.findings.append(
                MappingFinding(
                    .error, .columnDuplicated, entity: entity, part: part, column: name,
                    "returned \(count) times: give each result column its own name (only the first would be read)"))
        }
        let validFrom = RowConverter.validFromColumn
        let validTo = RowConverter.validToColumn
        if part == .query {
            for name in [validFrom, validTo] where seen[name] != nil {
                check.findings.append(
                    MappingFinding(
                        .error, .columnReserved, entity: entity, part: part, column: name,
                        "\(name) is reserved for history queries "
                            + "(rows carrying valid_from are read as past versions): rename it"
                    ))
            }
        }
        // Proof columns of named events: not returned, they are explained by a dating note
        // rather than a warning (the mapping works; its history is dated by inference).
        let dating = Transitions.dating(of: entity).dropFirst()
        let proofColumns = Set(dating.flatMap(\.proof))
        // A result column that is not canonical but resembles a canonical one that is missing
        // is most likely that column under its legacy name; left alone it becomes an
        // attribute and the canonical column NULL, and nothing else would say so.
        let extras = columns.columns.map(\.name).filter {
            entity.column($0) == nil && !(part == .history && RowConverter.isVersionColumn($0))
        }
        let missing = entity.columns.map(\.name).filter { columns.index(of: $0) == nil }
        let misnamed = ColumnNameSuggestion.pairs(extras: extras, missing: missing)
        for definition in entity.columns {
            guard let index = columns.index(of: definition.name) else {
                if let extra = misnamed[definition.name] {
                    let severity: MappingFinding.Severity = definition.nullable ? .warning : .error
                    check.findings.append(
                        MappingFinding(
                            severity, .columnMisnamed, entity: entity, part: part, column: extra,
                            "did you mean `\(definition.name)`? The \(part == .history ? "history query" : "query") "
                                + "returns `\(extra)`, which is not canonical and would be carried as an attribute, "
                                + "but not \(definition.name) (\(Self.describe(definition))"
                                + (definition.nullable ? ", which would be NULL on every row" : ", required")
                                + "): alias it, `… AS \(definition.name)`"))
                    if part == .query, proofColumns.contains(definition.name) {
                        // Still dated by inference until it is renamed: the note says so below.
                    } else {
                        continue
                    }
                }
                if part == .query, definition.nullable, proofColumns.contains(definition.name) {
                    continue
                } else if definition.isOptional {
                    // A default (or NULL) is what leaving it out means: nothing to say.
                    continue
                } else if definition.nullable {
                    check.findings.append(
                        MappingFinding(
                            .warning, .nullableColumnMissing, entity: entity, part: part, column: definition.name,
                            "not returned, so every row reads it as NULL (\(Self.describe(definition)))"))
                } else {
                    var message =
                        "missing: the \(part == .history ? "history query" : "query") must return it "
                        + "(\(Self.describe(definition)), required)"
                    if definition.name == entity.keyColumn {
                        message += "; return your legacy key as text, e.g. `id::text AS \(entity.keyColumn)`"
                    }
                    check.findings.append(
                        MappingFinding(
                            .error, .columnMissing, entity: entity, part: part, column: definition.name, message))
                }
                continue
            }
            shape.canonical.append(definition.name)
            if definition.name == entity.keyColumn { shape.hasKey = true }
            let type = columns.columns[index].type
            if let problem = Self.typeProblem(type, for: definition, amounts: amounts) {
                check.findings.append(
                    MappingFinding(
                        .error, .columnType, entity: entity, part: part, column: definition.name,
                        "is \(try typeName(type)); \(problem)"))
            }
        }
        if part == .history {
            if let index = columns.index(of: validFrom) {
                shape.hasValidFrom = true
                let type = columns.columns[index].type
                if type != .timestamp && type != .timestamptz {
                    check.findings.append(
                        MappingFinding(
                            .error, .columnType, entity: entity, part: part, column: validFrom,
                            "is \(try typeName(type)); "
                                + "valid_from must be a timestamp (timestamptz, or timestamp read as UTC)"
                        ))
                }
            } else {
                check.findings.append(
                    MappingFinding(
                        .error, .columnMissing, entity: entity, part: part, column: validFrom,
                        "missing: a history query returns, beside the canonical columns, valid_from: "
                            + "when each past version became valid"))
            }
        }
        if part == .history, let index = columns.index(of: validTo) {
            let type = columns.columns[index].type
            if type != .timestamp && type != .timestamptz {
                check.findings.append(
                    MappingFinding(
                        .error, .columnType, entity: entity, part: part, column: validTo,
                        "is \(try typeName(type)); valid_to must be a timestamp (timestamptz, or timestamp read as UTC)"
                    ))
            }
        }
        var attributes = [String]()
        for column in columns.columns
        where entity.column(column.name) == nil && !(part == .history && RowConverter.isVersionColumn(column.name))
            && !attributes.contains(column.name)
        {
            attributes.append(column.name)
        }
        shape.attributes = attributes
        if part == .query {
            for event in dating where !event.proof.isEmpty && !event.proof.contains(where: { columns.index(of: $0) != nil }) {
                let fallback = event.inferred.filter { columns.index(of: $0) != nil }
                let at = fallback.isEmpty ? "the time of the step before it" : fallback.joined(separator: ", else ")
                check.findings.append(
                    MappingFinding(
                        .note, .datedByInference, entity: entity, part: part, column: event.proof[0],
                        "\(event.type.rawValue) will be dated at \(at), inferred: return "
                            + event.proof.map { "`\($0)`" }.joined(separator: " or ") + " if legacy records that moment"))
            }
        }
        return shape
    }

    // MARK: - Keys

    mutating func countAndCheckKeys(_ query: String, entity: Entity, _ check: inout EntityCheck) throws {
        let key = "q." + quoteIdentifier(entity.keyColumn)
        let wrapped = Self.subquery(query, "q")
        switch try attempt("SELECT count(*), count(*) FILTER (WHERE \(key) IS NULL) FROM \(wrapped)") {
        case .failure(let error):
            // LIMIT 0 ran, but reading the rows fails (a division by zero, a write in a read-only
            // transaction, a cast that fails on some value).
            check.findings.append(
                MappingFinding(
                    .error, .queryFailed, entity: entity, part: .query, column: nil,
                    "the query fails when it reads rows: " + Self.explain(error, query: query)))
            return
        case .success(let result):
            let row = result.rows[0]
            check.rowCount = try row.decode(at: 0, as: Int64.self)
            let nulls = try row.decode(at: 1, as: Int64.self)
            if nulls > 0 {
                check.findings.append(
                    MappingFinding(
                        .warning, .keyNull, entity: entity, part: .query, column: entity.keyColumn,
                        "\(nulls) row\(nulls == 1 ? " has" : "s have") a NULL \(entity.keyColumn); "
                            + "\(nulls == 1 ? "it" : "they") will be quarantined (key_missing)"))
            }
        }
        let duplicates = """
            SELECT k, n, count(*) OVER () FROM (
                SELECT \(key)::text AS k, count(*) AS n FROM \(wrapped)
                WHERE \(key) IS NOT NULL GROUP BY 1 HAVING count(*) > 1
            ) d ORDER BY n DESC, k LIMIT 5
            """
        switch try attempt(duplicates) {
        case .success(let result) where !result.rows.isEmpty:
            let total = try result.rows[0].decode(at: 2, as: Int64.self)
            let examples = try result.rows.map {
                "\(try $0.decode(at: 0, as: String.self)) (\(try $0.decode(at: 1, as: Int64.self)) rows)"
            }
            check.findings.append(
                MappingFinding(
                    .error, .keyNotUnique, entity: entity, part: .query, column: entity.keyColumn,
                    "not unique: \(total) key\(total == 1 ? " appears" : "s appear") on several rows, e.g. "
                        + examples.joined(separator: ", ")
                        + ". Each \(entity) must be one row: a join to a one-to-many table repeats rows"))
        case .success:
            break
        case .failure(let error):
            check.findings.append(
                MappingFinding(
                    .error, .queryFailed, entity: entity, part: .query, column: entity.keyColumn,
                    "cannot check that the key is unique: " + Self.firstLine(error.message)))
        }
    }

    mutating func checkHistory(_ history: String, current: String, entity: Entity, _ check: inout EntityCheck) throws {
        let key = quoteIdentifier(entity.keyColumn)
        let validFrom = quoteIdentifier(RowConverter.validFromColumn)
        let wrapped = Self.subquery(history, "h")
        switch try attempt("SELECT count(*) FROM \(wrapped)") {
        case .failure(let error):
            check.findings.append(
                MappingFinding(
                    .error, .queryFailed, entity: entity, part: .history, column: nil,
                    "the history query fails when it reads rows: " + Self.explain(error, query: history)))
            return
        case .success(let result):
            check.historyRowCount = try result.rows[0].decode(at: 0, as: Int64.self)
        }
        let duplicates = """
            SELECT k, v, n, count(*) OVER () FROM (
                SELECT h.\(key)::text AS k, h.\(validFrom)::text AS v, count(*) AS n FROM \(wrapped)
                GROUP BY 1, 2 HAVING count(*) > 1
            ) d ORDER BY n DESC, k, v LIMIT 5
            """
        switch try attempt(duplicates) {
        case .success(let result) where !result.rows.isEmpty:
            let total = try result.rows[0].decode(at: 3, as: Int64.self)
            let examples = try result.rows.map { row in
                let k = try row.decode(at: 0, as: String?.self) ?? "NULL"
                let v = try row.decode(at: 1, as: String?.self) ?? "NULL"
                return "\(k) at \(v) (\(try row.decode(at: 2, as: Int64.self)) rows)"
            }
            check.findings.append(
                MappingFinding(
                    .error, .historyVersionNotUnique, entity: entity, part: .history,
                    column: RowConverter.validFromColumn,
                    "\(total) version\(total == 1 ? " is" : "s are") not unique "
                        + "by (\(entity.keyColumn), valid_from), e.g. "
                        + examples.joined(separator: ", ")
                        + ". Two versions of one \(entity) cannot start at the same time"))
        case .success:
            break
        case .failure(let error):
            check.findings.append(
                MappingFinding(
                    .error, .queryFailed, entity: entity, part: .history, column: RowConverter.validFromColumn,
                    "cannot check that versions are unique: " + Self.firstLine(error.message)))
        }
        // Keys, not just a count: a history without its current row is usually a hard delete
        // (a draft removed by the app), and the user has to find those rows to decide.
        let orphans = """
            SELECT k, n, count(*) OVER (), sum(n) OVER ()::int8 FROM (
                SELECT h.\(key)::text AS k, count(*) AS n FROM \(wrapped)
                WHERE NOT EXISTS (SELECT 1 FROM \(Self.subquery(current, "q")) WHERE q.\(key)::text = h.\(key)::text)
                GROUP BY 1
            ) o ORDER BY k LIMIT \(Self.orphanKeyLimit)
            """
        if case .success(let result) = try attempt(orphans), let first = result.rows.first {
            let keys = try first.decode(at: 2, as: Int64.self)
            let rows = try first.decode(at: 3, as: Int64.self)
            let listed = try result.rows.map { row in
                let k = try row.decode(at: 0, as: String?.self) ?? "NULL"
                let n = try row.decode(at: 1, as: Int64.self)
                return n == 1 ? k : "\(k) (\(n) rows)"
            }
            let more = keys > Int64(listed.count) ? " and \(keys - Int64(listed.count)) more" : ""
            let whose = keys == 1 ? "1 \(entity.keyColumn)" : "\(keys) \(entity.keyColumn)s"
            check.findings.append(
                MappingFinding(
                    .warning, .historyWithoutCurrentRow, entity: entity, part: .history, column: entity.keyColumn,
                    "\(rows) history row\(rows == 1 ? "" : "s") of \(whose) with no current \(entity) "
                        + "(deleted from legacy?): \(listed.joined(separator: ", "))\(more); "
                        + "\(rows == 1 ? "it is" : "they are") migrated as a history ending in \(entity)'s deletion"))
        }
    }

    // MARK: - Statements

    /// Runs `sql` under a savepoint: a server error is returned (and rolled back to the
    /// savepoint) so the check goes on; a lost connection is thrown.
    func attempt(
        _ sql: String, _ parameters: [(any PostgresEncodable)?] = []
    ) throws -> Result<QueryResult, PostgresError> {
        try session.execute("SAVEPOINT ledgerlift_mapping_check")
        do {
            let result = try session.query(sql, parameters)
            try session.execute("RELEASE SAVEPOINT ledgerlift_mapping_check")
            return .success(result)
        } catch let error as PostgresError where !error.isConnectionLost && error.code != .misuse {
            try session.execute("ROLLBACK TO SAVEPOINT ledgerlift_mapping_check")
            return .failure(error)
        }
    }

    /// A type's name: built-in ones from ``PostgresType``, others (domains, enums, extension
    /// types) from the server's catalog.
    mutating func typeName(_ type: PostgresType) throws -> String {
        let known = type.description
        guard known.hasPrefix("oid ") else { return known }
        if let name = typeNames[type.oid] { return name }
        var name = known
        if case .success(let result) = try attempt("SELECT format_type($1::int8::oid, NULL)", [Int64(type.oid)]),
            let text = try result.rows.first?.decode(at: 0, as: String?.self)
        {
            name = text
        }
        typeNames[type.oid] = name
        return name
    }

    // MARK: - Words

    static func describe(_ column: ColumnDefinition) -> String {
        switch column.type {
        case .text: "text"
        case .integer: "integer"
        case .boolean: "boolean"
        case .amount: "amount"
        case .decimal: "exact decimal"
        case .timestamp: "timestamp"
        case .date: "date"
        case .currency: "ISO 4217 code as text"
        case .status(let vocabulary): "text, one of \(vocabulary.joined(separator: ", "))"
        }
    }

    static let textTypes: Set<PostgresType> = [.text, .varchar, .bpchar]
    static let integerTypes: Set<PostgresType> = [.int2, .int4, .int8]

    /// Why a column of PostgreSQL type `type` cannot hold `column`, or `nil` when it can.
    static func typeProblem(_ type: PostgresType, for column: ColumnDefinition, amounts: MappingFile.AmountUnit)
        -> String?
    {
        switch column.type {
        case .text, .status, .currency:
            guard !textTypes.contains(type) else { return nil }
            let what =
                column.type == .currency ? "an ISO 4217 code" : column.type == .text ? "text" : "a vocabulary value"
            var message = "\(column.name) must be \(what) of type text, varchar or char: cast it with ::text"
            if case .status = column.type, integerTypes.contains(type) {
                message += ", or translate codes with CASE … WHEN 0 THEN 'draft' … END"
            }
            return message
        case .amount:
            switch amounts {
            case .major:
                if type == .numeric || integerTypes.contains(type) { return nil }
                if type == .float4 || type == .float8 {
                    return "money in floating point is not exact: amounts must be numeric or integer "
                        + "(a ::numeric cast keeps the value as stored, and inexact amounts are then quarantined)"
                }
                return "amounts must be numeric or an integer type (int2, int4, int8)"
            case .minor:
                if integerTypes.contains(type) { return nil }
                return "amounts: minor needs an integer column (int2, int4, int8) holding minor units; "
                    + "for decimals of the major unit (12.30) set amounts: major on this entity"
            }
        case .decimal:
            if type == .numeric || integerTypes.contains(type) { return nil }
            return "\(column.name) must be numeric or an integer type (kept as an exact decimal)"
        case .integer:
            if integerTypes.contains(type) { return nil }
            return "\(column.name) must be an integer type (int2, int4, int8)"
        case .boolean:
            if type == .bool { return nil }
            return "\(column.name) must be boolean"
                + (integerTypes.contains(type) || textTypes.contains(type)
                    ? ": turn it into one in SQL, e.g. (x = 1)" : "")
        case .timestamp:
            if type == .timestamptz || type == .timestamp { return nil }
            return "\(column.name) must be timestamptz, or timestamp (read as UTC)"
                + (type == .date ? ": cast the date with ::timestamp (midnight UTC)" : "")
        case .date:
            if type == .date { return nil }
            return "\(column.name) must be a date"
                + (type == .timestamp || type == .timestamptz ? ": cast it with ::date" : "")
        }
    }

    /// PostgreSQL's message, where in the query it points, its detail and hint.
    static func explain(_ error: PostgresError, query: String) -> String {
        var text = firstLine(error.message)
        if let sqlState = error.sqlState { text += " (SQLSTATE \(sqlState))" }
        // The position counts characters of the statement sent; find the query inside it.
        if let position = error.position, let sql = error.query, let range = sql.firstRange(of: query) {
            let offset = position - 1 - sql.distance(from: sql.startIndex, to: range.lowerBound)
            if offset >= 0, offset <= query.count {
                let before = query.prefix(offset)
                let line = before.reduce(1) { $1 == "\n" ? $0 + 1 : $0 }
                let column =
                    before.count
                    - (before.lastIndex(of: "\n").map { before.distance(from: before.startIndex, to: $0) + 1 } ?? 0) + 1
                text += " at line \(line), column \(column) of the query"
            }
        }
        if let detail = error.detail, !detail.isEmpty { text += "\ndetail: " + detail }
        if let hint = error.hint, !hint.isEmpty { text += "\nhint: " + hint }
        return text
    }

    static func firstLine(_ text: String) -> String {
        text.split(separator: "\n").first.map(String.init) ?? text
    }
}

// MARK: - Currency exponents

extension CheckRun {
    /// How many non-zero amounts of a currency an entity needs before their digits say anything.
    static let powerOfTenMinimumAmounts = 10

    /// `currency_exponents` declared where it changes nothing, and amounts whose digits suggest
    /// the legacy system wrote a currency with more decimal places than the mapping assumes.
    ///
    /// The heuristic (docs/mapping.md, "Currencies written with another exponent"): under
    /// `amounts: minor`, for each currency with fewer than 2 decimal places in ISO 4217 (JPY,
    /// KRW, ISK, CLP, …) that the mapping does not declare, if at least
    /// ``powerOfTenMinimumAmounts`` non-zero amounts of the entity are in it and every one is a
    /// multiple of 100, it warns: a library that writes every currency in hundredths writes
    /// ¥1,500 as 150000, which would migrate as 150000 JPY. Amounts kept in the currency's own
    /// unit end in any digits, so 10 multiples of 100 in a row are rare unless every price is
    /// round; declaring the currency (`{JPY: 2}`, or `{JPY: 0}` to confirm ISO's) answers and
    /// silences it. The converse (whole units where ISO 4217 has cents, HUF written in forints)
    /// cannot be seen in the digits: such amounts end in any digits too. One aggregate query per
    /// entity with amounts under `minor`.
    mutating func checkCurrencyExponents(_ checks: inout [EntityCheck]) throws {
        let withAmounts = mapping.entities.filter { Self.hasAmounts($0.entity) }
        for (index, entityMapping) in mapping.entities.enumerated() where !entityMapping.currencyExponents.isEmpty {
            let entity = entityMapping.entity
            let declared = Self.declaration(entityMapping.currencyExponents)
            if !Self.hasAmounts(entity) {
                checks[index].findings.append(
                    MappingFinding(
                        .warning, .currencyExponentsIgnored, entity: entity, part: .query, column: "currency_exponents",
                        "\(entity) has no amounts: currency_exponents \(declared) changes nothing here; remove it"))
            } else if mapping.amounts(for: entity) == .major {
                checks[index].findings.append(
                    MappingFinding(
                        .warning, .currencyExponentsIgnored, entity: entity, part: .query, column: "currency_exponents",
                        "currency_exponents \(declared) changes nothing under amounts: major (a decimal of the major "
                            + "unit is the same whatever exponent the legacy system used): remove it, or set "
                            + "amounts: minor if these amounts are integers"))
            }
        }
        if !mapping.currencyExponents.isEmpty, !withAmounts.contains(where: { mapping.amounts(for: $0.entity) == .minor }),
            let first = withAmounts.first ?? mapping.entities.first,
            let index = checks.firstIndex(where: { $0.entity == first.entity })
        {
            checks[index].findings.append(
                MappingFinding(
                    .warning, .currencyExponentsIgnored, entity: first.entity, part: .query,
                    column: "currency_exponents",
                    "currency_exponents \(Self.declaration(mapping.currencyExponents)) at the top of the file "
                        + "applies to no entity: only amounts: minor reads it, and every entity with amounts is "
                        + "amounts: major; remove it, or set amounts: minor where amounts are integers"))
        }

        for (index, entityMapping) in mapping.entities.enumerated() {
            let entity = entityMapping.entity
            // Only the query's own shape matters here (a rule that fails elsewhere does not).
            guard mapping.amounts(for: entity) == .minor, checks[index].queryRuns,
                !checks[index].errors.contains(where: { $0.part == .query }),
                let finding = try powerOfTenFinding(entityMapping, returned: Set(checks[index].columnsReturned))
            else { continue }
            checks[index].findings.append(contentsOf: finding)
        }
    }

    static func hasAmounts(_ entity: Entity) -> Bool {
        entity.columns.contains { $0.type == .amount || $0.isUnitPrice }
    }

    /// `{HUF: 0, ISK: 2}`
    static func declaration(_ exponents: [Currency: Int]) -> String {
        "{" + exponents.sorted { $0.key < $1.key }.map { "\($0.key.code): \($0.value)" }.joined(separator: ", ") + "}"
    }

    /// The warnings of ``checkCurrencyExponents(_:)``'s heuristic for one entity under
    /// `amounts: minor`; `nil` when it has nothing to look at.
    mutating func powerOfTenFinding(
        _ entityMapping: MappingFile.EntityMapping, returned: Set<String>
    ) throws -> [MappingFinding]? {
        let entity = entityMapping.entity
        let declared = mapping.currencyExponents(for: entity)
        // Currencies with fewer than 2 decimal places the mapping says nothing about.
        let candidates = Currency.all.filter { $0.minorUnitExponent < 2 && declared[$0] == nil }
        let defaultCurrency = mapping.defaultCurrency(for: entity)
        func currency(of column: String) -> String? {
            let own = returned.contains(column) ? "q.\(quoteIdentifier(column))::text" : nil
            let fallback = column == "currency" ? defaultCurrency.map { quoteLiteral($0.code) } : nil
            switch (own, fallback) {
            case (let own?, let fallback?): return "coalesce(\(own), \(fallback))"
            case (let own?, nil): return own
            case (nil, let fallback?): return fallback + "::text"
            case (nil, nil): return nil
            }
        }
        // Amounts only: a unit price may be a fraction of a minor unit (0.0125 USD), which says
        // nothing about the exponent.
        let pairs = entity.columns.filter { $0.type == .amount && returned.contains($0.name) }.compactMap { column in
            currency(of: column.currencyColumn ?? "currency").map { "(q.\(quoteIdentifier(column.name))::numeric, \($0))" }
        }
        guard !candidates.isEmpty, !pairs.isEmpty else { return nil }
        let sql = """
            SELECT x.c, count(*), count(*) FILTER (WHERE x.a % 10 <> 0), count(*) FILTER (WHERE x.a % 100 <> 0),
                   min(abs(x.a))::text, max(abs(x.a))::text
            FROM \(Self.subquery(entityMapping.query, "q"))
            CROSS JOIN LATERAL (VALUES \(pairs.joined(separator: ", "))) AS x (a, c)
            WHERE x.a <> 0 AND x.c = ANY($1::text[])
            GROUP BY 1 ORDER BY 1
            """
        // A query that fails here fails for the backfill too, and the key count above (which
        // reads every row) has said so already: this advisory look adds nothing.
        guard case .success(let result) = try attempt(sql, [PostgresArray(candidates.map(\.code))]) else { return nil }
        var findings = [MappingFinding]()
        for row in result.rows {
            guard let currency = try? Currency(code: try row.decode(at: 0, as: String.self)) else { continue }
            let count = try row.decode(at: 1, as: Int64.self)
            // The digits a hundredths-writing library adds: 2 for a currency without minor unit.
            let added = 2 - currency.minorUnitExponent
            let notMultiples = try row.decode(at: added == 1 ? 2 : 3, as: Int64.self)
            guard count >= Int64(Self.powerOfTenMinimumAmounts), notMultiples == 0,
                let smallest = Int64(try row.decode(at: 4, as: String.self)),
                let largest = Int64(try row.decode(at: 5, as: String.self))
            else { continue }
            let factor: Int64 = added == 1 ? 10 : 100
            func read(_ minor: Int64) -> String { Money(minorUnits: minor, currency: currency).description }
            let code = currency.code
            let places = currency.minorUnitExponent
            findings.append(
                MappingFinding(
                    .warning, .amountsOffByPowerOfTen, entity: entity, part: .query,
                    column: "currency_exponents.\(code)",
                    "all \(count) non-zero \(code) amounts are multiples of \(factor) (\(smallest) to \(largest)), "
                        + "read as \(read(smallest)) to \(read(largest)) (ISO 4217 gives \(code) \(places) "
                        + "decimal place\(places == 1 ? "" : "s")). If the legacy system writes \(code) in hundredths, "
                        + "as libraries that write every currency in cents do, they are \(factor) times too large: "
                        + "declare currency_exponents: {\(code): 2} (\(read(smallest / factor)) to \(read(largest / factor))). "
                        + "If they are right, declare {\(code): \(places)} to say so"))
        }
        return findings
    }
}
