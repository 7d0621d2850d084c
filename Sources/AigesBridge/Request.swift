import AigesABI
import CPython
import CPythonShims
import Synchronization

/// How payloads cross between the loader and Python.
///
/// - `copyOnRead` (default): a request node holds only a revocable loan of the loader's bytes; the
///   first read of `.data` or `.view` copies them once into a `bytes` the node owns, and a node kept
///   past the call is given its copy when the call returns. Nothing in Python can reach loader memory
///   after the call, and a node nobody reads costs O(1) whatever its size. Outputs: read-only buffers
///   are lent, writable ones (bytearray, numpy) copied.
/// - `lend` (config `data.lend`): `.view` is a memoryview straight over the loader's buffer (no copy)
///   and writable outputs are lent too. For wrappers the operator vouches for: a call that keeps a
///   buffer made from a view fails with 22016, and the wrapper must not change an output buffer
///   after returning it.
/// - `copy` (config `data.copy`): every input is copied to `bytes` up front and every output into
///   plugin memory, as a naive plugin does; kept to measure the others against.
enum DataPath {
    enum Mode: Int {
        case copyOnRead, lend, copy
    }

    static let mode = Atomic<Int>(Mode.copyOnRead.rawValue)

    static var current: Mode { Mode(rawValue: mode.load(ordering: .relaxed)) ?? .copyOnRead }

    /// Set when a `data.lend` call kept loader memory (22016): what it kept points at memory the
    /// loader has freed, so from then on the plugin calls no wrapper.py method but `wrapperFini`.
    static let escaped = Atomic<Bool>(false)
    static var copies: Bool { current == .copy }
    static var lends: Bool { current == .lend }
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
    /// The "sid" value, owned: wrapper.py may remove it from the dict.
    let sid: PyRef

    init(_ head: UnsafeMutablePointer<ParamList>?) throws(PluginError) {
        let dict = try makeDict(head, "params")
        if let existing = PyDict_GetItemString(dict.pointer, "sid") {  // borrowed from the dict
            sid = PyRef(retain: existing)
        } else {
            let empty = try makeUnicode("")
            PyDict_SetItemString(dict.pointer, "sid", empty.pointer)
            sid = empty
        }
        self.dict = dict
    }

    /// The request id, for logs and tags ("" when the loader sent none). Converted on each use.
    var sidText: String { string(fromUnicode: sid.pointer) ?? "" }
}

/// A request (`DataListCls` of `DataListNode`) made from a loader `DataList` for one call.
///
/// The loader frees its buffers when the call returns, so this value must be ended — `finish()`,
/// or dropped on an error path — with the GIL held before then: nodes Python kept (in a queue, on
/// `self`) are given their own bytes, and every loan of loader memory is revoked (see `DataPath`).
struct LoanedRequest: ~Copyable {
    /// The `DataListCls` object (owned reference).
    let list: PyPointer
    private let items: PyPointer  // owned: the Python list inside `list`
    private var lent: [Loan] = []
    private var finished = false
    /// Payload bytes over all nodes (in every data mode).
    private(set) var byteCount = 0

    /// One node whose bytes are the loader's: the node and its loan — a capsule (copy-on-read) or a
    /// memoryview (lend mode) — as owned references, and the loader bytes.
    private struct Loan {
        let node: PyPointer
        let handle: PyPointer
        let bytes: UnsafeRawBufferPointer
    }

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
        let mode = DataPath.current
        try forEachData(head, listName) { entry throws(PluginError) in
            try request.append(entry, mode: mode, objects: objects)
        }
        return request
    }

    /// Adds one node for `entry`: a loan of its bytes, a view over them (lend) or a copy (copy mode).
    private mutating func append(_ entry: DataEntry, mode: DataPath.Mode, objects: Bootstrap.Objects)
        throws(PluginError)
    {
        byteCount += entry.bytes.count
        let node = try PyRef(steal: aiges_py_alloc(objects.dataListNode), "creating DataListNode")
        let slots = objects.node
        let start = entry.bytes.baseAddress ?? UnsafeRawPointer(emptyBytes)
        let payload: PyRef
        if SharedInputs.active.load(ordering: .relaxed), entry.bytes.count > 0,
            let view = try SharedInputs.view(start, count: entry.bytes.count)
        {
            // A worker's input in the plugin's shared memory: lent for as long as Python keeps it.
            aiges_py_set_slot(node.pointer, slots.view, view.pointer)
            aiges_py_set_slot(node.pointer, slots.data, aiges_py_none())
            aiges_py_set_slot(node.pointer, slots.loan, aiges_py_none())
            try finishNode(node, entry, objects)
            return
        }
        switch mode {
        case .copy:
            payload = try PyRef(
                steal: PyBytes_FromStringAndSize(start.assumingMemoryBound(to: CChar.self), entry.bytes.count),
                "copying input")
            aiges_py_set_slot(node.pointer, slots.data, payload.pointer)
            aiges_py_set_slot(node.pointer, slots.view, aiges_py_none())
            aiges_py_set_slot(node.pointer, slots.loan, aiges_py_none())
        case .copyOnRead:
            payload = try PyRef(steal: aiges_py_loan_new(start, entry.bytes.count), "lending input")
            aiges_py_set_slot(node.pointer, slots.loan, payload.pointer)
            aiges_py_set_slot(node.pointer, slots.data, aiges_py_none())
            aiges_py_set_slot(node.pointer, slots.view, aiges_py_none())
        case .lend:
            payload = try PyRef(steal: aiges_py_readonly_view(start, entry.bytes.count), "creating memoryview")
            aiges_py_set_slot(node.pointer, slots.view, payload.pointer)
            aiges_py_set_slot(node.pointer, slots.data, aiges_py_none())
            aiges_py_set_slot(node.pointer, slots.loan, aiges_py_none())
        }
        try finishNode(node, entry, objects)
        if mode != .copy {
            lent.append(Loan(node: node.take(), handle: payload.take(), bytes: entry.bytes))
            if mode == .lend { LentMemory.add(entry.bytes) }
        }
    }

    /// Fills `node`'s other slots from `entry` and appends it to the request.
    private func finishNode(_ node: borrowing PyRef, _ entry: DataEntry, _ objects: Bootstrap.Objects)
        throws(PluginError)
    {
        let slots = objects.node
        try set(node.pointer, slots.key, makeUnicode(entry.key, length: strlen(entry.key)))
        try set(node.pointer, slots.len, PyRef(steal: PyLong_FromSize_t(entry.bytes.count), "len"))
        try set(node.pointer, slots.type, PyRef(steal: PyLong_FromUnsignedLong(UInt(entry.type)), "type"))
        try set(node.pointer, slots.status, PyRef(steal: PyLong_FromUnsignedLong(UInt(entry.status)), "status"))
        try set(node.pointer, slots.desc, makeDict(entry.desc, "desc"))
        guard PyList_Append(items, node.pointer) == 0 else {
            throw PluginError.fromPython(.internalError, "filling request list")
        }
    }

    /// Stores `value` in the slot at `offset` of `node` (the slot takes its own reference).
    private func set(_ node: PyPointer, _ offset: Int, _ value: consuming PyRef) {
        aiges_py_set_slot(node, offset, value.pointer)
    }

    /// Ends the loans before the C call returns (GIL held). In lend mode, a buffer still exported
    /// from a view — say `np.frombuffer(node.view)` stored on `self` — would point at freed loader
    /// memory: the call fails with `viewEscaped` so the author finds out at once.
    mutating func finish() throws(PluginError) {
        finished = true
        let escaped = Self.endLoans(items: items, list: list, lent: lent)
        if escaped > 0 {
            DataPath.escaped.store(true, ordering: .relaxed)
            throw PluginError(
                .viewEscaped,
                """
                wrapper.py kept buffers made from \(escaped) request view(s) past the call (e.g. \
                np.frombuffer(node.view) or a slice of node.view stored on self) while data.lend is on; they \
                point at freed loader memory, so the plugin calls wrapper.py no more until wrapperFini and \
                wrapperInit: keep node.data, bytes(node.view) or a copy instead
                """)
        }
    }

    /// Drops our hold on the request, gives kept nodes their own bytes and revokes every loan
    /// (once per request). - Returns: how many lent views could not be revoked.
    private static func endLoans(items: PyPointer, list: PyPointer, lent: [Loan]) -> Int {
        Py_DecRef(items)
        Py_DecRef(list)  // if Python kept nothing, the nodes are ours alone now
        guard let objects = Bootstrap.objects else { return 0 }
        var escaped = 0
        let lending = DataPath.lends
        for loan in lent {
            if aiges_py_refcnt(loan.node) > 1 {
                // Python kept this node: give it its own bytes before the loader frees them.
                let method = lending ? objects.names.detach : objects.names.own
                if let result = PyObject_CallMethodNoArgs(loan.node, method) {
                    Py_DecRef(result)
                } else {
                    _ = PluginError.fromPython(.internalError, "giving a kept request node its own bytes")
                }
            }
            Py_DecRef(loan.node)
            if lending {
                LentMemory.remove(loan.bytes)
                if !Self.revokeIfKept(loan.handle, loan.bytes, objects) { escaped += 1 }
            } else {
                aiges_py_loan_revoke(loan.handle)
            }
            Py_DecRef(loan.handle)
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

/// The loader buffers Python sees straight while their calls run (`data.lend` only), so that any
/// output pointing into one — returned by the call, or delivered with `callback()` from any thread
/// meanwhile — is copied rather than lent: the loader frees them when their call returns.
/// Read and changed only with the GIL held.
enum LentMemory {
    nonisolated(unsafe) private static var ranges: [UnsafeRawBufferPointer] = []

    static func add(_ bytes: UnsafeRawBufferPointer) {
        if bytes.count > 0 { ranges.append(bytes) }
    }

    static func remove(_ bytes: UnsafeRawBufferPointer) {
        guard let index = ranges.lastIndex(where: { $0.baseAddress == bytes.baseAddress && $0.count == bytes.count })
        else { return }
        ranges.remove(at: index)
    }

    /// Whether `pointer` lies in a buffer lent right now.
    static func contains(_ pointer: UnsafeRawPointer) -> Bool {
        ranges.contains { range in
            guard let start = range.baseAddress else { return false }
            return pointer >= start && pointer < start + range.count
        }
    }
}

/// "" as a C string, for NULL values.
nonisolated(unsafe) let emptyCString = UnsafePointer<CChar>(
    UnsafeRawPointer(("" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self))

/// Something non-NULL to point an empty memoryview at.
nonisolated(unsafe) private let emptyBytes = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)
