import AigesABI
import CPythonShims
import Glibc
import Logging
import Synchronization

/// One running worker process, seen from the plugin: its pid, its control socket, the segments
/// each side lends the other, and the requests waiting for it. Made when the process is spawned;
/// when the process ends, `lose` fails everything still waiting with `workerLost` (22017).
final class WorkerConnection: @unchecked Sendable {  // mutable state under `monitor`
    let pid: pid_t
    /// The slot this process fills (1-based, for logs).
    let slot: Int
    let channel: FrameChannel
    /// Segments the plugin writes request payloads into.
    let inputs: SegmentPool
    /// The worker's output segments, mapped here.
    let outputs = PeerSegments()
    private let monitor = Monitor()
    private var nextID: UInt64 = 1
    private var replies: [UInt64: Reply] = [:]
    private var routes: [UInt64: Route] = [:]
    private var lost: PluginError?
    private var resources: Set<UInt32> = []
    private var inFlight = 0
    /// When the worker last proved it can enter its interpreter (monotonic ns), for the watchdog.
    private var lastHeartbeat = Int64.max

    /// Where one request's reply goes: the thread waiting for it.
    final class Reply: @unchecked Sendable {  // state under the connection's monitor
        fileprivate var frame: ReceivedFrame?
        fileprivate var error: PluginError?
    }

    /// Where results delivered later go: an async request's or a session's target.
    final class Route: @unchecked Sendable {  // immutable but `session`, set once before use
        let target: CallbackTarget
        let once: Bool
        var session: WorkerSession?
        init(target: CallbackTarget, once: Bool) {
            self.target = target
            self.once = once
        }
    }

    deinit { close(kick) }

    init(pid: pid_t, slot: Int, channel: FrameChannel) {
        self.pid = pid
        self.slot = slot
        self.channel = channel
        self.inputs = SegmentPool(channel: channel)
    }

    /// Requests in progress (one-shot sync and async), for least-loaded dispatch.
    var load: Int { monitor.withLock { inFlight } }

    /// Counts a one-shot request in or out.
    func enter() { monitor.withLock { inFlight += 1 } }
    func leave() { monitor.withLock { inFlight -= 1 } }

    /// Marks personalisation resource `resId` as held by this worker. - Returns: false if it was.
    func claim(resource resId: UInt32) -> Bool { monitor.withLock { resources.insert(resId).inserted } }

    /// Marks `resId` as not held. - Returns: whether it was.
    @discardableResult
    func unclaim(resource resId: UInt32) -> Bool { monitor.withLock { resources.remove(resId) != nil } }

    /// The resources this worker holds.
    var claimedResources: [UInt32] { monitor.withLock { Array(resources) } }

    /// Why the process is gone, once it is.
    var lostError: PluginError? { monitor.withLock { lost } }

    /// A new request id.
    func makeID() -> UInt64 {
        monitor.withLock {
            defer { nextID += 1 }
            return nextID
        }
    }

    /// Sends `frame` and waits for its reply; `route`, if given, receives the request's later
    /// results from the moment the frame is sent (the caller removes it, with `forget`, if the
    /// request fails). With a `deadline` (monotonic ns) the wait gives up then (`workerLost`), and
    /// this thread leaves reading to others.
    /// - Returns: the reply, positioned after its code and text (code 0); throws the reply's error,
    ///   or `workerLost` if the process went away first.
    func request(_ frame: consuming FrameWriter, route: Route? = nil, deadline: Int64? = nil) throws(PluginError)
        -> (ReceivedFrame, FrameReader)
    {
        let id = frame.id
        let reply = try send(frame, route: route)
        return try wait(for: reply, id: id, deadline: deadline)
    }

    /// Sends a request frame (see `request`) and returns where its reply will arrive.
    func send(_ frame: consuming FrameWriter, route: Route? = nil) throws(PluginError) -> Reply {
        let id = frame.id
        let leases = frame.leases
        guard frame.fits else {
            for lease in leases { inputs.doneWriting(lease, sent: false) }
            throw PluginError(
                .invalidArgument, "the request is over \(Payload.frameLimit >> 20) MiB of keys and params")
        }
        let reply = Reply()
        let registered = monitor.withLock { () -> PluginError? in
            if let lost { return lost }
            if ended { return PluginError(.workerLost, "worker \(slot) (pid \(pid)) is ending") }
            replies[id] = reply
            if let route { routes[id] = route }
            return nil
        }
        if let registered {
            for lease in leases { inputs.doneWriting(lease, sent: false) }
            throw registered
        }
        let sent = channel.send(frame.finish())
        for lease in leases { inputs.doneWriting(lease, sent: sent) }
        guard sent else {
            monitor.withLock {
                replies[id] = nil
                routes[id] = nil
            }
            throw lostError ?? PluginError(.workerLost, "worker \(slot) (pid \(pid)): its socket is closed")
        }
        return reply
    }

    /// Waits for the reply of request `id` (see `request`).
    func wait(for reply: Reply, id: UInt64, deadline: Int64? = nil) throws(PluginError) -> (ReceivedFrame, FrameReader)
    {
        let received = try monitor.withLock { () throws(PluginError) -> ReceivedFrame in
            if let deadline {
                while reply.frame == nil, reply.error == nil {
                    if !monitor.wait(until: deadline), reply.frame == nil, reply.error == nil {
                        replies[id] = nil
                        throw PluginError(.workerLost, "worker \(slot) (pid \(pid)) did not answer in time")
                    }
                }
            } else {
                waitLocked(for: reply)
            }
            if let error = reply.error { throw error }
            return reply.frame.unsafelyUnwrapped
        }
        var reader = received.reader
        let code: Int32
        let text: String
        do throws(WireError) {
            code = try reader.read(Int32.self)
            text = try reader.readText()
        } catch {
            throw PluginError(.internalError, "worker \(slot) sent a malformed reply: \(error.what)")
        }
        if code != 0 { throw PluginError(wrapperCode: code, text: text) }
        return (received, reader)
    }

    /// Whether requests may be sent: the process has not been lost and its socket has not ended.
    var isUsable: Bool { monitor.withLock { lost == nil && !ended } }

    /// Sends a frame that gets no reply (`release`, `ping`); false if the process is gone.
    @discardableResult
    func post(_ frame: consuming FrameWriter) -> Bool { channel.send(frame.finish()) }

    /// Tells the worker its segments `ids` are free again, from the reading thread: whoever drops
    /// an output (`wrapperExecFree`, a callback's return) never waits on the socket.
    func releaseLater(_ ids: [UInt32]) {
        let first = monitor.withLock { () -> Bool in
            defer { releases += ids }
            return releases.isEmpty
        }
        if first { aiges_event_signal(kick) }
    }

    /// Sends the releases queued by `releaseLater` (reading thread).
    private func sendReleases() {
        let ids = monitor.withLock { () -> [UInt32] in
            defer { releases = [] }
            return releases
        }
        for id in ids {
            var frame = FrameWriter(.release, id: 0)
            frame.put(id)
            post(frame)
        }
    }

    /// Stops routing results for request `id` (its session was destroyed, its request ended).
    /// - Returns: whether it was routed (whoever removes a one-shot route counts it out: `leave`).
    @discardableResult
    func forget(route id: UInt64) -> Bool { monitor.withLock { routes.removeValue(forKey: id) != nil } }

    // MARK: the reading thread

    private var readerDone = false  // under `finished`
    private var endCause = ""  // under `finished`
    private var stopped = false  // ended on purpose (`stop`)
    private var reaping = false  // the pid may be gone: never signalled again
    private var killReason: String?
    /// Signals the end of the reading thread (apart from `monitor`: its waiter must not be woken
    /// by every broadcast of the request traffic).
    private let finished = Monitor()

    // Reading takes turns: a thread waiting for a reply reads the socket itself when nobody else
    // does, handling every frame that comes (replies for others, results, heartbeats), so a reply
    // wakes its caller directly rather than a reading thread that then wakes the caller. The
    // connection's own reading thread reads only while no caller waits: between calls, and for
    // results of async requests and push sessions.
    private var reading = false  // a thread holds the reading turn
    private var callers = 0  // threads waiting for a reply
    private var polling = false  // the reading thread waits in poll() (a caller kicks it out)
    private var ended = false  // the socket ended or broke
    private let kick = aiges_event_new()  // closed in deinit
    private var releases: [UInt32] = []  // worker segments to tell it are free (`releaseLater`)

    /// Waits until `reply` has its frame or error, reading in turn (monitor held).
    private func waitLocked(for reply: Reply) {
        callers += 1
        if polling { aiges_event_signal(kick) }  // the reading thread steps back
        while reply.frame == nil, reply.error == nil {
            if !reading, !ended {
                readTurnLocked(byCaller: true)
                continue
            }
            monitor.wait()
        }
        callers -= 1
    }

    /// How long a caller busy-polls for its reply before sleeping: about one round trip of a tiny
    /// call, so most of them are read without a wake-up.
    static let spin: Int64 = 30_000

    /// Reads and handles one frame (monitor held; released meanwhile).
    private func readTurnLocked(byCaller: Bool) {
        reading = true
        let alive = monitor.unlocked { () -> Bool in
            if byCaller { channel.spinForInput(nanoseconds: Self.spin) }
            do throws(WireError) {
                guard let frame = try channel.receive() else { return false }
                try handle(frame)
                // Frames that came in the same read (another caller's reply, a result) are handled
                // now, not left in the buffer while the reading thread waits on the socket.
                while channel.hasBufferedFrame, let next = try channel.receive() { try handle(next) }
                return true
            } catch {
                Log.logger.error("worker \(slot) (pid \(pid)) sent a malformed frame (\(error.what)); killing it")
                kill(reason: "it sent a malformed frame (\(error.what))")
                return false
            }
        }
        reading = false
        if !alive { ended = true }
        if callers > (byCaller ? 1 : 0) || !alive { monitor.broadcast() }  // another caller may read now
    }

    /// The connection's reading thread: reads while no caller waits, until the socket ends (the
    /// process died or was stopped) or a frame is malformed (the process is killed). Then it reaps
    /// the process and fails what waits for it (`lose`) with how it ended.
    func readUntilEnd() {
        monitor.withLock {
            while !ended {
                if !releases.isEmpty { monitor.unlocked { sendReleases() } }
                if reading || callers > 0 {
                    // A caller reads: look again in a millisecond (sleeping, not waiting on the
                    // monitor, so that callers' broadcasts do not wake this thread for nothing).
                    monitor.unlocked { _ = usleep(1000) }
                    continue
                }
                if channel.hasBufferedFrame {  // read along with a caller's reply
                    readTurnLocked(byCaller: false)
                    continue
                }
                polling = true
                let ready = monitor.unlocked { aiges_wait_readable(channel.descriptor, kick, -1) }
                polling = false
                if ready & 1 != 0, !reading, callers == 0 { readTurnLocked(byCaller: false) }
            }
            monitor.broadcast()
        }
        let how = reap()
        let error =
            monitor.withLock { stopped }
            ? PluginError(.shutDown, "wrapperFini stopped worker \(slot) (pid \(pid))")
            : PluginError(.workerLost, "worker \(slot) (pid \(pid)) \(how)")
        lose(error)
        finished.withLock {
            endCause = how
            readerDone = true
            finished.broadcast()
        }
    }

    /// Reaps the process once its socket ended: normally it has exited; one that closed the socket
    /// but lives on gets a second to go, then SIGKILL. - Returns: how it ended, for texts.
    private func reap() -> String {
        monitor.withLock { reaping = true }  // from now on `kill` leaves the pid alone
        var code: Int32 = -1
        var signal: Int32 = 0
        var reaped = aiges_wait_child(pid, 0, &code, &signal)
        var waited = 0
        while reaped == 0, waited < 100 {
            usleep(10_000)
            waited += 1
            reaped = aiges_wait_child(pid, 0, &code, &signal)
        }
        if reaped == 0 {
            Glibc.kill(pid, SIGKILL)
            reaped = aiges_wait_child(pid, 1, &code, &signal)
        }
        let how: String
        if reaped != 1 {
            how = "ended (exit status unknown)"
        } else if signal != 0 {
            how = "was killed by signal \(signal) (\(String(cString: strsignal(signal))))"
        } else {
            how = "exited with status \(code)"
        }
        return monitor.withLock { killReason }.map { "\(how): \($0)" } ?? how
    }

    /// SIGKILLs the process (unless it is being reaped), naming `reason` in its end's text.
    func kill(reason: String) {
        monitor.withLock {
            guard !reaping else { return }
            if killReason == nil { killReason = reason }
            Glibc.kill(pid, SIGKILL)
        }
    }

    /// Ends the process on purpose (`wrapperFini`, a failed start): closes the socket; the worker
    /// exits at end of stream, and what still waits fails with `shutDown`.
    func stop() {
        monitor.withLock { stopped = true }
        channel.shutDown()
    }

    /// Waits until the process ended and was reaped. - Returns: how it ended.
    func waitUntilEnded() -> String {
        finished.withLock {
            while !readerDone { finished.wait() }
            return endCause
        }
    }

    /// Ends the socket if the process has exited though the socket is still open (a child it
    /// forked holds its end), so that the reading thread stops.
    func checkExited() {
        if aiges_child_exited(pid) != 0 { channel.shutDown() }
    }

    /// Handles one frame from the worker (on the connection's reading thread).
    func handle(_ frame: ReceivedFrame) throws(WireError) {
        var reader = frame.reader
        switch frame.kind {
        case .reply:
            monitor.withLock {
                guard let reply = replies.removeValue(forKey: frame.id) else { return }
                reply.frame = frame
                monitor.broadcast()
            }
        case .callback:
            let route = monitor.withLock { routes[frame.id] }
            guard let route else { return }  // its request ended here already
            let ret = try reader.read(Int32.self)
            let text = try reader.readText()
            let batch = try output(&reader, frame)
            let count = batch.count
            let final = route.once || ret != 0 || batch.hasFinalStatus
            if final, route.once, forget(route: frame.id) { leave() }
            let error = ret != 0 ? PluginError(wrapperCode: ret, text: text) : nil
            if let error { ErrorTexts.record(error) }
            // Accepted now (in order: before a later reply, e.g. wrapperFini's), passed on elsewhere.
            route.target.offer(
                Delivery(batch: count > 0 || ret == 0 ? batch : nil, ret: ret, error: error), final: final,
                deliverHere: false)
        case .segment, .dropSegment, .release:
            try handleSegmentFrame(&reader, channel: channel, mine: inputs, peers: outputs)
        case .metric:
            let tag = try reader.readText()
            let key = try reader.readText()
            let count = try reader.read(Int32.self)
            guard let hook = LoaderHooks.meter else { return }
            CallbackRunner.pool.submit { _ = tag.withCString { tag in key.withCString { hook(tag, $0, count) } } }
        case .trace:
            let tag = try reader.readText()
            let key = try reader.readText()
            let value = try reader.readText()
            guard let hook = LoaderHooks.trace else { return }
            CallbackRunner.pool.submit {
                _ = tag.withCString { tag in key.withCString { key in value.withCString { hook(tag, key, $0) } } }
            }
        case .heartbeat:
            monitor.withLock { lastHeartbeat = monotonicNow() }
        default:
            throw WireError(what: "unexpected \(frame.kind) frame from a worker")
        }
    }

    /// The output list that follows in `reader` (its payloads stay in `frame` and the worker's
    /// segments until the batch is dropped).
    func output(_ reader: inout FrameReader, _ frame: ReceivedFrame) throws(WireError) -> OutputBatch {
        var lists = WireLists()
        let (head, count) = try lists.nodes(&reader, peer: outputs, hold: true)
        let hold = OutputHold(self, segments: lists.segments, frame: frame)
        return OutputBatch(wire: lists, head: head, count: count, keepAlive: hold)
    }

    /// How long since the worker's last heartbeat (or since it became ready), in ns.
    func silence(now: Int64) -> Int64 { monitor.withLock { now - lastHeartbeat } }

    /// Starts the watchdog's clock (the worker just answered its init).
    func markAlive() { monitor.withLock { lastHeartbeat = monotonicNow() } }

    /// The process is gone (`error` says how): every waiting request fails with it, async requests
    /// and push sessions get it as their final callback, pull sessions on their next call.
    func lose(_ error: PluginError) {
        let (waiting, routed) = monitor.withLock { () -> ([Reply], [Route]) in
            guard lost == nil else { return ([], []) }
            lost = error
            defer {
                replies = [:]
                routes = [:]
            }
            return (Array(replies.values), Array(routes.values))
        }
        ErrorTexts.record(error)
        monitor.withLock {
            for reply in waiting { reply.error = error }
            monitor.broadcast()
        }
        for route in routed {
            route.session?.markLost(error)
            if route.once { leave() }
            // Async requests and push sessions get it as their final callback; a pull session on
            // its next write or read (its session is marked lost).
            guard route.once || route.target.pushes else { continue }
            route.target.offer(Delivery(batch: nil, ret: error.code, error: error), final: true, deliverHere: false)
        }
        inputs.close()
        outputs.close()
    }
}

/// Keeps a worker's output alive while the loader reads it: the frame its inline payloads sit in,
/// and its holds on the worker's segments; dropping it tells the worker the segments are free.
final class OutputHold: @unchecked Sendable {  // set up once, then only dropped
    private let connection: WorkerConnection
    private let segments: [UInt32]
    private let frame: ReceivedFrame

    init(_ connection: WorkerConnection, segments: [UInt32], frame: ReceivedFrame) {
        self.connection = connection
        self.segments = segments
        self.frame = frame
    }

    deinit {
        let free = segments.filter { connection.outputs.letGo($0) }
        if !free.isEmpty { connection.releaseLater(free) }
    }
}
