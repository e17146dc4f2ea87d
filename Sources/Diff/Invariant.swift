import TextFormats
import Billing
import Postgres

/// A rule the ledger's canonical read models obey among themselves, whatever the legacy data
/// says: `ledgerlift diff` checks each one beside the row-by-row comparison.
///
/// The row comparison proves each row equals its legacy row; it cannot see arithmetic that
/// spans tables (an invoice and its lines, a payment and its refunds). These rules can, so a
/// ledger that is internally inconsistent is caught even where the legacy data was too.
///
/// Each rule is one SQL statement over the read-model tables: it computes, per key, the
/// figures and whether they fit, counts what it checked and what broke, and returns the first
/// offending keys (byte order, as the `COLLATE "C"` keys sort) with their figures, from which
/// the detail is written. Amounts are integers of minor units stored as `bigint`, but every sum
/// and every figure added or subtracted from amounts is computed, and compared, in `numeric`
/// (PostgreSQL's `sum` of `bigint` already is `numeric`; nothing is cast back to `bigint`), so
/// nothing overflows: whatever amounts the backfill accepted (any `Int64`) are checked exactly,
/// even where two near-limit amounts add up beyond 64 bits. The figures are read as exact
/// decimals (``PostgresNumeric``, never a `Double`) and shown as decimals of their currency, a
/// figure beyond `Int64` included; an amount whose currency is unknown is shown in minor units.
/// Comparisons treat NULL as a value (`IS NOT DISTINCT FROM`), so a NULL total or remaining
/// balance breaks its rule instead of passing unnoticed; sums skip NULL amounts, as SQL does
/// (the row comparison reports those against the legacy rows).
///
/// Keys found only on the child side (lines of an invoice the read model lacks, refunds of a
/// missing payment, balance transactions of a missing credit note) are checked too and always
/// break the rule, so nothing is silently left out.
public struct Invariant: Sendable, Hashable {
    /// Stable snake_case name (`invoice_total`): the JUnit test case name and what scripts match.
    public let name: String
    /// The rule in one sentence.
    public let summary: String
    private let rule: Rule

    /// Which statement and which detail renderer a rule uses; an enum rather than closures so
    /// the invariant stays `Hashable`.
    private enum Rule: Sendable, Hashable {
        case invoiceTotal
        case receivableBalance
        case refundWithinPayment
        case creditNoteParts
        case invoiceVersions
        case creditNoteVersions
        case walletBalance
    }

    /// An invoice's total equals its charge lines plus tax minus discount.
    ///
    /// Per invoice, of any status (drafts and void invoices carry their lines too):
    /// `total` = Σ all its lines (discount lines are negative, tax lines positive) and
    /// `total` = `subtotal − discount + tax`, where `subtotal` = Σ lines of kind
    /// `subscription`, `usage`, `one_off`, `proration`; `discount` = −Σ `discount` lines; and
    /// `tax` = Σ `tax` lines (`fixtures/README.md`, rules C02 and C03). Checking each part
    /// against its own lines, not only the total, catches two cached parts drifting in opposite
    /// directions. An invoice without lines must total 0. Key: `invoice_id`.
    public static let invoiceTotal = Invariant(
        name: "invoice_total",
        summary: "An invoice's total equals its charge lines plus tax minus discount: total = the sum of all its lines "
            + "= subtotal - discount + tax, with subtotal, discount and tax each equal to their own lines.",
        rule: .invoiceTotal)

    /// A customer's receivable balance equals its finalized invoices minus what settled them.
    ///
    /// Per customer and currency: Σ `total` over the customer's invoices with status `open`,
    /// `paid` or `uncollectible` − Σ `amount` of the `succeeded` payments on those invoices −
    /// Σ `amount` of the `applied_to_invoice` balance transactions on those invoices (credit
    /// used to pay them) + the surplus moved off those invoices into credit (−Σ `amount` of
    /// their `invoice_overpayment` balance transactions) must equal
    /// `customer_balances.receivables`; `customer_balances.unapplied_credit` must equal
    /// −Σ `amount` of all the customer's balance transactions in that currency; and
    /// `customer_balances.balance` must equal the first minus the second. A missing
    /// `customer_balances` row reads as zeros. Key: `customer_id`; checked: every customer of
    /// `customers` plus any customer only the other tables name.
    ///
    /// Why this holds (`fixtures/README.md`, rules C05–C07): `amount_paid` is the succeeded
    /// payments plus the credit applied to the invoice (C05); a paid invoice has
    /// `amount_paid = total`, an open or uncollectible one owes `amount_due = total −
    /// amount_paid` (C06); and the receivables are Σ `amount_due` of open and uncollectible
    /// invoices (C07). An overpaid invoice stays at `amount_paid = total` and its surplus is an
    /// `invoice_overpayment` credit naming it (the dirty fixture's case D25), hence that term.
    /// Paid invoices are included rather than skipped, so a paid invoice whose payments went
    /// missing, or were recorded twice without the surplus becoming credit, shows up here.
    /// Drafts and void invoices owe nothing and are left out with their payments.
    ///
    /// Refunds are deliberately not added back: a refund returns cash to the customer but does
    /// not reopen the invoice (the legacy rule keeps a refunded invoice paid, and the ledger
    /// keeps `amount_paid`), so the customer owes nothing more after it. Adding refunds would
    /// report every refunded customer of a clean ledger.
    public static let receivableBalance = Invariant(
        name: "receivable_balance",
        summary: "Per customer and currency, the receivables equal the finalized invoices (open, paid, uncollectible) "
            + "minus what settled them (succeeded payments and applied credit, less any overpayment moved to credit), "
            + "and the balance equals the receivables minus the unapplied credit (minus the sum of all balance "
            + "transactions); refunds do not count, a refunded invoice stays paid.",
        rule: .receivableBalance)

    /// Refunds never exceed their payment.
    ///
    /// Per payment: Σ `amount` of its refunds with status `succeeded` or `pending` ≤ the
    /// payment's `amount`. Failed and canceled refunds returned nothing, so they do not count
    /// (`fixtures/README.md`, rule C10). Key: `payment_id`.
    public static let refundWithinPayment = Invariant(
        name: "refund_within_payment",
        summary: "A payment's succeeded and pending refunds add up to at most the payment's amount; "
            + "failed and canceled refunds do not count.",
        rule: .refundWithinPayment)

    /// A credit note's parts add up to its total.
    ///
    /// Per credit note, over the balance transactions naming it (`fixtures/README.md`, rule
    /// C09): `balance_remaining` = −Σ all their amounts, and 0 ≤ `balance_remaining` ≤ `total`.
    /// When it has transactions, its `credit_note` transactions sum to −`total` (issuing it) and
    /// `total` = applied (Σ `applied_to_invoice`) + reversed (Σ `adjustment`, written when the
    /// note is voided) + `balance_remaining`. A note without transactions must have nothing
    /// remaining. Key: `credit_note_id`.
    public static let creditNoteParts = Invariant(
        name: "credit_note_parts",
        summary: "A credit note's parts add up to its total: its credit_note transactions issue the total, "
            + "balance_remaining is minus the sum of its balance transactions and lies between 0 and the total, "
            + "so total = applied + reversed + balance_remaining.",
        rule: .creditNoteParts)

    /// Every version of every invoice in `invoices_history` obeys the arithmetic of a single
    /// invoice row: `total` = `subtotal − discount + tax`; 0 ≤ `amount_paid` ≤ `total`; and
    /// `amount_due` fits the status (`fixtures/README.md`, rules C02 and C06).
    ///
    /// The rules above check the current rows only; an "as of" read serves past versions, which
    /// the backfill reconstructed from legacy's timestamps or read from an audit table, and a
    /// version that never balanced would pass them unseen. Key: `invoice_id`; `checked` and
    /// `violations` count invoices, and the detail names each offending version by its
    /// `valid_from`.
    public static let invoiceVersions = Invariant(
        name: "invoice_versions",
        summary: "Every version of an invoice in its history balances: total = subtotal - discount + tax, "
            + "0 <= amount_paid <= total, and amount_due fits the status (draft: nothing paid, the total due; "
            + "open and uncollectible: total - amount_paid; paid: amount_paid = total, nothing due; void: nothing due).",
        rule: .invoiceVersions)

    /// Every version of every credit note in `credit_notes_history` keeps its remaining credit
    /// within its total, never restores it, and a void note has none left.
    ///
    /// Per version: 0 ≤ `balance_remaining` ≤ `total`; `balance_remaining` ≤ the previous
    /// version's (issuing sets it to the total, applying credit lowers it, voiding sets it to 0,
    /// and nothing raises it: `fixtures/README.md`, rule C09); status `void` has
    /// `balance_remaining` 0. Key: `credit_note_id`; counts in credit notes, detail per version.
    public static let creditNoteVersions = Invariant(
        name: "credit_note_versions",
        summary: "Every version of a credit note in its history has 0 <= balance_remaining <= total, "
            + "never more remaining than the version before it (credit is used up or voided, never restored), "
            + "and nothing remaining once void.",
        rule: .creditNoteVersions)

    /// A wallet's balance is what its settled transactions leave.
    ///
    /// Per wallet with transactions: `balance` = Σ `amount` of its `settled` inbound
    /// transactions − Σ `amount` of its `settled` outbound ones; pending, failed and voided
    /// transactions moved nothing. A wallet whose transactions are not mapped is not checked
    /// (nothing to compare with). Key: `wallet_id`.
    public static let walletBalance = Invariant(
        name: "wallet_balance",
        summary: "A wallet's balance equals its settled inbound transactions minus its settled outbound ones "
            + "(pending, failed and voided transactions move nothing); wallets without transactions are not checked.",
        rule: .walletBalance)

    /// Every invariant, in report order.
    public static let all: [Invariant] = [
        .invoiceTotal, .receivableBalance, .refundWithinPayment, .creditNoteParts, .walletBalance,
        .invoiceVersions, .creditNoteVersions,
    ]

    /// Runs the check on the read models in `readSchema` (unquoted schema name, e.g.
    /// "ledgerlift_read"), listing at most `maxRows` offending keys (key order; counts complete).
    ///
    /// One statement, so one snapshot even outside a transaction.
    ///
    /// - Throws: ``PostgresError`` when the statement fails (a missing table, a column of an
    ///   unexpected type; never an overflow, as all arithmetic is in `numeric`);
    ///   ``PostgresDecodingError`` or ``DiffError`` when its result does not have the expected
    ///   shape.
    public func check(
        _ session: Session, readSchema: String, maxRows: Int, refundsReopen: Bool = false, chargebacksReopen: Bool = false
    ) throws -> InvariantResult {
        let schema = quoteIdentifier(readSchema)
        let sql: String
        let detail: (Row) throws -> String
        switch rule {
        case .invoiceTotal: (sql, detail) = (Self.invoiceTotalSQL(schema), Self.invoiceTotalDetail)
        case .receivableBalance:
            (sql, detail) = (
                Self.receivableBalanceSQL(schema, refundsReopen: refundsReopen, chargebacksReopen: chargebacksReopen),
                Self.receivableBalanceDetail
            )
        case .refundWithinPayment: (sql, detail) = (Self.refundWithinPaymentSQL(schema), Self.refundWithinPaymentDetail)
        case .creditNoteParts: (sql, detail) = (Self.creditNotePartsSQL(schema), Self.creditNotePartsDetail)
        case .invoiceVersions:
            (sql, detail) = (Self.invoiceVersionsSQL(schema, reopens: refundsReopen || chargebacksReopen), Self.invoiceVersionsDetail)
        case .creditNoteVersions: (sql, detail) = (Self.creditNoteVersionsSQL(schema), Self.creditNoteVersionsDetail)
        case .walletBalance: (sql, detail) = (Self.walletBalanceSQL(schema), Self.walletBalanceDetail)
        }
        let rows = try session.query(sql, [Int64(max(0, maxRows))]).rows
        guard let first = rows.first else {
            // The counts come from an aggregate without GROUP BY: always exactly one row.
            throw DiffError(side: .ledger, "invariant \(name): its query returned no row")
        }
        // A key may span several rows (one per currency for `receivable_balance`); rows come
        // in key order, so grouping consecutive rows keeps that order.
        var offending = [InvariantViolation]()
        for row in rows {
            guard let key = try row.decode("key", as: String?.self) else { continue }
            let text = try detail(row)
            if let last = offending.last, last.key == key {
                offending[offending.count - 1].detail += "; " + text
            } else {
                offending.append(InvariantViolation(key: key, detail: text))
            }
        }
        return InvariantResult(
            name: name, summary: summary, checked: try first.decode("checked", as: Int64.self),
            violations: try first.decode("violations", as: Int64.self), offending: offending)
    }

    // MARK: - Statements

    /// A condition of a one-row-per-key rule: SQL over the columns of `figures`, never NULL; the
    /// listed rows carry its verdict in the column `flag`, when it has one, for the detail.
    private typealias Condition = (flag: String?, sql: String)

    /// The statement every one-row-per-key rule runs: `ctes` ends with a CTE `figures` holding
    /// one row per key (column `key`) with its figures; the key passes when every one of
    /// `conditions` holds. `listedFigures` are further columns (`expression AS name`) computed for
    /// the listed rows only, beside the conditions' flags.
    ///
    /// Its result is one row per listed offending key, with the complete counts repeated, or a
    /// single row of counts with a NULL key when none is listed. `checked` is read twice, so
    /// PostgreSQL computes it once into a tuplestore; that costs less than running the joins
    /// twice (measured: about 15% of the statement on a million invoices).
    ///
    /// The figures are `numeric` wherever amounts are added (a `bigint` compared with one is
    /// promoted), and a `numeric` operation costs more than a `bigint` one; so each condition is
    /// evaluated once per key, in `ok`, and again, for its flag, only on the listed rows. Written
    /// as columns that `ok` combines, each would be evaluated twice per key (and a derived figure
    /// such as `parts` once more for its own column): measured on a million invoices,
    /// `invoice_total` then took about 20% more than with `bigint` figures, and takes about 4%
    /// more as it is.
    private static func oneRowPerKey(
        _ ctes: String, conditions: [Condition], listedFigures: [String] = []
    ) -> String {
        let listedColumns = listedColumns(conditions, listedFigures)
        return """
            \(checked(ctes, conditions))
            SELECT counts.checked, counts.violations, listed.*
            FROM (SELECT count(*) AS checked, count(*) FILTER (WHERE NOT ok) AS violations FROM checked) AS counts
            LEFT JOIN (
                SELECT *\(listedColumns.map { ",\n    " + $0 }.joined())
                FROM checked WHERE NOT ok ORDER BY key COLLATE "C" LIMIT $1
            ) AS listed ON true
            ORDER BY listed.key COLLATE "C"
            """
    }

    /// `WITH ctes, checked AS (…)`: every row of `figures` with `ok`, whether all `conditions`
    /// hold (the statement both shapes of rule start with).
    private static func checked(_ ctes: String, _ conditions: [Condition]) -> String {
        let ok = conditions.map { "(\($0.sql))" }.joined(separator: "\n    AND ")
        return """
            WITH \(ctes),
            checked AS (
                SELECT *,
                    \(ok)
                    AS ok
                FROM figures
            )
            """
    }

    /// The flag of each named condition, then `listedFigures`: the columns of listed rows only.
    private static func listedColumns(_ conditions: [Condition], _ listedFigures: [String]) -> [String] {
        conditions.compactMap { condition in condition.flag.map { "\(condition.sql) AS \($0)" } } + listedFigures
    }

    private static func invoiceTotalSQL(_ s: String) -> String {
        // Computed in `numeric`: a subtotal and a tax near the `bigint` limits add up beyond them.
        let parts = "subtotal::numeric - discount + tax + rounding"
        return oneRowPerKey(
            """
            lines AS (
                SELECT invoice_id,
                       min(currency)::text AS currency,
                       sum(amount) AS line_sum,
                       sum(amount) FILTER (WHERE kind IN ('subscription', 'usage', 'one_off', 'proration'))
                           AS charge_lines,
                       sum(amount) FILTER (WHERE kind = 'discount') AS discount_lines,
                       sum(amount) FILTER (WHERE kind = 'tax') AS tax_lines
                FROM \(s).invoice_lines
                WHERE invoice_id IS NOT NULL
                GROUP BY invoice_id
            ),
            figures AS (
                SELECT coalesce(i.invoice_id, l.invoice_id) AS key, i.invoice_id IS NOT NULL AS has_invoice,
                       coalesce(i.currency::text, l.currency) AS currency,
                       i.total, i.subtotal, i.discount, i.tax, coalesce(i.rounding, 0) AS rounding,
                       coalesce(l.line_sum, 0) AS line_sum, coalesce(l.charge_lines, 0) AS charge_lines,
                       coalesce(l.discount_lines, 0) AS discount_lines, coalesce(l.tax_lines, 0) AS tax_lines
                FROM \(s).invoices AS i
                FULL JOIN lines AS l ON l.invoice_id = i.invoice_id
            )
            """,
            conditions: [
                ("total_is_lines", "total IS NOT DISTINCT FROM line_sum + rounding"),
                ("total_is_parts", "total IS NOT DISTINCT FROM \(parts)"),
                ("subtotal_is_lines", "subtotal IS NOT DISTINCT FROM charge_lines"),
                ("discount_is_lines", "discount IS NOT DISTINCT FROM -discount_lines"),
                ("tax_is_lines", "tax IS NOT DISTINCT FROM tax_lines"),
            ],
            listedFigures: ["\(parts) AS parts"])
    }

    /// Per (customer, currency) pair, then per customer; listed: the failing pairs of the first
    /// `$1` failing customers.
    private static func receivableBalanceSQL(_ s: String, refundsReopen: Bool, chargebacksReopen: Bool) -> String {
        // What takes money back from an invoice that reopens it under the mapping's rules: the
        // succeeded refunds of its payments, the lost chargebacks; each to the invoice it names,
        // else the one its payment paid.
        var reopening = [String]()
        if refundsReopen {
            reopening.append(
                """
                SELECT coalesce(r.invoice_id, p.invoice_id) AS invoice_id, r.amount
                FROM \(s).refunds AS r LEFT JOIN \(s).payments AS p ON p.payment_id = r.payment_id
                WHERE r.status = 'succeeded'
                """)
        }
        if chargebacksReopen {
            reopening.append(
                """
                SELECT coalesce(c.invoice_id, p.invoice_id) AS invoice_id, c.amount
                FROM \(s).chargebacks AS c LEFT JOIN \(s).payments AS p ON p.payment_id = c.payment_id
                WHERE c.status = 'lost'
                """)
        }
        reopening.append("SELECT NULL::text AS invoice_id, 0::bigint AS amount WHERE false")
        return """
        WITH paid AS (
            -- A payment with allocations settles the invoices it is allocated to, by those
            -- amounts; one without settles the invoice it names.
            SELECT invoice_id, sum(amount) AS amount
            FROM (
                SELECT p.invoice_id, p.amount FROM \(s).payments AS p
                WHERE p.status = 'succeeded' AND p.invoice_id IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM \(s).payment_allocations AS a WHERE a.payment_id = p.payment_id)
                UNION ALL
                SELECT a.invoice_id, a.amount FROM \(s).payment_allocations AS a
                JOIN \(s).payments AS p ON p.payment_id = a.payment_id
                WHERE p.status = 'succeeded' AND a.invoice_id IS NOT NULL
            ) AS settling
            GROUP BY invoice_id
        ),
        reopened AS (
            SELECT invoice_id, sum(amount) AS amount
            FROM (
            \(reopening.joined(separator: "\n    UNION ALL\n"))
            ) AS taken_back
            WHERE invoice_id IS NOT NULL
            GROUP BY invoice_id
        ),
        credited AS (
            SELECT invoice_id,
                   sum(amount) FILTER (WHERE type = 'applied_to_invoice') AS applied,
                   -sum(amount) FILTER (WHERE type = 'invoice_overpayment') AS overpaid
            FROM \(s).balance_transactions
            WHERE type IN ('applied_to_invoice', 'invoice_overpayment') AND invoice_id IS NOT NULL
            GROUP BY invoice_id
        ),
        invoiced AS (
            SELECT customer_id, currency, invoiced, paid, credited, overpaid, credit_applied, reopened,
                   coalesce(invoiced, 0) - paid - credited + overpaid - credit_applied + reopened AS owed
            FROM (
                SELECT i.customer_id, i.currency, sum(i.total) AS invoiced, coalesce(sum(p.amount), 0) AS paid,
                       coalesce(sum(c.applied), 0) AS credited, coalesce(sum(c.overpaid), 0) AS overpaid,
                       coalesce(sum(i.credit_applied), 0) AS credit_applied, coalesce(sum(r.amount), 0) AS reopened
                FROM \(s).invoices AS i
                LEFT JOIN paid AS p ON p.invoice_id = i.invoice_id
                LEFT JOIN credited AS c ON c.invoice_id = i.invoice_id
                LEFT JOIN reopened AS r ON r.invoice_id = i.invoice_id
                WHERE i.status IN ('open', 'paid', 'uncollectible') AND i.customer_id IS NOT NULL
                GROUP BY i.customer_id, i.currency
            ) AS sums
        ),
        credit AS (
            -- The balance credit: minus the balance transactions, less what credit applications
            -- naming neither a credit note nor a wallet transaction drew from it (a customer's
            -- own, else its invoice's customer's).
            SELECT customer_id, currency, sum(amount) AS unapplied
            FROM (
                SELECT customer_id, currency::text AS currency, -amount::numeric AS amount
                FROM \(s).balance_transactions WHERE customer_id IS NOT NULL
                UNION ALL
                SELECT coalesce(a.customer_id, i.customer_id), a.currency::text, -a.amount::numeric
                FROM \(s).credit_applications AS a LEFT JOIN \(s).invoices AS i ON i.invoice_id = a.invoice_id
                WHERE a.credit_note_id IS NULL AND a.wallet_transaction_id IS NULL
            ) AS moves
            WHERE customer_id IS NOT NULL
            GROUP BY customer_id, currency
        ),
        pairs AS (
            SELECT coalesce(i.customer_id, c.customer_id, b.customer_id) AS customer_id,
                   coalesce(i.currency, c.currency, b.currency)::text AS currency,
                   coalesce(i.invoiced, 0) AS invoiced, coalesce(i.paid, 0) AS paid,
                   coalesce(i.credited, 0) AS credited, coalesce(i.overpaid, 0) AS overpaid,
                   coalesce(i.credit_applied, 0) AS credit_applied, coalesce(i.reopened, 0) AS reopened,
                   coalesce(i.owed, 0) AS expected_receivables,
                   coalesce(c.unapplied, 0) AS expected_unapplied,
                   coalesce(i.owed, 0) - coalesce(c.unapplied, 0) AS expected_balance,
                   b.customer_id IS NOT NULL AS has_row, b.receivables, b.unapplied_credit, b.balance
            FROM invoiced AS i
            FULL JOIN credit AS c ON c.customer_id = i.customer_id AND c.currency = i.currency
            FULL JOIN \(s).customer_balances AS b
                ON b.customer_id = coalesce(i.customer_id, c.customer_id)
               AND b.currency = coalesce(i.currency, c.currency)
        ),
        conditions AS (
            SELECT *,
                   coalesce(receivables, 0) = expected_receivables AS receivables_ok,
                   coalesce(unapplied_credit, 0) = expected_unapplied AS unapplied_ok,
                   coalesce(balance, 0) = expected_balance AS balance_ok
            FROM pairs
        ),
        pair_verdicts AS (
            SELECT *, receivables_ok AND unapplied_ok AND balance_ok AS ok FROM conditions
        ),
        checked AS (
            -- Customers with no pair (no currency, nothing invoiced) hold trivially, and count.
            SELECT customer_id AS key, bool_and(ok) AS ok
            FROM (
                SELECT customer_id, ok FROM pair_verdicts
                UNION ALL
                SELECT customer_id, true FROM \(s).customers
            ) AS verdicts
            GROUP BY customer_id
        )
        SELECT counts.checked, counts.violations, listed.*
        FROM (SELECT count(*) AS checked, count(*) FILTER (WHERE NOT ok) AS violations FROM checked) AS counts
        LEFT JOIN (
            SELECT f.customer_id AS key, f.*
            FROM (SELECT key FROM checked WHERE NOT ok ORDER BY key COLLATE "C" LIMIT $1) AS k
            JOIN pair_verdicts AS f ON f.customer_id = k.key
            WHERE NOT f.ok
        ) AS listed ON true
        ORDER BY listed.key COLLATE "C", listed.currency COLLATE "C"
        """
    }

    private static func refundWithinPaymentSQL(_ s: String) -> String {
        oneRowPerKey(
            """
            refunded AS (
                SELECT payment_id, min(currency)::text AS currency,
                       coalesce(sum(amount) FILTER (WHERE status IN ('succeeded', 'pending')), 0) AS refunded,
                       count(*) FILTER (WHERE status IN ('succeeded', 'pending')) AS refund_count
                FROM \(s).refunds
                WHERE payment_id IS NOT NULL
                GROUP BY payment_id
            ),
            figures AS (
                SELECT coalesce(p.payment_id, r.payment_id) AS key, p.payment_id IS NOT NULL AS has_payment,
                       coalesce(p.currency::text, r.currency) AS currency, p.amount,
                       coalesce(r.refunded, 0) AS refunded, coalesce(r.refund_count, 0) AS refund_count
                FROM \(s).payments AS p
                FULL JOIN refunded AS r ON r.payment_id = p.payment_id
            )
            """,
            conditions: [(nil, "coalesce(refunded <= amount, false)")])
    }

    private static func creditNotePartsSQL(_ s: String) -> String {
        oneRowPerKey(
            """
            transactions AS (
                SELECT credit_note_id, min(currency)::text AS currency, count(*) AS transaction_count,
                       -sum(amount) AS unused,
                       coalesce(-sum(amount) FILTER (WHERE type = 'credit_note'), 0) AS issued,
                       coalesce(sum(amount) FILTER (WHERE type = 'applied_to_invoice'), 0) AS applied,
                       coalesce(sum(amount) FILTER (WHERE type = 'adjustment'), 0) AS reversed
                FROM \(s).balance_transactions
                WHERE credit_note_id IS NOT NULL
                GROUP BY credit_note_id
            ),
            applications AS (
                SELECT credit_note_id, count(*) AS application_count,
                       coalesce(sum(amount) FILTER (WHERE part IS DISTINCT FROM 'offset'), 0) AS used,
                       coalesce(sum(amount) FILTER (WHERE part = 'offset'), 0) AS offset_used
                FROM \(s).credit_applications
                WHERE credit_note_id IS NOT NULL
                GROUP BY credit_note_id
            ),
            figures AS (
                SELECT coalesce(n.credit_note_id, t.credit_note_id) AS key, n.credit_note_id IS NOT NULL AS has_note,
                       coalesce(n.currency::text, t.currency) AS currency, n.total, n.balance_remaining, n.status,
                       coalesce(n.credit_amount, n.total) AS credited,
                       n.total::numeric - coalesce(n.credit_amount, n.total) - n.refund_amount - n.offset_amount AS split_gap,
                       coalesce(t.transaction_count, 0) AS transaction_count, coalesce(t.unused, 0) AS unused,
                       coalesce(t.issued, 0) AS issued, coalesce(t.applied, 0) + coalesce(a.used, 0) AS applied,
                       coalesce(t.reversed, 0) AS reversed, coalesce(a.application_count, 0) AS application_count,
                       coalesce(a.used, 0) AS used, coalesce(a.offset_used, 0) AS offset_used, n.offset_amount,
                       coalesce(t.applied, 0) + coalesce(a.used, 0) + coalesce(t.reversed, 0) + n.balance_remaining AS parts
                FROM \(s).credit_notes AS n
                FULL JOIN transactions AS t ON t.credit_note_id = n.credit_note_id
                LEFT JOIN applications AS a ON a.credit_note_id = coalesce(n.credit_note_id, t.credit_note_id)
            )
            """,
            conditions: [
                (nil, "has_note"),
                ("split_ok", "split_gap = 0"),
                // Through balance transactions (issued, applied, reversed on the customer's
                // balance), what is left is minus their sum less what credit applications used;
                // without any, what is left is the credited part less what was applied to
                // invoices, and nothing once void.
                (
                    "remaining_ok",
                    """
                    CASE WHEN transaction_count > 0 THEN balance_remaining IS NOT DISTINCT FROM unused - used
                         WHEN status = 'void' THEN balance_remaining IS NOT DISTINCT FROM 0
                         ELSE balance_remaining IS NOT DISTINCT FROM credited - used END
                    """
                ),
                ("range_ok", "coalesce(balance_remaining BETWEEN 0 AND credited, false)"),
                ("offset_ok", "offset_used <= offset_amount"),
                ("issued_ok", "transaction_count = 0 OR credited IS NOT DISTINCT FROM issued"),
                ("parts_ok", "transaction_count = 0 OR credited IS NOT DISTINCT FROM parts"),
            ],
            listedFigures: ["credited::numeric - used AS expected_unused"])
    }

    // MARK: - Details

    private static func invoiceTotalDetail(_ row: Row) throws -> String {
        let amount = try Amounts(row)
        guard try row.decode("has_invoice", as: Bool.self) else {
            return "no invoice row, but lines of it sum to \(try amount("line_sum"))"
        }
        var broken = [String]()
        // The rounding term is rare (a legacy system that rounds per tax rate), so it is shown
        // only when it is there.
        let rounding =
            try row.decode("rounding", as: PostgresNumeric.self).isZero ? "" : " + rounding \(try amount("rounding"))"
        if !(try row.decode("total_is_lines", as: Bool.self)) {
            broken.append("total \(try amount("total")) but its lines sum to \(try amount("line_sum"))\(rounding)")
        }
        if !(try row.decode("total_is_parts", as: Bool.self)) {
            broken.append(
                "total \(try amount("total")) but subtotal \(try amount("subtotal"))"
                    + " - discount \(try amount("discount"))"
                    + " + tax \(try amount("tax"))\(rounding) = \(try amount("parts"))")
        }
        if !(try row.decode("subtotal_is_lines", as: Bool.self)) {
            broken.append(
                "subtotal \(try amount("subtotal")) but its charge lines sum to \(try amount("charge_lines"))")
        }
        if !(try row.decode("discount_is_lines", as: Bool.self)) {
            broken.append(
                "discount \(try amount("discount")) but its discount lines sum to \(try amount("discount_lines"))")
        }
        if !(try row.decode("tax_is_lines", as: Bool.self)) {
            broken.append("tax \(try amount("tax")) but its tax lines sum to \(try amount("tax_lines"))")
        }
        return broken.joined(separator: "; ")
    }

    private static func receivableBalanceDetail(_ row: Row) throws -> String {
        let amount = try Amounts(row)
        var broken = [String]()
        if !(try row.decode("has_row", as: Bool.self)) {
            broken.append("no customer_balances row (read as zeros)")
        }
        if !(try row.decode("receivables_ok", as: Bool.self)) {
            // The overpayment term is rare (only where a surplus was moved to credit), so it
            // is shown only when it is there.
            let overpaid =
                try row.decode("overpaid", as: PostgresNumeric.self).isZero
                ? "" : " + overpayment moved to credit \(try amount("overpaid"))"
            let creditApplied =
                try row.decode("credit_applied", as: PostgresNumeric.self).isZero
                ? "" : " - credit applied after tax \(try amount("credit_applied"))"
            let reopened =
                try row.decode("reopened", as: PostgresNumeric.self).isZero
                ? "" : " + refunds and chargebacks that reopen them \(try amount("reopened"))"
            broken.append(
                "receivables \(try amount("receivables", zeroIfNull: true)) but finalized invoices "
                    + "\(try amount("invoiced")) - succeeded payments \(try amount("paid")) - applied credit "
                    + "\(try amount("credited"))\(overpaid)\(creditApplied)\(reopened) = \(try amount("expected_receivables"))")
        }
        if !(try row.decode("unapplied_ok", as: Bool.self)) {
            broken.append(
                "unapplied credit \(try amount("unapplied_credit", zeroIfNull: true)) but minus the sum of "
                    + "its balance transactions and balance credit applied = \(try amount("expected_unapplied"))")
        }
        if !(try row.decode("balance_ok", as: Bool.self)) {
            broken.append(
                "balance \(try amount("balance", zeroIfNull: true)) but receivables "
                    + "\(try amount("expected_receivables")) - unapplied credit \(try amount("expected_unapplied"))"
                    + " = \(try amount("expected_balance"))")
        }
        return "\(try row.decode("currency", as: String?.self) ?? "no currency"): " + broken.joined(separator: "; ")
    }

    private static func refundWithinPaymentDetail(_ row: Row) throws -> String {
        let amount = try Amounts(row)
        let count = try row.decode("refund_count", as: Int64.self)
        let refunds = "its succeeded and pending refunds (\(count)) sum to \(try amount("refunded"))"
        guard try row.decode("has_payment", as: Bool.self) else {
            return "no payment row, but refunds name it; " + refunds
        }
        guard try row.decode("amount", as: PostgresNumeric?.self) != nil else {
            return "the payment has no amount; " + refunds
        }
        return refunds + ", more than the payment's \(try amount("amount"))"
    }

    private static func creditNotePartsDetail(_ row: Row) throws -> String {
        let amount = try Amounts(row)
        guard try row.decode("has_note", as: Bool.self) else {
            let count = try row.decode("transaction_count", as: Int64.self)
            return "no credit note row, but \(count) balance transactions name it, leaving \(try amount("unused"))"
        }
        var broken = [String]()
        // A note split into parts is described by its credited part; one that is not, by its total.
        let split = try row.decode("credited", as: PostgresNumeric?.self) != row.decode("total", as: PostgresNumeric?.self)
        let credited = split ? "credited part \(try amount("credited"))" : "total \(try amount("total"))"
        let used = try row.decode("application_count", as: Int64.self)
        let applications = used == 0 ? "" : " less its credit applications \(try amount("used"))"
        if !(try row.decode("split_ok", as: Bool.self)) {
            broken.append(
                "total \(try amount("total")) is not its credited, refunded and offset parts: "
                    + "\(try amount("split_gap")) is in none of them")
        }
        if !(try row.decode("remaining_ok", as: Bool.self)) {
            if try row.decode("transaction_count", as: Int64.self) > 0 {
                broken.append(
                    "balance_remaining \(try amount("balance_remaining")) but minus the sum of its balance transactions"
                        + "\(applications) = \(try amount("unused", zeroIfNull: true))"
                        + (used == 0 ? "" : " - \(try amount("used"))"))
            } else if try row.decode("status", as: String?.self) == "void" {
                broken.append("balance_remaining \(try amount("balance_remaining")), but a void note has 0 remaining")
            } else {
                broken.append(
                    "balance_remaining \(try amount("balance_remaining")) but its \(credited)\(applications)"
                        + " = \(try amount("expected_unused"))")
            }
        }
        if !(try row.decode("range_ok", as: Bool.self)) {
            broken.append(
                "balance_remaining \(try amount("balance_remaining")) is not between 0 and the \(credited)")
        }
        if !(try row.decode("offset_ok", as: Bool.self)) {
            broken.append(
                "credit applications of its offset part use \(try amount("offset_used")), "
                    + "more than its offset_amount \(try amount("offset_amount"))")
        }
        if !(try row.decode("issued_ok", as: Bool.self)) {
            broken.append("\(credited) but its credit_note transactions issue \(try amount("issued"))")
        }
        if !(try row.decode("parts_ok", as: Bool.self)) {
            broken.append(
                "\(credited) but applied \(try amount("applied")) + reversed \(try amount("reversed"))"
                    + " + balance_remaining \(try amount("balance_remaining")) = \(try amount("parts"))")
        }
        return broken.joined(separator: "; ")
    }
}

// MARK: - Versions in the history tables

extension Invariant {
    /// The statement every per-version rule runs: `ctes` ends with a CTE `figures` holding one
    /// row per version (columns `key` and `valid_from`, then its figures); a version passes when
    /// every one of `conditions` holds, and a key when all its versions do.
    ///
    /// Counts are per key, like the other rules' (so the report's "and N more" under a capped
    /// list stays right); the listed rows are every failing version of the first `$1` failing
    /// keys, in key then business-time order, so ``check(_:readSchema:maxRows:)`` joins a key's
    /// versions into one detail. Flags and `listedFigures` are computed for listed rows only, as
    /// in ``oneRowPerKey(_:conditions:listedFigures:)`` and for the same reason.
    private static func oneRowPerVersion(
        _ ctes: String, conditions: [Condition], listedFigures: [String] = []
    ) -> String {
        let listedColumns = listedColumns(conditions, listedFigures)
        return """
            \(checked(ctes, conditions)),
            keys AS (
                SELECT key, bool_and(ok) AS ok FROM checked GROUP BY key
            )
            SELECT counts.checked, counts.violations, listed.*
            FROM (SELECT count(*) AS checked, count(*) FILTER (WHERE NOT ok) AS violations FROM keys) AS counts
            LEFT JOIN (
                SELECT *\(listedColumns.map { ",\n    " + $0 }.joined())
                FROM checked
                WHERE NOT ok
                  AND key IN (SELECT key FROM keys WHERE NOT ok ORDER BY key COLLATE "C" LIMIT $1)
            ) AS listed ON true
            ORDER BY listed.key COLLATE "C", listed.valid_from
            """
    }

    /// Per version of `invoices_history`, whatever legacy's caches say elsewhere:
    ///
    /// - `total` = `subtotal − discount + tax + rounding` (rule C02, as ``invoiceTotal`` checks it
    ///   on the current row; keep the two in step when an invoice gains a part);
    /// - `amount_paid` between 0 and `total` (C06: nothing paid on a draft, part of it while
    ///   open, all of it once paid; an overpayment's surplus becomes credit, it never raises
    ///   `amount_paid`; an invoice that grants credit has a negative total and nothing paid);
    /// - `amount_due` by status (C06): a draft has `amount_paid` 0 and owes `total`; an open or
    ///   uncollectible invoice owes `total − amount_paid − credit_applied`; a paid one has
    ///   `amount_paid + credit_applied` = `total` and owes 0 (bounds instead, where refunds or
    ///   chargebacks reopen invoices: see `reopens`); a void one owes 0 (its `amount_paid` is not constrained: money on a voided
    ///   invoice is refunded, not un-paid). Other statuses never get past the quarantine, and
    ///   have no rule here.
    ///
    /// Comparisons treat NULL as a value, so a version with a NULL amount breaks its rule.
    /// - Parameter reopens: refunds or chargebacks reopen a paid invoice (the mapping's
    ///   receivable rules), so an open invoice may owe more than its total less what was paid.
    private static func invoiceVersionsSQL(_ s: String, reopens: Bool) -> String {
        // Where a refund reopens the invoice, what was paid counts gross (Kill Bill's amountPaid):
        // a refund beside an adjustment leaves more paid than the adjusted total, and the
        // refunds it reopens are owed on top. The receivable invariant checks those sums.
        let owedOK =
            reopens
            ? "amount_due >= total::numeric - amount_paid - credit_applied"
            : "amount_due IS NOT DISTINCT FROM total::numeric - amount_paid - credit_applied"
        // An invoice that grants credit has a negative total, and nothing paid.
        let paidRange =
            reopens
            ? "coalesce(amount_paid >= least(0, total), false)" : "coalesce(amount_paid BETWEEN SYMMETRIC 0 AND total, false)"
        let settled =
            reopens
            ? "amount_paid::numeric + credit_applied >= total" : "amount_paid::numeric + credit_applied IS NOT DISTINCT FROM total"
        return oneRowPerVersion(
            """
            figures AS (
                SELECT invoice_id AS key, valid_from, currency::text AS currency, status,
                       total, subtotal, discount, tax, amount_paid, amount_due,
                       coalesce(rounding, 0) AS rounding, coalesce(credit_applied, 0) AS credit_applied
                FROM \(s).invoices_history
            )
            """,
            conditions: [
                ("parts_ok", "total IS NOT DISTINCT FROM subtotal::numeric - discount + tax + rounding"),
                ("paid_range_ok", paidRange),
                (
                    "status_ok",
                    """
                    CASE
                        WHEN status = 'draft'
                            THEN amount_paid IS NOT DISTINCT FROM 0 AND amount_due IS NOT DISTINCT FROM total
                        WHEN status IN ('open', 'uncollectible') THEN \(owedOK)
                        WHEN status = 'paid'
                            THEN \(settled) AND amount_due IS NOT DISTINCT FROM 0
                        WHEN status = 'void' THEN amount_due IS NOT DISTINCT FROM 0
                        ELSE true
                    END
                    """
                ),
            ],
            listedFigures: [
                "subtotal::numeric - discount + tax + rounding AS parts",
                "total::numeric - amount_paid - credit_applied AS owed",
            ])
    }

    /// Per version of `credit_notes_history`, with the version before it (by `valid_from`).
    private static func creditNoteVersionsSQL(_ s: String) -> String {
        oneRowPerVersion(
            """
            figures AS (
                SELECT credit_note_id AS key, valid_from, currency::text AS currency, status, total, balance_remaining,
                       lag(balance_remaining) OVER w AS previous_remaining, lag(valid_from) OVER w AS previous_from
                FROM \(s).credit_notes_history
                WINDOW w AS (PARTITION BY credit_note_id ORDER BY valid_from)
            )
            """,
            conditions: [
                ("range_ok", "coalesce(balance_remaining BETWEEN 0 AND total, false)"),
                // A NULL on either side is the range rule's to report.
                ("not_restored", "coalesce(balance_remaining <= previous_remaining, true)"),
                ("void_ok", "status IS DISTINCT FROM 'void' OR balance_remaining IS NOT DISTINCT FROM 0"),
            ])
    }

    private static func walletBalanceSQL(_ s: String) -> String {
        oneRowPerKey(
            """
            moves AS (
                SELECT wallet_id, min(currency)::text AS currency, count(*) AS transaction_count,
                       coalesce(sum(amount) FILTER (WHERE status = 'settled' AND direction = 'inbound'), 0) AS credited,
                       coalesce(sum(amount) FILTER (WHERE status = 'settled' AND direction = 'outbound'), 0) AS used
                FROM \(s).wallet_transactions
                WHERE wallet_id IS NOT NULL
                GROUP BY wallet_id
            ),
            figures AS (
                SELECT coalesce(w.wallet_id, m.wallet_id) AS key, w.wallet_id IS NOT NULL AS has_wallet,
                       coalesce(w.currency::text, m.currency) AS currency, w.balance,
                       coalesce(m.transaction_count, 0) AS transaction_count, coalesce(m.credited, 0) AS credited,
                       coalesce(m.used, 0) AS used, coalesce(m.credited, 0) - coalesce(m.used, 0) AS expected
                FROM \(s).wallets AS w
                FULL JOIN moves AS m ON m.wallet_id = w.wallet_id
            )
            """,
            conditions: [
                (nil, "has_wallet"),
                ("balance_ok", "transaction_count = 0 OR balance IS NOT DISTINCT FROM expected"),
            ])
    }

    private static func walletBalanceDetail(_ row: Row) throws -> String {
        let amount = try Amounts(row)
        let moves = "settled inbound \(try amount("credited")) - settled outbound \(try amount("used"))"
        guard try row.decode("has_wallet", as: Bool.self) else {
            return "no wallet row, but \(try row.decode("transaction_count", as: Int64.self)) transactions name it: \(moves)"
        }
        return "balance \(try amount("balance")) but its \(moves) = \(try amount("expected"))"
    }

    /// `version from 2025-06-16T10:14:00.000000Z (open): …`: which version, then what broke.
    private static func versionLabel(_ row: Row) throws -> String {
        let from = try row.decode("valid_from", as: PostgresTimestamp.self)
        let status = try row.decode("status", as: String?.self) ?? "NULL"
        return "version from \(from.iso8601) (\(status))"
    }

    private static func invoiceVersionsDetail(_ row: Row) throws -> String {
        let amount = try Amounts(row)
        var broken = [String]()
        let rounding =
            try row.decode("rounding", as: PostgresNumeric.self).isZero ? "" : " + rounding \(try amount("rounding"))"
        let credit =
            try row.decode("credit_applied", as: PostgresNumeric.self).isZero
            ? "" : " - credit_applied \(try amount("credit_applied"))"
        if !(try row.decode("parts_ok", as: Bool.self)) {
            broken.append(
                "total \(try amount("total")) but subtotal \(try amount("subtotal"))"
                    + " - discount \(try amount("discount")) + tax \(try amount("tax"))\(rounding) = \(try amount("parts"))")
        }
        if !(try row.decode("paid_range_ok", as: Bool.self)) {
            broken.append(
                "amount_paid \(try amount("amount_paid")) is not between 0 and the total \(try amount("total"))")
        }
        if !(try row.decode("status_ok", as: Bool.self)) {
            let paid = "amount_paid \(try amount("amount_paid"))"
            let due = "amount_due \(try amount("amount_due"))"
            switch try row.decode("status", as: String?.self) {
            case "draft":
                broken.append("\(paid) and \(due), but a draft has 0 paid and its total \(try amount("total")) due")
            case "paid":
                broken.append(
                    "\(paid)\(credit.isEmpty ? "" : " with credit_applied \(try amount("credit_applied"))") and \(due), "
                        + "but a paid invoice has its total \(try amount("total")) settled and 0 due")
            case "void":
                broken.append("\(due), but a void invoice has 0 due")
            default:
                broken.append("\(due), but total - amount_paid\(credit.isEmpty ? "" : " - credit_applied") = \(try amount("owed"))")
            }
        }
        return try versionLabel(row) + ": " + broken.joined(separator: "; ")
    }

    private static func creditNoteVersionsDetail(_ row: Row) throws -> String {
        let amount = try Amounts(row)
        var broken = [String]()
        if !(try row.decode("range_ok", as: Bool.self)) {
            broken.append(
                "balance_remaining \(try amount("balance_remaining")) is not between 0 and the total "
                    + "\(try amount("total"))")
        }
        if !(try row.decode("not_restored", as: Bool.self)) {
            let previous = try row.decode("previous_from", as: PostgresTimestamp.self)
            broken.append(
                "balance_remaining \(try amount("balance_remaining")) is more than the"
                    + " \(try amount("previous_remaining")) of the version from \(previous.iso8601):"
                    + " credit is used up or voided, never restored")
        }
        if !(try row.decode("void_ok", as: Bool.self)) {
            broken.append("balance_remaining \(try amount("balance_remaining")), but a void note has 0 remaining")
        }
        return try versionLabel(row) + ": " + broken.joined(separator: "; ")
    }
}

/// Formats a row's amount columns in the row's `currency`: `"12.30 USD"`, exact; in minor units
/// when the currency is missing or not ISO 4217 (`"1230 minor units"`); `NULL` when absent.
///
/// The columns are read as ``PostgresNumeric``, so a figure beyond `Int64` (a sum or difference
/// of near-limit amounts, computed in `numeric`) is shown exactly too: its digits, as PostgreSQL
/// prints them, with the currency's decimal point placed by moving it, never through a `Double`.
private struct Amounts {
    let row: Row
    let currency: Currency?

    init(_ row: Row) throws {
        self.row = row
        currency = try row.decode("currency", as: String?.self).flatMap { try? Currency(code: $0) }
    }

    func format(_ value: PostgresNumeric?) -> String {
        guard let value else { return "NULL" }
        // Within 64 bits (every stored amount, and nearly every sum): the Money text itself.
        if let minorUnits = try? value.scaledInteger(exponent: 0) {
            guard let currency else { return "\(minorUnits) minor units" }
            return Money(minorUnits: minorUnits, currency: currency).description
        }
        // Beyond 64 bits. Sums and differences of `bigint` are whole numbers, so this is the
        // integer digits; anything else (`NaN`, a fraction) is shown exactly as PostgreSQL
        // printed it.
        guard !value.isNaN, value.fractionDigits.allSatisfy({ $0 == "0" }), let currency else {
            return "\(value) minor units"
        }
        return Money.decimalString(
            negative: value.isNegative, digits: value.integerDigits, exponent: currency.minorUnitExponent)
            + " " + currency.code
    }

    /// The column `name`, formatted; `zeroIfNull` for the columns of a joined row that may be
    /// absent, which the rule reads as zeros.
    func callAsFunction(_ name: String, zeroIfNull: Bool = false) throws -> String {
        let value = try row.decode(name, as: PostgresNumeric?.self)
        return format(value ?? (zeroIfNull ? PostgresNumeric(units: 0, scale: 0) : nil))
    }
}

extension PostgresNumeric {
    /// `true` for zero, however many fraction digits it is written with.
    fileprivate var isZero: Bool {
        !isNaN && integerDigits.isEmpty && fractionDigits.allSatisfy { $0 == "0" }
    }
}
