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
        .draftInvoice: 14, .finalizeInvoice: 12, .paymentSucceeded: 14, .paymentFailed: 3, .paymentRetried: 3,
        .partialPayment: 3, .voidInvoice: 2, .markUncollectible: 1, .refundFull: 2, .refundPartial: 2,
        .creditNote: 2, .customerCredit: 2, .editEmail: 4, .editName: 3, .softDelete: 1, .discardDraft: 2,
    ])
}
