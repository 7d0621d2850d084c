import AigesABI
import CPython
import Glibc
import Logging
import Synchronization

/// One result on its way to the loader: its nodes (nil: an empty list) and `ret`.
struct Delivery {
    let batch: OutputBatch?
    let ret: Int32
    /// Why `ret` is not 0 (for the log), when known.
    var error: PluginError? = nil
}

/// Where results for one request go: for an asynchronous request or a push-mode session, that
/// request's own loader callback and usrTag pointer (there is no global callback); for a pull-mode
/// session, a queue the next `wrapperRead` takes from — so one wrapper.py serves the loader in
/// either mode.
///
/// Rules, whatever thread offers a result:
/// - Results reach the loader one at a time, in the order they were accepted, and never while a
///   lock, the GIL or the entry gate is held: the callback may block, or call any `wrapper*`
///   function (including `wrapperDestroy` of this very session, or `wrapperFini`).
/// - Until `arm()` (the entry call that opened the request returned 0), accepted results are
///   held back; if that call fails, `abandon()` drops them: a request never gets both an error
///   return and a callback.
/// - After a final result (status DataEnd/DataOnce, or `ret != 0`) nothing more is accepted; after
///   `close()` returns, no callback for this target runs or starts.
final class CallbackTarget: @unchecked Sendable {  // mutable state only under `monitor`; usrTag never read
    /// One-shot results are final and sent with status DataOnce; session results keep their statuses.
    enum Kind {
        case once
        case session
    }

    let kind: Kind
    /// The usrTag string, for logs.
    let label: String
    /// The names `aiges_embed.callback(resp, tag)` may use for this target (see `CallbackTargets`).
    fileprivate var tags: [String] = []  // under CallbackTargets' lock
    private let usrTag: UnsafeRawPointer?  // the loader's pointer, handed back verbatim
    private let callback: wrapperCallback?  // nil: pull mode, results are queued for wrapperRead
    private let monitor = Monitor()
    private var finished = false  // a final result was accepted, or the target was closed
    private var closed = false  // nothing more reaches the loader
    private var armed = false  // results may be passed on (the opening call returned 0)
    private var outbox: [Delivery] = []  // push: accepted, not yet passed on
    private var readQueue = ReadQueue()  // pull: waiting for wrapperRead
    private var deliverer: pthread_t?  // the thread inside the loader's callback for this target
    private var deliveredCount = 0
    private var timer: Int?
    private var started: Int64?  // async requests: when wrapperExecAsync was entered (Metrics.asyncResult)
    private var unregistered = false  // its tags were removed (once finished)
    private var retired = false  // it left CallbackTargets for good (finished and nothing left to pass on)

    /// The request's timeout (`expire`), if it has one.
    var timeout: Int? { monitor.withLock { timeoutMilliseconds } }
    private var timeoutMilliseconds: Int?

    /// Whether results go to the loader's callback (else they wait for `wrapperRead`).
    var pushes: Bool { callback != nil }

    /// The request's sid, for the log; set before the target is registered, read-only after.
    var sid = "-"

    /// Counts this async request in `Metrics` (entry `asyncResult`) from `entered` to its outcome.
    func measure(from entered: Int64) {
        Metrics.enter(.asyncResult)
        monitor.withLock { started = entered }
    }

    init(kind: Kind, usrTag: UnsafeRawPointer?, label: String, callback: wrapperCallback?) {
        self.kind = kind
        self.usrTag = usrTag
        self.label = label
        self.callback = callback
    }

    /// Results passed to the loader (or queued for a read) so far.
    var delivered: Int { monitor.withLock { deliveredCount } }

    /// Whether a final result was accepted or the target closed.
    var isFinished: Bool { monitor.withLock { finished } }

    /// Accepts `delivery` unless the target has finished; a final one (or `ret != 0`) finishes it,
    /// and its timer and tags are gone before the loader sees it. When armed and no other thread is
    /// delivering, passes it on from this thread before returning. Must be called without the GIL.
    /// - Returns: whether the result was accepted.
    /// With `deliverHere` false the result is accepted at once but passed on from a callback-runner
    /// thread (a worker connection's reading thread must not run loader callbacks: one may call
    /// back into the plugin and wait for that very thread).
    @discardableResult
    func offer(_ delivery: Delivery, final: Bool, deliverHere: Bool = true) -> Bool {
        let (accepted, ended) = monitor.withLock { () -> (Bool, Bool) in
            guard !finished else { return (false, false) }
            finished = final || delivery.ret != 0
            if callback == nil {
                readQueue.append(delivery)
                deliveredCount += 1
                Metrics.callbacksDelivered.add(1, ordering: .relaxed)
            } else {
                outbox.append(delivery)
            }
            return (true, finished)
        }
        guard accepted else { return false }
        if delivery.ret != 0 { report(delivery.ret, delivery.error) }
        if ended {
            endTimerAndTags()
            finishMeasure(delivery.ret)
        }
        if callback != nil {
            if deliverHere {
                monitor.withLock { if armed, deliverer == nil { drainLocked() } }
            } else {
                monitor.withLock { if armed, deliverer == nil { drainLater() } }
            }
        }
        retireIfDone()
        return true
    }

    /// The opening call returned 0: results may reach the loader. Results held back meanwhile are
    /// passed on from another thread, after the opening call has returned to the loader.
    func arm() {
        monitor.withLock {
            armed = true
            guard !outbox.isEmpty, deliverer == nil else { return }
            drainLater()
        }
    }

    /// Passes the outbox on from a callback-runner thread (monitor held).
    private func drainLater() {
        CallbackRunner.pool.submit { [self] in
            monitor.withLock { if deliverer == nil { drainLocked() } }
            retireIfDone()
        }
    }

    /// Runs `action` when this request times out (after its 22012 was accepted): a worker process
    /// then ends its side of the request too.
    func whenTimedOut(_ action: @escaping @Sendable () -> Void) { monitor.withLock { onTimeout = action } }
    private var onTimeout: (@Sendable () -> Void)?

    /// Whether `pointer` is this target's usrTag pointer (the one handed back to the loader).
    func owns(usrTag pointer: UnsafeRawPointer) -> Bool { usrTag == pointer }

    /// The opening call failed: drops what was held back; nothing reaches the loader.
    /// - Returns: false if a final result had already been passed on (by `shutDown`, the only way a
    ///   target is armed before its opening call returned), in which case the request's outcome is
    ///   that callback and the opening call should report success.
    func abandon(code: Int32) -> Bool {
        let (dropped, alreadyDelivered) = monitor.withLock { () -> ([Delivery], Bool) in
            let wasDelivered = armed
            finished = true
            closed = true
            defer { outbox = [] }
            return (outbox, wasDelivered)
        }
        _ = dropped  // released here, outside the lock
        if !alreadyDelivered { finishMeasure(code) }
        didFinish()
        return !alreadyDelivered
    }

    /// Ends the target without a result (`wrapperDestroy`); waits for a callback in progress on
    /// another thread. Without the GIL.
    func close() {
        let dropped = monitor.withLock { () -> [Delivery] in
            finished = true
            closed = true
            waitForDeliverer()
            defer { outbox = [] }
            return outbox
        }
        _ = dropped
        didFinish()
    }

    /// Ends the target at `wrapperFini`: a push target that has no final result yet gets `error` as
    /// its final callback (or the final result already accepted, if held back), delivered before
    /// this returns. Without the GIL.
    func shutDown(_ error: PluginError) {
        let ended = monitor.withLock { () -> Bool in
            guard !finished, callback != nil else { return false }
            outbox.append(Delivery(batch: nil, ret: error.code))
            return true
        }
        if ended {
            report(error.code, error)
            finishMeasure(error.code)
        }
        monitor.withLock {
            finished = true
            armed = true
            if deliverer == nil { drainLocked() }
            waitForDeliverer()
            closed = true
            outbox = []
        }
        didFinish()
    }

    /// After `deadline` (monotonic ns), delivers `timeout` unless a final result came first.
    func expire(at deadline: Int64, milliseconds: Int) {
        monitor.withLock { timeoutMilliseconds = milliseconds }
        let id = Timers.schedule(at: deadline) { [self] in
            CallbackRunner.pool.submit { [self] in
                let error = PluginError(.timeout, "no result for \(label) within \(milliseconds) ms")
                ErrorTexts.record(error)
                if offer(Delivery(batch: nil, ret: error.code, error: error), final: true) {
                    monitor.withLock { onTimeout }?()
                }
            }
        }
        let cancelled = monitor.withLock { () -> Bool in
            if finished { return true }
            timer = id
            return false
        }
        if cancelled { Timers.cancel(id) }
    }

    // MARK: pull mode

    /// Pull mode: what the next `wrapperRead` returns (see `ReadQueue.take`).
    func takeForRead() -> ReadQueue.Taken { monitor.withLock { readQueue.take() } }

    /// Pull mode: whether results wait for a read.
    var hasQueuedReads: Bool { monitor.withLock { !readQueue.isEmpty } }

    /// Pull mode: queues what wrapper.py's own `wrapperRead` returned, behind delivered results.
    func queueForRead(_ batch: OutputBatch) { monitor.withLock { readQueue.append(Delivery(batch: batch, ret: 0)) } }

    // MARK: internals (monitor held)

    /// Passes on the outbox, oldest first, with the monitor released around each callback.
    private func drainLocked() {
        guard let callback else { return }
        deliverer = pthread_self()
        while armed, !closed, !outbox.isEmpty {
            let delivery = outbox.removeFirst()
            deliveredCount += 1
            Metrics.callbacksDelivered.add(1, ordering: .relaxed)
            monitor.unlocked {
                _ = callback(usrTag, delivery.batch?.head, delivery.ret)
                _ = delivery  // the batch is released after the loader copied it
            }
        }
        deliverer = nil
        monitor.broadcast()
    }

    /// Waits until no other thread is inside the callback (this thread may be: re-entrant calls).
    private func waitForDeliverer() {
        while let thread = deliverer, pthread_equal(thread, pthread_self()) == 0 { monitor.wait() }
    }

    /// Once finished: cancels the timer and makes a one-shot target unreachable by tag; it stays
    /// among the live targets (which `wrapperFini` ends) until nothing is left to pass on.
    private func didFinish() {
        endTimerAndTags()
        retireIfDone()
    }

    /// Logs a non-zero result passed to the loader once, with the request's sid: wrapper.py's own
    /// codes at warning, the plugin's at error.
    private func report(_ code: Int32, _ error: PluginError?) {
        if code == PluginErrorCode.timeout.rawValue { Metrics.asyncTimedOut.add(1, ordering: .relaxed) }
        let metadata: Logger.Metadata = ["sid": .string(sid)]
        let detail = error.map { $0.detail.isEmpty ? "" : ": \($0.detail)" } ?? ""
        if let kind = PluginErrorCode(rawValue: code) {
            Log.logger.error("result for \(label): \(code) (\(kind))\(detail)", metadata: metadata)
        } else {
            Log.logger.warning("result for \(label): wrapper.py's code \(code)\(detail)", metadata: metadata)
        }
    }

    /// Records an async request's outcome in `Metrics` (once).
    private func finishMeasure(_ code: Int32) {
        let entered = monitor.withLock { () -> Int64? in
            defer { started = nil }
            return started
        }
        if let entered { Metrics.end(.asyncResult, since: entered, code: code) }
    }

    /// Cancels the timer and removes a one-shot target's tags (once). Without the monitor.
    private func endTimerAndTags() {
        let (timer, first) = monitor.withLock { () -> (Int?, Bool) in
            defer {
                self.timer = nil
                unregistered = true
            }
            return (self.timer, !unregistered)
        }
        if let timer { Timers.cancel(timer) }
        if first, kind == .once { CallbackTargets.removeTags(of: self) }
    }

    /// A finished one-shot target with nothing left to pass on leaves the live targets.
    private func retireIfDone() {
        guard kind == .once else { return }
        let done = monitor.withLock { () -> Bool in
            guard finished, closed || outbox.isEmpty, deliverer == nil, !retired else { return false }
            retired = true
            return true
        }
        if done { CallbackTargets.retire(self) }
    }
}

/// Pull-mode results waiting for `wrapperRead`, node by node.
///
/// The loader turns each read's list into a map keyed by output key, so a read never returns two
/// nodes with the same key: it takes nodes in order up to the first key it already has, and the
/// rest waits for the next read. An error result is returned on its own.
struct ReadQueue {
    private enum Entry {
        case node(OutputBatch, Int)
        case error(Int32)
    }

    private var entries: [Entry] = []
    private var next = 0

    /// What one read takes: nodes (each batch must outlive the read) or an error code.
    struct Taken {
        var nodes: [(batch: OutputBatch, index: Int)] = []
        var error: Int32?
    }

    var isEmpty: Bool { next >= entries.count }

    mutating func append(_ delivery: Delivery) {
        if delivery.ret != 0 {
            entries.append(.error(delivery.ret))
        } else if let batch = delivery.batch {
            for index in 0..<batch.count { entries.append(.node(batch, index)) }
        }
    }

    mutating func take() -> Taken {
        var taken = Taken()
        var keys = Set<String>()
        while next < entries.count {
            switch entries[next] {
            case .error(let code):
                guard taken.nodes.isEmpty else { return compacted(taken) }
                taken.error = code
                next += 1
                return compacted(taken)
            case .node(let batch, let index):
                guard keys.insert(String(cString: batch.key(at: index))).inserted else { return compacted(taken) }
                taken.nodes.append((batch, index))
                next += 1
            }
        }
        return compacted(taken)
    }

    private mutating func compacted(_ taken: Taken) -> Taken {
        if next >= entries.count {
            entries.removeAll(keepingCapacity: true)
            next = 0
        } else if next > 64, next * 2 > entries.count {
            entries.removeFirst(next)
            next = 0
        }
        return taken
    }
}

/// Threads that pass results on when no caller thread can: timeouts, and results wrapper.py
/// delivered before its opening call returned. Each blocking loader callback holds one thread, so
/// the pool grows with blocked callbacks (up to a generous cap) instead of delaying others.
enum CallbackRunner {
    static let pool = WorkerPool(name: "callback runner", maximumThreads: 1024, idleSeconds: 5)
}

/// The live callback targets, by every tag wrapper.py may use for them (usrTag, sid, session handle).
///
/// A tag that names two live targets (two requests in flight with the same sid) is ambiguous:
/// `aiges_embed.callback` with it is refused (22015) rather than guessed.
enum CallbackTargets {
    private struct Table {
        var byTag: [String: [CallbackTarget]] = [:]
        var all: [ObjectIdentifier: CallbackTarget] = [:]
    }

    private static let table = Mutex(Table())

    /// Makes `target` reachable under each non-empty tag.
    static func register(_ target: CallbackTarget, tags: [String]) {
        let tags = tags.filter { !$0.isEmpty }
        table.withLock { table in
            table.all[ObjectIdentifier(target)] = target
            for tag in tags where !target.tags.contains(tag) {
                target.tags.append(tag)
                table.byTag[tag, default: []].append(target)
            }
        }
    }

    /// Removes the target and all its tags.
    static func unregister(_ target: CallbackTarget) {
        table.withLock { table in
            table.all[ObjectIdentifier(target)] = nil
            removeTags(of: target, in: &table)
        }
    }

    /// Makes the target unreachable by tag (it stays live, for `wrapperFini`).
    static func removeTags(of target: CallbackTarget) {
        table.withLock { removeTags(of: target, in: &$0) }
    }

    /// Forgets a target that has nothing left to pass on.
    static func retire(_ target: CallbackTarget) {
        table.withLock { _ = $0.all.removeValue(forKey: ObjectIdentifier(target)) }
    }

    private static func removeTags(of target: CallbackTarget, in table: inout Table) {
        for tag in target.tags {
            table.byTag[tag]?.removeAll { $0 === target }
            if table.byTag[tag]?.isEmpty == true { table.byTag[tag] = nil }
        }
        target.tags = []
    }

    /// What a tag names.
    enum Lookup {
        case none
        case one(CallbackTarget)
        case ambiguous(Int)
    }

    static func find(_ tag: String) -> Lookup {
        table.withLock { table in
            guard let targets = table.byTag[tag], let first = targets.first else { return .none }
            return targets.count == 1 ? .one(first) : .ambiguous(targets.count)
        }
    }

    /// The live target whose usrTag pointer is `pointer` (a worker process's own requests).
    static func target(usrTag pointer: UnsafeRawPointer) -> CallbackTarget? {
        table.withLock { table in table.all.values.first { $0.owns(usrTag: pointer) } }
    }

    /// How many one-shot requests are waiting for their final result.
    static var liveOnceCount: Int {
        let targets = table.withLock { table in table.all.values.filter { $0.kind == .once } }
        return targets.count { !$0.isFinished }  // each target's monitor is taken outside the table lock
    }

    /// Removes and returns every live one-shot target (for `wrapperFini`), including finished ones
    /// whose result is still on its way to the loader.
    static func takeAllOnce() -> [CallbackTarget] {
        let targets = table.withLock { table in Array(table.all.values.filter { $0.kind == .once }) }
        targets.forEach(unregister)
        return targets
    }

    /// Delivers a result that wrapper.py passed to `aiges_embed.callback(response, tag)`.
    /// Called with the GIL held (from any Python thread); releases it around the loader's callback.
    /// - Returns: 0, or an error code for Python (unknown or ambiguous tag, result after the final one).
    static func deliverFromPython(_ response: PyPointer, tag: String) -> Int32 {
        let target: CallbackTarget
        switch find(tag) {
        case .none:
            Metrics.callbacksDropped.add(1, ordering: .relaxed)
            Log.logger.warning("callback for unknown or finished tag \"\(tag)\" dropped")
            return PluginErrorCode.resultDropped.rawValue
        case .ambiguous(let count):
            Metrics.callbacksDropped.add(1, ordering: .relaxed)
            Log.logger.error(
                "callback for tag \"\(tag)\" dropped: \(count) live requests have it (use the usrTag to tell them apart)"
            )
            return PluginErrorCode.resultDropped.rawValue
        case .one(let found): target = found
        }
        return deliver(response, to: target)
    }

    /// Converts `response` and offers it to `target`. GIL held; released around the loader's callback.
    static func deliver(_ response: PyPointer, to target: CallbackTarget) -> Int32 {
        var batch: OutputBatch?
        var ret: Int32 = 0
        var failure: PluginError?
        do throws(PluginError) {
            batch = try OutputBatch(response, kind: target.kind == .once ? .once : .stream)
        } catch {
            ret = error.code
            failure = error
            ErrorTexts.record(error)
        }
        let final = target.kind == .once || (batch?.hasFinalStatus ?? false)
        let accepted = withoutGIL { target.offer(Delivery(batch: batch, ret: ret, error: failure), final: final) }
        guard accepted else {
            Metrics.callbacksDropped.add(1, ordering: .relaxed)
            Log.logger.warning("result for \(target.label) dropped: it came after the request's final result")
            return PluginErrorCode.resultDropped.rawValue
        }
        return 0
    }
}
