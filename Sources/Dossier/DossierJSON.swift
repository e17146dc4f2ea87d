import Billing
import Cutover
import EventStore
import Foundation
import Postgres
import Shadow
import TextFormats

extension MigrationDossier {
    /// The `json` format: the dossier's figures under stable snake_case keys in a fixed order,
    /// timestamps ISO 8601 UTC, absent values `null`.
    public var json: String { jsonValue.rendered + "\n" }

    public var jsonValue: JSONValue {
        func ts(_ t: PostgresTimestamp?) -> JSONValue { t.map { .string($0.iso8601) } ?? .null }
        func int(_ v: Int64?) -> JSONValue { v.map(JSONValue.integer) ?? .null }
        func text(_ v: String?) -> JSONValue { v.map(JSONValue.string) ?? .null }
        func strings(_ values: [String: String]?) -> JSONValue {
            guard let values else { return .null }
            return .object(values.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })
        }
        func gate(_ g: CutoverGate) -> JSONValue {
            .object([
                ("name", .string(g.name)), ("passed", .bool(g.passed)), ("evidence", strings(g.evidence)),
                ("remedy", text(g.remedy)),
            ])
        }
        func counts(_ key: String, _ values: [Count]) -> JSONValue {
            .array(values.map { .object([(key, .string($0.name)), ("events", .integer($0.events))]) })
        }
        func series(_ s: Series?, _ countKey: String, percentiles: Bool) -> [(String, JSONValue)] {
            guard let s else { return [("bucket_seconds", .null), ("buckets", .array([]))] }
            return [
                ("bucket_seconds", .integer(s.bucketSeconds)),
                (
                    "buckets",
                    .array(
                        s.buckets.map { b in
                            .object(
                                [("start", ts(b.start)), (countKey, .integer(b.count))]
                                    + (percentiles
                                        ? [("p50_ms", int(b.p50Milliseconds)), ("p99_ms", int(b.p99Milliseconds))] : [])
                            )
                        })
                ),
            ]
        }
        let freeze = writeSwitchFreeze
        let summary: JSONValue = .object([
            ("cutover_state", text(cutover?.state.rawValue)), ("events", .integer(totalEvents)),
            ("verifications", .integer(verifications.total)),
            ("clean_streak", .integer(Int64(verifications.cleanStreak.count))),
            ("last_verdict", text(lastVerification?.verdict.rawValue)),
            ("lag_p99_ms", int(lagP99Milliseconds)), ("lag_window_seconds", .integer(lag.windowSeconds)),
            ("freeze_ms", int(freeze?.milliseconds)), ("quarantined_keys", .integer(quarantinedKeys)),
        ])
        let cutoverValue: JSONValue =
            cutover.map { record in
                .object([
                    ("name", .string(record.initialized.name)), ("state", .string(record.state.rawValue)),
                    ("version", .integer(record.version)), ("legacy", .string(record.initialized.legacy)),
                    ("store", .string(record.initialized.store)),
                    ("mapping", .string(record.initialized.mappingPath)),
                    ("mapping_fingerprint", .string(record.initialized.mappingFingerprint)),
                    (
                        "pending_switch",
                        record.pendingSwitch.map {
                            .object([("from", .string($0.from.rawValue)), ("to", .string($0.to.rawValue))])
                        } ?? .null
                    ),
                    (
                        "events",
                        .array(
                            timeline.map { e in
                                .object([
                                    ("type", .string(e.type)), ("kind", .string(e.kind.rawValue)),
                                    ("from", text(e.from?.rawValue)), ("to", text(e.to?.rawValue)),
                                    ("state", .string(e.state.rawValue)), ("who", .string(e.actor.who)),
                                    ("host", .string(e.actor.host)), ("at", .string(e.actor.at)),
                                    ("recorded_at", ts(e.recordedAt)), ("reason", text(e.reason)),
                                    ("failure", text(e.failure)), ("accepted_quarantine", text(e.acceptedQuarantine)),
                                    ("max_freeze_ms", int(e.maxFreezeMilliseconds)),
                                    ("measurements", strings(e.measurements)), ("gates", .array(e.gates.map(gate))),
                                ])
                            })
                    ),
                ])
            } ?? .null
        let verificationValue: JSONValue = .object([
            ("total", .integer(verifications.total)),
            (
                "by_verdict",
                .object(
                    VerificationRecord.Verdict.allCases.map {
                        ($0.rawValue, .integer(verifications.byVerdict[$0] ?? 0))
                    })
            ),
            (
                "clean_streak",
                .object([
                    ("count", .integer(Int64(verifications.cleanStreak.count))),
                    ("since", ts(verifications.cleanStreak.since)), ("last_at", ts(verifications.cleanStreak.lastAt)),
                ])
            ),
            (
                "history",
                .array(
                    verifications.history.map { v in
                        .object([
                            ("id", .integer(v.id)), ("origin", .string(v.origin)),
                            ("verdict", .string(v.verdict.rawValue)),
                            ("started_at", ts(v.startedAt)), ("finished_at", ts(v.finishedAt)),
                            ("entities", .array(v.entities.map { .string($0.rawValue) })),
                            ("rows_compared", .integer(v.rowsCompared)), ("differences", .integer(v.differences)),
                            ("persistent_differences", .integer(v.persistentDifferences)),
                            ("broken_invariants", .integer(Int64(v.brokenInvariants))), ("error", text(v.error)),
                        ])
                    })
            ),
        ])
        let lagValue: JSONValue = .object(
            [
                ("tailer", .string(options.tailerName)), ("window_seconds", .integer(lag.windowSeconds)),
                ("window_samples", .integer(lag.windowSamples)), ("window_p50_ms", int(lag.windowP50Milliseconds)),
                ("window_p99_ms", int(lag.windowP99Milliseconds)), ("samples", .integer(lag.samples)),
                ("p50_ms", int(lag.p50Milliseconds)), ("p99_ms", int(lag.p99Milliseconds)),
            ] + series(lag.series, "samples", percentiles: true))
        let writeValue: JSONValue = .object(
            [("events", .integer(totalEvents))] + series(writes, "events", percentiles: false) + [
                (
                    "freezes",
                    .array(
                        freezes.map { f in
                            .object([
                                ("from", .string(f.from.rawValue)), ("to", .string(f.to.rawValue)),
                                ("freeze_ms", .integer(f.milliseconds)), ("started_at", ts(f.startedAt)),
                                ("ended_at", ts(f.endedAt)),
                            ])
                        })
                )
            ])
        var byEntity = [(String, Int64)]()
        for group in quarantine {
            if let index = byEntity.firstIndex(where: { $0.0 == group.entity }) {
                byEntity[index].1 += group.keys
            } else {
                byEntity.append((group.entity, group.keys))
            }
        }
        let quarantineValue: JSONValue = .object([
            ("total", .integer(quarantinedKeys)), ("released", .integer(quarantineReleased)),
            ("by_entity", .array(byEntity.map { .object([("entity", .string($0.0)), ("keys", .integer($0.1))]) })),
            (
                "by_reason",
                .array(
                    quarantine.map { g in
                        .object([
                            ("entity", .string(g.entity)), ("reason", .string(g.reason)), ("keys", .integer(g.keys)),
                            ("examples", .array(g.examples.map(JSONValue.string))),
                        ])
                    })
            ),
        ])
        let eventsValue: JSONValue = .object([
            ("total", .integer(totalEvents)), ("streams", .integer(stats?.totalStreams ?? 0)),
            ("head_position", .integer(stats?.headPosition ?? 0)),
            ("by_type", counts("type", (stats?.byType ?? []).map { Count(name: $0.name, events: $0.events) })),
            ("by_evidence", counts("evidence", eventsByEvidence)), ("by_origin", counts("origin", eventsByOrigin)),
        ])
        let shadowValue: JSONValue =
            shadow.map { s in
                .object([
                    ("healthy", .bool(s.isHealthy)), ("problems", .array(s.problems.map(JSONValue.string))),
                    ("capture_installed", .bool(s.capture != nil)),
                    ("capture_backlog_rows", int(s.capture?.backlogRows)),
                    ("tailer_running", .bool(s.tailer?.running ?? false)),
                    ("tailer_checkpoint", text(s.tailer?.checkpoint?.description)),
                    ("handover", .string(s.handover.name)),
                    ("lag_p50_ms", int(s.lag?.p50Milliseconds)), ("lag_p99_ms", int(s.lag?.p99Milliseconds)),
                    ("lag_samples", int(s.lag?.samples)),
                ])
            } ?? .null
        return .object([
            ("generated_at", ts(generatedAt)), ("store", .string(store)), ("legacy", text(legacy)),
            ("store_schema", .string(options.storeSchema)), ("store_initialized", .bool(storeInitialized)),
            ("cutover_name", .string(options.cutoverName)), ("summary", summary), ("cutover", cutoverValue),
            ("verifications", verificationValue), ("lag", lagValue), ("write_rate", writeValue),
            ("quarantine", quarantineValue), ("events", eventsValue), ("shadow_status", shadowValue),
        ])
    }
}
