/// Requests that carry one `Idempotency-Key` (with the same body) while the key's first request
/// still runs in this process wait for that run's response and answer it as a replay — holding
/// no store connection and no lock while they wait.
///
/// Without it, a burst of duplicates (a client's retry storm after a timeout) holds every pooled
/// connection waiting on the key's advisory lock: other requests starve, and the waiters time
/// out into 409s on a loaded machine, where the same request sent 100 times at once must get
/// 100 identical answers. Duplicates in other processes still meet at the key's lock
/// (``IdempotencyStore``); a duplicate with another body takes that path too (422 or 409).
actor InFlightRequests {
    private struct Running {
        let body: String
        let task: Task<IdempotencyStore.Outcome, any Error>
    }

    private var running: [String: Running] = [:]

    /// The outcome of `operation` for `key`, or of the same request already running here.
    ///
    /// The first request's run is an unstructured task: it finishes (and stores its response
    /// under the key) even when the client that started it goes away, so the waiters still get it.
    func run(
        key: String, body: String, _ operation: @escaping @Sendable () async throws -> IdempotencyStore.Outcome
    ) async throws -> IdempotencyStore.Outcome {
        if let current = running[key], current.body == body {
            var outcome = try await current.task.value
            outcome.replayed = true
            return outcome
        }
        let task = Task { try await operation() }
        let registered = running[key] == nil
        if registered { running[key] = Running(body: body, task: task) }
        let result = await task.result
        if registered { running[key] = nil }
        return try result.get()
    }
}
