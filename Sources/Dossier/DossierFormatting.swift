import Billing
import Cutover
import EventStore
import Foundation
import Postgres
import Shadow
import TextFormats

/// Formatting shared by the HTML and Markdown forms.
enum DossierFormat {
    /// `12,345`.
    static func number(_ value: Int64) -> String {
        let digits = String(value.magnitude)
        var out = ""
        for (index, character) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { out += "," }
            out.append(character)
        }
        return (value < 0 ? "-" : "") + out
    }

    static func number(_ value: Int) -> String { number(Int64(value)) }

    static func milliseconds(_ value: Int64?) -> String {
        guard let value else { return "–" }
        return value < 10_000 ? "\(number(value)) ms" : String(format: "%.1f s", Double(value) / 1000)
    }

    /// `2024-03-01 12:00:05Z` (seconds; the full value is in the JSON).
    static func time(_ t: PostgresTimestamp?) -> String {
        guard let t else { return "–" }
        let iso = t.iso8601
        guard iso.count >= 19 else { return iso }
        return String(iso.prefix(10)) + " " + String(iso.dropFirst(11).prefix(8)) + "Z"
    }

    /// An actor's ISO 8601 time shown as ``time(_:)``; as stored when it does not parse.
    static func time(_ text: String) -> String { PostgresTimestamp(text).map { time($0) } ?? text }

    /// A bucket width in words: `5 s`, `10 min`, `1 h`, `1 d`.
    static func width(_ seconds: Int64) -> String {
        if seconds % 86400 == 0 { return "\(seconds / 86400) d" }
        if seconds % 3600 == 0 { return "\(seconds / 3600) h" }
        if seconds % 60 == 0 { return "\(seconds / 60) min" }
        return "\(seconds) s"
    }

    static func evidence(_ values: [String: String]?) -> [(String, String)] {
        (values ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}
