import Foundation
import Testing

/// Sessions (pull and push), asynchronous one-shot requests, personalisation and loader hooks.
@Suite struct SessionTests {
    /// Chunks of the streaming example's input, and what its worker makes of them for session `k`.
    static let chunks = ["the quick brown fo", "x jumps over", " the lazy dog"]
    static func expectedUpper(session: Int) -> Data {
        Data(chunks.map { ($0 + "#\(session)").uppercased() }.joined().utf8)
    }

    private func streamingArguments(_ extra: [String]) -> [String] {
        ["session", "-c", "wrapper.file=\(Harness.example("streaming"))", "-s", "2", "-u"]
            + Self.chunks.flatMap { ["-i", "text=\($0)"] } + extra
    }

    private func outputs(in directory: URL) throws -> [String: Data] {
        var outputs: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) {
            outputs[name] = try Data(contentsOf: directory.appending(path: name))
        }
        return outputs
    }

    @Test("interleaved sessions keep their data apart; queued requests keep their bytes", arguments: [false, true])
    func interleavedSessionsKeepDataApart(push: Bool) throws {
        // The streaming wrapper queues each request for a worker thread that reads it after wrapperWrite
        // returned, by which time the harness has poisoned and freed the loader's buffers.
        let directory = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let run = try Harness.run(streamingArguments(["-o", directory.path] + (push ? ["--push"] : [])))
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("session: 2 sessions, 0 failed"), "\(run)")
        let outputs = try outputs(in: directory)
        for session in 0..<2 {
            #expect(outputs["\(session).upper"] == Self.expectedUpper(session: session), "session \(session): \(run)")
            let summary = try #require(
                outputs["\(session).summary"].flatMap { try JSONSerialization.jsonObject(with: $0) as? [String: Any] })
            #expect(summary["chunks"] as? Int == 3)
            #expect(summary["bytes"] as? Int == Self.chunks.joined().utf8.count + 6)
            #expect(summary["words"] as? Int == 9)
        }
        #expect(outputs["0.summary"] != outputs["1.summary"], "each session hashes its own bytes")
    }

    @Test func resultsAfterDataEndAreDropped() throws {
        let run = try Harness.run(streamingArguments(["--push", "-p", "extra_after_end=1", "--linger-ms", "300"]))
        #expect(run.status == 0, "the harness saw no late callback: \(run)")
        #expect(run.output.contains("late 0"), "\(run)")
        #expect(run.errors.contains("dropped: it came after the request's final result"), "\(run)")
    }

    @Test func debugInfoIsWrappersOwnOrThePluginsSummary() throws {
        let streaming = try Harness.run(streamingArguments([]))
        #expect(streaming.output.contains("debug: streaming session sid-0-0: 3 chunks processed"), "\(streaming)")
        let echo = try Harness.run(
            ["session", "-c", "wrapper.file=\(Harness.example("echo"))", "-i", "a=one", "-i", "a=two"])
        #expect(echo.status == 0, "\(echo)")
        let debug = try #require(echo.lines("  debug: ").first, "\(echo)")
        for part in ["sid=sid-0-0", "handle=sid-0-0", "mode=pull", "writes=2", "bytes_in=6", "age="] {
            #expect(debug.contains(part), "\(part) in \(debug)")
        }
        let copying = try Harness.run(
            [
                "session", "-c", "wrapper.file=\(Harness.example("echo"))", "-c", "data.copy=1", "-i", "a=one", "-i",
                "a=two",
            ])
        #expect(copying.output.contains("bytes_in=6"), "copy mode counts input bytes too: \(copying)")
    }

    @Test func answeredRequestsLeaveNoTimerBehind() throws {
        // 200 requests with a 100 s timeout, all answered at once: no request or timer is kept until
        // its timeout would have fired.
        let run = try Harness.run(
            [
                "async", "-c", "wrapper.file=\(Harness.example("async"))", "-t", "20", "-n", "10", "-u", "-e", "-q",
                "--timeout-ms", "100000", "-i", "a:audio=gen:1K",
            ])
        #expect(run.status == 0, "\(run)")
        let state = try #require(run.lines("state: ").first, "\(run)")
        #expect(state.contains("\"async_pending\": 0"), "\(state)")
        #expect(state.contains("\"timers\": 0"), "\(state)")
    }

    @Test func repeatedDebugInfoDoesNotGrowMemory() throws {
        // 200,000 wrapperDebugInfo calls on one session (its own summary: a new text each time, since
        // the age changes) and as many with NULL: the texts kept stay bounded.
        let run = try Harness.run(
            [
                "session", "-c", "wrapper.file=\(Harness.example("echo"))", "-i", "a=one", "-i", "a=two",
                "--debug-calls", "200000",
            ])
        #expect(run.status == 0, "\(run)")
        let line = try #require(run.lines("session 0: 200000 more wrapperDebugInfo calls, rss ").first, "\(run)")
        let growth = try #require(Int(line.split(separator: " ").dropLast().last?.replacingOccurrences(of: "+", with: "") ?? ""))
        #expect(growth < 8192, "\(line)")
    }

    @Test func sessionsOpenUnderAnAddressSpaceLimit() throws {
        // Session handles must not reserve large address space up front (ulimit -v, valgrind).
        let harness = Harness.dist.appending(path: "aiges-harness").path
        let run = try Harness.run(
            [
                "-c",
                """
                ulimit -v 8000000 && exec "\(harness)" session --so "\(Harness.library)" -s 20 \
                -c wrapper.file="\(Harness.example("echo"))" -i a=one -i a=two
                """,
            ], library: nil, executable: URL(fileURLWithPath: "/bin/bash"))
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("session: 20 sessions, 0 failed"), "\(run)")
    }

    @Test func fiftyConcurrentAsyncRequestsEachGetTheirOwnCallback() throws {
        let run = try Harness.run(
            [
                "async", "-c", "wrapper.file=\(Harness.example("async"))", "-t", "50", "-u", "-e", "-q",
                "-i", "audio:audio=gen:2K", "-i", "image:image=pixels",
            ])
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("async: 50 requests, 0 unfinished, 0 failed"), "\(run)")
    }

    @Test func asyncTextIsProcessedAndReportedPerRequest() throws {
        let run = try Harness.run(
            [
                "async", "-c", "wrapper.file=\(Harness.example("async"))", "-t", "2", "-n", "2", "-u",
                "-i", "text=hello",
            ])
        #expect(run.status == 0, "\(run)")
        for tag in ["async-0-0", "async-0-1", "async-1-0", "async-1-1"] {
            let suffix = tag.dropFirst("async-".count)
            #expect(run.output.contains("callback \(tag): 1 results, ret 0 (ok)"), "\(run)")
            #expect(run.output.contains("text: 9 bytes \"HELLO#\(suffix)\""), "\(tag): \(run)")
        }
    }

    @Test func aCallbackBlockingOnAnotherThreadsExecDoesNotDeadlock() throws {
        // Each callback waits for a wrapperExec on a new thread; holding the GIL in the callback would hang.
        let run = try Harness.run(
            [
                "async", "--nested-exec", "-c", "wrapper.file=\(Harness.example("async"))", "-t", "4", "-n", "5", "-q",
                "-i", "text=x",
            ], timeout: 60)
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("async: 20 requests, 0 unfinished, 0 failed"), "\(run)")
    }

    @Test func timeoutFiresAndTheLateResultIsDropped() throws {
        let run = try Harness.run(
            [
                "async", "-c", "wrapper.file=\(Harness.example("async"))", "-i", "text=slow", "-p", "delay_ms=500",
                "--timeout-ms", "100", "--expect-ret", "22012", "--linger-ms", "800",
            ])
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("callback async-0-0: 1 results, ret 22012 (request timed out"), "\(run)")
        #expect(run.output.contains("late 0"), "\(run)")
        #expect(run.errors.contains("\"async-0-0\" dropped"), "the late result was dropped: \(run)")
    }

    @Test func asyncModeServesAWrapperWithOnlyASynchronousExec() throws {
        let run = try Harness.run(
            [
                "async", "-c", "wrapper.file=\(Harness.example("echo"))", "-t", "4", "-n", "5", "-u", "-e", "-q",
                "-i", "data:audio=gen:1K",
            ])
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("async: 20 requests, 0 unfinished, 0 failed"), "\(run)")
    }

    @Test func personalisationRoundTrip() throws {
        let (run, outputs) = try Harness.exec(
            Harness.fixture("personal"), ["-r", "7:patch-seven=voice profile", "--pers", "7"])
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("wrapperLoadRes(7, patch_id=patch-seven) returned 0"), "\(run)")
        #expect(run.output.contains("wrapperUnloadRes(7) returned 0"), "unloaded by patch_id: \(run)")
        let state = try #require(
            outputs["state"].flatMap { try JSONSerialization.jsonObject(with: $0) as? [String: Any] })
        #expect(state["persId"] as? Int == 7)
        #expect(state["resources"] as? [String: String] == ["patch-seven": "voice profile"])
    }

    @Test func personalisationWithNumericResourceIds() throws {
        let (run, outputs) = try Harness.exec(
            Harness.fixture("personal_numeric"), ["-r", "12:ignored=numeric resource", "--pers", "12"])
        #expect(run.status == 0, "\(run)")
        #expect(outputs["resource"] == Data("numeric resource".utf8))
        #expect(run.output.contains("wrapperUnloadRes(12) returned 0"), "\(run)")
    }

    @Test func hooksReachTheLoaderOrReportThatNoneWasSet() throws {
        let (withHooks, hooked) = try Harness.exec(Harness.fixture("hooks"), ["--hooks"])
        #expect(withHooks.status == 0, "\(withHooks)")
        #expect(hooked["codes"] == Data("0,0".utf8))
        #expect(withHooks.output.contains("hook meter usrTag=tag-0-0 key=calls count=3"), "\(withHooks)")
        #expect(withHooks.output.contains("hook trace usrTag=tag-0-0 key=stage value=exec"), "\(withHooks)")
        let (without, codes) = try Harness.exec(Harness.fixture("hooks"))
        #expect(without.status == 0, "\(without)")
        #expect(codes["codes"] == Data("22014,22014".utf8))
    }

    @Test func thousandsOfSessionsDoNotGrowMemory() throws {
        let run = try Harness.run(
            [
                "session", "-c", "wrapper.file=\(Harness.example("echo"))", "-s", "2", "-n", "2000", "-q",
                "-i", "a=gen:4K", "-i", "a=gen:1K",
            ])
        #expect(run.status == 0, "\(run)")
        let line = try #require(run.lines("rss: ").first, "\(run)")
        let numbers = line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        let (first, last) = (numbers[0], numbers[1])
        #expect(last - first <= 1024, "RSS grew from \(first) KiB to \(last) KiB over 4000 sessions")
    }
}
