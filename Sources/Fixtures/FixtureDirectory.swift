import Foundation

/// The `fixtures/` directory: the legacy schema, the clean and dirty seeds, and the checks.
///
/// ```swift
/// let fixtures = try FixtureDirectory.locate()              // --fixtures, $LEDGERLIFT_FIXTURES, cwd, executable
/// let schema = try fixtures.contents(of: .schema)
/// ```
public struct FixtureDirectory: Sendable, Hashable, CustomStringConvertible {
    /// The files a fixture directory holds.
    public enum File: String, Sendable, CaseIterable {
        /// `reference/schema.sql`: drops and recreates the `legacy` schema.
        case schema = "reference/schema.sql"
        /// `reference/seed.sql`: the clean, hand-written stories.
        case referenceSeed = "reference/seed.sql"
        /// `dirty/seed.sql`: the defect cases a migrator must quarantine.
        case dirtySeed = "dirty/seed.sql"
        /// `reference/checks.sql`: one query per arithmetic rule.
        case checks = "reference/checks.sql"
    }

    /// The environment variable naming the fixtures directory.
    public static let environmentVariable = "LEDGERLIFT_FIXTURES"

    /// The directory (the one holding `reference/` and `dirty/`).
    public let url: URL

    public var description: String { url.path }

    /// Uses `url` as the fixtures directory after checking it holds `reference/schema.sql`.
    ///
    /// - Throws: ``FixtureError`` with code ``FixtureError/Code/fixturesNotFound``.
    public init(validating url: URL) throws(FixtureError) {
        let standardized = url.standardizedFileURL
        guard Self.qualifies(standardized) else {
            throw FixtureError(
                code: .fixturesNotFound,
                message: "\(standardized.path) is not a Ledgerlift fixtures directory (it has no \(File.schema.rawValue))",
                searchedLocations: [standardized.path])
        }
        self.url = standardized
    }

    /// Finds the fixtures directory.
    ///
    /// Looks, in order, at `explicitPath` (the `--fixtures` option), the `LEDGERLIFT_FIXTURES`
    /// environment variable, `fixtures/` in the current directory or any parent, and `fixtures/`
    /// next to the executable or in any of its parents (a build under `.build/` inside a
    /// checkout). A path given explicitly or by the environment must be right: it is not
    /// silently skipped.
    ///
    /// - Throws: ``FixtureError`` with code ``FixtureError/Code/fixturesNotFound`` listing every
    ///   place looked in.
    public static func locate(
        explicitPath: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        currentDirectory: URL = URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true),
        executableURL: URL? = Bundle.main.executableURL
    ) throws(FixtureError) -> FixtureDirectory {
        if let explicitPath, !explicitPath.isEmpty {
            return try FixtureDirectory(validating: URL(fileURLWithPath: explicitPath, relativeTo: currentDirectory))
        }
        if let fromEnvironment = environment[environmentVariable], !fromEnvironment.isEmpty {
            do {
                return try FixtureDirectory(validating: URL(fileURLWithPath: fromEnvironment, relativeTo: currentDirectory))
            } catch {
                var error = error
                error.message = "\(environmentVariable)=\(fromEnvironment): " + error.message
                throw error
            }
        }
        var searched: [String] = []
        var starts = [currentDirectory.standardizedFileURL]
        if let executableURL {
            starts.append(executableURL.resolvingSymlinksInPath().deletingLastPathComponent().standardizedFileURL)
        }
        for start in starts {
            var directory = start
            while true {
                let candidate = directory.appendingPathComponent("fixtures", isDirectory: true)
                if !searched.contains(candidate.path) {
                    searched.append(candidate.path)
                    if qualifies(candidate) { return FixtureDirectory(trusted: candidate) }
                }
                let parent = directory.deletingLastPathComponent().standardizedFileURL
                if parent.path == directory.path { break }
                directory = parent
            }
        }
        throw FixtureError(
            code: .fixturesNotFound,
            message:
                "cannot find the Ledgerlift fixtures directory (one holding \(File.schema.rawValue)); "
                + "pass --fixtures DIR or set \(environmentVariable)",
            searchedLocations: searched)
    }

    private init(trusted url: URL) { self.url = url }

    private static func qualifies(_ directory: URL) -> Bool {
        var isDirectory: ObjCBool = false
        let path = directory.appendingPathComponent(File.schema.rawValue).path
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && !isDirectory.boolValue
    }

    /// The absolute location of `file`.
    public func url(of file: File) -> URL { url.appendingPathComponent(file.rawValue) }

    /// The text of `file`.
    ///
    /// - Throws: ``FixtureError`` with code ``FixtureError/Code/unreadableFile``.
    public func contents(of file: File) throws(FixtureError) -> String {
        let location = url(of: file)
        do {
            return try String(contentsOf: location, encoding: .utf8)
        } catch {
            throw FixtureError(code: .unreadableFile, message: "cannot read \(location.path): \(error.localizedDescription)")
        }
    }
}
