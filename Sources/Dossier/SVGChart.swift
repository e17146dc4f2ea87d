import Billing
import Cutover
import EventStore
import Foundation
import Postgres
import Shadow
import TextFormats

/// Inline SVG charts: plain elements, no script, text escaped; every mark carries a `<title>`
/// (a browser's tooltip) with its exact figure.
struct SVGChart {
    static let width = 960.0
    var height = 240.0
    var left = 64.0
    var right = 16.0
    var top = 16.0
    var bottom = 36.0
    var body = ""

    var plotWidth: Double { Self.width - left - right }
    var plotHeight: Double { height - top - bottom }

    static func f(_ value: Double) -> String {
        let rounded = (value * 10).rounded() / 10
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
    }

    mutating func add(_ element: String) { body += element + "\n" }

    mutating func text(
        _ x: Double, _ y: Double, _ content: String, anchor: String = "start", cssClass: String = "axis"
    ) {
        add(
            "<text x=\"\(Self.f(x))\" y=\"\(Self.f(y))\" text-anchor=\"\(anchor)\" class=\"\(cssClass)\">"
                + HTML.escape(content) + "</text>")
    }

    func rendered(label: String) -> String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(Self.f(Self.width)) \(Self.f(height))\" "
            + "role=\"img\" aria-label=\"\(HTML.escape(label))\" class=\"chart\">\n<title>\(HTML.escape(label))</title>\n"
            + body + "</svg>"
    }

    /// The smallest of 1, 2, 2.5, 5 × 10ⁿ at or above `value` (at least 1).
    static func niceCeiling(_ value: Double) -> Double {
        guard value > 1 else { return 1 }
        var magnitude = 1.0
        while magnitude * 10 < value { magnitude *= 10 }
        for step in [1.0, 2, 2.5, 5, 10] where step * magnitude >= value { return step * magnitude }
        return 10 * magnitude
    }

    /// Horizontal grid lines and their labels for `0...maximum`.
    mutating func yAxis(maximum: Double, format: (Double) -> String) {
        for index in 0...4 {
            let value = maximum * Double(index) / 4
            let y = top + plotHeight - plotHeight * Double(index) / 4
            add(
                "<line x1=\"\(Self.f(left))\" y1=\"\(Self.f(y))\" x2=\"\(Self.f(left + plotWidth))\" y2=\"\(Self.f(y))\" class=\"grid\"/>"
            )
            text(left - 6, y + 4, format(value), anchor: "end")
        }
    }

    /// Time labels under the plot for `[start, end]` (microseconds), UTC.
    mutating func timeAxis(start: Int64, end: Int64) {
        let span = max(1, end - start)
        let days = span > 86_400_000_000
        for index in 0...4 {
            let t = start + span * Int64(index) / 4
            let iso = PostgresTimestamp(microsecondsSinceEpoch: t).iso8601
            // Seconds repeat on a short span: tenths then.
            let label =
                days
                ? String(iso.dropFirst(5).prefix(11)).replacingOccurrences(of: "T", with: " ")
                : String(iso.dropFirst(11).prefix(span < 20_000_000 ? 10 : 8))
            let x = left + plotWidth * Double(index) / 4
            text(x, top + plotHeight + 16, label, anchor: index == 0 ? "start" : index == 4 ? "end" : "middle")
        }
        text(left + plotWidth, top + plotHeight + 30, "UTC", anchor: "end")
    }

    func x(_ t: Int64, start: Int64, end: Int64) -> Double {
        left + plotWidth * Double(t - start) / Double(max(1, end - start))
    }

    func y(_ value: Double, maximum: Double) -> Double { top + plotHeight - plotHeight * value / max(maximum, 1e-9) }

    /// The freezes falling in `[start, end]`: a red band (at least 2 px wide) and a label.
    mutating func freezes(_ freezes: [MigrationDossier.Freeze], start: Int64, end: Int64) {
        for freeze in freezes {
            let (a, b) = (freeze.startedAt.microsecondsSinceEpoch, freeze.endedAt.microsecondsSinceEpoch)
            guard b >= start, a <= end else { continue }
            let x1 = x(max(a, start), start: start, end: end)
            let x2 = max(x(min(b, end), start: start, end: end), x1 + 2)
            let label =
                "freeze \(DossierFormat.milliseconds(freeze.milliseconds)) (\(freeze.from.rawValue) → \(freeze.to.rawValue))"
            add(
                "<rect x=\"\(Self.f(x1))\" y=\"\(Self.f(top))\" width=\"\(Self.f(x2 - x1))\" height=\"\(Self.f(plotHeight))\" class=\"freeze\">"
                    + "<title>\(HTML.escape(label + ", ended " + DossierFormat.time(freeze.endedAt)))</title></rect>")
            let anchor = x1 > left + plotWidth * 0.7 ? "end" : "start"
            text(anchor == "end" ? x1 - 4 : x2 + 4, top + 12, label, anchor: anchor, cssClass: "freeze-label")
        }
    }
}

extension MigrationDossier {
    /// Events written per bucket, the freezes marked.
    func writeRateSVG() -> String? {
        guard let series = writes, !series.buckets.isEmpty else { return nil }
        var chart = SVGChart()
        let maximum = SVGChart.niceCeiling(Double(series.buckets.map(\.count).max() ?? 0))
        chart.yAxis(maximum: maximum) { DossierFormat.number(Int64($0.rounded())) }
        let (start, end) = (series.start.microsecondsSinceEpoch, series.end.microsecondsSinceEpoch)
        let step = chart.plotWidth / Double(series.buckets.count)
        for (index, bucket) in series.buckets.enumerated() where bucket.count > 0 {
            // At least 2 px: a bucket with a few events among thousands stays visible.
            let y = min(chart.y(Double(bucket.count), maximum: maximum), chart.top + chart.plotHeight - 2)
            chart.add(
                "<rect x=\"\(SVGChart.f(chart.left + step * Double(index) + step * 0.1))\" y=\"\(SVGChart.f(y))\" "
                    + "width=\"\(SVGChart.f(max(1, step * 0.8)))\" height=\"\(SVGChart.f(chart.top + chart.plotHeight - y))\" class=\"bar\">"
                    + "<title>\(HTML.escape("\(DossierFormat.time(bucket.start)): \(DossierFormat.number(bucket.count)) event(s)"))</title></rect>"
            )
        }
        chart.timeAxis(start: start, end: end)
        chart.freezes(freezes, start: start, end: end)
        return chart.rendered(label: "Events written per \(DossierFormat.width(series.bucketSeconds))")
    }

    /// Lag p50 and p99 per bucket, the freezes marked.
    func lagSVG() -> String? {
        guard let series = lag.series, series.buckets.contains(where: { $0.count > 0 }) else { return nil }
        var chart = SVGChart()
        let maximum = SVGChart.niceCeiling(Double(series.buckets.compactMap(\.p99Milliseconds).max() ?? 0))
        chart.yAxis(maximum: maximum) { DossierFormat.milliseconds(Int64($0.rounded())) }
        let (start, end) = (series.start.microsecondsSinceEpoch, series.end.microsecondsSinceEpoch)
        let step = chart.plotWidth / Double(series.buckets.count)
        for (key, cssClass) in [(\Series.Bucket.p99Milliseconds, "p99"), (\Series.Bucket.p50Milliseconds, "p50")] {
            var points = [String]()
            for (index, bucket) in series.buckets.enumerated() {
                guard let value = bucket[keyPath: key] else { continue }
                let x = chart.left + step * (Double(index) + 0.5)
                let y = chart.y(Double(value), maximum: maximum)
                points.append("\(SVGChart.f(x)),\(SVGChart.f(y))")
                chart.add(
                    "<circle cx=\"\(SVGChart.f(x))\" cy=\"\(SVGChart.f(y))\" r=\"3\" class=\"\(cssClass)\">"
                        + "<title>\(HTML.escape("\(DossierFormat.time(bucket.start)): \(cssClass) \(DossierFormat.milliseconds(value)) over \(bucket.count) sample(s)"))</title></circle>"
                )
            }
            if points.count > 1 {
                chart.add("<polyline points=\"\(points.joined(separator: " "))\" class=\"line \(cssClass)\"/>")
            }
        }
        chart.timeAxis(start: start, end: end)
        chart.freezes(freezes, start: start, end: end)
        chart.text(chart.left + 8, chart.top + chart.plotHeight - 8, "— p99", cssClass: "legend p99")
        chart.text(chart.left + 64, chart.top + chart.plotHeight - 8, "— p50", cssClass: "legend p50")
        return chart.rendered(label: "Lag per \(DossierFormat.width(series.bucketSeconds)): p50 and p99")
    }

    /// One column per verification (oldest first): its height the rows compared, its colour the verdict.
    func verificationSVG() -> String? {
        let history = verifications.history
        guard !history.isEmpty else { return nil }
        var chart = SVGChart(height: 200)
        let maximum = SVGChart.niceCeiling(Double(history.map(\.rowsCompared).max() ?? 0))
        chart.yAxis(maximum: maximum) { DossierFormat.number(Int64($0.rounded())) }
        let step = chart.plotWidth / Double(max(history.count, 8))
        for (index, v) in history.enumerated() {
            let y = chart.y(Double(max(v.rowsCompared, 0)), maximum: maximum)
            let height = max(chart.top + chart.plotHeight - y, 3)
            let x = chart.left + step * Double(index) + step * 0.15
            let title =
                "#\(v.id) \(v.verdict.rawValue), finished \(DossierFormat.time(v.finishedAt)): "
                + "\(DossierFormat.number(v.rowsCompared)) row(s) compared, \(v.differences) difference(s), "
                + "\(v.persistentDifferences) persistent"
            chart.add(
                "<rect x=\"\(SVGChart.f(x))\" y=\"\(SVGChart.f(chart.top + chart.plotHeight - height))\" width=\"\(SVGChart.f(max(1, step * 0.7)))\" "
                    + "height=\"\(SVGChart.f(height))\" class=\"verdict-\(v.verdict.rawValue)\"><title>\(HTML.escape(title))</title></rect>"
            )
            if v.persistentDifferences > 0, history.count <= 60 {
                chart.text(
                    x + step * 0.35, chart.top + chart.plotHeight - height - 4,
                    DossierFormat.number(v.persistentDifferences),
                    anchor: "middle", cssClass: "axis diff-label")
            }
        }
        chart.text(chart.left, chart.top + chart.plotHeight + 16, "oldest")
        chart.text(
            chart.left + step * Double(history.count), chart.top + chart.plotHeight + 16, "newest",
            anchor: history.count < 4 ? "start" : "end")
        return chart.rendered(label: "Verifications, oldest first: rows compared, coloured by verdict")
    }

    /// The cutover's state over time: a step line through every state it was in, a mark per event.
    func timelineSVG() -> String? {
        let entries = timeline
        guard entries.count > 0 else { return nil }
        let states: [CutoverState] = [
            .planned, .capturing, .backfilled, .shadowing, .verified, .readsSwitched, .writesSwitched, .completed,
            .aborted,
        ]
        var chart = SVGChart(height: 300, left: 120, right: 24)
        let times = entries.map {
            $0.recordedAt?.microsecondsSinceEpoch ?? PostgresTimestamp($0.actor.at)?.microsecondsSinceEpoch ?? 0
        }
        let start = times.min() ?? 0
        let last = max(times.max() ?? 0, start + 1_000_000)
        let end = last + (last - start) / 20
        func yState(_ s: CutoverState) -> Double {
            chart.top + chart.plotHeight * Double(states.count - 1 - (states.firstIndex(of: s) ?? 0))
                / Double(states.count - 1)
        }
        for state in states {
            let y = yState(state)
            chart.add(
                "<line x1=\"\(SVGChart.f(chart.left))\" y1=\"\(SVGChart.f(y))\" x2=\"\(SVGChart.f(chart.left + chart.plotWidth))\" y2=\"\(SVGChart.f(y))\" class=\"grid\"/>"
            )
            chart.text(chart.left - 8, y + 4, state.rawValue, anchor: "end")
        }
        var path = [String]()
        for (index, entry) in entries.enumerated() {
            let x = chart.x(times[index], start: start, end: end)
            let y = yState(entry.state)
            if let previous = path.last?.split(separator: ",").last { path.append("\(SVGChart.f(x)),\(previous)") }
            path.append("\(SVGChart.f(x)),\(SVGChart.f(y))")
        }
        if let final = entries.last {
            path.append("\(SVGChart.f(chart.left + chart.plotWidth)),\(SVGChart.f(yState(final.state)))")
        }
        chart.add("<polyline points=\"\(path.joined(separator: " "))\" class=\"line state\"/>")
        chart.freezes(freezes, start: start, end: end)
        for (index, entry) in entries.enumerated() {
            let x = chart.x(times[index], start: start, end: end)
            // A switch begun or undone sits on the state it starts from; marked apart.
            let y = yState(entry.state)
            var title =
                "\(DossierFormat.time(entry.actor.at)) \(entry.actor.who)@\(entry.actor.host): \(entry.verb) \(entry.step)"
            if let reason = entry.reason { title += " — " + reason }
            if let failure = entry.failure { title += " — " + failure }
            chart.add(
                "<circle cx=\"\(SVGChart.f(x))\" cy=\"\(SVGChart.f(y))\" r=\"\(entry.kind == .switchBegun ? 4 : 5)\" class=\"mark-\(entry.kind.rawValue)\">"
                    + "<title>\(HTML.escape(title))</title></circle>")
        }
        chart.timeAxis(start: start, end: end)
        return chart.rendered(label: "The cutover's state over time")
    }
}
