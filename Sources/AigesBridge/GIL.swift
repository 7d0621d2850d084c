import CPython
import Glibc
import Synchronization

/// Runs `body` holding the GIL, from any thread (including loader threads Python never saw).
///
/// Re-entrant. The thread's Python thread state is created on its first call and kept
/// (see `ThreadStates`), so a loader thread pays for it once, not per call. A thread that does not
/// hold the GIL yet passes the `EntryGate` first.
@inline(__always)
func withGIL<Result: ~Copyable, Failure: Error>(_ body: () throws(Failure) -> Result) throws(Failure) -> Result {
    ThreadStates.adoptCurrentThread()
    let gated = PyGILState_Check() == 0 && EntryGate.enter()
    let state = PyGILState_Ensure()
    defer {
        PyGILState_Release(state)
        if gated { EntryGate.leave() }
    }
    return try body()
}

/// An unfair lock in front of the GIL for threads entering from outside Python.
///
/// Handing the GIL from one loader thread to another costs a futex wake-up and a context switch,
/// several times a short call's own cost: with 4 threads making tiny calls on 2 cores, throughput
/// fell to about 30 % of one thread's. Callers that find the gate free go on; others wait for it
/// at most `waitNanoseconds`, then go straight for the GIL. So a thread making back-to-back short
/// calls keeps the GIL without hand-offs, while a caller whose Python code releases the GIL for
/// long (inference, I/O) delays others by at most the wait — they then run in parallel as before —
/// and no wait can deadlock. Config `gil.gate_us` sets the wait (0 turns the gate off).
enum EntryGate {
    nonisolated(unsafe) private static let lock: UnsafeMutablePointer<pthread_mutex_t> = {
        let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)  // lives for the process
        pthread_mutex_init(lock, nil)
        return lock
    }()

    /// How long a caller waits for the gate before going for the GIL directly; 0 disables the gate.
    static let waitNanoseconds = Atomic<Int>(50_000)

    /// Takes the gate if it is free or frees up within the wait. - Returns: whether it was taken.
    @inline(__always)
    static func enter() -> Bool {
        let wait = waitNanoseconds.load(ordering: .relaxed)
        guard wait > 0 else { return false }
        if pthread_mutex_trylock(lock) == 0 { return true }
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        deadline.tv_sec += wait / 1_000_000_000
        deadline.tv_nsec += wait % 1_000_000_000
        if deadline.tv_nsec >= 1_000_000_000 {
            deadline.tv_sec += 1
            deadline.tv_nsec -= 1_000_000_000
        }
        return pthread_mutex_timedlock(lock, &deadline) == 0
    }

    @inline(__always)
    static func leave() { pthread_mutex_unlock(lock) }
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
