import AigesABI
import CPython
import CPythonShims
import Synchronization

/// In a worker process: request payloads that arrived in the plugin's shared segments. Python gets
/// each as a read-only memoryview straight over the segment (`node.view`, no copy); the segment
/// stays the worker's — the plugin does not reuse it — until the last view or buffer made from it
/// is gone, even if wrapper.py keeps one past the call. Then the plugin is told (`release`).
enum SharedInputs {
    /// Set in worker processes only: the in-process plugin never looks payloads up.
    static let active = Atomic<Bool>(false)

    /// One message's segments, kept while any view over them lives.
    final class Lease: @unchecked Sendable {  // immutable
        fileprivate let segments: [UInt32]
        fileprivate let release: @Sendable (UInt32) -> Void
        fileprivate let payloads: [UInt]

        fileprivate init(segments: [UInt32], payloads: [UInt], release: @escaping @Sendable (UInt32) -> Void) {
            self.segments = segments
            self.payloads = payloads
            self.release = release
        }

        deinit { segments.forEach(release) }
    }

    /// Payload address → the lease of the message it belongs to (while that message's call runs).
    private static let table = Mutex<[UInt: Lease]>([:])

    /// Registers the payloads at `payloads` (in the plugin's segments `segments`) for the call
    /// about to run. - Returns: the lease (pass it to `unregister` when the call returned), or nil.
    static func register(
        payloads: [UInt], segments: [UInt32], release: @escaping @Sendable (UInt32) -> Void
    ) -> Lease? {
        guard !segments.isEmpty else { return nil }
        let lease = Lease(segments: segments, payloads: payloads, release: release)
        table.withLock { table in for payload in payloads { table[payload] = lease } }
        return lease
    }

    /// Ends the registration; the lease lives on in the views Python kept.
    static func unregister(_ lease: Lease?) {
        guard let lease else { return }
        table.withLock { table in for payload in lease.payloads { table[payload] = nil } }
    }

    /// A read-only memoryview over `count` bytes at `start` that keeps its segment lent, if `start`
    /// is a registered payload. GIL required.
    static func view(_ start: UnsafeRawPointer, count: Int) throws(PluginError) -> PyRef? {
        guard let lease = table.withLock({ $0[UInt(bitPattern: start)] }) else { return nil }
        let context = Unmanaged.passRetained(lease).toOpaque()  // released by the exporter's dealloc
        let view = aiges_py_shared_view(
            UnsafeMutableRawPointer(mutating: start), count,
            { context in
                guard let context else { return }
                Unmanaged<Lease>.fromOpaque(context).release()
            }, context)
        return try PyRef(steal: view, "lending shared input")
    }
}
