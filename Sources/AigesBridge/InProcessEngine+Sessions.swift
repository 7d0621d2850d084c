import AigesABI
import CPython
import CPythonShims

/// The in-process side of one session: wrapper.py's handle and the sid as Python strs.
final class InProcessSessionLink: SessionLink {
    let pythonHandle: String
    /// wrapper.py's handle and the sid as Python strs.
    let handleObject: PythonObject
    let sidObject: PythonObject

    init(pythonHandle: String, handleObject: PythonObject, sidObject: PythonObject) {
        self.pythonHandle = pythonHandle
        self.handleObject = handleObject
        self.sidObject = sidObject
    }

    /// The session's handle and sid as wrapper.py methods get them (borrowed from this link).
    var arguments: CallArguments { CallArguments(sid: sidObject.pointer, handle: handleObject.pointer) }
}

/// Session calls: create, write, read, destroy, debug info.
extension InProcessEngine {
    /// Calls `wrapperCreate(params, sid, persId, usrTag)` — sid being `target.sid`, usrTag
    /// `target.label` — and registers `target` under the handle it returns (with the GIL still
    /// held: wrapper.py's threads may deliver with it at once).
    func create(_ call: OnceCall, target: CallbackTarget) throws(PluginError) -> any SessionLink {
        try withGIL { () throws(PluginError) -> any SessionLink in
            let params = try Params(call.params)
            let tag = try makeUnicode(target.label)
            let persId = try PyRef(steal: PyLong_FromUnsignedLong(UInt(call.personalisationId)), "persId")
            let sidObject = try makeUnicode(target.sid)
            let result = try wrapper.call(
                .wrapperCreate,
                CallArguments(
                    params: params.dict.pointer, usrTag: tag.pointer, persId: persId.pointer, sid: sidObject.pointer))
            let pythonHandle = try Self.sessionHandle(from: result.pointer)
            let handleText = string(fromUnicode: pythonHandle.pointer) ?? ""
            CallbackTargets.register(target, tags: [handleText])
            return InProcessSessionLink(
                pythonHandle: handleText, handleObject: PythonObject(pythonHandle), sidObject: PythonObject(sidObject))
        }
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
    func write(_ link: any SessionLink, _ request: UnsafeMutablePointer<DataList>?) throws(PluginError)
        -> (bytes: Int, code: Int32)
    {
        let session = own(link)
        return try withGIL { () throws(PluginError) -> (bytes: Int, code: Int32) in
            var request = try LoanedRequest.make(request, "reqData")
            let bytes = request.byteCount
            var arguments = session.arguments
            arguments.reqData = request.list
            let code = try wrapper.callForCode(.wrapperWrite, arguments)
            try request.finish()
            return (bytes, code)
        }
    }

    /// Calls `wrapperRead(handle, sid)`.
    func read(_ link: any SessionLink) throws(PluginError) -> OutputBatch? {
        let session = own(link)
        return try withGIL { () throws(PluginError) -> OutputBatch? in
            let result = try wrapper.call(.wrapperRead, session.arguments)
            if result.pointer == aiges_py_none() { return nil }
            return try OutputBatch(result.pointer, kind: .stream)
        }
    }

    /// Calls `wrapperDestroy(handle)`. Without the GIL.
    func destroy(_ link: any SessionLink) throws(PluginError) -> Int32 {
        let session = own(link)
        return try withGIL { () throws(PluginError) -> Int32 in
            try wrapper.callForCode(.wrapperDestroy, session.arguments)
        }
    }

    /// Calls `wrapperDebugInfo(handle)`.
    func debugInfo(_ link: any SessionLink, summary: () -> String) -> String {
        let session = own(link)
        return withGIL { () -> String in
            guard let result = try? wrapper.call(.wrapperDebugInfo, session.arguments) else {
                return summary() + " (wrapperDebugInfo raised)"
            }
            return string(fromUnicode: result.pointer) ?? str(result.pointer) ?? summary()
        }
    }

    /// A link this engine made (`Plugin` passes each session's link only to the engine that opened it).
    private func own(_ link: any SessionLink) -> InProcessSessionLink {
        unsafeDowncast(link, to: InProcessSessionLink.self)
    }
}
