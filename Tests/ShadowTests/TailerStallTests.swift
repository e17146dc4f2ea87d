import Foundation
import Postgres
import Shadow
import TestSupport
import Testing

/// A transaction running anywhere in the legacy cluster holds the xmin horizon back: the tailer
/// waits for it (reading past it could skip its rows), and says once which session it waits for.
@Suite("shadow run: waiting behind the xmin horizon")
struct TailerStallTests {
    @Test func aWaitBehindARunningTransactionNamesItsSessionOnce() async throws {
        try await ShadowScenario.withBackfilled { scenario in
            // A transaction with an xid, left open; then a change committed after it.
            let holder = try await Connection.connect(scenario.legacy)
            defer { holder.close() }
            try await holder.execute("BEGIN")
            let pid = try await holder.query("SELECT pg_backend_pid(), pg_current_xact_id()").rows[0].decode(at: 0, as: Int32.self)
            try await scenario.withLegacy { session in
                _ = try session.execute("UPDATE legacy.customers SET name = name || '!' WHERE id = (SELECT min(id) FROM legacy.customers)")
            }
            let notices = Locked<[String]>([])
            var configuration = ShadowTailer.Configuration(
                legacyDSN: scenario.legacy, storeDSN: scenario.store, mapping: try scenario.mapping,
                pollInterval: .milliseconds(20))
            configuration.stallNotice = .milliseconds(300)
            let lock = NSLock()
            configuration.onStall = { message in lock.withLock { notices.set(notices.value + [message]) } }
            let run = Task { try await ShadowTailer(configuration).run() }
            while notices.value.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
            // Still waiting a while longer: no second notice for the same stall.
            try await Task.sleep(for: .milliseconds(500))
            try await holder.execute("COMMIT")
            let summary = try await run.value
            #expect(summary.caughtUp && summary.changesRead == 1)
            let said = notices.value
            #expect(said.count == 1, "\(said)")
            let database = try await holder.query("SELECT current_database()").rows[0].decode(at: 0, as: String.self)
            let notice = try #require(said.first)
            #expect(notice.contains("waits") && notice.contains("backend_xid"), "\(notice)")
            // The oldest transaction of the cluster is named: ours, unless a test running beside
            // this one holds an older one in a database of its own.
            if notice.contains("database \(database),") {
                #expect(notice.contains("session pid \(pid) (database \(database), idle in transaction"), "\(notice)")
            } else {
                #expect(notice.contains("session pid "), "\(notice)")
            }
        }
    }
}
