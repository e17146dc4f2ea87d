import Billing
import Cutover
import EventStore
import Foundation
import Postgres
import Shadow
import TextFormats

/// Escaping for HTML text and attribute values (also well-formed XML): `&`, `<`, `>`, `"`,
/// `'`; control characters other than tab and newline, which neither allows, become U+FFFD.
enum HTML {
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
            default:
                if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0xFFFE
                    || scalar.value == 0xFFFF
                {
                    out += "\u{FFFD}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }
}

extension MigrationDossier {
    /// The `html` format: one self-contained page — inline CSS and SVG, no script, nothing
    /// fetched — and well-formed XML (every element closed), every value from the data escaped.
    public var html: String {
        var page = HTMLPage()
        let title = "Migration dossier — cutover \(options.cutoverName)"
        page.raw(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
                + "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n"
                + "<title>\(HTML.escape(title))</title>\n<style>\n\(Self.css)</style>\n</head>\n<body>\n<main>\n")
        page.raw("<header>\n")
        page.element("h1", title)
        page.raw("<p class=\"meta\">")
        page.text("Store \(store) (schema \(options.storeSchema))")
        if let legacy { page.text(" · legacy \(legacy)") }
        page.text(" · generated \(DossierFormat.time(generatedAt)) from the databases")
        page.raw("</p>\n</header>\n")
        summarySection(&page)
        timelineSection(&page)
        gatesSection(&page)
        verificationSection(&page)
        lagSection(&page)
        writeRateSection(&page)
        quarantineSection(&page)
        eventsSection(&page)
        page.raw("<footer><p>")
        page.prose(
            "Every figure above was read from the databases when this page was made; the same figures are in "
                + "`ledgerlift report migration --format json`.")
        page.raw("</p></footer>\n</main>\n</body>\n</html>\n")
        return page.out
    }

    private func section(_ page: inout HTMLPage, id: String, _ heading: String) {
        page.raw("<section id=\"\(id)\">\n")
        page.element("h2", heading)
    }

    /// A section's "nothing here" sentence; a command in it (between backticks) as code.
    private func empty(_ page: inout HTMLPage, _ message: String) {
        page.raw("<p class=\"empty\">")
        page.prose(message)
        page.raw("</p>\n")
    }

    private var noCutover: String {
        storeInitialized
            ? "No cutover named \"\(options.cutoverName)\" in this store: nothing was planned yet "
                + "(`ledgerlift cutover init --name \(options.cutoverName) …` starts one)."
            : "The store holds no event store (schema \(options.storeSchema)): nothing was migrated into it."
    }

    private var noShadow: String {
        "Shadow mode never ran against this store (no `shadow_lag` samples): `ledgerlift shadow run` records them."
    }

    func summarySection(_ page: inout HTMLPage) {
        section(&page, id: "summary", "Summary")
        page.raw("<div class=\"cards\">\n")
        func card(_ label: String, _ value: String, _ note: String, cssClass: String = "") {
            page.raw("<div class=\"card \(cssClass)\">")
            page.element("div", label, cssClass: "label")
            page.element("div", value, cssClass: "value")
            page.element("div", note, cssClass: "note")
            page.raw("</div>\n")
        }
        if let cutover {
            card(
                "Cutover state", cutover.state.rawValue,
                "cutover \(cutover.initialized.name), \(cutover.history.count + 1) event(s) in its stream"
                    + (cutover.pendingSwitch.map { "; switch \($0.from.rawValue) → \($0.to.rawValue) interrupted" }
                        ?? ""),
                cssClass: "state-\(cutover.state.rawValue)")
        } else {
            card("Cutover state", "none", "no cutover \(options.cutoverName) in this store")
        }
        card(
            "Events", DossierFormat.number(totalEvents),
            "in \(DossierFormat.number(stats?.totalStreams ?? 0)) stream(s), as store stats counts them")
        card(
            "Verifications", DossierFormat.number(verifications.total),
            "clean streak \(verifications.cleanStreak.count)"
                + (lastVerification.map { "; last #\($0.id) \($0.verdict.rawValue)" } ?? "; none recorded"),
            cssClass: lastVerification.map { "verdict-card-\($0.verdict.rawValue)" } ?? "")
        card(
            "Lag p99", DossierFormat.milliseconds(lagP99Milliseconds),
            lagP99Milliseconds == nil
                ? (shadowModeRan ? "no sample in the last \(lag.windowSeconds) s" : "shadow mode never ran")
                : "last \(lag.windowSeconds) s, as shadow status reads it (p50 \(DossierFormat.milliseconds(shadow?.lag?.p50Milliseconds ?? lag.windowP50Milliseconds)))"
        )
        if let freeze = writeSwitchFreeze {
            card(
                "Write freeze", DossierFormat.milliseconds(freeze.milliseconds),
                "the write switch, ended \(DossierFormat.time(freeze.endedAt))")
        } else {
            card("Write freeze", "–", cutover == nil ? "no cutover" : "writes were not switched")
        }
        card(
            "Quarantined keys", DossierFormat.number(quarantinedKeys),
            "\(DossierFormat.number(quarantineReleased)) released by later writes",
            cssClass: quarantinedKeys > 0 ? "warn" : "")
        page.raw("</div>\n")
        if let shadow {
            page.raw("<p class=\"shadow\">")
            page.text(
                "shadow status: " + (shadowVerdict?.word ?? "unhealthy")
                    + "; capture " + (shadow.capture == nil ? "not installed" : "installed")
                    + "; tailer \(options.tailerName) "
                    + ((shadow.tailer?.running ?? false) ? "running" : "not running")
                    + "; handover \(shadow.handover.name)")
            page.raw("</p>\n")
            if !shadow.problems.isEmpty, cutover?.state != .completed {
                page.raw("<ul class=\"problems\">\n")
                for problem in shadow.problems { page.element("li", problem) }
                page.raw("</ul>\n")
            }
        }
        page.raw("</section>\n")
    }

    func timelineSection(_ page: inout HTMLPage) {
        section(&page, id: "timeline", "Cutover timeline")
        let entries = timeline
        guard let cutover, !entries.isEmpty else {
            empty(&page, noCutover)
            page.raw("</section>\n")
            return
        }
        page.raw("<p>")
        page.text(
            "Stream cutover-\(cutover.initialized.name), version \(cutover.version). Planned from \(cutover.initialized.legacy) "
                + "to \(cutover.initialized.store) with the mapping \(cutover.initialized.mappingPath) "
                + "(fingerprint \(cutover.initialized.mappingFingerprint)).")
        page.raw("</p>\n")
        if let svg = timelineSVG() { page.raw("<figure>\n" + svg + "\n</figure>\n") }
        let undone = entries.filter { $0.kind == .switchUndone }.count
        let rollbacks = entries.filter { $0.kind == .rolledBack }.count
        page.element(
            "p",
            "\(entries.count) event(s): \(entries.filter { $0.kind == .advanced }.count) advance(s), \(rollbacks) rollback(s), "
                + "\(undone) switch(es) undone" + (entries.contains { $0.kind == .aborted } ? ", aborted" : "") + ".")
        page.raw("<table>\n<thead><tr>")
        for heading in ["#", "When", "Who", "What", "Step", "Why", "Measured"] { page.element("th", heading) }
        page.raw("</tr></thead>\n<tbody>\n")
        for (index, entry) in entries.enumerated() {
            page.raw("<tr class=\"kind-\(entry.kind.rawValue)\">")
            page.element("td", String(index + 1), cssClass: "num")
            page.element("td", DossierFormat.time(entry.actor.at), cssClass: "nowrap")
            page.element("td", "\(entry.actor.who)@\(entry.actor.host)")
            page.element("td", entry.verb, cssClass: "nowrap")
            page.element("td", entry.step, cssClass: "nowrap")
            var why = entry.reason ?? ""
            if let failure = entry.failure { why += (why.isEmpty ? "" : " — ") + "failed: " + failure }
            if let accepted = entry.acceptedQuarantine {
                why += (why.isEmpty ? "" : " — ") + "quarantine accepted: " + accepted
            }
            if let budget = entry.maxFreezeMilliseconds {
                why += (why.isEmpty ? "" : " — ") + "freeze budget \(budget) ms"
            }
            page.element("td", why.isEmpty ? "–" : why, cssClass: "why")
            page.raw("<td class=\"kv\">")
            let measured = DossierFormat.evidence(entry.measurements)
            if measured.isEmpty { page.text("–") }
            for (key, value) in measured {
                page.raw("<span>")
                page.element("code", key)
                page.text(" \(value)")
                page.raw("</span> ")
            }
            page.raw("</td></tr>\n")
        }
        page.raw("</tbody>\n</table>\n</section>\n")
    }

    func gatesSection(_ page: inout HTMLPage) {
        section(&page, id: "gates", "Gate evidence per transition")
        let gated = timeline.filter { !$0.gates.isEmpty }
        guard cutover != nil else {
            empty(&page, noCutover)
            page.raw("</section>\n")
            return
        }
        guard !gated.isEmpty else {
            empty(
                &page, "No transition of this cutover recorded gates (initialization, rollbacks and aborts have none).")
            page.raw("</section>\n")
            return
        }
        for entry in gated {
            page.raw("<div class=\"transition\">\n")
            page.element(
                "h3",
                "\(entry.step) — \(entry.verb) by \(entry.actor.who)@\(entry.actor.host) at \(DossierFormat.time(entry.actor.at))"
            )
            page.raw("<table>\n<thead><tr>")
            for heading in ["Gate", "Verdict", "Evidence", "Remedy"] { page.element("th", heading) }
            page.raw("</tr></thead>\n<tbody>\n")
            for gate in entry.gates {
                page.raw("<tr>")
                page.element("td", gate.name, cssClass: "nowrap")
                page.raw("<td>")
                page.element("span", gate.passed ? "pass" : "FAIL", cssClass: gate.passed ? "badge pass" : "badge fail")
                page.raw("</td><td class=\"kv\">")
                for (key, value) in DossierFormat.evidence(gate.evidence) {
                    page.raw("<span>")
                    page.element("code", key)
                    page.text(" \(value)")
                    page.raw("</span> ")
                }
                page.raw("</td>")
                page.element("td", gate.remedy ?? "–")
                page.raw("</tr>\n")
            }
            page.raw("</tbody>\n</table>\n</div>\n")
        }
        page.raw("</section>\n")
    }

    func verificationSection(_ page: inout HTMLPage) {
        section(&page, id: "verifications", "Verification history")
        guard verifications.total > 0 else {
            empty(
                &page,
                "No verification recorded in this store: `shadow run --follow --verify-every …` and `diff --record` record them."
            )
            page.raw("</section>\n")
            return
        }
        let counts = VerificationRecord.Verdict.allCases.map { "\(verifications.byVerdict[$0] ?? 0) \($0.rawValue)" }
        let streak = verifications.cleanStreak
        page.element(
            "p",
            "\(DossierFormat.number(verifications.total)) verification(s): \(counts.joined(separator: ", ")). Clean streak: \(streak.count)"
                + (streak.since.map { " since \(DossierFormat.time($0))" } ?? "") + ".")
        if let svg = verificationSVG() { page.raw("<figure>\n" + svg + "\n</figure>\n") }
        let rows = verifications.history.suffix(100)
        if Int64(rows.count) < verifications.total {
            page.element(
                "p", "The newest \(rows.count) of \(DossierFormat.number(verifications.total)):", cssClass: "note")
        }
        page.raw("<table>\n<thead><tr>")
        for heading in [
            "#", "Finished", "By", "Verdict", "Rows compared", "Differences", "Persistent", "Invariants broken",
            "Error",
        ] {
            page.element("th", heading)
        }
        page.raw("</tr></thead>\n<tbody>\n")
        for v in rows.reversed() {
            page.raw("<tr>")
            page.element("td", String(v.id), cssClass: "num")
            page.element("td", DossierFormat.time(v.finishedAt), cssClass: "nowrap")
            page.element("td", v.origin)
            page.raw("<td>")
            page.element("span", v.verdict.rawValue, cssClass: "badge verdict-\(v.verdict.rawValue)")
            page.raw("</td>")
            page.element("td", DossierFormat.number(v.rowsCompared), cssClass: "num")
            page.element("td", DossierFormat.number(v.differences), cssClass: "num")
            page.element("td", DossierFormat.number(v.persistentDifferences), cssClass: "num")
            page.element("td", DossierFormat.number(v.brokenInvariants), cssClass: "num")
            page.element("td", v.error ?? "–")
            page.raw("</tr>\n")
        }
        page.raw("</tbody>\n</table>\n</section>\n")
    }

    func lagSection(_ page: inout HTMLPage) {
        section(&page, id: "lag", "Lag over time")
        guard lag.samples > 0 else {
            empty(
                &page,
                shadowModeRan
                    ? "The tailer \"\(options.tailerName)\" has no lag sample in this store (they are kept for an hour)."
                    : noShadow)
            page.raw("</section>\n")
            return
        }
        page.element(
            "p",
            "Legacy capture → read model, tailer \"\(options.tailerName)\". Every sample kept (\(DossierFormat.number(lag.samples))): "
                + "p50 \(DossierFormat.milliseconds(lag.p50Milliseconds)), p99 \(DossierFormat.milliseconds(lag.p99Milliseconds)). "
                + "The last \(lag.windowSeconds) s (as shadow status): \(DossierFormat.number(lag.windowSamples)) sample(s), "
                + "p50 \(DossierFormat.milliseconds(lag.windowP50Milliseconds)), p99 \(DossierFormat.milliseconds(lag.windowP99Milliseconds))."
                + (lag.series.map {
                    " Buckets of \(DossierFormat.width($0.bucketSeconds)) by the time each batch was applied."
                } ?? ""))
        if let svg = lagSVG() { page.raw("<figure>\n" + svg + "\n</figure>\n") }
        page.raw("</section>\n")
    }

    func writeRateSection(_ page: inout HTMLPage) {
        section(&page, id: "write-rate", "Write rate over time")
        guard let series = writes else {
            empty(&page, storeInitialized ? "The event store holds no event yet." : noCutover)
            page.raw("</section>\n")
            return
        }
        page.element(
            "p",
            "\(DossierFormat.number(totalEvents)) event(s) by the time the store recorded them, in buckets of "
                + "\(DossierFormat.width(series.bucketSeconds)) from \(DossierFormat.time(series.start)) to \(DossierFormat.time(series.end))."
        )
        if let svg = writeRateSVG() { page.raw("<figure>\n" + svg + "\n</figure>\n") }
        if freezes.isEmpty {
            empty(
                &page,
                cutover == nil
                    ? "No cutover: writes were never frozen."
                    : "No write switch was recorded: writes were never frozen.")
        } else {
            page.raw("<table>\n<thead><tr>")
            for heading in ["Freeze", "Step", "Started", "Ended"] { page.element("th", heading) }
            page.raw("</tr></thead>\n<tbody>\n")
            for freeze in freezes {
                page.raw("<tr>")
                page.element("td", DossierFormat.milliseconds(freeze.milliseconds), cssClass: "num")
                page.element("td", "\(freeze.from.rawValue) → \(freeze.to.rawValue)")
                page.element("td", freeze.startedAt.iso8601)
                page.element("td", freeze.endedAt.iso8601)
                page.raw("</tr>\n")
            }
            page.raw("</tbody>\n</table>\n")
        }
        page.raw("</section>\n")
    }

    func quarantineSection(_ page: inout HTMLPage) {
        section(&page, id: "quarantine", "Quarantine")
        guard !quarantine.isEmpty else {
            empty(
                &page,
                "No key is quarantined"
                    + (quarantineReleased > 0 ? " (\(quarantineReleased) entr(ies) released by later writes)." : "."))
            page.raw("</section>\n")
            return
        }
        page.element(
            "p",
            "\(DossierFormat.number(quarantinedKeys)) key(s) kept aside, \(DossierFormat.number(quarantineReleased)) released by later writes."
        )
        page.raw("<table>\n<thead><tr>")
        for heading in ["Entity", "Reason", "Keys", "Examples"] { page.element("th", heading) }
        page.raw("</tr></thead>\n<tbody>\n")
        for group in quarantine {
            page.raw("<tr>")
            page.element("td", group.entity)
            page.raw("<td>")
            page.element("code", group.reason)
            page.raw("</td>")
            page.element("td", DossierFormat.number(group.keys), cssClass: "num")
            page.raw("<td>")
            for (index, key) in group.examples.enumerated() {
                if index > 0 { page.text(", ") }
                page.element("code", key)
            }
            if group.keys > Int64(group.examples.count) { page.text(", …") }
            page.raw("</td></tr>\n")
        }
        page.raw("</tbody>\n</table>\n</section>\n")
    }

    func eventsSection(_ page: inout HTMLPage) {
        section(&page, id: "events", "Events by type and evidence")
        guard let stats, stats.totalEvents > 0 else {
            empty(&page, storeInitialized ? "The event store holds no event yet." : noCutover)
            page.raw("</section>\n")
            return
        }
        page.element(
            "p",
            "\(DossierFormat.number(stats.totalEvents)) event(s) in \(DossierFormat.number(stats.totalStreams)) stream(s), head position \(stats.headPosition)."
        )
        // Evidence as one stacked bar.
        let total = Double(max(1, eventsByEvidence.reduce(0) { $0 + $1.events }))
        page.raw("<div class=\"stack\">")
        for count in eventsByEvidence where count.events > 0 {
            let share = Double(count.events) / total * 100
            page.raw(
                "<span class=\"ev-\(Self.evidenceClass(count.name))\" style=\"width: \(SVGChart.f(max(share, 0.5)))%\" title=\"\(HTML.escape("\(count.name): \(count.events)"))\">"
            )
            if share >= 8 { page.text("\(count.name) \(DossierFormat.number(count.events))") }
            page.raw("</span>")
        }
        page.raw("</div>\n<div class=\"columns\">\n<div>\n")
        page.element("h3", "By evidence")
        countTable(&page, "Evidence", eventsByEvidence, total: Int64(total))
        page.element(
            "p",
            "observed: a legacy value proves the change and its time; inferred: the change is certain, its time derived; "
                + "imported: only the state at migration time is known; (none): not a billing event (the cutover's own).",
            cssClass: "note")
        page.element("h3", "By origin")
        countTable(&page, "Origin", eventsByOrigin, total: Int64(total))
        page.raw("</div>\n<div>\n")
        page.element("h3", "By type")
        countTable(
            &page, "Type", stats.byType.map { Count(name: $0.name, events: $0.events) }, total: stats.totalEvents)
        page.raw("</div>\n</div>\n</section>\n")
    }

    static func evidenceClass(_ name: String) -> String {
        ["observed", "inferred", "imported"].contains(name) ? name : "none"
    }

    private func countTable(_ page: inout HTMLPage, _ heading: String, _ counts: [Count], total: Int64) {
        page.raw("<table class=\"counts\">\n<thead><tr>")
        page.element("th", heading)
        page.element("th", "Events")
        page.element("th", "Share")
        page.raw("</tr></thead>\n<tbody>\n")
        for count in counts {
            page.raw("<tr>")
            page.element("td", count.name)
            page.element("td", DossierFormat.number(count.events), cssClass: "num")
            let share = Double(count.events) / Double(max(total, 1)) * 100
            page.raw(
                "<td class=\"share\"><span class=\"meter\" style=\"width: \(SVGChart.f(share))%\"></span>"
                    + HTML.escape(String(format: "%.1f%%", share)) + "</td>")
            page.raw("</tr>\n")
        }
        page.raw("</tbody>\n</table>\n")
    }

    static let css = """
        :root { --ink: #1d2430; --muted: #5b6472; --line: #dde2ea; --bg: #f6f8fb; --card: #ffffff;
          --blue: #2f6fdb; --orange: #e07a1f; --green: #1f9d55; --red: #d64545; --grey: #8a94a3; }
        * { box-sizing: border-box; }
        body { margin: 0; background: var(--bg); color: var(--ink);
          font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
        main { max-width: 1120px; margin: 0 auto; padding: 24px 32px 48px; }
        header h1 { margin: 0 0 4px; font-size: 28px; }
        .meta, .note, footer { color: var(--muted); font-size: 13px; }
        section { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px 22px;
          margin: 18px 0; overflow-x: auto; }
        h2 { margin: 0 0 10px; font-size: 20px; border-bottom: 1px solid var(--line); padding-bottom: 6px; }
        h3 { font-size: 15px; margin: 16px 0 6px; }
        .cards { display: grid; grid-template-columns: repeat(3, 1fr); gap: 12px; }
        .card { border: 1px solid var(--line); border-left: 5px solid var(--blue); border-radius: 8px; padding: 10px 14px; }
        .card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .05em; }
        .card .value { font-size: 26px; font-weight: 600; }
        .card .note { font-size: 12px; }
        .card.warn, .card.verdict-card-different, .card.verdict-card-error { border-left-color: var(--red); }
        .card.state-completed, .card.verdict-card-clean { border-left-color: var(--green); }
        .card.state-aborted { border-left-color: var(--grey); }
        .shadow { margin: 12px 0 0; font-size: 13px; }
        .problems { color: var(--red); font-size: 13px; }
        table { border-collapse: collapse; width: 100%; margin: 8px 0; font-size: 13px; }
        th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
        th { background: #eef2f7; font-weight: 600; }
        td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
        .nowrap { white-space: nowrap; }
        td.kv { min-width: 170px; max-width: 360px; }
        td.kv span { display: inline-block; margin: 0 8px 2px 0; }
        td.kv code { white-space: nowrap; overflow-wrap: normal; }
        td.why { min-width: 200px; overflow-wrap: break-word; }
        code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #eef2f7;
          padding: 1px 4px; border-radius: 4px; overflow-wrap: anywhere; }
        .badge { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; font-weight: 600; color: #fff; }
        .badge.pass, .badge.verdict-clean { background: var(--green); }
        .badge.fail, .badge.verdict-different { background: var(--red); }
        .badge.verdict-error { background: var(--orange); }
        tr.kind-switch_undone td { background: #fdecec; }
        tr.kind-rolled_back td { background: #fff4e5; }
        tr.kind-aborted td { background: #f0f1f3; }
        .transition { border-top: 1px dashed var(--line); }
        .transition:first-of-type { border-top: 0; }
        .empty { color: var(--muted); font-style: italic; }
        figure { margin: 8px 0; }
        svg.chart { width: 100%; height: auto; display: block; }
        svg .axis { font-size: 11px; fill: var(--muted); }
        svg .grid { stroke: var(--line); stroke-width: 1; }
        svg .bar { fill: var(--blue); }
        svg .line { fill: none; stroke-width: 2; }
        svg .line.p99, svg circle.p99 { stroke: var(--orange); }
        svg .line.p50, svg circle.p50 { stroke: var(--blue); }
        svg circle.p99 { fill: var(--orange); }
        svg circle.p50 { fill: var(--blue); }
        svg .legend { font-size: 12px; font-weight: 600; }
        svg .legend.p99 { fill: var(--orange); }
        svg .legend.p50 { fill: var(--blue); }
        svg .line.state { stroke: var(--blue); }
        svg .freeze { fill: var(--red); fill-opacity: .35; stroke: var(--red); stroke-width: 1; }
        svg .freeze-label { font-size: 12px; fill: var(--red); font-weight: 600; }
        svg .verdict-clean { fill: var(--green); }
        svg .verdict-different { fill: var(--red); }
        svg .verdict-error { fill: var(--orange); }
        svg .diff-label { fill: var(--red); font-weight: 600; }
        svg .mark-initialized, svg .mark-advanced { fill: var(--blue); stroke: #fff; stroke-width: 1.5; }
        svg .mark-rolled_back { fill: var(--orange); stroke: #fff; stroke-width: 1.5; }
        svg .mark-switch_begun { fill: #fff; stroke: var(--blue); stroke-width: 2; }
        svg .mark-switch_undone { fill: var(--red); stroke: #fff; stroke-width: 1.5; }
        svg .mark-aborted { fill: var(--grey); stroke: #fff; stroke-width: 1.5; }
        .stack { display: flex; height: 28px; border-radius: 6px; overflow: hidden; border: 1px solid var(--line);
          margin: 8px 0 4px; font-size: 12px; color: #fff; font-weight: 600; }
        .stack span { display: flex; align-items: center; padding-left: 6px; white-space: nowrap; overflow: hidden; }
        .ev-observed { background: var(--green); }
        .ev-inferred { background: var(--orange); }
        .ev-imported { background: var(--blue); }
        .ev-none { background: var(--grey); }
        .columns { display: grid; grid-template-columns: 1fr 1fr; gap: 24px; }
        td.share { position: relative; width: 30%; }
        .meter { display: inline-block; height: 8px; background: #c9d7f2; margin-right: 6px; vertical-align: middle;
          max-width: 60%; }
        @media print { body { background: #fff; } section { break-inside: avoid; } }

        """
}

/// The page being written: raw markup, or text escaped.
struct HTMLPage {
    var out = ""

    mutating func raw(_ markup: String) { out += markup }
    mutating func text(_ text: String) { out += HTML.escape(text) }

    /// Our own sentences: escaped, and what stands between backticks set as code.
    mutating func prose(_ text: String) {
        for (index, piece) in text.split(separator: "`", omittingEmptySubsequences: false).enumerated() {
            out += index % 2 == 1 ? "<code>" + HTML.escape(String(piece)) + "</code>" : HTML.escape(String(piece))
        }
    }

    mutating func element(_ name: String, _ text: String, cssClass: String? = nil) {
        out +=
            "<\(name)" + (cssClass.map { " class=\"\(HTML.escape($0))\"" } ?? "") + ">" + HTML.escape(text)
            + "</\(name)>"
        if ["p", "h1", "h2", "h3", "li"].contains(name) { out += "\n" }
    }
}
