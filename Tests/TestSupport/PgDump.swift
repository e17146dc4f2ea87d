import Foundation

/// `pg_dump --data-only --schema=legacy` of the database at `dsn`, byte for byte.
public func dumpLegacyData(_ dsn: String) async throws -> Data {
    try await PgDump.run(dsn, ["--data-only", "--schema=legacy"])
}

/// Runs `pg_dump` on the database at `dsn`.
public enum PgDump {
    /// `pg_dump ARGUMENTS` of the database at `dsn`, byte for byte (the restrict key pinned, so two
    /// dumps of the same content are identical).
    /// Waits for it on a thread of its own (``onThread(_:)``): `pg_dump` waits for table locks,
    /// and a cooperative thread blocked on it is one the lock's holder may need.
    public static func run(_ dsn: String, _ arguments: [String]) async throws -> Data {
        try await onThread { try runBlocking(dsn, arguments) }
    }

    /// `run(_:_:)` on the calling thread (a thread a test started, never async code).
    @available(*, noasync, message: "blocks a cooperative thread while pg_dump runs; use `await run(_:_:)`")
    public static func runBlocking(_ dsn: String, _ arguments: [String]) throws -> Data {
        let process = Process()
        process.executableURL = try pgDumpURL()
        process.arguments = arguments + ["--no-password", "--dbname=\(dsn)"]
        // pg_dump ≥ 13.22/14.19/15.14/16.10/17.6 wraps its output in `\restrict <random key>`; pin
        // the key so two dumps of the same data are byte-identical. Older versions have no such line.
        if try pgDumpSupportsRestrictKey() { process.arguments! += ["--restrict-key=ledgerliftfixturetests"] }
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        // Read before waiting, so a full pipe cannot block pg_dump.
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw DumpFailed(
                description: "pg_dump exited with \(process.terminationStatus): \(String(decoding: message, as: UTF8.self))")
        }
        return data
    }
}

private func pgDumpSupportsRestrictKey() throws -> Bool {
    let process = Process()
    process.executableURL = try pgDumpURL()
    process.arguments = ["--help"]
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let help = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: help, as: UTF8.self).contains("--restrict-key")
}

public struct DumpFailed: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

/// `pg_dump` on PATH, else the newest under /usr/lib/postgresql/*/bin.
private func pgDumpURL() throws -> URL {
    let fileManager = FileManager.default
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for directory in path.split(separator: ":") {
        let candidate = URL(fileURLWithPath: String(directory)).appendingPathComponent("pg_dump")
        if fileManager.isExecutableFile(atPath: candidate.path) { return candidate }
    }
    let versions = (try? fileManager.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
    for version in versions.sorted(by: { (Int($0) ?? 0) > (Int($1) ?? 0) }) {
        let candidate = "/usr/lib/postgresql/\(version)/bin/pg_dump"
        if fileManager.isExecutableFile(atPath: candidate) { return URL(fileURLWithPath: candidate) }
    }
    throw DumpFailed(description: "pg_dump not found on PATH nor under /usr/lib/postgresql/*/bin")
}
