import CPythonShims
import Glibc

/// A worker process's threads. They take turns reading the plugin's socket, and the thread that
/// reads a call serves it itself, so a request waits for one thread wake-up (the reader's), not
/// two. With `limit` 1 (`workers.concurrency`, the default) that one thread does everything: frames
/// that arrive during a call wait in the socket (liveness goes out on its own, see `Heartbeat`).
/// With more, the reader hands reading over to another thread before serving; at most `limit`
/// calls run at once and calls beyond wait in order. Control frames are handled by the reader.
final class CallThreads: @unchecked Sendable {  // mutable state under `monitor`
    private let monitor = Monitor()
    private var reading = false
    private var queue: [ReceivedFrame] = []
    private var running = 0
    private var limit = 1
    private var idle = 0
    private let read: () -> ReceivedFrame
    private let control: (ReceivedFrame) -> Bool
    private let serve: (ReceivedFrame) -> Void

    /// - Parameters:
    ///   - read: the next frame (it ends the process when the socket ends).
    ///   - control: handles `frame` if it is not a call; returns false for a call.
    ///   - serve: serves a call.
    init(
        read: @escaping () -> ReceivedFrame, control: @escaping (ReceivedFrame) -> Bool,
        serve: @escaping (ReceivedFrame) -> Void
    ) {
        self.read = read
        self.control = control
        self.serve = serve
    }

    /// How many calls run at once.
    func setLimit(_ value: Int) {
        monitor.withLock {
            limit = max(value, 1)
            monitor.broadcast()
        }
    }

    /// Joins the group on the calling thread; never returns.
    func run() -> Never {
        loop()
        fatalError("worker threads ended")
    }

    private func loop() {
        monitor.withLock {
            while true {
                if running < limit, !queue.isEmpty {
                    let frame = queue.removeFirst()
                    running += 1
                    monitor.unlocked { serve(frame) }
                    running -= 1
                    continue
                }
                if !reading {
                    reading = true
                    let frame = monitor.unlocked { read() }
                    reading = false
                    if monitor.unlocked({ control(frame) }) { continue }
                    guard running < limit else {
                        queue.append(frame)
                        continue
                    }
                    running += 1
                    if limit > 1 { handOffReading() }
                    monitor.unlocked { serve(frame) }
                    running -= 1
                    continue
                }
                idle += 1
                monitor.wait()
                idle -= 1
            }
        }
    }

    /// Makes sure some other thread reads while this one serves (monitor held).
    private func handOffReading() {
        if idle > 0 {
            monitor.broadcast()
            return
        }
        let context = Unmanaged.passRetained(self).toOpaque()  // released when the thread ends (never)
        let started = aiges_thread_start(
            { context in
                guard let context else { return }
                Unmanaged<CallThreads>.fromOpaque(context).takeRetainedValue().loop()
            }, context)
        if started != 0 { Unmanaged<CallThreads>.fromOpaque(context).release() }  // the next idle one reads
    }
}
