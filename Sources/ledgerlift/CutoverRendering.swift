import Cutover
import EventStore
import Postgres
import Shadow
import Foundation
import TextFormats

/// The text and JSON forms of the cutover commands' output. JSON keys are snake_case in a fixed
/// order; evidence keys sorted.
enum CutoverRendering {
    static func gateJSON(_ gate: CutoverGate) -> JSONText {
        .object([
            ("name", .string(gate.name)), ("passed", .bool(gate.passed)),
            ("evidence", .object(gate.evidence.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })),
            ("remedy", gate.remedy.map(JSONText.string) ?? .null),
        ])
    }

    static func gateLines(_ gates: [CutoverGate]) -> String {
        gates.map { gate in
            let evidence = gate.evidence.sorted { $0.key < $1.key }.filter { !$0.value.isEmpty }
                .map { "\($0.key)=\(PrintableText.escaped($0.value))" }.joined(separator: "; ")
            var line = "  [\(gate.passed ? "pass" : "FAIL")] \(gate.name): \(evidence)\n"
            if let remedy = gate.remedy { line += "         to do: \(remedy)\n" }
            return line
        }.joined()
    }

    static func headerJSON(_ record: CutoverRecord) -> [(String, JSONText)] {
        [
            ("name", .string(record.initialized.name)), ("state", .string(record.state.rawValue)),
            ("version", .int(record.version)), ("legacy", .string(record.initialized.legacy)),
            ("store", .string(record.initialized.store)), ("mapping", .string(record.initialized.mappingPath)),
            ("mapping_fingerprint", .string(record.initialized.mappingFingerprint)),
            (
                "pending_switch",
                record.pendingSwitch.map { .object([("from", .string($0.from.rawValue)), ("to", .string($0.to.rawValue))]) }
                    ?? .null
            ),
        ]
    }

    static func json(_ record: CutoverRecord) -> String { JSONText.object(headerJSON(record)).rendered + "\n" }

    static func text(_ record: CutoverRecord) -> String {
        """
        cutover "\(record.initialized.name)": \(record.state.rawValue) (stream version \(record.version))
          legacy   \(record.initialized.legacy)
          store    \(record.initialized.store)
          mapping  \(record.initialized.mappingPath) (fingerprint \(record.initialized.mappingFingerprint))

        """ + (record.pendingSwitch.map {
            "interrupted: the switch \($0.from.rawValue) → \($0.to.rawValue) was begun and not finished; the next advance or "
                + "rollback completes or undoes it from what legacy shows\n"
        } ?? "")
    }

    static func json(_ status: CutoverStatus) -> String {
        JSONText.object(
            headerJSON(status.record) + [
                ("next", status.next.map { .string($0.to.rawValue) } ?? .null),
                ("implemented", .bool(status.next == nil || status.gates != nil)),
                ("gates", status.gates.map { .array($0.map(gateJSON)) } ?? .null),
                (
                    "routing",
                    status.routing.map {
                        .object([
                            ("reads", .string($0.reads.rawValue)), ("writes", .string($0.writes.rawValue)),
                            ("version", .int($0.version)), ("changed_at", .string($0.changedAt.iso8601)),
                        ])
                    } ?? .null
                ),
                ("writes_frozen", .bool(status.routing?.writes == .frozen)),
                ("guarded_tables", .array(status.guardedTables.map(JSONText.string))),
                (
                    "reverse_sync",
                    status.reverseSync.map { r in
                        .object([
                            ("checkpoint", .string(r.checkpoint.description)), ("running", .bool(r.running)),
                            ("stopped", .bool(r.stoppedAt != nil)),
                            ("pending_events", .int(r.pendingEvents)), ("lag_ms", r.lagMilliseconds.map(JSONText.int) ?? .null),
                            ("quarantined", .int(r.quarantined)), ("failing", .bool(r.failing)),
                            ("last_error", r.lastError.map(JSONText.string) ?? .null),
                            ("last_error_at", r.lastErrorAt.map { .string($0.iso8601) } ?? .null),
                        ])
                    } ?? .null
                ),
            ]
        ).rendered + "\n"
    }

    /// Routing, the guard and reverse sync: what the application and legacy's readers meet now.
    static func liveLines(_ status: CutoverStatus) -> String {
        var out = ""
        if let routing = status.routing {
            out += "routing: reads → \(routing.reads), writes → \(routing.writes == .frozen ? "FROZEN" : routing.writes.rawValue) "
            out += "(version \(routing.version), since \(routing.changedAt.iso8601))\n"
            if routing.writes == .frozen {
                out += "  WRITES ARE FROZEN: serve refuses every write (503 writes_frozen) and legacy's guard refuses "
                out += "the application's. A rollback was interrupted: run ledgerlift cutover rollback to finish it "
                out += "(or advance to undo it).\n"
            }
        }
        if !status.guardedTables.isEmpty {
            out += "legacy write guard: on \(status.guardedTables.joined(separator: ", "))\n"
        }
        if let r = status.reverseSync {
            out += "reverse sync: checkpoint \(r.checkpoint), "
            out += r.stoppedAt != nil ? "stopped (cutover completed)" : r.running ? "running" : "NOT RUNNING"
            out += ", \(r.pendingEvents) write-path event(s) pending"
            out += r.lagMilliseconds.map { " (oldest \($0) ms)" } ?? ""
            out += "\n"
            if r.quarantined > 0 {
                out += "  QUARANTINED \(r.quarantined) row(s) legacy refused: "
                out += r.quarantineExamples.map(\.description).joined(separator: "; ") + "\n"
            }
            if let error = r.lastError, r.failing {
                out += "  FAILING since \(r.lastErrorAt?.iso8601 ?? "?"): \(error)\n"
            }
        }
        return out
    }

    static func text(_ status: CutoverStatus) -> String {
        var out = text(status.record) + liveLines(status)
        guard let next = status.next else {
            return out + "no next step: the cutover is \(status.record.state.rawValue)\n"
        }
        guard let gates = status.gates else {
            return out + "next: \(next) — not implemented in this build\n"
        }
        out += "next: \(next) — \(gates.allSatisfy(\.passed) ? "every gate passes" : "blocked")\n"
        return out + gateLines(gates)
    }

    static func json(_ outcome: CutoverAdvanceOutcome) -> String {
        JSONText.object([
            ("from", .string(outcome.step.from.rawValue)), ("to", .string(outcome.step.to.rawValue)),
            ("dry_run", .bool(outcome.dryRun)), ("passed", .bool(outcome.passed)),
            ("recorded", .bool(outcome.recorded)), ("already", .bool(outcome.already)),
            ("measurements", outcome.measurements.isEmpty ? .null : measurementsJSON(outcome.measurements)),
            ("gates", .array(outcome.gates.map(gateJSON))),
        ]).rendered + "\n"
    }

    /// An undone switch, as `advance`/`rollback --format json` print it before exiting 1.
    static func json(_ failure: CutoverSwitchFailure) -> String {
        JSONText.object([
            ("from", .string(failure.step.from.rawValue)), ("to", .string(failure.step.to.rawValue)),
            ("undone", .bool(true)), ("state", .string(failure.step.from.rawValue)),
            ("failure", .string(failure.failure)),
            ("measurements", measurementsJSON(failure.measurements)),
        ]).rendered + "\n"
    }

    static func text(_ outcome: CutoverAdvanceOutcome) -> String {
        if outcome.already {
            if let recovered = outcome.measurements["recovered"] {
                return "already \(outcome.step.to.rawValue): \(recovered); nothing more to do\n"
            }
            return "already \(outcome.step.to.rawValue): nothing to do (--to names the current state)\n"
        }
        let verdict =
            outcome.recorded
            ? "advanced" : outcome.passed ? "would advance (dry run: nothing recorded)" : "blocked (nothing recorded)"
        return "\(outcome.step): \(verdict)\n" + measurementsLine(outcome.measurements) + gateLines(outcome.gates)
    }

    static func transitionJSON(_ event: CutoverEvent) -> JSONText {
        switch event {
        case .initialized(let i):
            return .object([
                ("type", .string(event.type)), ("who", .string(i.actor.who)), ("host", .string(i.actor.host)),
                ("at", .string(i.actor.at)), ("mapping", .string(i.mappingPath)),
            ])
        case .advanced(let t), .rolledBack(let t), .aborted(let t):
            return .object([
                ("type", .string(event.type)), ("from", .string(t.from.rawValue)), ("to", .string(t.to.rawValue)),
                ("who", .string(t.actor.who)), ("host", .string(t.actor.host)), ("at", .string(t.actor.at)),
                ("reason", t.reason.map(JSONText.string) ?? .null),
                ("accepted_quarantine", t.acceptedQuarantine.map(JSONText.string) ?? .null),
                ("measurements", measurementsJSON(t.measurements)),
                ("gates", .array(t.gates.map(gateJSON))),
            ])
        case .switchIntended(let s):
            return .object([
                ("type", .string(event.type)), ("from", .string(s.from.rawValue)), ("to", .string(s.to.rawValue)),
                ("who", .string(s.actor.who)), ("host", .string(s.actor.host)), ("at", .string(s.actor.at)),
                ("reason", s.reason.map(JSONText.string) ?? .null), ("max_freeze_ms", .int(s.maxFreezeMilliseconds)),
                ("gates", .array(s.gates.map(gateJSON))),
            ])
        case .switchUndone(let u):
            return .object([
                ("type", .string(event.type)), ("from", .string(u.from.rawValue)), ("to", .string(u.to.rawValue)),
                ("who", .string(u.actor.who)), ("host", .string(u.actor.host)), ("at", .string(u.actor.at)),
                ("failure", .string(u.failure)), ("measurements", measurementsJSON(u.measurements)),
            ])
        }
    }

    static func measurementsJSON(_ values: [String: String]?) -> JSONText {
        guard let values else { return .null }
        return .object(values.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })
    }

    static func measurementsLine(_ values: [String: String]?) -> String {
        guard let values, !values.isEmpty else { return "" }
        return "  measured: " + values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")
            + "\n"
    }

    static func logJSON(_ record: CutoverRecord) -> String {
        JSONText.object(
            headerJSON(record) + [
                (
                    "events",
                    .array([transitionJSON(.initialized(record.initialized))] + record.history.map(transitionJSON))
                )
            ]
        ).rendered + "\n"
    }

    static func logText(_ record: CutoverRecord) -> String {
        let i = record.initialized
        var out = text(record) + "\(i.actor.at)  \(i.actor.who)@\(i.actor.host)  initialized (planned)\n"
        for event in record.history { out += logLine(event) }
        return out
    }

    /// One event of the audit trail as text (nothing for the initialization, shown in the header).
    static func logLine(_ event: CutoverEvent) -> String {
        var out = ""
        switch event {
            case .initialized: break
            case .advanced(let t), .rolledBack(let t), .aborted(let t):
                let verb =
                    switch event {
                    case .rolledBack: "rolled back"
                    case .aborted: "aborted"
                    default: "advanced"
                    }
                out += "\(t.actor.at)  \(t.actor.who)@\(t.actor.host)  \(verb) \(t.from.rawValue) → \(t.to.rawValue)"
                out += t.reason.map { ": \(PrintableText.escaped($0))" } ?? ""
                out += "\n"
                if let accepted = t.acceptedQuarantine {
                    out += "  quarantine accepted: \(PrintableText.escaped(accepted))\n"
                }
                out += measurementsLine(t.measurements)
                out += gateLines(t.gates)
            case .switchIntended(let s):
                out += "\(s.actor.at)  \(s.actor.who)@\(s.actor.host)  switch \(s.from.rawValue) → \(s.to.rawValue) begun "
                out += "(freeze budget \(s.maxFreezeMilliseconds) ms)\n"
            case .switchUndone(let u):
                out += "\(u.actor.at)  \(u.actor.who)@\(u.actor.host)  switch \(u.from.rawValue) → \(u.to.rawValue) undone: "
                out += "\(PrintableText.escaped(u.failure))\n" + measurementsLine(u.measurements)
        }
        return out
    }
}
