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
        /// The file could not be read at all (missing, no permission, not a regular file, too
        /// large, not UTF-8).
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

    /// The largest rows file read, in bytes (16 MiB): a catalog export is a few kilobytes, and
    /// every row is held in memory and written into one query.
    static let maximumBytes = 16 * 1024 * 1024

    /// Reads `path`, relative to the directory of `mappingFile`.
    ///
    /// The path must be relative and lead, after symbolic links, to a regular file inside that
    /// directory (or below it), of at most ``maximumBytes``, in UTF-8. No message quotes the
    /// file's bytes: a problem is told by its line and column, its row, and its column name or
    /// key only when that is short plain text (``plain(_:)``).
    ///
    /// - Throws: ``Problem`` when the file cannot be read, is not YAML, or is not a list of maps
    ///   of scalars (every such problem in the file, joined).
    static func read(_ path: String, relativeTo mappingFile: String) throws(Problem) -> EntityRowsFile {
        let bytes = try contents(of: path, relativeTo: mappingFile)
        if let offset = firstInvalidUTF8Offset(bytes) {
            let at = position(ofByte: offset, in: bytes)
            throw Problem(
                line: at.line, column: at.column,
                message: "cannot read \(path): it is not UTF-8 text (first invalid byte at line \(at.line), "
                    + "column \(at.column))",
                unreadable: true)
        }
        let text = String(decoding: bytes, as: UTF8.self)
        let root: Node?
        do {
            // UTF-8 whatever the platform's default, so a reader error's offset counts bytes.
            root = try Yams.compose(yaml: text, .default, .default, .utf8)
        } catch let error as YamlError {
            throw yamlProblem(error, path: path, bytes: bytes)
        } catch {
            throw Problem(line: nil, column: nil, "\(path) is not valid YAML")
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
                // The name as the messages give it: itself when plain, else where it is.
                let label =
                    plain(name).map { "column \($0)" }
                    ?? "the column named at line \(at.line ?? line), column \(at.column ?? 0)"
                if let problem = columnNameProblem(name) {
                    problems.append(Problem(line: at.line, column: at.column, "row \(number), \(label): \(problem)"))
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
                                "row \(number), \(label): the value contains a NUL character, "
                                    + "which PostgreSQL text cannot hold"))
                        continue
                    }
                    text = scalar.string
                } else {
                    let kind = value.sequence != nil ? "a list" : "a map"
                    problems.append(
                        Problem(
                            line: value.mark?.line, column: value.mark?.column,
                            "row \(number), \(label): \(kind) is not a value: write one scalar "
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

    /// `text` when it is short plain text a message may show — at most 63 bytes of ASCII
    /// letters, digits, and `_ - . : / @ +` — else `nil`: a key or column name is shown only
    /// so, and a value never.
    static func plain(_ text: String) -> String? {
        guard !text.isEmpty, text.utf8.count <= maximumColumnNameBytes else { return nil }
        let allowed = Set("_-.:/@+".utf8)
        let isPlain = text.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                || allowed.contains(byte)
        }
        return isPlain ? text : nil
    }

    // MARK: - Reading the file

    /// The bytes of `path`, after checking what it is without reading it: a relative path
    /// inside the mapping file's directory once symbolic links are followed, a regular file (a
    /// directory, pipe or device is refused before it is opened, so nothing blocks), at most
    /// ``maximumBytes``.
    static func contents(of path: String, relativeTo mappingFile: String) throws(Problem) -> [UInt8] {
        func unreadable(_ reason: String) -> Problem {
            Problem(line: nil, column: nil, message: "cannot read \(path): \(reason)", unreadable: true)
        }
        func errnoReason(_ code: Int32) -> String {
            switch code {
            case ENOENT: "no such file"
            case EACCES: "permission denied"
            default: String(cString: strerror(code)).lowercased()
            }
        }
        guard !path.hasPrefix("/") else {
            throw Problem(
                line: nil, column: nil,
                "\(path) is an absolute path: `file:` takes a path relative to the mapping file's directory, "
                    + "inside it (catalog.yaml, exports/plans.yaml)")
        }
        let outside = Problem(
            line: nil, column: nil,
            "\(path) leads outside the mapping file's directory (symbolic links followed): "
                + "keep the rows file in that directory or below it")
        // `..` past the directory, whether or not the file exists.
        var depth = 0
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            if component == ".." {
                depth -= 1
                if depth < 0 { throw outside }
            } else if component != "." {
                depth += 1
            }
        }
        let directoryPath = URL(fileURLWithPath: mappingFile).deletingLastPathComponent().path
        guard let directory = realPath(directoryPath) else {
            throw unreadable("cannot resolve the mapping file's directory (\(errnoReason(errno)))")
        }
        guard let resolved = realPath(directory.hasSuffix("/") ? directory + path : directory + "/" + path) else {
            throw unreadable(errnoReason(errno))
        }
        let inside = directory == "/" ? resolved.hasPrefix("/") : resolved.hasPrefix(directory + "/")
        guard inside || resolved == directory else { throw outside }

        var status = stat()
        guard stat(resolved, &status) == 0 else { throw unreadable(errnoReason(errno)) }
        if let kind = irregularKind(status.st_mode) { throw unreadable("it is \(kind), not a regular file") }
        if status.st_size > maximumBytes { throw unreadable(tooLarge(Int(status.st_size))) }

        // Non-blocking, and checked again once open: a file swapped for a pipe since is refused.
        let descriptor = open(resolved, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { throw unreadable(errnoReason(errno)) }
        defer { close(descriptor) }
        guard fstat(descriptor, &status) == 0 else { throw unreadable(errnoReason(errno)) }
        if let kind = irregularKind(status.st_mode) { throw unreadable("it is \(kind), not a regular file") }
        var bytes = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { Foundation.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw unreadable(errnoReason(errno))
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[..<count])
            // It grew since it was measured.
            if bytes.count > maximumBytes { throw unreadable(tooLarge(bytes.count)) }
        }
        return bytes
    }

    private static func realPath(_ path: String) -> String? {
        guard let pointer = realpath(path, nil) else { return nil }
        defer { free(pointer) }
        return String(cString: pointer)
    }

    /// What a file that is not a regular one is, or `nil` for a regular file.
    private static func irregularKind(_ mode: mode_t) -> String? {
        switch mode & S_IFMT {
        case S_IFREG: nil
        case S_IFDIR: "a directory"
        case S_IFIFO: "a named pipe"
        case S_IFCHR, S_IFBLK: "a device"
        case S_IFSOCK: "a socket"
        default: "a special file"
        }
    }

    private static func tooLarge(_ size: Int) -> String {
        let mebibytes = (Double(size) / 1_048_576 * 10).rounded(.up) / 10
        return "it is \(mebibytes) MiB, over the \(maximumBytes / 1_048_576) MiB limit for a rows file "
            + "(a catalog export is far smaller)"
    }

    /// The offset of the first byte that does not belong to valid UTF-8, or `nil`.
    static func firstInvalidUTF8Offset(_ bytes: [UInt8]) -> Int? {
        var index = 0
        while index < bytes.count {
            let lead = bytes[index]
            // The length a lead byte announces, and the range of the byte after it.
            let (length, lower, upper): (Int, UInt8, UInt8) =
                switch lead {
                case 0x00...0x7F: (1, 0x80, 0xBF)
                case 0xC2...0xDF: (2, 0x80, 0xBF)
                case 0xE0: (3, 0xA0, 0xBF)
                case 0xE1...0xEC, 0xEE...0xEF: (3, 0x80, 0xBF)
                case 0xED: (3, 0x80, 0x9F)
                case 0xF0: (4, 0x90, 0xBF)
                case 0xF1...0xF3: (4, 0x80, 0xBF)
                case 0xF4: (4, 0x80, 0x8F)
                default: (0, 0, 0)
                }
            if length == 0 { return index }
            for offset in 1..<length {
                guard index + offset < bytes.count else { return index }
                let byte = bytes[index + offset]
                let range = offset == 1 ? lower...upper : 0x80...0xBF
                guard range.contains(byte) else { return index }
            }
            index += length
        }
        return nil
    }

    /// The 1-based line and column (in characters) of the byte at `offset`.
    static func position(ofByte offset: Int, in bytes: [UInt8]) -> (line: Int, column: Int) {
        var line = 1
        var column = 1
        for byte in bytes[..<min(offset, bytes.count)] {
            if byte == 0x0A {
                line += 1
                column = 1
            } else if byte & 0xC0 != 0x80 {
                column += 1
            }
        }
        return (line, column)
    }

    /// A YAML error as a problem at its line and column, without the text around it that
    /// Yams' description quotes.
    static func yamlProblem(_ error: YamlError, path: String, bytes: [UInt8]) -> Problem {
        func problem(_ line: Int?, _ column: Int?, _ message: String) -> Problem {
            let at = (line.map { ":\($0)" } ?? "") + (column.map { ":\($0)" } ?? "")
            return Problem(line: line, column: column, "\(path)\(at): \(message)")
        }
        // libyaml's own fixed wording, never the file's; anything else is not repeated.
        func described(_ text: String) -> String {
            text.utf8.allSatisfy { (0x20...0x7E).contains($0) } ? text : "a syntax error"
        }
        switch error {
        case .reader(let readerProblem, let offset, _, _):
            guard let offset else { return problem(nil, nil, "not valid YAML: \(described(readerProblem))") }
            let at = position(ofByte: offset, in: bytes)
            return problem(at.line, at.column, "not valid YAML: \(described(readerProblem))")
        case .scanner(let context, let yamlProblem, let mark, _), .parser(let context, let yamlProblem, let mark, _),
            .composer(let context, let yamlProblem, let mark, _):
            let during = context.map { " (\(described($0.text)) at line \($0.mark.line))" } ?? ""
            return problem(mark.line, mark.column, "not valid YAML: \(described(yamlProblem))\(during)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            let names = duplicates.compactMap(plain).sorted()
            let shown = names.count == duplicates.count && !names.isEmpty ? ": " + names.joined(separator: ", ") : ""
            return problem(context.mark.line, context.mark.column, "a column appears twice in one row\(shown)")
        default:
            return problem(nil, nil, "not valid YAML")
        }
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
                    let example = "such as 2024-12-01T00:00:00Z (without an offset it is read as UTC)"
                    guard case .malformed = error.problem else { return .failure(.init(error.explanation)) }
                    if (try? PostgresDate.parse(text)) != nil {
                        return .failure(.init("is a date without a time of day: write a timestamp \(example)"))
                    }
                    return .failure(.init("is not a timestamp: write one \(example)"))
                }
            case .date:
                do throws(PostgresTimeError) {
                    return .success(quoteLiteral(try PostgresDate.parse(text).description) + "::date")
                } catch {
                    guard case .malformed = error.problem else { return .failure(.init(error.explanation)) }
                    return .failure(.init("is not a date: write one such as 2024-12-01"))
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
    ///   row 2 (plan_id gold), amount is not an exact decimal number …`): the column is named,
    ///   the value never shown, the key only when it is plain text.
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
                    let key =
                        row.cells[entity.keyColumn]?.text.flatMap(Self.plain).map { " (\(entity.keyColumn) \($0))" }
                        ?? ""
                    problems.append(
                        "\(path):\(cell.line):\(cell.column): row \(row.number)\(key), \(name) \(problem.message)")
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
