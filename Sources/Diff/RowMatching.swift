/// A bucket's fingerprint on one side: how many rows, and the sum of their 64-bit row hashes
/// (as `numeric` text, so it never overflows). Equal fingerprints mean equal rows, up to a
/// 64-bit hash collision.
struct BucketSummary: Sendable, Hashable {
    var count: Int64
    var hashSum: String
}

/// One row brought to the client: key, row hash, canonical values after the key.
struct FetchedRow: Sendable, Hashable {
    var key: String
    var hash: String
    var values: [String?]
}

enum RowMatching {
    /// The buckets whose fingerprints differ (present on one side only, or unequal), sorted,
    /// and the rows of the equal buckets, which are matched without another look.
    static func compare(_ legacy: [Int64: BucketSummary], _ ledger: [Int64: BucketSummary])
        -> (differing: [Int64], matchedRows: Int64)
    {
        var differing = [Int64]()
        var matched: Int64 = 0
        for (bucket, summary) in legacy {
            if ledger[bucket] == summary { matched += summary.count } else { differing.append(bucket) }
        }
        for bucket in ledger.keys where legacy[bucket] == nil { differing.append(bucket) }
        return (differing.sorted(), matched)
    }

    /// Compares the rows of some keys on both sides, key by key.
    ///
    /// - Parameter columns: canonical column names, the key first (the order of
    ///   `[key] + values`).
    /// - Returns: how many keys matched, and a difference for every other key, in key order
    ///   (byte order, as the read models' `COLLATE "C"` keys sort).
    static func compare(legacy: [FetchedRow], ledger: [FetchedRow], columns: [String])
        -> (matched: Int64, differences: [RowDifference])
    {
        // By bytes, not by Swift's String equality: that one treats canonically equivalent
        // Unicode (é precomposed or not) as equal, where PostgreSQL and the hashes do not.
        let legacyByKey = Dictionary(grouping: legacy, by: { Array($0.key.utf8) })
        let ledgerByKey = Dictionary(grouping: ledger, by: { Array($0.key.utf8) })
        let keys = Set(legacyByKey.keys).union(ledgerByKey.keys).sorted { $0.lexicographicallyPrecedes($1) }
        var matched: Int64 = 0
        var differences = [RowDifference]()
        for bytes in keys {
            let left = legacyByKey[bytes] ?? []
            let right = ledgerByKey[bytes] ?? []
            let key = (left.first ?? right.first)?.key ?? ""
            switch (left.first, right.first) {
            case (let l?, nil):
                differences.append(RowDifference(key: key, kind: .missingInLedger, columns: everyColumn(l, columns, legacySide: true)))
            case (nil, let r?):
                differences.append(RowDifference(key: key, kind: .extraInLedger, columns: everyColumn(r, columns, legacySide: false)))
            case (let l?, let r?):
                if left.count == 1 && right.count == 1 && l.hash == r.hash && same(l.values, r.values) {
                    matched += 1
                    continue
                }
                var changed = [ColumnDifference]()
                if left.count != right.count {
                    // A key the mapping query returns twice (a join that fans out) cannot
                    // equal one ledger row, whatever its values.
                    changed.append(ColumnDifference(column: "(rows with this key)", legacy: String(left.count), ledger: String(right.count)))
                }
                for (index, name) in columns.dropFirst().enumerated() where index < l.values.count && index < r.values.count {
                    if !same(l.values[index], r.values[index]) {
                        changed.append(ColumnDifference(column: name, legacy: l.values[index], ledger: r.values[index]))
                    }
                }
                if changed.isEmpty {
                    // Equal values with unequal hashes cannot happen for one row per side;
                    // say so rather than hide it.
                    changed.append(ColumnDifference(column: "(row hash)", legacy: l.hash, ledger: r.hash))
                }
                differences.append(RowDifference(key: key, kind: .mismatched, columns: changed))
            case (nil, nil):
                continue
            }
        }
        return (matched, differences)
    }

    private static func same(_ a: String?, _ b: String?) -> Bool {
        switch (a, b) {
        case (nil, nil): true
        case (let a?, let b?): a.utf8.elementsEqual(b.utf8)
        default: false
        }
    }

    private static func same(_ a: [String?], _ b: [String?]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { same($0, $1) }
    }

    private static func everyColumn(_ row: FetchedRow, _ columns: [String], legacySide: Bool) -> [ColumnDifference] {
        var out = [ColumnDifference(column: columns[0], legacy: legacySide ? row.key : nil, ledger: legacySide ? nil : row.key)]
        for (index, name) in columns.dropFirst().enumerated() where index < row.values.count {
            let value = row.values[index]
            out.append(ColumnDifference(column: name, legacy: legacySide ? value : nil, ledger: legacySide ? nil : value))
        }
        return out
    }
}
