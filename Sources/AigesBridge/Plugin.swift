import AigesABI
import Glibc
import Logging
import Synchronization

/// The plugin's service layer: lifecycle state and the work behind each exported C function.
///
/// Every method throws `PluginError`; `errorCode(_:)` turns that into the loader's int.
public enum Plugin {
    /// The version string `wrapperVersion` returns.
    public static let version: StaticString = "aiges-swift-wrapper 0.1.0"

    private enum State {
        case stopped
        case starting
        /// wrapper.py loaded; the batcher when one-shot requests are batched (`Batcher.make`).
        case running(any Engine, Batcher?)
        case stopping
    }

    private static let state = Mutex(State.stopped)

    // MARK: lifecycle

    /// Starts Python (once per process), loads wrapper.py and calls its `wrapperInit(config)`.
    ///
    /// The corresponding C function is `wrapperInit`.
    public static func initialize(config: UnsafeMutablePointer<ParamList>?) throws(PluginError) {
        try state.withLock { state throws(PluginError) in
            switch state {
            case .stopped: state = .starting
            case .starting, .stopping: throw PluginError(.alreadyInitialized, "wrapperInit or wrapperFini in progress")
            case .running: throw PluginError(.alreadyInitialized, "call wrapperFini before wrapperInit again")
            }
        }
        do throws(PluginError) {
            let (engine, batcher) = try start(config)
            state.withLock { $0 = .running(engine, batcher) }
        } catch {
            MetricsFile.stop()
            state.withLock { $0 = .stopped }
            throw error
        }
    }

    private static func start(_ config: UnsafeMutablePointer<ParamList>?) throws(PluginError)
        -> (any Engine, Batcher?)
    {
        var settings: [String: String] = [:]
        var pairs: [(key: String, value: String)] = []
        try forEachParam(config, "config") { entry throws(PluginError) in
            let value = entry.value.map {
                String(decoding: UnsafeRawBufferPointer(start: $0, count: entry.length), as: UTF8.self)
            }
            pairs.append((String(cString: entry.key), value ?? ""))
            settings[pairs[pairs.count - 1].key] = value ?? ""
        }
        Log.configure(settings)
        try Settings.apply(settings)
        let workers = try Settings.integer(settings, "workers", default: 0, range: 0...256)
        let engine: any Engine
        if workers > 0 {
            let path = try locateWrapperFile(configured: settings["wrapper.file"])
            engine = try WorkerEngine.start(settings: settings, config: pairs, wrapperPath: path, count: workers)
        } else {
            engine = try InProcessEngine.start(settings: settings, config: config)
        }
        return (engine, Batcher.make(settings: settings, engine: engine))
    }

    /// The wrapper.py to load: `wrapper.file` if configured, else ./wrapper.py, else one beside libwrapper.so.
    static func locateWrapperFile(configured: String?) throws(PluginError) -> String {
        if let configured, !configured.isEmpty {
            guard access(configured, R_OK) == 0 else {
                throw PluginError(
                    .initFailed, "wrapper.file \(configured) cannot be read: \(String(cString: strerror(errno)))")
            }
            return configured
        }
        var candidates: [String] = []
        if let cwd = getcwd(nil, 0) {  // malloc'd by libc, freed here
            candidates.append(String(cString: cwd) + "/wrapper.py")
            free(cwd)
        }
        if let directory = Interpreter.libraryDirectory { candidates.append(directory + "/wrapper.py") }
        guard let found = candidates.first(where: { access($0, R_OK) == 0 }) else {
            throw PluginError(
                .initFailed, "wrapper.py not found (looked for \(candidates.joined(separator: ", "))); set wrapper.file"
            )
        }
        return found
    }

    /// Ends everything open, calls wrapper.py's `wrapperFini()` and unloads it. The interpreter stays up.
    ///
    /// Before it returns: batching ended (`Batcher.close`: batches in flight finished, queued
    /// `wrapperExec` requests were sent at once, each waiting caller had its result), each pending
    /// async request got exactly one final callback (its result if one was already on its way, else
    /// `shutDown`, 22018), open sessions were closed (wrapper.py's
    /// `wrapperDestroy` ran for each), loaded resources were unloaded (its `wrapperUnloadRes` ran
    /// for each), timers were cancelled, calls into wrapper.py still running on other threads
    /// returned (waiting up to 10 s) before its `wrapperFini` ran, and no loader callback runs after
    /// it returns. New calls meanwhile fail with `notInitialized`; handles from before stay unknown
    /// after a new `wrapperInit`.
    /// May be called from inside a loader callback.
    ///
    /// The corresponding C function is `wrapperFini`.
    public static func finish() throws(PluginError) {
        let (engine, batcher) = try state.withLock { state throws(PluginError) -> (any Engine, Batcher?) in
            switch state {
            case .running(let engine, let batcher):
                state = .stopping
                return (engine, batcher)
            case .starting, .stopping: throw PluginError(.notInitialized, "wrapperInit or wrapperFini in progress")
            case .stopped: throw PluginError(.notInitialized, "wrapperFini without a successful wrapperInit")
            }
        }
        defer {
            MetricsFile.stop()  // and written once more when wrapperFini has returned (errorCode)
            state.withLock { $0 = .stopped }
        }
        engine.prepareToFinish()  // worker processes: results already on their way arrive first
        batcher?.close(waitingAtMost: 10)  // batches in flight deliver their results first
        let shutDown = PluginError(.shutDown, "wrapperFini ended the request")
        ErrorTexts.record(shutDown)
        let pending = CallbackTargets.takeAllOnce()
        pending.forEach { $0.shutDown(shutDown) }
        let sessions = SessionHandles.removeAll()
        for session in sessions {
            do throws(PluginError) { try end(session, engine: engine) } catch {
                Log.logger.warning("wrapperFini: wrapperDestroy of session \(session.sid) failed: \(error.code)")
            }
        }
        let resources = unloadAllResources(engine)
        if !pending.isEmpty || !sessions.isEmpty || resources > 0 {
            Log.logger.info(
                "wrapperFini ended \(pending.count) async request(s), \(sessions.count) session(s), \(resources) resource(s)"
            )
        }
        let code = try engine.finish(waitingAtMost: 10)
        if code != 0 { throw PluginError(wrapperCode: code) }
    }

    /// Runs `body` while `engine` is the running one (holding the lifecycle lock, so `wrapperFini`
    /// cannot start meanwhile). - Returns: nil if it is not running any more.
    static func whileRunning<Result>(_ engine: any Engine, _ body: () -> Result) -> Result? {
        state.withLock { state in
            guard case .running(let current, _) = state, current === engine else { return nil }
            return body()
        }
    }

    /// Registers a session opened on `engine` unless `wrapperFini` started meanwhile.
    static func adopt(_ session: Session, of engine: any Engine) -> Bool {
        whileRunning(engine) { SessionHandles.add(session) } != nil
    }

    /// The engine running wrapper.py, or `notInitialized`.
    static func running() throws(PluginError) -> any Engine { try serving().engine }

    /// The engine running wrapper.py and the batcher gathering its one-shot requests (nil when they
    /// are not batched), or `notInitialized`.
    static func serving() throws(PluginError) -> (engine: any Engine, batcher: Batcher?) {
        try state.withLock { state throws(PluginError) -> (engine: any Engine, batcher: Batcher?) in
            guard case .running(let engine, let batcher) = state else {
                throw PluginError(.notInitialized, "call wrapperInit first (or it failed: see its error)")
            }
            return (engine, batcher)
        }
    }

    // MARK: errors

    /// Text for `code`: the plugin's own description and latest detail, or wrapper.py's
    /// `wrapperError(code)`. The pointer stays valid after the call (see `ErrorTexts`).
    ///
    /// The corresponding C function is `wrapperError`.
    public static func errorText(_ code: Int32) -> UnsafePointer<CChar> {
        if code == 0 { return ErrorTexts.stable("success") }
        if let text = ErrorTexts.pluginText(code) { return ErrorTexts.stable(text) }
        if let engine = try? running() { return ErrorTexts.stable(engine.errorText(code)) }
        return ErrorTexts.stable(ErrorTexts.recordedWrapperText(code) ?? "wrapper.py error \(code)")
    }

    // MARK: one-shot

    /// Runs `wrapperOnceExec(params, reqData, usrTag, persId)` and hands its Response to the loader
    /// as `*response` (owned by the plugin until `releaseExecOutput`). With batching on (`Batcher`),
    /// the request goes into a `wrapperOnceExecBatch` call and this waits for its own result.
    ///
    /// The corresponding C function is `wrapperExec`.
    public static func exec(
        usrTag: UnsafePointer<CChar>?, params: UnsafeMutablePointer<ParamList>?,
        request: UnsafeMutablePointer<DataList>?, response: UnsafeMutablePointer<UnsafeMutablePointer<DataList>?>?,
        personalisationIds: UnsafeMutablePointer<UInt32>?, personalisationCount: Int32
    ) throws(PluginError) {
        guard let response else { throw PluginError(.invalidArgument, "wrapperExec: respData is NULL") }
        response.pointee = nil
        let (engine, batcher) = try serving()
        let started = Log.debugEnabled ? Log.now() : 0
        let call = OnceCall(
            usrTag: usrTag, params: params, request: request, personalisationIds: personalisationIds,
            personalisationCount: personalisationCount)
        // No sid for a malformed params list (the engine's error names the list).
        let batch = try failing(sid: try? call.sid()) { () throws(PluginError) -> OutputBatch in
            if let batcher { return try batcher.exec(call) }
            return try engine.exec(call)
        }
        if started > 0 {
            Log.debug(
                "wrapperExec: \(payloadBytes(request)) bytes in, \(batch.count) nodes / \(batch.byteCount) bytes out",
                since: started, sid: (try? call.sid()) ?? "")
        }
        response.pointee = batch.head
        ExecOutputs.hold(batch)
    }

    /// The payload bytes of a request list the loader passed (for the debug log; 0 if it is malformed).
    private static func payloadBytes(_ request: UnsafeMutablePointer<DataList>?) -> Int {
        var bytes = 0
        try? forEachData(request, "reqData") { bytes += $0.bytes.count }
        return bytes
    }

    /// Releases what `exec` returned and clears `*response`. Never reads usrTag (the loader freed it).
    ///
    /// The corresponding C function is `wrapperExecFree`.
    public static func releaseExecOutput(_ response: UnsafeMutablePointer<UnsafeMutablePointer<DataList>?>?)
        throws(PluginError)
    {
        guard let response else { throw PluginError(.invalidArgument, "wrapperExecFree: respData is NULL") }
        guard let head = response.pointee else { return }
        let batch = try ExecOutputs.take(head)
        response.pointee = nil
        _ = batch  // dropped here, outside any lock: frees the C list and releases the Python buffers
    }
}

/// Runs `body`; an error it throws is logged with `sid` (computed only then; nil: none).
@inline(__always)
func failing<Result: ~Copyable>(sid: @autoclosure () -> String?, _ body: () throws(PluginError) -> Result)
    throws(PluginError) -> Result
{
    do { return try body() } catch {
        guard error.sid == nil, let sid = sid() else { throw error }
        throw error.with(sid: sid)
    }
}

/// Output lists handed to the loader by `wrapperExec`, until `wrapperExecFree`.
enum ExecOutputs {
    private static let live = Mutex<[UInt: OutputBatch]>([:])

    static func hold(_ batch: OutputBatch) {
        guard let head = batch.head else { return }
        live.withLock { $0[UInt(bitPattern: head)] = batch }
    }

    /// Removes and returns the batch whose first node is `head`; unknown pointers are an error, never freed.
    static func take(_ head: UnsafeMutablePointer<DataList>) throws(PluginError) -> OutputBatch {
        guard let batch = live.withLock({ $0.removeValue(forKey: UInt(bitPattern: head)) }) else {
            throw PluginError(.unknownHandle, "wrapperExecFree: this list was not returned by wrapperExec or was freed")
        }
        return batch
    }
}

/// Runs entry point `entry`'s body and returns the loader's int: 0, or the error's code with its
/// text recorded for `wrapperError`. Counts the call (`Metrics`) and logs every non-zero result
/// once, with the request's sid: wrapper.py's own codes at warning, the plugin's at error.
public func errorCode(_ entry: EntryPoint, _ body: () throws(PluginError) -> Void) -> Int32 {
    let started = Metrics.begin(entry)
    defer {
        // The plugin stopped (wrapperFini, a failed wrapperInit): metrics.file once more, with this call.
        if entry == .wrapperFini || entry == .wrapperInit { MetricsFile.writeFinal() }
    }
    do {
        try body()
        Metrics.end(entry, since: started, code: 0)
        return 0
    } catch {
        ErrorTexts.record(error)
        Metrics.end(entry, since: started, code: error.code)
        let metadata: Logger.Metadata = ["sid": .string(error.sid ?? "-")]
        if error.isPluginCode {
            let name = PluginErrorCode(rawValue: error.code).map { "\($0)" } ?? "?"
            Log.logger.error("\(entry.name) returned \(error.code) (\(name)): \(error.detail)", metadata: metadata)
        } else {
            let detail = error.detail.isEmpty ? "" : ": \(error.detail)"
            Log.logger.warning("\(entry.name) returned wrapper.py's code \(error.code)\(detail)", metadata: metadata)
        }
        return error.code
    }
}
