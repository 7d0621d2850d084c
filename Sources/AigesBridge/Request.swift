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

    deinit {
        Py_DecRef(items)
        Py_DecRef(list)  // drops our hold; if Python kept nothing, the nodes are ours alone now
        guard let objects = Bootstrap.objects else { return }
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
            if aiges_py_refcnt(loan.view) > 1 { Self.revoke(loan.view, loan.bytes, objects) }
            Py_DecRef(loan.view)
        }
    }

    /// Ends a view that Python still references, so that using it raises ValueError.
    private static func revoke(_ view: PyPointer, _ loan: UnsafeRawBufferPointer, _ objects: Bootstrap.Objects) {
        if let result = PyObject_CallMethodNoArgs(view, objects.names.release) {
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
nonisolated(unsafe) let emptyCString = UnsafePointer<CChar>(
    UnsafeRawPointer(("" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self))

/// Something non-NULL to point an empty memoryview at.
nonisolated(unsafe) private let emptyBytes = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)
