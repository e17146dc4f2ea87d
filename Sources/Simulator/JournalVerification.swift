import Billing
import TextFormats

/// One acknowledged effect that is not in the final system.
public struct JournalFailure: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// The row must exist and does not.
        case lost = "LOST"
        /// The row exists and a field holds another value than the last operation that set it
        /// wrote.
        case altered = "ALTERED"
        /// The row was deleted and exists.
        case resurrected = "RESURRECTED"
    }

    public let kind: Kind
    public let entity: Entity
    public let key: String
    /// The altered field (``Kind/altered`` only).
    public let field: String?
    /// What the journal says it must hold (`nil`: NULL), for ``Kind/altered``.
    public let expected: String?
    /// What it holds (`nil`: NULL), for ``Kind/altered``.
    public let actual: String?
    /// The operations whose writes are missing: for a lost row, the one that created it first,
    /// then every other op that set a field it must hold; for an altered field, the op that
    /// set it last; for a resurrected row, the op that deleted it.
    public let ops: [JournalStamp]
    /// The summary of the operation that created a lost row (its journal line's `summary`).
    public let summary: String?

    /// The op the failure is listed under.
    public var op: UInt64 { ops.first?.op ?? 0 }
}

/// The outcome of `ledgerlift simulate verify`: every expectation the journal states, checked.
public struct JournalVerification: Sendable {
    /// What the journal was checked against.
    public enum Target: String, Sendable, Hashable {
        case legacy
        case store
    }

    /// The journal's path.
    public var journal: String
    public var target: Target
    /// The database, its password masked.
    public var database: String
    /// The legacy schema or the read models' schema.
    public var schema: String
    /// Failures listed at most (all are counted).
    public var maxRows: Int

    /// Complete journal lines read.
    public var lines = 0
    /// Acknowledged operations folded (their effects are required).
    public var operations = 0
    /// Operations prepared and not acknowledged: their effects are allowed, not required.
    public var inDoubt = 0
    public var effects = 0
    /// Distinct rows the journal states something about.
    public var rows = 0
    /// Rows looked up (each of `rows`, present or absent).
    public var rowsChecked = 0
    /// Field values compared (of the rows found).
    public var fieldsChecked = 0
    /// Rows that must be absent (deleted), among `rowsChecked`.
    public var deletedRowsChecked = 0
    public var lost = 0
    public var alteredFields = 0
    public var alteredRows = 0
    public var resurrected = 0
    /// The cut-off last line, ignored.
    public var truncated: TruncatedJournalLine?
    /// The first `maxRows` failures by op id.
    public var failures: [JournalFailure] = []
    public var notes: [String] = []
    public var duration: Duration = .zero

    public init(journal: String, target: Target, database: String, schema: String, maxRows: Int) {
        self.journal = journal
        self.target = target
        self.database = database
        self.schema = schema
        self.maxRows = maxRows
    }

    /// Every failure, counted.
    public var failureCount: Int { lost + alteredFields + resurrected }
    /// Every acknowledged effect is present.
    public var isClean: Bool { failureCount == 0 }
    /// 0 clean, 1 some write lost, altered or resurrected.
    public var exitCode: Int32 { isClean ? 0 : 1 }
    /// Failures counted beyond those listed.
    public var unlisted: Int { failureCount - failures.count }

    /// The op ids of the listed failures, ascending, each once.
    public var failingOps: [UInt64] {
        Array(Set(failures.flatMap { $0.ops.map(\.op) })).sorted()
    }

    /// The note about the cut-off last line.
    public var truncatedNote: String? {
        guard let truncated else { return nil }
        let what = truncated.op.map { "op \($0)'s line" } ?? "a partial line"
        return "line \(truncated.line) (\(truncated.bytes) bytes, \(what)) has no newline at its end: "
            + "it was cut off by a crash (the writer flushes a whole line before the operation goes on), "
            + "so it acknowledges nothing and was ignored"
    }

    // MARK: - Renderings

    /// The report in a log: a header, the figures, each failure on one line, the verdict last.
    public var text: String {
        var out =
            "simulate verify: journal \(journal) against the \(target == .legacy ? "legacy database" : "ledger's read models") "
            + "\(database) (schema \(schema))\n"
        out +=
            "journal:  \(operations) acknowledged operations, \(effects) effects, on \(rows) rows, "
            + "\(inDoubt) in doubt (\(lines) lines)\n"
        out +=
            "checked:  \(rowsChecked) rows (\(deletedRowsChecked) deleted), \(fieldsChecked) fields in "
            + Self.seconds(duration) + "\n"
        for note in (truncatedNote.map { [$0] } ?? []) + notes { out += "note:     \(note)\n" }
        for failure in failures { out += Self.line(failure) + "\n" }
        if unlisted > 0 { out += "… and \(unlisted) more failures (--max-rows \(maxRows))\n" }
        if isClean {
            out += "verdict:  clean: every acknowledged effect of \(operations) operations is present\n"
        } else {
            out +=
                "verdict:  \(Self.count(lost, "lost row")), \(Self.count(alteredFields, "altered field")) "
                + "(in \(Self.count(alteredRows, "row"))), \(Self.count(resurrected, "resurrected row"))"
            let ops = failingOps
            if !ops.isEmpty {
                out += " — ops " + ops.map(String.init).joined(separator: ", ") + (unlisted > 0 ? ", …" : "")
            }
            out += "\n"
        }
        return out
    }

    static func line(_ f: JournalFailure) -> String {
        let row = "\(f.entity) \(f.key)"
        let ops = f.ops.map { "\($0) at \($0.time)" }.joined(separator: ", ")
        switch f.kind {
        case .lost:
            return "LOST        \(row): absent; written by \(ops)"
                + (f.summary.map { ": " + JSONValue.quoted($0) } ?? "")
        case .altered:
            return "ALTERED     \(row) \(f.field ?? ""): expected \(shown(f.expected)), actual \(shown(f.actual)); "
                + "set by \(ops)"
        case .resurrected:
            return "RESURRECTED \(row): present; deleted by \(ops)"
        }
    }

    static func shown(_ value: String?) -> String { value.map(JSONValue.quoted) ?? "NULL" }

    static func count(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }

    static func seconds(_ d: Duration) -> String {
        let ms = milliseconds(d)
        return "\(ms / 1000).\(String(repeating: "0", count: 3 - String(ms % 1000).count))\(ms % 1000) s"
    }

    static func milliseconds(_ d: Duration) -> Int64 {
        d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }

    /// The report as one JSON object whose keys come in a fixed order (two runs over the same
    /// data give the same bytes, but for `duration_ms`):
    /// `clean`, `exit_code`, `journal`, `target`, `database`, `schema`, `max_rows`,
    /// `duration_ms`, `notes`, `truncated_line`, `lines`, `operations`, `in_doubt`, `effects`, `rows`,
    /// `rows_checked`, `deleted_rows_checked`, `fields_checked`, `lost`, `altered_fields`,
    /// `altered_rows`, `resurrected`, `unlisted`, `failing_ops`, `failures`.
    public var json: String {
        let truncatedLine: JSONValue =
            truncated.map { t in
                .object([
                    ("line", .integer(Int64(t.line))), ("bytes", .integer(Int64(t.bytes))),
                    ("op", t.op.map { .integer(Int64(bitPattern: $0)) } ?? .null),
                ])
            } ?? .null
        let object: JSONValue = .object([
            ("clean", .bool(isClean)),
            ("exit_code", .integer(Int64(exitCode))),
            ("journal", .string(journal)),
            ("target", .string(target.rawValue)),
            ("database", .string(database)),
            ("schema", .string(schema)),
            ("max_rows", .integer(Int64(maxRows))),
            ("duration_ms", .integer(Self.milliseconds(duration))),
            ("notes", .array(((truncatedNote.map { [$0] } ?? []) + notes).map(JSONValue.string))),
            ("truncated_line", truncatedLine),
            ("lines", .integer(Int64(lines))),
            ("operations", .integer(Int64(operations))),
            ("in_doubt", .integer(Int64(inDoubt))),
            ("effects", .integer(Int64(effects))),
            ("rows", .integer(Int64(rows))),
            ("rows_checked", .integer(Int64(rowsChecked))),
            ("deleted_rows_checked", .integer(Int64(deletedRowsChecked))),
            ("fields_checked", .integer(Int64(fieldsChecked))),
            ("lost", .integer(Int64(lost))),
            ("altered_fields", .integer(Int64(alteredFields))),
            ("altered_rows", .integer(Int64(alteredRows))),
            ("resurrected", .integer(Int64(resurrected))),
            ("unlisted", .integer(Int64(unlisted))),
            ("failing_ops", .array(failingOps.map { .integer(Int64(bitPattern: $0)) })),
            ("failures", .array(failures.map(Self.json))),
        ])
        return object.rendered + "\n"
    }

    static func json(_ f: JournalFailure) -> JSONValue {
        .object([
            ("kind", .string(f.kind.rawValue.lowercased())),
            ("entity", .string(f.entity.rawValue)),
            ("key", .string(f.key)),
            ("field", f.field.map(JSONValue.string) ?? .null),
            ("expected", f.kind == .altered ? (f.expected.map(JSONValue.string) ?? .null) : .null),
            ("actual", f.kind == .altered ? (f.actual.map(JSONValue.string) ?? .null) : .null),
            (
                "ops",
                .array(
                    f.ops.map { stamp in
                        .object([
                            ("op", .integer(Int64(bitPattern: stamp.op))), ("kind", .string(stamp.kind.rawValue)),
                            ("at", .string(stamp.time)),
                        ])
                    })
            ),
            ("summary", f.summary.map(JSONValue.string) ?? .null),
        ])
    }
}
