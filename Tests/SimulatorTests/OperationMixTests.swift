import Testing

@testable import Simulator

@Suite struct OperationMixTests {
    @Test func drawsEveryKindInProportionToItsWeight() throws {
        let mix = try OperationMix([.signUp: 1, .editName: 3])
        var counts: [OperationKind: Int] = [:]
        for draw in UInt64(0)..<400 { counts[mix.kind(for: draw), default: 0] += 1 }
        #expect(counts == [.signUp: 100, .editName: 300])
    }

    @Test func refusesAMixWithoutPositiveWeight() {
        #expect(throws: SimulatorError.self) { try OperationMix([.signUp: 0]) }
        #expect(throws: SimulatorError.self) { try OperationMix([.signUp: -1, .editName: 2]) }
    }

    @Test func aSeedGivesTheSameStreamEveryTime() {
        var a = SimulationRandom(seed: 42)
        var b = SimulationRandom(seed: 42)
        let first = (0..<8).map { _ in a.next() }
        #expect(first == (0..<8).map { _ in b.next() })
        #expect(SimulationRandom.derive(42, 1) != SimulationRandom.derive(42, 2))
    }
}
