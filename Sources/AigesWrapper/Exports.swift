// The fifteen C entry points of libwrapper.so (include/aiges/wrapper.h).
// Each one only translates C arguments into a call on `Plugin` and its result into an int.
// exports.map keeps every other symbol local.

import AigesABI
import AigesBridge

/// Hands the plugin a loader hook (`CTMeterCustom`, `CTTraceLog`); callable before `wrapperInit`.
@_cdecl("wrapperSetCtrl")
public func wrapperSetCtrl(_ type: CtrlType, _ function: UnsafeMutableRawPointer?) -> Int32 {
    errorCode(.wrapperSetCtrl) { () throws(PluginError) in try LoaderHooks.set(type: type, function: function) }
}

/// Starts Python, loads wrapper.py and calls its `wrapperInit(config)`.
@_cdecl("wrapperInit")
public func wrapperInit(_ config: pConfig?) -> Int32 {
    errorCode(.wrapperInit) { () throws(PluginError) in try Plugin.initialize(config: config) }
}

/// Calls wrapper.py's `wrapperFini()` and unloads it.
@_cdecl("wrapperFini")
public func wrapperFini() -> Int32 {
    errorCode(.wrapperFini) { () throws(PluginError) in try Plugin.finish() }
}

/// Text for an error code; the pointer stays valid after the call.
@_cdecl("wrapperError")
public func wrapperError(_ code: Int32) -> UnsafePointer<CChar> {
    Plugin.errorText(code)
}

/// The plugin's version string (static lifetime).
@_cdecl("wrapperVersion")
public func wrapperVersion() -> UnsafePointer<CChar> {
    UnsafeRawPointer(Plugin.version.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// Loads personalisation data under `resId`.
@_cdecl("wrapperLoadRes")
public func wrapperLoadRes(_ data: pDataList?, _ resId: UInt32) -> Int32 {
    errorCode(.wrapperLoadRes) { () throws(PluginError) in try Plugin.loadResource(data, resId: resId) }
}

/// Unloads the personalisation data loaded under `resId`.
@_cdecl("wrapperUnloadRes")
public func wrapperUnloadRes(_ resId: UInt32) -> Int32 {
    errorCode(.wrapperUnloadRes) { () throws(PluginError) in try Plugin.unloadResource(resId: resId) }
}

/// Opens a session; returns NULL and sets `*errNum` on failure.
@_cdecl("wrapperCreate")
public func wrapperCreate(
    _ usrTag: UnsafePointer<CChar>?, _ params: pParamList?, _ callback: wrapperCallback?,
    _ psrIds: UnsafeMutablePointer<UInt32>?, _ psrCnt: Int32, _ errNum: UnsafeMutablePointer<Int32>?
) -> UnsafeRawPointer? {
    var handle: UnsafeRawPointer?
    let code = errorCode(.wrapperCreate) { () throws(PluginError) in
        handle = try Plugin.createSession(
            usrTag: usrTag, params: params, callback: callback, personalisationIds: psrIds, personalisationCount: psrCnt
        )
    }
    errNum?.pointee = code
    return handle
}

/// Sends a chunk of session input.
@_cdecl("wrapperWrite")
public func wrapperWrite(_ handle: UnsafeRawPointer?, _ request: pDataList?) -> Int32 {
    errorCode(.wrapperWrite) { () throws(PluginError) in try Plugin.write(handle: handle, request: request) }
}

/// Pulls available session output.
@_cdecl("wrapperRead")
public func wrapperRead(_ handle: UnsafeRawPointer?, _ response: UnsafeMutablePointer<pDataList?>?) -> Int32 {
    errorCode(.wrapperRead) { () throws(PluginError) in try Plugin.read(handle: handle, response: response) }
}

/// Closes a session.
@_cdecl("wrapperDestroy")
public func wrapperDestroy(_ handle: UnsafeRawPointer?) -> Int32 {
    errorCode(.wrapperDestroy) { () throws(PluginError) in try Plugin.destroy(handle: handle) }
}

/// One-shot synchronous request; `*respData` stays the plugin's until `wrapperExecFree`.
@_cdecl("wrapperExec")
public func wrapperExec(
    _ usrTag: UnsafePointer<CChar>?, _ params: pParamList?, _ request: pDataList?,
    _ response: UnsafeMutablePointer<pDataList?>?, _ psrIds: UnsafeMutablePointer<UInt32>?, _ psrCnt: Int32
) -> Int32 {
    errorCode(.wrapperExec) { () throws(PluginError) in
        try Plugin.exec(
            usrTag: usrTag, params: params, request: request, response: response, personalisationIds: psrIds,
            personalisationCount: psrCnt)
    }
}

/// Releases what `wrapperExec` returned; never reads `usrTag`.
@_cdecl("wrapperExecFree")
public func wrapperExecFree(_ usrTag: UnsafePointer<CChar>?, _ response: UnsafeMutablePointer<pDataList?>?) -> Int32 {
    errorCode(.wrapperExecFree) { () throws(PluginError) in try Plugin.releaseExecOutput(response) }
}

/// One-shot asynchronous request; the result arrives through `callback(usrTag, …)`.
@_cdecl("wrapperExecAsync")
public func wrapperExecAsync(
    _ usrTag: UnsafePointer<CChar>?, _ params: pParamList?, _ request: pDataList?, _ callback: wrapperCallback?,
    _ timeout: Int32, _ psrIds: UnsafeMutablePointer<UInt32>?, _ psrCnt: Int32
) -> Int32 {
    errorCode(.wrapperExecAsync) { () throws(PluginError) in
        try Plugin.execAsync(
            usrTag: usrTag, params: params, request: request, callback: callback, timeout: timeout,
            personalisationIds: psrIds, personalisationCount: psrCnt)
    }
}

/// Debug text for a session; valid until the session is destroyed.
@_cdecl("wrapperDebugInfo")
public func wrapperDebugInfo(_ handle: UnsafeRawPointer?) -> UnsafePointer<CChar> {
    Plugin.debugInfo(handle: handle)
}
