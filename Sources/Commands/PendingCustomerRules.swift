// Placeholder of the i16 base branch only: the helper owning this group deletes this file.
// Never merged to main.
import Billing
extension CreateCustomer: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "CreateCustomer is not decided yet")
    }
}
extension UpdateCustomer: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "UpdateCustomer is not decided yet")
    }
}
extension ArchiveCustomer: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "ArchiveCustomer is not decided yet")
    }
}
extension StartSubscription: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "StartSubscription is not decided yet")
    }
}
extension ActivateTrial: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "ActivateTrial is not decided yet")
    }
}
extension ChangePlan: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "ChangePlan is not decided yet")
    }
}
extension CancelSubscription: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "CancelSubscription is not decided yet")
    }
}
extension MarkPastDue: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "MarkPastDue is not decided yet")
    }
}
extension MarkUnpaid: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "MarkUnpaid is not decided yet")
    }
}
extension RenewSubscription: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "RenewSubscription is not decided yet")
    }
}
extension EndSubscription: Decidable {
    public func requirements(given state: CommandState) -> Set<Requirement> { [] }
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision {
        throw CommandRejection(.invalidInput, nil, nil, "EndSubscription is not decided yet")
    }
}
