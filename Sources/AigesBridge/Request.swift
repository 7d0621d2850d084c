import AigesABI
import CPython
import CPythonShims

/// A `dict[str, str]` made from a loader `ParamList` (config or params).
func makeDict(_ head: UnsafeMutablePointer<ParamList>?, _ listName: String) throws(PluginError) -> PyRef {
    let dict = try PyRef(steal: PyDict_New(), "creating \(listName) dict")
    try forEachParam(head, listName) { entry throws(PluginError) in
        let key = try makeUnicode(entry.key, length: strlen(entry.key))
        let value = try makeUnicode(entry.value ?? emptyString, length: entry.length)
        guard PyDict_SetItem(dict.pointer, key.pointer, value.pointer) == 0 else {
            throw PluginError.fromPython(.internalError, "filling \(listName) dict")
        }
    }
    return dict
}

/// Request params as Python sees them: a dict that always has a "sid" key.
struct Params: ~Copyable {
    let dict: PyRef
    /// The request id, for logs ("" when the loader sent none).
    let sid: String

    init(_ head: UnsafeMutablePointer<ParamList>?) throws(PluginError) {
        let dict = try makeDict(head, "params")
        var sid = ""
        if let existing = PyDict_GetItemString(dict.pointer, "sid") {  // borrowed
            sid = string(fromUnicode: existing) ?? ""
        } else {
            let empty = try makeUnicode("")
            PyDict_SetItemString(dict.pointer, "sid", empty.pointer)
        }
        self.dict = dict
        self.sid = sid
    }
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
    private var nodes: [PyPointer] = []  // owned references
    private var views: [PyPointer] = []  // owned references to the memoryviews over loader memory
    /// The loader buffers lent to Python, to recognise output that points back into them.
    private(set) var loans: [UnsafeRawBufferPointer] = []

    private let items: PyPointer  // owned: the Python list inside `list`

    private init(list: PyPointer, items: PyPointer) {
        self.list = list
        self.items = items
    }

    /// Builds the request from a loader `DataList`. GIL required.
    static func make(_ head: UnsafeMutablePointer<DataList>?, _ listName: String) throws(PluginError) -> LoanedRequest {
        guard let objects = Bootstrap.objects else { throw PluginError(.notInitialized, "aiges_embed not installed") }
        let items = try PyRef(steal: PyList_New(0), "creating request list")
        var argument: PyPointer? = items.pointer
        let list = try PyRef(steal: aiges_py_vectorcall(objects.dataListCls, &argument, 1), "creating DataListCls")
        var request = LoanedRequest(list: list.take(), items: items.take())
        try forEachData(head, listName) { entry throws(PluginError) in
            try request.append(entry, objects: objects)
        }
        return request
    }

    /// Adds one node whose `view` lends `entry`'s bytes.
    private mutating func append(_ entry: DataEntry, objects: Bootstrap.Objects) throws(PluginError) {
        let view = try PyRef(
            steal: aiges_py_readonly_view(entry.bytes.baseAddress ?? UnsafeRawPointer(emptyBytes), entry.bytes.count),
            "creating memoryview")
        views.append(PyRef(retain: view.pointer).take())
        loans.append(entry.bytes)
        let node = try makeNode(entry, view: view.pointer, objects: objects)
        nodes.append(PyRef(retain: node.pointer).take())
        guard PyList_Append(items, node.pointer) == 0 else {
            throw PluginError.fromPython(.internalError, "filling request list")
        }
    }

    private func makeNode(_ entry: DataEntry, view: PyPointer, objects: Bootstrap.Objects) throws(PluginError) -> PyRef
    {
        let key = try makeUnicode(entry.key, length: strlen(entry.key))
        let length = try PyRef(steal: PyLong_FromSize_t(entry.bytes.count), "len")
        let type = try PyRef(steal: PyLong_FromUnsignedLong(UInt(entry.type)), "type")
        let status = try PyRef(steal: PyLong_FromUnsignedLong(UInt(entry.status)), "status")
        let desc = try makeDict(entry.desc, "desc of \"\(String(cString: entry.key))\"")
        var arguments: [PyPointer?] = [key.pointer, view, length.pointer, type.pointer, status.pointer, desc.pointer]
        return try PyRef(steal: aiges_py_vectorcall(objects.dataListNode, &arguments, 6), "creating DataListNode")
    }

    deinit {
        Py_DecRef(items)
        Py_DecRef(list)  // drops our hold; if Python kept nothing, the nodes are ours alone now
        for node in nodes {
            if aiges_py_refcnt(node) > 1, let objects = Bootstrap.objects {
                // Python kept this node: give it its own bytes before the loader frees them.
                if let result = PyObject_CallMethodNoArgs(node, objects.detach) {
                    Py_DecRef(result)
                } else {
                    _ = PluginError.fromPython(.internalError, "detaching a request node")
                }
            }
            Py_DecRef(node)
        }
        for (view, loan) in zip(views, loans) {
            if aiges_py_refcnt(view) > 1 { Self.revoke(view, loan) }
            Py_DecRef(view)
        }
    }

    /// Ends a view that Python still references, so that using it raises ValueError.
    private static func revoke(_ view: PyPointer, _ loan: UnsafeRawBufferPointer) {
        guard let objects = Bootstrap.objects else { return }
        if let result = PyObject_CallMethodNoArgs(view, objects.release) {
            Py_DecRef(result)
            return
        }
        // BufferError: a buffer derived from the view (np.frombuffer(node.view), …) is still alive.
        let (summary, _) = PythonException.fetch()
        Log.logger.error(
            """
            wrapper.py kept a buffer made from a request view (\(loan.count) bytes) past the call: \
            it points at loader memory that is about to be freed; copy it instead (\(summary))
            """)
    }
}

/// "" as a C string, for NULL values.
nonisolated(unsafe) private let emptyString = UnsafePointer<CChar>(
    UnsafeRawPointer(("" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self))

/// Something non-NULL to point an empty memoryview at.
nonisolated(unsafe) private let emptyBytes = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)
