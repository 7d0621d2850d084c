import Glibc
import Synchronization

/// One open session: the engine's side of it (wrapper.py's handle), the loader's callback (push
/// mode), the output the loader is reading (pull mode) and counters for `wrapperDebugInfo`.
final class Session: @unchecked Sendable {  // immutable but for `state`
    /// The handle the loader holds (an address in `SessionHandles`' reserved ranges).
    let handle: UnsafeRawPointer
    let sid: String
    /// Where results delivered with `aiges_embed.callback` go (the loader's callback, or a read queue).
    let target: CallbackTarget
    /// The engine's side of the session (passed only to the engine that opened it).
    let link: any SessionLink
    private let created = monotonicNow()
    private let state = Mutex(State())

    /// Debug texts handed out: the newest 4 stay valid (`wrapperDebugInfo` is asked once before destroy).
    private let debugTexts = TextRing(capacity: 4)

    private struct State {
        var writes = 0
        var reads = 0
        var bytesIn = 0
        var bytesOut = 0
        var lastRead: [OutputBatch] = []
    }

    init(handle: UnsafeRawPointer, sid: String, target: CallbackTarget, link: any SessionLink) {
        self.handle = handle
        self.sid = sid
        self.target = target
        self.link = link
    }

    /// wrapper.py's handle string (from its SessionCreateResponse).
    var pythonHandle: String { link.pythonHandle }

    /// Counts a write of `bytes` input bytes.
    func noteWrite(bytes: Int) {
        state.withLock {
            $0.writes += 1
            $0.bytesIn += bytes
        }
    }

    /// Replaces the output the loader reads; the previous one (the loader has copied it) is returned
    /// so the caller drops it outside the lock.
    func replaceLastRead(_ batches: [OutputBatch], bytes: Int, counted: Bool) -> [OutputBatch] {
        state.withLock { state in
            let previous = state.lastRead
            state.lastRead = batches
            if counted {
                state.reads += 1
                state.bytesOut += bytes
            }
            return previous
        }
    }

    /// The plugin's own debug summary.
    var summary: String {
        let age = Double(monotonicNow() - created) / 1e9
        let callbacks = target.delivered
        return state.withLock { state in
            """
            sid=\(sid) handle=\(pythonHandle) mode=\(target.pushes ? "push" : "pull") writes=\(state.writes) \
            reads=\(state.reads) bytes_in=\(state.bytesIn) bytes_out=\(state.bytesOut) \
            callbacks=\(callbacks) age=\(decimal(age, places: 3))s
            """
        }
    }

    /// A C copy of `text` that stays valid until the session is destroyed or 4 newer texts were
    /// asked for.
    func keep(_ text: String) -> UnsafePointer<CChar> { debugTexts.keep(text) }
}

/// The open sessions, by the opaque handle the loader holds.
///
/// Handles are addresses in reserved, inaccessible (`PROT_NONE`) ranges of 16 MiB, one byte per
/// session, never reused: they are never dereferenced (an unknown or stale handle is just a missing
/// key), they are valid-looking non-Go pointers above 4096, and a handle destroyed once stays
/// unknown. A new range is reserved when one is used up, so address space grows with sessions
/// opened (16 MiB per 16 M sessions), not up front.
enum SessionHandles {
    private struct Ranges {
        var base: UnsafeMutableRawPointer?
        var used = rangeSize
    }

    private static let rangeSize = 1 << 24
    private static let ranges = Mutex(Ranges())
    private static let live = Mutex<[UInt: Session]>([:])

    /// A new, never-used handle.
    static func allocate() throws(PluginError) -> UnsafeRawPointer {
        try ranges.withLock { ranges throws(PluginError) -> UnsafeRawPointer in
            if ranges.used == rangeSize {
                // Address space only: nothing is ever mapped in (kept for the process's life).
                let base = mmap(nil, rangeSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
                guard let base, base != MAP_FAILED else {
                    throw PluginError(
                        .internalError,
                        "cannot reserve 16 MiB of address space for session handles: \(String(cString: strerror(errno)))"
                    )
                }
                ranges.base = base
                ranges.used = 0
            }
            defer { ranges.used += 1 }
            return UnsafeRawPointer(ranges.base.unsafelyUnwrapped + ranges.used)
        }
    }

    static func add(_ session: Session) {
        live.withLock { $0[UInt(bitPattern: session.handle)] = session }
    }

    /// How many sessions are open.
    static var count: Int { live.withLock { $0.count } }

    /// Removes and returns every open session (for `wrapperFini`).
    static func removeAll() -> [Session] {
        live.withLock { live in
            defer { live = [:] }
            return Array(live.values)
        }
    }

    /// The session for `handle`; NULL, unknown and destroyed handles are `unknownHandle`.
    static func find(_ handle: UnsafeRawPointer?, _ entryPoint: String) throws(PluginError) -> Session {
        guard let session = live.withLock({ $0[UInt(bitPattern: handle)] }) else {
            throw unknown(handle, entryPoint)
        }
        return session
    }

    /// Removes and returns the session for `handle` (a second destroy finds nothing).
    static func remove(_ handle: UnsafeRawPointer?, _ entryPoint: String) throws(PluginError) -> Session {
        guard let session = live.withLock({ $0.removeValue(forKey: UInt(bitPattern: handle)) }) else {
            throw unknown(handle, entryPoint)
        }
        return session
    }

    private static func unknown(_ handle: UnsafeRawPointer?, _ entryPoint: String) -> PluginError {
        let shown = handle.map { "\($0)" } ?? "NULL"
        return PluginError(.unknownHandle, "\(entryPoint): no open session has handle \(shown)")
    }
}
