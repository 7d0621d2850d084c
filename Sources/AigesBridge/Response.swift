import AigesABI
import CPython
import CPythonShims

/// How a Response becomes output.
enum OutputKind {
    /// One-shot result: every node gets status DataOnce; an empty list is an error.
    case once
    /// Session or callback result: statuses kept; an empty list means "nothing yet".
    case stream
}

/// A C output list made from a Python `Response`, and what keeps its memory alive.
///
/// Read-only payloads (bytes, str, read-only buffers) are lent, not copied: each node's `data`
/// points into the Python object's buffer, which stays exported (and the object alive) until this
/// batch is dropped — by `wrapperExecFree`, the next `wrapperRead`, `wrapperDestroy`, or the
/// callback's return. Writable buffers (bytearray, numpy arrays) are copied once, since wrapper
/// threads may still change them while the loader copies (config `data.lend` lends them too).
final class OutputBatch: @unchecked Sendable {  // immutable after init; dropped by one owner
    /// The first node, or nil for an empty list.
    private(set) var head: UnsafeMutablePointer<DataList>?
    /// Number of nodes.
    private(set) var count = 0
    /// The last node, or nil for an empty list.
    private var tail: UnsafeMutablePointer<DataList>? { head.map { $0 + (count - 1) } }
    /// The nodes, in order.
    private var nodes: UnsafeBufferPointer<DataList> { UnsafeBufferPointer(start: head, count: count) }
    /// Whether a node has a final status (DataEnd or DataOnce).
    var hasFinalStatus: Bool { nodes.contains { $0.status == DataEnd || $0.status == DataOnce } }
    /// Payload bytes over all nodes.
    var byteCount: Int { nodes.reduce(0) { $0 + Int($1.len) } }
    private var memory = CAllocations()
    private var buffers: UnsafeMutablePointer<Py_buffer>?  // malloc'd; owned until deinit hands it on
    private var heldBuffers = 0
    /// What keeps a worker's output alive (its frame, its shared segments); nil in-process.
    private var keepAlive: AnyObject?

    /// Node `index`'s key (valid while the batch lives).
    func key(at index: Int) -> UnsafePointer<CChar> { UnsafePointer(nodes[index].key) ?? emptyCString }

    /// Node `index` (valid while the batch lives); its `next` may be relinked by the batch's user.
    func node(at index: Int) -> UnsafeMutablePointer<DataList> {
        precondition(index < count, "output node index out of range")
        return head.unsafelyUnwrapped + index  // head is non-nil whenever count > 0
    }

    /// Converts `response` (GIL required). An output that points into a loader buffer lent to Python
    /// (`LentMemory`, with `data.lend`) is copied, since the loader frees its input when the call returns.
    init(_ response: PyPointer, kind: OutputKind) throws(PluginError) {
        if let code = int32(response) {
            throw code != 0 ? PluginError(wrapperCode: code) : PluginError(.badReturnType, "expected a Response, got 0")
        }
        guard let names = Bootstrap.objects?.names else {
            throw PluginError(.notInitialized, "aiges_embed not installed")
        }
        guard let items = try optionalAttribute(response, names.list) else {
            throw PluginError(.badReturnType, "expected a Response, got \(PythonException.typeName(of: response))")
        }
        if let code = try optionalAttribute(response, names.errorCode), code.pointer != aiges_py_none() {
            guard let value = int32(code.pointer) else {
                throw PluginError(
                    .badReturnType,
                    "Response.error_code must be an int that fits in 32 bits, got \(describe(code.pointer))")
            }
            if value != 0 { throw PluginError(wrapperCode: value) }
        }
        guard aiges_py_is_list(items.pointer) != 0 || aiges_py_is_tuple(items.pointer) != 0 else {
            throw PluginError(
                .badReturnType, "Response.list must be a list of ResponseData, got \(describe(items.pointer))")
        }
        // A tuple copy owns its items: wrapper.py code run by attribute reads (properties) cannot
        // free them by changing the list meanwhile.
        let sequence = try PyRef(steal: PySequence_Tuple(items.pointer), "Response.list")
        let total = aiges_py_fast_size(sequence.pointer)
        if total == 0, kind == .once {
            throw PluginError(.emptyResponse, "wrapperOnceExec returned a Response whose list is empty")
        }
        guard total > 0 else { return }
        let nodes = try memory.allocate(DataList.self, count: total)
        guard let slots = calloc(total, MemoryLayout<Py_buffer>.stride) else {  // freed with the exports
            throw PluginError(.internalError, "out of memory for \(total) output buffers")
        }
        buffers = slots.bindMemory(to: Py_buffer.self, capacity: total)
        for index in 0..<total {
            guard let item = aiges_py_fast_item(sequence.pointer, index) else { continue }  // borrowed
            try fill(nodes + index, from: item, kind: kind, names: names)
            nodes[index].next = index + 1 < total ? nodes + index + 1 : nil
        }
        head = nodes
        count = total
    }

    /// An output a worker process sent (`WireLists`): the nodes point into `frame` (inline payloads)
    /// or the worker's segments (held by `keepAlive`, released when the batch is dropped).
    init(wire lists: consuming WireLists, head: UnsafeMutablePointer<DataList>?, count: Int, keepAlive: AnyObject?) {
        self.memory = lists.takeMemory()
        self.head = head
        self.count = count
        self.keepAlive = keepAlive
    }

    /// Fills one C node from a `ResponseData`.
    private func fill(
        _ node: UnsafeMutablePointer<DataList>, from item: PyPointer, kind: OutputKind,
        names: Bootstrap.Names
    ) throws(PluginError) {
        let keyObject = try attribute(item, names.key)
        guard aiges_py_is_unicode(keyObject.pointer) != 0 else {
            throw PluginError(.invalidOutput, "ResponseData.key must be a str, got \(describe(keyObject.pointer))")
        }
        let encoded = try encodeUTF8(keyObject.pointer, errors: "backslashreplace")  // keys stay valid UTF-8
        let keyBytes = UnsafeRawBufferPointer(
            start: PyBytes_AsString(encoded.pointer), count: PyBytes_Size(encoded.pointer))
        guard !keyBytes.contains(0) else {
            throw PluginError(
                .invalidOutput, "ResponseData.key \(describe(keyObject.pointer)) contains a NUL character")
        }
        let keyCopy = try memory.copy(keyBytes, terminated: true)
        node.pointee.key = keyCopy.assumingMemoryBound(to: CChar.self)
        let key = KeyName(node.pointee.key)
        node.pointee.type = DataType(rawValue: try field(item, names.type, "type", key, default: 0))
        let status = try field(item, names.status, "status", key, default: UInt32(DataContinue.rawValue))
        node.pointee.status = kind == .once ? DataOnce : DataStatus(rawValue: status)
        let declared = try field(item, names.len, "len", key, default: 0)
        let (bytes, writable) = try lend(try attribute(item, names.data), key: key)
        // len 0 (or unset) means "the whole buffer"; a larger len than the buffer is never read.
        guard Int(declared) <= bytes.count else {
            throw PluginError(
                .invalidOutput, "\"\(key)\": len \(declared) is larger than its data (\(bytes.count) bytes)")
        }
        guard let length = UInt32(exactly: declared > 0 ? Int(declared) : bytes.count) else {
            throw PluginError(.invalidOutput, "\"\(key)\": \(bytes.count) bytes is over the 4 GiB limit of len")
        }
        var data = UnsafeMutableRawPointer(mutating: bytes.baseAddress)
        if let start = bytes.baseAddress,
            DataPath.copies || (writable && !DataPath.lends) || (DataPath.lends && LentMemory.contains(start))
        {
            data = try memory.copy(UnsafeRawBufferPointer(start: start, count: Int(length)))
            releaseExport(of: start)  // the request's view must be revocable when the call returns
        }
        node.pointee.data = length > 0 ? data : nil
        node.pointee.len = length
        node.pointee.desc = try descList(item, key: key, name: names.desc)
    }

    /// Chains `batches` into one C list (each batch's last node points at the next batch's first).
    /// - Returns: the first node, or nil if all are empty. The batches must outlive the list.
    static func chain(_ batches: [OutputBatch]) -> UnsafeMutablePointer<DataList>? {
        let filled = batches.filter { $0.count > 0 }
        for (batch, next) in zip(filled, filled.dropFirst()) { batch.tail?.pointee.next = next.head }
        return filled.first?.head
    }

    /// Lends `data`'s bytes: keeps a buffer export of it until the batch is dropped.
    /// None is empty; str is encoded as UTF-8; non-contiguous buffers are copied once.
    /// - Returns: the bytes, and whether the exporter lets them be changed (bytearray, numpy).
    private func lend(_ data: borrowing PyRef, key: KeyName) throws(PluginError) -> (UnsafeRawBufferPointer, Bool) {
        if data.pointer == aiges_py_none() { return (UnsafeRawBufferPointer(start: nil, count: 0), false) }
        if aiges_py_is_unicode(data.pointer) != 0 {
            return try lend(try encodeUTF8(data.pointer), key: key)
        }
        guard let buffers else { throw PluginError(.internalError, "no buffer slots") }
        let slot = buffers + heldBuffers
        if PyObject_GetBuffer(data.pointer, slot, PyBUF_SIMPLE) == 0 {
            heldBuffers += 1
            return (
                UnsafeRawBufferPointer(start: slot.pointee.buf, count: slot.pointee.len),
                aiges_py_buffer_writable(slot) != 0
            )
        }
        PyErr_Clear()
        guard PyObject_GetBuffer(data.pointer, slot, PyBUF_FULL_RO) == 0 else {
            let type = PythonException.typeName(of: data.pointer)
            PyErr_Clear()
            throw PluginError(.invalidOutput, "\"\(key)\": data must be bytes-like or str, got \(type)")
        }
        defer { PyBuffer_Release(slot) }
        let copy = try memory.allocate(UInt8.self, count: slot.pointee.len)
        guard PyBuffer_ToContiguous(copy, slot, slot.pointee.len, CChar(UInt8(ascii: "C"))) == 0 else {
            throw PluginError.fromPython(.invalidOutput, "\"\(key)\": making data contiguous")
        }
        return (UnsafeRawBufferPointer(start: copy, count: slot.pointee.len), false)
    }

    /// Releases the most recent buffer export if it is the one over `start`.
    private func releaseExport(of start: UnsafeRawPointer) {
        guard let buffers, heldBuffers > 0, buffers[heldBuffers - 1].buf == UnsafeMutableRawPointer(mutating: start)
        else { return }
        heldBuffers -= 1
        PyBuffer_Release(buffers + heldBuffers)
    }

    /// The node's `desc` dict (if any) as a C ParamList.
    private func descList(_ item: PyPointer, key: KeyName, name: PyPointer) throws(PluginError)
        -> UnsafeMutablePointer<ParamList>?
    {
        guard let desc = try optionalAttribute(item, name), desc.pointer != aiges_py_none() else { return nil }
        guard aiges_py_is_dict(desc.pointer) != 0 else {
            throw PluginError(.invalidOutput, "\"\(key)\": desc must be a dict")
        }
        // A snapshot of (key, value) tuples that owns its references: str() runs wrapper.py code,
        // which may change the dict meanwhile.
        let items = try PyRef(steal: PyDict_Items(desc.pointer), "\"\(key)\": reading desc")
        var entries: [(key: String, value: String)] = []
        for index in 0..<PyList_Size(items.pointer) {
            guard let pair = PyList_GetItem(items.pointer, index), let name = PyTuple_GetItem(pair, 0),
                let value = PyTuple_GetItem(pair, 1)
            else { continue }
            entries.append((str(name) ?? "", str(value) ?? ""))  // str() of each: numbers become text
        }
        return try memory.paramList(entries)
    }

    /// An unsigned 32-bit int attribute (None or missing → `default`).
    private func field(_ item: PyPointer, _ name: PyPointer, _ label: String, _ key: KeyName, default: UInt32)
        throws(PluginError) -> UInt32
    {
        guard let value = try optionalAttribute(item, name), value.pointer != aiges_py_none() else { return `default` }
        guard let number = uint32(value.pointer) else {
            throw PluginError(
                .invalidOutput,
                "\"\(key)\": \(label) must be an int from 0 to 4294967295, got \(describe(value.pointer))")
        }
        return number
    }

    /// Releases the buffer exports: at once if this thread holds the GIL, else at the next entry
    /// into Python (`DeferredReleases`); dropping a batch never waits for the GIL.
    deinit {
        guard let buffers else { return }
        DeferredReleases.release(.buffers(buffers, count: heldBuffers, block: UnsafeMutableRawPointer(buffers)))
    }
}

/// An output node's key, turned into text only when an error message needs it.
private struct KeyName: CustomStringConvertible {
    let bytes: UnsafePointer<CChar>?
    init(_ bytes: UnsafeMutablePointer<CChar>?) { self.bytes = UnsafePointer(bytes) }
    var description: String { bytes.map { String(cString: $0) } ?? "" }
}

/// `object.name` (new reference); a missing attribute is an error. GIL required.
func attribute(_ object: PyPointer, _ name: PyPointer) throws(PluginError) -> PyRef {
    guard let value = PyObject_GetAttr(object, name) else {
        throw PluginError.fromPython(.badReturnType, "reading .\(str(name) ?? "?")")
    }
    return try PyRef(steal: value, "")
}

/// `object.name`, or nil if it has no such attribute. GIL required.
func optionalAttribute(_ object: PyPointer, _ name: PyPointer) throws(PluginError) -> PyRef? {
    guard let value = PyObject_GetAttr(object, name) else {
        if PyErr_ExceptionMatches(aiges_py_exc_attribute_error()) != 0 {
            PyErr_Clear()
            return nil
        }
        throw PluginError.fromPython(.invalidOutput, "reading .\(str(name) ?? "?")")
    }
    return try PyRef(steal: value, "")
}
