import Postgres

extension EventStore {
    /// The named consumer's position in the global order (``GlobalCursor/start`` for a new one).
    public func checkpoint(_ consumer: String, in session: Session) throws -> GlobalCursor {
        let row = try session.query(
            "SELECT transaction_id::text::int8, global_position FROM \(s).checkpoints WHERE consumer = $1", [consumer]
        ).first
        guard let row else { return .start }
        return GlobalCursor(transactionID: try row.decode(at: 0), position: try row.decode(at: 1))
    }

    /// Moves the consumer's checkpoint from `expected` to `new`, compare-and-set.
    ///
    /// Call it in the same transaction as the consumer's own writes: if two copies of a
    /// consumer process the same batch, the second one's update finds the checkpoint moved
    /// and throws, rolling its writes back with it.
    ///
    /// - Throws: ``EventStoreError/checkpointConflict(consumer:expected:actual:)``.
    public func advanceCheckpoint(
        _ consumer: String, from expected: GlobalCursor, to new: GlobalCursor, processed: Int = 0, in session: Session
    ) throws {
        let updated: Int
        if expected == .start {
            updated = try session.execute(
                """
                INSERT INTO \(s).checkpoints AS c (consumer, transaction_id, global_position, events_processed)
                VALUES ($1, $2::xid8, $3, $4)
                ON CONFLICT (consumer) DO UPDATE
                    SET transaction_id = EXCLUDED.transaction_id, global_position = EXCLUDED.global_position,
                        events_processed = c.events_processed + EXCLUDED.events_processed, updated_at = now()
                    WHERE c.transaction_id = '0'::xid8 AND c.global_position = 0
                """, [consumer, String(new.transactionID), new.position, Int64(processed)])
        } else {
            updated = try session.execute(
                """
                UPDATE \(s).checkpoints
                SET transaction_id = $4::xid8, global_position = $5, events_processed = events_processed + $6,
                    updated_at = now()
                WHERE consumer = $1 AND transaction_id = $2::xid8 AND global_position = $3
                """,
                [consumer, String(expected.transactionID), expected.position, String(new.transactionID), new.position,
                    Int64(processed)])
        }
        guard updated == 1 else {
            let actual = try session.query(
                "SELECT transaction_id::text::int8, global_position FROM \(s).checkpoints WHERE consumer = $1", [consumer]
            ).first.map { GlobalCursor(transactionID: try $0.decode(at: 0), position: try $0.decode(at: 1)) }
            throw EventStoreError.checkpointConflict(consumer: consumer, expected: expected, actual: actual)
        }
    }

    /// Forgets a consumer's checkpoint (a projection rebuilt from the start).
    public func resetCheckpoint(_ consumer: String, in session: Session) throws {
        try session.execute("DELETE FROM \(s).checkpoints WHERE consumer = $1", [consumer])
    }
}
