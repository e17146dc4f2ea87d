import EventStore
import Postgres

// Every type of this module that holds the store's connection string prints it masked.
//
// swift-service-lifecycle logs each service as `"\(service)"` (at debug level and below), and
// `String(describing:)`, `dump()` and the debugger all fall back to reflection, which would print
// a stored `dsn` — password included — verbatim. So each holder states its description and its
// mirror itself, with ``Postgres/ConnectionString/masked(_:)`` in place of the DSN. A new
// property that holds a DSN must be masked here too (ServerTests' secret-leak tests check it).

extension ServeConfiguration: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        "ServeConfiguration(storeDSN: \(ConnectionString.masked(storeDSN)), host: \(host), port: \(port), "
            + "mode: \(mode.rawValue), store schema: \(store.schema), readSchema: \(readSchema))"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "storeDSN": ConnectionString.masked(storeDSN), "host": host, "port": port, "mode": mode,
                "storeSchema": store.schema, "readSchema": readSchema, "poolSize": poolSize,
                "maximumBodyBytes": maximumBodyBytes, "idempotencyWait": idempotencyWait,
                "idempotencyRetention": idempotencyRetention, "projects": projects, "projectionWait": projectionWait,
            ], displayStyle: .struct)
    }
}

extension ServeProjector: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        "ServeProjector(dsn: \(ConnectionString.masked(dsn)), store schema: \(store.schema), readSchema: \(readSchema))"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "dsn": ConnectionString.masked(dsn), "storeSchema": store.schema, "readSchema": readSchema,
                "retryInterval": retryInterval,
            ], displayStyle: .struct)
    }
}

extension ConnectionPool: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public nonisolated var description: String {
        "ConnectionPool(dsn: \(ConnectionString.masked(dsn)), capacity: \(capacity))"
    }
    public nonisolated var debugDescription: String { description }
    public nonisolated var customMirror: Mirror {
        Mirror(self, children: ["dsn": ConnectionString.masked(dsn), "capacity": capacity], displayStyle: .class)
    }
}

extension IdempotencyPurge: CustomStringConvertible {
    var description: String { "IdempotencyPurge(every \(interval))" }
}

extension LedgerliftServer: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { "LedgerliftServer(\(configuration))" }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(self, children: ["configuration": configuration, "pool": pool], displayStyle: .class)
    }
}
