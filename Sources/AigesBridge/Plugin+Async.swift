import AigesABI
import CPython
import CPythonShims
import Glibc
import Synchronization

/// One-shot asynchronous requests.
extension Plugin {
    /// The timeout applied when the loader passes 0 (the real loader always does); 0 means none.
    /// Config `async.timeout_ms`.
    static let defaultTimeoutMilliseconds = Atomic<Int>(60_000)

    /// Threads that serve async requests of a wrapper without `wrapperOnceExecAsync` by running its
    /// `wrapperOnceExec`; config `async.fallback_threads` bounds how many run at once.
    static let fallbackPool = WorkerPool(name: "async fallback", maximumThreads: 4, idleSeconds: 30)

    /// Calls `wrapperOnceExecAsync(params, reqData, usrTag, persId)` and returns; the result wrapper.py
    /// passes to `aiges_embed.callback(resp, usrTag or sid)` goes to *this* request's `callback`.
    /// A wrapper without `wrapperOnceExecAsync` is served by running its `wrapperOnceExec` on the
    /// fallback pool.
    ///
    /// Each request has exactly one outcome: a non-zero return and no callback, or 0 and exactly one
    /// final callback — its result, `timeout` (22012) when none came within `timeout` ms of entering
    /// this function (`async.timeout_ms` when `timeout` is 0), or `shutDown` (22018) from `wrapperFini`.
    ///
    /// The corresponding C function is `wrapperExecAsync`.
    public static func execAsync(
        usrTag: UnsafePointer<CChar>?, params: UnsafeMutablePointer<ParamList>?,
        request: UnsafeMutablePointer<DataList>?, callback: wrapperCallback?, timeout: Int32,
        personalisationIds: UnsafeMutablePointer<UInt32>?, personalisationCount: Int32
    ) throws(PluginError) {
        let entered = monotonicNow()
        guard let callback else { throw PluginError(.invalidArgument, "wrapperExecAsync: callback is NULL") }
        guard let usrTag else { throw PluginError(.invalidArgument, "wrapperExecAsync: usrTag is NULL") }
        let wrapper = try running()
        let native = wrapper.defines(.wrapperOnceExecAsync)
        guard native || wrapper.defines(.wrapperOnceExec) else {
            throw PluginError(.methodMissing, "\(wrapper.path.lastComponent) defines no Wrapper.wrapperOnceExecAsync")
        }
        let label = String(cString: usrTag)
        let target = CallbackTarget(kind: .once, usrTag: usrTag, label: label, callback: callback)
        target.measure(from: entered)
        let milliseconds = timeout > 0 ? Int(timeout) : defaultTimeoutMilliseconds.load(ordering: .relaxed)
        var job: HeldArguments?
        do throws(PluginError) {
            try withGIL { () throws(PluginError) in
                let params = try Params(params)
                try failing(sid: params.sidText) { () throws(PluginError) in
                    // Reachable before Python runs: wrapper.py may call back from another thread at once
                    // (held back until this call returned 0).
                    target.sid = params.sidText
                    CallbackTargets.register(target, tags: [label, params.sidText])
                    if milliseconds > 0 {  // after registering: a timeout unregisters the target
                        target.expire(at: entered + Int64(milliseconds) * 1_000_000, milliseconds: milliseconds)
                    }
                    let tag = try makeUnicode(label)
                    let persId = try PyRef(
                        steal: PyLong_FromUnsignedLong(
                            UInt(firstPersonalisationId(personalisationIds, count: personalisationCount))), "persId")
                    var request = try LoanedRequest.make(request, "reqData")
                    let arguments = CallArguments(
                        params: params.dict.pointer, reqData: request.list, usrTag: tag.pointer, persId: persId.pointer,
                        sid: params.sid.pointer)
                    if native {
                        let code = try wrapper.callForCode(.wrapperOnceExecAsync, arguments)
                        try request.finish()
                        if code != 0 { throw PluginError(wrapperCode: code) }
                    } else {
                        // Held references keep the request alive past this call, so its nodes get their own bytes.
                        job = HeldArguments(arguments)
                        try request.finish()
                    }
                }
            }
        } catch {
            // No lock, GIL or gate is held here: the loader's callback may be waiting for this return.
            job = nil
            if target.abandon(code: error.code) { throw error }
            return  // wrapperFini already gave the request its final callback
        }
        let started = whileRunning(wrapper) { () -> Bool in
            if let job { fallbackPool.submit { runOnceExec(wrapper, job, target) } }
            target.arm()
            return true
        }
        if started == nil {
            let error = PluginError(.notInitialized, "wrapperFini ran while wrapperExecAsync was in progress")
            if target.abandon(code: error.code) { throw error }
        }
    }

    /// Serves an async request with the synchronous `wrapperOnceExec` and delivers its result
    /// (skipped when the request already ended: timed out while waiting, or wrapperFini).
    private static func runOnceExec(_ wrapper: UserWrapper, _ job: HeldArguments, _ target: CallbackTarget) {
        guard !target.isFinished else { return }
        withGIL {
            let result: PyRef
            do throws(PluginError) {
                result = try wrapper.call(.wrapperOnceExec, job.arguments)
            } catch {
                ErrorTexts.record(error)
                _ = withoutGIL { target.offer(Delivery(batch: nil, ret: error.code), final: true) }
                return
            }
            _ = CallbackTargets.deliver(result.pointer, to: target)
        }
    }
}

/// Python arguments kept alive past the C call that made them (owned references), for the
/// fallback pool. Dropping it never takes the GIL (see `PythonObject`).
private final class HeldArguments: @unchecked Sendable {  // used only with the GIL held
    private let owners: [PythonObject]
    let arguments: CallArguments

    /// Takes a new reference to each argument. GIL required.
    init(_ arguments: CallArguments) {
        owners = CallArguments.Kind.allCases.compactMap { arguments[$0] }.map { PythonObject(PyRef(retain: $0)) }
        self.arguments = arguments
    }
}
