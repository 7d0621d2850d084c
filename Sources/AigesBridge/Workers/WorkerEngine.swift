import AigesABI
import CPythonShims
import Glibc
import Logging
import Synchronization

/// Runs wrapper.py in worker processes (config `workers = N`): each imports it in its own
/// interpreter, so CPU-bound Python uses N cores, and a worker that crashes takes only its own
/// requests down (`workerLost`, 22017) while the loader and the other workers go on.
///
/// One-shot requests go to the ready worker with the fewest in flight; a session stays on the
/// worker that opened it. Payloads cross in shared memory (`SegmentPool`): the plugin copies a
/// large input once into a segment the worker lends to Python, and the worker writes an output
/// once into a segment the loader reads straight from.
final class WorkerEngine: Engine, @unchecked Sendable {  // mutable state under `monitor`
    let wrapperName: String
    /// The worker program (`workers.program`, else aiges-worker beside libwrapper.so).
    let program: String
    /// The config each worker's own plugin starts with.
    let workerConfig: [(key: String, value: String)]
    /// Requests one worker runs at once (`workers.concurrency`).
    let concurrency: Int
    /// How long a worker may take to start (ns; `workers.start_timeout_ms`).
    let startTimeout: Int64
    /// How long a worker may go without a heartbeat (ns; `workers.watchdog_ms`, 0: never).
    let watchdog: Int64
    /// How often a worker sends one: a quarter of the watchdog, from 50 ms to 1 s (0: never).
    var heartbeatMilliseconds: Int {
        watchdog == 0 ? 0 : Int(min(max(watchdog / 4, 50_000_000), 1_000_000_000) / 1_000_000)
    }
    private var slots: [WorkerSlot] = []
    private let monitor = Monitor()
    private var methods: UInt32 = 0
    private var resources: [(resId: UInt32, data: CopiedCall)] = []  // kept to load into new workers
    private var stopping = false
    private var finishing = false
    private var finishCode: Int32 = 0

    private init(settings: [String: String], config: [(key: String, value: String)], wrapperPath: String)
        throws(PluginError)
    {
        wrapperName = wrapperPath.split(separator: "/").last.map(String.init) ?? wrapperPath
        let configured = settings["workers.program"].flatMap { $0.isEmpty ? nil : $0 }
        program = configured ?? ((Interpreter.libraryDirectory ?? ".") + "/aiges-worker")
        guard access(program, X_OK) == 0 else {
            throw PluginError(
                .initFailed,
                "worker program \(program) cannot be run (\(String(cString: strerror(errno)))); install aiges-worker beside libwrapper.so or set workers.program"
            )
        }
        concurrency = try Settings.integer(settings, "workers.concurrency", default: 1, range: 1...1024)
        startTimeout =
            Int64(try Settings.integer(settings, "workers.start_timeout_ms", default: 120_000, range: 100...86_400_000))
            * 1_000_000
        watchdog =
            Int64(try Settings.integer(settings, "workers.watchdog_ms", default: 30_000, range: 0...86_400_000))
            * 1_000_000
        // The worker's own plugin runs in-process, loads this very file, and leaves metrics and
        // batching (whole batches are sent to one worker) to this process.
        let overridden: Set<String> = ["workers", "wrapper.file", "metrics.file"]
        workerConfig =
            config.filter {
                !overridden.contains($0.key) && !$0.key.hasPrefix("workers.") && !$0.key.hasPrefix("batch.")
            }
            + [("workers", "0"), ("wrapper.file", wrapperPath)]
    }

    /// Starts `workers` processes and waits until each has run wrapper.py's `wrapperInit`; if one
    /// cannot start, stops the others and fails with its text.
    static func start(
        settings: [String: String], config: [(key: String, value: String)], wrapperPath: String, count: Int
    )
        throws(PluginError) -> WorkerEngine
    {
        let engine = try WorkerEngine(settings: settings, config: config, wrapperPath: wrapperPath)
        engine.slots = (1...count).map { WorkerSlot(index: $0, engine: engine) }
        engine.startWatchdog()  // also bounds each start (workers.start_timeout_ms)
        for slot in engine.slots {
            do throws(PluginError) { try slot.start() } catch {
                engine.stopAll()
                throw error
            }
        }
        Log.logger.info("\(count) worker process(es) serving \(wrapperPath) (\(engine.program))")
        return engine
    }

    // MARK: slots

    /// A slot's process became ready.
    func published() { monitor.withLock { monitor.broadcast() } }

    /// What the first worker to start reported wrapper.py defines.
    func learn(methods mask: UInt32) { monitor.withLock { methods = mask } }

    /// The ready worker with the fewest requests in flight (counted in until `leave()`); waits up to
    /// 5 s for one while workers restart.
    func pick() throws(PluginError) -> WorkerConnection {
        let deadline = monotonicNow() + 5_000_000_000
        return try monitor.withLock { () throws(PluginError) -> WorkerConnection in
            while true {
                if stopping { throw PluginError(.shutDown, "wrapperFini is stopping the workers") }
                let ready = slots.compactMap(\.ready).filter(\.isUsable)
                if let best = ready.min(by: { $0.load < $1.load }) {
                    best.enter()
                    return best
                }
                if !monitor.wait(until: deadline) {
                    throw PluginError(.workerLost, "no worker process is ready (they are restarting; see the log)")
                }
            }
        }
    }

    private func startWatchdog() {
        let context = Unmanaged.passRetained(self).toOpaque()  // released when the thread ends
        _ = aiges_thread_start(
            { context in
                guard let context else { return }
                Unmanaged<WorkerEngine>.fromOpaque(context).takeRetainedValue().watchLoop()
            }, context)
    }

    /// Every 100 ms: reap-check every worker, kill one that does not start or answer in time.
    private func watchLoop() {
        while true {
            let now = monotonicNow()
            let (slots, stopped) = monitor.withLock { (self.slots, stopping) }
            if stopped { return }
            for slot in slots { slot.watch(now: now, watchdog: watchdog) }
            monitor.withLock { _ = monitor.wait(until: now + 100_000_000) }
        }
    }

    /// Ends every worker process (after their wrapperFini) and their threads.
    private func stopAll() {
        let slots = monitor.withLock { () -> [WorkerSlot] in
            stopping = true
            monitor.broadcast()
            return self.slots
        }
        for slot in slots { slot.stop() }
    }

    // MARK: Engine

    func defines(_ method: WrapperMethod) -> Bool {
        monitor.withLock { methods & (1 << UInt32(method.rawValue)) != 0 }
    }

    var keepsPullResults: Bool { true }  // in the worker's own session

    var gauges: [(name: String, help: String, value: Int)] {
        [
            ("workers_ready", "Worker processes ready for requests.", slots.filter { $0.ready != nil }.count),
            (
                "worker_deaths", "Worker processes that died or were killed since wrapperInit.",
                slots.reduce(0) { $0 + $1.deaths }
            ),
        ]
    }

    func errorText(_ code: Int32) -> String {
        // Workers send wrapper.py's text with every non-zero code, so it is usually known here.
        if let text = ErrorTexts.recordedWrapperText(code) { return text }
        let ready = slots.compactMap(\.ready).filter(\.isUsable)
        guard let worker = ready.min(by: { $0.load < $1.load }) else { return "wrapper.py error \(code)" }
        var frame = FrameWriter(.errorText, id: worker.makeID())
        frame.put(code)
        // Bounded: a busy worker must not hold up the loader's error handling.
        guard var (_, reader) = try? worker.request(frame, deadline: monotonicNow() + 2_000_000_000),
            let text = try? reader.readText()
        else { return "wrapper.py error \(code)" }
        return text
    }

    func exec(_ call: OnceCall) throws(PluginError) -> OutputBatch {
        let worker = try pick()
        defer { worker.leave() }
        var frame = FrameWriter(.exec, id: worker.makeID())
        try frame.put(call: call, pool: worker.inputs)
        var (reply, reader) = try worker.request(frame)
        return try output(&reader, reply, from: worker)
    }

    func startAsync(_ call: OnceCall, target: CallbackTarget) throws(PluginError) -> (@Sendable () -> Void)? {
        let timeoutMilliseconds = target.timeout ?? 0
        let worker = try pick()  // counted out when its final result arrives, or here if it fails
        let id = worker.makeID()
        var frame = FrameWriter(.execAsync, id: id)
        do throws(PluginError) {
            try frame.put(call: call, pool: worker.inputs)
            guard frame.fits else { throw PluginError(.invalidArgument, "the request is too large for one message") }
        } catch {
            for lease in frame.leases { worker.inputs.doneWriting(lease, sent: false) }
            worker.leave()
            throw error
        }
        // The worker's own timeout a little later than ours; when ours passes, it is told.
        frame.put(Int32(clamping: timeoutMilliseconds > 0 ? timeoutMilliseconds + 1000 : 0))
        target.whenTimedOut { [weak worker] in worker?.post(FrameWriter(.cancel, id: id)) }
        do throws(PluginError) {
            _ = try worker.request(frame, route: WorkerConnection.Route(target: target, once: true))
        } catch {
            // Still routed: counted out here (else by `lose` or its callback, or its worker is gone).
            if worker.forget(route: id) { worker.leave() }
            throw error
        }
        return nil
    }

    func create(_ call: OnceCall, target: CallbackTarget) throws(PluginError) -> any SessionLink {
        let worker = try pick()
        defer { worker.leave() }
        let id = worker.makeID()
        var frame = FrameWriter(.create, id: id)
        var sessionCall = call
        sessionCall.request = nil
        try frame.put(call: sessionCall, pool: worker.inputs)
        frame.put(UInt8(target.pushes ? 1 : 0))
        let route = WorkerConnection.Route(target: target, once: false)
        var (_, reader) = try worker.request(frame, route: route)
        do throws(WireError) {
            let handle = try reader.read(UInt64.self)
            let pythonHandle = try reader.readText()
            let session = WorkerSession(worker: worker, routeID: id, remote: handle, pythonHandle: pythonHandle)
            route.session = session
            return session
        } catch {
            throw PluginError(.internalError, "worker \(worker.slot) sent a malformed create reply: \(error.what)")
        }
    }

    func write(_ link: any SessionLink, _ request: UnsafeMutablePointer<DataList>?) throws(PluginError)
        -> (bytes: Int, code: Int32)
    {
        let session = try open(link)
        var frame = FrameWriter(.write, id: session.worker.makeID())
        frame.put(session.remote)
        let bytes = try frame.put(nodes: request, "reqData", pool: session.worker.inputs)
        do throws(PluginError) {
            _ = try session.worker.request(frame)
        } catch {
            if error.isPluginCode { throw error }
            return (bytes, error.code)
        }
        return (bytes, 0)
    }

    func read(_ link: any SessionLink) throws(PluginError) -> OutputBatch? {
        let session = try open(link)
        var frame = FrameWriter(.read, id: session.worker.makeID())
        frame.put(session.remote)
        var (reply, reader) = try session.worker.request(frame)
        return try output(&reader, reply, from: session.worker)
    }

    func destroy(_ link: any SessionLink) throws(PluginError) -> Int32 {
        // Its worker is gone, or ran its wrapperFini (which closed the session).
        guard let session = link as? WorkerSession, session.lost == nil, !isFinishing else { return 0 }
        var frame = FrameWriter(.destroy, id: session.worker.makeID())
        frame.put(session.remote)
        defer { session.worker.forget(route: session.routeID) }
        do throws(PluginError) { _ = try session.worker.request(frame) } catch {
            if session.worker.lostError != nil { return 0 }  // the worker died meanwhile: nothing left open
            if error.isPluginCode { throw error }
            return error.code
        }
        return 0
    }

    func debugInfo(_ link: any SessionLink, summary: () -> String) -> String {
        guard let session = link as? WorkerSession else { return summary() }
        if let lost = session.lost { return summary() + " (worker lost: \(lost.detail))" }
        var frame = FrameWriter(.debugInfo, id: session.worker.makeID())
        frame.put(session.remote)
        guard var (_, reader) = try? session.worker.request(frame), let text = try? reader.readText() else {
            return summary() + " (its worker did not answer)"
        }
        return text
    }

    // Every worker holds every loaded resource: one loaded now goes to the ready workers, and a
    // worker that starts gets the list (`loadResources`), then catches up with what changed while
    // it started (`reconcileResources`). Each worker records what it holds, so nothing is loaded
    // twice into one worker or left behind by an unload.

    func loadResource(_ data: UnsafeMutablePointer<DataList>?, resId: UInt32, patch: String) throws(PluginError) {
        // Byte for byte (the loader frees its list when this call returns): loaded again into new workers.
        let copy = try CopiedCall(OnceCall(usrTag: nil, params: nil, request: data, personalisationId: 0))
        monitor.withLock { resources.append((resId, copy)) }
        var loaded: [WorkerConnection] = []
        for worker in slots.compactMap(\.ready) where worker.claim(resource: resId) {
            do throws(PluginError) {
                try load(copy, resId: resId, into: worker)
                loaded.append(worker)
            } catch {
                worker.unclaim(resource: resId)
                if worker.lostError != nil { continue }  // a new worker loads it when it starts
                monitor.withLock { resources.removeAll { $0.resId == resId } }
                for worker in loaded where worker.unclaim(resource: resId) { try? unload(resId, from: worker) }
                throw error
            }
        }
    }

    func unloadResource(resId: UInt32, patch: String) throws(PluginError) {
        monitor.withLock { resources.removeAll { $0.resId == resId } }
        guard !isFinishing else { return }  // the workers' wrapperFini unloaded it
        var failure: PluginError?
        for worker in slots.compactMap(\.ready) where worker.unclaim(resource: resId) {
            do throws(PluginError) { try unload(resId, from: worker) } catch {
                if failure == nil, worker.lostError == nil { failure = error }
            }
        }
        if let failure { throw failure }
    }

    /// Loads every resource loaded so far into a newly started worker.
    func loadResources(into worker: WorkerConnection) throws(PluginError) {
        for (resId, data) in monitor.withLock({ resources }) where worker.claim(resource: resId) {
            try load(data, resId: resId, into: worker)
        }
    }

    /// After a new worker became ready: loads what was loaded, and unloads what was unloaded, while
    /// it started.
    func reconcileResources(_ worker: WorkerConnection) {
        let wanted = monitor.withLock { resources }
        for (resId, data) in wanted where worker.claim(resource: resId) {
            do throws(PluginError) { try load(data, resId: resId, into: worker) } catch {
                Log.logger.error("worker \(worker.slot): loading resource \(resId) failed: \(error.detail)")
            }
        }
        let ids = Set(wanted.map(\.resId))
        for resId in worker.claimedResources where !ids.contains(resId) && worker.unclaim(resource: resId) {
            try? unload(resId, from: worker)
        }
    }

    private func load(_ data: CopiedCall, resId: UInt32, into worker: WorkerConnection) throws(PluginError) {
        var frame = FrameWriter(.loadResource, id: worker.makeID())
        frame.put(resId)
        _ = try frame.put(nodes: data.call.request, "perData", pool: worker.inputs)
        _ = try worker.request(frame)
    }

    private func unload(_ resId: UInt32, from worker: WorkerConnection) throws(PluginError) {
        var frame = FrameWriter(.unloadResource, id: worker.makeID())
        frame.put(resId)
        _ = try worker.request(frame)
    }

    /// Runs each worker's own `wrapperFini` (its plugin ends its requests — forwarding results
    /// already on their way, which their targets here accept before the reply comes — closes its
    /// sessions, unloads its resources and calls wrapper.py's `wrapperFini`); what the plugin then
    /// ends here needs nothing more from the workers.
    func prepareToFinish() {
        // All workers finish at once: each waits up to 10 s for its calls in progress.
        var sent: [(WorkerConnection, WorkerConnection.Reply, UInt64)] = []
        for worker in slots.compactMap(\.ready) {
            let id = worker.makeID()
            if let reply = try? worker.send(FrameWriter(.finish, id: id)) { sent.append((worker, reply, id)) }
        }
        var result: Int32 = 0
        for (worker, reply, id) in sent {
            do throws(PluginError) { _ = try worker.wait(for: reply, id: id) } catch {
                if result == 0, worker.lostError == nil {
                    ErrorTexts.record(error)
                    result = error.code
                }
            }
        }
        monitor.withLock {
            finishing = true
            finishCode = result
        }
    }

    func finish(waitingAtMost seconds: Int) throws(PluginError) -> Int32 {
        stopAll()
        return monitor.withLock { finishCode }
    }

    /// Whether the workers ran their `wrapperFini` (sessions and resources are gone there).
    private var isFinishing: Bool { monitor.withLock { finishing } }

    // MARK: helpers

    private func open(_ link: any SessionLink) throws(PluginError) -> WorkerSession {
        guard let session = link as? WorkerSession else { throw PluginError(.internalError, "not a worker session") }
        if let lost = session.lost { throw lost }
        return session
    }

    private func output(_ reader: inout FrameReader, _ reply: ReceivedFrame, from worker: WorkerConnection)
        throws(PluginError) -> OutputBatch
    {
        do { return try worker.output(&reader, reply) } catch {
            throw PluginError(.internalError, "worker \(worker.slot) sent a malformed output: \(error.what)")
        }
    }
}

/// A session opened in a worker process: that process and the session's handle there.
final class WorkerSession: SessionLink, @unchecked Sendable {  // `lost` under `lock`
    let worker: WorkerConnection
    /// The create request's id: the route of the session's results.
    let routeID: UInt64
    let remote: UInt64
    let pythonHandle: String
    private let lock = Mutex<PluginError?>(nil)

    init(worker: WorkerConnection, routeID: UInt64, remote: UInt64, pythonHandle: String) {
        self.worker = worker
        self.routeID = routeID
        self.remote = remote
        self.pythonHandle = pythonHandle
    }

    /// Why the session ended with its worker, once it did.
    var lost: PluginError? { lock.withLock { $0 } }

    func markLost(_ error: PluginError) { lock.withLock { $0 = error } }
}

extension FrameWriter {
    /// Writes a one-shot call: usrTag, params, request nodes, personalisation ids.
    mutating func put(call: OnceCall, pool: SegmentPool) throws(PluginError) {
        put(cString: call.usrTag)
        try put(params: call.params, "params")
        _ = try put(nodes: call.request, "reqData", pool: pool)
        put(UInt32(1))
        put(call.personalisationId)
    }
}
