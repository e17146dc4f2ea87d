import Billing
import Commands
import EventStore
import Foundation
import HTTPTypes
import Postgres
import TextFormats

/// `POST /commands/{name}` on the command layer: the body decoded as a ``Commands/BillingCommand``
/// (strict JSON, docs/commands.md), then — in primary mode — ``Commands/CommandExecutor/execute(_:requestID:on:)``
/// (200 with the ``Commands/CommandOutcome``), in candidate mode ``Commands/CommandExecutor/decide(_:on:)``
/// (202 with the decision, nothing appended) and the command recorded under its
/// `Idempotency-Key` in the ``CandidateCommandLog`` for the comparison with legacy.
///
/// A ``Commands/CommandRejection`` is the command's answer — a problem document with the rule's
/// code (404 `not_found`, 409 `already_exists`, 422 otherwise) — so an `Idempotency-Key`
/// replays it. What is not the command's answer is thrown and not stored: a body that does not
/// decode (400), a conflict that outlasted the executor's retries (409 `append_conflict`,
/// counted in `ledgerlift_append_conflicts_total`), read models too far behind (503).
///
/// After an append, the response waits (at most ``projectionWait``) until the read models have
/// taken the command's events in, so a read sent after the response sees the command.
public struct ExecutorCommands: CommandHandling {
    public let executor: CommandExecutor
    public let mode: ServeMode
    public let metrics: ServerMetrics
    public var projectionWait: Duration
    /// Where candidate mode records the commands it receives (in the executor's store).
    public var candidateLog: CandidateCommandLog { CandidateCommandLog(store: executor.store) }

    public init(
        executor: CommandExecutor, mode: ServeMode, metrics: ServerMetrics, projectionWait: Duration = .seconds(5)
    ) {
        self.executor = executor
        self.mode = mode
        self.metrics = metrics
        self.projectionWait = projectionWait
    }

    public func handle(
        name: String, body: String, idempotencyKey: String?, legacyXid: UInt64?, on connection: Connection
    ) async throws -> IdempotencyStore.StoredResponse {
        let command = try Self.decode(name: name, body: body)
        switch mode {
        case .primary:
            return try await answer(name) {
                let outcome = try await executor.execute(command, requestID: idempotencyKey, on: connection)
                // A request id committed earlier (its stored response lost) appended nothing
                // now: the route counts it as an idempotent replay and says so in
                // `Idempotent-Replayed`, not as a command appended a second time.
                if !outcome.replayed { metrics.command(name, outcome: "appended") }
                try await waitForProjection(of: outcome, on: connection)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                return .init(
                    status: 200, contentType: "application/json",
                    body: String(decoding: try encoder.encode(outcome), as: UTF8.self), replayed: outcome.replayed)
            }
        case .candidate:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            if let idempotencyKey, let legacyXid {
                // The legacy application's dual write: its transaction has not committed, and the
                // ledger may lag it, so a decision now would be on the wrong state. Recorded only
                // (validated above); shadow mode's tailer decides it on the state before that
                // transaction and compares (docs/serve.md, "Candidate mode").
                let inserted = try await candidateLog.record(
                    .init(
                        opID: idempotencyKey, command: name,
                        commandJSON: String(decoding: try encoder.encode(command), as: UTF8.self), legacyXid: legacyXid,
                        answerStatus: 202),
                    on: connection)
                metrics.candidateCommand(recorded: true)
                let body = JSONValue.object([
                    ("command", .string(name)), ("mode", .string("candidate")), ("op_id", .string(idempotencyKey)),
                    ("legacy_xid", .string(String(legacyXid))), ("recorded", .bool(true)),
                    ("comparison", .string(inserted ? "pending" : "recorded earlier")),
                ])
                return .init(status: 202, contentType: "application/json", body: body.rendered)
            }
            // Without a legacy transaction there is nothing to compare with: decided on the
            // ledger's state now (a dry run), recorded when keyed, never compared.
            let recorded = idempotencyKey != nil
            let response = try await answer(name) {
                let (decision, events) = try await executor.decide(command, on: connection)
                metrics.command(name, outcome: "decided")
                return .init(
                    status: 202, contentType: "application/json",
                    body: Self.candidateJSON(name, decision, events, recorded: recorded).rendered)
            }
            if let idempotencyKey {
                try await candidateLog.record(
                    .init(
                        opID: idempotencyKey, command: name,
                        commandJSON: String(decoding: try encoder.encode(command), as: UTF8.self),
                        legacyXid: legacyXid, answerStatus: response.status),
                    on: connection)
            }
            metrics.candidateCommand(recorded: recorded)
            return response
        }
    }

    /// Runs `body`, turning a rejection into its problem document (the command's answer) and
    /// a ``Commands/CommandError`` into the thrown problem (not the command's answer).
    private func answer(
        _ name: String, _ body: () async throws -> IdempotencyStore.StoredResponse
    ) async throws -> IdempotencyStore.StoredResponse {
        do {
            return try await body()
        } catch let rejection as CommandRejection {
            metrics.command(name, outcome: "rejected")
            let problem = Self.problem(rejection)
            return .init(
                status: Int(problem.status.code), contentType: Problem.contentType, body: problem.json.rendered)
        } catch let reused as CommandRequestReused {
            // The key's stored response is gone (expired, or lost in a crash after the commit),
            // but the ledger holds the events of another command under it: never replay those
            // for this body, never append this one as a second effect.
            metrics.command(name, outcome: "rejected")
            let problem = Problem(
                .unprocessableContent, code: "idempotency_key_reused", title: "Idempotency-Key reused",
                detail:
                    "the key was used with another request (\(Problem.printable(reused.requestID))); send a new key for a new request"
            )
            return .init(
                status: Int(problem.status.code), contentType: Problem.contentType, body: problem.json.rendered)
        } catch let routed as WritesRoutedElsewhere {
            metrics.command(name, outcome: "refused")
            throw Problem.writesRouted(routed)
        } catch let error as CommandError {
            metrics.command(name, outcome: "failed")
            throw Self.problem(error, metrics: metrics)
        }
    }

    /// The body as a command of `name`: its `command` field, when present, must be `name`.
    static func decode(name: String, body: String) throws(Problem) -> BillingCommand {
        guard case .object(var pairs) = (try? JSONValue.parse(body)) ?? .null else {
            throw Problem.invalidBody("the body must be a JSON object")
        }
        // A field given twice would be decided on one of its values, silently: refused.
        var seen = Set<String>()
        for (field, _) in pairs where !seen.insert(field).inserted {
            throw Problem.invalidBody("the field \(Problem.printable(field)) appears twice")
        }
        if let given = pairs.first(where: { $0.0 == "command" })?.1 {
            guard given == .string(name) else {
                throw Problem(
                    .badRequest, code: "command_mismatch", title: "Command does not match the route",
                    detail: "the body's command field must be \(name), the command of the route, or be left out")
            }
        } else {
            pairs.insert(("command", .string(name)), at: 0)
        }
        do {
            return try JSONDecoder().decode(BillingCommand.self, from: Data(JSONValue.object(pairs).rendered.utf8))
        } catch let error as DecodingError {
            throw Problem.invalidBody(Self.describe(error))
        } catch {
            throw Problem.invalidBody("the body is not a \(name) command")
        }
    }

    /// A decoding error in one sentence: the field's path and the decoder's reason (the
    /// command layer's messages name fields, never values of rows).
    ///
    /// Field names come from the client (an unknown one is both in the path and quoted in the
    /// reason): each is clipped to 200 characters wherever it appears, so a 100,000-character
    /// name does not come back as a 100 KB `detail`, while the reason's list of the command's
    /// real fields stays whole.
    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? Problem.printable($0.stringValue) }
            return keys.isEmpty ? "" : keys.joined(separator: ".") + ": "
        }
        func reason(_ context: DecodingError.Context) -> String {
            var text = context.debugDescription
            for key in context.codingPath where key.stringValue.count > 200 {
                text = text.replacing(key.stringValue, with: Problem.printable(key.stringValue))
            }
            return Problem.printable(text, limit: Problem.maximumDetailLength / 2)
        }
        switch error {
        case .keyNotFound(let key, let context):
            return path(context) + "missing field \(Problem.printable(key.stringValue))"
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return path(context) + reason(context)
        @unknown default: return "the body is not a valid command"
        }
    }

    static func problem(_ rejection: CommandRejection) -> Problem {
        let (status, title): (HTTPResponse.Status, String) =
            switch rejection.code {
            case .notFound: (.notFound, "Not found")
            case .alreadyExists: (.conflict, "Already exists")
            case .invalidState: (.unprocessableContent, "Invalid state")
            case .currencyMismatch: (.unprocessableContent, "Currencies do not match")
            case .invalidAmount: (.unprocessableContent, "Invalid amount")
            case .exceedsLimit: (.unprocessableContent, "Exceeds what is left")
            case .invalidInput: (.unprocessableContent, "Invalid input")
            }
        return Problem(status, code: rejection.code.rawValue, title: title, detail: rejection.detail)
    }

    static func problem(_ error: CommandError, metrics: ServerMetrics) -> Problem {
        switch error {
        case .conflict(let command, _, _):
            metrics.appendConflict(command)
            return Problem(
                .conflict, code: "append_conflict", title: "Concurrent writers",
                detail: "a stream the command appends to kept moving under concurrent writers; send the command again")
        case .projectionBehind:
            return Problem(
                .serviceUnavailable, code: "projection_behind", title: "Read models behind",
                detail: "the read models did not reach the event store's head in time; retry later")
        case .allocationExhausted:
            return Problem(
                .serviceUnavailable, code: "allocation_exhausted", title: "No free key",
                detail: "no free key could be allocated; retry later")
        case .requirementsUnsettled, .unreadableStream, .unknownColumn, .invalidDecision, .noIDSequence:
            return Problem.internalError
        }
    }

    /// The 202 body of candidate mode: what the command would append, nothing appended, and
    /// whether it was recorded for the comparison (only with an `Idempotency-Key`).
    static func candidateJSON(_ name: String, _ decision: Decision, _ events: [BillingEvent], recorded: Bool)
        -> JSONValue
    {
        var rows = [(String, JSONValue)]()
        for row in decision.rows {
            let columns = row.entity.columns.map { column -> (String, JSONValue) in
                let value = row[column.name]
                return (column.name, value.isNull ? .null : .string(value.description))
            }
            rows.append((row.streamID, .object(columns.sorted { $0.0 < $1.0 })))
        }
        return .object([
            ("command", .string(name)), ("mode", .string("candidate")), ("summary", .string(decision.summary)),
            (
                "events",
                .array(
                    events.map { .object([("stream_id", .string($0.streamID)), ("type", .string($0.type.rawValue))]) })
            ),
            ("rows", .object(rows.sorted { $0.0 < $1.0 })),
            ("recorded", .bool(recorded)),
        ])
    }

    /// Waits until the read models' checkpoint has passed the last of the outcome's events.
    func waitForProjection(of outcome: CommandOutcome, on connection: Connection) async throws {
        guard !outcome.events.isEmpty else { return }
        let (store, readSchema) = (executor.store, executor.readSchema)
        let ids = outcome.events.map(\.eventID).joined(separator: ",")
        let target = try await connection.withSession { session -> (cursor: GlobalCursor, consumer: String)? in
            guard let state = try Projector(store: store, readSchema: readSchema).state(in: session), state.isLive
            else { return nil }
            let row = try session.query(
                """
                SELECT e.transaction_id::text::int8, e.global_position FROM \(quoteIdentifier(store.schema)).events e
                WHERE e.event_id = ANY (string_to_array($1, ',')::uuid[]) ORDER BY e.transaction_id DESC, e.global_position DESC LIMIT 1
                """, [ids]
            ).first
            guard let row else { return nil }
            return (GlobalCursor(transactionID: try row.decode(at: 0), position: try row.decode(at: 1)), state.consumer)
        }
        guard let target else { return }
        let deadline = ContinuousClock.now + projectionWait
        while ContinuousClock.now < deadline {
            let reached = try await connection.withSession {
                try store.checkpoint(target.consumer, in: $0) >= target.cursor
            }
            if reached { return }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
