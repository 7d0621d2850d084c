import AigesABI
import CPythonShims
import Glibc
import Logging
import Synchronization

/// One of the `workers` places a worker process runs. Its supervising thread starts the process
/// (`posix_spawn`, never `fork`: the loader is multi-threaded), initialises it, and when it dies
/// — a signal, an exit, the OOM killer, or the watchdog killing it — fails what it had in flight
/// (`WorkerConnection.lose`), logs the cause with its pid and starts a new one: at once the
/// first time, then with a backoff doubling from 100 ms to 10 s while deaths keep coming within a
/// minute of each other. Personalisation resources are loaded into each new process.
final class WorkerSlot: @unchecked Sendable {  // mutable state under `monitor`
    /// 1-based, for logs.
    let index: Int
    private unowned let engine: WorkerEngine
    private let monitor = Monitor()
    private var connection: WorkerConnection?  // the running process, ready for requests
    private var starting: WorkerConnection?  // a process being initialised
    private var startDeadline: Int64 = 0
    private var stopping = false
    private var finished = true  // until the supervising thread starts
    private var firstOutcome: PluginError??  // nil: not yet; .some(nil): ready; .some(error): failed
    /// Processes that died or were killed (for the metrics).
    var deaths: Int { monitor.withLock { deathCount } }
    private var deathCount = 0

    init(index: Int, engine: WorkerEngine) {
        self.index = index
        self.engine = engine
    }

    /// The process ready for requests, if any.
    var ready: WorkerConnection? { monitor.withLock { connection } }

    /// Starts the supervising thread; returns once the first process is ready or failed to start.
    func start() throws(PluginError) {
        monitor.withLock { finished = false }
        let context = Unmanaged.passRetained(self).toOpaque()  // released when the thread ends
        let started = aiges_thread_start(
            { context in
                guard let context else { return }
                Unmanaged<WorkerSlot>.fromOpaque(context).takeRetainedValue().supervise()
            }, context)
        guard started == 0 else {
            Unmanaged<WorkerSlot>.fromOpaque(context).release()
            monitor.withLock { finished = true }
            throw PluginError(
                .initFailed, "cannot start a thread for worker \(index): \(String(cString: strerror(started)))")
        }
        let outcome = monitor.withLock { () -> PluginError? in
            while firstOutcome == nil { monitor.wait() }
            return firstOutcome ?? nil
        }
        if let outcome { throw outcome }
    }

    /// The supervising thread's loop.
    private func supervise() {
        var deaths: [Int64] = []
        var first = true
        while !monitor.withLock({ stopping }) {
            let launched: WorkerConnection
            do throws(PluginError) {
                launched = try launch()
            } catch {
                if first {
                    report(error)
                    break
                }
                if !monitor.withLock({ stopping }) {
                    Log.logger.error("worker \(index) could not be restarted: \(error.detail)")
                }
                deaths.append(monotonicNow())
                pause(nanoseconds: max(backoff(&deaths), 100_000_000))
                continue
            }
            if first { report(nil) }
            first = false
            engine.published()
            engine.reconcileResources(launched)
            let how = launched.waitUntilEnded()  // it failed what it had in flight (`lose`)
            monitor.withLock { connection = nil }
            if monitor.withLock({ stopping }) { break }
            monitor.withLock { deathCount += 1 }
            deaths.append(monotonicNow())
            let delay = backoff(&deaths)
            Log.logger.error(
                "worker \(index) (pid \(launched.pid)) \(how); restarting \(delay == 0 ? "now" : "in \(delay / 1_000_000) ms")"
            )
            pause(nanoseconds: delay)
        }
        monitor.withLock {
            finished = true
            monitor.broadcast()
        }
    }

    /// Waits `nanoseconds` before the next start, or until `stop`.
    private func pause(nanoseconds: Int64) {
        let deadline = monotonicNow() + nanoseconds
        monitor.withLock {
            while !stopping, monitor.wait(until: deadline) {}
        }
    }

    /// The delay before the next start: 0 for the first death in a minute, then 100 ms doubling to 10 s.
    private func backoff(_ deaths: inout [Int64]) -> Int64 {
        let now = monotonicNow()
        deaths.removeAll { now - $0 > 60_000_000_000 }
        guard deaths.count > 1 else { return 0 }
        return min(100_000_000 << Int64(min(deaths.count - 2, 7)), 10_000_000_000)
    }

    private func report(_ error: PluginError?) {
        monitor.withLock {
            firstOutcome = .some(error)
            monitor.broadcast()
        }
    }

    /// Spawns a process, initialises it and loads the resources. - Returns: it, ready.
    private func launch() throws(PluginError) -> WorkerConnection {
        var pair: [Int32] = [-1, -1]
        guard aiges_socket_pair(&pair) == 0 else {
            throw PluginError(
                .initFailed, "worker \(index): cannot make a socket pair: \(String(cString: strerror(errno)))")
        }
        let ends = (pair[0], pair[1])
        defer { close(ends.1) }  // the child's end: the child has its own copy
        let program = engine.program
        let arguments = [program, "--parent", String(getpid()), "--slot", String(index)]
        var pid: Int32 = 0
        let spawned = withCStrings(arguments) { argv in aiges_spawn(program, argv, ends.1, &pid) }
        guard spawned == 0 else {
            close(ends.0)
            throw PluginError(
                .initFailed, "worker \(index): cannot start \(program): \(String(cString: strerror(errno)))")
        }
        let launched = WorkerConnection(pid: pid, slot: index, channel: FrameChannel(descriptor: ends.0))
        let stoppedEarly = monitor.withLock { () -> Bool in
            starting = launched
            startDeadline = monotonicNow() + engine.startTimeout
            return stopping
        }
        startReader(for: launched)
        if stoppedEarly { launched.stop() }  // wrapperFini came while it was being spawned
        do throws(PluginError) {
            var frame = FrameWriter(.initialize, id: launched.makeID())
            frame.put(pairs: engine.workerConfig)
            frame.put(UInt8((LoaderHooks.meter != nil ? 1 : 0) | (LoaderHooks.trace != nil ? 2 : 0)))
            frame.put(UInt32(engine.concurrency))
            frame.put(UInt32(engine.heartbeatMilliseconds))
            var (_, reader) = try launched.request(frame)
            guard let mask = try? reader.read(UInt32.self) else {
                throw PluginError(.initFailed, "worker \(index) sent a malformed init reply")
            }
            engine.learn(methods: mask)
            launched.markAlive()
            try engine.loadResources(into: launched)
        } catch {
            let died = launched.lostError != nil  // rather than answering (its own text)
            launched.stop()
            let how = launched.waitUntilEnded()
            monitor.withLock { starting = nil }
            Log.logger.debug("worker \(index) (pid \(launched.pid)) \(how) after a failed start")
            if died { throw PluginError(.initFailed, "worker \(index) (pid \(launched.pid)) \(how) while starting") }
            // The worker's own text: a syntax error, a missing class, its wrapperInit's code.
            throw error
        }
        let stopped = monitor.withLock { () -> Bool in
            starting = nil
            if !stopping { connection = launched }
            return stopping
        }
        if stopped {
            launched.stop()
            _ = launched.waitUntilEnded()
            throw PluginError(.shutDown, "wrapperFini stopped worker \(index) while it started")
        }
        Log.logger.info("worker \(index) started (pid \(launched.pid))")
        return launched
    }

    /// Reads `launched`'s frames on a thread of its own until its socket ends or breaks.
    private func startReader(for launched: WorkerConnection) {
        let context = Unmanaged.passRetained(launched).toOpaque()  // released when the thread ends
        let started = aiges_thread_start(
            { context in
                guard let context else { return }
                let connection = Unmanaged<WorkerConnection>.fromOpaque(context).takeRetainedValue()
                connection.readUntilEnd()
            }, context)
        if started != 0 {
            Unmanaged<WorkerConnection>.fromOpaque(context).release()
            launched.channel.shutDown()
            Glibc.kill(launched.pid, SIGKILL)
        }
    }

    /// Called every 100 ms by the engine's watchdog: kills a process that did not finish starting
    /// in time, or sent no heartbeat for `watchdog` ns (0: never).
    func watch(now: Int64, watchdog: Int64) {
        let (current, startingOne, deadline) = monitor.withLock { (connection, starting, startDeadline) }
        (current ?? startingOne)?.checkExited()
        if let startingOne, now > deadline {
            startingOne.kill(reason: "did not finish starting within \(engine.startTimeout / 1_000_000) ms")
        }
        guard let current, watchdog > 0 else { return }
        if current.silence(now: now) > watchdog {
            current.kill(reason: "stopped answering for \(watchdog / 1_000_000) ms (watchdog)")
        }
    }

    /// Stops supervising and ends the process (after its wrapperFini ran): closes its socket, and
    /// waits until the supervising thread has reaped it and ended — also when it was spawning one.
    func stop() {
        monitor.withLock {
            stopping = true
            monitor.broadcast()
        }
        while true {
            let (current, done) = monitor.withLock { (connection ?? starting, finished) }
            if done { return }
            current?.stop()  // the worker exits at end of stream
            monitor.withLock { if !finished { _ = monitor.wait(until: monotonicNow() + 50_000_000) } }
        }
    }
}

/// Calls `body` with a NULL-terminated C array of `strings` (valid during the call).
private func withCStrings<Result>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> Result)
    -> Result
{
    let copies = strings.map { strdup($0) }  // freed below
    defer { copies.forEach { free($0) } }
    return (copies + [nil]).withUnsafeBufferPointer { body($0.baseAddress.unsafelyUnwrapped) }
}
