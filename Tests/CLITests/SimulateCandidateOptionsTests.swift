import ArgumentParser
import Testing

@testable import ledgerlift

/// `simulate run --candidate URL`: the URL is checked before anything runs, and the candidate's
/// companion options are refused without it (they would silently do nothing).
@Suite("CLI: simulate run's candidate options")
struct SimulateCandidateOptionsTests {
    static let base = ["simulate", "run", "--legacy", "postgresql://app@127.0.0.1/legacy", "--operations", "5"]

    @Test func candidateWithMappingParses() throws {
        let command = try parse(
            Self.base + ["--candidate", "http://127.0.0.1:8080", "--mapping", "m.yaml", "--capture-schema", "cap"],
            as: SimulateRunCommand.self)
        #expect(command.candidate == "http://127.0.0.1:8080")
        #expect(command.mapping == "m.yaml")
        #expect(command.captureSchema == "cap")
        let plain = try parse(Self.base, as: SimulateRunCommand.self)
        #expect(plain.candidate == nil)
    }

    @Test func refusals() {
        let cases: [([String], String)] = [
            (
                ["--candidate", "http://127.0.0.1:8080"],
                "--candidate needs --mapping FILE: the mapping shadow capture was installed with (the reference fixture's is fixtures/reference/mapping.yaml)"
            ),
            (
                ["--candidate", "https://candidate", "--mapping", "m.yaml"],
                "--candidate: the candidate URL must start with http:// (TLS is not supported): https://candidate"
            ),
            (
                ["--candidate", "http://user:pw@candidate", "--mapping", "m.yaml"],
                "--candidate: the candidate URL cannot carry user information (credentials would be printed)"
            ),
            (["--mapping", "m.yaml"], "--mapping is used only with --candidate or --reroute"),
            (["--capture-schema", "cap"], "--capture-schema is used only with --candidate"),
            (
                ["--candidate", "http://127.0.0.1:8080", "--mapping", "m.yaml", "--capture-schema", ""],
                "--capture-schema cannot be empty"
            ),
        ]
        for (extra, message) in cases {
            #expect(refusal(Self.base + extra) == .usage(message), "\(extra)")
        }
    }
}

/// `simulate run --reroute URL --store DSN`: the cutover's second application and the store's
/// routing; each needs the other and the mapping, and candidate mode does not combine with it.
@Suite("CLI: simulate run's reroute options")
struct SimulateRerouteOptionsTests {
    static let base = SimulateCandidateOptionsTests.base

    @Test func rerouteWithStoreAndMappingParses() throws {
        let command = try parse(
            Self.base + [
                "--reroute", "http://127.0.0.1:8080", "--store", "postgresql://app@127.0.0.1/store", "--mapping",
                "m.yaml",
            ],
            as: SimulateRunCommand.self)
        #expect(command.reroute == "http://127.0.0.1:8080")
        #expect(command.store == "postgresql://app@127.0.0.1/store")
        #expect(command.mapping == "m.yaml")
    }

    @Test func refusals() {
        let store = ["--store", "postgresql://app@127.0.0.1/store"]
        let cases: [([String], String)] = [
            (
                ["--reroute", "http://127.0.0.1:8080", "--mapping", "m.yaml"],
                "--reroute needs --store DSN: the event store whose routing says where writes go"
            ),
            (
                ["--reroute", "http://127.0.0.1:8080"] + store,
                "--reroute needs --mapping FILE: the mapping the ledger was backfilled with (the reference fixture's is fixtures/reference/mapping.yaml)"
            ),
            (store, "--store is used only with --reroute"),
            (
                ["--reroute", "http://127.0.0.1:8080", "--candidate", "http://127.0.0.1:8081", "--mapping", "m.yaml"]
                    + store,
                "--candidate and --reroute cannot be combined: candidate mode runs before the cutover's write switch, --reroute during it"
            ),
            (
                ["--reroute", "https://ledger", "--mapping", "m.yaml"] + store,
                "--reroute: the candidate URL must start with http:// (TLS is not supported): https://ledger"
            ),
        ]
        for (extra, message) in cases {
            #expect(refusal(Self.base + extra) == .usage(message), "\(extra)")
        }
    }
}
