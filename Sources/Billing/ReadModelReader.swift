import Postgres

/// Reads the read models of one schema: current rows, rows "as of" a business time, balances,
/// revenue, MRR and receivables aging.
///
/// Every method runs on a ``Session`` the caller provides and throws
/// ``ProjectionError/notBuilt(schema:)`` when no read model has been built there yet.
public struct ReadModelReader: Sendable {
    public let schema: ReadModelSchema

    public init(readSchema: String = "ledgerlift_read") {
        self.schema = ReadModelSchema(readSchema)
    }

    /// Throws unless a live read model of this binary's model version is in the schema.
    public func requireBuilt(_ session: Session) throws {
        guard let state = try schema.state(session), state.isLive else {
            throw ProjectionError.notBuilt(schema: schema.name)
        }
        guard state.modelVersion == ReadModelSchema.modelVersion else {
            throw ProjectionError.modelVersionMismatch(
                schema: schema.name, found: state.modelVersion, expected: ReadModelSchema.modelVersion)
        }
    }

    /// The current canonical row of `entity` with key `key`, or its version as of the business
    /// time `asOf` (the version with `valid_from ≤ asOf < valid_to`).
    ///
    /// - Returns: `nil` when the key is unknown (or did not exist yet at `asOf`).
    public func row(_ entity: Entity, key: String, asOf: PostgresTimestamp? = nil, in session: Session) throws
        -> CanonicalRow?
    {
        try requireBuilt(session)
        let keyColumn = quoteIdentifier(entity.keyColumn)
        let result: QueryResult
        let table: String
        if let asOf {
            table = schema.name + "." + entity.tableName + "_history"
            result = try session.query(
                """
                SELECT \(ReadModelRows.selectList(entity)) FROM \(schema.history(entity))
                WHERE \(keyColumn) = $1 AND valid_from <= $2 AND (valid_to IS NULL OR valid_to > $2)
                """, [key, asOf])
        } else {
            table = schema.name + "." + entity.tableName
            result = try session.query(
                "SELECT \(ReadModelRows.selectList(entity)) FROM \(schema.table(entity)) WHERE \(keyColumn) = $1", [key])
        }
        return try result.first.map { try ReadModelRows.canonicalRow(entity, from: $0, table: table) }
    }

    /// Every version of a row, oldest first: each valid from `validFrom` until `validTo`
    /// (`nil` for the current version).
    public func history(_ entity: Entity, key: String, in session: Session) throws -> [TemporalVersion] {
        try requireBuilt(session)
        let table = schema.name + "." + entity.tableName + "_history"
        return try session.query(
            """
            SELECT valid_from, valid_to, \(ReadModelRows.selectList(entity)) FROM \(schema.history(entity))
            WHERE \(quoteIdentifier(entity.keyColumn)) = $1 ORDER BY valid_from
            """, [key]
        ).rows.map { row in
            TemporalVersion(
                validFrom: try row.decode(at: 0), validTo: try row.decode(at: 1, as: PostgresTimestamp?.self),
                row: try ReadModelRows.canonicalRow(entity, from: row, offset: 2, table: table))
        }
    }
}

/// One version of a canonical row in business time.
public struct TemporalVersion: Sendable, Hashable {
    /// When this version took effect (the business time of the event that made it).
    public var validFrom: PostgresTimestamp
    /// When the next version took effect; `nil` for the current one.
    public var validTo: PostgresTimestamp?
    public var row: CanonicalRow
}
