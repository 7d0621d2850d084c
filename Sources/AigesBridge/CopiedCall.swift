import AigesABI
import Glibc

/// A one-shot call's C arguments copied into memory the plugin owns, for a request that outlives
/// the loader's call: an async request waiting in a `Batcher` (the loader frees its lists as soon as
/// `wrapperExecAsync` returns), or personalisation data kept to load into each new worker process.
///
/// The copy is byte for byte — the usrTag, every params entry (`vlen` bytes), every request node
/// (key, data, `len`, type, status) and its desc — in lists like the loader's (without the NULL-key
/// head node, which readers skip anyway). Reading the loader's lists checks them as a call would
/// (a cyclic list, NULL data with a non-zero `len`: `invalidArgument`), so a request that cannot be
/// served fails in `wrapperExecAsync` itself.
final class CopiedCall: @unchecked Sendable {  // immutable after init; its memory is read, never written
    private var memory = CAllocations()
    /// The call, pointing into this copy (valid while it lives).
    private(set) var call: OnceCall

    init(_ source: OnceCall) throws(PluginError) {
        call = OnceCall(usrTag: nil, params: nil, request: nil, personalisationId: source.personalisationId)
        if let usrTag = source.usrTag {
            let copy = try memory.copy(UnsafeRawBufferPointer(start: usrTag, count: strlen(usrTag)), terminated: true)
            call.usrTag = UnsafePointer(copy.assumingMemoryBound(to: CChar.self))
        }
        call.params = try copyParams(source.params, "params")
        var entries: [DataEntry] = []
        try forEachData(source.request, "reqData") { entries.append($0) }
        guard !entries.isEmpty else { return }
        let nodes = try memory.allocate(DataList.self, count: entries.count)
        for (index, entry) in entries.enumerated() {
            nodes[index].key = try copyText(entry.key)
            nodes[index].data = entry.bytes.isEmpty ? nil : try memory.copy(entry.bytes)
            nodes[index].len = UInt32(entry.bytes.count)
            nodes[index].type = DataType(rawValue: entry.type)
            nodes[index].status = DataStatus(rawValue: entry.status)
            nodes[index].desc = try copyParams(entry.desc, "desc")
            nodes[index].next = index + 1 < entries.count ? nodes + index + 1 : nil
        }
        call.request = nodes
    }

    /// A NUL-terminated copy of a C string.
    private func copyText(_ text: UnsafePointer<CChar>) throws(PluginError) -> UnsafeMutablePointer<CChar> {
        try memory.copy(UnsafeRawBufferPointer(start: text, count: strlen(text)), terminated: true)
            .assumingMemoryBound(to: CChar.self)
    }

    /// A copy of a `ParamList` (each value's bytes NUL-terminated, `vlen` kept), or nil when empty.
    private func copyParams(_ head: UnsafeMutablePointer<ParamList>?, _ listName: String) throws(PluginError)
        -> UnsafeMutablePointer<ParamList>?
    {
        var entries: [ParamEntry] = []
        try forEachParam(head, listName) { entries.append($0) }
        guard !entries.isEmpty else { return nil }
        let nodes = try memory.allocate(ParamList.self, count: entries.count)
        for (index, entry) in entries.enumerated() {
            nodes[index].key = try copyText(entry.key)
            nodes[index].value = try memory.copy(
                UnsafeRawBufferPointer(start: entry.value, count: entry.value == nil ? 0 : entry.length),
                terminated: true
            ).assumingMemoryBound(to: CChar.self)
            nodes[index].vlen = UInt32(truncatingIfNeeded: entry.length)
            nodes[index].next = index + 1 < entries.count ? nodes + index + 1 : nil
        }
        return nodes
    }
}
