import Foundation
import Testing

/// Worker processes (config `workers = N`): wrapper.py runs in N `aiges-worker` processes the plugin
/// starts beside libwrapper.so, every ABI call forwarded to one of them. This file: every mode served
/// through workers. WorkerTests+Loss.swift: workers that die, hang or fail to start.
///
/// Serialized: several tests time a restart or a watchdog, which a 2-core machine running other harness
/// runs at once would stretch.
@Suite(.serialized) struct WorkerTests {
    // MARK: one-shot

    @Test("exec echoes large inputs exactly (shared memory)", arguments: [(1 << 20) + 7, 8 << 20])
    func execEchoesLargeInputs(size: Int) throws {
        try Workers.requireProgram()
        let directory = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let run = try Workers.run(
            [
                "exec", "-c", "wrapper.file=\(Harness.example("echo"))", "-c", "workers=2", "-o", directory.path,
                "-i", "payload:audio=gen:\(size)", "-i", "small=hi", "-e", "-n", "3",
            ])
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("exec: 3 requests, 0 failed"), "\(run)")
        #expect(Workers.started(run).count == 2, "two workers served: \(run.errors)")
        #expect(try Data(contentsOf: directory.appending(path: "payload")) == harnessPattern(size))
        #expect(try Data(contentsOf: directory.appending(path: "small")) == Data("hi".utf8))
        #expect(run.output.contains("output[0] key=payload type=1 status=3 len=\(size) "), "\(run)")
    }

    @Test func execServesManySmallInputsFromSeveralThreads() throws {
        try Workers.requireProgram()
        // 16 small nodes per request, each request different (-u), from 4 threads over 2 workers.
        let nodes = (0..<16).flatMap { ["-i", "n\($0)=gen:\(17 * $0 + 1)"] }
        let run = try Workers.run(
            [
                "exec", "-c", "wrapper.file=\(Harness.example("echo"))", "-c", "workers=2", "-t", "4", "-n", "60", "-u",
                "-e", "-q",
            ]
                + nodes)
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("exec: 240 requests, 0 failed"), "\(run)")
    }

    @Test func wrapperPyCodesComeBackWithItsOwnText() throws {
        try Workers.requireProgram()
        let run = try Workers.run(
            [
                "exec", "-c", "wrapper.file=\(Workers.service)", "-c", "workers=2", "-p", "code=4242", "-i", "t=x",
                "-n", "2",
            ])
        #expect(run.status == 1, "\(run)")
        #expect(
            run.lines("request 0.0: ") == ["request 0.0: wrapperExec returned 4242: service wrapper says 4242"],
            "\(run)")
        #expect(
            run.lines("request 0.1: ") == ["request 0.1: wrapperExec returned 4242: service wrapper says 4242"],
            "\(run)")
        #expect(run.errors.contains("wrapperExec returned wrapper.py's code 4242"), "logged once per request: \(run)")
    }

    // MARK: async

    @Test func asyncWithANativeWrapperOnceExecAsync() throws {
        try Workers.requireProgram()
        let binary = try Workers.run(
            [
                "async", "-c", "wrapper.file=\(Harness.example("async"))", "-c", "workers=2", "-t", "30", "-u", "-e",
                "-q",
                "-i", "audio:audio=gen:2K", "-i", "image:image=gen:300K",
            ])
        #expect(binary.status == 0, "\(binary)")
        #expect(binary.output.contains("async: 30 requests, 0 unfinished, 0 failed"), "\(binary)")
        // Text is upper-cased by the example's pool thread, which delivers with aiges_embed.callback.
        let text = try Workers.run(
            [
                "async", "-c", "wrapper.file=\(Harness.example("async"))", "-c", "workers=2", "-t", "2", "-n", "2",
                "-u", "-i", "text=hello",
            ])
        #expect(text.status == 0, "\(text)")
        for tag in ["0-0", "0-1", "1-0", "1-1"] {
            #expect(text.output.contains("callback async-\(tag): 1 results, ret 0 (ok), late 0"), "\(text)")
            #expect(text.output.contains("text: 9 bytes \"HELLO#\(tag)\""), "\(tag): \(text)")
        }
    }

    @Test(
        "async results reach the loader at once, however the watchdog is set",
        arguments: [("workers.watchdog_ms=30000", "500"), ("workers.watchdog_ms=0", "2000")])
    func asyncResultsArriveWithoutStalling(watchdog: String, waitMs: String) throws {
        try Workers.requireProgram()
        // The example answers each request at once from its pool (in-process: about 2 ms). The harness
        // waits --wait-ms for all 12 callbacks after the last request went in; none may be left waiting
        // for some later frame (a watchdog ping) to come in from its worker.
        for round in 0..<2 {
            let run = try Workers.run(
                [
                    "async", "-c", "wrapper.file=\(Harness.example("async"))", "-c", "workers=2", "-c", watchdog, "-t",
                    "4",
                    "-n", "3", "-u", "-q", "-i", "text=hello", "--wait-ms", waitMs,
                ])
            #expect(run.status == 0, "round \(round): \(run)")
            #expect(run.output.contains("async: 12 requests, 0 unfinished, 0 failed"), "round \(round): \(run)")
        }
    }

    @Test func asyncFallsBackToWrapperOnceExec() throws {
        try Workers.requireProgram()
        let run = try Workers.run(
            [
                "async", "-c", "wrapper.file=\(Harness.example("echo"))", "-c", "workers=2", "-t", "4", "-n", "5", "-u",
                "-e",
                "-q", "-i", "data:audio=gen:1K", "-i", "big:audio=gen:2M",
            ])
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("async: 20 requests, 0 unfinished, 0 failed"), "\(run)")
    }

    @Test func asyncRequestsNobodyAnswersTimeOut() throws {
        try Workers.requireProgram()
        // wrapper.py never calls back: each request gets exactly one final callback, 22012, on time.
        let started = Date()
        let run = try Workers.run(
            [
                "async", "-c", "wrapper.file=\(Workers.service)", "-c", "workers=2", "-c", "async.timeout_ms=300", "-t",
                "3",
                "-p", "never=1", "--expect-ret", "22012", "--linger-ms", "200", "-i", "t=x",
            ])
        let elapsed = Date().timeIntervalSince(started)
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("async: 3 requests, 0 unfinished, 0 failed"), "\(run)")
        for tag in ["0-0", "1-0", "2-0"] {
            #expect(run.output.contains("callback async-\(tag): 1 results, ret 22012 (request timed out"), "\(run)")
        }
        #expect(elapsed < 8, "3 requests timing out after 300 ms took \(elapsed) s in all: \(run)")
        let state = try #require(run.lines("state: ").first, "\(run)")
        #expect(state.contains("\"async_timed_out\": 3"), "\(state)")
        #expect(state.contains("\"async_pending\": 0"), "\(state)")
    }

    // MARK: sessions

    @Test("pull and push sessions; results by aiges_embed.callback from a wrapper thread", arguments: [false, true])
    func sessions(push: Bool) throws {
        try Workers.requireProgram()
        let directory = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let run = try Workers.run(
            ["session", "-c", "wrapper.file=\(Harness.example("streaming"))", "-c", "workers=2", "-s", "3", "-u"]
                + SessionTests.chunks.flatMap { ["-i", "text=\($0)"] } + ["-o", directory.path]
                + (push ? ["--push"] : []))
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("session: 3 sessions, 0 failed"), "\(run)")
        for session in 0..<3 {
            let upper = try? Data(contentsOf: directory.appending(path: "\(session).upper"))
            #expect(upper == SessionTests.expectedUpper(session: session), "session \(session): \(run)")
            let summary = try #require(
                try JSONSerialization.jsonObject(
                    with: Data(contentsOf: directory.appending(path: "\(session).summary")))
                    as? [String: Any], "\(run)")
            #expect(summary["chunks"] as? Int == 3)
            #expect(summary["words"] as? Int == 9)
            // wrapperDebugInfo(handle) is wrapper.py's own, answered by the worker holding the session.
            #expect(run.output.contains("debug: streaming session sid-0-\(session): 3 chunks processed"), "\(run)")
        }
    }

    @Test func sessionDebugInfoComesFromTheWorkerHoldingIt() throws {
        try Workers.requireProgram()
        // The service fixture's wrapperDebugInfo names its process: a worker, not the harness.
        let own = try Workers.run(
            [
                "session", "-c", "wrapper.file=\(Workers.service)", "-c", "workers=2", "-s", "2", "-i", "t=one", "-i",
                "t=two",
            ])
        #expect(own.status == 0, "\(own)")
        let workers = Set(Workers.started(own).map(\.pid))
        #expect(workers.count == 2, "\(own.errors)")
        for session in 0..<2 {
            let line = try #require(own.lines("  debug: service session sid-0-\(session) in pid ").first, "\(own)")
            let pid = Int32(line.split(separator: " ")[6].dropLast()) ?? -1
            #expect(workers.contains(pid), "\(line): served by \(workers)")
            #expect(line.hasSuffix(": 2 chunks"), "\(line)")
        }
        // A wrapper.py without wrapperDebugInfo: the plugin's own summary of the session.
        let summary = try Workers.run(
            [
                "session", "-c", "wrapper.file=\(Harness.example("echo"))", "-c", "workers=2", "-i", "a=one", "-i",
                "a=two",
            ])
        #expect(summary.status == 0, "\(summary)")
        let debug = try #require(summary.lines("  debug: ").first, "\(summary)")
        for part in ["sid=sid-0-0", "handle=sid-0-0", "mode=pull", "writes=2", "bytes_in=6", "age="] {
            #expect(debug.contains(part), "\(part) in \(debug)")
        }
    }

    // MARK: personalisation and hooks

    @Test func resourcesAreLoadedInEveryWorker() throws {
        try Workers.requireProgram()
        // 4 threads, each request 150 ms: both workers serve; each must have both resources.
        let run = try Workers.run(
            [
                "exec", "-c", "wrapper.file=\(Workers.service)", "-c", "workers=2", "-r", "7:patch-a=alpha", "-r",
                "8:patch-b=beta", "--pers", "7", "-p", "sleep_ms=150", "-t", "4", "-n", "2", "-i", "t=x",
            ])
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("wrapperLoadRes(7, patch_id=patch-a) returned 0"), "\(run)")
        #expect(run.output.contains("wrapperUnloadRes(8) returned 0"), "\(run)")
        let served = Workers.served(run.output)
        #expect(served.count == 8, "\(run)")
        #expect(served.allSatisfy { $0.resources == "patch-a:alpha,patch-b:beta" }, "\(served)")
        let workers = Set(Workers.started(run).map(\.pid))
        #expect(workers.count == 2, "\(run.errors)")
        #expect(Set(served.map(\.pid)) == workers, "every worker served and saw the resources: \(served)")
    }

    @Test func hooksCalledInAWorkerReachTheLoader() throws {
        try Workers.requireProgram()
        let run = try Workers.run(
            [
                "exec", "-c", "wrapper.file=\(Workers.service)", "-c", "workers=2", "--hooks", "-p", "hooks=1", "-i",
                "t=x", "-n", "2",
            ])
        #expect(run.status == 0, "\(run)")
        let workers = Set(Workers.started(run).map(\.pid))
        for call in 0..<2 {
            #expect(run.output.contains("hook meter usrTag=tag-0-\(call) key=calls count=3"), "\(run)")
            let trace = try #require(
                run.lines("hook trace usrTag=tag-0-\(call) key=stage value=exec in ").first, "\(run)")
            let pid = Int32(trace.split(separator: " ").last ?? "") ?? -1
            #expect(workers.contains(pid), "the hook was called by wrapper.py in a worker: \(trace), \(workers)")
        }
        #expect(run.output.contains("output[2] key=hooks type=0 status=3 len=3 data=\"0,0\""), "\(run)")
        // Without loader hooks, wrapper.py's calls return 22014 in the worker too.
        let without = try Workers.run(
            ["exec", "-c", "wrapper.file=\(Workers.service)", "-c", "workers=1", "-p", "hooks=1", "-i", "t=x"])
        #expect(without.status == 0, "\(without)")
        #expect(without.output.contains("data=\"22014,22014\""), "\(without)")
        #expect(!without.output.contains("hook meter"), "\(without)")
    }

    // MARK: workers = 0

    @Test("workers=0 (and no workers key) serves in the loader's own process", arguments: [["-c", "workers=0"], []])
    func workersZeroStaysInProcess(config: [String]) throws {
        try Workers.requireProgram()
        let background = try BackgroundRun(
            ["exec", "-c", "wrapper.file=\(Workers.service)", "-i", "t=x", "-n", "2"] + config)
        let run = background.finish(timeout: 30)
        #expect(run.status == 0, "\(run)")
        let served = Workers.served(run.output)
        #expect(served.count == 2, "\(run)")
        #expect(
            served.allSatisfy { $0.pid == background.pid },
            "wrapper.py ran in the harness itself (\(background.pid)): \(served)")
        #expect(Workers.started(run).isEmpty, "no worker was started: \(run.errors)")
        #expect(!run.errors.contains("worker process(es) serving"), "\(run.errors)")
        #expect(background.sawChildren.isEmpty, "child processes seen while it ran: \(background.sawChildren)")
    }
}

// MARK: - helpers

/// Worker-mode helpers: the fixtures, runs with a hang limit, reading what the harness and log said.
enum Workers {
    /// The fixture most tests use: echoes, names the process that served, dies on request.
    static var service: String { fixture("service") }

    /// A wrapper.py under Tests/Fixtures/workers.
    static func fixture(_ name: String) -> String {
        Harness.root.appending(path: "Tests/Fixtures/workers/\(name)/wrapper.py").path
    }

    /// aiges-worker, where the plugin looks for it: beside libwrapper.so.
    static var program: String {
        URL(fileURLWithPath: Harness.library).deletingLastPathComponent().appending(path: "aiges-worker").path
    }

    /// Fails the test at once, with what to do, when the worker program is not beside the plugin.
    static func requireProgram() throws {
        try #require(
            FileManager.default.isExecutableFile(atPath: program),
            "\(program) is missing: scripts/build.sh copies it into dist/ (or point AIGES_DIST at a build folder with libwrapper.so, aiges-worker and aiges-harness)"
        )
    }

    /// Runs the harness like `Harness.run`, but records a run still going after `timeout` s as a hang.
    static func run(_ arguments: [String], timeout: Double = 30, sourceLocation: SourceLocation = #_sourceLocation)
        throws -> Harness.Run
    {
        let started = Date()
        let run = try Harness.run(arguments, timeout: timeout)
        let elapsed = Date().timeIntervalSince(started)
        if elapsed >= timeout - 0.5 {
            Issue.record("the harness hung: killed after \(Int(timeout)) s\n\(run)", sourceLocation: sourceLocation)
        }
        return run
    }

    /// The workers the log reports started ("worker 1 started (pid 123)"), in order.
    static func started(_ run: Harness.Run) -> [(slot: Int, pid: Int32)] { started(log: run.errors) }

    static func started(log: String) -> [(slot: Int, pid: Int32)] {
        log.split(separator: "\n").compactMap { line in
            guard let range = line.range(of: "] worker ") else { return nil }
            let words = line[range.upperBound...].split(separator: " ")
            guard words.count == 4, words[1] == "started", words[2] == "(pid", let slot = Int(words[0]),
                let pid = Int32(words[3].dropLast())
            else { return nil }
            return (slot, pid)
        }
    }

    /// What the service fixture's "worker" node said, per printed result, in order: the pid of the
    /// process that served it and the resources it had loaded. Reads exec's `output[i] key=worker …
    /// data="pid=P res=R"` and async's `  worker: N bytes "pid=P res=R"`.
    static func served(_ output: String) -> [(pid: Int32, resources: String)] {
        output.split(separator: "\n").compactMap { line in
            let text: Substring
            if line.contains(" key=worker "), let start = line.range(of: "data=\"") {
                text = line[start.upperBound...].dropLast()
            } else if line.hasPrefix("  worker: "), let start = line.firstIndex(of: "\"") {
                text = line[line.index(after: start)...].dropLast()
            } else {
                return nil
            }
            let parts = text.split(separator: " ", maxSplits: 1)
            guard parts.count >= 1, parts[0].hasPrefix("pid="), let pid = Int32(parts[0].dropFirst(4)) else {
                return nil
            }
            let resources = parts.count == 2 && parts[1].hasPrefix("res=") ? String(parts[1].dropFirst(4)) : ""
            return (pid, resources)
        }
    }

    /// The processes whose parent is `parent`: pid, state letter (R, S, Z, …) and name.
    static func children(of parent: Int32) -> [(pid: Int32, state: Character, name: String)] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry in
            guard let pid = Int32(entry), let status = processStatus(pid), status.parent == parent else { return nil }
            return (pid, status.state, status.name)
        }
    }

    /// A process's state letter, parent and name from /proc/PID/stat; nil when it is gone.
    static func processStatus(_ pid: Int32) -> (state: Character, parent: Int32, name: String)? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")")
        else { return nil }
        let rest = stat[stat.index(after: close)...].split(separator: " ")
        guard rest.count >= 2, let state = rest[0].first, let parent = Int32(rest[1]) else { return nil }
        return (state, parent, String(stat[stat.index(after: open)..<close]))
    }

    /// Whether `pid` is no longer running: gone, or a zombie nobody reaped yet (a killed orphan
    /// re-parented to an init that does not reap).
    static func isDead(_ pid: Int32) -> Bool {
        guard let status = processStatus(pid) else { return true }
        return status.state == "Z" || status.state == "X"
    }

    /// The UTC time of a log line ("2026-11-25T16:04:59.934Z …"), in seconds since the epoch.
    static func time(of line: Substring) -> Double? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        guard let stamp = line.split(separator: " ").first, let date = formatter.date(from: String(stamp)) else {
            return nil
        }
        return date.timeIntervalSince1970
    }
}

/// A harness run in the background, for tests that act on it while it runs: its pid, what it has
/// printed so far, and the child processes seen while it ran.
final class BackgroundRun: @unchecked Sendable {  // mutable state under `lock`
    let process = Process()
    private let lock = NSLock()
    private var output = Data()
    private var errors = Data()
    private var children: [Int32: String] = [:]
    private var readers: [Thread] = []
    private var done = false

    /// Starts the harness with `arguments` (and `--so` the plugin, as `Harness.run` does).
    init(_ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = Harness.dist.appending(path: "aiges-harness")
        process.arguments = Harness.withLibrary(arguments, Harness.library)
        process.currentDirectoryURL = Harness.root
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        readers = [read(out.fileHandleForReading, errors: false), read(err.fileHandleForReading, errors: true)]
        let watcher = Thread { [self] in
            // Every 20 ms: note the children (for tests of processes it starts or must not start).
            while !lock.withLock({ done }) {
                for child in Workers.children(of: pid) { lock.withLock { children[child.pid] = child.name } }
                Thread.sleep(forTimeInterval: 0.02)
            }
        }
        watcher.start()
    }

    private func read(_ handle: FileHandle, errors isErrors: Bool) -> Thread {
        let thread = Thread { [self] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { return }
                lock.withLock {
                    if isErrors { errors.append(chunk) } else { output.append(chunk) }
                }
            }
        }
        thread.start()
        return thread
    }

    var pid: Int32 { process.processIdentifier }

    /// The child processes seen so far (pid: name).
    var sawChildren: [Int32: String] { lock.withLock { children } }

    /// stderr so far (the plugin's log).
    var log: String { lock.withLock { String(decoding: errors, as: UTF8.self) } }

    /// Waits up to `timeout` s until the log satisfies `condition`. - Returns: whether it did.
    func waitForLog(timeout: Double, _ condition: (String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition(log) { return true }
            if !process.isRunning { return condition(log) }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return false
    }

    /// Waits for the harness to end (SIGKILLed after `timeout` s: a hang, recorded as an issue) and
    /// for its output, which processes it started may hold open a little longer.
    func finish(timeout: Double, sourceLocation: SourceLocation = #_sourceLocation) -> Harness.Run {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        if process.isRunning {
            kill(pid, SIGKILL)
            Issue.record("the harness hung: killed after \(Int(timeout)) s", sourceLocation: sourceLocation)
        }
        process.waitUntilExit()
        lock.withLock { done = true }
        let readersDeadline = Date().addingTimeInterval(5)
        while readers.contains(where: { !$0.isFinished }), Date() < readersDeadline {
            Thread.sleep(forTimeInterval: 0.01)
        }
        return lock.withLock {
            Harness.Run(
                status: process.terminationReason == .uncaughtSignal
                    ? 128 + process.terminationStatus : process.terminationStatus,
                output: String(decoding: output, as: UTF8.self), errors: String(decoding: errors, as: UTF8.self))
        }
    }
}
