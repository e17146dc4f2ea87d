import Foundation
import Postgres

/// The JSON form of a command, the write path's request body:
/// `{"command": "record_payment", "payment_id": "4501", "invoice_id": "4489", "status": "succeeded", "at": "2026-01-05T10:00:00.000000Z"}`.
///
/// Fields are the payload's properties in snake_case (`customerID` → `customer_id`,
/// `creditApplicationIDs` → `credit_application_ids`) whatever the encoder's key strategy, so
/// the form is the same for every client. Decoding is strict, because a silently dropped field
/// changes a command's meaning (a misspelled `amount` would pay the whole invoice): an unknown
/// command, an unknown field, a missing required field or a value of the wrong type (a
/// fractional amount: money is integer minor units) is a `DecodingError` that names it.
extension BillingCommand: Codable {
    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ string: String) { stringValue = string }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        let name = try container.decode(String.self, forKey: Key("command"))
        guard let type = Self.payloadTypes[name] else {
            throw DecodingError.dataCorruptedError(
                forKey: Key("command"), in: container,
                debugDescription: "unknown command \"\(name)\"; the commands are \(Self.names.joined(separator: ", "))")
        }
        var fields = [String: AnyJSON]()
        for key in container.allKeys where key.stringValue != "command" {
            fields[key.stringValue] = try container.decode(AnyJSON.self, forKey: key)
        }
        let known = Set(type.fieldNames)
        if let unknown = fields.keys.sorted().first(where: { !known.contains($0) }) {
            throw DecodingError.dataCorruptedError(
                forKey: Key(unknown), in: container,
                debugDescription: "\(name) has no field \"\(unknown)\"; its fields are \(type.fieldNames.sorted().joined(separator: ", "))")
        }
        // No payload has a floating-point field: money is integer minor units, quantities and
        // rates are decimal text. A fractional number is refused where it stands.
        for (key, value) in fields {
            if let path = value.fractionalNumberPath {
                throw DecodingError.dataCorrupted(
                    DecodingError.Context(
                        codingPath: decoder.codingPath + [Key(key)] + path.map(Key.init),
                        debugDescription: "\(name): \(([key] + path).joined(separator: ".")) is a fractional number; "
                            + "amounts are whole minor units, and quantities, unit amounts and rates decimal text (\"2.5\")"))
            }
        }
        // Times carry their zone (`Z` or an offset): a time without one would be guessed as UTC.
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) {
            if let path = value.zonelessTimePath(field: key) {
                throw DecodingError.dataCorrupted(
                    DecodingError.Context(
                        codingPath: decoder.codingPath + [Key(key)] + path.map(Key.init),
                        debugDescription: "\(name): \(([key] + path).joined(separator: ".")) is a time without a zone; "
                            + "write Z or an offset (\"2026-11-03T10:00:00Z\", \"2026-11-03T11:00:00+01:00\")"))
            }
        }
        let data = try JSONEncoder().encode(AnyJSON.object(fields))
        let json = JSONDecoder()
        json.keyDecodingStrategy = .custom { path in Key(Self.camelCase(path.last!.stringValue)) }
        do {
            self = try type.decode(data, json)
        } catch let error as DecodingError {
            throw Self.reframe(error, under: decoder.codingPath, command: name)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        let json = JSONEncoder()
        json.keyEncodingStrategy = .custom { path in Key(Self.snakeCase(path.last!.stringValue)) }
        let data: Data =
            switch self {
            case .createCustomer(let c): try json.encode(c)
            case .updateCustomer(let c): try json.encode(c)
            case .archiveCustomer(let c): try json.encode(c)
            case .startSubscription(let c): try json.encode(c)
            case .activateTrial(let c): try json.encode(c)
            case .changePlan(let c): try json.encode(c)
            case .cancelSubscription(let c): try json.encode(c)
            case .markPastDue(let c): try json.encode(c)
            case .markUnpaid(let c): try json.encode(c)
            case .renewSubscription(let c): try json.encode(c)
            case .endSubscription(let c): try json.encode(c)
            case .draftInvoice(let c): try json.encode(c)
            case .finalizeInvoice(let c): try json.encode(c)
            case .discardDraft(let c): try json.encode(c)
            case .recordPayment(let c): try json.encode(c)
            case .voidInvoice(let c): try json.encode(c)
            case .markUncollectible(let c): try json.encode(c)
            case .refundPayment(let c): try json.encode(c)
            case .issueCreditNote(let c): try json.encode(c)
            case .addCustomerCredit(let c): try json.encode(c)
            }
        guard case .object(let fields) = try JSONDecoder().decode(AnyJSON.self, from: data) else { return }
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(name, forKey: Key("command"))
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) { try container.encode(value, forKey: Key(key)) }
    }

    /// How to decode one command's payload, and its fields' JSON names.
    struct PayloadType: Sendable {
        let decode: @Sendable (Data, JSONDecoder) throws -> BillingCommand
        let fieldNames: [String]

        init<P: Codable & Sendable & SendableMetatype>(_ sample: P, _ wrap: @escaping @Sendable (P) -> BillingCommand) {
            decode = { data, decoder in wrap(try decoder.decode(P.self, from: data)) }
            fieldNames = Mirror(reflecting: sample).children.compactMap { $0.label.map(BillingCommand.snakeCase) }
        }
    }

    static let payloadTypes: [String: PayloadType] = {
        let t = PostgresTimestamp(microsecondsSinceEpoch: 0)
        let types: [PayloadType] = [
            PayloadType(CreateCustomer(customerID: "", at: t), BillingCommand.createCustomer),
            PayloadType(UpdateCustomer(customerID: "", at: t), BillingCommand.updateCustomer),
            PayloadType(ArchiveCustomer(customerID: "", at: t), BillingCommand.archiveCustomer),
            PayloadType(StartSubscription(subscriptionID: "", customerID: "", planID: "", quantity: 1, at: t), BillingCommand.startSubscription),
            PayloadType(ActivateTrial(subscriptionID: "", at: t), BillingCommand.activateTrial),
            PayloadType(ChangePlan(subscriptionID: "", planID: "", at: t), BillingCommand.changePlan),
            PayloadType(CancelSubscription(subscriptionID: "", atPeriodEnd: true, at: t), BillingCommand.cancelSubscription),
            PayloadType(MarkPastDue(subscriptionID: "", at: t), BillingCommand.markPastDue),
            PayloadType(MarkUnpaid(subscriptionID: "", at: t), BillingCommand.markUnpaid),
            PayloadType(RenewSubscription(subscriptionID: "", periodStart: t, periodEnd: t, at: t), BillingCommand.renewSubscription),
            PayloadType(EndSubscription(subscriptionID: "", at: t), BillingCommand.endSubscription),
            PayloadType(DraftInvoice(invoiceID: "", customerID: "", lines: [], at: t), BillingCommand.draftInvoice),
            PayloadType(FinalizeInvoice(invoiceID: "", at: t), BillingCommand.finalizeInvoice),
            PayloadType(DiscardDraft(invoiceID: "", at: t), BillingCommand.discardDraft),
            PayloadType(RecordPayment(paymentID: "", invoiceID: "", status: "", at: t), BillingCommand.recordPayment),
            PayloadType(VoidInvoice(invoiceID: "", at: t), BillingCommand.voidInvoice),
            PayloadType(MarkUncollectible(invoiceID: "", at: t), BillingCommand.markUncollectible),
            PayloadType(RefundPayment(refundID: "", paymentID: "", at: t), BillingCommand.refundPayment),
            PayloadType(IssueCreditNote(creditNoteID: "", invoiceID: "", amount: 0, balanceTransactionID: "", at: t), BillingCommand.issueCreditNote),
            PayloadType(AddCustomerCredit(balanceTransactionID: "", customerID: "", amount: 0, at: t), BillingCommand.addCustomerCredit),
        ]
        return Dictionary(uniqueKeysWithValues: zip(BillingCommand.names, types))
    }()

    /// `customerID` → `customer_id`, `creditApplicationIDs` → `credit_application_ids` (as
    /// `JSONEncoder.KeyEncodingStrategy.convertToSnakeCase` does not: it writes `credit_application_i_ds`).
    static func snakeCase(_ name: String) -> String {
        var words = [String]()
        var current = ""
        let characters = Array(name)
        for (index, character) in characters.enumerated() {
            let next = index + 1 < characters.count ? characters[index + 1] : nil
            let previous = index > 0 ? characters[index - 1] : nil
            // A word starts at an uppercase letter after a lowercase one, or at the last capital
            // of an acronym followed by a lowercase letter other than the plural `s` (`IDs`).
            if character.isUppercase, let previous,
                previous.isLowercase || (previous.isUppercase && next?.isLowercase == true && next != "s")
            {
                words.append(current)
                current = ""
            }
            current.append(character)
        }
        words.append(current)
        return words.map { $0.lowercased() }.joined(separator: "_")
    }

    /// `customer_id` → `customerID`, `credit_application_ids` → `creditApplicationIDs`.
    static func camelCase(_ name: String) -> String {
        let words = name.split(separator: "_").map(String.init)
        guard let first = words.first else { return name }
        return first + words.dropFirst().map { word in
            switch word {
            case "id": "ID"
            case "ids": "IDs"
            default: word.prefix(1).uppercased() + word.dropFirst()
            }
        }.joined()
    }

    /// The payload's error, with the command's coding path and snake_case field names.
    static func reframe(_ error: DecodingError, under path: [any CodingKey], command: String) -> DecodingError {
        func context(_ c: DecodingError.Context) -> DecodingError.Context {
            DecodingError.Context(
                codingPath: path + c.codingPath.map { Key(snakeCase($0.stringValue)) },
                debugDescription: "\(command): " + c.debugDescription, underlyingError: c.underlyingError)
        }
        switch error {
        case .keyNotFound(let key, let c):
            return .keyNotFound(
                Key(snakeCase(key.stringValue)),
                DecodingError.Context(
                    codingPath: context(c).codingPath,
                    debugDescription: "\(command) needs the field \"\(snakeCase(key.stringValue))\""))
        case .typeMismatch(let type, let c): return .typeMismatch(type, context(c))
        case .valueNotFound(let type, let c): return .valueNotFound(type, context(c))
        case .dataCorrupted(let c): return .dataCorrupted(context(c))
        @unknown default: return error
        }
    }
}

/// Any JSON value, numbers kept exact as integers where they are integers (money never passes
/// through a Double).
enum AnyJSON: Codable, Sendable, Hashable {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([AnyJSON])
    case object([String: AnyJSON])

    /// The path to a number that is not an integer, if there is one.
    var fractionalNumberPath: [String]? {
        switch self {
        case .number: return []
        case .array(let values):
            for (index, value) in values.enumerated() {
                if let path = value.fractionalNumberPath { return [String(index)] + path }
            }
            return nil
        case .object(let members):
            for (key, value) in members.sorted(by: { $0.key < $1.key }) {
                if let path = value.fractionalNumberPath { return [key] + path }
            }
            return nil
        default: return nil
        }
    }

    /// The path to a time (a field `at`, `…_at`, `period_start` or `period_end`) written without
    /// `Z` or an offset, if there is one; `field` is this value's own field name.
    func zonelessTimePath(field: String) -> [String]? {
        switch self {
        case .string(let text):
            let isTime = field == "at" || field.hasSuffix("_at") || field == "period_start" || field == "period_end"
            guard isTime, text != "infinity", text != "-infinity" else { return nil }
            // After the date (`YYYY-MM-DD`, years of 4 to 7 digits), a zone is `Z`, `+…` or `-…`.
            guard let separator = text.firstIndex(where: { $0 == "T" || $0 == "t" || $0 == " " }) else { return nil }
            let time = text[text.index(after: separator)...]
            return time.contains(where: { $0 == "Z" || $0 == "z" || $0 == "+" || $0 == "-" }) ? nil : []
        case .array(let values):
            for (index, value) in values.enumerated() {
                if let path = value.zonelessTimePath(field: field) { return [String(index)] + path }
            }
            return nil
        case .object(let members):
            for (key, value) in members.sorted(by: { $0.key < $1.key }) {
                if let path = value.zonelessTimePath(field: key) { return [key] + path }
            }
            return nil
        default: return nil
        }
    }

    init(from decoder: any Decoder) throws {
        if let container = try? decoder.container(keyedBy: BillingCommand.Key.self) {
            var object = [String: AnyJSON]()
            for key in container.allKeys { object[key.stringValue] = try container.decode(AnyJSON.self, forKey: key) }
            self = .object(object)
            return
        }
        if var container = try? decoder.unkeyedContainer() {
            var array = [AnyJSON]()
            while !container.isAtEnd { array.append(try container.decode(AnyJSON.self)) }
            self = .array(array)
            return
        }
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        switch self {
        case .null:
            var container = encoder.singleValueContainer()
            try container.encodeNil()
        case .bool(let value):
            var container = encoder.singleValueContainer()
            try container.encode(value)
        case .integer(let value):
            var container = encoder.singleValueContainer()
            try container.encode(value)
        case .number(let value):
            var container = encoder.singleValueContainer()
            try container.encode(value)
        case .string(let value):
            var container = encoder.singleValueContainer()
            try container.encode(value)
        case .array(let values):
            var container = encoder.unkeyedContainer()
            for value in values { try container.encode(value) }
        case .object(let members):
            var container = encoder.container(keyedBy: BillingCommand.Key.self)
            for (key, value) in members.sorted(by: { $0.key < $1.key }) { try container.encode(value, forKey: BillingCommand.Key(key)) }
        }
    }
}
