import Billing
import Foundation
import Postgres

/// The rule every row key a command names must follow — the same rule the read routes
/// (`GET /customers/{id}/…`) apply to a key in the path, so a row a command creates can be read
/// back: 1 to 200 ASCII letters, digits and `-_.:@~+`.
public enum CommandKey {
    /// The longest key, in characters.
    public static let maximumLength = 200
    /// The characters a key may use besides ASCII letters and digits.
    public static let punctuation = "-_.:@~+"
    /// The rule in words (error messages, problem documents).
    public static let rule = "a key is 1 to 200 characters of ASCII letters, digits and -_.:@~+"

    /// Whether `key` follows the rule.
    public static func isValid(_ key: String) -> Bool {
        let scalars = key.unicodeScalars
        guard !scalars.isEmpty, scalars.count <= maximumLength else { return false }
        return scalars.allSatisfy { scalar in
            switch scalar.value {
            case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
            default: punctuation.unicodeScalars.contains(scalar)
            }
        }
    }
}

extension BillingCommand {
    /// Checks what needs no state: `at` is a finite time, and every key the command names
    /// (`customer_id`, `invoice_id`, line ids, `credit_application_ids`, …) follows
    /// ``CommandKey``.
    ///
    /// - Throws: ``CommandRejection`` `invalid_input` naming the field.
    public func validateInput() throws(CommandRejection) {
        if at == .infinity || at == .negativeInfinity {
            throw CommandRejection(.invalidInput, nil, nil, "\(name): at is \(at); a command happens at a finite time")
        }
        guard let data = try? JSONEncoder().encode(self), let json = try? JSONDecoder().decode(AnyJSON.self, from: data) else {
            return
        }
        func check(_ value: AnyJSON, path: String) throws(CommandRejection) {
            switch value {
            case .object(let members):
                for (field, member) in members.sorted(by: { $0.key < $1.key }) {
                    let here = path.isEmpty ? field : path + "." + field
                    if field.hasSuffix("_id"), case .string(let key) = member {
                        try checkKey(key, field: here)
                    } else if field.hasSuffix("_ids"), case .array(let keys) = member {
                        for (index, key) in keys.enumerated() {
                            if case .string(let key) = key { try checkKey(key, field: "\(here)[\(index)]") }
                        }
                    } else {
                        try check(member, path: here)
                    }
                }
            case .array(let values):
                for (index, value) in values.enumerated() { try check(value, path: "\(path)[\(index)]") }
            default: break
            }
        }
        func checkKey(_ key: String, field: String) throws(CommandRejection) {
            guard CommandKey.isValid(key) else {
                let shown = key.unicodeScalars.count > 40 ? String(String.UnicodeScalarView(key.unicodeScalars.prefix(40))) + "…" : key
                throw CommandRejection(
                    .invalidInput, nil, nil,
                    "\(name): \(field) \(shown.debugDescription) is not a valid key; \(CommandKey.rule)")
            }
        }
        try check(json, path: "")
    }

    /// A fingerprint of the command: UUIDv5 (SHA-1) of its canonical JSON (sorted keys), kept
    /// in its events' metadata as `request_sha1` so a request id sent again with another
    /// command is told apart from a retry.
    public var fingerprint: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(self)) ?? Data()
        return DeterministicID.uuid5(namespace: Self.fingerprintNamespace, name: String(decoding: data, as: UTF8.self))
            .uuidString.lowercased()
    }

    static let fingerprintNamespace = UUID(uuidString: "0d5c2a57-3b1e-5f4a-8e6d-9c7b1a2f3e40")!
}
