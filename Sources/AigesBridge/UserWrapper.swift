import CPython
import CPythonShims
import Glibc

/// Methods the plugin may call on the user's `Wrapper` instance.
enum WrapperMethod: Int, CaseIterable {
    case wrapperInit, wrapperFini, wrapperError
    case wrapperOnceExec, wrapperOnceExecAsync
    case wrapperCreate, wrapperWrite, wrapperRead, wrapperDestroy, wrapperDebugInfo
    case wrapperLoadRes, wrapperUnloadRes

    /// The Python method name.
    var name: String { String(describing: self) }

    /// Arguments of the newest form (python-api.md); older forms take a prefix of them.
    var maximumArguments: Int {
        switch self {
        case .wrapperFini: 0
        case .wrapperInit, .wrapperError, .wrapperRead, .wrapperDestroy, .wrapperDebugInfo, .wrapperUnloadRes: 1
        case .wrapperWrite, .wrapperLoadRes: 2
        case .wrapperOnceExec, .wrapperOnceExecAsync, .wrapperCreate: 4
        }
    }
}

/// The user's `Wrapper` instance and the methods it defines, resolved once at load.
///
/// Missing methods do not stop loading; calling one fails with `methodMissing`.
final class UserWrapper: @unchecked Sendable {  // immutable after init; Python objects used under the GIL
    /// The wrapper.py file it came from.
    let path: String
    private let instance: PyPointer  // owned
    private let methods: [Method?]  // by WrapperMethod.rawValue

    /// A method wrapper.py defines: the bound method (owned), how many arguments it takes, their names.
    private struct Method {
        let callable: PyPointer
        let arity: Int
        let parameterNames: [String]
    }

    /// Imports `path`, instantiates `className` and inspects its methods. GIL required.
    init(path: String, className: String) throws(PluginError) {
        guard let objects = Bootstrap.objects else { throw PluginError(.initFailed, "aiges_embed not installed") }
        self.path = path
        let pathObject = try makeUnicode(path)
        let classObject = try makeUnicode(className)
        var arguments: [PyPointer?] = [pathObject.pointer, classObject.pointer]
        guard let instance = aiges_py_vectorcall(objects.loadWrapper, &arguments, 2) else {
            throw PluginError.fromPython(.initFailed, "cannot load \(path)")
        }
        self.instance = instance
        var methods: [Method?] = []
        for method in WrapperMethod.allCases {
            let name = try makeUnicode(method.name)
            let most = try PyRef(steal: PyLong_FromLong(method.maximumArguments), "")
            var arguments: [PyPointer?] = [instance, name.pointer, most.pointer]
            guard let found = aiges_py_vectorcall(objects.method, &arguments, 3) else {
                let error = PluginError.fromPython(.initFailed, "inspecting \(className).\(method.name) in \(path)")
                methods.forEach { Py_DecRef($0?.callable) }
                Py_DecRef(instance)
                throw error
            }
            methods.append(Self.unpack(found))
        }
        self.methods = methods
    }

    /// The method from the helper's `(callable, arity, names)` tuple (stealing `found`), or nil for None.
    private static func unpack(_ found: PyPointer) -> Method? {
        defer { Py_DecRef(found) }
        guard aiges_py_is_tuple(found) != 0, let callable = PyTuple_GetItem(found, 0),
            let arity = PyTuple_GetItem(found, 1).flatMap(int32),
            let names = PyTuple_GetItem(found, 2).flatMap(string(fromUnicode:))
        else { return nil }
        let parameterNames = names.split(separator: ",").map(String.init)
        return Method(callable: PyRef(retain: callable).take(), arity: Int(arity), parameterNames: parameterNames)
    }

    /// The lower-cased name of `method`'s parameter at `index` (after self), if known.
    func parameterName(_ method: WrapperMethod, at index: Int) -> String? {
        guard let names = methods[method.rawValue]?.parameterNames, index < names.count else { return nil }
        return names[index]
    }

    /// Whether wrapper.py defines `method`.
    func defines(_ method: WrapperMethod) -> Bool { methods[method.rawValue] != nil }

    /// Calls `method` with as many of `arguments` (the newest form's) as it accepts. GIL required.
    /// A Python exception becomes `pythonException`, logged once with its traceback and `sid`.
    func call(_ method: WrapperMethod, _ arguments: [PyPointer?], sid: @autoclosure () -> String? = nil)
        throws(PluginError) -> PyRef
    {
        guard let found = methods[method.rawValue] else {
            throw PluginError(.methodMissing, "\(path.lastComponent) defines no Wrapper.\(method.name)")
        }
        var arguments = arguments
        let count = min(found.arity, arguments.count)
        guard let result = aiges_py_vectorcall(found.callable, &arguments, count) else {
            throw PluginError.fromPython(.pythonException, "Wrapper.\(method.name)", sid: sid())
        }
        return try PyRef(steal: result, "")
    }

    /// Calls `method` and reads its result as a status code: an int (None counts as 0).
    func callForCode(_ method: WrapperMethod, _ arguments: [PyPointer?], sid: @autoclosure () -> String? = nil)
        throws(PluginError) -> Int32
    {
        let result = try call(method, arguments, sid: sid())
        if result.pointer == aiges_py_none() { return 0 }
        guard let code = int32(result.pointer) else {
            throw PluginError(
                .badReturnType,
                "Wrapper.\(method.name) returned \(PythonException.typeName(of: result.pointer)), expected int")
        }
        return code
    }

    deinit {
        withGIL {
            for method in methods { Py_DecRef(method?.callable) }
            Py_DecRef(instance)
        }
    }
}

extension String {
    /// The part after the last "/".
    var lastComponent: String {
        guard let slash = lastIndex(of: "/") else { return self }
        return String(self[index(after: slash)...])
    }
}
