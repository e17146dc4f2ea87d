// Placeholder of the i16 base branch only: the helper owning this group deletes this file.
// Never merged to main.
import Billing
extension RecordPayment: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "RecordPayment is not decided yet")
    }
}
extension RefundPayment: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "RefundPayment is not decided yet")
    }
}
extension IssueCreditNote: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "IssueCreditNote is not decided yet")
    }
}
extension AddCustomerCredit: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "AddCustomerCredit is not decided yet")
    }
}
