import TextFormats
import Billing

/// The `json` format: one compact object whose keys come in a fixed order, so two runs over the
/// same data produce the same bytes and scripts can diff or grep them.
///
/// Counts are JSON integers, SQL NULL is `null`, and every string goes through
/// ``JSONValue/quoted(_:)`` (quotes, backslashes and control characters escaped; everything else,
/// non-ASCII included, kept as UTF-8).
///
/// Top-level key order: `clean`, `exit_code`, `legacy`, `store`, `mapping`, `read_schema`,
/// `max_rows`, `duration_ms`, `notes`, `entities`, `invariants`. `notes` is always present (an
/// array of strings, empty when there is nothing to say) and sits with the run-level fields,
/// before the long per-entity lists, so `head` or a log excerpt shows it.
struct DiffJSONRenderer {
    let report: DiffReport

    var rendered: String {
        let object: JSONValue = .object([
            ("clean", .bool(report.isClean)),
            ("exit_code", .integer(Int64(report.exitCode))),
            ("legacy", .string(report.legacy)),
            ("store", .string(report.store)),
            ("mapping", .string(report.mapping)),
            ("read_schema", .string(report.readSchema)),
            ("max_rows", .integer(Int64(report.maxRows))),
            ("duration_ms", .integer(DiffFormatting.milliseconds(report.duration))),
            ("notes", .array(report.notes.map(JSONValue.string))),
            ("entities", .array(report.entities.map(Self.entity))),
            ("invariants", .array(report.invariants.map(Self.invariant))),
        ])
        return object.rendered + "\n"
    }

    private static func entity(_ e: EntityDiff) -> JSONValue {
        .object([
            ("entity", .string(e.entity.rawValue)),
            ("legacy_rows", .integer(e.legacyRows)),
            ("ledger_rows", .integer(e.ledgerRows)),
            ("compared", .integer(e.compared)),
            ("matched", .integer(e.matched)),
            ("missing_in_ledger", .integer(e.missingInLedger)),
            ("extra_in_ledger", .integer(e.extraInLedger)),
            ("mismatched", .integer(e.mismatched)),
            ("resolved_by_reverification", .integer(e.resolvedByReverification)),
            ("quarantined", .integer(e.quarantined)),
            ("buckets_compared", .integer(e.bucketsCompared)),
            ("rows_fetched", .integer(e.rowsFetched)),
            ("truncated", .bool(e.isTruncated)),
            ("differences", .array(e.differences.map(difference))),
            ("quarantine", .array(e.quarantine.map(quarantined))),
            ("duration_ms", .integer(DiffFormatting.milliseconds(e.duration))),
        ])
    }

    private static func difference(_ d: RowDifference) -> JSONValue {
        .object([
            ("key", .string(d.key)),
            ("kind", .string(d.kind.rawValue)),
            (
                "columns",
                .array(
                    d.columns.map { column in
                        .object([
                            ("column", .string(column.column)),
                            ("legacy", column.legacy.map(JSONValue.string) ?? .null),
                            ("ledger", column.ledger.map(JSONValue.string) ?? .null),
                        ])
                    })
            ),
        ])
    }

    private static func quarantined(_ row: QuarantinedRow) -> JSONValue {
        .object([("key", .string(row.key)), ("reason", .string(row.reason)), ("detail", .string(row.detail))])
    }

    private static func invariant(_ i: InvariantResult) -> JSONValue {
        .object([
            ("name", .string(i.name)),
            ("summary", .string(i.summary)),
            ("holds", .bool(i.holds)),
            ("checked", .integer(i.checked)),
            ("violations", .integer(i.violations)),
            (
                "offending",
                .array(i.offending.map { .object([("key", .string($0.key)), ("detail", .string($0.detail))]) })
            ),
        ])
    }
}
