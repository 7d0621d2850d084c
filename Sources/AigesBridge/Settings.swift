import CPythonShims
import Glibc

/// The plugin's own config keys, checked at `wrapperInit`.
///
/// A value that cannot be read fails `wrapperInit` with a text naming the key and the value (where
/// a default is safer — `log.level`, an unwritable `log.dir` — `Log.configure` warns instead). An
/// unknown key in the plugin's namespaces gets a warning naming the nearest known key.
enum Settings {
    /// Every key the plugin reads.
    static let known = [
        "wrapper.file", "wrapper.class", "python.venv", "python.path", "python.executable", "log.level", "log.dir",
        "log.max_mb", "log.backups", "log.capture_python", "gil.gate_us", "gil.stint_us", "data.copy", "data.lend",
        "async.timeout_ms", "async.fallback_threads", "workers", "workers.concurrency", "workers.watchdog_ms",
        "workers.start_timeout_ms", "workers.program", "metrics.file", "metrics.interval_s", "batch.max_size",
        "batch.max_delay_us", "batch.concurrency",
    ]

    /// The prefixes of the plugin's own keys (other keys are wrapper.py's or the loader's).
    static let namespaces = ["wrapper.", "python.", "log.", "gil.", "data.", "async.", "metrics.", "workers", "batch."]

    /// Checks every key and applies `gil.gate_us`, `data.*`, `async.*` and `metrics.*` (`batch.*` is
    /// read by `Batcher.make`, `workers*` by `WorkerEngine`).
    static func apply(_ settings: [String: String]) throws(PluginError) {
        warnAboutUnknownKeys(settings)
        _ = try integer(settings, "log.max_mb", default: 64, range: 0...1_048_576)  // 0 is taken as 1
        _ = try integer(settings, "log.backups", default: 5, range: 0...1000)
        _ = try flag(settings, "log.capture_python", default: true)
        if let executable = settings["python.executable"], !executable.isEmpty {
            var info = stat()
            guard stat(executable, &info) == 0, info.st_mode & S_IFMT == S_IFREG, access(executable, X_OK) == 0 else {
                throw PluginError(.initFailed, "config python.executable = \"\(executable)\": not an executable file")
            }
        }
        _ = try integer(settings, "workers", default: 0, range: 0...256)
        let metricsSeconds = try integer(settings, "metrics.interval_s", default: 15, range: 1...86_400)
        let gate = try integer(settings, "gil.gate_us", default: 50, range: 0...1_000_000)
        let stint = try integer(settings, "gil.stint_us", default: 500, range: 0...1_000_000)
        let copy = try flag(settings, "data.copy")
        let lend = try flag(settings, "data.lend")
        guard !(copy && lend) else {
            throw PluginError(.initFailed, "data.copy and data.lend cannot both be on")
        }
        let timeout = try integer(settings, "async.timeout_ms", default: 60_000, range: 0...Int(Int32.max))
        let fallback = try integer(settings, "async.fallback_threads", default: 4, range: 1...1024)
        _ = try integer(settings, "batch.max_size", default: 1, range: 1...65_536)  // read by Batcher.make
        _ = try integer(settings, "batch.max_delay_us", default: 1000, range: 0...60_000_000)
        _ = try integer(settings, "batch.concurrency", default: 1, range: 1...1024)
        EntryGate.waitNanoseconds.store(gate * 1000, ordering: .relaxed)
        aiges_gate_configure(Int64(stint) * 1000, Int64(EntryGate.graceNanoseconds))
        let mode: DataPath.Mode = copy ? .copy : lend ? .lend : .copyOnRead
        DataPath.mode.store(mode.rawValue, ordering: .relaxed)
        DataPath.escaped.store(false, ordering: .relaxed)
        Plugin.defaultTimeoutMilliseconds.store(timeout, ordering: .relaxed)
        Plugin.fallbackPool.maximumThreads = fallback
        let metricsFile = settings["metrics.file"].flatMap { $0.isEmpty ? nil : $0 }
        if let metricsFile, let problem = MetricsFile.write(to: metricsFile) {
            throw PluginError(.initFailed, "config metrics.file = \"\(metricsFile)\": \(problem)")
        }
        MetricsFile.start(path: metricsFile, seconds: metricsSeconds)
    }

    /// Warns about keys in the plugin's namespaces that it does not read, naming the nearest known key.
    static func warnAboutUnknownKeys(_ settings: [String: String]) {
        for key in settings.keys.sorted() where !known.contains(key) {
            guard namespaces.contains(where: { key.hasPrefix($0) }) else { continue }
            let nearest = known.min { distance(key, $0) < distance(key, $1) } ?? ""
            Log.logger.warning("config \(key) is not a key this plugin reads; did you mean \(nearest)?")
        }
    }

    /// Edit distance between two keys (insertions, deletions, substitutions).
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a.utf8)
        let b = Array(b.utf8)
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var current = [i + 1] + Array(repeating: 0, count: b.count)
            for (j, y) in b.enumerated() {
                current[j + 1] = Swift.min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }

    /// A boolean key: 1/true/yes/on or 0/false/no/off (any case); missing or empty is `default`.
    static func flag(_ settings: [String: String], _ key: String, default: Bool = false) throws(PluginError) -> Bool {
        guard let value = settings[key], !value.isEmpty else { return `default` }
        switch value.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw PluginError(.initFailed, "config \(key) = \"\(value)\": expected true or false")
        }
    }

    /// An integer key within `range`; missing or empty gives `default`.
    static func integer(_ settings: [String: String], _ key: String, default: Int, range: ClosedRange<Int>)
        throws(PluginError) -> Int
    {
        guard let value = settings[key], !value.isEmpty else { return `default` }
        guard let number = Int(value), range.contains(number) else {
            throw PluginError(
                .initFailed,
                "config \(key) = \"\(value)\": expected a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }
}
