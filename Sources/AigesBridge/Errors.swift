import CPython
import Glibc
import Logging
import Synchronization

/// The plugin's own failure kinds. Each has a stable numeric code (listed in README.md);
/// codes returned by wrapper.py itself pass through unchanged and are never in this range.
public enum PluginErrorCode: Int32, Sendable, CaseIterable {
    /// A call arrived before a successful `wrapperInit` (or after `wrapperFini`).
    case notInitialized = 22001
    /// `wrapperInit` failed: interpreter start, wrapper.py import, class lookup or its `wrapperInit`.
    case initFailed = 22002
    /// A NULL pointer, a node with NULL data and non-zero len, a malformed list.
    case invalidArgument = 22003
    /// A wrapper.py method raised.
    case pythonException = 22004
    /// A wrapper.py method returned the wrong type.
    case badReturnType = 22005
    /// wrapper.py does not define the method this call needs.
    case methodMissing = 22006
    /// `wrapperOnceExec` returned a Response with an empty list.
    case emptyResponse = 22007
    /// An output node is unusable: bad key, data not a buffer, len past the buffer, over 4 GiB.
    case invalidOutput = 22008
    /// A handle or output pointer the plugin did not hand out, or already released.
    case unknownHandle = 22009
    /// `wrapperInit` called twice without `wrapperFini`.
    case alreadyInitialized = 22011
    /// An asynchronous request got no final result within its timeout.
    case timeout = 22012
    /// Memory allocation failed or an internal invariant broke.
    case internalError = 22013
    /// `callback_metric` / `callback_trace` called but the loader set no such hook.
    case hookNotSet = 22014
    /// `aiges_embed.callback` for a tag that is unknown or whose request already ended (returned to Python).
    case resultDropped = 22015
    /// With `data.lend`, wrapper.py kept a buffer made from a request view (e.g. `np.frombuffer(node.view)`)
    /// past the call.
    case viewEscaped = 22016
    /// The worker process serving the request died or stopped answering (config `workers`); the
    /// text names its exit status or signal.
    case workerLost = 22017
    /// `wrapperFini` ended the request before it had a result (the final callback's `ret`).
    case shutDown = 22018

    /// Short fixed description, the first part of every `wrapperError` text for this code.
    var summary: String {
        switch self {
        case .notInitialized: "plugin not initialised (wrapperInit not called or failed)"
        case .initFailed: "wrapperInit failed"
        case .invalidArgument: "invalid argument"
        case .pythonException: "wrapper.py raised an exception"
        case .badReturnType: "wrapper.py returned the wrong type"
        case .methodMissing: "wrapper.py does not define this method"
        case .emptyResponse: "wrapper.py returned an empty response list"
        case .invalidOutput: "invalid output node"
        case .unknownHandle: "unknown or released handle"
        case .alreadyInitialized: "already initialised"
        case .timeout: "request timed out"
        case .internalError: "internal error"
        case .hookNotSet: "the loader set no hook of this kind (wrapperSetCtrl)"
        case .resultDropped: "result dropped: unknown tag, or its request already ended"
        case .viewEscaped: "wrapper.py kept a buffer of request memory past the call"
        case .workerLost: "the worker process serving the request was lost"
        case .shutDown: "wrapperFini ended the request"
        }
    }
}

/// A failed call: the numeric code the loader sees and the detail `wrapperError` will show.
public struct PluginError: Error, Sendable {
    /// The code returned to the loader.
    public let code: Int32
    /// Human-readable detail (for plugin codes); empty for wrapper.py's own codes.
    public let detail: String
    /// The sid of the request that failed, when known (for the log).
    public private(set) var sid: String?

    /// The same error, logged with `sid`.
    func with(sid: String) -> PluginError {
        var copy = self
        copy.sid = sid
        return copy
    }

    /// A failure of the plugin itself.
    init(_ kind: PluginErrorCode, _ detail: String) {
        self.code = kind.rawValue
        self.detail = ErrorTexts.bounded(detail)
    }

    /// A non-zero code returned by wrapper.py; its text comes from wrapper.py's `wrapperError`,
    /// unless `text` (captured while the wrapper was still loaded) is given.
    init(wrapperCode: Int32, text: String = "") {
        self.code = wrapperCode
        self.detail = ErrorTexts.bounded(text)
    }

    /// Whether the code is one of the plugin's own.
    var isPluginCode: Bool { PluginErrorCode(rawValue: code) != nil }

    /// Captures the pending Python exception as `kind`, logging its traceback once.
    /// Must be called with the GIL held and an exception set; clears it.
    static func fromPython(_ kind: PluginErrorCode, _ context: String, sid: String? = nil) -> PluginError {
        let (summary, traceback) = PythonException.fetch()
        var metadata: Logger.Metadata = [:]
        if let sid { metadata["sid"] = .string(sid) }
        Log.logger.error("\(context): \(summary)\n\(traceback)", metadata: metadata)
        return PluginError(kind, "\(context): \(summary)")
    }
}

/// C copies of texts handed to the loader, each valid until `capacity` newer ones were kept (or the
/// ring is dropped): for texts asked for repeatedly, with no dedup (`wrapperDebugInfo`).
final class TextRing: Sendable {
    let capacity: Int
    private let texts = Mutex<[UInt]>([])  // addresses of the strdup'd texts, oldest first

    init(capacity: Int) { self.capacity = capacity }

    /// A NUL-terminated copy of `text` owned by the ring.
    func keep(_ text: String) -> UnsafePointer<CChar> {
        guard let copy = strdup(text) else { return ErrorTexts.stable("out of memory") }  // owned by the ring
        let evicted = texts.withLock { texts -> UInt? in
            texts.append(UInt(bitPattern: copy))
            return texts.count > capacity ? texts.removeFirst() : nil
        }
        free(evicted.flatMap { UnsafeMutableRawPointer(bitPattern: $0) })
        return UnsafePointer(copy)
    }

    deinit {
        texts.withLock { $0 }.forEach { free(UnsafeMutableRawPointer(bitPattern: $0)) }
    }
}

/// Stable C strings for `wrapperError`, plus the latest detail of each plugin code.
///
/// A returned pointer stays valid until `capacity` newer distinct texts have been made. Each text
/// is cut to `maximumBytes`, so memory stays bounded (about 2 MiB) however many and however long
/// the messages Python produces.
enum ErrorTexts {
    private struct Ring: ~Copyable {
        var slots: [UnsafeMutablePointer<CChar>?]
        var index: [String: Int] = [:]
        var next = 0
        init(capacity: Int) { slots = Array(repeating: nil, count: capacity) }
    }

    static let capacity = 512
    /// The longest text kept, in UTF-8 bytes (longer ones end in "… [cut]").
    static let maximumBytes = 4096
    /// How many wrapper.py codes keep a recorded text (init failures); the oldest is forgotten first.
    private static let maximumRecordedCodes = 256
    nonisolated(unsafe) private static let outOfMemoryText = UnsafeRawPointer(
        ("out of memory" as StaticString).utf8Start
    )
    .assumingMemoryBound(to: CChar.self)
    private static let ring = Mutex(Ring(capacity: capacity))
    private static let details = Mutex<[Int32: String]>([:])
    private static let recordedOrder = Mutex<[Int32]>([])

    /// `text`, cut to at most `maximumBytes` UTF-8 bytes (on a character boundary).
    static func bounded(_ text: String) -> String {
        guard text.utf8.count > maximumBytes else { return text }
        let marker = "… [cut]"
        var cut = ""
        for character in text {
            if cut.utf8.count + character.utf8.count > maximumBytes - marker.utf8.count { break }
            cut.append(character)
        }
        return cut + marker
    }

    /// Remembers `error`'s detail so that `wrapperError(code)` can show it.
    static func record(_ error: PluginError) {
        guard !error.detail.isEmpty || error.isPluginCode else { return }
        let forgotten = details.withLock { details -> Int32? in
            let isNew = details.updateValue(error.detail, forKey: error.code) == nil
            guard isNew, !error.isPluginCode else { return nil }
            return recordedOrder.withLock { order in
                order.append(error.code)
                return order.count > maximumRecordedCodes ? order.removeFirst() : nil
            }
        }
        if let forgotten { _ = details.withLock { $0.removeValue(forKey: forgotten) } }
    }

    /// The latest detail recorded for `code` ("" if none): what a worker process sends the plugin.
    static func detail(code: Int32) -> String { details.withLock { $0[code] } ?? "" }

    /// The text recorded for one of wrapper.py's codes while it was loaded, if any.
    static func recordedWrapperText(_ code: Int32) -> String? {
        guard PluginErrorCode(rawValue: code) == nil else { return nil }
        return details.withLock { $0[code] }
    }

    /// The full text for one of the plugin's own codes, or nil for other codes.
    static func pluginText(_ code: Int32) -> String? {
        guard let kind = PluginErrorCode(rawValue: code) else { return nil }
        let detail = details.withLock { $0[code] }
        guard let detail, !detail.isEmpty else { return "\(kind.summary) (\(code))" }
        return "\(kind.summary) (\(code)): \(detail)"
    }

    /// A NUL-terminated copy of `text` that outlives the call (see type doc).
    static func stable(_ text: String) -> UnsafePointer<CChar> {
        let text = bounded(text)
        return ring.withLock { ring in
            if let slot = ring.index[text], let pointer = ring.slots[slot] { return UnsafePointer(pointer) }
            let slot = ring.next
            ring.next = (slot + 1) % ring.slots.count
            if let old = ring.slots[slot] {
                ring.index[String(cString: old)] = nil
                free(old)
            }
            guard let copy = strdup(text) else { return outOfMemoryText }  // owned by the ring until evicted
            ring.slots[slot] = copy
            ring.index[text] = slot
            return UnsafePointer(copy)
        }
    }
}
