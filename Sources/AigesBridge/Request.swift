import AigesABI
import CPython
import CPythonShims
import Synchronization

/// How payloads cross between the loader and Python.
enum DataPath {
    /// Copy mode (config `data.copy`): inputs become `bytes` copies and outputs are copied into
    /// plugin memory, the way a naive plugin works; kept to measure zero-copy against it.
    static let copying = Atomic<Bool>(false)

    static var copies: Bool { copying.load(ordering: .relaxed) }
}

/// A `dict[str, str]` made from a loader `ParamList` (config or params).
func makeDict(_ head: UnsafeMutablePointer<ParamList>?, _ listName: String) throws(PluginError) -> PyRef {
    let dict = try PyRef(steal: PyDict_New(), "creating \(listName) dict")
    try forEachParam(head, listName) { entry throws(PluginError) in
        let key = try makeUnicode(entry.key, length: strlen(entry.key))
        let value = try makeUnicode(entry.value ?? emptyCString, length: entry.length)
        guard PyDict_SetItem(dict.pointer, key.pointer, value.pointer) == 0 else {
            throw PluginError.fromPython(.internalError, "filling \(listName) dict")
        }
    }
    return dict
}

/// Request params as Python sees them: a dict that always has a "sid" key.
struct Params: ~Copyable {
    let dict: PyRef
    /// The "sid" value (borrowed from `dict`).
    let sidObject: PyPointer

    init(_ head: UnsafeMutablePointer<ParamList>?) throws(PluginError) {
        let dict = try makeDict(head, "params")
        if let existing = PyDict_GetItemString(dict.pointer, "sid") {  // borrowed
            sidObject = existing
        } else {
            let empty = try makeUnicode("")
            PyDict_SetItemString(dict.pointer, "sid", empty.pointer)
            sidObject = empty.pointer  // the dict now holds it
        }
        self.dict = dict
    }

    /// The request id, for logs and tags ("" when the loader sent none). Converted on each use.
    var sid: String { string(fromUnicode: sidObject) ?? "" }
}

/// A request (`DataListCls` of `DataListNode`) whose node bytes are loans of the loader's buffers.
///
/// Each node's `view` is a read-only memoryview straight over the loader's memory (no copy).
/// The loan ends when this value is dropped, which must happen, with the GIL held, before the
/// C call returns: nodes that Python kept (in a queue, on `self`) get their own copy of the bytes
/// first, and every view is released so that a stale one raises instead of reading freed memory.
struct LoanedRequest: ~Copyable {
    /// The `DataListCls` object (owned reference).
    let list: PyPointer
    private let items: PyPointer  // owned: the Python list inside `list`
    private var lent: [Loan] = []
    private var finished = false
    /// Payload bytes over all nodes (in either data mode).
    private(set) var byteCount = 0

    /// One node lent to Python: the node and its memoryview (owned references) and the loader bytes.
    private struct Loan {
        let node: PyPointer
        let view: PyPointer
        let bytes: UnsafeRawBufferPointer
    }

    /// The loader buffers lent to Python, to recognise output that points back into them.
    var loans: [UnsafeRawBufferPointer] { lent.map(\.bytes) }

    private init(list: PyPointer, items: PyPointer) {
        self.list = list
        self.items = items
    }

    /// Builds the request from a loader `DataList`. GIL required.
    static func make(_ head: UnsafeMutablePointer<DataList>?, _ listName: String) throws(PluginError) -> LoanedRequest {
        guard let objects = Bootstrap.objects else { throw PluginError(.notInitialized, "aiges_embed not installed") }
        let items = try PyRef(steal: PyList_New(0), "creating request list")
        let list = try PyRef(steal: aiges_py_alloc(objects.dataListCls), "creating DataListCls")
        aiges_py_set_slot(list.pointer, objects.listSlot, items.pointer)
        var request = LoanedRequest(list: list.take(), items: items.take())
        try forEachData(head, listName) { entry throws(PluginError) in
            try request.append(entry, objects: objects)
        }
        return request
    }

    /// Adds one node whose `view` lends `entry`'s bytes (in copy mode: whose data is a copy).
    private mutating func append(_ entry: DataEntry, objects: Bootstrap.Objects) throws(PluginError) {
        byteCount += entry.bytes.count
        let node = try PyRef(steal: aiges_py_alloc(objects.dataListNode), "creating DataListNode")
        let slots = objects.node
        let payload: PyRef
        if DataPath.copies {
            payload = try PyRef(
                steal: PyBytes_FromStringAndSize(
                    entry.bytes.baseAddress?.assumingMemoryBound(to: CChar.self), entry.bytes.count),
                "copying input")
            aiges_py_set_slot(node.pointer, slots.data, payload.pointer)
            aiges_py_set_slot(node.pointer, slots.view, aiges_py_none())
        } else {
            payload = try PyRef(
                steal: aiges_py_readonly_view(
                    entry.bytes.baseAddress ?? UnsafeRawPointer(emptyBytes), entry.bytes.count),
                "creating memoryview")
            aiges_py_set_slot(node.pointer, slots.view, payload.pointer)
            aiges_py_set_slot(node.pointer, slots.data, aiges_py_none())
        }
        try set(node.pointer, slots.key, makeUnicode(entry.key, length: strlen(entry.key)))
        try set(node.pointer, slots.len, PyRef(steal: PyLong_FromSize_t(entry.bytes.count), "len"))
        try set(node.pointer, slots.type, PyRef(steal: PyLong_FromUnsignedLong(UInt(entry.type)), "type"))
        try set(node.pointer, slots.status, PyRef(steal: PyLong_FromUnsignedLong(UInt(entry.status)), "status"))
        try set(node.pointer, slots.desc, makeDict(entry.desc, "desc"))
        guard PyList_Append(items, node.pointer) == 0 else {
            throw PluginError.fromPython(.internalError, "filling request list")
        }
        if !DataPath.copies {
            lent.append(Loan(node: node.take(), view: PyRef(retain: payload.pointer).take(), bytes: entry.bytes))
        }
    }

    /// Stores `value` in the slot at `offset` of `node` (the slot takes its own reference).
    private func set(_ node: PyPointer, _ offset: Int, _ value: consuming PyRef) {
        aiges_py_set_slot(node, offset, value.pointer)
    }

    /// Ends the loan before the C call returns (GIL held): nodes Python kept get their own bytes,
    /// views Python kept are released. A buffer still exported from a view — say
    /// `np.frombuffer(node.view)` stored on `self` — would point at freed loader memory: the call
    /// fails with `viewEscaped` so the author finds out at once (copy it instead).
    mutating func finish() throws(PluginError) {
        finished = true
        let escaped = Self.endLoans(items: items, list: list, lent: lent)
        if escaped > 0 {
            throw PluginError(
                .viewEscaped,
                """
                wrapper.py kept \(escaped) buffer(s) made from request views past the call (e.g. \
                np.frombuffer(node.view) or a slice of node.view stored on self); they would point at freed \
                loader memory: \
                keep node.data, bytes(node.view) or a copy instead
                """)
        }
    }

    /// Drops our hold on the request, detaches kept nodes and revokes kept views (once per request).
    /// - Returns: how many views could not be revoked.
    private static func endLoans(items: PyPointer, list: PyPointer, lent: [Loan]) -> Int {
        Py_DecRef(items)
        Py_DecRef(list)  // if Python kept nothing, the nodes are ours alone now
        guard let objects = Bootstrap.objects else { return 0 }
        var escaped = 0
        for loan in lent {
            if aiges_py_refcnt(loan.node) > 1 {
                // Python kept this node: give it its own bytes before the loader frees them.
                if let result = PyObject_CallMethodNoArgs(loan.node, objects.names.detach) {
                    Py_DecRef(result)
                } else {
                    _ = PluginError.fromPython(.internalError, "detaching a request node")
                }
            }
            Py_DecRef(loan.node)
            if !Self.revokeIfKept(loan.view, loan.bytes, objects) { escaped += 1 }
            Py_DecRef(loan.view)
        }
        return escaped
    }

    deinit {
        if !finished { _ = Self.endLoans(items: items, list: list, lent: lent) }  // an error path before finish()
    }

    /// Ends `view` if Python still references it, so that using it raises ValueError.
    /// - Returns: false if loader memory stays reachable from Python: a slice of the view, a buffer
    ///   still exported from it, or a holder the GC cannot see (a numpy array whose base is the view:
    ///   `np.frombuffer` keeps the pointer but not the export).
    private static func revokeIfKept(_ view: PyPointer, _ loan: UnsafeRawBufferPointer, _ objects: Bootstrap.Objects)
        -> Bool
    {
        let sharedBySlices = aiges_py_view_sharers(view) > 1
        let references = aiges_py_refcnt(view) - 1  // beyond ours
        guard references > 0 || sharedBySlices else { return true }  // the common case: nothing kept
        var safe = !sharedBySlices
        if references > 0 {
            if let result = PyObject_CallMethodNoArgs(view, objects.names.release) {
                Py_DecRef(result)
                var argument: PyPointer? = view
                if let counted = aiges_py_vectorcall(objects.containerReferences, &argument, 1) {
                    defer { Py_DecRef(counted) }
                    if let explained = int32(counted), Int(explained) < references { safe = false }
                } else {
                    PyErr_Clear()
                }
            } else {
                PyErr_Clear()  // BufferError: a buffer exported from the view is still alive
                safe = false
            }
        }
        if !safe {
            Log.logger.error(
                "wrapper.py kept loader memory (\(loan.count) bytes of a request view) past the call; copy it instead")
        }
        return safe
    }
}

/// "" as a C string, for NULL values.
nonisolated(unsafe) let emptyCString = UnsafePointer<CChar>(
    UnsafeRawPointer(("" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self))

/// Something non-NULL to point an empty memoryview at.
nonisolated(unsafe) private let emptyBytes = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)
