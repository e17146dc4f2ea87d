import Billing
import Diff
import EventStore
import Foundation
import Mapping
import Migration
import Postgres
import Shadow
import TestSupport

/// The reference fixture as legacy, and a fresh store (event store schema created) beside it.
func withLegacyAndStore(
    _ label: String = #function,
    _ body: (_ legacy: Connection, _ legacyDSN: String, _ store: Connection, _ storeDSN: String) async throws -> Void
) async throws {
    try await withReferenceLegacy(label) { legacy, legacyDSN in
        try await TestDatabase.withConnection(label + "_store") { store, storeDSN in
            try await store.withSession { try EventStore().migrate($0) }
            try await body(legacy, legacyDSN, store, storeDSN)
        }
    }
}

/// Backfills the reference mapping into the store and projects the read models.
func backfillAndProject(_ legacyDSN: String, _ storeDSN: String, _ store: Connection) async throws {
    _ = try await Backfill(
        .init(legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: try referenceMapping(), workers: 2, batchEvents: 97)
    ).run()
    _ = try await Projector().catchUp(on: store)
}

/// The writing transaction's xid8 of `sql`, run in a transaction of its own.
func xidOf(_ sql: String, on connection: Connection) async throws -> String {
    try await connection.transaction { tx in
        try tx.execute(sql)
        return try tx.query("SELECT pg_current_xact_id()::text").rows[0].decode(at: 0, as: String.self)
    }
}

/// A sync for a resync that must find nothing to sync.
let noSyncExpected: Resync.Sync = { keys in
    throw ResyncTestError.unexpectedSync(keys.mapValues(\.count))
}

enum ResyncTestError: Error {
    case unexpectedSync([Entity: Int])
}

func resyncOptions(_ legacyDSN: String, _ storeDSN: String, entities: [Entity]? = nil) throws -> Resync.Options {
    Resync.Options(
        legacyDSN: legacyDSN, storeDSN: storeDSN, mapping: try referenceMapping(), entities: entities,
        catchUpTimeout: .seconds(5))
}

/// A stand-in tailer on a thread of its own: after `delay` seconds it writes the read-model
/// change `applying` and moves tailer `name`'s checkpoint to `position`, in one transaction, as
/// the real tailer commits its checkpoint with what it applied. Returned unstarted.
func simulatedTailer(
    storeDSN: String, name: String = "t1", after delay: TimeInterval = 3, applying statement: String,
    position: CapturePosition
) -> Thread {
    Thread {
        Thread.sleep(forTimeInterval: delay)
        let connection = try! Connection.connectBlocking(storeDSN)
        defer { connection.close() }
        try! connection.withSessionBlocking { session in
            try session.transaction { tx in
                try tx.execute(statement)
                try tx.execute(
                    "UPDATE ledgerlift.shadow_tailers SET checkpoint_xid = $1::xid8, checkpoint_id = $2 WHERE name = $3",
                    [position.xid, position.id, name])
            }
        }
    }
}
