import Postgres
import TestSupport
import Testing

@Suite("COPY and streaming reads")
struct CopyAndStreamingTests {
    struct Halfway: Error {}

    @Test func copyFromStreamsAMillionRowsWithBoundedMemory() async throws {
        try await TestDatabase.withConnection { connection, _ in
            try await connection.execute("CREATE TABLE big (id int8, label text, note text)")
            let before = ProcessMemory.residentBytes()
            // ~120 bytes a row: buffering every row would hold over 120 MB.
            let padding = String(repeating: "x", count: 100)
            let (loaded, peak) = try await connection.withSession { session in
                var peak = 0
                let loaded = try session.copyIn("COPY big (id, label, note) FROM STDIN") { writer in
                    for i in 0..<1_000_000 {
                        writer.append(Int64(i))
                        writer.append("row \(i)")
                        writer.append(padding)
                        try writer.endRow()
                    }
                    peak = writer.peakBufferedBytes
                }
                return (loaded, peak)
            }
            let growth = ProcessMemory.residentBytes() - before
            #expect(loaded == 1_000_000)
            #expect(peak <= CopyInWriter.flushThreshold + 1024)
            #expect(growth < 64 * 1024 * 1024, "resident memory grew by \(growth) bytes")
            let row = try await connection.query("SELECT count(*) AS n, sum(id) AS s FROM big").rows[0]
            #expect(try row.decode("n", as: Int64.self) == 1_000_000)
            #expect(try row.decode("s", as: PostgresNumeric.self).description == "499999500000")
        }
    }

    @Test func aWriterThatThrowsHalfwayCommitsNothing() async throws {
        try await TestDatabase.withConnection { connection, _ in
            try await connection.execute("CREATE TABLE t (id int8, v text)")
            await #expect(throws: Halfway.self) {
                try await connection.withSession { session in
                    try session.copyIn("COPY t FROM STDIN") { writer in
                        for i in 0..<100_000 {
                            if i == 50_000 { throw Halfway() }
                            try writer.writeRow([Int64(i), "v"])
                        }
                    }
                }
            }
            #expect(try await connection.query("SELECT count(*) AS n FROM t").rows[0].decode("n", as: Int64.self) == 0)
            // And the connection is ready for the next statement.
            try await connection.withSession { session in
                try session.copyIn("COPY t FROM STDIN") { try $0.writeRow(["1", "ok"]) }
            }
            #expect(try await connection.query("SELECT count(*) AS n FROM t").rows[0].decode("n", as: Int64.self) == 1)
        }
    }

    @Test func copyEscapesSpecialCharactersAndNulls() async throws {
        try await TestDatabase.withConnection { connection, _ in
            try await connection.execute("CREATE TABLE t (id int, v text)")
            let values: [String?] = ["tab\there", "new\nline", "cr\rx", "back\\slash", "\\N", "é東🧾", "", nil]
            try await connection.withSession { session in
                try session.copyIn("COPY t FROM STDIN") { writer in
                    for (i, v) in values.enumerated() { try writer.writeRow([String(i), v]) }
                }
            }
            let rows = try await connection.query("SELECT v FROM t ORDER BY id").rows
            #expect(try rows.map { try $0.decode("v", as: String?.self) } == values)
            // And COPY TO STDOUT decodes them back the same.
            let copied = try await connection.withSession { session in
                var out = [[String?]]()
                try session.copyOut("COPY (SELECT id, v FROM t ORDER BY id) TO STDOUT") { out.append($0) }
                return out
            }
            #expect(copied.map { $0[1] } == values)
        }
    }

    @Test func aBadRowFailsTheCopyWithTheServersError() async throws {
        try await TestDatabase.withConnection { connection, _ in
            try await connection.execute("CREATE TABLE t (id int)")
            let error = try await #require(throws: PostgresError.self) {
                try await connection.withSession { session in
                    try session.copyIn("COPY t FROM STDIN") { try $0.writeRow(["not a number"]) }
                }
            }
            #expect(error.sqlState == "22P02")
            #expect(try await connection.query("SELECT count(*) AS n FROM t").rows[0].decode("n", as: Int64.self) == 0)
        }
    }

    @Test func singleRowStreamingDeliversEveryRowInOrder() async throws {
        try await TestDatabase.withConnection { connection, _ in
            let (count, sum) = try await connection.withSession { session in
                var count = 0
                var sum: Int64 = 0
                let delivered = try session.stream("SELECT g FROM generate_series(1, $1::int) g", [Int64(200_000)]) { row in
                    let g = try row.decode("g", as: Int64.self)
                    #expect(g == Int64(count + 1))
                    sum += g
                    count += 1
                }
                #expect(delivered == count)
                return (count, sum)
            }
            #expect(count == 200_000)
            #expect(sum == 200_000 * 200_001 / 2)
        }
    }

    @Test func aStreamBodyThatThrowsStopsTheQueryAndLeavesTheConnectionUsable() async throws {
        try await TestDatabase.withConnection { connection, _ in
            await #expect(throws: Halfway.self) {
                try await connection.withSession { session in
                    var seen = 0
                    try session.stream("SELECT g FROM generate_series(1, 10000000) g") { _ in
                        seen += 1
                        if seen == 10 { throw Halfway() }
                    }
                }
            }
            let two = try await connection.query("SELECT 2 AS two").rows[0].decode("two", as: Int32.self)
            #expect(two == 2)
        }
    }

    @Test func copyOutStreamsLargeResults() async throws {
        try await TestDatabase.withConnection { connection, _ in
            let count = try await connection.withSession { session in
                try session.copyOut("COPY (SELECT g, 'x' || g FROM generate_series(1, 300000) g) TO STDOUT") { fields in
                    #expect(fields.count == 2)
                }
            }
            #expect(count == 300_000)
        }
    }
}
