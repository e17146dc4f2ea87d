import EventStore
import Foundation

/// Why a projection or a read-model query could not run.
public enum ProjectionError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stored event of a billing type whose payload does not decode. The batch is rolled back
    /// and the projection stops there: skipping it would leave the read models wrong.
    case undecodableEvent(eventID: UUID, streamID: String, globalPosition: Int64, reason: String)
    /// A read-model column holds text that is not a value of the column's canonical type.
    case undecodableColumn(table: String, column: String, value: String)
    /// Another process is projecting with the same consumer right now.
    case consumerBusy(consumer: String)
    /// No read model has been built in the schema yet (`ledgerlift project`).
    case notBuilt(schema: String)
    /// A schema the projector would create, replace or drop exists and is not a Ledgerlift read
    /// model; it is left alone.
    case foreignSchema(schema: String)
    /// The read model was built by a binary with another model version: rebuild it.
    case modelVersionMismatch(schema: String, found: Int32, expected: Int32)
    /// Events kept arriving faster than a blue/green build could finish its final catch-up.
    case couldNotCatchUp(schema: String, attempts: Int)

    public var description: String {
        switch self {
        case .undecodableEvent(let id, let stream, let position, let reason):
            "event \(id.uuidString.lowercased()) (stream \(stream), global position \(position)) does not decode: \(reason)"
        case .undecodableColumn(let table, let column, let value):
            "read model \(table).\(column) holds \(value.prefix(60)), which is not a value of its canonical type"
        case .consumerBusy(let consumer):
            "another `ledgerlift project` is running for consumer \(consumer); wait for it or stop it first"
        case .notBuilt(let schema):
            "no read model in schema \(schema) yet: run `ledgerlift project --store DSN` first"
        case .foreignSchema(let schema):
            "schema \(schema) exists and is not a Ledgerlift read model; refusing to replace or drop it "
                + "(choose another --read-schema, or drop it yourself)"
        case .modelVersionMismatch(let schema, let found, let expected):
            "the read model in \(schema) has model version \(found), this ledgerlift builds \(expected): "
                + "run `ledgerlift project --rebuild`"
        case .couldNotCatchUp(let schema, let attempts):
            "the blue/green build of \(schema) did not catch up with the store after \(attempts) attempts; "
                + "run it again when writes slow down"
        }
    }
}
