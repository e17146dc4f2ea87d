import TextFormats
import Billing

/// The `markdown` format: GitHub-flavoured Markdown for a pull-request comment or a CI job
/// summary (`$GITHUB_STEP_SUMMARY`).
///
/// Values from either database are shown as code spans, so nothing in them is read as markup;
/// free text (reasons, details, rules) is backslash-escaped instead. Long lists are collapsed in
/// `<details>` so the verdict and the summary table stay on the first screen.
struct DiffMarkdownRenderer {
    let report: DiffReport

    /// Lists longer than this are collapsed.
    static let collapseAbove = 10

    var rendered: String {
        var blocks = [heading, context, entityTable]
        // Right under the summary: a note qualifies the verdict in the heading (a projection that
        // had not caught up, re-verification skipped, differences not all kept).
        if !report.notes.isEmpty { blocks += notes }
        if report.entities.contains(where: { !$0.isClean }) { blocks += differences }
        if report.entities.contains(where: { $0.quarantined > 0 }) { blocks += quarantine }
        if !report.invariants.isEmpty { blocks += invariants }
        return blocks.joined(separator: "\n\n") + "\n"
    }

    private var heading: String {
        if report.isClean { return "## ✅ ledgerlift diff: clean" }
        return "## ❌ ledgerlift diff: "
            + DiffFormatting.count(report.differenceCount, "difference", "differences") + ", "
            + DiffFormatting.count(Int64(report.brokenInvariantCount), "broken invariant", "broken invariants")
    }

    private var context: String {
        var parts = [
            "Legacy " + Self.code(report.legacy, inTable: false),
            "store " + Self.code(report.store, inTable: false),
            "mapping " + Self.code(report.mapping, inTable: false),
            "read schema " + Self.code(report.readSchema, inTable: false),
            "\(DiffFormatting.seconds(report.duration))s",
            "lists show at most \(report.maxRows) rows (`--max-rows`)",
        ]
        let quarantined = DiffFormatting.quarantined(report)
        if quarantined > 0 {
            parts.append(DiffFormatting.count(quarantined, "quarantined row", "quarantined rows") + " not compared")
        }
        return parts.joined(separator: " · ")
    }

    private var entityTable: String {
        Self.table(
            [
                "entity", "legacy rows", "ledger rows", "matched", "missing", "extra", "mismatched", "quarantined",
                "resolved by re-verification",
            ],
            alignments: [":--"] + Array(repeating: "--:", count: 8),
            report.entities.map { e in
                [Self.code(e.entity.rawValue)]
                    + [
                        e.legacyRows, e.ledgerRows, e.matched, e.missingInLedger, e.extraInLedger, e.mismatched,
                        e.quarantined, e.resolvedByReverification,
                    ].map(String.init)
            }
        )
    }

    private var notes: [String] {
        ["### Notes", report.notes.map { "- " + Self.listItem($0) }.joined(separator: "\n")]
    }

    private var differences: [String] {
        var blocks = ["### Differences"]
        for e in report.entities where !e.isClean {
            blocks.append(
                "#### \(Self.code(e.entity.rawValue, inTable: false)): "
                    + DiffFormatting.count(e.differenceCount, "difference", "differences")
                    + " (\(e.missingInLedger) missing in ledger, \(e.extraInLedger) extra in ledger, "
                    + "\(e.mismatched) mismatched)"
            )
            var rows = [[String]]()
            for difference in e.differences {
                let key = Self.code(difference.key)
                let kind = difference.kind.rawValue
                // A missing or extra row carries every column with one side NULL; listing them
                // all would bury the mismatches (the JSON format has them).
                guard difference.kind == .mismatched, !difference.columns.isEmpty else {
                    rows.append([key, kind, "", "", ""])
                    continue
                }
                // Key and kind repeat on every column's line so each line reads on its own (and
                // survives being sorted or copied out of the table).
                for column in difference.columns {
                    rows.append([
                        key, kind, Self.code(column.column), Self.value(column.legacy), Self.value(column.ledger),
                    ])
                }
            }
            if !rows.isEmpty {
                blocks.append(
                    Self.collapsible(
                        Self.table(["key", "kind", "column", "legacy", "ledger"], rows), rows: rows.count
                    )
                )
            }
            let unlisted = DiffFormatting.unlisted(e.differenceCount, listed: e.differences.count)
            if unlisted > 0 { blocks.append(Self.truncationNote(unlisted)) }
        }
        return blocks
    }

    private var quarantine: [String] {
        var blocks = ["### Quarantined by the backfill or shadow mode (not compared)"]
        for e in report.entities where e.quarantined > 0 {
            blocks.append(
                "#### \(Self.code(e.entity.rawValue, inTable: false)): "
                    + DiffFormatting.count(e.quarantined, "row", "rows")
            )
            let rows = e.quarantine.map { [Self.code($0.key), Self.text($0.reason), Self.text($0.detail)] }
            if !rows.isEmpty {
                blocks.append(Self.collapsible(Self.table(["key", "reason", "detail"], rows), rows: rows.count))
            }
            let unlisted = DiffFormatting.unlisted(e.quarantined, listed: e.quarantine.count)
            if unlisted > 0 { blocks.append(Self.truncationNote(unlisted)) }
        }
        return blocks
    }

    private var invariants: [String] {
        var blocks = [
            "### Invariants",
            Self.table(
                ["invariant", "result", "checked", "violations", "rule"],
                alignments: [":--", ":--", "--:", "--:", ":--"],
                report.invariants.map {
                    [
                        Self.code($0.name), $0.holds ? "✅ holds" : "❌ broken", String($0.checked),
                        String($0.violations),
                        Self.text($0.summary),
                    ]
                }
            ),
        ]
        for invariant in report.invariants where !invariant.holds {
            blocks.append(
                "#### \(Self.code(invariant.name, inTable: false)): "
                    + DiffFormatting.count(invariant.violations, "violation", "violations")
            )
            let rows = invariant.offending.map { [Self.code($0.key), Self.text($0.detail)] }
            if !rows.isEmpty {
                blocks.append(Self.collapsible(Self.table(["key", "detail"], rows), rows: rows.count))
            }
            let unlisted = DiffFormatting.unlisted(invariant.violations, listed: invariant.offending.count)
            if unlisted > 0 { blocks.append(Self.truncationNote(unlisted)) }
        }
        return blocks
    }

    // MARK: Building blocks

    private static func table(_ header: [String], alignments: [String]? = nil, _ rows: [[String]]) -> String {
        func line(_ cells: [String]) -> String { "| " + cells.joined(separator: " | ") + " |" }
        let rule = "|" + (alignments ?? Array(repeating: "---", count: header.count)).joined(separator: "|") + "|"
        return ([line(header), rule] + rows.map(line)).joined(separator: "\n")
    }

    /// `block` folded into `<details>` when it has more than ``collapseAbove`` rows. The blank
    /// lines around it are what lets GitHub render Markdown inside the HTML element.
    private static func collapsible(_ block: String, rows: Int) -> String {
        guard rows > collapseAbove else { return block }
        return "<details><summary>\(rows) rows</summary>\n\n" + block + "\n\n</details>"
    }

    private static func truncationNote(_ unlisted: Int64) -> String {
        "… and \(unlisted) more; raise `--max-rows`."
    }

    // MARK: Escaping

    /// A canonical value: SQL NULL and the empty string in italics (an empty code span cannot be
    /// written), anything else as code, so the text `NULL` and a NULL never look alike.
    static func value(_ value: String?) -> String {
        guard let value else { return "*NULL*" }
        return value.isEmpty ? "*empty*" : code(value)
    }

    /// `text` as a code span that shows exactly `text`.
    ///
    /// No escape works inside a code span, so the fence is one backtick longer than the longest
    /// run of backticks in the text, and padded with a space on each side when the text starts or
    /// ends with a backtick (or with spaces on both ends, which CommonMark would strip once).
    /// Control characters become their visible Control Pictures (a newline would end the table
    /// row). In a table cell, `|` is escaped as `\|`: GFM splits cells before it parses code
    /// spans, and removes exactly one backslash before a pipe, even inside a span.
    static func code(_ text: String, inTable: Bool = true) -> String {
        var body = visible(text)
        if inTable { body = body.replacingPipes() }
        // Scalars, not Characters: a backtick or pipe followed by a combining mark is one
        // Character to Swift but still a backtick or pipe to a Markdown parser.
        let scalars = body.unicodeScalars
        var longestRun = 0
        var run = 0
        for scalar in scalars {
            run = scalar == "`" ? run + 1 : 0
            longestRun = max(longestRun, run)
        }
        let fence = String(repeating: "`", count: longestRun + 1)
        let pad =
            scalars.first == "`" || scalars.last == "`"
            || (scalars.first == " " && scalars.last == " " && scalars.contains { $0 != " " })
        return pad ? fence + " " + body + " " + fence : fence + body + fence
    }

    /// Free text with every character Markdown or the HTML it allows could read as markup
    /// backslash-escaped, and line breaks as `<br>` (the only line break a table cell can hold).
    static func text(_ text: String) -> String {
        var out = ""
        var lastWasCR = false
        for scalar in text.unicodeScalars {
            defer { lastWasCR = scalar == "\r" }
            switch scalar {
            case "\n" where lastWasCR: continue
            case "\n", "\r": out += "<br>"
            case "\\", "`", "*", "_", "[", "]", "<", ">", "|", "&", "~", "!", "#":
                out += "\\"
                out.unicodeScalars.append(scalar)
            default:
                out.unicodeScalars.append(picture(scalar))
            }
        }
        return out
    }

    /// Free text as the content of a one-line list item: ``text(_:)``, with surrounding whitespace
    /// dropped (four leading spaces would open a code block) and a leading `-`, `+` or `=`, or the
    /// `.` or `)` after leading digits, escaped so the text cannot open a nested list or rule.
    static func listItem(_ note: String) -> String {
        var trimmed = Substring(note)
        while trimmed.first?.isWhitespace == true { trimmed.removeFirst() }
        while trimmed.last?.isWhitespace == true { trimmed.removeLast() }
        let escaped = text(String(trimmed))
        let scalars = Array(escaped.unicodeScalars)
        guard let first = scalars.first else { return escaped }
        var out = ""
        if "-+=".unicodeScalars.contains(first) {
            out = "\\"
            out.unicodeScalars.append(contentsOf: scalars)
            return out
        }
        let digits = scalars.prefix { ("0"..."9").contains($0) }.count
        // CommonMark ordered-list markers have one to nine digits.
        if (1...9).contains(digits), digits < scalars.count, scalars[digits] == "." || scalars[digits] == ")" {
            out.unicodeScalars.append(contentsOf: scalars[..<digits])
            out += "\\"
            out.unicodeScalars.append(contentsOf: scalars[digits...])
            return out
        }
        return escaped
    }

    /// `text` with C0 controls and DEL replaced by their Control Pictures (U+2400…U+2421).
    private static func visible(_ text: String) -> String {
        var out = ""
        out.unicodeScalars.append(contentsOf: text.unicodeScalars.map(picture))
        return out
    }

    private static func picture(_ scalar: Unicode.Scalar) -> Unicode.Scalar {
        switch scalar.value {
        case 0..<0x20: Unicode.Scalar(0x2400 + scalar.value) ?? scalar
        case 0x7F: "\u{2421}"
        default: scalar
        }
    }
}

extension String {
    fileprivate func replacingPipes() -> String {
        var out = ""
        for scalar in unicodeScalars {
            if scalar == "|" { out += "\\" }
            out.unicodeScalars.append(scalar)
        }
        return out
    }
}
