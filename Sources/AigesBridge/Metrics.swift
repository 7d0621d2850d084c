import CPythonShims
import Glibc
import Synchronization

/// The C entry points the plugin counts (those that return a result code).
public enum EntryPoint: Int, CaseIterable, Sendable {
    case wrapperSetCtrl, wrapperInit, wrapperFini, wrapperLoadRes, wrapperUnloadRes
    case wrapperCreate, wrapperWrite, wrapperRead, wrapperDestroy
    case wrapperExec, wrapperExecFree, wrapperExecAsync

    /// The C function's name.
    var name: String { String(describing: self) }
}

/// What the plugin counts, for operators: per entry point, calls by result code, a latency
/// histogram and calls in flight; plus sessions, async requests and callbacks.
///
/// The hot path costs two clock reads and a few relaxed atomic adds per call; counts of non-zero
/// codes (rare) go through a lock. Exposed as JSON (`wrapperDebugInfo(NULL)`) and in Prometheus
/// text format (`MetricsFile`).
public enum Metrics {
    /// Upper bounds of the latency buckets, in microseconds (the last bucket is +Inf).
    static let bucketBounds: [Int] = [
        10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
        1_000_000, 2_500_000, 5_000_000, 10_000_000,
    ]

    /// One entry point's counters (process lifetime): plain words changed with relaxed atomic
    /// operations (`aiges_counter_*`), and a locked table for non-zero codes.
    final class Counters: @unchecked Sendable {
        /// succeeded, in flight, total µs, then one per latency bucket; allocated for the process's life.
        private let words: UnsafeMutablePointer<Int>
        let failures = Mutex<[Int32: Int]>([:])

        init() {
            let count = 3 + Metrics.bucketBounds.count + 1
            words = UnsafeMutablePointer<Int>.allocate(capacity: count)
            words.initialize(repeating: 0, count: count)
        }

        var succeeded: UnsafeMutablePointer<Int> { words }
        var inFlight: UnsafeMutablePointer<Int> { words + 1 }
        var totalMicroseconds: UnsafeMutablePointer<Int> { words + 2 }
        func bucket(_ index: Int) -> UnsafeMutablePointer<Int> { words + 3 + index }
        var buckets: [Int] { (0...Metrics.bucketBounds.count).map { aiges_counter_load(bucket($0)) } }
    }

    private static let counters = EntryPoint.allCases.map { _ in Counters() }

    /// Results delivered to the loader through its callback (or queued for a read), and results
    /// wrapper.py offered that were dropped (unknown tag, after the final result).
    static let callbacksDelivered = Atomic<Int>(0)
    static let callbacksDropped = Atomic<Int>(0)
    /// Async requests ended by their timeout.
    static let asyncTimedOut = Atomic<Int>(0)

    /// Marks the start of a call. - Returns: its start time.
    @inline(__always)
    static func begin(_ entry: EntryPoint) -> Int64 {
        aiges_counter_add(counters[entry.rawValue].inFlight, 1)
        return monotonicNow()
    }

    /// Records the end of a call that began at `started` with result `code`.
    @inline(__always)
    static func end(_ entry: EntryPoint, since started: Int64, code: Int32) {
        let counter = counters[entry.rawValue]
        let micros = Int((monotonicNow() - started) / 1000)
        aiges_counter_add(counter.inFlight, -1)
        aiges_counter_add(counter.totalMicroseconds, micros)
        aiges_counter_add(counter.bucket(bucket(micros)), 1)
        if code == 0 {
            aiges_counter_add(counter.succeeded, 1)
        } else {
            counter.failures.withLock { $0[code, default: 0] += 1 }
        }
    }

    private static func bucket(_ micros: Int) -> Int {
        var index = 0
        while index < bucketBounds.count, micros > bucketBounds[index] { index += 1 }
        return index
    }

    /// A consistent-enough copy of one entry point's counters.
    struct Snapshot {
        let entry: EntryPoint
        let codes: [Int32: Int]
        let inFlight: Int
        let buckets: [Int]
        let totalMicroseconds: Int
        var calls: Int { codes.values.reduce(0, +) }

        /// The latency below which `fraction` of calls fell (the bucket's upper bound, interpolated).
        func percentile(_ fraction: Double) -> Double {
            let total = buckets.reduce(0, +)
            guard total > 0 else { return 0 }
            let rank = fraction * Double(total)
            var seen = 0
            for (index, count) in buckets.enumerated() {
                if Double(seen + count) >= rank, count > 0 {
                    let lower = index == 0 ? 0 : Double(Metrics.bucketBounds[index - 1])
                    let upper =
                        index < Metrics.bucketBounds.count
                        ? Double(Metrics.bucketBounds[index]) : lower * 2
                    return lower + (upper - lower) * (rank - Double(seen)) / Double(count)
                }
                seen += count
            }
            return Double(Metrics.bucketBounds.last ?? 0)
        }
    }

    static func snapshot() -> [Snapshot] {
        EntryPoint.allCases.map { entry in
            let counter = counters[entry.rawValue]
            var codes = counter.failures.withLock { $0 }
            codes[0] = aiges_counter_load(counter.succeeded)
            return Snapshot(
                entry: entry, codes: codes, inFlight: aiges_counter_load(counter.inFlight), buckets: counter.buckets,
                totalMicroseconds: aiges_counter_load(counter.totalMicroseconds))
        }
    }

    /// The plugin's state and counters as one JSON object (`wrapperDebugInfo(NULL)`).
    static func json(state: [(String, String)]) -> String {
        var parts = state.map { "\"\($0.0)\": \($0.1)" }
        parts.append("\"async_timed_out\": \(asyncTimedOut.load(ordering: .relaxed))")
        parts.append("\"callbacks_delivered\": \(callbacksDelivered.load(ordering: .relaxed))")
        parts.append("\"callbacks_dropped\": \(callbacksDropped.load(ordering: .relaxed))")
        let entries = snapshot().filter { $0.calls > 0 || $0.inFlight > 0 }.map { entry in
            let codes = entry.codes.filter { $0.value > 0 }.sorted { $0.key < $1.key }
                .map { "\"\($0.key)\": \($0.value)" }.joined(separator: ", ")
            return """
                "\(entry.entry.name)": {"calls": \(entry.calls), "codes": {\(codes)}, "in_flight": \(entry.inFlight), \
                "p50_us": \(format1(entry.percentile(0.5))), "p90_us": \(format1(entry.percentile(0.9))), \
                "p99_us": \(format1(entry.percentile(0.99)))}
                """
        }
        parts.append("\"entry_points\": {\(entries.joined(separator: ", "))}")
        return "{" + parts.joined(separator: ", ") + "}"
    }

    /// The counters in Prometheus text exposition format, names prefixed `aiges_wrapper_`.
    static func prometheus(gauges: [(name: String, help: String, value: Int)]) -> String {
        var text = ""
        func header(_ name: String, _ type: String, _ help: String) {
            text += "# HELP aiges_wrapper_\(name) \(help)\n# TYPE aiges_wrapper_\(name) \(type)\n"
        }
        let entries = snapshot()
        header("calls_total", "counter", "Calls of each C entry point, by result code (0 = success).")
        for entry in entries {
            for (code, count) in entry.codes.sorted(by: { $0.key < $1.key }) where count > 0 || code == 0 {
                text += "aiges_wrapper_calls_total{entry=\"\(entry.entry.name)\",code=\"\(code)\"} \(count)\n"
            }
        }
        header("in_flight", "gauge", "Calls of each C entry point in progress.")
        for entry in entries {
            text += "aiges_wrapper_in_flight{entry=\"\(entry.entry.name)\"} \(entry.inFlight)\n"
        }
        header("call_duration_seconds", "histogram", "Time spent in each C entry point.")
        for entry in entries {
            var cumulative = 0
            for (index, count) in entry.buckets.enumerated() {
                cumulative += count
                let bound = index < bucketBounds.count ? format6(Double(bucketBounds[index]) / 1e6) : "+Inf"
                text +=
                    "aiges_wrapper_call_duration_seconds_bucket{entry=\"\(entry.entry.name)\",le=\"\(bound)\"} \(cumulative)\n"
            }
            text +=
                "aiges_wrapper_call_duration_seconds_sum{entry=\"\(entry.entry.name)\"} \(format6(Double(entry.totalMicroseconds) / 1e6))\n"
            text += "aiges_wrapper_call_duration_seconds_count{entry=\"\(entry.entry.name)\"} \(cumulative)\n"
        }
        for gauge in gauges {
            header(gauge.name, "gauge", gauge.help)
            text += "aiges_wrapper_\(gauge.name) \(gauge.value)\n"
        }
        for (name, help, value) in [
            (
                "async_timed_out_total", "Async requests ended by their timeout (22012).",
                asyncTimedOut.load(ordering: .relaxed)
            ),
            (
                "callbacks_delivered_total", "Results passed to the loader's callback or queued for a read.",
                callbacksDelivered.load(ordering: .relaxed)
            ),
            (
                "callbacks_dropped_total",
                "Results wrapper.py delivered that were dropped (unknown or ambiguous tag, after the final result).",
                callbacksDropped.load(ordering: .relaxed)
            ),
        ] {
            header(name, "counter", help)
            text += "aiges_wrapper_\(name) \(value)\n"
        }
        return text
    }
}

/// `value` with one decimal, without Foundation.
func format1(_ value: Double) -> String {
    let tenths = Int((value * 10).rounded())
    return "\(tenths / 10).\(abs(tenths % 10))"
}

/// `value` with six decimals, without Foundation.
func format6(_ value: Double) -> String {
    let millionths = Int((value * 1e6).rounded())
    let fraction = String(millionths % 1_000_000)
    return "\(millionths / 1_000_000).\(String(repeating: "0", count: 6 - fraction.count))\(fraction)"
}

/// Writes the metrics in Prometheus text format to `metrics.file` every `metrics.interval_s`
/// seconds and once more when `wrapperFini` returns, replacing the file atomically (written to a
/// temporary file in the same folder, then renamed: the node_exporter textfile convention).
enum MetricsFile {
    private struct Target {
        var path: String?
        var generation = 0
    }

    private static let target = Mutex(Target())

    /// Starts writing to `path` every `seconds` (nil path: stops).
    static func start(path: String?, seconds: Int) {
        let generation = target.withLock { target -> Int in
            target.path = path
            target.generation += 1
            return target.generation
        }
        guard let path else { return }
        write(to: path)
        schedule(path: path, seconds: seconds, generation: generation)
    }

    private static func schedule(path: String, seconds: Int, generation: Int) {
        _ = Timers.schedule(at: monotonicNow() + Int64(seconds) * 1_000_000_000) {
            CallbackRunner.pool.submit {
                guard target.withLock({ $0.generation == generation }) else { return }
                write(to: path)
                schedule(path: path, seconds: seconds, generation: generation)
            }
        }
    }

    /// Writes once more (at `wrapperFini`) and stops.
    static func finish() {
        let path = target.withLock { target -> String? in
            defer {
                target.path = nil
                target.generation += 1
            }
            return target.path
        }
        if let path { write(to: path) }
    }

    /// Writes the current metrics to `path` atomically. - Returns: why it failed, or nil.
    @discardableResult
    static func write(to path: String) -> String? {
        let text = Metrics.prometheus(gauges: Plugin.gauges)
        let temporary = path + ".tmp.\(getpid())"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            let reason = "cannot write \(temporary): \(String(cString: strerror(errno)))"
            Log.logger.warning("metrics.file: \(reason)")
            return reason
        }
        var complete = true
        var text8 = text
        text8.withUTF8 { bytes in complete = Glibc.write(descriptor, bytes.baseAddress, bytes.count) == bytes.count }
        close(descriptor)
        guard complete, rename(temporary, path) == 0 else {
            unlink(temporary)
            Log.logger.warning("metrics.file: cannot replace \(path): \(String(cString: strerror(errno)))")
            return "cannot replace \(path)"
        }
        return nil
    }
}
