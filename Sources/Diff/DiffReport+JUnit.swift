import TextFormats
import Billing

/// The `junit` format: JUnit XML, the one report format every CI test reporter reads.
///
/// Two suites: `ledgerlift diff: rows` with a test case per entity, failing when its rows
/// differ, and `ledgerlift diff: invariants` with a test case per invariant, failing when it is
/// broken. Quarantined rows are not failures (the backfill already reported them and they do
/// not change the exit code), so they go to the entity's `<system-out>`. The report's notes are
/// not failures either: they go to the rows suite's own `<system-out>` (after its test cases, as
/// the JUnit schema orders it), one line each, which Jenkins and most reporters show as the
/// suite's standard output; the suite has no `<system-out>` when there are no notes.
struct DiffJUnitRenderer {
    let report: DiffReport

    var rendered: String {
        let failedEntities = report.entities.filter { !$0.isClean }.count
        let rowsTime = report.entities.reduce(Duration.zero) { $0 + $1.duration }
        var out = Self.prolog
        out +=
            "<testsuites name=\"ledgerlift diff\""
            + " tests=\"\(report.entities.count + report.invariants.count)\""
            + " failures=\"\(failedEntities + report.brokenInvariantCount)\" errors=\"0\""
            + " time=\"\(DiffFormatting.seconds(report.duration))\">\n"

        out +=
            "  <testsuite name=\"ledgerlift diff: rows\" tests=\"\(report.entities.count)\""
            + " failures=\"\(failedEntities)\" errors=\"0\" skipped=\"0\""
            + " time=\"\(DiffFormatting.seconds(rowsTime))\">\n"
        out += "    <properties>\n"
        for (name, value) in [
            ("legacy", report.legacy), ("store", report.store), ("mapping", report.mapping),
            ("read_schema", report.readSchema), ("max_rows", String(report.maxRows)),
        ] {
            out += "      <property name=\"\(name)\" value=\"\(Self.attribute(value))\"/>\n"
        }
        out += "    </properties>\n"
        for e in report.entities { out += entityCase(e) }
        if !report.notes.isEmpty {
            // Control characters escaped as in the text format, so each note stays one line.
            let lines = ["notes:"] + report.notes.map { "  - " + DiffTextRenderer.field($0) }
            out += "    <system-out>" + Self.text(lines.joined(separator: "\n")) + "</system-out>\n"
        }
        out += "  </testsuite>\n"

        // The report times entities but not invariants, so their cases say 0.000 rather than
        // a made-up share of the total; the total on <testsuites> is the true wall time.
        out +=
            "  <testsuite name=\"ledgerlift diff: invariants\" tests=\"\(report.invariants.count)\""
            + " failures=\"\(report.brokenInvariantCount)\" errors=\"0\" skipped=\"0\" time=\"0.000\">\n"
        for invariant in report.invariants { out += invariantCase(invariant) }
        out += "  </testsuite>\n"
        out += "</testsuites>\n"
        return out
    }

    private func entityCase(_ e: EntityDiff) -> String {
        var out =
            "    <testcase classname=\"ledgerlift.diff.rows\" name=\"\(Self.attribute(e.entity.rawValue))\""
            + " time=\"\(DiffFormatting.seconds(e.duration))\">\n"
        if !e.isClean {
            let lines =
                [
                    "\(e.missingInLedger) missing in ledger, \(e.extraInLedger) extra in ledger, \(e.mismatched) mismatched"
                ]
                + DiffTextRenderer.differenceLines(e, indent: "  ")
            out +=
                "      <failure message=\""
                + Self.attribute(DiffFormatting.count(e.differenceCount, "difference", "differences"))
                + "\" type=\"rows\">" + Self.text(lines.joined(separator: "\n")) + "</failure>\n"
        }
        var output = [
            "legacy rows \(e.legacyRows), ledger rows \(e.ledgerRows), compared \(e.compared), matched \(e.matched), "
                + "resolved by re-verification \(e.resolvedByReverification), quarantined \(e.quarantined), "
                + "buckets compared \(e.bucketsCompared), rows fetched \(e.rowsFetched)"
        ]
        if e.quarantined > 0 {
            output.append("quarantined by the backfill or shadow mode (not compared):")
            output += DiffTextRenderer.quarantineLines(e, indent: "  ")
        }
        out += "      <system-out>" + Self.text(output.joined(separator: "\n")) + "</system-out>\n"
        out += "    </testcase>\n"
        return out
    }

    private func invariantCase(_ invariant: InvariantResult) -> String {
        var out =
            "    <testcase classname=\"ledgerlift.diff.invariants\" name=\"\(Self.attribute(invariant.name))\""
            + " time=\"0.000\">\n"
        if !invariant.holds {
            let lines =
                [DiffTextRenderer.field(invariant.summary)] + DiffTextRenderer.offendingLines(invariant, indent: "  ")
            out +=
                "      <failure message=\""
                + Self.attribute(DiffFormatting.count(invariant.violations, "violation", "violations"))
                + "\" type=\"invariant\">" + Self.text(lines.joined(separator: "\n")) + "</failure>\n"
        }
        out +=
            "      <system-out>"
            + Self.text(DiffTextRenderer.field(invariant.summary) + " (checked \(invariant.checked))")
            + "</system-out>\n"
        out += "    </testcase>\n"
        return out
    }

    static func error(_ message: String) -> String {
        let text = message.isEmpty ? "ledgerlift diff could not run" : message
        // Reporters show the attribute as a one-line title; the element keeps the whole story.
        let title =
            text.split(maxSplits: 1, omittingEmptySubsequences: false, whereSeparator: \.isNewline)
            .first.map(String.init) ?? text
        return prolog
            + "<testsuites name=\"ledgerlift diff\" tests=\"1\" failures=\"0\" errors=\"1\" time=\"0.000\">\n"
            + "  <testsuite name=\"ledgerlift diff\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\" time=\"0.000\">\n"
            + "    <testcase classname=\"ledgerlift.diff\" name=\"ledgerlift diff\" time=\"0.000\">\n"
            + "      <error message=\"\(attribute(title))\" type=\"could not run\">\(Self.text(text))</error>\n"
            + "    </testcase>\n"
            + "  </testsuite>\n"
            + "</testsuites>\n"
    }

    private static let prolog = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"

    // MARK: Escaping

    /// `value` for a double-quoted attribute. Tabs and line breaks become character references
    /// because a parser normalizes literal ones in attributes to spaces.
    static func attribute(_ value: String) -> String { escape(value, attribute: true) }

    /// `value` as element content. A carriage return becomes a character reference because a
    /// parser turns a literal one into a line feed.
    static func text(_ value: String) -> String { escape(value, attribute: false) }

    /// The five predefined entities everywhere (so the output never depends on context), and
    /// characters XML 1.0 does not allow at all — C0 controls other than tab, line feed and
    /// carriage return, U+FFFE and U+FFFF — replaced: a single one would make the whole report
    /// unparsable. C0 controls become their visible Control Pictures (U+2400…), the two
    /// non-characters U+FFFD.
    private static func escape(_ value: String, attribute: Bool) -> String {
        var out = ""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\r": out += "&#13;"
            case "\n" where attribute: out += "&#10;"
            case "\t" where attribute: out += "&#9;"
            case "\n", "\t": out.unicodeScalars.append(scalar)
            case "\u{FFFE}", "\u{FFFF}": out += "\u{FFFD}"
            default:
                if scalar.value < 0x20, let picture = Unicode.Scalar(0x2400 + scalar.value) {
                    out.unicodeScalars.append(picture)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }
}
