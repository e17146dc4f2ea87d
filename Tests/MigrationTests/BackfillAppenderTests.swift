import Synchronization
import Testing

@testable import Migration

@Suite("Backfill appender: batches in the background, in order, none after a failure")
struct BackfillAppenderTests {
    struct Failed: Error {}

    @Test func batchesRunOneAtATimeInTheOrderSubmitted() throws {
        let appender = BackfillAppender()
        let log = Mutex([Int]())
        let running = Mutex(0)
        for i in 0..<50 {
            try appender.submit {
                running.withLock { $0 += 1 }
                #expect(running.withLock { $0 } == 1)
                log.withLock { $0.append(i) }
                running.withLock { $0 -= 1 }
            }
        }
        try appender.finish()
        #expect(log.withLock { $0 } == Array(0..<50))
    }

    @Test func aFailedBatchIsRethrownAndNothingAfterItRuns() throws {
        let appender = BackfillAppender()
        let ran = Mutex([Int]())
        try appender.submit { ran.withLock { $0.append(1) } }
        try appender.submit { throw Failed() }
        #expect(throws: Failed.self) { try appender.submit { ran.withLock { $0.append(3) } } }
        #expect(throws: Failed.self) { try appender.finish() }
        #expect(ran.withLock { $0 } == [1])
    }
}
