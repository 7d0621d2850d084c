/// The plugin's own config keys (besides `wrapper.*`, `python.*` and `log.*`), read at `wrapperInit`.
///
/// A value that cannot be read fails `wrapperInit` with a text naming the key and the value.
enum Settings {
    /// Applies `gil.gate_us`, `data.copy`, `data.lend`, `async.timeout_ms` and `async.fallback_threads`.
    static func apply(_ settings: [String: String]) throws(PluginError) {
        let gate = try integer(settings, "gil.gate_us", default: 50, range: 0...1_000_000)
        let copy = try flag(settings, "data.copy")
        let lend = try flag(settings, "data.lend")
        guard !(copy && lend) else {
            throw PluginError(.initFailed, "data.copy and data.lend cannot both be on")
        }
        let timeout = try integer(settings, "async.timeout_ms", default: 60_000, range: 0...Int(Int32.max))
        let fallback = try integer(settings, "async.fallback_threads", default: 4, range: 1...1024)
        EntryGate.waitNanoseconds.store(gate * 1000, ordering: .relaxed)
        let mode: DataPath.Mode = copy ? .copy : lend ? .lend : .copyOnRead
        DataPath.mode.store(mode.rawValue, ordering: .relaxed)
        Plugin.defaultTimeoutMilliseconds.store(timeout, ordering: .relaxed)
        Plugin.fallbackPool.maximumThreads = fallback
    }

    /// A boolean key: 1/true/yes/on or 0/false/no/off (any case); missing or empty is false.
    static func flag(_ settings: [String: String], _ key: String) throws(PluginError) -> Bool {
        guard let value = settings[key], !value.isEmpty else { return false }
        switch value.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw PluginError(.initFailed, "config \(key) = \"\(value)\": expected true or false")
        }
    }

    /// An integer key within `range`; missing or empty gives `default`.
    static func integer(_ settings: [String: String], _ key: String, default: Int, range: ClosedRange<Int>)
        throws(PluginError) -> Int
    {
        guard let value = settings[key], !value.isEmpty else { return `default` }
        guard let number = Int(value), range.contains(number) else {
            throw PluginError(
                .initFailed,
                "config \(key) = \"\(value)\": expected a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }
}
