import CPython
import Glibc

/// Runs `body` holding the GIL, from any thread (including loader threads Python never saw).
///
/// Re-entrant. The thread's Python thread state is created on its first call and kept
/// (see `ThreadStates`), so a loader thread pays for it once, not per call.
@inline(__always)
func withGIL<Result: ~Copyable, Failure: Error>(_ body: () throws(Failure) -> Result) throws(Failure) -> Result {
    ThreadStates.adoptCurrentThread()
    let state = PyGILState_Ensure()
    defer { PyGILState_Release(state) }
    return try body()
}

/// Runs `body` with the GIL released (for calls into the loader, which may block).
/// Must be called with the GIL held by this thread.
@inline(__always)
func withoutGIL<Result>(_ body: () -> Result) -> Result {
    let saved = PyEval_SaveThread()
    defer { PyEval_RestoreThread(saved) }
    return body()
}

/// Keeps one Python thread state per OS thread for the thread's whole life.
///
/// On a thread's first call we take one `PyGILState_Ensure` and never release it while the
/// thread lives, so later `PyGILState_Ensure/Release` pairs reuse that state instead of creating
/// and destroying one per call. The state is also stored under our own pthread key, whose
/// destructor deletes it when the thread exits: none leak. (The destructor cannot go through
/// `PyGILState_*`: glibc has already cleared Python's own key by the time ours runs.)
enum ThreadStates {
    /// Value of an adopted thread: its `PyThreadState *`, or `unmanaged` for threads whose state
    /// Python owns.
    private static let key: pthread_key_t? = {
        var key = pthread_key_t()
        let created = pthread_key_create(&key) { value in
            guard let value, Int(bitPattern: value) != ThreadStates.unmanaged else { return }
            ThreadStates.deleteAtThreadExit(value.assumingMemoryBound(to: PyThreadState.self))
        }
        return created == 0 ? key : nil
    }()

    /// Marker for threads we must not pin or delete: the one that ran `Py_Initialize` (the main
    /// state) and threads Python created (`threading`), which already have a state of their own.
    private static let unmanaged = 1

    /// Marks the thread that ran `Py_Initialize`: its main state already carries the pinning count.
    static func markInitialThread() {
        guard let key else { return }
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: unmanaged))
    }

    /// Creates and pins the calling thread's Python thread state if it has none yet.
    @inline(__always)
    static func adoptCurrentThread() {
        guard let key, pthread_getspecific(key) == nil else { return }
        if PyGILState_GetThisThreadState() != nil {
            // A thread Python knows (e.g. a `threading` worker calling aiges_embed.callback): it may
            // hold the GIL right now, and its state is Python's to manage.
            pthread_setspecific(key, UnsafeRawPointer(bitPattern: unmanaged))
            return
        }
        _ = PyGILState_Ensure()  // pinned: never released while the thread lives
        let state = PyThreadState_Get()
        _ = PyEval_SaveThread()  // let go of the GIL, keep the state
        pthread_setspecific(key, state)
    }

    /// Runs as the pthread key destructor when an adopted thread exits.
    private static func deleteAtThreadExit(_ state: UnsafeMutablePointer<PyThreadState>) {
        guard Py_IsInitialized() != 0, _Py_IsFinalizing() == 0 else { return }
        PyEval_RestoreThread(state)  // take the GIL with this thread's state
        PyThreadState_Clear(state)
        PyThreadState_DeleteCurrent()  // frees the state and releases the GIL
    }
}
