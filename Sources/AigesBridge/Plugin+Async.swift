import AigesABI
import CPython
import Dispatch
import Glibc

/// One-shot asynchronous requests.
extension Plugin {
    /// Calls `wrapperOnceExecAsync(params, reqData, usrTag, persId)` and returns; the result wrapper.py
    /// passes to `aiges_embed.callback(resp, usrTag or sid)` goes to *this* request's `callback`.
    /// A wrapper without `wrapperOnceExecAsync` is served by running its `wrapperOnceExec` off the
    /// caller's thread. With `timeout > 0` (ms), the callback gets `timeout` (22012) if no result
    /// came in time, and a late result is dropped.
    ///
    /// The corresponding C function is `wrapperExecAsync`.
    public static func execAsync(
        usrTag: UnsafePointer<CChar>?, params: UnsafeMutablePointer<ParamList>?,
        request: UnsafeMutablePointer<DataList>?, callback: wrapperCallback?, timeout: Int32,
        personalisationIds: UnsafeMutablePointer<UInt32>?, personalisationCount: Int32
    ) throws(PluginError) {
        guard let callback else { throw PluginError(.invalidArgument, "wrapperExecAsync: callback is NULL") }
        guard let usrTag else { throw PluginError(.invalidArgument, "wrapperExecAsync: usrTag is NULL") }
        let wrapper = try running()
        guard wrapper.defines(.wrapperOnceExecAsync) || wrapper.defines(.wrapperOnceExec) else {
            throw PluginError(.methodMissing, "\(wrapper.path.lastComponent) defines no Wrapper.wrapperOnceExecAsync")
        }
        let label = String(cString: usrTag)
        let target = CallbackTarget(kind: .once, usrTag: usrTag, label: label, callback: callback)
        try withGIL { () throws(PluginError) in
            let params = try Params(params)
            // Reachable before Python runs: wrapper.py may call back from another thread at once.
            CallbackTargets.register(target, tags: [label, params.sid])
            do throws(PluginError) {
                let tag = try makeUnicode(label)
                let persId = try PyRef(
                    steal: PyLong_FromUnsignedLong(
                        UInt(firstPersonalisationId(personalisationIds, count: personalisationCount))), "persId")
                var request = try LoanedRequest.make(request, "reqData")
                let arguments = CallArguments(
                    params: params.dict.pointer, reqData: request.list, usrTag: tag.pointer, persId: persId.pointer,
                    sid: params.sidObject)
                if wrapper.defines(.wrapperOnceExecAsync) {
                    let code = try wrapper.callForCode(.wrapperOnceExecAsync, arguments)
                    if code != 0 { throw PluginError(wrapperCode: code) }
                } else {
                    // Held references keep the request alive past this call, so its nodes get their own bytes.
                    let held = HeldArguments(arguments)
                    DispatchQueue.global().async { runOnceExec(wrapper, held, tag: label) }
                }
                try request.finish()
            } catch {
                target.close()
                CallbackTargets.unregister(target)
                throw error
            }
        }
        if timeout > 0 { target.expire(after: timeout) }
    }

    /// Serves an async request with the synchronous `wrapperOnceExec` and delivers its result.
    private static func runOnceExec(_ wrapper: UserWrapper, _ held: HeldArguments, tag: String) {
        withGIL {
            defer { held.release() }
            let result: PyRef
            do throws(PluginError) {
                result = try wrapper.call(.wrapperOnceExec, held.arguments)
            } catch {
                ErrorTexts.record(error)
                deliverFailure(error, tag: tag)
                return
            }
            _ = CallbackTargets.deliverFromPython(result.pointer, tag: tag)
        }
    }

    /// Delivers `error` as the final result for `tag` (GIL held; released around the callback).
    private static func deliverFailure(_ error: PluginError, tag: String) {
        guard let target = CallbackTargets.find(tag) else { return }
        if withoutGIL({ target.deliver(nil, ret: error.code, final: true) }) { CallbackTargets.unregister(target) }
    }
}

/// Python arguments kept alive past the C call that made them (owned references).
private final class HeldArguments: @unchecked Sendable {  // touched only with the GIL held
    let arguments: CallArguments

    /// Takes a new reference to each argument. GIL required.
    init(_ arguments: CallArguments) {
        CallArguments.Kind.allCases.forEach { Py_IncRef(arguments[$0]) }
        self.arguments = arguments
    }

    /// Drops the references. GIL required.
    func release() { CallArguments.Kind.allCases.forEach { Py_DecRef(arguments[$0]) } }
}
