import Billing
@testable import Dossier
import EventStore
import Foundation
import FoundationXML
import Mapping
import Postgres
import TestSupport
import Testing

@testable import Cutover

/// `ledgerlift report migration` on real databases: a small real run (capture, backfill, the
/// tailer, recorded verifications, advances, a rollback, a write switch undone then done),
/// rendered in the three formats; the HTML parsed as XML; every figure checked against what
/// `cutover log`, `shadow status` and `store stats` print for the same databases.
@Suite("Dossier: report migration")
struct MigrationDossierTests {
    static let small = ["--clean-verifications", "2", "--clean-minutes", "0"]
    static let sections = [
        "summary", "timeline", "gates", "verifications", "lag", "write-rate", "quarantine", "events",
    ]
    static let hostile = "change <4711> & \"go\" 'now' </section>"

    /// Builds the run: every command as an operator types it, and the write switch through the
    /// library (its reverse-sync gate needs a command this build does not have).
    static func run(legacy: String, store: String) async throws {
        let mapping = ["--mapping", referenceMappingPath]
        func cutover(_ arguments: [String], legacy withLegacy: Bool = true) async throws {
            try await ledgerliftOK(
                ["cutover"] + arguments + ["--store", store] + (withLegacy ? ["--legacy", legacy] : []))
        }
        try await ledgerliftOK(["shadow", "install", "--legacy", legacy] + mapping)
        try await cutover(["init"] + mapping)
        try await cutover(["advance", "--reason", hostile])
        try await ledgerliftOK(["backfill", "--legacy", legacy, "--store", store] + mapping)
        try await ledgerliftOK(["project", "--store", store])
        try await cutover(["advance", "--to", "backfilled"])
        try await withSession(legacy) {
            try $0.execute("UPDATE legacy.customers SET email = 'moved@example.com' WHERE id = 3")
        }
        try await ledgerliftOK(["shadow", "run", "--legacy", legacy, "--store", store] + mapping)
        // The lag gate judges the tailer's own samples: on a machine the whole suite loads, a
        // catch-up can take seconds, more than the production default of 5.
        let anyLag = ["--max-lag", "3600"]
        try await cutover(["advance"] + anyLag)
        let diff = ["diff", "--legacy", legacy, "--store", store, "--record"] + mapping
        try await ledgerliftOK(diff)
        try await ledgerliftOK(diff)
        try await cutover(["advance", "--reason", "two clean checks"] + small)
        try await cutover(["advance", "--reason", "reads first"] + anyLag)
        try await cutover(["rollback", "--reason", "support saw a stale balance"])
        try await cutover(["advance", "--reason", "still clean"] + small)
        try await cutover(["advance", "--reason", "reads again"] + anyLag)
        // Quarantined keys (one of them hostile markup) as a backfill would have written them.
        try await withSession(store) { session in
            try QuarantineStore().write(
                [
                    .init(
                        entity: .invoice, key: "<script>alert(1)</script>", reason: .amountNotMinorUnit,
                        detail: "total 12.345", raw: "{}", runID: "test"),
                    .init(
                        entity: .invoice, key: "9001", reason: .amountNotMinorUnit, detail: "d", raw: "{}",
                        runID: "test"),
                    .init(
                        entity: .customer, key: "77", reason: .currencyUnknown, detail: "d", raw: "{}", runID: "test"),
                ], session)
        }
        // The write switch: first refused (a transaction holds customers past the budget), then done.
        let runner = try CutoverRunner(name: "default")
        let file = try MappingFile.load(path: referenceMappingPath)
        let legacyConnection = try await Connection.connect(legacy)
        let storeConnection = try await Connection.connect(store)
        let holder = try await Connection.connect(legacy)
        defer {
            legacyConnection.close()
            storeConnection.close()
            holder.close()
        }
        try await holder.withSession { session in
            try session.execute("BEGIN")
            try session.execute("UPDATE legacy.customers SET name = name WHERE id = 2")
        }
        do {
            _ = try await runner.switchWrites(
                try await runner.record(store: storeConnection), gates: [], reason: "first try",
                legacy: legacyConnection,
                store: storeConnection, mapping: file, options: CutoverSwitchOptions(maxFreeze: .milliseconds(300)))
            Issue.record("the switch went through a held lock")
        } catch is CutoverSwitchFailure {}
        try await holder.withSession { try $0.execute("ROLLBACK") }
        try await ledgerliftOK(["shadow", "run", "--legacy", legacy, "--store", store] + mapping)
        // Those quarantined keys are not a backfill run's: the switch takes them only accepted.
        var accepting = CutoverSwitchOptions(maxFreeze: .seconds(30))
        accepting.acceptQuarantine = "the three keys are repaired by hand after the switch"
        _ = try await runner.switchWrites(
            try await runner.record(store: storeConnection), gates: [], reason: "go", legacy: legacyConnection,
            store: storeConnection, mapping: file, options: accepting)
    }

    /// Every element of `node` with attribute `name` = `value`.
    static func elements(_ document: XMLDocument, _ xpath: String) throws -> [XMLElement] {
        try document.nodes(forXPath: xpath).compactMap { $0 as? XMLElement }
    }

    @Test func aRealRunInThreeFormatsWithTheOperatorCommandsFigures() async throws {
        try await withLegacyAndStore { legacy, store in
            try await Self.run(legacy: legacy, store: store)
            // A password in the DSNs is never printed (the test server trusts local connections).
            var storeURL = URLComponents(string: store)!
            storeURL.password = "s3cret-pw"
            var legacyURL = URLComponents(string: legacy)!
            legacyURL.password = "s3cret-pw"
            let common = [
                "report", "migration", "--store", storeURL.string!, "--legacy", legacyURL.string!, "--lag-window",
                "3600",
            ]
            let (jsonPath, htmlPath, markdownPath) = (temporaryPath("json"), temporaryPath("html"), temporaryPath("md"))
            defer {
                for path in [jsonPath, htmlPath, markdownPath] { try? FileManager.default.removeItem(atPath: path) }
            }
            var printed = ""
            for (format, path) in [("json", jsonPath), ("html", htmlPath), ("markdown", markdownPath)] {
                let output = try await ledgerliftOK(common + ["--format", format, "--output", path])
                #expect(output.stdout == "migration dossier (\(format)): \(path)\n")
                printed += output.stdout + output.stderr
            }
            let stdoutHTML = try await ledgerliftOK(common)
            let (json, html, markdown) = (
                try String(contentsOfFile: jsonPath, encoding: .utf8),
                try String(contentsOfFile: htmlPath, encoding: .utf8),
                try String(contentsOfFile: markdownPath, encoding: .utf8)
            )
            for text in [json, html, markdown, printed, stdoutHTML.stdout, stdoutHTML.stderr] {
                #expect(!text.contains("s3cret-pw"))
            }
            #expect(stdoutHTML.stdout.hasPrefix("<!DOCTYPE html>"))
            // To look at the page (docs/dossier.md): LEDGERLIFT_DOSSIER_KEEP=DIR keeps the three files there.
            if let keep = ProcessInfo.processInfo.environment["LEDGERLIFT_DOSSIER_KEEP"] {
                for (path, name) in [
                    (jsonPath, "dossier.json"), (htmlPath, "dossier.html"), (markdownPath, "dossier.md"),
                ] {
                    let target = URL(fileURLWithPath: keep).appendingPathComponent(name).path
                    try? FileManager.default.removeItem(atPath: target)
                    try FileManager.default.copyItem(atPath: path, toPath: target)
                }
            }

            // The operator commands, on the same databases.
            let log = try jsonObject(
                try await ledgerliftOK(["cutover", "log", "--store", store, "--format", "json"]).stdout)
            let status = try await ledgerlift([
                "shadow", "status", "--legacy", legacy, "--store", store, "--format", "json", "--lag-window", "3600",
            ])
            let shadow = try jsonObject(status.stdout)
            let stats = try jsonObject(
                try await ledgerliftOK(["store", "stats", "--store", store, "--format", "json"]).stdout)

            // JSON: the summary and the timeline equal theirs.
            let dossier = try jsonObject(json)
            let summary = dossier["summary"] as! [String: Any]
            // Without --legacy the store alone gives the same summary (the lag from the same samples).
            let storeOnly = try jsonObject(
                try await ledgerliftOK([
                    "report", "migration", "--store", store, "--format", "json", "--lag-window", "3600",
                ]).stdout)
            #expect(
                NSDictionary(dictionary: storeOnly["summary"] as! [String: Any]) == NSDictionary(dictionary: summary))
            #expect(storeOnly["shadow_status"] is NSNull && !(dossier["shadow_status"] is NSNull))
            #expect(summary["cutover_state"] as? String == "writes_switched")
            #expect(summary["cutover_state"] as? String == log["state"] as? String)
            #expect(summary["events"] as? Int == stats["events"] as? Int)
            let lag = shadow["lag"] as! [String: Any]
            #expect(summary["lag_p99_ms"] as? Int == lag["p99_ms"] as? Int && lag["p99_ms"] as? Int != nil, "\(lag)")
            let last = shadow["last_verification"] as! [String: Any]
            #expect(summary["last_verdict"] as? String == last["verdict"] as? String)
            #expect(summary["clean_streak"] as? Int == (shadow["clean_streak"] as! [String: Any])["count"] as? Int)
            #expect(summary["verifications"] as? Int == 2)
            let verifications = try await withSession(store) {
                try $0.query("SELECT count(*)::int8 FROM ledgerlift.shadow_verifications").rows[0].decode(
                    at: 0, as: Int64.self)
            }
            #expect(summary["verifications"] as? Int == Int(verifications))
            #expect(
                summary["quarantined_keys"] as? Int == (shadow["quarantined"] as! [String: Any])["total"] as? Int
                    && summary["quarantined_keys"] as? Int == 3)
            let logEvents = log["events"] as! [[String: Any]]
            let switched = logEvents.last {
                $0["type"] as? String == "CutoverAdvanced" && $0["to"] as? String == "writes_switched"
            }!
            let freeze = (switched["measurements"] as! [String: String])["freeze_ms"]!
            #expect(summary["freeze_ms"] as? Int == Int(freeze))
            let events = (dossier["cutover"] as! [String: Any])["events"] as! [[String: Any]]
            #expect(events.count == logEvents.count)
            for (mine, theirs) in zip(events, logEvents) {
                for key in ["type", "who", "host", "at", "from", "to", "reason", "failure"] where theirs[key] != nil {
                    #expect(mine[key] as? String == theirs[key] as? String, "\(key): \(mine) vs \(theirs)")
                }
                if let measured = theirs["measurements"] as? [String: String] {
                    #expect(mine["measurements"] as? [String: String] == measured)
                }
            }
            #expect(
                events.map { $0["kind"] as! String } == [
                    "initialized", "advanced", "advanced", "advanced", "advanced", "advanced", "rolled_back",
                    "advanced",
                    "advanced", "switch_begun", "switch_undone", "switch_begun", "advanced",
                ])
            #expect((events[10]["failure"] as? String)?.contains("was not granted within --max-freeze 300 ms") == true)
            // Events by type and evidence: the store's own counts.
            let byType = (dossier["events"] as! [String: Any])["by_type"] as! [[String: Any]]
            let statsByType = stats["by_type"] as! [[String: Any]]
            #expect(byType.map { $0["type"] as! String } == statsByType.map { $0["type"] as! String })
            #expect(byType.map { $0["events"] as! Int } == statsByType.map { $0["events"] as! Int })
            let byEvidence = Dictionary(
                uniqueKeysWithValues: ((dossier["events"] as! [String: Any])["by_evidence"] as! [[String: Any]]).map {
                    ($0["evidence"] as! String, $0["events"] as! Int)
                })
            let expected = try await withSession(store) { session in
                try session.query(
                    "SELECT coalesce(metadata->>'evidence', '(none)'), count(*)::int8 FROM ledgerlift.events GROUP BY 1"
                ).rows.map { (try $0.decode(at: 0, as: String.self), Int(try $0.decode(at: 1, as: Int64.self))) }
            }
            #expect(byEvidence == Dictionary(uniqueKeysWithValues: expected))
            #expect(byEvidence["(none)"] == logEvents.count)
            #expect(
                (byEvidence["observed"] ?? 0) > 0 && (byEvidence["imported"] ?? 0) + (byEvidence["inferred"] ?? 0) > 0)
            let writeRate = dossier["write_rate"] as! [String: Any]
            #expect(
                (writeRate["buckets"] as! [[String: Any]]).reduce(0) { $0 + ($1["events"] as! Int) } == stats["events"]
                    as? Int)
            #expect((writeRate["freezes"] as! [[String: Any]]).map { $0["freeze_ms"] as? Int } == [Int(freeze)])
            let lagSection = dossier["lag"] as! [String: Any]
            #expect(
                (lagSection["buckets"] as! [[String: Any]]).reduce(0) { $0 + ($1["samples"] as! Int) } == lagSection[
                    "samples"] as? Int)
            #expect(lagSection["window_p99_ms"] as? Int == lag["p99_ms"] as? Int)

            // HTML: well-formed (parsed as XML), every section, no script, nothing fetched.
            let document = try XMLDocument(xmlString: html, options: [])
            for id in Self.sections {
                let section = try Self.elements(document, "//section[@id='\(id)']")
                #expect(section.count == 1, "section \(id)")
                #expect(try Self.elements(document, "//section[@id='\(id)']/h2").count == 1, "heading of \(id)")
            }
            #expect(!html.contains("<script") && !html.contains(" src=") && !html.contains(" href="))
            #expect(!html.contains("<4711>") && html.contains("change &lt;4711&gt; &amp; &quot;go&quot;"))
            #expect(document.rootElement()?.stringValue?.contains(Self.hostile) == true)
            #expect(document.rootElement()?.stringValue?.contains("<script>alert(1)</script>") == true)
            #expect(try Self.elements(document, "//*[local-name()='svg']").count == 4)
            // The summary's figures, as the page shows them.
            var cards = [String: String]()
            for card in try Self.elements(document, "//section[@id='summary']//div[contains(@class,'card ')]") {
                let divs = (card.children ?? []).compactMap { $0 as? XMLElement }
                if divs.count >= 2 { cards[divs[0].stringValue ?? ""] = divs[1].stringValue }
            }
            #expect(cards["Cutover state"] == "writes_switched")
            #expect(cards["Events"] == Self.grouped(stats["events"] as! Int))
            #expect(cards["Verifications"] == "2")
            // Shown as the dossier writes durations: "ms" below 10 s, seconds above (a loaded
            // machine's catch-up lags that long).
            #expect(cards["Lag p99"] == DossierFormat.milliseconds(Int64(lag["p99_ms"] as! Int)))
            #expect(cards["Write freeze"] == DossierFormat.milliseconds(Int64(freeze)!))
            #expect(cards["Quarantined keys"] == "3")
            // The timeline names who took each step, the undone switch and the rollback.
            let rows = try Self.elements(document, "//section[@id='timeline']//tbody/tr")
            #expect(rows.count == logEvents.count)
            #expect(
                try Self.elements(document, "//section[@id='timeline']//tr[@class='kind-switch_undone']").count == 1)
            #expect(try Self.elements(document, "//section[@id='timeline']//tr[@class='kind-rolled_back']").count == 1)
            let who = "\(logEvents[1]["who"] as! String)@\(logEvents[1]["host"] as! String)"
            #expect(rows.allSatisfy { ($0.stringValue ?? "").contains(who) })
            #expect(html.contains("support saw a stale balance"))
            // The freeze is marked on the write-rate chart.
            #expect(
                try Self.elements(document, "//section[@id='write-rate']//*[local-name()='rect'][@class='freeze']")
                    .count == 1)
            #expect(try Self.elements(document, "//section[@id='gates']//h3").count >= 6)

            // Markdown: the same sections, as tables.
            for heading in [
                "## Summary", "## Cutover timeline", "## Gate evidence per transition", "## Verification history",
                "## Lag over time", "## Write rate over time", "## Quarantine", "## Events by type and evidence",
            ] {
                #expect(markdown.contains("\n" + heading + "\n"), "\(heading)")
            }
            #expect(markdown.contains("| cutover state | writes\\_switched |"), "\(markdown.prefix(600))")
            #expect(markdown.contains("| write freeze | \(Self.grouped(Int(freeze)!)) ms |"))
            #expect(markdown.contains("change \\<4711\\> & \"go\""))
        }
    }

    static func grouped(_ value: Int) -> String {
        let formatter = NumberFormatter()
        formatter.numberStyle = .decimal
        formatter.groupingSeparator = ","
        formatter.usesGroupingSeparator = true
        return formatter.string(from: NSNumber(value: value)) ?? String(value)
    }

    /// A store where nothing was planned (and shadow mode never ran), and a database without a
    /// store at all: each still gets a dossier, saying so in every section.
    @Test func withoutACutoverOrShadowModeEverySectionSaysSo() async throws {
        try await withLegacyAndStore { legacy, store in
            for arguments in [["--store", store], ["--store", store, "--legacy", legacy], ["--store", legacy]] {
                let html = try await ledgerliftOK(["report", "migration"] + arguments).stdout
                let document = try XMLDocument(xmlString: html, options: [])
                for id in Self.sections {
                    #expect(try Self.elements(document, "//section[@id='\(id)']").count == 1, "section \(id)")
                    let empty = try Self.elements(document, "//section[@id='\(id)']//p[@class='empty']")
                    if id != "summary" { #expect(!empty.isEmpty, "\(id) says it is empty: \(arguments.count)") }
                }
                let text = document.rootElement()?.stringValue ?? ""
                #expect(
                    text.contains("No cutover named \"default\" in this store") || text.contains("holds no event store")
                )
                let json = try jsonObject(
                    try await ledgerliftOK(["report", "migration", "--format", "json"] + arguments).stdout)
                let summary = json["summary"] as! [String: Any]
                #expect(
                    summary["cutover_state"] is NSNull && summary["freeze_ms"] is NSNull
                        && summary["lag_p99_ms"] is NSNull)
                #expect(summary["events"] as? Int == 0 && summary["verifications"] as? Int == 0)
                #expect(json["cutover"] is NSNull)
                let markdown = try await ledgerliftOK(["report", "migration", "--format", "markdown"] + arguments)
                    .stdout
                #expect(markdown.contains("| cutover state | none |"))
            }
            // An invalid cutover name is refused as the cutover commands refuse it.
            let bad = try await ledgerlift(["report", "migration", "--store", store, "--name", "q4 rollout"])
            #expect(bad.status == 2 && bad.stderr.hasPrefix("Error: invalid cutover name"), "\(bad.stderr)")
        }
    }
}
