import AigesABI
import Glibc

// All reads of loader-owned lists and all allocation of plugin-owned C lists happen here.

/// Follows a loader list's `next` pointers and finds a cycle, which would otherwise be a hang.
///
/// Floyd's method: a second cursor moves one node for every two of the walk; if the walk ever meets
/// it, the list loops. No cap on length, O(1) memory.
struct CycleCheck<Node> {
    private var slow: UnsafeMutablePointer<Node>?
    private var steps = 0

    init(_ head: UnsafeMutablePointer<Node>?) { slow = head }

    /// Call with each node after the head as the walk reaches it; `next` reads a node's successor.
    /// - Returns: false when the list loops.
    mutating func visit(
        _ node: UnsafeMutablePointer<Node>, next: (UnsafeMutablePointer<Node>) -> UnsafeMutablePointer<Node>?
    ) -> Bool {
        steps += 1
        if steps % 2 == 0, let current = slow { slow = next(current) }
        return node != slow
    }
}

/// One entry of a loader `ParamList`; pointers are borrowed for the duration of the call.
struct ParamEntry {
    let key: UnsafePointer<CChar>
    /// The value bytes (NUL-terminated in the loader's memory), or nil.
    let value: UnsafePointer<CChar>?
    /// Bytes of `value` to use: `vlen`, but never past the value's NUL.
    let length: Int
}

/// One node of a loader `DataList`; pointers are borrowed for the duration of the call.
struct DataEntry {
    let key: UnsafePointer<CChar>
    /// The node's `len` bytes of data (empty when len is 0).
    let bytes: UnsafeRawBufferPointer
    let type: UInt32
    let status: UInt32
    let desc: UnsafeMutablePointer<ParamList>?
}

/// Calls `body` for each node of a loader `ParamList`, skipping nodes whose key is NULL
/// (the loader's empty head node).
func forEachParam(
    _ head: UnsafeMutablePointer<ParamList>?, _ listName: String, _ body: (ParamEntry) throws(PluginError) -> Void
) throws(PluginError) {
    var node = head
    var cycle = CycleCheck(head)
    var walked = false
    while let current = node {
        if walked, !cycle.visit(current, next: { $0.pointee.next }) {
            throw PluginError(.invalidArgument, "\(listName) is a cyclic list (a next pointer leads back)")
        }
        if let key = current.pointee.key {
            let value = UnsafePointer(current.pointee.value)
            let vlen = Int(current.pointee.vlen)
            let length = value.map { vlen > 0 ? strnlen($0, vlen) : strlen($0) } ?? 0
            try body(ParamEntry(key: key, value: value, length: length))
        }
        node = current.pointee.next
        walked = true
    }
}

/// Calls `body` for each node of a loader `DataList`, skipping NULL-key nodes.
/// A node with NULL data and a non-zero len is an error (never read).
func forEachData(
    _ head: UnsafeMutablePointer<DataList>?, _ listName: String, _ body: (DataEntry) throws(PluginError) -> Void
) throws(PluginError) {
    var node = head
    var cycle = CycleCheck(head)
    var walked = false
    while let current = node {
        if walked, !cycle.visit(current, next: { $0.pointee.next }) {
            throw PluginError(.invalidArgument, "\(listName) is a cyclic list (a next pointer leads back)")
        }
        let item = current.pointee
        if let key = item.key {
            let length = Int(item.len)
            guard item.data != nil || length == 0 else {
                throw PluginError(
                    .invalidArgument, "\(listName) node \"\(String(cString: key))\" has NULL data but len \(length)")
            }
            let bytes = UnsafeRawBufferPointer(start: length > 0 ? item.data : nil, count: length)
            try body(
                DataEntry(
                    key: key, bytes: bytes, type: item.type.rawValue, status: item.status.rawValue, desc: item.desc))
        }
        node = item.next
        walked = true
    }
}

/// The first personalisation id, or 0 when there is none.
func firstPersonalisationId(_ ids: UnsafeMutablePointer<UInt32>?, count: Int32) -> UInt32 {
    guard let ids, count > 0 else { return 0 }
    return ids[0]
}

/// C memory the plugin hands to the loader (output nodes, keys, desc entries, copied payloads),
/// freed all together when the owner is dropped.
struct CAllocations: ~Copyable {
    private var blocks: [UnsafeMutableRawPointer] = []

    init() {}

    /// Zeroed storage for `count` values of `T`, owned by these allocations.
    mutating func allocate<T>(_ type: T.Type, count: Int) throws(PluginError) -> UnsafeMutablePointer<T> {
        try allocateBytes(count * MemoryLayout<T>.stride).bindMemory(to: T.self, capacity: count)
    }

    /// `count` zeroed bytes (16-byte aligned, as calloc gives), owned by these allocations.
    mutating func allocateBytes(_ count: Int) throws(PluginError) -> UnsafeMutableRawPointer {
        guard let raw = calloc(max(count, 1), 1) else {
            throw PluginError(.internalError, "out of memory allocating \(count) bytes")
        }
        blocks.append(raw)
        return raw
    }

    /// A NUL-terminated copy of `text`, owned by these allocations.
    mutating func copy(_ text: String) throws(PluginError) -> UnsafeMutablePointer<CChar> {
        let count = text.utf8.count
        let target = try allocate(CChar.self, count: count + 1)  // zeroed: the NUL is already there
        _ = text.withCString { memcpy(target, $0, count) }
        return target
    }

    /// A copy of `bytes` (for payloads that cannot be lent; NUL-terminated if `terminated`),
    /// owned by these allocations.
    mutating func copy(_ bytes: UnsafeRawBufferPointer, terminated: Bool = false) throws(PluginError)
        -> UnsafeMutableRawPointer
    {
        let target = try allocate(UInt8.self, count: bytes.count + (terminated ? 1 : 0))  // zeroed
        if let base = bytes.baseAddress, bytes.count > 0 { memcpy(target, base, bytes.count) }
        return UnsafeMutableRawPointer(target)
    }

    /// A `ParamList` chain of `entries` (values NUL-terminated and carrying `vlen`), or nil when empty.
    mutating func paramList(_ entries: [(key: String, value: String)]) throws(PluginError)
        -> UnsafeMutablePointer<ParamList>?
    {
        guard !entries.isEmpty else { return nil }
        let nodes = try allocate(ParamList.self, count: entries.count)
        for (index, entry) in entries.enumerated() {
            nodes[index].key = try copy(entry.key)
            nodes[index].value = try copy(entry.value)
            nodes[index].vlen = UInt32(truncatingIfNeeded: entry.value.utf8.count)
            nodes[index].next = index + 1 < entries.count ? nodes + index + 1 : nil
        }
        return nodes
    }

    deinit {
        for block in blocks { free(block) }
    }
}
