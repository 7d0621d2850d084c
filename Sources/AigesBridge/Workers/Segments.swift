import CPythonShims
import Glibc
import Synchronization

/// Shared-memory segments this process writes payloads into for its peer: the plugin's request
/// inputs, a worker's outputs. Each segment is a sealed memfd (it can neither shrink nor grow, so
/// the peer can never make a mapping fault) mapped on both sides; its descriptor goes to the peer
/// once (a `segment` frame), then messages name it by id.
///
/// A segment is written for one message (`allocate`), lent to the peer once that message is sent
/// (`doneWriting`), and comes back when the peer sends `release`. Free segments are kept for reuse —
/// their pages stay faulted in on both sides, so a large payload costs one copy, not a copy plus
/// page faults — up to `cacheBytes`; beyond that the oldest free ones are unmapped on both sides
/// (`dropSegment`). When the peer is gone (`close`), segments are unmapped as soon as no thread
/// here writes into them.
final class SegmentPool: @unchecked Sendable {  // state under `lock`
    /// A segment being written for one message: `size` writable bytes at `base`.
    struct Lease: @unchecked Sendable {  // written only by the thread that allocated it, until doneWriting
        let id: UInt32
        let base: UnsafeMutableRawPointer
        let size: Int
    }

    private enum Use {
        case free, writing, lent
    }

    private struct Segment: @unchecked Sendable {  // shared memory, used under the pool's rules
        let base: UnsafeMutableRawPointer
        let size: Int
        var use: Use
    }

    private struct State {
        var segments: [UInt32: Segment] = [:]
        var free: [UInt32] = []  // oldest first
        var freeBytes = 0
        var nextID: UInt32 = 1
        var closed = false
    }

    /// The smallest segment made (payloads are rounded up to a power of two from here).
    static let minimumSize = 64 * 1024
    private let lock = Mutex(State())
    private let channel: FrameChannel
    private let cacheBytes: Int

    init(channel: FrameChannel, cacheBytes: Int = 64 << 20) {
        self.channel = channel
        self.cacheBytes = cacheBytes
    }

    /// A segment of at least `bytes` bytes to write a message's payloads into: a free one, or a new
    /// one whose descriptor is sent to the peer before this returns (so it precedes any frame
    /// naming it). The caller must end it with `doneWriting`.
    func allocate(_ bytes: Int) throws(PluginError) -> Lease {
        var size = Self.minimumSize
        while size < bytes { size <<= 1 }
        let reused = lock.withLock { state -> Lease? in
            // The most recently freed of that size: its pages are the warmest.
            guard let index = state.free.lastIndex(where: { state.segments[$0]?.size == size }) else { return nil }
            let id = state.free.remove(at: index)
            state.segments[id]?.use = .writing
            state.freeBytes -= size
            return state.segments[id].map { Lease(id: id, base: $0.base, size: size) }
        }
        if let reused { return reused }
        let fd = aiges_memfd("aiges-payload", size)
        guard fd >= 0 else {
            throw PluginError(
                .internalError, "cannot make a \(size)-byte shared segment: \(String(cString: strerror(errno)))")
        }
        defer { Glibc.close(fd) }  // the mapping and the peer's copy keep it
        guard let base = aiges_map_shared(fd, size) else {
            throw PluginError(
                .internalError, "cannot map a \(size)-byte shared segment: \(String(cString: strerror(errno)))")
        }
        let id = lock.withLock { state -> UInt32? in
            guard !state.closed else { return nil }
            let id = state.nextID
            state.nextID &+= 1
            state.segments[id] = Segment(base: base, size: size, use: .writing)
            return id
        }
        guard let id else {
            munmap(base, size)
            throw PluginError(.workerLost, "the worker connection is closed")
        }
        var frame = FrameWriter(.segment, id: 0)
        frame.put(id)
        frame.put(UInt64(size))
        guard channel.send(frame.finish(), passing: fd) else {
            doneWriting(id, sent: false)
            throw PluginError(.workerLost, "cannot pass a shared segment to the worker (its socket is closed)")
        }
        return Lease(id: id, base: base, size: size)
    }

    /// The message written into segment `id` was sent (the peer reads it until `release`), or not
    /// (it is free again).
    func doneWriting(_ id: UInt32, sent: Bool) {
        let unmap = lock.withLock { state -> Segment? in
            guard let segment = state.segments[id], segment.use == .writing else { return nil }
            if state.closed { return state.segments.removeValue(forKey: id) }
            if sent {
                state.segments[id]?.use = .lent
                return nil
            }
            state.segments[id]?.use = .free
            state.free.append(id)
            state.freeBytes += segment.size
            return nil
        }
        if let unmap { munmap(unmap.base, unmap.size) }
        if !sent { evict() }
    }

    /// Takes back segment `id` (the peer is done with it); other ids are ignored.
    func release(_ id: UInt32) {
        let known = lock.withLock { state -> Bool in
            guard let segment = state.segments[id], segment.use == .lent else { return false }
            state.segments[id]?.use = .free
            state.free.append(id)
            state.freeBytes += segment.size
            return true
        }
        if known { evict() }
    }

    /// Unmaps the oldest free segments beyond the cache, here and at the peer.
    private func evict() {
        let dropped = lock.withLock { state -> [(UInt32, Segment)] in
            var dropped: [(UInt32, Segment)] = []
            while state.freeBytes > cacheBytes, !state.free.isEmpty {
                let oldest = state.free.removeFirst()
                guard let segment = state.segments.removeValue(forKey: oldest) else { continue }
                state.freeBytes -= segment.size
                dropped.append((oldest, segment))
            }
            return dropped
        }
        for (droppedID, segment) in dropped {
            munmap(segment.base, segment.size)
            var frame = FrameWriter(.dropSegment, id: 0)
            frame.put(droppedID)
            channel.send(frame.finish())
        }
    }

    /// The peer is gone: unmaps every segment no thread here is writing into (those go at their
    /// `doneWriting`). Nothing here reads a segment once its message was sent.
    func close() {
        let idle = lock.withLock { state -> [Segment] in
            state.closed = true
            let idle = state.segments.filter { $0.value.use != .writing }
            for id in idle.keys { state.segments[id] = nil }
            state.free = []
            state.freeBytes = 0
            return Array(idle.values)
        }
        for segment in idle { munmap(segment.base, segment.size) }
    }
}

/// The peer's segments, mapped here (`segment` frames), by id. A segment some payload here still
/// points into (`hold`) stays mapped until `letGo`, even after the peer is gone.
final class PeerSegments: @unchecked Sendable {  // state under `lock`
    private struct Mapping: @unchecked Sendable {  // see Segment
        let base: UnsafeMutableRawPointer
        let size: Int
        var holds = 0
        var dropped = false
    }

    private struct State {
        var mappings: [UInt32: Mapping] = [:]
        var closed = false
    }

    private let lock = Mutex(State())

    /// Maps the segment whose descriptor came with a `segment` frame; takes ownership of `fd`.
    /// The memfd must be sealed against shrinking and at least `size` bytes long (a peer that could
    /// shrink it would make reads here fault), and `id` must be new.
    func map(id: UInt32, size: Int, fd: Int32) throws(WireError) {
        defer { Glibc.close(fd) }
        guard size > 0, aiges_memfd_sealed_size(fd) >= size else {
            throw WireError(what: "segment \(id): a memfd that is not sealed or shorter than \(size) bytes")
        }
        guard let base = aiges_map_shared(fd, size) else {
            throw WireError(what: "cannot map segment \(id) of \(size) bytes: \(String(cString: strerror(errno)))")
        }
        let fresh = lock.withLock { state -> Bool in
            guard state.mappings[id] == nil else { return false }
            state.mappings[id] = Mapping(base: base, size: size)
            return true
        }
        guard fresh else {
            munmap(base, size)
            throw WireError(what: "segment \(id) sent twice")
        }
    }

    /// Unmaps segment `id` (its owner dropped it: it was free, so nothing here holds it).
    func drop(id: UInt32) {
        let gone = lock.withLock { state -> Mapping? in
            guard let mapping = state.mappings[id] else { return nil }
            if mapping.holds > 0 {
                state.mappings[id]?.dropped = true
                return nil
            }
            return state.mappings.removeValue(forKey: id)
        }
        if let gone { munmap(gone.base, gone.size) }
    }

    /// `count` bytes at `offset` in segment `id`; throws if they are not all inside it. With
    /// `hold`, the segment stays mapped until `letGo(id)`.
    func bytes(id: UInt32, offset: Int, count: Int, hold: Bool = false) throws(WireError) -> UnsafeMutableRawPointer {
        try lock.withLock { state throws(WireError) -> UnsafeMutableRawPointer in
            guard let segment = state.mappings[id] else { throw WireError(what: "unknown segment \(id)") }
            guard offset >= 0, count >= 0, offset <= segment.size, count <= segment.size - offset else {
                throw WireError(what: "payload \(offset)+\(count) outside segment \(id) of \(segment.size) bytes")
            }
            if hold { state.mappings[id]?.holds += 1 }
            return segment.base + offset
        }
    }

    /// Ends one `hold` of segment `id`. - Returns: whether its owner should be told (`release`):
    /// the last hold ended and the peer is still there.
    func letGo(_ id: UInt32) -> Bool {
        let (gone, tell) = lock.withLock { state -> (Mapping?, Bool) in
            guard var mapping = state.mappings[id] else { return (nil, false) }
            mapping.holds -= 1
            state.mappings[id] = mapping
            guard mapping.holds == 0 else { return (nil, false) }
            if state.closed || mapping.dropped { return (state.mappings.removeValue(forKey: id), false) }
            return (nil, true)
        }
        if let gone { munmap(gone.base, gone.size) }
        return tell
    }

    /// The peer is gone: unmaps every segment nothing holds; held ones go at their last `letGo`.
    func close() {
        let gone = lock.withLock { state -> [Mapping] in
            state.closed = true
            let idle = state.mappings.filter { $0.value.holds == 0 }
            for id in idle.keys { state.mappings[id] = nil }
            return Array(idle.values)
        }
        for mapping in gone { munmap(mapping.base, mapping.size) }
    }
}

/// Handles a `segment`, `dropSegment` or `release` frame (either side): maps or unmaps one of the
/// peer's segments, or takes back one of `mine`.
func handleSegmentFrame(_ reader: inout FrameReader, channel: FrameChannel, mine: SegmentPool, peers: PeerSegments)
    throws(WireError)
{
    let id = try reader.read(UInt32.self)
    switch reader.kind {
    case .segment:
        guard let size = Int(exactly: try reader.read(UInt64.self)) else {
            throw WireError(what: "segment size out of range")
        }
        guard let fd = channel.takeDescriptor() else { throw WireError(what: "segment \(id) came without its memfd") }
        try peers.map(id: id, size: size, fd: fd)
    case .dropSegment: peers.drop(id: id)
    default: mine.release(id)
    }
}
