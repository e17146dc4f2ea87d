import Billing

/// The comparison rule of candidate mode (and of the parity test, docs/commands.md): a row the
/// candidate predicts against the row legacy wrote, every canonical column exactly, except
///
/// - `attributes` (legacy-only columns a command carries unchanged, not a decision), and
/// - `updated_at` of a row whose other canonical columns did not change (the legacy application
///   touches a customer's `updated_at` when it rewrites a cache the ledger derives instead).
///
/// Both exclusions are named in what ``compare(stream:predicted:before:legacy:)`` returns, so a
/// report can count them rather than hide them.
public enum CandidateComparison {
    /// What comparing one row found.
    public struct Result: Sendable, Hashable {
        public var differences: [CandidateCommandLog.Difference] = []
        /// The exclusions that applied (`attributes`, `updated_at`).
        public var excluded: [String] = []
    }

    /// Compares the candidate's `predicted` row of `stream` with `legacy`'s; `before` is the
    /// row before the operation (for the `updated_at` exclusion). `nil`: no row.
    public static func compare(stream: String, predicted: CanonicalRow?, before: CanonicalRow?, legacy: CanonicalRow?)
        -> Result
    {
        var result = Result()
        switch (predicted, legacy) {
        case (nil, nil):
            return result
        case (let p?, nil):
            result.differences.append(.init(stream: stream, column: "(row)", candidate: text(p), legacy: nil))
        case (nil, let l?):
            result.differences.append(.init(stream: stream, column: "(row)", candidate: nil, legacy: text(l)))
        case (let p?, let l?):
            for column in l.entity.columns where p[column.name] != l[column.name] {
                if column.name == "updated_at", let before, onlyUpdatedAtChanged(before, l) {
                    result.excluded.append("updated_at")
                    continue
                }
                result.differences.append(
                    .init(
                        stream: stream, column: column.name, candidate: value(p, column.name),
                        legacy: value(l, column.name)))
            }
            if p.attributes != l.attributes { result.excluded.append("attributes") }
        }
        return result
    }

    /// Whether `after` differs from `before` in `updated_at` only, among the canonical columns.
    public static func onlyUpdatedAtChanged(_ before: CanonicalRow, _ after: CanonicalRow) -> Bool {
        before.entity.columns.allSatisfy { $0.name == "updated_at" || before[$0.name] == after[$0.name] }
    }

    static func value(_ row: CanonicalRow, _ column: String) -> String? {
        let value = row[column]
        return value.isNull ? nil : value.description
    }

    /// A whole row, for a row one side lacks: its canonical columns as `name=value`, in order.
    static func text(_ row: CanonicalRow) -> String {
        row.entity.columns.map { "\($0.name)=\(value(row, $0.name) ?? "null")" }.joined(separator: " ")
    }
}
