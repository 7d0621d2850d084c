import Foundation
import Testing

/// Runs dist/aiges-harness (built by scripts/build.sh) in a subprocess: each run gets a fresh interpreter.
enum Harness {
    /// The package root.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    /// Where the release plugin and harness are (override with AIGES_DIST).
    static let dist =
        ProcessInfo.processInfo.environment["AIGES_DIST"].map { URL(fileURLWithPath: $0) }
        ?? root.appending(path: "dist")
    static var library: String { dist.appending(path: "libwrapper.so").path }

    /// What a harness run printed and how it ended.
    struct Run: CustomStringConvertible {
        let status: Int32
        let output: String
        let errors: String
        var description: String { "exit \(status)\n--- stdout\n\(output)\n--- stderr\n\(errors)" }
        /// Whether probe printed exactly "ok CHECK".
        func passed(_ check: String) -> Bool { output.split(separator: "\n").contains { $0 == "ok \(check)" } }
        /// The RSS growth `exec` reports in its summary ("(rss +N KiB)"), in KiB.
        var rssGrowthKiB: Int? {
            guard let start = output.range(of: "(rss "), let end = output[start.upperBound...].range(of: " KiB)")
            else { return nil }
            return Int(output[start.upperBound..<end.lowerBound].replacingOccurrences(of: "+", with: ""))
        }
        /// The output lines that start with `prefix`.
        func lines(_ prefix: String) -> [String] {
            output.split(separator: "\n").map(String.init).filter { $0.hasPrefix(prefix) }
        }
    }

    /// A fixture wrapper.py under Tests/Fixtures.
    static func fixture(_ name: String) -> String { root.appending(path: "Tests/Fixtures/\(name)/wrapper.py").path }
    /// An example wrapper.py under examples/.
    static func example(_ name: String) -> String { root.appending(path: "examples/\(name)/wrapper.py").path }

    /// `arguments` with `--so library` after the mode (or first, when no mode is given).
    static func withLibrary(_ arguments: [String], _ library: String) -> [String] {
        var arguments = arguments
        let modeGiven = arguments.first.map { !$0.hasPrefix("-") } ?? false
        arguments.insert(contentsOf: ["--so", library], at: modeGiven ? 1 : 0)
        return arguments
    }

    /// Runs the harness with `arguments` (and `--so dist/libwrapper.so` unless `library` is nil).
    /// A run still going after `timeout` seconds (a deadlock) is killed and reported as exit 137.
    static func run(
        _ arguments: [String], library: String? = Harness.library, executable: URL? = nil, in directory: URL? = nil,
        environment: [String: String] = [:], timeout: Double = 120
    ) throws -> Run {
        let process = Process()
        process.executableURL = executable ?? dist.appending(path: "aiges-harness")
        let arguments = library.map { withLibrary(arguments, $0) } ?? arguments
        process.arguments = arguments
        process.currentDirectoryURL = directory ?? root
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let pid = process.processIdentifier
        let watchdog = DispatchWorkItem { kill(pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
        defer { watchdog.cancel() }
        // Read both pipes concurrently so a chatty child never blocks on a full pipe.
        nonisolated(unsafe) var errorData = Data()
        let reader = Thread { errorData = err.fileHandleForReading.readDataToEndOfFile() }
        reader.start()
        let outputData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        while !reader.isFinished { Thread.sleep(forTimeInterval: 0.005) }
        return Run(
            status: process.terminationStatus, output: String(decoding: outputData, as: UTF8.self),
            errors: String(decoding: errorData, as: UTF8.self))
    }

    /// dist/aiges-faults: the adversarial scenario driver (Tests/Faults).
    static var faultsExecutable: URL { dist.appending(path: "aiges-faults") }

    /// Runs one aiges-faults scenario against `wrapper` (with `--so dist/libwrapper.so`), killed after `timeout` s.
    static func faults(
        _ scenario: String, wrapper: String, config: [String] = [], environment: [String: String] = [:],
        timeout: Double = 60
    ) throws -> Run {
        var arguments = [scenario, "-c", "wrapper.file=\(wrapper)"]
        for entry in config { arguments += ["-c", entry] }
        return try run(arguments, executable: faultsExecutable, environment: environment, timeout: timeout)
    }

    /// Runs `exec` against a wrapper file and returns the run plus the output nodes written to a fresh directory.
    static func exec(
        _ wrapper: String, _ arguments: [String] = [], config: [String] = [], environment: [String: String] = [:]
    ) throws -> (
        run: Run, outputs: [String: Data]
    ) {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var all = ["exec", "-c", "wrapper.file=\(wrapper)", "-o", directory.path]
        for entry in config { all += ["-c", entry] }
        let run = try run(all + arguments, environment: environment)
        var outputs: [String: Data] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [] {
            outputs[name] = try Data(contentsOf: directory.appending(path: name))
        }
        return (run, outputs)
    }

    /// A new empty directory under the system temporary directory.
    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appending(path: "aiges-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// The bytes the harness generates for `gen:SIZE` (xorshift32 from a fixed seed).
func harnessPattern(_ count: Int) -> Data {
    var state: UInt32 = 2_463_534_242
    var bytes = [UInt8](repeating: 0, count: count)
    for index in 0..<count {
        state ^= state << 13
        state ^= state >> 17
        state ^= state << 5
        bytes[index] = UInt8(truncatingIfNeeded: state)
    }
    return Data(bytes)
}
