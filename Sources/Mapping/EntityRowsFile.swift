import Billing
import Foundation
import Postgres
import Yams

/// An entity's rows kept in a YAML file instead of the legacy database (`file:` in place of
/// `query:`): Kill Bill's plan catalog, say, which lives in XML outside the database and is
/// exported as rows.
///
/// The file is a YAML list of maps, one per row, from column name to scalar value: the
/// canonical columns, and any other columns, carried as attributes as a query's would be.
///
/// ```yaml
/// - { plan_id: gold-monthly, code: gold-monthly, amount: 30.00, currency: USD, interval: month,
///     archived: false, created_at: "2024-12-01T00:00:00Z", fixed_price: "0.00" }
/// ```
///
/// ``query(for:amounts:)`` turns it into `SELECT * FROM (VALUES …) AS file_rows (…)`, which
/// the backfill, the cross-row rules, `mapping check` and the diff run like any mapping query
/// (on the legacy database, which only evaluates the constants). Each canonical column is cast
/// to its natural PostgreSQL type (`numeric` amounts, `int8` amounts under `amounts: minor`,
/// `timestamptz`, `date`, `boolean`, `int8`, `text`), so the column type checks, the rules'
/// arithmetic and the diff read it as they read a legacy column; the other columns are `text`.
/// Values are checked when the mapping loads, so no cast can fail at run time: a value of the
/// wrong shape is a load error naming the file, the row and the column. A value of the right
/// shape that the model refuses (an unknown status or currency, an amount more precise than
/// its currency) goes on to the converter and is quarantined with its reason, as from a query.
struct EntityRowsFile {
    /// One value of the file: its text as written (`nil` for a YAML null) and where it is.
    struct Cell {
        let text: String?
        let line: Int
        let column: Int
    }

    /// One row: its 1-based position in the list, its line, and its values by column.
    struct Row {
        let number: Int
        let line: Int
        var cells: [String: Cell]
    }

    /// A problem with the file, at a line of it when there is one.
    struct Problem: Error {
        let line: Int?
        let column: Int?
        let message: String
        /// The file could not be read at all (missing, no permission, not UTF-8).
        var unreadable = false
    }

    /// The path as the mapping names it.
    let path: String
    /// Column names in the order they first appear.
    let columns: [String]
    let rows: [Row]

    /// The longest column name PostgreSQL keeps whole (NAMEDATALEN − 1 bytes): a longer one
    /// would be cut silently, and the column read under another name.
    static let maximumColumnNameBytes = 63

    /// Reads `path`, relative to the directory of `mappingFile` unless absolute.
    ///
    /// - Throws: ``Problem`` when the file cannot be read, is not YAML, or is not a list of maps
    ///   of scalars (every such problem in the file, joined).
    static func read(_ path: String, relativeTo mappingFile: String) throws(Problem) -> EntityRowsFile {
        let resolved = resolve(path, relativeTo: mappingFile)
        let text: String
        do {
            text = try String(contentsOfFile: resolved, encoding: .utf8)
        } catch {
            let reason =
                (error as? CocoaError)?.code == .fileReadNoSuchFile ? "no such file" : error.localizedDescription
            throw Problem(
                line: nil, column: nil,
                message: "cannot read \(path)" + (resolved == path ? "" : " (\(resolved))") + ": \(reason)",
                unreadable: true)
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            let issue = MappingFileParser.issue(for: error)
            throw Problem(line: issue.line, column: issue.column, "\(path): " + issue.message)
        } catch {
            throw Problem(line: nil, column: nil, "\(path): not valid YAML: \(error)")
        }
        let shape = "a YAML list of rows, each a map of column to value (`- { plan_id: gold, amount: 30.00 }`)"
        guard let root, root.null == nil else {
            throw Problem(line: nil, column: nil, "\(path) is empty: expected \(shape); write [] for no rows")
        }
        guard let items = root.sequence else {
            throw Problem(
                line: root.mark?.line, column: root.mark?.column,
                "\(path) must be \(shape), not \(root.mapping != nil ? "a map" : "a single value")")
        }
        var problems = [Problem]()
        var columns = [String]()
        var known = Set<String>()
        var rows = [Row]()
        for (index, item) in items.enumerated() {
            let number = index + 1
            let line = item.mark?.line ?? 0
            guard let pairs = item.mapping else {
                problems.append(
                    Problem(
                        line: item.mark?.line, column: item.mark?.column,
                        "row \(number) is not a map of column to value"))
                continue
            }
            var row = Row(number: number, line: line, cells: [:])
            for (keyNode, value) in pairs {
                let at = (line: keyNode.mark?.line, column: keyNode.mark?.column)
                guard let name = keyNode.scalar?.string, keyNode.null == nil, !name.isEmpty else {
                    problems.append(
                        Problem(line: at.line, column: at.column, "row \(number): a column name must be text"))
                    continue
                }
                if let problem = columnNameProblem(name) {
                    problems.append(
                        Problem(
                            line: at.line, column: at.column,
                            "row \(number), column \(name.debugDescription): \(problem)"))
                    continue
                }
                let text: String?
                if value.null != nil {
                    text = nil
                } else if let scalar = value.scalar {
                    guard !scalar.string.unicodeScalars.contains("\0") else {
                        problems.append(
                            Problem(
                                line: value.mark?.line, column: value.mark?.column,
                                "row \(number), column \(name): the value contains a NUL character, "
                                    + "which PostgreSQL text cannot hold"))
                        continue
                    }
                    text = scalar.string
                } else {
                    let kind = value.sequence != nil ? "a list" : "a map"
                    problems.append(
                        Problem(
                            line: value.mark?.line, column: value.mark?.column,
                            "row \(number), column \(name): \(kind) is not a value: write one scalar "
                                + "(text, number, timestamp, true/false) or null"))
                    continue
                }
                row.cells[name] = Cell(
                    text: text, line: value.mark?.line ?? at.line ?? line, column: value.mark?.column ?? 0)
                if known.insert(name).inserted { columns.append(name) }
            }
            rows.append(row)
        }
        if let first = problems.first {
            throw Problem(
                line: first.line, column: first.column,
                problems.map { problem in
                    "\(path)" + (problem.line.map { ":\($0)" } ?? "") + (problem.column.map { ":\($0)" } ?? "")
                        + ": " + problem.message
                }.joined(separator: "\n"))
        }
        return EntityRowsFile(path: path, columns: columns, rows: rows)
    }

    /// `path` as an absolute path: as it is when absolute, else from the mapping file's directory.
    static func resolve(_ path: String, relativeTo mappingFile: String) -> String {
        guard !path.hasPrefix("/") else { return path }
        let directory = URL(fileURLWithPath: mappingFile).deletingLastPathComponent()
        return directory.appendingPathComponent(path).standardizedFileURL.path
    }

    static func columnNameProblem(_ name: String) -> String? {
        if name.unicodeScalars.contains("\0") { return "a column name cannot contain a NUL character" }
        if name.utf8.count > maximumColumnNameBytes {
            return "longer than \(maximumColumnNameBytes) bytes, which PostgreSQL would cut short"
        }
        if RowConverter.isVersionColumn(name) {
            return "\(name) is reserved for history queries, and a file has no history: rename it"
        }
        return nil
    }

    // MARK: - The query

    /// The PostgreSQL type a column is cast to, and how a value of the file is checked and
    /// written for it.
    enum ValueType {
        case text, numeric, bigint, boolean, timestamptz, date
        /// An amount under `amounts: minor`: an `int8` of minor units.
        case minorUnits

        var sqlName: String {
            switch self {
            case .text: "text"
            case .numeric: "numeric"
            case .bigint, .minorUnits: "int8"
            case .boolean: "boolean"
            case .timestamptz: "timestamptz"
            case .date: "date"
            }
        }

        init(_ column: ColumnDefinition?, amounts: MappingFile.AmountUnit) {
            switch column?.type {
            case nil, .text, .status, .currency: self = .text
            // Under `minor`, amounts are integers of minor units, the type `mapping check`
            // requires of such a column.
            case .amount: self = amounts == .minor ? .minorUnits : .numeric
            case .decimal: self = .numeric
            case .integer: self = .bigint
            case .boolean: self = .boolean
            case .timestamp: self = .timestamptz
            case .date: self = .date
            }
        }

        /// The value as a SQL literal of this type, or why it cannot be one.
        func literal(_ text: String) -> Result<String, ValueProblem> {
            switch self {
            case .text:
                return .success(quoteLiteral(text) + "::text")
            case .numeric:
                guard let number = PostgresNumeric(text) else {
                    return .failure(.init("is not an exact decimal number (digits, an optional point and sign)"))
                }
                return .success(quoteLiteral(number.description) + "::numeric")
            case .bigint:
                guard let integer = Int64(text) else { return .failure(.init("is not a 64-bit integer")) }
                return .success("\(integer)::int8")
            case .minorUnits:
                guard let integer = Int64(text) else {
                    return .failure(
                        .init(
                            PostgresNumeric(text) != nil
                                ? "is not a whole number: under amounts: minor an amount is an integer of minor units"
                                : "is not a 64-bit integer of minor units (amounts: minor)"))
                }
                return .success("\(integer)::int8")
            case .boolean:
                // YAML's words, and the letters libpq prints (an export from a query).
                switch text.lowercased() {
                case "true", "t": return .success("true")
                case "false", "f": return .success("false")
                default: return .failure(.init("is not a boolean: write true or false"))
                }
            case .timestamptz:
                // Written as an instant in UTC, so a value without an offset means UTC (as the
                // converter reads a `timestamp`) whatever the session's time zone.
                do throws(PostgresTimeError) {
                    return .success(quoteLiteral(try PostgresTimestamp.parse(text).iso8601) + "::timestamptz")
                } catch {
                    return .failure(
                        .init("is not a timestamp (2024-12-01T00:00:00Z; without an offset, UTC): \(error.explanation)")
                    )
                }
            case .date:
                do throws(PostgresTimeError) {
                    return .success(quoteLiteral(try PostgresDate.parse(text).description) + "::date")
                } catch {
                    return .failure(.init("is not a date (YYYY-MM-DD): \(error.explanation)"))
                }
            }
        }
    }

    struct ValueProblem: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    /// The SQL returning the file's rows for `entity`: canonical columns first, in canonical
    /// order, then the others in the order they first appear; a column a row leaves out is
    /// NULL in that row.
    ///
    /// - Returns: The query, or every value that does not fit its column (`catalog.yaml:12:11:
    ///   row 2 (plan_id gold), amount "abc" is not an exact decimal number`).
    func query(for entity: Entity, amounts: MappingFile.AmountUnit) -> Result<String, Problem> {
        let canonical = entity.columns.map(\.name).filter { columns.contains($0) }
        let extras = columns.filter { entity.column($0) == nil }
        guard !rows.isEmpty else {
            // No rows: the canonical columns with their types, so the query still describes
            // the entity (`mapping check` finds every column), and returns nothing.
            let select = entity.columns.map { column in
                "NULL::\(ValueType(column, amounts: amounts).sqlName) AS \(quoteIdentifier(column.name))"
            }
            return .success("SELECT " + select.joined(separator: ", ") + "\nWHERE false\n")
        }
        let ordered = canonical + extras
        let types = ordered.map { ValueType(entity.column($0), amounts: amounts) }
        var problems = [String]()
        var lines = [String]()
        for row in rows {
            var values = [String]()
            for (name, type) in zip(ordered, types) {
                guard let cell = row.cells[name], let text = cell.text else {
                    values.append("NULL::\(type.sqlName)")
                    continue
                }
                switch type.literal(text) {
                case .success(let literal): values.append(literal)
                case .failure(let problem):
                    let key = row.cells[entity.keyColumn]?.text.map { " (\(entity.keyColumn) \($0))" } ?? ""
                    problems.append(
                        "\(path):\(cell.line):\(cell.column): row \(row.number)\(key), \(name) "
                            + "\(RowConverter.quoted(text)) \(problem.message)")
                }
            }
            lines.append("    (" + values.joined(separator: ", ") + ")")
        }
        guard problems.isEmpty else {
            return .failure(Problem(line: nil, column: nil, problems.joined(separator: "\n")))
        }
        return .success(
            "SELECT * FROM (VALUES\n" + lines.joined(separator: ",\n") + "\n) AS file_rows ("
                + ordered.map(quoteIdentifier).joined(separator: ", ") + ")\n")
    }
}

extension EntityRowsFile.Problem {
    init(line: Int?, column: Int?, _ message: String) {
        self.init(line: line, column: column, message: message)
    }
}
