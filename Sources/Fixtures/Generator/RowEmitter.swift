import Postgres

/// Writes one customer's rows into the running `COPY`s, one writer per streamed table, in the
/// PostgreSQL text format the seeds would produce (amounts at their currency's scale,
/// timestamps as `YYYY-MM-DD HH:MM:SS`).
struct RowEmitter {
    /// The tables streamed by COPY, in the order of ``writers`` (plans are written up front).
    static let tables: [LegacyTable] = [
        .customers, .subscriptions, .subscriptionHistory, .invoices, .invoiceLineItems, .payments, .refunds,
        .creditNotes, .customerBalanceTransactions,
    ]

    let customers: CopyInWriter
    let subscriptions: CopyInWriter
    let history: CopyInWriter
    let invoices: CopyInWriter
    let lines: CopyInWriter
    let payments: CopyInWriter
    let refunds: CopyInWriter
    let creditNotes: CopyInWriter
    let transactions: CopyInWriter

    /// `writers` in the order of ``tables``.
    init(_ writers: [CopyInWriter]) {
        precondition(writers.count == Self.tables.count)
        customers = writers[0]
        subscriptions = writers[1]
        history = writers[2]
        invoices = writers[3]
        lines = writers[4]
        payments = writers[5]
        refunds = writers[6]
        creditNotes = writers[7]
        transactions = writers[8]
    }

    /// Rows written so far over all streamed tables.
    var rowsWritten: Int {
        [customers, subscriptions, history, invoices, lines, payments, refunds, creditNotes, transactions]
            .reduce(0) { $0 + $1.rowsWritten }
    }

    func emit(_ rows: CustomerRows) throws {
        let c = rows.customer
        let currency = c.moneyCurrency
        let customerID = c.id
        func money(_ minor: Int64) -> String { MinorUnits.text(minor, currency) }

        let w = customers
        w.append(c.id)
        w.append(c.email)
        w.append(c.name)
        w.append(c.currency?.code)
        w.append(c.timezone)
        w.append(money(c.balance))
        // credit_balance is float8: the exact decimal of the minor units, as the seeds write it.
        w.append(money(c.creditBalance))
        append(w, c.deletedAt)
        w.append(Clock.timestampText(c.createdAt))
        w.append(Clock.timestampText(c.updatedAt))
        try w.endRow()

        for s in rows.subscriptions {
            let w = subscriptions
            w.append(s.id)
            w.append(customerID)
            w.append(s.planID)
            w.append(s.status.rawValue)
            w.append(s.quantity)
            w.append(Clock.timestampText(s.startedAt))
            append(w, s.trialEndsAt)
            append(w, s.periodStart)
            append(w, s.periodEnd)
            w.append(s.cancelAtPeriodEnd ? "t" : "f")
            append(w, s.canceledAt)
            append(w, s.endedAt)
            append(w, id: s.previousID)
            w.append(Clock.timestampText(s.createdAt))
            w.append(Clock.timestampText(s.updatedAt))
            try w.endRow()
        }

        for h in rows.history {
            let w = history
            w.append(h.id)
            w.append(h.subscriptionID)
            w.append(h.planID)
            w.append(h.status.rawValue)
            w.append(h.quantity)
            w.append(h.cancelAtPeriodEnd ? "t" : "f")
            append(w, h.periodStart)
            append(w, h.periodEnd)
            append(w, h.canceledAt)
            append(w, h.endedAt)
            w.append(Clock.timestampText(h.changedAt))
            try w.endRow()
        }

        for i in rows.invoices {
            let w = invoices
            w.append(i.id)
            w.append(customerID)
            append(w, id: i.subscriptionID)
            w.append(i.number)
            w.append(i.status.rawValue)
            w.append(i.currency?.code)
            w.append(money(i.subtotal))
            w.append(money(i.discount))
            w.append(money(i.tax))
            w.append(money(i.total))
            w.append(money(i.status == .void ? 0 : i.amountPaid))
            w.append(money(i.amountDue))
            w.append(i.taxRate.map(MinorUnits.rateText))
            append(w, i.periodStart)
            append(w, i.periodEnd)
            if let finalizedAt = i.finalizedAt {
                w.append(Clock.dateText(finalizedAt))
                w.append(Clock.dateText(finalizedAt + i.dueDays * Clock.day))
            } else {
                w.append(String?.none)
                w.append(String?.none)
            }
            append(w, i.finalizedAt)
            append(w, i.paidAt)
            append(w, i.voidedAt)
            w.append(Clock.timestampText(i.createdAt))
            w.append(Clock.timestampText(i.updatedAt))
            try w.endRow()
        }

        for l in rows.lines {
            let w = lines
            w.append(l.id)
            w.append(l.invoiceID)
            w.append(l.kind.rawValue)
            w.append(l.description)
            w.append(l.quantity)
            w.append(MinorUnits.decimal(l.unitAmount4, scale: 4))
            w.append(money(l.amount))
            append(w, l.periodStart)
            append(w, l.periodEnd)
            w.append(l.kind == .proration ? "t" : "f")
            try w.endRow()
        }

        for p in rows.payments {
            let w = payments
            w.append(p.id)
            w.append(customerID)
            w.append(p.invoiceID)
            w.append(p.status.rawValue)
            w.append(p.method.rawValue)
            w.append(p.providerPaymentID)
            w.append(p.failureCode)
            w.append(money(p.amount))
            w.append(currency.code)
            w.append(Clock.timestampText(p.createdAt))
            w.append(Clock.timestampText(p.updatedAt))
            try w.endRow()
        }

        for r in rows.refunds {
            let w = refunds
            w.append(r.id)
            w.append(r.paymentID)
            w.append(money(r.amount))
            w.append(r.reason)
            w.append(r.status.rawValue)
            w.append(Clock.timestampText(r.createdAt))
            try w.endRow()
        }

        for n in rows.creditNotes {
            let w = creditNotes
            w.append(n.id)
            w.append(n.invoiceID)
            w.append(customerID)
            w.append(n.number)
            w.append(money(n.total))
            w.append(money(n.remaining))
            w.append(n.reason)
            w.append(n.isVoid ? "void" : "issued")
            w.append(Clock.timestampText(n.createdAt))
            append(w, n.voidedAt)
            try w.endRow()
        }

        for t in rows.transactions {
            let w = transactions
            w.append(t.id)
            w.append(customerID)
            w.append(money(t.amount))
            w.append(currency.code)
            w.append(t.type.rawValue)
            append(w, id: t.invoiceID)
            append(w, id: t.creditNoteID)
            w.append(t.description)
            w.append(Clock.timestampText(t.createdAt))
            try w.endRow()
        }
    }

    private func append(_ w: CopyInWriter, _ instant: Instant?) {
        if let instant { w.append(Clock.timestampText(instant)) } else { w.append(String?.none) }
    }

    private func append(_ w: CopyInWriter, id: Int64?) {
        if let id { w.append(id) } else { w.append(String?.none) }
    }
}
