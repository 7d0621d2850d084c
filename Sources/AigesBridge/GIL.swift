import CPython
import CPythonShims
import Glibc
import Synchronization

/// Runs `body` holding the GIL, from any thread (including loader threads Python never saw).
///
/// Re-entrant. The thread's Python thread state is created on its first call and kept
/// (see `ThreadStates`), so a loader thread pays for it once, not per call. A thread that does not
/// hold the GIL yet passes the `EntryGate` first. References whose owners were dropped without the
/// GIL (`DeferredReleases`) are released here, before `body`.
@inline(__always)
func withGIL<Result: ~Copyable, Failure: Error>(_ body: () throws(Failure) -> Result) throws(Failure) -> Result {
    ThreadStates.adoptCurrentThread()
    let gated = PyGILState_Check() == 0 && EntryGate.enter()
    let state = PyGILState_Ensure()
    defer {
        PyGILState_Release(state)
        if gated { EntryGate.leave() }
    }
    DeferredReleases.runPending()
    return try body()
}

/// A gate in front of the GIL for threads entering from outside Python: loader threads take turns at
/// the GIL in stints of many calls, not one call each (Sources/CPythonShims/gate.c).
///
/// Handing the GIL from one loader thread to another costs a futex wake-up and a context switch,
/// several times a short call's own cost: with 4 threads making tiny calls on 2 cores, throughput
/// fell to 30-50 % of one thread's. The gate's owner keeps it between its calls (releasing the GIL,
/// not the gate) and takes it back without a system call; threads that find it owned queue in order
/// and sleep. The owner hands it to the first waiter after `gil.stint_us` (500 µs), or at once if it
/// was slow to come back. So on a busy loader the GIL changes hands once a stint, not once a call,
/// and waiting threads cost nothing while they wait.
///
/// Calls that release the GIL for long (inference, I/O) still run in parallel: when the owner's call
/// has run `waitNanoseconds` (`gil.gate_us`, 50 µs) without holding the GIL, every waiter goes for the
/// GIL directly. While the owner's call holds the GIL they wait on, up to Python's switch interval
/// (5 ms): going for it could run nothing sooner, and piling onto the GIL is what made busy machines
/// slow; a longer call gets them interleaved by Python's switching, as before. No wait can deadlock: the gate is
/// never held while the loader's code runs (`withoutGIL` hands it on), and a gate parked by a thread
/// that does not come back within `graceNanoseconds` is taken over. `gil.gate_us = 0` turns it off.
enum EntryGate {
    /// How long the owner's call may run without the GIL before waiters go for it directly; 0
    /// disables the gate.
    static let waitNanoseconds = Atomic<Int>(50_000)

    /// How long a gate parked between its owner's calls is kept for it against other callers.
    static let graceNanoseconds = 10_000

    /// Takes the gate, waiting in line if another thread owns it. - Returns: whether it was taken
    /// (false: the gate is off, or the owner let go of the GIL in a long call: go for it directly).
    @inline(__always)
    static func enter() -> Bool { aiges_gate_enter(Int64(waitNanoseconds.load(ordering: .relaxed))) != 0 }

    /// Ends this thread's call as the gate's owner: keeps the gate parked for its next call, or hands
    /// it to the first waiter.
    @inline(__always)
    static func leave() { aiges_gate_leave() }

    /// Hands the gate to the first waiter (or frees it) now, if this thread owns it and is inside.
    @inline(__always)
    static func release() { aiges_gate_release() }
}

/// Runs `body` with the GIL released and the entry gate let go (for calls into the loader, which
/// may block or call back into the plugin). Must be called with the GIL held by this thread.
@inline(__always)
func withoutGIL<Result>(_ body: () -> Result) -> Result {
    let saved = PyEval_SaveThread()
    EntryGate.release()
    defer { PyEval_RestoreThread(saved) }
    return body()
}

/// Python references whose owner was dropped on a thread without the GIL: released by the next
/// thread that takes the GIL through `withGIL`, so that no `deinit` takes the GIL behind a reader's back.
enum DeferredReleases {
    /// One deferred release.
    enum Item: @unchecked Sendable {  // handed from the dropping thread to the releasing one
        /// A strong reference to drop.
        case reference(PyPointer)
        /// Buffer exports to release (`count` `Py_buffer`s at `buffers`), then the block to free.
        case buffers(UnsafeMutablePointer<Py_buffer>, count: Int, block: UnsafeMutableRawPointer)
    }

    private static let pending = Mutex<[Item]>([])
    private static let count = Atomic<Int>(0)

    /// Releases `item` now if this thread holds the GIL, else at the next `withGIL`.
    static func release(_ item: Item) {
        if Py_IsInitialized() != 0, PyGILState_Check() != 0 {
            perform(item)
            return
        }
        pending.withLock { $0.append(item) }
        count.add(1, ordering: .releasing)
    }

    /// Performs the pending releases. GIL required.
    @inline(__always)
    static func runPending() {
        guard count.load(ordering: .acquiring) > 0 else { return }
        let items = pending.withLock { items in
            defer { items = [] }
            return items
        }
        count.subtract(items.count, ordering: .relaxed)
        items.forEach(perform)
    }

    private static func perform(_ item: Item) {
        switch item {
        case .reference(let pointer): Py_DecRef(pointer)
        case .buffers(let buffers, let count, let block):
            for index in 0..<count { PyBuffer_Release(buffers + index) }
            free(block)
        }
    }
}

/// Keeps one Python thread state per OS thread for the thread's whole life.
///
/// On a thread's first call we take one `PyGILState_Ensure` and never release it while the
/// thread lives, so later `PyGILState_Ensure/Release` pairs reuse that state instead of creating
/// and destroying one per call. The state is also stored under our own pthread key, whose
/// destructor hands it to the reaper when the thread exits: none leak.
///
/// The exiting thread itself never touches Python: by the time our key's destructor runs, glibc
/// has cleared Python's own key, so finalizers run there (a `threading.local` value whose
/// `__del__` calls `PyGILState_Ensure`) would make a second state and wait for the GIL it holds.
/// The reaper, a thread with a proper state of its own, clears and deletes the state instead.
enum ThreadStates {
    /// Value of an adopted thread: its `PyThreadState *`, or `unmanaged` for threads whose state
    /// Python owns.
    private static let key: pthread_key_t? = {
        var key = pthread_key_t()
        let created = pthread_key_create(&key) { value in
            guard let value, Int(bitPattern: value) != ThreadStates.unmanaged else { return }
            ThreadStates.reap(value.assumingMemoryBound(to: PyThreadState.self))
        }
        return created == 0 ? key : nil
    }()

    /// Marker for threads we must not pin or delete: the one that ran `Py_Initialize` (the main
    /// state) and threads Python created (`threading`), which already have a state of their own.
    private static let unmanaged = 1

    /// One thread, never exiting, that deletes the states of exited threads.
    private static let reaper = WorkerPool(name: "thread-state reaper", maximumThreads: 1, idleSeconds: nil)

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

    /// Runs as the pthread key destructor when an adopted thread exits: hands its state to the reaper.
    private static func reap(_ state: UnsafeMutablePointer<PyThreadState>) {
        let address = UInt(bitPattern: state)
        reaper.submit {
            guard Py_IsInitialized() != 0, _Py_IsFinalizing() == 0,
                let state = UnsafeMutablePointer<PyThreadState>(bitPattern: address)
            else { return }
            withGIL {
                PyThreadState_Clear(state)  // the exited thread's finalizers run here, on the reaper
                PyThreadState_Delete(state)
            }
        }
    }
}
