import Logging
import Synchronization

/// The plugin's logger. It never touches swift-log's global bootstrap: the host owns that.
enum Log {
    private static let current = Mutex(
        Logger(label: "aiges.wrapper", factory: { label in StreamLogHandler.standardError(label: label) }))

    /// A copy of the current logger (cheap; its level is the configured one).
    static var logger: Logger { current.withLock { $0 } }

    /// Applies the `log.level` config value ("debug", "info", "warn", "error", …); unknown values are reported.
    static func configure(level: String?) {
        guard let level else { return }
        let aliases: [String: Logger.Level] = ["warn": .warning, "fatal": .critical, "err": .error]
        let lowered = level.lowercased()
        guard let parsed = Logger.Level(rawValue: lowered) ?? aliases[lowered] else {
            logger.warning("ignoring unknown log.level \"\(level)\"")
            return
        }
        current.withLock { $0.logLevel = parsed }
    }
}
