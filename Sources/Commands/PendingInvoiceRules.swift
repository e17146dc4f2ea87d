// Placeholder of the i16 base branch only: the helper owning this group deletes this file.
// Never merged to main.
import Billing
extension DraftInvoice: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "DraftInvoice is not decided yet")
    }
}
extension FinalizeInvoice: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "FinalizeInvoice is not decided yet")
    }
}
extension DiscardDraft: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "DiscardDraft is not decided yet")
    }
}
extension VoidInvoice: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "VoidInvoice is not decided yet")
    }
}
extension MarkUncollectible: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "MarkUncollectible is not decided yet")
    }
}
