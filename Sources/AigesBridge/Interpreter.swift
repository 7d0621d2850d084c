import CPython
import CPythonShims
import Glibc
import Synchronization

/// CPython's lifecycle in the host process: started once, never finalised
/// (extension modules such as numpy cannot be initialised twice).
enum Interpreter {
    private enum Phase {
        case notStarted
        case running
        case failed(String)
    }

    private static let phase = Mutex(Phase.notStarted)

    /// Starts the interpreter on first use; later calls return at once (or rethrow the first failure).
    ///
    /// On return the calling thread does not hold the GIL; use `withGIL`.
    static func startOnce() throws(PluginError) {
        try phase.withLock { phase throws(PluginError) in
            switch phase {
            case .running: return
            case .failed(let reason): throw PluginError(.initFailed, reason)
            case .notStarted: break
            }
            do throws(PluginError) {
                try start()
                phase = .running
            } catch {
                phase = .failed(error.detail)
                throw error
            }
        }
    }

    private static func start() throws(PluginError) {
        promoteLibpythonToGlobalScope()
        if Py_IsInitialized() != 0 {
            // The host embeds Python already: use its interpreter, leave its GIL state alone.
            try withGIL { () throws(PluginError) in try Bootstrap.install() }
            return
        }
        var config = PyConfig()
        PyConfig_InitPythonConfig(&config)
        defer { PyConfig_Clear(&config) }
        config.install_signal_handlers = 0  // the host owns SIGINT/SIGTERM
        config.parse_argv = 0
        config.configure_c_stdio = 0  // the host owns stdio
        let status = Py_InitializeFromConfig(&config)
        if PyStatus_Exception(status) != 0 {
            let message = status.err_msg.map { String(cString: $0) } ?? "unknown error"
            throw PluginError(.initFailed, "cannot start Python: \(message)")
        }
        do {
            try Bootstrap.install()
        } catch {
            _ = PyEval_SaveThread()
            throw error
        }
        ThreadStates.markInitialThread()
        _ = PyEval_SaveThread()  // release the GIL: any loader thread may now enter
        Log.logger.info("Python \(String(cString: Py_GetVersion())) started")
    }

    /// Re-opens the libpython this library links with `RTLD_GLOBAL`.
    ///
    /// The loader opens us with `RTLD_NOW` only, which leaves libpython's symbols local:
    /// extension modules (numpy) would then fail with "undefined symbol: PyExc_…".
    private static func promoteLibpythonToGlobalScope() {
        let anyPythonFunction: @convention(c) () -> Int32 = Py_IsInitialized
        guard let path = aiges_shared_object_path(unsafeBitCast(anyPythonFunction, to: UnsafeRawPointer.self)) else {
            Log.logger.warning("cannot locate libpython; numpy-style extension modules may fail to import")
            return
        }
        if dlopen(path, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL) == nil {  // handle kept open on purpose
            let reason = dlerror().map { String(cString: $0) } ?? "?"
            Log.logger.warning("cannot promote \(String(cString: path)) to global scope: \(reason)")
        }
    }

    /// The directory holding libwrapper.so, for finding a wrapper.py placed beside it.
    static var libraryDirectory: String? {
        let anyOwnFunction: @convention(c) () -> Void = {}
        guard let path = aiges_shared_object_path(unsafeBitCast(anyOwnFunction, to: UnsafeRawPointer.self)) else {
            return nil
        }
        let full = String(cString: path)
        guard let slash = full.lastIndex(of: "/") else { return "." }
        return String(full[..<slash])
    }
}
