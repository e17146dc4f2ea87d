import Billing
import Migration
import Postgres

/// One side of an entity's comparison as SQL: a relation of canonical rows `(k, c1, …, cn)`
/// where `k` is the key and each `ci` is a canonical column (then `attributes`) in canonical
/// text form, computed by the database that holds the rows.
///
/// Canonical text form, the same on both sides: the key and text as PostgreSQL prints them;
/// amounts as integer minor units (`1900`, never `19.00`); integers and booleans as `bigint`
/// and `boolean` print them; exact decimals as `numeric` prints them; timestamps in UTC at
/// microsecond precision as `timestamptz` prints them in a UTC session
/// (`2025-10-01 09:00:00.000001+00`); dates ISO; `attributes` as `jsonb` text (keys sorted).
/// A row's text is the row literal `ROW(k, c1, …, cn)::text`, which quotes every value that
/// needs it and writes NULL as an empty unquoted field, distinct from `""`: so NULL and the
/// empty string never hash alike, and no value can spill into the next column.
///
/// Parameters the SQL expects: `$1 text[]` the quarantined keys (left out); `$2` the bucket
/// ids (`bigint[]`) or keys (`text[]`) a query narrows to.
struct CanonicalQuery: Sendable, Hashable {
    let entity: Entity
    /// `SELECT k, c1, …, cn FROM …` without parameters other than `$1`.
    let relation: String
    /// Canonical column names, in the order of `c1…cn` (the key column first is `k` itself).
    let columns: [String]

    /// The key hash, 64 bits: the top bits pick a row's bucket at every level.
    static let keyHash = "hashtextextended(x.k, 1)"

    private var rowText: String {
        "ROW(" + (["x.k"] + (1..<columns.count).map { "x.c\($0)" }).joined(separator: ", ") + ")::text"
    }

    /// Count and hash sum per bucket of `bits` key-hash bits; with `within`, only rows in the
    /// given buckets of `within` bits (`$2`).
    func bucketSQL(bits: Int, within parentBits: Int?) -> String {
        var sql = """
            SELECT (\(Self.keyHash) >> \(64 - bits))::int8 AS b, count(*)::int8 AS n,
                   sum(hashtextextended(\(rowText), 0))::text AS s
            FROM (\(relation)) AS x
            """
        if let parentBits { sql += "\nWHERE (\(Self.keyHash) >> \(64 - parentBits)) = ANY($2::int8[])" }
        return sql + "\nGROUP BY 1"
    }

    /// Every row of the buckets `$2` (of `bits` bits): key, row hash, canonical values.
    func rowsInBucketsSQL(bits: Int) -> String {
        rowsSQL(where: "(\(Self.keyHash) >> \(64 - bits)) = ANY($2::int8[])")
    }

    /// The rows of the keys `$2`.
    var rowsOfKeysSQL: String { rowsSQL(where: "x.k = ANY($2::text[])") }

    private func rowsSQL(where condition: String) -> String {
        """
        SELECT x.k, hashtextextended(\(rowText), 0)::text AS h, \((1..<columns.count).map { "x.c\($0)" }.joined(separator: ", "))
        FROM (\(relation)) AS x
        WHERE \(condition)
        """
    }

    // MARK: - The ledger side

    /// The canonical table of `entity` in the read-model schema: its columns are canonical
    /// already, so each is printed as is.
    static func ledger(_ entity: Entity, readSchema: String) -> CanonicalQuery {
        let table = quoteIdentifier(readSchema) + "." + quoteIdentifier(entity.tableName)
        var select = ["t.\(quoteIdentifier(entity.keyColumn))::text AS k"]
        let valueColumns = entity.columns.dropFirst()
        for (index, column) in valueColumns.enumerated() {
            select.append("t.\(quoteIdentifier(column.name))::text AS c\(index + 1)")
        }
        select.append("t.attributes::text AS c\(valueColumns.count + 1)")
        let relation = """
            SELECT \(select.joined(separator: ", "))
            FROM \(table) AS t
            WHERE NOT (t.\(quoteIdentifier(entity.keyColumn))::text = ANY($1::text[]))
            """
        return CanonicalQuery(entity: entity, relation: relation, columns: entity.columns.map(\.name) + ["attributes"])
    }

    // MARK: - The legacy side

    /// The mapping query's rows in canonical form, computed in SQL by the same rules as
    /// ``RowConverter`` (which the backfill used), so a row that migrated faithfully prints
    /// exactly as its read-model row does.
    ///
    /// - Parameters:
    ///   - query: The entity's mapping query.
    ///   - resultColumns: The query's result columns (names and types, from a `LIMIT 0` run):
    ///     how a value prints depends on its legacy type (a `timestamp` is read as UTC, a
    ///     `boolean` attribute prints `t` as libpq does).
    ///   - amounts: Whether the query gives amounts in major or minor units.
    ///   - defaultCurrency: The currency that applies to rows without one.
    static func legacy(
        _ entity: Entity, query: String, resultColumns: Columns, amounts: MappingFile.AmountUnit,
        defaultCurrency: Currency?
    ) -> CanonicalQuery {
        var typeByName = [String: PostgresType]()
        for column in resultColumns.columns where typeByName[column.name] == nil { typeByName[column.name] = column.type }
        func reference(_ name: String) -> String? {
            typeByName[name] == nil ? nil : "m." + quoteIdentifier(name)
        }
        let currencyExpression: String? = {
            guard entity.column("currency") != nil else { return nil }
            let own = reference("currency").map { LegacyText.output($0, typeByName["currency"]!) }
            switch (own, defaultCurrency) {
            case (let own?, let fallback?): return "coalesce(\(own), \(sqlLiteral(fallback.code)))"
            case (let own?, nil): return own
            case (nil, let fallback?): return sqlLiteral(fallback.code)
            case (nil, nil): return nil
            }
        }()
        let needsScale = amounts == .major && entity.columns.contains { $0.type == .amount }
        var select = [String]()
        let keyExpression = reference(entity.keyColumn).map { LegacyText.output($0, typeByName[entity.keyColumn]!) } ?? "NULL::text"
        select.append("\(keyExpression) AS k")
        let valueColumns = Array(entity.columns.dropFirst())
        for (index, column) in valueColumns.enumerated() {
            let expression: String
            if column.name == "currency" {
                expression = currencyExpression ?? "NULL::text"
            } else if let ref = reference(column.name) {
                expression = LegacyText.canonical(
                    ref, typeByName[column.name]!, as: column.type, scale: needsScale ? "ll_currency.scale" : nil)
            } else {
                expression = "NULL::text"
            }
            select.append("\(expression) AS c\(index + 1)")
        }
        // Attributes: every other column, first of a name wins, as RowConverter keeps them.
        let canonicalNames = Set(entity.columns.map(\.name))
        var seen = Set<String>()
        var pairs = [String]()
        for column in resultColumns.columns where !canonicalNames.contains(column.name) && seen.insert(column.name).inserted {
            pairs.append("\(sqlLiteral(column.name)), \(LegacyText.output("m." + quoteIdentifier(column.name), column.type))")
        }
        select.append("\(LegacyText.jsonObject(pairs)) AS c\(valueColumns.count + 1)")

        var from = "(\n\(query)\n) AS m"
        if needsScale, let currencyExpression {
            from += "\nLEFT JOIN (VALUES \(LegacyText.currencyScales)) AS ll_currency(code, scale) ON ll_currency.code = \(currencyExpression)"
        }
        let relation = """
            SELECT r.* FROM (
            SELECT \(select.joined(separator: ",\n       "))
            FROM \(from)
            ) AS r
            WHERE r.k IS NOT NULL AND r.k <> '' AND NOT (r.k = ANY($1::text[]))
            """
        return CanonicalQuery(entity: entity, relation: relation, columns: entity.columns.map(\.name) + ["attributes"])
    }
}

/// SQL expressions that print a legacy value the way Ledgerlift reads it.
enum LegacyText {
    /// `expression` as libpq hands it to ``RowConverter``: the type's output function. A plain
    /// `::text` cast is that for most types, but not for `boolean` (`true`, where libpq prints
    /// `t`) or `char(n)` (trailing blanks dropped); `format('%s')` calls the output function.
    static func output(_ expression: String, _ type: PostgresType) -> String {
        switch type {
        case .bool: "CASE WHEN \(expression) THEN 't' WHEN NOT \(expression) THEN 'f' END"
        case .text, .varchar, .name, .int2, .int4, .int8, .numeric, .float4, .float8, .date, .timestamp,
            .timestamptz, .uuid, .json, .jsonb, .oidType:
            "\(expression)::text"
        // format() prints NULL as '': keep it NULL.
        default: "CASE WHEN \(expression) IS NOT NULL THEN format('%s', \(expression)) END"
        }
    }

    private static let numberPattern = #"'^\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*$'"#

    private static func isNumber(_ type: PostgresType) -> Bool {
        [PostgresType.int2, .int4, .int8, .numeric].contains(type)
    }

    /// `expression` (of legacy `type`) in canonical text form for a column of `columnType`.
    /// Values ``RowConverter`` would refuse never reach here (their keys are quarantined and
    /// left out); where a type could still hold one, a guard keeps the cast from failing and
    /// the value prints as it is, so it shows up as a difference rather than an error.
    static func canonical(_ expression: String, _ type: PostgresType, as columnType: ColumnType, scale: String?)
        -> String
    {
        let text = output(expression, type)
        switch columnType {
        case .text, .status, .currency:
            return text
        case .integer:
            if [PostgresType.int2, .int4, .int8].contains(type) { return "\(expression)::text" }
            if type == .numeric { return "trim_scale(\(expression))::text" }
            return "CASE WHEN \(text) ~ \(numberPattern) THEN trim_scale((\(text))::numeric)::text ELSE \(text) END"
        case .boolean:
            if type == .bool { return "\(expression)::text" }
            return "CASE \(text) WHEN 't' THEN 'true' WHEN 'f' THEN 'false' ELSE \(text) END"
        case .amount:
            let times = scale.map { " * \($0)" } ?? ""
            if isNumber(type) { return "trim_scale(\(expression)::numeric\(times))::text" }
            return "CASE WHEN \(text) ~ \(numberPattern) THEN trim_scale((\(text))::numeric\(times))::text ELSE \(text) END"
        case .decimal:
            if isNumber(type) { return "\(expression)::numeric::text" }
            return "CASE WHEN \(text) ~ \(numberPattern) THEN (\(text))::numeric::text ELSE \(text) END"
        case .timestamp:
            switch type {
            case .timestamptz: return "\(expression)::text"
            // RowConverter reads a timestamp without time zone as UTC.
            case .timestamp: return "(\(expression) AT TIME ZONE 'UTC')::text"
            default:
                return
                    "CASE WHEN \(text) ~ '^\\d{4}-\\d\\d-\\d\\d' AND \(text) !~* 'infinity' THEN (\(text))::timestamptz::text ELSE \(text) END"
            }
        case .date:
            return text
        }
    }

    /// A `jsonb` object of `'name', value` pairs, as text. `jsonb_build_object` takes at most
    /// 100 arguments, so larger objects are built in parts and concatenated.
    static func jsonObject(_ pairs: [String]) -> String {
        guard !pairs.isEmpty else { return "'{}'::text" }
        var parts = [String]()
        var start = 0
        while start < pairs.count {
            let end = min(start + 50, pairs.count)
            parts.append("jsonb_build_object(\(pairs[start..<end].joined(separator: ", ")))")
            start = end
        }
        return "(" + parts.joined(separator: " || ") + ")::text"
    }

    /// `('USD', 100), ('JPY', 1), …`: the factor from major to minor units of every currency
    /// that has one (ISO 4217, as ``Currency`` knows it).
    static let currencyScales: String = Currency.all.sorted().map { currency in
        "('\(currency.code)', 1\(String(repeating: "0", count: currency.minorUnitExponent))::numeric)"
    }.joined(separator: ", ")
}

/// `text` as a SQL string literal.
func sqlLiteral(_ text: String) -> String {
    "'" + text.replacing("'", with: "''") + "'"
}
