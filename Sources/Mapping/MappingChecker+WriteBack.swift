import Billing
import Postgres

// What reverse sync needs from a mapping: write_back statements that run.

extension MappingChecker {
    /// Thrown to roll the write-back check's transaction back whatever happened in it.
    private struct RollBack: Error {}

    /// `write_back` as findings, with ``validatesWriteBack`` only (`ledgerlift mapping check`;
    /// the backfill's own check and other callers neither run nor judge it). A mapping where
    /// some entities have `write_back` gets a note
    /// per mapped entity without one (reverse sync could not write it back: the cutover's write
    /// switch needs it); a mapping without any gets none (it never cuts over: backfill, shadow
    /// mode and diff need no write-back).
    ///
    /// Every statement runs, in one transaction that is always
    /// rolled back, with `SET LOCAL ledgerlift.origin = 'reverse_sync'` and `TimeZone` UTC as
    /// reverse sync runs it, each under a savepoint: the upserts, then the deletes, for a real
    /// row of the entity (the first of its query that converts) or, when the table has none, a
    /// plausibly-typed row (references name a real row of their entity when there is one). A
    /// statement that fails is an error naming the entity, the statement, the row and the
    /// SQLSTATE. A delete refused by a foreign key (23503) passes: the real row has children,
    /// which reverse sync deletes first. `setval` is not transactional: a plausible row's key
    /// (`1`) may mark an unused legacy sequence as used.
    func writeBackFindings(_ session: Session, _ entities: inout [EntityCheck]) throws {
        let with = mapping.entities.filter { $0.writeBack != nil }
        guard validatesWriteBack, !with.isEmpty else { return }
        for entityMapping in mapping.entities where entityMapping.writeBack == nil {
            guard let index = entities.firstIndex(where: { $0.entity == entityMapping.entity }) else { continue }
            entities[index].findings.append(
                MappingFinding(
                    .note, .writeBackMissing, entity: entityMapping.entity, part: .writeBack, column: nil,
                    "no write_back: reverse sync cannot write \(entityMapping.entity) rows back to legacy, so a cutover "
                        + "with this mapping cannot pass its write switch (docs/reverse-sync.md)"))
        }
        var findings = [Entity: [MappingFinding]]()
        do {
            try session.transaction { tx in
                try tx.execute("SET LOCAL ledgerlift.origin = 'reverse_sync'")
                try tx.execute("SET LOCAL TimeZone = 'UTC'")
                var run = CheckRun(session: tx, mapping: mapping, scanWarningRows: scanWarningRows)
                for entityMapping in with {
                    guard let writeBack = entityMapping.writeBack,
                        let check = entities.first(where: { $0.entity == entityMapping.entity }),
                        check.queryRuns, !check.errors.contains(where: { $0.part == .query })
                    else { continue }
                    findings[entityMapping.entity] = try run.checkWriteBack(entityMapping, writeBack)
                }
                throw RollBack()
            }
        } catch is RollBack {
        } catch let error as PostgresError where !error.isConnectionLost {
            if let first = with.first, let index = entities.firstIndex(where: { $0.entity == first.entity }) {
                entities[index].findings.append(
                    MappingFinding(
                        .warning, .writeBackUnchecked, entity: first.entity, part: .writeBack, column: nil,
                        "cannot run the write_back statements (in a transaction rolled back): "
                            + CheckRun.firstLine(error.message)
                            + (error.sqlState.map { " (SQLSTATE \($0))" } ?? "")
                            + "; run mapping check with the role reverse sync writes legacy as"))
            }
            return
        }
        for (entity, list) in findings {
            guard let index = entities.firstIndex(where: { $0.entity == entity }) else { continue }
            entities[index].findings += list
        }
    }
}

extension CheckRun {
    /// Runs `writeBack`'s statements for one row of the entity (see
    /// ``MappingChecker/writeBackFindings(_:_:)``), in the caller's transaction.
    mutating func checkWriteBack(_ entityMapping: MappingFile.EntityMapping, _ writeBack: WriteBack) throws
        -> [MappingFinding]
    {
        let entity = entityMapping.entity
        let (row, real) = try sampleRow(entityMapping) ?? (try plausibleRow(entity), false)
        let amounts = mapping.amounts(for: entity)
        let exponents = mapping.currencyExponents(for: entity)
        let which = real ? "\(entity) \(row.key) (a real row)" : "a plausible \(entity) row (the table has none)"
        var findings = [MappingFinding]()
        for (name, statement) in writeBack.statements {
            let sql = statement.sql { WriteBack.parameterType($0, entity: entity, amounts: amounts) }
            let values: [String?]
            do {
                values = try WriteBack.values(of: statement, row: row, amounts: amounts, currencyExponents: exponents)
            } catch {
                findings.append(
                    MappingFinding(
                        .error, .writeBackFailed, entity: entity, part: .writeBack, column: name,
                        "cannot bind \(which): \(error.reason)"))
                continue
            }
            switch try attempt(sql, values) {
            case .success: break
            case .failure(let error) where name.hasPrefix("delete") && error.sqlState == "23503": break
            case .failure(let error):
                findings.append(
                    MappingFinding(
                        .error, .writeBackFailed, entity: entity, part: .writeBack, column: name,
                        "fails for \(which): " + Self.explain(error, query: statement.text)
                            + (statement.line.map { "\n(the statement starts at line \($0) of the mapping file)" } ?? "")
                    ))
            }
        }
        return findings
    }

    /// The first row of the entity's query that converts, as canonical (`nil`: none).
    mutating func sampleRow(_ entityMapping: MappingFile.EntityMapping) throws -> (CanonicalRow, Bool)? {
        guard let converter = mapping.converter(for: entityMapping.entity),
            case .success(let result) = try attempt("SELECT * FROM \(Self.subquery(entityMapping.query, "q")) LIMIT 20")
        else { return nil }
        for row in result.rows {
            if let migrated = converter.convert(row).migrated { return (migrated.row, true) }
        }
        return nil
    }

    /// A row of plausible values for each canonical column: key `1`, references the key of a
    /// real row of their entity when there is one, text, the vocabulary's first value, USD (or
    /// the default currency), 0, 1, false, 2020-01-01.
    mutating func plausibleRow(_ entity: Entity) throws -> CanonicalRow {
        var values = [String: CanonicalValue]()
        let day = PostgresTimestamp("2020-01-01T00:00:00Z")!
        for column in entity.columns {
            if column.name == entity.keyColumn {
                values[column.name] = .text("1")
                continue
            }
            if column.name.hasSuffix("_id"), let referenced = Entity(rawValue: String(column.name.dropLast(3))),
                let mapped = mapping[referenced], let (row, _) = try sampleRow(mapped)
            {
                values[column.name] = .text(row.key)
                continue
            }
            switch column.type {
            case .text: values[column.name] = column.name.hasSuffix("_id") ? .text("1") : .text("ledgerlift check")
            case .status(let vocabulary): values[column.name] = vocabulary.first.map { .text($0) } ?? .null
            case .currency: values[column.name] = .text(mapping.defaultCurrency(for: entity)?.code ?? "USD")
            case .integer: values[column.name] = .integer(1)
            case .amount: values[column.name] = .amount(0)
            case .decimal: values[column.name] = .decimal("1")
            case .boolean: values[column.name] = .boolean(false)
            case .timestamp: values[column.name] = column.nullable ? .null : .timestamp(day)
            case .date:
                values[column.name] = column.nullable ? .null : .date(PostgresDate(year: 2020, month: 1, day: 1)!)
            }
        }
        return CanonicalRow(entity: entity, values: values)
    }
}
