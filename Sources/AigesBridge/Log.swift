import CPython
import CPythonShims
import Glibc
import Logging
import Synchronization

/// The plugin's logger. It never touches swift-log's global bootstrap: the host owns that.
///
/// Lines go to stderr and, once `configure` found a writable `log.dir`, to a size-rotated
/// `wrapper.log` there. Each carries the UTC time, level, thread id and the sid of the request
/// the thread is serving ("-" outside requests).
enum Log {
    /// The shared logger; its level is `PluginLogHandler`'s (set by `log.level`).
    static let logger = Logger(label: "aiges.wrapper", factory: { _ in PluginLogHandler() })

    /// Whether debug lines (sizes and timings) are wanted; checked before computing them.
    static var debugEnabled: Bool { PluginLogHandler.level.load(ordering: .relaxed) <= 1 }

    /// The Python `logging` level number matching `log.level` (trace and debug: DEBUG, info and
    /// notice: INFO, warning, error, critical).
    static var pythonLevel: Int {
        switch PluginLogHandler.level.load(ordering: .relaxed) {
        case ...1: 10
        case 2...3: 20
        case 4: 30
        case 5: 40
        case 6: 50
        default: 51  // off
        }
    }

    /// Monotonic nanoseconds, for debug timings.
    static func now() -> Int { Int(monotonicNow()) }

    /// A debug line with the time since `started` (sizes and timings only: never payload bytes).
    static func debug(_ what: String, since started: Int, sid: String) {
        let micros = Double(now() - started) / 1000
        logger.debug("\(what) in \(Int(micros)) µs", metadata: ["sid": .string(sid)])
    }

    /// Applies `log.level` ("debug", "info", "warn", "error", …) and opens the log file under
    /// `log.dir` (default `./log/server`), rotated at `log.max_mb` MiB keeping `log.backups` files.
    /// An unwritable directory leaves logging on stderr with a warning.
    static func configure(_ settings: [String: String]) {
        var unknownLevel: String?
        if let level = settings["log.level"] {
            let aliases: [String: Logger.Level] = ["warn": .warning, "fatal": .critical, "err": .error]
            if ["off", "none"].contains(level.lowercased()) {
                PluginLogHandler.level.store(PluginLogHandler.off, ordering: .relaxed)
            } else if let parsed = Logger.Level(rawValue: level.lowercased()) ?? aliases[level.lowercased()] {
                PluginLogHandler.level.store(PluginLogHandler.rank(parsed), ordering: .relaxed)
            } else {
                unknownLevel = level
            }
        }
        let directory = settings["log.dir"].flatMap { $0.isEmpty ? nil : $0 } ?? "./log/server"
        let megabytes = settings["log.max_mb"].flatMap { Int($0) } ?? 64
        let backups = settings["log.backups"].flatMap { Int($0) } ?? 5
        let problem = LogFile.shared.open(directory: directory, maxBytes: max(megabytes, 1) << 20, backups: backups)
        // Warnings after the file is open, so that they reach it too.
        if let problem { logger.warning("logging to stderr only: \(problem)") }
        if let unknownLevel {
            let current = Logger.Level.allCases[min(PluginLogHandler.level.load(ordering: .relaxed), 6)]
            logger.warning(
                """
                config log.level = "\(unknownLevel)" is not a level (trace, debug, info, notice, warning, error, \
                critical, off); using \(current)
                """)
        }
    }
}

/// swift-log backend writing formatted lines to stderr and the log file.
struct PluginLogHandler: LogHandler {
    /// The level for every logger of the plugin (swift-log levels ranked 0 = trace … 6 = critical).
    static let level = Atomic<Int>(2)

    static func rank(_ level: Logger.Level) -> Int { Logger.Level.allCases.firstIndex(of: level) ?? 2 }

    /// The level rank of `log.level = off`: nothing is logged.
    static let off = Logger.Level.allCases.count

    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level {
        get { Logger.Level.allCases[min(Self.level.load(ordering: .relaxed), Logger.Level.allCases.count - 1)] }
        set { Self.level.store(Self.rank(newValue), ordering: .relaxed) }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// "[worker N pid P] " in a worker process (set once, before its threads start), else "".
    nonisolated(unsafe) static var processTag = ""

    func log(event: LogEvent) {
        guard Self.level.load(ordering: .relaxed) < Self.off else { return }
        let sid = event.metadata?["sid"].map { "\($0)" } ?? RequestContext.currentSid ?? "-"
        let level = event.level.rawValue.uppercased()
        LogFile.shared.write(
            "\(timestamp()) \(level) \(Self.processTag)[tid \(aiges_thread_id())] [sid \(sid)] \(event.message)\n")
    }

    private func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var parts = tm()
        gmtime_r(&now.tv_sec, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S", &parts)
        let millis = now.tv_nsec / 1_000_000
        let prefix = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return prefix + "." + String(repeating: "0", count: millis < 10 ? 2 : millis < 100 ? 1 : 0) + "\(millis)Z"
    }
}

/// stderr plus an optional size-rotated file (`wrapper.log`, `wrapper.log.1`, …).
final class LogFile: Sendable {
    static let shared = LogFile()

    private struct State {
        var descriptor: Int32 = -1
        var path = ""
        var size = 0
        var maxBytes = 64 << 20
        var backups = 5
    }

    private let state = Mutex(State())

    /// Opens `directory/wrapper.log` (creating directories); returns why not, or nil on success.
    func open(directory: String, maxBytes: Int, backups: Int) -> String? {
        if let problem = makeDirectories(directory) { return problem }
        let path = directory + "/wrapper.log"
        let descriptor = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { return "cannot open \(path): \(String(cString: strerror(errno)))" }
        var info = stat()
        let size = fstat(descriptor, &info) == 0 ? Int(info.st_size) : 0
        let previous = state.withLock { state -> Int32 in
            let previous = state.descriptor
            state = State(descriptor: descriptor, path: path, size: size, maxBytes: maxBytes, backups: max(backups, 0))
            return previous
        }
        if previous >= 0 { close(previous) }
        return nil
    }

    /// Writes one line to stderr and the file, rotating the file when it would pass its size.
    func write(_ line: String) {
        var line = line
        line.withUTF8 { bytes in
            _ = Glibc.write(2, bytes.baseAddress, bytes.count)
            state.withLock { state in
                guard state.descriptor >= 0 else { return }
                if state.size + bytes.count > state.maxBytes { rotate(&state) }
                if Glibc.write(state.descriptor, bytes.baseAddress, bytes.count) > 0 { state.size += bytes.count }
            }
        }
    }

    private func rotate(_ state: inout State) {
        close(state.descriptor)
        if state.backups > 0 {
            for index in stride(from: state.backups - 1, through: 1, by: -1) {
                rename("\(state.path).\(index)", "\(state.path).\(index + 1)")
            }
            rename(state.path, state.path + ".1")
        } else {
            unlink(state.path)
        }
        state.descriptor = Glibc.open(state.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_APPEND, 0o644)
        state.size = 0
    }

    private func makeDirectories(_ directory: String) -> String? {
        var path = directory.hasPrefix("/") ? "" : "."
        for component in directory.split(separator: "/") {
            path += "/" + component
            if mkdir(path, 0o755) != 0, errno != EEXIST {
                return "cannot create \(path): \(String(cString: strerror(errno)))"
            }
        }
        return access(directory, W_OK) == 0 ? nil : "\(directory) is not writable"
    }
}

/// The sid of the request the current thread is serving, so that log lines written while
/// wrapper.py runs (its prints and logging too) carry it.
enum RequestContext {
    private static let key: pthread_key_t? = {
        var key = pthread_key_t()
        return pthread_key_create(&key, nil) == 0 ? key : nil
    }()

    /// Runs `body` with `sid` (a Python str, borrowed for the duration) as the thread's current sid.
    @inline(__always)
    static func with<Result: ~Copyable, Failure: Error>(sid: PyPointer?, _ body: () throws(Failure) -> Result)
        throws(Failure) -> Result
    {
        guard let key, let sid else { return try body() }
        let previous = pthread_getspecific(key)
        pthread_setspecific(key, sid)
        defer { pthread_setspecific(key, previous) }
        return try body()
    }

    /// The current sid as text (GIL required: it reads a Python str), or nil outside requests.
    static var currentSid: String? {
        guard let key, let raw = pthread_getspecific(key), PyGILState_Check() != 0 else { return nil }
        return string(fromUnicode: raw.assumingMemoryBound(to: PyObject.self))
    }
}
