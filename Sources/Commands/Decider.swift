import Billing

/// A command's rules: what it reads and what it decides. Pure — no database — so the same
/// decision serves the write path (``CommandExecutor`` appends it), candidate mode (compared,
/// never appended) and tests (decided on rows they make).
public protocol Decidable: Sendable {
    /// What to read before deciding. Called again with what was loaded until it asks for
    /// nothing new (a payment needs its invoice first, then the invoice's customer).
    func requirements(given state: CommandState) -> Set<Requirement>
    /// The decision on `state`, or the rule it breaks.
    func decide(in state: CommandState) throws(CommandRejection) -> Decision
}

extension BillingCommand {
    /// The command's rules.
    public var decidable: any Decidable {
        switch self {
        case .createCustomer(let c): c
        case .updateCustomer(let c): c
        case .archiveCustomer(let c): c
        case .startSubscription(let c): c
        case .activateTrial(let c): c
        case .changePlan(let c): c
        case .cancelSubscription(let c): c
        case .markPastDue(let c): c
        case .markUnpaid(let c): c
        case .renewSubscription(let c): c
        case .endSubscription(let c): c
        case .draftInvoice(let c): c
        case .finalizeInvoice(let c): c
        case .discardDraft(let c): c
        case .recordPayment(let c): c
        case .voidInvoice(let c): c
        case .markUncollectible(let c): c
        case .refundPayment(let c): c
        case .issueCreditNote(let c): c
        case .addCustomerCredit(let c): c
        }
    }

    /// See ``Decidable/requirements(given:)``.
    public func requirements(given state: CommandState) -> Set<Requirement> { decidable.requirements(given: state) }

    /// See ``Decidable/decide(in:)``.
    public func decide(in state: CommandState) throws(CommandRejection) -> Decision { try decidable.decide(in: state) }
}
