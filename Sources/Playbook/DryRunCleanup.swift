import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The paths a signal handler removes: C strings, read by a handler that may only call
/// async-signal-safe functions (`unlink`, `rmdir`, `signal`, `raise`).
nonisolated(unsafe) private var cleanupFile: UnsafeMutablePointer<CChar>?
nonisolated(unsafe) private var cleanupDirectory: UnsafeMutablePointer<CChar>?

private func removeOnSignal(_ signal: Int32) {
    if let cleanupFile { unlink(cleanupFile) }
    if let cleanupDirectory { rmdir(cleanupDirectory) }
    // Then die of the signal as if nothing had caught it (exit status 128 + signal).
    _ = Glibc.signal(signal, SIG_DFL)
    raise(signal)
}

/// A dry run's password file and its private directory, removed when the dry run ends —
/// returning, throwing, or stopped by SIGINT (Ctrl-C), SIGTERM or SIGHUP: a dry run leaves no
/// password behind.
final class DryRunCleanup: Sendable {
    static let signals = [SIGINT, SIGTERM, SIGHUP]
    let file: String?
    let directory: String

    init(file: String?, directory: String) {
        self.file = file
        self.directory = directory
        guard file != nil else { return }
        cleanupFile = file.map { strdup($0) }
        cleanupDirectory = strdup(directory)
        for signal in Self.signals { _ = Glibc.signal(signal, removeOnSignal) }
    }

    func remove() {
        guard let file else { return }
        for signal in Self.signals { _ = Glibc.signal(signal, SIG_DFL) }
        unlink(file)
        rmdir(directory)
        free(cleanupFile)
        free(cleanupDirectory)
        cleanupFile = nil
        cleanupDirectory = nil
    }
}
