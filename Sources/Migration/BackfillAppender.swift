import Dispatch
import Synchronization

/// Writes a range's batches to the store on a thread of its own, one at a time and in order,
/// so that reading and converting the next batch from legacy overlaps with appending this one.
///
/// Without it a worker's legacy connection sat idle while its store connection appended (about
/// a third of a worker's time), and the other way round. At most one batch is in flight: ``submit(_:)``
/// first waits for the one before, so memory stays at two batches, the batches commit in the
/// order they were made, and a failed append is rethrown by the next ``submit(_:)`` or by
/// ``finish()`` — before anything later is written.
final class BackfillAppender: Sendable {
    private let queue = DispatchQueue(label: "ledgerlift.backfill.append")
    /// Signalled when no batch is in flight.
    private let idle = DispatchSemaphore(value: 1)
    private let failure = Mutex<(any Error)?>(nil)

    /// Waits for the batch in flight, rethrows its error, then starts `append` in the background.
    func submit(_ append: @escaping @Sendable () throws -> Void) throws {
        idle.wait()
        if let error = failure.withLock({ $0 }) {
            idle.signal()
            throw error
        }
        queue.async { [self] in
            do { try append() } catch { failure.withLock { $0 = error } }
            idle.signal()
        }
    }

    /// Waits for the batch in flight and rethrows its error.
    func finish() throws {
        idle.wait()
        defer { idle.signal() }
        if let error = failure.withLock({ $0 }) { throw error }
    }
}
