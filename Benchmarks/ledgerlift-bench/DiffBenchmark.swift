import Mapping
import Billing
import Diff
import Foundation
import Migration
import Postgres

/// Issue 7's benchmark: `ledgerlift diff` of a generated legacy database (100,000 customers by
/// default) against its backfilled and projected ledger, clean, against one plain scan that
/// hashes every row of both sides in the same run; then with 100 planted differences, which
/// must all be found, and nothing else.
enum DiffBenchmark {
    static let readSchema = "ledgerlift_read"

    static func run(_ bench: BenchContext) async throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("ledgerlift").path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw BenchFailure("\(binary) not found: build it with `swift build -c release --product ledgerlift`")
        }
        let mappingPath = try BackfillBenchmark.mappingPath()
        let mapping = try MappingFile.load(path: mappingPath)
        let entities = Entity.allCases.filter { mapping[entity: $0] != nil }
        let sizes =
            ProcessInfo.processInfo.environment["LEDGERLIFT_BENCH_CUSTOMERS"].map {
                $0.split(separator: ",").compactMap { Int($0) }
            } ?? [100_000]
        for customers in sizes {
            // 1. The data: a generated legacy database, backfilled and projected.
            let legacy = try await bench.scratchDatabase("ledgerlift_bench_diff_legacy")
            let store = try await bench.scratchDatabase("ledgerlift_bench_diff_store")
            let setup = try await timed {
                try runProcess(
                    binary, ["fixture", "generate", "--dsn", legacy, "--customers", "\(customers)", "--seed", "1"])
                try runProcess(binary, ["store", "init", "--store", store])
                try runProcess(
                    binary,
                    ["backfill", "--legacy", legacy, "--store", store, "--mapping", mappingPath, "--workers", "2"])
                try runProcess(binary, ["project", "--store", store])
            }
            let legacyConnection = try await Connection.connect(legacy)
            let ledgerConnection = try await Connection.connect(store)
            defer {
                legacyConnection.close()
                ledgerConnection.close()
            }
            // Untimed: settle hint bits and statistics on both sides, so no measurement pays
            // for the first read of freshly written tables.
            try await legacyConnection.execute("VACUUM ANALYZE")
            try await ledgerConnection.execute("VACUUM ANALYZE")
            var counts = [(entity: Entity, legacy: Int64, ledger: Int64)]()
            for entity in entities {
                async let l = legacyConnection.query(
                    "SELECT count(*) FROM (\n\(mapping[entity: entity]!.query)\n) AS m")
                async let r = ledgerConnection.query("SELECT count(*) FROM \(table(entity))")
                let (lr, rr) = try await (l, r)
                counts.append(
                    (entity, try lr.rows[0].decode(at: 0, as: Int64.self), try rr.rows[0].decode(at: 0, as: Int64.self))
                )
            }
            let legacyTotal = counts.reduce(0) { $0 + $1.legacy }
            let ledgerTotal = counts.reduce(0) { $0 + $1.ledger }
            say(
                "  \(customers) customers (generated, backfilled with 2 workers and projected in "
                    + "\(String(format: "%.0f", setup.seconds)) s): \(legacyTotal) legacy rows, "
                    + "\(ledgerTotal) ledger rows")
            say(
                "    " + counts.map { "\($0.entity) \($0.legacy)/\($0.ledger)" }.joined(separator: ", ")
                    + "  (mapping query / read model)")

            // 2 and 3. Baseline, the row comparison alone (what the goal measures: every entity
            // compared) and the whole command (rows and invariants), interleaved; medians.
            let options = DiffChecker.Options(legacyDSN: legacy, storeDSN: store, mapping: mapping, maxRows: 1000)
            var rowsOptions = options
            rowsOptions.checkInvariants = false
            var baselines = [(total: Duration, perEntity: [Entity: Duration])]()
            var diffs = [DiffReport]()
            var fulls = [DiffReport]()
            for repetition in 1...max(1, bench.repetitions) {
                var perEntity = [Entity: Duration]()
                let baseline = try await timed {
                    for entity in entities {
                        perEntity[entity] = try await timed {
                            try await hashScan(entity, mapping, legacyConnection, ledgerConnection)
                        }
                    }
                }
                baselines.append((baseline, perEntity))
                for (label, configuration) in [("rows", rowsOptions), ("full", options)] {
                    let report = try await DiffChecker(configuration).run()
                    guard report.isClean else {
                        throw BenchFailure("the clean diff is not clean:\n" + describe(report, limit: 10))
                    }
                    if label == "rows" { diffs.append(report) } else { fulls.append(report) }
                }
                say(
                    "    repetition \(repetition): baseline \(seconds(baseline)) s, diff of the rows "
                        + "\(seconds(diffs.last!.duration)) s, with the invariants \(seconds(fulls.last!.duration)) s")
            }
            let baseline = median(baselines.map(\.total))
            let report = diffs.sorted { $0.duration < $1.duration }[diffs.count / 2]
            let full = median(fulls.map(\.duration))
            let keys = report.entities.reduce(Int64(0)) { $0 + $1.compared }
            let legacyRows = report.entities.reduce(Int64(0)) { $0 + $1.legacyRows }
            let ledgerRows = report.entities.reduce(Int64(0)) { $0 + $1.ledgerRows }
            say("  clean, median of \(diffs.count):")
            say(
                "    baseline: one scan hashing every row, both sides concurrently, entity by entity "
                    + "(as the diff reads them)  \(seconds(baseline)) s")
            say(
                "    ledgerlift diff, every entity: \(seconds(report.duration)) s, \(keys) keys compared (\(legacyRows) "
                    + "legacy rows, \(ledgerRows) ledger rows): \(rate(Int(keys), report.duration)) keys"
                    + " → ratio \(times(report.duration, baseline)) × baseline   (goal: ≤ 2.0)")
            say(
                "    with the four invariants as well (the default command): \(seconds(full)) s"
                    + " → ratio \(times(full, baseline)) × baseline")
            say("    per entity (median baseline | diff of the median run):")
            for entity in entities {
                let entityBaseline = median(baselines.compactMap { $0.perEntity[entity] })
                guard let diff = report.entities.first(where: { $0.entity == entity }) else { continue }
                say(
                    "      \(entity.rawValue.padding(toLength: 20, withPad: " ", startingAt: 0)) "
                        + "\(String(diff.legacyRows).leftPadded(8)) rows  baseline \(seconds(entityBaseline)) s  "
                        + "diff \(seconds(diff.duration)) s  × \(times(diff.duration, entityBaseline))  "
                        + "(\(diff.bucketsCompared) buckets)")
            }

            // 4. 100 planted differences.
            let planted = try await plant(entities, legacyConnection, ledgerConnection)
            let start = ContinuousClock.now
            let found = try await DiffChecker(options).run()
            let elapsed = ContinuousClock.now - start
            try verify(found, planted: planted)
            let entityCount = Set(planted.map(\.entity)).count
            say(
                "  \(planted.count) planted differences (\(planted.filter { $0.side == .legacy }.count) legacy, "
                    + "\(planted.filter { $0.side == .ledger }.count) ledger; "
                    + "\(planted.filter { $0.kind == .mismatched }.count) mismatched, "
                    + "\(planted.filter { $0.kind == .missingInLedger }.count) missing, "
                    + "\(planted.filter { $0.kind == .extraInLedger }.count) extra) over \(entityCount) entities: "
                    + "diff \(seconds(elapsed)) s (× \(times(elapsed, baseline)) baseline), "
                    + "\(planted.count)/\(planted.count) found, 0 unexpected; invariants hold")
        }
    }

    // MARK: - Baseline

    /// The read-model table of `entity`.
    static func table(_ entity: Entity) -> String {
        quoteIdentifier(readSchema) + "." + quoteIdentifier(entity.tableName)
    }

    /// One plain scan per side that hashes every row: the mapping query's rows on the legacy
    /// side, the read model's on the ledger side, concurrently on two connections.
    static func hashScan(_ entity: Entity, _ mapping: MappingFile, _ legacy: Connection, _ ledger: Connection)
        async throws
    {
        async let l = legacy.query(
            "SELECT sum(hashtextextended(m::text, 0))::text FROM (\n\(mapping[entity: entity]!.query)\n) AS m")
        async let r = ledger.query("SELECT sum(hashtextextended(t::text, 0))::text FROM \(table(entity)) AS t")
        _ = try await (l, r)
    }

    // MARK: - Planted differences

    enum Side: Sendable { case legacy, ledger }

    /// One planted difference: what the diff must report.
    struct Planted: Sendable, Hashable {
        let entity: Entity
        let key: String
        let kind: RowDifference.Kind
        /// The differing columns; for a missing or extra row, every column.
        let columns: Set<String>
        let side: Side
        let what: String
    }

    /// A kind of plant, applied to `count` keys picked among the read model's keys.
    struct Plan {
        let entity: Entity
        let side: Side
        let count: Int
        /// Condition on the read-model row `t` a key must meet.
        let filter: String
        /// The statement; `$1` is the picked key, `$2` a new key (for inserts).
        let sql: String
        let kind: RowDifference.Kind
        /// The column changed (for mismatched).
        let column: String?
        let what: String
    }

    /// Amounts of these currencies have two decimals, so `+ 0.01` is one minor unit.
    static let twoDecimals = "t.currency IN ('USD', 'EUR', 'GBP')"

    /// 50 on each side, spread over every entity. Chosen so that no plant changes what another
    /// entity's mapping query returns (no legacy currency, customer or creation time that a
    /// child row inherits) and no ledger plant breaks an invariant (no ledger amount, status,
    /// currency or parent key; deleted and inserted ledger rows are ones no invariant counts).
    static func plans() -> [Plan] {
        func legacy(_ entity: Entity, _ count: Int, _ filter: String, _ sql: String, _ column: String, _ what: String)
            -> Plan
        {
            Plan(
                entity: entity, side: .legacy, count: count, filter: filter, sql: sql, kind: .mismatched,
                column: column, what: what)
        }
        func ledger(_ entity: Entity, _ count: Int, _ filter: String, _ set: String, _ column: String, _ what: String)
            -> Plan
        {
            let sql = "UPDATE \(table(entity)) SET \(set) WHERE \(quoteIdentifier(entity.keyColumn)) = $1"
            return Plan(
                entity: entity, side: .ledger, count: count, filter: filter, sql: sql, kind: .mismatched,
                column: column, what: what)
        }
        func microsecond(_ entity: Entity, _ count: Int, _ column: String) -> Plan {
            ledger(
                entity, count, "t.\(column) IS NOT NULL", "\(column) = \(column) + interval '1 microsecond'", column,
                "\(column) + 1 µs")
        }
        func delete(_ entity: Entity, _ count: Int, _ filter: String) -> Plan {
            Plan(
                entity: entity, side: .ledger, count: count, filter: filter,
                sql: "DELETE FROM \(table(entity)) WHERE \(quoteIdentifier(entity.keyColumn)) = $1",
                kind: .missingInLedger,
                column: nil, what: "ledger row deleted")
        }
        /// A copy of the picked row under the new key `$2`.
        func insert(_ entity: Entity, _ count: Int, _ filter: String, _ set: [String: String] = [:]) -> Plan {
            let columns = entity.columns.map(\.name) + ["attributes"]
            let values = columns.map { name in
                name == entity.keyColumn ? "$2::text" : set[name] ?? "t.\(quoteIdentifier(name))"
            }
            let sql = """
                INSERT INTO \(table(entity)) (\(columns.map(quoteIdentifier).joined(separator: ", ")))
                SELECT \(values.joined(separator: ", ")) FROM \(table(entity)) AS t
                WHERE t.\(quoteIdentifier(entity.keyColumn)) = $1
                """
            return Plan(
                entity: entity, side: .ledger, count: count, filter: filter, sql: sql, kind: .extraInLedger,
                column: nil,
                what: "extra ledger row")
        }
        return [
            // Legacy side: amounts by one minor unit, statuses, text, NULL → '', attributes,
            // a deleted row and an inserted one.
            legacy(
                .plan, 1, twoDecimals, "UPDATE legacy.plans SET price = price + 0.01 WHERE id = $1::int", "amount",
                "price + 0.01"),
            legacy(
                .plan, 1, "true", "UPDATE legacy.plans SET name = name || ' (renamed)' WHERE id = $1::int", "name",
                "renamed"),
            legacy(
                .customer, 4, "true", "UPDATE legacy.customers SET email = 'planted.' || email WHERE id = $1::bigint",
                "email",
                "email changed"),
            legacy(
                .customer, 3, "t.name IS NOT NULL",
                "UPDATE legacy.customers SET name = name || ' GmbH' WHERE id = $1::bigint",
                "name", "name changed"),
            legacy(
                .customer, 3, "true",
                "UPDATE legacy.customers SET timezone = CASE WHEN timezone = 'UTC' THEN 'Europe/Berlin' ELSE 'UTC' END "
                    + "WHERE id = $1::bigint",
                "attributes", "timezone (an attribute) changed"),
            legacy(
                .subscription, 3, "true",
                "UPDATE legacy.subscriptions SET quantity = quantity + 1 WHERE id = $1::bigint",
                "quantity", "quantity + 1"),
            legacy(
                .subscription, 2, "t.status = 'active'",
                "UPDATE legacy.subscriptions SET status = 'past_due' WHERE id = $1::bigint", "status",
                "active → past_due"),
            legacy(
                .invoice, 4, twoDecimals, "UPDATE legacy.invoices SET total = total + 0.01 WHERE id = $1::bigint",
                "total", "total + 0.01"),
            legacy(
                .invoice, 3, "t.status = 'paid'", "UPDATE legacy.invoices SET status = 1 WHERE id = $1::bigint",
                "status", "paid → open"),
            legacy(
                .invoice, 2, twoDecimals,
                "UPDATE legacy.invoices SET amount_due = amount_due + 0.01 WHERE id = $1::bigint",
                "amount_due", "amount_due + 0.01"),
            legacy(
                .invoiceLine, 4, twoDecimals,
                "UPDATE legacy.invoice_line_items SET amount = amount + 0.01 WHERE id = $1::bigint",
                "amount", "amount + 0.01"),
            legacy(
                .invoiceLine, 2, "t.description IS NOT NULL",
                "UPDATE legacy.invoice_line_items SET description = description || ' (edited)' WHERE id = $1::bigint",
                "description", "description changed"),
            legacy(
                .payment, 3, twoDecimals, "UPDATE legacy.payments SET amount = amount + 0.01 WHERE id = $1::bigint",
                "amount", "amount + 0.01"),
            legacy(
                .payment, 2, "t.status = 'succeeded'",
                "UPDATE legacy.payments SET status = 'failed' WHERE id = $1::bigint",
                "status", "succeeded → failed"),
            legacy(
                .payment, 3, "t.status = 'succeeded' AND t.failure_code IS NULL",
                "UPDATE legacy.payments SET failure_code = '' WHERE id = $1::bigint", "failure_code", "NULL → ''"),
            legacy(
                .refund, 2, twoDecimals, "UPDATE legacy.refunds SET amount = amount + 0.01 WHERE id = $1::bigint",
                "amount", "amount + 0.01"),
            legacy(
                .refund, 1, "true",
                "UPDATE legacy.refunds SET reason = coalesce(reason, '') || ' (planted)' WHERE id = $1::bigint",
                "reason", "reason changed"),
            legacy(
                .creditNote, 1, "true",
                "UPDATE legacy.credit_notes SET reason = coalesce(reason, '') || ' (planted)' WHERE id = $1::bigint",
                "reason",
                "reason changed"),
            legacy(
                .creditNote, 1, twoDecimals,
                "UPDATE legacy.credit_notes SET total = total + 0.01 WHERE id = $1::bigint", "total",
                "total + 0.01"),
            legacy(
                .balanceTransaction, 1, "true",
                "UPDATE legacy.customer_balance_transactions "
                    + "SET description = coalesce(description, '') || ' (planted)' "
                    + "WHERE id = $1::bigint",
                "description", "description changed"),
            legacy(
                .balanceTransaction, 1, twoDecimals,
                "UPDATE legacy.customer_balance_transactions SET amount = amount - 0.01 WHERE id = $1::bigint",
                "amount",
                "amount - 0.01"),
            Plan(
                entity: .invoiceLine, side: .legacy, count: 2, filter: "true",
                sql: "DELETE FROM legacy.invoice_line_items WHERE id = $1::bigint", kind: .extraInLedger, column: nil,
                what: "legacy row deleted"),
            Plan(
                entity: .refund, side: .legacy, count: 1, filter: "true",
                sql: """
                    INSERT INTO legacy.refunds (id, payment_id, amount, reason, status, created_at)
                    SELECT $2::bigint, payment_id, amount, reason, 'failed', created_at
                    FROM legacy.refunds WHERE id = $1::bigint
                    """,
                kind: .missingInLedger, column: nil, what: "legacy row inserted"),

            // Ledger side: text, timestamps by one microsecond, attributes, deleted rows and
            // extra rows.
            ledger(.customer, 3, "true", "email = email || '.planted'", "email", "email changed"),
            ledger(.customer, 2, "t.name IS NOT NULL", "name = name || ' Ltd'", "name", "name changed"),
            microsecond(.customer, 3, "updated_at"),
            delete(.customer, 2, "true"),
            insert(.customer, 1, "true"),
            ledger(.plan, 1, "true", "name = name || ' (ledger)'", "name", "name changed"),
            ledger(.subscription, 3, "true", "quantity = quantity + 1", "quantity", "quantity + 1"),
            microsecond(.subscription, 2, "current_period_end"),
            delete(.subscription, 2, "true"),
            insert(.subscription, 2, "true"),
            ledger(.invoice, 3, "t.number IS NOT NULL", "number = number || '-X'", "number", "number changed"),
            microsecond(.invoice, 3, "updated_at"),
            microsecond(.invoice, 2, "paid_at"),
            ledger(
                .invoice, 2, "true", "attributes = attributes || '{\"planted\": true}'", "attributes", "attribute added"
            ),
            ledger(
                .invoiceLine, 3, "t.description IS NOT NULL", "description = description || ' (ledger)'", "description",
                "description changed"),
            microsecond(.invoiceLine, 2, "created_at"),
            ledger(
                .payment, 2, "true", "provider_payment_id = coalesce(provider_payment_id, '') || '-planted'",
                "provider_payment_id", "provider id changed"),
            microsecond(.payment, 2, "updated_at"),
            // Failed payments without refunds: no invariant counts them.
            delete(
                .payment, 2,
                "t.status = 'failed' AND NOT EXISTS "
                    + "(SELECT 1 FROM \(table(.refund)) AS r WHERE r.payment_id = t.payment_id)"
            ),
            insert(.payment, 1, "t.status = 'failed'"),
            ledger(.refund, 1, "true", "reason = coalesce(reason, '') || ' (ledger)'", "reason", "reason changed"),
            microsecond(.refund, 1, "created_at"),
            // Fewer refunds never exceed their payment.
            delete(.refund, 1, "true"),
            ledger(.creditNote, 1, "true", "reason = coalesce(reason, '') || ' (ledger)'", "reason", "reason changed"),
            ledger(.creditNote, 1, "t.number IS NOT NULL", "number = number || '-X'", "number", "number changed"),
            ledger(
                .balanceTransaction, 1, "true", "description = coalesce(description, '') || ' (ledger)'", "description",
                "description changed"),
            microsecond(.balanceTransaction, 1, "created_at"),
        ]
    }

    /// Applies every plan to keys no other plan touches, picked deterministically and spread
    /// over the key range (every n-th key of the read model in key order).
    static func plant(_ entities: [Entity], _ legacy: Connection, _ ledger: Connection) async throws -> [Planted] {
        var used = [Entity: Set<String>]()
        var planted = [Planted]()
        var newKey: Int64 = 9_000_000_000
        for (index, plan) in plans().enumerated() where entities.contains(plan.entity) {
            let key = quoteIdentifier(plan.entity.keyColumn)
            let stride = Int64(plan.count * 4)
            let candidates = try await ledger.query(
                """
                SELECT k FROM (
                    SELECT t.\(key) AS k, row_number() OVER (ORDER BY t.\(key) COLLATE "C") - 1 AS r,
                           count(*) OVER () AS n
                    FROM \(table(plan.entity)) AS t
                    WHERE \(plan.filter)
                ) AS s
                WHERE r % greatest(n / $1, 1) = $2 % greatest(n / $1, 1)
                ORDER BY k COLLATE "C"
                """, [stride, Int64(index * 7)]
            ).rows.compactMap { $0.values[0] }
            let picked = Array(candidates.filter { !(used[plan.entity]?.contains($0) ?? false) }.prefix(plan.count))
            guard picked.count == plan.count else {
                throw BenchFailure(
                    "only \(picked.count) of \(plan.count) keys of \(plan.entity) for “\(plan.what)”")
            }
            let every = Set(plan.entity.columns.map(\.name) + ["attributes"])
            for source in picked {
                used[plan.entity, default: []].insert(source)
                let inserts = plan.sql.contains("$2")
                newKey += 1
                let target = inserts ? String(newKey) : source
                let parameters: [(any PostgresEncodable)?] = inserts ? [source, target] : [source]
                let connection = plan.side == .legacy ? legacy : ledger
                let changed = try await connection.execute(plan.sql, parameters)
                guard changed == 1 else {
                    throw BenchFailure(
                        "planting “\(plan.what)” on \(plan.entity) \(source) changed \(changed) rows")
                }
                used[plan.entity, default: []].insert(target)
                planted.append(
                    Planted(
                        entity: plan.entity, key: target, kind: plan.kind,
                        columns: plan.column.map { [$0] } ?? every, side: plan.side, what: plan.what))
            }
        }
        guard planted.count == 100 else { throw BenchFailure("planted \(planted.count) differences, not 100") }
        return planted
    }

    /// The differences found must be exactly the planted ones, and the invariants must hold.
    static func verify(_ report: DiffReport, planted: [Planted]) throws {
        struct Found: Hashable {
            let entity: Entity
            let key: String
            let kind: RowDifference.Kind
            let columns: Set<String>
        }
        var problems = [String]()
        for entity in report.entities where entity.isTruncated {
            problems.append(
                "\(entity.entity): \(entity.differenceCount) differences but only \(entity.differences.count) listed")
        }
        let found = Set(
            report.entities.flatMap { entity in
                entity.differences.map {
                    Found(entity: entity.entity, key: $0.key, kind: $0.kind, columns: Set($0.columns.map(\.column)))
                }
            })
        let expected = Set(planted.map { Found(entity: $0.entity, key: $0.key, kind: $0.kind, columns: $0.columns) })
        let describe = { (f: Found) in "\(f.entity) \(f.key) \(f.kind) [\(f.columns.sorted().joined(separator: ", "))]"
        }
        let missed = expected.subtracting(found)
        let unexpected = found.subtracting(expected)
        for f in missed.sorted(by: { describe($0) < describe($1) }) {
            let what = planted.first { $0.entity == f.entity && $0.key == f.key }?.what ?? ""
            problems.append("not found: \(describe(f)) (\(what))")
        }
        for f in unexpected.sorted(by: { describe($0) < describe($1) }) {
            problems.append("unexpected: \(describe(f))")
        }
        for invariant in report.invariants where !invariant.holds {
            problems.append(
                "invariant \(invariant.name) broken \(invariant.violations)×: "
                    + invariant.offending.prefix(5).map { "\($0.key): \($0.detail)" }.joined(separator: "; "))
        }
        guard problems.isEmpty else {
            throw BenchFailure(
                "planted \(planted.count), found \(expected.intersection(found).count), "
                    + "\(unexpected.count) unexpected:\n  "
                    + problems.joined(separator: "\n  "))
        }
    }

    // MARK: - Helpers

    static func describe(_ report: DiffReport, limit: Int) -> String {
        var lines = [String]()
        for entity in report.entities where !entity.isClean {
            lines.append(
                "  \(entity.entity): \(entity.missingInLedger) missing, \(entity.extraInLedger) extra, "
                    + "\(entity.mismatched) mismatched"
            )
            for difference in entity.differences.prefix(limit) {
                let columns = difference.columns.prefix(4).map {
                    "\($0.column): \($0.legacy ?? "NULL") ≠ \($0.ledger ?? "NULL")"
                }
                lines.append("    \(difference.key) \(difference.kind) \(columns.joined(separator: "; "))")
            }
        }
        for invariant in report.invariants where !invariant.holds {
            lines.append(
                "  invariant \(invariant.name): \(invariant.violations) violations, e.g. "
                    + invariant.offending.prefix(3).map { "\($0.key): \($0.detail)" }.joined(separator: "; "))
        }
        return lines.joined(separator: "\n")
    }

    static func timed(_ body: () async throws -> Void) async throws -> Duration {
        let start = ContinuousClock.now
        try await body()
        return ContinuousClock.now - start
    }

    static func median(_ durations: [Duration]) -> Duration {
        durations.isEmpty ? .zero : durations.sorted()[durations.count / 2]
    }

    static func seconds(_ duration: Duration) -> String { String(format: "%.2f", duration.seconds) }

    /// `ours / baseline`: how many times the baseline's time.
    static func times(_ ours: Duration, _ baseline: Duration) -> String {
        String(format: "%.2f", ours.seconds / baseline.seconds)
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
