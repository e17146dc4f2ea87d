/// Which canonical column a legacy column name most likely stands for, so `mapping check` can
/// say "did you mean `archived_at`?" instead of silently carrying `deleted_at` as an attribute
/// while `archived_at` reads NULL on every row.
///
/// A name matches a canonical one when it is a known synonym (legacy schemas name the same
/// fact differently: `deleted_at` is the soft delete the model calls `archived_at`), or when the
/// two are within a small edit distance once a type suffix is set aside (`due_at`/`due_on`,
/// `issue_date`/`issued_on`, `cancelled_at`/`canceled_at`, `total_cents`/`total`). Suggestions
/// are only made towards canonical columns the query does not return, so a real attribute next
/// to its canonical column is never flagged.
enum ColumnNameSuggestion {
    /// Legacy names for canonical columns that no spelling rule finds.
    static let synonyms: [String: [String]] = [
        "archived_at": ["deleted_at", "removed_at", "deactivated_at", "closed_at"],
        "succeeded_at": ["paid_at", "captured_at", "completed_at", "settled_at", "charged_at"],
        "marked_uncollectible_at": ["uncollectible_at", "written_off_at", "writeoff_at"],
        "created_at": ["inserted_at", "created"],
        "updated_at": ["modified_at", "changed_at", "last_modified_at", "updated"],
        "unit_amount": ["unit_price", "price_per_unit", "rate"],
        "amount": ["price", "value", "amount_cents", "cents"],
        "quantity": ["qty", "seats", "units", "count"],
        "currency": ["currency_code", "ccy", "iso_currency"],
        "email": ["email_address", "billing_email", "mail"],
        "provider_payment_id": ["charge_id", "stripe_id", "stripe_charge_id", "external_id", "gateway_id"],
        "failure_code": ["failure_reason", "decline_code", "error_code"],
        "kind": ["type", "line_type", "item_type"],
        "number": ["invoice_number", "number_text"],
        "issued_on": ["issue_date", "invoice_date", "date"],
        "due_on": ["due_date", "due"],
    ]

    /// Suffixes naming a column's type rather than its meaning: set aside before comparing.
    static let typeSuffixes = ["_timestamp", "_date", "_time", "_ts", "_at", "_on", "_in_cents", "_cents", "_minor"]

    /// For each missing canonical column, the extra column that most likely is it (each extra
    /// suggested at most once, synonyms before spellings, the closer spelling first).
    static func pairs(extras: [String], missing: [String]) -> [String: String] {
        var candidates = [(canonical: String, extra: String, rank: Int)]()
        for canonical in missing {
            for extra in extras {
                if let rank = rank(extra, for: canonical) { candidates.append((canonical, extra, rank)) }
            }
        }
        var result = [String: String]()
        var used = Set<String>()
        for candidate in candidates.sorted(by: {
            ($0.rank, $0.canonical, $0.extra) < ($1.rank, $1.canonical, $1.extra)
        }) where result[candidate.canonical] == nil && !used.contains(candidate.extra) {
            result[candidate.canonical] = candidate.extra
            used.insert(candidate.extra)
        }
        return result
    }

    /// How close `extra` is to `canonical`: 0 for a synonym, 1 + the edit distance for a close
    /// spelling, `nil` when they are not alike.
    static func rank(_ extra: String, for canonical: String) -> Int? {
        let name = extra.lowercased()
        if synonyms[canonical]?.contains(name) == true { return 0 }
        let a = stem(name)
        let b = stem(canonical)
        guard a.count >= 3, b.count >= 3 else { return nil }
        let distance = editDistance(Array(a.utf8), Array(b.utf8))
        // One edit in a short name, two in a long one: `cancelled`/`canceled`, `issue`/`issued`.
        let allowed = min(a.count, b.count) >= 8 ? 2 : min(a.count, b.count) >= 4 ? 1 : 0
        guard distance <= allowed, name != canonical else { return nil }
        return 1 + distance
    }

    /// `name` without a type suffix (`due_at` → `due`, `total_cents` → `total`).
    static func stem(_ name: String) -> String {
        for suffix in typeSuffixes where name.hasSuffix(suffix) && name.count > suffix.count {
            return String(name.dropLast(suffix.count))
        }
        return name
    }

    /// Optimal string alignment distance (insertions, deletions, substitutions, transpositions).
    static func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous2 = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    current[j] = min(current[j], previous2[j - 2] + 1)
                }
            }
            (previous2, previous, current) = (previous, current, previous2)
        }
        return previous[b.count]
    }
}
