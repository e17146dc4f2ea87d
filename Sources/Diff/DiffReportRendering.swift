/// The output formats of `ledgerlift diff --format`.
public enum DiffFormat: String, Sendable, CaseIterable {
    /// Aligned plain text for a terminal or a log.
    case text
    /// One JSON object with a stable key order, for scripts.
    case json
    /// GitHub-flavoured Markdown, for a pull-request comment or a CI job summary.
    case markdown
    /// JUnit XML, for CI test reporters.
    case junit
}

extension DiffReport {
    /// The report in `format`. Every format ends with a newline, so the text can be written to a
    /// file or to standard output as is.
    public func rendered(_ format: DiffFormat) -> String {
        switch format {
        case .text: DiffTextRenderer(report: self).rendered
        case .json: DiffJSONRenderer(report: self).rendered
        case .markdown: DiffMarkdownRenderer(report: self).rendered
        case .junit: DiffJUnitRenderer(report: self).rendered
        }
    }
}

/// Renderings that have no ``DiffReport`` behind them.
public enum DiffReportRendering {
    /// A JUnit document for a run that could not compare anything (exit code 2): one test suite
    /// `ledgerlift diff` with one test case carrying an `<error>`, so a CI test reporter shows
    /// why instead of an empty or stale report. The attribute holds the first line of `message`,
    /// the element text all of it. `message` must already have its DSN passwords masked.
    public static func junitError(_ message: String) -> String {
        DiffJUnitRenderer.error(message)
    }
}

// MARK: - Shared helpers

/// Formatting shared by the renderers.
enum DiffFormatting {
    /// `d` in whole milliseconds, rounded half up; a negative duration (never measured, but
    /// representable) counts as zero rather than printing a minus sign into a report.
    static func milliseconds(_ d: Duration) -> Int64 {
        guard d > .zero else { return 0 }
        let (seconds, attoseconds) = d.components
        // 10^15 attoseconds are one millisecond; adding half of it first rounds to the nearest.
        return seconds * 1000 + (attoseconds + 500_000_000_000_000) / 1_000_000_000_000_000
    }

    /// `d` in seconds with exactly three decimals (`1.234`), by integer arithmetic so the digits
    /// never depend on floating-point printing or the locale.
    static func seconds(_ d: Duration) -> String {
        let ms = milliseconds(d)
        let fraction = String(ms % 1000)
        return "\(ms / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
    }

    /// `1 difference`, `2 differences`.
    static func count(_ n: Int64, _ singular: String, _ plural: String) -> String {
        "\(n) \(n == 1 ? singular : plural)"
    }

    /// How many of `total` a list of `listed` left out (never negative, whatever the counts say).
    static func unlisted(_ total: Int64, listed: Int) -> Int64 {
        max(0, total - Int64(listed))
    }

    /// The note under a list that `--max-rows` cut short.
    static func truncationNote(_ unlisted: Int64) -> String {
        "… and \(unlisted) more; raise --max-rows"
    }

    /// Quarantined rows over all entities.
    static func quarantined(_ report: DiffReport) -> Int64 {
        report.entities.reduce(0) { $0 + $1.quarantined }
    }
}
