import AigesABI
import CPython
import CPythonShims
import Glibc

/// wrapper.py run in this process, on the embedded interpreter: each call takes the GIL, builds
/// Python arguments from the loader's C lists and calls the loaded `UserWrapper`.
final class InProcessEngine: Engine {
    let wrapper: UserWrapper
    let wrapperName: String

    private init(_ wrapper: UserWrapper) {
        self.wrapper = wrapper
        wrapperName = wrapper.path.lastComponent
    }

    /// Starts Python (once per process), loads wrapper.py and calls its `wrapperInit(config)`.
    /// `settings` are the config pairs, already checked and applied (`Settings.apply`).
    static func start(settings: [String: String], config: UnsafeMutablePointer<ParamList>?) throws(PluginError)
        -> InProcessEngine
    {
        try Interpreter.startOnce()
        let path = try Plugin.locateWrapperFile(configured: settings["wrapper.file"])
        let className = settings["wrapper.class"] ?? "Wrapper"
        return try withGIL { () throws(PluginError) -> InProcessEngine in
            try Bootstrap.configureEnvironment(settings)
            let engine = InProcessEngine(try UserWrapper(path: path, className: className))
            Bootstrap.adoptLogHandlers()
            let dict = try makeDict(config, "config")
            let code: Int32
            do throws(PluginError) {
                code =
                    engine.defines(.wrapperInit)
                    ? try engine.wrapper.callForCode(.wrapperInit, CallArguments(config: dict.pointer)) : 0
            } catch {
                throw PluginError(.initFailed, "\(path): \(error.detail)")
            }
            guard code == 0 else {
                // The wrapper is unloaded when init fails: keep its text for wrapperError(code).
                throw PluginError(wrapperCode: code, text: engine.wrapperText(code))
            }
            Bootstrap.adoptLogHandlers()  // again: wrapperInit may have called logging.basicConfig
            Log.logger.info("loaded \(className) from \(path)")
            return engine
        }
    }

    func defines(_ method: WrapperMethod) -> Bool { wrapper.defines(method) }

    var gauges: [(name: String, help: String, value: Int)] { [] }

    func prepareToFinish() {}  // results on their way are in their targets already

    var keepsPullResults: Bool { false }  // delivered straight to the session's target

    // MARK: errors

    func errorText(_ code: Int32) -> String { withGIL { wrapperText(code) } }

    /// wrapper.py's `wrapperError(code)`, or a generic text if it has none or it fails. GIL required.
    private func wrapperText(_ code: Int32) -> String {
        guard wrapper.defines(.wrapperError) else { return "wrapper.py error \(code)" }
        guard let codeObject = try? PyRef(steal: PyLong_FromLong(Int(code)), ""),
            let result = try? wrapper.call(.wrapperError, CallArguments(code: codeObject.pointer))
        else { return "wrapper.py error \(code) (its wrapperError failed)" }
        return string(fromUnicode: result.pointer) ?? str(result.pointer) ?? "wrapper.py error \(code)"
    }

    // MARK: one-shot

    /// Runs `wrapperOnceExec(params, reqData, usrTag, persId)`.
    func exec(_ call: OnceCall) throws(PluginError) -> OutputBatch {
        try withGIL { () throws(PluginError) -> OutputBatch in
            var arguments = try OnceArguments(call)
            let result = try wrapper.call(.wrapperOnceExec, arguments.values)
            let batch = try OutputBatch(result.pointer, kind: .once)
            try arguments.request.finish()
            return batch
        }
    }

    /// Calls `wrapperOnceExecAsync(params, reqData, usrTag, persId)`; the result wrapper.py passes to
    /// `aiges_embed.callback(resp, usrTag or sid)` goes to `target`. A wrapper without
    /// `wrapperOnceExecAsync` is served by running its `wrapperOnceExec` on `Plugin.fallbackPool`:
    /// the returned job queues it there.
    func startAsync(_ call: OnceCall, target: CallbackTarget) throws(PluginError) -> (@Sendable () -> Void)? {
        let native = wrapper.defines(.wrapperOnceExecAsync)
        return try withGIL { () throws(PluginError) -> (@Sendable () -> Void)? in
            // The usrTag as registered (`label`): what wrapper.py passes back to callback() must match it.
            var arguments = try OnceArguments(call, usrTag: target.label)
            if native {
                let code = try wrapper.callForCode(.wrapperOnceExecAsync, arguments.values)
                try arguments.request.finish()
                if code != 0 { throw PluginError(wrapperCode: code) }
                return nil
            }
            // Held references keep the request alive past this call, so its nodes get their own bytes.
            let job = HeldArguments(arguments.values)
            try arguments.request.finish()
            return { [self] in Plugin.fallbackPool.submit { self.runOnceExec(job, target) } }
        }
    }

    /// Serves an async request with the synchronous `wrapperOnceExec` and delivers its result
    /// (skipped when the request already ended: timed out while waiting, or wrapperFini).
    private func runOnceExec(_ job: HeldArguments, _ target: CallbackTarget) {
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

    // MARK: personalisation

    /// Calls `wrapperLoadRes(reqData, patch_id)`, or `wrapperLoadRes(reqData, resId)` for wrappers
    /// whose parameter is named resId (see `CallArguments`).
    func loadResource(_ data: UnsafeMutablePointer<DataList>?, resId: UInt32, patch: String) throws(PluginError) {
        let code = try withGIL { () throws(PluginError) -> Int32 in
            var request = try LoanedRequest.make(data, "perData")
            let patchObject = try makeUnicode(patch)
            let resIdObject = try PyRef(steal: PyLong_FromUnsignedLong(UInt(resId)), "resId")
            let code = try wrapper.callForCode(
                .wrapperLoadRes,
                CallArguments(reqData: request.list, patchId: patchObject.pointer, resId: resIdObject.pointer))
            try request.finish()
            return code
        }
        if code != 0 { throw PluginError(wrapperCode: code) }
    }

    /// Calls wrapper.py's `wrapperUnloadRes(patch_id)` (or `(resId)`).
    func unloadResource(resId: UInt32, patch: String) throws(PluginError) {
        let code = try withGIL { () throws(PluginError) -> Int32 in
            let patchObject = try makeUnicode(patch)
            let resIdObject = try PyRef(steal: PyLong_FromUnsignedLong(UInt(resId)), "resId")
            return try wrapper.callForCode(
                .wrapperUnloadRes, CallArguments(patchId: patchObject.pointer, resId: resIdObject.pointer))
        }
        if code != 0 { throw PluginError(wrapperCode: code) }
    }

    // MARK: lifecycle

    func finish(waitingAtMost seconds: Int) throws(PluginError) -> Int32 {
        try wrapper.finish(waitingAtMost: Int64(seconds))
    }
}

/// A one-shot call's Python arguments made from its C lists (GIL required): what `wrapperOnceExec`
/// and `wrapperOnceExecAsync` get, and a batch's `BatchRequest` holds. The request's loans must end
/// (`request.finish()`, or dropping this) before the loader's call returns.
struct OnceArguments: ~Copyable {
    let params: Params
    let usrTag: PyRef
    let persId: PyRef
    var request: LoanedRequest

    /// - Parameters: usrTag: the usrTag as text, when it must match one registered for callbacks
    ///   (otherwise the loader's bytes, undecodable ones as surrogate escapes).
    init(_ call: OnceCall, usrTag label: String? = nil) throws(PluginError) {
        // Made first, stored last: a noncopyable struct cannot be left half made by a throw.
        let params = try Params(call.params)
        let usrTag = try Self.text(label, or: call.usrTag)
        let persId = try PyRef(steal: PyLong_FromUnsignedLong(UInt(call.personalisationId)), "persId")
        let request = try LoanedRequest.make(call.request, "reqData")
        self.params = params
        self.usrTag = usrTag
        self.persId = persId
        self.request = request
    }

    /// `label` as a str, or else the C string's bytes (undecodable ones as surrogate escapes; NULL: "").
    private static func text(_ label: String?, or bytes: UnsafePointer<CChar>?) throws(PluginError) -> PyRef {
        if let label { return try makeUnicode(label) }
        return try makeUnicode(bytes ?? emptyCString, length: bytes.map { strlen($0) } ?? 0)
    }

    /// The values for a method's argument plan (borrowed while this lives).
    var values: CallArguments {
        CallArguments(
            params: params.dict.pointer, reqData: request.list, usrTag: usrTag.pointer, persId: persId.pointer,
            sid: params.sid.pointer)
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
