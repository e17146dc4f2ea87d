import TextFormats
import Foundation
import Yams

/// How often each operation kind runs: relative weights, e.g. `payment_succeeded: 20`.
///
/// A mix file (`ledgerlift simulate --mix FILE`) is a YAML mapping of kind to weight; kinds it
/// leaves out do not run. ``OperationMix/standard`` is the default: a billing month's shape,
/// heavy on invoicing and payments, light on sign-ups and deletes.
public struct OperationMix: Sendable, Hashable {
    /// Kinds with a positive weight, in ``OperationKind`` order.
    public let weights: [(kind: OperationKind, weight: Int)]
    private let total: Int

    public static func == (a: OperationMix, b: OperationMix) -> Bool {
        a.weights.map(\.kind) == b.weights.map(\.kind) && a.weights.map(\.weight) == b.weights.map(\.weight)
    }

    public func hash(into hasher: inout Hasher) {
        for (kind, weight) in weights {
            hasher.combine(kind)
            hasher.combine(weight)
        }
    }

    public init(_ weights: [OperationKind: Int]) throws(SimulatorError) {
        for (kind, weight) in weights where weight < 0 {
            throw .invalidConfiguration("the weight of \(kind.rawValue) is negative (\(weight))")
        }
        self.weights = OperationKind.allCases.compactMap { kind in
            weights[kind].flatMap { $0 > 0 ? (kind, $0) : nil }
        }
        total = self.weights.reduce(0) { $0 + $1.weight }
        guard total > 0 else { throw .invalidConfiguration("the mix gives no operation a positive weight") }
    }

    /// The kind for a draw in `0..<UInt64.max`, proportionally to the weights.
    public func kind(for draw: UInt64) -> OperationKind {
        var point = Int(draw % UInt64(total))
        for (kind, weight) in weights {
            if point < weight { return kind }
            point -= weight
        }
        return weights[weights.count - 1].kind
    }

    public static let standard: OperationMix = try! OperationMix([
        .signUp: 4, .activateTrial: 3, .upgrade: 2, .downgrade: 1, .cancelAtPeriodEnd: 2, .markUnpaid: 1,
        .draftInvoice: 24, .finalizeInvoice: 18, .paymentSucceeded: 12, .paymentFailed: 3, .paymentRetried: 3,
        .partialPayment: 3, .voidInvoice: 2, .markUncollectible: 1, .refundFull: 2, .refundPartial: 2,
        .creditNote: 2, .customerCredit: 2, .editEmail: 4, .editName: 3, .softDelete: 1, .discardDraft: 2,
    ])
}

extension OperationMix {
    /// Reads a mix file: a YAML mapping of operation kind (``OperationKind``'s raw value) to a
    /// weight, an integer of 0 or more. Kinds left out, or given 0, do not run.
    ///
    /// ```yaml
    /// payment_succeeded: 20
    /// draft_invoice: 10
    /// edit_email: 1
    /// ```
    ///
    /// - Throws: ``SimulatorError/invalidConfiguration(_:)`` naming the file and what is wrong
    ///   with it: not a mapping, a kind that does not exist (with the closest one), a weight
    ///   that is not a whole number of 0 or more, no positive weight.
    public static func parse(yaml text: String, file: String) throws(SimulatorError) -> OperationMix {
        let document: Any?
        do {
            document = try Yams.load(yaml: text)
        } catch {
            throw .invalidConfiguration("mix file \(file) is not valid YAML: \(error)")
        }
        guard let mapping = document as? [String: Any] else {
            throw .invalidConfiguration(
                "mix file \(file) must be a mapping of operation kind to weight (e.g. `payment_succeeded: 20`)")
        }
        var weights: [OperationKind: Int] = [:]
        for name in mapping.keys.sorted() {
            guard let kind = OperationKind(rawValue: name) else {
                let hint = suggestion(for: name).map { " (did you mean \($0.rawValue)?)" } ?? ""
                throw .invalidConfiguration(
                    "mix file \(file): unknown operation kind \"\(name)\"\(hint); the kinds are: "
                        + OperationKind.allCases.map(\.rawValue).joined(separator: ", "))
            }
            let value = mapping[name]
            guard let weight = value as? Int, weight >= 0 else {
                throw .invalidConfiguration(
                    "mix file \(file): the weight of \(name) must be a whole number of 0 or more, got \(value.map { "\($0)" } ?? "nothing")"
                )
            }
            weights[kind] = weight
        }
        do {
            return try OperationMix(weights)
        } catch {
            throw .invalidConfiguration("mix file \(file): \(error)")
        }
    }

    /// Reads the mix file at `path` (see ``parse(yaml:file:)``).
    public static func load(path: String) throws(SimulatorError) -> OperationMix {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .invalidConfiguration("mix file \(path) cannot be read: \(error.localizedDescription)")
        }
        return try parse(yaml: text, file: path)
    }

    /// The kind closest to a misspelt name (`payment_succeded`, `payment-succeeded`,
    /// `PaymentSucceeded`), when one is close enough to be what was meant.
    static func suggestion(for name: String) -> OperationKind? {
        // Case and separators first: camelCase and kebab-case spell the same kind.
        var folded = ""
        for character in name {
            if character.isUppercase, !folded.isEmpty, folded.last != "_" { folded.append("_") }
            folded.append(character == "-" || character == " " ? "_" : Character(character.lowercased()))
        }
        let scored = OperationKind.allCases.map { ($0, EditDistance.levenshtein(folded, $0.rawValue)) }
        guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
        return best.1 <= max(2, best.0.rawValue.count / 4) ? best.0 : nil
    }

}
