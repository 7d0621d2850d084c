import CPythonShims
import Glibc

/// A mutex with a condition variable (monotonic clock), for state that threads wait on.
///
/// Never held while the loader's code or Python runs.
final class Monitor: @unchecked Sendable {  // the pthread objects are only used through lock/wait
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)  // freed in deinit
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)  // freed in deinit

    init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    /// Runs `body` holding the mutex.
    @inline(__always)
    func withLock<Result, Failure: Error>(_ body: () throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Releases the mutex for the duration of `body` (which must not be entered without it held).
    func unlocked<Result>(_ body: () -> Result) -> Result {
        pthread_mutex_unlock(mutex)
        defer { pthread_mutex_lock(mutex) }
        return body()
    }

    /// Waits for a broadcast (mutex held). `deadline` is in monotonic nanoseconds (nil: no limit).
    /// - Returns: false if the deadline passed.
    @discardableResult
    func wait(until deadline: Int64? = nil) -> Bool {
        guard let deadline else { return pthread_cond_wait(condition, mutex) == 0 }
        var time = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        return pthread_cond_timedwait(condition, mutex, &time) != ETIMEDOUT
    }

    /// Wakes every waiter (mutex held or not).
    func broadcast() { pthread_cond_broadcast(condition) }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }
}

/// Monotonic nanoseconds.
@inline(__always)
func monotonicNow() -> Int64 { aiges_monotonic_ns() }

/// Threads that run submitted jobs: a new thread starts when a job finds none idle (up to
/// `maximumThreads`; beyond, jobs wait in order), and an idle thread exits after `idleSeconds`.
final class WorkerPool: @unchecked Sendable {  // mutable state only under `monitor`
    /// What the pool is for, in logs.
    let name: String
    private let monitor = Monitor()
    private var jobs: [(() -> Void)?] = []  // a job's slot is emptied when a thread takes it
    private var next = 0  // index of the oldest job not yet taken
    private var threads = 0
    private var idle = 0
    private var limit: Int
    private let idleNanoseconds: Int64?

    /// - Parameters: idleSeconds: how long an idle thread stays (nil: for ever).
    init(name: String, maximumThreads: Int, idleSeconds: Int?) {
        self.name = name
        self.limit = max(maximumThreads, 1)
        self.idleNanoseconds = idleSeconds.map { Int64($0) * 1_000_000_000 }
    }

    /// The most threads the pool runs at once.
    var maximumThreads: Int {
        get { monitor.withLock { limit } }
        set { monitor.withLock { limit = max(newValue, 1) } }
    }

    /// Jobs submitted and not yet started.
    var waiting: Int { monitor.withLock { jobs.count - next } }

    /// Runs `job` on one of the pool's threads.
    func submit(_ job: @escaping () -> Void) {
        let start = monitor.withLock { () -> Bool in
            jobs.append(job)
            if idle > 0 { monitor.broadcast() }
            // Each waiting job gets a thread of its own, idle or new (up to the limit): a job that
            // blocks (a loader callback) never delays the ones behind it while threads are allowed.
            guard jobs.count - next > idle, threads < limit else { return false }
            threads += 1
            return true
        }
        if start { startThread() }
    }

    private func startThread() {
        let context = Unmanaged.passRetained(self).toOpaque()  // released by the thread when it ends
        let started = aiges_thread_start(
            { context in
                guard let context else { return }
                let pool = Unmanaged<WorkerPool>.fromOpaque(context).takeRetainedValue()
                pool.work()
            }, context)
        if started != 0 {
            Unmanaged<WorkerPool>.fromOpaque(context).release()
            monitor.withLock { threads -= 1 }
            Log.logger.error("\(name): cannot start a thread (\(String(cString: strerror(started))))")
        }
    }

    /// A thread's loop: run jobs, wait when there are none, leave after the idle time.
    private func work() {
        monitor.withLock {
            while true {
                if next < jobs.count {
                    let job = jobs[next]
                    jobs[next] = nil  // what the job holds is released when it has run
                    next += 1
                    if next == jobs.count {
                        jobs.removeAll(keepingCapacity: true)
                        next = 0
                    } else if next > 64, next * 2 > jobs.count {
                        jobs.removeFirst(next)
                        next = 0
                    }
                    if let job { monitor.unlocked(job) }
                    continue
                }
                idle += 1
                let signalled = monitor.wait(until: idleNanoseconds.map { monotonicNow() + $0 })
                idle -= 1
                if !signalled, next >= jobs.count {
                    threads -= 1
                    return
                }
            }
        }
    }
}

/// One thread that runs actions at monotonic deadlines (async timeouts). Actions must be quick:
/// they hand the real work to a `WorkerPool`. A cancelled timer is forgotten at once.
enum Timers {
    private struct Entry {
        let deadline: Int64
        let id: Int
    }

    private final class State: @unchecked Sendable {  // only under `monitor`
        let monitor = Monitor()
        var heap: [Entry] = []
        var actions: [Int: () -> Void] = [:]
        var nextId = 1
        var running = false
    }

    private static let state = State()

    /// Runs `action` at `deadline` (monotonic ns) unless cancelled first. - Returns: the timer's id.
    static func schedule(at deadline: Int64, _ action: @escaping () -> Void) -> Int {
        let (id, start) = state.monitor.withLock { () -> (Int, Bool) in
            let id = state.nextId
            state.nextId += 1
            state.actions[id] = action
            push(Entry(deadline: deadline, id: id))
            let start = !state.running
            state.running = true
            state.monitor.broadcast()
            return (id, start)
        }
        if start {
            _ = aiges_thread_start({ _ in Timers.run() }, nil)
        }
        return id
    }

    /// Forgets the timer `id` (its action will not run); unknown ids are ignored.
    static func cancel(_ id: Int) {
        state.monitor.withLock {
            state.actions[id] = nil
            // Drop cancelled entries in bulk so the heap stays proportional to live timers.
            if state.heap.count > 64, state.heap.count > 4 * state.actions.count {
                state.heap = state.heap.filter { state.actions[$0.id] != nil }
                heapify()
            }
        }
    }

    /// Live timers (for debug info and tests).
    static var count: Int { state.monitor.withLock { state.actions.count } }

    private static func run() {
        state.monitor.withLock {
            while true {
                let now = monotonicNow()
                var due: [() -> Void] = []
                while let top = state.heap.first, top.deadline <= now {
                    pop()
                    if let action = state.actions.removeValue(forKey: top.id) { due.append(action) }
                }
                if !due.isEmpty {
                    state.monitor.unlocked { due.forEach { $0() } }
                    continue
                }
                state.monitor.wait(until: state.heap.first?.deadline)
            }
        }
    }

    // A binary min-heap on deadline (under the monitor).
    private static func push(_ entry: Entry) {
        state.heap.append(entry)
        siftUp(state.heap.count - 1)
    }

    private static func pop() {
        let last = state.heap.removeLast()
        guard !state.heap.isEmpty else { return }
        state.heap[0] = last
        siftDown(0)
    }

    private static func heapify() {
        for index in stride(from: state.heap.count / 2, through: 0, by: -1) { siftDown(index) }
    }

    private static func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard state.heap[child].deadline < state.heap[parent].deadline else { return }
            state.heap.swapAt(child, parent)
            child = parent
        }
    }

    private static func siftDown(_ start: Int) {
        var parent = start
        let count = state.heap.count
        while true {
            var smallest = parent
            for child in [2 * parent + 1, 2 * parent + 2]
            where child < count && state.heap[child].deadline < state.heap[smallest].deadline {
                smallest = child
            }
            guard smallest != parent else { return }
            state.heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
