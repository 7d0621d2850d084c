import AigesABI
import Glibc
import Synchronization

/// Session entry points: create, write, read, destroy, debug info.
extension Plugin {
    /// Calls `wrapperCreate(params, sid, persId, usrTag)` and opens a session. With `callback`, results
    /// wrapper.py delivers through `aiges_embed.callback(resp, tag)` — tag being the usrTag, the sid or
    /// the session's handle — reach `callback(usrTag, …)`; without, the loader pulls them with `read`.
    ///
    /// The corresponding C function is `wrapperCreate`.
    public static func createSession(
        usrTag: UnsafePointer<CChar>?, params: UnsafeMutablePointer<ParamList>?, callback: wrapperCallback?,
        personalisationIds: UnsafeMutablePointer<UInt32>?, personalisationCount: Int32
    ) throws(PluginError) -> UnsafeRawPointer {
        let engine = try running()
        guard engine.defines(.wrapperCreate) else {
            throw PluginError(.methodMissing, "\(engine.wrapperName) defines no Wrapper.wrapperCreate")
        }
        let handle = try SessionHandles.allocate()
        let tagText = usrTag.map { String(cString: $0) } ?? ""
        let target = CallbackTarget(kind: .session, usrTag: usrTag, label: tagText, callback: callback)
        let session: Session
        do throws(PluginError) {
            let call = OnceCall(
                usrTag: usrTag, params: params, request: nil, personalisationIds: personalisationIds,
                personalisationCount: personalisationCount)
            let sid = try call.sid()
            session = try failing(sid: sid) { () throws(PluginError) -> Session in
                // Reachable before wrapper.py runs: it may deliver as soon as wrapperCreate runs
                // (held back until it returned successfully).
                target.sid = sid
                CallbackTargets.register(target, tags: [tagText, sid])
                let link = try engine.create(call, target: target)
                return Session(handle: handle, sid: sid, target: target, link: link)
            }
        } catch {
            _ = target.abandon(code: error.code)
            CallbackTargets.unregister(target)
            throw error
        }
        guard adopt(session, of: engine) else {
            // wrapperFini ran meanwhile: close what wrapper.py opened.
            try? end(session, engine: engine)
            throw PluginError(.notInitialized, "wrapperFini ran while wrapperCreate was in progress")
        }
        target.arm()
        Log.logger.debug(
            "session opened (\(callback == nil ? "pull" : "push"))", metadata: ["sid": .string(session.sid)])
        return handle
    }

    /// Passes a chunk of input to `wrapperWrite(handle, req, sid)`. The request's bytes are the
    /// loader's for the call only: what wrapper.py keeps gets its own copy (see `DataPath`).
    ///
    /// The corresponding C function is `wrapperWrite`.
    public static func write(handle: UnsafeRawPointer?, request: UnsafeMutablePointer<DataList>?) throws(PluginError) {
        let session = try SessionHandles.find(handle, "wrapperWrite")
        try failing(sid: session.sid) { () throws(PluginError) in try write(session, request) }
    }

    private static func write(_ session: Session, _ request: UnsafeMutablePointer<DataList>?) throws(PluginError) {
        let engine = try running()
        let started = Log.debugEnabled ? Log.now() : 0
        let (bytes, code) = try engine.write(session.link, request)
        session.noteWrite(bytes: bytes)
        if started > 0 { Log.debug("wrapperWrite: \(bytes) bytes in", since: started, sid: session.sid) }
        if code != 0 { throw PluginError(wrapperCode: code) }
    }

    /// Returns what is ready: results wrapper.py delivered with `aiges_embed.callback` since the last
    /// read, else what its own `wrapperRead(handle, sid)` returns (an empty list when nothing is).
    /// A read never holds two nodes with the same key (the loader keys each read by output key):
    /// what does not fit waits for the next read, as does everything queued when a read fails.
    /// The list stays valid until the next read on this session or its destroy.
    ///
    /// The corresponding C function is `wrapperRead`.
    public static func read(
        handle: UnsafeRawPointer?, response: UnsafeMutablePointer<UnsafeMutablePointer<DataList>?>?
    ) throws(PluginError) {
        guard let response else { throw PluginError(.invalidArgument, "wrapperRead: respData is NULL") }
        response.pointee = nil
        let session = try SessionHandles.find(handle, "wrapperRead")
        try failing(sid: session.sid) { () throws(PluginError) in try read(session, response) }
    }

    private static func read(_ session: Session, _ response: UnsafeMutablePointer<UnsafeMutablePointer<DataList>?>)
        throws(PluginError)
    {
        _ = session.replaceLastRead([], bytes: 0, counted: false)  // the loader copied the previous read: free it
        let engine = try running()
        let started = Log.debugEnabled ? Log.now() : 0
        if !session.target.hasQueuedReads, engine.keepsPullResults || engine.defines(.wrapperRead) {
            if let batch = try engine.read(session.link) { session.target.queueForRead(batch) }
        }
        let taken = session.target.takeForRead()
        if let code = taken.error { throw PluginError(wrapperCode: code) }
        var bytes = 0
        for (position, entry) in taken.nodes.enumerated() {
            let node = entry.batch.node(at: entry.index)
            node.pointee.next =
                position + 1 < taken.nodes.count
                ? taken.nodes[position + 1].batch.node(at: taken.nodes[position + 1].index) : nil
            bytes += Int(node.pointee.len)
        }
        response.pointee = taken.nodes.first.map { $0.batch.node(at: $0.index) }
        _ = session.replaceLastRead(taken.nodes.map(\.batch), bytes: bytes, counted: true)
        if started > 0 {
            Log.debug("wrapperRead: \(taken.nodes.count) nodes / \(bytes) bytes out", since: started, sid: session.sid)
        }
    }

    /// Closes the session: no callback for it runs after this returns (also when called from inside
    /// one of its own callbacks); calls `wrapperDestroy(handle)` and frees its last read. A second
    /// destroy of the same handle is `unknownHandle`.
    ///
    /// The corresponding C function is `wrapperDestroy`.
    public static func destroy(handle: UnsafeRawPointer?) throws(PluginError) {
        let session = try SessionHandles.remove(handle, "wrapperDestroy")
        guard let engine = try? running() else {
            session.target.close()
            CallbackTargets.unregister(session.target)
            return
        }
        try failing(sid: session.sid) { () throws(PluginError) in try end(session, engine: engine) }
    }

    /// Ends a session taken out of `SessionHandles`: closes its delivery (waiting for a callback in
    /// progress on another thread), then calls wrapper.py's `wrapperDestroy`. Without the GIL.
    static func end(_ session: Session, engine: any Engine) throws(PluginError) {
        session.target.close()
        CallbackTargets.unregister(session.target)
        guard engine.defines(.wrapperDestroy) else { return }
        let code = try engine.destroy(session.link)
        Log.logger.debug("session closed: \(session.summary)", metadata: ["sid": .string(session.sid)])
        if code != 0 { throw PluginError(wrapperCode: code) }
    }

    /// wrapper.py's `wrapperDebugInfo(handle)` if it defines one, else the plugin's summary (sid,
    /// counts, bytes, age). Valid until the session is destroyed. With a NULL handle: the plugin's
    /// own state as JSON (see `stateSummary`).
    ///
    /// The corresponding C function is `wrapperDebugInfo`.
    public static func debugInfo(handle: UnsafeRawPointer?) -> UnsafePointer<CChar> {
        guard handle != nil else { return stateTexts.keep(stateSummary) }
        guard let session = try? SessionHandles.find(handle, "wrapperDebugInfo") else {
            return ErrorTexts.stable("wrapperDebugInfo: unknown session handle")
        }
        var text = session.summary
        if let engine = try? running(), engine.defines(.wrapperDebugInfo) {
            text = engine.debugInfo(session.link) { session.summary }
        }
        return session.keep(ErrorTexts.bounded(text))
    }

    /// The plugin's state as one JSON object: whether it is running, open sessions, pending async
    /// requests, live timers and async requests waiting for a fallback thread.
    static var stateSummary: String {
        Metrics.json(
            state: [("running", (try? running()) != nil ? "true" : "false")] + gauges.map { ($0.name, "\($0.value)") })
    }

    /// The plugin's current state, for the metrics.
    static var gauges: [(name: String, help: String, value: Int)] {
        [
            ("sessions_open", "Sessions open.", SessionHandles.count),
            ("async_pending", "Async requests waiting for their final result.", CallbackTargets.liveOnceCount),
            ("timers", "Async timeouts armed.", Timers.count - (MetricsFile.hasTimer ? 1 : 0)),
            ("fallback_waiting", "Async requests waiting for a fallback thread.", fallbackPool.waiting),
            ("batch_queued", "One-shot requests waiting for their batch.", (try? serving())?.batcher?.queued ?? 0),
        ] + ((try? running())?.gauges ?? [])
    }
}

/// The texts `wrapperDebugInfo(NULL)` returned: each stays valid until 8 newer ones were asked for.
/// Apart from `ErrorTexts`, whose 4 KiB cut would break the JSON and whose store the ever-changing
/// snapshots would churn.
let stateTexts = TextRing(capacity: 8)
