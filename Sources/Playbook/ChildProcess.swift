import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A `ledgerlift` child of a playbook step, spawned with `posix_spawn`: its output goes to this
/// process's (a `run` step, which the operator watches), to a file (a gate's attempts, read when
/// it is reported; a service's log).
struct ChildProcess {
    enum Output {
        case inherit
        case file(String)
    }

    let pid: pid_t

    /// Starts `executable` with `arguments`. `ownGroup` puts it in a process group of its own, so
    /// a Ctrl-C meant for the playbook does not stop a service it started.
    /// `environment` (`NAME=value` strings) replaces this process's environment when given.
    init(
        executable: String, arguments: [String], output: Output, ownGroup: Bool = false, environment: [String]? = nil
    ) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Only 0, 1 and 2 are the child's: a service must not keep this process's other files
        // open — a pipe of whoever runs the playbook (`| tee`, a test harness) would never see
        // its end while the service runs — nor its database connections.
        for fd in Self.openDescriptors() where fd > 2 {
            posix_spawn_file_actions_addclose(&actions, fd)
        }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if case .file(let path) = output {
            posix_spawn_file_actions_addopen(&actions, 1, path, O_WRONLY | O_CREAT | O_APPEND, 0o640)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        if ownGroup {
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
            posix_spawnattr_setpgroup(&attributes, 0)
        }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp = environment.map { $0.map { strdup($0) } + [nil] }
        defer { envp?.forEach { free($0) } }
        var pid = pid_t()
        let status =
            if let envp { posix_spawn(&pid, executable, &actions, &attributes, argv, envp) } else {
                posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
            }
        guard status == 0 else {
            throw PlaybookError(file: executable, "cannot start ledgerlift: \(String(cString: strerror(status)))")
        }
        self.pid = pid
    }

    /// This process's open file descriptors now.
    static func openDescriptors() -> [Int32] {
        let listed = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        // The directory's own descriptor is listed too, and closed by now: keep the open ones.
        return listed.compactMap { Int32($0) }.filter { fcntl($0, F_GETFD) != -1 }.sorted()
    }

    /// Waits for the end: the exit status, or 128 + the signal that ended it.
    func wait() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let signal = status & 0x7F
        return signal == 0 ? (status >> 8) & 0xFF : 128 + signal
    }

    /// Waits for the end until `deadline`: the exit status as ``wait()`` gives it, or `nil`
    /// when the child still runs then.
    func wait(until deadline: ContinuousClock.Instant) -> Int32? {
        while true {
            var status: Int32 = 0
            let waited = waitpid(pid, &status, WNOHANG)
            if waited == pid {
                let signal = status & 0x7F
                return signal == 0 ? (status >> 8) & 0xFF : 128 + signal
            }
            if waited == -1 && errno != EINTR { return wait() }
            if ContinuousClock.now >= deadline { return nil }
            usleep(50_000)
        }
    }

    /// Stops the child: SIGTERM, then SIGKILL if it has not ended within `grace`; its status.
    @discardableResult
    func stop(grace: Duration = .seconds(10)) -> Int32 {
        kill(pid, SIGTERM)
        if let status = wait(until: ContinuousClock.now + grace) { return status }
        kill(pid, SIGKILL)
        return wait()
    }

    /// Whether a process `pid` is alive (and not a zombie of ours).
    static func isAlive(_ pid: Int32) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
        // A finished child of this process not yet waited for is a zombie: not alive.
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return true }
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).prefix(1)
        return state != "Z"
    }

    /// This process's executable: the same `ledgerlift` runs every step.
    static func currentExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}
