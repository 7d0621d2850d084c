import AigesABI
import Synchronization

/// Personalisation resources: the loader's numeric resId and wrapper.py's patch_id.
extension Plugin {
    /// resId → the patch_id it was loaded under.
    private static let patches = Mutex<[UInt32: String]>([:])

    /// Calls `wrapperLoadRes(reqData, patch_id)` — patch_id from the first node's desc (`patch_id`),
    /// else the resId as text — or `wrapperLoadRes(reqData, resId)` for wrappers whose parameter is
    /// named resId (see `CallArguments`). Remembers resId → patch_id for `unloadResource`.
    ///
    /// The corresponding C function is `wrapperLoadRes`.
    public static func loadResource(_ data: UnsafeMutablePointer<DataList>?, resId: UInt32) throws(PluginError) {
        let engine = try running()
        guard engine.defines(.wrapperLoadRes) else {
            throw PluginError(.methodMissing, "\(engine.wrapperName) defines no Wrapper.wrapperLoadRes")
        }
        var patchId: String?
        try forEachData(data, "perData") { entry throws(PluginError) in
            try forEachParam(entry.desc, "desc") { item throws(PluginError) in
                guard patchId == nil, String(cString: item.key) == "patch_id", let value = item.value else { return }
                patchId = String(decoding: UnsafeRawBufferPointer(start: value, count: item.length), as: UTF8.self)
            }
        }
        let patch = patchId ?? String(resId)
        try engine.loadResource(data, resId: resId, patch: patch)
        guard whileRunning(engine, { patches.withLock { $0[resId] = patch } }) != nil else {
            try? callUnload(engine, resId: resId, patch: patch)
            throw PluginError(.notInitialized, "wrapperFini ran while wrapperLoadRes was in progress")
        }
        Log.logger.info("personalisation resource \(resId) loaded as patch_id \(patch)")
    }

    /// Calls `wrapperUnloadRes(patch_id)` (or `(resId)`) for a resource loaded with `loadResource`.
    ///
    /// The corresponding C function is `wrapperUnloadRes`.
    public static func unloadResource(resId: UInt32) throws(PluginError) {
        let engine = try running()
        guard let patch = patches.withLock({ $0[resId] }) else {
            throw PluginError(.unknownHandle, "wrapperUnloadRes: resource \(resId) is not loaded")
        }
        try callUnload(engine, resId: resId, patch: patch)
        patches.withLock { $0[resId] = nil }
    }

    /// Unloads every loaded resource (for `wrapperFini`). - Returns: how many there were.
    static func unloadAllResources(_ engine: any Engine) -> Int {
        let loaded = patches.withLock { patches in
            defer { patches = [:] }
            return patches
        }
        for (resId, patch) in loaded.sorted(by: { $0.key < $1.key }) {
            do throws(PluginError) { try callUnload(engine, resId: resId, patch: patch) } catch {
                Log.logger.warning("wrapperFini: wrapperUnloadRes of resource \(resId) failed: \(error.code)")
            }
        }
        return loaded.count
    }

    /// Calls wrapper.py's `wrapperUnloadRes(patch_id)` (or `(resId)`), if it defines one.
    private static func callUnload(_ engine: any Engine, resId: UInt32, patch: String) throws(PluginError) {
        guard engine.defines(.wrapperUnloadRes) else { return }
        try engine.unloadResource(resId: resId, patch: patch)
    }
}
