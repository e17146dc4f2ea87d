/// Text from a user (an operator's `--reason`, a name) made safe to print on a terminal or in
/// Markdown: control characters and the bidirectional overrides that could rewrite what the
/// line shows become visible `\u{…}` escapes; everything else is kept.
public enum PrintableText {
    /// Whether `scalar` is escaped: C0 and C1 controls, DEL, and the bidirectional embeddings,
    /// overrides and isolates (U+202A–U+202E, U+2066–U+2069).
    public static func isUnsafe(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        return v < 0x20 || (0x7F...0x9F).contains(v) || (0x202A...0x202E).contains(v) || (0x2066...0x2069).contains(v)
    }

    /// `text` with every unsafe scalar written `\u{1b}`.
    public static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isUnsafe) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if isUnsafe(scalar) {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// The first unsafe scalar of `text`, as `U+001B`, or `nil`.
    public static func firstUnsafe(_ text: String) -> String? {
        text.unicodeScalars.first(where: isUnsafe).map { scalar in
            let hex = String(scalar.value, radix: 16, uppercase: true)
            return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        }
    }
}
