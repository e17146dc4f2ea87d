import Foundation
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

    /// The sentence `body` throws.
    static func message(_ body: () throws -> OperationMix) -> String {
        do {
            _ = try body()
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    @Test func refusesWeightsAboveAMillionInsteadOfOverflowingTheirSum() {
        #expect(
            Self.message { try OperationMix([.editEmail: Int.max, .editName: Int.max]) }
                == "the weight of edit_email must be between 0 and 1000000, got 9223372036854775807")
        #expect(
            Self.message { try OperationMix.parse(yaml: "edit_email: 9223372036854775807\nedit_name: 9223372036854775807\n", file: "m.yaml") }
                == #"mix file m.yaml: the weight of edit_email must be a whole number between 0 and 1000000, got "9223372036854775807""#)
        #expect(Self.message { try OperationMix.parse(yaml: "edit_email: 1000001", file: "m.yaml") }.contains("between 0 and 1000000"))
        let largest = try? OperationMix.parse(yaml: "edit_email: 1000000\nedit_name: 1000000", file: "m.yaml")
        #expect(largest?.weights.map(\.weight) == [1_000_000, 1_000_000])
    }

    @Test func refusesWeightsThatAreNotDecimalWholeNumbers() {
        for spelled in ["0x10", "0o17", "1_000", "+5", "-1", "2.5", "ten", "~"] {
            #expect(
                Self.message { try OperationMix.parse(yaml: "edit_name: \(spelled)", file: "m.yaml") }
                    .hasPrefix("mix file m.yaml: the weight of edit_name must be a whole number between 0 and 1000000, got"),
                "\(spelled)")
        }
    }

    /// Nine levels of aliases, ten each: constructing it would make 10⁹ nodes.
    @Test func refusesAnchorsAndAliasesSoAnAliasBombIsAnsweredAtOnce() {
        var yaml = "a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
        for level in 1...9 {
            let previous = "*a\(level - 1)"
            yaml += "a\(level): &a\(level) [\(Array(repeating: previous, count: 10).joined(separator: ", "))]\n"
        }
        #expect(
            Self.message { try OperationMix.parse(yaml: yaml, file: "bomb.yaml") }
                == "mix file bomb.yaml: anchors and aliases (&a0, *a0) (line 1) are not allowed in a mix file; write each weight out")
        #expect(
            Self.message { try OperationMix.parse(yaml: "edit_name: &w 3\nedit_email: *w\n", file: "m.yaml") }
                .hasPrefix("mix file m.yaml: anchors and aliases (&w, *w)"))
    }

    @Test func loadSaysWhyAFileCannotBeRead() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mix-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(
            Self.message { try OperationMix.load(path: directory.path) }
                == "mix file \(directory.path) cannot be read: it is a directory")
        let missing = directory.appendingPathComponent("missing.yaml").path
        #expect(Self.message { try OperationMix.load(path: missing) } == "mix file \(missing) cannot be read: No such file or directory")
        let latin1 = directory.appendingPathComponent("latin1.yaml")
        try Data([0x65, 0x3A, 0x20, 0x31, 0x20, 0x23, 0xE9, 0x0A]).write(to: latin1)
        #expect(Self.message { try OperationMix.load(path: latin1.path) } == "mix file \(latin1.path) is not UTF-8 text")
        let large = directory.appendingPathComponent("large.yaml")
        try Data(String(repeating: "# padding\n", count: 7000).utf8).write(to: large)
        #expect(
            Self.message { try OperationMix.load(path: large.path) }
                == "mix file \(large.path) is 70000 bytes, over the 64 KiB limit for a mix file (one line per operation kind is under 1 KiB)")
        let good = directory.appendingPathComponent("good.yaml")
        try Data("edit_name: 3\nsign_up: 1\n".utf8).write(to: good)
        #expect(try OperationMix.load(path: good.path) == OperationMix([.signUp: 1, .editName: 3]))
    }
}
