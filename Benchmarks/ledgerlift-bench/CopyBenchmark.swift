import Foundation
import Postgres

/// Our `COPY FROM STDIN` writer against `psql -c "\copy"` loading the same 1,000,000
/// three-column rows into the same table shape.
enum CopyBenchmark {
    static let rows = 1_000_000

    static func row(_ i: Int) -> (Int64, String, String) {
        (Int64(i), "customer-\(i % 9973)@example.com", "\(i % 100_000).\(i % 100 < 10 ? "0" : "")\(i % 100)")
    }

    static func run(_ bench: BenchContext) async throws {
        let dsn = try await bench.scratchDatabase("ledgerlift_bench_copy")
        let connection = try await Connection.connect(dsn)
        defer { connection.close() }
        for table in ["ours", "psql"] {
            try await connection.execute("CREATE TABLE \(table) (id bigint, email text, amount numeric(12,2))")
        }

        // Both sides start from data that already exists: psql from a file, ours from memory,
        // both made once, outside the timing, so the benchmark measures loading, not generating.
        let data = (0..<rows).map(row)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerlift-bench-copy.tsv")
        var text = ""
        text.reserveCapacity(rows * 40)
        for (id, email, amount) in data {
            text += "\(id)\t\(email)\t\(amount)\n"
        }
        try text.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let psql = try findExecutable("psql")

        // Alternate the two loads so both see the same machine; report medians.
        var psqlTimes = [Duration]()
        var ourTimes = [Duration]()
        let clock = ContinuousClock()
        for _ in 0..<bench.repetitions {
            try await connection.execute("TRUNCATE psql")
            var start = clock.now
            try runProcess(psql, [dsn, "-v", "ON_ERROR_STOP=1", "-c", "\\copy psql FROM '\(file.path)'"])
            psqlTimes.append(clock.now - start)

            try await connection.execute("TRUNCATE ours")
            start = clock.now
            try await connection.withSession { session in
                try session.copyIn("COPY ours (id, email, amount) FROM STDIN") { writer in
                    for (id, email, amount) in data {
                        writer.append(id)
                        writer.append(email)
                        writer.append(amount)
                        try writer.endRow()
                    }
                }
            }
            ourTimes.append(clock.now - start)
        }
        let baseline = psqlTimes.sorted()[psqlTimes.count / 2]
        let ours = ourTimes.sorted()[ourTimes.count / 2]
        let counts = try await connection.query("SELECT (SELECT count(*) FROM ours) AS o, (SELECT count(*) FROM psql) AS p").rows[0]
        guard try counts.decode("o", as: Int64.self) == Int64(rows), try counts.decode("p", as: Int64.self) == Int64(rows) else {
            throw BenchFailure("row counts differ after the copy benchmark")
        }
        print("  psql \\copy     \(rows) rows  \(rate(rows, baseline))  (median of \(bench.repetitions))")
        print("  CopyInWriter   \(rows) rows  \(rate(rows, ours))")
        print("  ratio ours/psql = \(ratio(ours, baseline))   (goal ≥ 0.90)")
    }
}

struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
