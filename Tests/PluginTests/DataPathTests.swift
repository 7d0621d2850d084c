import Foundation
import Testing

/// Zero-copy in both directions, what may and may not outlive a call, copy mode, per-thread states.
@Suite struct DataPathTests {
    @Test("with data.lend, loader memory kept past the call fails the call", arguments: ["keep", "slice"])
    func keptLoaderMemoryFailsTheCallWhenLent(mode: String) throws {
        // With data.lend, views are the loader's own memory: np.frombuffer(node.view) or a slice stored
        // on self would read freed (here: poisoned) memory, so the call fails instead.
        let (run, _) = try Harness.exec(
            Harness.fixture("escape"), ["-p", "mode=\(mode)", "-i", "samples=abcdef"], config: ["data.lend=true"])
        #expect(run.status == 1, "\(run)")
        #expect(run.output.contains("wrapperExec returned 22016"), "\(run)")
        #expect(run.output.contains("keep node.data, bytes(node.view) or a copy instead"), "\(run)")
    }

    @Test func afterALentViewEscapedWrapperPyIsNotCalledAgain() throws {
        // What the first call kept points at freed 1 MiB inputs: later calls would read it (SIGSEGV).
        let (run, _) = try Harness.exec(
            Harness.fixture("escape"), ["-p", "mode=keep", "-p", "read_kept=1", "-i", "samples=gen:1M", "-n", "4"],
            config: ["data.lend=true"])
        #expect(run.status == 1, "no crash: \(run)")
        #expect(run.output.contains("request 0.0: wrapperExec returned 22016"), "\(run)")
        #expect(run.output.contains("exec: 4 requests, 4 failed"), "\(run)")
        #expect(run.output.contains("wrapper.py is not called until wrapperFini and wrapperInit"), "\(run)")
    }

    @Test("by default, buffers made from views may be kept", arguments: ["keep", "slice"])
    func buffersMadeFromViewsMayBeKept(mode: String) throws {
        let (run, outputs) = try Harness.exec(
            Harness.fixture("escape"), ["-p", "mode=\(mode)", "-i", "samples=abcdef", "-n", "3"])
        #expect(run.status == 0, "\(run)")
        #expect(outputs["sum"] == Data(String(Array("abcdef".utf8).reduce(0) { $0 + Int($1) }).utf8))
    }

    @Test("views used only inside the call, or copied, are fine", arguments: ["copy", "local"])
    func viewsUsedInsideTheCallAreFine(mode: String) throws {
        let (run, outputs) = try Harness.exec(
            Harness.fixture("escape"), ["-p", "mode=\(mode)", "-i", "samples=abcdef", "-n", "3"])
        #expect(run.status == 0, "\(run)")
        #expect(outputs["sum"] == Data(String(Array("abcdef".utf8).reduce(0) { $0 + Int($1) }).utf8))
    }

    @Test func outputOver4GiBIsAnErrorNotATruncation() throws {
        let (run, _) = try Harness.exec(Harness.fixture("behaviours"), ["-p", "mode=over_4gib"])
        #expect(run.status == 1)
        #expect(run.output.contains("wrapperExec returned 22008"), "\(run)")
        #expect(run.output.contains("4294967297 bytes is over the 4 GiB limit of len"), "\(run)")
    }

    @Test func threadStatesDoNotOutliveTheirThreads() throws {
        // 300 loader threads, each making one call and exiting: each pins a Python thread state
        // that must be deleted when the thread ends.
        let (run, outputs) = try Harness.exec(Harness.fixture("thread_states"), ["--churn", "-n", "300", "-q"])
        #expect(run.status == 0, "\(run)")
        let count = try #require(outputs["thread_states"].flatMap { Int(String(decoding: $0, as: UTF8.self)) })
        // The main state, the calling thread's, the reaper's own, and at most a few exited threads the
        // reaper has not deleted yet (it runs asynchronously); a leak would leave about 300.
        #expect(count <= 8, "\(count) Python thread states after 300 short-lived threads")
    }

    @Test("copy mode gives the same results", arguments: [0, 1, 1 << 20])
    func copyModeGivesTheSameResults(size: Int) throws {
        let (run, outputs) = try Harness.exec(
            Harness.example("echo"), ["-i", "payload:audio=gen:\(size)", "-e", "-n", "3"], config: ["data.copy=true"])
        #expect(run.status == 0, "\(run)")
        #expect(outputs["payload"] == harnessPattern(size))
        let kinds = try Harness.exec(Harness.fixture("behaviours"), ["-p", "mode=kinds"], config: ["data.copy=1"])
        #expect(kinds.run.status == 0, "\(kinds.run)")
        #expect(kinds.outputs["strided"]?.count == 512 * 4)
    }

    @Test("concurrent callers are served with the entry gate on and off", arguments: ["0", "50", "1000"])
    func concurrentCallersWithAnyGateSetting(gate: String) throws {
        let run = try Harness.run(
            [
                "exec", "-c", "wrapper.file=\(Harness.example("echo"))", "-c", "gil.gate_us=\(gate)", "-t", "4",
                "-n", "300", "-u", "-e", "-q", "-i", "a=gen:1K",
            ])
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("exec: 1200 requests, 0 failed"), "\(run)")
    }

    @Test func benchModeReportsEveryFigure() throws {
        // Figures are for docs/performance.md; here only that bench runs and reports each one.
        let run = try Harness.run(
            [
                "bench", "-c", "wrapper.file=\(Harness.root.appending(path: "scripts/bench/wrapper.py").path)", "-n",
                "1500",
            ],
            timeout: 300)
        #expect(run.status == 0, "\(run)")
        for row in [
            "| tiny echo (1 KiB in/out, node.data) |", "| 16 MiB in, view only, 8 B out |",
            "| 1 KiB in, prepared 16 MiB out |", "| 16 MiB echo through node.data |", "| 1 KiB in, empty out |",
            "| 16 MiB in, not read, 8 B out |", "| tiny echo ≤ 2.5 µs (default) |",
            "| 16 MiB input nobody reads ≤ 2 × tiny echo (default) |", "| 4 |",
            "### Worker processes (config workers)", "| tiny echo, workers=1 ≤ 10 × in-process (default) median |",
            "| kill -9 of the worker under load",
        ] {
            #expect(run.output.contains(row), "\(row): \(run)")
        }
    }
}
