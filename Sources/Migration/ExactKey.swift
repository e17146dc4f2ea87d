/// A legacy key compared by its bytes, as PostgreSQL compares it. Swift's `String` equality
/// treats canonically equivalent text as equal (`café` with é, and with e + U+0301), so two
/// distinct legacy keys would share one dictionary entry — and two rows look like duplicates.
struct ExactKey: Hashable, Sendable {
    let text: String

    init(_ text: String) { self.text = text }

    static func == (a: ExactKey, b: ExactKey) -> Bool { a.text.utf8.elementsEqual(b.text.utf8) }

    func hash(into hasher: inout Hasher) {
        var text = text
        text.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}
