import Foundation
import Postgres

extension EventStore {
    /// Appends `events` to one stream, checking the writer's expected version under the
    /// stream's row lock.
    ///
    /// Idempotent by event id: events already stored with the same id and the same content
    /// (stream, type, schema version, business time, payload) are skipped and counted as
    /// duplicates — so a retry after a lost commit acknowledgement is a no-op, whatever the
    /// stream's version is by then. Runs in its own transaction unless `session` has one open.
    ///
    /// - Throws: ``EventStoreError/wrongExpectedVersion(stream:expected:actual:)`` when another
    ///   writer moved the stream; ``EventStoreError/idempotencyConflict(eventID:stream:reason:)``
    ///   when an id is stored with different content.
    @discardableResult
    public func append(
        _ events: [NewEvent], to streamID: String, expectedVersion: ExpectedVersion = .any, in session: Session
    ) throws -> AppendResult {
        guard Set(events.map(\.eventID)).count == events.count else {
            throw EventStoreError.invalidBatch(reason: "two events of the batch share an event id")
        }
        let (kind, version): (String, Int64) =
            switch expectedVersion {
            case .any: ("any", 0)
            case .noStream: ("no_stream", 0)
            case .streamExists: ("stream_exists", 0)
            case .exact(let v): ("exact", v)
            }
        do {
            let row = try session.query(
                "SELECT appended, duplicates, stream_version FROM \(s).append_to_stream($1, $2, $3, $4::uuid[], $5::text[], $6::int4[], $7::timestamptz[], $8::jsonb[], $9::jsonb[])",
                [
                    streamID, kind, version, PostgresArray(events.map(\.eventID)), PostgresArray(events.map(\.eventType)),
                    PostgresArray(events.map(\.schemaVersion)), PostgresArray(events.map(\.occurredAt)),
                    PostgresArray(events.map(\.payload)), PostgresArray(events.map(\.metadata)),
                ]
            ).rows[0]
            return AppendResult(
                appended: Int(try row.decode(at: 0, as: Int32.self)), duplicates: Int(try row.decode(at: 1, as: Int32.self)),
                streamVersion: try row.decode(at: 2, as: Int64.self))
        } catch let error as PostgresError where error.sqlState == "LL002" {
            throw EventStoreError.wrongExpectedVersion(
                stream: streamID, expected: expectedVersion, actual: Int64(error.detail ?? "") ?? -1)
        } catch let error as PostgresError
            where (error.isUniqueViolation && error.message.contains("events_stream_version_key"))
            || error.sqlState?.rawValue == "40P01"
        {
            // A writer that appends without the stream's row lock (reverse sync's attribute
            // refreshes, a bulk append) took this version first, or the two deadlocked on the
            // row and the version: the stream moved under this writer — the same conflict as
            // LL002, decided again by the caller. (Seen as a 500 of serve under traffic.)
            throw EventStoreError.wrongExpectedVersion(stream: streamID, expected: expectedVersion, actual: -1)
        } catch let error as PostgresError where error.sqlState == "LL003" {
            let parts = (error.detail ?? "").split(separator: " ", maxSplits: 1).map(String.init)
            throw EventStoreError.idempotencyConflict(
                eventID: parts.first.flatMap(UUID.init(uuidString:)) ?? UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)),
                stream: parts.count > 1 ? parts[1] : streamID, reason: error.hint ?? "content differs")
        }
    }
}
