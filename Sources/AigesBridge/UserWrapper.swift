import CPython
import CPythonShims
import Glibc

/// What the plugin can pass to a wrapper.py method; each call fills the ones it has.
struct CallArguments {
    var config: PyPointer?
    var code: PyPointer?
    var params: PyPointer?
    var reqData: PyPointer?
    var usrTag: PyPointer?
    var persId: PyPointer?
    /// The request's sid (also the thread's log context while the method runs).
    var sid: PyPointer?
    var handle: PyPointer?
    var patchId: PyPointer?
    var resId: PyPointer?
    /// The list of `BatchRequest` objects of a `wrapperOnceExecBatch` call.
    var requests: PyPointer?

    /// The kinds of value a method parameter can ask for.
    enum Kind: CaseIterable {
        case config, code, params, reqData, usrTag, persId, sid, handle, patchId, resId, requests

        /// Parameter names (lower-cased) seen in wrapper.py files for this value.
        var names: Set<String> {
            switch self {
            case .config: ["config", "cfg", "conf", "configs"]
            case .code: ["ret", "code", "errnum", "err", "error_code", "errcode"]
            case .params: ["params", "param", "parameters"]
            case .reqData: ["reqdata", "req", "data", "datas", "request", "req_data", "perdata", "reqdatas"]
            case .usrTag: ["usrtag", "usr_tag", "usertag", "user_tag", "tag"]
            case .persId: ["persid", "pers_id", "psrid", "psrids", "psr_id"]
            case .sid: ["sid", "session_id", "sessionid"]
            case .handle: ["handle", "hdl", "session"]
            case .patchId: ["patch_id", "patchid", "patch"]
            case .resId: ["resid", "res_id", "resourceid", "resource_id"]
            case .requests: ["requests", "reqs", "batch", "request_list", "requestlist"]
            }
        }
    }

    subscript(kind: Kind) -> PyPointer? {
        switch kind {
        case .config: config
        case .code: code
        case .params: params
        case .reqData: reqData
        case .usrTag: usrTag
        case .persId: persId
        case .sid: sid
        case .handle: handle
        case .patchId: patchId
        case .resId: resId
        case .requests: requests
        }
    }
}

/// Methods the plugin may call on the user's `Wrapper` instance.
enum WrapperMethod: Int, CaseIterable {
    case wrapperInit, wrapperFini, wrapperError
    case wrapperOnceExec, wrapperOnceExecAsync
    case wrapperCreate, wrapperWrite, wrapperRead, wrapperDestroy, wrapperDebugInfo
    case wrapperLoadRes, wrapperUnloadRes
    /// One call for a batch of one-shot requests (config `batch.max_size`; see `Batcher`).
    case wrapperOnceExecBatch

    /// The Python method name.
    var name: String { String(describing: self) }

    /// The arguments of the newest form (python-api.md), in order.
    var newestForm: [CallArguments.Kind] {
        switch self {
        case .wrapperInit: [.config]
        case .wrapperFini: []
        case .wrapperError: [.code]
        case .wrapperOnceExec, .wrapperOnceExecAsync: [.params, .reqData, .usrTag, .persId]
        case .wrapperCreate: [.params, .sid, .persId, .usrTag]
        case .wrapperWrite: [.handle, .reqData]
        case .wrapperRead, .wrapperDestroy, .wrapperDebugInfo: [.handle]
        case .wrapperLoadRes: [.reqData, .patchId]
        case .wrapperUnloadRes: [.patchId]
        case .wrapperOnceExecBatch: [.requests]
        }
    }

    /// Values older forms may ask for by name beyond the newest form's.
    var alsoAvailable: [CallArguments.Kind] {
        switch self {
        case .wrapperOnceExec, .wrapperOnceExecAsync, .wrapperWrite, .wrapperRead, .wrapperDestroy,
            .wrapperDebugInfo:
            [.sid]
        case .wrapperLoadRes, .wrapperUnloadRes: [.resId]
        default: []
        }
    }
}

/// The user's `Wrapper` instance and the methods it defines, resolved once at load.
///
/// Missing methods do not stop loading; calling one fails with `methodMissing`. Each method's
/// argument list is planned once from its parameter names, so every signature generation in
/// use is called with what it asks for.
final class UserWrapper: @unchecked Sendable {  // immutable after init; Python objects used under the GIL
    /// The wrapper.py file it came from.
    let path: String
    private let instance: PythonObject
    private let methods: [Method?]  // by WrapperMethod.rawValue
    /// Set (with the GIL held) when `wrapperFini` is about to run: later calls fail.
    nonisolated(unsafe) private var closed = false

    /// A method wrapper.py defines: the bound method (owned) and what to pass for each parameter.
    private struct Method {
        let callable: PythonObject
        let plan: [CallArguments.Kind]
    }

    /// Imports `path`, instantiates `className` and plans its methods' arguments. GIL required.
    init(path: String, className: String) throws(PluginError) {
        guard let objects = Bootstrap.objects else { throw PluginError(.initFailed, "aiges_embed not installed") }
        self.path = path
        let pathObject = try makeUnicode(path)
        let classObject = try makeUnicode(className)
        var arguments: [PyPointer?] = [pathObject.pointer, classObject.pointer]
        guard let loaded = aiges_py_vectorcall(objects.loadWrapper, &arguments, 2) else {
            throw PluginError.fromPython(.initFailed, "cannot load \(path)")
        }
        let instance = PythonObject(try PyRef(steal: loaded, ""))
        self.instance = instance
        var methods: [Method?] = []
        for method in WrapperMethod.allCases {
            let name = try makeUnicode(method.name)
            var arguments: [PyPointer?] = [instance.pointer, name.pointer]
            guard let found = aiges_py_vectorcall(objects.method, &arguments, 2) else {
                throw PluginError.fromPython(.initFailed, "inspecting \(className).\(method.name) in \(path)")
            }
            methods.append(Self.plan(method, found))
        }
        self.methods = methods
        guard defines(.wrapperOnceExec) || defines(.wrapperOnceExecAsync) || defines(.wrapperCreate) else {
            throw PluginError(
                .initFailed,
                "\(path.lastComponent): class \(className) defines none of wrapperOnceExec, wrapperOnceExecAsync, "
                    + "wrapperCreate: the loader could not call it")
        }
        try warnAboutMisspelledMethods(className, objects)
    }

    /// Warns about methods named like an entry point that none is ("wrapperOnceExce"), naming the
    /// nearest entry point. Stubs of the aiges SDK's WrapperBase are not the author's and are skipped.
    private func warnAboutMisspelledMethods(_ className: String, _ objects: Bootstrap.Objects) throws(PluginError) {
        let names = try PyRef(steal: PyObject_Dir(instance.pointer), "dir(\(className))")
        let known = WrapperMethod.allCases.map(\.name)
        for index in 0..<PyList_Size(names.pointer) {
            guard let item = PyList_GetItem(names.pointer, index), let name = string(fromUnicode: item),
                name.lowercased().hasPrefix("wrapper"), !known.contains(name)
            else { continue }
            var arguments: [PyPointer?] = [instance.pointer, item]
            guard let found = aiges_py_vectorcall(objects.method, &arguments, 2) else {
                PyErr_Clear()
                continue
            }
            let isMethod = found != aiges_py_none()
            Py_DecRef(found)
            guard isMethod else { continue }
            let nearest = known.min { Settings.distance(name, $0) < Settings.distance(name, $1) } ?? ""
            Log.logger.warning(
                "\(className).\(name) is not an entry point the plugin calls; did you mean \(nearest)?")
        }
    }

    /// The method and its argument plan from the helper's `(callable, [(name, has default)], *args)`
    /// (stealing `found`), or nil for None.
    private static func plan(_ method: WrapperMethod, _ found: PyPointer) -> Method? {
        defer { Py_DecRef(found) }
        guard aiges_py_is_tuple(found) != 0, let callable = PyTuple_GetItem(found, 0),
            let parameters = PyTuple_GetItem(found, 1), let varArgs = PyTuple_GetItem(found, 2)
        else { return nil }
        let owned = PythonObject(PyRef(retain: callable))
        if PyObject_IsTrue(varArgs) == 1 { return Method(callable: owned, plan: method.newestForm) }
        let available = method.newestForm + method.alsoAvailable
        var plan: [CallArguments.Kind] = []
        for index in 0..<PyList_Size(parameters) {
            guard let entry = PyList_GetItem(parameters, index), let name = PyTuple_GetItem(entry, 0).flatMap(string),
                let hasDefault = PyTuple_GetItem(entry, 1).map({ PyObject_IsTrue($0) == 1 })
            else { break }
            if let kind = available.first(where: { $0.names.contains(name) }) {
                plan.append(kind)
            } else if hasDefault {
                break  // an optional parameter the plugin has nothing for: leave it to its default
            } else if index < method.newestForm.count {
                plan.append(method.newestForm[index])  // an unfamiliar name: the newest form's value here
            } else {
                Log.logger.warning("Wrapper.\(method.name): nothing to pass as parameter \"\(name)\"; passing None")
                plan.append(.code)  // never set for this method: None
            }
        }
        return Method(callable: owned, plan: plan)
    }

    /// Whether wrapper.py defines `method` (an unchanged aiges.sdk.WrapperBase stub does not count).
    func defines(_ method: WrapperMethod) -> Bool { methods[method.rawValue] != nil }

    /// Calls `method` with the arguments its plan asks for. GIL required. A Python exception becomes
    /// `pythonException`, logged once with its traceback and the request's sid.
    func call(_ method: WrapperMethod, _ arguments: CallArguments) throws(PluginError) -> PyRef {
        guard !closed else { throw PluginError(.notInitialized, "wrapperFini has unloaded wrapper.py") }
        guard !DataPath.escaped.load(ordering: .relaxed) else {
            throw PluginError(
                .viewEscaped,
                "an earlier call kept loader memory (data.lend): wrapper.py is not called until wrapperFini and wrapperInit"
            )
        }
        return try invoke(method, arguments)
    }

    /// Ends the wrapper's life: later calls fail (GIL required), then waits, without the GIL, for
    /// calls in progress on other threads to return (at most `wait` seconds), and calls
    /// `wrapperFini()` if defined. - Returns: its code.
    func finish(waitingAtMost wait: Int64) throws(PluginError) -> Int32 {
        withGIL { closed = true }
        let deadline = monotonicNow() + wait * 1_000_000_000
        while aiges_calls_elsewhere() > 0, monotonicNow() < deadline { usleep(1000) }
        if aiges_calls_elsewhere() > 0 {
            Log.logger.error(
                "wrapperFini: wrapper.py calls still running after \(wait) s; calling its wrapperFini anyway")
        }
        guard defines(.wrapperFini) else { return 0 }
        return try withGIL { () throws(PluginError) -> Int32 in
            try code(of: invoke(.wrapperFini, CallArguments()), .wrapperFini)
        }
    }

    private func invoke(_ method: WrapperMethod, _ arguments: CallArguments) throws(PluginError) -> PyRef {
        guard let found = methods[method.rawValue] else {
            throw PluginError(.methodMissing, "\(path.lastComponent) defines no Wrapper.\(method.name)")
        }
        aiges_calls_enter()
        defer { aiges_calls_leave() }
        let none = aiges_py_none()
        let result = RequestContext.with(sid: arguments.sid) {
            withUnsafeTemporaryAllocation(of: PyPointer?.self, capacity: max(found.plan.count, 1)) { buffer in
                for (index, kind) in found.plan.enumerated() { buffer[index] = arguments[kind] ?? none }
                return aiges_py_vectorcall(found.callable.pointer, buffer.baseAddress, found.plan.count)
            }
        }
        guard let result else {
            throw PluginError.fromPython(
                .pythonException, "Wrapper.\(method.name)", sid: arguments.sid.flatMap(string(fromUnicode:)))
        }
        return try PyRef(steal: result, "")
    }

    /// Calls `method` and reads its result as a status code: an int (None counts as 0).
    func callForCode(_ method: WrapperMethod, _ arguments: CallArguments) throws(PluginError) -> Int32 {
        try code(of: call(method, arguments), method)
    }

    /// A method's result read as a status code: an int (None counts as 0).
    private func code(of result: consuming PyRef, _ method: WrapperMethod) throws(PluginError) -> Int32 {
        if result.pointer == aiges_py_none() { return 0 }
        guard let code = int32(result.pointer) else {
            throw PluginError(
                .badReturnType,
                "Wrapper.\(method.name) returned \(PythonException.typeName(of: result.pointer)), expected int")
        }
        return code
    }

}

extension String {
    /// The part after the last "/".
    var lastComponent: String {
        guard let slash = lastIndex(of: "/") else { return self }
        return String(self[index(after: slash)...])
    }
}
