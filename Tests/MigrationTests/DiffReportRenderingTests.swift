import Mapping
import Billing
import Diff
import Foundation
import FoundationXML
import Testing

/// Hand-built reports: one clean, one with every kind of finding and awkward values.
private enum Reports {
    /// A value with everything the formats must escape: a table pipe, a backtick, the five XML
    /// specials and a line break.
    static let awkward = "a|b`c<&\"'>\nd"

    static let clean = DiffReport(
        legacy: "postgres://app:****@legacy/billing", store: "postgres://app:****@ledger/ledger",
        mapping: "mapping.yaml", readSchema: "ledgerlift_read", maxRows: 100,
        entities: [
            EntityDiff(
                entity: .customer, legacyRows: 12, ledgerRows: 12, compared: 12, matched: 12, bucketsCompared: 16,
                duration: .milliseconds(40)
            ),
            EntityDiff(
                entity: .invoice, legacyRows: 30, ledgerRows: 30, compared: 30, matched: 30, bucketsCompared: 16,
                duration: .milliseconds(60)
            ),
        ],
        invariants: [
            InvariantResult(
                name: "invoice_total", summary: "An invoice's total is the sum of its lines.", checked: 30,
                violations: 0, offending: [])
        ],
        duration: .milliseconds(250)
    )

    static let dirty = DiffReport(
        legacy: "postgres://app:****@legacy/billing", store: "postgres://app:****@ledger/ledger",
        mapping: "maps/<&\"'>.yaml", readSchema: "ledgerlift_read", maxRows: 4,
        entities: [
            EntityDiff(
                entity: .customer, legacyRows: 12, ledgerRows: 12, compared: 12, matched: 12, bucketsCompared: 16,
                duration: .milliseconds(40)
            ),
            EntityDiff(
                entity: .invoice, legacyRows: 30, ledgerRows: 31, compared: 32, matched: 27, missingInLedger: 1,
                extraInLedger: 2, mismatched: 2,
                differences: [
                    RowDifference(
                        key: "inv-1042", kind: .mismatched,
                        columns: [
                            ColumnDifference(column: "amount_due", legacy: "1900", ledger: "1800"),
                            ColumnDifference(column: "memo", legacy: nil, ledger: ""),
                        ]),
                    RowDifference(
                        key: "inv-1043", kind: .missingInLedger,
                        columns: [
                            ColumnDifference(column: "invoice_id", legacy: "inv-1043", ledger: nil),
                            ColumnDifference(column: "amount_due", legacy: "500", ledger: nil),
                        ]),
                    RowDifference(
                        key: "inv-1044", kind: .mismatched,
                        columns: [
                            ColumnDifference(column: "note", legacy: awkward, ledger: "NULL")
                        ]),
                    RowDifference(
                        key: "inv-9001", kind: .extraInLedger,
                        columns: [
                            ColumnDifference(column: "invoice_id", legacy: nil, ledger: "inv-9001")
                        ]),
                ],
                resolvedByReverification: 1, bucketsCompared: 48, rowsFetched: 20, duration: .nanoseconds(1_999_600_000)
            ),
            EntityDiff(
                entity: .payment, legacyRows: 7, ledgerRows: 7, compared: 7, matched: 7, quarantined: 3,
                quarantine: [
                    QuarantinedRow(
                        key: "pay-7", reason: "unknown_currency", detail: "currency 'XYZ' is not in ISO 4217"),
                    QuarantinedRow(key: "pay-8", reason: "negative_amount", detail: "amount -5 < 0 & refunded"),
                ],
                bucketsCompared: 8, duration: .milliseconds(5)
            ),
        ],
        invariants: [
            InvariantResult(
                name: "invoice_total", summary: "An invoice's total is the sum of its lines.", checked: 30,
                violations: 0, offending: []),
            InvariantResult(
                name: "receivable_balance", summary: "A customer's balance equals their open invoices.", checked: 12,
                violations: 2, offending: [InvariantViolation(key: "cus-3", detail: "balance 100 ≠ open invoices 90")]
            ),
        ],
        duration: .milliseconds(1234)
    )

    /// Run-level notes as `diff` writes them, and one with markup, XML specials, a line break
    /// and an escape character that every format must neutralize.
    static let notes = [
        "the projection was still 1,234 events behind after waiting 30 s; differences were re-checked anyway",
        "re-verification skipped (--no-reverify)",
        "1,000,000 differences in invoice_line: only the first 100,000 were kept to list and re-check",
        "- `x` <b>&</b> | *y*\n\u{1B}[2J done",
    ]

    /// ``dirty`` with ``notes``.
    static var dirtyWithNotes: DiffReport {
        var report = dirty
        report.notes = notes
        return report
    }

    /// ``clean`` with ``notes``: still clean.
    static var cleanWithNotes: DiffReport {
        var report = clean
        report.notes = notes
        return report
    }
}

@Suite("Diff report rendering")
struct DiffReportRenderingTests {
    // MARK: All formats

    @Test func everyFormatIsNamedByItsFlagValueAndEndsWithANewline() {
        #expect(DiffFormat.allCases.map(\.rawValue) == ["text", "json", "markdown", "junit"])
        for format in DiffFormat.allCases {
            #expect(Reports.dirty.rendered(format).hasSuffix("\n"), "\(format)")
            #expect(Reports.clean.rendered(format).hasSuffix("\n"), "\(format)")
        }
    }

    // MARK: Text

    @Test func textEndsWithTheVerdictAndTheDuration() {
        #expect(lastLine(Reports.clean.rendered(.text)) == "CLEAN: 0 differences, 0 broken invariants (0.250s)")
        #expect(
            lastLine(Reports.dirty.rendered(.text))
                == "NOT CLEAN: 5 differences, 1 broken invariant, 3 quarantined rows not compared (1.234s)"
        )
    }

    @Test func textHasOneSummaryRowPerEntityWithEveryCount() throws {
        let lines = Reports.dirty.rendered(.text).split(separator: "\n").map(String.init)
        let header = try #require(lines.first { $0.hasPrefix("entity") })
        #expect(
            header.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
                == "entity legacy rows ledger rows matched missing extra mismatched quarantined resolved"
        )
        // entity, legacy, ledger, matched, missing, extra, mismatched, quarantined, resolved
        #expect(lines.contains { words($0) == ["invoice", "30", "31", "27", "1", "2", "2", "0", "1"] })
        #expect(lines.contains { words($0) == ["payment", "7", "7", "7", "0", "0", "0", "3", "0"] })
        #expect(lines.contains { words($0) == ["customer", "12", "12", "12", "0", "0", "0", "0", "0"] })
    }

    @Test func textShowsEachMismatchedColumnAsLegacyArrowLedgerWithNullAndEmptyDistinct() {
        let text = Reports.dirty.rendered(.text)
        #expect(text.contains("inv-1042  mismatched\n      amount_due  1900 → 1800\n      memo        NULL → \"\"\n"))
        #expect(text.contains("inv-1043  missing_in_ledger\n"))
        #expect(text.contains("inv-9001  extra_in_ledger\n"))
        // The string "NULL" is quoted so it cannot be mistaken for SQL NULL; the line break in the
        // legacy value is escaped so it cannot start a line of its own.
        #expect(text.contains("note  \"a|b`c<&\\\"'>\\nd\" → \"NULL\"\n"))
        #expect(text.contains("  … and 1 more; raise --max-rows\n"))
    }

    @Test func textListsQuarantinedRowsApartAndBrokenInvariantsWithTheirKeys() throws {
        let text = Reports.dirty.rendered(.text)
        let quarantine = try #require(text.range(of: "\nQuarantined by the backfill or shadow mode (not compared)\n"))
        let differences = try #require(text.range(of: "\nDifferences\n"))
        #expect(differences.lowerBound < quarantine.lowerBound)
        #expect(text.contains("payment: 3 rows\n"))
        #expect(text.contains("  pay-7  unknown_currency  currency 'XYZ' is not in ISO 4217\n"))
        #expect(
            text.contains("  pay-8  negative_amount   amount -5 < 0 & refunded\n  … and 1 more; raise --max-rows\n"))
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.contains { words($0) == ["invoice_total", "30", "0", "holds"] })
        #expect(lines.contains { words($0) == ["receivable_balance", "12", "2", "BROKEN"] })
        #expect(text.contains("  cus-3  balance 100 ≠ open invoices 90\n  … and 1 more; raise --max-rows\n"))
    }

    @Test func textEscapesControlCharactersInDataSoTheyCannotReachTheTerminal() {
        var report = Reports.clean
        report.entities[0].missingInLedger = 1
        report.entities[0].differences = [RowDifference(key: "evil\u{1B}[2J", kind: .missingInLedger, columns: [])]
        let text = report.rendered(.text)
        #expect(!text.unicodeScalars.contains("\u{1B}"))
        #expect(text.contains("\"evil\\u001b[2J\"  missing_in_ledger"))
    }

    @Test func textQuotesValuesThatCouldBeMisreadAndLeavesPlainOnesBare() {
        var report = Reports.clean
        report.entities[0].mismatched = 1
        report.entities[0].differences = [
            RowDifference(
                key: "k", kind: .mismatched,
                columns: [
                    ColumnDifference(column: "a", legacy: "x → y", ledger: " lead"),
                    ColumnDifference(column: "b", legacy: "\"q", ledger: "plain text"),
                ])
        ]
        let text = report.rendered(.text)
        #expect(text.contains("      a  \"x → y\" → \" lead\"\n"))
        #expect(text.contains("      b  \"\\\"q\" → plain text\n"))
    }

    @Test func textShowsTheNotesJustBeforeTheVerdictWithControlCharactersEscaped() throws {
        let text = Reports.dirtyWithNotes.rendered(.text)
        let expected = [
            "Notes",
            "",
            "  - the projection was still 1,234 events behind after waiting 30 s; differences were re-checked anyway",
            "  - re-verification skipped (--no-reverify)",
            "  - 1,000,000 differences in invoice_line: only the first 100,000 were kept to list and re-check",
            "  - - `x` <b>&</b> | *y*\\n\\u001b[2J done",
            "",
            "NOT CLEAN: 5 differences, 1 broken invariant, 3 quarantined rows not compared (1.234s)",
            "",
        ].joined(separator: "\n")
        #expect(text.hasSuffix("\n\n" + expected))
        #expect(!text.unicodeScalars.contains("\u{1B}"))
        let invariants = try #require(text.range(of: "\nInvariants\n"))
        let notes = try #require(text.range(of: "\nNotes\n"))
        #expect(invariants.lowerBound < notes.lowerBound)
    }

    @Test func textWithoutNotesHasNoNotesSection() {
        for report in [Reports.clean, Reports.dirty] {
            let text = report.rendered(.text)
            #expect(!lines(text).contains("Notes"))
            #expect(text == report.rendered(.text))
        }
    }

    // MARK: JSON

    @Test func jsonHasTheDocumentedKeysInTheDocumentedOrder() throws {
        let json = Reports.dirty.rendered(.json)
        let expectedStart: String = [
            #"{"clean":false,"exit_code":1,"legacy":"postgres://app:****@legacy/billing","#,
            #""store":"postgres://app:****@ledger/ledger","mapping":"maps/<&\"'>.yaml","#,
            #""read_schema":"ledgerlift_read","max_rows":4,"duration_ms":1234,"notes":[],"#,
            #""entities":[{"entity":"customer","legacy_rows":12,"ledger_rows":12,"compared":12,"matched":12,"#,
            #""missing_in_ledger":0,"extra_in_ledger":0,"mismatched":0,"resolved_by_reverification":0,"#,
            #""quarantined":0,"buckets_compared":16,"rows_fetched":0,"truncated":false,"differences":[],"#,
            #""quarantine":[],"duration_ms":40},"#,
        ].joined()
        #expect(json.hasPrefix(expectedStart))
        let expectedInvariant: String = [
            #""invariants":[{"name":"invoice_total","summary":"An invoice's total is the sum of its lines.","#,
            #""holds":true,"checked":30,"violations":0,"offending":[]}"#,
        ].joined()
        #expect(json.contains(expectedInvariant))
        #expect(json == Reports.dirty.rendered(.json), "the same report renders to the same bytes")
    }

    @Test func jsonParsesAndCarriesCountsKeysColumnsAndNullApartFromEmpty() throws {
        let root = try parseJSON(Reports.dirty.rendered(.json))
        #expect(root["clean"] as? Bool == false)
        #expect(root["exit_code"] as? Int == 1)
        #expect(root["max_rows"] as? Int == 4)
        #expect(root["duration_ms"] as? Int == 1234)
        #expect(root["mapping"] as? String == "maps/<&\"'>.yaml")
        let entities = try #require(root["entities"] as? [[String: Any]])
        #expect(entities.map { $0["entity"] as? String } == ["customer", "invoice", "payment"])

        let invoice = entities[1]
        #expect(invoice["missing_in_ledger"] as? Int == 1)
        #expect(invoice["extra_in_ledger"] as? Int == 2)
        #expect(invoice["mismatched"] as? Int == 2)
        #expect(invoice["resolved_by_reverification"] as? Int == 1)
        #expect(invoice["truncated"] as? Bool == true)
        #expect(invoice["duration_ms"] as? Int == 2000, "1.9996 s rounds to the nearest millisecond")
        let differences = try #require(invoice["differences"] as? [[String: Any]])
        #expect(differences.map { $0["key"] as? String } == ["inv-1042", "inv-1043", "inv-1044", "inv-9001"])
        #expect(
            differences.map { $0["kind"] as? String }
                == ["mismatched", "missing_in_ledger", "mismatched", "extra_in_ledger"])

        let columns = try #require(differences[0]["columns"] as? [[String: Any]])
        #expect(columns[0]["column"] as? String == "amount_due")
        #expect(columns[0]["legacy"] as? String == "1900")
        #expect(columns[0]["ledger"] as? String == "1800")
        #expect(columns[1]["column"] as? String == "memo")
        #expect(columns[1]["legacy"] is NSNull, "SQL NULL is JSON null")
        #expect(columns[1]["ledger"] as? String == "", "the empty string stays a string")

        let missing = try #require(differences[1]["columns"] as? [[String: Any]])
        #expect(missing[1]["legacy"] as? String == "500")
        #expect(missing[1]["ledger"] is NSNull)

        let awkward = try #require(differences[2]["columns"] as? [[String: Any]])
        #expect(awkward[0]["legacy"] as? String == Reports.awkward)
        #expect(awkward[0]["ledger"] as? String == "NULL")

        let quarantine = try #require(entities[2]["quarantine"] as? [[String: Any]])
        #expect(quarantine.count == 2)
        #expect(quarantine[1]["key"] as? String == "pay-8")
        #expect(quarantine[1]["reason"] as? String == "negative_amount")
        #expect(quarantine[1]["detail"] as? String == "amount -5 < 0 & refunded")
        #expect(entities[2]["quarantined"] as? Int == 3)

        let invariants = try #require(root["invariants"] as? [[String: Any]])
        #expect(invariants.map { $0["holds"] as? Bool } == [true, false])
        let broken = invariants[1]
        #expect(broken["name"] as? String == "receivable_balance")
        #expect(broken["violations"] as? Int == 2)
        let offending = try #require(broken["offending"] as? [[String: Any]])
        #expect(offending.count == 1)
        #expect(offending[0]["key"] as? String == "cus-3")
        #expect(offending[0]["detail"] as? String == "balance 100 ≠ open invoices 90")
    }

    @Test func jsonOfACleanReportSaysCleanWithExitCodeZero() throws {
        let root = try parseJSON(Reports.clean.rendered(.json))
        #expect(root["clean"] as? Bool == true)
        #expect(root["exit_code"] as? Int == 0)
    }

    @Test func jsonEscapesControlCharactersAndKeepsNonASCIIAsUTF8() throws {
        var report = Reports.clean
        let value = "tab\there \u{1}\u{1F} é € 🧾 \\ \"q\""
        report.entities[0].mismatched = 1
        report.entities[0].differences = [
            RowDifference(
                key: value, kind: .mismatched, columns: [ColumnDifference(column: "name", legacy: value, ledger: nil)])
        ]
        let json = report.rendered(.json)
        #expect(json.contains("\"key\":\"tab\\there \\u0001\\u001f é € 🧾 \\\\ \\\"q\\\"\""))
        #expect(!json.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" })
        let root = try parseJSON(json)
        let entities = try #require(root["entities"] as? [[String: Any]])
        let differences = try #require(entities[0]["differences"] as? [[String: Any]])
        #expect(differences[0]["key"] as? String == value)
    }

    @Test func jsonCarriesTheNotesVerbatimRightAfterTheDuration() throws {
        let json = Reports.dirtyWithNotes.rendered(.json)
        #expect(
            json.contains(
                #""duration_ms":1234,"notes":["the projection was still 1,234 events behind after waiting 30 s; "#
                    + #"differences were re-checked anyway","re-verification skipped (--no-reverify)","#
            ))
        #expect(json.contains(#""- `x` <b>&</b> | *y*\n\u001b[2J done"],"entities":["#))
        let root = try parseJSON(json)
        #expect(root["notes"] as? [String] == Reports.notes)
        #expect(try parseJSON(Reports.clean.rendered(.json))["notes"] as? [String] == [], "always present")
    }

    // MARK: Notes never change the verdict

    @Test func notesNeverChangeTheVerdictOrTheExitCode() throws {
        #expect(Reports.cleanWithNotes.isClean)
        #expect(Reports.cleanWithNotes.exitCode == 0)
        #expect(Reports.dirtyWithNotes.exitCode == 1)
        let root = try parseJSON(Reports.cleanWithNotes.rendered(.json))
        #expect(root["clean"] as? Bool == true)
        #expect(root["exit_code"] as? Int == 0)
        #expect(
            lastLine(Reports.cleanWithNotes.rendered(.text)) == "CLEAN: 0 differences, 0 broken invariants (0.250s)")
        #expect(Reports.cleanWithNotes.rendered(.markdown).hasPrefix("## ✅ ledgerlift diff: clean\n"))
        let document = try XMLDocument(xmlString: Reports.cleanWithNotes.rendered(.junit))
        #expect(try document.nodes(forXPath: "//failure").isEmpty)
        #expect(attribute(try #require(document.rootElement()), "failures") == "0")
        #expect(attribute(try #require(document.rootElement()), "tests") == "3")
    }

    // MARK: Markdown

    @Test func markdownHeadingCarriesTheVerdict() {
        #expect(Reports.clean.rendered(.markdown).hasPrefix("## ✅ ledgerlift diff: clean\n"))
        #expect(
            Reports.dirty.rendered(.markdown).hasPrefix("## ❌ ledgerlift diff: 5 differences, 1 broken invariant\n"))
    }

    @Test func markdownHasASummaryRowPerEntity() {
        let lines = lines(Reports.dirty.rendered(.markdown))
        #expect(
            lines.contains(
                "| entity | legacy rows | ledger rows | matched | missing | extra | mismatched | quarantined "
                    + "| resolved by re-verification |"
            ))
        #expect(lines.contains("| `customer` | 12 | 12 | 12 | 0 | 0 | 0 | 0 | 0 |"))
        #expect(lines.contains("| `invoice` | 30 | 31 | 27 | 1 | 2 | 2 | 0 | 1 |"))
        #expect(lines.contains("| `payment` | 7 | 7 | 7 | 0 | 0 | 0 | 3 | 0 |"))
    }

    @Test func markdownListsDifferencesOneColumnPerRowWithNullAndEmptyDistinct() {
        let markdown = Reports.dirty.rendered(.markdown)
        let lines = lines(markdown)
        #expect(lines.contains("| key | kind | column | legacy | ledger |"))
        #expect(lines.contains("| `inv-1042` | mismatched | `amount_due` | `1900` | `1800` |"))
        #expect(lines.contains("| `inv-1042` | mismatched | `memo` | *NULL* | *empty* |"))
        #expect(lines.contains("| `inv-1043` | missing_in_ledger |  |  |  |"))
        #expect(lines.contains("| `inv-9001` | extra_in_ledger |  |  |  |"))
        #expect(lines.contains("… and 1 more; raise `--max-rows`."))
    }

    @Test func markdownEscapesPipesBackticksAndLineBreaksInsideCells() {
        let lines = lines(Reports.dirty.rendered(.markdown))
        // The pipe is escaped for the table, the fence is longer than the value's backtick run,
        // and the line break is shown as ␊ so the row stays one line.
        #expect(lines.contains("| `inv-1044` | mismatched | `note` | ``a\\|b`c<&\"'>␊d`` | `NULL` |"))
        for line in lines where line.hasPrefix("| `inv-") {
            #expect(unescapedPipes(line) == 6, "five cells: \(line)")
        }
    }

    @Test func markdownPadsCodeSpansThatStartOrEndWithABacktick() {
        var report = Reports.clean
        report.entities[0].mismatched = 1
        report.entities[0].differences = [
            RowDifference(
                key: "k", kind: .mismatched,
                columns: [
                    ColumnDifference(column: "c", legacy: "`x``", ledger: " padded ")
                ])
        ]
        #expect(lines(report.rendered(.markdown)).contains("| `k` | mismatched | `c` | ``` `x`` ``` | `  padded  ` |"))
    }

    @Test func markdownListsQuarantineAndInvariantsWithFreeTextEscaped() {
        let lines = lines(Reports.dirty.rendered(.markdown))
        #expect(lines.contains("### Quarantined by the backfill or shadow mode (not compared)"))
        #expect(lines.contains("| `pay-7` | unknown\\_currency | currency 'XYZ' is not in ISO 4217 |"))
        #expect(lines.contains("| `pay-8` | negative\\_amount | amount -5 \\< 0 \\& refunded |"))
        #expect(
            lines.contains(
                "| `receivable_balance` | ❌ broken | 12 | 2 | A customer's balance equals their open invoices. |"
            ))
        #expect(lines.contains("| `invoice_total` | ✅ holds | 30 | 0 | An invoice's total is the sum of its lines. |"))
        #expect(lines.contains("#### `receivable_balance`: 2 violations"))
        #expect(lines.contains("| `cus-3` | balance 100 ≠ open invoices 90 |"))
    }

    @Test func markdownCollapsesLongListsInDetails() {
        var report = Reports.clean
        report.entities[0].missingInLedger = 11
        report.entities[0].differences = (1...11).map {
            RowDifference(key: "c-\($0)", kind: .missingInLedger, columns: [])
        }
        let markdown = report.rendered(.markdown)
        #expect(markdown.contains("<details><summary>11 rows</summary>\n\n| key | kind | column | legacy | ledger |"))
        #expect(markdown.contains("| `c-11` | missing_in_ledger |  |  |  |\n\n</details>"))
        #expect(!Reports.dirty.rendered(.markdown).contains("<details>"), "short lists stay open")
    }

    @Test func markdownListsTheNotesUnderTheSummaryTableEscapedLikeOtherFreeText() throws {
        let markdown = Reports.dirtyWithNotes.rendered(.markdown)
        let expected = [
            "### Notes",
            "",
            "- the projection was still 1,234 events behind after waiting 30 s; differences were re-checked anyway",
            "- re-verification skipped (--no-reverify)",
            "- 1,000,000 differences in invoice\\_line: only the first 100,000 were kept to list and re-check",
            // The leading "-" cannot open a nested list, markup is escaped, the line break is <br>
            // (the item stays one line) and the escape character is shown as its Control Picture.
            "- \\- \\`x\\` \\<b\\>\\&\\</b\\> \\| \\*y\\*<br>␛\\[2J done",
        ].joined(separator: "\n")
        #expect(
            markdown.contains("| `payment` | 7 | 7 | 7 | 0 | 0 | 0 | 3 | 0 |\n\n" + expected + "\n\n### Differences\n"))
        #expect(!markdown.unicodeScalars.contains("\u{1B}"))
    }

    @Test func markdownNotesCannotOpenNestedListsRulesOrCodeBlocks() {
        var report = Reports.clean
        report.notes = ["      indented", "+ plus", "--- rule", "12. twelve", "3) three", "1,000 rows", "2024 was"]
        let lines = lines(report.rendered(.markdown))
        #expect(lines.contains("- indented"))
        #expect(lines.contains("- \\+ plus"))
        #expect(lines.contains("- \\--- rule"))
        #expect(lines.contains("- 12\\. twelve"))
        #expect(lines.contains("- 3\\) three"))
        #expect(lines.contains("- 1,000 rows"))
        #expect(lines.contains("- 2024 was"))
    }

    @Test func markdownWithoutNotesHasNoNotesSection() {
        #expect(!Reports.clean.rendered(.markdown).contains("### Notes"))
        #expect(!Reports.dirty.rendered(.markdown).contains("### Notes"))
    }

    // MARK: JUnit

    @Test func junitParsesAsXMLWithOneTestCasePerEntityAndPerInvariant() throws {
        let document = try XMLDocument(xmlString: Reports.dirty.rendered(.junit))
        let root = try #require(document.rootElement())
        #expect(root.name == "testsuites")
        #expect(attribute(root, "tests") == "5")
        #expect(attribute(root, "failures") == "2")
        #expect(attribute(root, "errors") == "0")
        #expect(attribute(root, "time") == "1.234")

        let suites = root.elements(forName: "testsuite")
        #expect(suites.map { attribute($0, "name") } == ["ledgerlift diff: rows", "ledgerlift diff: invariants"])
        let rows = suites[0]
        #expect(attribute(rows, "tests") == "3")
        #expect(attribute(rows, "failures") == "1")
        #expect(attribute(rows, "time") == "2.045", "the entities' times summed")
        let cases = rows.elements(forName: "testcase")
        #expect(cases.map { attribute($0, "name") } == ["customer", "invoice", "payment"])
        #expect(cases.allSatisfy { attribute($0, "classname") == "ledgerlift.diff.rows" })
        #expect(cases.map { attribute($0, "time") } == ["0.040", "2.000", "0.005"])

        let invariants = suites[1].elements(forName: "testcase")
        #expect(attribute(suites[1], "tests") == "2")
        #expect(attribute(suites[1], "failures") == "1")
        #expect(invariants.map { attribute($0, "name") } == ["invoice_total", "receivable_balance"])
        #expect(invariants.allSatisfy { attribute($0, "classname") == "ledgerlift.diff.invariants" })
    }

    @Test func junitFailsExactlyTheEntitiesWithDifferencesAndTheBrokenInvariants() throws {
        let document = try XMLDocument(xmlString: Reports.dirty.rendered(.junit))
        let cases = try document.nodes(forXPath: "//testcase").compactMap { $0 as? XMLElement }
        let failed = cases.filter { !$0.elements(forName: "failure").isEmpty }.map { attribute($0, "name") }
        #expect(failed == ["invoice", "receivable_balance"])

        let invoice = try #require(cases.first { attribute($0, "name") == "invoice" })
        let failure = try #require(invoice.elements(forName: "failure").first)
        #expect(attribute(failure, "message") == "5 differences")
        #expect(attribute(failure, "type") == "rows")
        let text = failure.stringValue ?? ""
        #expect(text.contains("inv-1042  mismatched\n      amount_due  1900 → 1800\n"))
        #expect(text.contains("note  \"a|b`c<&\\\"'>\\nd\" → \"NULL\""), "the XML specials survive escaping")
        #expect(text.contains("… and 1 more; raise --max-rows"))

        let broken = try #require(cases.first { attribute($0, "name") == "receivable_balance" })
        let brokenFailure = try #require(broken.elements(forName: "failure").first)
        #expect(attribute(brokenFailure, "message") == "2 violations")
        #expect(attribute(brokenFailure, "type") == "invariant")
        #expect(brokenFailure.stringValue?.contains("cus-3  balance 100 ≠ open invoices 90") == true)
    }

    @Test func junitPutsQuarantinedRowsInSystemOutNotInFailures() throws {
        let document = try XMLDocument(xmlString: Reports.dirty.rendered(.junit))
        let payment = try #require(
            try document.nodes(forXPath: "//testcase[@name='payment']").first as? XMLElement
        )
        #expect(payment.elements(forName: "failure").isEmpty)
        let out = payment.elements(forName: "system-out").first?.stringValue ?? ""
        #expect(out.contains("quarantined 3"))
        #expect(out.contains("pay-8  negative_amount   amount -5 < 0 & refunded"))
        #expect(out.contains("… and 1 more; raise --max-rows"))
    }

    @Test func junitEscapesAttributesAndReplacesCharactersXMLCannotHold() throws {
        var report = Reports.dirty
        report.legacy = "line one\nline\ttwo \u{0}\u{8}\u{FFFF} <&\"'>"
        let xml = report.rendered(.junit)
        let document = try XMLDocument(xmlString: xml)
        let property = try #require(
            try document.nodes(forXPath: "//property[@name='legacy']").first as? XMLElement
        )
        #expect(attribute(property, "value") == "line one\nline\ttwo ␀␈\u{FFFD} <&\"'>")
        let mapping = try #require(try document.nodes(forXPath: "//property[@name='mapping']").first as? XMLElement)
        #expect(attribute(mapping, "value") == "maps/<&\"'>.yaml")
    }

    @Test func junitOfACleanReportHasNoFailures() throws {
        let document = try XMLDocument(xmlString: Reports.clean.rendered(.junit))
        #expect(try document.nodes(forXPath: "//failure").isEmpty)
        #expect(try document.nodes(forXPath: "//testcase").count == 3)
        #expect(attribute(try #require(document.rootElement()), "failures") == "0")
    }

    @Test func junitPutsTheNotesInTheRowsSuiteSystemOutAndStillParses() throws {
        let xml = Reports.dirtyWithNotes.rendered(.junit)
        #expect(!xml.unicodeScalars.contains("\u{1B}"))
        let document = try XMLDocument(xmlString: xml)
        let root = try #require(document.rootElement())
        #expect(attribute(root, "tests") == "5")
        #expect(attribute(root, "failures") == "2", "notes are not failures")
        let suites = root.elements(forName: "testsuite")
        let rows = try #require(suites.first)
        #expect(attribute(rows, "name") == "ledgerlift diff: rows")
        let outs = rows.elements(forName: "system-out")
        #expect(outs.count == 1)
        let out = outs.first?.stringValue ?? ""
        #expect(
            out
                == [
                    "notes:",
                    "  - the projection was still 1,234 events behind after waiting 30 s; differences were re-checked anyway",
                    "  - re-verification skipped (--no-reverify)",
                    "  - 1,000,000 differences in invoice_line: only the first 100,000 were kept to list and re-check",
                    "  - - `x` <b>&</b> | *y*\\n\\u001b[2J done",
                ].joined(separator: "\n"))
        // The suite's <system-out> follows its test cases, as the JUnit schema orders them.
        let children = (rows.children ?? []).compactMap { $0 as? XMLElement }.map(\.name)
        #expect(children.last == "system-out")
        #expect(suites[1].elements(forName: "system-out").isEmpty)
    }

    @Test func junitWithoutNotesHasNoSuiteSystemOut() throws {
        let document = try XMLDocument(xmlString: Reports.dirty.rendered(.junit))
        let suites = try #require(document.rootElement()).elements(forName: "testsuite")
        #expect(suites.allSatisfy { $0.elements(forName: "system-out").isEmpty })
    }

    @Test func junitErrorReportsWhyTheDiffCouldNotRun() throws {
        let message = "could not connect to postgres://app:****@legacy/billing: <timeout>\u{1}\nsecond & last line"
        let xml = DiffReportRendering.junitError(message)
        #expect(xml.hasPrefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"))
        let document = try XMLDocument(xmlString: xml)
        let root = try #require(document.rootElement())
        #expect(attribute(root, "tests") == "1")
        #expect(attribute(root, "errors") == "1")
        #expect(attribute(root, "failures") == "0")
        let suites = root.elements(forName: "testsuite")
        #expect(suites.map { attribute($0, "name") } == ["ledgerlift diff"])
        let cases = suites.first?.elements(forName: "testcase") ?? []
        #expect(cases.count == 1)
        let error = try #require(cases.first?.elements(forName: "error").first)
        #expect(attribute(error, "message") == "could not connect to postgres://app:****@legacy/billing: <timeout>␁")
        #expect(
            error.stringValue
                == "could not connect to postgres://app:****@legacy/billing: <timeout>␁\nsecond & last line")
    }
}

// MARK: - Helpers

private func lastLine(_ text: String) -> String? {
    text.split(separator: "\n").last.map(String.init)
}

private func lines(_ text: String) -> [String] {
    text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
}

private func words(_ line: String) -> [String] {
    line.split(separator: " ").map(String.init)
}

/// Pipes that delimit GFM table cells (a pipe after a backslash is content).
private func unescapedPipes(_ line: String) -> Int {
    var count = 0
    var previous: Character?
    for character in line {
        if character == "|" && previous != "\\" { count += 1 }
        previous = character
    }
    return count
}

private func parseJSON(_ text: String) throws -> [String: Any] {
    let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
    return try #require(object as? [String: Any])
}

private func attribute(_ element: XMLElement, _ name: String) -> String? {
    element.attribute(forName: name)?.stringValue
}
