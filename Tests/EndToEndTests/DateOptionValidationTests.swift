import Foundation
import TestSupport
import Testing

/// `--as-of`, `--from` and `--to` are checked before anything connects: a value the ledger
/// cannot hold is a usage error (status 2, "could not run") with one sentence, never a trap (status 132) nor a
/// PostgreSQL error quoting SQL. The store DSN points nowhere: validation must not need it.
@Suite("Date options: out-of-range values are usage errors, run as a binary")
struct DateOptionValidationTests {
    static let nowhere = "postgresql://nobody@127.0.0.1:1/nothing"

    /// Runs `arguments` and returns the first stderr line, after checking it is a usage error.
    static func usageError(
        _ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> String {
        let result = try await LedgerliftBinary.run(arguments)
        #expect(result.status == 2, "status \(result.status), stderr: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(!result.stderr.contains("SELECT"), sourceLocation: sourceLocation)
        return String(result.stderr.split(separator: "\n").first ?? "")
    }

    static let asOfCommands: [[String]] = [
        ["query", "balance", "--store", nowhere, "--customer", "c-1"],
        ["query", "invoice", "inv-1", "--store", nowhere],
        ["events", "--store", nowhere, "--stream", "invoice-1"],
        ["report", "aging", "--store", nowhere],
    ]

    @Test(arguments: asOfCommands)
    func anAsOfDatePastTheLastMicrosecondIsAUsageError(command: [String]) async throws {
        #expect(
            try await Self.usageError(command + ["--as-of", "294250-01-01"])
                == #"Error: --as-of "294250-01-01" is after 294247-01-10T04:00:54.775806Z, the last instant 64-bit microseconds since 1970 hold"#
        )
        #expect(
            try await Self.usageError(command + ["--as-of", "9999999-12-31T00:00:00Z"])
                == #"Error: --as-of "9999999-12-31T00:00:00Z" is after 294247-01-10T04:00:54.775806Z, the last instant 64-bit microseconds since 1970 hold"#
        )
        // Its midnight fits, its end (what a bare date means) does not.
        #expect(
            try await Self.usageError(command + ["--as-of", "294247-01-10"])
                == #"Error: --as-of "294247-01-10" is after 294247-01-10T04:00:54.775806Z, the last instant 64-bit microseconds since 1970 hold"#
        )
    }

    @Test(arguments: asOfCommands)
    func anAsOfBeforeYearOneIsAUsageError(command: [String]) async throws {
        #expect(
            try await Self.usageError(command + ["--as-of", "0000-01-01"])
                == #"Error: --as-of "0000-01-01" is before 0001-01-01, the first day PostgreSQL prints without BC"#
        )
    }

    @Test(arguments: asOfCommands)
    func anAsOfWithAnImpossibleOffsetIsAUsageError(command: [String]) async throws {
        #expect(
            try await Self.usageError(command + ["--as-of", "2024-03-01T00:00:00+99:00"])
                == #"Error: --as-of "2024-03-01T00:00:00+99:00" is not a valid timestamp: the offset +99:00 is beyond ±15:59:59"#
        )
        #expect(
            try await Self.usageError(command + ["--as-of", "2024-02-30"])
                == #"Error: --as-of "2024-02-30" is not a valid date: 2024-02 has no day 30"#
        )
    }

    @Test(arguments: [["report", "revenue"], ["report", "mrr"]])
    func aMonthOutsideTheCalendarIsAUsageError(command: [String]) async throws {
        let base = command + ["--store", Self.nowhere]
        #expect(
            try await Self.usageError(base + ["--from", "0000-01", "--to", "2024-03"])
                == "Error: --from 0000-01 is not a month like 2024-03 (years 0001 to 9999)")
        #expect(
            try await Self.usageError(base + ["--from", "2024-01", "--to", "+202-03"])
                == "Error: --to +202-03 is not a month like 2024-03 (years 0001 to 9999)")
        #expect(
            try await Self.usageError(base + ["--from", "2024--01", "--to", "2024-03"])
                == "Error: --from 2024--01 is not a month like 2024-03 (years 0001 to 9999)")
        #expect(
            try await Self.usageError(base + ["--from", "2024-13", "--to", "2024-03"])
                == "Error: --from 2024-13 is not a month like 2024-03 (years 0001 to 9999)")
    }
}
