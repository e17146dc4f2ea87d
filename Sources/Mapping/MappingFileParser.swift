import Billing
import TextFormats
import Foundation
import Yams

/// Reads mapping YAML into a ``MappingFile``, collecting every problem with its position.
///
/// The YAML is composed into Yams nodes and walked by hand (rather than decoded with
/// `Codable`) so each problem can name its entity, field and line, unknown keys (typos) are
/// reported instead of ignored, and several problems are reported at once.
struct MappingFileParser {
    let file: String
    private var issues = [MappingError.Issue]()

    init(file: String) { self.file = file }

    static let topLevelFields = [
        "version", "amounts", "default_currency", "currency_exponents", "receivables", "entities",
    ]
    static let entityFields = [
        "key", "query", "by_key", "file", "sources", "history", "amounts", "default_currency", "currency_exponents",
        "checks", "write_back",
    ]
    static let writeBackFields = ["upsert", "delete", "attributes"]
    static let receivableFields = ["refunds", "chargebacks"]
    static let checkFields = ["reason", "query"]
    static let sourceFields = ["table", "key", "columns", "keys"]
    static let historyFields = ["query"]

    mutating func parse(_ yaml: String) throws(MappingError) -> MappingFile {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw MappingError(file: file, issues: [Self.issue(for: error)])
        } catch {
            throw MappingError(file: file, issues: [.init(.invalidYAML, "not valid YAML: \(error)")])
        }
        guard let root, root.null == nil else {
            throw MappingError(
                file: file,
                issues: [
                    .init(
                        .missingField, "the file is empty: expected version, amounts and entities (see docs/mapping.md)"
                    )
                ])
        }
        guard let top = root.mapping else {
            throw MappingError(
                file: file,
                issues: [
                    .init(
                        .invalidValue, line: root.mark?.line, column: root.mark?.column,
                        "expected a mapping with version, amounts and entities at the top of the file")
                ])
        }

        var version: Int?
        var amounts: MappingFile.AmountUnit?
        var amountsInvalid = false
        var defaultCurrency: Currency?
        var currencyExponents = [Currency: Int]()
        var receivables = MappingFile.ReceivableRules.standard
        var entitiesNode: Node?
        for (keyNode, value) in top {
            guard let name = keyNode.scalar?.string else {
                report(.unknownField, at: keyNode, "keys must be plain names")
                continue
            }
            switch name {
            case "version": version = parseVersion(value)
            case "amounts":
                amounts = parseAmounts(value, entity: nil)
                amountsInvalid = amounts == nil
            case "default_currency": defaultCurrency = parseCurrency(value, entity: nil) ?? nil
            case "currency_exponents": currencyExponents = parseCurrencyExponents(value, entity: nil)
            case "receivables": receivables = parseReceivables(value)
            case "entities": entitiesNode = value
            default:
                reportUnknownField(
                    name, at: keyNode, entity: nil, allowed: Self.topLevelFields, context: "the top of the file")
            }
        }
        if version == nil, !top.keys.contains(where: { $0.scalar?.string == "version" }) {
            issues.insert(
                .init(
                    .unsupportedVersion, field: "version", line: 1, column: 1,
                    "missing: write `version: \(MappingFile.supportedVersion)` at the top of the file"),
                at: 0)
        }

        var entities = [MappingFile.EntityMapping]()
        if let entitiesNode {
            if entitiesNode.null != nil {
                report(.missingField, field: "entities", at: entitiesNode, "is empty: map at least one entity")
            } else if let mapping = entitiesNode.mapping {
                if mapping.count == 0 {
                    report(.missingField, field: "entities", at: entitiesNode, "is empty: map at least one entity")
                }
                for (keyNode, value) in mapping {
                    if let entity = parseEntity(keyNode, value) { entities.append(entity) }
                }
            } else {
                report(
                    .invalidValue, field: "entities", at: entitiesNode,
                    "expected a mapping from entity name to its query")
            }
        } else {
            issues.append(
                .init(
                    .missingField, field: "entities",
                    "missing: add `entities:` with one entry per canonical entity you map (\(Self.entityList))"))
        }

        // Entities that hold money need to know the unit.
        for mapping in entities where mapping.amounts == nil && amounts == nil && !amountsInvalid {
            let amountColumns = mapping.entity.columns.filter { $0.type == .amount }.map(\.name)
            guard !amountColumns.isEmpty else { continue }
            issues.append(
                .init(
                    .missingField, entity: mapping.entity.rawValue, field: "amounts",
                    line: positions[mapping.entity]?.line, column: positions[mapping.entity]?.column,
                    "\(mapping.entity) has amount columns (\(amountColumns.joined(separator: ", "))) "
                        + "but no `amounts` is set "
                        + "here or at the top of the file: write `amounts: major` (12.30) or `amounts: minor` (1230)"))
        }

        // Entities read from a file: their query needs the unit (an amount under `minor` is an
        // integer column), known only now that the whole file is read.
        for index in entities.indices {
            let entity = entities[index].entity
            guard let rows = rowsFiles[entity], !amountsInvalid else { continue }
            let unit = entities[index].amounts ?? amounts ?? .major
            switch rows.file.query(for: entity, amounts: unit) {
            case .success(let query): entities[index].query = MappingFile.normalizedQuery(query)
            case .failure(let problem):
                issues.append(
                    .init(
                        .invalidValue, entity: entity.rawValue, field: "file", line: rows.mark?.line,
                        column: rows.mark?.column, "values that do not fit their column:\n" + problem.message))
            }
        }

        guard issues.isEmpty, let version else { throw MappingError(file: file, issues: issues) }
        return MappingFile(
            version: version, amounts: amounts, defaultCurrency: defaultCurrency,
            currencyExponents: currencyExponents, receivables: receivables, entities: entities, file: file)
    }

    private var positions = [Entity: Mark]()
    /// The rows files of entities read from one (`file:`), with where the mapping names them.
    private var rowsFiles = [Entity: (file: EntityRowsFile, mark: Mark?)]()

    // MARK: - Fields

    private mutating func parseVersion(_ node: Node) -> Int? {
        guard let text = node.scalar?.string, let version = Int(text) else {
            report(
                .unsupportedVersion, field: "version", at: node,
                "expected a number: write `version: \(MappingFile.supportedVersion)`")
            return nil
        }
        guard version == MappingFile.supportedVersion else {
            report(
                .unsupportedVersion, field: "version", at: node,
                "version \(version) is not supported: this Ledgerlift reads version \(MappingFile.supportedVersion)")
            return nil
        }
        return version
    }

    private mutating func parseAmounts(_ node: Node, entity: String?) -> MappingFile.AmountUnit? {
        guard let text = node.scalar?.string, node.null == nil else {
            report(.invalidValue, entity: entity, field: "amounts", at: node, "expected major or minor")
            return nil
        }
        guard let unit = MappingFile.AmountUnit(rawValue: text) else {
            report(
                .invalidValue, entity: entity, field: "amounts", at: node,
                "expected major or minor, got \(Self.quoted(text)) "
                    + "(major: decimals such as 12.30; minor: integers such as 1230)")
            return nil
        }
        return unit
    }

    /// `nil` on error; `.some(nil)` for an explicit null.
    private mutating func parseCurrency(_ node: Node, entity: String?) -> Currency?? {
        if node.null != nil { return .some(nil) }
        guard let text = node.scalar?.string else {
            report(
                .invalidValue, entity: entity, field: "default_currency", at: node,
                "expected an ISO 4217 code such as USD")
            return nil
        }
        do {
            return .some(try Currency(code: text))
        } catch {
            report(.unknownCurrency, entity: entity, field: "default_currency", at: node, error.description)
            return nil
        }
    }

    private mutating func parseEntity(_ keyNode: Node, _ value: Node) -> MappingFile.EntityMapping? {
        guard let name = keyNode.scalar?.string else {
            report(.unknownEntity, at: keyNode, "entity names must be plain names (\(Self.entityList))")
            return nil
        }
        guard let entity = Entity(rawValue: name) else {
            var message = "unknown entity \(Self.quoted(name))"
            if let guess = Self.suggestion(for: name, among: Entity.allCases.map(\.rawValue)) {
                message += "; did you mean \(guess)?"
            }
            report(.unknownEntity, entity: name, at: keyNode, message + " Canonical entities: \(Self.entityList)")
            return nil
        }
        if let mark = keyNode.mark { positions[entity] = mark }
        guard let fields = value.mapping else {
            report(
                .invalidValue, entity: name, at: value.mark == nil ? keyNode : value,
                "expected a mapping with key, query and sources")
            return nil
        }
        let issuesBefore = issues.count
        var query: String?
        var rowsFile: EntityRowsFile?
        var fileNode: Node?
        var currencyExponents = [Currency: Int]()
        var sources = [MappingFile.Source]()
        var byKey: String?
        var history: String?
        var amounts: MappingFile.AmountUnit?
        var defaultCurrency = MappingFile.CurrencyDefault.inherited
        var checks = [SourceCheck]()
        var writeBack: WriteBack?
        for (fieldNode, fieldValue) in fields {
            guard let field = fieldNode.scalar?.string else {
                report(.unknownField, entity: name, at: fieldNode, "keys must be plain names")
                continue
            }
            switch field {
            case "key":
                let text = fieldValue.scalar?.string ?? ""
                if text != entity.keyColumn {
                    report(
                        .invalidValue, entity: name, field: "key", at: fieldValue,
                        "the key of \(entity) is \(entity.keyColumn) (the canonical key column), "
                            + "got \(Self.quoted(text)): "
                            + "return your legacy key as text, e.g. `id::text AS \(entity.keyColumn)`")
                }
            case "query":
                query = parseQuery(fieldValue, entity: name, field: "query")
            case "by_key":
                byKey = parseQuery(fieldValue, entity: name, field: "by_key")
            case "file":
                fileNode = fieldValue
                rowsFile = parseRowsFile(fieldValue, entity: name)
            case "currency_exponents":
                currencyExponents = parseCurrencyExponents(fieldValue, entity: name)
            case "sources":
                sources = parseSources(fieldValue, entity: name)
            case "history":
                history = parseHistory(fieldValue, entity: name)
            case "checks":
                checks = parseChecks(fieldValue, entity: name)
            case "write_back":
                writeBack = parseWriteBack(fieldValue, entity: entity)
            case "amounts":
                amounts = parseAmounts(fieldValue, entity: name)
            case "default_currency":
                switch parseCurrency(fieldValue, entity: name) {
                case .some(.some(let currency)): defaultCurrency = .currency(currency)
                case .some(.none): defaultCurrency = .none
                case .none: break
                }
            default:
                reportUnknownField(field, at: fieldNode, entity: name, allowed: Self.entityFields, context: "an entity")
            }
        }
        func has(_ field: String) -> Node? {
            fields.first { $0.key.scalar?.string == field }?.key
        }
        if let fileNode {
            // The rows come from the file: nothing in the legacy database changes them, and
            // they have no past versions.
            if let queryKey = has("query") {
                report(
                    .invalidValue, entity: name, field: "query", at: queryKey,
                    "write either query (SQL over the legacy database) or file (a YAML list of rows), not both")
            }
            if let historyKey = has("history") {
                report(
                    .invalidValue, entity: name, field: "history", at: historyKey,
                    "not supported with file: a file holds current rows only; "
                        + "map past versions with a query and history instead")
            }
            if let byKeyField = has("by_key") {
                report(
                    .invalidValue, entity: name, field: "by_key", at: byKeyField,
                    "not supported with file: the rows of a file are not read from the legacy database; remove by_key")
            }
            if let writeBackKey = has("write_back"), writeBack != nil {
                report(
                    .invalidValue, entity: name, field: "write_back", at: writeBackKey,
                    "not supported with file: the rows of a file are not legacy tables; remove write_back")
            }
            if let sourcesKey = has("sources"), !sources.isEmpty {
                report(
                    .invalidValue, entity: name, field: "sources", at: sourcesKey,
                    "an entity read from a file has no legacy tables (shadow mode has nothing to follow): "
                        + "remove sources, or map the entity with a query")
            }
            guard issues.count == issuesBefore, let rowsFile else { return nil }
            rowsFiles[entity] = (rowsFile, fileNode.mark)
            // The query is built once the file's `amounts` is known (parse(_:)).
            return MappingFile.EntityMapping(
                entity: entity, query: "", amounts: amounts, defaultCurrency: defaultCurrency, checks: checks,
                currencyExponents: currencyExponents, file: rowsFile.path)
        }
        if query == nil, has("query") == nil {
            report(
                .missingField, entity: name, field: "query", at: keyNode,
                "missing: write the SQL that returns \(entity)'s canonical columns (\(Self.columnList(entity))), "
                    + "or `file:` naming a YAML list of its rows")
        }
        guard issues.count == issuesBefore, let query else { return nil }
        return MappingFile.EntityMapping(
            entity: entity, query: query, sources: sources, historyQuery: history, amounts: amounts,
            defaultCurrency: defaultCurrency, checks: checks, currencyExponents: currencyExponents, byKey: byKey,
            writeBack: writeBack)
    }

    /// `write_back: { upsert: SQL | [SQL], delete: SQL | [SQL], attributes: [names] }`. Every
    /// `:name` must be a canonical column of the entity or a declared attribute; an unknown one
    /// is reported with its line (and the closest name).
    private mutating func parseWriteBack(_ node: Node, entity: Entity) -> WriteBack? {
        let name = entity.rawValue
        if node.null != nil { return nil }
        guard let pairs = node.mapping else {
            report(
                .invalidValue, entity: name, field: "write_back", at: node,
                "expected `upsert:` and `delete:` with the SQL that writes a canonical row back (docs/reverse-sync.md)")
            return nil
        }
        let before = issues.count
        var upsertNodes: [Node]?
        var deleteNodes: [Node]?
        var attributes = [String]()
        for (keyNode, value) in pairs {
            let field = keyNode.scalar?.string ?? ""
            switch field {
            case "upsert": upsertNodes = statementNodes(value, entity: name, field: "write_back.upsert")
            case "delete": deleteNodes = statementNodes(value, entity: name, field: "write_back.delete")
            case "attributes":
                attributes = parseColumns(value, entity: name, field: "write_back.attributes") ?? []
                for attribute in attributes where entity.column(attribute) != nil {
                    report(
                        .invalidValue, entity: name, field: "write_back.attributes", at: value,
                        "\(Self.quoted(attribute)) is a canonical column of \(entity), not an attribute: "
                            + "use :\(attribute) directly")
                }
            default:
                reportUnknownField(
                    field, at: keyNode, entity: name, allowed: Self.writeBackFields, context: "write_back",
                    prefix: "write_back.")
            }
        }
        for (field, nodes) in [("upsert", upsertNodes), ("delete", deleteNodes)] where nodes == nil {
            if !pairs.keys.contains(where: { $0.scalar?.string == field }) {
                report(
                    .missingField, entity: name, field: "write_back." + field, at: node,
                    "missing: write_back needs both upsert (the SQL writing the row the ledger holds) and delete "
                        + "(the SQL removing a row the ledger ended)")
            }
        }
        func statements(_ nodes: [Node]?, _ field: String) -> [WriteBack.Statement] {
            var result = [WriteBack.Statement]()
            for (index, item) in (nodes ?? []).enumerated() {
                let path = "write_back.\(field)" + ((nodes?.count ?? 0) > 1 ? "[\(index)]" : "")
                guard let text = item.scalar?.string else { continue }
                // A block scalar's text starts on the line after its indicator.
                let block = item.scalar?.style == .literal || item.scalar?.style == .folded
                let firstLine = (item.mark?.line ?? 0) + (block ? 1 : 0)
                let statement: WriteBack.Statement
                do throws(WriteBackSQLError) {
                    statement = try WriteBack.Statement(text, line: item.mark == nil ? nil : firstLine)
                } catch {
                    issues.append(
                        .init(
                            .invalidValue, entity: name, field: path,
                            line: item.mark.map { _ in firstLine + error.line - 1 },
                            column: nil, error.message))
                    continue
                }
                let allowed = entity.columns.map(\.name) + attributes
                for (parameter, line) in statement.parameterLines() where !allowed.contains(parameter) {
                    var message = "unknown parameter :\(parameter) at line \(line) of the statement"
                    if let guess = Self.suggestion(for: parameter, among: allowed) {
                        message += "; did you mean :\(guess)?"
                    }
                    message +=
                        " Parameters are \(entity)'s canonical columns (\(Self.columnList(entity))) and the attributes "
                        + "listed in write_back.attributes"
                    issues.append(
                        .init(
                            .invalidValue, entity: name, field: path, line: item.mark.map { _ in firstLine + line - 1 },
                            column: nil, message))
                }
                result.append(statement)
            }
            return result
        }
        let upsert = statements(upsertNodes, "upsert")
        let delete = statements(deleteNodes, "delete")
        guard issues.count == before else { return nil }
        return WriteBack(upsert: upsert, delete: delete, attributes: attributes)
    }

    /// One SQL text, or a list of them; each must be a non-empty string.
    private mutating func statementNodes(_ node: Node, entity: String, field: String) -> [Node]? {
        let items = node.sequence.map(Array.init) ?? [node]
        if items.isEmpty {
            report(.missingField, entity: entity, field: field, at: node, "is empty: write at least one SQL statement")
            return nil
        }
        var result = [Node]()
        for item in items {
            guard let text = item.scalar?.string, item.null == nil,
                !MappingFile.normalizedQuery(text).isEmpty
            else {
                report(.missingField, entity: entity, field: field, at: item, "expected the SQL text of a statement")
                return nil
            }
            result.append(item)
        }
        return result
    }

    /// `file: catalog.yaml`: the entity's rows, read now (relative to the mapping file's
    /// directory), so every problem is reported with the mapping's others.
    private mutating func parseRowsFile(_ node: Node, entity: String) -> EntityRowsFile? {
        guard let path = node.scalar?.string, node.null == nil, !path.isEmpty else {
            report(
                .missingField, entity: entity, field: "file", at: node,
                "expected the path of a YAML list of rows (relative to this mapping file), e.g. `file: catalog.yaml`")
            return nil
        }
        do throws(EntityRowsFile.Problem) {
            return try EntityRowsFile.read(path, relativeTo: file)
        } catch {
            report(
                error.unreadable ? .unreadableFile : .invalidValue, entity: entity,
                field: "file", at: node, error.message)
            return nil
        }
    }

    /// `currency_exponents: { HUF: 0, ISK: 2 }`: per ISO 4217 currency, the exponent (0 to 4)
    /// the legacy system wrote its minor amounts with. A null is no declaration.
    private mutating func parseCurrencyExponents(_ node: Node, entity: String?) -> [Currency: Int] {
        if node.null != nil { return [:] }
        guard let pairs = node.mapping else {
            report(
                .invalidValue, entity: entity, field: "currency_exponents", at: node,
                "expected a map from currency code to the number of decimal places the legacy system wrote it "
                    + "with, e.g. `{ HUF: 0, ISK: 2 }`")
            return [:]
        }
        let range = MappingFile.declarableExponents
        var exponents = [Currency: Int]()
        for (keyNode, value) in pairs {
            let code = keyNode.scalar?.string ?? ""
            let field = "currency_exponents." + code
            let currency: Currency
            do {
                currency = try Currency(code: code)
            } catch {
                report(.unknownCurrency, entity: entity, field: field, at: keyNode, error.description)
                continue
            }
            guard let text = value.scalar?.string, value.null == nil, let exponent = Int(text), range.contains(exponent)
            else {
                let got = value.scalar.map { " got \(Self.quoted($0.string))" } ?? ""
                report(
                    .invalidValue, entity: entity, field: field, at: value,
                    "expected \(range.lowerBound) to \(range.upperBound),\(got.isEmpty ? "" : got + ":") the number of "
                        + "decimal places the legacy system wrote \(code) amounts with "
                        + "(ISO 4217 gives \(code) \(currency.minorUnitExponent))")
                continue
            }
            exponents[currency] = exponent
        }
        return exponents
    }

    /// `receivables: { refunds: keep_paid, chargebacks: reopen }`.
    private mutating func parseReceivables(_ node: Node) -> MappingFile.ReceivableRules {
        var rules = MappingFile.ReceivableRules.standard
        if node.null != nil { return rules }
        let values = MappingFile.ReceivableRules.Effect.allCases.map(\.rawValue).joined(separator: " or ")
        guard let pairs = node.mapping else {
            report(
                .invalidValue, field: "receivables", at: node,
                "expected `{ refunds: keep_paid | reopen, chargebacks: keep_paid | reopen }`")
            return rules
        }
        for (keyNode, value) in pairs {
            let name = keyNode.scalar?.string ?? ""
            guard Self.receivableFields.contains(name) else {
                reportUnknownField(
                    name, at: keyNode, entity: nil, allowed: Self.receivableFields, context: "receivables",
                    prefix: "receivables.")
                continue
            }
            guard let text = value.scalar?.string, value.null == nil,
                let effect = MappingFile.ReceivableRules.Effect(rawValue: text)
            else {
                let got = value.scalar.map { ", got \(Self.quoted($0.string))" } ?? ""
                report(
                    .invalidValue, field: "receivables." + name, at: value,
                    "expected \(values)\(got): whether a \(name == "refunds" ? "refund" : "lost chargeback") "
                        + "leaves its invoice paid (keep_paid) or owed again (reopen)")
                continue
            }
            if name == "refunds" { rules.refunds = effect } else { rules.chargebacks = effect }
        }
        return rules
    }

    private mutating func parseChecks(_ node: Node, entity: String) -> [SourceCheck] {
        if node.null != nil { return [] }
        guard let items = node.sequence else {
            report(
                .invalidValue, entity: entity, field: "checks", at: node,
                "expected a list such as `- { reason: balance_mismatch, query: SELECT key, detail FROM … }`")
            return []
        }
        var checks = [SourceCheck]()
        for (index, item) in items.enumerated() {
            let field = "checks[\(index)]"
            guard let pairs = item.mapping else {
                report(.invalidValue, entity: entity, field: field, at: item, "expected `reason:` and `query:`")
                continue
            }
            var reason: String?
            var query: String?
            for (keyNode, value) in pairs {
                let name = keyNode.scalar?.string ?? ""
                switch name {
                case "reason": reason = value.scalar?.string
                case "query": query = parseQuery(value, entity: entity, field: field + ".query")
                default:
                    reportUnknownField(
                        name, at: keyNode, entity: entity, allowed: Self.checkFields, context: field, prefix: field + ".")
                }
            }
            guard let reason, !reason.isEmpty, reason.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "_" }) else {
                report(
                    .invalidValue, entity: entity, field: field + ".reason", at: item,
                    "each check needs a reason code in snake_case, e.g. balance_mismatch")
                continue
            }
            if let query { checks.append(SourceCheck(reason: reason, query: query)) }
        }
        return checks
    }

    private mutating func parseQuery(_ node: Node, entity: String, field: String) -> String? {
        guard let text = node.scalar?.string, node.null == nil else {
            report(.missingField, entity: entity, field: field, at: node, "expected the SQL text of a query")
            return nil
        }
        let normalized = MappingFile.normalizedQuery(text)
        guard !normalized.isEmpty else {
            report(.missingField, entity: entity, field: field, at: node, "is empty: write the SQL text of a query")
            return nil
        }
        return normalized
    }

    /// `sources:`, each item either `{ table, key }` (a column of the table holds the key) or
    /// `{ table, columns, keys }` (SQL over the changed rows names the keys). Exactly one of `key`
    /// and `keys`; `columns` goes with `keys` and is required there, so the columns capture
    /// records are always written down (`[]` when the primary key alone is enough).
    private mutating func parseSources(_ node: Node, entity: String) -> [MappingFile.Source] {
        if node.null != nil { return [] }
        let shapes =
            "`{ table: <legacy table>, key: <column holding the \(entity) key> }` or "
            + "`{ table: <legacy table>, columns: [<columns keys reads>], keys: <SQL over changed> }`"
        guard let items = node.sequence else {
            report(.invalidValue, entity: entity, field: "sources", at: node, "expected a list of \(shapes)")
            return []
        }
        var sources = [MappingFile.Source]()
        for (index, item) in items.enumerated() {
            let field = "sources[\(index)]"
            guard let pairs = item.mapping else {
                report(.invalidValue, entity: entity, field: field, at: item, "expected \(shapes)")
                continue
            }
            let before = issues.count
            var table: String?
            var key: String?
            var keyNode: Node?
            var columns: [String]?
            var columnsNode: Node?
            var keys: String?
            var keysNode: Node?
            for (nameNode, value) in pairs {
                let name = nameNode.scalar?.string ?? ""
                switch name {
                case "table": table = value.null == nil ? value.scalar?.string : nil
                case "key":
                    keyNode = nameNode
                    key = value.null == nil ? value.scalar?.string : nil
                    if key?.isEmpty ?? true {
                        report(
                            .missingField, entity: entity, field: field + ".key", at: value,
                            "is empty: name the column of the table that holds the \(entity) key")
                    }
                case "columns":
                    columnsNode = nameNode
                    columns = parseColumns(value, entity: entity, field: field + ".columns")
                case "keys":
                    keysNode = nameNode
                    keys = parseQuery(value, entity: entity, field: field + ".keys")
                default:
                    reportUnknownField(
                        name, at: nameNode, entity: entity, allowed: Self.sourceFields, context: field,
                        prefix: field + ".")
                }
            }
            if table?.isEmpty ?? true {
                report(
                    .missingField, entity: entity, field: field + ".table", at: item,
                    "missing: each source names its legacy table, schema-qualified (legacy.invoices)")
            }
            switch (keyNode, keysNode) {
            case (nil, nil):
                report(
                    .missingField, entity: entity, field: field + ".key", at: item,
                    "missing: each source needs key (the column holding the \(entity) key) or keys "
                        + "(SQL over the changed rows, `changed`, returning the \(entity) keys) with columns")
            case (let keyNode?, let keysNode?):
                report(
                    .invalidValue, entity: entity, field: field + ".keys", at: keysNode,
                    "write either key (line \(keyNode.mark?.line ?? 0): a column of the table holds the key) or keys "
                        + "(SQL naming the keys), not both")
            case (.some, nil):
                if let columnsNode {
                    report(
                        .invalidValue, entity: entity, field: field + ".columns", at: columnsNode,
                        "columns goes with keys: a key source records its key column and nothing else; "
                            + "remove columns, or name the keys by SQL with keys")
                }
            case (nil, .some):
                if columnsNode == nil {
                    report(
                        .missingField, entity: entity, field: field + ".columns", at: item,
                        "missing: a source with keys lists the columns of \(table ?? "the table") that its SQL reads "
                            + "from changed (capture records them, with the primary key): e.g. `columns: [customer_id]`, "
                            + "or `columns: []` when the primary key is enough")
                }
            }
            guard issues.count == before, let table else { continue }
            if let key {
                sources.append(MappingFile.Source(table: table, key: key))
            } else if let keys, let columns {
                sources.append(MappingFile.Source(table: table, columns: columns, keys: keys))
            }
        }
        return sources
    }

    /// `columns: [id, customer_id]`: column names, each once.
    private mutating func parseColumns(_ node: Node, entity: String, field: String) -> [String]? {
        if node.null != nil { return [] }
        guard let items = node.sequence else {
            report(
                .invalidValue, entity: entity, field: field, at: node,
                "expected a list of column names, e.g. `[customer_id]` (`[]` when the primary key is enough)")
            return nil
        }
        var columns = [String]()
        for item in items {
            guard let name = item.scalar?.string, item.null == nil, !name.isEmpty else {
                report(.invalidValue, entity: entity, field: field, at: item, "expected a column name")
                return nil
            }
            if columns.contains(name) {
                report(.invalidValue, entity: entity, field: field, at: item, "\(Self.quoted(name)) is listed twice")
                return nil
            }
            columns.append(name)
        }
        return columns
    }

    private mutating func parseHistory(_ node: Node, entity: String) -> String? {
        if node.null != nil { return nil }
        guard let pairs = node.mapping else {
            report(
                .invalidValue, entity: entity, field: "history", at: node,
                "expected `query:` with the SQL of past versions")
            return nil
        }
        var query: String?
        for (keyNode, value) in pairs {
            let name = keyNode.scalar?.string ?? ""
            if name == "query" {
                query = parseQuery(value, entity: entity, field: "history.query")
            } else {
                reportUnknownField(
                    name, at: keyNode, entity: entity, allowed: Self.historyFields, context: "history",
                    prefix: "history.")
            }
        }
        if query == nil, !pairs.keys.contains(where: { $0.scalar?.string == "query" }) {
            report(
                .missingField, entity: entity, field: "history.query", at: node,
                "missing: write the SQL returning past versions (the canonical columns plus valid_from)")
        }
        return query
    }

    // MARK: - Reporting

    private mutating func report(
        _ code: MappingError.Issue.Code, entity: String? = nil, field: String? = nil, at node: Node, _ message: String
    ) {
        issues.append(
            .init(code, entity: entity, field: field, line: node.mark?.line, column: node.mark?.column, message))
    }

    private mutating func reportUnknownField(
        _ name: String, at node: Node, entity: String?, allowed: [String], context: String, prefix: String = ""
    ) {
        var message = "unknown field \(Self.quoted(name)) in \(context)"
        if let guess = Self.suggestion(for: name, among: allowed) { message += "; did you mean \(guess)?" }
        message += " Allowed: \(allowed.joined(separator: ", "))"
        report(.unknownField, entity: entity, field: prefix + name, at: node, message)
    }

    static func issue(for error: YamlError) -> MappingError.Issue {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let during = context.map { " (\($0.text) at line \($0.mark.line))" } ?? ""
            return .init(.invalidYAML, line: mark.line, column: mark.column, "not valid YAML: \(problem)\(during)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return .init(
                .invalidYAML, line: context.mark.line, column: context.mark.column,
                "a key appears twice in one mapping: \(duplicates.sorted().joined(separator: ", "))")
        default:
            return .init(.invalidYAML, "not valid YAML: \(error)")
        }
    }

    static var entityList: String { Entity.allCases.map(\.rawValue).joined(separator: ", ") }

    static func columnList(_ entity: Entity) -> String {
        entity.columns.map(\.name).joined(separator: ", ")
    }

    static func quoted(_ text: String) -> String {
        "\"" + (text.count <= 40 ? text : text.prefix(40) + "…") + "\""
    }

    /// The closest allowed name, if it is plausibly a typo (or a plural, or a different case).
    static func suggestion(for name: String, among allowed: [String]) -> String? {
        let folded = name.lowercased().replacing("-", with: "_").replacing(" ", with: "_")
        if let exact = allowed.first(where: { $0 == folded }) { return exact }
        let best = allowed.map { ($0, EditDistance.levenshtein(folded, $0)) }.min { $0.1 < $1.1 }
        if let best, best.1 <= max(2, best.0.count / 4) { return best.0 }
        // A legacy table name that contains the canonical one: invoice_line_items, credit_notes.
        return allowed.filter { folded.contains($0) }.max { $0.count < $1.count }
    }

}
