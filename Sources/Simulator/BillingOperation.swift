/// One operation the simulator asks the application to perform.
///
/// Its random choices (which entity, which amount, which new email) come from its own
/// generator, seeded from the run's seed and the operation's id, so an operation decides the
/// same way whichever connection runs it and whatever ran before it; only the entities it can
/// pick depend on the data.
public struct BillingOperation: Sendable, Hashable {
    /// Position in the run's schedule, from 1. The journal's op id.
    public let id: UInt64
    public let kind: OperationKind
    /// The seed of ``random``'s stream.
    public let seed: UInt64

    public init(id: UInt64, kind: OperationKind, seed: UInt64) {
        self.id = id
        self.kind = kind
        self.seed = seed
    }

    /// A fresh generator for this operation's choices (every call starts the same stream).
    public var random: SimulationRandom { SimulationRandom(seed: seed) }
}
