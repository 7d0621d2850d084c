import CPython
import CPythonShims

/// Installs the package `aiges_embed` and its private helpers `aiges_embed._plugin` into
/// `sys.modules` and keeps the objects the Swift side calls (node classes, helpers). Everything
/// here needs the GIL.
///
/// Their source is python/aiges_embed/ (`__init__.py`, `_plugin.py`), the same files pip installs;
/// Sources/CPythonShims/sources.c builds them into the library, so the plugin needs no files at run
/// time. The natives (`_native_*`, Callbacks.swift) are put into each module's namespace before its
/// source runs; outside the plugin the modules define stand-ins for them.
enum Bootstrap {
    /// Objects from the embedded modules, created once and never released.
    struct Objects {
        let dataListNode: PyPointer
        let dataListCls: PyPointer
        /// `BatchRequest`, one request of a `wrapperOnceExecBatch` call.
        let batchRequest: PyPointer
        let loadWrapper: PyPointer
        let method: PyPointer
        let describe: PyPointer
        let containerReferences: PyPointer
        let configure: PyPointer
        let adoptLogHandlers: PyPointer
        let publish: PyPointer
        /// Where `DataListNode`'s and `DataListCls`'s `__slots__` live in their instances.
        let node: NodeSlots
        let listSlot: Int
        /// Interned attribute and method names.
        let names: Names
    }

    /// Offsets of `DataListNode`'s slots, so the plugin can fill a node without running `__init__`.
    struct NodeSlots {
        let key, view, data, loan, len, type, status, desc: Int
    }

    /// Interned strs for the attributes the hot path reads.
    struct Names {
        let key, data, len, status, type, desc, list, errorCode, handle, detach, own, release: PyPointer
    }

    /// Set once by `install` before any request can arrive; read only with the GIL held.
    nonisolated(unsafe) private(set) static var objects: Objects?

    /// Creates the modules. Safe to call again (does nothing the second time).
    static func install() throws(PluginError) {
        guard objects == nil else { return }
        let embed = try makeModule(
            "aiges_embed", source: aiges_source_embed(), natives: NativeFunctions.table, isPackage: true)
        let plugin = try makeModule(
            "aiges_embed._plugin", source: aiges_source_plugin(), natives: NativeFunctions.table)
        guard PyObject_SetAttrString(embed.pointer, "_plugin", plugin.pointer) == 0 else {
            throw PluginError.fromPython(.initFailed, "aiges_embed._plugin")
        }
        let dataListNode = try attribute(embed.pointer, "DataListNode").take()
        let dataListCls = try attribute(embed.pointer, "DataListCls").take()
        func slot(_ type: PyPointer, _ name: StaticString) throws(PluginError) -> Int {
            let offset = aiges_py_slot_offset(try attribute(type, name).pointer)
            guard offset >= 0 else { throw PluginError(.initFailed, "aiges_embed: \(name) is not a slot") }
            return offset
        }
        func interned(_ name: StaticString) throws(PluginError) -> PyPointer {
            let raw = UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self)
            return try PyRef(steal: PyUnicode_InternFromString(raw), "interning \(name)").take()
        }
        objects = Objects(
            dataListNode: dataListNode, dataListCls: dataListCls,
            batchRequest: try attribute(embed.pointer, "BatchRequest").take(),
            loadWrapper: try attribute(plugin.pointer, "load_wrapper").take(),
            method: try attribute(plugin.pointer, "method").take(),
            describe: try attribute(plugin.pointer, "describe").take(),
            containerReferences: try attribute(plugin.pointer, "container_references").take(),
            configure: try attribute(plugin.pointer, "configure").take(),
            adoptLogHandlers: try attribute(plugin.pointer, "adopt_log_handlers").take(),
            publish: try attribute(plugin.pointer, "publish_embed_module").take(),
            node: NodeSlots(
                key: try slot(dataListNode, "key"), view: try slot(dataListNode, "_view"),
                data: try slot(dataListNode, "_data"), loan: try slot(dataListNode, "_loan"),
                len: try slot(dataListNode, "len"),
                type: try slot(dataListNode, "type"), status: try slot(dataListNode, "status"),
                desc: try slot(dataListNode, "desc")),
            listSlot: try slot(dataListCls, "list"),
            names: Names(
                key: try interned("key"), data: try interned("data"), len: try interned("len"),
                status: try interned("status"), type: try interned("type"), desc: try interned("desc"),
                list: try interned("list"), errorCode: try interned("error_code"), handle: try interned("handle"),
                detach: try interned("_detach"), own: try interned("_own"),
                release: try interned("release")))
    }

    /// Runs `source` (NUL-terminated) as module `name`, with `natives` in its namespace, and registers
    /// it in sys.modules. A package gets an empty `__path__`: its only submodules are the ones
    /// installed here (importing any other fails cleanly); a submodule's parent must be installed first.
    private static func makeModule(
        _ name: String, source: UnsafePointer<CChar>, natives: [UnsafeMutablePointer<PyMethodDef>],
        isPackage: Bool = false
    ) throws(PluginError) -> PyRef {
        let module = try PyRef(steal: PyModule_New(name), "creating module \(name)")
        guard let namespace = PyModule_GetDict(module.pointer) else {  // borrowed
            throw PluginError.fromPython(.initFailed, "module \(name)")
        }
        PyDict_SetItemString(namespace, "__builtins__", PyEval_GetBuiltins())
        let package = try makeUnicode(isPackage ? name : String(name.prefix { $0 != "." }))
        PyDict_SetItemString(namespace, "__package__", package.pointer)
        if isPackage {
            let path = try PyRef(steal: PyList_New(0), "\(name).__path__")
            PyDict_SetItemString(namespace, "__path__", path.pointer)
        }
        for definition in natives {
            let function = try PyRef(steal: PyCFunction_NewEx(definition, nil, nil), "native function")
            PyDict_SetItemString(namespace, definition.pointee.ml_name, function.pointer)
        }
        let code = try PyRef(steal: Py_CompileString(source, "<\(name)>", Py_file_input), "compiling \(name)")
        _ = try PyRef(steal: PyEval_EvalCode(code.pointer, namespace, namespace), "running \(name)")
        guard PyDict_SetItemString(PyImport_GetModuleDict(), name, module.pointer) == 0 else {
            throw PluginError.fromPython(.initFailed, "registering \(name)")
        }
        return module
    }

    /// Applies the `python.*` config keys and output capture (`aiges_embed._plugin.configure`). GIL required.
    static func configureEnvironment(_ settings: [String: String]) throws(PluginError) {
        guard let objects else { throw PluginError(.initFailed, "aiges_embed not installed") }
        func text(_ key: String) throws(PluginError) -> PyRef {
            guard let value = settings[key], !value.isEmpty else { return PyRef(retain: aiges_py_none()) }
            return try makeUnicode(value)
        }
        let venv = try text("python.venv")
        let executable = try text("python.executable")
        let paths = try PyRef(steal: PyList_New(0), "python.path")
        for entry in (settings["python.path"] ?? "").split(separator: ":") {
            let item = try makeUnicode(String(entry))
            PyList_Append(paths.pointer, item.pointer)
        }
        let capture = !["0", "false", "no", "off"].contains(settings["log.capture_python"]?.lowercased() ?? "")
        let level = try PyRef(steal: PyLong_FromLong(Log.pythonLevel), "log level")
        var arguments: [PyPointer?] = [
            venv.pointer, paths.pointer, executable.pointer, capture ? aiges_py_true() : aiges_py_false(),
            level.pointer,
        ]
        guard let result = aiges_py_vectorcall(objects.configure, &arguments, 5) else {
            throw PluginError.fromPython(.initFailed, "configuring the Python environment")
        }
        Py_DecRef(result)
        let source = try PyRef(steal: PyUnicode_FromString(aiges_source_embed()), "aiges_embed's source")
        var sourceArgument: PyPointer? = source.pointer
        if let published = aiges_py_vectorcall(objects.publish, &sourceArgument, 1) {
            Py_DecRef(published)
        } else {
            _ = PluginError.fromPython(.internalError, "publishing aiges_embed for child processes")
        }
    }

    /// Lets root logging handlers that write to the captured streams log through the plugin.
    static func adoptLogHandlers() {
        guard let adopt = objects?.adoptLogHandlers else { return }
        if let result = aiges_py_vectorcall(adopt, nil, 0) { Py_DecRef(result) } else { PyErr_Clear() }
    }

    /// `aiges_embed._plugin.describe(exception)`: its summary line and traceback, or nil if that fails.
    static func describe(_ exception: PyPointer) -> (String, String)? {
        guard let describe = objects?.describe else { return nil }
        var argument: PyPointer? = exception
        guard let result = aiges_py_vectorcall(describe, &argument, 1) else {
            PyErr_Clear()
            return nil
        }
        defer { Py_DecRef(result) }
        guard aiges_py_is_tuple(result) != 0, PyTuple_Size(result) == 2,
            let summary = PyTuple_GetItem(result, 0).flatMap(string(fromUnicode:)),
            let traceback = PyTuple_GetItem(result, 1).flatMap(string(fromUnicode:))
        else { return nil }
        return (summary, traceback)
    }
}
