import AigesABI
import Glibc

/// Where wrapper.py runs: in this process (`InProcessEngine`) or in worker processes.
///
/// The service layer (`Plugin`) owns the C ABI, lifecycle, session handles, delivery, timeouts,
/// errors and metrics; an engine only runs wrapper.py's methods. `Plugin` checks `defines` before
/// a call that needs a method, so an engine is asked only for what wrapper.py defines (but for
/// `write`, whose missing method the engine reports as `methodMissing`, as for any call).
/// Every method may be called from any thread, without a lock held.
protocol Engine: AnyObject, Sendable {
    /// wrapper.py's file name, for texts like "wrapper.py defines no Wrapper.wrapperCreate".
    var wrapperName: String { get }

    /// Whether wrapper.py defines `method`.
    func defines(_ method: WrapperMethod) -> Bool

    /// The engine's own state for the metrics (worker processes: how many are ready, deaths).
    var gauges: [(name: String, help: String, value: Int)] { get }

    /// Whether a pull session's results wait in the engine (worker processes: wrapper.py delivers
    /// them there) rather than in the session's target, so that every `wrapperRead` asks `read`.
    var keepsPullResults: Bool { get }

    /// wrapper.py's `wrapperError(code)`, or a generic text if it has none or it fails.
    func errorText(_ code: Int32) -> String

    /// `wrapperOnceExec`: its output list (kind `.once`).
    func exec(_ call: OnceCall) throws(PluginError) -> OutputBatch

    /// `wrapperOnceExecBatch(requests)` for a batch gathered by `Batcher` (never empty; at most
    /// `batch.max_size`): one result per call, in the same order — its output list (kind `.once`),
    /// or the error of that request alone (its Response's `error_code`, a bad output, a malformed
    /// list). Throws when the whole batch fails (the method raised: `pythonException`; it returned
    /// something other than one Response per request: `badReturnType`). Worker processes: the whole
    /// batch goes to one worker. The calls' pointers stay valid until it returns.
    func execBatch(_ calls: [OnceCall]) throws(PluginError) -> [Result<OutputBatch, PluginError>]

    /// Opens an async request whose result goes to `target`: already registered under its usrTag
    /// and sid (`target.sid`), its timer armed, not yet armed for delivery. Calls
    /// `wrapperOnceExecAsync` if wrapper.py defines it (its non-zero code is thrown).
    /// - Returns: work that starts serving the request (in-process: handing `wrapperOnceExec` to the
    ///   fallback pool), or nil. `Plugin` runs it just before `target.arm()`, holding the lifecycle
    ///   lock: it must not block or call into the plugin. It is not run if `wrapperFini` started
    ///   meanwhile (the request then ends with 22001).
    func startAsync(_ call: OnceCall, target: CallbackTarget) throws(PluginError) -> (@Sendable () -> Void)?

    /// `wrapperCreate`; results it delivers go to `target` (already registered under its usrTag and
    /// sid, `target.sid`; the engine adds wrapper.py's handle before any of wrapper.py's threads can
    /// deliver with it). - Returns: the engine's side of the session.
    func create(_ call: OnceCall, target: CallbackTarget) throws(PluginError) -> any SessionLink

    /// `wrapperWrite(handle, req)`.
    /// - Returns: the request's payload bytes (counters, debug log) and wrapper.py's code.
    func write(_ link: any SessionLink, _ request: UnsafeMutablePointer<DataList>?) throws(PluginError)
        -> (bytes: Int, code: Int32)

    /// `wrapperRead(handle)`: what wrapper.py returned (kind `.stream`), nil for None.
    func read(_ link: any SessionLink) throws(PluginError) -> OutputBatch?

    /// `wrapperDestroy(handle)`. - Returns: wrapper.py's code.
    func destroy(_ link: any SessionLink) throws(PluginError) -> Int32

    /// wrapper.py's `wrapperDebugInfo(handle)` text; `summary()` (made again for each use) when its
    /// result is not a str, and with " (wrapperDebugInfo raised)" appended when it fails.
    func debugInfo(_ link: any SessionLink, summary: () -> String) -> String

    /// `wrapperLoadRes(perData, patch_id)`; throws wrapper.py's non-zero code.
    func loadResource(_ data: UnsafeMutablePointer<DataList>?, resId: UInt32, patch: String) throws(PluginError)

    /// `wrapperUnloadRes(patch_id)`; throws wrapper.py's non-zero code.
    func unloadResource(resId: UInt32, patch: String) throws(PluginError)

    /// The first step of `wrapperFini`, before the plugin ends pending requests, sessions and
    /// resources: an engine whose results can still be on their way (worker processes) gets them
    /// accepted by their targets now, so that those requests end with their result.
    func prepareToFinish()

    /// Ends wrapper.py's life: later calls fail, calls still running elsewhere are waited for (at most
    /// `seconds`), then its `wrapperFini()` runs if defined. - Returns: its code.
    func finish(waitingAtMost seconds: Int) throws(PluginError) -> Int32
}

extension Engine {
    /// Serves each call with `exec`, one after the other: for an engine that cannot send a batch as
    /// one call yet (it never calls `wrapperOnceExecBatch`).
    func execBatch(_ calls: [OnceCall]) throws(PluginError) -> [Result<OutputBatch, PluginError>] {
        calls.map { call in Result { () throws(PluginError) -> OutputBatch in try exec(call) } }
    }
}

/// The engine's side of one session (in-process: wrapper.py's handle and the sid as Python strs).
protocol SessionLink: AnyObject, Sendable {
    /// wrapper.py's handle string (from its SessionCreateResponse).
    var pythonHandle: String { get }
}

/// One request's C arguments, as the loader passed them (borrowed for the call only).
struct OnceCall {
    var usrTag: UnsafePointer<CChar>?
    var params: UnsafeMutablePointer<ParamList>?
    var request: UnsafeMutablePointer<DataList>?
    /// The first personalisation id, or 0 when there is none.
    var personalisationId: UInt32

    init(
        usrTag: UnsafePointer<CChar>?, params: UnsafeMutablePointer<ParamList>?,
        request: UnsafeMutablePointer<DataList>?, personalisationIds: UnsafeMutablePointer<UInt32>?,
        personalisationCount: Int32
    ) {
        self.usrTag = usrTag
        self.params = params
        self.request = request
        personalisationId = firstPersonalisationId(personalisationIds, count: personalisationCount)
    }

    /// A call whose first personalisation id is already known (a copy of another call).
    init(
        usrTag: UnsafePointer<CChar>?, params: UnsafeMutablePointer<ParamList>?,
        request: UnsafeMutablePointer<DataList>?, personalisationId: UInt32
    ) {
        self.usrTag = usrTag
        self.params = params
        self.request = request
        self.personalisationId = personalisationId
    }

    /// The request id, for logs and tags: the params list's "sid" value (the last one if repeated;
    /// "" if none) as wrapper.py's str of it prints, bytes that are not UTF-8 as `\udcXX` escapes.
    /// Read from the list on each use (a one-shot call needs it only for logs). A malformed (cyclic)
    /// params list fails as building the params dict does.
    func sid() throws(PluginError) -> String {
        var sid = UnsafeRawBufferPointer(start: nil, count: 0)
        try forEachParam(params, "params") { entry in
            let key = entry.key
            guard key[0] == 0x73, key[1] == 0x69, key[2] == 0x64, key[3] == 0 else { return }  // "sid"
            sid = UnsafeRawBufferPointer(start: entry.value, count: entry.length)
        }
        return pythonText(sid)
    }
}

/// `bytes` as `string(fromUnicode: makeUnicode(bytes))` gives them, without Python: valid UTF-8 as
/// is, each byte of an invalid sequence as the `\udcXX` text of its surrogate escape.
func pythonText(_ bytes: UnsafeRawBufferPointer) -> String {
    let units = bytes.assumingMemoryBound(to: UInt8.self)
    if isASCII(bytes) { return String(decoding: units, as: UTF8.self) }
    var text = ""
    var parser = Unicode.UTF8.ForwardParser()  // errors are maximal subparts, as in CPython's decoder
    var iterator = units.makeIterator()
    var offset = 0
    while true {
        switch parser.parseScalar(from: &iterator) {
        case .valid(let encoded):
            text.unicodeScalars.append(UTF8.decode(encoded))
            offset += encoded.count
        case .error(let length):
            for byte in units[offset..<offset + length] {
                text += "\\udc" + String(byte, radix: 16)
            }
            offset += length
        case .emptyInput:
            return text
        }
    }
}

/// Whether every byte is below 0x80 (eight at a time).
private func isASCII(_ bytes: UnsafeRawBufferPointer) -> Bool {
    var bits: UInt64 = 0
    var offset = 0
    while offset + 8 <= bytes.count {
        bits |= bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
        offset += 8
    }
    while offset < bytes.count {
        bits |= UInt64(bytes[offset])
        offset += 1
    }
    return bits & 0x8080_8080_8080_8080 == 0
}
