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

    /// The largest weight a kind can have. Weights are relative, so a million is finer than any
    /// mix needs; the bound keeps the sum of every kind's weight far from `Int`'s overflow.
    public static let maximumWeight = 1_000_000

    /// A mix of `weights`, each 0 ... ``maximumWeight``.
    /// - Throws: ``SimulatorError/invalidConfiguration(_:)`` for a weight out of that range or
    ///   when no kind has a positive weight.
    public init(_ weights: [OperationKind: Int]) throws(SimulatorError) {
        for kind in OperationKind.allCases {
            guard let weight = weights[kind], !(0...Self.maximumWeight).contains(weight) else { continue }
            throw .invalidConfiguration(
                "the weight of \(kind.rawValue) must be between 0 and \(Self.maximumWeight), got \(weight)")
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
    /// The largest mix file read, in bytes (64 KiB): one line per kind is under a kilobyte, and
    /// the bound keeps a runaway or hostile file from being read whole.
    public static let maximumFileBytes = 64 * 1024

    /// Reads a mix file: a YAML mapping of operation kind (``OperationKind``'s raw value) to a
    /// weight, a decimal whole number 0 ... ``maximumWeight``. Kinds left out, or given 0, do not
    /// run.
    ///
    /// ```yaml
    /// payment_succeeded: 20
    /// draft_invoice: 10
    /// edit_email: 1
    /// ```
    ///
    /// Anchors and aliases (`&name`, `*name`) are refused: a mix has no use for them, and nested
    /// aliases (a "billion laughs" file) would expand exponentially if the document were
    /// constructed. So the text is only composed into nodes (aliases share them) and the top
    /// level walked, as the mapping file's parser does.
    ///
    /// - Throws: ``SimulatorError/invalidConfiguration(_:)`` naming the file and what is wrong
    ///   with it: not a mapping, an anchor or alias, a kind that does not exist (with the
    ///   closest one), a weight that is not a decimal whole number 0 ... ``maximumWeight``, no
    ///   positive weight.
    public static func parse(yaml text: String, file: String) throws(SimulatorError) -> OperationMix {
        // The parser keeps the anchors alive (nodes hold them weakly): walk while it lives.
        let parser: Parser
        let root: Node?
        do {
            parser = try Parser(yaml: text)
            root = try parser.singleRoot()
        } catch {
            throw .invalidConfiguration("mix file \(file) is not valid YAML: \(error)")
        }
        return try withExtendedLifetime(parser) { () throws(SimulatorError) -> OperationMix in
            guard let root, let mapping = root.mapping else {
                throw .invalidConfiguration(
                    "mix file \(file) must be a mapping of operation kind to weight (e.g. `payment_succeeded: 20`)")
            }
            func refuseAnchor(_ node: Node) throws(SimulatorError) {
                let anchor: Anchor? =
                    switch node {
                    case .scalar(let scalar): scalar.anchor
                    case .mapping(let mapping): mapping.anchor
                    case .sequence(let sequence): sequence.anchor
                    case .alias(let alias): alias.anchor
                    }
                guard let anchor else { return }
                let line = node.mark.map { " (line \($0.line))" } ?? ""
                throw .invalidConfiguration(
                    "mix file \(file): anchors and aliases (&\(anchor.rawValue), *\(anchor.rawValue))\(line) are not "
                        + "allowed in a mix file; write each weight out")
            }
            try refuseAnchor(root)
            var weights: [OperationKind: Int] = [:]
            for (key, value) in mapping {
                try refuseAnchor(key)
                try refuseAnchor(value)
            }
            for (key, value) in mapping.sorted(by: { ($0.key.string ?? "") < ($1.key.string ?? "") }) {
                guard let name = key.string else {
                    throw .invalidConfiguration(
                        "mix file \(file): every key must be an operation kind, got a \(Self.shape(key))")
                }
                guard let kind = OperationKind(rawValue: name) else {
                    let hint = suggestion(for: name).map { " (did you mean \($0.rawValue)?)" } ?? ""
                    throw .invalidConfiguration(
                        "mix file \(file): unknown operation kind \"\(name)\"\(hint); the kinds are: "
                            + OperationKind.allCases.map(\.rawValue).joined(separator: ", "))
                }
                let spelled = value.scalar?.string
                // Decimal digits only: YAML would also read 0x10, 0o17, 1_000 or +5 as integers.
                guard let spelled, !spelled.isEmpty, spelled.utf8.count <= 7,
                    spelled.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
                    let weight = Int(spelled), weight <= maximumWeight
                else {
                    let got = spelled.map { "\"\($0)\"" } ?? "a \(Self.shape(value))"
                    throw .invalidConfiguration(
                        "mix file \(file): the weight of \(name) must be a whole number between 0 and "
                            + "\(maximumWeight), got \(got)")
                }
                if weights[kind] != nil {
                    throw .invalidConfiguration("mix file \(file): \(name) is given twice")
                }
                weights[kind] = weight
            }
            do {
                return try OperationMix(weights)
            } catch {
                throw .invalidConfiguration("mix file \(file): \(error)")
            }
        }
    }

    private static func shape(_ node: Node) -> String {
        switch node {
        case .scalar: "value"
        case .mapping: "mapping"
        case .sequence: "list"
        case .alias: "alias"
        }
    }

    /// Reads the mix file at `path` (see ``parse(yaml:file:)``): a regular file of at most
    /// ``maximumFileBytes``, in UTF-8.
    public static func load(path: String) throws(SimulatorError) -> OperationMix {
        func unreadable(_ reason: String) -> SimulatorError {
            .invalidConfiguration("mix file \(path) cannot be read: \(reason)")
        }
        var status = stat()
        guard stat(path, &status) == 0 else { throw unreadable(String(cString: strerror(errno))) }
        if status.st_mode & S_IFMT == S_IFDIR { throw unreadable("it is a directory") }
        if status.st_mode & S_IFMT != S_IFREG { throw unreadable("it is not a regular file") }
        if status.st_size > maximumFileBytes { throw tooLarge(path, size: Int(status.st_size)) }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw unreadable(String(cString: strerror(errno)))
        }
        defer { try? handle.close() }
        let data: Data
        do {
            // One byte more than allowed tells a file that grew since it was measured.
            data = try handle.read(upToCount: maximumFileBytes + 1) ?? Data()
        } catch {
            throw unreadable("\(error.localizedDescription)")
        }
        if data.count > maximumFileBytes { throw tooLarge(path, size: data.count) }
        guard let text = String(validating: data, as: UTF8.self) else {
            throw .invalidConfiguration("mix file \(path) is not UTF-8 text")
        }
        return try parse(yaml: text, file: path)
    }

    private static func tooLarge(_ path: String, size: Int) -> SimulatorError {
        .invalidConfiguration(
            "mix file \(path) is \(size) bytes, over the \(maximumFileBytes / 1024) KiB limit for a mix file "
                + "(one line per operation kind is under 1 KiB)")
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
