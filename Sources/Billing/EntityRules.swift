import Postgres

/// How one entity's column changes become named events.
struct EntityRules: Sendable {
    /// A named change: when it applies, the legacy timestamp that proves it, the values it sets.
    struct Change: Sendable {
        let type: BillingEventType
        let applies: @Sendable (_ state: [String: CanonicalValue], _ after: CanonicalRow) -> Bool
        /// Columns whose value is the moment of this change (the first one set wins): `observed`.
        /// Never `updated_at`: any later edit of the row moves it.
        let proof: [String]
        /// Where no proof column is set and the history starts from nothing: a time of the row
        /// that later edits cannot move (a payment's creation, an invoice's finalization),
        /// used as `inferred`. Failing those, the time of the step before (inferred).
        let inferred: [String]
        let sets: @Sendable (_ state: [String: CanonicalValue], _ after: CanonicalRow) -> [(String, CanonicalValue)]

        init(
            type: BillingEventType, applies: @escaping @Sendable ([String: CanonicalValue], CanonicalRow) -> Bool,
            proof: [String] = [], inferred: [String] = [],
            sets: @escaping @Sendable ([String: CanonicalValue], CanonicalRow) -> [(String, CanonicalValue)]
        ) {
            self.type = type
            self.applies = applies
            self.proof = proof
            self.inferred = inferred
            self.sets = sets
        }

        /// The moment a proof column gives, if any.
        func time(_ after: CanonicalRow) -> PostgresTimestamp? {
            proof.lazy.compactMap { after[$0].timestampValue }.first
        }

        /// The stable inferred moment, if any.
        func inferredTime(_ after: CanonicalRow) -> PostgresTimestamp? {
            inferred.lazy.compactMap { after[$0].timestampValue }.first
        }
    }

    let creationType: BillingEventType
    /// The column whose value is the creation's business time.
    let creationTimeColumn: String
    /// Values that, at creation, differ from the final row (an invoice starts as a draft).
    let creationOverrides: @Sendable (CanonicalRow) -> [String: CanonicalValue]
    let changes: [Change]
    let updatedType: BillingEventType
    let importedType: BillingEventType

    /// The state right after creation: the final row, minus what later steps establish.
    func initialState(_ after: CanonicalRow) -> [String: CanonicalValue] {
        var state = after.values
        if state["updated_at"] != nil { state["updated_at"] = .null }
        for (column, value) in creationOverrides(after) { state[column] = value }
        return state
    }

    static func rules(for entity: Entity) -> EntityRules {
        switch entity {
        case .customer: customer
        case .plan: plan
        case .subscription: subscription
        case .invoice: invoice
        case .invoiceLine: simple(.invoiceLineAdded, .invoiceLineUpdated)
        case .payment: payment
        case .refund: simple(.refundIssued, .refundUpdated)
        case .creditNote: creditNote
        case .balanceTransaction: simple(.balanceAdjusted, .balanceTransactionUpdated)
        case .billingEntity: simple(.billingEntityCreated, .billingEntityUpdated)
        case .paymentAllocation: simple(.paymentAllocated, .paymentAllocationUpdated)
        case .wallet: wallet
        case .walletTransaction: walletTransaction
        case .creditApplication: simple(.creditApplied, .creditApplicationUpdated)
        case .chargeback: chargeback
        case .paymentTransaction: simple(.paymentTransactionRecorded, .paymentTransactionUpdated)
        }
    }

    // MARK: - Helpers

    /// `column` is set in `after` but was not in `state`.
    static func becameSet(_ column: String) -> @Sendable ([String: CanonicalValue], CanonicalRow) -> Bool {
        { state, after in (state[column] ?? .null).isNull && !after[column].isNull }
    }

    /// `column` holds `value` in `after` but not in `state`.
    static func became(_ column: String, _ value: String) -> @Sendable ([String: CanonicalValue], CanonicalRow) -> Bool {
        { state, after in after[column] == .text(value) && state[column] != .text(value) }
    }

    static func changed(_ column: String) -> @Sendable ([String: CanonicalValue], CanonicalRow) -> Bool {
        { state, after in state[column] != after[column] }
    }

    static func take(_ columns: String...) -> @Sendable ([String: CanonicalValue], CanonicalRow) -> [(String, CanonicalValue)] {
        { _, after in columns.map { ($0, after[$0]) } }
    }

    static func simple(_ creation: BillingEventType, _ updated: BillingEventType) -> EntityRules {
        EntityRules(
            creationType: creation, creationTimeColumn: "created_at", creationOverrides: { _ in [:] }, changes: [],
            updatedType: updated, importedType: updated)
    }

    // MARK: - Entities

    static let customer = EntityRules(
        creationType: .customerCreated, creationTimeColumn: "created_at",
        creationOverrides: { _ in ["archived_at": .null] },
        changes: [
            Change(type: .customerArchived, applies: becameSet("archived_at"), proof: ["archived_at"], sets: take("archived_at"))
        ],
        updatedType: .customerUpdated, importedType: .customerUpdated)

    static let plan = EntityRules(
        creationType: .planObserved, creationTimeColumn: "created_at", creationOverrides: { _ in [:] }, changes: [],
        updatedType: .planObserved, importedType: .planObserved)

    static let subscription = EntityRules(
        creationType: .subscriptionStarted, creationTimeColumn: "started_at",
        creationOverrides: { after in
            let trialing = after["trial_ends_at"].timestampValue.map { t in
                after["started_at"].timestampValue.map { t > $0 } ?? true
            } ?? false
            // A subscription scheduled to start later (a plan change taking effect next period)
            // is created pending; nothing in the row proves when it was scheduled but its creation.
            let status = after["status"] == .text("pending") ? "pending" : trialing ? "trialing" : "active"
            return [
                "status": .text(status), "cancel_at_period_end": .boolean(false),
                "canceled_at": .null, "ended_at": .null,
            ]
        },
        changes: [
            // A scheduled subscription taking effect: it starts at started_at.
            Change(
                type: .subscriptionActivated,
                applies: { state, after in
                    state["status"] == .text("pending") && after["status"] != .text("pending")
                        && after["status"] != .text("canceled")
                },
                proof: ["started_at"], sets: { _, after in [("status", after["status"] == .text("trialing") ? .text("trialing") : .text("active"))] }),
            // Trial over while the subscription carried on (not canceled during the trial).
            Change(
                type: .subscriptionTrialEnded,
                applies: { state, after in
                    guard state["status"] == .text("trialing"), after["status"] != .text("trialing") else { return false }
                    guard let trialEnd = after["trial_ends_at"].timestampValue else { return false }
                    let canceledAt = after["canceled_at"].timestampValue ?? after["ended_at"].timestampValue
                    return after["status"] != .text("canceled") || canceledAt.map { $0 > trialEnd } ?? false
                },
                proof: ["trial_ends_at"], sets: { _, _ in [("status", .text("active"))] }),
            // Only between two known rows (an audit table, shadow mode), where the change's own
            // time is known: from nothing the row's plan and quantity are where it starts.
            Change(type: .subscriptionPlanChanged, applies: changed("plan_id"), sets: take("plan_id")),
            Change(type: .subscriptionQuantityChanged, applies: changed("quantity"), sets: take("quantity")),
            Change(type: .subscriptionPhaseChanged, applies: changed("phase"), sets: take("phase")),
            // Dunning starts with the renewal whose payment failed: the current period's start.
            Change(
                type: .subscriptionPastDue, applies: became("status", "past_due"), inferred: ["current_period_start"],
                sets: take("status")),
            Change(
                type: .subscriptionUnpaid, applies: became("status", "unpaid"), inferred: ["current_period_start"],
                sets: take("status")),
            Change(
                type: .subscriptionCancellationScheduled,
                applies: { state, after in
                    state["cancel_at_period_end"] != .boolean(true) && after["cancel_at_period_end"] == .boolean(true)
                },
                proof: ["canceled_at"], inferred: ["current_period_start"], sets: take("cancel_at_period_end", "canceled_at")),
            Change(
                type: .subscriptionCancellationRevoked,
                applies: { state, after in
                    state["cancel_at_period_end"] == .boolean(true) && after["cancel_at_period_end"] == .boolean(false)
                        && after["status"] != .text("canceled")
                },
                sets: take("cancel_at_period_end", "canceled_at")),
            Change(
                type: .subscriptionCanceled, applies: became("status", "canceled"), proof: ["canceled_at", "ended_at"],
                inferred: ["current_period_end"], sets: take("status", "canceled_at", "cancel_at_period_end")),
            Change(type: .subscriptionEnded, applies: becameSet("ended_at"), proof: ["ended_at"], sets: take("ended_at")),
        ],
        updatedType: .subscriptionUpdated, importedType: .subscriptionImported)

    static let invoice = EntityRules(
        creationType: .invoiceDrafted, creationTimeColumn: "created_at",
        creationOverrides: { after in
            [
                "status": .text("draft"), "number": .null, "finalized_at": .null, "paid_at": .null, "voided_at": .null,
                "issued_on": .null, "due_on": .null, "amount_paid": .amount(0), "amount_due": after["total"],
                "marked_uncollectible_at": .null,
            ]
        },
        changes: [
            Change(
                type: .invoiceFinalized, applies: becameSet("finalized_at"), proof: ["finalized_at"],
                sets: { state, after in
                    var values: [(String, CanonicalValue)] = [
                        ("finalized_at", after["finalized_at"]), ("number", after["number"]),
                        ("issued_on", after["issued_on"]), ("due_on", after["due_on"]),
                    ]
                    if state["status"] == .text("draft") { values.append(("status", .text("open"))) }
                    return values
                }),
            Change(
                type: .invoicePaid, applies: became("status", "paid"), proof: ["paid_at"],
                inferred: ["finalized_at", "created_at"], sets: take("status", "paid_at", "amount_paid", "amount_due")),
            Change(
                type: .invoiceVoided, applies: became("status", "void"), proof: ["voided_at"],
                inferred: ["finalized_at", "created_at"], sets: take("status", "voided_at", "amount_paid", "amount_due")),
            Change(
                type: .invoiceMarkedUncollectible, applies: became("status", "uncollectible"),
                proof: ["marked_uncollectible_at"], inferred: ["finalized_at", "created_at"],
                sets: take("status", "marked_uncollectible_at", "amount_paid", "amount_due")),
        ],
        updatedType: .invoiceUpdated, importedType: .invoiceImported)

    static let payment = EntityRules(
        creationType: .paymentCreated, creationTimeColumn: "created_at",
        creationOverrides: { _ in
            ["status": .text("pending"), "failure_code": .null, "succeeded_at": .null, "failed_at": .null, "canceled_at": .null]
        },
        changes: [
            // A payment's outcome is proven by its own column; without one, the attempt's creation
            // (most payments settle at once) is a time no later edit (a refund, a touch) moves.
            Change(
                type: .paymentSucceeded, applies: became("status", "succeeded"), proof: ["succeeded_at"],
                inferred: ["created_at"], sets: take("status", "succeeded_at")),
            Change(
                type: .paymentFailed, applies: became("status", "failed"), proof: ["failed_at"], inferred: ["created_at"],
                sets: take("status", "failed_at", "failure_code")),
            Change(
                type: .paymentCanceled, applies: became("status", "canceled"), proof: ["canceled_at"],
                inferred: ["created_at"], sets: take("status", "canceled_at")),
        ],
        updatedType: .paymentUpdated, importedType: .paymentUpdated)

    static let creditNote = EntityRules(
        creationType: .creditNoteIssued, creationTimeColumn: "created_at",
        creationOverrides: { after in
            // What is left to use starts as the credited part: a note that only refunds cash (or
            // only offsets what the invoice owed) never had credit to apply.
            [
                "status": .text("issued"), "voided_at": .null, "applied_at": .null,
                "balance_remaining": after["credit_amount"].isNull ? after["total"] : after["credit_amount"],
            ]
        },
        changes: [
            Change(
                type: .creditNoteApplied,
                applies: { state, after in
                    guard let was = state["balance_remaining"]?.amountValue, let now = after["balance_remaining"].amountValue
                    else { return false }
                    return now < was && after["status"] != .text("void")
                },
                proof: ["applied_at"], inferred: ["created_at"], sets: take("balance_remaining", "applied_at")),
            Change(
                type: .creditNoteVoided, applies: became("status", "void"), proof: ["voided_at"], inferred: ["created_at"],
                sets: take("status", "voided_at", "balance_remaining")),
        ],
        updatedType: .creditNoteUpdated, importedType: .creditNoteUpdated)

    static let wallet = EntityRules(
        creationType: .walletCreated, creationTimeColumn: "created_at",
        creationOverrides: { _ in ["status": .text("active"), "terminated_at": .null] },
        changes: [
            Change(
                type: .walletTerminated, applies: became("status", "terminated"), proof: ["terminated_at"],
                sets: take("status", "terminated_at"))
        ],
        updatedType: .walletUpdated, importedType: .walletUpdated)

    static let walletTransaction = EntityRules(
        creationType: .walletTransactionCreated, creationTimeColumn: "created_at",
        creationOverrides: { _ in ["status": .text("pending"), "settled_at": .null, "failed_at": .null] },
        changes: [
            Change(
                type: .walletTransactionSettled, applies: became("status", "settled"), proof: ["settled_at"],
                inferred: ["created_at"], sets: take("status", "settled_at")),
            Change(
                type: .walletTransactionFailed, applies: became("status", "failed"), proof: ["failed_at"],
                inferred: ["created_at"], sets: take("status", "failed_at")),
            Change(
                type: .walletTransactionVoided, applies: became("status", "voided"), inferred: ["created_at"],
                sets: take("status")),
        ],
        updatedType: .walletTransactionUpdated, importedType: .walletTransactionUpdated)

    static let chargeback = EntityRules(
        creationType: .chargebackOpened, creationTimeColumn: "created_at",
        creationOverrides: { _ in ["status": .text("pending"), "resolved_at": .null] },
        changes: [
            Change(
                type: .chargebackLost, applies: became("status", "lost"), proof: ["resolved_at"], inferred: ["created_at"],
                sets: take("status", "resolved_at")),
            Change(
                type: .chargebackWon, applies: became("status", "won"), proof: ["resolved_at"], inferred: ["created_at"],
                sets: take("status", "resolved_at")),
        ],
        updatedType: .chargebackUpdated, importedType: .chargebackUpdated)
}
