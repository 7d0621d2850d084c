import Foundation
import Testing

/// Workers that die (exit, signal, a kill from outside), hang holding the GIL, or fail to start; and
/// workers outliving their parent. Every request must get exactly one outcome: its result, or
/// 22017 (workerLost) with a text naming the worker, its pid and how it ended.
extension WorkerTests {
    /// How the service fixture's worker ends (`how=`), and what the plugin must say about it.
    static let deaths = [("exit:7", "exited with status 7"), ("kill", "was killed by signal 9 (Killed)")]

    // MARK: one-shot

    @Test("a worker dying in a one-shot request fails that request alone; the next ones are served", arguments: deaths)
    func oneShotRequestLost(how: String, cause: String) throws {
        try Workers.requireProgram()
        // Request 0.2 ends its worker; the harness must live on, and 0.3, 0.4 be served by a new one.
        let run = try Workers.run(
            [
                "exec", "-c", "wrapper.file=\(Workers.service)", "-c", "workers=1", "-u", "-p", "die_on=#0-2", "-p",
                "how=\(how)", "-n", "5", "-i", "t=x",
            ])
        #expect(run.status == 1, "one request failed, the harness lived: \(run)")
        #expect(run.output.contains("exec: 5 requests, 1 failed"), "\(run)")
        let started = Workers.started(run)
        try #require(started.count == 2, "a worker, then its replacement: \(run)")
        let (first, second) = (started[0].pid, started[1].pid)
        #expect(first != second)
        for call in 0..<5 {
            #expect(run.lines("request 0.\(call): ").count == 1, "request 0.\(call) has exactly one outcome: \(run)")
        }
        #expect(
            run.lines("request 0.2: ")
                == [
                    "request 0.2: wrapperExec returned 22017: the worker process serving the request was lost (22017): worker 1 (pid \(first)) \(cause)"
                ], "\(run)")
        #expect(Workers.served(run.output).map(\.pid) == [first, first, second, second], "\(run)")
        #expect(run.errors.contains("worker 1 (pid \(first)) \(cause); restarting now"), "\(run)")
    }

    @Test("a worker dying with async requests in flight gives each exactly one outcome", arguments: [false, true])
    func asyncRequestsLost(inMethod: Bool) throws {
        try Workers.requireProgram()
        // Request async-2-0 ends its worker: in wrapperOnceExecAsync itself (SIGKILL), or 100 ms after
        // it returned, on the thread that would have called back (exit 7). Requests on the other worker are
        // served; those on the dying one get 22017 (from wrapperExecAsync, or as their final callback).
        let dying = inMethod ? ["-p", "how=kill"] : ["-p", "how=exit:7", "-p", "die_later_ms=100"]
        let cause = inMethod ? "was killed by signal 9 (Killed)" : "exited with status 7"
        let run = try Workers.run(
            [
                "async", "-c", "wrapper.file=\(Workers.service)", "-c", "workers=2", "-t", "6", "-u", "-i", "t=x", "-p",
                "die_on=#2-0", "--linger-ms", "1500", "--stats",
            ] + dying)
        #expect(run.output.contains("async: 6 requests, 0 unfinished, "), "\(run)")
        let started = Workers.started(run)
        let lost = "the worker process serving the request was lost (22017): worker "
        var failures = 0
        for thread in 0..<6 {
            let tag = "async-\(thread)-0"
            let outcomes = run.output.split(separator: "\n").filter {
                $0.hasPrefix("callback \(tag): ") || $0.hasPrefix("FAIL \(tag): ") || $0.hasPrefix("request \(tag): ")
            }
            #expect(outcomes.count == 1, "\(tag) has exactly one outcome: \(run)")
            guard let outcome = outcomes.first else { continue }
            if outcome.hasPrefix("callback ") {
                #expect(outcome.hasSuffix(": 1 results, ret 0 (ok), late 0"), "\(outcome)")
            } else {
                failures += 1
                let final = outcome.hasPrefix("FAIL \(tag): 1 results, ret 22017 (\(lost)")
                let refused = outcome.hasPrefix("request \(tag): wrapperExecAsync returned 22017: \(lost)")
                #expect(final || refused, "\(outcome)")
                #expect(!final || outcome.hasSuffix("), late 0"), "no result after the final one: \(outcome)")
                #expect(outcome.contains(cause), "\(outcome)")
                #expect(
                    started.contains { outcome.contains("worker \($0.slot) (pid \($0.pid)) \(cause)") }, "\(outcome)")
            }
        }
        #expect(failures >= 1, "async-2-0 at least was lost: \(run)")
        #expect(run.output.contains("async: 6 requests, 0 unfinished, \(failures) failed"), "\(run)")
        // The lost worker was replaced while the harness lingered.
        #expect(started.count == 3, "\(run.errors)")
        let stats = try #require(run.lines("stats: ").first, "\(run)")
        #expect(stats.contains("\"workers_ready\": 2"), "\(stats)")
        #expect(stats.contains("\"worker_deaths\": 1"), "\(stats)")
        #expect(stats.contains("\"async_pending\": 0"), "\(stats)")
    }

    @Test func wrapperFiniRightAfterAWorkerDiedDoesNotHang() throws {
        try Workers.requireProgram()
        // Request 0.0 ends worker 1; 0.1 and 0.2 go to worker 2; wrapperFini then comes while worker 1's
        // replacement is still starting. It must end it and return, not wait for it forever.
        let run = try Workers.run(
            [
                "exec", "-c", "wrapper.file=\(Workers.service)", "-c", "workers=2", "-u", "-p", "die_on=#0-0", "-n",
                "3",
                "-i", "t=x",
            ], timeout: 15)
        #expect(run.status == 1, "\(run)")
        #expect(run.output.contains("exec: 3 requests, 1 failed"), "\(run)")
        #expect(run.lines("request 0.0: ").first?.contains("returned 22017: ") == true, "\(run)")
    }

    // MARK: sessions

    @Test func pullSessionsOfALostWorkerEndWith22017() throws {
        try Workers.requireProgram()
        let directory = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let marker = directory.appending(path: "die-once").path
        #expect(FileManager.default.createFile(atPath: marker, contents: nil))
        // Round 1: session 0's write of "die" ends the only worker, with both sessions open on it; every
        // later write and read of either fails with 22017. Round 2: two new sessions on its replacement.
        let run = try Workers.run(
            [
                "session", "-c", "wrapper.file=\(Workers.service)", "-c", "workers=1", "-s", "2", "-n", "2", "-p",
                "die_once=\(marker)", "-p", "die_on=die", "--wait-ms", "300", "-i", "t=a", "-i", "t=die", "-i", "t=end",
            ])
        #expect(run.status == 1, "\(run)")
        #expect(run.output.contains("session: 4 sessions, "), "\(run)")
        let started = Workers.started(run)
        try #require(started.count == 2, "\(run)")
        let (first, second) = (started[0].pid, started[1].pid)
        let calls = run.output.split(separator: "\n").filter {
            $0.contains(": wrapperWrite returned ") || $0.contains(": wrapperRead returned ")
                || $0.contains(": wrapperCreate failed") || $0.contains(": wrapperDestroy returned ")
        }
        #expect(calls.contains { $0.hasPrefix("session 0: wrapperWrite returned 22017: ") }, "\(run)")
        #expect(calls.contains { $0.hasPrefix("session 1: wrapperWrite returned 22017: ") }, "\(run)")
        for line in calls {
            #expect(line.contains(" returned 22017: "), "only 22017: \(line)")
            #expect(
                line.hasSuffix("was lost (22017): worker 1 (pid \(first)) exited with status 7"),
                "names the worker: \(line)")
        }
        // Each round-1 session ends without a final result; round 2 is served whole by the new worker.
        #expect(run.lines("session 0: no final result within 300 ms").count == 1, "\(run)")
        #expect(run.lines("session 1: no final result within 300 ms").count == 1, "\(run)")
        for session in 0..<2 {
            #expect(run.output.contains("debug: service session sid-1-\(session) in pid \(second): 3 chunks"), "\(run)")
        }
        #expect(run.lines("session 0: 3 results, 3 nodes, final yes, late 0").count == 1, "\(run)")
        #expect(run.lines("session 1: 3 results, 3 nodes, final yes, late 0").count == 1, "\(run)")
    }

    @Test func pushSessionsOfALostWorkerGetAFinal22017() throws {
        try Workers.requireProgram()
        let directory = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let marker = directory.appending(path: "die-once").path
        #expect(FileManager.default.createFile(atPath: marker, contents: nil))
        // Round 1: session 0's write of "die" makes the worker exit 300 ms later (no write in flight then),
        // before it gave session 0 more than its first chunk; session 1 was served whole by then.
        let run = try Workers.run(
            [
                "session", "--push", "-c", "wrapper.file=\(Workers.service)", "-c", "workers=1", "-s", "2", "-n", "2",
                "-p",
                "die_once=\(marker)", "-p", "die_on=die", "-p", "die_later_ms=300", "--wait-ms", "3000", "-i", "t=a",
                "-i",
                "t=die", "-i", "t=end",
            ])
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("session: 4 sessions, 0 failed"), "\(run)")
        let started = Workers.started(run)
        try #require(started.count == 2, "\(run)")
        let (first, second) = (started[0].pid, started[1].pid)
        let cause = "worker 1 (pid \(first)) exited with status 7"
        // Session 0: its chunk "a", then one final callback with no data (so ret != 0: the harness ends a
        // push session on a DataEnd node or a non-zero ret) ...
        let summaries = run.output.split(separator: "\n").filter {
            $0.hasPrefix("session ") && $0.contains(" results, ")
        }
        #expect(
            summaries == [
                "session 0: 2 results, 1 nodes, final yes, late 0", "session 1: 3 results, 3 nodes, final yes, late 0",
                "session 0: 3 results, 3 nodes, final yes, late 0", "session 1: 3 results, 3 nodes, final yes, late 0",
            ], "\(run)")
        // ... whose ret is 22017 naming the worker (the plugin logs each result it delivers with a non-zero ret).
        #expect(run.errors.contains("result for session-0-0: 22017 (workerLost): \(cause)"), "\(run)")
        #expect(!run.errors.contains("result for session-0-1: "), "\(run)")
        #expect(run.output.contains("debug: sid=sid-0-0 handle=sid-0-0 mode=push"), "\(run)")
        #expect(run.output.contains("(worker lost: \(cause))"), "\(run)")
        for session in 0..<2 {
            #expect(run.output.contains("debug: service session sid-1-\(session) in pid \(second): 3 chunks"), "\(run)")
        }
    }

    // MARK: restarts

    @Test func aWorkerKilledFromOutsideUnderLoadIsReplacedAtOnce() throws {
        try Workers.requireProgram()
        let directory = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        // 4 threads of 2 ms requests on one worker (about 4 s in all); kill -9 it 0.4 s in.
        let background = try BackgroundRun(
            [
                "exec", "-c", "wrapper.file=\(Workers.service)", "-c", "workers=1", "-t", "4", "-n", "500", "-u", "-e",
                "-q",
                "-p", "sleep_ms=2", "-i", "t=x", "-o", directory.path,
            ])
        #expect(background.waitForLog(timeout: 20) { $0.contains("1 worker process(es) serving") }, "\(background.log)")
        let victim = try #require(Workers.started(log: background.log).first?.pid, "\(background.log)")
        Thread.sleep(forTimeInterval: 0.4)
        #expect(background.process.isRunning, "the run must still be going when its worker is killed")
        kill(victim, SIGKILL)
        let killed = Date()
        let replaced = background.waitForLog(timeout: 2) { Workers.started(log: $0).count == 2 }
        let restartSeconds = Date().timeIntervalSince(killed)
        let run = background.finish(timeout: 60)
        #expect(replaced, "a new worker within 2 s of the kill (\(restartSeconds) s): \(run)")
        #expect(run.status == 0 || run.status == 1, "the harness lived: \(run)")
        let summary = try #require(run.lines("exec: 2000 requests, ").first, "\(run)")
        let failed = Int(summary.split(separator: " ")[3]) ?? -1
        // Outcomes: each request ok or 22017 naming the killed worker (a failed echo check would be
        // counted as failed without a "returned" line).
        let lost = run.lines("request ").filter { $0.contains(": wrapperExec returned ") }
        #expect(lost.count == failed, "every failure is a lost request: \(run)")
        for line in lost {
            #expect(
                line.hasSuffix(
                    ": wrapperExec returned 22017: the worker process serving the request was lost (22017): worker 1 (pid \(victim)) was killed by signal 9 (Killed)"
                ),
                "\(line)")
        }
        #expect(failed <= 8, "only requests in flight at the kill fail (\(failed)): \(run)")
        let started = Workers.started(run)
        try #require(started.count == 2, "\(run)")
        // Served again: the last request of thread 0 came from the new worker.
        let last = try String(contentsOf: directory.appending(path: "worker"), encoding: .utf8)
        #expect(last == "pid=\(started[1].pid) res=", "\(last)")
        // And the first request served after the kill came within 2 s of it (the log's own clock).
        let lines = run.errors.split(separator: "\n")
        let death = try #require(
            lines.first { $0.contains("worker 1 (pid \(victim)) was killed by signal 9 (Killed); restarting") })
        let restarted = try #require(lines.first { $0.contains("worker 1 started (pid \(started[1].pid))") })
        let gap = (Workers.time(of: restarted) ?? .infinity) - (Workers.time(of: death) ?? 0)
        #expect(gap < 2, "restarted \(gap) s after the death was seen")
    }

    @Test func resourcesAreLoadedAgainIntoAReplacement() throws {
        try Workers.requireProgram()
        // Request 0.1 kills the worker that loaded the resource; 0.2 and 0.3 must still see it.
        let run = try Workers.run(
            [
                "exec", "-c", "wrapper.file=\(Workers.service)", "-c", "workers=1", "-r", "7:patch-a=alpha", "-r",
                "9=nine", "--pers", "7", "-u", "-p", "die_on=#0-1", "-p", "how=kill", "-n", "4", "-i", "t=x",
            ])
        #expect(run.status == 1, "\(run)")
        #expect(run.output.contains("exec: 4 requests, 1 failed"), "\(run)")
        let started = Workers.started(run)
        try #require(started.count == 2, "\(run)")
        #expect(run.lines("request 0.1: ").first?.contains("returned 22017: ") == true, "\(run)")
        let served = Workers.served(run.output)
        #expect(served.map(\.pid) == [started[0].pid, started[1].pid, started[1].pid], "\(run)")
        #expect(served.allSatisfy { $0.resources == "9:nine,patch-a:alpha" }, "\(served)")
        #expect(run.output.contains("wrapperUnloadRes(7) returned 0"), "unloaded from the replacement: \(run)")
        #expect(run.output.contains("wrapperUnloadRes(9) returned 0"), "\(run)")
    }

    @Test func theWatchdogReplacesAWorkerHoldingTheGIL() throws {
        try Workers.requireProgram()
        // Request 0.1 sleeps 100 s in C with the GIL held: its worker cannot answer a ping.
        let started = Date()
        let run = try Workers.run(
            [
                "exec", "-c", "wrapper.file=\(Workers.service)", "-c", "workers=1", "-c", "workers.watchdog_ms=500",
                "-u",
                "-p", "die_on=#0-1", "-p", "how=hold_gil", "-n", "3", "-i", "t=x",
            ])
        let elapsed = Date().timeIntervalSince(started)
        #expect(run.status == 1, "\(run)")
        #expect(run.output.contains("exec: 3 requests, 1 failed"), "\(run)")
        let workers = Workers.started(run)
        try #require(workers.count == 2, "\(run)")
        let line = try #require(run.lines("request 0.1: ").first, "\(run)")
        #expect(
            line.hasPrefix(
                "request 0.1: wrapperExec returned 22017: the worker process serving the request was lost (22017): worker 1 (pid \(workers[0].pid)) was killed by signal 9"
            ), "\(line)")
        #expect(line.contains("watchdog"), "\(line)")
        #expect(Workers.served(run.output).map(\.pid) == [workers[0].pid, workers[1].pid], "\(run)")
        #expect(elapsed < 10, "the watchdog acted after 500 ms, not after the 100 s sleep: \(elapsed) s")
    }

    // MARK: starting

    /// worker-children (Tests/Fixtures/workers/worker_children.c), compiled once: calls wrapperInit and
    /// lists its own child processes right after.
    static let childrenTool: Result<String, any Error> = Result(catching: {
        let directory = try Harness.temporaryDirectory()
        let binary = directory.appending(path: "worker-children").path
        let compiler = Process()
        compiler.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        compiler.arguments = [
            "cc", "-O1", "-o", binary, Harness.root.appending(path: "Tests/Fixtures/workers/worker_children.c").path,
            "-ldl",
        ]
        try compiler.run()
        compiler.waitUntilExit()
        guard compiler.terminationStatus == 0 else {
            throw CocoaError(.executableLoad, userInfo: [NSLocalizedDescriptionKey: "cc failed on worker_children.c"])
        }
        return binary
    })

    /// Runs worker-children with `config`: wrapperInit's code and text, and the children listed after it.
    func initialise(_ config: [String]) throws -> (code: Int, text: String, children: [String], run: Harness.Run) {
        let tool = try Self.childrenTool.get()
        let run = try Workers.run([Harness.library] + config, timeout: 15, executable: URL(fileURLWithPath: tool))
        let lines = run.output.split(separator: "\n").map(String.init)
        let initLine = lines.first { $0.hasPrefix("init ") } ?? "init -1 (no init line)"
        let parts = initLine.split(separator: " ", maxSplits: 2).map(String.init)
        let end = lines.firstIndex { $0.hasPrefix("children: ") } ?? lines.count
        let start = lines.firstIndex(of: initLine).map { $0 + 1 } ?? end
        return (Int(parts[1]) ?? -1, parts.count > 2 ? parts[2] : "", Array(lines[start..<end]), run)
    }

    @Test(
        "a worker that cannot start fails wrapperInit with its own code and text, and leaves no process behind",
        arguments: [
            ("syntax_error", 22002, "SyntaxError: expected ':'"),
            ("no_class", 22002, "wrapper.py defines no class 'Wrapper'"),
            ("init_code", 4321, "licence server refused this worker (4321)"),
            ("second_fails", 4321, "another worker already claimed the licence (4321)"),
        ])
    func failedStart(fixture: String, code: Int, text: String) throws {
        try Workers.requireProgram()
        let directory = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let result = try initialise([
            "wrapper.file=\(Workers.fixture(fixture))", "workers=2", "fixture.claim=\(directory.path)/claimed",
        ])
        #expect(result.code == code, "\(result.run)")
        #expect(result.text.contains(text), "\(result.run)")
        #expect(result.children.isEmpty, "no worker left (not even a zombie) once wrapperInit returned: \(result.run)")
        if fixture == "second_fails" {
            #expect(Workers.started(result.run).count == 1, "worker 1 had started, and was stopped: \(result.run)")
        }
    }

    @Test func aWorkerExitingInWrapperInitFailsWrapperInit() throws {
        try Workers.requireProgram()
        // The process ends before it answers the plugin's init request: wrapperInit must fail (22002,
        // naming the worker and its exit status) rather than wait for an answer that cannot come.
        let result = try initialise([
            "wrapper.file=\(Workers.fixture("init_exit"))", "workers=1", "workers.start_timeout_ms=2000",
        ])
        #expect(result.code == 22002, "\(result.run)")
        #expect(result.text.contains("worker 1 (pid "), "\(result.run)")
        #expect(result.text.contains("exited with status 3"), "\(result.run)")
        #expect(result.children.isEmpty, "no worker left once wrapperInit returned: \(result.run)")
    }

    @Test func workersAreReapedByWrapperFini() throws {
        try Workers.requireProgram()
        let result = try initialise(["wrapper.file=\(Workers.service)", "workers=2"])
        #expect(result.code == 0, "\(result.run)")
        let workers = Set(Workers.started(result.run).map(\.pid))
        #expect(workers.count == 2, "\(result.run)")
        let listed = Set(result.children.compactMap { Int32($0.split(separator: " ")[1]) })
        #expect(listed == workers, "after wrapperInit, its children are the two workers: \(result.run)")
        #expect(result.children.allSatisfy { $0.hasSuffix(" aiges-worker") && !$0.contains(" Z ") }, "\(result.run)")
        #expect(result.run.output.contains("fini 0\nchildren: 0\n"), "none left after wrapperFini: \(result.run)")
    }

    // MARK: orphans

    @Test func workersDieWithTheirParent() throws {
        try Workers.requireProgram()
        let background = try BackgroundRun(
            [
                "exec", "-c", "wrapper.file=\(Workers.service)", "-c", "workers=2", "-t", "2", "-n", "100000", "-q",
                "-p",
                "sleep_ms=20", "-i", "t=x",
            ])
        #expect(background.waitForLog(timeout: 20) { $0.contains("2 worker process(es) serving") }, "\(background.log)")
        let workers = Workers.children(of: background.pid).filter { $0.name == "aiges-worker" && $0.state != "Z" }
        #expect(Set(workers.map(\.pid)) == Set(Workers.started(log: background.log).map(\.pid)), "\(workers)")
        try #require(workers.count == 2, "\(background.log)")
        kill(background.pid, SIGKILL)
        let killed = Date()
        _ = background.finish(timeout: 10)
        while Date().timeIntervalSince(killed) < 1, !workers.allSatisfy({ Workers.isDead($0.pid) }) {
            Thread.sleep(forTimeInterval: 0.01)
        }
        for worker in workers {
            #expect(Workers.isDead(worker.pid), "worker \(worker.pid) still runs 1 s after its parent was killed")
            if !Workers.isDead(worker.pid) { kill(worker.pid, SIGKILL) }  // do not leave it behind
        }
    }
}

extension Workers {
    /// `Harness.run` with another executable (no `--so` added), recording a hang as an issue.
    static func run(
        _ arguments: [String], timeout: Double, executable: URL, sourceLocation: SourceLocation = #_sourceLocation
    )
        throws -> Harness.Run
    {
        let started = Date()
        let run = try Harness.run(arguments, library: nil, executable: executable, timeout: timeout)
        if Date().timeIntervalSince(started) >= timeout - 0.5 {
            Issue.record(
                "\(executable.lastPathComponent) hung: killed after \(Int(timeout)) s\n\(run)",
                sourceLocation: sourceLocation)
        }
        return run
    }
}
