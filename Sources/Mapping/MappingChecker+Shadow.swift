import Billing
import Postgres

// What shadow mode needs from a mapping: SQL sources that run over the captured columns, a
// by-key read that returns what the query returns and costs index lookups, and sources that
// cover every table the entity's SQL reads.

extension CheckRun {
    /// A source's table and columns exist; an SQL source's `keys` runs over an empty `changed`
    /// and over one sample row image holding exactly the columns capture records for it (the
    /// primary key and `columns`), so SQL that reads a column capture does not record fails
    /// here rather than seeing NULL in shadow mode.
    mutating func checkSource(
        _ source: MappingFile.Source, index: Int, entity: Entity, _ check: inout EntityCheck
    ) throws {
        let column = "sources[\(index)]"
        func report(_ message: String, _ code: MappingFinding.Code = .sourceInvalid) {
            check.findings.append(
                MappingFinding(.error, code, entity: entity, part: .sources, column: column, message))
        }
        let needed = source.neededColumns
        let list = needed.isEmpty ? "1" : needed.map(quoteIdentifier).joined(separator: ", ")
        if case .failure(let error) = try attempt("SELECT \(list) FROM \(source.sqlTable) LIMIT 0") {
            let what = source.key.map { "key \($0)" } ?? "columns \(source.columns.joined(separator: ", "))"
            report("\(source.table) (\(what)): \(Self.firstLine(error.message))")
            return
        }
        guard let keys = source.keys else { return }
        let primaryKey = try attempt(
            """
            SELECT a.attname::text FROM pg_index i
            CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY k.ord
            """, [source.sqlTable]
        ).get().rows.map { try $0.decode(at: 0, as: String.self) }
        let recorded = source.recordedColumns(primaryKey: primaryKey)
        let sql = source.touchedKeysSQL(recordedColumns: recorded)
        let recordedText = recorded.isEmpty ? "none" : recorded.joined(separator: ", ")
        func explainFailure(_ error: PostgresError, _ over: String) -> String {
            var message = "keys fails over \(over): " + Self.explain(error, query: keys)
            if error.sqlState == "42703" {
                message +=
                    "\ncapture records only the primary key and columns of \(source.table) (\(recordedText)): "
                    + "add the columns keys reads from changed to columns"
            }
            if primaryKey.isEmpty, source.columns.isEmpty {
                message += "\n\(source.table) has no primary key: list the columns keys reads in columns"
            }
            return message
        }
        switch try attempt(sql, ["[]"]) {
        case .failure(let error):
            report(explainFailure(error, "no changed rows"), .sourceKeysFailed)
            return
        case .success:
            break
        }
        // One real row of the table, as capture would record it.
        let image =
            "SELECT jsonb_build_object("
            + recorded.map { "\(quoteLiteral($0)), t.\(quoteIdentifier($0))" }.joined(separator: ", ")
            + ")::text FROM \(source.sqlTable) t LIMIT 1"
        guard !recorded.isEmpty, case .success(let sample) = try attempt(image),
            let row = try sample.rows.first?.decode(at: 0, as: String.self)
        else { return }
        if case .failure(let error) = try attempt(sql, ["[" + row + "]"]) {
            report(explainFailure(error, "a changed row (\(row))"), .sourceKeysFailed)
        }
    }

    /// `by_key` returns the query's columns, with the same types, and for a sample of keys the
    /// same rows; and reading one key (through `by_key`, or through the query filtered on its
    /// key when there is none) scans no large table.
    mutating func checkByKey(_ entityMapping: MappingFile.EntityMapping, _ check: inout EntityCheck) throws {
        let entity = entityMapping.entity
        let key = quoteIdentifier(entity.keyColumn)
        guard
            case .success(let sampled) = try attempt(
                """
                SELECT k FROM (SELECT DISTINCT q.\(key)::text AS k FROM \(Self.subquery(entityMapping.query, "q"))
                               WHERE q.\(key) IS NOT NULL) s
                ORDER BY md5(k), k LIMIT \(MappingChecker.byKeySampleSize)
                """)
        else { return }
        let keys = try sampled.rows.map { try $0.decode(at: 0, as: String.self) }

        if let byKey = entityMapping.byKey {
            func finding(_ message: String) {
                check.findings.append(
                    MappingFinding(.error, .byKeyMismatch, entity: entity, part: .byKey, column: nil, message))
            }
            let describe = "SELECT * FROM \(Self.subquery(byKey, "q")) LIMIT 0"
            let query = "SELECT * FROM \(Self.subquery(entityMapping.query, "q")) LIMIT 0"
            switch (try attempt(describe, [PostgresArray([])]), try attempt(query)) {
            case (.failure(let error), _):
                finding("by_key fails: " + Self.explain(error, query: byKey))
                return
            case (.success(let own), .success(let theirs)):
                var ownTypes = [String: String]()
                for column in own.columns.columns { ownTypes[column.name] = try typeName(column.type) }
                var queryTypes = [String: String]()
                for column in theirs.columns.columns { queryTypes[column.name] = try typeName(column.type) }
                var problems = [String]()
                let missing = theirs.columns.columns.map(\.name).filter { ownTypes[$0] == nil }
                let extra = own.columns.columns.map(\.name).filter { queryTypes[$0] == nil }
                if !missing.isEmpty { problems.append("does not return \(missing.joined(separator: ", "))") }
                if !extra.isEmpty { problems.append("returns \(extra.joined(separator: ", ")), which the query does not") }
                for column in theirs.columns.columns {
                    if let own = ownTypes[column.name], let their = queryTypes[column.name], own != their {
                        problems.append("returns \(column.name) as \(own), the query as \(their)")
                    }
                }
                if !problems.isEmpty {
                    finding(
                        "by_key must return the query's columns with the same types: it "
                            + problems.joined(separator: "; "))
                    return
                }
            case (.success, .failure):
                return
            }
            guard !keys.isEmpty else { return }
            // Each row as its canonical text: jsonb orders the keys and keeps every digit.
            func rows(_ sql: String) throws -> Result<[String: [String]], PostgresError> {
                let statement =
                    "SELECT q.\(key)::text, to_jsonb(q)::text FROM \(Self.subquery(sql, "q")) ORDER BY 2"
                switch try attempt(statement, [PostgresArray(keys)]) {
                case .failure(let error): return .failure(error)
                case .success(let result):
                    var byKey = [String: [String]]()
                    for row in result.rows {
                        byKey[try row.decode(at: 0, as: String?.self) ?? "NULL", default: []]
                            .append(try row.decode(at: 1, as: String.self))
                    }
                    return .success(byKey)
                }
            }
            let expected = try rows(MappingFile.EntityMapping(entity: entity, query: entityMapping.query).byKeySQL)
            let actual = try rows(byKey)
            switch (expected, actual) {
            case (_, .failure(let error)):
                finding("by_key fails when it reads rows: " + Self.explain(error, query: byKey))
            case (.success(let expected), .success(let actual)):
                let differing = Set(expected.keys).union(actual.keys).filter { expected[$0] != actual[$0] }
                    .sorted()
                guard let first = differing.first else { break }
                func shown(_ rows: [String]?) -> String {
                    guard let rows, !rows.isEmpty else { return "no row" }
                    let text = rows.joined(separator: ", ")
                    return text.count <= 300 ? text : text.prefix(300) + "…"
                }
                finding(
                    "by_key returns other rows than the query for \(differing.count) of the \(keys.count) keys "
                        + "sampled, e.g. \(entity.keyColumn) \(first): the query gives \(shown(expected[first])), "
                        + "by_key gives \(shown(actual[first])). by_key must return exactly the query's rows for the "
                        + "keys in $1")
            case (.failure, _):
                break
            }
        }

        // The plan of reading one key.
        guard let one = keys.first else { return }
        let explain = "EXPLAIN (VERBOSE) " + entityMapping.byKeySQL
        guard case .success(let plan) = try attempt(explain, [PostgresArray([one])]) else { return }
        let lines = try plan.rows.map { try $0.decode(at: 0, as: String.self) }
        var scans = [String]()
        for line in lines {
            guard let range = line.firstRange(of: "Seq Scan on ") else { continue }
            let relation = String(line[range.upperBound...].prefix { $0 != " " })
            // The planner's estimate; a table never analyzed has none (-1): then count, at most
            // up to the threshold.
            guard
                case .success(let size) = try attempt(
                    """
                    SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint
                                ELSE (SELECT count(*) FROM (SELECT 1 FROM \(relation) LIMIT $2) x) END,
                           c.reltuples < 0
                    FROM pg_class c WHERE c.oid = to_regclass($1)
                    """, [relation, Int64(scanWarningRows)]),
                let row = size.rows.first, let rows = try row.decode(at: 0, as: Int64?.self),
                rows >= Int64(scanWarningRows)
            else { continue }
            let counted = try row.decode(at: 1, as: Bool.self)
            let text = "\(relation) (\(counted ? "at least" : "about") \(rows) rows)"
            if !scans.contains(text) { scans.append(text) }
        }
        guard !scans.isEmpty else { return }
        let what = entityMapping.byKey != nil ? "by_key" : "the query filtered on \(entity.keyColumn) (no by_key)"
        let scanned = scans.joined(separator: ", ")
        let fix =
            entityMapping.byKey != nil
            ? "put the key predicate on the indexed column in by_key, or index the column it filters on"
            : "write by_key: the query with the key predicate on the indexed column, e.g. "
                + "`WHERE c.id = ANY($1::bigint[])`, so one key costs an index lookup"
        check.findings.append(
            MappingFinding(
                .warning, .byKeyScans, entity: entity, part: .byKey, column: nil,
                "reading one \(entity) through \(what) scans \(scanned): shadow mode would read the whole table for "
                    + "every change. Fix: \(fix). Plan of one key:\n"
                    + lines.joined(separator: "\n")))
    }
}

extension MappingChecker {
    /// Coverage (``MappingCoverage``) as findings. A mapping with `sources` is meant for shadow
    /// mode: a table read and not in sources is an error on its entity, and so is an entity with
    /// no sources at all. A mapping without any `sources` is for backfill and diff only: one
    /// note says shadow mode cannot follow it. Entities whose query does not run are skipped
    /// (their errors say so already).
    func coverageFindings(_ session: Session, _ entities: inout [EntityCheck]) throws {
        let forShadow = mapping.entities.contains { !$0.sources.isEmpty }
        let analyzed = mapping.entities.filter { $0.file == nil }
        guard !analyzed.isEmpty else { return }
        guard forShadow else {
            if let index = entities.firstIndex(where: { $0.entity == analyzed[0].entity }) {
                entities[index].findings.append(
                    MappingFinding(
                        .note, .noSources, entity: analyzed[0].entity, part: .sources, column: nil,
                        "the mapping names no sources: backfill and diff need none, but shadow mode cannot follow "
                            + "it (shadow install refuses it); see docs/mapping.md, sources"))
            }
            return
        }
        let coverage: MappingCoverage
        do {
            coverage = try MappingCoverage.analyze(mapping, in: session)
        } catch let error as PostgresError where !error.isConnectionLost {
            if let index = entities.indices.first {
                entities[index].findings.append(
                    MappingFinding(
                        .warning, .coverageUnchecked, entity: entities[index].entity, part: .sources, column: nil,
                        "cannot find which tables the queries read (it creates temporary functions in a transaction "
                            + "it rolls back): \(CheckRun.firstLine(error.message)); shadow install will refuse "
                            + "until it can"))
            }
            return
        }
        for entityCoverage in coverage.entities {
            guard let index = entities.firstIndex(where: { $0.entity == entityCoverage.entity }),
                entities[index].queryRuns
            else { continue }
            let entity = entityCoverage.entity
            for gap in entityCoverage.gaps {
                let reader = gap.readBy.joined(separator: ", ")
                let through = gap.throughViews.isEmpty ? "" : " (through \(gap.throughViews.joined(separator: ", ")))"
                entities[index].findings.append(
                    MappingFinding(
                        .error, .sourceMissing, entity: entity, part: .sources, column: nil,
                        "\(entity)'s \(reader) read\(gap.readBy.count == 1 ? "s" : "") \(gap.table)\(through), which "
                            + "is not in its sources: shadow mode would miss its changes. Add to \(entity).sources:\n"
                            + gap.suggestion))
            }
            for relation in entityCoverage.unfollowable {
                entities[index].findings.append(
                    MappingFinding(
                        .error, .sourceUnfollowable, entity: entity, part: .sources, column: nil,
                        "\(entity)'s \(relation.readBy.joined(separator: ", ")) read\(relation.readBy.count == 1 ? "s" : "") "
                            + "the \(relation.kind) \(relation.relation), whose changes no trigger can capture: "
                            + "shadow mode cannot follow it. Read the tables it is built from instead"))
            }
            // SQL that runs in the checks above but cannot be analyzed (no TEMP privilege, a
            // construct a function body refuses): coverage is unknown, and install will refuse.
            let explained = entities[index].errors.contains { $0.part != .sources && $0.part != .rules }
            if !explained, let first = entityCoverage.failures.first {
                let parts = entityCoverage.failures.map(\.part).joined(separator: ", ")
                entities[index].findings.append(
                    MappingFinding(
                        .warning, .coverageUnchecked, entity: entity, part: .sources, column: nil,
                        "cannot find which tables the \(parts) read\(entityCoverage.failures.count == 1 ? "s" : ""): "
                            + "\(first.message); shadow install will refuse the mapping until it can"))
            }
            if !entityCoverage.functions.isEmpty {
                entities[index].findings.append(
                    MappingFinding(
                        .warning, .sourceFunctionsUnfollowed, entity: entity, part: .sources, column: nil,
                        "\(entity)'s SQL calls \(entityCoverage.functions.joined(separator: ", ")): the tables a "
                            + "function reads are not visible in the catalog; make sure sources name them"))
            }
        }
        // An entity of a shadow mapping without sources: every table it reads is a gap, reported
        // above with its suggestion.
    }
}
