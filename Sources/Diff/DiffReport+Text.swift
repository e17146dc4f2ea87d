import TextFormats
import Billing

/// The `text` format: aligned plain text for a terminal or a CI log.
///
/// Data from either database is printed with control characters escaped, so a stray escape
/// sequence or newline in a legacy value can neither repaint the terminal nor forge report lines.
struct DiffTextRenderer {
    let report: DiffReport

    var rendered: String {
        var sections = [header, entityTable]
        if report.entities.contains(where: { !$0.isClean }) { sections.append(differences) }
        if report.entities.contains(where: { $0.quarantined > 0 }) { sections.append(quarantine) }
        if !report.invariants.isEmpty { sections.append(invariants) }
        // Last before the verdict, where the eye lands in a terminal or at the end of a CI log.
        if !report.notes.isEmpty { sections.append(notes) }
        sections.append(verdict)
        return sections.joined(separator: "\n\n") + "\n"
    }

    private var header: String {
        let fields = [
            ("legacy", report.legacy), ("store", report.store), ("mapping", report.mapping),
            ("read schema", report.readSchema),
        ]
        let width = fields.map(\.0.count).max() ?? 0
        return
            (["ledgerlift diff"]
            + fields.map { name, value in
                "  " + name + String(repeating: " ", count: width - name.count) + "  " + Self.field(value)
            }).joined(separator: "\n")
    }

    private var entityTable: String {
        let rows = report.entities.map { e in
            [e.entity.rawValue]
                + [
                    e.legacyRows, e.ledgerRows, e.matched, e.missingInLedger, e.extraInLedger, e.mismatched,
                    e.quarantined, e.resolvedByReverification,
                ].map(String.init)
        }
        var out = TextTable(
            [
                "entity", "legacy rows", "ledger rows", "matched", "missing", "extra", "mismatched", "quarantined",
                "resolved",
            ],
            rows, rightAligned: Set(1...8)
        ).rendered
        // The column is easy to misread as "fixed"; say what it counts where it matters.
        if report.entities.contains(where: { $0.resolvedByReverification > 0 }) {
            out +=
                "\nresolved: differences gone on a re-check after the projection caught up (racing writes);"
                + " not counted"
        }
        return out
    }

    private var differences: String {
        var lines = ["Differences"]
        for e in report.entities where !e.isClean {
            lines.append("")
            lines.append(
                "\(e.entity): \(DiffFormatting.count(e.differenceCount, "difference", "differences")) ("
                    + "\(e.missingInLedger) missing in ledger, \(e.extraInLedger) extra in ledger, "
                    + "\(e.mismatched) mismatched)"
            )
            lines += Self.differenceLines(e, indent: "  ")
        }
        return lines.joined(separator: "\n")
    }

    /// One line per listed difference (key and kind), one more per differing column of a
    /// mismatch, and the truncation note; shared with the JUnit failure text.
    static func differenceLines(_ e: EntityDiff, indent: String) -> [String] {
        let keys = e.differences.map { value($0.key) }
        let keyWidth = keys.map(\.count).max() ?? 0
        var lines = [String]()
        for (difference, key) in zip(e.differences, keys) {
            lines.append(indent + pad(key, keyWidth) + "  " + difference.kind.rawValue)
            // A missing or extra row carries every column with one side NULL; repeating them
            // all would bury the mismatches, and the JSON format has them for whoever needs them.
            guard difference.kind == .mismatched else { continue }
            let columnWidth = difference.columns.map { field($0.column).count }.max() ?? 0
            for column in difference.columns {
                lines.append(
                    indent + "    " + pad(field(column.column), columnWidth) + "  "
                        + value(column.legacy) + " → " + value(column.ledger)
                )
            }
        }
        let unlisted = DiffFormatting.unlisted(e.differenceCount, listed: e.differences.count)
        if unlisted > 0 { lines.append(indent + DiffFormatting.truncationNote(unlisted)) }
        return lines
    }

    private var quarantine: String {
        var lines = ["Quarantined by the backfill or shadow mode (not compared)"]
        for e in report.entities where e.quarantined > 0 {
            lines.append("")
            lines.append("\(e.entity): \(DiffFormatting.count(e.quarantined, "row", "rows"))")
            lines += Self.quarantineLines(e, indent: "  ")
        }
        return lines.joined(separator: "\n")
    }

    /// One line per listed quarantined row (key, reason, detail) and the truncation note;
    /// shared with the JUnit `<system-out>`.
    static func quarantineLines(_ e: EntityDiff, indent: String) -> [String] {
        let keys = e.quarantine.map { value($0.key) }
        let reasons = e.quarantine.map { field($0.reason) }
        let keyWidth = keys.map(\.count).max() ?? 0
        let reasonWidth = reasons.map(\.count).max() ?? 0
        var lines = zip(e.quarantine, zip(keys, reasons)).map { row, keyAndReason in
            (indent + pad(keyAndReason.0, keyWidth) + "  " + pad(keyAndReason.1, reasonWidth) + "  "
                + field(row.detail)).trimmingTrailingSpaces()
        }
        let unlisted = DiffFormatting.unlisted(e.quarantined, listed: e.quarantine.count)
        if unlisted > 0 { lines.append(indent + DiffFormatting.truncationNote(unlisted)) }
        return lines
    }

    private var invariants: String {
        var out =
            "Invariants\n\n"
            + TextTable(
                ["invariant", "checked", "violations", "result"],
                report.invariants.map {
                    [Self.field($0.name), String($0.checked), String($0.violations), $0.holds ? "holds" : "BROKEN"]
                },
                rightAligned: [1, 2]
            ).rendered
        for invariant in report.invariants where !invariant.holds {
            out += "\n\n" + Self.field(invariant.name) + ": " + Self.field(invariant.summary) + "\n"
            out += Self.offendingLines(invariant, indent: "  ").joined(separator: "\n")
        }
        return out
    }

    /// One line per listed offending key (key, detail) and the truncation note; shared with the
    /// JUnit failure text.
    static func offendingLines(_ invariant: InvariantResult, indent: String) -> [String] {
        let keys = invariant.offending.map { value($0.key) }
        let keyWidth = keys.map(\.count).max() ?? 0
        var lines = zip(invariant.offending, keys).map { violation, key in
            (indent + pad(key, keyWidth) + "  " + field(violation.detail)).trimmingTrailingSpaces()
        }
        let unlisted = DiffFormatting.unlisted(invariant.violations, listed: invariant.offending.count)
        if unlisted > 0 { lines.append(indent + DiffFormatting.truncationNote(unlisted)) }
        return lines
    }

    /// One line per note, control characters escaped so a note cannot forge report lines.
    private var notes: String {
        (["Notes", ""] + report.notes.map { "  - " + Self.field($0) }).joined(separator: "\n")
    }

    private var verdict: String {
        var line = report.isClean ? "CLEAN: " : "NOT CLEAN: "
        line += DiffFormatting.count(report.differenceCount, "difference", "differences") + ", "
        line += DiffFormatting.count(Int64(report.brokenInvariantCount), "broken invariant", "broken invariants")
        let quarantined = DiffFormatting.quarantined(report)
        if quarantined > 0 {
            line += ", " + DiffFormatting.count(quarantined, "quarantined row", "quarantined rows") + " not compared"
        }
        return line + " (\(DiffFormatting.seconds(report.duration))s)"
    }

    // MARK: Escaping

    /// A canonical value: `NULL` for SQL NULL, and in double quotes with JSON-style escapes
    /// whenever the bare text could be misread — empty, the word `NULL`, leading or trailing
    /// whitespace, a leading quote, the ` → ` that separates the two sides, or characters that
    /// must be escaped.
    static func value(_ value: String?) -> String {
        guard let value else { return "NULL" }
        let needsQuotes =
            value.isEmpty || value == "NULL" || value.hasPrefix("\"") || value.contains(" → ")
            || value.first?.isWhitespace == true || value.last?.isWhitespace == true
            || value.unicodeScalars.contains(where: mustEscape)
        return needsQuotes ? "\"" + escaped(value, quote: true) + "\"" : value
    }

    /// Free text (names, reasons, details): printed bare, control characters escaped.
    static func field(_ text: String) -> String {
        text.unicodeScalars.contains(where: mustEscape) ? escaped(text, quote: false) : text
    }

    /// C0 and C1 controls and DEL: line breaks would forge report lines, and ESC or CSI would
    /// be interpreted by the terminal.
    private static func mustEscape(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }

    private static func escaped(_ text: String, quote: Bool) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"" where quote: out += "\\\""
            case "\\" where quote: out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if mustEscape(scalar) {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    private static func pad(_ s: String, _ width: Int) -> String {
        s + String(repeating: " ", count: max(0, width - s.count))
    }
}
