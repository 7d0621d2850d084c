import AigesABI
import CPython
import CPythonShims
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
        let wrapper = try running()
        guard wrapper.defines(.wrapperCreate) else {
            throw PluginError(.methodMissing, "\(wrapper.path.lastComponent) defines no Wrapper.wrapperCreate")
        }
        let handle = try SessionHandles.allocate()
        let tagText = usrTag.map { String(cString: $0) } ?? ""
        let target = CallbackTarget(kind: .session, usrTag: usrTag, label: tagText, callback: callback)
        let session: Session
        do throws(PluginError) {
            session = try withGIL { () throws(PluginError) -> Session in
                let params = try Params(params)
                let sid = params.sidText
                return try failing(sid: sid) { () throws(PluginError) -> Session in
                    let tag = try makeUnicode(tagText)
                    let persId = try PyRef(
                        steal: PyLong_FromUnsignedLong(
                            UInt(firstPersonalisationId(personalisationIds, count: personalisationCount))), "persId")
                    // Reachable before Python runs: wrapper.py may deliver as soon as wrapperCreate runs
                    // (held back until it returned successfully).
                    target.sid = sid
                    CallbackTargets.register(target, tags: [tagText, sid])
                    let sidObject = try makeUnicode(sid)
                    let result = try wrapper.call(
                        .wrapperCreate,
                        CallArguments(
                            params: params.dict.pointer, usrTag: tag.pointer, persId: persId.pointer,
                            sid: sidObject.pointer))
                    let pythonHandle = try sessionHandle(from: result.pointer)
                    let handleText = string(fromUnicode: pythonHandle.pointer) ?? ""
                    CallbackTargets.register(target, tags: [handleText])
                    return Session(
                        handle: handle, sid: sid, pythonHandle: handleText, target: target,
                        handleObject: PythonObject(pythonHandle), sidObject: PythonObject(sidObject))
                }
            }
        } catch {
            _ = target.abandon(code: error.code)
            CallbackTargets.unregister(target)
            throw error
        }
        guard adopt(session, of: wrapper) else {
            // wrapperFini ran meanwhile: close what wrapper.py opened.
            try? end(session, wrapper: wrapper)
            throw PluginError(.notInitialized, "wrapperFini ran while wrapperCreate was in progress")
        }
        target.arm()
        Log.logger.debug(
            "session opened (\(callback == nil ? "pull" : "push"))", metadata: ["sid": .string(session.sid)])
        return handle
    }

    /// The handle str from wrapperCreate's result: a SessionCreateResponse (its error_code is the
    /// call's code) or, leniently, a plain str.
    private static func sessionHandle(from result: PyPointer) throws(PluginError) -> PyRef {
        if aiges_py_is_unicode(result) != 0 { return PyRef(retain: result) }
        guard let names = Bootstrap.objects?.names else {
            throw PluginError(.notInitialized, "aiges_embed not installed")
        }
        if let code = try optionalAttribute(result, names.errorCode), let value = int32(code.pointer), value != 0 {
            throw PluginError(wrapperCode: value)
        }
        guard let handle = try optionalAttribute(result, names.handle) else {
            throw PluginError(
                .badReturnType,
                "wrapperCreate returned \(PythonException.typeName(of: result)), expected SessionCreateResponse")
        }
        if aiges_py_is_unicode(handle.pointer) != 0 { return handle }
        return try PyRef(steal: PyObject_Str(handle.pointer), "SessionCreateResponse.handle")
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
        let wrapper = try running()
        let started = Log.debugEnabled ? Log.now() : 0
        var bytes = 0
        let code = try withGIL { () throws(PluginError) -> Int32 in
            var request = try LoanedRequest.make(request, "reqData")
            bytes = request.byteCount
            var arguments = session.arguments
            arguments.reqData = request.list
            let code = try wrapper.callForCode(.wrapperWrite, arguments)
            try request.finish()
            return code
        }
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
        let wrapper = try running()
        let started = Log.debugEnabled ? Log.now() : 0
        if !session.target.hasQueuedReads, wrapper.defines(.wrapperRead) {
            let batch = try withGIL { () throws(PluginError) -> OutputBatch? in
                let result = try wrapper.call(.wrapperRead, session.arguments)
                if result.pointer == aiges_py_none() { return nil }
                return try OutputBatch(result.pointer, kind: .stream)
            }
            if let batch { session.target.queueForRead(batch) }
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
        guard let wrapper = try? running() else {
            session.target.close()
            CallbackTargets.unregister(session.target)
            return
        }
        try failing(sid: session.sid) { () throws(PluginError) in try end(session, wrapper: wrapper) }
    }

    /// Ends a session taken out of `SessionHandles`: closes its delivery (waiting for a callback in
    /// progress on another thread), then calls wrapper.py's `wrapperDestroy`. Without the GIL.
    static func end(_ session: Session, wrapper: UserWrapper) throws(PluginError) {
        session.target.close()
        CallbackTargets.unregister(session.target)
        guard wrapper.defines(.wrapperDestroy) else { return }
        let code = try withGIL { () throws(PluginError) -> Int32 in
            try wrapper.callForCode(.wrapperDestroy, session.arguments)
        }
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
        if let wrapper = try? running(), wrapper.defines(.wrapperDebugInfo) {
            text = withGIL { () -> String in
                guard let result = try? wrapper.call(.wrapperDebugInfo, session.arguments) else {
                    return session.summary + " (wrapperDebugInfo raised)"
                }
                return string(fromUnicode: result.pointer) ?? str(result.pointer) ?? session.summary
            }
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
        ]
    }
}

/// The texts `wrapperDebugInfo(NULL)` returned: each stays valid until 8 newer ones were asked for.
/// Apart from `ErrorTexts`, whose 4 KiB cut would break the JSON and whose store the ever-changing
/// snapshots would churn.
let stateTexts = TextRing(capacity: 8)
