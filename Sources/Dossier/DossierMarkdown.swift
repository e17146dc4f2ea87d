import Billing
import Cutover
import EventStore
import Foundation
import Postgres
import Shadow
import TextFormats

extension MigrationDossier {
    /// The `markdown` format: the HTML page's sections as tables (GitHub-flavoured).
    public var markdown: String {
        var out = "# Migration dossier — cutover \(Self.md(options.cutoverName))\n\n"
        out += "Store \(Self.md(store)) (schema \(Self.md(options.storeSchema)))"
        if let legacy { out += " · legacy \(Self.md(legacy))" }
        out += " · generated \(DossierFormat.time(generatedAt)) from the databases\n\n"

        out += "## Summary\n\n| figure | value | note |\n|---|---|---|\n"
        out +=
            "| cutover state | \(Self.md(cutover?.state.rawValue ?? "none")) | "
            + (cutover.map { "\($0.history.count + 1) event(s) in cutover-\(Self.md($0.initialized.name))" }
                ?? "no cutover \(Self.md(options.cutoverName)) in this store") + " |\n"
        out += "| events | \(totalEvents) | as store stats counts them |\n"
        out +=
            "| verifications | \(verifications.total) | clean streak \(verifications.cleanStreak.count)"
            + (lastVerification.map { "; last #\($0.id) \($0.verdict.rawValue)" } ?? "; none recorded") + " |\n"
        out +=
            "| lag p99 | \(DossierFormat.milliseconds(lagP99Milliseconds)) | last \(lag.windowSeconds) s, as shadow status |\n"
        out +=
            "| write freeze | \(DossierFormat.milliseconds(writeSwitchFreeze?.milliseconds)) | "
            + (writeSwitchFreeze.map { "the write switch, ended \(DossierFormat.time($0.endedAt))" }
                ?? (cutover == nil ? "no cutover" : "writes were not switched")) + " |\n"
        out += "| quarantined keys | \(quarantinedKeys) | \(quarantineReleased) released |\n"
        if let verdict = shadowVerdict {
            out += "| shadow status | \(verdict.word) | " + Self.md(verdict.note) + " |\n"
        }

        out += "\n## Cutover timeline\n\n"
        if cutover == nil {
            out += "_" + Self.md(noCutoverText) + "_\n"
        } else {
            out += "| # | when | who | what | step | why | measured |\n|---|---|---|---|---|---|---|\n"
            for (index, e) in timeline.enumerated() {
                var why = e.reason ?? ""
                if let failure = e.failure { why += (why.isEmpty ? "" : " — ") + "failed: " + failure }
                if let accepted = e.acceptedQuarantine {
                    why += (why.isEmpty ? "" : " — ") + "quarantine accepted: " + accepted
                }
                if let budget = e.maxFreezeMilliseconds {
                    why += (why.isEmpty ? "" : " — ") + "freeze budget \(budget) ms"
                }
                let measured = DossierFormat.evidence(e.measurements).map { "\($0.0)=\($0.1)" }.joined(separator: "; ")
                out +=
                    "| \(index + 1) | \(DossierFormat.time(e.actor.at)) | \(Self.md(e.actor.who))@\(Self.md(e.actor.host)) | "
                    + "\(e.verb) | \(e.step) | \(Self.md(why.isEmpty ? "–" : why)) | \(Self.md(measured.isEmpty ? "–" : measured)) |\n"
            }
        }

        out += "\n## Gate evidence per transition\n\n"
        let gated = timeline.filter { !$0.gates.isEmpty }
        if cutover == nil {
            out += "_" + Self.md(noCutoverText) + "_\n"
        } else if gated.isEmpty {
            out += "_No transition of this cutover recorded gates._\n"
        }
        for e in gated {
            out +=
                "### \(e.step) — \(e.verb) by \(Self.md(e.actor.who))@\(Self.md(e.actor.host)) at \(DossierFormat.time(e.actor.at))\n\n"
            out += "| gate | verdict | evidence | remedy |\n|---|---|---|---|\n"
            for g in e.gates {
                let evidence = DossierFormat.evidence(g.evidence).map { "\($0.0)=\($0.1)" }.joined(separator: "; ")
                out +=
                    "| \(Self.md(g.name)) | \(g.passed ? "pass" : "**FAIL**") | \(Self.md(evidence)) | \(Self.md(g.remedy ?? "–")) |\n"
            }
            out += "\n"
        }

        out += "\n## Verification history\n\n"
        if verifications.total == 0 {
            out += "_No verification recorded in this store._\n"
        } else {
            let counts = VerificationRecord.Verdict.allCases.map {
                "\(verifications.byVerdict[$0] ?? 0) \($0.rawValue)"
            }
            out +=
                "\(verifications.total) verification(s): \(counts.joined(separator: ", ")); clean streak \(verifications.cleanStreak.count)"
                + (verifications.cleanStreak.since.map { " since \(DossierFormat.time($0))" } ?? "") + ".\n\n"
            out +=
                "| # | finished | by | verdict | rows compared | differences | persistent | invariants broken | error |\n"
            out += "|---|---|---|---|---|---|---|---|---|\n"
            for v in verifications.history.reversed() {
                out +=
                    "| \(v.id) | \(DossierFormat.time(v.finishedAt)) | \(Self.md(v.origin)) | \(v.verdict.rawValue) | \(v.rowsCompared) | "
                    + "\(v.differences) | \(v.persistentDifferences) | \(v.brokenInvariants) | \(Self.md(v.error ?? "–")) |\n"
            }
        }

        out += "\n## Lag over time\n\n"
        if lag.samples == 0 {
            out +=
                shadowModeRan
                ? "_The tailer has no lag sample in this store._\n" : "_Shadow mode never ran against this store._\n"
        } else {
            out +=
                "Every sample kept (\(lag.samples)): p50 \(DossierFormat.milliseconds(lag.p50Milliseconds)), "
                + "p99 \(DossierFormat.milliseconds(lag.p99Milliseconds)); the last \(lag.windowSeconds) s: \(lag.windowSamples) sample(s), "
                + "p50 \(DossierFormat.milliseconds(lag.windowP50Milliseconds)), p99 \(DossierFormat.milliseconds(lag.windowP99Milliseconds)).\n\n"
            if let series = lag.series {
                out +=
                    "| bucket (\(DossierFormat.width(series.bucketSeconds))) | samples | p50 | p99 |\n|---|---|---|---|\n"
                for b in series.buckets where b.count > 0 {
                    out +=
                        "| \(DossierFormat.time(b.start)) | \(b.count) | \(DossierFormat.milliseconds(b.p50Milliseconds)) | "
                        + "\(DossierFormat.milliseconds(b.p99Milliseconds)) |\n"
                }
            }
        }

        out += "\n## Write rate over time\n\n"
        if let series = writes {
            out += "| bucket (\(DossierFormat.width(series.bucketSeconds))) | events |\n|---|---|\n"
            for b in series.buckets where b.count > 0 { out += "| \(DossierFormat.time(b.start)) | \(b.count) |\n" }
        } else {
            out += "_The event store holds no event yet._\n"
        }
        out += "\n"
        if freezes.isEmpty {
            out += "_No write switch was recorded: writes were never frozen._\n"
        } else {
            out += "| freeze | step | started | ended |\n|---|---|---|---|\n"
            for f in freezes {
                out +=
                    "| \(DossierFormat.milliseconds(f.milliseconds)) | \(f.from.rawValue) → \(f.to.rawValue) | "
                    + "\(f.startedAt.iso8601) | \(f.endedAt.iso8601) |\n"
            }
        }

        out += "\n## Quarantine\n\n"
        if quarantine.isEmpty {
            out += "_No key is quarantined._ (\(quarantineReleased) released by later writes)\n"
        } else {
            out += "| entity | reason | keys | examples |\n|---|---|---|---|\n"
            for g in quarantine {
                out +=
                    "| \(Self.md(g.entity)) | \(Self.md(g.reason)) | \(g.keys) | "
                    + Self.md(g.examples.joined(separator: ", ") + (g.keys > Int64(g.examples.count) ? ", …" : ""))
                    + " |\n"
            }
        }

        out += "\n## Events by type and evidence\n\n"
        if let stats, stats.totalEvents > 0 {
            out += "\(stats.totalEvents) event(s) in \(stats.totalStreams) stream(s).\n\n"
            out += "| evidence | events |\n|---|---|\n"
            for c in eventsByEvidence { out += "| \(Self.md(c.name)) | \(c.events) |\n" }
            out += "\n| origin | events |\n|---|---|\n"
            for c in eventsByOrigin { out += "| \(Self.md(c.name)) | \(c.events) |\n" }
            out += "\n| type | events |\n|---|---|\n"
            for c in stats.byType { out += "| \(Self.md(c.name)) | \(c.events) |\n" }
        } else {
            out += "_The event store holds no event yet._\n"
        }
        return out
    }

    var noCutoverText: String {
        storeInitialized
            ? "No cutover named \"\(options.cutoverName)\" in this store: nothing was planned yet."
            : "The store holds no event store (schema \(options.storeSchema))."
    }

    /// A value inside a Markdown table cell: pipes, backslashes, markup and newlines escaped.
    static func md(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "|": out += "\\|"
            case "\\": out += "\\\\"
            case "`", "*", "_", "<", ">", "[", "]": out += "\\" + String(character)
            case "\n", "\r", "\r\n": out += " "
            default: out += PrintableText.escaped(String(character))
            }
        }
        return out
    }
}
