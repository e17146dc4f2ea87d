import TextFormats
import Mapping
import Billing
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
    /// Hash the UTF-8 bytes of the text rather than the server's own encoding: needed when
    /// the two databases' encodings differ (a LATIN1 legacy database), where the same `é`
    /// is different bytes on each side. Costs a conversion per value, so only then.
    var portableHash = false

    /// 64 bits of `text` (seed 0 for rows, 1 for keys).
    private func hash(_ text: String, seed: Int) -> String {
        portableHash
            ? "hashtextextended(encode(convert_to(\(text), 'UTF8'), 'hex'), \(seed))"
            : "hashtextextended(\(text), \(seed))"
    }

    /// The key hash, 64 bits: the top bits pick a row's bucket at every level.
    private var keyHash: String { hash("x.k", seed: 1) }

    private var rowHash: String {
        hash("ROW(" + (["x.k"] + (1..<columns.count).map { "x.c\($0)" }).joined(separator: ", ") + ")::text", seed: 0)
    }

    /// Count and hash sum per bucket of `bits` key-hash bits; with `within`, only rows in the
    /// given buckets of `within` bits (`$2`). At the first level, legacy rows without a key
    /// form a group of their own whose bucket is NULL (``DiffChecker/keylessBucket``).
    func bucketSQL(bits: Int, within parentBits: Int?) -> String {
        var sql = """
            SELECT (\(keyHash) >> \(64 - bits))::int8 AS b, count(*)::int8 AS n, sum(\(rowHash))::text AS s
            FROM (\(relation)) AS x
            """
        if let parentBits { sql += "\nWHERE (\(keyHash) >> \(64 - parentBits)) = ANY($2::int8[])" }
        return sql + "\nGROUP BY 1"
    }

    /// Every row of the buckets `$2` (of `bits` bits): key, row hash, canonical values (or,
    /// with `keysOnly`, key and row hash: enough to count differences no longer kept).
    func rowsInBucketsSQL(bits: Int, keysOnly: Bool = false) -> String {
        rowsSQL(where: "(\(keyHash) >> \(64 - bits)) = ANY($2::int8[])", keysOnly: keysOnly)
    }

    /// The legacy rows without a key (`$2` unused): counted apart, never bucketed.
    var keylessRowsSQL: String { rowsSQL(where: "x.k IS NULL", keysOnly: false) }

    /// The rows of the keys `$2`.
    var rowsOfKeysSQL: String { rowsSQL(where: "x.k = ANY($2::text[])", keysOnly: false) }

    private func rowsSQL(where condition: String, keysOnly: Bool) -> String {
        let values = keysOnly ? "" : ", " + (1..<columns.count).map { "x.c\($0)" }.joined(separator: ", ")
        return """
            SELECT x.k, \(rowHash)::text AS h\(values)
            FROM (\(relation)) AS x
            WHERE \(condition)
            """
    }

    // MARK: - The ledger side

    /// The canonical table of `entity` in the read-model schema: its columns are canonical
    /// already and go into the row literal as they are, each printed by its type's output
    /// function (no cast: a cast to text would only copy the text once more).
    static func ledger(_ entity: Entity, readSchema: String) -> CanonicalQuery {
        let table = quoteIdentifier(readSchema) + "." + quoteIdentifier(entity.tableName)
        var select = ["t.\(quoteIdentifier(entity.keyColumn))::text COLLATE \"C\" AS k"]
        let valueColumns = entity.columns.dropFirst()
        for (index, column) in valueColumns.enumerated() {
            select.append("t.\(quoteIdentifier(column.name)) AS c\(index + 1)")
        }
        select.append("t.attributes AS c\(valueColumns.count + 1)")
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
    ///   - currencyExponents: Per currency, the exponent the legacy system wrote minor amounts
    ///     with (`currency_exponents`): under `amounts: minor`, those currencies' amounts are
    ///     brought to ISO minor units and their unit prices to the major unit with it.
    static func legacy(
        _ entity: Entity, query: String, resultColumns: Columns, amounts: MappingFile.AmountUnit,
        defaultCurrency: Currency?, currencyExponents: [Currency: Int]
    ) -> CanonicalQuery {
        // Columns are referred to by position (`m._3`), never by name: a query may return two
        // columns of one name, where RowConverter reads the first and SQL would call the name
        // ambiguous.
        var typeByName = [String: PostgresType]()
        var positionByName = [String: Int]()
        for (index, column) in resultColumns.columns.enumerated() where typeByName[column.name] == nil {
            typeByName[column.name] = column.type
            positionByName[column.name] = index + 1
        }
        func reference(_ name: String) -> String? {
            positionByName[name].map { "m._\($0)" }
        }
        let currencyExpression: String? = {
            guard entity.column("currency") != nil else { return nil }
            // A currency code is three letters or the row is quarantined, so the blank padding
            // `::text` drops from a char(n) never matters here, and the cast is cheaper.
            let own = reference("currency").map { LegacyText.currency($0, typeByName["currency"]!) }
            switch (own, defaultCurrency) {
            case (let own?, let fallback?): return "coalesce(\(own), \(quoteLiteral(fallback.code)))"
            case (let own?, nil): return own
            case (nil, let fallback?): return quoteLiteral(fallback.code)
            case (nil, nil): return nil
            }
        }()
        // Without a currency (no column, no default) every amount is quarantined by the
        // converter, so the scale is never needed; the join would have nothing to join on.
        let needsScale = amounts == .major && entity.columns.contains { $0.type == .amount } && currencyExpression != nil
        // Under `amounts: minor`, decimals (a line's unit_amount) are read in minor units and
        // converted to the major unit with the exponent, as RowConverter does.
        let needsExponent =
            amounts == .minor && entity.columns.contains { $0.isUnitPrice } && currencyExpression != nil
        // Under `amounts: minor`, a currency the legacy system wrote with another exponent than
        // ISO's (`currency_exponents`): its amounts times 10^(iso − declared), its unit prices
        // divided by 10^declared, as RowConverter converts them. Other currencies: as before.
        func minorScale(_ code: String) -> String? {
            guard amounts == .minor else { return nil }
            return CurrencyExponentsSQL.toISOMinorFactor(currencyExponents, currency: code).map {
                "coalesce(\($0), 1::numeric)"
            }
        }
        let unitPriceConversion: (scale: String, exponent: String)? = currencyExpression.map { code in
            (
                scale: CurrencyExponentsSQL.legacyMinorPerMajor(currencyExponents, currency: code)
                    .map { "coalesce(\($0), ll_currency.scale)" } ?? "ll_currency.scale",
                exponent: CurrencyExponentsSQL.legacyExponent(currencyExponents, currency: code)
                    .map { "coalesce(\($0), ll_currency.exponent)" } ?? "ll_currency.exponent"
            )
        }
        var select = [String]()
        let keyExpression = reference(entity.keyColumn).map { LegacyText.output($0, typeByName[entity.keyColumn]!) } ?? "NULL::text"
        // Keys compare and hash by their bytes, whatever the legacy column's collation.
        // An empty key is no key (RowConverter quarantines both as key_missing): NULL here.
        // Longer than a stream id can hold: quarantined like a row without a key, and counted so.
        select.append(
            "(CASE WHEN octet_length(\(keyExpression)) BETWEEN 1 AND \(Quarantine.maximumKeyBytes) THEN \(keyExpression) END) "
                + "COLLATE \"C\" AS k")
        let valueColumns = Array(entity.columns.dropFirst())
        for (index, column) in valueColumns.enumerated() {
            var expression: String
            if column.name == "currency" {
                expression = currencyExpression ?? "NULL::text"
            } else if let ref = reference(column.name) {
                var scale = needsScale ? "ll_currency.scale" : currencyExpression.flatMap(minorScale)
                if let other = column.currencyColumn {
                    // An amount in another currency (processed_amount in processed_currency)
                    // scales by that currency's exponent.
                    let code = reference(other).map { LegacyText.currency($0, typeByName[other]!) } ?? "NULL::text"
                    scale = amounts == .major
                        ? "(SELECT ll_s.scale FROM (VALUES \(LegacyText.currencyScales)) AS ll_s(code, scale, exponent) WHERE ll_s.code = \(code))"
                        : minorScale(code)
                }
                expression = LegacyText.canonical(
                    ref, typeByName[column.name]!, as: column.type, scale: scale,
                    minorToMajor: needsExponent && column.isUnitPrice ? unitPriceConversion : nil)
            } else {
                expression = "NULL::text"
            }
            // A column with a default reads as the default when the query leaves it out or
            // returns NULL, as RowConverter reads it.
            if let fallback = column.defaultValue.flatMap(LegacyText.defaultText) {
                expression = expression == "NULL::text" ? quoteLiteral(fallback) : "coalesce(\(expression), \(quoteLiteral(fallback)))"
            }
            select.append("\(expression) AS c\(index + 1)")
        }
        // Attributes: every other column, first of a name wins, as RowConverter keeps them.
        let canonicalNames = Set(entity.columns.map(\.name))
        var seen = Set<String>()
        var pairs = [(name: String, value: String)]()
        for (index, column) in resultColumns.columns.enumerated()
        where !canonicalNames.contains(column.name) && seen.insert(column.name).inserted {
            pairs.append((column.name, LegacyText.output("m._\(index + 1)", column.type)))
        }
        select.append("\(LegacyText.jsonObject(pairs)) AS c\(valueColumns.count + 1)")

        let aliases = (1...max(1, resultColumns.count)).map { "_\($0)" }.joined(separator: ", ")
        var from = "(\n\(query)\n) AS m(\(aliases))"
        if needsScale || needsExponent, let currencyExpression {
            from +=
                "\nLEFT JOIN (VALUES \(LegacyText.currencyScales)) AS ll_currency(code, scale, exponent) "
                + "ON ll_currency.code = \(currencyExpression)"
        }
        let relation = """
            SELECT r.* FROM (
            SELECT \(select.joined(separator: ",\n       "))
            FROM \(from)
            ) AS r
            WHERE r.k IS NULL OR NOT (r.k = ANY($1::text[]))
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

    /// A currency code: `::text` (see ``CanonicalQuery/legacy``).
    static func currency(_ expression: String, _ type: PostgresType) -> String {
        type.isCharacterString ? "\(expression)::text" : output(expression, type)
    }

    /// The shape `PostgresTimestamp` (hence RowConverter) reads: years of 4 to 7 digits, `T` or
    /// a space, an optional fraction and offset. Text of another shape prints as it is (a
    /// difference) rather than failing the cast and the whole run. (A well-shaped impossible
    /// date, `2025-02-30`, still fails it: PostgreSQL 15 has no cast that cannot fail.)
    private static let timestampPattern =
        #"'^\d{4,7}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d(:\d\d(:\d\d)?)?)?$'"#

    private static let numberPattern = #"'^\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*$'"#

    private static func isNumber(_ type: PostgresType) -> Bool {
        [PostgresType.int2, .int4, .int8, .numeric].contains(type)
    }

    /// `expression` (of legacy `type`) in canonical text form for a column of `columnType`.
    /// Values ``RowConverter`` would refuse never reach here (their keys are quarantined and
    /// left out); where a type could still hold one, a guard keeps the cast from failing and
    /// the value prints as it is, so it shows up as a difference rather than an error.
    ///
    /// `minorToMajor` (under `amounts: minor`) names the factor and exponent columns a decimal
    /// is converted with: `round(x / 10^e, scale(x) + e)` is exact and prints every digit, as
    /// ``RowConverter`` moves the point (`1200` USD is `12.00`).
    /// A column default as the ledger's read model prints it.
    static func defaultText(_ value: CanonicalValue) -> String? {
        switch value {
        case .null: nil
        case .boolean(let b): b ? "t" : "f"
        default: value.description
        }
    }

    static func canonical(
        _ expression: String, _ type: PostgresType, as columnType: ColumnType, scale: String?,
        minorToMajor: (scale: String, exponent: String)? = nil
    ) -> String {
        let text = output(expression, type)
        switch columnType {
        case .text, .status, .currency:
            return text
        case .integer:
            if [PostgresType.int2, .int4, .int8].contains(type) { return "\(expression)::text" }
            if type == .numeric { return "trim_scale(\(expression))::text" }
            return "CASE WHEN \(text) ~ \(numberPattern) THEN trim_scale((\(text))::numeric)::text ELSE \(text) END"
        case .boolean:
            // `t`/`f`, as the ledger's boolean prints in a row literal and over libpq.
            if type == .bool { return text }
            return "CASE \(text) WHEN 'true' THEN 't' WHEN 'false' THEN 'f' ELSE \(text) END"
        case .amount:
            let times = scale.map { " * \($0)" } ?? ""
            if isNumber(type) { return "trim_scale(\(expression)::numeric\(times))::text" }
            return "CASE WHEN \(text) ~ \(numberPattern) THEN trim_scale((\(text))::numeric\(times))::text ELSE \(text) END"
        case .decimal:
            func major(_ number: String) -> String {
                guard let minorToMajor else { return "\(number)::text" }
                return "round(\(number) / \(minorToMajor.scale), scale(\(number)) + \(minorToMajor.exponent))::text"
            }
            if isNumber(type) { return major("\(expression)::numeric") }
            return "CASE WHEN \(text) ~ \(numberPattern) THEN \(major("(\(text))::numeric")) ELSE \(text) END"
        case .timestamp:
            switch type {
            case .timestamptz: return "\(expression)::text"
            // RowConverter reads a timestamp without time zone as UTC. In the UTC session a
            // timestamptz prints as the timestamp does plus `+00`, and appending is far cheaper
            // than converting; only years outside 1–294276 (BC, infinity) print otherwise.
            case .timestamp:
                return
                    "CASE WHEN \(expression) BETWEEN '0001-01-01' AND '294276-01-01' THEN \(expression)::text || '+00' "
                    + "ELSE (\(expression) AT TIME ZONE 'UTC')::text END"
            default:
                return
                    "CASE WHEN \(text) ~ \(timestampPattern) THEN (\(text))::timestamptz::text ELSE \(text) END"
            }
        case .date:
            return text
        }
    }

    /// The text `jsonb` prints for an object of text values, built as text: keys in jsonb's
    /// order (shorter first, then byte order), `"key": value` separated by `, `, values
    /// escaped by `to_json`, which shares jsonb's escaping. Building the jsonb and printing it
    /// would cost a tree and a sort per row for the same text.
    static func jsonObject(_ pairs: [(name: String, value: String)]) -> String {
        guard !pairs.isEmpty else { return "'{}'::text" }
        let ordered = pairs.sorted {
            $0.name.utf8.count != $1.name.utf8.count
                ? $0.name.utf8.count < $1.name.utf8.count : $0.name.utf8.lexicographicallyPrecedes($1.name.utf8)
        }
        var parts = [String]()
        for (index, pair) in ordered.enumerated() {
            let prefix = (index == 0 ? "{" : ", ") + JSONValue.quoted(pair.name) + ": "
            parts.append(quoteLiteral(prefix))
            parts.append("coalesce(to_json(\(pair.value))::text, 'null')")
        }
        parts.append("'}'")
        return "(" + parts.joined(separator: " || ") + ")"
    }

    /// `('USD', 100, 2), ('JPY', 1, 0), …`: the factor from major to minor units of every
    /// currency that has one (ISO 4217, as ``Currency`` knows it), and its exponent.
    static let currencyScales: String = Currency.all.sorted().map { currency in
        "(\(quoteLiteral(currency.code)), 1\(String(repeating: "0", count: currency.minorUnitExponent))::numeric, "
            + "\(currency.minorUnitExponent))"
    }.joined(separator: ", ")
}

