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

        // psql reads a file we write once, outside the timing.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerlift-bench-copy.tsv")
        var text = ""
        text.reserveCapacity(rows * 40)
        for i in 0..<rows {
            let (id, email, amount) = row(i)
            text += "\(id)\t\(email)\t\(amount)\n"
        }
        try text.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let psql = try findExecutable("psql")

        let baseline = try await bench.median {
            try await connection.execute("TRUNCATE psql")
            try runProcess(psql, [dsn, "-v", "ON_ERROR_STOP=1", "-c", "\\copy psql FROM '\(file.path)'"])
        }
        let ours = try await bench.median {
            try await connection.execute("TRUNCATE ours")
            try await connection.withSession { session in
                try session.copyIn("COPY ours (id, email, amount) FROM STDIN") { writer in
                    for i in 0..<rows {
                        let (id, email, amount) = row(i)
                        writer.append(id)
                        writer.append(email)
                        writer.append(amount)
                        try writer.endRow()
                    }
                }
            }
        }
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
