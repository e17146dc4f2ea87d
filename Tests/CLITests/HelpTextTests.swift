import ArgumentParser
import Testing

@testable import ledgerlift

/// `--help` of every subcommand shows every option it takes, with its value's name.
@Suite("CLI: every subcommand's help lists each of its options")
struct HelpTextTests {
    static let storeOptions = ["--store <store>", "--schema <schema>"]
    static let readModelOptions = storeOptions + ["--read-schema <read-schema>", "--format <format>"]
    static let cutoverOptions = storeOptions + ["--name <name>", "--format <format>"]
    static let cutoverGateOptions = [
        "--legacy <legacy>", "--mapping <mapping>", "--tailer <tailer>", "--read-schema <read-schema>", "--max-lag <max-lag>",
        "--clean-verifications <clean-verifications>", "--clean-minutes <clean-minutes>",
        "--candidate-commands <candidate-commands>",
    ]
    static let scopeOptions = ["--time-zone <zone>", "--billing-entity <id>"]

    /// Every leaf subcommand, with the options its help must show.
    static let commands: [(path: String, type: any ParsableCommand.Type, options: [String])] = [
        ("fixture load", FixtureCommand.Load.self, ["--dsn <dsn>", "--fixtures <dir>", "--dirty"]),
        (
            "fixture generate", FixtureCommand.Generate.self,
            ["--dsn <dsn>", "--fixtures <dir>", "--customers <customers>", "--seed <seed>", "--start <start>", "--months <months>"]
        ),
        ("fixture check", FixtureCommand.Check.self, ["--dsn <dsn>", "--fixtures <dir>", "--until <timestamp>"]),
        ("store init", StoreCommand.Init.self, storeOptions),
        ("store stats", StoreCommand.Stats.self, storeOptions + ["--format <format>"]),
        ("store reset", StoreCommand.Reset.self, storeOptions + ["--read-schema <read-schema>", "--yes", "--wait"]),
        ("events", EventsCommand.self, storeOptions + ["--stream <stream>", "--as-of <as-of>", "--format <format>"]),
        ("mapping check", MappingCommand.Check.self, ["--legacy <legacy>", "--mapping <mapping>", "--strict"]),
        ("mapping currencies", MappingCommand.Currencies.self, ["--format <format>", "--view <view>"]),
        (
            "backfill", BackfillCommand.self,
            [
                "--legacy <legacy>", "--store <store>", "--mapping <mapping>", "--workers <workers>", "--schema <schema>",
                "--batch-events <batch-events>", "--dry-run", "--allow-quarantine", "--wait",
            ]
        ),
        (
            "project", ProjectCommand.self,
            storeOptions + ["--read-schema <read-schema>", "--batch-size <batch-size>", "--rebuild", "--follow"]
        ),
        (
            "query balance", QueryCommand.Balance.self,
            readModelOptions + ["--customer <customer>", "--billing-entity <id>", "--as-of <as-of>"]
        ),
        ("query invoice", QueryCommand.Invoice.self, readModelOptions + ["<invoice-id>", "--as-of <as-of>"]),
        ("report revenue", ReportCommand.Revenue.self, readModelOptions + scopeOptions + ["--from <from>", "--to <to>"]),
        (
            "report mrr", ReportCommand.MRR.self,
            readModelOptions + scopeOptions + ["--from <from>", "--to <to>", "--customer <id>"]
        ),
        ("report aging", ReportCommand.Aging.self, readModelOptions + scopeOptions + ["--as-of <as-of>"]),
        (
            "report migration", ReportCommand.Migration.self,
            storeOptions + [
                "--name <name>", "--legacy <legacy>", "--tailer <tailer>", "--read-schema <read-schema>",
                "--lag-window <lag-window>", "--format <format>", "--output <output>",
            ]
        ),
        (
            "diff", DiffCommand.self,
            [
                "--legacy <legacy>", "--store <store>", "--mapping <mapping>", "--entity <entity>", "--format <format>",
                "--output <output>", "--summary <file>", "--max-rows <max-rows>", "--schema <schema>",
                "--read-schema <read-schema>", "--catch-up-timeout <catch-up-timeout>", "--no-reverify", "--skip-invariants",
                "--tailer <name>", "--record",
            ]
        ),
        (
            "simulate run", SimulateRunCommand.self,
            [
                "--legacy <legacy>", "--rate <ops/s>", "--duration <seconds>", "--operations <count>", "--seed <seed>",
                "--connections <connections>", "--mix <file>", "--journal <file>", "--report <report>", "--clock <clock>",
                "--lock-timeout <seconds>", "--max-attempts <max-attempts>", "--candidate <url>", "--mapping <file>",
                "--capture-schema <schema>", "--reroute <url>", "--store <dsn>",
            ]
        ),
        (
            "simulate verify", SimulateVerifyCommand.self,
            [
                "--journal <file>", "--legacy <legacy>", "--store <store>", "--legacy-schema <legacy-schema>",
                "--schema <schema>", "--read-schema <read-schema>", "--catch-up-timeout <catch-up-timeout>",
                "--report <report>", "--max-rows <max-rows>",
            ]
        ),
        ("shadow install", ShadowCommand.Install.self, ["--legacy <legacy>", "--mapping <mapping>"]),
        ("shadow uninstall", ShadowCommand.Uninstall.self, ["--legacy <legacy>", "--mapping <mapping>"]),
        ("shadow run", ShadowCommand.Run.self, ["--legacy <legacy>", "--store <store>", "--mapping <mapping>", "--follow", "--verify-every <verify-every>"]),
        (
            "shadow resync", ShadowCommand.Resync.self,
            [
                "--legacy <legacy>", "--store <store>", "--mapping <mapping>", "--entity <entity>", "--format <format>",
                "--schema <schema>", "--read-schema <read-schema>", "--name <name>", "--keys-per-round <keys-per-round>",
            ]
        ),
        (
            "shadow status", ShadowCommand.Status.self,
            ["--legacy <legacy>", "--store <store>", "--schema <schema>", "--name <name>", "--lag-window <lag-window>", "--read-schema <read-schema>", "--format <format>"]
        ),
        (
            "shadow reverse-sync", ShadowCommand.ReverseSyncRun.self,
            [
                "--legacy <legacy>", "--store <store>", "--mapping <mapping>", "--follow", "--format <format>",
                "--schema <schema>", "--scope <scope>", "--batch <batch>", "--poll-interval <poll-interval>",
                "--start-at-head", "--status",
            ]
        ),
        ("serve", ServeCommand.self, storeOptions + ["--listen <host:port>", "--mode <mode>", "--read-schema <read-schema>"]),
        ("cutover init", CutoverCommand.Init.self, cutoverOptions + ["--wait", "--legacy <legacy>", "--mapping <mapping>"]),
        ("cutover status", CutoverCommand.Status.self, cutoverOptions + cutoverGateOptions),
        (
            "cutover advance", CutoverCommand.Advance.self,
            cutoverOptions + cutoverGateOptions + [
                "--wait", "--to <to>", "--dry-run", "--reason <reason>", "--accept-quarantine", "--max-freeze <max-freeze>",
            ]
        ),
        (
            "cutover rollback", CutoverCommand.Rollback.self,
            cutoverOptions + cutoverGateOptions + ["--max-freeze <max-freeze>", "--wait", "--reason <reason>"]
        ),
        ("cutover abort", CutoverCommand.Abort.self, cutoverOptions + ["--wait", "--reason <reason>"]),
        ("cutover log", CutoverCommand.Log.self, cutoverOptions + ["--expect-state <expect-state>"]),
        (
            "playbook run", PlaybookCommand.Run.self,
            ["<file>", "--var <var>", "--dry-run", "--yes", "--from <from>", "--until <until>", "--log-dir <log-dir>"]
        ),
        (
            "playbook status", PlaybookCommand.Status.self,
            ["--store <store>", "--name <name>", "--limit <limit>", "--format <format>"]
        ),
    ]

    @Test func theTableCoversEverySubcommand() {
        // A subcommand added without a row here fails this test: add its options above.
        #expect(
            leafCommands(of: Ledgerlift.self).map { $0.path.joined(separator: " ") } == Self.commands.map(\.path))
        for (leaf, row) in zip(leafCommands(of: Ledgerlift.self), Self.commands) {
            #expect(ObjectIdentifier(leaf.type) == ObjectIdentifier(row.type), "\(row.path)")
        }
    }

    @Test func eachSubcommandsHelpShowsItsUsageAbstractAndEveryOption() {
        for (path, type, options) in Self.commands {
            // Wide enough that no line wraps.
            let help = Ledgerlift.helpMessage(for: type, columns: 1_000)
            #expect(help.contains("USAGE: ledgerlift \(path) "), "\(path)")
            #expect(help.contains(type.configuration.abstract), "\(path)")
            // Each option opens a line of the options (or arguments) list.
            let entries = help.split(separator: "\n").map { $0.drop { $0 == " " } }
            for option in options {
                #expect(entries.contains { $0 == option || $0.hasPrefix(option + " ") }, "\(path): \(option)")
            }
            // Asked for with --help, the same text is what the command "fails" with, exit status 0.
            let asked = helpRequested(path.split(separator: " ").map(String.init) + ["--help"])
            #expect(asked == Refusal(message: Ledgerlift.helpMessage(for: type), exitCode: 0), "\(path)")
        }
    }

    /// Parses and runs `arguments` as `ledgerlift` does, for a request for help.
    func helpRequested(_ arguments: [String]) -> Refusal? {
        do {
            var command = try Ledgerlift.parseAsRoot(arguments)
            try command.run()
            return nil
        } catch {
            return Refusal(message: Ledgerlift.message(for: error), exitCode: Ledgerlift.exitCode(for: error).rawValue)
        }
    }

    @Test func theRootHelpListsEverySubcommand() {
        let help = Ledgerlift.helpMessage(columns: 1_000)
        for name in ["fixture", "store", "events", "mapping", "backfill", "project", "query", "report", "diff", "simulate", "shadow", "serve", "cutover"] {
            #expect(help.contains("\n  \(name) "), "\(name)")
        }
        #expect(help.contains("USAGE: ledgerlift [--log-level <level>] [--verbose] <subcommand>"))
        #expect(help.contains("\n  --log-level <level> "))
        #expect(help.contains("\n  --verbose "))
    }
}
