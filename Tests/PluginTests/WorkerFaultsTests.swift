import Foundation
import Testing

/// The adversarial scenarios of `HardeningTests` (dist/aiges-faults) again, with wrapper.py in a
/// worker process (`workers=1`): re-entrant loader callbacks, async failures and timeouts, what
/// wrapperFini ends (results already on their way included), thread exit and long lists must behave
/// exactly as in-process. timer-leak and fini-after-held failed before the plugin told a worker
/// when a request timed out, and before wrapperFini collected the results already on their way.
@Suite(.serialized) struct WorkerFaultsTests {
    @Test(
        "adversarial scenarios pass with wrapper.py in a worker process",
        arguments: [
            ("push-destroy-in-callback", "faults"), ("push-destroy-in-callback-thread", "faults"),
            ("push-debuginfo-in-callback", "faults"), ("bad-calls-in-callback", "faults"),
            ("pull-read-unique-keys", "faults"), ("async-fail-after-deliver", "faults"),
            ("async-fail-after-deliver-thread", "faults"), ("async-deliver-then-ok", "faults"),
            ("async-callback-calls-plugin", "faults"), ("async-duplicate-sid", "faults"),
            ("async-timeout-busy-fallback", "faults_sync_only"), ("async-default-timeout", "faults"),
            ("timer-leak", "faults"), ("fini-ends-everything", "faults"), ("fini-from-callback", "faults"),
            ("fini-from-callback-push", "faults"), ("fini-after-held", "faults"), ("fini-race", "faults"),
            ("fini-waits-fallback", "faults_sync_only"), ("thread-exit", "faults"), ("long-lists", "faults"),
        ])
    func scenarioPassesInAWorker(scenario: String, fixture: String) throws {
        let run = try Harness.faults(
            scenario, wrapper: Harness.fixture(fixture), config: ["workers=1"], environment: [:], timeout: 60)
        #expect(run.status == 0, "\(scenario): \(run)")
        #expect(run.passed(scenario), "\(scenario): \(run)")
    }
}
