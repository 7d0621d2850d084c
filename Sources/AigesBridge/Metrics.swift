import CPythonShims
import Glibc
import Synchronization

/// The C entry points the plugin counts (those that return a result code).
public enum EntryPoint: Int, CaseIterable, Sendable {
    case wrapperSetCtrl, wrapperInit, wrapperFini, wrapperLoadRes, wrapperUnloadRes
    case wrapperCreate, wrapperWrite, wrapperRead, wrapperDestroy
    case wrapperExec, wrapperExecFree, wrapperExecAsync
    /// Not a C function: each async request from `wrapperExecAsync`'s entry to its final callback,
    /// by the callback's `ret` (or the error `wrapperExecAsync` returned).
    case asyncResult

    /// The C function's name (or `asyncResult`).
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

    /// Each entry point's counters, as words in one block allocated for the process's life (no
    /// reference counting on the hot path), changed with relaxed atomic operations (`aiges_counter_*`):
    /// succeeded, in flight, total µs, then one per latency bucket. Non-zero codes (rare) are counted
    /// in a locked table.
    private struct Counters: @unchecked Sendable {  // the block is only changed atomically
        static let stride = 3 + Metrics.bucketBounds.count + 1
        let words: UnsafeMutablePointer<Int>

        var succeeded: UnsafeMutablePointer<Int> { words }
        var inFlight: UnsafeMutablePointer<Int> { words + 1 }
        var totalMicroseconds: UnsafeMutablePointer<Int> { words + 2 }
        func bucket(_ index: Int) -> UnsafeMutablePointer<Int> { words + 3 + index }
        var buckets: [Int] { (0...Metrics.bucketBounds.count).map { aiges_counter_load(bucket($0)) } }
    }

    nonisolated(unsafe) private static let block: UnsafeMutablePointer<Int> = {  // changed only atomically
        let count = Counters.stride * EntryPoint.allCases.count
        let block = UnsafeMutablePointer<Int>.allocate(capacity: count)  // lives for the process
        block.initialize(repeating: 0, count: count)
        return block
    }()

    @inline(__always)
    private static func counters(_ entry: EntryPoint) -> Counters {
        Counters(words: block + entry.rawValue * Counters.stride)
    }

    private static let failures = Mutex<[[Int32: Int]]>(EntryPoint.allCases.map { _ in [:] })

    /// How many distinct non-zero codes each entry point counts apart; `otherCode` stands for the rest.
    static let distinctCodes = 32
    static let otherCode = Int32.min

    /// A code as a JSON key or Prometheus label value.
    static func label(_ code: Int32) -> String { code == otherCode ? "other" : "\(code)" }

    /// Results delivered to the loader through its callback (or queued for a read), and results
    /// wrapper.py offered that were dropped (unknown tag, after the final result).
    static let callbacksDelivered = Atomic<Int>(0)
    static let callbacksDropped = Atomic<Int>(0)
    /// Async requests ended by their timeout.
    static let asyncTimedOut = Atomic<Int>(0)
    /// `wrapperOnceExecBatch` calls, and the requests they carried (`Batcher`).
    static let batches = Atomic<Int>(0)
    static let batchedRequests = Atomic<Int>(0)

    /// Marks the start of a call. - Returns: its start time.
    @inline(__always)
    static func begin(_ entry: EntryPoint) -> Int64 {
        enter(entry)
        return monotonicNow()
    }

    /// Counts a call in flight (its start time taken elsewhere).
    @inline(__always)
    static func enter(_ entry: EntryPoint) { aiges_counter_add(counters(entry).inFlight, 1) }

    /// Records the end of a call that began at `started` with result `code`.
    @inline(__always)
    static func end(_ entry: EntryPoint, since started: Int64, code: Int32) {
        let counter = counters(entry)
        let micros = Int((monotonicNow() - started) / 1000)
        aiges_counter_add(counter.inFlight, -1)
        aiges_counter_add(counter.totalMicroseconds, micros)
        aiges_counter_add(counter.bucket(bucket(micros)), 1)
        if code == 0 {
            aiges_counter_add(counter.succeeded, 1)
        } else {
            failures.withLock { failures in
                // wrapper.py may return any int: past `distinctCodes` codes, the rest count as "other".
                let counted = failures[entry.rawValue]
                let key = counted[code] != nil || counted.count < distinctCodes ? code : otherCode
                failures[entry.rawValue][key, default: 0] += 1
            }
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
            let counter = counters(entry)
            var codes = failures.withLock { $0[entry.rawValue] }
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
        parts.append("\"batches\": \(batches.load(ordering: .relaxed))")
        parts.append("\"batched_requests\": \(batchedRequests.load(ordering: .relaxed))")
        parts.append("\"gil_handovers\": \(aiges_gate_handovers())")
        parts.append("\"gil_direct\": \(aiges_gate_directs())")
        let entries = snapshot().filter { $0.calls > 0 || $0.inFlight > 0 }.map { entry in
            let codes = entry.codes.filter { $0.value > 0 }.sorted { $0.key < $1.key }
                .map { "\"\(label($0.key))\": \($0.value)" }.joined(separator: ", ")
            return """
                "\(entry.entry.name)": {"calls": \(entry.calls), "codes": {\(codes)}, "in_flight": \(entry.inFlight), \
                "p50_us": \(decimal(entry.percentile(0.5), places: 1)), "p90_us": \(decimal(entry.percentile(0.9), places: 1)), \
                "p99_us": \(decimal(entry.percentile(0.99), places: 1))}
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
                text += "aiges_wrapper_calls_total{entry=\"\(entry.entry.name)\",code=\"\(label(code))\"} \(count)\n"
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
                let bound = index < bucketBounds.count ? decimal(Double(bucketBounds[index]) / 1e6, places: 6) : "+Inf"
                text +=
                    "aiges_wrapper_call_duration_seconds_bucket{entry=\"\(entry.entry.name)\",le=\"\(bound)\"} \(cumulative)\n"
            }
            text +=
                "aiges_wrapper_call_duration_seconds_sum{entry=\"\(entry.entry.name)\"} \(decimal(Double(entry.totalMicroseconds) / 1e6, places: 6))\n"
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
            ("batches_total", "wrapperOnceExecBatch calls (config batch.max_size).", batches.load(ordering: .relaxed)),
            (
                "batched_requests_total", "One-shot requests served in wrapperOnceExecBatch calls.",
                batchedRequests.load(ordering: .relaxed)
            ),
            (
                "gil_handovers_total", "Times the entry gate passed from one loader thread to another (gil.gate_us).",
                aiges_gate_handovers()
            ),
            (
                "gil_direct_total",
                "Times waiting loader threads went for the GIL directly because the gate's owner let go of it in a long call.",
                aiges_gate_directs()
            ),
        ] {
            header(name, "counter", help)
            text += "aiges_wrapper_\(name) \(value)\n"
        }
        return text
    }
}

/// `value` with `places` decimals (rounded), without Foundation.
func decimal(_ value: Double, places: Int) -> String {
    var scale = 1
    for _ in 0..<places { scale *= 10 }
    let scaled = Int((value * Double(scale)).rounded())
    let sign = scaled < 0 ? "-" : ""
    let fraction = String(abs(scaled) % scale)
    return "\(sign)\(abs(scaled) / scale).\(String(repeating: "0", count: places - fraction.count))\(fraction)"
}

/// Writes the metrics in Prometheus text format to `metrics.file` every `metrics.interval_s`
/// seconds and once more after `wrapperFini` has returned (and been counted), replacing the file
/// atomically: the text goes to a new temporary file made with `mkstemp` in the same folder (never
/// an existing file or link there), which is then renamed over the old one — the node_exporter
/// textfile collector's convention. Writes are serialised.
enum MetricsFile {
    private struct State {
        var path: String?  // while the plugin runs
        var finalPath: String?  // the file to write once more after wrapperFini
        var generation = 0
        var timer: Int?
    }

    private static let state = Mutex(State())
    private static let writing = Mutex(())

    /// Starts writing to `path` every `seconds` (nil path: no file).
    static func start(path: String?, seconds: Int) {
        let (generation, old) = state.withLock { state -> (Int, Int?) in
            defer { state.timer = nil }
            state.path = path
            state.finalPath = nil
            state.generation += 1
            return (state.generation, state.timer)
        }
        if let old { Timers.cancel(old) }
        guard let path else { return }
        write(to: path)
        schedule(path: path, seconds: seconds, generation: generation)
    }

    private static func schedule(path: String, seconds: Int, generation: Int) {
        let id = Timers.schedule(at: monotonicNow() + Int64(seconds) * 1_000_000_000) {
            CallbackRunner.pool.submit {
                guard state.withLock({ $0.generation == generation }) else { return }
                write(to: path)
                schedule(path: path, seconds: seconds, generation: generation)
            }
        }
        let stale = state.withLock { state -> Bool in
            guard state.generation == generation else { return true }
            state.timer = id
            return false
        }
        if stale { Timers.cancel(id) }
    }

    /// Whether a periodic write is scheduled (so `Timers.count` can leave it out of the async figures).
    static var hasTimer: Bool { state.withLock { $0.timer != nil } }

    /// Stops the periodic writes (`wrapperFini`, a failed `wrapperInit`); `writeFinal` writes once more.
    static func stop() {
        let timer = state.withLock { state -> Int? in
            defer {
                state.finalPath = state.path
                state.path = nil
                state.timer = nil
                state.generation += 1
            }
            return state.timer
        }
        if let timer { Timers.cancel(timer) }
    }

    /// The last write, after `wrapperFini` (or a failed `wrapperInit`) returned and was counted.
    static func writeFinal() {
        let path = state.withLock { state -> String? in
            defer { state.finalPath = nil }
            return state.finalPath
        }
        if let path { write(to: path) }
    }

    /// Writes the current metrics to `path` atomically. - Returns: why it failed, or nil.
    @discardableResult
    static func write(to path: String) -> String? {
        var text = Metrics.prometheus(gauges: Plugin.gauges)
        return writing.withLock { _ -> String? in
            let slash = path.lastIndex(of: "/")
            let folder = slash.map { String(path[..<$0]) } ?? "."
            var template = ((folder.isEmpty ? "/" : folder) + "/.aiges-metrics-XXXXXX").utf8CString
            let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress.unsafelyUnwrapped) }
            guard descriptor >= 0 else {
                let reason = "cannot create a file in \(folder): \(String(cString: strerror(errno)))"
                Log.logger.warning("metrics.file: \(reason)")
                return reason
            }
            let temporary = template.withUnsafeBufferPointer { String(cString: $0.baseAddress.unsafelyUnwrapped) }
            _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
            fchmod(descriptor, 0o644)
            var complete = true
            text.withUTF8 { bytes in complete = Glibc.write(descriptor, bytes.baseAddress, bytes.count) == bytes.count }
            close(descriptor)
            guard complete, rename(temporary, path) == 0 else {
                let reason = "cannot replace \(path): \(String(cString: strerror(errno)))"
                unlink(temporary)
                Log.logger.warning("metrics.file: \(reason)")
                return reason
            }
            return nil
        }
    }
}
