import AigesABI
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
    /// fallback pool. With batching on (`Batcher`), the request (copied) goes into a
    /// `wrapperOnceExecBatch` call instead, and its result to its callback.
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
        let (engine, batcher) = try serving()
        guard batcher != nil || engine.defines(.wrapperOnceExecAsync) || engine.defines(.wrapperOnceExec) else {
            throw PluginError(.methodMissing, "\(engine.wrapperName) defines no Wrapper.wrapperOnceExecAsync")
        }
        let label = String(cString: usrTag)
        let target = CallbackTarget(kind: .once, usrTag: usrTag, label: label, callback: callback)
        target.measure(from: entered)
        let milliseconds = timeout > 0 ? Int(timeout) : defaultTimeoutMilliseconds.load(ordering: .relaxed)
        let job: (@Sendable () -> Void)?
        do throws(PluginError) {
            let call = OnceCall(
                usrTag: usrTag, params: params, request: request, personalisationIds: personalisationIds,
                personalisationCount: personalisationCount)
            let sid = try call.sid()
            job = try failing(sid: sid) { () throws(PluginError) -> (@Sendable () -> Void)? in
                // Batched: the loader's lists are copied now (and checked, as a call would).
                let copy = try batcher.map { _ throws(PluginError) in try CopiedCall(call) }
                // Reachable before wrapper.py runs: it may call back from another thread at once
                // (held back until this call returned 0).
                target.sid = sid
                CallbackTargets.register(target, tags: [label, sid])
                if milliseconds > 0 {  // after registering: a timeout unregisters the target
                    target.expire(at: entered + Int64(milliseconds) * 1_000_000, milliseconds: milliseconds)
                }
                if let batcher, let copy { return { batcher.queue(copy, for: target) } }
                return try engine.startAsync(call, target: target)
            }
        } catch {
            // No lock, GIL or gate is held here: the loader's callback may be waiting for this return.
            if target.abandon(code: error.code) { throw error }
            return  // wrapperFini already gave the request its final callback
        }
        let started = whileRunning(engine) { () -> Bool in
            job?()
            target.arm()
            return true
        }
        if started == nil {
            let error = PluginError(.notInitialized, "wrapperFini ran while wrapperExecAsync was in progress")
            if target.abandon(code: error.code) { throw error }
        }
    }
}
