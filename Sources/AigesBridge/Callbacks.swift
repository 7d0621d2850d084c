import AigesABI
import CPython
import CPythonShims
import Logging
import Synchronization

/// The loader hooks handed over by `wrapperSetCtrl` (may arrive before `wrapperInit`).
public enum LoaderHooks {
    private struct Table: @unchecked Sendable {  // C function pointers: immutable code addresses
        var meter: wrapperMeterCustom?
        var trace: wrapperTraceLog?
    }

    private static let table = Mutex(Table())

    /// Stores `function` as the hook of kind `type` (NULL clears it).
    ///
    /// The corresponding C function is `wrapperSetCtrl`.
    public static func set(type: CtrlType, function: UnsafeMutableRawPointer?) throws(PluginError) {
        switch type {
        case CTMeterCustom:
            table.withLock { $0.meter = unsafeBitCast(function, to: wrapperMeterCustom?.self) }
        case CTTraceLog:
            table.withLock { $0.trace = unsafeBitCast(function, to: wrapperTraceLog?.self) }
        case CTMetricsLog:
            Log.logger.debug("wrapperSetCtrl(CTMetricsLog) accepted; this plugin does not use it")
        default:
            throw PluginError(.invalidArgument, "wrapperSetCtrl: unknown CtrlType \(type.rawValue)")
        }
    }

    static var meter: wrapperMeterCustom? { table.withLock { $0.meter } }
    static var trace: wrapperTraceLog? { table.withLock { $0.trace } }
}

/// C functions Python calls: `aiges_embed._native_callback`, `_native_metric`, `_native_trace`.
enum NativeFunctions {
    /// Method definitions; allocated once and never freed (Python keeps pointers to them).
    nonisolated(unsafe) static let table: [UnsafeMutablePointer<PyMethodDef>] = [
        define("_native_callback") { _, args in
            guard let args = arguments(args, count: 2, "callback(response, tag)"),
                let response = PyTuple_GetItem(args, 0), let tag = PyTuple_GetItem(args, 1)
            else { return nil }
            let code = CallbackTargets.deliverFromPython(response, tag: string(fromUnicode: tag) ?? str(tag) ?? "")
            return PyLong_FromLong(Int(code))
        },
        define("_native_copy", flags: METH_O) { _, loan in
            // A node's first read of its loaned request bytes (copy-on-read mode).
            guard let loan else { return nil }
            return aiges_py_loan_copy(loan)
        },
        define("_native_metric") { _, args in
            guard let args = arguments(args, count: 3, "callback_metric(usrTag, key, count)"),
                let tag = utf8(args, 0, "usrTag"), let key = utf8(args, 1, "key"), let count = integer(args, 2, "count")
            else { return nil }
            guard let hook = LoaderHooks.meter else { return PyLong_FromLong(Int(PluginErrorCode.hookNotSet.rawValue)) }
            let result = withoutGIL { hook(tag, key, count) }
            return PyLong_FromLong(Int(result))
        },
        define("_native_log") { _, args in
            guard let args = arguments(args, count: 2, "_native_log(level, message)"),
                let level = integer(args, 0, "level"), let message = utf8(args, 1, "message")
            else { return nil }
            let mapped: Logger.Level =
                switch level {
                case 50...: .critical
                case 40..<50: .error
                case 30..<40: .warning
                case 20..<30: .info
                case 10..<20: .debug
                default: .trace
                }
            Log.logger.log(level: mapped, "[python] \(String(cString: message))")
            return PyLong_FromLong(0)
        },
        define("_native_trace") { _, args in
            guard let args = arguments(args, count: 3, "callback_trace(usrTag, key, value)"),
                let tag = utf8(args, 0, "usrTag"), let key = utf8(args, 1, "key"), let value = utf8(args, 2, "value")
            else { return nil }
            guard let hook = LoaderHooks.trace else { return PyLong_FromLong(Int(PluginErrorCode.hookNotSet.rawValue)) }
            let result = withoutGIL { hook(tag, key, value) }
            return PyLong_FromLong(Int(result))
        },
    ]

    private static func define(_ name: StaticString, flags: Int32 = METH_VARARGS, _ function: PyCFunction)
        -> UnsafeMutablePointer<PyMethodDef>
    {
        let definition = UnsafeMutablePointer<PyMethodDef>.allocate(capacity: 1)  // lives for the process
        definition.initialize(
            to: PyMethodDef(
                ml_name: UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self),
                ml_meth: function, ml_flags: flags, ml_doc: nil))
        return definition
    }

    /// The argument tuple if it has `count` items; otherwise raises TypeError and returns nil.
    private static func arguments(_ args: PyPointer?, count: Int, _ usage: String) -> PyPointer? {
        guard let args, PyTuple_Size(args) == count else {
            PyErr_SetString(aiges_py_exc_type_error(), "expected \(usage)")
            return nil
        }
        return args
    }

    /// Item `index` as UTF-8 (borrowed from the tuple's str); raises TypeError if it is not a str.
    private static func utf8(_ args: PyPointer, _ index: Int, _ name: String) -> UnsafePointer<CChar>? {
        guard let item = PyTuple_GetItem(args, index), aiges_py_is_unicode(item) != 0 else {
            PyErr_SetString(aiges_py_exc_type_error(), "\(name) must be a str")
            return nil
        }
        return PyUnicode_AsUTF8(item)
    }

    /// Item `index` as Int32; raises TypeError if it is not an int that fits.
    private static func integer(_ args: PyPointer, _ index: Int, _ name: String) -> Int32? {
        guard let item = PyTuple_GetItem(args, index), let value = int32(item) else {
            PyErr_SetString(aiges_py_exc_type_error(), "\(name) must be an int")
            return nil
        }
        return value
    }
}
