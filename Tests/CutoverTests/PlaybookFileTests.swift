import Foundation
import Testing

@testable import Playbook

/// Reading playbook files: the shipped ones, and every mistake said with the step it is in.
@Suite("Playbooks: the file")
struct PlaybookFileTests {
    @Test func theShippedPlaybooksParseWithTheirStepsInOrder() throws {
        let root = repositoryRoot().appendingPathComponent("playbooks")
        let zero = try Playbook.load(path: root.appendingPathComponent("zero-downtime.yaml").path)
        #expect(zero.state == "store")
        #expect(zero.steps.first?.id == "mapping-check")
        #expect(zero.steps.last?.id == "dossier")
        #expect(
            zero.steps.compactMap { step -> String? in
                if case .gate = step.kind { return step.id }
                return nil
            } == ["capturing", "backfilled", "shadowing", "verified", "reads_switched", "writes_switched", "completed"])
        #expect(zero.variables.filter(\.secret).map(\.name) == ["legacy", "store"])
        #expect(!zero.repeatable)
        let rehearsal = try Playbook.load(path: root.appendingPathComponent("rehearsal.yaml").path)
        #expect(rehearsal.steps.map(\.id).suffix(4) == ["soak", "writes-back", "reads-back", "nothing-lost"])
        #expect(try Playbook.load(path: root.appendingPathComponent("rollback.yaml").path).repeatable)
        #expect(try Playbook.load(path: root.appendingPathComponent("ci-verify.yaml").path).steps.last?.id == "diff")
    }

    static let header = """
        name: p
        state: store
        variables:
          store: { env: STORE }
        steps:

        """

    func error(_ steps: String) -> String {
        do {
            _ = try Playbook.parse(Self.header + steps, file: "p.yaml")
            return "(parsed)"
        } catch {
            return "\(error)"
        }
    }

    @Test func mistakesAreNamedWithTheirStep() {
        #expect(error("  - id: a\n    run: store init --store ${stor}\n") == "p.yaml: step a: ${stor} is not a declared variable")
        #expect(error("  - id: a\n    run: x\n    pause: y\n") == "p.yaml: step a: exactly one of run, gate, start, pause, wait")
        #expect(error("  - id: a\n    run: x\n  - id: a\n    run: y\n") == "p.yaml: step 2: id \"a\" is used twice")
        #expect(
            error("  - id: a\n    gate: x\n    timeout: soon\n")
                == "p.yaml: step a: timeout \"soon\" is not a duration (90s, 10m, 1h)")
        #expect(error("  - id: a\n    runn: x\n") == "p.yaml: step a: unknown key \"runn\"")
        #expect(error("  - run: x\n") == "p.yaml: step 1: id is required")
        #expect(error("  - id: a\n    run: x 'unterminated\n").contains("an unterminated quote"))
    }

    @Test func variablesComeFromVarThenTheEnvironmentThenTheDefaultAndSecretsPrintMasked() throws {
        let playbook = try Playbook.parse(
            """
            name: p
            state: store
            variables:
              store: { env: STORE, secret: true }
              token: { env: TOKEN, secret: true }
              mapping: { default: m.yaml }
            steps:
              - id: a
                run: store init --store ${store} --mapping "${mapping} x"
            """, file: "p.yaml")
        let values = try PlaybookVariables(
            playbook, file: "p.yaml", assignments: ["mapping": "n.yaml"],
            environment: ["STORE": "postgresql://u:hunter2@db/ledger", "TOKEN": "abc123"])
        #expect(values.values["mapping"] == "n.yaml")
        guard case .run(let words) = playbook.steps[0].kind else { Issue.record("not a run step"); return }
        #expect(values.substitute(words) == ["store", "init", "--store", "postgresql://u:hunter2@db/ledger", "--mapping", "n.yaml x"])
        // The steps receive the connection string without its password, which goes to the run's
        // password file: a command line is readable by every user of the machine.
        #expect(values.arguments(words) == ["store", "init", "--store", "dbname='ledger' host='db' user='u'", "--mapping", "n.yaml x"])
        #expect(values.passwordFileLines == ["db:5432:ledger:u:hunter2"])
        #expect(values.secretEnvironment == ["STORE", "TOKEN"])
        let shown = values.display(command: words)
        #expect(shown == "ledgerlift store init --store \"dbname='ledger' host='db' user='u'\" --mapping 'n.yaml x'")
        #expect(values.display("token abc123 here") == "token ••• here")
        #expect(throws: PlaybookError.self) {
            try PlaybookVariables(playbook, file: "p.yaml", assignments: [:], environment: ["TOKEN": "x"])
        }
        do {
            _ = try PlaybookVariables(playbook, file: "p.yaml", assignments: [:], environment: ["TOKEN": "x"])
        } catch {
            #expect("\(error)" == "p.yaml: variable store has no value: set STORE in the environment, or give --var store=…")
        }
    }
}
