import Foundation
import Testing

/// The entry gate in front of the GIL (config `gil.gate_us`): loader threads take turns at the GIL in
/// stints, and calls that release the GIL still overlap.
@Suite struct GateTests {
    @Test("calls that release the GIL run in parallel, whatever the gate setting", arguments: ["50", "1000", "0"])
    func callsThatReleaseTheGILOverlap(gate: String) throws {
        let (run, outputs) = try Harness.exec(
            Harness.fixture("gil_release"), ["-t", "4", "-n", "5", "-q", "--stats"], config: ["gil.gate_us=\(gate)"])
        #expect(run.status == 0, "\(run)")
        let most = try #require(outputs["overlap"].flatMap { Int(String(decoding: $0, as: UTF8.self)) })
        #expect(most >= 2, "4 callers of 20 ms GIL-free calls never overlapped: \(run)")
        if gate != "0" {
            // Waiters left the queue for the GIL because the gate's owner was in a call without it.
            #expect(!run.output.contains("\"gil_direct\": 0,"), "\(run)")
        }
    }

    @Test func aCallHoldingTheGILWhileItWaitsForAnotherThreadsCallIsNotADeadlock() throws {
        // Thread 0 loops in Python (the GIL held but for Python's switching) until thread 1's call
        // sets a flag: the gate must not keep thread 1 waiting behind it for ever.
        let (run, outputs) = try Harness.exec(
            Harness.fixture("gil_release"), ["-t", "2", "-p", "mode=handoff", "-q"], config: ["log.level=warning"])
        #expect(run.status == 0, "\(run)")
        #expect(outputs["handoff"] == Data("ok".utf8), "thread 0 never saw thread 1's call: \(run)")
    }

    @Test func contendedTinyCallsAreAllServedAndCounted() throws {
        let (run, _) = try Harness.exec(
            Harness.example("echo"), ["-t", "4", "-n", "5000", "-u", "-e", "-q", "--stats", "-i", "text=x"])
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("exec: 20000 requests, 0 failed"), "\(run)")
        #expect(run.output.contains("\"gil_handovers\": "), "\(run)")
    }
}
