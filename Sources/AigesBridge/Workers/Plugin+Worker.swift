import AigesABI

/// What a worker process tells the plugin about its own in-process plugin.
extension Plugin {
    /// The wrapper.py methods defined, one bit per `WrapperMethod` raw value (0 when not running).
    static var definedMethodsMask: UInt32 {
        guard let wrapper = try? running() else { return 0 }
        return WrapperMethod.allCases.reduce(0) { mask, method in
            wrapper.defines(method) ? mask | (1 << UInt32(method.rawValue)) : mask
        }
    }

    /// wrapper.py's handle string of the open session `handle`.
    static func pythonHandle(of handle: UnsafeRawPointer) -> String? {
        (try? SessionHandles.find(handle, "worker"))?.pythonHandle
    }
}
