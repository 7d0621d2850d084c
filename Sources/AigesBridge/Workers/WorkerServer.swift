import AigesABI
import CPython
import CPythonShims
import Glibc
import Synchronization

/// A worker process's side (the `aiges-worker` program): serves the plugin over fd 3 by calling
/// this process's own in-process plugin through the very entry points the loader uses (`Plugin`),
/// so wrapper.py sees exactly what it sees in-process.
///
/// Requests run on up to `workers.concurrency` threads; results wrapper.py delivers later (async
/// requests, push sessions) go back as `callback` frames. Payloads the plugin sends in its
/// segments are lent to Python without a copy (`SharedInputs`); outputs are written once into this
/// worker's segments. The worker exits when the plugin closes its end of the socket or dies.
public enum WorkerServer {
    nonisolated(unsafe) private static var channel: FrameChannel!  // set once in `run`, before any thread
    nonisolated(unsafe) private static var outputs: SegmentPool!
    private static let inputs = PeerSegments()
    private static let calls = CallThreads(read: receive, control: control, serve: serve)
    private static let finisher = WorkerPool(name: "worker fini", maximumThreads: 1, idleSeconds: 5)
    private static let routes = Mutex<[UInt: Route]>([:])

    /// Where a loader-side callback target's results go: the plugin's request id, and the usrTag
    /// copy handed to `Plugin` as this request's tag pointer (freed with the route).
    private struct Route: @unchecked Sendable {  // the tag pointer is only freed by `unroute`
        let id: UInt64
        let tag: UnsafeMutablePointer<CChar>
        let once: Bool
    }

    /// Serves until the plugin goes away. `arguments`: `--parent <pid>`.
    public static func run(arguments: [String]) -> Int32 {
        guard let index = arguments.firstIndex(of: "--parent"), index + 1 < arguments.count,
            let parent = Int32(arguments[index + 1])
        else {
            complain("started by libwrapper.so (config workers), not by hand")
            return 2
        }
        guard aiges_die_with_parent(parent) == 0 else { return 3 }  // the plugin is already gone
        if let index = arguments.firstIndex(of: "--slot"), index + 1 < arguments.count {
            PluginLogHandler.processTag = "[worker \(arguments[index + 1]) pid \(getpid())] "
        }
        aiges_close_on_exec(3)  // programs wrapper.py runs must not keep the plugin's socket open
        channel = FrameChannel(descriptor: 3)
        outputs = SegmentPool(channel: channel)
        SharedInputs.active.store(true, ordering: .relaxed)
        calls.run()
    }

    /// The next frame; ends the process when the plugin closed the socket (after wrapperFini) or
    /// died, or sent a malformed frame.
    private static func receive() -> ReceivedFrame {
        channel.spinForInput(nanoseconds: WorkerConnection.spin)  // back-to-back calls: no wake-up
        do {
            guard let frame = try channel.receive() else { _exit(0) }
            return frame
        } catch {
            complain(error.what)
            _exit(4)
        }
    }

    /// A line on stderr (the plugin's log is not open before init).
    private static func complain(_ text: String) {
        let line = "aiges-worker \(getpid()): \(text)\n"
        _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
    }

    /// Handles a control frame. - Returns: false for a call (served by `calls`).
    private static func control(_ frame: ReceivedFrame) -> Bool {
        do { return try handleControl(frame) } catch {
            complain(error.what)
            _exit(4)
        }
    }

    private static func handleControl(_ frame: ReceivedFrame) throws(WireError) -> Bool {
        var reader = frame.reader
        switch frame.kind {
        case .segment, .dropSegment, .release:
            try handleSegmentFrame(&reader, channel: channel, mine: outputs, peers: inputs)
        case .initialize:
            serveInitialize(frame)  // on this thread: nothing else arrives before its reply
        case .cancel:
            let tag = routes.withLock { routes in routes.values.first { $0.id == frame.id && $0.once }?.tag }
            if let tag, let target = CallbackTargets.target(usrTag: tag) {
                let error = PluginError(.timeout, "the plugin's timeout for this request passed")
                target.offer(Delivery(batch: nil, ret: error.code, error: error), final: true)
            }
        case .finish:
            finisher.submit { serve(frame) }  // wrapperFini waits for calls in progress: never queued behind them
        default:
            return false
        }
        return true
    }

    private static func serveInitialize(_ frame: ReceivedFrame) {
        var reply = FrameWriter(.reply, id: frame.id)
        do throws(WireError) {
            var reader = frame.reader
            var lists = WireLists()
            let config = try lists.params(&reader)
            let hooks = try reader.read(UInt8.self)
            let concurrency = try reader.read(UInt32.self)
            let heartbeat = try reader.read(UInt32.self)
            calls.setLimit(Int(concurrency))
            if hooks & 1 != 0 {
                try? LoaderHooks.set(
                    type: CTMeterCustom, function: unsafeBitCast(forwardMeter, to: UnsafeMutableRawPointer.self))
            }
            if hooks & 2 != 0 {
                try? LoaderHooks.set(
                    type: CTTraceLog, function: unsafeBitCast(forwardTrace, to: UnsafeMutableRawPointer.self))
            }
            let code = outcome { () throws(PluginError) in try Plugin.initialize(config: config) }
            put(code, into: &reply)
            if code == nil {
                reply.put(Plugin.definedMethodsMask)
                if heartbeat > 0 { startHeartbeat(every: Int(heartbeat)) }
            }
        } catch {
            put(PluginError(.internalError, "malformed init frame: \(error.what)"), into: &reply)
        }
        channel.send(reply.finish())
    }

    /// Runs one call and sends its reply.
    private static func serve(_ frame: ReceivedFrame) {
        var reply = FrameWriter(.reply, id: frame.id)
        do throws(WireError) {
            var reader = frame.reader
            var lists = WireLists()
            switch frame.kind {
            case .exec:
                let call = try Call(&reader, &lists)
                let lease = SharedInputs.register(
                    payloads: call.payloads, segments: call.segments, release: releaseInput)
                defer { SharedInputs.unregister(lease) }
                var response: UnsafeMutablePointer<DataList>?
                let code = outcome { () throws(PluginError) in
                    try call.tag.withUnsafeBufferPointer { tag throws(PluginError) in
                        try Plugin.exec(
                            usrTag: tag.baseAddress, params: call.params, request: call.request, response: &response,
                            personalisationIds: call.persIds, personalisationCount: call.persCount)
                    }
                }
                putOutput(code, response, into: &reply)
                if response != nil { try? Plugin.releaseExecOutput(&response) }
            case .execBatch:
                let count = Int(try reader.read(UInt32.self))
                guard count > 0, count <= 1 << 16 else { throw WireError(what: "a batch of \(count)") }
                var calls: [Call] = []
                for _ in 0..<count { calls.append(try Call(&reader, &lists)) }
                let leases = calls.map {
                    SharedInputs.register(payloads: $0.payloads, segments: $0.segments, release: releaseInput)
                }
                defer { leases.forEach(SharedInputs.unregister) }
                serveBatch(calls, into: &reply)
            case .execAsync:
                let call = try Call(&reader, &lists)
                let timeout = try reader.read(Int32.self)
                let lease = SharedInputs.register(
                    payloads: call.payloads, segments: call.segments, release: releaseInput)
                defer { SharedInputs.unregister(lease) }
                let tag = route(frame.id, tag: call.tag, once: true)
                let code = outcome { () throws(PluginError) in
                    try Plugin.execAsync(
                        usrTag: tag, params: call.params, request: call.request, callback: forwardCallback,
                        timeout: timeout, personalisationIds: call.persIds, personalisationCount: call.persCount)
                }
                if code != nil { unroute(tag) }
                put(code, into: &reply)
            case .create:
                let call = try Call(&reader, &lists)
                let push = try reader.read(UInt8.self) != 0
                let tag = route(frame.id, tag: call.tag, once: false)
                var handle: UnsafeRawPointer?
                let code = outcome { () throws(PluginError) in
                    handle = try Plugin.createSession(
                        usrTag: tag, params: call.params, callback: push ? forwardCallback : nil,
                        personalisationIds: call.persIds, personalisationCount: call.persCount)
                }
                put(code, into: &reply)
                if code == nil, let handle {
                    sessionTags.withLock { $0[UInt(bitPattern: handle)] = UInt(bitPattern: tag) }
                    reply.put(UInt64(UInt(bitPattern: handle)))
                    reply.put(Plugin.pythonHandle(of: handle) ?? "")
                } else {
                    unroute(tag)
                }
            case .write:
                let handle = try sessionHandle(&reader)
                let (head, _) = try lists.nodes(&reader, peer: inputs, hold: false)
                let lease = SharedInputs.register(
                    payloads: lists.segmentPayloads, segments: lists.segments, release: releaseInput)
                defer { SharedInputs.unregister(lease) }
                put(outcome { () throws(PluginError) in try Plugin.write(handle: handle, request: head) }, into: &reply)
            case .read:
                let handle = try sessionHandle(&reader)
                var response: UnsafeMutablePointer<DataList>?
                let code = outcome { () throws(PluginError) in try Plugin.read(handle: handle, response: &response) }
                putOutput(code, response, into: &reply)
            case .destroy:
                let handle = try sessionHandle(&reader)
                let code = outcome { () throws(PluginError) in try Plugin.destroy(handle: handle) }
                // No callback of the session runs any more: its tag can go.
                if let tag = sessionTags.withLock({ $0.removeValue(forKey: UInt(bitPattern: handle)) }),
                    let pointer = UnsafeMutablePointer<CChar>(bitPattern: tag)
                {
                    unroute(pointer)
                }
                put(code, into: &reply)
            case .debugInfo:
                let handle = try sessionHandle(&reader)
                reply.put(Int32(0))
                reply.put("")
                reply.put(String(cString: Plugin.debugInfo(handle: handle)))
            case .loadResource:
                let resId = try reader.read(UInt32.self)
                let (head, _) = try lists.nodes(&reader, peer: inputs, hold: false)
                let lease = SharedInputs.register(
                    payloads: lists.segmentPayloads, segments: lists.segments, release: releaseInput)
                defer { SharedInputs.unregister(lease) }
                put(outcome { () throws(PluginError) in try Plugin.loadResource(head, resId: resId) }, into: &reply)
            case .unloadResource:
                let resId = try reader.read(UInt32.self)
                put(outcome { () throws(PluginError) in try Plugin.unloadResource(resId: resId) }, into: &reply)
            case .errorText:
                let code = try reader.read(Int32.self)
                reply.put(Int32(0))
                reply.put("")
                reply.put(String(cString: Plugin.errorText(code)))
            case .finish:
                put(outcome { () throws(PluginError) in try Plugin.finish() }, into: &reply)
            default:
                throw WireError(what: "unexpected \(frame.kind) frame")
            }
        } catch {
            reply = FrameWriter(.reply, id: frame.id)
            put(PluginError(.internalError, "malformed \(frame.kind) frame: \(error.what)"), into: &reply)
        }
        sendWritten(reply)
    }

    /// Sends a frame whose payloads may be in this worker's segments, then lends them to the plugin
    /// (or frees them if the frame could not go). A frame too large to send becomes an error reply.
    private static func sendWritten(_ frame: consuming FrameWriter) {
        let leases = frame.leases
        guard frame.fits else {
            for lease in leases { outputs.doneWriting(lease, sent: false) }
            var error = FrameWriter(frame.kind, id: frame.id)
            if frame.kind == .callback {
                error.put(PluginErrorCode.invalidOutput.rawValue)
                error.put("the output is over \(Payload.frameLimit >> 20) MiB of keys and desc")
                error.put(UInt32(0))
            } else {
                put(
                    PluginError(.invalidOutput, "the output is over \(Payload.frameLimit >> 20) MiB of keys and desc"),
                    into: &error)
            }
            channel.send(error.finish())
            return
        }
        let sent = channel.send(frame.finish())
        for lease in leases { outputs.doneWriting(lease, sent: sent) }
    }

    /// Runs one `wrapperOnceExecBatch` through this worker's own engine and writes each result.
    private static func serveBatch(_ calls: [Call], into reply: inout FrameWriter) {
        let results: [Result<OutputBatch, PluginError>]
        do throws(PluginError) {
            let engine = try Plugin.running()
            results = try calls.withTags { onceCalls throws(PluginError) in try engine.execBatch(onceCalls) }
        } catch {
            ErrorTexts.record(error)
            return put(error, into: &reply)
        }
        let id = reply.id
        put(nil, into: &reply)
        reply.put(UInt32(results.count))
        for result in results {
            switch result {
            case .failure(let error):
                ErrorTexts.record(error)
                put(error, into: &reply)
            case .success(let batch):
                reply.put(Int32(0))
                reply.put("")
                do throws(PluginError) {
                    _ = try reply.put(nodes: batch.head, "output", pool: outputs)
                } catch {
                    for lease in reply.leases { outputs.doneWriting(lease, sent: false) }
                    reply = FrameWriter(.reply, id: id)
                    return put(error, into: &reply)
                }
            }
        }
    }

    /// Session handles → the tag copy routed for that session.
    private static let sessionTags = Mutex<[UInt: UInt]>([:])  // handle → tag address

    private static func sessionHandle(_ reader: inout FrameReader) throws(WireError) -> UnsafeRawPointer? {
        UnsafeRawPointer(bitPattern: UInt(try reader.read(UInt64.self)))
    }

    /// One request's arguments as read from a frame (pointers into `lists` and the frame).
    struct Call {
        var tag: [CChar]
        var params: UnsafeMutablePointer<ParamList>?
        var request: UnsafeMutablePointer<DataList>?
        var segments: [UInt32]
        var payloads: [UInt]
        var persIds: UnsafeMutablePointer<UInt32>?
        var persCount: Int32

        init(_ reader: inout FrameReader, _ lists: inout WireLists) throws(WireError) {
            tag = Array(try reader.readRun().bindMemory(to: CChar.self)) + [0]
            params = try lists.params(&reader)
            request = try lists.nodes(&reader, peer: WorkerServer.inputs, hold: false).head
            segments = lists.segments
            payloads = lists.segmentPayloads
            let count = Int(try reader.read(UInt32.self))
            guard count <= 1 << 20 else { throw WireError(what: "\(count) personalisation ids") }
            persCount = Int32(count)
            if count > 0 {
                guard let ids = try? lists.memory.allocate(UInt32.self, count: count) else {  // freed with `lists`
                    throw WireError(what: "out of memory")
                }
                for index in 0..<count { ids[index] = try reader.read(UInt32.self) }
                persIds = ids
            }
        }
    }

    /// Runs `body` as an entry point does, without the entry point's logging (the plugin logs it).
    private static func outcome(_ body: () throws(PluginError) -> Void) -> PluginError? {
        do {
            try body()
            return nil
        } catch {
            ErrorTexts.record(error)
            return error
        }
    }

    /// The text the plugin records for `error`: its detail, or for one of wrapper.py's codes
    /// without one, wrapper.py's `wrapperError(code)` — so the plugin need not ask later.
    private static func text(of error: PluginError) -> String {
        guard error.detail.isEmpty, !error.isPluginCode else { return error.detail }
        return String(cString: Plugin.errorText(error.code))
    }

    /// Writes a reply's code and text.
    private static func put(_ error: PluginError?, into reply: inout FrameWriter) {
        reply.put(error?.code ?? 0)
        reply.put(error.map(text(of:)) ?? "")
    }

    /// Writes a reply's code and text, then (on success) the output nodes.
    private static func putOutput(
        _ error: PluginError?, _ response: UnsafeMutablePointer<DataList>?, into reply: inout FrameWriter
    ) {
        if error != nil { return put(error, into: &reply) }
        let id = reply.id
        reply.put(Int32(0))
        reply.put("")
        do throws(PluginError) {
            _ = try reply.put(nodes: response, "output", pool: outputs)
        } catch {
            reply = FrameWriter(.reply, id: id)
            put(error, into: &reply)
        }
    }

    // MARK: results delivered later

    /// A new route for results of the plugin's request `id`; returns the tag pointer to hand to `Plugin`.
    private static func route(_ id: UInt64, tag: [CChar], once: Bool) -> UnsafeMutablePointer<CChar> {
        // Freed by unroute.
        let copy = tag.withUnsafeBufferPointer { strdup($0.baseAddress.unsafelyUnwrapped) }.unsafelyUnwrapped
        routes.withLock { $0[UInt(bitPattern: copy)] = Route(id: id, tag: copy, once: once) }
        return copy
    }

    private static func unroute(_ tag: UnsafeMutablePointer<CChar>) {
        if routes.withLock({ $0.removeValue(forKey: UInt(bitPattern: tag)) }) != nil { free(tag) }
    }

    /// The loader callback this worker gives its own plugin: sends the result to the plugin.
    private static let forwardCallback: wrapperCallback = { usrTag, respData, ret in
        guard let usrTag, let route = WorkerServer.routes.withLock({ $0[UInt(bitPattern: usrTag)] }) else { return 0 }
        var frame = FrameWriter(.callback, id: route.id)
        frame.put(ret)
        frame.put(
            ret != 0 ? WorkerServer.text(of: PluginError(wrapperCode: ret, text: ErrorTexts.detail(code: ret))) : "")
        do throws(PluginError) {
            _ = try frame.put(nodes: respData, "callback", pool: WorkerServer.outputs)
        } catch {
            frame = FrameWriter(.callback, id: route.id)
            frame.put(error.code)
            frame.put(error.detail)
            frame.put(UInt32(0))
        }
        WorkerServer.sendWritten(frame)
        if route.once { WorkerServer.unroute(route.tag) }  // a one-shot request has exactly one callback
        return 0
    }

    private static let forwardMeter: wrapperMeterCustom = { usrTag, key, count in
        var frame = FrameWriter(.metric, id: 0)
        frame.put(cString: usrTag?.assumingMemoryBound(to: CChar.self))
        frame.put(cString: key)
        frame.put(count)
        WorkerServer.channel.send(frame.finish())
        return 0
    }

    private static let forwardTrace: wrapperTraceLog = { usrTag, key, value in
        var frame = FrameWriter(.trace, id: 0)
        frame.put(cString: usrTag)
        frame.put(cString: key)
        frame.put(cString: value)
        WorkerServer.channel.send(frame.finish())
        return 0
    }

    /// Sends a `heartbeat` every `milliseconds`, each after entering the interpreter: the plugin's
    /// watchdog kills a worker whose heartbeats stop (Python wedged with its GIL held, a deadlock).
    private static func startHeartbeat(every milliseconds: Int) {
        let context = UnsafeMutableRawPointer(bitPattern: milliseconds)
        _ = aiges_thread_start(
            { context in
                let interval = UInt32(UInt(bitPattern: context) * 1000)
                while true {
                    usleep(interval)
                    withGIL {}
                    WorkerServer.channel.send(FrameWriter(.heartbeat, id: 0).finish())
                }
            }, context)
    }

    /// Tells the plugin an input segment is no longer read here (Python dropped its last view).
    private static func releaseInput(_ id: UInt32) {
        var frame = FrameWriter(.release, id: 0)
        frame.put(id)
        channel.send(frame.finish())
    }
}

extension Array where Element == WorkerServer.Call {
    /// The calls as `OnceCall`s, their usrTag C strings valid during `body`.
    func withTags<Result>(_ body: ([OnceCall]) throws(PluginError) -> Result) throws(PluginError) -> Result {
        let tags = map { call in call.tag.withUnsafeBufferPointer { strdup($0.baseAddress.unsafelyUnwrapped) } }
        defer { tags.forEach { free($0) } }  // strdup'd above
        let calls = zip(self, tags).map { call, tag in
            OnceCall(
                usrTag: UnsafePointer(tag), params: call.params, request: call.request,
                personalisationIds: call.persIds, personalisationCount: call.persCount)
        }
        return try body(calls)
    }
}
