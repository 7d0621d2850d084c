import AigesABI
import CPythonShims
import Glibc

// C lists (ParamList, DataList) to frame fields and back. A node's payload travels inline when it
// is small, else in one shared-memory segment per message (see `SegmentPool`).
//
// Params: UInt32 count, then per entry: key run, value run.
// Nodes: UInt32 count, then per node: key run, UInt32 type, UInt32 status, params (desc),
// UInt8 where — 0: inline run; 1: UInt32 segment id, UInt64 offset, UInt32 length.

extension FrameWriter {
    /// Writes a loader `ParamList` (NULL-key nodes skipped, values cut at `vlen` or their NUL).
    mutating func put(params head: UnsafeMutablePointer<ParamList>?, _ listName: String) throws(PluginError) {
        var entries: [ParamEntry] = []
        try forEachParam(head, listName) { entries.append($0) }
        put(UInt32(entries.count))
        for entry in entries {
            put(cString: entry.key)
            put(UnsafeRawBufferPointer(start: entry.value, count: entry.length))
        }
    }

    /// Writes (key, value) pairs as params.
    mutating func put(pairs: [(key: String, value: String)]) {
        put(UInt32(pairs.count))
        for pair in pairs {
            put(pair.key)
            put(pair.value)
        }
    }

    /// Writes a `DataList`; payloads over `Payload.inlineLimit` (and small ones once a frame holds
    /// `Payload.inlineBudget` inline) are copied into one segment of `pool`, recorded in `leases`
    /// (the sender ends it with `SegmentPool.doneWriting`). Everything that can fail is checked
    /// before the segment is taken. - Returns: the payload bytes over all nodes.
    @discardableResult
    mutating func put(nodes head: UnsafeMutablePointer<DataList>?, _ listName: String, pool: SegmentPool)
        throws(PluginError) -> Int
    {
        var entries: [(entry: DataEntry, shared: Bool)] = []
        var sharedBytes = 0
        var inlineBytes = 0
        var total = 0
        try forEachData(head, listName) { entry throws(PluginError) in
            try forEachParam(entry.desc, "desc") { _ in }  // a cyclic desc fails here, before any segment
            let count = entry.bytes.count
            let shared = count > Payload.inlineLimit || inlineBytes + count > Payload.inlineBudget
            if shared { sharedBytes += (count + 63) & ~63 } else { inlineBytes += count }
            entries.append((entry, shared))
            total += count
        }
        let lease = sharedBytes > 0 ? try pool.allocate(sharedBytes) : nil
        if let lease { leases.append(lease.id) }
        var offset = 0
        put(UInt32(entries.count))
        for (entry, shared) in entries {
            put(cString: entry.key)
            put(entry.type)
            put(entry.status)
            try put(params: entry.desc, "desc")  // checked above: cannot fail now
            if let lease, shared, let source = entry.bytes.baseAddress {
                memcpy(lease.base + offset, source, entry.bytes.count)  // the one copy of a large payload
                put(UInt8(1))
                put(lease.id)
                put(UInt64(offset))
                put(UInt32(entry.bytes.count))
                offset += (entry.bytes.count + 63) & ~63
            } else {
                put(UInt8(0))
                put(entry.bytes)
            }
        }
        return total
    }
}

/// C lists built from frame fields. Keys, desc entries and nodes are allocated here; payloads point
/// into the frame body (inline) or a peer segment (not copied), so the frame and the segment must
/// outlive the list.
struct WireLists: ~Copyable {
    var memory = CAllocations()
    /// Peer segments the nodes point into: with `hold`, once per node (each held once); else each once.
    private(set) var segments: [UInt32] = []
    /// The addresses of the payloads that lie in peer segments.
    private(set) var segmentPayloads: [UInt] = []

    init() {}

    /// The allocations (the lists' nodes, keys and desc entries), for their next owner.
    consuming func takeMemory() -> CAllocations { memory }

    /// A `ParamList` (nil when empty).
    mutating func params(_ reader: inout FrameReader) throws(WireError) -> UnsafeMutablePointer<ParamList>? {
        let count = Int(try reader.read(UInt32.self))
        guard count > 0 else { return nil }
        guard count <= 1 << 24 else { throw WireError(what: "\(count) params") }
        let nodes = try allocate(ParamList.self, count: count)
        for index in 0..<count {
            nodes[index].key = try text(reader.readRun())
            let value = try reader.readRun()
            nodes[index].value = try text(value)
            nodes[index].vlen = UInt32(truncatingIfNeeded: value.count)
            nodes[index].next = index + 1 < count ? nodes + index + 1 : nil
        }
        return nodes
    }

    /// A `DataList` (nil when empty). With `hold`, each segment payload holds its segment
    /// (`PeerSegments.letGo` once per entry of `segments`).
    mutating func nodes(_ reader: inout FrameReader, peer: PeerSegments, hold: Bool) throws(WireError)
        -> (head: UnsafeMutablePointer<DataList>?, count: Int)
    {
        let count = Int(try reader.read(UInt32.self))
        guard count > 0 else { return (nil, 0) }
        guard count <= 1 << 24 else { throw WireError(what: "\(count) nodes") }
        let nodes = try allocate(DataList.self, count: count)
        for index in 0..<count {
            nodes[index].key = try text(reader.readRun())
            nodes[index].type = DataType(rawValue: try reader.read(UInt32.self))
            nodes[index].status = DataStatus(rawValue: try reader.read(UInt32.self))
            nodes[index].desc = try params(&reader)
            switch try reader.read(UInt8.self) {
            case 0:
                let run = try reader.readRun()
                nodes[index].data = run.count > 0 ? UnsafeMutableRawPointer(mutating: run.baseAddress) : nil
                nodes[index].len = UInt32(run.count)
            case 1:
                let id = try reader.read(UInt32.self)
                guard let offset = Int(exactly: try reader.read(UInt64.self)) else {
                    throw WireError(what: "payload offset out of range")
                }
                let length = Int(try reader.read(UInt32.self))
                let data = try peer.bytes(id: id, offset: offset, count: length, hold: hold)
                nodes[index].data = data
                nodes[index].len = UInt32(length)
                if hold || !segments.contains(id) { segments.append(id) }
                if length > 0 { segmentPayloads.append(UInt(bitPattern: data)) }
            default:
                throw WireError(what: "bad payload place")
            }
            nodes[index].next = index + 1 < count ? nodes + index + 1 : nil
        }
        return (nodes, count)
    }

    /// A NUL-terminated copy of `run`.
    private mutating func text(_ run: UnsafeRawBufferPointer) throws(WireError) -> UnsafeMutablePointer<CChar> {
        do {
            return try memory.copy(run, terminated: true).assumingMemoryBound(to: CChar.self)
        } catch {
            throw WireError(what: "out of memory")
        }
    }

    private mutating func allocate<T>(_ type: T.Type, count: Int) throws(WireError) -> UnsafeMutablePointer<T> {
        do { return try memory.allocate(type, count: count) } catch { throw WireError(what: "out of memory") }
    }
}
