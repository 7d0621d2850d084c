import AigesABI
import CPython
import Glibc
import Synchronization

/// One open session: its Python handle, the loader's callback (push mode), the output the loader
/// is reading (pull mode) and counters for `wrapperDebugInfo`.
final class Session: @unchecked Sendable {  // Python objects used under the GIL; mutable state behind `state`
    /// The handle the loader holds (an address in `SessionHandles`' reserved range).
    let handle: UnsafeRawPointer
    let sid: String
    /// wrapper.py's handle string (from its SessionCreateResponse).
    let pythonHandle: String
    /// Where results delivered with `aiges_embed.callback` go (the loader's callback, or a read queue).
    let target: CallbackTarget
    /// wrapper.py's handle and the sid as Python strs (owned).
    let handleObject: PyPointer
    let sidObject: PyPointer
    private let created = Session.now()
    private let state = Mutex(State())

    private struct State {
        var writes = 0
        var reads = 0
        var bytesIn = 0
        var bytesOut = 0
        var lastRead: [OutputBatch] = []
        var debugTexts: [UnsafeMutablePointer<CChar>] = []  // malloc'd, freed in deinit
    }

    init(
        handle: UnsafeRawPointer, sid: String, pythonHandle: String, target: CallbackTarget, handleObject: PyPointer,
        sidObject: PyPointer
    ) {
        self.handle = handle
        self.sid = sid
        self.pythonHandle = pythonHandle
        self.target = target
        self.handleObject = handleObject
        self.sidObject = sidObject
    }

    /// The session's handle and sid as wrapper.py methods get them.
    var arguments: CallArguments { CallArguments(sid: sidObject, handle: handleObject) }

    /// Counts a write of `bytes` input bytes.
    func noteWrite(bytes: Int) {
        state.withLock {
            $0.writes += 1
            $0.bytesIn += bytes
        }
    }

    /// Replaces the output the loader reads; the previous one (the loader has copied it) is returned
    /// so the caller drops it outside the lock.
    func replaceLastRead(_ batches: [OutputBatch], counted: Bool) -> [OutputBatch] {
        state.withLock { state in
            let previous = state.lastRead
            state.lastRead = batches
            if counted {
                state.reads += 1
                state.bytesOut += batches.reduce(0) { $0 + $1.byteCount }
            }
            return previous
        }
    }

    /// The plugin's own debug summary.
    var summary: String {
        let age = Double(Session.now() - created) / 1e9
        return state.withLock { state in
            """
            sid=\(sid) handle=\(pythonHandle) mode=\(target.pushes ? "push" : "pull") writes=\(state.writes) \
            reads=\(state.reads) bytes_in=\(state.bytesIn) bytes_out=\(state.bytesOut) \
            callbacks=\(target.delivered) age=\(format3(age))s
            """
        }
    }

    /// A C copy of `text` that stays valid until the session is destroyed.
    func keep(_ text: String) -> UnsafePointer<CChar> {
        let kept = state.withLock { state -> UnsafePointer<CChar>? in
            guard let copy = strdup(text) else { return nil }  // owned by the session until deinit
            state.debugTexts.append(copy)
            return UnsafePointer(copy)
        }
        return kept ?? ErrorTexts.stable("out of memory")
    }

    private static func now() -> Int {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return time.tv_sec * 1_000_000_000 + time.tv_nsec
    }

    deinit {
        let (texts, batch) = state.withLock { state in
            defer {
                state.debugTexts = []
                state.lastRead = []
            }
            return (state.debugTexts, state.lastRead)
        }
        texts.forEach { free($0) }
        _ = batch  // released here (each takes the GIL itself)
        withGIL {
            Py_DecRef(handleObject)
            Py_DecRef(sidObject)
        }
    }
}

/// Seconds with three decimals, without Foundation.
private func format3(_ value: Double) -> String {
    let millis = Int((value * 1000).rounded())
    let fraction = String(millis % 1000)
    return "\(millis / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
}

/// The open sessions, by the opaque handle the loader holds.
///
/// Handles are addresses in a reserved, inaccessible (`PROT_NONE`) range, one byte per session,
/// never reused: they are never dereferenced (an unknown or stale handle is just a missing key),
/// they are valid-looking non-Go pointers above 4096, and a handle destroyed once stays unknown.
enum SessionHandles {
    private struct Space: @unchecked Sendable {  // the base of the reserved range
        let base: UnsafeMutableRawPointer
        let size: Int
    }

    private static let space: Space? = {
        let size = 1 << 36  // address space only: nothing is ever mapped in
        let base = mmap(nil, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let base, base != MAP_FAILED else { return nil }
        return Space(base: base, size: size)
    }()

    private static let next = Atomic<Int>(0)
    private static let live = Mutex<[UInt: Session]>([:])

    /// A new, never-used handle.
    static func allocate() throws(PluginError) -> UnsafeRawPointer {
        guard let space else { throw PluginError(.internalError, "cannot reserve address space for session handles") }
        let offset = next.wrappingAdd(1, ordering: .relaxed).oldValue
        guard offset < space.size else { throw PluginError(.internalError, "session handles exhausted") }
        return UnsafeRawPointer(space.base + offset)
    }

    static func add(_ session: Session) {
        live.withLock { $0[UInt(bitPattern: session.handle)] = session }
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
