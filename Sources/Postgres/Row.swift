/// A result column: its name and PostgreSQL type.
public struct Column: Sendable, Hashable {
    public let name: String
    public let type: PostgresType
}

/// The columns of a result, shared by all its rows.
public struct Columns: Sendable, Hashable {
    public let columns: [Column]
    private let indexByName: [String: Int]

    init(_ columns: [Column]) {
        self.columns = columns
        var index = [String: Int]()
        // The first column of a name wins, as in PostgreSQL's own `record` access.
        for (i, c) in columns.enumerated() where index[c.name] == nil { index[c.name] = i }
        self.indexByName = index
    }

    public var count: Int { columns.count }
    public func index(of name: String) -> Int? { indexByName[name] }
}

/// One result row, values in PostgreSQL's text format (`nil` is SQL NULL).
public struct Row: Sendable, Hashable {
    public let columns: Columns
    /// Raw text values by column position.
    public let values: [String?]

    public init(columns: Columns, values: [String?]) {
        self.columns = columns
        self.values = values
    }

    /// The raw text of a column (`nil` for NULL).
    public subscript(_ name: String) -> String? {
        guard let i = columns.index(of: name) else { return nil }
        return values[i]
    }

    /// Decodes a non-NULL column.
    ///
    /// - Throws: ``PostgresDecodingError`` when the column is missing, NULL, or not of a type
    ///   `T` can be decoded from.
    public func decode<T: PostgresDecodable>(_ column: String, as type: T.Type = T.self) throws -> T {
        let i = try position(column, T.self)
        return try decode(at: i, as: T.self)
    }

    /// Decodes a column that may be NULL.
    public func decode<T: PostgresDecodable>(_ column: String, as type: T?.Type) throws -> T? {
        let i = try position(column, T.self)
        return try decode(at: i, as: T?.self)
    }

    /// Decodes a non-NULL column by position.
    public func decode<T: PostgresDecodable>(at index: Int, as type: T.Type = T.self) throws -> T {
        let column = columns.columns[index]
        guard let text = values[index] else {
            throw PostgresDecodingError(
                column: column.name, postgresType: column.type, swiftType: "\(T.self)",
                reason: "the value is NULL; decode as \(T.self)? to accept NULL")
        }
        guard let value = T.decode(postgresText: text, type: column.type) else {
            throw PostgresDecodingError(
                column: column.name, postgresType: column.type, swiftType: "\(T.self)",
                reason: "the type or the text does not fit")
        }
        return value
    }

    /// Decodes a column that may be NULL, by position.
    public func decode<T: PostgresDecodable>(at index: Int, as type: T?.Type) throws -> T? {
        values[index] == nil ? nil : try decode(at: index, as: T.self)
    }

    private func position<T>(_ column: String, _: T.Type) throws -> Int {
        guard let i = columns.index(of: column) else {
            throw PostgresDecodingError(
                column: column, postgresType: .unknown, swiftType: "\(T.self)",
                reason: "no such column in the result (columns: \(columns.columns.map(\.name).joined(separator: ", ")))")
        }
        return i
    }
}

/// The outcome of a statement: its rows (for queries) and the command tag.
public struct QueryResult: Sendable {
    public let columns: Columns
    public let rows: [Row]
    /// The command tag, e.g. `INSERT 0 3`.
    public let commandTag: String
    /// Rows affected, from the command tag (`INSERT`, `UPDATE`, `DELETE`, `COPY`, `SELECT`).
    public let affectedRows: Int

    /// The first row, if any.
    public var first: Row? { rows.first }
}
