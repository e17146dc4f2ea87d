import Testing

@testable import Dossier

/// The pieces the page is made of, without a database.
@Suite("Dossier: escaping and buckets")
struct DossierRenderingTests {
    @Test func everythingFromTheDataIsEscapedAndControlCharactersCannotBreakTheXML() {
        #expect(HTML.escape("<a href='x'>\"&\"</a>") == "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;")
        #expect(HTML.escape("a\u{0}b\u{1B}c\u{85}d\te\nf") == "a\u{FFFD}b\u{FFFD}c\u{FFFD}d\te\nf")
        #expect(HTML.escape("é → ✓") == "é → ✓")
        #expect(MigrationDossier.md("a|b\nc `d` *e* <f>") == "a\\|b c \\`d\\` \\*e\\* \\<f\\>")
        // An operator's reason cannot move the reader's cursor nor reverse the line.
        #expect(MigrationDossier.md("ok\u{1B}[2Jgone\u{202E}x") == "ok\\u{1b}\\[2Jgone\\u{202e}x")
    }

    @Test func bucketsHaveARoundWidthAndAtMostTheCountAskedFor() {
        #expect(MigrationDossier.bucketWidth(span: 1, buckets: 60) == 1)
        #expect(MigrationDossier.bucketWidth(span: 61, buckets: 60) == 2)
        #expect(MigrationDossier.bucketWidth(span: 3600, buckets: 60) == 60)
        #expect(MigrationDossier.bucketWidth(span: 3601, buckets: 60) == 120)
        #expect(MigrationDossier.bucketWidth(span: 30 * 86400, buckets: 60) == 43200)
        #expect(MigrationDossier.bucketWidth(span: 365 * 86400, buckets: 60) == 7 * 86400)
        for span: Int64 in [1, 7, 59, 61, 599, 3599, 86_399, 86_401, 9_999_999] {
            let width = MigrationDossier.bucketWidth(span: span, buckets: 60)
            #expect((span + width - 1) / width <= 60, "\(span) in buckets of \(width)")
        }
    }

    @Test func thousandsAreGroupedAndDurationsNamed() {
        #expect(DossierFormat.number(Int64(1_234_567)) == "1,234,567")
        #expect(DossierFormat.number(Int64(-1000)) == "-1,000")
        #expect(DossierFormat.number(Int64(999)) == "999")
        #expect(DossierFormat.milliseconds(nil) == "–")
        #expect(DossierFormat.milliseconds(12) == "12 ms")
        #expect(DossierFormat.milliseconds(12_500) == "12.5 s")
        #expect(DossierFormat.width(900) == "15 min")
    }
}
