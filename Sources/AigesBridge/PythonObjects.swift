import CPython
import CPythonShims

/// A raw CPython object pointer.
public typealias PyPointer = UnsafeMutablePointer<PyObject>

/// An owned (strong) Python reference, released when it goes out of scope.
///
/// Create, use and drop it only with the GIL held.
struct PyRef: ~Copyable {
    /// The referenced object (borrowed for as long as this value lives).
    let pointer: PyPointer

    /// Takes over a new reference returned by the C API (steals it).
    /// A NULL means the API call failed: the pending Python exception becomes the error.
    init(steal pointer: PyPointer?, _ context: @autoclosure () -> String) throws(PluginError) {
        guard let pointer else { throw PluginError.fromPython(.internalError, context()) }
        self.pointer = pointer
    }

    /// Adds a reference to a borrowed object.
    init(retain pointer: PyPointer) {
        Py_IncRef(pointer)
        self.pointer = pointer
    }

    /// Gives up ownership without releasing: the caller now owns the reference.
    consuming func take() -> PyPointer {
        let pointer = self.pointer
        discard self
        return pointer
    }

    deinit { Py_DecRef(pointer) }
}

/// An owned Python reference kept by a long-lived Swift object (a session, the loaded wrapper).
///
/// Dropping it never takes the GIL: the reference is released at once if this thread holds the
/// GIL, else by the next thread entering Python (`DeferredReleases`).
final class PythonObject: @unchecked Sendable {  // the pointer is only used with the GIL held
    /// The referenced object (borrowed for as long as this owner lives).
    let pointer: PyPointer

    init(_ reference: consuming PyRef) { pointer = reference.take() }

    deinit { DeferredReleases.release(.reference(pointer)) }
}

/// The pending Python exception, turned into text.
enum PythonException {
    /// Fetches and clears the pending exception: a one-line summary ("ValueError: boom")
    /// and the full traceback. GIL required.
    static func fetch() -> (summary: String, traceback: String) {
        var type: PyPointer?
        var value: PyPointer?
        var traceback: PyPointer?
        PyErr_Fetch(&type, &value, &traceback)
        PyErr_NormalizeException(&type, &value, &traceback)
        defer {
            Py_DecRef(type)  // Py_DecRef accepts NULL
            Py_DecRef(value)
            Py_DecRef(traceback)
        }
        guard let exception = value else { return ("unknown Python error", "") }
        if let traceback { PyException_SetTraceback(exception, traceback) }
        if let described = Bootstrap.describe(exception) { return described }
        return (typeName(of: exception) + ": " + (str(exception) ?? "?"), "")
    }

    /// The name of `object`'s type.
    static func typeName(of object: PyPointer) -> String {
        guard let name = object.pointee.ob_type?.pointee.tp_name else { return "?" }
        return String(cString: name)
    }
}

/// `str(object)` as a Swift string, or nil (with the error cleared) if that fails. GIL required.
func str(_ object: PyPointer) -> String? {
    guard let text = PyObject_Str(object) else {
        PyErr_Clear()
        return nil
    }
    defer { Py_DecRef(text) }
    return string(fromUnicode: text)
}

/// The UTF-8 contents of a `str` object, or nil if it is not a str. Lone surrogates (from
/// undecodable input bytes, or made in Python) come out as their original bytes or as `\udcxx`
/// escapes, never as an empty text.
func string(fromUnicode object: PyPointer) -> String? {
    guard aiges_py_is_unicode(object) != 0 else { return nil }
    var size: Py_ssize_t = 0
    if let utf8 = PyUnicode_AsUTF8AndSize(object, &size) {
        return utf8.withMemoryRebound(to: UInt8.self, capacity: Int(size)) {
            String(decoding: UnsafeBufferPointer(start: $0, count: Int(size)), as: UTF8.self)
        }
    }
    PyErr_Clear()
    guard let encoded = try? encodeUTF8(object, errors: "backslashreplace") else { return "" }
    return String(
        decoding: UnsafeRawBufferPointer(
            start: PyBytes_AsString(encoded.pointer), count: PyBytes_Size(encoded.pointer)),
        as: UTF8.self)
}

/// `text.encode("utf-8", errors)` as bytes: by default surrogate escapes of undecodable input
/// bytes turn back into those bytes, and other lone surrogates are kept as `\udcxx` text. GIL required.
func encodeUTF8(_ text: PyPointer, errors: StaticString = "surrogateescape") throws(PluginError) -> PyRef {
    let raw = UnsafeRawPointer(errors.utf8Start).assumingMemoryBound(to: CChar.self)
    if let encoded = PyUnicode_AsEncodedString(text, "utf-8", raw) { return try PyRef(steal: encoded, "") }
    PyErr_Clear()
    return try PyRef(steal: PyUnicode_AsEncodedString(text, "utf-8", "backslashreplace"), "encoding a str as UTF-8")
}

/// A short description of a value for error texts: its type, and its repr when that is short.
func describe(_ object: PyPointer) -> String {
    let type = PythonException.typeName(of: object)
    guard let repr = PyObject_Repr(object) else {
        PyErr_Clear()
        return type
    }
    defer { Py_DecRef(repr) }
    guard let text = string(fromUnicode: repr), text.utf8.count <= 40 else { return type }
    return "\(type) \(text)"
}

/// A new `str` from `length` bytes of UTF-8 (invalid bytes kept as surrogate escapes).
func makeUnicode(_ bytes: UnsafePointer<CChar>, length: Int) throws(PluginError) -> PyRef {
    try PyRef(steal: PyUnicode_DecodeUTF8(bytes, length, "surrogateescape"), "decoding a string")
}

/// A new `str` from a Swift string.
func makeUnicode(_ text: String) throws(PluginError) -> PyRef {
    try PyRef(steal: PyUnicode_DecodeUTF8(text, text.utf8.count, "surrogateescape"), "decoding a string")
}

/// Reads `object.name` (new reference). GIL required.
func attribute(_ object: PyPointer, _ name: StaticString) throws(PluginError) -> PyRef {
    let raw = UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self)
    guard let value = PyObject_GetAttrString(object, raw) else {
        throw PluginError.fromPython(.badReturnType, "reading .\(name)")
    }
    return try PyRef(steal: value, "")
}

/// The value of a Python int as Int32, or nil if `object` is not an int or does not fit.
func int32(_ object: PyPointer) -> Int32? { integer(object).flatMap { Int32(exactly: $0) } }

/// The value of a Python int as UInt32, or nil if `object` is not an int or does not fit.
func uint32(_ object: PyPointer) -> UInt32? { integer(object).flatMap { UInt32(exactly: $0) } }

/// The value of a Python int as Int, or nil if `object` is not an int or does not fit (error cleared).
private func integer(_ object: PyPointer) -> Int? {
    guard aiges_py_is_long(object) != 0 else { return nil }
    var overflow: Int32 = 0
    let value = PyLong_AsLongAndOverflow(object, &overflow)
    if value == -1, PyErr_Occurred() != nil {
        PyErr_Clear()
        return nil
    }
    return overflow == 0 ? value : nil
}
