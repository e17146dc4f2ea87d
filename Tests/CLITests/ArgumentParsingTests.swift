import Mapping
import ArgumentParser
import Billing
import Diff
import Fixtures
import Testing

@testable import ledgerlift

/// Each subcommand's arguments, parsed in process (swift-argument-parser's own pattern): every
/// option lands in its property, defaults are what `--help` says, and values at the edge of
/// what `validate()` allows are accepted. The refusals are in `UsageErrorTests`; the end-to-end
/// runs of the binary in `EndToEndTests`.
@Suite("CLI: every subcommand's arguments parse into its properties")
struct ArgumentParsingTests {
    @Test func backfillTakesEveryOption() throws {
        let backfill = try parse(
            [
                "backfill", "--legacy", "postgresql://app@legacy/billing", "--store", "postgresql://app@store/ledger",
                "--mapping", "fixtures/reference/mapping.yaml", "--workers", "8", "--schema", "ledger_v2",
                "--batch-events", "250", "--dry-run", "--allow-quarantine",
            ], as: BackfillCommand.self)
        #expect(backfill.legacy == "postgresql://app@legacy/billing")
        #expect(backfill.store == "postgresql://app@store/ledger")
        #expect(backfill.mapping == "fixtures/reference/mapping.yaml")
        #expect(backfill.workers == 8)
        #expect(backfill.schema == "ledger_v2")
        #expect(backfill.batchEvents == 250)
        #expect(backfill.dryRun)
        #expect(backfill.allowQuarantine)
    }

    @Test func backfillDefaultsToOneWorkerBatchesOf5000AndWritingForReal() throws {
        let backfill = try parse(["backfill", "--legacy", "dbname=l", "--store", "dbname=s", "--mapping", "m"], as: BackfillCommand.self)
        #expect(backfill.workers == 1)
        #expect(backfill.schema == "ledgerlift")
        #expect(backfill.batchEvents == 5_000)
        #expect(!backfill.dryRun)
        #expect(!backfill.allowQuarantine)
    }

    @Test(arguments: [["--workers", "1"], ["--workers", "64"], ["--batch-events", "1"], ["--workers=64", "--batch-events=1"]])
    func backfillAcceptsTheEdgesOfItsRanges(_ extra: [String]) throws {
        #expect(refusal(["backfill", "--legacy", "dbname=l", "--store", "dbname=s", "--mapping", "m"] + extra) == nil)
    }

    @Test func storeInitAndStatsTakeTheStoreAndItsSchema() throws {
        let initialize = try parse(["store", "init", "--store", "postgresql://store"], as: StoreCommand.Init.self)
        #expect(initialize.options.dsn == "postgresql://store")
        #expect(initialize.options.schema == "ledgerlift")
        let other = try parse(["store", "init", "--store", "dbname=s", "--schema", "ledger_v2"], as: StoreCommand.Init.self)
        #expect(other.options.schema == "ledger_v2")

        let stats = try parse(["store", "stats", "--store", "dbname=s"], as: StoreCommand.Stats.self)
        #expect(stats.options.dsn == "dbname=s")
        #expect(stats.format == .table)
        #expect(try parse(["store", "stats", "--store", "dbname=s", "--format", "json"], as: StoreCommand.Stats.self).format == .json)
    }

    @Test func eventsTakesAStreamAnAsOfAndAFormat() throws {
        let events = try parse(
            ["events", "--store", "dbname=s", "--stream", "invoice-1042", "--as-of", "2024-03-01", "--format", "json"],
            as: EventsCommand.self)
        #expect(events.options.dsn == "dbname=s")
        #expect(events.stream == "invoice-1042")
        #expect(events.asOf == "2024-03-01")
        #expect(events.format == .json)
        let plain = try parse(["events", "--store", "dbname=s", "--stream", "customer-7"], as: EventsCommand.self)
        #expect(plain.asOf == nil)
        #expect(plain.format == .table)
        #expect(refusal(["events", "--store", "dbname=s", "--stream", "x", "--as-of", "2024-03-01T12:00:00Z"]) == nil)
    }

    @Test func mappingCheckTakesTheLegacyDatabaseAndTheMappingFile() throws {
        let check = try parse(["mapping", "check", "--legacy", "postgresql://legacy", "--mapping", "m.yaml"], as: MappingCommand.Check.self)
        #expect(check.legacy == "postgresql://legacy")
        #expect(check.mapping == "m.yaml")
    }

    @Test func fixtureLoadTakesATargetAFixturesDirectoryAndTheDirtySeed() throws {
        let load = try parse(["fixture", "load", "--dsn", "postgresql://legacy"], as: FixtureCommand.Load.self)
        #expect(load.target.dsn == "postgresql://legacy")
        #expect(load.target.fixtures == nil)
        #expect(!load.dirty)
        let dirty = try parse(["fixture", "load", "--dsn", "dbname=d", "--fixtures", "/srv/fixtures", "--dirty"], as: FixtureCommand.Load.self)
        #expect(dirty.target.fixtures == "/srv/fixtures")
        #expect(dirty.dirty)
    }

    @Test func fixtureGenerateTakesCustomersSeedStartAndMonths() throws {
        let generate = try parse(
            ["fixture", "generate", "--dsn", "dbname=d", "--customers", "3000", "--seed", "42", "--start", "2022-06-01", "--months", "12"],
            as: FixtureCommand.Generate.self)
        #expect(generate.target.dsn == "dbname=d")
        #expect(generate.customers == 3_000)
        #expect(generate.seed == 42)
        #expect(generate.start == "2022-06-01")
        #expect(generate.months == 12)
        let defaults = try parse(["fixture", "generate", "--dsn", "dbname=d", "--customers", "1", "--seed", "0"], as: FixtureCommand.Generate.self)
        #expect(defaults.start == "2023-01-01")
        #expect(defaults.months == FixtureGenerator.Configuration.defaultMonths)
    }

    @Test func projectTakesItsSchemasBatchSizeAndModes() throws {
        let project = try parse(
            ["project", "--store", "dbname=s", "--schema", "ll", "--read-schema", "rm", "--batch-size", "1", "--rebuild", "--follow"],
            as: ProjectCommand.self)
        #expect(project.store.dsn == "dbname=s")
        #expect(project.store.schema == "ll")
        #expect(project.readSchema == "rm")
        #expect(project.batchSize == 1)
        #expect(project.rebuild)
        #expect(project.follow)
        let defaults = try parse(["project", "--store", "dbname=s"], as: ProjectCommand.self)
        #expect(defaults.readSchema == "ledgerlift_read")
        #expect(defaults.batchSize == 10_000)
        #expect(!defaults.rebuild)
        #expect(!defaults.follow)
    }

    @Test func queryBalanceAndInvoiceTakeTheirKeyAndAnAsOf() throws {
        let balance = try parse(
            ["query", "balance", "--store", "dbname=s", "--customer", "7", "--as-of", "2024-03-01", "--format", "json"],
            as: QueryCommand.Balance.self)
        #expect(balance.options.store.dsn == "dbname=s")
        #expect(balance.options.readSchema == "ledgerlift_read")
        #expect(balance.options.format == .json)
        #expect(balance.customer == "7")
        #expect(balance.asOf == "2024-03-01")

        let invoice = try parse(
            ["query", "invoice", "--store", "dbname=s", "1042", "--as-of", "2024-03-01T12:00:00Z", "--read-schema", "rm"],
            as: QueryCommand.Invoice.self)
        #expect(invoice.invoiceID == "1042")
        #expect(invoice.asOf == "2024-03-01T12:00:00Z")
        #expect(invoice.options.readSchema == "rm")
        #expect(invoice.options.format == .table)
        #expect(try parse(["query", "invoice", "--store", "dbname=s", "1042"], as: QueryCommand.Invoice.self).asOf == nil)
    }

    @Test func reportsTakeTheirMonthsOrAnAsOf() throws {
        let revenue = try parse(
            ["report", "revenue", "--store", "dbname=s", "--from", "2024-01", "--to", "2024-06", "--format", "json"],
            as: ReportCommand.Revenue.self)
        #expect(revenue.from == "2024-01")
        #expect(revenue.to == "2024-06")
        #expect(revenue.options.format == .json)
        // One month is a range too.
        let mrr = try parse(["report", "mrr", "--store", "dbname=s", "--from", "2024-04", "--to", "2024-04"], as: ReportCommand.MRR.self)
        #expect(mrr.from == "2024-04" && mrr.to == "2024-04")
        #expect(mrr.customer == nil)
        let customer = try parse(
            ["report", "mrr", "--store", "dbname=s", "--from", "2024-01", "--to", "2024-03", "--customer", "22"],
            as: ReportCommand.MRR.self)
        #expect(customer.customer == "22")
        let aging = try parse(["report", "aging", "--store", "dbname=s", "--as-of", "2024-03-31"], as: ReportCommand.Aging.self)
        #expect(aging.asOf == "2024-03-31")
        #expect(try parse(["report", "aging", "--store", "dbname=s"], as: ReportCommand.Aging.self).asOf == nil)
    }

    @Test func reportsTakeATimeZoneAndABillingEntityDefaultingToUTCAndEveryEntity() throws {
        let plain = try parse(["report", "revenue", "--store", "dbname=s", "--from", "2024-01", "--to", "2024-02"], as: ReportCommand.Revenue.self)
        #expect(plain.scope.zone == .utc)
        #expect(plain.scope.billingEntity == nil)
        #expect(plain.scope.label == "")
        let paris = try parse(
            [
                "report", "revenue", "--store", "dbname=s", "--from", "2024-01", "--to", "2024-02", "--time-zone",
                "Europe/Paris", "--billing-entity", "be-eu",
            ], as: ReportCommand.Revenue.self)
        #expect(paris.scope.zone == .named("Europe/Paris"))
        #expect(paris.scope.billingEntity == "be-eu")
        #expect(paris.scope.label == " (in Europe/Paris, billing entity be-eu)")
        let mrr = try parse(
            ["report", "mrr", "--store", "dbname=s", "--from", "2024-01", "--to", "2024-02", "--time-zone", "customer"],
            as: ReportCommand.MRR.self)
        #expect(mrr.scope.zone == .customer)
        let aging = try parse(
            ["report", "aging", "--store", "dbname=s", "--time-zone", "billing-entity", "--billing-entity", "be-us"],
            as: ReportCommand.Aging.self)
        #expect(aging.scope.zone == .billingEntity)
        #expect(aging.scope.label == " (in each billing entity's time zone, billing entity be-us)")
        #expect(try parse(["report", "aging", "--store", "dbname=s", "--time-zone", "UTC"], as: ReportCommand.Aging.self).scope.zone == .utc)
        let balance = try parse(
            ["query", "balance", "--store", "dbname=s", "--customer", "7", "--billing-entity", "be-eu"], as: QueryCommand.Balance.self)
        #expect(balance.billingEntity == "be-eu")
    }

    @Test func diffTakesEveryOption() throws {
        let diff = try parse(
            [
                "diff", "--legacy", "dbname=l", "--store", "dbname=s", "--mapping", "m", "--entity", "invoice", "--entity", "payment, refund",
                "--format", "junit", "--output", "report.xml", "--summary", "summary.md", "--max-rows", "0", "--schema", "ll",
                "--read-schema", "rm", "--catch-up-timeout", "0", "--no-reverify", "--skip-invariants",
            ], as: DiffCommand.self)
        #expect(diff.legacy == "dbname=l")
        #expect(diff.store == "dbname=s")
        #expect(diff.mapping == "m")
        #expect(diff.entityNames == ["invoice", "payment, refund"])
        #expect(try diff.entities() == [.invoice, .payment, .refund])
        #expect(diff.format == .junit)
        #expect(diff.output == "report.xml")
        #expect(diff.summary == "summary.md")
        #expect(diff.maxRows == 0)
        #expect(diff.schema == "ll")
        #expect(diff.readSchema == "rm")
        #expect(diff.catchUpTimeout == 0)
        #expect(diff.noReverify)
        #expect(diff.skipInvariants)
    }

    @Test func diffDefaultsToEveryEntityAsTextWithReverificationAndInvariants() throws {
        let diff = try parse(["diff", "--legacy", "dbname=l", "--store", "dbname=s", "--mapping", "m"], as: DiffCommand.self)
        #expect(try diff.entities() == nil)
        #expect(diff.format == .text)
        #expect(diff.output == nil && diff.summary == nil)
        #expect(diff.maxRows == 100)
        #expect(diff.schema == "ledgerlift")
        #expect(diff.readSchema == "ledgerlift_read")
        #expect(diff.catchUpTimeout == 30)
        #expect(!diff.noReverify)
        #expect(!diff.skipInvariants)
    }

    @Test func versionPrintsTheVersion() {
        #expect(refusal(["--version"]) == Refusal(message: LedgerliftVersion.current, exitCode: 0))
    }
}
