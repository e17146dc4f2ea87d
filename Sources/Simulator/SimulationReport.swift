import Foundation
import TextFormats

/// What a run did: per operation kind and in total, counts, errors by SQLSTATE, retries,
/// re-routed operations, blocked time and latency percentiles; the achieved against the target
/// rate; how the run ended.
///
/// Latency is measured from the operation's scheduled start in an open-loop run (`--rate`), from
/// its actual start in a closed-loop one, to its acknowledgement (journal line on disk
/// included); only operations that completed (acknowledged or skipped) are in the percentiles.
///
/// ``json`` is the stable machine form (`--report json`); ``text`` the one for people.
public struct SimulationReport: Sendable, Hashable, Codable {
    /// Latency percentiles, in milliseconds (microsecond resolution).
    public struct Latency: Sendable, Hashable, Codable {
        public var p50: Double
        public var p95: Double
        public var p99: Double
        public var max: Double
    }

    /// The figures of one operation kind, or of all (`kind` = `total`).
    public struct Figures: Sendable, Hashable, Codable {
        public var kind: String
        /// Operations of this kind that ran (whatever their outcome).
        public var operations: Int
        /// Committed (and journaled).
        public var acknowledged: Int
        /// Found nothing to act on; wrote nothing.
        public var skipped: Int
        /// Refused by the write guard (LL001): counted here whether or not another application
        /// then performed them (its outcome is counted as any other).
        public var rerouted: Int
        /// Operations that failed for good, by SQLSTATE (after retries, for retryable ones).
        public var errors: [String: Int]
        /// Failed operations in all (the sum of `errors`).
        public var failed: Int
        /// Extra attempts after a retryable failure.
        public var retries: Int
        /// Time spent in attempts that failed with a retryable error, and pausing before the
        /// next one.
        public var blockedSeconds: Double
        /// Re-routed operations' time blocked by the move of writes: from their start until the
        /// application that took them began its last attempt (the refused attempts, the one
        /// that found the write guard included), plus that application's waits on serve's
        /// routing refusals (`writes_frozen`, `writes_on_legacy`).
        public var reroutedBlockedSeconds: Double
        /// The longest such time of one operation, in milliseconds.
        public var reroutedBlockedMaxMs: Double
        /// `nil` when no operation of this kind completed.
        public var latencyMs: Latency?

        enum CodingKeys: String, CodingKey {
            case kind, operations, acknowledged, skipped, rerouted, errors, failed, retries, blockedSeconds
            case reroutedBlockedSeconds, reroutedBlockedMaxMs, latencyMs
        }

        /// `latency_ms` is written as `null`, never left out.
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(kind, forKey: .kind)
            try c.encode(operations, forKey: .operations)
            try c.encode(acknowledged, forKey: .acknowledged)
            try c.encode(skipped, forKey: .skipped)
            try c.encode(rerouted, forKey: .rerouted)
            try c.encode(errors, forKey: .errors)
            try c.encode(failed, forKey: .failed)
            try c.encode(retries, forKey: .retries)
            try c.encode(blockedSeconds, forKey: .blockedSeconds)
            try c.encode(reroutedBlockedSeconds, forKey: .reroutedBlockedSeconds)
            try c.encode(reroutedBlockedMaxMs, forKey: .reroutedBlockedMaxMs)
            try c.encode(latencyMs, forKey: .latencyMs)
        }
    }

    /// `open` (a fixed schedule, `--rate`) or `closed` (as fast as the connections go).
    public var mode: String
    public var app: String
    public var connections: Int
    public var seed: UInt64
    /// Operations per second asked for (`nil`: closed loop).
    public var targetRate: Double?
    /// Operations that ran per second of the run.
    public var achievedRate: Double
    /// From the first scheduled start to the last operation's end.
    public var durationSeconds: Double
    /// `SIGINT` or `SIGTERM` when a signal stopped the run early (the figures cover what ran);
    /// `stop` when stopped by the program; `nil` when it ran to its end.
    public var stoppedBy: String?
    /// Why the run stopped abnormally (the journal could not be written), if it did.
    public var failure: String?
    /// The journal file, if any, and the operations acknowledged in it (each has two lines:
    /// prepared, acknowledged; docs/journal.md).
    public var journal: String?
    public var journalLines: Int
    /// Operation kinds that ran, in ``OperationKind`` order.
    public var kinds: [Figures]
    public var total: Figures
    /// One example message per error code.
    public var errorMessages: [String: String]
    /// The business time the run wrote (``BusinessClock``): the clock before the first operation
    /// and after the last. After a run on the data clock, checks.sql's date window must reach
    /// `businessTimeTo` (`ledgerlift fixture check --until`).
    public var businessTimeFrom: String
    public var businessTimeTo: String
    /// What the candidate feed did (`--candidate`), or `nil` without one. Its problems never
    /// count as the run's errors: the legacy operations committed regardless.
    public var candidate: CandidateFigures? = nil

    /// Whether some operation failed for good (exit status 1 of `ledgerlift simulate`).
    public var hasErrors: Bool { total.failed > 0 }

    enum CodingKeys: String, CodingKey {
        case mode, app, connections, seed, targetRate, achievedRate, durationSeconds, stoppedBy, failure, journal
        case journalLines, kinds, total, errorMessages, businessTimeFrom, businessTimeTo, candidate
    }

    /// Optional figures are written as JSON `null`, never left out: the shape does not depend
    /// on the run.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(mode, forKey: .mode)
        try c.encode(app, forKey: .app)
        try c.encode(connections, forKey: .connections)
        try c.encode(seed, forKey: .seed)
        try c.encode(targetRate, forKey: .targetRate)
        try c.encode(achievedRate, forKey: .achievedRate)
        try c.encode(durationSeconds, forKey: .durationSeconds)
        try c.encode(stoppedBy, forKey: .stoppedBy)
        try c.encode(failure, forKey: .failure)
        try c.encode(journal, forKey: .journal)
        try c.encode(journalLines, forKey: .journalLines)
        try c.encode(kinds, forKey: .kinds)
        try c.encode(total, forKey: .total)
        try c.encode(errorMessages, forKey: .errorMessages)
        try c.encode(businessTimeFrom, forKey: .businessTimeFrom)
        try c.encode(businessTimeTo, forKey: .businessTimeTo)
        try c.encode(candidate, forKey: .candidate)
    }

    /// The report as one JSON document: snake_case keys, sorted, pretty-printed.
    public var json: String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        // Every member is a plain value: encoding cannot fail.
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }

    /// The report for people: the run in a few lines, then a table per kind.
    public var text: String {
        var out = [String]()
        let rateLine: String
        if let targetRate {
            rateLine = "open loop: target \(Self.format(targetRate)) ops/s, achieved \(Self.format(achievedRate)) ops/s"
        } else {
            rateLine = "closed loop: \(Self.format(achievedRate)) ops/s"
        }
        out.append(
            "simulate (\(app)): \(total.operations) operations in \(Self.format(durationSeconds)) s on \(connections) connection\(connections == 1 ? "" : "s"), seed \(seed)"
        )
        out.append(rateLine)
        out.append("business time written: \(businessTimeFrom) → \(businessTimeTo)")
        if let stoppedBy { out.append("stopped early by \(stoppedBy): the figures cover the operations that ran") }
        if let failure { out.append("RUN FAILED: \(failure)") }
        out.append("")
        let rows = (kinds + [total]).map { figures -> [String] in
            let latency = figures.latencyMs
            return [
                figures.kind, "\(figures.operations)", "\(figures.acknowledged)", "\(figures.skipped)",
                "\(figures.rerouted)",
                "\(figures.failed)", "\(figures.retries)", Self.format(figures.blockedSeconds),
                latency.map { Self.format($0.p50) } ?? "-", latency.map { Self.format($0.p95) } ?? "-",
                latency.map { Self.format($0.p99) } ?? "-", latency.map { Self.format($0.max) } ?? "-",
            ]
        }
        out.append(
            TextTable(
                [
                    "kind", "ops", "ok", "skipped", "rerouted", "errors", "retries", "blocked s", "p50 ms", "p95 ms",
                    "p99 ms", "max ms",
                ],
                rows, rightAligned: Set(1...11)
            ).rendered)
        out.append("")
        out.append(
            "latency: from the \(targetRate == nil ? "actual" : "scheduled") start to the acknowledgement, of operations that completed "
                + "(ok or skipped); blocked: time in attempts that failed on a lock timeout, serialization failure or deadlock, "
                + "and in the pauses before retrying")
        if total.rerouted > 0 {
            out.append("")
            out.append(
                "rerouted: \(total.rerouted) operations went to the other application after a refusal (the legacy write "
                    + "guard, or serve's writes_on_legacy), blocked \(Self.format(total.reroutedBlockedSeconds)) s in all, "
                    + "\(Self.format(total.reroutedBlockedMaxMs)) ms at most")
        }
        if total.failed > 0 {
            out.append("")
            out.append("errors by SQLSTATE:")
            for (code, count) in total.errors.sorted(by: { $0.key < $1.key }) {
                out.append("  \(code): \(count)" + (errorMessages[code].map { " (e.g. \($0))" } ?? ""))
            }
        }
        if let journal {
            out.append("")
            out.append("journal: \(journalLines) acknowledged operations written to \(journal)")
        }
        if let candidate {
            out.append("")
            out += candidate.textLines
        }
        return out.joined(separator: "\n")
    }

    /// Three decimals at most, no trailing zeros.
    static func format(_ value: Double) -> String {
        var text = String(format: "%.3f", value)
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
        return text
    }
}
