import ArgumentParser
import Billing
import Foundation

/// `--entity` as `diff` and `shadow resync` take it: repeatable, each a comma-separated list.
enum EntityArguments {
    /// `["invoice", "payment,refund"]` → `[.invoice, .payment, .refund]`; `nil` for none given
    /// (every mapped entity).
    static func parse(_ names: [String]) throws -> [Entity]? {
        guard !names.isEmpty else { return nil }
        return try names.flatMap { $0.split(separator: ",") }.map { name in
            let trimmed = name.trimmingCharacters(in: .whitespaces)
            guard let entity = Entity(rawValue: trimmed) else {
                throw ValidationError(
                    "unknown entity '\(trimmed)'; one of: \(Entity.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return entity
        }
    }
}
