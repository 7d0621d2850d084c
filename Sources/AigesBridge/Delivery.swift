import AigesABI
import CPython
import Dispatch
import Synchronization

/// Where results that wrapper.py delivers with `aiges_embed.callback` go: for an asynchronous request
/// or a push-mode session, that request's own loader callback and usrTag pointer (there is no global
/// callback); for a pull-mode session, a queue the next `wrapperRead` empties — so one wrapper.py
/// serves the loader in either mode.
///
/// Deliveries to one target are serialised, and none happens after the target is finished
/// (final result delivered, timed out, or closed by destroy). Its lock is only ever taken
/// without the GIL, so a loader callback that blocks cannot stall Python.
final class CallbackTarget: @unchecked Sendable {  // usrTag is an opaque loader pointer, never read
    /// One-shot results are final and sent with status DataOnce; session results keep their statuses.
    enum Kind {
        case once
        case session
    }

    let kind: Kind
    /// The usrTag string, for logs.
    let label: String
    /// The names `aiges_embed.callback(resp, tag)` may use for this target (see `CallbackTargets`).
    fileprivate let tags = Mutex<[String]>([])
    private let usrTag: UnsafeRawPointer?  // the loader's pointer, handed back verbatim
    private let callback: wrapperCallback?  // nil: pull mode, results are queued
    private let state = Mutex(State())

    private struct State {
        var finished = false
        var delivered = 0
        var queued: [OutputBatch] = []
    }

    /// Whether results go to the loader's callback (else they wait for `wrapperRead`).
    var pushes: Bool { callback != nil }

    init(kind: Kind, usrTag: UnsafeRawPointer?, label: String, callback: wrapperCallback?) {
        self.kind = kind
        self.usrTag = usrTag
        self.label = label
        self.callback = callback
    }

    /// Calls the loader's callback with `batch` (nil: an empty list) and `ret` — or queues the batch in
    /// pull mode — unless the target has finished. A final result (or `ret != 0`) finishes it.
    /// Must be called without the GIL.
    /// - Returns: whether the result was taken.
    func deliver(_ batch: OutputBatch?, ret: Int32, final: Bool) -> Bool {
        state.withLock { state in
            guard !state.finished else { return false }
            state.finished = final || ret != 0
            state.delivered += 1
            if let callback {
                _ = callback(usrTag, batch?.head, ret)
            } else if let batch {
                state.queued.append(batch)
            }
            return true
        }
    }

    /// Pull mode: the results queued since the last read, oldest first.
    func takeQueued() -> [OutputBatch] {
        state.withLock { state in
            defer { state.queued = [] }
            return state.queued
        }
    }

    /// Finishes the target without a result; waits for a callback in progress. Without the GIL.
    func close() {
        state.withLock { $0.finished = true }
    }

    /// Results delivered so far.
    var delivered: Int { state.withLock { $0.delivered } }

    /// After `milliseconds`, delivers a `timeout` error unless a final result came first.
    func expire(after milliseconds: Int32) {
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(milliseconds))) { [self] in
            let error = PluginError(.timeout, "no result for \(label) within \(milliseconds) ms")
            ErrorTexts.record(error)
            if deliver(nil, ret: error.code, final: true) {
                Log.logger.warning("\(error.detail); the loader got \(error.code)")
                CallbackTargets.unregister(self)
            }
        }
    }
}

/// The live callback targets, by every tag wrapper.py may use for them (usrTag, sid, session handle).
enum CallbackTargets {
    private static let byTag = Mutex<[String: CallbackTarget]>([:])

    /// Makes `target` reachable under each non-empty tag (a later registration of a tag wins).
    static func register(_ target: CallbackTarget, tags: [String]) {
        let tags = tags.filter { !$0.isEmpty }
        target.tags.withLock { $0 += tags }
        byTag.withLock { table in
            for tag in tags { table[tag] = target }
        }
    }

    /// Removes all of the target's tags (those still pointing at it).
    static func unregister(_ target: CallbackTarget) {
        let tags = target.tags.withLock { $0 }
        byTag.withLock { table in
            for tag in tags where table[tag] === target { table[tag] = nil }
        }
    }

    static func find(_ tag: String) -> CallbackTarget? { byTag.withLock { $0[tag] } }

    /// Delivers a result that wrapper.py passed to `aiges_embed.callback(response, tag)`.
    /// Called with the GIL held (from any Python thread); releases it around the loader's callback.
    /// - Returns: 0, or an error code for Python (unknown tag, result after the final one, bad output).
    static func deliverFromPython(_ response: PyPointer, tag: String) -> Int32 {
        guard let target = find(tag) else {
            Log.logger.warning("callback for unknown or finished tag \"\(tag)\" dropped")
            return PluginErrorCode.resultDropped.rawValue
        }
        var batch: OutputBatch?
        var ret: Int32 = 0
        do throws(PluginError) {
            batch = try OutputBatch(response, kind: target.kind == .once ? .once : .stream)
        } catch {
            ret = error.code
            ErrorTexts.record(error)
            if error.isPluginCode { Log.logger.error("result for \(target.label): \(error.detail)") }
        }
        let final =
            target.kind == .once
            || (batch?.hasFinalStatus ?? false)
        let delivered = withoutGIL { target.deliver(batch, ret: ret, final: final) }
        if !delivered {
            Log.logger.warning("result for \(target.label) dropped: it came after the request's final result")
            return PluginErrorCode.resultDropped.rawValue
        }
        if target.kind == .once, final || ret != 0 { unregister(target) }
        return 0
    }
}
