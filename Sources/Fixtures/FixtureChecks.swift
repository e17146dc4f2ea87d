import Foundation
import Postgres

/// One query of `fixtures/reference/checks.sql`: it returns the rows that break one arithmetic
/// rule of the legacy data, so zero rows means the rule holds.
public struct FixtureCheck: Sendable, Hashable, CustomStringConvertible {
    /// The check's name from its `-- check:` line, e.g. `C02 invoice_total_equals_sum_of_lines`.
    public let name: String
    /// The query text.
    public let sql: String

    /// The rule's code, e.g. `C02` (the first word of ``name``).
    public var code: String { String(name.split(separator: " ").first ?? Substring(name)) }

    public var description: String { name }
}

/// A row a check returned: something in the data that breaks the check's rule.
public struct FixtureCheckViolation: Sendable, Hashable, CustomStringConvertible {
    /// The check's code, e.g. `C07`.
    public let check: String
    /// The table of the offending row, e.g. `customers`.
    public let table: String
    /// The offending row's id.
    public let key: Int64?
    /// What the check saw, e.g. `balance=150.00 owed=99.00 unapplied_credit=0`.
    public let detail: String

    public var description: String { "\(check) \(table) \(key.map(String.init) ?? "-"): \(detail)" }
}

/// The checks of `checks.sql`, split into statements, and a way to run them.
///
/// The file's format (stated in its header): each query is preceded by a `-- check: <name>` line
/// and ends with a semicolon at the end of a line; semicolons appear nowhere else. Statements
/// without a `-- check:` line (the `SET search_path`) are setup.
public struct FixtureCheckSuite: Sendable {
    /// Statements to run before the checks, in order.
    public let setup: [String]
    /// The checks, in file order.
    public let checks: [FixtureCheck]

    /// Splits the text of `checks.sql`.
    public init(parsing text: String) {
        var setup: [String] = []
        var checks: [FixtureCheck] = []
        var pendingName: String?
        var statement: [Substring] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if statement.isEmpty, trimmed.hasPrefix("--") {
                let comment = trimmed.dropFirst(2).drop { $0 == " " }
                if comment.hasPrefix("check:") {
                    pendingName = String(comment.dropFirst("check:".count).drop { $0 == " " })
                }
                continue
            }
            if statement.isEmpty, trimmed.isEmpty { continue }
            statement.append(line)
            var end = trimmed
            while let last = end.last, last == " " || last == "\t" || last == "\r" { end.removeLast() }
            if end.hasSuffix(";") {
                let sql = statement.joined(separator: "\n")
                if let name = pendingName {
                    checks.append(FixtureCheck(name: name, sql: sql))
                } else {
                    setup.append(sql)
                }
                pendingName = nil
                statement.removeAll()
            }
        }
        self.setup = setup
        self.checks = checks
    }

    /// Loads and splits `reference/checks.sql` from `fixtures`.
    public init(fixtures: FixtureDirectory) throws(FixtureError) {
        self.init(parsing: try fixtures.contents(of: .checks))
    }

    /// The end of the fixture window C18 uses when none is given: the reference seed's and
    /// the default generation's (`2025-11-01`, exclusive).
    public static let defaultWindowEnd = PostgresTimestamp(microsecondsSinceEpoch: 1_761_955_200_000_000)

    /// Runs every check and returns what each one found, in file order.
    ///
    /// Runs in a read-only transaction; the session's `search_path` is restored afterwards.
    /// - Parameter windowEnd: the exclusive end of the window every event timestamp must lie
    ///   in (C18), set as `ledgerlift.window_end` for the transaction only; `nil` leaves the
    ///   file's default (2025-11-01), e.g. for data a simulation continued past it, pass the
    ///   simulation clock's last time plus a moment.
    /// - Throws: ``FixtureError`` when the database has no `legacy` schema, or with the
    ///   check's name when a query fails.
    public func run(
        in session: Session, windowEnd: PostgresTimestamp? = nil
    ) throws -> [(check: FixtureCheck, violations: [FixtureCheckViolation])] {
        // Said in a sentence: otherwise the first check fails with 42P01 (undefined table).
        guard try session.query("SELECT to_regnamespace('legacy') IS NOT NULL").rows[0].decode(at: 0, as: Bool.self) else {
            throw FixtureError(
                code: .database,
                message: "the database has no `legacy` schema to check: load the reference fixture "
                    + "(`ledgerlift fixture load`) or generate one (`ledgerlift fixture generate`) first")
        }
        let savedPath = try session.query("SELECT current_setting('search_path')").rows[0].decode(at: 0, as: String.self)
        defer { _ = try? session.execute("SELECT set_config('search_path', $1, false)", [savedPath]) }
        return try session.transaction(TransactionOptions(readOnly: true)) { tx in
            if let windowEnd {
                // A `timestamp` literal in UTC (the columns are timestamp without time zone).
                let text = String(windowEnd.iso8601.dropLast()).replacingOccurrences(of: "T", with: " ")
                try tx.execute("SELECT set_config('ledgerlift.window_end', $1, true)", [text])
            }
            for statement in setup { try tx.executeScript(statement) }
            return try checks.map { check in
                do {
                    let rows = try tx.query(check.sql).rows
                    let violations = try rows.map { row in
                        FixtureCheckViolation(
                            check: try row.decode(at: 0, as: String?.self) ?? check.code,
                            table: try row.decode(at: 1, as: String?.self) ?? "",
                            key: try row.decode(at: 2, as: Int64?.self),
                            detail: try row.decode(at: 3, as: String?.self) ?? "")
                    }
                    return (check, violations)
                } catch {
                    throw FixtureError.database("check \(check.name) failed to run", error)
                }
            }
        }
    }
}
