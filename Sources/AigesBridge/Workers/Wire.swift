import Glibc

// The messages between the plugin and its worker processes (config `workers`), and their encoding.
//
// A frame is a 16-byte header — body length (UInt32), kind (UInt16), 2 reserved bytes, id
// (UInt64) — then the body: fields in a fixed order per kind, little-endian, strings and byte
// runs prefixed by their UInt32 length. Both ends are the same build on the same machine.

/// What a frame asks or answers. Requests carry the id their `reply` answers with.
enum FrameKind: UInt16 {
    // plugin → worker (each answered by one `reply` with the same id)
    /// Config pairs, UInt8 hooks (bit 0: the loader set a meter hook, bit 1: a trace hook), UInt32
    /// concurrency, UInt32 heartbeat interval in ms (0: none).
    case initialize = 1
    /// A `Call`.
    case exec = 2
    /// A `Call`, then Int32 timeout in ms. Results come as `callback` frames with the same id.
    case execAsync = 3
    /// A `Call` (no nodes), then UInt8 push. Push results come as `callback` frames with the same id.
    case create = 4
    /// UInt64 session handle, nodes.
    case write = 5
    /// UInt64 session handle.
    case read = 6
    /// UInt64 session handle.
    case destroy = 7
    /// UInt64 session handle.
    case debugInfo = 8
    /// UInt32 resId, nodes.
    case loadResource = 9
    /// UInt32 resId.
    case unloadResource = 10
    /// Int32 code.
    case errorText = 11
    /// (empty)
    case finish = 12
    /// (empty; no reply) The async request with this id timed out in the plugin: end it here too.
    case cancel = 14
    /// UInt32 count, then that many `Call`s: one `wrapperOnceExecBatch`. Its reply: code and text
    /// (the whole batch), then per call Int32 code, text, and for code 0 its nodes.
    case execBatch = 15

    // either way
    /// UInt32 segment id, UInt64 size; the memfd travels with the frame (SCM_RIGHTS).
    case segment = 20
    /// UInt32 segment id: its owner unmapped it; the receiver unmaps its mapping too.
    case dropSegment = 21
    /// UInt32 segment id: the receiver's segment is no longer read by the sender.
    case release = 22

    // worker → plugin
    /// Int32 code, text (empty when code is 0), then for code 0: nodes (exec, read), UInt64 handle
    /// and text python handle (create), UInt32 defined-methods mask (initialize), text (debugInfo,
    /// errorText), nothing (others).
    case reply = 30
    /// Int32 ret, text, nodes: a result for the async request or push session with this id.
    case callback = 31
    /// Text usrTag, text key, Int32 count (`callback_metric`).
    case metric = 32
    /// Text usrTag, text key, text value (`callback_trace`).
    case trace = 33
    /// (empty) Sent every heartbeat interval by a worker whose interpreter could just be entered.
    case heartbeat = 34
}

/// Where a node's payload travels: inline in the frame, or in a shared-memory segment.
enum Payload {
    /// Payloads up to this many bytes travel inline: a copy that small costs less than a segment.
    static let inlineLimit = 32 * 1024
    /// At most this many payload bytes travel inline in one frame; the rest go to a segment.
    static let inlineBudget = 16 << 20
    /// The largest frame either side sends or accepts (keys, params and desc included).
    static let frameLimit = 1 << 30
}

/// Builds one frame. The header is filled in by `finish`.
struct FrameWriter: ~Copyable {
    private(set) var bytes: [UInt8]
    /// Segments this frame's payloads were written into (see `SegmentPool.doneWriting`).
    var leases: [UInt32] = []
    /// The frame's id (the request it asks or answers).
    let id: UInt64
    /// The frame's kind.
    let kind: FrameKind

    init(_ kind: FrameKind, id: UInt64, capacity: Int = 256) {
        self.id = id
        self.kind = kind
        bytes = []
        bytes.reserveCapacity(max(capacity, 16))
        put(UInt32(0))
        put(kind.rawValue)
        put(UInt16(0))
        put(id)
    }

    /// Appends a fixed-size integer.
    mutating func put<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// Appends a length-prefixed byte run.
    mutating func put(_ run: UnsafeRawBufferPointer) {
        put(UInt32(truncatingIfNeeded: run.count))
        bytes.append(contentsOf: run)
    }

    /// Appends a length-prefixed UTF-8 text.
    mutating func put(_ text: String) {
        var text = text
        text.withUTF8 { put(UnsafeRawBufferPointer($0)) }
    }

    /// Appends a NUL-terminated C string as a length-prefixed run (NULL as empty).
    mutating func put(cString: UnsafePointer<CChar>?) {
        guard let cString else { return put(UInt32(0)) }
        put(UnsafeRawBufferPointer(start: cString, count: strlen(cString)))
    }

    /// Whether the frame is small enough to send (`Payload.frameLimit`).
    var fits: Bool { bytes.count - 16 <= Payload.frameLimit }

    /// The finished frame (header's length set). Check `fits` first for frames of unbounded size.
    consuming func finish() -> [UInt8] {
        precondition(bytes.count - 16 <= Int(UInt32.max), "frame over 4 GiB")
        let length = UInt32(bytes.count - 16).littleEndian
        withUnsafeBytes(of: length) { length in
            for index in 0..<4 { bytes[index] = length[index] }
        }
        return bytes
    }
}

/// A malformed frame: the peer is not a worker of this build, or it is broken; the connection ends.
struct WireError: Error {
    let what: String
}

/// Reads one frame's body, field by field; every read is bounds-checked. Runs it returns are
/// borrowed from the body, which the reader keeps alive.
struct FrameReader {
    let kind: FrameKind
    let id: UInt64
    private let body: UnsafeRawBufferPointer
    private let owner: AnyObject?  // keeps the body alive while the reader lives
    private var offset = 0

    init(kind: FrameKind, id: UInt64, body: UnsafeRawBufferPointer, owner: AnyObject?) {
        self.kind = kind
        self.id = id
        self.body = body
        self.owner = owner
    }

    mutating func read<T: FixedWidthInteger>(_ type: T.Type = T.self) throws(WireError) -> T {
        let size = MemoryLayout<T>.size
        guard offset + size <= body.count else { throw WireError(what: "\(kind) frame too short") }
        var value = T.zero
        withUnsafeMutableBytes(of: &value) {
            $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: body[offset..<offset + size]))
        }
        offset += size
        return T(littleEndian: value)
    }

    /// A length-prefixed byte run, borrowed from the frame.
    mutating func readRun() throws(WireError) -> UnsafeRawBufferPointer {
        let count = Int(try read(UInt32.self))
        guard offset + count <= body.count else { throw WireError(what: "\(kind) frame: a run overruns the body") }
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: body[offset..<offset + count])
    }

    /// A length-prefixed text.
    mutating func readText() throws(WireError) -> String {
        String(decoding: try readRun(), as: UTF8.self)
    }
}
