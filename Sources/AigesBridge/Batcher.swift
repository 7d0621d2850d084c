import AigesABI
import Glibc
import Logging

/// Gathers concurrent one-shot requests — `wrapperExec` and `wrapperExecAsync` alike — into calls
/// of wrapper.py's `wrapperOnceExecBatch(requests)` (config `batch.max_size` > 1).
///
/// Requests queue in arrival order. A batch of the oldest (at most `maxSize`) is taken as soon as
/// the queue holds `maxSize` requests or its oldest has waited `maxDelay`, while fewer than
/// `concurrency` batches run; meanwhile the queue fills, so under load batches grow by themselves.
/// Each request then gets exactly its own result: its own output list (freed by its own
/// `wrapperExecFree` or callback), its own error code and text.
///
/// - A `wrapperExec` caller waits in `exec`; the loader's pointers stay valid meanwhile. A waiting
///   caller whose batch is due runs it on its own thread (which may serve other callers' requests).
/// - A `wrapperExecAsync` request is copied (`CopiedCall`) before that call returns; a pool thread
///   waits for its batch to be due and hands it to another to run. Its result goes to its callback
///   target (from a callback-runner thread), which also enforces its timeout: a request that timed
///   out while queued is not run, and a late result is dropped.
/// - `close` (`wrapperFini`): nothing more is queued; queued `wrapperExec` requests are sent at
///   once (no more delay); queued async ones are dropped (`wrapperFini` ends them with 22018); it
///   returns when every batch and caller is done, so each request has had its one outcome.
final class Batcher: @unchecked Sendable {  // mutable state only under `monitor`
    /// How requests are gathered.
    struct Limits: Sendable {
        /// Most requests in one call (`batch.max_size`).
        var maxSize: Int
        /// How long the oldest queued request waits for the batch to fill, in ns (`batch.max_delay_us`).
        var maxDelay: Int64
        /// Batches that may run at once (`batch.concurrency`).
        var concurrency: Int
    }

    /// One request, queued or in a batch.
    private final class Entry: @unchecked Sendable {  // `outcome` only under the batcher's monitor
        let call: OnceCall
        let arrived: Int64
        /// Async: the copy `call` points into (kept until the entry is dropped).
        let copy: CopiedCall?
        /// Async: where the result goes.
        let target: CallbackTarget?
        /// `wrapperExec`: the result, once its batch ran.
        var outcome: Result<OutputBatch, PluginError>?

        init(call: OnceCall, copy: CopiedCall? = nil, target: CallbackTarget? = nil) {
            self.call = call
            self.copy = copy
            self.target = target
            arrived = monotonicNow()
        }
    }

    let engine: any Engine
    let limits: Limits
    private let monitor = Monitor()
    private var queue: [Entry] = []
    private var running = 0  // batches taken and not yet done
    private var runners: [pthread_t] = []  // threads running one of them now
    private var callers = 0  // `wrapperExec` callers inside `exec`
    private var callerThreads: [pthread_t] = []  // their threads
    private var driving = false  // a pool thread waits for async requests' batches
    private var closed = false
    /// How late timed waits wake (ns, a moving average): batches are taken this much before they are
    /// due, so that the oldest request waits `maxDelay`, not `maxDelay` plus the wake-up.
    private var lateness: Int64 = 0

    /// Threads that wait for async requests' batches and run them.
    private static let threads = WorkerPool(name: "batch", maximumThreads: 1024, idleSeconds: 30)

    private init(engine: any Engine, limits: Limits) {
        self.engine = engine
        self.limits = limits
    }

    /// The batcher for `engine` from config `batch.*` (already checked by `Settings.apply`), or nil when
    /// requests are not batched: `batch.max_size` is 1 (the default), wrapper.py defines no
    /// `wrapperOnceExecBatch` (a warning says so), or this is a worker process (the loader's process
    /// gathers the batches it sends).
    static func make(settings: [String: String], engine: any Engine) -> Batcher? {
        let maxSize = (try? Settings.integer(settings, "batch.max_size", default: 1, range: 1...65_536)) ?? 1
        guard maxSize > 1, !SharedInputs.active.load(ordering: .relaxed) else { return nil }
        guard engine.defines(.wrapperOnceExecBatch) else {
            Log.logger.warning(
                "config batch.max_size = \(maxSize), but \(engine.wrapperName) defines no Wrapper.wrapperOnceExecBatch: requests are not batched"
            )
            return nil
        }
        let delay =
            (try? Settings.integer(settings, "batch.max_delay_us", default: 1000, range: 0...60_000_000)) ?? 1000
        // Worker processes: by default as many batches at once as the workers take requests.
        let workers = (try? Settings.integer(settings, "workers", default: 0, range: 0...256)) ?? 0
        let perWorker = (try? Settings.integer(settings, "workers.concurrency", default: 1, range: 1...1024)) ?? 1
        let concurrency =
            (try? Settings.integer(
                settings, "batch.concurrency", default: max(workers * perWorker, 1), range: 1...1024)) ?? 1
        Log.logger.info(
            "batching one-shot requests: up to \(maxSize) per wrapperOnceExecBatch call, the oldest waiting up to \(delay) µs, \(concurrency) batch(es) at once"
        )
        return Batcher(
            engine: engine, limits: Limits(maxSize: maxSize, maxDelay: Int64(delay) * 1000, concurrency: concurrency))
    }

    /// Requests waiting for their batch (for the metrics).
    var queued: Int { monitor.withLock { queue.count } }

    // MARK: requests

    /// Serves a `wrapperExec` request in a batch: waits until its batch ran (running it, or another
    /// due batch, on this thread when one is due) and returns its own result.
    func exec(_ call: OnceCall) throws(PluginError) -> OutputBatch {
        let entry = Entry(call: call)
        let outcome = try monitor.withLock { () throws(PluginError) -> Result<OutputBatch, PluginError>? in
            guard !closed else {
                throw PluginError(.notInitialized, "wrapperFini ran while wrapperExec was in progress")
            }
            // A loader hook called from inside a batch (callback_metric, callback_trace) that calls
            // wrapperExec: served on its own, since its batch could only run after the one it is in.
            if runners.contains(where: { pthread_equal($0, pthread_self()) != 0 }) { return nil }
            enqueue(entry)
            callers += 1
            callerThreads.append(pthread_self())
            defer {
                callers -= 1
                if let index = callerThreads.firstIndex(where: { pthread_equal($0, pthread_self()) != 0 }) {
                    callerThreads.remove(at: index)
                }
                if closed { monitor.broadcast() }
            }
            while true {
                if let outcome = entry.outcome { return outcome }
                if let batch = takeDue() {
                    run(batch)
                    continue
                }
                waitForChange()
            }
        }
        guard let outcome else { return try engine.exec(call) }
        return try outcome.get()
    }

    /// Queues an async request (its arguments copied) whose result goes to `target`. Does not block
    /// (it runs under the plugin's lifecycle lock). After `close` (which cannot happen while the
    /// plugin runs) the request ends with `shutDown` at once.
    func queue(_ copy: CopiedCall, for target: CallbackTarget) {
        let queued = monitor.withLock { () -> Bool in
            guard !closed else { return false }
            enqueue(Entry(call: copy.call, copy: copy, target: target))
            if !driving {
                driving = true
                Batcher.threads.submit { [self] in drive() }
            }
            return true
        }
        if !queued {
            let error = PluginError(.shutDown, "wrapperFini ended the request")
            target.offer(Delivery(batch: nil, ret: error.code, error: error), final: true, deliverHere: false)
        }
    }

    /// `wrapperFini`: ends batching (see the type's notes). Waits up to `seconds` for batches running
    /// on other threads and for callers still inside `exec`.
    func close(waitingAtMost seconds: Int) {
        let late = monitor.withLock { () -> Int in
            closed = true
            queue.removeAll { $0.target != nil }  // their targets end with 22018 in wrapperFini
            monitor.broadcast()
            let deadline = monotonicNow() + Int64(seconds) * 1_000_000_000
            // wrapperFini from a loader hook or callback on a thread running a batch, or waiting in exec.
            let here = runners.count { pthread_equal($0, pthread_self()) != 0 }
            let hereCalling = callerThreads.count { pthread_equal($0, pthread_self()) != 0 }
            while callers > hereCalling || running > here {
                guard monitor.wait(until: deadline) else { break }
            }
            return running - here
        }
        if late > 0 { Log.logger.error("wrapperFini: \(late) batch(es) still running after \(seconds) s") }
    }

    // MARK: internals

    /// Appends to the queue (monitor held); a full queue wakes a waiting thread to take the batch now.
    private func enqueue(_ entry: Entry) {
        queue.append(entry)
        // Full: take it now. First in an empty queue: a thread waiting without a deadline (the
        // queue was empty) must learn when this one is due.
        if queue.count >= limits.maxSize || queue.count == 1 { monitor.broadcast() }
    }

    /// The batch to run now, if one is due and may run (monitor held): the oldest requests, at most
    /// `maxSize`, skipping async ones that already ended (timed out while queued).
    private func takeDue() -> [Entry]? {
        queue.removeAll { $0.target?.isFinished ?? false }
        guard !queue.isEmpty, running < limits.concurrency else { return nil }
        guard closed || queue.count >= limits.maxSize || monotonicNow() >= dueTime(queue[0]) else { return nil }
        let batch = Array(queue.prefix(limits.maxSize))
        queue.removeFirst(batch.count)
        running += 1
        return batch
    }

    /// When the batch holding `oldest` is taken: when it has waited `maxDelay`, less the usual
    /// wake-up lateness and the batch call's own extra cost (`headStart`), so that a lone request
    /// waits at most `maxDelay` longer than it would unbatched.
    private func dueTime(_ oldest: Entry) -> Int64 {
        oldest.arrived + limits.maxDelay - lateness - min(Self.headStart, limits.maxDelay / 10)
    }

    /// A margin for what a batch call costs beyond a `wrapperOnceExec` call (the BatchRequest objects,
    /// the waiting caller's wake-up: tens of µs) and for the scatter of wake-ups around `lateness`.
    private static let headStart: Int64 = 100_000

    /// Waits until the next batch is due, or until a finished batch or a new request changes
    /// anything (monitor held); learns how late timed waits wake.
    private func waitForChange() {
        guard let oldest = queue.first, running < limits.concurrency else {
            monitor.wait()
            return
        }
        let deadline = dueTime(oldest)
        guard !monitor.wait(until: deadline) else { return }
        let late = min(max(monotonicNow() - deadline, 0), limits.maxDelay / 2)
        lateness += (late - lateness) / 4
    }

    /// Runs a taken batch on this thread (monitor held on entry and exit, released meanwhile).
    private func run(_ batch: [Entry]) {
        runners.append(pthread_self())
        let results = monitor.unlocked { execute(batch) }
        if let index = runners.firstIndex(where: { pthread_equal($0, pthread_self()) != 0 }) {
            runners.remove(at: index)
        }
        running -= 1
        for (entry, result) in zip(batch, results) where entry.target == nil { entry.outcome = result }
        monitor.broadcast()
    }

    /// A pool thread's loop while async requests are queued: hands each due batch to another pool
    /// thread and waits for the next.
    private func drive() {
        monitor.withLock {
            while !closed, queue.contains(where: { $0.target != nil }) {
                if let batch = takeDue() {
                    Batcher.threads.submit { [self] in monitor.withLock { run(batch) } }
                    continue
                }
                // takeDue dropped requests that timed out: none may be left to wait for.
                guard queue.contains(where: { $0.target != nil }) else { break }
                waitForChange()
            }
            driving = false
        }
    }

    /// Calls `wrapperOnceExecBatch` for `batch` and passes async results on (no lock held).
    /// - Returns: one result per entry.
    private func execute(_ batch: [Entry]) -> [Result<OutputBatch, PluginError>] {
        let started = monotonicNow()
        Metrics.batches.add(1, ordering: .relaxed)
        Metrics.batchedRequests.add(batch.count, ordering: .relaxed)
        var results: [Result<OutputBatch, PluginError>]
        do throws(PluginError) {
            results = try engine.execBatch(batch.map(\.call))
            if results.count != batch.count {
                let error = PluginError(
                    .internalError, "wrapperOnceExecBatch: \(results.count) results for \(batch.count) requests")
                results = Array(repeating: .failure(error), count: batch.count)
            }
        } catch {
            results = Array(repeating: .failure(error), count: batch.count)
        }
        if Log.debugEnabled {
            let failed = results.count { if case .failure = $0 { true } else { false } }
            Log.debug("wrapperOnceExecBatch: \(batch.count) requests, \(failed) failed", since: Int(started), sid: "")
        }
        for (entry, result) in zip(batch, results) {
            if let target = entry.target { deliver(result, to: target) }
        }
        return results
    }

    /// Offers an async request's result to its target, passed on from a callback-runner thread; a
    /// result for a request that already ended (timed out, or ended by wrapperFini) is dropped.
    private func deliver(_ result: Result<OutputBatch, PluginError>, to target: CallbackTarget) {
        let delivery: Delivery
        switch result {
        case .success(let output):
            delivery = Delivery(batch: output, ret: 0)
        case .failure(let failure):
            let error = failure.sid == nil ? failure.with(sid: target.sid) : failure
            ErrorTexts.record(error)
            delivery = Delivery(batch: nil, ret: error.code, error: error)
        }
        guard !target.offer(delivery, final: true, deliverHere: false) else { return }
        Metrics.callbacksDropped.add(1, ordering: .relaxed)
        Log.logger.info(
            "result for \(target.label) dropped: the request had already ended (timeout or wrapperFini)",
            metadata: ["sid": .string(target.sid)])
    }
}
